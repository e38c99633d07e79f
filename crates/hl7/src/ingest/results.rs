//! ORU^R01: results under the patient PID names.
use super::Failure;
use super::patient::{entry, find_patient, pid, transaction};
use crate::ack::{AckError, ErrorCode};
use crate::map;
use crate::parse::Message;
use phivault_core::ResourceId;
use phivault_vault::{Ctx, Vault};
use serde_json::{Value, json};

pub(super) async fn results(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
) -> Result<Vec<ResourceId>, Failure> {
    let pid_seg = pid(msg)?;
    let identifiers = map::identifiers(pid_seg);
    if identifiers.is_empty() {
        return Err(
            AckError::new(ErrorCode::RequiredFieldMissing, "PID-3 needs an identifier")
                .at("PID", 1, 3)
                .into(),
        );
    }
    let Some(patient) = find_patient(vault, ctx, &identifiers).await? else {
        return Err(
            AckError::new(ErrorCode::UnknownKey, "no patient has the PID-3 identifier")
                .at("PID", 1, 3)
                .into(),
        );
    };
    let observations = map::observations(msg)?;
    let mut entries = Vec::with_capacity(observations.len());
    for (n, mut o) in observations {
        let oid = vault.derived_id(
            ctx,
            "hl7-observation",
            &format!("{sender}|{}|{n}", msg.control_id()),
        );
        o.insert("id".into(), json!(oid.as_str()));
        o.insert(
            "subject".into(),
            json!({"reference": format!("Patient/{}", patient.id)}),
        );
        entries.push(entry("Observation", &oid, Value::Object(o), None));
    }
    transaction(vault, ctx, entries).await?;
    Ok(vec![patient.id])
}
