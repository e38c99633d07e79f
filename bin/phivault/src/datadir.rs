//! A data dir: `keys/root.key` (the passphrase-sealed root key) — or `keys/root.pkcs11`, a
//! note that the root key is an AES key inside a PKCS#11 token — and the SQLite stores
//! `identity.db`, `clinical.db`, `audit.db`, `control.db` — or, with `PHIVAULT_DATABASE_URL`,
//! the same four stores in PostgreSQL schemas (`<prefix>_identity`, `_clinical`, `_control`,
//! `_audit`; prefix `PHIVAULT_DATABASE_SCHEMA`, default `phivault`) while the root key stays in
//! the data dir, never in the database. This module wires the key provider, the stores and the
//! vault together; it is the only place that knows all three.
use phivault_core::{
    AuditStore, Clock, ControlStore, OrgId, Organization, RecordStore, StoreError,
};
use phivault_crypto::pkcs11::{ExistingKey, Pkcs11Config, Pkcs11Provider};
use phivault_crypto::{CryptoError, KeyfileProvider, Keyring, Passphrase, RootKeyProvider};
use phivault_store::SqliteStores;
pub use phivault_store::postgres::{PoolLimits, StoreUrls};
use phivault_store::sqlite::{AUDIT_DB, CLINICAL_DB, CONTROL_DB, IDENTITY_DB};
use phivault_vault::Vault;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use thiserror::Error;

pub const KEYS_DIR: &str = "keys";
pub const ROOT_KEY: &str = "root.key";
/// In place of `root.key` when the root key is in a PKCS#11 token: which token and key (no
/// secret; the key never leaves the token).
pub const ROOT_KEY_PKCS11: &str = "root.pkcs11";
pub const DB_FILES: [&str; 4] = [IDENTITY_DB, CLINICAL_DB, AUDIT_DB, CONTROL_DB];
const INITIALIZED: &str = "initialized";
pub const DEFAULT_ORG: &str = "default";

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("{0} already holds a phivault vault; init changes nothing")]
    AlreadyInitialized(PathBuf),
    #[error("no phivault vault at {0} (run `phivault init --data-dir {0}` first)")]
    NotAVault(PathBuf),
    #[error("the vault at {0} is incomplete (missing {1}); restore it from a backup")]
    Incomplete(PathBuf, String),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::ErrorKind),
    #[error("organization '{0}' does not exist")]
    UnknownOrg(String),
    #[error("this vault has several organizations ({0}); choose one with --org")]
    AmbiguousOrg(String),
    #[error("this vault has no organization")]
    NoOrg,
    #[error("invalid organization id: {0}")]
    BadOrg(String),
    #[error("{0}")]
    Policy(String),
    #[error("the root key of the vault at {0} is {1}, but {2} was given")]
    WrongRootKey(PathBuf, &'static str, &'static str),
}

/// Where a vault's root key comes from.
#[derive(Debug)]
pub enum RootKey {
    /// `keys/root.key`, sealed under the operator's passphrase.
    Passphrase(Passphrase),
    /// An AES key inside a PKCS#11 token. `existing` says what `init` does with a key that
    /// already has the label (opening ignores it).
    Pkcs11 {
        config: Pkcs11Config,
        existing: ExistingKey,
    },
}

impl RootKey {
    /// `keyfile` or `pkcs11`, as the control store records it.
    pub fn provider_name(&self) -> &'static str {
        match self {
            RootKey::Passphrase(_) => "keyfile",
            RootKey::Pkcs11 { .. } => "pkcs11",
        }
    }
}

/// A borrowed [`RootKey`]; a `&Passphrase` converts into one.
#[derive(Debug, Clone, Copy)]
pub enum RootKeyRef<'a> {
    Passphrase(&'a Passphrase),
    Pkcs11(&'a Pkcs11Config, ExistingKey),
}

impl<'a> From<&'a Passphrase> for RootKeyRef<'a> {
    fn from(p: &'a Passphrase) -> Self {
        RootKeyRef::Passphrase(p)
    }
}

