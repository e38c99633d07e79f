//! The FHIR R4 API end to end: a real `phivault serve` over HTTPS, driven with curl, with
//! service clients' tokens. Every resource the API returns here is validated with the Python
//! package `fhir.resources` (R4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, Resp, validate_resources};
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;

const INTEGRATION: (&str, &str, &str) = ("INTEGRATION_MANAGER", "system/*.cruds", "TREAT HOPERAT");

/// A server with one integration client; returns it and the client's token.
fn server() -> (Live, String) {
    let mut ehr = String::new();
    let live = Live::start(|data| {
        ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
    });
    let t = live.token(&ehr);
    (live, t)
}

/// Rewrites every `reference` that names a key of `map`.
fn rewrite(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("reference")
                && let Some(to) = map.get(r.as_str())
            {
                *r = to.clone();
            }
            for (_, c) in o.iter_mut() {
                rewrite(c, map);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite(c, map)),
        _ => {}
    }
}

/// A fixture file as a transaction Bundle: resources with an id are PUT at it, others POSTed.
fn as_transaction(doc: &Value) -> Value {
    let entries: Vec<Value> = if doc["resourceType"] == "Bundle" {
        doc["entry"].as_array().unwrap().clone()
    } else {
        vec![json!({"resource": doc})]
    };
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            let r = &e["resource"];
            let t = r["resourceType"].as_str().unwrap();
            let mut out = json!({"resource": r});
            if let Some(u) = e.get("fullUrl") {
                out["fullUrl"] = u.clone();
            }
            out["request"] = match r.get("id").and_then(Value::as_str) {
                Some(id) => json!({"method": "PUT", "url": format!("{t}/{id}")}),
                None => json!({"method": "POST", "url": t}),
            };
            out
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[test]
fn testdata_round_trips_through_transaction_bundles_and_validates_as_r4() {
    let (live, t) = server();
    let mut returned = Vec::new();
    let mut files = repo_fixtures();
    files.extend(shared_fixtures());
    let mut total = 0;
    for file in &files {
        let doc = read_json(file);
        let tx = as_transaction(&doc);
        let r = live.fhir("POST", "/fhir", &t, "TREAT", Some(&tx));
        assert_eq!(r.status, 200, "{}: {}", file.display(), r.body);
        assert_eq!(r.body["type"], "transaction-response");
        let sent = tx["entry"].as_array().unwrap();
        let answered = r.body["entry"].as_array().unwrap();
        assert_eq!(sent.len(), answered.len());
        // fullUrl → Type/id, from the answers' locations.
        let mut map = HashMap::new();
        for (s, a) in sent.iter().zip(answered) {
            let loc = a["response"]["location"].as_str().unwrap();
            let type_id: Vec<&str> = loc.split('/').take(2).collect();
            if let Some(u) = s["fullUrl"].as_str() {
                map.insert(u.to_owned(), type_id.join("/"));
            }
        }
        for (s, a) in sent.iter().zip(answered) {
            let loc = a["response"]["location"].as_str().unwrap();
            let path: Vec<&str> = loc.split('/').take(2).collect();
            let got = live.fhir(
                "GET",
                &format!("/fhir/{}", path.join("/")),
                &t,
                "TREAT",
                None,
            );
            assert_eq!(got.status, 200, "{loc}: {}", got.body);
            let mut want = s["resource"].clone();
            want["id"] = json!(path[1]);
            rewrite(&mut want, &map);
            assert_eq!(
                without_meta(got.body.clone()),
                without_meta(want),
                "{} {loc} did not come back equal",
                file.display()
            );
            assert_eq!(
                got.header("etag").unwrap(),
                format!("W/\"{}\"", got.body["meta"]["versionId"].as_str().unwrap())
            );
            returned.push(got.body);
            total += 1;
        }
    }
    assert!(total >= 20, "only {total} resources went through");
    validate_resources(&returned);
}

fn patient(mrn: &str, phone: &str) -> Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": mrn}],
        "name": [{"family": "Testperson", "given": ["Ada"]}],
        "gender": "female", "birthDate": "1970-01-02",
        "telecom": [{"system": "phone", "value": phone}]})
}

fn observation(patient_ref: &str, code: &str, when: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 72, "unit": "/min"}})
}

