//! One HL7 message into the vault, and its ACK. ADT^A01-A13/A28/A31 create or update the
//! Patient (found by a PID-3, else PID-2, else PID-4 identifier) and move the Encounter of PV1;
//! ADT^A40 merges two patients; ORU^R01 (DiagnosticReports and Observations), ORM^O01 and
//! OML^O21 (ServiceRequests), MDM^T02 (DocumentReference), SIU^S12-S15 (Appointment) and
//! VXU^V04 (Immunizations) go under the patient PID names, created from PID when unknown
//! (unless the interface refuses unknown patients). Writes go in as one
//! FHIR transaction, under ids derived from the message, so a replay writes nothing new; a
//! message already applied is acknowledged AA again and not applied twice. AA is sent only
//! after the data and its audit events are durable. Every message is one audit event.
mod adt;
mod documents;
mod immunizations;
mod legacy;
mod order;
mod patient;
mod queue;
mod requests;
mod results;
mod scheduling;

use crate::ack::{AckCode, AckError, ErrorCode, build_ack};
use crate::parse::{Message, ParseLimits, parse_with};
use phivault_core::{OrgId, ResourceId};
use phivault_vault::policy::Purpose;
use phivault_vault::{Ctx, Vault, VaultError};

/// An interface: the service identity a sending system acts as.
#[derive(Debug, Clone)]
pub struct Interface {
    pub org: OrgId,
    pub name: String,
    pub purpose: Purpose,
    /// The operator's leave to act as an interface (only the operator's authority makes one).
    pub authority: phivault_vault::InterfaceAuthority,
    /// Whether the care-team rule may grant the attending doctor (PV1-7) of this interface's
    /// admissions (configured per interface; off unless the operator turned it on).
    pub grants: bool,
    /// MSH-3^MSH-4 values this interface sent before record keys were the interface (operator
    /// configuration): duplicates of those messages and their visits are still found.
    pub legacy_senders: Vec<String>,
    /// What a message other than ADT does about a patient phivault has not seen.
    pub unknown_patient: UnknownPatient,
}

/// `PHIVAULT_MLLP_UNKNOWN_PATIENT`: a result, order, document, appointment or immunization
/// for a patient phivault has not seen creates the Patient from PID (`Create`, the default:
/// labs often send before the ADT feed does) or is refused AE at PID-3 (`Reject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownPatient {
    #[default]
    Create,
    Reject,
}

/// What became of a message (for logs and metrics: no content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub code: AckCode,
    pub duplicate: bool,
}

/// The ACK code and ERR a vault error is answered with (one exhaustive table).
pub fn ack_for(e: &VaultError) -> (AckCode, AckError) {
    match e {
        VaultError::Invalid(_) | VaultError::TooCostly(_) => (
            AckCode::Error,
            AckError::new(ErrorCode::DataType, "the message content is not valid"),
        ),
        VaultError::Unprocessable(_) => (
            AckCode::Error,
            AckError::new(
                ErrorCode::RequiredFieldMissing,
                "the message breaks a rule (a required element or a reference)",
            ),
        ),
        VaultError::NotFound | VaultError::Gone => (
            AckCode::Error,
            AckError::new(ErrorCode::UnknownKey, "no such patient"),
        ),
        VaultError::Conflict { .. } => (
            AckCode::Error,
            AckError::new(
                ErrorCode::RecordLocked,
                "the record changed concurrently; send again",
            ),
        ),
        VaultError::Forbidden | VaultError::Unauthenticated(_) => (
            AckCode::Reject,
            AckError::new(
                ErrorCode::InternalError,
                "this interface is not allowed to do that",
            ),
        ),
        VaultError::Store(_) | VaultError::Audit(_) => (
            AckCode::Reject,
            AckError::new(
                ErrorCode::InternalError,
                "storage or audit unavailable; nothing was stored; send again",
            ),
        ),
        VaultError::Integrity(_) | VaultError::Crypto(_) => (
            AckCode::Reject,
            AckError::new(ErrorCode::InternalError, "application internal error"),
        ),
    }
}

/// Supported versions: 2.1 to 2.8(.x).
fn version_ok(v: &str) -> bool {
    let mut it = v.split('.');
    matches!((it.next(), it.next()), (Some("2"), Some(minor)) if matches!(minor.parse::<u8>(), Ok(1..=8)))
}

pub(crate) enum Failure {
    Ack(AckCode, AckError),
    Vault(VaultError),
}