impl<'a> From<&'a RootKey> for RootKeyRef<'a> {
    fn from(r: &'a RootKey) -> Self {
        match r {
            RootKey::Passphrase(p) => RootKeyRef::Passphrase(p),
            RootKey::Pkcs11 { config, existing } => RootKeyRef::Pkcs11(config, *existing),
        }
    }
}

/// Which kind of root key a data dir's vault uses, from its `keys/` directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKeyKind {
    Keyfile,
    Pkcs11,
}

const KEYFILE_TEXT: &str = "keys/root.key, sealed by a passphrase";
const PKCS11_TEXT: &str = "in a PKCS#11 token (keys/root.pkcs11)";

/// The kind of root key of the vault in `dir`, if `dir` holds one.
pub fn root_key_kind(dir: &Path) -> Option<RootKeyKind> {
    if root_key_path(dir).exists() {
        Some(RootKeyKind::Keyfile)
    } else if pkcs11_marker_path(dir).exists() {
        Some(RootKeyKind::Pkcs11)
    } else {
        None
    }
}

fn pkcs11_marker_path(dir: &Path) -> PathBuf {
    dir.join(KEYS_DIR).join(ROOT_KEY_PKCS11)
}

/// Writes `keys/root.pkcs11` (mode 0600, never overwriting): which token and key hold the
/// root key, for operators and backups. Opening takes the token and key from the
/// configuration; this file only says that the root key is not in the data dir.
fn write_pkcs11_marker(dir: &Path, p: &Pkcs11Provider) -> Result<(), DataDirError> {
    use std::io::Write;
    let path = pkcs11_marker_path(dir);
    let io = |e: std::io::Error| DataDirError::Io(path.clone(), e.kind());
    let text = serde_json::to_vec_pretty(&serde_json::json!({
        "format": "phivault-root-key-pkcs11",
        "version": 1,
        "token_label": p.token_label(),
        "key_label": p.key_label(),
        "note": "the root key is an AES-256 key inside this PKCS#11 token and never leaves it",
    }))
    .map_err(|_| DataDirError::Io(path.clone(), std::io::ErrorKind::InvalidData))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.sync_all().map_err(io)
}

/// The root key provider `init` made, kept to undo a generated HSM key if `init` fails.
enum Made {
    Keyfile(KeyfileProvider),
    Pkcs11 {
        provider: Pkcs11Provider,
        generated: bool,
    },
}

impl Made {
    fn provider(&self) -> &dyn RootKeyProvider {
        match self {
            Made::Keyfile(p) => p,
            Made::Pkcs11 { provider, .. } => provider,
        }
    }
}

fn root_key_path(dir: &Path) -> PathBuf {
    dir.join(KEYS_DIR).join(ROOT_KEY)
}

/// Whether `dir` holds any part of a vault.
pub fn holds_vault(dir: &Path) -> bool {
    root_key_kind(dir).is_some() || DB_FILES.iter().any(|f| dir.join(f).exists())
}

fn mkdir_private(path: &Path) -> Result<(), DataDirError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
        .map_err(|e| DataDirError::Io(path.to_owned(), e.kind()))
}

/// Creates a new vault in `dir`: root key (a passphrase-sealed key file, or a key generated in
/// a PKCS#11 token), keyring, stores, the `default` organization.
/// Refuses, changing nothing, if `dir` already holds a vault. On failure, removes what it made.
pub async fn init<'a>(
    dir: &Path,
    root: impl Into<RootKeyRef<'a>>,
    clock: &dyn Clock,
) -> Result<(), DataDirError> {
    init_on(dir, root, clock, Database::from_env().as_ref()).await
}

