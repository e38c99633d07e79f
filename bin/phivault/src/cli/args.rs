//! The arguments several commands share: the database, the data dir, the organization, the
//! TLS files, and where a listing looks.
use crate::datadir;
use clap::Args;
use std::path::PathBuf;

/// Where the stores live: SQLite files in the data dir (the default), or PostgreSQL.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL for every store (`postgres://user@host/db?sslmode=verify-full`). Put a
    /// password in PHIVAULT_DATABASE_URL, PGPASSWORD or ~/.pgpass, never on the command line.
    #[arg(
        long,
        global = true,
        env = "PHIVAULT_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Prefix of the four schemas (`<prefix>_identity`, `_clinical`, `_control`, `_audit`).
    #[arg(
        long,
        global = true,
        env = "PHIVAULT_DATABASE_SCHEMA",
        default_value = "phivault"
    )]
    pub database_schema: String,
    /// Connections per store's pool (four pools per node).
    #[arg(long, global = true, env = "PHIVAULT_DATABASE_POOL_SIZE", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub database_pool_size: u32,
    /// Milliseconds a request waits for a database connection before failing with 503.
    #[arg(long, global = true, env = "PHIVAULT_DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub database_acquire_timeout_ms: u64,
    /// Milliseconds after which the database aborts a statement (lock waits: a fifth of it).
    #[arg(long, global = true, env = "PHIVAULT_DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1000..=3_600_000))]
    pub database_statement_timeout_ms: u64,
}

impl DatabaseArgs {
    /// The database to use, or `None` for SQLite. A URL given on the command line (not through
    /// the environment) with a password in it is refused: the process list would show it.
    pub fn database(self) -> Result<Option<datadir::Database>, String> {
        let Some(url) = self.database_url.filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let url = url.trim().to_owned();
        let from_env = std::env::var("PHIVAULT_DATABASE_URL").is_ok_and(|e| e.trim() == url);
        if !from_env && url_has_password(&url) {
            return Err(
                "--database-url holds a password, which other users can read in the \
                        process list: put the URL in PHIVAULT_DATABASE_URL, or the password in \
                        PGPASSWORD or ~/.pgpass"
                    .into(),
            );
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("the database URL must start with postgres:// or postgresql://".into());
        }
        let scratch = phivault_store::postgres::snapshot::SCRATCH_PREFIX;
        if self.database_schema.starts_with(scratch) {
            return Err(format!(
                "--database-schema must not start with `{scratch}`: backup checks use such \
                 schemas as scratch and drop them"
            ));
        }
        Ok(Some(datadir::Database {
            stores: datadir::Database::store_urls(&url),
            url,
            prefix: self.database_schema,
            limits: datadir::PoolLimits {
                max_connections: self.database_pool_size,
                acquire_timeout: std::time::Duration::from_millis(self.database_acquire_timeout_ms),
                statement_timeout: std::time::Duration::from_millis(
                    self.database_statement_timeout_ms,
                ),
            },
        }))
    }
}

/// Whether a `postgres://user:password@host` URL carries a password (in its user info, or as
/// a `password=` query parameter).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let in_userinfo = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let in_query = rest
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("password=")));
    in_userinfo || in_query
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// The data directory.
    #[arg(long, env = "PHIVAULT_DATA_DIR", default_value = "./phivault-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct OrgArgs {
    /// The organization to act in (default: the only one).
    #[arg(long, env = "PHIVAULT_ORG")]
    pub org: Option<String>,
}

#[derive(Debug, Args)]
pub struct TlsArgs {
    /// PEM certificate chain (default: the data dir's development certificate).
    #[arg(long, env = "PHIVAULT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key, mode 0600.
    #[arg(long, env = "PHIVAULT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Where a listing looks, and how it prints.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub org: OrgArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}
