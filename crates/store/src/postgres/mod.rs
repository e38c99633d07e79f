//! PostgreSQL implementations of the store ports (issue 8, in steps): each store lives in its
//! own schema, so a database role can be given one store and not the others. Pools are
//! bounded and time out; an unreachable database is `StoreError::Unavailable`, which the API
//! answers with 503, and the pool reconnects by itself when the database returns.
mod audit;
mod control;
mod migrate;
pub(crate) mod records;
pub mod snapshot;

pub use audit::PostgresAuditStore;
pub use control::PostgresControlStore;
pub use records::PostgresRecordStore;
pub use sqlx::postgres::PgPool;

use phivault_core::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

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

/// Pool limits and timeouts. Every wait is bounded, so a database outage or a held lock makes
/// a request fail (503) instead of hanging.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Connections per store's pool.
    pub max_connections: u32,
    /// How long a request waits for a connection (and for a connection to be made).
    pub acquire_timeout: Duration,
    /// The server aborts a statement running longer than this (`statement_timeout`), and a
    /// lock wait longer than a fifth of it (`lock_timeout`, at least 1 s).
    pub statement_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// A bounded pool on `url` (`postgres://…`; `sslmode` as the URL says).
pub async fn connect(url: &str, limits: PoolLimits) -> Result<PgPool, StoreError> {
    let statement_ms = limits.statement_timeout.as_millis().max(1);
    let lock_ms = (statement_ms / 5).max(1000).min(statement_ms);
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| StoreError::Unavailable {
            context: "connect to PostgreSQL",
            // The URL may hold a password: never echo it.
            detail: "PHIVAULT_DATABASE_URL is not a valid postgres:// URL".into(),
        })?
        .options([
            ("statement_timeout", statement_ms.to_string()),
            ("lock_timeout", lock_ms.to_string()),
            (
                "idle_in_transaction_session_timeout",
                statement_ms.to_string(),
            ),
        ]);
    PgPoolOptions::new()
        .max_connections(limits.max_connections)
        .acquire_timeout(limits.acquire_timeout)
        .test_before_acquire(true)
        .connect_with(options)
        .await
        .map_err(unavailable("connect to PostgreSQL"))
}

/// A schema name: lower-case letters, digits and '_', starting with a letter.
pub(crate) fn check_schema(s: &str) -> Result<&str, StoreError> {
    let ok = s.len() <= 48
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(s)
    } else {
        Err(corrupt("schema", "not a valid schema name"))
    }
}

/// The connection URL of each store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrls {
    pub identity: String,
    pub clinical: String,
    pub control: String,
    pub audit: String,
}

/// The four stores of a vault on one PostgreSQL database, each in its own schema
/// (`<prefix>_identity`, `_clinical`, `_control`, `_audit`).
#[derive(Debug, Clone)]
pub struct PostgresStores {
    pub identity: std::sync::Arc<PostgresRecordStore>,
    pub clinical: std::sync::Arc<PostgresRecordStore>,
    pub control: std::sync::Arc<PostgresControlStore>,
    pub audit: std::sync::Arc<PostgresAuditStore>,
    pools: Vec<PgPool>,
    prefix: String,
    one_database: bool,
}

impl PostgresStores {
    /// Connects and brings every store's schema up to date. Each store has a pool of its own:
    /// a record write holds its connection while its audit event is appended, so sharing one
    /// pool would let busy writers starve the audit appends they wait for.
    pub async fn open(url: &str, prefix: &str, limits: PoolLimits) -> Result<Self, StoreError> {
        let urls = StoreUrls {
            identity: url.to_owned(),
            clinical: url.to_owned(),
            control: url.to_owned(),
            audit: url.to_owned(),
        };
        Self::open_each(&urls, prefix, limits).await
    }

    /// [`PostgresStores::open`] with a URL per store: another database, or another role that
    /// has rights on its own store's schema only.
    pub async fn open_each(
        urls: &StoreUrls,
        prefix: &str,
        limits: PoolLimits,
    ) -> Result<Self, StoreError> {
        let schema = |store: &str| format!("{prefix}_{store}");
        let identity = connect(&urls.identity, limits).await?;
        let clinical = connect(&urls.clinical, limits).await?;
        let control = connect(&urls.control, limits).await?;
        let audit = connect(&urls.audit, limits).await?;
        Ok(Self {
            identity: std::sync::Arc::new(
                PostgresRecordStore::open(identity.clone(), &schema("identity")).await?,
            ),
            clinical: std::sync::Arc::new(
                PostgresRecordStore::open(clinical.clone(), &schema("clinical")).await?,
            ),
            control: std::sync::Arc::new(
                PostgresControlStore::open(control.clone(), &schema("control")).await?,
            ),
            audit: std::sync::Arc::new(
                PostgresAuditStore::open(audit.clone(), &schema("audit")).await?,
            ),
            pools: vec![identity, clinical, control, audit],
            prefix: prefix.to_owned(),
            one_database: urls.identity == urls.clinical
                && urls.clinical == urls.control
                && urls.control == urls.audit,
        })
    }

    /// The schema prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A pool that reaches all four schemas (they share one database), for a consistent
    /// snapshot; `None` when the stores have URLs of their own.
    pub fn whole_database(&self) -> Option<&PgPool> {
        if self.one_database {
            self.pools.get(2)
        } else {
            None
        }
    }

    pub async fn close(&self) {
        for p in &self.pools {
            p.close().await;
        }
    }
}

/// Turns `?` placeholders into PostgreSQL's `$1, $2, …` (no `?` appears in these statements
/// otherwise).
pub(crate) fn number_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}
