//! The hook into the sealed error queue: a message that was not accepted (AE or AR, an
//! unparseable one too) is kept by the vault with its ACK code, the reason the ACK gave and
//! the interface. If it cannot be kept, the sender is told to send it again (AR) rather than
//! being acknowledged while the message is lost.
use super::{Outcome, type_name};
use crate::ack::{AckCode, AckError, ErrorCode, build_ack};
use crate::parse::{Message, ParseLimits, parse_with};
use phivault_vault::{Ctx, Refusal, Vault};

/// The ACK's reason, from its ERR segment: the fixed text and the position, never a value.
fn reason_of(ack: &str, limits: &ParseLimits) -> String {
    let Ok(parsed) = parse_with(ack.as_bytes(), limits) else {
        return String::new();
    };
    let Some(err) = parsed.segment("ERR") else {
        return String::new();
    };
    let detail = err.value(8).unwrap_or("");
    match (err.component(2, 1), err.component(2, 3)) {
        (Some(seg), Some(field)) => format!("{seg}-{field}: {detail}"),
        (Some(seg), None) => format!("{seg}: {detail}"),
        _ => detail.to_owned(),
    }
}

/// Keeps a refused message in the queue; the ACK to send (the one given, or AR when the
/// message could not be kept).
pub(super) async fn keep(
    vault: &Vault,
    ctx: &Ctx,
    raw: &[u8],
    limits: &ParseLimits,
    (ack, outcome): (String, Outcome),
    (ack_id, now_ts): (&str, &str),
) -> (String, Outcome) {
    // Whatever header can be read: the type for the listing, the sender for an AR.
    let header: Option<Message> = raw
        .split(|b| *b == b'\r' || *b == b'\n')
        .next()
        .and_then(|h| parse_with(h, limits).ok());
    let kind = header.as_ref().map(type_name).unwrap_or_default();
    let mut ctx = ctx.clone();
    ctx.request_id = header.as_ref().map(|h| h.control_id().to_owned());
    let reason = reason_of(&ack, limits);
    let refusal = Refusal {
        message_type: &kind,
        ack_code: outcome.code.as_str(),
        reason: &reason,
    };
    match vault.queue_message(&ctx, raw, refusal).await {
        Ok(_) => (ack, outcome),
        Err(e) => {
            tracing::warn!(error = %e.client_message(), "HL7: a refused message could not be queued; answered AR");
            let err = AckError::new(ErrorCode::InternalError, "storage unavailable; send again");
            let code = AckCode::Reject;
            (
                build_ack(header.as_ref(), code, Some(&err), ack_id, now_ts),
                Outcome {
                    code,
                    duplicate: outcome.duplicate,
                },
            )
        }
    }
}
