//! A small, versioned, idempotent migration runner (the same file names will exist for
//! PostgreSQL). Each migration runs in its own transaction; a schema newer than the newest
//! known migration stops start-up.
use super::{Db, unavailable};
use phivault_core::StoreError;
use sqlx::Row;

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const RECORDS: &[Migration] = &[Migration {
    version: 1,
    name: "0001_init",
    sql: include_str!("../../migrations/sqlite/records/0001_init.sql"),
}];

pub(crate) const CONTROL: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../../migrations/sqlite/control/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_auth",
        sql: include_str!("../../migrations/sqlite/control/0002_auth.sql"),
    },
    Migration {
        version: 3,
        name: "0003_grants",
        sql: include_str!("../../migrations/sqlite/control/0003_grants.sql"),
    },
    Migration {
        version: 4,
        name: "0004_client_purposes",
        sql: include_str!("../../migrations/sqlite/control/0004_client_purposes.sql"),
    },
    Migration {
        version: 5,
        name: "0005_tombstones",
        sql: include_str!("../../migrations/sqlite/control/0005_tombstones.sql"),
    },
    Migration {
        version: 6,
        name: "0006_challenge_attempts",
        sql: include_str!("../../migrations/sqlite/control/0006_challenge_attempts.sql"),
    },
    Migration {
        version: 7,
        name: "0007_usernames_per_org",
        sql: include_str!("../../migrations/sqlite/control/0007_usernames_per_org.sql"),
    },
    Migration {
        version: 8,
        name: "0008_default_purposes",
        sql: include_str!("../../migrations/sqlite/control/0008_default_purposes.sql"),
    },
];

pub(crate) const AUDIT: &[Migration] = &[Migration {
    version: 1,
    name: "0001_init",
    sql: include_str!("../../migrations/sqlite/audit/0001_init.sql"),
}];

pub(crate) async fn run(
    db: &Db,
    store: &'static str,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let ctx = "migrate";
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    )
    .execute(&db.writer)
    .await
    .map_err(unavailable(ctx))?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(&db.writer)
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
        let mut tx = db.writer.begin().await.map_err(unavailable(ctx))?;
        sqlx::raw_sql(m.sql)
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
        tx.commit().await.map_err(unavailable(ctx))?;
    }
    Ok(())
}
