//! The exact test of a criterion against an opened resource: the index only proposes
//! candidates, this decides. Values are read at the parameter's element paths.
use super::dates::{self, DateParam};
use super::params::{Kind, ParamDef};
use super::text;
use serde_json::Value;

/// One value of a criterion (the values of one parameter, split at commas, are ORed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Folded text, or the exact text for `:exact`.
    Str {
        text: String,
        exact: bool,
    },
    Token {
        system: Option<String>,
        code: String,
    },
    Date(DateParam),
    /// `Type/id` (`type` empty: any type) or an absolute URL's tail.
    Reference {
        rtype: String,
        id: String,
    },
    Phonetic(String),
    Id(String),
}

/// One parameter's criterion: ANDed with the others, its values ORed.
#[derive(Debug, Clone)]
pub struct Criterion {
    pub def: &'static ParamDef,
    pub any_of: Vec<Wanted>,
}

/// Every value at a dotted path, arrays walked through.
pub fn values_at<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![v];
    for step in path.split('.') {
        let mut next = Vec::new();
        for c in current {
            match c.get(step) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        current = next;
    }
    current
}

fn values<'a>(def: &ParamDef, r: &'a Value) -> Vec<&'a Value> {
    def.paths.iter().flat_map(|p| values_at(r, p)).collect()
}

