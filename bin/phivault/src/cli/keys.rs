//! `phivault keys`: rotate the KEK (and rewrap every data key), show the keyring's status,
//! retire an old KEK version, change the root-key passphrase. The vault does the work and the
//! audit; this file opens the vault as the operator and prints.
use super::DirArgs;
use crate::config;
use crate::datadir;
use clap::Subcommand;
use phivault_core::StoreKind;
use phivault_vault::{KeyStatus, RotateOptions, RotationProgress};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

// The vault opened for the operator: key management covers every organization, like the
// compliance report, so its audit events are filed under the only organization (or `unknown`).
use super::compliance::open;

/// Exit code of `keys rotate` when rows are left on an older KEK (run it again).
pub const EXIT_UNFINISHED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Add a KEK version (current for new writes at once) and rewrap every data key to it,
    /// online, in batches, with progress on standard error. If an earlier rotation did not
    /// finish, this resumes it instead of adding another version. Exit 0 when every data key
    /// is on the new version, 3 when some are left (run it again), 1 on error.
    Rotate {
        #[command(flatten)]
        dir: DirArgs,
        /// Rows per transaction.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
        /// Milliseconds to pause between batches, to leave I/O to a busy server.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        pause_ms: u64,
        /// `{"target", "added", "total", "rewrapped", "skipped", "failed", "remaining", "finished"}`.
        #[arg(long)]
        json: bool,
    },
    /// The KEK versions: age, data keys each still wraps (per store), which is current, and
    /// whether a rotation is unfinished.
    Status {
        #[command(flatten)]
        dir: DirArgs,
        #[arg(long)]
        json: bool,
    },
    /// Remove an old KEK version from the keyring; refused while it still wraps a data key
    /// (run `keys rotate` first), for the current version, and until the newest version is
    /// `--grace-seconds` old.
    Retire {
        #[command(flatten)]
        dir: DirArgs,
        /// The KEK version to remove.
        #[arg(long)]
        version: u32,
        /// How old the newest KEK version must be: every process (servers, CLI commands)
        /// reloads the keyring before a write at least every 10 s, so after this long none is
        /// still sealing under the old one. Lower it only when no other process is running.
        #[arg(long, default_value_t = phivault_vault::keys::RETIRE_GRACE.as_secs())]
        grace_seconds: u64,
    },
    /// Re-seal keys/root.key under a new passphrase (PHIVAULT_NEW_PASSPHRASE_FILE,
    /// PHIVAULT_NEW_PASSPHRASE, or a prompt asked twice). The keyring is unchanged; the old
    /// passphrase stops working.
    ChangePassphrase {
        #[command(flatten)]
        dir: DirArgs,
    },
}

fn store_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Identity => "identity",
        StoreKind::Clinical => "clinical",
    }
}

pub async fn run(cmd: KeysCmd) -> Result<ExitCode, String> {
    match cmd {
        KeysCmd::Rotate {
            dir,
            batch_size,
            pause_ms,
            json,
        } => rotate(&dir, batch_size, pause_ms, json).await,
        KeysCmd::Status { dir, json } => {
            let (opened, ctx) = open(&dir).await?;
            let result = opened.vault.key_status(&ctx).await;
            opened.close().await;
            let status = result.map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", status_text(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCmd::Retire {
            dir,
            version,
            grace_seconds,
        } => {
            let (opened, ctx) = open(&dir).await?;
            let grace = std::time::Duration::from_secs(grace_seconds);
            let result = opened.vault.retire_kek(&ctx, version, grace).await;
            opened.close().await;
            result.map_err(|e| e.to_string())?;
            println!("retired KEK version {version}");
            Ok(ExitCode::SUCCESS)
        }
        KeysCmd::ChangePassphrase { dir } => {
            if datadir::root_key_kind(&dir.data_dir) == Some(datadir::RootKeyKind::Pkcs11) {
                return Err(
                    "the root key of this vault is in a PKCS#11 token: there is no \
                            passphrase to change (the token's PIN is changed with the HSM's \
                            own tools)"
                        .into(),
                );
            }
            let new = config::new_passphrase()?;
            let old = config::passphrase(false)?;
            if phivault_crypto::aead::ct_eq(old.expose().as_bytes(), new.expose().as_bytes()) {
                return Err("the new passphrase is the old one".into());
            }
            // Opening checks the old passphrase and that the root key opens the keyring.
            let (opened, ctx) = open(&dir).await?;
            let data_dir = dir.data_dir.clone();
            let result = opened
                .vault
                .change_root_passphrase(&ctx, move || {
                    datadir::change_passphrase(&data_dir, &old, &new)
                })
                .await;
            opened.close().await;
            result.map_err(|e| e.to_string())?;
            println!(
                "re-sealed the root key of {} under the new passphrase; the old one no longer \
                 opens it",
                dir.data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn rotate(dir: &DirArgs, batch: u32, pause_ms: u64, json: bool) -> Result<ExitCode, String> {
    let (opened, ctx) = open(dir).await?;
    let opts = RotateOptions {
        batch,
        pause: Duration::from_millis(pause_ms),
        max_batches: None,
    };
    let result = async {
        let plan = opened.vault.begin_kek_rotation(&ctx).await?;
        eprintln!(
            "{} KEK version {}: {} rows to rewrap",
            if plan.added {
                "added"
            } else {
                "resuming towards"
            },
            plan.target,
            plan.total
        );
        let mut progress = |p: &RotationProgress| {
            eprintln!(
                "rewrapped {}/{} rows ({})",
                p.done,
                p.total,
                store_name(p.store)
            );
        };
        let report = opened
            .vault
            .rewrap_deks(&ctx, plan.target, opts, &mut progress)
            .await?;
        Ok::<_, phivault_vault::VaultError>((plan, report))
    }
    .await;
    opened.close().await;
    let (plan, report) = result.map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            json!({"target": plan.target, "added": plan.added, "total": plan.total,
                   "rewrapped": report.rewrapped, "skipped": report.skipped,
                   "failed": report.failed, "remaining": report.remaining,
                   "finished": report.finished})
        );
    } else if report.finished {
        println!(
            "KEK version {} is current and wraps every data key ({} rows rewrapped); older \
             versions can be retired with `phivault keys retire --version N`",
            plan.target, report.rewrapped
        );
    } else {
        println!(
            "KEK version {} is current; {} rows are still on an older version ({} could not be \
             opened): run `phivault keys rotate` again",
            plan.target, report.remaining, report.failed
        );
    }
    Ok(if report.finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_UNFINISHED)
    })
}

