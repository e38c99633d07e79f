//! Reading the audit trail out: filters, JSON lines, and FHIR R4 AuditEvent resources
//! (DICOM / HL7 audit vocabularies).
use super::{AuditEvent, Outcome};
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::ResourceId;
use phivault_fhir::{Bundle, Entry};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Which events to read. All given conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub actor: Option<String>,
    /// Events concerning this patient (by its pseudonym in the caller's organization).
    pub patient: Option<ResourceId>,
}

impl Vault {
    /// The events that match, in chain order.
    pub async fn audit_events(
        &self,
        ctx: &Ctx,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, VaultError> {
        let patient = filter
            .patient
            .as_ref()
            .map(|p| self.keyring.pseudonym(&ctx.org, p).to_hex());
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.audit.read(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for rec in page {
                let ev: AuditEvent = serde_json::from_str(&rec.event).map_err(|_| {
                    VaultError::Invalid(format!(
                        "audit event {} is not readable; run `phivault audit verify`",
                        rec.seq
                    ))
                })?;
                let t = OffsetDateTime::parse(&ev.time, &Rfc3339).ok();
                let keep = ev.org == ctx.org.as_str()
                    && filter.since.is_none_or(|s| t.is_some_and(|t| t >= s))
                    && filter.until.is_none_or(|u| t.is_some_and(|t| t < u))
                    && filter.actor.as_ref().is_none_or(|a| &ev.actor == a)
                    && patient.as_ref().is_none_or(|p| ev.patients.contains(p));
                if keep {
                    out.push(ev);
                }
            }
        }
        Ok(out)
    }

    /// The audit trail as a reviewer reads it through the API: AUDITOR only (people or
    /// service clients with that role), every read itself an audited event with its count.
    pub async fn review_audit(
        &self,
        ctx: &Ctx,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, VaultError> {
        use crate::policy::Subject;
        use phivault_core::Role;
        let event = self.event(ctx, "audit-read");
        let auditor = matches!(
            ctx.subject,
            Subject::User(Role::Auditor)
                | Subject::Client {
                    role: Role::Auditor,
                    ..
                }
        );
        if !auditor {
            return self.deny(&event, "role").await;
        }
        match self.audit_events(ctx, filter).await {
            Ok(list) => {
                let mut event = event;
                event.count = Some(list.len() as u64);
                self.audit(event).await?;
                Ok(list)
            }
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    /// Records that the audit trail was read out (who, how many events).
    pub async fn audit_export_event(&self, ctx: &Ctx, count: u64) -> Result<(), VaultError> {
        let mut e = self.event(ctx, "audit-export");
        e.count = Some(count);
        self.audit(e).await
    }
}

/// Sets an element of a JSON object (a no-op on anything else).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const REST: &str = "http://hl7.org/fhir/restful-interaction";

/// The AuditEvent `type` of an action (DICOM audit event ids).
fn event_type(action: &str) -> Value {
    match action {
        "import" => coding(DCM, "110107", "Import"),
        "export" => coding(DCM, "110106", "Export"),
        "login" | "logout" | "mfa" => coding(DCM, "110114", "User Authentication"),
        _ => coding(DCM, "110110", "Patient Record"),
    }
}

/// The AuditEvent `subtype` (a RESTful interaction, when there is one) and `action` code
/// (C, R, U, D or E) of an action.
fn subtype_and_action(action: &str) -> (Option<Value>, &'static str) {
    match action {
        "create" => (Some(coding(REST, "create", "create")), "C"),
        "read" | "read-patient-records" => (Some(coding(REST, "read", "read")), "R"),
        "vread" => (Some(coding(REST, "vread", "vread")), "R"),
        "history" => (
            Some(coding(REST, "history-instance", "history instance")),
            "R",
        ),
        "everything" => (Some(coding(REST, "operation", "operation")), "R"),
        "transaction" => (Some(coding(REST, "transaction", "transaction")), "E"),
        "audit-read" => (Some(coding(REST, "search-type", "search type")), "R"),
        "update" => (Some(coding(REST, "update", "update")), "U"),
        "delete" => (Some(coding(REST, "delete", "delete")), "D"),
        "search" => (Some(coding(REST, "search-type", "search type")), "E"),
        "import" => (None, "C"),
        "export" => (None, "R"),
        "erase" => (None, "D"),
        _ => (None, "E"),
    }
}

/// The one agent of an event: the actor, the network address and the purposes of use.
fn agent(ev: &AuditEvent, purpose: &[Value]) -> Value {
    let mut agent = json!({
        "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser", "human user")]},
        "who": {"identifier": {"system": "urn:phivault:actor", "value": ev.actor}},
        "requestor": true,
    });
    if let Some(addr) = &ev.source {
        set(&mut agent, "network", json!({"address": addr, "type": "2"}));
    }
    if !purpose.is_empty() {
        set(&mut agent, "purposeOfUse", Value::Array(purpose.to_vec()));
    }
    agent
}

/// The entities of an event: its resource, the other rows it touched and the patients' pseudonyms,
/// all labelled emergency treatment under break-glass.
fn entities(ev: &AuditEvent) -> Vec<Value> {
    let mut entities = Vec::new();
    if let Some(r) = &ev.resource {
        let mut e = json!({
            "what": {"identifier": {"system": "urn:phivault:row-id", "value": r}},
            "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "4", "Domain Resource"),
        });
        if let Some(t) = &ev.resource_type {
            set(
                &mut e,
                "type",
                coding("http://hl7.org/fhir/resource-types", t, t),
            );
        }
        entities.push(e);
    }
    for r in &ev.entities {
        entities.push(json!({
            "what": {"identifier": {"system": "urn:phivault:row-id", "value": r}},
            "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "4", "Domain Resource"),
        }));
    }
    for p in &ev.patients {
        entities.push(json!({
            "what": {"identifier": {"system": "urn:phivault:pseudonym", "value": p}},
            "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient"),
        }));
    }
    if ev.break_glass {
        for e in &mut entities {
            e["securityLabel"] = json!([coding(
                "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                "ETREAT",
                "Emergency Treatment"
            )]);
        }
    }
    entities
}

