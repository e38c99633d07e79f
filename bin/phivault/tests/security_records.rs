//! Security regressions of the record paths (issue 20, findings 1, 2, 3 and 11): a record moved
//! to another patient, a reference used as a patient-existence oracle, `$everything` beyond a
//! client's scopes, and AuditEvent written as an ordinary resource. Every attack runs against a
//! real `phivault serve` over HTTPS (curl), on SQLite and, with `PHIVAULT_TEST_BACKEND=postgres`,
//! on PostgreSQL (scripts/test-postgres.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, Resp, add_user, cli, created, stdout_ok};
use common::live::{note_of as observation, patient_with_mrn as patient};
use serde_json::{Value, json};

const EHR: (&str, &str, &str) = ("INTEGRATION_MANAGER", "system/*.cruds", "TREAT HOPERAT");
/// What only patient A's versions hold.
const A_SECRET: &str = "Firstpatientsecret";

/// The audit events of one patient (`audit export --patient`), as JSON.
fn accounting(live: &Live, patient: &str) -> Vec<Value> {
    let out = cli(&live.data, &["audit", "export", "--patient", patient]);
    stdout_ok(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether the patient's accounting holds an event of `actor` doing `action` with `outcome`.
fn accounted(events: &[Value], actor: &str, action: &str, outcome: &str) -> bool {
    events
        .iter()
        .any(|e| e["actor"] == actor && e["action"] == action && e["outcome"] == outcome)
}

fn grant(live: &Live, user: &str, patient: &str) {
    let out = cli(
        &live.data,
        &["grants", "add", "--username", user, "--patient", patient],
    );
    stdout_ok(&out);
}

mod moved {
    use super::*;

    struct World {
        live: Live,
        ehr: String,
        doc: String,
        a: String,
        b: String,
        obs: String,
    }

    /// Patients A and B; an Observation of A with two versions; a clinician granted B only.
    fn world() -> World {
        let (mut basic, mut otp) = (String::new(), String::new());
        let live = Live::start(|data| {
            basic = Live::client(data, "ehr", EHR.0, EHR.1, EHR.2);
            otp = add_user(data, "doc", "CLINICIAN");
        });
        let ehr = live.token(&basic);
        let post =
            |body: &Value| created(&live.fhir("POST", "/fhir/Patient", &ehr, "TREAT", Some(body)));
        let (a, b) = (post(&patient("A-100")), post(&patient("B-200")));
        let first = observation(&format!("Patient/{a}"), &format!("{A_SECRET} one"));
        let obs = created(&live.fhir("POST", "/fhir/Observation", &ehr, "TREAT", Some(&first)));
        let mut second = observation(&format!("Patient/{a}"), &format!("{A_SECRET} two"));
        second["id"] = json!(obs);
        let r = live.fhir(
            "PUT",
            &format!("/fhir/Observation/{obs}"),
            &ehr,
            "TREAT",
            Some(&second),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        grant(&live, "doc", &b);
        let doc = live.sign_in("doc", &otp, "127.0.20.1");
        World {
            live,
            ehr,
            doc,
            a,
            b,
            obs,
        }
    }

    fn moved_to(w: &World, patient: &str) -> Value {
        let mut v = observation(&format!("Patient/{patient}"), "Movedbyattacker");
        v["id"] = json!(w.obs);
        v
    }

    /// What an answer to the clinician must never hold.
    fn assert_no_secret(r: &Resp, what: &str) {
        common::live::assert_withholds(r, A_SECRET, what);
    }

    /// Threat (finding 1, high): a clinician granted patient B moves patient A's Observation to
    /// B with `PUT`, then reads A's earlier versions through `_history`, `vread`, search,
    /// `$everything`, a batch or a transaction, and deletes it; the audit names B only. HIPAA
    /// §164.312(a)(1) access control, §164.312(b) audit controls; OWASP API1 (BOLA). Must: the
    /// update is authorized against the current version's patient too, every attempt shows in
    /// A's accounting, and nothing of A leaves.
    #[test]
    fn records_moving_a_record_to_another_patient_never_releases_the_first_patients_history() {
        let w = world();
        let (live, doc) = (&w.live, w.doc.as_str());
        let path = format!("/fhir/Observation/{}", w.obs);
        let r = live.fhir("PUT", &path, doc, "TREAT", Some(&moved_to(&w, &w.b)));
        assert_eq!(r.status, 403, "the move was not refused: {}", r.body);
        for (what, p) in [
            ("read", path.clone()),
            ("history", format!("{path}/_history")),
            ("vread", format!("{path}/_history/1")),
            ("search", format!("/fhir/Observation?patient={}", w.b)),
            ("everything", format!("/fhir/Patient/{}/$everything", w.b)),
        ] {
            assert_no_secret(&live.fhir("GET", &p, doc, "TREAT", None), what);
        }
        let r = live.fhir("DELETE", &path, doc, "TREAT", None);
        assert_eq!(r.status, 403, "delete: {}", r.body);
        let url = format!("Observation/{}", w.obs);
        let put = json!({"resource": moved_to(&w, &w.b), "request": {"method": "PUT", "url": url}});
        let delete = json!({"request": {"method": "DELETE", "url": url}});
        // A transaction may name a resource once; a batch takes both.
        for (kind, entries) in [
            ("batch", json!([put, delete])),
            ("transaction", json!([put])),
        ] {
            let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
            let r = live.fhir("POST", "/fhir", doc, "TREAT", Some(&bundle));
            assert_no_secret(&r, kind);
            let ok = r.body.to_string().contains("200 OK") || r.body.to_string().contains("204");
            assert!(!(r.status == 200 && ok), "{kind} wrote: {}", r.body);
        }
        // Nothing changed: A's record is as the integration left it.
        let r = live.fhir("GET", &path, &w.ehr, "TREAT", None);
        assert_eq!(
            (r.status, r.body["meta"]["versionId"].as_str()),
            (200, Some("2"))
        );
        assert!(
            r.body["valueString"]
                .as_str()
                .unwrap()
                .starts_with(A_SECRET)
        );
        // A's accounting shows every attempt, denied, by the clinician.
        let events = accounting(live, &w.a);
        for action in ["update", "delete", "history", "vread", "transaction"] {
            assert!(
                accounted(&events, "user:doc", action, "denied"),
                "A's accounting has no denied {action}: {events:?}"
            );
        }
    }

    /// Threat (finding 1): after a legitimate move by an integration, the clinician granted the
    /// new patient reads the record's history; the versions that were the first patient's must
    /// be dropped (not released), the attempt must show in A's accounting, the move names both
    /// patients, and a clinician granted both patients still may not move a record.
    #[test]
    fn records_history_and_vread_release_each_version_only_to_who_may_see_its_patient() {
        let w = world();
        let (live, doc) = (&w.live, w.doc.as_str());
        let path = format!("/fhir/Observation/{}", w.obs);
        let r = live.fhir("PUT", &path, &w.ehr, "TREAT", Some(&moved_to(&w, &w.b)));
        assert_eq!(
            r.status, 200,
            "an integration may move a record: {}",
            r.body
        );
        let (of_a, of_b) = (accounting(live, &w.a), accounting(live, &w.b));
        let moves = |events: &[Value]| -> Vec<u64> {
            events
                .iter()
                .filter(|e| {
                    e["actor"] == "client:ehr" && e["action"] == "update" && e["version"] == 3
                })
                .map(|e| e["seq"].as_u64().unwrap())
                .collect()
        };
        assert!(
            !moves(&of_a).is_empty() && moves(&of_a) == moves(&of_b),
            "the move names both"
        );
        let r = live.fhir("GET", &format!("{path}/_history"), doc, "TREAT", None);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_no_secret(&r, "history");
        let versions: Vec<&str> = r.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["3"], "only B's version is released");
        let r = live.fhir("GET", &format!("{path}/_history/1"), doc, "TREAT", None);
        assert_eq!(r.status, 403, "vread of A's version: {}", r.body);
        assert_no_secret(&r, "vread");
        let events = accounting(live, &w.a);
        assert!(
            accounted(&events, "user:doc", "history", "denied"),
            "{events:?}"
        );
        assert!(
            accounted(&events, "user:doc", "vread", "denied"),
            "{events:?}"
        );
        // Granted both, a clinician still may not change a record's patient.
        grant(live, "doc", &w.a);
        let r = live.fhir("PUT", &path, doc, "TREAT", Some(&moved_to(&w, &w.a)));
        assert!(
            matches!(r.status, 409 | 422),
            "a clinician moved a record: {}",
            r.body
        );
        let r = live.fhir("GET", &path, &w.ehr, "TREAT", None);
        assert_eq!(r.body["meta"]["versionId"], "3", "nothing written");
    }
}

/// Threat (finding 2): any signed-in person, even an AUDITOR with no purpose of use, learns
/// whether someone is a patient from the answer to a write whose reference names them (403 if
/// they exist, 422 if not). HIPAA §164.502(b) minimum necessary; OWASP API3. Must: the write is
/// authorized before any reference is resolved, and an unresolvable reference gets the same
/// answer as a forbidden one.
#[test]
fn records_a_reference_never_tells_whether_a_patient_exists() {
    let (mut basic, mut auditor, mut nurse) = (String::new(), String::new(), String::new());
    let live = Live::start(|data| {
        basic = Live::client(data, "ehr", EHR.0, EHR.1, EHR.2);
        auditor = add_user(data, "the.auditor", "AUDITOR");
        nurse = add_user(data, "a.nurse", "NURSE");
    });
    let ehr = live.token(&basic);
    let known = created(&live.fhir(
        "POST",
        "/fhir/Patient",
        &ehr,
        "TREAT",
        Some(&patient("K-777")),
    ));
    let auditor = live.sign_in("the.auditor", &auditor, "127.0.21.1");
    let nurse = live.sign_in("a.nurse", &nurse, "127.0.21.2");
    let answer = |token: &str, purpose: Option<&str>, reference: &str| {
        let body = observation(reference, "probe").to_string();
        let r = live.call(
            "POST",
            "/fhir/Observation",
            Some(token),
            purpose,
            Some(("application/fhir+json", body.as_bytes())),
            &[],
        );
        (r.status, r.body.to_string())
    };
    let pairs = [
        (
            "Patient?identifier=urn:test:mrn|K-777",
            "Patient?identifier=urn:test:mrn|N-000",
        ),
        (
            &*format!("Patient/{known}"),
            "Patient/0b0c5f3e-1111-4222-8333-944455556666",
        ),
    ];
    for (exists, missing) in pairs {
        for (who, token, purpose) in [
            ("auditor", &auditor, None),
            ("nurse", &nurse, Some("TREAT")),
        ] {
            let (a, b) = (
                answer(token, purpose, exists),
                answer(token, purpose, missing),
            );
            assert_eq!(a, b, "{who}: a patient's existence shows in the answer");
            assert_eq!(a.0, 403, "{who}: {}", a.1);
        }
    }
    // Granted one patient, the nurse names another in a secondary element (`focus`): the
    // same answer whether that other person is a patient or not, and nothing is stored.
    let mine = created(&live.fhir(
        "POST",
        "/fhir/Patient",
        &ehr,
        "TREAT",
        Some(&patient("G-1")),
    ));
    grant(&live, "a.nurse", &mine);
    let probe = |reference: &str| {
        let mut body = observation(&format!("Patient/{mine}"), "probe");
        body["focus"] = json!([{"reference": reference}]);
        let r = live.fhir("POST", "/fhir/Observation", &nurse, "TREAT", Some(&body));
        (r.status, r.body.to_string())
    };
    for (exists, missing) in pairs {
        let (a, b) = (probe(exists), probe(missing));
        assert_eq!(a, b, "a secondary reference tells whether a patient exists");
        assert_eq!(a.0, 403, "{}", a.1);
    }
}

/// Threat (finding 3): a client scoped to `system/Patient.r system/Observation.r` reads a
/// patient's Conditions through `Patient/$everything`. SMART scopes; HIPAA §164.502(b). Must:
/// every record `$everything` returns passes scope and policy for its own type.
#[test]
fn records_everything_releases_only_the_types_the_caller_may_read() {
    let (mut basic, mut narrow) = (String::new(), String::new());
    let live = Live::start(|data| {
        basic = Live::client(data, "ehr", EHR.0, EHR.1, EHR.2);
        narrow = Live::client(
            data,
            "narrow",
            "INTEGRATION_MANAGER",
            "system/Patient.r system/Observation.r",
            "TREAT",
        );
    });
    let ehr = live.token(&basic);
    let p = created(&live.fhir(
        "POST",
        "/fhir/Patient",
        &ehr,
        "TREAT",
        Some(&patient("E-1")),
    ));
    let subject = format!("Patient/{p}");
    created(&live.fhir(
        "POST",
        "/fhir/Observation",
        &ehr,
        "TREAT",
        Some(&observation(&subject, "seen")),
    ));
    let condition = json!({"resourceType": "Condition", "subject": {"reference": subject},
        "code": {"text": "Hiddencondition"}});
    let cond = created(&live.fhir("POST", "/fhir/Condition", &ehr, "TREAT", Some(&condition)));
    let narrow = live.token(&narrow);
    let r = live.fhir(
        "GET",
        &format!("/fhir/Condition/{cond}"),
        &narrow,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 403, "the scope check itself: {}", r.body);
    let r = live.fhir(
        "GET",
        &format!("/fhir/Patient/{p}/$everything"),
        &narrow,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut types: Vec<&str> = r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["Observation", "Patient"], "{}", r.body);
    assert!(!r.body.to_string().contains("Hiddencondition"));
}

/// Threat (finding 11): an integration writes `AuditEvent` resources that look like the audit
/// trail (repudiation; HIPAA §164.312(b)). Must: AuditEvent is only ever the view of the real
/// trail: create, update and bundle writes of it are refused and nothing is stored.
#[test]
fn records_audit_events_cannot_be_written_as_resources() {
    let mut basic = String::new();
    let live = Live::start(|data| basic = Live::client(data, "ehr", EHR.0, EHR.1, EHR.2));
    let ehr = live.token(&basic);
    let fake = json!({"resourceType": "AuditEvent", "id": "forged-1",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
        "recorded": "2026-01-01T00:00:00Z", "agent": [{"requestor": true, "who": {"display": "nobody"}}],
        "source": {"observer": {"display": "phivault"}}});
    // Over HTTP/1.1 with `Expect: 100-continue`: the audit trail's route answers a POST
    // before reading its body, which over HTTP/2 can reset the stream under curl's upload.
    let body = fake.to_string();
    let r = live.call_http1(
        "POST",
        "/fhir/AuditEvent",
        &ehr,
        ("application/fhir+json", body.as_bytes()),
    );
    assert!(
        (400..500).contains(&r.status),
        "create: {} {} {}",
        r.status,
        r.body,
        r.error
    );
    let r = live.fhir(
        "PUT",
        "/fhir/AuditEvent/forged-1",
        &ehr,
        "TREAT",
        Some(&fake),
    );
    assert!(
        (400..500).contains(&r.status),
        "update: {} {}",
        r.status,
        r.body
    );
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": fake, "request": {"method": "PUT", "url": "AuditEvent/forged-1"}}]});
    let r = live.fhir("POST", "/fhir", &ehr, "TREAT", Some(&bundle));
    assert!(
        (400..500).contains(&r.status),
        "transaction: {} {}",
        r.status,
        r.body
    );
    let r = live.fhir("GET", "/fhir/AuditEvent/forged-1", &ehr, "TREAT", None);
    assert_eq!(r.status, 404, "a forged AuditEvent was stored: {}", r.body);
}
