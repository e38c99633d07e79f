//! The embedded SQLite backend: one database file per store, WAL mode, `synchronous=FULL`
//! (a commit is on disk when it returns) and `secure_delete` (freed pages are zeroed, so
//! crypto-shredding leaves no wrapped key behind).
mod audit;
mod control;
mod group;
mod migrate;
pub(crate) mod records;
mod write;

pub use audit::SqliteAuditStore;
pub use control::SqliteControlStore;
pub use records::SqliteRecordStore;

use phivault_core::{StoreError, StoreKind};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const IDENTITY_DB: &str = "identity.db";
pub const CLINICAL_DB: &str = "clinical.db";
pub const AUDIT_DB: &str = "audit.db";
pub const CONTROL_DB: &str = "control.db";

pub(crate) fn unavailable(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::Unavailable {
        context,
        detail: e.to_string(),
    }
}

pub(crate) fn corrupt(context: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        context,
        detail: detail.into(),
    }
}

/// A database file with a single-connection writer pool (writes are serialized in-process, so
/// they never wait on SQLite's busy handler) and a small reader pool (WAL readers never block).
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    pub(crate) path: PathBuf,
}

impl Db {
    pub(crate) async fn open(path: &Path, create: bool) -> Result<Db, StoreError> {
        if create && !path.exists() {
            // An empty file is a valid new database; creating it first sets its mode (and so
            // that of its -wal and -shm files, which SQLite copies) to owner-only.
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            o.open(path).map_err(|e| StoreError::Unavailable {
                context: "create database file",
                detail: e.kind().to_string(),
            })?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("secure_delete", "ON");
        // No ping before each acquire: an SQLite connection is a thread in this process, so the
        // ping is one more round trip to it per query that tests nothing a query would not (a
        // crashed worker fails the query, and the pool's ping on release closes it). Without it,
        // the vault benchmark's reads by id at 8-128 callers ran 9-25% faster unaudited and
        // 6-23% faster audited (2026-12-04; the audit's relative cost rose a little).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(unavailable("open database"))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .map_err(unavailable("open database"))?;
        Ok(Db {
            writer,
            reader,
            path: path.to_owned(),
        })
    }

    pub(crate) async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// All SQLite stores of a data dir.
#[derive(Debug, Clone)]
pub struct SqliteStores {
    pub identity: Arc<SqliteRecordStore>,
    pub clinical: Arc<SqliteRecordStore>,
    pub control: Arc<SqliteControlStore>,
    pub audit: Arc<SqliteAuditStore>,
}

impl SqliteStores {
    /// Opens (or, with `create`, creates) the four database files in `dir` and brings their
    /// schemas up to date. Fails if a schema is newer than this build knows.
    pub async fn open(dir: &Path, create: bool) -> Result<SqliteStores, StoreError> {
        let identity = Db::open(&dir.join(IDENTITY_DB), create).await?;
        migrate::run(&identity, "identity", migrate::RECORDS).await?;
        let clinical = Db::open(&dir.join(CLINICAL_DB), create).await?;
        migrate::run(&clinical, "clinical", migrate::RECORDS).await?;
        let audit = Db::open(&dir.join(AUDIT_DB), create).await?;
        migrate::run(&audit, "audit", migrate::AUDIT).await?;
        let control = Db::open(&dir.join(CONTROL_DB), create).await?;
        migrate::run(&control, "control", migrate::CONTROL).await?;
        Ok(SqliteStores {
            identity: Arc::new(SqliteRecordStore::new(identity, StoreKind::Identity)),
            clinical: Arc::new(SqliteRecordStore::new(clinical, StoreKind::Clinical)),
            control: Arc::new(SqliteControlStore::new(control)),
            audit: Arc::new(SqliteAuditStore::new(audit)),
        })
    }

    /// Closes every pool, checkpointing the WAL files.
    pub async fn close(&self) {
        self.identity.close().await;
        self.clinical.close().await;
        self.control.close().await;
        self.audit.close().await;
    }
}

/// The order [`snapshot_into`] copies the stores in: the data stores first, then the control
/// store (so every KEK a copied record needs is in the copied keyring), the audit store last
/// (an event is durable before its change commits, so every change in the copy has its event).
pub const SNAPSHOT_ORDER: [&str; 4] = [IDENTITY_DB, CLINICAL_DB, CONTROL_DB, AUDIT_DB];

/// Copies the four database files of the vault in `src` into `dst` (which must not hold
/// them) with `VACUUM INTO`: each copy is a consistent snapshot taken through a read-only
/// connection, online, while other processes keep writing; the copies are compact and hold
/// none of the originals' freed pages.
pub async fn snapshot_into(src: &Path, dst: &Path) -> Result<(), StoreError> {
    let ctx = "snapshot";
    for name in SNAPSHOT_ORDER {
        let target = dst.join(name);
        let target = target
            .to_str()
            .ok_or_else(|| corrupt(ctx, "the snapshot path is not UTF-8"))?
            .to_owned();
        let opts = SqliteConnectOptions::new()
            .filename(src.join(name))
            .read_only(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(unavailable(ctx))?;
        let result = sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&pool)
            .await
            .map_err(unavailable(ctx));
        pool.close().await;
        result?;
    }
    Ok(())
}
