//! Minimum necessary (§164.502(b), §164.514(d)): which Patient elements a role may see for a
//! purpose. Clinical resources are released whole to whoever may read them at all.
use super::Purpose;
use phivault_core::Role;
use serde_json::{Map, Value, json};

/// The Patient elements released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    All,
    /// Only these top-level elements (plus `resourceType`, `id`, `meta`).
    Only(&'static [&'static str]),
}

const VIEWER: &[&str] = &["name", "gender", "active"];
const NURSE: &[&str] = &[
    "name",
    "gender",
    "active",
    "birthDate",
    "address",
    "deceasedBoolean",
    "deceasedDateTime",
    "communication",
    "generalPractitioner",
];

/// The built-in field table (role × purpose).
pub fn release_for(role: Role, purpose: Purpose) -> Release {
    match (role, purpose) {
        (Role::Viewer, _) => Release::Only(VIEWER),
        (Role::Nurse, _) => Release::Only(NURSE),
        // Payment needs demographics and identifiers, not contact details.
        (Role::Clinician, Purpose::Hpaymt) => Release::Only(&[
            "name",
            "gender",
            "active",
            "birthDate",
            "address",
            "identifier",
        ]),
        (Role::Clinician, _) => Release::All,
        (Role::IntegrationManager, _) => Release::All,
        (Role::SuperAdmin | Role::OrgAdmin | Role::Auditor, _) => Release::Only(&[]),
    }
}

/// Applies a release to a Patient. Withheld elements are dropped, and the resource is marked
/// with the HL7 `REDACTED` security label so clients can tell. A viewer gets an age range
/// instead of the birth date.
pub fn apply(release: &Release, mut resource: Value, age_range: Option<String>) -> Value {
    let Release::Only(keep) = release else {
        return resource;
    };
    let Some(obj) = resource.as_object_mut() else {
        return resource;
    };
    let before = obj.len();
    obj.retain(|k, _| {
        matches!(k.as_str(), "resourceType" | "id" | "meta") || keep.contains(&k.as_str())
    });
    let redacted = obj.len() != before;
    if let Some(range) = age_range
        && !keep.contains(&"birthDate")
    {
        obj.insert(
            "extension".into(),
            json!([{"url": "urn:phivault:age-range", "valueString": range}]),
        );
    }
    if redacted {
        let meta = obj
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = meta.as_object_mut() {
            let labels = m.entry("security").or_insert_with(|| json!([]));
            if let Some(a) = labels.as_array_mut() {
                a.push(json!({
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "REDACTED",
                    "display": "redacted"
                }));
            }
        }
    }
    resource
}

/// A ten-year age range ("30-39", "90+") from a FHIR birth date and today's year.
pub fn age_range(birth_date: &str, this_year: i32) -> Option<String> {
    let year: i32 = birth_date.get(..4)?.parse().ok()?;
    let age = this_year - year;
    if !(0..=150).contains(&age) {
        return None;
    }
    Some(if age >= 90 {
        "90+".into()
    } else {
        let lo = age / 10 * 10;
        format!("{lo}-{}", lo + 9)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_drops_withheld_elements_and_marks_the_resource() {
        let p = json!({"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"},
            "name": [{"family": "X"}], "gender": "female", "birthDate": "1961-03-14",
            "identifier": [{"value": "MRN-1"}], "telecom": [{"value": "555"}]});
        let out = apply(
            &release_for(Role::Viewer, Purpose::Treat),
            p.clone(),
            age_range("1961-03-14", 2026),
        );
        assert_eq!(out["gender"], "female");
        for gone in ["birthDate", "identifier", "telecom"] {
            assert!(out.get(gone).is_none(), "{gone}");
        }
        assert_eq!(out["extension"][0]["valueString"], "60-69");
        assert_eq!(out["meta"]["security"][0]["code"], "REDACTED");
        assert_eq!(out["meta"]["versionId"], "1");
        assert_eq!(apply(&Release::All, p.clone(), None), p);
        let nurse = apply(&release_for(Role::Nurse, Purpose::Treat), p, None);
        assert_eq!(nurse["birthDate"], "1961-03-14");
        assert!(nurse.get("identifier").is_none() && nurse.get("extension").is_none());
    }

    #[test]
    fn age_ranges() {
        assert_eq!(age_range("1990-07-29", 2026).as_deref(), Some("30-39"));
        assert_eq!(age_range("1930", 2026).as_deref(), Some("90+"));
        assert_eq!(age_range("x", 2026), None);
    }
}
