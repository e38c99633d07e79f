//! A consistent copy of a vault's four PostgreSQL schemas, for backups: every table's rows
//! through `COPY … TO STDOUT` inside one `REPEATABLE READ, READ ONLY` transaction (one snapshot
//! of the whole database, taken online), and the way back (`COPY … FROM STDIN` into a freshly
//! migrated, empty vault under any schema prefix). Rows are sealed bytes, keyed digests and
//! pseudonyms: nothing here is plaintext PHI.
use super::{check_schema, corrupt, unavailable};
use futures_util::StreamExt;
use phivault_core::StoreError;
use sqlx::Row;
use sqlx::postgres::PgPool;

/// The stores, in the order they are copied and loaded.
pub const STORES: [&str; 4] = ["identity", "clinical", "control", "audit"];

/// One table's rows in PostgreSQL's COPY text format, and the columns they are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub store: String,
    pub table: String,
    pub columns: Vec<String>,
    pub data: Vec<u8>,
}

fn ident(s: &str) -> Result<&str, StoreError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(s)
    } else {
        Err(corrupt("snapshot", "an unexpected table or column name"))
    }
}

async fn tables(
    conn: &mut sqlx::PgConnection,
    schema: &str,
) -> Result<Vec<(String, Vec<String>)>, StoreError> {
    let ctx = "snapshot";
    let names: Vec<String> = sqlx::query(
        "SELECT table_name::text AS t FROM information_schema.tables
         WHERE table_schema = $1 AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'
         ORDER BY table_name",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable(ctx))?
    .iter()
    .map(|r| r.try_get("t"))
    .collect::<Result<_, _>>()
    .map_err(unavailable(ctx))?;
    let mut out = Vec::new();
    for t in names {
        let cols: Vec<String> = sqlx::query(
            "SELECT column_name::text AS c FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        )
        .bind(schema)
        .bind(&t)
        .fetch_all(&mut *conn)
        .await
        .map_err(unavailable(ctx))?
        .iter()
        .map(|r| r.try_get("c"))
        .collect::<Result<_, _>>()
        .map_err(unavailable(ctx))?;
        out.push((t, cols));
    }
    Ok(out)
}

fn column_list(cols: &[String]) -> Result<String, StoreError> {
    Ok(cols
        .iter()
        .map(|c| ident(c))
        .collect::<Result<Vec<_>, _>>()?
        .join(", "))
}

/// Copies every table of the schemas `<prefix>_<store>` in one snapshot.
pub async fn export(pool: &PgPool, prefix: &str) -> Result<Vec<TableCopy>, StoreError> {
    let ctx = "snapshot";
    let mut conn = pool.acquire().await.map_err(unavailable(ctx))?;
    // A whole-database copy outlasts the pool's per-statement limit: lifted for this
    // transaction only.
    sqlx::raw_sql(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
         SET LOCAL statement_timeout = 0;
         SET LOCAL idle_in_transaction_session_timeout = 0",
    )
    .execute(&mut *conn)
    .await
    .map_err(unavailable(ctx))?;
    let mut out = Vec::new();
    let result = async {
        for store in STORES {
            let schema = format!("{prefix}_{store}");
            let schema = check_schema(&schema)?;
            let found = tables(&mut conn, schema).await?;
            if found.is_empty() {
                // Every store has tables once migrated: none means the schema is missing
                // (dropped under us, or never made), never an empty store.
                return Err(corrupt(ctx, format!("schema {schema} holds no tables")));
            }
            for (table, columns) in found {
                let sql = format!(
                    "COPY {schema}.{} ({}) TO STDOUT",
                    ident(&table)?,
                    column_list(&columns)?
                );
                let mut data = Vec::new();
                let mut stream = conn.copy_out_raw(&sql).await.map_err(unavailable(ctx))?;
                while let Some(piece) = stream.next().await {
                    data.extend_from_slice(&piece.map_err(unavailable(ctx))?);
                }
                drop(stream);
                out.push(TableCopy {
                    store: store.to_owned(),
                    table,
                    columns,
                    data,
                });
            }
        }
        Ok::<_, StoreError>(())
    }
    .await;
    let end = sqlx::raw_sql("COMMIT").execute(&mut *conn).await;
    result?;
    end.map_err(unavailable(ctx))?;
    Ok(out)
}

/// Loads `tables` into the schemas `<prefix>_<store>`, which must exist (migrated by opening
/// the stores) and be empty; sequences are moved past the loaded rows. One transaction: all
/// or nothing.
pub async fn import(pool: &PgPool, prefix: &str, tables: &[TableCopy]) -> Result<(), StoreError> {
    let ctx = "restore";
    let mut tx = pool.begin().await.map_err(unavailable(ctx))?;
    sqlx::raw_sql(
        "SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0",
    )
    .execute(&mut *tx)
    .await
    .map_err(unavailable(ctx))?;
    for store in STORES {
        let schema = format!("{prefix}_{store}");
        let schema = check_schema(&schema)?;
        let known = self::tables(&mut tx, schema).await?;
        for (table, _) in &known {
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) AS n FROM {schema}.{}",
                ident(table)?
            )))
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable(ctx))?
            .try_get("n")
            .map_err(unavailable(ctx))?;
            if n > 0 {
                return Err(corrupt(
                    ctx,
                    format!("{schema}.{table} is not empty: restore only into an empty vault"),
                ));
            }
        }
        for t in tables.iter().filter(|t| t.store == store) {
            if !known.iter().any(|(k, _)| *k == t.table) {
                return Err(corrupt(
                    ctx,
                    format!("the backup has an unknown table {}", t.table),
                ));
            }
            let sql = format!(
                "COPY {schema}.{} ({}) FROM STDIN",
                ident(&t.table)?,
                column_list(&t.columns)?
            );
            let mut copy = tx.copy_in_raw(&sql).await.map_err(unavailable(ctx))?;
            copy.send(t.data.as_slice())
                .await
                .map_err(unavailable(ctx))?;
            copy.finish().await.map_err(unavailable(ctx))?;
        }
        // Serial columns continue after the highest restored value.
        let serials = sqlx::query(
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns
             WHERE table_schema = $1 AND column_default LIKE 'nextval(%'",
        )
        .bind(schema)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable(ctx))?;
        for r in serials {
            let t: String = r.try_get("t").map_err(unavailable(ctx))?;
            let c: String = r.try_get("c").map_err(unavailable(ctx))?;
            let (t, c) = (ident(&t)?, ident(&c)?);
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{schema}.{t}', '{c}'),
                               COALESCE((SELECT MAX({c}) FROM {schema}.{t}), 1),
                               (SELECT MAX({c}) FROM {schema}.{t}) IS NOT NULL)"
            )))
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
        }
    }
    tx.commit().await.map_err(unavailable(ctx))?;
    Ok(())
}

