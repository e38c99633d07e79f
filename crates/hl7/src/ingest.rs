//! One HL7 message into the vault, and its ACK. ADT^A01/A04/A05/A08/A28/A31 create or update
//! the Patient (found by a PID-3 identifier) and an Encounter from PV1; ADT^A40 merges two
//! patients; ORU^R01 adds Observations under the patient found by PID-3. Writes go in as one
//! FHIR transaction, under ids derived from the message, so a replay writes nothing new; a
//! message already applied is acknowledged AA again and not applied twice. AA is sent only
//! after the data and its audit events are durable. Every message is one audit event.
use crate::ack::{AckCode, AckError, ErrorCode, build_ack};
use crate::map;
use crate::parse::{Message, ParseLimits, parse_with};
use phivault_core::{OrgId, ResourceId};
use phivault_vault::policy::Purpose;
use phivault_vault::{Ctx, PatientQuery, Stored, Vault, VaultError};
use serde_json::{Value, json};

/// An interface: the service identity a sending system acts as.
#[derive(Debug, Clone)]
pub struct Interface {
    pub org: OrgId,
    pub name: String,
    pub purpose: Purpose,
    /// The operator's leave to act as an interface (only the operator's authority makes one).
    pub authority: phivault_vault::InterfaceAuthority,
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
        VaultError::Invalid(_) => (
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

enum Failure {
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
/// happened.
pub async fn handle(
    vault: &Vault,
    iface: &Interface,
    source: Option<String>,
    raw: &[u8],
    limits: &ParseLimits,
    ack_id: &str,
    now_ts: &str,
) -> (String, Outcome) {
    let mut ctx = Ctx::for_interface(
        &iface.authority,
        iface.org.clone(),
        &iface.name,
        iface.purpose,
    );
    ctx.source = source;
    let answer = |msg: Option<&Message>, code: AckCode, err: Option<&AckError>, duplicate| {
        (
            build_ack(msg, code, err, ack_id, now_ts),
            Outcome { code, duplicate },
        )
    };
    let msg = match parse_with(raw, limits) {
        Ok(m) => m,
        Err(e) => {
            // Where and why, never what.
            tracing::warn!(
                kind = ?e.kind,
                segment = e.segment,
                field = e.field,
                bytes = raw.len(),
                "HL7: message refused by the parser"
            );
            // Answer from whatever header can be read; audit the refusal.
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
            return match vault
                .message_event(&c, &kind, Vec::new(), Some("unparseable"))
                .await
            {
                Ok(()) => answer(
                    header.as_ref(),
                    code,
                    Some(&AckError::from_parse(&e)),
                    false,
                ),
                Err(v) => failed(header.as_ref(), &v, ack_id, now_ts, false),
            };
        }
    };
    ctx.request_id = Some(msg.control_id().to_owned());
    let sender = sender(&msg);
    let kind = type_name(&msg);
    // Already applied: the same answer, nothing written again.
    match vault.message_applied(&ctx, &sender, msg.control_id()).await {
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
    let (code, err, patients, reason) = match apply(vault, &ctx, &msg, &sender).await {
        Ok(patients) => (AckCode::Accept, None, patients, None),
        Err(Failure::Ack(code, e)) => (code, Some(e), Vec::new(), Some("refused")),
        Err(Failure::Vault(e)) => {
            let (code, err) = ack_for(&e);
            (code, Some(err), Vec::new(), Some("failed"))
        }
    };
    // The message's own event; AA only once it and the data are durable.
    if let Err(e) = vault.message_event(&ctx, &kind, patients, reason).await {
        return failed(Some(&msg), &e, ack_id, now_ts, false);
    }
    if code == AckCode::Accept
        && let Err(e) = vault
            .remember_message(&ctx, &sender, msg.control_id(), code.as_str())
            .await
    {
        // Applied and audited; only the duplicate record failed. Replays stay idempotent
        // through the derived ids, so the message is still accepted.
        tracing::warn!(error = %e.client_message(), "could not record the message as applied");
    }
    answer(Some(&msg), code, err.as_ref(), false)
}

fn sender(msg: &Message) -> String {
    let m = msg.msh();
    format!("{}^{}", m.value(3).unwrap_or(""), m.value(4).unwrap_or(""))
}

fn type_name(msg: &Message) -> String {
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
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
) -> Result<Vec<ResourceId>, Failure> {
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
        ("ADT", e @ ("A01" | "A04" | "A05" | "A08" | "A28" | "A31")) => {
            admit(vault, ctx, msg, sender, e).await
        }
        ("ADT", "A40") => merge(vault, ctx, msg).await,
        ("ORU", "R01") => results(vault, ctx, msg, sender).await,
        ("ADT" | "ORU", _) => Err(Failure::Ack(
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

fn pid(msg: &Message) -> Result<&crate::parse::Segment, AckError> {
    msg.segment("PID").ok_or_else(|| {
        AckError::new(ErrorCode::SegmentSequence, "a PID segment is required").at("PID", 1, 0)
    })
}

/// The patient an identifier list names, if any: the first identifier that finds exactly one.
async fn find_patient(
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

fn entry(rtype: &str, id: &ResourceId, resource: Value, if_match: Option<u64>) -> Value {
    let mut request = json!({"method": "PUT", "url": format!("{rtype}/{id}")});
    if let (Some(v), Some(o)) = (if_match, request.as_object_mut()) {
        o.insert("ifMatch".into(), json!(format!("W/\"{v}\"")));
    }
    json!({"resource": resource, "request": request})
}

async fn transaction(vault: &Vault, ctx: &Ctx, entries: Vec<Value>) -> Result<(), VaultError> {
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    vault.bundle(ctx, bundle).await.map(|_| ())
}

async fn admit(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
    event: &str,
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
            let id = vault.derived_id(ctx, "hl7-patient", &first);
            (
                id.clone(),
                json!({"resourceType": "Patient", "id": id.as_str()}),
                None,
            )
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
    if let Some(mut enc) = map::encounter(msg, event) {
        let visit = msg
            .segment("PV1")
            .and_then(|p| p.value(19))
            .map(|v| format!("visit|{sender}|{v}"))
            .unwrap_or_else(|| format!("message|{sender}|{}", msg.control_id()));
        let eid = vault.derived_id(ctx, "hl7-encounter", &visit);
        enc.insert("id".into(), json!(eid.as_str()));
        enc.insert(
            "subject".into(),
            json!({"reference": format!("Patient/{id}")}),
        );
        entries.push(entry("Encounter", &eid, Value::Object(enc), None));
    }
    transaction(vault, ctx, entries).await?;
    // The care-team rule: the attending doctor (PV1-7.1, a phivault username) gets a grant.
    if let Some(attending) = msg.segment("PV1").and_then(|p| p.component(7, 1))
        && vault.care_team_rule_on(ctx).await?
        && let Err(e) = vault
            .care_team_grant(ctx, attending, &id, Purpose::Treat)
            .await
    {
        tracing::info!(reason = %e.client_message(), "no care-team grant for the attending doctor");
    }
    Ok(vec![id])
}

async fn results(
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

/// ADT^A40: the patient of MRG-1 merges into the patient of PID-3. The prior record stays
/// (inactive, linked `replaced-by`), the survivor is linked `replaces`, and every clinical
/// record of the prior patient is moved to the survivor as a new version (history kept).
async fn merge(vault: &Vault, ctx: &Ctx, msg: &Message) -> Result<Vec<ResourceId>, Failure> {
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
    transaction(vault, ctx, entries).await?;
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