fn count_by_mrn(live: &Live, t: &str, mrn: &str) -> usize {
    let r = live.fhir(
        "GET",
        &format!("/fhir/Patient?identifier=urn:test:mrn|{mrn}"),
        t,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["total"].as_u64().unwrap() as usize
}

/// Threat: malformed input — wrong media types, broken JSON, oversized bodies, path traversal
/// in ids, unknown types, stale versions — that corrupts data or leaks PHI in errors (OWASP
/// API4/API8:2023; HIPAA §164.312(c)(1) integrity).
#[test]
fn versions_history_conflicts_and_errors_are_operation_outcomes_that_change_nothing() {
    let (live, t) = server();
    let mut returned = Vec::new();
    let c = live.fhir(
        "POST",
        "/fhir/Patient",
        &t,
        "TREAT",
        Some(&patient("V-1", "555-0100")),
    );
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.body["id"].as_str().unwrap().to_owned();
    assert_eq!(c.header("etag").unwrap(), "W/\"1\"");
    assert_eq!(
        c.header("location").unwrap(),
        format!("Patient/{id}/_history/1")
    );
    let url = format!("/fhir/Patient/{id}");

    let mut v2 = patient("V-1", "555-0101");
    v2["id"] = json!(id);
    let u = live.call(
        "PUT",
        &url,
        Some(&t),
        Some("TREAT"),
        Some(("application/fhir+json", v2.to_string().as_bytes())),
        &["if-match: W/\"1\""],
    );
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.header("etag").unwrap(), "W/\"2\"");
    // A stale If-Match: 412, and the resource stays at version 2.
    let mut v3 = v2.clone();
    v3["gender"] = json!("male");
    let stale = live.call(
        "PUT",
        &url,
        Some(&t),
        Some("TREAT"),
        Some(("application/fhir+json", v3.to_string().as_bytes())),
        &["if-match: W/\"1\""],
    );
    assert_eq!(stale.status, 412);
    stale.outcome();
    let now = live.fhir("GET", &url, &t, "TREAT", None);
    assert_eq!(now.body["meta"]["versionId"], "2");
    assert_eq!(now.body["gender"], "female");
    returned.push(now.body.clone());

    let v1 = live.fhir("GET", &format!("{url}/_history/1"), &t, "TREAT", None);
    assert_eq!(v1.status, 200);
    assert_eq!(v1.body["telecom"][0]["value"], "555-0100");
    returned.push(v1.body.clone());
    let h = live.fhir("GET", &format!("{url}/_history"), &t, "TREAT", None);
    assert_eq!(h.body["type"], "history");
    assert_eq!(h.body["total"], 2);
    assert_eq!(h.body["entry"][0]["resource"]["meta"]["versionId"], "2");
    returned.push(h.body.clone());
    assert_eq!(
        live.fhir("GET", &format!("{url}/_history/9"), &t, "TREAT", None)
            .status,
        404
    );

    // Errors: each an OperationOutcome with its status, none of them changes anything.
    let big = vec![b' '; 9 * 1024 * 1024];
    let cases: Vec<(Resp, u16, &str)> = vec![
        (live.call("POST", "/fhir/Patient", Some(&t), Some("TREAT"), Some(("text/plain", b"hello")), &[]), 415, "wrong content type"),
        (live.call("POST", "/fhir/Patient", Some(&t), Some("TREAT"), Some(("application/fhir+json", b"{\"resourceType\": \"Patient\",")), &[]), 400, "malformed JSON"),
        (live.call_http1("POST", "/fhir/Patient", &t, ("application/fhir+json", &big)), 413, "oversized body"),
        (live.fhir("POST", "/fhir/Patient", &t, "TREAT", Some(&json!({"resourceType": "Observation"}))), 400, "type mismatch"),
        (live.fhir("POST", "/fhir/Observation", &t, "TREAT", Some(&json!({"resourceType": "Observation", "status": "final", "subject": {"reference": format!("Patient/{id}")}}))), 422, "missing code"),
        (live.fhir("POST", "/fhir/Observation", &t, "TREAT", Some(&observation("Patient/no-such-patient", "8867-4", "2020-01-01"))), 422, "missing patient"),
        (live.fhir("POST", "/fhir/Patient", &t, "TREAT", Some(&json!({"resourceType": "Patient", "name": []}))), 400, "empty array"),
        (live.fhir("PUT", &url, &t, "TREAT", Some(&json!({"resourceType": "Patient", "id": "other-id"}))), 400, "id mismatch"),
        (live.fhir("GET", "/fhir/Nope/1", &t, "TREAT", None), 404, "unknown type"),
        (live.fhir("POST", "/fhir/Nope", &t, "TREAT", Some(&json!({"resourceType": "Nope"}))), 400, "unknown resource"),
        (live.fhir("POST", "/fhir/Bundle", &t, "TREAT", Some(&json!({"resourceType": "Bundle", "type": "collection"}))), 400, "a Bundle is not stored"),
        (live.fhir("GET", "/fhir/Patient/not-there", &t, "TREAT", None), 404, "unknown id"),
        (live.fhir("GET", "/fhir/Patient/..%2F..%2Fetc", &t, "TREAT", None), 404, "traversal"),
        (live.call("GET", &url, None, Some("TREAT"), None, &[]), 401, "no token"),
        (live.call("GET", &url, Some("not-a-token"), Some("TREAT"), None, &[]), 401, "bad token"),
        (live.fhir("GET", &url, &t, "HRESCH", None), 403, "purpose not allowed"),
        (live.call("GET", &url, Some(&t), None, None, &[]), 403, "no purpose"),
        (live.fhir("GET", "/fhir/Patient?nickname=x", &t, "TREAT", None), 400, "unknown parameter"),
    ];
    for (r, status, what) in &cases {
        assert_eq!(r.status, *status, "{what}: {} {}", r.body, r.error);
        let msg = r.outcome();
        assert!(
            !msg.contains("555-01") && !msg.contains("Testperson"),
            "{what} echoed PHI: {msg}"
        );
        assert_eq!(
            r.header("content-type").unwrap(),
            "application/fhir+json",
            "{what}"
        );
        returned.push(r.body.clone());
    }
    assert_eq!(cases[13].0.header("www-authenticate").unwrap(), "Bearer");
    let h = live.fhir("GET", &format!("{url}/_history"), &t, "TREAT", None);
    assert_eq!(h.body["total"], 2, "an error changed the patient");
    assert_eq!(count_by_mrn(&live, &t, "V-1"), 1);

    // Delete: a stale version is 412; then 204, 410, and the tombstone in the history.
    let d = live.call(
        "DELETE",
        &url,
        Some(&t),
        Some("TREAT"),
        None,
        &["if-match: W/\"1\""],
    );
    assert_eq!(d.status, 412);
    let d = live.call("DELETE", &url, Some(&t), Some("TREAT"), None, &[]);
    assert_eq!(d.status, 204);
    let gone = live.fhir("GET", &url, &t, "TREAT", None);
    assert_eq!(gone.status, 410);
    gone.outcome();
    let h = live.fhir("GET", &format!("{url}/_history"), &t, "TREAT", None);
    assert_eq!(h.body["total"], 3);
    assert_eq!(h.body["entry"][0]["request"]["method"], "DELETE");
    returned.push(h.body);
    validate_resources(&returned);
}