/// Drops the schemas `<prefix>_<store>` (a verification's scratch vault).
pub async fn drop_schemas(pool: &PgPool, prefix: &str) -> Result<(), StoreError> {
    for store in STORES {
        let schema = format!("{prefix}_{store}");
        let schema = check_schema(&schema)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(pool)
        .await
        .map_err(unavailable("drop scratch schemas"))?;
    }
    Ok(())
}

/// The advisory-lock key of scratch schemas with `prefix`, as SQL: a session holds it while it
/// uses them, so a sweeper can tell live scratch from what a killed process left.
const SCRATCH_KEY: &str = "hashtext('phivault.scratch:' || $1)";

/// A connection holding the session lock on a set of scratch schemas.
pub type ScratchLock = sqlx::pool::PoolConnection<sqlx::Postgres>;

/// Takes the session lock on scratch schemas `prefix` on a connection of its own, held until
/// that connection is dropped (or its session ends: a killed process releases it).
pub async fn hold_scratch(pool: &PgPool, prefix: &str) -> Result<ScratchLock, StoreError> {
    let ctx = "lock scratch schemas";
    let mut conn = pool.acquire().await.map_err(unavailable(ctx))?;
    // The lock lives as long as this session: an idle-session limit must not end it.
    // (PostgreSQL before 14 has no such setting and no such limit.)
    let _ = sqlx::raw_sql("SET idle_session_timeout = 0")
        .execute(&mut *conn)
        .await;
    scratch_lock(&mut conn, "pg_advisory_lock", prefix)
        .await
        .map_err(unavailable(ctx))?;
    Ok(conn)
}

/// Calls the advisory-lock function `func` on the key of scratch schemas `prefix`: true
/// unless it is `pg_try_advisory_lock` and another session holds the lock.
async fn scratch_lock(
    conn: &mut sqlx::PgConnection,
    func: &'static str,
    prefix: &str,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT ({func}({SCRATCH_KEY}))::text"
    )))
    .bind(prefix)
    .fetch_one(conn)
    .await?;
    let got: Option<String> = row.try_get(0)?;
    Ok(got.as_deref() != Some("false"))
}

/// Whether `prefix` names scratch schemas: `pvcheck` and exactly ten lowercase letters or
/// digits. Vault prefixes of that shape are refused (see [`SCRATCH_PREFIX`]).
pub fn is_scratch_prefix(prefix: &str) -> bool {
    prefix.strip_prefix(SCRATCH_PREFIX).is_some_and(|tag| {
        tag.len() == SCRATCH_TAG_LEN
            && tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Scratch schema prefixes start with this; no vault's own prefix may.
pub const SCRATCH_PREFIX: &str = "pvcheck";
/// The length of a scratch prefix's random tag.
pub const SCRATCH_TAG_LEN: usize = 10;

/// Drops the scratch schemas (`pvcheck<tag>_<store>`, exactly that shape) whose lock no
/// session holds, and says how many sets it dropped. Schemas some live session holds are left
/// alone; a set that cannot be dropped (another role's, say) is skipped.
pub async fn sweep_scratch(pool: &PgPool) -> Result<usize, StoreError> {
    let ctx = "sweep scratch schemas";
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(SCRATCH_PREFIX)
            .fetch_all(pool)
            .await
            .map_err(unavailable(ctx))?;
    let mut prefixes: Vec<&str> = names
        .iter()
        .filter_map(|n| {
            let (prefix, store) = n.rsplit_once('_')?;
            (STORES.contains(&store) && is_scratch_prefix(prefix)).then_some(prefix)
        })
        .collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    let mut dropped = 0;
    let mut conn = pool.acquire().await.map_err(unavailable(ctx))?;
    for prefix in prefixes {
        let free = scratch_lock(&mut conn, "pg_try_advisory_lock", prefix)
            .await
            .map_err(unavailable(ctx))?;
        if !free {
            continue;
        }
        let result = drop_schemas(pool, prefix).await;
        scratch_lock(&mut conn, "pg_advisory_unlock", prefix)
            .await
            .map_err(unavailable(ctx))?;
        if result.is_ok() {
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// Whether `lock` (from [`hold_scratch`]) still holds an advisory lock: its session may have
/// been lost (a server restart, a network failure), and with it the claim on its schemas.
pub async fn still_holds(lock: &mut ScratchLock) -> Result<bool, StoreError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
         AND pid = pg_backend_pid() AND granted)",
    )
    .fetch_one(&mut **lock)
    .await
    .map_err(unavailable("check scratch lock"))
}
