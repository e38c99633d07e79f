//! PV1 → a FHIR Encounter.
use super::{fhir_datetime, put};
use crate::parse::Message;
use serde_json::{Map, Value, json};

/// The Encounter status an ADT event sets; `None` (A08, an update) keeps the one it has.
fn status_of(event: &str) -> Option<&'static str> {
    Some(match event {
        "A03" => "finished",
        "A04" => "arrived",
        "A05" => "planned",
        "A11" => "cancelled",
        "A08" => return None,
        // Admit, transfer, class changes, tracking, cancelled transfer or discharge.
        "A01" | "A02" | "A06" | "A07" | "A09" | "A10" | "A12" | "A13" => "in-progress",
        _ => "unknown",
    })
}

/// The Encounter elements of PV1 for an ADT event: class (PV1-2), location (PV1-3),
/// attending (PV1-7), visit number (PV1-19), period (PV1-44 admit, PV1-45 discharge), and the
/// status the event sets. `None` without PV1 or for class N (not applicable).
pub fn encounter(msg: &Message, event: &str) -> Option<Map<String, Value>> {
    let pv1 = msg.segment("PV1")?;
    let v3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    let class = match pv1.value(2) {
        Some("N") => return None,
        None => Value::Null,
        Some("I") => json!({"system": v3, "code": "IMP", "display": "inpatient encounter"}),
        Some("O") => json!({"system": v3, "code": "AMB", "display": "ambulatory"}),
        Some("E") => json!({"system": v3, "code": "EMER", "display": "emergency"}),
        Some("P") => json!({"system": v3, "code": "PRENC", "display": "pre-admission"}),
        Some(other) => {
            json!({"system": "http://terminology.hl7.org/CodeSystem/v2-0004", "code": other})
        }
    };
    let mut e = Map::new();
    put(&mut e, "resourceType", json!("Encounter"));
    put(&mut e, "status", json!(status_of(event)));
    put(&mut e, "class", class);
    let mut period = Map::new();
    put(
        &mut period,
        "start",
        json!(pv1.value(44).and_then(fhir_datetime)),
    );
    put(
        &mut period,
        "end",
        json!(pv1.value(45).and_then(fhir_datetime)),
    );
    put(&mut e, "period", Value::Object(period));
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

/// The Encounter after an ADT event: the stored one (if any) with what the message says put
/// over it. A08 keeps the status; A13 (cancel discharge) removes the period's end; what the
/// message leaves empty is kept. `None` when there is no class to create one with.
pub fn merge_encounter(
    stored: Option<Value>,
    new: Map<String, Value>,
    event: &str,
) -> Option<Map<String, Value>> {
    let mut e = match stored {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    e.remove("meta");
    let mut period = match e.remove("period") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    for (k, v) in new {
        match (k.as_str(), v) {
            ("period", Value::Object(p)) => period.extend(p),
            (_, v) => {
                e.insert(k, v);
            }
        }
    }
    if event == "A13" {
        period.remove("end");
    }
    put(&mut e, "period", Value::Object(period));
    if !e.contains_key("status") {
        e.insert("status".into(), json!("in-progress"));
    }
    e.contains_key("class").then_some(e)
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

    #[test]
    fn adt_events_move_the_encounter() {
        let msg = |event: &str, pv1: &str| {
            let text =
                format!("MSH|^~\\&|A|B|C|D|2026||ADT^{event}|1|P|2.5\rPID|1||1^^^H\r{pv1}\r");
            parse(text.as_bytes()).unwrap()
        };
        let pv1 = |class: &str, loc: &str, end: &str| {
            let mut f = vec![""; 46];
            f[0] = "PV1";
            f[2] = class;
            f[3] = loc;
            f[19] = "V-1";
            f[44] = "202601011200+0000";
            f[45] = end;
            f.join("|")
        };
        let step = |stored: Option<Map<String, Value>>, event: &str, pv1: &str| {
            let m = msg(event, pv1);
            merge_encounter(
                stored.map(Value::Object),
                encounter(&m, event).unwrap(),
                event,
            )
            .unwrap()
        };
        let a01 = step(None, "A01", &pv1("I", "ICU^1", ""));
        assert_eq!(a01["status"], "in-progress");
        let a02 = step(Some(a01), "A02", &pv1("I", "WARD^7^B", ""));
        assert_eq!(a02["location"][0]["location"]["display"], "WARD 7 B");
        let a07 = step(Some(a02), "A07", &pv1("O", "WARD^7^B", ""));
        assert_eq!(a07["class"]["code"], "AMB");
        let a08 = step(Some(a07), "A08", &pv1("", "", ""));
        assert_eq!(
            (a08["status"].as_str(), a08["class"]["code"].as_str()),
            (Some("in-progress"), Some("AMB"))
        );
        let a03 = step(Some(a08), "A03", &pv1("O", "", "202601031500+0000"));
        assert_eq!(a03["status"], "finished");
        assert_eq!(
            a03["period"],
            json!({"start": "2026-01-01T12:00:00+00:00", "end": "2026-01-03T15:00:00+00:00"})
        );
        let a13 = step(Some(a03), "A13", &pv1("O", "", ""));
        assert_eq!(a13["status"], "in-progress");
        assert_eq!(a13["period"], json!({"start": "2026-01-01T12:00:00+00:00"}));
        let a11 = step(Some(a13), "A11", &pv1("O", "", ""));
        assert_eq!(a11["status"], "cancelled");
        let none = encounter(&msg("A08", &pv1("", "", "")), "A08").unwrap();
        assert!(
            merge_encounter(None, none, "A08").is_none(),
            "no class, nothing to create"
        );
    }
}