#[test]
fn transactions_are_all_or_nothing_and_batches_answer_each_entry() {
    let mut kiosk = String::new();
    let mut ehr = String::new();
    let live = Live::start(|data| {
        ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
        kiosk = Live::client(data, "kiosk", "VIEWER", "system/Patient.rs", "TREAT");
    });
    let (t, kiosk) = (live.token(&ehr), live.token(&kiosk));
    let urn = "urn:uuid:7d1c4d2e-0000-4000-8000-000000000001";
    let tx = |obs: Value| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": urn, "resource": patient("T-1", "555-0200"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": obs, "request": {"method": "POST", "url": "Observation"}}]})
    };
    // The second entry is invalid: the first is not written either.
    let mut bad = observation(urn, "8867-4", "2020-01-01");
    bad.as_object_mut().unwrap().remove("code");
    let r = live.fhir("POST", "/fhir", &t, "TREAT", Some(&tx(bad)));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.outcome().contains("entry 2"));
    assert_eq!(count_by_mrn(&live, &t, "T-1"), 0);
    // A viewer may not write: the whole transaction is refused.
    let r = live.fhir(
        "POST",
        "/fhir",
        &kiosk,
        "TREAT",
        Some(&tx(observation(urn, "8867-4", "2020-01-01"))),
    );
    assert_eq!(r.status, 403);
    assert_eq!(count_by_mrn(&live, &t, "T-1"), 0);

    let r = live.fhir(
        "POST",
        "/fhir",
        &t,
        "TREAT",
        Some(&tx(observation(urn, "8867-4", "2020-01-01"))),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["entry"][0]["response"]["status"], "201 Created");
    let pid = r.body["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let oid = r.body["entry"][1]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        r.body["entry"][1]["resource"]["subject"]["reference"],
        format!("Patient/{pid}"),
        "the urn:uuid reference is resolved to the assigned id"
    );
    assert_eq!(count_by_mrn(&live, &t, "T-1"), 1);

    // A stale ifMatch in a transaction: 409, and its other entry is not written.
    let mut p2 = patient("T-1", "555-0201");
    p2["id"] = json!(pid);
    let stale = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": p2, "request": {"method": "PUT", "url": format!("Patient/{pid}"), "ifMatch": "W/\"7\""}},
        {"resource": observation(&format!("Patient/{pid}"), "1234-5", "2021-01-01"), "request": {"method": "POST", "url": "Observation"}}]});
    let r = live.fhir("POST", "/fhir", &t, "TREAT", Some(&stale));
    assert_eq!(r.status, 409, "{}", r.body);
    let obs = live.fhir(
        "GET",
        &format!("/fhir/Observation?patient={pid}"),
        &t,
        "TREAT",
        None,
    );
    assert_eq!(obs.body["total"], 1);
    // One transaction creates a patient and moves an existing observation to it (ifMatch holds).
    let clash = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7d1c4d2e-0000-4000-8000-000000000002", "resource": patient("T-2", "555-0202"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:7d1c4d2e-0000-4000-8000-000000000002"}},
         "request": {"method": "PUT", "url": format!("Observation/{oid}"), "ifMatch": "W/\"1\""}}]});
    let r = live.fhir("POST", "/fhir", &t, "TREAT", Some(&clash));
    assert_eq!(r.status, 200, "a valid transaction: {}", r.body);
    assert_eq!(count_by_mrn(&live, &t, "T-2"), 1);

    // A batch answers each entry on its own.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("B-1", "555-0300"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final"}, "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": format!("Patient/{pid}")}},
        {"request": {"method": "GET", "url": "Patient/not-there"}}]});
    let r = live.fhir("POST", "/fhir", &t, "TREAT", Some(&batch));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["type"], "batch-response");
    let statuses: Vec<&str> = r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "422 Unprocessable Entity",
            "200 OK",
            "404 Not Found"
        ]
    );
    assert_eq!(count_by_mrn(&live, &t, "B-1"), 1);
    let mut returned = vec![r.body.clone()];
    for bad in [
        json!({"resourceType": "Bundle", "type": "collection"}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "PATCH", "url": "Patient/x"}}]}),
    ] {
        let r = live.fhir("POST", "/fhir", &t, "TREAT", Some(&bad));
        assert_eq!(r.status, 400);
        returned.push(r.body);
    }
    validate_resources(&returned);
}

