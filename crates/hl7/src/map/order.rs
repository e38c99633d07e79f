//! ORM^O01 / OML^O21: each ORC (with its OBR) → a FHIR ServiceRequest.
use super::{codeable, entity_identifier, entity_key, fhir_datetime, person, put};
use crate::ack::{AckError, ErrorCode};
use crate::parse::{Message, Segment};
use serde_json::{Map, Value, json};

/// One order of the message.
#[derive(Debug, Clone)]
pub struct Order {
    /// The order's occurrence number in the message.
    pub n: usize,
    /// The order number (placer, else filler) that names it across messages (a new order,
    /// then its cancel), if given.
    pub key: Option<String>,
    /// The ServiceRequest (without id and subject).
    pub request: Map<String, Value>,
}

/// ORC-5 (order status, table 0038), else ORC-1 (order control, table 0119), as a
/// ServiceRequest status.
fn status(orc: Option<&Segment>) -> &'static str {
    let Some(orc) = orc else { return "active" };
    match (orc.value(5), orc.value(1)) {
        (Some("CM"), _) => "completed",
        (Some("CA" | "DC" | "RP"), _) => "revoked",
        (Some("HD"), _) => "on-hold",
        (Some("ER"), _) => "entered-in-error",
        (Some("IP" | "SC" | "A"), _) => "active",
        (_, Some("CA" | "OC" | "DC" | "OD" | "CR" | "DR")) => "revoked",
        (_, Some("HD" | "OH")) => "on-hold",
        (_, Some("NW" | "XO" | "RL" | "SC" | "SN" | "XX" | "RP" | "RO")) => "active",
        _ => "unknown",
    }
}

fn first_of<'a>(
    a: Option<&'a Segment>,
    b: Option<&'a Segment>,
    field: usize,
) -> Option<&'a Segment> {
    [a, b]
        .into_iter()
        .flatten()
        .find(|s| s.component(field, 1).is_some())
}

fn request(n: usize, orc: Option<&Segment>, obr: Option<&Segment>) -> Order {
    let mut r = Map::new();
    put(&mut r, "resourceType", json!("ServiceRequest"));
    // ORC-2/3 and OBR-2/3 carry the same placer and filler numbers; either may be empty.
    let placer = first_of(orc, obr, 2);
    let filler = first_of(orc, obr, 3);
    let ids: Vec<Value> = [
        placer.and_then(|s| entity_identifier(s, 2, "PLAC")),
        filler.and_then(|s| entity_identifier(s, 3, "FILL")),
    ]
    .into_iter()
    .flatten()
    .collect();
    put(&mut r, "identifier", Value::Array(ids));
    put(&mut r, "status", json!(status(orc)));
    put(&mut r, "intent", json!("order"));
    if let Some(code) = obr.and_then(|o| codeable(o, 4, 1)) {
        put(&mut r, "code", code);
    }
    if let Some(when) = orc.and_then(|o| o.value(9)).and_then(fhir_datetime) {
        put(&mut r, "authoredOn", json!(when));
    }
    let requester = orc
        .and_then(|o| person(o, 12, 1))
        .or_else(|| obr.and_then(|o| person(o, 16, 1)));
    put(&mut r, "requester", requester.unwrap_or(Value::Null));
    if let Some(reason) = obr.and_then(|o| codeable(o, 31, 1)) {
        put(&mut r, "reasonCode", json!([reason]));
    }
    let key = placer
        .and_then(|s| entity_key(s, 2))
        .or_else(|| filler.and_then(|s| entity_key(s, 3)));
    Order { n, key, request: r }
}

/// The orders of an ORM^O01 or OML^O21: an ORC starts one, the OBR after it says what is
/// ordered (an OBR without its own ORC is an order too).
pub fn orders(msg: &Message) -> Result<Vec<Order>, AckError> {
    let mut groups: Vec<(Option<&Segment>, Option<&Segment>)> = Vec::new();
    for seg in &msg.segments {
        match (seg.id.as_str(), groups.last_mut()) {
            ("ORC", _) => groups.push((Some(seg), None)),
            ("OBR", Some((_, obr @ None))) => *obr = Some(seg),
            ("OBR", _) => groups.push((None, Some(seg))),
            _ => {}
        }
    }
    if groups.is_empty() {
        return Err(AckError::new(
            ErrorCode::SegmentSequence,
            "an order needs an ORC or an OBR",
        )
        .at("ORC", 1, 0));
    }
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(i, (orc, obr))| request(i + 1, orc, obr))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::parse::parse;
    #[test]
    fn orc_obr_to_service_requests() {
        let m = parse(
            b"MSH|^~\\&|EHR|H|LAB|L|2026||ORM^O01|1|P|2.3\rPID|1||1^^^H\r\
            ORC|NW|PL-1^EHR|||||||202601050800+0000|||dr1^Welby^Marcus\r\
            OBR|1|PL-1^EHR||57021-8^CBC^LN|||||||||||||||||||||||||||R51^Headache^I10\r\
            ORC|CA|PL-2^EHR|FL-2^LAB\rOBR|1|PL-2^EHR|FL-2^LAB|2093-3^Chol^LN\r\
            ORC|SC|PL-3^EHR|||CM\r",
        )
        .unwrap();
        let o = orders(&m).unwrap();
        assert_eq!(o.len(), 3);
        let r = &o[0].request;
        assert_eq!(r["status"], "active");
        assert_eq!(r["intent"], "order");
        assert_eq!(r["code"]["coding"][0]["code"], "57021-8");
        assert_eq!(r["identifier"][0]["value"], "PL-1");
        assert_eq!(r["authoredOn"], "2026-01-05T08:00:00+00:00");
        assert_eq!(r["requester"]["display"], "Welby, Marcus");
        assert_eq!(r["reasonCode"][0]["coding"][0]["code"], "R51");
        assert_eq!(o[0].key.as_deref(), Some("PL-1^EHR"));
        assert_eq!(o[1].request["status"], "revoked");
        assert_eq!(o[1].request["identifier"][1]["value"], "FL-2");
        assert_eq!(o[2].request["status"], "completed");
        let none = parse(b"MSH|^~\\&|EHR|H|LAB|L|2026||ORM^O01|1|P|2.3\rPID|1||1\r").unwrap();
        assert!(orders(&none).is_err());
    }
}
