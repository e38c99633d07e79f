//! `phivault backup create|verify|restore`: the command line of [`crate::backup`].
use super::DirArgs;
use crate::backup;
use crate::config;
use crate::datadir;
use clap::Subcommand;
use phivault_core::{Clock, SystemClock};

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write an encrypted backup of every store (online, while the server runs) to FILE.
    Create {
        #[command(flatten)]
        dir: DirArgs,
        /// The backup file to write (mode 0600); refused if it exists.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check a backup without restoring it: every chunk, every file's hash, the audit chain
    /// and every record. Records the verification in the vault at --data-dir, if there is one.
    Verify {
        file: PathBuf,
        #[command(flatten)]
        dir: DirArgs,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new (or empty) data dir, checked before anything is written
    /// there. Needs the passphrase the backup was made with (or, for a vault whose root key
    /// is in a PKCS#11 token, that token: PHIVAULT_PKCS11_*).
    Restore {
        file: PathBuf,
        #[command(flatten)]
        dir: DirArgs,
        /// Also forget what this vault (a data dir) or backup file erased since the backup
        /// was made; newer backups beside FILE are always consulted. Repeatable.
        #[arg(long)]
        tombstones_from: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn print(summary: &backup::Summary, json: bool, what: &str) {
    if json {
        println!("{}", serde_json::to_string(summary).unwrap_or_default());
    } else {
        println!(
            "{what} {}: {} bytes, {} store files, {} audit events{}{}",
            summary.file,
            summary.bytes,
            summary.store_files,
            summary.audit_events,
            if summary.records_opened > 0 {
                format!(", {} records opened", summary.records_opened)
            } else {
                String::new()
            },
            match (summary.tombstones_applied, summary.retention_erased) {
                (Some(t), Some(r)) => format!(
                    "; erased since: {t} record versions destroyed again, {r} expired records erased"
                ),
                _ => String::new(),
            }
        );
    }
}

pub async fn run(cmd: BackupCmd) -> Result<ExitCode, String> {
    let dir = match &cmd {
        BackupCmd::Create { dir, .. }
        | BackupCmd::Verify { dir, .. }
        | BackupCmd::Restore { dir, .. } => dir.data_dir.clone(),
    };
    let root = config::root_key(&dir)?;
    match cmd {
        BackupCmd::Create { dir, out, json } => {
            let opened = datadir::open(&dir.data_dir, &root, clock())
                .await
                .map_err(|e| e.to_string())?;
            let result = backup::create(
                &opened.vault,
                &opened.operator,
                &opened.stores,
                &dir.data_dir,
                &out,
                clock().as_ref(),
            )
            .await;
            opened.close().await;
            print(&result?, json, "backup written:");
        }
        BackupCmd::Verify { file, dir, json } => {
            let summary = backup::verify(&file, &root, clock()).await?;
            if datadir::holds_vault(&dir.data_dir) || datadir::Database::from_env().is_some() {
                let opened = datadir::open(&dir.data_dir, &root, clock())
                    .await
                    .map_err(|e| e.to_string())?;
                let result = async {
                    // Only a backup of this vault counts for it, dated when it was made.
                    if opened.vault.fingerprint()? != summary.vault {
                        return Ok(false);
                    }
                    for org in opened.vault.organizations().await? {
                        let ctx = opened.operator.ctx(org.id);
                        opened
                            .vault
                            .record_verified_backup_made_at(&ctx, summary.created_at)
                            .await?;
                    }
                    Ok::<_, phivault_vault::VaultError>(true)
                }
                .await;
                opened.close().await;
                if !result.map_err(|e| e.to_string())? {
                    return Err(format!(
                        "{} verifies, but it is a backup of another vault: not recorded for {}",
                        file.display(),
                        dir.data_dir.display()
                    ));
                }
            }
            print(&summary, json, "backup verified:");
        }
        BackupCmd::Restore {
            file,
            dir,
            tombstones_from,
            json,
        } => {
            let summary =
                backup::restore(&file, &dir.data_dir, &root, clock(), &tombstones_from).await?;
            print(&summary, json, "backup restored:");
        }
    }
    Ok(ExitCode::SUCCESS)
}
