//! Versioned, idempotent migrations per store schema, under an advisory lock so several nodes
//! starting at once migrate once. A schema newer than this build knows stops start-up.
use super::{check_schema, unavailable};
use phivault_core::StoreError;
use sqlx::Row;
use sqlx::postgres::PgPool;

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const AUDIT: &[Migration] = &[Migration {
    version: 1,
    name: "0001_init",
    sql: include_str!("../../migrations/postgres/audit/0001_init.sql"),
}];

pub(crate) const RECORDS: &[Migration] = &[Migration {
    version: 1,
    name: "0001_init",
    sql: include_str!("../../migrations/postgres/records/0001_init.sql"),
}];

pub(crate) const CONTROL: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../../migrations/postgres/control/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_tombstones",
        sql: include_str!("../../migrations/postgres/control/0002_tombstones.sql"),
    },
    Migration {
        version: 3,
        name: "0003_challenge_attempts",
        sql: include_str!("../../migrations/postgres/control/0003_challenge_attempts.sql"),
    },
    Migration {
        version: 4,
        name: "0004_usernames_per_org",
        sql: include_str!("../../migrations/postgres/control/0004_usernames_per_org.sql"),
    },
    Migration {
        version: 5,
        name: "0005_default_purposes",
        sql: include_str!("../../migrations/postgres/control/0005_default_purposes.sql"),
    },
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
        sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql.replace("{schema}", schema)))
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"
        )))
        .bind(m.version)
        .bind(m.name)
        .execute(&mut *tx)
        .await
        .map_err(unavailable(ctx))?;
    }
    tx.commit().await.map_err(unavailable(ctx))
}