/// [`init`] with the stores in `db` (PostgreSQL) instead of the data dir.
pub async fn init_on<'a>(
    dir: &Path,
    root: impl Into<RootKeyRef<'a>>,
    clock: &dyn Clock,
    db: Option<&Database>,
) -> Result<(), DataDirError> {
    if holds_vault(dir) {
        return Err(DataDirError::AlreadyInitialized(dir.to_owned()));
    }
    mkdir_private(&dir.join(KEYS_DIR))?;
    let made = match root.into() {
        RootKeyRef::Passphrase(pass) => {
            KeyfileProvider::create(&root_key_path(dir), pass).map(Made::Keyfile)
        }
        RootKeyRef::Pkcs11(config, existing) => Pkcs11Provider::create(config, existing)
            .map(|(provider, generated)| Made::Pkcs11 {
                provider,
                generated,
            })
            .map_err(CryptoError::from),
    }?;
    let result = init_inner(dir, &made, clock, db).await;
    if result.is_err() {
        // Leave no half-made vault behind (only files this call created can exist here).
        let _ = std::fs::remove_file(root_key_path(dir));
        let _ = std::fs::remove_file(pkcs11_marker_path(dir));
        if let Made::Pkcs11 {
            provider,
            generated: true,
        } = made
        {
            // Nothing was sealed under the key this call generated: destroy it, so that
            // `init` can be run again.
            let _ = provider.destroy_key();
        }
        for f in DB_FILES {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(dir.join(format!("{f}{suffix}")));
            }
        }
    }
    result
}

async fn init_inner(
    dir: &Path,
    made: &Made,
    clock: &dyn Clock,
    db: Option<&Database>,
) -> Result<(), DataDirError> {
    if let Made::Pkcs11 { provider, .. } = made {
        write_pkcs11_marker(dir, provider)?;
    }
    let provider = made.provider();
    let stores = Backend::open(dir, true, db).await?;
    if stores.control.get_setting(INITIALIZED).await?.as_deref() == Some("1") {
        // A database that already holds a vault (another data dir's): change nothing.
        stores.close().await;
        return Err(DataDirError::AlreadyInitialized(dir.to_owned()));
    }
    let (_, entries) = Keyring::generate(provider, clock.now_millis())?;
    let control = stores.control.clone();
    control.add_keyring_entries(&entries).await?;
    let org = OrgId::parse(DEFAULT_ORG).map_err(|e| DataDirError::BadOrg(e.to_string()))?;
    control
        .create_organization(&Organization {
            id: org.clone(),
            name: DEFAULT_ORG.into(),
            created_at: clock.now_millis(),
        })
        .await?;
    // A new organization holds no record: nothing to reindex at the first start.
    control
        .put_setting(
            &phivault_vault::search::index_setting(&org),
            phivault_vault::search::SEARCH_INDEX_VERSION,
        )
        .await?;
    control
        .put_setting("root_key_provider", provider.describe())
        .await?;
    control.put_setting(INITIALIZED, "1").await?;
    stores.close().await;
    Ok(())
}

/// A PostgreSQL database for the stores: its URL, the schema prefix and the pool's limits.
#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    pub prefix: String,
    pub limits: PoolLimits,
    /// A URL per store (`PHIVAULT_DATABASE_URL_IDENTITY`, `_CLINICAL`, `_CONTROL`, `_AUDIT`),
    /// each defaulting to `url`: separate databases, or a role per store.
    pub stores: StoreUrls,
}

/// The database the command line chose (`--database-url` and friends), set once at start.
static CONFIGURED: OnceLock<Option<Database>> = OnceLock::new();

impl Database {
    /// `url` with schema prefix `prefix` and the default pool limits.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Database {
        let url = url.into();
        Database {
            stores: Self::store_urls(&url),
            url,
            prefix: prefix.into(),
            limits: PoolLimits::default(),
        }
    }

    /// Each store's URL: `PHIVAULT_DATABASE_URL_<STORE>` if set, else `url`.
    pub fn store_urls(url: &str) -> StoreUrls {
        let of = |store: &str| {
            std::env::var(format!("PHIVAULT_DATABASE_URL_{store}"))
                .ok()
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| url.to_owned())
        };
        StoreUrls {
            identity: of("IDENTITY"),
            clinical: of("CLINICAL"),
            control: of("CONTROL"),
            audit: of("AUDIT"),
        }
    }

    /// Records the command line's choice; [`Database::from_env`] returns it from then on.
    pub fn configure(db: Option<Database>) {
        let _ = CONFIGURED.set(db);
    }

    /// The configured database: the command line's (see [`Database::configure`]), else
    /// `PHIVAULT_DATABASE_URL` (and `PHIVAULT_DATABASE_SCHEMA`), if set.
    pub fn from_env() -> Option<Database> {
        if let Some(db) = CONFIGURED.get() {
            return db.clone();
        }
        let url = std::env::var("PHIVAULT_DATABASE_URL").ok()?;
        if url.trim().is_empty() {
            return None;
        }
        let prefix = std::env::var("PHIVAULT_DATABASE_SCHEMA")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "phivault".into());
        Some(Database::new(url.trim(), prefix))
    }
}

