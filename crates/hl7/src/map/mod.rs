//! HL7 v2 → FHIR R4 elements: the Patient demographics of PID, the Encounter of PV1, the
//! DiagnosticReports and Observations of OBR/OBX, the ServiceRequests of ORC/OBR, the
//! DocumentReference of TXA, the Appointment of SCH and the Immunizations of RXA. Pure; errors
//! name the segment and field, never a value.
mod appointment;
mod document;
mod encounter;
mod immunization;
mod observation;
mod order;
mod patient;
mod report;

pub use appointment::appointment;
pub use document::document;
pub use encounter::{encounter, merge_encounter};
pub use immunization::{Vaccination, immunizations};
pub use observation::{NumberedObservation, observation, observations};
pub use order::{Order, orders};
pub use patient::{identifiers, patient_elements};
pub use report::{ReportGroup, reports};

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
        "CVX" => "http://hl7.org/fhir/sid/cvx".to_owned(),
        "NDC" => "http://hl7.org/fhir/sid/ndc".to_owned(),
        "MVX" => "http://terminology.hl7.org/CodeSystem/MVX".to_owned(),
        "HL70162" => "http://terminology.hl7.org/CodeSystem/v2-0162".to_owned(),
        "HL70163" => "http://terminology.hl7.org/CodeSystem/v2-0163".to_owned(),
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

/// An entity identifier (EI: id^namespace) as the key of a derived id, e.g. an order number.
pub(crate) fn entity_key(seg: &Segment, field: usize) -> Option<String> {
    let id = seg.component(field, 1)?;
    Some(format!("{id}^{}", seg.component(field, 2).unwrap_or("")))
}

/// An entity identifier (EI) as a FHIR Identifier of the v2-0203 type `kind` (PLAC, FILL).
pub(crate) fn entity_identifier(seg: &Segment, field: usize, kind: &str) -> Option<Value> {
    let id = seg.component(field, 1)?;
    let mut i = Map::new();
    put(
        &mut i,
        "type",
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": kind}]}),
    );
    put(&mut i, "system", text(seg.component(field, 2)));
    put(&mut i, "value", json!(id));
    Some(Value::Object(i))
}

/// A person (XCN: id^family^given) as a display-only Reference.
pub(crate) fn person(seg: &Segment, field: usize, rep: usize) -> Option<Value> {
    let id = seg.get(field, rep, 1, 1);
    let name: Vec<&str> = [seg.get(field, rep, 2, 1), seg.get(field, rep, 3, 1)]
        .into_iter()
        .flatten()
        .collect();
    let mut r = Map::new();
    put(
        &mut r,
        "identifier",
        id.map_or(Value::Null, |v| json!({"value": v})),
    );
    put(&mut r, "display", json!(name.join(", ")));
    (!r.is_empty()).then_some(Value::Object(r))
}

/// The text of OBX-5 of a text OBX (every repetition, components joined by `^`), lines
/// joined by newlines.
pub(crate) fn obx_text(seg: &Segment) -> String {
    let parts: Vec<String> = (1..=seg.repetitions(5))
        .filter_map(|r| {
            let comps: Vec<&str> = seg
                .fields
                .get(5)
                .and_then(|f| f.get(r - 1))
                .map(|c| {
                    c.iter()
                        .filter_map(|s| s.first())
                        .map(String::as_str)
                        .collect()
                })
                .unwrap_or_default();
            let t = comps.join("^");
            (!t.is_empty()).then_some(t)
        })
        .collect();
    parts.join("\n")
}

/// An HL7 time as a FHIR instant (a time with its UTC offset). A time without an offset takes
/// the offset of MSH-7, the time the sending system wrote the message in; `None` without one.
pub(crate) fn instant(ts: &str, msh7: Option<&str>) -> Option<String> {
    let zoned = |t: &str| fhir_datetime(t).filter(|d| d.contains('T'));
    zoned(ts).or_else(|| {
        let m = msh7?.trim();
        let zone = m.get(m.find(['+', '-']).filter(|i| *i >= 4)?..)?;
        let main = ts.trim().split('.').next()?;
        (main.len() >= 12).then(|| zoned(&format!("{main}{zone}")))?
    })
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

    #[test]
    fn instants_borrow_the_offset_of_msh7() {
        assert_eq!(
            instant("202611201030", Some("20261101083000-0500")).as_deref(),
            Some("2026-11-20T10:30:00-05:00")
        );
        assert_eq!(
            instant("20261120103000+0100", None).as_deref(),
            Some("2026-11-20T10:30:00+01:00")
        );
        assert_eq!(instant("202611201030", Some("20261101083000")), None);
        assert_eq!(instant("20261120", Some("20261101083000-0500")), None);
    }

    /// Every mapper on every prefix of every test message, and on each with its fields
    /// shifted by one: errors, never a panic.
    #[test]
    fn mappers_never_panic_on_cut_or_shifted_messages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hl7v2");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
            .collect();
        files.sort();
        assert!(files.len() > 20);
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            let shifted: Vec<u8> = String::from_utf8_lossy(&bytes)
                .replace("|", "||")
                .replacen("MSH||", "MSH|", 1)
                .into_bytes();
            let cuts = (0..=bytes.len()).map(|n| bytes.get(..n).unwrap_or_default());
            for raw in cuts.chain([shifted.as_slice()]) {
                let Ok(m) = crate::parse::parse(raw) else {
                    continue;
                };
                let event = m.message_type().1;
                if let Some(e) = encounter(&m, event) {
                    let _ = merge_encounter(None, e, event);
                }
                let _ = (reports(&m), orders(&m), document(&m), immunizations(&m));
                let _ = appointment(&m, event);
                if let Some(pid) = m.segment("PID") {
                    let _ = (identifiers(pid), patient_elements(pid));
                }
            }
        }
    }
}
