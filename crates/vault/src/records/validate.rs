//! Input validation of a resource before it is sealed: the JSON shape (element names, the
//! `id`, nesting depth), the elements R4 requires (cardinality 1..) for the types the API
//! serves, and the form of every reference. Messages name elements, never values.
use crate::error::VaultError;
use phivault_core::ResourceType;
use serde_json::Value;

/// Deeper than this is refused (real resources nest about 10 deep).
pub const MAX_DEPTH: usize = 48;

/// Required top-level elements (R4 min cardinality 1). `x` ends a choice type (`value[x]`).
fn required(rtype: &str) -> &'static [&'static str] {
    match rtype {
        "Observation" => &["status", "code"],
        "Condition" => &["subject"],
        "Encounter" => &["status", "class"],
        "MedicationRequest" => &["status", "intent", "subject", "medication[x]"],
        "AllergyIntolerance" => &["patient"],
        "Immunization" => &["status", "vaccineCode", "patient", "occurrence[x]"],
        "Procedure" => &["status", "subject"],
        "DiagnosticReport" => &["status", "code"],
        "CarePlan" => &["status", "intent", "subject"],
        "Provenance" => &["target", "recorded", "agent"],
        "Claim" => &[
            "status",
            "type",
            "use",
            "patient",
            "created",
            "provider",
            "priority",
            "insurance",
        ],
        _ => &[],
    }
}

fn present(obj: &serde_json::Map<String, Value>, element: &str) -> bool {
    let filled = |v: &Value| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    };
    match element.strip_suffix("[x]") {
        Some(prefix) => obj
            .iter()
            .any(|(k, v)| k.len() > prefix.len() && k.starts_with(prefix) && filled(v)),
        None => obj.get(element).is_some_and(filled),
    }
}

fn element_name_ok(k: &str) -> bool {
    let k = k.strip_prefix('_').unwrap_or(k);
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && k.len() <= 64
}

/// A reference's form: relative `Type/id` (optionally `/_history/v`), an absolute URL,
/// `urn:uuid:`/`urn:oid:`, a contained `#id`, or a conditional `Type?query`.
fn reference_ok(r: &str) -> bool {
    if r.is_empty() || r.len() > 2048 || r.chars().any(char::is_control) {
        return false;
    }
    if r.starts_with('#')
        || r.starts_with("urn:uuid:")
        || r.starts_with("urn:oid:")
        || r.starts_with("https://")
        || r.starts_with("http://")
    {
        return true;
    }
    let (path, _query) = r.split_once('?').unwrap_or((r, ""));
    let parts: Vec<&str> = path.split('/').collect();
    let type_ok = parts
        .first()
        .is_some_and(|t| phivault_core::resource_types::R4_RESOURCE_TYPES.contains(t));
    let id_ok = |s: &&str| phivault_core::ResourceId::parse(s).is_ok();
    match parts.as_slice() {
        [_] => type_ok && r.contains('?'),
        [_, id] => type_ok && id_ok(id),
        [_, id, "_history", v] => type_ok && id_ok(id) && v.parse::<u64>().is_ok(),
        _ => false,
    }
}

fn walk(v: &Value, path: &str, depth: usize) -> Result<(), VaultError> {
    if depth > MAX_DEPTH {
        return Err(VaultError::Invalid(format!(
            "nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match v {
        Value::Object(o) => {
            if o.is_empty() && depth > 0 {
                return Err(VaultError::Invalid(format!("{path}: an empty object")));
            }
            for (k, child) in o {
                if !element_name_ok(k) {
                    return Err(VaultError::Invalid(format!(
                        "{path}: an element name is not valid"
                    )));
                }
                if k == "reference" {
                    match child {
                        Value::String(r) if reference_ok(r) => {}
                        _ => {
                            return Err(VaultError::Invalid(format!(
                                "{path}.reference is not a valid reference"
                            )));
                        }
                    }
                }
                let child_path = if path.len() < 120 {
                    format!("{path}.{k}")
                } else {
                    path.to_owned()
                };
                walk(child, &child_path, depth + 1)?;
            }
            Ok(())
        }
        Value::Array(a) => {
            if a.is_empty() {
                return Err(VaultError::Invalid(format!("{path}: an empty array")));
            }
            a.iter().try_for_each(|c| walk(c, path, depth + 1))
        }
        Value::String(s) if s.is_empty() => {
            Err(VaultError::Invalid(format!("{path}: an empty string")))
        }
        _ => Ok(()),
    }
}

/// Checks a resource for writing. Shape errors are `Invalid` (400); a missing required
/// element is `Unprocessable` (422).
pub fn validate(rtype: ResourceType, resource: &Value) -> Result<(), VaultError> {
    let obj = resource
        .as_object()
        .ok_or_else(|| VaultError::Invalid("not a FHIR resource: expected a JSON object".into()))?;
    if rtype.is_audit_trail() {
        return Err(VaultError::Invalid(
            "AuditEvent is the audit trail's own view and is never written".into(),
        ));
    }
    walk(resource, rtype.as_str(), 0)?;
    if let Some(id) = obj.get("id") {
        match id {
            Value::String(s) if phivault_core::ResourceId::parse(s).is_ok() => {}
            _ => return Err(VaultError::Invalid("id is not a valid FHIR id".into())),
        }
    }
    if let Some(meta) = obj.get("meta")
        && !meta.is_object()
    {
        return Err(VaultError::Invalid("meta is not an object".into()));
    }
    for element in required(rtype.as_str()) {
        if !present(obj, element) {
            return Err(VaultError::Unprocessable(format!(
                "{rtype}.{element} is required"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(name: &str) -> ResourceType {
        ResourceType::parse(name).unwrap()
    }

    #[test]
    fn required_elements_and_shapes() {
        let ok = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/abc"}});
        validate(t("Observation"), &ok).unwrap();
        let mut missing = ok.clone();
        missing.as_object_mut().unwrap().remove("code");
        assert!(matches!(
            validate(t("Observation"), &missing),
            Err(VaultError::Unprocessable(m)) if m.contains("Observation.code")
        ));
        for bad in [
            json!({"resourceType": "Observation", "status": "final", "code": {}}),
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/../../etc"}}),
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": 5}}),
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "bad name": 1}),
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "id": "has space"}),
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "note": []}),
        ] {
            assert!(
                matches!(
                    validate(t("Observation"), &bad),
                    Err(VaultError::Invalid(_))
                ),
                "{bad}"
            );
        }
        let mut deep = json!("x");
        for _ in 0..60 {
            deep = json!({"extension": [deep]});
        }
        let p = json!({"resourceType": "Patient", "contact": [deep]});
        assert!(validate(t("Patient"), &p).is_err());
    }

    #[test]
    fn reference_forms() {
        for ok in [
            "Patient/abc",
            "Patient/abc/_history/2",
            "urn:uuid:0b5e3f4c-1d2e-4f5a-8b9c-0d1e2f3a4b5c",
            "#c1",
            "https://example.org/fhir/Patient/1",
            "Patient?identifier=x|y",
        ] {
            assert!(reference_ok(ok), "{ok}");
        }
        for bad in ["", "Patient/", "Nope/abc", "Patient/a/b", "a\nb", "Patient"] {
            assert!(!reference_ok(bad), "{bad}");
        }
    }
}
