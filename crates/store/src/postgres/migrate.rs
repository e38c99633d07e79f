//! Versioned, idempotent migrations per store schema, under an advisory lock so several nodes
//! starting at once migrate once. A schema newer than this build knows stops start-up.
use super::{check_schema, unavailable};
use phivault_core::StoreError;
use sqlx::Row;
use sqlx::postgres::PgPool;

pub(crate) use crate::migrations::postgres::{AUDIT, CONTROL, RECORDS};
pub(crate) use crate::migrations::{Dialect, Migration};

/// The control migrations as PostgreSQL numbered them before both backends had one list
/// (its `0001_init` then held SQLite's 0001–0004): version and name, then the version now.
const OLD_CONTROL: [(i64, &str, i64); 4] = [
    (2, "0002_tombstones", 5),
    (3, "0003_challenge_attempts", 6),
    (4, "0004_usernames_per_org", 7),
    (5, "0005_default_purposes", 8),
];

/// The advisory-lock key of schema migrations (any fixed number, shared by all nodes).
const MIGRATION_LOCK: i64 = 0x7068_6976_6d69_6772;

pub(crate) async fn run(
    pool: &PgPool,
    store: &'static str,
    schema: &str,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let ctx = "migrate";
    let schema = check_schema(schema)?;
    let mut tx = pool.begin().await.map_err(unavailable(ctx))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(unavailable(ctx))?;
    // A schema made beforehand by an administrator (owned by this store's own role, which
    // then needs no right to create schemas in the database) is used as it is.
    let exists = sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = $1")
        .bind(schema)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable(ctx))?
        .is_some();
    if !exists {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
    )))
    .execute(&mut *tx)
    .await
    .map_err(unavailable(ctx))?;
    if store == "control" {
        renumber_old_control(&mut tx, schema, migrations).await?;
    }
    let current: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COALESCE(MAX(version), 0) AS v FROM {schema}.schema_migrations"
    )))
    .fetch_one(&mut *tx)
    .await
    .map_err(unavailable(ctx))?
    .try_get("v")
    .map_err(unavailable(ctx))?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if current > known {
        return Err(StoreError::SchemaTooNew {
            store,
            found: current,
            known,
        });
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(Dialect::Postgres(schema).render(m.sql)))
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
        record(&mut tx, schema, m).await?;
    }
    tx.commit().await.map_err(unavailable(ctx))
}

/// Records a migration as applied.
async fn record(
    tx: &mut sqlx::PgConnection,
    schema: &str,
    m: &Migration,
) -> Result<(), StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"
    )))
    .bind(m.version)
    .bind(m.name)
    .execute(&mut *tx)
    .await
    .map(|_| ())
    .map_err(unavailable("migrate"))
}

/// A control schema migrated under the old numbering gets the shared one: its applied
/// migrations are recorded under their versions now, and SQLite's 0002–0004 (which its old
/// `0001_init` held) as applied. Nothing is run again.
async fn renumber_old_control(
    tx: &mut sqlx::PgConnection,
    schema: &str,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let ctx = "migrate";
    let mut applied = 1i64;
    for (old, name, new) in OLD_CONTROL {
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM {schema}.schema_migrations WHERE version = $1 AND name = $2"
        )))
        .bind(old)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable(ctx))?;
        if found.is_some() {
            applied = new;
        }
    }
    if applied == 1 {
        return Ok(());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {schema}.schema_migrations WHERE version >= 2"
    )))
    .execute(&mut *tx)
    .await
    .map_err(unavailable(ctx))?;
    for m in migrations
        .iter()
        .filter(|m| (2..=applied).contains(&m.version))
    {
        record(&mut *tx, schema, m).await?;
    }
    Ok(())
}
