//! Purpose of use without a custom header (issue 22): a service client's `--default-purpose`
//! applies when a call sends no `X-Purpose-Of-Use`, the header still overrides it within what
//! the client may do, and every audit event says which purpose applied and where it came from.
//! Driven with the off-the-shelf SMART on FHIR Python client (`fhirclient`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::live::{Live, cli, stdout_ok};
use common::search::audit_events;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCOPES: &str = "system/Patient.crs";

/// Registers a client acting for TREAT and HOPERAT, with `default` as its default purpose.
fn client(data: &Path, name: &str, default: Option<&str>) -> String {
    let role = ("INTEGRATION_MANAGER", SCOPES, "TREAT HOPERAT");
    common::search::service_client(data, name, role, default)
}

/// The test Python with `fhirclient`, or `None` outside CI when there is none.
fn fhirclient_python() -> Option<PathBuf> {
    common::live::python_with("fhirclient.models.patient", "fhirclient").map(PathBuf::from)
}

/// Runs `support/fhirclient_calls.py` with `token`: create, read (`read_id` or what it
/// created), search by identifier `mrn`; returns its JSON summary.
fn fhirclient_calls(
    py: &Path,
    live: &Live,
    token: &str,
    mrn: &str,
    read_id: Option<&str>,
) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let script = common::repo_root().join("bin/phivault/tests/support/fhirclient_calls.py");
    let base = format!("https://localhost:{}/fhir/", live.port);
    let mut cmd = Command::new(py);
    cmd.arg(script)
        .args([base.as_str(), live.ca.as_str()])
        .arg(&token_file)
        .arg(mrn);
    if let Some(id) = read_id {
        cmd.arg(id);
    }
    serde_json::from_str(&stdout_ok(&cmd.output().unwrap())).unwrap()
}

/// The FHIR events (create, read, search) of the client named `name`.
fn fhir_events_of(events: &[Value], name: &str) -> Vec<Value> {
    let actor = format!("client:{name}");
    events
        .iter()
        .filter(|e| e["actor"] == actor.as_str())
        .filter(|e| ["create", "read", "search"].contains(&e["action"].as_str().unwrap_or("")))
        .cloned()
        .collect()
}