#[test]
fn search_paging_everything_and_audit_events_for_auditors() {
    let (mut ehr, mut kiosk, mut auditor) = (String::new(), String::new(), String::new());
    let live = Live::start(|data| {
        ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
        kiosk = Live::client(data, "kiosk", "VIEWER", "system/Patient.rs", "TREAT");
        auditor = Live::client(data, "siem", "AUDITOR", "system/AuditEvent.rs", "HOPERAT");
    });
    let (t, kiosk, auditor) = (live.token(&ehr), live.token(&kiosk), live.token(&auditor));
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = live.fhir(
            "POST",
            "/fhir/Patient",
            &t,
            "TREAT",
            Some(&patient(&format!("S-{i}"), "555-0400")),
        );
        assert_eq!(r.status, 201);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let mut returned = Vec::new();
    let p1 = live.fhir(
        "GET",
        "/fhir/Patient?phone=555-0400&_count=2",
        &t,
        "TREAT",
        None,
    );
    assert_eq!(p1.body["entry"].as_array().unwrap().len(), 2);
    assert!(p1.body.get("total").is_none());
    // Absolute, at the base the client used (some clients follow nothing else).
    let url = p1.body["link"][0]["url"].as_str().unwrap();
    let (base, next) = url.split_once("/fhir/").unwrap();
    assert!(base.starts_with("https://"), "{url}");
    let next = next.to_owned();
    assert_eq!(p1.body["link"][0]["relation"], "next");
    // The cursor is hex, so a short run of digits such as "555" can turn up in it by chance:
    // look for the criteria in the link as text and in the cursor's decoded bytes instead.
    let cursor = next
        .strip_prefix("Patient?_page=")
        .unwrap_or_else(|| panic!("the next link is a sealed cursor: {next}"));
    let bytes = unhex(cursor.as_bytes())
        .unwrap_or_else(|| panic!("the cursor is hex and nothing else: {next}"));
    for clear in ["555-0400", "5550400", "phone"] {
        assert!(
            !next.contains(clear) && !bytes.windows(clear.len()).any(|w| w == clear.as_bytes()),
            "the next link carries the criteria sealed, never in clear: {next}"
        );
    }
    let stolen = live.fhir("GET", &format!("/fhir/{next}"), &kiosk, "TREAT", None);
    assert_eq!(stolen.status, 400, "another caller's cursor opens nothing");
    let forged = live.fhir("GET", "/fhir/Patient?_page=00ff", &t, "TREAT", None);
    assert_eq!(forged.status, 400);
    let none = live.fhir(
        "GET",
        "/fhir/Patient?phone=555-0400&_count=0",
        &t,
        "TREAT",
        None,
    );
    assert!(
        none.body.get("entry").is_none() && none.body.get("link").is_none(),
        "{}",
        none.body
    );
    let p2 = live.fhir("GET", &format!("/fhir/{next}"), &t, "TREAT", None);
    assert_eq!(p2.body["entry"].as_array().unwrap().len(), 1);
    assert_eq!(p2.body["total"], 3);
    assert!(p2.body.get("link").is_none());
    let mut seen: Vec<&str> = p1.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2.body["entry"].as_array().unwrap())
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    seen.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want, "the pages cover every match once");
    let form = live.call(
        "POST",
        "/fhir/Patient/_search",
        Some(&t),
        Some("TREAT"),
        Some(("application/x-www-form-urlencoded", b"phone=555-0400")),
        &[],
    );
    assert_eq!(form.body["total"], 3, "{}", form.body);
    let by_id = live.fhir(
        "GET",
        &format!("/fhir/Patient?_id={}", ids[1]),
        &t,
        "TREAT",
        None,
    );
    assert_eq!(by_id.body["total"], 1);
    assert_eq!(by_id.body["entry"][0]["resource"]["id"], ids[1].as_str());
    // The viewer may not search by an element it may not see (a match would tell it the
    // phone number); by id it sees the match, redacted.
    let v = live.fhir("GET", "/fhir/Patient?phone=555-0400", &kiosk, "TREAT", None);
    assert_eq!(v.status, 403, "{}", v.body);
    let v = live.fhir(
        "GET",
        &format!("/fhir/Patient?_id={},{}", ids[0], ids[1]),
        &kiosk,
        "TREAT",
        None,
    );
    assert_eq!(v.body["total"], 2);
    assert!(v.body["entry"][0]["resource"].get("telecom").is_none());
    assert_eq!(
        v.body["entry"][0]["resource"]["meta"]["security"][0]["code"],
        "REDACTED"
    );
    returned.extend([p1.body, p2.body, form.body, v.body]);

    let pref = format!("Patient/{}", ids[0]);
    for (code, when) in [
        ("8867-4", "2020-06-01T10:00:00Z"),
        ("9279-1", "2022-03-04T10:00:00Z"),
    ] {
        assert_eq!(
            live.fhir(
                "POST",
                "/fhir/Observation",
                &t,
                "TREAT",
                Some(&observation(&pref, code, when))
            )
            .status,
            201
        );
    }
    for (query, n) in [
        (format!("patient={}", ids[0]), 2),
        (format!("subject={pref}&code=http://loinc.org|8867-4"), 1),
        (format!("patient={}&date=ge2021", ids[0]), 1),
        (format!("patient={}&date=lt2021-01-01", ids[0]), 1),
        (format!("patient={}&date=ge2020&date=le2022-12", ids[0]), 2),
        (format!("patient={}&code=0000-0", ids[0]), 0),
        (format!("patient={}&_count=1", ids[0]), 1),
    ] {
        let r = live.fhir(
            "GET",
            &format!("/fhir/Observation?{query}"),
            &t,
            "TREAT",
            None,
        );
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        assert_eq!(r.body["entry"].as_array().map_or(0, Vec::len), n, "{query}");
        returned.push(r.body);
    }
    assert_eq!(
        live.fhir("GET", "/fhir/Observation?date=ge2020", &t, "TREAT", None)
            .status,
        400
    );

    let all = live.fhir(
        "GET",
        &format!("/fhir/Patient/{}/$everything", ids[0]),
        &t,
        "TREAT",
        None,
    );
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.body["total"], 3);
    returned.push(all.body);
    let denied = live.fhir(
        "GET",
        &format!("/fhir/Patient/{}/$everything", ids[0]),
        &kiosk,
        "TREAT",
        None,
    );
    assert_eq!(
        denied.status, 403,
        "a redacted viewer may not have everything"
    );

    // The audit trail as AuditEvent: auditors only.
    assert_eq!(
        live.fhir("GET", "/fhir/AuditEvent", &t, "TREAT", None)
            .status,
        403
    );
    let ev = live.fhir(
        "GET",
        &format!("/fhir/AuditEvent?patient={}", ids[0]),
        &auditor,
        "HOPERAT",
        None,
    );
    assert_eq!(ev.status, 200, "{}", ev.body);
    let entries = ev.body["entry"].as_array().unwrap();
    assert!(
        entries.len() >= 4,
        "create, 2 observations, everything, denial: {}",
        entries.len()
    );
    assert!(
        entries
            .iter()
            .all(|e| e["resource"]["resourceType"] == "AuditEvent")
    );
    let text = ev.body.to_string();
    assert!(
        !text.contains("Testperson") && !text.contains("555-0400") && !text.contains(&ids[0]),
        "audit events carry pseudonyms, never PHI or the patient id"
    );
    let creates = live.fhir(
        "GET",
        &format!("/fhir/AuditEvent?patient={}&action=C", ids[0]),
        &auditor,
        "HOPERAT",
        None,
    );
    let n = creates.body["entry"].as_array().unwrap().len();
    assert!(n >= 3 && n < entries.len(), "{n}");
    assert!(
        creates.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["action"] == "C")
    );
    let future = live.fhir(
        "GET",
        "/fhir/AuditEvent?date=ge2999",
        &auditor,
        "HOPERAT",
        None,
    );
    assert_eq!(future.body["total"], 0);
    returned.extend([ev.body, creates.body]);
    validate_resources(&returned);
}

