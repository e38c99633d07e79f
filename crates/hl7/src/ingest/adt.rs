//! ADT: admissions, transfers, discharges and their cancels (A01-A13), demographics
//! (A28/A31) and merges (A40).
use super::patient::{
    entry, find_patient, new_patient, new_patient_id, patient_ref, pid, transaction,
};
use super::{Failure, Interface};
use crate::ack::{AckError, ErrorCode};
use crate::map;
use crate::parse::Message;
use phivault_core::{ResourceId, ResourceType};
use phivault_fhir::Entry;
use phivault_vault::policy::Purpose;
use phivault_vault::{Ctx, Vault, VaultError};
use serde_json::{Map, Value, json};

/// ADT A01-A13, A28, A31: the Patient of PID (created or updated) and the Encounter of PV1
/// (found by the id derived from PV1-19, the visit number) moved as the event says.
pub(super) async fn admit(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
    event: &str,
    iface: &Interface,
) -> Result<Vec<ResourceId>, Failure> {
    let pid_seg = pid(msg)?;
    let elements = map::patient_elements(pid_seg)?;
    let identifiers = elements
        .get("identifier")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let existing = find_patient(vault, ctx, &identifiers).await?;
    let (id, mut resource, version) = match existing {
        Some(s) => {
            let mut r = s.resource;
            if let Some(o) = r.as_object_mut() {
                o.remove("meta");
            }
            (s.id, r, Some(s.version.0))
        }
        None => {
            let id = new_patient_id(vault, ctx, &identifiers);
            (id.clone(), new_patient(&id, Map::new()), None)
        }
    };
    if let Some(o) = resource.as_object_mut() {
        for (k, mut v) in elements {
            // Identifiers the message does not carry (an SSN sent only once) are kept.
            if k == "identifier"
                && let (Some(new), Some(old)) = (
                    v.as_array_mut(),
                    o.get("identifier").and_then(Value::as_array),
                )
            {
                let systems: Vec<Value> = new.iter().map(|i| i["system"].clone()).collect();
                for i in old {
                    if !systems.contains(&i["system"]) {
                        new.push(i.clone());
                    }
                }
            }
            o.insert(k, v);
        }
        o.insert("active".into(), json!(true));
    }
    let mut entries = vec![entry("Patient", &id, resource, version)];
    if let Some(enc) = encounter_entry(vault, ctx, iface, msg, sender, event, &id).await? {
        entries.push(enc);
    }
    transaction(vault, ctx, (msg, sender), entries).await?;
    // The care-team rule: the attending doctor (PV1-7.1, a phivault username) gets a grant,
    // from interfaces configured to grant only.
    let attending = msg.segment("PV1").and_then(|p| p.component(7, 1));
    if attending.is_some() && !iface.grants {
        tracing::info!("no care-team grant: this interface is not configured to grant");
    }
    if let Some(attending) = attending.filter(|_| iface.grants)
        && vault.care_team_rule_on(ctx).await?
        && let Err(e) = vault
            .care_team_grant(ctx, attending, &id, Purpose::Treat)
            .await
    {
        tracing::info!(reason = %e.client_message(), "no care-team grant for the attending doctor");
    }
    Ok(vec![id])
}

fn encounter_type() -> Result<ResourceType, AckError> {
    ResourceType::parse("Encounter")
        .map_err(|_| AckError::new(ErrorCode::InternalError, "application internal error"))
}

