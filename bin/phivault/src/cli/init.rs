//! `phivault init` and `phivault migrate`: a new vault, and its stores' schemas brought up to
//! date. The data dir's lifecycle is [`crate::datadir`]'s; this file chooses the root key,
//! writes the development certificate and prints.
use super::{DirArgs, TlsArgs, clock};
use crate::config;
use crate::datadir;
use clap::Args;
use serde_json::json;
use std::process::ExitCode;

// `phivault init` (its help is the doc comment of `Command::Init`).
#[derive(Debug, Args)]
pub struct InitArgs {
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
}

/// `phivault init`: refuses a dir that already holds a vault.
pub async fn init_cmd(a: InitArgs) -> Result<ExitCode, String> {
    let dir = a.dir.data_dir;
    if datadir::holds_vault(&dir) {
        return Err(datadir::DataDirError::AlreadyInitialized(dir).to_string());
    }
    let root = config::root_key_for_init(a.pkcs11_use_existing_key)?;
    datadir::init(&dir, &root, clock().as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if a.tls.tls_cert.is_none() {
        let cert = crate::tls::write_dev_cert(&dir)?;
        eprintln!(
            "wrote a self-signed development certificate for localhost: {} \
             (set PHIVAULT_TLS_CERT and PHIVAULT_TLS_KEY for a real one)",
            cert.display()
        );
    }
    if a.json {
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

/// `phivault migrate`: needs no passphrase.
pub async fn migrate_cmd(dir: DirArgs) -> Result<ExitCode, String> {
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
