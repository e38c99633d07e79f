//! `phivault audit verify|checkpoint|export|report`: the audit trail. The vault verifies,
//! reads and audits the export; this file opens the vault as the operator, writes and prints.
use super::output::PrivateFile;
use super::{DirArgs, OrgArgs, in_org, open, parse_time, vault_err};
use clap::{Args, Subcommand};
use phivault_core::ResourceId;
use phivault_vault::audit::AuditEvent;
use phivault_vault::audit::export::{AuditFilter, to_fhir_bundle};
use phivault_vault::audit::verify::Checkpoint;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

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
    Export(ExportArgs),
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

// `phivault audit export` (its help is the doc comment of `AuditCmd::Export`).
#[derive(Debug, Args)]
pub struct ExportArgs {
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
}

/// Runs an audit command.
pub async fn run(what: AuditCmd) -> Result<ExitCode, String> {
    match what {
        AuditCmd::Verify {
            dir,
            checkpoint,
            json,
        } => verify(dir, checkpoint, json).await,
        AuditCmd::Checkpoint { dir, json } => checkpoint(dir, json).await,
        AuditCmd::Export(a) => export(a).await,
        AuditCmd::Report {
            dir,
            org,
            since,
            json,
        } => report(dir, org, since, json).await,
    }
}

/// `audit verify`: exit 0 when the chain is intact, 3 when it is not.
async fn verify(dir: DirArgs, checkpoint: Option<String>, json: bool) -> Result<ExitCode, String> {
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

/// `audit checkpoint`: the head of the verified chain (`0:000…` when it is empty).
async fn checkpoint(dir: DirArgs, json: bool) -> Result<ExitCode, String> {
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

/// `audit export`: one `audit-export` event in the vault, then the events written.
async fn export(a: ExportArgs) -> Result<ExitCode, String> {
    let ExportArgs {
        dir,
        org,
        format,
        out,
        force,
        since,
        until,
        actor,
        patient,
    } = a;
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
    let events = in_org(&dir.data_dir, &org, async |opened, c| {
        let events = opened.vault.audit_events(c, &filter).await?;
        opened
            .vault
            .audit_export_event(c, events.len() as u64)
            .await?;
        Ok::<_, phivault_vault::VaultError>(events)
    })
    .await?;
    let text = render(format, &events)?;
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

/// The events as JSON lines or as a FHIR Bundle of AuditEvents.
fn render(format: AuditFormat, events: &[AuditEvent]) -> Result<String, String> {
    Ok(match format {
        AuditFormat::Jsonl => {
            let mut s = String::new();
            for e in events {
                s.push_str(&serde_json::to_string(e).map_err(|e| e.to_string())?);
                s.push('\n');
            }
            s
        }
        AuditFormat::Fhir => {
            let mut s =
                serde_json::to_string_pretty(&to_fhir_bundle(events)).map_err(|e| e.to_string())?;
            s.push('\n');
            s
        }
    })
}

/// `audit report`: the security officer's digest since a time.
async fn report(dir: DirArgs, org: OrgArgs, since: String, json: bool) -> Result<ExitCode, String> {
    let filter = AuditFilter {
        since: Some(parse_time(&since)?),
        ..Default::default()
    };
    let events = in_org(&dir.data_dir, &org, async |opened, c| {
        opened.vault.audit_events(c, &filter).await
    })
    .await?;
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