impl From<VaultError> for Failure {
    fn from(e: VaultError) -> Self {
        Failure::Vault(e)
    }
}

impl From<AckError> for Failure {
    fn from(e: AckError) -> Self {
        Failure::Ack(AckCode::Error, e)
    }
}

/// The ACK for a vault error.
fn failed(
    msg: Option<&Message>,
    e: &VaultError,
    ack_id: &str,
    now_ts: &str,
    duplicate: bool,
) -> (String, Outcome) {
    let (code, err) = ack_for(e);
    (
        build_ack(msg, code, Some(&err), ack_id, now_ts),
        Outcome { code, duplicate },
    )
}

/// Handles one message, parsed under `limits`; returns the ACK to send (unframed) and what
/// happened. A message not answered AA is kept in the sealed error queue (see [`queue`]).
pub async fn handle(
    vault: &Vault,
    iface: &Interface,
    source: Option<String>,
    raw: &[u8],
    limits: &ParseLimits,
    ack_id: &str,
    now_ts: &str,
) -> (String, Outcome) {
    let mut ctx = Ctx::for_interface_message(
        &iface.authority,
        iface.org.clone(),
        &iface.name,
        iface.purpose,
    );
    ctx.source = source;
    let answered = respond(vault, iface, ctx.clone(), raw, limits, ack_id, now_ts).await;
    if answered.1.code == AckCode::Accept {
        return answered;
    }
    queue::keep(vault, &ctx, raw, limits, answered, (ack_id, now_ts)).await
}

/// The answer to one message (applied, refused or failed), without the queue.
async fn respond(
    vault: &Vault,
    iface: &Interface,
    mut ctx: Ctx,
    raw: &[u8],
    limits: &ParseLimits,
    ack_id: &str,
    now_ts: &str,
) -> (String, Outcome) {
    let answer = |msg: Option<&Message>, code: AckCode, err: Option<&AckError>, duplicate| {
        (
            build_ack(msg, code, err, ack_id, now_ts),
            Outcome { code, duplicate },
        )
    };
    let msg = match parse_with(raw, limits) {
        Ok(m) => m,
        Err(e) => return unparseable(vault, &ctx, raw, limits, &e, ack_id, now_ts).await,
    };
    ctx.request_id = Some(msg.control_id().to_owned());
    let sender = sender(iface);
    let kind = type_name(&msg);
    // This message's turn on its patients, held until it is recorded as applied.
    let _turn = order::wait_turn(vault, &ctx, &msg, &sender).await;
    // Already applied: the same answer, nothing written again.
    match legacy::message_applied(vault, &ctx, iface, &msg, &sender).await {
        Ok(Some(_)) => {
            return match vault
                .message_event(&ctx, &kind, Vec::new(), Some("duplicate"))
                .await
            {
                Ok(()) => answer(Some(&msg), AckCode::Accept, None, true),
                Err(e) => failed(Some(&msg), &e, ack_id, now_ts, true),
            };
        }
        Ok(None) => {}
        Err(e) => return failed(Some(&msg), &e, ack_id, now_ts, false),
    }
    let applied = apply_retrying(vault, iface, &ctx, &msg, &sender).await;
    let (code, err, patients, reason) = match applied {
        Ok(patients) => (AckCode::Accept, None, patients, None),
        Err(Failure::Ack(code, e)) => (code, Some(e), Vec::new(), Some("refused")),
        Err(Failure::Vault(e)) => {
            let (code, err) = ack_for(&e);
            (code, Some(err), Vec::new(), Some("failed"))
        }
    };
    // The message's own event; AA only once it and the data are durable. The record that
    // the message was applied (its receipt) was committed with its data.
    if let Err(e) = vault.message_event(&ctx, &kind, patients, reason).await {
        return failed(Some(&msg), &e, ack_id, now_ts, false);
    }
    answer(Some(&msg), code, err.as_ref(), false)
}