/// `(system, code)` pairs of a token element: a code, a Coding, a CodeableConcept, an
/// Identifier or a ContactPoint (its system is `ContactPoint.system`).
pub fn tokens(v: &Value) -> Vec<(Option<&str>, &str)> {
    fn s<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
        o.get(k).and_then(Value::as_str)
    }
    match v {
        Value::String(code) => vec![(None, code.as_str())],
        Value::Bool(b) => vec![(None, if *b { "true" } else { "false" })],
        Value::Object(_) => {
            if let Some(codings) = v.get("coding").and_then(Value::as_array) {
                return codings
                    .iter()
                    .filter_map(|c| s(c, "code").map(|code| (s(c, "system"), code)))
                    .collect();
            }
            if let Some(code) = s(v, "code") {
                return vec![(s(v, "system"), code)];
            }
            s(v, "value")
                .map(|value| vec![(s(v, "system"), value)])
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

fn token_match(def: &ParamDef, field: &Value, system: Option<&str>, code: &str) -> bool {
    let contact = def.paths == ["telecom"];
    tokens(field).into_iter().any(|(fs, fc)| {
        if contact {
            let kind = fs.unwrap_or("");
            let allowed = def.systems.is_empty() || def.systems.contains(&kind);
            let sys_ok = system.is_none_or(|s| s.is_empty() || s == kind);
            let value_ok = match kind {
                "email" => fc.trim().eq_ignore_ascii_case(code.trim()),
                "phone" | "sms" | "fax" | "pager" => text::same_phone(fc, code),
                _ => fc.trim() == code.trim(),
            };
            return allowed && sys_ok && value_ok;
        }
        let sys_ok = match system {
            None => true,
            Some("") => fs.is_none(),
            Some(s) => fs == Some(s),
        };
        sys_ok && fc == code
    })
}

/// The `Type/id` a Reference element names (absolute URLs: their last two segments).
pub fn reference_of(v: &Value) -> Option<(&str, &str)> {
    let r = v.get("reference").and_then(Value::as_str)?;
    let r = r.split(['?', '#']).next().unwrap_or(r);
    let mut parts = r.rsplit('/');
    let id = parts.next()?;
    let rtype = parts.next()?;
    (!id.is_empty() && !rtype.is_empty()).then_some((rtype, id))
}

fn one_matches(def: &ParamDef, want: &Wanted, r: &Value, now: i64) -> bool {
    let vals = values(def, r);
    match want {
        Wanted::Str { text: t, exact } => vals.iter().filter_map(|v| v.as_str()).any(|s| {
            if *exact {
                s == t
            } else {
                text::fold(s).starts_with(t.as_str())
            }
        }),
        Wanted::Token { system, code } => vals
            .iter()
            .any(|v| token_match(def, v, system.as_deref(), code)),
        Wanted::Date(p) => vals
            .iter()
            .filter_map(|v| dates::of_value(v))
            .any(|range| p.matches(range, now)),
        Wanted::Reference { rtype, id } => vals
            .iter()
            .filter_map(|v| reference_of(v))
            .any(|(t, i)| i == id && (rtype.is_empty() || t == rtype)),
        Wanted::Phonetic(code) => vals
            .iter()
            .filter_map(|v| v.as_str())
            .any(|s| text::soundex(s).as_deref() == Some(code.as_str())),
        Wanted::Id(id) => r.get("id").and_then(Value::as_str) == Some(id.as_str()),
    }
}

impl Criterion {
    /// Whether the resource satisfies this criterion (any of its values).
    pub fn matches(&self, r: &Value, now: i64) -> bool {
        self.any_of.iter().any(|w| one_matches(self.def, w, r, now))
    }

    /// The top-level element this criterion reads (for the field-release check).
    pub fn element(&self) -> &'static str {
        let path = self.def.paths.first().copied().unwrap_or("id");
        path.split('.').next().unwrap_or(path)
    }
}

/// The sort key of a resource for a parameter: dates by their start, strings folded, the
/// first value found. `None` sorts last.
pub fn sort_key(def: &ParamDef, r: &Value) -> Option<SortKey> {
    let vals = values(def, r);
    match def.kind {
        Kind::Date => vals
            .iter()
            .filter_map(|v| dates::of_value(v))
            .map(|d| SortKey::Time(d.lo))
            .min(),
        _ => vals
            .iter()
            .filter_map(|v| v.as_str())
            .map(|s| SortKey::Text(text::fold(s)))
            .min(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    Time(i64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::params;
    use serde_json::json;

    fn crit(rtype: &str, name: &str, want: Wanted) -> Criterion {
        Criterion {
            def: params::find(rtype, name).unwrap(),
            any_of: vec![want],
        }
    }

    #[test]
    fn names_match_by_folded_prefix_or_exactly() {
        let r = json!({"name": [{"family": "Muñoz", "given": ["José"]}]});
        let s = |t: &str, exact| Wanted::Str {
            text: t.into(),
            exact,
        };
        assert!(crit("Patient", "name", s("mun", false)).matches(&r, 0));
        assert!(crit("Patient", "given", s("jose", false)).matches(&r, 0));
        assert!(!crit("Patient", "family", s("jose", false)).matches(&r, 0));
        assert!(crit("Patient", "family", s("Muñoz", true)).matches(&r, 0));
        assert!(!crit("Patient", "family", s("Munoz", true)).matches(&r, 0));
    }

    #[test]
    fn tokens_and_contacts() {
        let r = json!({"gender": "female",
            "identifier": [{"system": "urn:mrn", "value": "12"}],
            "telecom": [{"system": "phone", "value": "(555) 010-9999"},
                        {"system": "email", "value": "A@B.org"}]});
        let t = |s: Option<&str>, c: &str| Wanted::Token {
            system: s.map(str::to_owned),
            code: c.into(),
        };
        assert!(crit("Patient", "gender", t(None, "female")).matches(&r, 0));
        assert!(crit("Patient", "identifier", t(Some("urn:mrn"), "12")).matches(&r, 0));
        assert!(!crit("Patient", "identifier", t(Some(""), "12")).matches(&r, 0));
        assert!(crit("Patient", "phone", t(None, "5550109999")).matches(&r, 0));
        assert!(!crit("Patient", "email", t(None, "5550109999")).matches(&r, 0));
        assert!(crit("Patient", "email", t(None, "a@b.org")).matches(&r, 0));
        assert!(crit("Patient", "telecom", t(Some("email"), "a@b.org")).matches(&r, 0));
    }

    #[test]
    fn references_by_type_and_id() {
        let r = json!({"subject": {"reference": "https://x.org/fhir/Patient/p1"}});
        let w = |t: &str| Wanted::Reference {
            rtype: t.into(),
            id: "p1".into(),
        };
        assert!(crit("Observation", "patient", w("Patient")).matches(&r, 0));
        assert!(crit("Observation", "subject", w("")).matches(&r, 0));
        assert!(!crit("Observation", "subject", w("Group")).matches(&r, 0));
    }
}
