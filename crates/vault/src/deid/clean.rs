//! The walk that turns one resource into its de-identified form: whitelisted elements only,
//! references and ids replaced by pseudonyms, dates cut to the year (Safe Harbor) or shifted
//! (pseudonymized), addresses cut to state and three-digit ZIP, ages of 90 and over removed.
use super::pseudonym::Pepper;
use super::{DeidMethod, dates, rules, zip3};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// What the walk needs to know about the whole export.
pub(crate) struct Cleaner<'a> {
    pub method: DeidMethod,
    pub pepper: &'a Pepper,
    /// The year of the export (for ages of 90 and over).
    pub year: i32,
    /// Every resource id of the organization → its type (to resolve `urn:uuid:` references).
    pub ids: &'a HashMap<String, &'static str>,
}

/// The record being cleaned: its patient, whose pseudonym and date offset it gets.
struct Record<'a> {
    patient: Option<&'a str>,
    shift: i64,
}

/// Whether a Quantity (Age, Duration) is 90 years or more.
fn is_age_90_or_more(obj: &Map<String, Value>) -> bool {
    let Some(value) = obj.get("value").and_then(Value::as_f64) else {
        return false;
    };
    let unit = obj
        .get("code")
        .or_else(|| obj.get("unit"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let per_year = match unit.as_str() {
        "a" | "yr" | "yrs" | "year" | "years" => 1.0,
        "mo" | "month" | "months" => 12.0,
        "wk" | "week" | "weeks" => 52.1775,
        "d" | "day" | "days" => 365.25,
        _ => return false,
    };
    value / per_year >= 90.0
}

/// The type named by a literal reference `Type/id`, `Type/id/_history/n` or an absolute URL
/// ending so; `None` for anything else.
fn literal_target(reference: &str) -> Option<(&'static str, &str)> {
    let path = reference.split(['?', '#']).next().unwrap_or("");
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    let (t, id) = if n >= 4 && parts.get(n - 2) == Some(&"_history") {
        (parts.get(n - 4)?, parts.get(n - 3)?)
    } else {
        (parts.get(n.checked_sub(2)?)?, parts.get(n - 1)?)
    };
    let rtype = phivault_core::ResourceType::parse(t).ok()?.as_str();
    (!id.is_empty()).then_some((rtype, *id))
}

impl Cleaner<'_> {
    /// The de-identified resource, or `None` when its type is not exported. `patient` is the
    /// id of the patient the record is about (the Patient's own id for a Patient).
    pub(crate) fn resource(&self, resource: &Value, patient: Option<&str>) -> Option<Value> {
        let obj = resource.as_object()?;
        let rtype = obj.get("resourceType").and_then(Value::as_str)?;
        rules::keeps_top(rtype, "")?;
        let id = obj.get("id").and_then(Value::as_str)?;
        let rec = Record {
            patient,
            shift: patient.map_or(0, |p| self.pepper.shift_days(p)),
        };
        let mut out = Map::new();
        out.insert("resourceType".into(), json!(rtype));
        let pseudonym = if rtype == "Patient" {
            self.pepper.patient(id)
        } else {
            self.pepper.resource(rtype, id)
        };
        out.insert("id".into(), json!(pseudonym));
        let label = match self.method {
            DeidMethod::SafeHarbor => "ANONYED",
            DeidMethod::Pseudonymized => "PSEUDED",
        };
        out.insert(
            "meta".into(),
            json!({"security": [{"system": rules::SECURITY_SYSTEM, "code": label}]}),
        );
        let ninety = rtype == "Patient" && self.ninety_or_older(obj);
        for (k, v) in obj {
            if rules::keeps_top(rtype, k) != Some(true) || (ninety && k == "birthDate") {
                continue;
            }
            let cleaned = match k.as_str() {
                "extension" if rtype == "Patient" => self.patient_extensions(v),
                _ => self.value(&rec, k, v),
            };
            if let Some(c) = cleaned {
                out.insert(k.clone(), c);
            }
        }
        if ninety {
            let ext = json!({"url": rules::AGE_90_OR_OLDER, "valueBoolean": true});
            match out.get_mut("extension").and_then(Value::as_array_mut) {
                Some(list) => list.push(ext),
                None => {
                    out.insert("extension".into(), json!([ext]));
                }
            }
        }
        let complete = rules::required(rtype)
            .iter()
            .all(|any| any.iter().any(|k| out.contains_key(*k)));
        complete.then_some(Value::Object(out))
    }

    /// Safe Harbor: a birth year that allows an age of 90 or more at export time (the patient
    /// turns `year − birth year` this year) puts the patient in the "90 or older" group.
    fn ninety_or_older(&self, patient: &Map<String, Value>) -> bool {
        self.method == DeidMethod::SafeHarbor
            && patient
                .get("birthDate")
                .and_then(Value::as_str)
                .and_then(dates::year)
                .is_some_and(|born| self.year - born >= 90)
    }

    fn value(&self, rec: &Record<'_>, key: &str, v: &Value) -> Option<Value> {
        match v {
            Value::Object(o) => self.object(rec, key, o),
            Value::Array(items) => {
                let kept: Vec<Value> = items
                    .iter()
                    .filter_map(|i| self.value(rec, key, i))
                    .collect();
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            Value::String(s) => self.string(rec, key, s).map(Value::String),
            Value::Number(_) | Value::Bool(_) => Some(v.clone()),
            Value::Null => None,
        }
    }

    fn string(&self, rec: &Record<'_>, key: &str, s: &str) -> Option<String> {
        if rules::NOT_DATES.contains(&key) || !dates::is_date(s) {
            return Some(s.to_owned());
        }
        match self.method {
            DeidMethod::SafeHarbor if rules::INSTANTS.contains(&key) => None,
            DeidMethod::SafeHarbor => dates::year_only(s),
            DeidMethod::Pseudonymized => dates::shift(s, rec.shift),
        }
    }

    fn object(&self, rec: &Record<'_>, key: &str, o: &Map<String, Value>) -> Option<Value> {
        if key == "address" {
            return self.address(o);
        }
        if let Some(r) = o.get("reference") {
            return self.reference(rec, key, r, o.get("type"));
        }
        if self.method == DeidMethod::SafeHarbor && is_age_90_or_more(o) {
            return None;
        }
        let is_coding = o.contains_key("code") || o.contains_key("system");
        let mut out = Map::new();
        for (k, v) in o {
            let allowed = rules::keeps_nested(k)
                && (k != "display" || is_coding)
                && (k != "value" || v.is_number());
            if let Some(c) = allowed.then(|| self.value(rec, k, v)).flatten() {
                out.insert(k.clone(), c);
            }
        }
        let lacks_required = rules::NESTED_REQUIRED
            .iter()
            .any(|(parent, child)| *parent == key && !out.contains_key(*child));
        // A logical reference (identifier/display only) leaves at most its `type`.
        let only_type = out.len() == 1 && out.get("type").is_some_and(Value::is_string);
        (!out.is_empty() && !lacks_required && !only_type).then_some(Value::Object(out))
    }

    /// A reference becomes `Type/pseudonym` (its display and identifier are dropped); one
    /// that cannot be resolved to a type is dropped.
    fn reference(
        &self,
        rec: &Record<'_>,
        key: &str,
        reference: &Value,
        rtype: Option<&Value>,
    ) -> Option<Value> {
        let r = reference.as_str()?;
        let target = if let Some(id) = r.strip_prefix("urn:uuid:") {
            let t = self.ids.get(id)?;
            Some((*t, id.to_owned()))
        } else if let Some((t, query)) = r.split_once('?').filter(|(t, _)| !t.contains('/')) {
            let t = phivault_core::ResourceType::parse(t).ok()?.as_str();
            if t == "Patient" {
                // The record's own patient, where the element names it; otherwise unknown.
                let p = rec
                    .patient
                    .filter(|_| rules::PATIENT_ELEMENTS.contains(&key))?;
                Some((t, p.to_owned()))
            } else {
                return Some(self.pointer(
                    t,
                    &self.pepper.resource(t, &format!("?{query}")),
                    rtype,
                ));
            }
        } else if r.starts_with('#') {
            None
        } else {
            literal_target(r).map(|(t, id)| (t, id.to_owned()))
        };
        let (t, id) = target?;
        let pseudonym = if t == "Patient" {
            self.pepper.patient(&id)
        } else {
            self.pepper.resource(t, &id)
        };
        Some(self.pointer(t, &pseudonym, rtype))
    }

    fn pointer(&self, t: &str, pseudonym: &str, rtype: Option<&Value>) -> Value {
        let mut out = Map::new();
        out.insert("reference".into(), json!(format!("{t}/{pseudonym}")));
        if let Some(ty) = rtype.filter(|v| v.is_string()) {
            out.insert("type".into(), ty.clone());
        }
        Value::Object(out)
    }

    /// An address keeps its use and type, the state and country, and the ZIP code cut to three
    /// digits (or `000`); street lines, city, district, county, text and period go.
    fn address(&self, o: &Map<String, Value>) -> Option<Value> {
        let mut out = Map::new();
        for k in ["use", "type", "state", "country"] {
            if let Some(v) = o.get(k).filter(|v| v.is_string()) {
                out.insert(k.into(), v.clone());
            }
        }
        let us = o
            .get("country")
            .and_then(Value::as_str)
            .is_none_or(|c| matches!(c.trim().to_ascii_uppercase().as_str(), "US" | "USA"));
        if let Some(z) = o
            .get("postalCode")
            .and_then(Value::as_str)
            .filter(|_| us)
            .and_then(zip3::generalize)
        {
            out.insert("postalCode".into(), json!(z));
        }
        let only_use = out.keys().all(|k| k == "use" || k == "type");
        (!only_use).then_some(Value::Object(out))
    }

    /// The US Core birth sex, race and ethnicity extensions, coded parts only.
    fn patient_extensions(&self, v: &Value) -> Option<Value> {
        let kept: Vec<Value> = v
            .as_array()?
            .iter()
            .filter_map(|e| self.extension(e, rules::PATIENT_EXTENSIONS))
            .collect();
        (!kept.is_empty()).then_some(Value::Array(kept))
    }

    fn extension(&self, e: &Value, urls: &[&str]) -> Option<Value> {
        let url = e.get("url").and_then(Value::as_str)?;
        if !urls.contains(&url) {
            return None;
        }
        let mut out = Map::new();
        out.insert("url".into(), json!(url));
        if let Some(v) = e.get("valueCode").filter(|v| v.is_string()) {
            out.insert("valueCode".into(), v.clone());
        }
        if let Some(c) = e.get("valueCoding").and_then(Value::as_object) {
            let plain = Record {
                patient: None,
                shift: 0,
            };
            if let Some(c) = self.object(&plain, "valueCoding", c) {
                out.insert("valueCoding".into(), c);
            }
        }
        let parts: Vec<Value> = e
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| self.extension(p, rules::EXTENSION_PARTS))
            .collect();
        if !parts.is_empty() {
            out.insert("extension".into(), Value::Array(parts));
        }
        (out.len() > 1).then_some(Value::Object(out))
    }
}
