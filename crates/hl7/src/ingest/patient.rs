//! Finding the patient a message is about, and writing a message's records as one transaction.
use super::{Failure, UnknownPatient};
use crate::ack::{AckError, ErrorCode};
use crate::parse::Message;
use phivault_core::ResourceId;
use phivault_fhir::{Bundle, Entry, Method, Request, etag, full_url};
use phivault_vault::{Ctx, PatientQuery, Stored, Vault, VaultError};
use serde_json::{Map, Value, json};

pub(crate) fn pid(msg: &Message) -> Result<&crate::parse::Segment, AckError> {
    msg.segment("PID").ok_or_else(|| {
        AckError::new(ErrorCode::SegmentSequence, "a PID segment is required").at("PID", 1, 0)
    })
}

/// What a message's identifiers find.
pub(crate) enum Found {
    /// The first identifier that finds exactly one patient found this one.
    One(Box<Stored>),
    /// No identifier finds anyone.
    Nobody,
    /// No identifier finds exactly one, and some find several.
    Several,
}

/// The patient an identifier list names: the first identifier that finds exactly one.
pub(crate) async fn lookup(
    vault: &Vault,
    ctx: &Ctx,
    identifiers: &[Value],
) -> Result<Found, VaultError> {
    let mut several = false;
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
        match (found.pop(), found.is_empty()) {
            (Some(one), true) => return Ok(Found::One(Box::new(one))),
            (Some(_), false) => several = true,
            (None, _) => {}
        }
    }
    Ok(if several {
        Found::Several
    } else {
        Found::Nobody
    })
}

/// The patient an identifier list names, if exactly one.
pub(crate) async fn find_patient(
    vault: &Vault,
    ctx: &Ctx,
    identifiers: &[Value],
) -> Result<Option<Stored>, VaultError> {
    Ok(match lookup(vault, ctx, identifiers).await? {
        Found::One(s) => Some(*s),
        Found::Nobody | Found::Several => None,
    })
}

/// A transaction entry that writes `resource` under its id (`PUT`), on the version read
/// (`ifMatch`) when it was read first.
pub(crate) fn entry(rtype: &str, id: &ResourceId, resource: Value, if_match: Option<u64>) -> Entry {
    let mut request = Request::new(Method::Put, full_url(rtype, id));
    if let Some(v) = if_match {
        request = request.if_match(etag(v));
    }
    Entry::new().resource(resource).request(request)
}

/// Writes a message's records as one transaction, with the message's receipt (so that a
/// resend from `sender` of the same control id is known as applied).
pub(crate) async fn transaction(
    vault: &Vault,
    ctx: &Ctx,
    (msg, sender): (&Message, &str),
    entries: Vec<Entry>,
) -> Result<(), VaultError> {
    let bundle = Bundle::transaction().entries(entries).into_value();
    let kind = super::type_name(msg);
    vault.bundle_for_message(ctx, bundle, (sender, &kind)).await
}

