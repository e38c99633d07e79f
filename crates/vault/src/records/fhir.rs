//! The little FHIR R4 knowledge the vault needs: resource types, server-managed meta, the
//! Patient fields that get blind indexes, and patient references.
use crate::error::VaultError;
use phivault_core::{IndexKind, ResourceType};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Reads and checks `resourceType`.
pub fn resource_type(resource: &Value) -> Result<ResourceType, VaultError> {
    let obj = resource
        .as_object()
        .ok_or_else(|| VaultError::Invalid("not a FHIR resource: expected a JSON object".into()))?;
    let name = obj
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| VaultError::Invalid("not a FHIR resource: no resourceType".into()))?;
    ResourceType::parse(name).map_err(|e| {
        // The type name is a schema word, not PHI, but cap its length before echoing it.
        let shown: String = name.chars().take(64).collect();
        VaultError::Invalid(format!("resourceType '{shown}': {e}"))
    })
}

/// Removes what the server manages (`meta.versionId`, `meta.lastUpdated`); drops an empty meta.
pub fn strip_server_meta(resource: &mut Value) {
    if let Some(obj) = resource.as_object_mut() {
        let empty = match obj.get_mut("meta").and_then(Value::as_object_mut) {
            Some(meta) => {
                meta.remove("versionId");
                meta.remove("lastUpdated");
                meta.is_empty()
            }
            None => false,
        };
        if empty {
            obj.remove("meta");
        }
    }
}

/// Sets `meta.versionId` and `meta.lastUpdated` for a resource going out.
pub fn set_server_meta(resource: &mut Value, version: u64, updated_at_millis: i64) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("versionId".into(), Value::String(version.to_string()));
        let when =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(updated_at_millis) * 1_000_000)
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok());
        if let Some(when) = when {
            meta.insert("lastUpdated".into(), Value::String(when));
        }
    }
}

