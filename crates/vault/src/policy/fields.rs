//! Minimum necessary (§164.502(b), §164.514(d)): which Patient elements a role may see for a
//! purpose. Clinical resources are released whole to whoever may read them at all. The table
//! comes from a TOML policy file (`PHIVAULT_POLICY_FILE`) or the built-in defaults below.
use super::Purpose;
use phivault_core::Role;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The Patient elements released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    All,
    /// Only these top-level elements (plus `resourceType`, `id`, `meta`).
    Only(Vec<String>),
}

impl Release {
    pub fn keeps(&self, element: &str) -> bool {
        match self {
            Release::All => true,
            Release::Only(keep) => keep.iter().any(|k| k == element),
        }
    }
}

/// The built-in table, in the policy file's own format.
pub const DEFAULT_POLICY: &str = r#"
# Patient elements released, by role, then by purpose of use; "default" covers the others.
# "all" releases everything. Clinical resources are released whole to whoever may read them.
[fields.VIEWER]
default = ["name", "gender", "active"]

[fields.NURSE]
default = ["name", "gender", "active", "birthDate", "address", "deceasedBoolean",
           "deceasedDateTime", "communication", "generalPractitioner"]

[fields.CLINICIAN]
default = "all"
# Payment needs demographics and identifiers, not contact details.
HPAYMT = ["name", "gender", "active", "birthDate", "address", "identifier"]

[fields.INTEGRATION_MANAGER]
default = "all"
"#;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FieldList {
    Word(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyToml {
    fields: BTreeMap<String, BTreeMap<String, FieldList>>,
}

/// The minimum-necessary table: role → purpose (or default) → release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPolicy {
    table: BTreeMap<Role, BTreeMap<Option<Purpose>, Release>>,
}

impl Default for FieldPolicy {
    fn default() -> Self {
        FieldPolicy::builtin().clone()
    }
}

impl FieldPolicy {
    /// The built-in table, parsed once (policy decisions ask for it on every call).
    pub fn builtin() -> &'static FieldPolicy {
        static BUILTIN: std::sync::LazyLock<FieldPolicy> = std::sync::LazyLock::new(|| {
            // The built-in text is tested to parse; were it not to, the table would be empty
            // (deny every field), never permissive.
            FieldPolicy::from_toml(DEFAULT_POLICY).unwrap_or(FieldPolicy {
                table: BTreeMap::new(),
            })
        });
        &BUILTIN
    }

    /// Parses a policy file; the error names what is wrong.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let parsed: PolicyToml =
            toml::from_str(text).map_err(|e| format!("policy file: {}", e.message()))?;
        let mut table = BTreeMap::new();
        for (role, purposes) in parsed.fields {
            let role =
                Role::parse(&role).ok_or_else(|| format!("policy file: unknown role {role}"))?;
            let mut row = BTreeMap::new();
            for (purpose, list) in purposes {
                let key = if purpose == "default" {
                    None
                } else {
                    Some(
                        Purpose::parse(&purpose)
                            .ok_or_else(|| format!("policy file: unknown purpose {purpose}"))?,
                    )
                };
                let release = match list {
                    FieldList::Word(w) if w == "all" => Release::All,
                    FieldList::Word(w) => {
                        return Err(format!("policy file: {w:?} is neither \"all\" nor a list"));
                    }
                    FieldList::List(l) => Release::Only(l),
                };
                row.insert(key, release);
            }
            table.insert(role, row);
        }
        Ok(Self { table })
    }

    /// The release for a role and purpose: the purpose's row, else the role's default, else
    /// nothing.
    pub fn release_for(&self, role: Role, purpose: Purpose) -> Release {
        self.table
            .get(&role)
            .and_then(|row| row.get(&Some(purpose)).or_else(|| row.get(&None)))
            .cloned()
            .unwrap_or(Release::Only(Vec::new()))
    }
}

/// The built-in table's release.
pub fn release_for(role: Role, purpose: Purpose) -> Release {
    FieldPolicy::builtin().release_for(role, purpose)
}

/// Applies a release to a Patient. Withheld elements are dropped, and the resource is marked
/// with the HL7 `REDACTED` security label so clients can tell. A viewer gets an age range
/// instead of the birth date.
pub fn apply(release: &Release, mut resource: Value, age_range: Option<String>) -> Value {
    if *release == Release::All {
        return resource;
    }
    let Some(obj) = resource.as_object_mut() else {
        return resource;
    };
    let before = obj.len();
    obj.retain(|k, _| matches!(k.as_str(), "resourceType" | "id" | "meta") || release.keeps(k));
    let redacted = obj.len() != before;
    if let Some(range) = age_range
        && !release.keeps("birthDate")
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
    fn the_built_in_table_parses_and_a_file_overrides_it() {
        let d = FieldPolicy::default();
        assert_eq!(d, FieldPolicy::from_toml(DEFAULT_POLICY).unwrap());
        assert_eq!(d.release_for(Role::Clinician, Purpose::Treat), Release::All);
        assert!(
            !d.release_for(Role::Clinician, Purpose::Hpaymt)
                .keeps("telecom")
        );
        let custom =
            FieldPolicy::from_toml("[fields.VIEWER]\ndefault = [\"name\"]\nHOPERAT = \"all\"\n")
                .unwrap();
        assert_eq!(
            custom.release_for(Role::Viewer, Purpose::Treat),
            Release::Only(vec!["name".into()])
        );
        assert_eq!(
            custom.release_for(Role::Viewer, Purpose::Hoperat),
            Release::All
        );
        assert_eq!(
            custom.release_for(Role::Nurse, Purpose::Treat),
            Release::Only(vec![])
        );
        for bad in [
            "[fields.KING]\ndefault = \"all\"",
            "[fields.VIEWER]\nFUN = \"all\"",
            "[fields.VIEWER]\ndefault = \"some\"",
            "[other]\n",
        ] {
            assert!(FieldPolicy::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn age_ranges() {
        assert_eq!(age_range("1990-07-29", 2026).as_deref(), Some("30-39"));
        assert_eq!(age_range("1930", 2026).as_deref(), Some("90+"));
        assert_eq!(age_range("x", 2026), None);
    }
}
