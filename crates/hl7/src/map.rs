//! HL7 v2 → FHIR R4 elements: the Patient demographics of PID, the Encounter of PV1, the
//! Observations of OBX. Pure; errors name the segment and field, never a value.
use crate::ack::{AckError, ErrorCode};
use crate::parse::{Message, Segment};
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

fn put(o: &mut Map<String, Value>, k: &str, v: Value) {
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

fn text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |v| Value::String(v.to_owned()))
}

/// The FHIR identifier system for an assigning authority (PID-3.4 / CX.4).
fn authority_system(seg: &Segment, field: usize, rep: usize) -> Option<String> {
    let ns = seg.get(field, rep, 4, 1);
    let uid = seg.get(field, rep, 4, 2);
    let uid_type = seg.get(field, rep, 4, 3);
    match (uid, uid_type) {
        (Some(u), Some("ISO")) => Some(format!("urn:oid:{u}")),
        _ => ns.map(str::to_owned),
    }
}

/// PID-3 identifiers as FHIR identifiers (system from the assigning authority).
pub fn identifiers(pid: &Segment) -> Vec<Value> {
    let mut out = Vec::new();
    for rep in 1..=pid.repetitions(3) {
        let Some(value) = pid.get(3, rep, 1, 1).filter(|v| *v != "\"\"") else {
            continue;
        };
        let id_type = pid.get(3, rep, 5, 1);
        let system = if id_type == Some("SS") {
            Some("http://hl7.org/fhir/sid/us-ssn".to_owned())
        } else {
            authority_system(pid, 3, rep)
        };
        let mut o = Map::new();
        if let Some(t) = id_type {
            put(
                &mut o,
                "type",
                json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": t}]}),
            );
        }
        put(&mut o, "system", text(system.as_deref()));
        put(&mut o, "value", json!(value));
        out.push(Value::Object(o));
    }
    if let Some(ssn) = pid.value(19) {
        let already = out
            .iter()
            .any(|i| i["system"] == "http://hl7.org/fhir/sid/us-ssn");
        if !already {
            out.push(json!({"system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn}));
        }
    }
    out
}

/// The Patient elements PID gives (identifier, name, birthDate, gender, address, telecom).
pub fn patient_elements(pid: &Segment) -> Result<Map<String, Value>, AckError> {
    let mut p = Map::new();
    let ids = identifiers(pid);
    if ids.is_empty() {
        return Err(
            AckError::new(ErrorCode::RequiredFieldMissing, "PID-3 needs an identifier")
                .at("PID", 1, 3),
        );
    }
    put(&mut p, "identifier", Value::Array(ids));
    let mut names = Vec::new();
    for rep in 1..=pid.repetitions(5) {
        let mut n = Map::new();
        put(&mut n, "family", text(pid.get(5, rep, 1, 1)));
        let given: Vec<Value> = [pid.get(5, rep, 2, 1), pid.get(5, rep, 3, 1)]
            .into_iter()
            .flatten()
            .map(|g| json!(g))
            .collect();
        put(&mut n, "given", Value::Array(given));
        put(
            &mut n,
            "suffix",
            pid.get(5, rep, 4, 1).map_or(Value::Null, |s| json!([s])),
        );
        put(
            &mut n,
            "prefix",
            pid.get(5, rep, 5, 1).map_or(Value::Null, |s| json!([s])),
        );
        if pid.get(5, rep, 7, 1) == Some("L") {
            put(&mut n, "use", json!("official"));
        }
        if !n.is_empty() {
            names.push(Value::Object(n));
        }
    }
    put(&mut p, "name", Value::Array(names));
    if let Some(b) = pid.value(7) {
        let d = fhir_datetime(b).ok_or_else(|| {
            AckError::new(ErrorCode::DataType, "PID-7 is not a date").at("PID", 1, 7)
        })?;
        put(&mut p, "birthDate", json!(d.get(..10).unwrap_or(&d)));
    }
    if let Some(g) = pid.value(8) {
        let gender = match g {
            "M" => "male",
            "F" => "female",
            "U" => "unknown",
            _ => "other",
        };
        put(&mut p, "gender", json!(gender));
    }
    let mut addresses = Vec::new();
    for rep in 1..=pid.repetitions(11) {
        let mut a = Map::new();
        let lines: Vec<Value> = [pid.get(11, rep, 1, 1), pid.get(11, rep, 2, 1)]
            .into_iter()
            .flatten()
            .map(|l| json!(l))
            .collect();
        put(&mut a, "line", Value::Array(lines));
        put(&mut a, "city", text(pid.get(11, rep, 3, 1)));
        put(&mut a, "state", text(pid.get(11, rep, 4, 1)));
        put(&mut a, "postalCode", text(pid.get(11, rep, 5, 1)));
        put(&mut a, "country", text(pid.get(11, rep, 6, 1)));
        match pid.get(11, rep, 7, 1) {
            Some("H") => put(&mut a, "use", json!("home")),
            Some("B" | "O") => put(&mut a, "use", json!("work")),
            _ => {}
        }
        if !a.is_empty() {
            addresses.push(Value::Object(a));
        }
    }
    put(&mut p, "address", Value::Array(addresses));
    let mut telecom = Vec::new();
    for (field, use_) in [(13, "home"), (14, "work")] {
        for rep in 1..=pid.repetitions(field) {
            let equipment = pid.get(field, rep, 3, 1);
            let (system, value) = match (equipment, pid.get(field, rep, 4, 1)) {
                (Some("Internet" | "X.400"), Some(email)) => ("email", Some(email.to_owned())),
                (e, _) => {
                    let system = if e == Some("FX") { "fax" } else { "phone" };
                    let number = pid.get(field, rep, 1, 1).map(str::to_owned).or_else(|| {
                        let area = pid.get(field, rep, 6, 1).unwrap_or("");
                        pid.get(field, rep, 7, 1).map(|l| format!("{area}{l}"))
                    });
                    (system, number)
                }
            };
            if let Some(v) = value.filter(|v| v != "\"\"") {
                telecom.push(json!({"system": system, "value": v, "use": use_}));
            }
        }
    }
    put(&mut p, "telecom", Value::Array(telecom));
    Ok(p)
}

/// The Encounter of a PV1 (without id and subject), or `None` when there is no visit.
pub fn encounter(msg: &Message, event: &str) -> Option<Map<String, Value>> {
    let pv1 = msg.segment("PV1")?;
    let class = pv1.value(2)?;
    if class == "N" {
        return None;
    }
    let v3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    let class = match class {
        "I" => json!({"system": v3, "code": "IMP", "display": "inpatient encounter"}),
        "O" => json!({"system": v3, "code": "AMB", "display": "ambulatory"}),
        "E" => json!({"system": v3, "code": "EMER", "display": "emergency"}),
        "P" => json!({"system": v3, "code": "PRENC", "display": "pre-admission"}),
        other => json!({"system": "http://terminology.hl7.org/CodeSystem/v2-0004", "code": other}),
    };
    let status = match event {
        "A01" | "A08" => "in-progress",
        "A04" => "arrived",
        "A05" => "planned",
        _ => "unknown",
    };
    let mut e = Map::new();
    put(&mut e, "resourceType", json!("Encounter"));
    put(&mut e, "status", json!(status));
    put(&mut e, "class", class);
    if let Some(start) = pv1.value(44).and_then(fhir_datetime) {
        put(&mut e, "period", json!({"start": start}));
    }
    let location: Vec<&str> = (1..=3).filter_map(|c| pv1.component(3, c)).collect();
    if !location.is_empty() {
        put(
            &mut e,
            "location",
            json!([{"location": {"display": location.join(" ")}}]),
        );
    }
    if let Some(id) = pv1.component(7, 1) {
        let name: Vec<&str> = [pv1.component(7, 2), pv1.component(7, 3)]
            .into_iter()
            .flatten()
            .collect();
        let mut who = Map::new();
        put(&mut who, "identifier", json!({"value": id}));
        put(&mut who, "display", json!(name.join(", ")));
        put(
            &mut e,
            "participant",
            json!([{"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND"}]}],
                "individual": who}]),
        );
    }
    if let Some(visit) = pv1.value(19) {
        put(&mut e, "identifier", json!([{"value": visit}]));
    }
    Some(e)
}