fn status_text(s: &KeyStatus) -> String {
    let mut out = format!(
        "{:<8} {:<8} {:>8} {:>14} {:>14}\n",
        "KEK", "", "age", "identity DEKs", "clinical DEKs"
    );
    for v in &s.versions {
        out.push_str(&format!(
            "v{:<7} {:<8} {:>7}d {:>14} {:>14}{}\n",
            v.version,
            if v.current { "current" } else { "" },
            v.age_days,
            v.identity_deks,
            v.clinical_deks,
            if v.binds_link {
                ""
            } else {
                "  legacy: binds no patient link"
            }
        ));
    }
    out.push_str(&format!(
        "maximum age of the current KEK: {} days ({})\n",
        s.max_age_days,
        if s.overdue {
            "OVERDUE: run `phivault keys rotate`"
        } else {
            "within policy"
        }
    ));
    out.push_str(if s.unfinished {
        "rotation: UNFINISHED (rows remain on an older version): run `phivault keys rotate`\n"
    } else {
        "rotation: none pending\n"
    });
    out
}

/// At the start of `serve`: binds the patient link of every stored record when the vault was
/// made before it was bound (a rotation to a linked KEK version, resumed if an earlier start
/// was interrupted; nothing to do otherwise), before the listeners open. Rows left unbound
/// (damaged ones) are logged; the server starts anyway, and reads them as before.
pub async fn bind_links_at_start(opened: &datadir::Opened) -> Result<(), String> {
    let org = opened
        .org(None)
        .await
        .unwrap_or_else(|_| phivault_core::OrgId::unknown());
    let ctx = opened.operator.ctx(org);
    let report = opened
        .vault
        .bind_patient_links(&ctx, RotateOptions::default(), &mut |_| {})
        .await
        .map_err(|e| format!("binding the patient links failed: {}", e.client_message()))?;
    match report {
        None => {}
        Some(r) if r.finished => tracing::info!(
            kek_version = r.target,
            rewrapped = r.rewrapped,
            "bound the patient link of every stored record (a rotation to a linked KEK)"
        ),
        Some(r) => tracing::warn!(
            kek_version = r.target,
            remaining = r.remaining,
            failed = r.failed,
            "records are left with an unbound patient link: run `phivault keys rotate`"
        ),
    }
    Ok(())
}

/// At the start of `serve`: gives the records of every organization the current search
/// indexes when they were written before them (nothing to do otherwise), before the listeners
/// open, so a search never misses a record for want of its index entries.
pub async fn reindex_at_start(opened: &datadir::Opened) -> Result<(), String> {
    let orgs = opened
        .vault
        .organizations()
        .await
        .map_err(|e| format!("reindexing for search failed: {}", e.client_message()))?;
    for org in orgs {
        let ctx = opened.operator.ctx(org.id.clone());
        let done = opened
            .vault
            .reindex_search(&ctx)
            .await
            .map_err(|e| format!("reindexing for search failed: {}", e.client_message()))?;
        if let Some(n) = done {
            tracing::info!(records = n, "gave every stored record the search indexes");
        }
    }
    Ok(())
}
