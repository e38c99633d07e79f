//! Finding the patient a message is about, and writing a message's records as one transaction.
use crate::ack::{AckError, ErrorCode};
use crate::parse::Message;
use phivault_core::ResourceId;
use phivault_vault::{Ctx, PatientQuery, Stored, Vault, VaultError};
use serde_json::{Value, json};

pub(crate) fn pid(msg: &Message) -> Result<&crate::parse::Segment, AckError> {
    msg.segment("PID").ok_or_else(|| {
        AckError::new(ErrorCode::SegmentSequence, "a PID segment is required").at("PID", 1, 0)
    })
}

/// The patient an identifier list names, if any: the first identifier that finds exactly one.
pub(crate) async fn find_patient(
    vault: &Vault,
    ctx: &Ctx,
    identifiers: &[Value],
) -> Result<Option<Stored>, VaultError> {
    for ident in identifiers {
        let Some(value) = ident["value"].as_str() else {
            continue;
        };
        let system = ident["system"].as_str().unwrap_or("");
        let q = PatientQuery {
            identifier: Some(format!("{system}|{value}")),
            ..Default::default()
        };
        let mut found = vault.search_patients(ctx, &q).await?;
        if found.len() == 1 {
            return Ok(found.pop());
        }
    }
    Ok(None)
}

pub(crate) fn entry(rtype: &str, id: &ResourceId, resource: Value, if_match: Option<u64>) -> Value {
    let mut request = json!({"method": "PUT", "url": format!("{rtype}/{id}")});
    if let (Some(v), Some(o)) = (if_match, request.as_object_mut()) {
        o.insert("ifMatch".into(), json!(format!("W/\"{v}\"")));
    }
    json!({"resource": resource, "request": request})
}

pub(crate) async fn transaction(
    vault: &Vault,
    ctx: &Ctx,
    entries: Vec<Value>,
) -> Result<(), VaultError> {
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    vault.bundle(ctx, bundle).await.map(|_| ())
}