fn code_system(s: Option<&str>) -> Option<String> {
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
fn codeable(seg: &Segment, field: usize, rep: usize) -> Option<Value> {
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

/// The Observations of an ORU (without id and subject), each with its OBX occurrence number.
/// An Observation's elements with the 1-based number of the OBX it came from.
pub type NumberedObservation = (usize, Map<String, Value>);

pub fn observations(msg: &Message) -> Result<Vec<NumberedObservation>, AckError> {
    let mut out = Vec::new();
    let mut obr_time: Option<String> = None;
    let mut n = 0;
    for seg in &msg.segments {
        if seg.id == "OBR" {
            obr_time = seg.value(7).and_then(fhir_datetime);
            continue;
        }
        if seg.id != "OBX" {
            continue;
        }
        n += 1;
        let at = |field: usize, code: ErrorCode, detail: &'static str| {
            AckError::new(code, detail).at("OBX", n, field)
        };
        let mut o = Map::new();
        put(&mut o, "resourceType", json!("Observation"));
        let status = match seg.value(11) {
            Some("P") => "preliminary",
            Some("C") => "corrected",
            Some("X") => "cancelled",
            Some("D" | "W") => "entered-in-error",
            Some("R" | "I") => "registered",
            _ => "final",
        };
        put(&mut o, "status", json!(status));
        put(
            &mut o,
            "category",
            json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]),
        );
        let code = codeable(seg, 3, 1).ok_or_else(|| {
            at(
                3,
                ErrorCode::RequiredFieldMissing,
                "OBX-3 needs an observation identifier",
            )
        })?;
        put(&mut o, "code", code);
        let value_type = seg.value(2).unwrap_or("");
        let present = seg.get(5, 1, 1, 1).is_some_and(|v| v != "\"\"");
        if present {
            match value_type {
                "NM" => {
                    let raw = seg.value(5).unwrap_or("").trim();
                    let v: f64 = raw.parse().map_err(|_| {
                        at(
                            5,
                            ErrorCode::DataType,
                            "OBX-5 is not a number (OBX-2 is NM)",
                        )
                    })?;
                    if !v.is_finite() {
                        return Err(at(5, ErrorCode::DataType, "OBX-5 is not a finite number"));
                    }
                    let mut q = Map::new();
                    q.insert("value".into(), json!(v));
                    let unit = seg.component(6, 1);
                    put(&mut q, "unit", text(seg.component(6, 2).or(unit)));
                    if matches!(seg.component(6, 3), Some("UCUM" | "ISO+" | "ANSI"))
                        && let Some(u) = unit
                    {
                        put(&mut q, "system", json!("http://unitsofmeasure.org"));
                        put(&mut q, "code", json!(u));
                    }
                    put(&mut o, "valueQuantity", Value::Object(q));
                }
                "ST" | "TX" | "FT" => {
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
                    put(&mut o, "valueString", json!(parts.join("\n")));
                }
                "CE" | "CWE" | "CNE" => {
                    let cc = codeable(seg, 5, 1)
                        .ok_or_else(|| at(5, ErrorCode::DataType, "OBX-5 is not a coded value"))?;
                    put(&mut o, "valueCodeableConcept", cc);
                }
                _ => {
                    return Err(at(
                        2,
                        ErrorCode::TableValueNotFound,
                        "OBX-2 value type not supported (NM, ST, TX, FT, CE, CWE)",
                    ));
                }
            }
        }
        if let Some(range) = seg.value(7) {
            put(&mut o, "referenceRange", json!([{"text": range}]));
        }
        if let Some(flag) = seg.value(8) {
            put(
                &mut o,
                "interpretation",
                json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0078", "code": flag}]}]),
            );
        }
        let when = seg
            .value(14)
            .and_then(fhir_datetime)
            .or_else(|| obr_time.clone());
        put(&mut o, "effectiveDateTime", text(when.as_deref()));
        out.push((n, o));
    }
    if out.is_empty() {
        return Err(AckError::new(
            ErrorCode::SegmentSequence,
            "an ORU^R01 needs at least one OBX",
        )
        .at("OBX", 1, 0));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::parse::parse;

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
    fn pid_to_patient() {
        let m = parse(b"MSH|^~\\&|A|HOSP|B|C|2026||ADT^A01|1|P|2.5.1\rPID|1||12345^^^HOSP^MR~999-00-1234^^^SSA^SS||O'Neil^Mary^Ann^^Dr^^L||19610314|F|||1 Main St^Apt 2^Boston^MA^02110^USA^H||^PRN^PH^^^617^5550100~^NET^Internet^mary@example.org|(617)555-0199\r").unwrap();
        let p = patient_elements(m.segment("PID").unwrap()).unwrap();
        assert_eq!(p["identifier"][0]["system"], "HOSP");
        assert_eq!(p["identifier"][0]["value"], "12345");
        assert_eq!(
            p["identifier"][1]["system"],
            "http://hl7.org/fhir/sid/us-ssn"
        );
        assert_eq!(p["name"][0]["family"], "O'Neil");
        assert_eq!(p["name"][0]["given"], json!(["Mary", "Ann"]));
        assert_eq!(p["name"][0]["use"], "official");
        assert_eq!(p["birthDate"], "1961-03-14");
        assert_eq!(p["gender"], "female");
        assert_eq!(p["address"][0]["city"], "Boston");
        assert_eq!(p["address"][0]["use"], "home");
        assert_eq!(p["telecom"][0]["value"], "6175550100");
        assert_eq!(
            p["telecom"][1],
            json!({"system": "email", "value": "mary@example.org", "use": "home"})
        );
        assert_eq!(p["telecom"][2]["use"], "work");
        let none = parse(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPID|1||\r").unwrap();
        let e = patient_elements(none.segment("PID").unwrap()).unwrap_err();
        assert_eq!(
            (e.code, e.field),
            (ErrorCode::RequiredFieldMissing, Some(3))
        );
    }

    #[test]
    fn obx_value_types() {
        let m = parse(b"MSH|^~\\&|LAB|L|B|C|2026||ORU^R01|9|P|2.3\rPID|1||1^^^H\rOBR|1||||||20260105083000+0100\rOBX|1|NM|8867-4^Heart rate^LN||72|/min^^UCUM|60-100|N|||F\rOBX|2|ST|X^Note||first~second\rOBX|3|CE|Y^Blood type^LN||A+^A positive^SCT\r").unwrap();
        let o = observations(&m).unwrap();
        assert_eq!(o.len(), 3);
        assert_eq!(
            o[0].1["valueQuantity"],
            json!({"value": 72.0, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"})
        );
        assert_eq!(o[0].1["code"]["coding"][0]["system"], "http://loinc.org");
        assert_eq!(o[0].1["referenceRange"][0]["text"], "60-100");
        assert_eq!(o[0].1["effectiveDateTime"], "2026-01-05T08:30:00+01:00");
        assert_eq!(o[1].1["valueString"], "first\nsecond");
        assert_eq!(o[2].1["valueCodeableConcept"]["coding"][0]["code"], "A+");
        let bad =
            parse(b"MSH|^~\\&|LAB|L|B|C|2026||ORU^R01|9|P|2.3\rOBX|1|NM|8867-4^HR^LN||high\r")
                .unwrap();
        let e = observations(&bad).unwrap_err();
        assert_eq!(
            (e.code, e.segment.clone(), e.field),
            (ErrorCode::DataType, Some(("OBX".into(), 1)), Some(5))
        );
        let odd =
            parse(b"MSH|^~\\&|LAB|L|B|C|2026||ORU^R01|9|P|2.3\rOBX|1|ED|X^Y||data\r").unwrap();
        assert_eq!(observations(&odd).unwrap_err().field, Some(2));
    }

    #[test]
    fn pv1_to_encounter() {
        let mut pv1 = vec![""; 45];
        pv1[0] = "PV1";
        pv1[1] = "1";
        pv1[2] = "I";
        pv1[3] = "ICU^101^A";
        pv1[7] = "1234^Welby^Marcus";
        pv1[19] = "V-77";
        pv1[44] = "20260101120000";
        let text = format!(
            "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPID|1||1^^^H\r{}\r",
            pv1.join("|")
        );
        let m = parse(text.as_bytes()).unwrap();
        let e = encounter(&m, "A01").unwrap();
        assert_eq!(e["class"]["code"], "IMP");
        assert_eq!(e["status"], "in-progress");
        assert_eq!(e["location"][0]["location"]["display"], "ICU 101 A");
        assert_eq!(
            e["participant"][0]["individual"]["identifier"]["value"],
            "1234"
        );
        assert_eq!(e["identifier"][0]["value"], "V-77");
        assert_eq!(e["period"]["start"], "2026-01-01");
    }
}