#[test]
fn the_openapi_document_covers_every_fhir_and_auth_route() {
    let (live, _) = server();
    let r = live.call("GET", "/openapi.json", None, None, None, &[]);
    assert_eq!(r.status, 200);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = r.body["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/fhir/metadata", &["get"][..]),
        ("/fhir", &["post"]),
        ("/fhir/{rtype}", &["get", "post"]),
        ("/fhir/{rtype}/_search", &["post"]),
        ("/fhir/{rtype}/{id}", &["get", "put", "delete"]),
        ("/fhir/{rtype}/{id}/_history", &["get"]),
        ("/fhir/{rtype}/{id}/_history/{vid}", &["get"]),
        ("/fhir/Patient/{id}/$everything", &["get"]),
        ("/fhir/AuditEvent", &["get"]),
        ("/auth/login", &["post"]),
        ("/auth/password", &["post"]),
        ("/auth/mfa/enroll", &["post"]),
        ("/auth/mfa", &["post"]),
        ("/auth/logout", &["post"]),
        ("/auth/whoami", &["get"]),
        ("/auth/break-glass", &["post"]),
        ("/oauth/token", &["post"]),
    ] {
        let p = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for m in methods {
            let op = p
                .get(*m)
                .unwrap_or_else(|| panic!("{m} {path} is not documented"));
            if path.starts_with("/fhir/") && path != "/fhir/metadata" {
                let responses = op["responses"].as_object().unwrap();
                for s in ["401", "403"] {
                    assert!(responses.contains_key(s), "{m} {path} does not list {s}");
                }
            }
        }
    }
    assert!(r.body["components"]["securitySchemes"]["bearer"].is_object());
    let cap = live.call("GET", "/fhir/metadata", None, None, None, &[]);
    assert_eq!(cap.body["resourceType"], "CapabilityStatement");
    validate_resources(&[cap.body]);
}

