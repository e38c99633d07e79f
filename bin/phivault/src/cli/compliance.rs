//! `phivault compliance`: the compliance report measured from the running system, and the
//! thresholds it measures against. The vault does the measuring; this file opens the vault,
//! hands it what the binary knows of its TLS listener, and prints.
use super::{DirArgs, TlsArgs};

use crate::datadir::Opened;
use crate::tls_probe::{ListenerTls, Target};
use clap::Subcommand;
use phivault_core::OrgId;
use phivault_vault::Ctx;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code of `compliance report` when at least one check fails.
pub const EXIT_CHECK_FAILED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum ComplianceCmd {
    /// Measure every safeguard (encryption at rest and in transit, integrity, audit controls,
    /// authentication, access control, key management, backups). Exit 0 when no check fails
    /// (warnings allowed), 3 when one does, 1 when the report could not be made.
    Report {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        tls: TlsArgs,
        /// Also handshake with a live listener (TLS 1.0 to 1.3), e.g. https://localhost:8443.
        #[arg(long)]
        probe: Option<String>,
        /// `{"checks": [{"id", "safeguard", "status", "evidence"}, …]}`.
        #[arg(long)]
        json: bool,
    },
    /// Show the thresholds, or set one: kek_max_age_days, checkpoint_max_age_days,
    /// backup_max_age_days, inactive_account_days, sample_size.
    Policy {
        #[command(flatten)]
        dir: DirArgs,
        /// The setting to change.
        #[arg(requires = "value")]
        name: Option<String>,
        /// Its new value (a whole number).
        value: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

/// Opens the vault for the operator. The report covers every organization; its audit event
/// is filed under the only organization, or `unknown` when there are several.
pub(crate) async fn open(dir: &DirArgs) -> Result<(Opened, Ctx), String> {
    // The passphrase, or the PKCS#11 token when the root key is there.
    let opened = super::open(&dir.data_dir).await?;
    let org = opened.org(None).await.unwrap_or_else(|_| OrgId::unknown());
    let ctx = opened.operator.ctx(org);
    Ok((opened, ctx))
}

pub async fn run(cmd: ComplianceCmd) -> Result<ExitCode, String> {
    match cmd {
        ComplianceCmd::Report {
            dir,
            tls,
            probe,
            json,
        } => {
            let probe = probe.as_deref().map(Target::parse).transpose()?;
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let (cert, key) = crate::tls::paths(
                &dir.data_dir,
                tls.tls_cert.as_deref(),
                tls.tls_key.as_deref(),
            );
            let listener = ListenerTls::configured(crate::tls::server_config(&cert, &key), probe);
            let (opened, ctx) = open(&dir).await?;
            let vault = opened.vault.clone().with_transport(Arc::new(listener));
            let result = vault.compliance_report(&ctx).await;
            opened.close().await;
            let report = result.map_err(|e| e.to_string())?;
            let out = match json {
                true => serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n",
                false => report.to_text(),
            };
            print!("{out}");
            Ok(if report.failed() {
                ExitCode::from(EXIT_CHECK_FAILED)
            } else {
                ExitCode::SUCCESS
            })
        }
        ComplianceCmd::Policy {
            dir,
            name,
            value,
            json,
        } => {
            let (opened, ctx) = open(&dir).await?;
            let result = async {
                if let (Some(name), Some(value)) = (&name, value) {
                    opened
                        .vault
                        .set_compliance_policy(&ctx, name, value)
                        .await?;
                }
                opened.vault.compliance_policy().await
            }
            .await;
            opened.close().await;
            let policy = result.map_err(|e| e.to_string())?;
            if json {
                let map: serde_json::Map<String, serde_json::Value> = policy
                    .entries()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), json!(v)))
                    .collect();
                println!("{}", serde_json::Value::Object(map));
            } else {
                for (k, v) in policy.entries() {
                    println!("{k:<24} {v}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