/// A message the parser refused: answered from whatever header can be read (AE, or AR with
/// no header), and audited.
async fn unparseable(
    vault: &Vault,
    ctx: &Ctx,
    raw: &[u8],
    limits: &ParseLimits,
    e: &crate::parse::ParseError,
    ack_id: &str,
    now_ts: &str,
) -> (String, Outcome) {
    // Where and why, never what.
    tracing::warn!(
        kind = ?e.kind,
        segment = e.segment,
        field = e.field,
        bytes = raw.len(),
        "HL7: message refused by the parser"
    );
    let header = raw
        .split(|b| *b == b'\r' || *b == b'\n')
        .next()
        .and_then(|h| parse_with(h, limits).ok());
    let code = if header.is_some() {
        AckCode::Error
    } else {
        AckCode::Reject
    };
    let mut c = ctx.clone();
    c.request_id = header.as_ref().map(|h| h.control_id().to_owned());
    let kind = header.as_ref().map(type_name).unwrap_or_default();
    match vault
        .message_event(&c, &kind, Vec::new(), Some("unparseable"))
        .await
    {
        Ok(()) => (
            build_ack(
                header.as_ref(),
                code,
                Some(&AckError::from_parse(e)),
                ack_id,
                now_ts,
            ),
            Outcome {
                code,
                duplicate: false,
            },
        ),
        Err(v) => failed(header.as_ref(), &v, ack_id, now_ts, false),
    }
}

/// How often a message is applied again when another writer changed its records in between
/// (another node, or the API), and how long to wait before the first retry.
const RETRIES: u32 = 8;
const RETRY_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// [`apply`], again (bounded, backing off) when a record it writes changed concurrently:
/// a version conflict is the vault's business, not the sender's.
async fn apply_retrying(
    vault: &Vault,
    iface: &Interface,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
) -> Result<Vec<ResourceId>, Failure> {
    let mut attempt = 0;
    loop {
        match apply(vault, iface, ctx, msg, sender).await {
            Err(Failure::Vault(VaultError::Conflict { .. })) if attempt < RETRIES => {
                attempt += 1;
                tokio::time::sleep(RETRY_WAIT * 2u32.pow(attempt.min(6))).await;
            }
            other => return other,
        }
    }
}

/// The key of a message's sender for duplicate detection and derived ids: the authenticated
/// interface, never MSH-3/MSH-4 (which any sender can write). Interface names hold no `^`, so
/// these keys never meet the `MSH-3^MSH-4` keys of data written before.
fn sender(iface: &Interface) -> String {
    format!("interface:{}", iface.name)
}

pub(crate) fn type_name(msg: &Message) -> String {
    let (t, e) = msg.message_type();
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect()
    };
    format!("{}^{}", clean(t), clean(e))
}

/// Applies a parsed message; returns the patients touched.
async fn apply(
    vault: &Vault,
    iface: &Interface,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
) -> Result<Vec<ResourceId>, Failure> {
    let unknown = iface.unknown_patient;
    if !version_ok(msg.version()) {
        return Err(Failure::Ack(
            AckCode::Reject,
            AckError::new(
                ErrorCode::UnsupportedVersion,
                "versions 2.1 to 2.8 are supported",
            )
            .at("MSH", 1, 12),
        ));
    }
    match msg.message_type() {
        (
            "ADT",
            e @ ("A01" | "A02" | "A03" | "A04" | "A05" | "A06" | "A07" | "A08" | "A09" | "A10"
            | "A11" | "A12" | "A13" | "A28" | "A31"),
        ) => adt::admit(vault, ctx, msg, sender, e, iface).await,
        ("ADT", "A40") => adt::merge(vault, ctx, msg, sender).await,
        ("ORU", "R01") => results::results(vault, ctx, msg, sender, unknown).await,
        ("ORM", "O01") | ("OML", "O21") => requests::orders(vault, ctx, msg, sender, unknown).await,
        ("MDM", "T02") => documents::document(vault, ctx, msg, sender, unknown).await,
        ("SIU", e @ ("S12" | "S13" | "S14" | "S15")) => {
            scheduling::appointment(vault, ctx, msg, sender, e, unknown).await
        }
        ("VXU", "V04") => immunizations::immunizations(vault, ctx, msg, sender, unknown).await,
        ("ADT" | "ORU" | "ORM" | "OML" | "MDM" | "SIU" | "VXU", _) => Err(Failure::Ack(
            AckCode::Reject,
            AckError::new(
                ErrorCode::UnsupportedEventCode,
                "this event is not supported",
            )
            .at("MSH", 1, 9),
        )),
        _ => Err(Failure::Ack(
            AckCode::Reject,
            AckError::new(
                ErrorCode::UnsupportedMessageType,
                "this message type is not supported",
            )
            .at("MSH", 1, 9),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for v in ["2.1", "2.3.1", "2.5.1", "2.8", "2.8.2"] {
            assert!(version_ok(v), "{v}");
        }
        for v in ["", "3.0", "2.9", "2", "2.x", "1.2"] {
            assert!(!version_ok(v), "{v}");
        }
    }
}
