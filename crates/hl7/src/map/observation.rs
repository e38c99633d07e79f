//! OBR/OBX → FHIR Observations.
use super::{codeable, fhir_datetime, obx_text, put, text};
use crate::ack::{AckError, ErrorCode};
use crate::parse::{Message, Segment};
use serde_json::{Map, Value, json};

/// An Observation's elements with the 1-based number of the OBX it came from.
pub type NumberedObservation = (usize, Map<String, Value>);

/// Every Observation of a message's OBX segments (each with the time of its OBR when it has
/// none of its own).
pub fn observations(msg: &Message) -> Result<Vec<NumberedObservation>, AckError> {
    let mut out = Vec::new();
    let mut obr_time: Option<String> = None;
    for seg in &msg.segments {
        if seg.id == "OBR" {
            obr_time = seg.value(7).and_then(fhir_datetime);
        } else if seg.id == "OBX" {
            let n = out.len() + 1;
            out.push((n, observation(seg, n, obr_time.as_deref())?));
        }
    }
    Ok(out)
}

/// The Observation of one OBX (the `n`th of its message), without id and subject.
pub fn observation(
    seg: &Segment,
    n: usize,
    obr_time: Option<&str>,
) -> Result<Map<String, Value>, AckError> {
    let at = |field, code, detail| obx_error(n, field, code, detail);
    let mut o = Map::new();
    put(&mut o, "resourceType", json!("Observation"));
    put(&mut o, "status", json!(status(seg)));
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
    put_value(&mut o, seg, n)?;
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
        .or_else(|| obr_time.map(str::to_owned));
    put(&mut o, "effectiveDateTime", text(when.as_deref()));
    Ok(o)
}

/// The error of OBX `n`, field `field`.
fn obx_error(n: usize, field: usize, code: ErrorCode, detail: &'static str) -> AckError {
    AckError::new(code, detail).at("OBX", n, field)
}

/// The FHIR status of OBX-11 (result status); final when absent or unknown.
fn status(seg: &Segment) -> &'static str {
    match seg.value(11) {
        Some("P") => "preliminary",
        Some("C") => "corrected",
        Some("X") => "cancelled",
        Some("D" | "W") => "entered-in-error",
        Some("R" | "I") => "registered",
        _ => "final",
    }
}

/// The value of OBX-5 as the element OBX-2 names (valueQuantity, valueString or
/// valueCodeableConcept); nothing when OBX-5 is empty or `""`.
fn put_value(o: &mut Map<String, Value>, seg: &Segment, n: usize) -> Result<(), AckError> {
    let at = |field, code, detail| obx_error(n, field, code, detail);
    let value_type = seg.value(2).unwrap_or("");
    let present = seg.get(5, 1, 1, 1).is_some_and(|v| v != "\"\"");
    if !present {
        return Ok(());
    }
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
            put(o, "valueQuantity", Value::Object(q));
        }
        "ST" | "TX" | "FT" => put(o, "valueString", json!(obx_text(seg))),
        "CE" | "CWE" | "CNE" => {
            let cc = codeable(seg, 5, 1)
                .ok_or_else(|| at(5, ErrorCode::DataType, "OBX-5 is not a coded value"))?;
            put(o, "valueCodeableConcept", cc);
        }
        _ => {
            return Err(at(
                2,
                ErrorCode::TableValueNotFound,
                "OBX-2 value type not supported (NM, ST, TX, FT, CE, CWE)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::parse::parse;
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
}