#[test]
fn fhirclient_works_without_a_header_for_a_client_with_a_default_purpose_only() {
    let Some(py) = fhirclient_python() else {
        return;
    };
    let (mut with, mut without) = (String::new(), String::new());
    let live = Live::start(|d| {
        with = client(d, "with-default", Some("TREAT"));
        without = client(d, "no-default", None);
    });
    let ok = fhirclient_calls(&py, &live, &live.token(&with), "PURPOSE-1", None);
    assert_eq!(ok["create"]["status"], 201, "{ok}");
    let id = ok["create"]["id"].as_str().expect("created id").to_owned();
    assert_eq!(
        ok["read"],
        serde_json::json!({"status": 200, "id": id}),
        "{ok}"
    );
    assert_eq!(
        ok["search"],
        serde_json::json!({"status": 200, "matches": 1}),
        "{ok}"
    );

    let refused = fhirclient_calls(&py, &live, &live.token(&without), "PURPOSE-2", Some(&id));
    for call in ["create", "read", "search"] {
        assert_eq!(refused[call]["status"], 403, "{call}: {refused}");
    }

    let events = audit_events(&live.data);
    let allowed = fhir_events_of(&events, "with-default");
    for action in ["create", "read", "search"] {
        assert!(
            allowed.iter().any(|e| e["action"] == action
                && e["outcome"] == "success"
                && e["purpose"] == "TREAT"
                && e["purpose_source"] == "client-default"),
            "{action} with the client's default purpose: {allowed:?}"
        );
    }
    // The FHIR export says where the purpose came from, and still validates.
    let fhir: Value = serde_json::from_str(&stdout_ok(&cli(
        &live.data,
        &["audit", "export", "--format", "fhir"],
    )))
    .unwrap();
    let resources: Vec<Value> = fhir["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect();
    let from_default = serde_json::json!([{"url": "urn:phivault:purpose-source",
        "valueCode": "client-default"}]);
    assert!(resources.iter().any(|r| r["extension"] == from_default));
    common::live::validate_resources(&resources);
    let denied = fhir_events_of(&events, "no-default");
    for action in ["create", "read", "search"] {
        assert!(
            denied.iter().any(|e| e["action"] == action
                && e["outcome"] == "denied"
                && e["reason"] == "no-purpose"
                && e["purpose"].is_null()
                && e.get("purpose_source").is_none()),
            "{action} refused as no-purpose: {denied:?}"
        );
    }
}

#[test]
fn the_header_overrides_the_default_within_the_clients_purposes() {
    let mut with = String::new();
    let live = Live::start(|d| with = client(d, "with-default", Some("TREAT")));
    let t = live.token(&with);
    let p = common::live::patient_with_mrn("PURPOSE-3");
    let r = live.fhir("POST", "/fhir/Patient", &t, "HOPERAT", Some(&p));
    assert_eq!(r.status, 201, "{:?}", r.body);
    // A purpose the client does not act for stays refused, default or not.
    let r = live.fhir(
        "GET",
        "/fhir/Patient?identifier=urn:test:mrn|PURPOSE-3",
        &t,
        "HRESCH",
        None,
    );
    assert_eq!(r.status, 403, "{:?}", r.body);
    let events = fhir_events_of(&audit_events(&live.data), "with-default");
    assert!(
        events.iter().any(|e| e["action"] == "create"
            && e["outcome"] == "success"
            && e["purpose"] == "HOPERAT"
            && e["purpose_source"] == "header"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["action"] == "search"
            && e["outcome"] == "denied"
            && e["purpose"] == "HRESCH"
            && e["purpose_source"] == "header"),
        "{events:?}"
    );
}

#[test]
fn a_default_purpose_must_be_one_of_the_clients_purposes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    stdout_ok(&cli(&data, &["init"]));
    let out = cli(
        &data,
        &[
            "client",
            "add",
            "--name",
            "bad",
            "--role",
            "INTEGRATION_MANAGER",
            "--scopes",
            SCOPES,
            "--purposes",
            "TREAT",
            "--default-purpose",
            "HRESCH",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not one of the client's purposes"), "{err}");
    client(&data, "good", Some("HOPERAT"));
    let listed: Value =
        serde_json::from_str(&stdout_ok(&cli(&data, &["client", "list", "--json"]))).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["good"]);
    assert_eq!(listed[0]["default_purpose"], "HOPERAT");
}

/// The events of action `action` of the person `username`.
fn person_events(data: &Path, username: &str, action: &str) -> Vec<Value> {
    let actor = format!("user:{username}");
    audit_events(data)
        .into_iter()
        .filter(|e| e["actor"] == actor.as_str() && e["action"] == action)
        .collect()
}

/// A `POST /fhir/Patient` with no `X-Purpose-Of-Use` header.
fn create_without_header(live: &Live, token: &str, mrn: &str) -> common::live::Resp {
    let body = common::live::patient_with_mrn(mrn).to_string();
    live.call(
        "POST",
        "/fhir/Patient",
        Some(token),
        None,
        Some(("application/fhir+json", body.as_bytes())),
        &[],
    )
}

#[test]
fn a_person_uses_the_purpose_chosen_at_sign_in_else_the_roles_default() {
    let (mut otp_a, mut otp_b) = (String::new(), String::new());
    let live = Live::start(|d| {
        otp_a = common::live::add_user(d, "clin-a", "CLINICIAN");
        otp_b = common::live::add_user(d, "clin-b", "CLINICIAN");
    });
    let chosen = serde_json::json!({"purpose_of_use": "TREAT"});
    let a = live.enroll_with(None, "clin-a", &otp_a, "127.0.0.21", &chosen);
    let b = live.sign_in("clin-b", &otp_b, "127.0.0.22");

    // The session's purpose: no header needed.
    let r = create_without_header(&live, &a.token, "PURPOSE-P1");
    assert_eq!(r.status, 201, "{:?}", r.body);
    // No session purpose, no default for the role: refused and audited as no-purpose.
    let r = create_without_header(&live, &b, "PURPOSE-P2");
    assert_eq!(r.status, 403, "{:?}", r.body);
    // The organization's default for CLINICIAN applies at once to sessions without a purpose.
    let set = cli(
        &live.data,
        &["org", "default-purpose", "--role", "CLINICIAN", "HOPERAT"],
    );
    assert!(stdout_ok(&set).contains("HOPERAT"));
    let r = create_without_header(&live, &b, "PURPOSE-P3");
    assert_eq!(r.status, 201, "{:?}", r.body);
    // The header still overrides.
    let p = common::live::patient_with_mrn("PURPOSE-P4");
    let r = live.fhir("POST", "/fhir/Patient", &b, "TREAT", Some(&p));
    assert_eq!(r.status, 201, "{:?}", r.body);

    let made = |e: &Value, purpose: &str, source: &str| {
        e["outcome"] == "success" && e["purpose"] == purpose && e["purpose_source"] == source
    };
    let ev_a = person_events(&live.data, "clin-a", "create");
    assert!(ev_a.iter().any(|e| made(e, "TREAT", "session")), "{ev_a:?}");
    let ev_b = person_events(&live.data, "clin-b", "create");
    assert!(
        ev_b.iter().any(|e| e["outcome"] == "denied"
            && e["reason"] == "no-purpose"
            && e.get("purpose_source").is_none()),
        "{ev_b:?}"
    );
    assert!(
        ev_b.iter().any(|e| made(e, "HOPERAT", "role-default")),
        "{ev_b:?}"
    );
    assert!(ev_b.iter().any(|e| made(e, "TREAT", "header")), "{ev_b:?}");
    let set: Vec<Value> = audit_events(&live.data)
        .into_iter()
        .filter(|e| e["action"] == "default-purpose")
        .collect();
    assert!(
        set.iter().any(|e| e["outcome"] == "success"
            && e["purpose"] == "HOPERAT"
            && e["reason"] == "role:CLINICIAN"),
        "{set:?}"
    );
}

#[test]
fn a_purpose_the_role_may_not_act_for_is_refused_at_sign_in_and_as_a_default() {
    let mut otp = String::new();
    let live = Live::start(|d| otp = common::live::add_user(d, "viewer-a", "VIEWER"));
    for bad in ["ETREAT", "NOPE"] {
        let login = serde_json::json!({"username": "viewer-a", "password": otp,
            "purpose_of_use": bad});
        let r = live.post_from("127.0.0.23", "/auth/login", None, &login);
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert!(r.body.get("challenge").is_none(), "{bad}: {:?}", r.body);
    }
    let out = cli(
        &live.data,
        &["org", "default-purpose", "--role", "VIEWER", "ETREAT"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not allowed for the role"), "{err}");
    let out = cli(
        &live.data,
        &["org", "default-purpose", "--role", "VIEWER", "--clear"],
    );
    assert!(stdout_ok(&out).contains("none"));
}

#[test]
fn an_org_admin_sets_a_roles_default_purpose_over_https_and_a_clinician_cannot() {
    let (mut admin_otp, mut nurse_otp) = (String::new(), String::new());
    let live = Live::start(|d| {
        admin_otp = common::live::add_user(d, "org-admin", "ORG_ADMIN");
        nurse_otp = common::live::add_user(d, "nurse-a", "NURSE");
    });
    let admin = live.sign_in("org-admin", &admin_otp, "127.0.0.24");
    let nurse = live.sign_in("nurse-a", &nurse_otp, "127.0.0.25");
    let put = |token: &str, role: &str, body: &Value| {
        let b = body.to_string();
        live.call(
            "PUT",
            &format!("/admin/default-purposes/{role}"),
            Some(token),
            None,
            Some(("application/json", b.as_bytes())),
            &[],
        )
    };
    let treat = serde_json::json!({"purpose": "TREAT"});
    let r = put(&nurse, "NURSE", &treat);
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = create_without_header(&live, &nurse, "PURPOSE-N1");
    assert_eq!(r.status, 403, "no default yet: {:?}", r.body);
    let r = put(&admin, "NURSE", &treat);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        serde_json::json!({"role": "NURSE", "purpose": "TREAT"})
    );
    let r = create_without_header(&live, &nurse, "PURPOSE-N2");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = put(&admin, "NURSE", &serde_json::json!({"purpose": "HRESCH"}));
    assert_eq!(r.status, 400, "not for a nurse: {:?}", r.body);
    let r = put(&admin, "NURSE", &serde_json::json!({"purpose": null}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = create_without_header(&live, &nurse, "PURPOSE-N3");
    assert_eq!(r.status, 403, "cleared: {:?}", r.body);
    let ev = person_events(&live.data, "nurse-a", "create");
    assert!(
        ev.iter().any(|e| e["outcome"] == "success"
            && e["purpose"] == "TREAT"
            && e["purpose_source"] == "role-default"),
        "{ev:?}"
    );
    let denied = person_events(&live.data, "nurse-a", "default-purpose");
    assert!(
        denied.iter().any(|e| e["outcome"] == "denied"),
        "{denied:?}"
    );
}