/// The id a Patient first seen in a message gets: derived from its first identifier, so the
/// same person sent twice (or by an ADT after a result) is one record.
pub(crate) fn new_patient_id(vault: &Vault, ctx: &Ctx, identifiers: &[Value]) -> ResourceId {
    let first = identifiers
        .first()
        .map(|i| {
            format!(
                "{}|{}",
                i["system"].as_str().unwrap_or(""),
                i["value"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_default();
    vault.derived_id(ctx, "hl7-patient", &first)
}

/// A new Patient resource of these PID elements.
pub(crate) fn new_patient(id: &ResourceId, elements: Map<String, Value>) -> Value {
    let mut p = Map::new();
    p.insert("resourceType".into(), json!("Patient"));
    p.insert("id".into(), json!(id.as_str()));
    p.extend(elements);
    p.insert("active".into(), json!(true));
    Value::Object(p)
}

/// The patient a result, order, document, appointment or immunization is about: the one its
/// PID identifiers (PID-3, else PID-2, else PID-4) find, else a new Patient from PID (returned
/// as the transaction entry to write with the message's records) unless the interface
/// refuses unknown patients (AE at PID-3).
pub(crate) async fn subject(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    unknown: UnknownPatient,
) -> Result<(ResourceId, Option<Entry>), Failure> {
    let pid_seg = pid(msg)?;
    let identifiers = crate::map::identifiers(pid_seg);
    if identifiers.is_empty() {
        return Err(AckError::new(
            ErrorCode::RequiredFieldMissing,
            "PID-3 (or PID-2, PID-4) needs an identifier",
        )
        .at("PID", 1, 3)
        .into());
    }
    match lookup(vault, ctx, &identifiers).await? {
        Found::One(found) => return Ok((found.id, None)),
        // Creating one more would add to the confusion; a person sorts it out.
        Found::Several => {
            return Err(AckError::new(
                ErrorCode::DuplicateKey,
                "several patients have the PID identifier",
            )
            .at("PID", 1, 3)
            .into());
        }
        Found::Nobody => {}
    }
    if unknown == UnknownPatient::Reject {
        return Err(
            AckError::new(ErrorCode::UnknownKey, "no patient has the PID identifier")
                .at("PID", 1, 3)
                .into(),
        );
    }
    let elements = crate::map::patient_elements(pid_seg)?;
    let id = new_patient_id(vault, ctx, &identifiers);
    let resource = new_patient(&id, elements);
    Ok((id.clone(), Some(entry("Patient", &id, resource, None))))
}

/// `{"reference": "Patient/{id}"}`.
pub(crate) fn patient_ref(id: &ResourceId) -> Value {
    json!({"reference": format!("Patient/{id}")})
}

/// The id of a record a message makes: derived from what names it across messages (an order,
/// document or appointment number) when the message gives one, else from the message's
/// control id and the record's place in it, so a replay writes the same ids.
pub(crate) fn record_id(
    vault: &Vault,
    ctx: &Ctx,
    purpose: &str,
    sender: &str,
    msg: &Message,
    key: Option<&str>,
    n: usize,
) -> ResourceId {
    let input = match key {
        Some(k) => format!("{sender}|key|{k}"),
        None => format!("{sender}|{}|{n}", msg.control_id()),
    };
    vault.derived_id(ctx, purpose, &input)
}

/// A record of a message, its id given, its patient not yet.
pub(crate) struct Record {
    pub rtype: &'static str,
    pub id: ResourceId,
    pub resource: Map<String, Value>,
}

/// Writes a message's records about its patient (found or created from PID, see [`subject`])
/// in one transaction. `element` names where the patient goes: `subject`, `patient`, or
/// `participant` (an Appointment's first participant).
pub(crate) async fn write_records(
    vault: &Vault,
    ctx: &Ctx,
    (msg, sender): (&Message, &str),
    unknown: UnknownPatient,
    element: &str,
    records: Vec<Record>,
) -> Result<Vec<ResourceId>, Failure> {
    let (patient, created) = subject(vault, ctx, msg, unknown).await?;
    let mut entries: Vec<Entry> = created.into_iter().collect();
    for Record {
        rtype,
        id,
        mut resource,
    } in records
    {
        resource.insert("id".into(), json!(id.as_str()));
        if element == "participant" {
            let who = json!({"actor": patient_ref(&patient), "status": "accepted"});
            match resource
                .get_mut("participant")
                .and_then(Value::as_array_mut)
            {
                Some(list) => list.insert(0, who),
                None => {
                    resource.insert("participant".into(), json!([who]));
                }
            }
        } else {
            resource.insert(element.into(), patient_ref(&patient));
        }
        entries.push(entry(rtype, &id, Value::Object(resource), None));
    }
    transaction(vault, ctx, (msg, sender), entries).await?;
    Ok(vec![patient])
}
