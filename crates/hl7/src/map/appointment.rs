//! SIU^S12-S15: SCH, AIS, AIL, AIP → a FHIR Appointment.
use super::{codeable, entity_identifier, entity_key, instant, person, put};
use crate::ack::{AckError, ErrorCode};
use crate::parse::{Message, Segment};
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

/// Minutes of a duration and its units (CE; minutes when none are given).
fn minutes(value: Option<&str>, units: Option<&str>) -> Option<i64> {
    let v: i64 = value?.trim().parse().ok().filter(|v| *v > 0)?;
    match units.map(str::to_ascii_lowercase).as_deref() {
        None | Some("m" | "min" | "mins" | "minute" | "minutes") => Some(v),
        Some("h" | "hr" | "hour" | "hours") => v.checked_mul(60),
        _ => None,
    }
}

fn plus_minutes(start: &str, mins: i64) -> Option<String> {
    let t = time::OffsetDateTime::parse(start, &Rfc3339).ok()?;
    (t + time::Duration::minutes(mins)).format(&Rfc3339).ok()
}

/// SCH-25 (filler status, table 0278) as an Appointment status; S15 is always cancelled.
fn status(event: &str, sch: &Segment) -> &'static str {
    if event == "S15" {
        return "cancelled";
    }
    match sch.value(25).map(str::to_ascii_lowercase).as_deref() {
        Some("cancelled" | "deleted") => "cancelled",
        Some("complete") => "fulfilled",
        Some("noshow") => "noshow",
        Some("pending") => "pending",
        Some("waitlist") => "waitlist",
        _ => "booked",
    }
}

fn at(s: Option<&Segment>, f: usize, c: usize) -> Option<&str> {
    s.and_then(|s| s.component(f, c))
}

fn participant(actor: Value) -> Value {
    json!({"actor": actor, "status": "accepted"})
}

/// The Appointment of an SIU (without the patient participant's reference, which
/// [`appointment`] leaves for the caller to add), and the appointment id (filler SCH-2, else
/// placer SCH-1) that names it across S12-S15, if given.
pub fn appointment(
    msg: &Message,
    event: &str,
) -> Result<(Option<String>, Map<String, Value>), AckError> {
    let sch = msg.segment("SCH").ok_or_else(|| {
        AckError::new(ErrorCode::SegmentSequence, "an SIU needs an SCH segment").at("SCH", 1, 0)
    })?;
    let ais = msg.segment("AIS");
    let tq1 = msg.segment("TQ1");
    let msh7 = msg.msh().value(7);
    let mut a = Map::new();
    put(&mut a, "resourceType", json!("Appointment"));
    let ids: Vec<Value> = [
        entity_identifier(sch, 1, "PLAC"),
        entity_identifier(sch, 2, "FILL"),
    ]
    .into_iter()
    .flatten()
    .collect();
    put(&mut a, "identifier", Value::Array(ids));
    let status = status(event, sch);
    put(&mut a, "status", json!(status));
    put(
        &mut a,
        "appointmentType",
        codeable(sch, 8, 1).unwrap_or(Value::Null),
    );
    if let Some(reason) = codeable(sch, 7, 1) {
        put(&mut a, "reasonCode", json!([reason]));
    }
    if let Some(service) = ais.and_then(|s| codeable(s, 3, 1)) {
        put(&mut a, "serviceType", json!([service]));
    }
    let start = [at(Some(sch), 11, 4), at(tq1, 7, 1), at(ais, 4, 1)]
        .into_iter()
        .flatten()
        .find_map(|t| instant(t, msh7));
    let mins = minutes(at(ais, 7, 1), at(ais, 8, 1))
        .or_else(|| minutes(sch.value(9), sch.component(10, 1)));
    let end = [at(Some(sch), 11, 5), at(tq1, 8, 1)]
        .into_iter()
        .flatten()
        .find_map(|t| instant(t, msh7))
        .or_else(|| plus_minutes(start.as_deref()?, mins?));
    if start.is_none() || end.is_none() {
        // FHIR (app-3): only proposed, cancelled or waitlisted appointments may lack them.
        if !matches!(status, "cancelled" | "waitlist") {
            return Err(AckError::new(
                ErrorCode::RequiredFieldMissing,
                "the appointment needs a start with its UTC offset (SCH-11.4, TQ1-7 or AIS-4) and an end or a duration",
            )
            .at("SCH", 1, 11));
        }
    } else {
        put(&mut a, "start", json!(start));
        put(&mut a, "end", json!(end));
    }
    put(&mut a, "minutesDuration", json!(mins));
    let mut people = Vec::new();
    for aip in msg.segments_of("AIP") {
        if let Some(p) = person(aip, 3, 1) {
            people.push(participant(p));
        }
    }
    for ail in msg.segments_of("AIL") {
        let place: Vec<&str> = (1..=3).filter_map(|c| ail.component(3, c)).collect();
        if !place.is_empty() {
            people.push(participant(json!({"display": place.join(" ")})));
        }
    }
    put(&mut a, "participant", Value::Array(people));
    let key = entity_key(sch, 2).or_else(|| entity_key(sch, 1));
    Ok((key, a))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::parse::parse;
    #[test]
    fn sch_ais_ail_aip_to_appointment() {
        let m = parse(b"MSH|^~\\&|SCHED|H|B|C|20261101080000-0500||SIU^S12|1|P|2.5\r\
            SCH|PL-9^EHR|FL-9^SCHED||||FOLLOWUP^Follow-up visit|ROUTINE^Routine^HL70276|CHECKUP|30|min|^^30^202611201030^202611201100||||||||||||||Booked\r\
            PID|1||1^^^H\rRGS|1\rAIS|1||99213^Office visit^CPT|202611201030|||30|min\r\
            AIL|1||CLINIC^2^B\rAIP|1||dr1^Welby^Marcus\r").unwrap();
        let (key, a) = appointment(&m, "S12").unwrap();
        assert_eq!(key.as_deref(), Some("FL-9^SCHED"));
        assert_eq!(a["status"], "booked");
        assert_eq!(a["start"], "2026-11-20T10:30:00-05:00");
        assert_eq!(a["end"], "2026-11-20T11:00:00-05:00");
        assert_eq!(a["minutesDuration"], 30);
        assert_eq!(a["serviceType"][0]["coding"][0]["code"], "99213");
        assert_eq!(a["participant"][0]["actor"]["display"], "Welby, Marcus");
        assert_eq!(a["participant"][1]["actor"]["display"], "CLINIC 2 B");
        let (_, c) = appointment(&m, "S15").unwrap();
        assert_eq!(c["status"], "cancelled");
        let only_ais = parse(
            b"MSH|^~\\&|SCHED|H|B|C|20261101080000+0100||SIU^S14|1|P|2.3.1\r\
            SCH|PL-9\rAIS|1||X|202611201030|||45\r",
        )
        .unwrap();
        let (_, a) = appointment(&only_ais, "S14").unwrap();
        assert_eq!(a["end"], "2026-11-20T11:15:00+01:00");
        let no_time = parse(b"MSH|^~\\&|S|H|B|C|20261101||SIU^S12|1|P|2.5\rSCH|PL-9\r").unwrap();
        assert_eq!(appointment(&no_time, "S12").unwrap_err().field, Some(11));
        assert!(appointment(&no_time, "S15").is_ok());
    }
}
