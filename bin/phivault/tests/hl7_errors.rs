//! The sealed HL7 v2 error queue end to end (issue 21): a real `phivault serve` refuses
//! messages over MLLP, and `phivault hl7 errors list|show|retry|discard` works on what it kept.
//! A refused message is listed (never its content), sealed (no plaintext in any file of the
//! vault), retried with today's code after a fix (AA, then gone), discarded with nothing
//! recoverable left, counted in `/metrics`, and every step is in the audit trail. A message
//! that cannot be kept is answered AR ("send again"), never acknowledged and dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, cli, json_of, stdout_ok};
use common::mllp::{ack_parts, exchange, framed};
use common::raw::RawDb;
use common::*;
use phivault_vault::audit::AuditEvent;
use phivault_vault::audit::export::AuditFilter;
use serde_json::Value;
use std::path::Path;

/// An ADT^A40 merging two patients nobody has sent yet: AE until both exist.
const MERGE: &str = "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|PHIVAULT|HOSP|20260105093000||ADT^A40^ADT_A39|QMERGE-1|P|2.5\r\
EVN|A40|20260105093000\r\
PID|1||QMRG-1^^^urn:test:mrn^MR||Quarantinova^Ilsabet||19510203|F\r\
MRG|QMRG-0^^^urn:test:mrn^MR\r";

fn admit(mrn: &str, control: &str) -> String {
    format!(
        "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|PHIVAULT|HOSP|20260105090000||ADT^A01^ADT_A01|{control}|P|2.5\r\
         EVN|A01|20260105090000\r\
         PID|1||{mrn}^^^urn:test:mrn^MR||Quarantinova^Ilsabet||19510203|F\r\
         PV1|1|I|W^101^1\r"
    )
}

fn send(live: &Live, msg: &str) -> (String, Option<String>) {
    let ack = exchange(live.mllp, &framed(msg));
    ack_parts(&String::from_utf8_lossy(&ack).replace('\r', "\n"))
}

fn list(data: &Path) -> Vec<Value> {
    let out = cli(data, &["hl7", "errors", "list", "--json"]);
    json_of(&out).as_array().cloned().unwrap()
}

fn start() -> Live {
    Live::start_with(&[("PHIVAULT_MLLP_TLS", "off")], |data| {
        let siem = Live::client(data, "siem", "AUDITOR", "system/AuditEvent.rs", "HOPERAT");
        std::fs::write(data.join("siem.basic"), siem).unwrap();
    })
}