/// Lowercase, trimmed, inner whitespace collapsed.
pub fn normalize_text(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Digits only.
pub fn normalize_phone(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// `system|value`, both trimmed.
pub fn identifier_term(system: Option<&str>, value: &str) -> String {
    format!("{}|{}", system.unwrap_or("").trim(), value.trim())
}

pub fn family_birthdate_term(family: &str, birth_date: &str) -> String {
    format!("{}|{}", normalize_text(family), birth_date.trim())
}

/// The blind-index terms of a Patient: identifiers (with and without system), every family
/// name with the birth date, every phone number.
pub fn patient_index_terms(patient: &Value) -> Vec<(IndexKind, String)> {
    let mut out = Vec::new();
    for ident in arr(patient, "identifier") {
        if let Some(value) = ident.get("value").and_then(Value::as_str) {
            if value.trim().is_empty() {
                continue;
            }
            let system = ident.get("system").and_then(Value::as_str);
            out.push((IndexKind::Identifier, identifier_term(system, value)));
            out.push((IndexKind::IdentifierValue, value.trim().to_owned()));
        }
    }
    if let Some(birth) = patient.get("birthDate").and_then(Value::as_str) {
        for name in arr(patient, "name") {
            if let Some(family) = name.get("family").and_then(Value::as_str)
                && !family.trim().is_empty()
            {
                out.push((
                    IndexKind::FamilyBirthdate,
                    family_birthdate_term(family, birth),
                ));
            }
        }
    }
    for tel in arr(patient, "telecom") {
        let system = tel.get("system").and_then(Value::as_str);
        if matches!(system, Some("phone") | Some("sms") | None)
            && let Some(v) = tel.get("value").and_then(Value::as_str)
        {
            let digits = normalize_phone(v);
            if digits.len() >= 4 {
                if digits.len() > 10 {
                    let tail: String = digits.chars().skip(digits.len() - 10).collect();
                    out.push((IndexKind::Phone, tail));
                }
                out.push((IndexKind::Phone, digits));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn arr<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter())
        .into_iter()
        .flatten()
}

/// A reference found in a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRef {
    /// The top-level element it was found in (`subject`, `patient`, `target`, …).
    pub element: String,
    pub reference: String,
}

/// Top-level elements that name the patient a resource is about.
pub const PATIENT_ELEMENTS: &[&str] = &["subject", "patient", "beneficiary"];

/// Every `reference` string in the resource, with the top-level element it sits under.
pub fn references(resource: &Value) -> Vec<FoundRef> {
    let mut out = Vec::new();
    if let Some(obj) = resource.as_object() {
        for (k, v) in obj {
            if k == "contained" {
                continue;
            }
            collect_refs(v, k, &mut out, 0);
        }
    }
    out
}

fn collect_refs(v: &Value, element: &str, out: &mut Vec<FoundRef>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("reference") {
                out.push(FoundRef {
                    element: element.to_owned(),
                    reference: r.clone(),
                });
            }
            for (k, child) in map {
                if k != "reference" {
                    collect_refs(child, element, out, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_refs(item, element, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// What a reference string points at, as far as patients are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientRef {
    /// `Patient/{id}` (relative, absolute or with `_history`).
    Id(String),
    /// `urn:uuid:…` — resolved through the bundle's fullUrls or as a Patient id.
    Urn(String),
    /// `Patient?identifier=system|value` — a conditional reference.
    Identifier(Option<String>, String),
    /// Something that is not a patient.
    Other,
}

pub fn classify_reference(r: &str) -> PatientRef {
    if let Some(rest) = r.strip_prefix("urn:uuid:") {
        return PatientRef::Urn(rest.to_owned());
    }
    if let Some(q) = r.strip_prefix("Patient?identifier=") {
        let q = percent_decode(q);
        return match q.split_once('|') {
            Some((s, v)) => PatientRef::Identifier(Some(s.to_owned()), v.to_owned()),
            None => PatientRef::Identifier(None, q),
        };
    }
    let segments: Vec<&str> = r.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if *seg == "Patient"
            && let Some(id) = segments.get(i + 1)
            && !id.is_empty()
            && !id.contains('?')
        {
            return PatientRef::Id((*id).to_owned());
        }
    }
    PatientRef::Other
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes.get(i), bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'%'), Some(h), Some(l)) => match (hex(*h), hex(*l)) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            (Some(b), _, _) => {
                out.push(*b);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn index_terms_are_normalized() {
        let p = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:mrn", "value": " 123 "}, {"value": ""}],
            "name": [{"family": "  O'Brien  Smith"}, {"given": ["x"]}],
            "birthDate": "1970-01-02",
            "telecom": [{"system": "phone", "value": "+1 (555) 010-9999"},
                        {"system": "email", "value": "a@b.c"}]
        });
        let terms = patient_index_terms(&p);
        assert!(terms.contains(&(IndexKind::Identifier, "urn:mrn|123".into())));
        assert!(terms.contains(&(IndexKind::IdentifierValue, "123".into())));
        assert!(terms.contains(&(
            IndexKind::FamilyBirthdate,
            "o'brien smith|1970-01-02".into()
        )));
        assert!(terms.contains(&(IndexKind::Phone, "15550109999".into())));
        assert!(terms.contains(&(IndexKind::Phone, "5550109999".into())));
        assert_eq!(terms.len(), 5);
    }

    #[test]
    fn references_are_classified() {
        assert_eq!(
            classify_reference("Patient/abc"),
            PatientRef::Id("abc".into())
        );
        assert_eq!(
            classify_reference("https://x.org/fhir/Patient/abc/_history/2"),
            PatientRef::Id("abc".into())
        );
        assert_eq!(
            classify_reference("urn:uuid:1-2"),
            PatientRef::Urn("1-2".into())
        );
        assert_eq!(
            classify_reference("Patient?identifier=urn%3Amrn|42"),
            PatientRef::Identifier(Some("urn:mrn".into()), "42".into())
        );
        assert_eq!(classify_reference("Practitioner/9"), PatientRef::Other);
        assert_eq!(
            classify_reference("Practitioner?identifier=x|1"),
            PatientRef::Other
        );
    }

    #[test]
    fn finds_nested_references() {
        let r = json!({"resourceType": "Provenance", "target": [{"reference": "urn:uuid:a"}],
            "agent": [{"who": {"reference": "Practitioner/1"}}],
            "contained": [{"subject": {"reference": "Patient/zzz"}}]});
        let refs = references(&r);
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].element, "target");
    }

    #[test]
    fn server_meta_round_trip() {
        let mut r =
            json!({"resourceType": "Patient", "meta": {"versionId": "9", "lastUpdated": "x"}});
        strip_server_meta(&mut r);
        assert_eq!(r, json!({"resourceType": "Patient"}));
        set_server_meta(&mut r, 3, 0);
        assert_eq!(r["meta"]["versionId"], "3");
        assert_eq!(r["meta"]["lastUpdated"], "1970-01-01T00:00:00Z");
        let mut keep = json!({"meta": {"profile": ["p"], "versionId": "1"}});
        strip_server_meta(&mut keep);
        assert_eq!(keep, json!({"meta": {"profile": ["p"]}}));
    }
}
