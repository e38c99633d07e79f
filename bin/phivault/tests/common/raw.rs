//! Raw access to one store of a test vault, on whichever backend the suite runs on, for the
//! tests that play the insider with database access (tampering) or the failing disk.
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use std::path::Path;
use std::str::FromStr;

/// A connection pool on one store's tables: the SQLite file, or the PostgreSQL schema (as
/// the search path, so the same unqualified SQL works on both).
pub enum RawDb {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One sealed record version as stored.
#[derive(Clone)]
pub struct SealedRow {
    pub seq: i64,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl SealedRow {
    pub fn column(&self, name: &str) -> &[u8] {
        match name {
            "wrapped_dek" => &self.wrapped_dek,
            "ciphertext" => &self.ciphertext,
            other => panic!("no sealed column {other}"),
        }
    }
}

/// A held exclusive lock on a table (see [`RawDb::lock_exclusive`]).
pub enum Held {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl RawDb {
    /// The store `store` (`identity`, `clinical`, `control` or `audit`) of the vault in `dir`.
    pub async fn open(dir: &Path, store: &str) -> RawDb {
        match super::test_database(dir) {
            None => RawDb::Sqlite(
                SqlitePool::connect_with(
                    SqliteConnectOptions::new().filename(dir.join(format!("{store}.db"))),
                )
                .await
                .unwrap(),
            ),
            Some(db) => {
                let opts = PgConnectOptions::from_str(&db.url)
                    .unwrap()
                    .options([("search_path", format!("{}_{store}", db.prefix))]);
                RawDb::Postgres(
                    PgPoolOptions::new()
                        .max_connections(2)
                        .connect_with(opts)
                        .await
                        .unwrap(),
                )
            }
        }
    }

    /// Runs one or more statements (`;`-separated), panicking on error.
    pub async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            RawDb::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            RawDb::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap();
    }

    /// The sealed rows of a record store (`seq`, wrapped DEK, ciphertext) in `seq` order;
    /// with `linked`, only clinical rows linked to a patient.
    pub async fn sealed_rows(&self, linked: bool) -> Vec<SealedRow> {
        use sqlx::Row;
        let sql = format!(
            "SELECT seq, wrapped_dek, ciphertext FROM record_versions {} ORDER BY seq",
            if linked { "WHERE link IS NOT NULL" } else { "" }
        );
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            RawDb::Sqlite(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| SealedRow {
                    seq: r.get(0),
                    wrapped_dek: r.get(1),
                    ciphertext: r.get(2),
                })
                .collect(),
            RawDb::Postgres(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| SealedRow {
                    seq: r.get(0),
                    wrapped_dek: r.get(1),
                    ciphertext: r.get(2),
                })
                .collect(),
        }
    }

    /// Overwrites `column` (`wrapped_dek` or `ciphertext`) of the row `seq`.
    pub async fn set_sealed(&self, column: &str, seq: i64, bytes: &[u8]) {
        assert!(column == "wrapped_dek" || column == "ciphertext");
        match self {
            RawDb::Sqlite(p) => {
                let sql = format!("UPDATE record_versions SET {column} = ? WHERE seq = ?");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bytes)
                    .bind(seq)
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected())
            }
            RawDb::Postgres(p) => {
                let sql = format!("UPDATE record_versions SET {column} = $1 WHERE seq = $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bytes)
                    .bind(seq)
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected())
            }
        }
        .map(|n| assert_eq!(n, 1))
        .unwrap();
    }

    /// An all-zero 32-byte blob, in this backend's SQL.
    pub fn zero_blob(&self) -> &'static str {
        match self {
            RawDb::Sqlite(_) => "zeroblob(32)",
            RawDb::Postgres(_) => "decode(repeat('00', 32), 'hex')",
        }
    }

    /// Takes an exclusive lock that keeps every other writer (and, on PostgreSQL, reader) of
    /// `table` waiting, as another process holding the database would; [`Held::release`] ends it.
    pub async fn lock_exclusive(&self, table: &str) -> Held {
        match self {
            RawDb::Sqlite(p) => {
                let mut c = p.acquire().await.unwrap();
                sqlx::raw_sql("BEGIN EXCLUSIVE")
                    .execute(&mut *c)
                    .await
                    .unwrap();
                Held::Sqlite(c)
            }
            RawDb::Postgres(p) => {
                let mut c = p.acquire().await.unwrap();
                let sql = format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *c)
                    .await
                    .unwrap();
                Held::Postgres(c)
            }
        }
    }

    pub async fn close(self) {
        match self {
            RawDb::Sqlite(p) => p.close().await,
            RawDb::Postgres(p) => p.close().await,
        }
    }
}

impl Held {
    pub async fn release(self) {
        match self {
            Held::Sqlite(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut *c).await.unwrap();
            }
            Held::Postgres(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut *c).await.unwrap();
            }
        }
    }
}

/// Every byte the store `store` of the vault in `dir` keeps: its SQLite file and write-ahead
/// log, or a `pg_dump` of its schema followed by the bytes of every bytea value in it (the dump
/// writes them as hex, in which a raw-bytes needle would never be found).
pub fn store_bytes(dir: &Path, store: &str) -> Vec<u8> {
    match super::test_database(dir) {
        None => {
            let mut out = Vec::new();
            for suffix in ["", "-wal"] {
                if let Ok(b) = std::fs::read(dir.join(format!("{store}.db{suffix}"))) {
                    out.extend(b);
                }
            }
            assert!(!out.is_empty(), "no {store}.db in {}", dir.display());
            out
        }
        Some(db) => {
            let out = std::process::Command::new("pg_dump")
                .args(["--no-owner", "--schema", &format!("{}_{store}", db.prefix)])
                .arg(&db.url)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut bytes = out.stdout.clone();
            for value in bytea_values(&out.stdout) {
                bytes.push(0);
                bytes.extend(value);
            }
            bytes
        }
    }
}

/// The values of the bytea literals (`\x` and an even run of hex digits) in a `pg_dump`.
fn bytea_values(dump: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < dump.len() {
        if dump[i] != b'\\' || dump[i + 1] != b'x' {
            i += 1;
            continue;
        }
        let start = i + 2;
        let mut end = start;
        while end < dump.len() && dump[end].is_ascii_hexdigit() {
            end += 1;
        }
        let run = &dump[start..start + (end - start) / 2 * 2];
        if let Some(value) = super::unhex(run).filter(|v| !v.is_empty()) {
            out.push(value);
        }
        i = end;
    }
    out
}