/// The role × purpose matrix over HTTPS for people signed in with password and TOTP: for each
/// cell, a read of a patient the person has a TREAT grant for and of one they do not, and a
/// search for each. The expected answer comes from the policy's one decision function; the
/// test shows the API enforces exactly that, search results included.
#[test]
fn the_role_and_purpose_matrix_holds_over_https_for_reads_and_searches() {
    use phivault_core::Role;
    use phivault_vault::policy::{Action, Decision, GrantState, Purpose, Subject, decide};
    let patients: Vec<Value> = repo_fixtures()
        .iter()
        .flat_map(|f| resources_in(f))
        .filter(|r| r["resourceType"] == "Patient" && r["identifier"].is_array())
        .collect();
    let (granted, other) = (&patients[0], &patients[1]);
    let ident = |p: &Value| {
        let i = &p["identifier"][0];
        format!(
            "{}|{}",
            i["system"].as_str().unwrap_or(""),
            i["value"].as_str().unwrap()
        )
    };
    let roles = [
        Role::Nurse,
        Role::Clinician,
        Role::Viewer,
        Role::Auditor,
        Role::OrgAdmin,
    ];
    let mut otps = Vec::new();
    let live = Live::start(|data| {
        let mut args = vec!["import".to_owned()];
        args.extend(repo_fixtures().iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(common::live::cli(data, &args).status.success());
        for role in roles {
            let name = format!("u-{}", role.as_str().to_lowercase());
            otps.push(common::live::add_user(data, &name, role.as_str()));
            if matches!(role, Role::Nurse | Role::Clinician) {
                let out = common::live::cli(
                    data,
                    &[
                        "grants",
                        "add",
                        "--username",
                        &name,
                        "--patient",
                        granted["id"].as_str().unwrap(),
                        "--purpose",
                        "TREAT",
                    ],
                );
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    });
    let mut cells = 0;
    let mut seen = std::collections::BTreeSet::new();
    for (i, role) in roles.iter().enumerate() {
        let name = format!("u-{}", role.as_str().to_lowercase());
        let token = live.sign_in(&name, &otps[i], &format!("127.0.3.{}", i + 1));
        for purpose in [
            Some("TREAT"),
            Some("HOPERAT"),
            Some("ETREAT"),
            Some("HRESCH"),
            None,
        ] {
            let p = purpose.and_then(Purpose::parse);
            for (patient, has_grant) in [(granted, true), (other, false)] {
                let grant = if has_grant && purpose == Some("TREAT") {
                    GrantState::Active
                } else {
                    GrantState::None
                };
                let subject = Subject::User(*role);
                let read = live.call(
                    "GET",
                    &format!("/fhir/Patient/{}", patient["id"].as_str().unwrap()),
                    Some(&token),
                    purpose,
                    None,
                    &[],
                );
                let cell = format!("{role} {purpose:?} grant={has_grant}");
                match decide(&subject, Action::Read, "Patient", p, grant) {
                    Decision::Allow { release, .. } => {
                        assert_eq!(read.status, 200, "{cell}: {}", read.body);
                        let redacted = read.body["meta"]["security"][0]["code"] == "REDACTED";
                        assert_eq!(
                            redacted,
                            release != phivault_vault::policy::Release::All,
                            "{cell}"
                        );
                        seen.insert(if redacted {
                            "read redacted"
                        } else {
                            "read full"
                        });
                    }
                    Decision::Deny(_) => {
                        assert_eq!(read.status, 403, "{cell}: {}", read.body);
                        seen.insert("read denied");
                    }
                }
                let search = live.call(
                    "GET",
                    &format!("/fhir/Patient?identifier={}", ident(patient)),
                    Some(&token),
                    purpose,
                    None,
                    &[],
                );
                let may_at_all = [GrantState::Active, GrantState::BreakGlass]
                    .into_iter()
                    .any(|g| {
                        matches!(
                            decide(&subject, Action::Search, "Patient", p, g),
                            Decision::Allow { .. }
                        )
                    });
                let expected = match decide(&subject, Action::Search, "Patient", p, grant) {
                    Decision::Allow { .. } => Some(1),
                    Decision::Deny(_) if may_at_all => Some(0),
                    Decision::Deny(_) => None,
                };
                match expected {
                    Some(n) => {
                        assert_eq!(search.status, 200, "{cell}: {}", search.body);
                        assert_eq!(search.body["total"], n, "{cell} search");
                        seen.insert(if n == 1 {
                            "search found"
                        } else {
                            "search not counted"
                        });
                    }
                    None => assert_eq!(search.status, 403, "{cell} search: {}", search.body),
                }
                cells += 1;
            }
        }
    }
    assert_eq!(cells, roles.len() * 5 * 2);
    assert_eq!(
        seen.len(),
        5,
        "every kind of answer was exercised: {seen:?}"
    );
}
