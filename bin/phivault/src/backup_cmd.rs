//! `phivault backup create|verify|restore`: the command line of [`crate::backup`].
use crate::backup;
use crate::cli::DirArgs;
use crate::config;
use crate::datadir;
use clap::Subcommand;
use phivault_core::{Clock, SystemClock};
use phivault_vault::{Actor, Ctx};
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
    /// there. Needs the passphrase the backup was made with.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        dir: DirArgs,
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
            "{what} {}: {} bytes, {} store files, {} audit events{}",
            summary.file,
            summary.bytes,
            summary.store_files,
            summary.audit_events,
            if summary.records_opened > 0 {
                format!(", {} records opened", summary.records_opened)
            } else {
                String::new()
            }
        );
    }
}

pub async fn run(cmd: BackupCmd) -> Result<ExitCode, String> {
    let pass = config::passphrase(false)?;
    match cmd {
        BackupCmd::Create { dir, out, json } => {
            let opened = datadir::open(&dir.data_dir, &pass, clock())
                .await
                .map_err(|e| e.to_string())?;
            let result = backup::create(
                &opened.vault,
                opened.stores.is_postgres(),
                &dir.data_dir,
                &out,
                clock().as_ref(),
            )
            .await;
            opened.close().await;
            print(&result?, json, "backup written:");
        }
        BackupCmd::Verify { file, dir, json } => {
            let summary = backup::verify(&file, &pass, clock()).await?;
            if datadir::holds_vault(&dir.data_dir) || datadir::Database::from_env().is_some() {
                let opened = datadir::open(&dir.data_dir, &pass, clock())
                    .await
                    .map_err(|e| e.to_string())?;
                let result = async {
                    for org in opened.vault.organizations().await? {
                        let ctx = Ctx::new(
                            org.id,
                            Actor::Operator {
                                os_user: config::os_user(),
                            },
                        );
                        opened.vault.record_verified_backup(&ctx).await?;
                    }
                    Ok::<_, phivault_vault::VaultError>(())
                }
                .await;
                opened.close().await;
                result.map_err(|e| e.to_string())?;
            }
            print(&summary, json, "backup verified:");
        }
        BackupCmd::Restore { file, dir, json } => {
            let summary = backup::restore(&file, &dir.data_dir, &pass, clock()).await?;
            print(&summary, json, "backup restored:");
        }
    }
    Ok(ExitCode::SUCCESS)
}
