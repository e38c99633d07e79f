//! Unit tests of the retention rules and ages.
use super::*;

fn at(s: &str) -> i64 {
    millis(OffsetDateTime::parse(s, &Rfc3339).unwrap())
}

#[test]
fn partial_dates_count_as_their_last_instant() {
    assert_eq!(latest_instant("2015"), Some(at("2015-12-31T23:59:59.999Z")));
    assert_eq!(
        latest_instant("2016-02"),
        Some(at("2016-02-29T23:59:59.999Z"))
    );
    assert_eq!(
        latest_instant("2015-06-30"),
        Some(at("2015-06-30T23:59:59.999Z"))
    );
    assert_eq!(
        latest_instant("2015-06-30T10:00:00+02:00"),
        Some(at("2015-06-30T08:00:00Z"))
    );
    for bad in [
        "",
        "15",
        "2015-6",
        "2015-13",
        "2015-02-30",
        "2015-06-30-1",
        "June",
    ] {
        assert_eq!(latest_instant(bad), None, "{bad}");
    }
}

#[test]
fn the_cutoff_is_calendar_years_back() {
    let rule = |y| RetentionRule::new(ResourceType::PATIENT, y, RetentionAnchor::LastUpdate);
    let now = OffsetDateTime::parse("2030-03-15T12:00:00Z", &Rfc3339).unwrap();
    assert_eq!(rule(10).unwrap().cutoff(now), at("2020-03-15T12:00:00Z"));
    let leap = OffsetDateTime::parse("2028-02-29T00:00:00Z", &Rfc3339).unwrap();
    assert_eq!(rule(1).unwrap().cutoff(leap), at("2027-02-28T00:00:00Z"));
    assert!(rule(0).is_err());
    assert!(rule(MAX_YEARS + 1).is_err());
}

#[test]
fn rules_are_labelled_and_anchors_parsed() {
    let r = RetentionRule::new(
        ResourceType::parse("Observation").unwrap(),
        7,
        RetentionAnchor::LastUpdate,
    )
    .unwrap();
    assert_eq!(r.label(), "Observation:7y:last-update");
    assert_eq!(
        RetentionAnchor::parse("last-encounter"),
        Some(RetentionAnchor::LastEncounter)
    );
    assert_eq!(RetentionAnchor::parse("LAST-UPDATE"), None);
    assert_eq!(
        RetentionAnchor::default_for(ResourceType::PATIENT),
        RetentionAnchor::LastEncounter
    );
}

#[test]
fn debug_of_an_item_never_shows_the_patient_id() {
    let item = RetentionItem {
        rtype: ResourceType::PATIENT,
        id: ResourceId::parse("ab12").unwrap(),
        rule: "Patient:1y:last-update".into(),
        age_days: 400,
        records: 2,
        target: Target::Patient(ResourceId::parse("MRN-SECRET-123").unwrap()),
    };
    let shown = format!("{item:?}");
    assert!(!shown.contains("MRN-SECRET-123"), "{shown}");
    assert!(shown.contains("ab12"));
}
