//! The receipts of applied HL7 v2 messages: a resend is recognized (its receipt was committed
//! with its records, in the identity store for a message that wrote patients only, else in the
//! clinical store), receipts are no FHIR record, and retention rules expire them; a resend
//! after that still stores nothing twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use phivault_core::{ResourceType, StoreKind};
use phivault_hl7::ParseLimits;
use phivault_hl7::ingest::handle;
use phivault_vault::ops::retention::{RetentionAnchor, RetentionRule};

const ADT: &str = "MSH|^~\\&|REG|NORTH|PHIVAULT|NORTH|20260105093000-0500||ADT^A28^ADT_A05|RCPT-1|P|2.5.1\rPID|1||880001^^^NORTH^MR||Receipt^Rita||19650203|F\r";
const ORU: &str = "MSH|^~\\&|LAB|NORTH|PHIVAULT|NORTH|20260105093000-0500||ORU^R01^ORU_R01|RCPT-2|P|2.5.1\rPID|1||880001^^^NORTH^MR\rOBR|1|RC-1||2345-7^Glucose^LN|||20260105080000-0500\rOBX|1|NM|2345-7^Glucose^LN||91|mg/dL^mg/dL^UCUM|70-99|N|||F\r";

/// Threat: a message resent by its interface engine is applied a second time, or the records
/// of message receipts leak through FHIR paths or outlive the organization's retention rule.
#[tokio::test(flavor = "multi_thread")]
async fn resends_are_recognized_until_retention_expires_the_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (o, clock, c, iface) = interface_vault(&data, "2026-01-05T09:30:00Z", "registration").await;
    let v = &o.vault;
    let limits = ParseLimits::default();
    let send = |m: &'static str| handle(v, &iface, None, m.as_bytes(), &limits, "A", "20260105");
    for m in [ADT, ORU] {
        let (ack, first) = send(m).await;
        assert_eq!(first.code.as_str(), "AA", "{ack}");
        assert!(!first.duplicate);
        let (_, again) = send(m).await;
        assert!(again.duplicate, "a resend is recognized by its receipt");
    }
    // Receipts are no FHIR record: the export's pages hold the Patient and the result only.
    let mut types = Vec::new();
    for kind in [StoreKind::Identity, StoreKind::Clinical] {
        let (page, _) = v.page(&c, kind, None, 100).await.unwrap();
        types.extend(page.iter().map(|s| s.rtype.as_str().to_owned()));
    }
    types.sort();
    assert_eq!(types, ["DiagnosticReport", "Observation", "Patient"]);
    // A one-year rule on each receipt type expires both, and only them (the ten-year rule
    // on patients makes the run read the identity store, receipts and all).
    for (t, years) in [
        ("hl7-applied", 1),
        ("hl7-applied-identity", 1),
        ("Patient", 10),
    ] {
        let rule = RetentionRule::new(
            ResourceType::parse_stored(t).unwrap(),
            years,
            RetentionAnchor::LastUpdate,
        )
        .unwrap();
        v.set_retention_rule(&c, rule).await.unwrap();
    }
    assert!(v.retention_plan(&c).await.unwrap().is_empty());
    clock.advance(time::Duration::days(366));
    let run = v.retention_run(&c).await.unwrap();
    assert_eq!(run.records, 2, "{run:?}");
    // A resend now is applied again, and writes no new version of anything.
    for m in [ADT, ORU] {
        let (_, later) = send(m).await;
        assert_eq!(later.code.as_str(), "AA");
        assert!(!later.duplicate, "the receipt expired");
    }
    let (page, _) = v.page(&c, StoreKind::Identity, None, 100).await.unwrap();
    let patient = &page[0];
    let history = v.history(&c, ResourceType::PATIENT, &patient.id, 10).await;
    assert_eq!(
        history.unwrap().len(),
        1,
        "the Patient was not written again"
    );
    o.close().await;
}
