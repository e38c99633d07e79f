//! PID → the elements of a FHIR Patient.
use super::{fhir_datetime, put, text};
use crate::ack::{AckError, ErrorCode};
use crate::parse::Segment;
use serde_json::{Map, Value, json};

fn authority_system(seg: &Segment, field: usize, rep: usize) -> Option<String> {
    let ns = seg.get(field, rep, 4, 1);
    let uid = seg.get(field, rep, 4, 2);
    let uid_type = seg.get(field, rep, 4, 3);
    match (uid, uid_type) {
        (Some(u), Some("ISO")) => Some(format!("urn:oid:{u}")),
        _ => ns.map(str::to_owned),
    }
}

/// The identifiers of one CX field (system from the assigning authority, CX.4).
fn cx_identifiers(pid: &Segment, field: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for rep in 1..=pid.repetitions(field) {
        let Some(value) = pid.get(field, rep, 1, 1).filter(|v| *v != "\"\"") else {
            continue;
        };
        let id_type = pid.get(field, rep, 5, 1);
        let system = if id_type == Some("SS") {
            Some("http://hl7.org/fhir/sid/us-ssn".to_owned())
        } else {
            authority_system(pid, field, rep)
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
    out
}

/// The identifiers PID names the patient by, as FHIR identifiers: PID-3, else PID-2 (the
/// external id of v2.3-era feeds), else PID-4 (the alternate id), then the SSN of PID-19.
/// Empty when none of PID-3, PID-2 and PID-4 holds one (an SSN alone identifies no one).
pub fn identifiers(pid: &Segment) -> Vec<Value> {
    let Some(mut out) = [3, 2, 4]
        .into_iter()
        .map(|f| cx_identifiers(pid, f))
        .find(|ids| !ids.is_empty())
    else {
        return Vec::new();
    };
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
        return Err(AckError::new(
            ErrorCode::RequiredFieldMissing,
            "PID-3 (or PID-2, PID-4) needs an identifier",
        )
        .at("PID", 1, 3));
    }
    put(&mut p, "identifier", Value::Array(ids));
    put(&mut p, "name", Value::Array(names(pid)));
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
    put(&mut p, "address", Value::Array(addresses(pid)));
    put(&mut p, "telecom", Value::Array(telecoms(pid)));
    Ok(p)
}

/// The names of PID-5 (XPN), each with family, given, suffix, prefix and the legal-name use.
fn names(pid: &Segment) -> Vec<Value> {
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
    names
}

/// The addresses of PID-11 (XAD), with home or work use.
fn addresses(pid: &Segment) -> Vec<Value> {
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
    addresses
}

/// The phone numbers, faxes and e-mail addresses of PID-13 (home) and PID-14 (work).
fn telecoms(pid: &Segment) -> Vec<Value> {
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
    telecom
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::parse::parse;
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
        let none =
            parse(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPID|1||||||||||||||||||999-00-1234\r")
                .unwrap();
        let e = patient_elements(none.segment("PID").unwrap()).unwrap_err();
        assert_eq!(
            (e.code, e.field),
            (ErrorCode::RequiredFieldMissing, Some(3))
        );
    }

    #[test]
    fn identifier_fallback_pid3_then_pid2_then_pid4() {
        let ids = |pid: &str| {
            let text = format!("MSH|^~\\&|A|B|C|D|2026||ORU^R01|1|P|2.3\r{pid}\r");
            identifiers(parse(text.as_bytes()).unwrap().segment("PID").unwrap())
        };
        let both = ids("PID|1|22^^^OLD|33^^^NEW~34^^^OTHER|44^^^ALT");
        assert_eq!(both.len(), 2);
        assert_eq!(both[0]["system"], "NEW");
        let p2 = ids("PID|1|22^^^OLD^PI||44^^^ALT");
        assert_eq!(p2.len(), 1);
        assert_eq!(
            (p2[0]["system"].as_str(), p2[0]["value"].as_str()),
            (Some("OLD"), Some("22"))
        );
        let p4 = ids("PID|1|\"\"||44^^^ALT|Doe^J||||||||||||||999-00-1234");
        assert_eq!(
            (p4[0]["system"].as_str(), p4[0]["value"].as_str()),
            (Some("ALT"), Some("44"))
        );
        assert_eq!(p4[1]["system"], "http://hl7.org/fhir/sid/us-ssn");
        assert!(ids("PID|1||||Doe^J||||||||||||||999-00-1234").is_empty());
    }
}
