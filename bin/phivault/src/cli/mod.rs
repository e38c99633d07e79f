//! The `phivault` command line: the clap types, `main`, and the dispatch that hands each
//! command group to its module (one module per group: `init` and `migrate`, `serve` with the
//! development mode, `import`/`export`/`search`, `erase`, `org`, `client`, `grants`, `user`,
//! `audit`, `backup`, `keys`, `retention`, `hl7`, `compliance`).
use crate::config;
use crate::datadir;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod args;
pub mod audit;
pub mod backup;
pub mod clients;
mod common;
pub mod compliance;
pub mod deid;
pub mod erase;
pub mod grants;
pub mod hl7;
pub mod init;
pub mod keys;
pub mod orgs;
mod output;
pub mod records;
pub mod retention;
pub mod serve;
pub mod users;

pub use args::{DatabaseArgs, DirArgs, ListArgs, OrgArgs, TlsArgs};
pub(crate) use common::{clock, ctx, in_org, open, parse_role, parse_time, vault_err};

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new vault: root key sealed by the passphrase (or made in a PKCS#11 token when
    /// PHIVAULT_PKCS11_* is set), keyring, stores, organization `default`.
    Init(init::InitArgs),
    /// Import FHIR R4 Bundles (collection, transaction, batch) or single resources.
    Import(records::ImportArgs),
    /// Export the whole dataset of an organization, decrypted, as a FHIR Bundle (mode 0600);
    /// `export deid` writes a de-identified export instead.
    #[command(subcommand_negates_reqs = true)]
    Export(records::ExportArgs),
    /// Search patients by blind index; prints a FHIR searchset Bundle.
    Search(records::SearchArgs),
    /// Erase data by crypto-shredding.
    Erase {
        #[command(subcommand)]
        what: erase::EraseWhat,
    },
    /// Serve the HTTPS API (TLS 1.2+ only, HSTS). `--dev` creates ./phivault-data on first run.
    Serve(serve::ServeArgs),
    /// Bring the stores' schemas up to date (SQLite files, or PostgreSQL with
    /// PHIVAULT_DATABASE_URL); refuses a schema newer than this binary. Needs no passphrase.
    Migrate {
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Organizations (tenants): add one, list them.
    Org {
        #[command(subcommand)]
        what: orgs::OrgCmd,
    },
    /// Manage service clients (OAuth2 client credentials for integrations): add, list,
    /// disable, enable, rotate-secret, revoke-tokens.
    Client {
        #[command(subcommand)]
        what: clients::ClientCmd,
    },
    /// Need-to-know grants: add (or renew) one, list them, or lock every one down.
    Grants {
        #[command(subcommand)]
        what: grants::GrantsCmd,
    },
    /// Manage users (people): add, disable, enable, reset-password, reset-mfa, list.
    User {
        #[command(subcommand)]
        what: users::UserCmd,
    },
    /// The audit trail: verify its chain, take a checkpoint, export it, report on it.
    Audit {
        #[command(subcommand)]
        what: audit::AuditCmd,
    },
    /// Encrypted backups: create, verify, restore.
    Backup {
        #[command(subcommand)]
        what: backup::BackupCmd,
    },
    /// Key management: rotate the KEK, its status, retire an old version, change the passphrase.
    Keys {
        #[command(subcommand)]
        what: keys::KeysCmd,
    },
    /// Retention rules per organization and resource type, and the run (or dry run) that
    /// erases expired records by crypto-shredding.
    Retention {
        #[command(subcommand)]
        what: retention::RetentionCmd,
    },
    /// HL7 v2: the sealed error queue of messages that were not accepted (list, show, retry,
    /// discard).
    Hl7 {
        #[command(subcommand)]
        what: hl7::Hl7Cmd,
    },
    /// The compliance report, measured from the running system, and its thresholds.
    Compliance {
        #[command(subcommand)]
        what: compliance::ComplianceCmd,
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

async fn run(cmd: Command) -> Result<ExitCode, String> {
    match cmd {
        Command::Init(a) => init::init_cmd(a).await,
        Command::Import(a) => records::import_cmd(a).await,
        Command::Export(a) => records::export_cmd(a).await,
        Command::Search(a) => records::search_cmd(a).await,
        Command::Erase { what } => erase::run(what).await,
        Command::Serve(a) => serve::serve_cmd(a).await,
        Command::Migrate { dir } => init::migrate_cmd(dir).await,
        Command::Org { what } => orgs::run(what).await,
        Command::Client { what } => clients::run(what).await,
        Command::Grants { what } => grants::run(what).await,
        Command::User { what } => users::run(what).await,
        Command::Audit { what } => audit::run(what).await,
        Command::Backup { what } => backup::run(what).await,
        Command::Keys { what } => keys::run(what).await,
        Command::Retention { what } => retention::run(what).await,
        Command::Hl7 { what } => hl7::run(what).await,
        Command::Compliance { what } => compliance::run(what).await,
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// clap's own checks of the whole command line (ids, groups, conflicts, defaults).
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
