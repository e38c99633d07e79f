//! A small, versioned, idempotent migration runner (the list of migrations, the same on
//! PostgreSQL, is in `crate::migrations`). Each migration runs in its own transaction; a schema newer than the newest
//! known migration stops start-up.
use super::{Db, unavailable};
use phivault_core::StoreError;
use sqlx::Row;

pub(crate) use crate::migrations::sqlite::{AUDIT, CONTROL, RECORDS};
pub(crate) use crate::migrations::{Dialect, Migration};

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
        sqlx::raw_sql(sqlx::AssertSqlSafe(Dialect::Sqlite.render(m.sql)))
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
