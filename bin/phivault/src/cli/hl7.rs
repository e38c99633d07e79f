//! `phivault hl7 errors list|show|retry|discard`: the sealed queue of HL7 v2 messages that were
//! not accepted (AE or AR). The vault keeps, seals, audits and shreds; this file opens the
//! vault as the operator, runs a retry through the same ingestion as the MLLP listener (with
//! today's code and `PHIVAULT_MLLP_*` settings) and prints.
use super::{DirArgs, OrgArgs, ctx, open, parse_time};
use clap::{Args, Subcommand};
use phivault_core::{Clock, SystemClock};
use phivault_hl7::ingest::{Interface, handle};
use phivault_vault::{Ctx, Operator, QueuedMessage, Vault};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Hl7Cmd {
    /// The sealed error queue.
    Errors {
        #[command(subcommand)]
        what: ErrorsCmd,
    },
}

/// Where a command acts.
#[derive(Debug, Args)]
pub struct Place {
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    org: OrgArgs,
}

#[derive(Debug, Subcommand)]
pub enum ErrorsCmd {
    /// The queued messages, oldest first: id, received, interface, message type, ACK code,
    /// reason, attempts (never their content). Audited. JSON: one array of `{id, received_at,
    /// last_attempt_at, interface, message_type, ack_code, reason, attempts}`.
    List {
        #[command(flatten)]
        place: Place,
        /// Only entries last refused at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Only entries of this interface.
        #[arg(long)]
        interface: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print one queued message (segments one per line). Operator only; audited.
    Show {
        #[command(flatten)]
        place: Place,
        id: String,
    },
    /// Run queued messages through the ingestion again, as the interface that sent them, with
    /// today's code and settings: an AA removes the entry (crypto-shredded), anything else
    /// keeps it with the new ACK code and one more attempt. Exits 1 if any is still refused.
    Retry {
        #[command(flatten)]
        place: Place,
        /// The entry to retry.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every entry of the organization.
        #[arg(long)]
        all: bool,
    },
    /// Discard an entry: its data key and sealed bytes are destroyed (crypto-shredding).
    /// Audited with the reason.
    Discard {
        #[command(flatten)]
        place: Place,
        id: String,
        /// Why (kept in the audit trail: write no patient data here).
        #[arg(long)]
        reason: String,
    },
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn entry_json(e: &QueuedMessage) -> Value {
    json!({"id": e.id, "received_at": rfc3339(e.received_at),
        "last_attempt_at": rfc3339(e.last_attempt_at), "interface": e.interface,
        "message_type": e.message_type, "ack_code": e.ack_code, "reason": e.reason,
        "attempts": e.attempts})
}

/// Runs an `hl7` command.
pub async fn run(cmd: Hl7Cmd) -> Result<ExitCode, String> {
    let Hl7Cmd::Errors { what } = cmd;
    let place = match &what {
        ErrorsCmd::List { place, .. }
        | ErrorsCmd::Show { place, .. }
        | ErrorsCmd::Retry { place, .. }
        | ErrorsCmd::Discard { place, .. } => place,
    };
    let opened = open(&place.dir.data_dir).await?;
    let result = async {
        let c = ctx(&opened, &place.org).await?;
        let v = &opened.vault;
        let err = |e: phivault_vault::VaultError| e.to_string();
        match &what {
            ErrorsCmd::List {
                since,
                interface,
                json,
                ..
            } => {
                let since = since
                    .as_deref()
                    .map(parse_time)
                    .transpose()?
                    .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0));
                let list = v
                    .queued_messages(&c, since, interface.as_deref())
                    .await
                    .map_err(err)?;
                print_list(&list, *json);
                Ok(ExitCode::SUCCESS)
            }
            ErrorsCmd::Show { id, .. } => {
                let opened = v.queued_message(&c, id).await.map_err(err)?;
                // The bytes as sent (any character set), segments on lines.
                let mut bytes: Vec<u8> = opened
                    .message
                    .iter()
                    .map(|b| if *b == b'\r' { b'\n' } else { *b })
                    .collect();
                if bytes.last() != Some(&b'\n') {
                    bytes.push(b'\n');
                }
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("standard output: {}", e.kind()))?;
                Ok(ExitCode::SUCCESS)
            }
            ErrorsCmd::Retry { id, .. } => retry(v, &opened.operator, &c, id.as_deref()).await,
            ErrorsCmd::Discard { id, reason, .. } => {
                v.discard_queued(&c, id, reason).await.map_err(err)?;
                println!("{id}: discarded (its sealed bytes and data key are destroyed)");
                Ok(ExitCode::SUCCESS)
            }
        }
    }
    .await;
    opened.close().await;
    result
}

fn print_list(list: &[QueuedMessage], json: bool) {
    if json {
        println!("{}", Value::Array(list.iter().map(entry_json).collect()));
        return;
    }
    for e in list {
        println!(
            "{}  {}  {}  {}  {}  attempts {}  {}",
            e.id,
            rfc3339(e.received_at),
            e.interface,
            if e.message_type.is_empty() {
                "-"
            } else {
                &e.message_type
            },
            e.ack_code,
            e.attempts,
            e.reason
        );
    }
}

/// Retries one entry (or all): prints each one's new ACK code.
async fn retry(
    v: &Vault,
    operator: &Operator,
    c: &Ctx,
    id: Option<&str>,
) -> Result<ExitCode, String> {
    let ids: Vec<String> = match id {
        Some(i) => vec![i.to_owned()],
        None => v
            .queued_messages(c, None, None)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| e.id)
            .collect(),
    };
    let limits = crate::mllp::limits_from_env()?.parse;
    let purpose = crate::mllp::purpose_from_env()?;
    let unknown_patient = crate::mllp::unknown_patient_from_env()?;
    let mut refused = 0u64;
    for id in ids {
        let taken = v.take_for_retry(c, &id).await.map_err(|e| e.to_string())?;
        // As the interface is configured today (PHIVAULT_MLLP_* settings of this process).
        let conf = crate::mllp::interface_conf_from_env(&taken.entry.interface)?;
        let iface = Interface {
            org: c.org().clone(),
            name: conf.name,
            purpose,
            authority: operator.interfaces(),
            grants: conf.grants,
            legacy_senders: conf.legacy_senders,
            unknown_patient,
        };
        let now = SystemClock.now();
        let ack_id = format!("retry-{}", SystemClock.now_millis());
        let ts = crate::mllp::hl7_ts(now);
        let (_, outcome) = handle(v, &iface, None, &taken.message, &limits, &ack_id, &ts).await;
        let code = outcome.code.as_str();
        if code == "AA" {
            v.settle_queued(c, &id).await.map_err(|e| e.to_string())?;
            println!("{id}: AA (accepted; removed from the queue)");
        } else {
            refused += 1;
            println!("{id}: {code} (kept in the queue)");
        }
    }
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
