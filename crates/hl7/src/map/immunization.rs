//! VXU^V04: each RXA (with its RXR) → a FHIR Immunization.
use super::{codeable, entity_key, fhir_datetime, put, text};
use crate::ack::{AckError, ErrorCode};
use crate::parse::{Message, Segment};
use serde_json::{Map, Value, json};

/// One administration of the message.
#[derive(Debug, Clone)]
pub struct Vaccination {
    /// The RXA's occurrence number in the message.
    pub n: usize,
    /// The filler order number (ORC-3) that names it across messages (a correction), if given.
    pub key: Option<String>,
    /// The Immunization (without id and patient).
    pub immunization: Map<String, Value>,
}

fn immunization(rxa: &Segment, n: usize) -> Result<Map<String, Value>, AckError> {
    let at = |field: usize, code: ErrorCode, what: &'static str| {
        AckError::new(code, what).at("RXA", n, field)
    };
    let mut i = Map::new();
    put(&mut i, "resourceType", json!("Immunization"));
    // RXA-21 action code D (deleted); RXA-20 completion status (table 0322).
    let status = match (rxa.value(21), rxa.value(20)) {
        (Some("D"), _) => "entered-in-error",
        (_, Some("RE" | "NA")) => "not-done",
        _ => "completed",
    };
    put(&mut i, "status", json!(status));
    if let Some(reason) = codeable(rxa, 18, 1) {
        put(&mut i, "statusReason", reason);
    }
    let vaccine = codeable(rxa, 5, 1).ok_or_else(|| {
        at(
            5,
            ErrorCode::RequiredFieldMissing,
            "RXA-5 needs the vaccine code",
        )
    })?;
    put(&mut i, "vaccineCode", vaccine);
    let when = rxa.value(3).ok_or_else(|| {
        at(
            3,
            ErrorCode::RequiredFieldMissing,
            "RXA-3 needs the date given",
        )
    })?;
    let when =
        fhir_datetime(when).ok_or_else(|| at(3, ErrorCode::DataType, "RXA-3 is not a date"))?;
    put(&mut i, "occurrenceDateTime", json!(when));
    match rxa.component(9, 1) {
        Some("00") => put(&mut i, "primarySource", json!(true)),
        Some("01") => put(&mut i, "primarySource", json!(false)),
        _ => {}
    }
    // RXA-6 999 means "amount unknown".
    if let Some(v) = rxa
        .value(6)
        .filter(|v| *v != "999")
        .and_then(|v| v.trim().parse::<f64>().ok())
        && v.is_finite()
    {
        let mut q = Map::new();
        q.insert("value".into(), json!(v));
        put(
            &mut q,
            "unit",
            text(rxa.component(7, 2).or(rxa.component(7, 1))),
        );
        if let Some(u) = rxa
            .component(7, 1)
            .filter(|_| rxa.component(7, 3) == Some("UCUM"))
        {
            put(&mut q, "system", json!("http://unitsofmeasure.org"));
            put(&mut q, "code", json!(u));
        }
        put(&mut i, "doseQuantity", Value::Object(q));
    }
    put(&mut i, "lotNumber", text(rxa.value(15)));
    if let Some(exp) = rxa.value(16).and_then(fhir_datetime) {
        put(
            &mut i,
            "expirationDate",
            json!(exp.get(..10).unwrap_or(&exp)),
        );
    }
    if let Some(m) = rxa.component(17, 2).or(rxa.component(17, 1)) {
        put(&mut i, "manufacturer", json!({"display": m}));
    }
    Ok(i)
}

/// The Immunizations of a VXU^V04: one per RXA, the ORC before it naming the order and the
/// RXR after it the route and site.
pub fn immunizations(msg: &Message) -> Result<Vec<Vaccination>, AckError> {
    let mut out: Vec<Vaccination> = Vec::new();
    let mut key = None;
    for seg in &msg.segments {
        match seg.id.as_str() {
            "ORC" => key = entity_key(seg, 3),
            "RXA" => {
                let n = out.len() + 1;
                out.push(Vaccination {
                    n,
                    key: key.take(),
                    immunization: immunization(seg, n)?,
                });
            }
            "RXR" => {
                if let Some(v) = out.last_mut() {
                    put(
                        &mut v.immunization,
                        "route",
                        codeable(seg, 1, 1).unwrap_or(Value::Null),
                    );
                    put(
                        &mut v.immunization,
                        "site",
                        codeable(seg, 2, 1).unwrap_or(Value::Null),
                    );
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(
            AckError::new(ErrorCode::SegmentSequence, "a VXU^V04 needs an RXA segment")
                .at("RXA", 1, 0),
        );
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::parse::parse;
    #[test]
    fn rxa_to_immunization() {
        let m = parse(b"MSH|^~\\&|IIS|H|B|C|2026||VXU^V04^VXU_V04|1|P|2.5.1\rPID|1||1^^^H\r\
            ORC|RE||IZ-1^IIS\r\
            RXA|0|1|20260105||141^Influenza, seasonal^CVX|0.5|mL^milliliters^UCUM||00^New^NIP001||||||LOT-7|20270101|SKB^GlaxoSmithKline^MVX|||CP|A\r\
            RXR|C28161^Intramuscular^NCIT|LD^Left deltoid^HL70163\r\
            ORC|RE||IZ-2^IIS\r\
            RXA|0|1|20260106||03^MMR^CVX|999||||||||||||00^Parental decision^NIP002||RE\r").unwrap();
        let v = immunizations(&m).unwrap();
        assert_eq!(v.len(), 2);
        let i = &v[0].immunization;
        assert_eq!(i["status"], "completed");
        assert_eq!(
            i["vaccineCode"]["coding"][0]["system"],
            "http://hl7.org/fhir/sid/cvx"
        );
        assert_eq!(i["vaccineCode"]["coding"][0]["code"], "141");
        assert_eq!(i["occurrenceDateTime"], "2026-01-05");
        assert_eq!(i["lotNumber"], "LOT-7");
        assert_eq!(i["expirationDate"], "2027-01-01");
        assert_eq!(i["doseQuantity"]["value"], 0.5);
        assert_eq!(i["primarySource"], true);
        assert_eq!(i["site"]["coding"][0]["code"], "LD");
        assert_eq!(v[0].key.as_deref(), Some("IZ-1^IIS"));
        let refused = &v[1].immunization;
        assert_eq!(refused["status"], "not-done");
        assert_eq!(refused["statusReason"]["coding"][0]["code"], "00");
        assert!(refused.get("doseQuantity").is_none());
        let bad =
            parse(b"MSH|^~\\&|IIS|H|B|C|2026||VXU^V04|1|P|2.5.1\rPID|1||1\rRXA|0|1|||03^MMR^CVX\r")
                .unwrap();
        assert_eq!(immunizations(&bad).unwrap_err().field, Some(3));
    }
}
