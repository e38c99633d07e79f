//! ORU^R01: each OBR → a FHIR DiagnosticReport, its OBX → Observations.
use super::observation;
use super::{NumberedObservation, codeable, entity_identifier, entity_key, fhir_datetime, put};
use crate::ack::{AckError, ErrorCode};
use crate::parse::{Message, Segment};
use serde_json::{Map, Value, json};

/// One OBR and the OBX that follow it. OBX before any OBR (feeds that send no OBR) form a
/// group without a report.
#[derive(Debug, Clone)]
pub struct ReportGroup {
    /// The OBR's occurrence number in the message (0 for the group without one).
    pub obr: usize,
    /// The order number (filler OBR-3, else placer OBR-2) that names the report across
    /// messages (a pending result then its final one), if given.
    pub key: Option<String>,
    /// The DiagnosticReport (without id, subject and result).
    pub report: Option<Map<String, Value>>,
    pub observations: Vec<NumberedObservation>,
}

/// OBR-25 (HL7 table 0123) as a DiagnosticReport status.
fn status(obr: &Segment) -> &'static str {
    match obr.value(25) {
        Some("O" | "I" | "S") => "registered",
        Some("A") => "partial",
        Some("P" | "R") => "preliminary",
        Some("C") => "corrected",
        Some("F") => "final",
        Some("X") => "cancelled",
        Some("D" | "W") => "entered-in-error",
        _ => "unknown",
    }
}

fn diagnostic_report(obr: &Segment, n: usize) -> Result<Map<String, Value>, AckError> {
    let mut r = Map::new();
    put(&mut r, "resourceType", json!("DiagnosticReport"));
    let ids: Vec<Value> = [
        entity_identifier(obr, 2, "PLAC"),
        entity_identifier(obr, 3, "FILL"),
    ]
    .into_iter()
    .flatten()
    .collect();
    put(&mut r, "identifier", Value::Array(ids));
    put(&mut r, "status", json!(status(obr)));
    let section = obr.value(24).unwrap_or("LAB");
    put(
        &mut r,
        "category",
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": section}]}]),
    );
    let code = codeable(obr, 4, 1).ok_or_else(|| {
        AckError::new(
            ErrorCode::RequiredFieldMissing,
            "OBR-4 needs a universal service identifier",
        )
        .at("OBR", n, 4)
    })?;
    put(&mut r, "code", code);
    put(
        &mut r,
        "effectiveDateTime",
        json!(obr.value(7).and_then(fhir_datetime)),
    );
    Ok(r)
}

/// The report groups of an ORU^R01: any number of OBR, each with any number of OBX (none:
/// an order status, a pending or cancelled result).
pub fn reports(msg: &Message) -> Result<Vec<ReportGroup>, AckError> {
    let mut out: Vec<ReportGroup> = Vec::new();
    let (mut obr_n, mut obx_n) = (0, 0);
    let mut obr_time: Option<String> = None;
    for seg in &msg.segments {
        match seg.id.as_str() {
            "OBR" => {
                obr_n += 1;
                obr_time = seg.value(7).and_then(fhir_datetime);
                out.push(ReportGroup {
                    obr: obr_n,
                    key: entity_key(seg, 3).or_else(|| entity_key(seg, 2)),
                    report: Some(diagnostic_report(seg, obr_n)?),
                    observations: Vec::new(),
                });
            }
            "OBX" => {
                obx_n += 1;
                let o = observation(seg, obx_n, obr_time.as_deref())?;
                if out.is_empty() {
                    out.push(ReportGroup {
                        obr: 0,
                        key: None,
                        report: None,
                        observations: Vec::new(),
                    });
                }
                if let Some(g) = out.last_mut() {
                    g.observations.push((obx_n, o));
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(AckError::new(
            ErrorCode::SegmentSequence,
            "an ORU^R01 needs an OBR or an OBX",
        )
        .at("OBR", 1, 0));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::parse::parse;
    #[test]
    fn obr_groups_become_reports() {
        let m = parse(
            b"MSH|^~\\&|LAB|L|B|C|2026||ORU^R01|9|P|2.5\rPID|1||1^^^H\r\
            OBR|1|P1^EHR|F1^LAB|24323-8^CMP^LN|||20260105083000+0100||||||||||||||||||F\r\
            OBX|1|NM|2345-7^Glucose^LN||98|mg/dL|||||F\rOBX|2|NM|2160-0^Creat^LN||1.1|mg/dL|||||F\r\
            NTE|1||comment\r\
            OBR|2|P2^EHR||58410-2^CBC^LN|||20260105083000+0100||||||||||||||||||I\r\
            OBR|3|P3^EHR||2093-3^Chol^LN|||||||||||||||||||||X\rOBX|1|NM|2093-3^Chol^LN||180|mg/dL\r",
        )
        .unwrap();
        let g = reports(&m).unwrap();
        assert_eq!(g.len(), 3);
        let r0 = g[0].report.as_ref().unwrap();
        assert_eq!(r0["status"], "final");
        assert_eq!(r0["code"]["coding"][0]["code"], "24323-8");
        assert_eq!(r0["effectiveDateTime"], "2026-01-05T08:30:00+01:00");
        assert_eq!(r0["identifier"][1]["type"]["coding"][0]["code"], "FILL");
        assert_eq!(g[0].key.as_deref(), Some("F1^LAB"));
        assert_eq!(g[0].observations.len(), 2);
        assert_eq!(g[1].report.as_ref().unwrap()["status"], "registered");
        assert!(g[1].observations.is_empty());
        assert_eq!(g[1].key.as_deref(), Some("P2^EHR"));
        assert_eq!(g[2].report.as_ref().unwrap()["status"], "cancelled");
        assert_eq!(g[2].observations[0].0, 3, "OBX numbered across the message");
        let bare = parse(b"MSH|^~\\&|LAB|L|B|C|2026||ORU^R01|9|P|2.3\rPID|1||1\rOBX|1|NM|X^Y||1\r")
            .unwrap();
        let g = reports(&bare).unwrap();
        assert!(g[0].report.is_none());
        let none = parse(b"MSH|^~\\&|LAB|L|B|C|2026||ORU^R01|9|P|2.3\rPID|1||1\r").unwrap();
        assert_eq!(reports(&none).unwrap_err().segment, Some(("OBR".into(), 1)));
        let nocode =
            parse(b"MSH|^~\\&|LAB|L|B|C|2026||ORU^R01|9|P|2.3\rPID|1||1\rOBR|1|P\r").unwrap();
        assert_eq!(reports(&nocode).unwrap_err().field, Some(4));
    }
}
