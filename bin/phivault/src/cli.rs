//! The `phivault` command line.
use crate::config;
use crate::datadir::{self, Opened};
use clap::{Args, Parser, Subcommand};
use phivault_core::{Clock, ResourceId, StoreKind, SystemClock};
use phivault_vault::{Ctx, ImportOptions, ImportReport, PageCursor, PatientQuery, VaultError};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "phivault",
    version,
    about = "A self-hostable, HIPAA-grade vault for protected health information"
)]
pub struct Cli {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(subcommand)]
    pub command: Command,
}

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new vault: root key sealed by the passphrase (or made in a PKCS#11 token when
    /// PHIVAULT_PKCS11_* is set), keyring, stores, organization `default`.
    Init {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        tls: TlsArgs,
        /// With PHIVAULT_PKCS11_*: use the key the token already holds under
        /// PHIVAULT_PKCS11_KEY_LABEL (it must be AES-256, sensitive, not extractable) instead of
        /// generating one; without this flag init refuses an existing key.
        #[arg(long)]
        pkcs11_use_existing_key: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Import FHIR R4 Bundles (collection, transaction, batch) or single resources.
    Import {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// Stop at the first bad entry (the default skips it and goes on).
        #[arg(long)]
        strict: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// JSON files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Export the whole dataset of an organization, decrypted, as a FHIR Bundle (mode 0600);
    /// `export deid` writes a de-identified export instead.
    #[command(subcommand_negates_reqs = true)]
    Export {
        #[command(subcommand)]
        what: Option<crate::deid_cmd::ExportCmd>,
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// Output file; refused if it exists, unless --force.
        #[arg(long, required = true)]
        out: Option<PathBuf>,
        /// Overwrite an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Search patients by blind index; prints a FHIR searchset Bundle.
    Search {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// `system|value`, `|value` or `value`.
        #[arg(long)]
        identifier: Option<String>,
        /// Family name (with --birthdate).
        #[arg(long)]
        family: Option<String>,
        /// Birth date YYYY-MM-DD (with --family).
        #[arg(long)]
        birthdate: Option<String>,
        /// Phone number.
        #[arg(long)]
        phone: Option<String>,
    },
    /// Erase data by crypto-shredding.
    Erase {
        #[command(subcommand)]
        what: EraseWhat,
    },
    /// Serve the HTTPS API (TLS 1.2+ only, HSTS). `--dev` creates ./phivault-data on first run.
    Serve {
        #[command(flatten)]
        dir: DirArgs,
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, env = "PHIVAULT_LISTEN", default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// Development mode: on first run, initialize the data dir with a generated passphrase
        /// kept in a 0600 file beside it. Not for real data.
        #[arg(long)]
        dev: bool,
        #[command(flatten)]
        tls: TlsArgs,
        /// Address of the MLLP (HL7 v2) listener, or `off`. TLS unless PHIVAULT_MLLP_TLS=off;
        /// sources from PHIVAULT_MLLP_ALLOW (CIDR, default 127.0.0.1/32).
        #[arg(long, env = "PHIVAULT_MLLP_LISTEN", default_value = "127.0.0.1:2575")]
        mllp_listen: String,
        /// The HL7 interfaces (client certificate DNS name -> interface): `name=dns.name,...`
        /// or the path of a TOML file (see README, HL7 v2 over MLLP).
        #[arg(long, env = "PHIVAULT_MLLP_INTERFACES")]
        mllp_interfaces: Option<String>,
    },
    /// Bring the stores' schemas up to date (SQLite files, or PostgreSQL with
    /// PHIVAULT_DATABASE_URL); refuses a schema newer than this binary. Needs no passphrase.
    Migrate {
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Organizations (tenants): add one, list them.
    Org {
        #[command(subcommand)]
        what: OrgCmd,
    },
    /// Manage service clients (OAuth2 client credentials for integrations): add, list,
    /// disable, enable, rotate-secret, revoke-tokens.
    Client {
        #[command(subcommand)]
        what: ClientCmd,
    },
    /// Need-to-know grants: add (or renew) one, list them, or lock every one down.
    Grants {
        #[command(subcommand)]
        what: GrantsCmd,
    },
    /// Manage users (people): add, disable, enable, reset-password, reset-mfa, list.
    User {
        #[command(subcommand)]
        what: UserCmd,
    },
    /// The audit trail: verify its chain, take a checkpoint, export it, report on it.
    Audit {
        #[command(subcommand)]
        what: AuditCmd,
    },
    /// Encrypted backups: create, verify, restore.
    Backup {
        #[command(subcommand)]
        what: crate::backup_cmd::BackupCmd,
    },
    /// Key management: rotate the KEK, its status, retire an old version, change the passphrase.
    Keys {
        #[command(subcommand)]
        what: crate::keys_cmd::KeysCmd,
    },
    /// Retention rules per organization and resource type, and the run (or dry run) that
    /// erases expired records by crypto-shredding.
    Retention {
        #[command(subcommand)]
        what: crate::retention_cmd::RetentionCmd,
    },
    /// HL7 v2: the sealed error queue of messages that were not accepted (list, show, retry,
    /// discard).
    Hl7 {
        #[command(subcommand)]
        what: crate::hl7_cmd::Hl7Cmd,
    },
    /// The compliance report, measured from the running system, and its thresholds.
    Compliance {
        #[command(subcommand)]
        what: crate::compliance_cmd::ComplianceCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    /// Register a client; prints its id and secret (the secret is shown once).
    Add {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        #[arg(long)]
        name: String,
        /// The client's role (e.g. INTEGRATION_MANAGER).
        #[arg(long)]
        role: String,
        /// Space-separated SMART v2 system scopes, e.g. "system/Patient.rs system/Observation.crs".
        #[arg(long)]
        scopes: String,
        /// Space-separated purposes of use the client acts for (default "TREAT HOPERAT").
        #[arg(long)]
        purposes: Option<String>,
        /// The purpose of use applied when a call sends no `X-Purpose-Of-Use` header (one of
        /// `--purposes`, e.g. TREAT); without it such calls are refused.
        #[arg(long)]
        default_purpose: Option<String>,
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Manage(crate::admin_cmd::ClientAdminCmd),
}

#[derive(Debug, Subcommand)]
pub enum OrgCmd {
    /// Add an organization; users, clients and patients of one never see another's.
    Add {
        #[command(flatten)]
        dir: DirArgs,
        /// Its id (letters, digits, '-', '_').
        id: String,
        /// A display name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the organizations.
    List {
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Set the organization's default purpose of use for people of a role who choose none at
    /// sign-in (their calls then need no X-Purpose-Of-Use header), or clear it.
    DefaultPurpose {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// The role, e.g. CLINICIAN.
        #[arg(long)]
        role: String,
        /// An HL7 PurposeOfUse code the role may act for, e.g. TREAT.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        purpose: Option<String>,
        /// Remove the default: people of the role must state a purpose.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantsCmd {
    /// Give (or renew) a nurse or clinician need-to-know access to a patient.
    Add {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        #[arg(long)]
        username: String,
        /// The Patient id.
        #[arg(long)]
        patient: String,
        /// HL7 purpose of use, e.g. TREAT.
        #[arg(long, default_value = "TREAT")]
        purpose: String,
        /// 1 to 60 (renewals extend it, up to 8 hours from the first grant).
        #[arg(long, default_value_t = 60)]
        minutes: i64,
    },
    /// Revoke every grant and break-glass access of the organization at once.
    Lockdown {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// List every live grant and break-glass access: who, which patient (by pseudonym only),
    /// for what, until when. JSON: `[{id, organization, username, patient_pseudonym, purpose,
    /// kind, granted_by, created_at, expires_at}]`.
    List(crate::admin_cmd::ListArgs),
    /// Let integrations grant the clinician a message names (e.g. an ADT's attending doctor).
    CareTeamRule {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// on or off
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user; prints a one-time password (shown once) that must be changed at first login.
    Add {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        #[arg(long)]
        username: String,
        /// SUPER_ADMIN, ORG_ADMIN, INTEGRATION_MANAGER, VIEWER, AUDITOR, CLINICIAN or NURSE.
        #[arg(long)]
        role: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user (its sessions end at once).
    Disable {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        username: String,
    },
    /// Enable a user again (and clear a lockout).
    Enable {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        username: String,
    },
    /// A new one-time password, to be changed at next login.
    ResetPassword {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        username: String,
        #[arg(long)]
        json: bool,
    },
    /// Forget the user's TOTP and backup codes: it enrolls again at next login.
    ResetMfa {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        username: String,
    },
    /// List the organization's users: role, MFA state, last sign-in. JSON: `[{username, role,
    /// organization, disabled, mfa, mfa_enrolled, must_change_password, last_sign_in}]`.
    List(crate::admin_cmd::ListArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AuditFormat {
    /// One JSON event per line.
    Jsonl,
    /// A FHIR R4 Bundle of AuditEvent resources.
    Fhir,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check every event's MAC chain; exit 0 with the count, or 3 naming the first bad event.
    Verify {
        #[command(flatten)]
        dir: DirArgs,
        /// A checkpoint kept elsewhere (SEQ:MAC), to detect a cut tail.
        #[arg(long)]
        checkpoint: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the current head (SEQ:MAC) of the verified chain, to keep outside the vault.
    Checkpoint {
        #[command(flatten)]
        dir: DirArgs,
        #[arg(long)]
        json: bool,
    },
    /// Export events as JSON lines or FHIR AuditEvents (standard output without --out).
    Export {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: AuditFormat,
        /// Output file (mode 0600); refused if it exists, unless --force.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        force: bool,
        /// From this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Before this time.
        #[arg(long)]
        until: Option<String>,
        /// Only this actor (e.g. cli:alice).
        #[arg(long)]
        actor: Option<String>,
        /// Only events about this patient (its FHIR id).
        #[arg(long)]
        patient: Option<String>,
    },
    /// The security officer's digest: logins, denials, break-glass, exports, unusual volume.
    Report {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// From this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EraseWhat {
    /// Destroy a patient and all its clinical records with their data keys.
    Patient {
        /// The Patient id.
        id: String,
        /// Why (for the record).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes: 0 done, 1 error, 2 done but some import entries were skipped.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = config::check_env() {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    match cli.database.database() {
        Ok(db) => datadir::Database::configure(db),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {}", e.kind());
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

pub(crate) async fn open(dir: &Path) -> Result<Opened, String> {
    let root = config::root_key(dir)?;
    datadir::open(dir, &root, clock())
        .await
        .map_err(|e| e.to_string())
}

pub(crate) async fn ctx(opened: &Opened, org: &OrgArgs) -> Result<Ctx, String> {
    let org = opened
        .org(org.org.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(opened.operator.ctx(org))
}

async fn run(cmd: Command) -> Result<ExitCode, String> {
    match cmd {
        Command::Init {
            dir,
            tls,
            pkcs11_use_existing_key,
            json,
        } => {
            let dir = dir.data_dir;
            if datadir::holds_vault(&dir) {
                return Err(datadir::DataDirError::AlreadyInitialized(dir).to_string());
            }
            let root = config::root_key_for_init(pkcs11_use_existing_key)?;
            datadir::init(&dir, &root, clock().as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if tls.tls_cert.is_none() {
                let cert = crate::tls::write_dev_cert(&dir)?;
                eprintln!(
                    "wrote a self-signed development certificate for localhost: {} \
                     (set PHIVAULT_TLS_CERT and PHIVAULT_TLS_KEY for a real one)",
                    cert.display()
                );
            }
            if json {
                println!(
                    "{}",
                    json!({"data_dir": dir.display().to_string(), "organization": datadir::DEFAULT_ORG,
                           "root_key_provider": root.provider_name()})
                );
            } else {
                let keep = match &root {
                    datadir::RootKey::Passphrase(_) => "keep the passphrase safe".to_owned(),
                    datadir::RootKey::Pkcs11 { config, .. } => format!(
                        "its root key is the key '{}' in the PKCS#11 token '{}'; keep the token \
                         and its PIN safe",
                        config.key_label, config.token_label
                    ),
                };
                println!(
                    "initialized a vault in {} (organization '{}'); {keep}: \
                     without it nothing in the vault can be opened",
                    dir.display(),
                    datadir::DEFAULT_ORG
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            dir,
            org,
            strict,
            json,
            files,
        } => {
            let opened = open(&dir.data_dir).await?;
            let result = import(&opened, &org, strict, &files).await;
            opened.close().await;
            let report = result?;
            if json {
                let skipped: Vec<Value> = report
                    .skipped
                    .iter()
                    .map(|s| json!({"entry": s.entry, "reason": s.reason}))
                    .collect();
                println!(
                    "{}",
                    json!({"patients": report.patients, "resources": report.resources, "skipped": skipped})
                );
            } else {
                println!("{}", report.summary());
            }
            Ok(if report.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Export {
            what: Some(what),
            out,
            force,
            ..
        } => {
            if out.is_some() || force {
                return Err("give `export deid` its options after `deid`".into());
            }
            crate::deid_cmd::run(what).await
        }
        Command::Export {
            what: None,
            dir,
            org,
            out,
            force,
        } => {
            let out = out.ok_or("--out is required")?;
            let opened = open(&dir.data_dir).await?;
            let result = export(&opened, &org, &out, force).await;
            opened.close().await;
            let n = result?;
            eprintln!("exported {n} resources to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Search {
            dir,
            org,
            identifier,
            family,
            birthdate,
            phone,
        } => {
            let opened = open(&dir.data_dir).await?;
            let q = PatientQuery {
                identifier,
                family,
                birthdate,
                phone,
                id: None,
            };
            let result = async {
                let c = ctx(&opened, &org).await?;
                opened
                    .vault
                    .search_patients(&c, &q)
                    .await
                    .map_err(|e| vault_err(&e))
            }
            .await;
            opened.close().await;
            let found = result?;
            let entries: Vec<Value> = found
                .into_iter()
                .map(|s| json!({"fullUrl": format!("Patient/{}", s.id), "resource": s.resource, "search": {"mode": "match"}}))
                .collect();
            let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
            println!("{bundle}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { what } => audit_cmd(what).await,
        Command::Compliance { what } => crate::compliance_cmd::run(what).await,
        Command::Retention { what } => crate::retention_cmd::run(what).await,
        Command::Hl7 { what } => crate::hl7_cmd::run(what).await,
        Command::Keys { what } => crate::keys_cmd::run(what).await,
        Command::Backup { what } => crate::backup_cmd::run(what).await,
        Command::User { what } => user_cmd(what).await,
        Command::Grants { what } => grants_cmd(what).await,
        Command::Client {
            what: ClientCmd::Manage(cmd),
        } => crate::admin_cmd::client(cmd).await,
        Command::Migrate { dir } => {
            let db = datadir::Database::from_env();
            if db.is_none() && !datadir::holds_vault(&dir.data_dir) {
                return Err(datadir::DataDirError::NotAVault(dir.data_dir).to_string());
            }
            let stores = datadir::Backend::open(&dir.data_dir, false, db.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            stores.close().await;
            println!(
                "stores up to date ({})",
                if db.is_some() { "PostgreSQL" } else { "SQLite" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Org { what } => {
            let dir = match &what {
                OrgCmd::Add { dir, .. }
                | OrgCmd::List { dir }
                | OrgCmd::DefaultPurpose { dir, .. } => dir.data_dir.clone(),
            };
            let opened = open(&dir).await?;
            let result = async {
                match what {
                    OrgCmd::Add { id, name, .. } => {
                        let org = phivault_core::OrgId::parse(&id).map_err(|e| e.to_string())?;
                        let c = opened.operator.ctx(org.clone());
                        opened
                            .vault
                            .create_organization(&c, &org, name.as_deref().unwrap_or(&id))
                            .await
                            .map_err(|e| vault_err(&e))?;
                        println!("added organization {org}");
                    }
                    OrgCmd::List { .. } => {
                        for o in opened
                            .vault
                            .organizations()
                            .await
                            .map_err(|e| vault_err(&e))?
                        {
                            println!("{}\t{}", o.id, o.name);
                        }
                    }
                    OrgCmd::DefaultPurpose {
                        org, role, purpose, ..
                    } => {
                        let role = parse_role(&role)?;
                        let c = ctx(&opened, &org).await?;
                        let o = c.org().clone();
                        let set = opened
                            .vault
                            .set_role_default_purpose(&c, &o, role, purpose.as_deref())
                            .await
                            .map_err(|e| vault_err(&e))?;
                        let set = set.as_deref().unwrap_or("none");
                        println!("default purpose of {role} in {o}: {set}");
                    }
                }
                Ok::<_, String>(())
            }
            .await;
            opened.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Client {
            what:
                ClientCmd::Add {
                    dir,
                    org,
                    name,
                    role,
                    scopes,
                    purposes,
                    default_purpose,
                    json,
                },
        } => {
            let role = parse_role(&role)?;
            let opened = open(&dir.data_dir).await?;
            let result = async {
                let c = ctx(&opened, &org).await?;
                let o = c.org().clone();
                let purposes = phivault_vault::auth::ClientPurposes {
                    list: purposes.as_deref(),
                    default: default_purpose.as_deref(),
                };
                opened
                    .vault
                    .add_client_with(&c, &o, &name, role, &scopes, purposes)
                    .await
                    .map_err(|e| vault_err(&e))
            }
            .await;
            opened.close().await;
            let n = result?;
            if json {
                println!(
                    "{}",
                    json!({"client_id": n.client_id, "client_secret": n.client_secret.expose()})
                );
            } else {
                println!(
                    "client_id {}\nclient_secret {} (shown once: store it in the integration's secret store)",
                    n.client_id,
                    n.client_secret.expose()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            dir,
            listen,
            dev,
            tls,
            mllp_listen,
            mllp_interfaces,
        } => {
            let mllp = (mllp_listen.as_str(), mllp_interfaces.as_deref());
            serve_cmd(dir.data_dir, listen, dev, tls, mllp).await
        }
        Command::Erase {
            what:
                EraseWhat::Patient {
                    id,
                    reason,
                    dir,
                    org,
                    json,
                },
        } => {
            if reason.trim().is_empty() {
                return Err("--reason must say why the patient is erased".into());
            }
            let id = ResourceId::parse(&id).map_err(|e| e.to_string())?;
            let opened = open(&dir.data_dir).await?;
            let result = async {
                let c = ctx(&opened, &org).await?;
                opened
                    .vault
                    .erase_patient(&c, &id)
                    .await
                    .map_err(|e| vault_err(&e))
            }
            .await;
            opened.close().await;
            let r = result?;
            if json {
                println!(
                    "{}",
                    json!({"patient": id.as_str(), "patient_versions": r.patient_versions,
                           "clinical_records": r.clinical_records, "clinical_versions": r.clinical_versions})
                );
            } else {
                println!(
                    "erased Patient/{id}: {} patient versions, {} clinical records ({} versions) destroyed with their keys",
                    r.patient_versions, r.clinical_records, r.clinical_versions
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// RFC 3339, or a date (midnight UTC).
pub(crate) fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            format!("'{s}' is not a time: use RFC 3339 (2026-01-31T12:00:00Z) or YYYY-MM-DD")
        })
}

/// A new private output file (mode 0600), written under a temporary name beside `out` and
/// renamed into place by [`PrivateFile::finish`]; dropped unfinished, it leaves nothing.
struct PrivateFile {
    tmp: PathBuf,
    out: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl PrivateFile {
    fn create(out: &Path, force: bool) -> Result<Self, String> {
        if out.exists() && !force {
            return Err(format!(
                "{} exists; choose another --out or add --force",
                out.display()
            ));
        }
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.partial",
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "out".into())
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&tmp)
            .map_err(|e| format!("cannot write {}: {}", out.display(), e.kind()))?;
        Ok(Self {
            tmp,
            out: out.to_owned(),
            file: Some(std::io::BufWriter::new(file)),
        })
    }

    fn err(&self, e: std::io::Error) -> String {
        format!("cannot write {}: {}", self.out.display(), e.kind())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes).map_err(|e| self.err(e)),
            None => Err("file already finished".into()),
        }
    }

    fn writer(&mut self) -> Result<&mut std::io::BufWriter<std::fs::File>, String> {
        self.file
            .as_mut()
            .ok_or_else(|| "file already finished".to_owned())
    }

    /// Flushes, syncs and renames into place.
    fn finish(mut self) -> Result<(), String> {
        let w = self.file.take().ok_or("file already finished")?;
        let f = w.into_inner().map_err(|e| self.err(e.into_error()))?;
        f.sync_all().map_err(|e| self.err(e))?;
        std::fs::rename(&self.tmp, &self.out).map_err(|e| self.err(e))
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

async fn audit_cmd(what: AuditCmd) -> Result<ExitCode, String> {
    use phivault_vault::audit::export::{AuditFilter, to_fhir_bundle};
    use phivault_vault::audit::verify::Checkpoint;
    match what {
        AuditCmd::Verify {
            dir,
            checkpoint,
            json,
        } => {
            let cp = checkpoint
                .as_deref()
                .map(Checkpoint::parse)
                .transpose()
                .map_err(|e| e.to_string())?;
            let opened = open(&dir.data_dir).await?;
            let result = opened.vault.verify_audit(cp.as_ref()).await;
            opened.close().await;
            let v = result.map_err(|e| vault_err(&e))?;
            let head = v.head.as_ref().map(ToString::to_string);
            if json {
                println!(
                    "{}",
                    json!({"intact": v.problem.is_none(), "count": v.count, "head": head,
                           "first_bad": v.problem.map(|p| p.0), "problem": v.problem.map(|p| p.1.to_string())})
                );
            } else {
                match v.problem {
                    None => println!(
                        "audit chain intact: {} events; head {}",
                        v.count,
                        head.unwrap_or_else(|| "(empty)".into())
                    ),
                    Some((seq, p)) => println!(
                        "audit chain BROKEN at event {seq}: {p} ({} events verified before it)",
                        v.count
                    ),
                }
            }
            Ok(if v.problem.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        AuditCmd::Checkpoint { dir, json } => {
            let opened = open(&dir.data_dir).await?;
            let result = opened.vault.audit_checkpoint().await;
            opened.close().await;
            let cp = result.map_err(|e| vault_err(&e))?;
            let text = cp
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "0:".to_owned() + &"0".repeat(64));
            if json {
                println!(
                    "{}",
                    json!({"checkpoint": text, "seq": cp.as_ref().map_or(0, |c| c.seq)})
                );
            } else {
                println!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export {
            dir,
            org,
            format,
            out,
            force,
            since,
            until,
            actor,
            patient,
        } => {
            let filter = AuditFilter {
                since: since.as_deref().map(parse_time).transpose()?,
                until: until.as_deref().map(parse_time).transpose()?,
                actor,
                patient: patient
                    .as_deref()
                    .map(ResourceId::parse)
                    .transpose()
                    .map_err(|e| e.to_string())?,
            };
            let opened = open(&dir.data_dir).await?;
            let result = async {
                let c = ctx(&opened, &org).await?;
                let events = opened
                    .vault
                    .audit_events(&c, &filter)
                    .await
                    .map_err(|e| vault_err(&e))?;
                opened
                    .vault
                    .audit_export_event(&c, events.len() as u64)
                    .await
                    .map_err(|e| vault_err(&e))?;
                Ok::<_, String>(events)
            }
            .await;
            opened.close().await;
            let events = result?;
            let text = match format {
                AuditFormat::Jsonl => {
                    let mut s = String::new();
                    for e in &events {
                        s.push_str(&serde_json::to_string(e).map_err(|e| e.to_string())?);
                        s.push('\n');
                    }
                    s
                }
                AuditFormat::Fhir => {
                    let mut s = serde_json::to_string_pretty(&to_fhir_bundle(&events))
                        .map_err(|e| e.to_string())?;
                    s.push('\n');
                    s
                }
            };
            match out {
                Some(path) => {
                    let mut f = PrivateFile::create(&path, force)?;
                    f.write(text.as_bytes())?;
                    f.finish()?;
                    eprintln!(
                        "exported {} audit events to {}",
                        events.len(),
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Report {
            dir,
            org,
            since,
            json,
        } => {
            let filter = AuditFilter {
                since: Some(parse_time(&since)?),
                ..Default::default()
            };
            let opened = open(&dir.data_dir).await?;
            let result = async {
                let c = ctx(&opened, &org).await?;
                opened
                    .vault
                    .audit_events(&c, &filter)
                    .await
                    .map_err(|e| vault_err(&e))
            }
            .await;
            opened.close().await;
            let events = result?;
            let report = phivault_vault::audit::report::build(&since, &events);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", report.to_text());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn grants_cmd(what: GrantsCmd) -> Result<ExitCode, String> {
    let (dir, org) = match &what {
        GrantsCmd::Add { dir, org, .. }
        | GrantsCmd::List(crate::admin_cmd::ListArgs { dir, org, .. })
        | GrantsCmd::Lockdown { dir, org }
        | GrantsCmd::CareTeamRule { dir, org, .. } => (dir.data_dir.clone(), org.org.clone()),
    };
    let opened = open(&dir).await?;
    let result = async {
        let c = ctx(&opened, &OrgArgs { org }).await?;
        match what {
            GrantsCmd::Add {
                username,
                patient,
                purpose,
                minutes,
                ..
            } => {
                let patient = ResourceId::parse(&patient).map_err(|e| e.to_string())?;
                let purpose = phivault_vault::policy::Purpose::parse(&purpose)
                    .ok_or("unknown purpose of use (TREAT, HPAYMT, HOPERAT, …)")?;
                let g = opened
                    .vault
                    .grant_access(&c, &username, &patient, purpose, Some(minutes * 60))
                    .await
                    .map_err(|e| vault_err(&e))?;
                println!(
                    "{} may access Patient/{} for {} until {} (unix time)",
                    g.username, patient, g.purpose, g.expires_at
                );
            }
            GrantsCmd::List(crate::admin_cmd::ListArgs { json, .. }) => {
                crate::admin_cmd::print_grants(&opened.vault, &c, json).await?;
            }
            GrantsCmd::Lockdown { .. } => {
                let n = opened.vault.lockdown(&c).await.map_err(|e| vault_err(&e))?;
                println!("lockdown: {n} live grants revoked");
            }
            GrantsCmd::CareTeamRule { state, .. } => {
                opened
                    .vault
                    .set_care_team_rule(&c, state == "on")
                    .await
                    .map_err(|e| vault_err(&e))?;
                println!("care-team rule {state}");
            }
        }
        Ok::<(), String>(())
    }
    .await;
    opened.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

fn parse_role(role: &str) -> Result<phivault_core::Role, String> {
    phivault_core::Role::parse(role).ok_or_else(|| {
        format!(
            "unknown role '{}': one of {}",
            role.chars().take(40).collect::<String>(),
            phivault_core::Role::ALL.map(|r| r.as_str()).join(", ")
        )
    })
}

async fn user_cmd(what: UserCmd) -> Result<ExitCode, String> {
    let (dir, org) = match &what {
        UserCmd::Add { dir, org, .. }
        | UserCmd::Disable { dir, org, .. }
        | UserCmd::Enable { dir, org, .. }
        | UserCmd::ResetPassword { dir, org, .. }
        | UserCmd::ResetMfa { dir, org, .. }
        | UserCmd::List(crate::admin_cmd::ListArgs { dir, org, .. }) => {
            (dir.data_dir.clone(), org.org.clone())
        }
    };
    let opened = open(&dir).await?;
    let result = async {
        let c = ctx(&opened, &OrgArgs { org }).await?;
        let v = &opened.vault;
        let e = |e: VaultError| vault_err(&e);
        match what {
            UserCmd::Add {
                username, role, json, ..
            } => {
                let role = parse_role(&role)?;
                let org = c.org().clone();
                let n = v.add_user(&c, &org, &username, role, false).await.map_err(e)?;
                if json {
                    println!(
                        "{}",
                        json!({"username": n.user.username, "role": n.user.role.as_str(),
                               "organization": n.user.org.as_str(),
                               "one_time_password": n.one_time_password.expose()})
                    );
                } else {
                    println!(
                        "added {} ({}) in {}; one-time password (shown once, must be changed at first login): {}",
                        n.user.username,
                        n.user.role,
                        n.user.org,
                        n.one_time_password.expose()
                    );
                }
            }
            UserCmd::Disable { username, .. } => {
                v.set_user_disabled(&c, &username, true).await.map_err(e)?;
                println!("disabled {username}; its sessions are ended");
            }
            UserCmd::Enable { username, .. } => {
                v.set_user_disabled(&c, &username, false).await.map_err(e)?;
                println!("enabled {username}");
            }
            UserCmd::ResetPassword { username, json, .. } => {
                let otp = v.reset_password(&c, &username).await.map_err(e)?;
                if json {
                    println!("{}", json!({"username": username, "one_time_password": otp.expose()}));
                } else {
                    println!(
                        "new one-time password for {username} (shown once, must be changed at next login): {}",
                        otp.expose()
                    );
                }
            }
            UserCmd::ResetMfa { username, .. } => {
                v.reset_mfa(&c, &username).await.map_err(e)?;
                println!("MFA reset for {username}: it enrolls again at next login");
            }
            UserCmd::List(crate::admin_cmd::ListArgs { json, .. }) => {
                crate::admin_cmd::print_users(&v.list_users(&c).await.map_err(e)?, json);
            }
        }
        Ok::<(), String>(())
    }
    .await;
    opened.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// The development passphrase file beside a data dir: `./phivault-data.passphrase`.
fn dev_passphrase_path(dir: &Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".passphrase");
    dir.with_file_name(name)
}

/// In development mode, the first run creates the administrator `admin` (SUPER_ADMIN) and
/// returns what to print once: its one-time password and its TOTP enrollment.
async fn dev_bootstrap_admin(opened: &Opened) -> Result<Option<String>, String> {
    let c = ctx(opened, &OrgArgs { org: None }).await?;
    let existing = opened
        .vault
        .list_users(&c)
        .await
        .map_err(|e| vault_err(&e))?;
    if !existing.is_empty() {
        return Ok(None);
    }
    let org = c.org().clone();
    let n = opened
        .vault
        .add_user(&c, &org, "admin", phivault_core::Role::SuperAdmin, true)
        .await
        .map_err(|e| vault_err(&e))?;
    let mut text = format!(
        "bootstrap administrator (shown once): username admin, one-time password {} \
         (change it at first login: POST /auth/login, then /auth/password)",
        n.one_time_password.expose()
    );
    if let Some(e) = &n.enrollment {
        text.push_str(&format!(
            "\nTOTP enrollment for admin: {}\n  (secret {}; add it to an authenticator app)\n{}\nbackup codes (single use): {}",
            e.otpauth_uri.expose(),
            e.secret_base32.expose(),
            crate::qr::terminal_qr(e.otpauth_uri.expose()),
            e.backup_codes.iter().map(|c| c.expose().as_str()).collect::<Vec<_>>().join(" ")
        ));
    }
    Ok(Some(text))
}

/// `serve --dev` on a dir without a vault: creates one with the operator's passphrase when one
/// is given (the vault is then opened with it), else with a generated one kept in `dev_pass`;
/// and the development certificate.
async fn dev_first_run(dir: &Path, dev_pass: &Path) -> Result<(), String> {
    let (pass, kept_in) = match config::given_passphrase()? {
        Some(pass) => (pass, "PHIVAULT_PASSPHRASE(_FILE)".to_owned()),
        None => {
            let pass = phivault_crypto::Passphrase::new(
                phivault_crypto::random_passphrase().map_err(|e| e.to_string())?,
            );
            let mut f = PrivateFile::create(dev_pass, false)?;
            f.write(pass.expose().as_bytes())?;
            f.write(b"\n")?;
            f.finish()?;
            (
                pass,
                format!("{} (a generated one, mode 0600)", dev_pass.display()),
            )
        }
    };
    datadir::init(dir, &pass, clock().as_ref())
        .await
        .map_err(|e| e.to_string())?;
    crate::tls::write_dev_cert(dir)?;
    eprintln!(
        "DEVELOPMENT MODE: created {} with the passphrase from {kept_in}. \
         Not for real patient data.",
        dir.display(),
    );
    Ok(())
}

async fn serve_cmd(
    dir: PathBuf,
    listen: std::net::SocketAddr,
    dev: bool,
    tls: TlsArgs,
    (mllp_listen, mllp_interfaces): (&str, Option<&str>),
) -> Result<ExitCode, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    crate::config::init_logging()?;
    let mllp = crate::mllp::Settings::from_env(mllp_listen, mllp_interfaces)?;
    let edge = crate::serve::edge_from_env()?;
    let retention = crate::retention_cmd::Schedule::from_env()?;
    let backups = crate::backup::Schedule::from_env()?;
    let dev_pass = dev_passphrase_path(&dir);
    if dev && !datadir::holds_vault(&dir) && config::pkcs11()?.is_some() {
        return Err(
            "serve --dev creates a passphrase vault; with PHIVAULT_PKCS11_* set, \
                    run `phivault init` first (it makes the root key in the token)"
                .into(),
        );
    }
    if dev && !datadir::holds_vault(&dir) {
        dev_first_run(&dir, &dev_pass).await?;
    }
    let root = if dev
        && std::env::var_os("PHIVAULT_PASSPHRASE_FILE").is_none()
        && std::env::var_os("PHIVAULT_PASSPHRASE").is_none()
        && datadir::root_key_kind(&dir) == Some(datadir::RootKeyKind::Keyfile)
        && dev_pass.exists()
    {
        datadir::RootKey::Passphrase(config::passphrase_from_file(&dev_pass)?)
    } else {
        config::root_key(&dir)?
    };
    let opened = datadir::open(&dir, &root, clock())
        .await
        .map_err(|e| e.to_string())?;
    let started = match crate::keys_cmd::bind_links_at_start(&opened).await {
        Ok(()) => crate::keys_cmd::reindex_at_start(&opened).await,
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        opened.close().await;
        return Err(e);
    }
    let bootstrap = if dev {
        match dev_bootstrap_admin(&opened).await {
            Ok(b) => b,
            Err(e) => {
                opened.close().await;
                return Err(e);
            }
        }
    } else {
        None
    };
    if let Some(schedule) = backups {
        tokio::spawn(schedule.run(
            opened.vault.clone(),
            opened.operator.clone(),
            opened.stores.clone(),
            dir.clone(),
            clock(),
        ));
    }
    if let Some(schedule) = retention {
        tokio::spawn(schedule.run(opened.vault.clone(), opened.operator.clone()));
    }
    let (cert, key) = crate::tls::paths(&dir, tls.tls_cert.as_deref(), tls.tls_key.as_deref());
    let config = match crate::tls::server_config(&cert, &key) {
        Ok(c) => c,
        Err(e) => {
            opened.close().await;
            return Err(e);
        }
    };
    let several_orgs = opened
        .vault
        .organizations()
        .await
        .map(|o| o.len() > 1)
        .unwrap_or(false);
    let mllp_line = match mllp {
        None => None,
        Some(settings) if settings.org.is_none() && several_orgs => {
            tracing::warn!(
                "MLLP listener not started: several organizations and no PHIVAULT_MLLP_ORG"
            );
            Some(
                "MLLP (HL7 v2) not started: several organizations; set PHIVAULT_MLLP_ORG"
                    .to_owned(),
            )
        }
        Some(settings) => {
            let tls_on = settings.tls;
            let mllp_tls = match &settings.client_ca {
                None => Ok(config.clone()),
                Some(ca) => crate::tls::server_config_with_clients(
                    &cert,
                    &key,
                    crate::tls::ClientAuth {
                        ca,
                        required: settings.client_cert_required,
                    },
                ),
            };
            let mllp_tls = match mllp_tls {
                Ok(c) => c,
                Err(e) => {
                    opened.close().await;
                    return Err(e);
                }
            };
            match crate::mllp::bind(
                opened.vault.clone(),
                opened.operator.interfaces(),
                settings,
                mllp_tls,
                clock(),
            )
            .await
            {
                Ok((addr, serving)) => {
                    tokio::spawn(serving);
                    Some(format!(
                        "MLLP (HL7 v2) listening on {addr} ({})",
                        if tls_on {
                            "TLS"
                        } else {
                            "plain, allow-listed sources only"
                        }
                    ))
                }
                Err(e) => {
                    opened.close().await;
                    return Err(e);
                }
            }
        }
    };
    let result = crate::serve::run(&opened, listen, config, edge, |addr| {
        tracing::info!(target: "phivault::serve", address = %addr, "listening");
        // Never println!: a closed standard output must not bring the server down.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "phivault is listening on https://{addr}");
        if let Some(l) = &mllp_line {
            let _ = writeln!(out, "{l}");
        }
        if dev {
            let _ = writeln!(out, "development certificate: {}", cert.display());
        }
        if let Some(b) = &bootstrap {
            let _ = writeln!(out, "{b}");
        }
        let _ = out.flush();
    })
    .await;
    opened.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

fn vault_err(e: &VaultError) -> String {
    e.to_string()
}

/// A one-line progress bar on a terminal (standard error), nothing otherwise.
struct Progress {
    on: bool,
    last: u64,
}

impl Progress {
    fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            last: u64::MAX,
        }
    }
    fn show(&mut self, label: &str, done: u64, total: u64) {
        if !self.on || total == 0 {
            return;
        }
        let pct = done * 100 / total;
        if pct == self.last && done != total {
            return;
        }
        self.last = pct;
        let width = 30u64;
        let filled = (done * width / total) as usize;
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            ".".repeat(width as usize - filled)
        );
        let mut err = std::io::stderr();
        let _ = write!(err, "\r{label} [{bar}] {done}/{total}");
        if done == total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

async fn import(
    opened: &Opened,
    org: &OrgArgs,
    strict: bool,
    files: &[PathBuf],
) -> Result<ImportReport, String> {
    let c = ctx(opened, org).await?;
    let mut report = ImportReport::default();
    let opts = ImportOptions { strict };
    let mut bar = Progress::new();
    for file in files {
        let name = file.display().to_string();
        let doc = std::fs::read(file)
            .map_err(|e| format!("cannot read: {}", e.kind()))
            .and_then(|bytes| {
                serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                    format!(
                        "not JSON (line {}, column {}: {})",
                        e.line(),
                        e.column(),
                        match e.classify() {
                            serde_json::error::Category::Io => "read error",
                            serde_json::error::Category::Syntax => "syntax error",
                            serde_json::error::Category::Data => "data error",
                            serde_json::error::Category::Eof => "unexpected end",
                        }
                    )
                })
            });
        let doc = match doc {
            Ok(d) => d,
            Err(reason) => {
                if strict {
                    return Err(format!("{name}: {reason}"));
                }
                report.skipped.push(phivault_vault::Skipped {
                    entry: name,
                    reason,
                });
                continue;
            }
        };
        let label = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        opened
            .vault
            .import_document(&c, &name, doc, opts, &mut report, &mut |p| {
                bar.show(&label, p.done, p.total)
            })
            .await
            .map_err(|e| vault_err(&e))?;
    }
    Ok(report)
}

fn full_url(rtype: &str, id: &str) -> String {
    let is_uuid = id.len() == 36
        && id.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if is_uuid {
        format!("urn:uuid:{id}")
    } else {
        format!("{rtype}/{id}")
    }
}

/// Streams the export into a private temporary file beside `out`, then renames it into place.
async fn export(opened: &Opened, org: &OrgArgs, out: &Path, force: bool) -> Result<u64, String> {
    let mut file = PrivateFile::create(out, force)?;
    let c = ctx(opened, org).await?;
    file.write(b"{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[")?;
    let mut n = 0u64;
    for kind in [StoreKind::Identity, StoreKind::Clinical] {
        let mut after: Option<PageCursor> = None;
        loop {
            let (page, next) = opened
                .vault
                .page(&c, kind, after.as_ref(), 500)
                .await
                .map_err(|e| vault_err(&e))?;
            if page.is_empty() {
                break;
            }
            after = next;
            for s in page {
                if n > 0 {
                    file.write(b",")?;
                }
                let entry = json!({"fullUrl": full_url(s.rtype.as_str(), s.id.as_str()), "resource": s.resource});
                serde_json::to_writer(file.writer()?, &entry).map_err(|e| e.to_string())?;
                n += 1;
            }
        }
    }
    file.write(b"]}\n")?;
    file.finish()?;
    Ok(n)
}