/// The four stores of a vault, on SQLite files or on PostgreSQL.
#[derive(Debug, Clone)]
pub struct Backend {
    pub identity: Arc<dyn RecordStore>,
    pub clinical: Arc<dyn RecordStore>,
    pub control: Arc<dyn ControlStore>,
    pub audit: Arc<dyn AuditStore>,
    sqlite: Option<SqliteStores>,
    postgres: Option<phivault_store::postgres::PostgresStores>,
}

impl Backend {
    /// SQLite files in `dir`, or the PostgreSQL database `db`.
    pub async fn open(
        dir: &Path,
        create: bool,
        db: Option<&Database>,
    ) -> Result<Backend, DataDirError> {
        match db {
            Some(db) => Self::postgres(db).await,
            None => {
                let s = SqliteStores::open(dir, create).await?;
                Ok(Backend {
                    identity: s.identity.clone(),
                    clinical: s.clinical.clone(),
                    control: s.control.clone(),
                    audit: s.audit.clone(),
                    sqlite: Some(s),
                    postgres: None,
                })
            }
        }
    }

    async fn postgres(db: &Database) -> Result<Backend, DataDirError> {
        let p =
            phivault_store::postgres::PostgresStores::open_each(&db.stores, &db.prefix, db.limits)
                .await?;
        Ok(Backend {
            identity: p.identity.clone(),
            clinical: p.clinical.clone(),
            control: p.control.clone(),
            audit: p.audit.clone(),
            sqlite: None,
            postgres: Some(p),
        })
    }

    /// Whether the stores are on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// The PostgreSQL stores, if that is where the vault is.
    pub fn postgres_stores(&self) -> Option<&phivault_store::postgres::PostgresStores> {
        self.postgres.as_ref()
    }

    pub async fn close(&self) {
        if let Some(s) = &self.sqlite {
            s.close().await;
        }
        if let Some(p) = &self.postgres {
            p.close().await;
        }
    }
}

/// An opened vault and what it runs on.
#[derive(Debug)]
pub struct Opened {
    pub vault: Vault,
    pub stores: Backend,
    /// The operator's authority: this process opened the vault with its root key.
    pub operator: Arc<phivault_vault::Operator>,
}

