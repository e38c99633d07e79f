//! HL7 v2 → FHIR R4 elements: the Patient demographics of PID, the Encounter of PV1, the
//! Observations of OBX. Pure; errors name the segment and field, never a value.
mod encounter;
mod observation;
mod patient;

pub use encounter::encounter;
pub use observation::{NumberedObservation, observations};
pub use patient::{identifiers, patient_elements};

use crate::parse::Segment;
use serde_json::{Map, Value, json};

/// HL7 TS/DTM (`YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]`) as a FHIR date or dateTime. A time
/// without a zone becomes a date (FHIR needs the zone; phivault does not invent one).
pub fn fhir_datetime(ts: &str) -> Option<String> {
    let ts = ts.trim();
    let (main, zone) = match ts.find(['+', '-']) {
        Some(i) if i >= 4 => (ts.get(..i)?, ts.get(i..)),
        _ => (ts, None),
    };
    let main = main.split('.').next()?;
    if !main.chars().all(|c| c.is_ascii_digit()) || main.len() < 4 {
        return None;
    }
    let part = |a: usize, b: usize| main.get(a..b);
    let date = match main.len() {
        4 => part(0, 4)?.to_owned(),
        6 => format!("{}-{}", part(0, 4)?, part(4, 6)?),
        n if n >= 8 => format!("{}-{}-{}", part(0, 4)?, part(4, 6)?, part(6, 8)?),
        _ => return None,
    };
    let zone = zone.filter(|z| {
        z.len() == 5
            && z.get(1..)
                .is_some_and(|d| d.chars().all(|c| c.is_ascii_digit()))
    });
    match (main.len(), zone) {
        (n, Some(z)) if n >= 12 => {
            let secs = part(12, 14).unwrap_or("00");
            Some(format!(
                "{date}T{}:{}:{secs}{}:{}",
                part(8, 10)?,
                part(10, 12)?,
                z.get(..3)?,
                z.get(3..)?
            ))
        }
        _ => Some(date),
    }
}

pub(crate) fn put(o: &mut Map<String, Value>, k: &str, v: Value) {
    let empty = match &v {
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Null => true,
        _ => false,
    };
    if !empty {
        o.insert(k.to_owned(), v);
    }
}

pub(crate) fn text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |v| Value::String(v.to_owned()))
}

pub(crate) fn code_system(s: Option<&str>) -> Option<String> {
    s.map(|s| match s {
        "LN" | "LOINC" => "http://loinc.org".to_owned(),
        "SCT" | "SNM" | "SNOMED" | "SNM3" => "http://snomed.info/sct".to_owned(),
        "UCUM" => "http://unitsofmeasure.org".to_owned(),
        "I9" | "I9C" => "http://hl7.org/fhir/sid/icd-9-cm".to_owned(),
        "I10" => "http://hl7.org/fhir/sid/icd-10".to_owned(),
        other => format!("urn:phivault:hl7:cs:{other}"),
    })
}

/// A CE/CWE (components 1–3, and the alternate 4–6) as a CodeableConcept.
pub(crate) fn codeable(seg: &Segment, field: usize, rep: usize) -> Option<Value> {
    let mut codings = Vec::new();
    for base in [1, 4] {
        if let Some(code) = seg.get(field, rep, base, 1) {
            let mut c = Map::new();
            put(
                &mut c,
                "system",
                text(code_system(seg.get(field, rep, base + 2, 1)).as_deref()),
            );
            put(&mut c, "code", json!(code));
            put(&mut c, "display", text(seg.get(field, rep, base + 1, 1)));
            codings.push(Value::Object(c));
        }
    }
    let mut cc = Map::new();
    put(&mut cc, "coding", Value::Array(codings));
    put(&mut cc, "text", text(seg.get(field, rep, 2, 1)));
    (!cc.is_empty()).then_some(Value::Object(cc))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn timestamps() {
        assert_eq!(fhir_datetime("19610314").as_deref(), Some("1961-03-14"));
        assert_eq!(fhir_datetime("196103").as_deref(), Some("1961-03"));
        assert_eq!(fhir_datetime("202601021030").as_deref(), Some("2026-01-02"));
        assert_eq!(
            fhir_datetime("20260102103045.123-0500").as_deref(),
            Some("2026-01-02T10:30:45-05:00")
        );
        assert_eq!(
            fhir_datetime("2026010210-05").as_deref(),
            Some("2026-01-02")
        );
        assert_eq!(fhir_datetime("notadate"), None);
        assert_eq!(fhir_datetime("12"), None);
    }
}
