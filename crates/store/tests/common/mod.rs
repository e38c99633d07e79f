//! The PostgreSQL side of the backend tests: a pool on `PHIVAULT_TEST_POSTGRES_URL` (default
//! the local server's `test` database), `None` outside CI when no server answers (in CI its
//! absence fails the test), and a per-process schema name that is dropped afterwards.
#![allow(dead_code, clippy::unwrap_used)]

pub fn postgres_url() -> String {
    std::env::var("PHIVAULT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub async fn pool() -> Option<sqlx::PgPool> {
    match phivault_store::postgres::connect(&postgres_url(), Default::default()).await {
        Ok(p) => Some(p),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI needs PostgreSQL: {e}");
            eprintln!("skipped: no PostgreSQL at {} ({e})", postgres_url());
            None
        }
    }
}

pub fn schema(store: &str) -> String {
    format!("t{}_{store}", std::process::id())
}

pub async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// A NURSE `id` named `name` in `org`, enabled, with a one-time password to change.
pub fn user(id: &str, name: &str, org: &phivault_core::OrgId) -> phivault_core::UserRecord {
    phivault_core::UserRecord {
        id: id.into(),
        org: org.clone(),
        username: name.into(),
        role: phivault_core::Role::Nurse,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        password_changed_at: 1,
        must_change_password: true,
        totp_sealed: None,
        totp_last_step: None,
        mfa_enrolled: false,
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        last_login_at: None,
        created_at: 1,
    }
}
