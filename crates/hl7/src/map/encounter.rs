//! PV1 → a FHIR Encounter.
use super::{fhir_datetime, put};
use crate::parse::Message;
use serde_json::{Map, Value, json};

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::parse::parse;
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