/// A FHIR R4 AuditEvent for one event.
pub fn to_fhir(ev: &AuditEvent) -> Value {
    let typ = event_type(ev.action.as_str());
    let (subtype, action) = subtype_and_action(ev.action.as_str());
    let outcome = match ev.outcome {
        Outcome::Success => "0",
        Outcome::Denied => "4",
        Outcome::Error => "8",
    };
    let purpose: Vec<Value> = ev
        .purpose
        .iter()
        .map(|p| {
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": p}]})
        })
        .collect();
    let agent = agent(ev, &purpose);
    let entities = entities(ev);
    let mut out = json!({
        "resourceType": "AuditEvent",
        "id": format!("phivault-audit-{}", ev.seq),
        "type": typ,
        "action": action,
        "recorded": ev.time,
        "outcome": outcome,
        "agent": [agent],
        "source": {
            "site": ev.org,
            "observer": {"display": "phivault"},
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")],
        },
    });
    if let Some(s) = subtype {
        set(&mut out, "subtype", json!([s]));
    }
    if let Some(r) = &ev.reason {
        set(&mut out, "outcomeDesc", json!(r));
    }
    if !purpose.is_empty() {
        set(&mut out, "purposeOfEvent", Value::Array(purpose));
    }
    purpose_source(&mut out, ev);
    if !entities.is_empty() {
        set(&mut out, "entity", Value::Array(entities));
    }
    out
}

/// Where the purpose came from (`header`, `client-default`, `session`, `role-default`), as an
/// extension of the AuditEvent.
fn purpose_source(out: &mut Value, ev: &AuditEvent) {
    if let Some(s) = &ev.purpose_source {
        let ext = json!([{"url": PURPOSE_SOURCE_URL, "valueCode": s}]);
        set(out, "extension", ext);
    }
}

/// The extension that says where an AuditEvent's purpose of use came from.
pub const PURPOSE_SOURCE_URL: &str = "urn:phivault:purpose-source";

/// A FHIR `collection` Bundle of AuditEvents.
pub fn to_fhir_bundle(events: &[AuditEvent]) -> Value {
    let entries: Vec<Entry> = events
        .iter()
        .map(|e| Entry::of(format!("urn:phivault:audit:{}", e.seq), to_fhir(e)))
        .collect();
    Bundle::collection().counted(entries).into_value()
}