/// The Encounter entry of an ADT event: the visit of PV1-19 (read back to move it: transfer,
/// discharge, cancels), or one of its own for a message without a visit number.
async fn encounter_entry(
    vault: &Vault,
    ctx: &Ctx,
    iface: &Interface,
    msg: &Message,
    sender: &str,
    event: &str,
    patient: &ResourceId,
) -> Result<Option<Entry>, Failure> {
    let Some(new) = map::encounter(msg, event) else {
        return Ok(None);
    };
    let visit = msg.segment("PV1").and_then(|p| p.value(19));
    let eid = super::legacy::encounter_id(vault, ctx, iface, msg, sender).await?;
    let stored = match visit {
        None => None,
        Some(_) => match vault.read(ctx, encounter_type()?, &eid).await {
            Ok(s) => Some(s),
            Err(VaultError::NotFound | VaultError::Gone) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let version = stored.as_ref().map(|s| s.version.0);
    let Some(mut enc) = map::merge_encounter(stored.map(|s| s.resource), new, event) else {
        return Ok(None);
    };
    enc.insert("id".into(), json!(eid.as_str()));
    enc.insert("subject".into(), patient_ref(patient));
    Ok(Some(entry("Encounter", &eid, Value::Object(enc), version)))
}

/// ADT^A40: the patient of MRG-1 merges into the patient of PID-3. The prior record stays
/// (inactive, linked `replaced-by`), the survivor is linked `replaces`, and every clinical
/// record of the prior patient is moved to the survivor as a new version (history kept).
pub(super) async fn merge(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
) -> Result<Vec<ResourceId>, Failure> {
    let survivor_ids = map::identifiers(pid(msg)?);
    let mrg = msg.segment("MRG").ok_or_else(|| {
        AckError::new(
            ErrorCode::SegmentSequence,
            "an ADT^A40 needs an MRG segment",
        )
        .at("MRG", 1, 0)
    })?;
    let mut prior_ids = Vec::new();
    for rep in 1..=mrg.repetitions(1) {
        if let Some(v) = mrg.get(1, rep, 1, 1) {
            let system = mrg.get(1, rep, 4, 1).unwrap_or("");
            prior_ids.push(json!({"system": system, "value": v}));
        }
    }
    let unknown = |field: usize, seg: &str, what: &'static str| -> Failure {
        AckError::new(ErrorCode::UnknownKey, what)
            .at(seg, 1, field)
            .into()
    };
    let survivor = find_patient(vault, ctx, &survivor_ids)
        .await?
        .ok_or_else(|| unknown(3, "PID", "no patient has the PID-3 identifier"))?;
    let prior = find_patient(vault, ctx, &prior_ids)
        .await?
        .ok_or_else(|| unknown(1, "MRG", "no patient has the MRG-1 identifier"))?;
    if prior.id == survivor.id {
        return Ok(vec![survivor.id]);
    }
    let records = vault.patient_records(ctx, &prior.id).await?;
    let strip = |mut r: Value| {
        if let Some(o) = r.as_object_mut() {
            o.remove("meta");
        }
        r
    };
    let link = |r: &mut Value, other: &ResourceId, kind: &str| {
        if let Some(o) = r.as_object_mut() {
            let links = o.entry("link").or_insert_with(|| json!([]));
            if let Some(a) = links.as_array_mut() {
                a.push(json!({"other": {"reference": format!("Patient/{other}")}, "type": kind}));
            }
        }
    };
    let mut old = strip(prior.resource);
    link(&mut old, &survivor.id, "replaced-by");
    if let Some(o) = old.as_object_mut() {
        o.insert("active".into(), json!(false));
    }
    let mut new = strip(survivor.resource);
    link(&mut new, &prior.id, "replaces");
    let mut entries = vec![
        entry("Patient", &prior.id, old, Some(prior.version.0)),
        entry("Patient", &survivor.id, new, Some(survivor.version.0)),
    ];
    let from = format!("Patient/{}", prior.id);
    let to = format!("Patient/{}", survivor.id);
    for r in records {
        let mut res = strip(r.resource);
        repoint(&mut res, &from, &to, 0);
        entries.push(entry(r.rtype.as_str(), &r.id, res, Some(r.version.0)));
    }
    transaction(vault, ctx, (msg, sender), entries).await?;
    Ok(vec![survivor.id, prior.id])
}

fn repoint(v: &mut Value, from: &str, to: &str, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(o) => {
            if o.get("reference").and_then(Value::as_str) == Some(from) {
                o.insert("reference".into(), json!(to));
            }
            for (_, c) in o.iter_mut() {
                repoint(c, from, to, depth + 1);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| repoint(c, from, to, depth + 1)),
        _ => {}
    }
}