/// The queue's counters as a monitoring system reads them from `/metrics`.
fn metric(live: &Live, kind: &str) -> String {
    let siem = std::fs::read_to_string(live.data.join("siem.basic")).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "--cacert", &live.ca, "-H"])
        .arg(format!("authorization: Bearer {}", live.token(&siem)))
        .arg(format!("https://localhost:{}/metrics", live.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let name = format!("phivault_hl7_errors_{kind}_total{{interface=\"default\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_owned()
}

async fn trail(data: &Path) -> Vec<AuditEvent> {
    let o = open_vault(data).await;
    let events = o
        .vault
        .audit_events(&ctx(&o).await, &AuditFilter::default())
        .await
        .unwrap();
    o.close().await;
    events
}

fn needles(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_message_is_listed_sealed_and_accepted_by_a_retry_after_the_fix() {
    let live = start();
    let data = live.data.clone();
    assert_eq!(send(&live, MERGE).0, "AE");

    // Listed with its ACK code, reason, interface and type; never its content.
    let out = cli(&data, &["hl7", "errors", "list", "--json"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let entries = json_of(&out).as_array().cloned().unwrap();
    assert_eq!(entries.len(), 1, "{shown}");
    let e = &entries[0];
    let id = e["id"].as_str().unwrap().to_owned();
    assert_eq!(e["interface"], "default");
    assert_eq!(e["message_type"], "ADT^A40");
    assert_eq!(e["ack_code"], "AE");
    assert_eq!(e["attempts"], 1);
    assert!(e["reason"].as_str().unwrap().contains("PID-3"), "{e}");
    for word in ["Quarantinova", "QMRG-1", "Ilsabet"] {
        assert!(!shown.contains(word), "the listing shows content: {shown}");
    }
    let text = stdout_ok(&cli(&data, &["hl7", "errors", "list"]));
    assert!(
        text.contains(&id) && !text.contains("Quarantinova"),
        "{text}"
    );

    // Sealed: no file of the vault holds any of its values in plaintext.
    let hits = scan_vault(
        &data,
        &needles(&["Quarantinova", "Ilsabet", "QMRG-1", "QMRG-0"]),
    );
    assert!(hits.is_empty(), "plaintext of a queued message: {hits:?}");

    // Sent again and refused again: the same entry, one more attempt.
    assert_eq!(send(&live, MERGE).0, "AE");
    let again = list(&data);
    assert_eq!((again.len(), &again[0]["id"]), (1, &e["id"]));
    assert_eq!(again[0]["attempts"], 2);

    // `show` gives the operator the message itself.
    let shown = stdout_ok(&cli(&data, &["hl7", "errors", "show", &id]));
    assert!(
        shown.contains("PID|1||QMRG-1") && shown.contains("Quarantinova"),
        "{shown}"
    );

    // A retry before the fix is refused again and kept.
    let out = cli(&data, &["hl7", "errors", "retry", &id]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("AE"));
    assert_eq!(list(&data)[0]["attempts"], 3);

    // The fix: both patients arrive. The retry (today's code and settings) is accepted and
    // the entry is gone.
    assert_eq!(send(&live, &admit("QMRG-1", "QADMIT-1")).0, "AA");
    assert_eq!(send(&live, &admit("QMRG-0", "QADMIT-0")).0, "AA");
    let out = stdout_ok(&cli(&data, &["hl7", "errors", "retry", "--all"]));
    assert!(out.contains(&format!("{id}: AA")), "{out}");
    assert!(list(&data).is_empty());
    assert!(!cli(&data, &["hl7", "errors", "show", &id]).status.success());

    assert_eq!(metric(&live, "queued"), "1");
    assert_eq!(metric(&live, "retried"), "2");
    assert_eq!(metric(&live, "discarded"), "0");

    // Every step is in the audit trail, under the interface or the operator, never content.
    let events = trail(&data).await;
    let of = |action: &str| -> Vec<&AuditEvent> {
        events.iter().filter(|e| e.action == action).collect()
    };
    let queued = of("hl7-queue");
    assert_eq!(queued.len(), 3, "first, resent, retried before the fix");
    assert!(queued.iter().all(|q| q.actor == "hl7:default"
        && q.resource.as_deref() == Some(id.as_str())
        && q.reason.as_deref() == Some("AE")));
    assert_eq!(
        queued.iter().map(|q| q.version).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    for action in ["hl7-errors-list", "hl7-errors-show", "hl7-retry"] {
        let found = of(action);
        assert!(!found.is_empty(), "no {action} event");
        assert!(
            found.iter().all(|e| e.actor.starts_with("cli:")),
            "{action}"
        );
    }
    assert!(
        of("hl7-errors-show")
            .iter()
            .all(|e| e.resource.as_deref() == Some(id.as_str()))
    );
    assert_eq!(of("hl7-retry").len(), 2);
    let settled = of("erase");
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].reason.as_deref(), Some("hl7-retry:accepted"));
    assert_eq!(settled[0].entities, std::slice::from_ref(&id));
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("Quarantinova") && !all.contains("QMRG-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discarded_message_leaves_no_recoverable_bytes() {
    let live = start();
    let data = live.data.clone();
    // Not even HL7: answered AR, and kept all the same.
    let junk = "NOTHL7 Frostquibble 555-0199 Hollowmere Lane";
    assert_eq!(send(&live, junk).0, "AR");
    let entries = list(&data);
    assert_eq!(entries.len(), 1);
    let id = entries[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&entries[0]["ack_code"], &entries[0]["message_type"]),
        (&"AR".into(), &"".into())
    );
    assert!(scan_vault(&data, &needles(&["Frostquibble", "Hollowmere"])).is_empty());
    assert!(stdout_ok(&cli(&data, &["hl7", "errors", "show", &id])).contains("Frostquibble"));

    // What the store keeps of it: its wrapped data key and its ciphertext.
    let db = RawDb::open(&data, "clinical").await;
    let rows = db.sealed_rows(false).await;
    db.close().await;
    assert_eq!(rows.len(), 1, "the queue entry is the only sealed row");
    let sealed = vec![rows[0].wrapped_dek.clone(), rows[0].ciphertext.clone()];
    let before = scan_vault(&data, &sealed);
    for n in 0..sealed.len() {
        assert!(
            before.iter().any(|(_, i)| *i == n),
            "the scan finds them before"
        );
    }

    let out = cli(
        &data,
        &["hl7", "errors", "discard", &id, "--reason", "test feed"],
    );
    stdout_ok(&out);
    assert!(list(&data).is_empty());
    assert!(!cli(&data, &["hl7", "errors", "show", &id]).status.success());
    let left = scan_vault(&data, &sealed);
    assert!(
        left.is_empty(),
        "sealed bytes of a discarded message remain: {left:?}"
    );
    assert_eq!(metric(&live, "discarded"), "1");

    let events = trail(&data).await;
    let erase = events
        .iter()
        .find(|e| e.action == "erase")
        .expect("an erase event");
    assert_eq!(erase.reason.as_deref(), Some("hl7-discard:test feed"));
    assert_eq!(erase.entities, std::slice::from_ref(&id));
    assert!(erase.actor.starts_with("cli:"));
    assert!(events.iter().any(|e| e.action == "hl7-discard"));
    assert!(
        events
            .iter()
            .any(|e| e.action == "hl7-queue" && e.reason.as_deref() == Some("AR"))
    );
    // A discarded entry stays discarded: a second discard finds nothing.
    assert!(
        !cli(
            &data,
            &["hl7", "errors", "discard", &id, "--reason", "again"]
        )
        .status
        .success()
    );
}

/// If the queue cannot keep a refused message, the sender is told to send it again (AR),
/// not acknowledged while the message is lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_cannot_be_kept_is_answered_ar() {
    let live = start();
    let data = live.data.clone();
    let db = RawDb::open(&data, "clinical").await;
    let (block, unblock) = match &db {
        RawDb::Sqlite(_) => (
            "CREATE TRIGGER no_queue BEFORE INSERT ON record_versions \
             WHEN NEW.rtype = 'hl7-error' BEGIN SELECT RAISE(ABORT, 'disk full'); END",
            "DROP TRIGGER no_queue",
        ),
        RawDb::Postgres(_) => (
            "CREATE FUNCTION no_queue() RETURNS trigger LANGUAGE plpgsql AS \
             $$BEGIN RAISE EXCEPTION 'disk full'; END$$; \
             CREATE TRIGGER no_queue BEFORE INSERT ON record_versions FOR EACH ROW \
             WHEN (NEW.rtype = 'hl7-error') EXECUTE FUNCTION no_queue()",
            "DROP TRIGGER no_queue ON record_versions; DROP FUNCTION no_queue()",
        ),
    };
    db.exec(block).await;
    let ack = String::from_utf8_lossy(&exchange(live.mllp, &framed(MERGE))).replace('\r', "\n");
    assert_eq!(ack_parts(&ack).0, "AR", "{ack}");
    assert!(ack.contains("storage unavailable; send again"), "{ack}");
    assert!(list(&data).is_empty());
    db.exec(unblock).await;
    db.close().await;
    // Sent again once the store works: refused as before, and kept.
    assert_eq!(send(&live, MERGE).0, "AE");
    assert_eq!(list(&data).len(), 1);
}

/// The queue lives with the records: a KEK rotation rewraps its data keys (the old KEK can be
/// retired and the entry still opens), and a retention rule for `hl7-error` expires entries by
/// their last attempt, crypto-shredding them like any record.
#[tokio::test(flavor = "multi_thread")]
async fn rotation_covers_the_queue_and_retention_expires_it() {
    use phivault_hl7::ParseLimits;
    use phivault_hl7::ingest::handle;
    use phivault_vault::ops::retention::{RetentionAnchor, RetentionRule};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (o, clock, c, iface) = interface_vault(&data, "2026-01-05T09:30:00Z", "lab").await;
    let v = &o.vault;
    let limits = ParseLimits::default();
    let (_, out) = handle(v, &iface, None, MERGE.as_bytes(), &limits, "A1", "20260105").await;
    assert_eq!(out.code.as_str(), "AE");
    let listed = v.queued_messages(&c, None, Some("lab")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        v.queued_messages(&c, None, Some("other"))
            .await
            .unwrap()
            .is_empty()
    );
    let id = listed[0].id.clone();
    // No FHIR path sees it: the export's pages skip the queue's rows.
    let (page, next) = v
        .page(&c, phivault_core::StoreKind::Clinical, None, 100)
        .await
        .unwrap();
    assert!(page.is_empty() && next.is_none());
    // Only an interface queues: the operator (or anyone else) cannot plant entries.
    let refusal = phivault_vault::Refusal {
        message_type: "ADT^A01",
        ack_code: "AE",
        reason: "",
    };
    let planted = v.queue_message(&c, b"MSH|^~\\&|x", refusal).await;
    assert!(
        matches!(planted, Err(phivault_vault::VaultError::Forbidden)),
        "{planted:?}"
    );

    let (plan, report) = v
        .rotate_keys(&c, Default::default(), &mut |_| {})
        .await
        .unwrap();
    assert!(report.finished && report.rewrapped >= 1, "{report:?}");
    clock.advance(time::Duration::hours(1));
    v.retire_kek(&c, plan.target - 1, std::time::Duration::ZERO)
        .await
        .unwrap();
    let opened = v.queued_message(&c, &id).await.unwrap();
    assert_eq!(opened.message.as_slice(), MERGE.as_bytes());

    // Retention: a one-year rule on the queue's type; nothing is due before a year has passed.
    let rule = RetentionRule::new(
        phivault_core::ResourceType::parse_stored("hl7-error").unwrap(),
        1,
        RetentionAnchor::LastUpdate,
    )
    .unwrap();
    v.set_retention_rule(&c, rule).await.unwrap();
    assert!(v.retention_plan(&c).await.unwrap().is_empty());
    clock.advance(time::Duration::days(366));
    let run = v.retention_run(&c).await.unwrap();
    assert_eq!(run.records, 1, "{run:?}");
    assert!(v.queued_messages(&c, None, None).await.unwrap().is_empty());
    o.close().await;
}