impl Opened {
    /// The organization to act in: `--org` if given, else the only one.
    pub async fn org(&self, requested: Option<&str>) -> Result<OrgId, DataDirError> {
        let orgs = self.stores.control.organizations().await?;
        match requested {
            Some(r) => {
                let id = OrgId::parse(r).map_err(|e| DataDirError::BadOrg(e.to_string()))?;
                if orgs.iter().any(|o| o.id == id) {
                    Ok(id)
                } else {
                    Err(DataDirError::UnknownOrg(r.to_owned()))
                }
            }
            None => match orgs.as_slice() {
                [one] => Ok(one.id.clone()),
                [] => Err(DataDirError::NoOrg),
                many => Err(DataDirError::AmbiguousOrg(
                    many.iter()
                        .map(|o| o.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            },
        }
    }

    pub async fn close(&self) {
        self.stores.close().await;
    }
}

/// Opens the vault in `dir`. The root key is checked (the passphrase against `keys/root.key`,
/// or the PKCS#11 token, PIN and key) before any database is opened, so a wrong passphrase or
/// a missing token leaves the data dir byte-for-byte unchanged.
pub async fn open<'a>(
    dir: &Path,
    root: impl Into<RootKeyRef<'a>>,
    clock: Arc<dyn Clock>,
) -> Result<Opened, DataDirError> {
    open_on(dir, root, clock, Database::from_env().as_ref()).await
}

/// [`open`] with the stores in `db` (PostgreSQL) instead of the data dir.
pub async fn open_on<'a>(
    dir: &Path,
    root: impl Into<RootKeyRef<'a>>,
    clock: Arc<dyn Clock>,
    db: Option<&Database>,
) -> Result<Opened, DataDirError> {
    let provider = root_provider(dir, root.into())?;
    for f in DB_FILES {
        if db.is_none() && !dir.join(f).exists() {
            return Err(DataDirError::Incomplete(dir.to_owned(), f.to_owned()));
        }
    }
    let stores = Backend::open(dir, false, db).await?;
    if stores.control.get_setting(INITIALIZED).await?.as_deref() != Some("1") {
        stores.close().await;
        return Err(DataDirError::Incomplete(
            dir.to_owned(),
            "a finished init".into(),
        ));
    }
    let recorded = stores.control.get_setting("root_key_provider").await?;
    if let Some(r) = recorded.filter(|r| r != provider.describe()) {
        stores.close().await;
        return Err(DataDirError::Incomplete(
            dir.to_owned(),
            format!("the {r} root key its control store names"),
        ));
    }
    let entries = stores.control.keyring().await?;
    let keyring = match Keyring::load(provider.as_ref(), &entries) {
        Ok(k) => k,
        Err(e) => {
            stores.close().await;
            return Err(e.into());
        }
    };
    let operator = Arc::new(phivault_vault::Operator::new(
        &keyring,
        &crate::config::os_user(),
    ));
    let vault = Vault::new(
        Arc::new(keyring),
        phivault_vault::Stores {
            identity: stores.identity.clone(),
            clinical: stores.clinical.clone(),
            control: stores.control.clone(),
            audit: stores.audit.clone(),
        },
        clock,
    )
    // So KEK versions a rotation adds (here or on another node) can be loaded while running.
    .with_root_key(Arc::from(provider));
    let vault = match field_policy_from_env() {
        Ok(None) => vault,
        Ok(Some(p)) => vault.with_field_policy(p),
        Err(e) => {
            stores.close().await;
            return Err(e);
        }
    };
    Ok(Opened {
        vault,
        stores,
        operator,
    })
}

/// The provider of the vault's root key, opened with what the operator gave; refuses a key
/// of the other kind than the one the vault was made with.
fn root_provider(
    dir: &Path,
    root: RootKeyRef<'_>,
) -> Result<Box<dyn RootKeyProvider>, DataDirError> {
    let wrong = |vault, given| DataDirError::WrongRootKey(dir.to_owned(), vault, given);
    Ok(match (root_key_kind(dir), root) {
        (None, _) => return Err(DataDirError::NotAVault(dir.to_owned())),
        (Some(RootKeyKind::Keyfile), RootKeyRef::Passphrase(pass)) => {
            Box::new(KeyfileProvider::open(&root_key_path(dir), pass)?)
        }
        (Some(RootKeyKind::Pkcs11), RootKeyRef::Pkcs11(config, _)) => {
            Box::new(Pkcs11Provider::open(config).map_err(CryptoError::from)?)
        }
        (Some(RootKeyKind::Keyfile), RootKeyRef::Pkcs11(..)) => {
            return Err(wrong(KEYFILE_TEXT, "a PKCS#11 token (PHIVAULT_PKCS11_*)"));
        }
        (Some(RootKeyKind::Pkcs11), RootKeyRef::Passphrase(_)) => {
            return Err(wrong(PKCS11_TEXT, "a passphrase"));
        }
    })
}

/// The field release policy of `PHIVAULT_POLICY_FILE`, when it is set.
fn field_policy_from_env()
-> Result<Option<phivault_vault::policy::fields::FieldPolicy>, DataDirError> {
    let Some(path) = std::env::var_os("PHIVAULT_POLICY_FILE") else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| DataDirError::Io(path.clone().into(), e.kind()))?;
    phivault_vault::policy::fields::FieldPolicy::from_toml(&text)
        .map(Some)
        .map_err(DataDirError::Policy)
}

/// Re-seals `keys/root.key` under `new` (after opening it with `old`), atomically; the root
/// key and the keyring are unchanged. Only for a passphrase-sealed root key.
pub fn change_passphrase(
    dir: &Path,
    old: &Passphrase,
    new: &Passphrase,
) -> Result<(), CryptoError> {
    let path = root_key_path(dir);
    KeyfileProvider::open(&path, old)?.reseal(&path, new)
}
