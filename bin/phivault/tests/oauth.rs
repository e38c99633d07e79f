//! Service clients: `phivault client add` while the server runs, the client-credentials grant
//! over HTTPS (Basic and form authentication, RFC 6749 errors), scopes, expiry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::*;
use phivault_core::{Clock, FakeClock, Role, SecretString};
use phivault_vault::auth::scopes_allow;
use phivault_vault::{Ctx, VaultError};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

fn phivault(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args(args)
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", dir)
        .envs(common::backend_env(dir))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn token_request(port: u16, cacert: &str, extra: &[&str]) -> (String, Value) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-S",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "--cacert",
            cacert,
        ])
        .args(extra)
        .arg(format!("https://localhost:{port}/oauth/token"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.to_owned(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn client_credentials_over_https_with_the_server_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(phivault(&["init"], &dir).status.success());
    let mut server = Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args(common::live::SERVE)
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", &dir)
        .envs(common::backend_env(&dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(server.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();

    // Added while the server runs, on the same data dir.
    let out = phivault(
        &[
            "client",
            "add",
            "--name",
            "lab-feed",
            "--role",
            "INTEGRATION_MANAGER",
            "--scopes",
            "system/Patient.rs system/Observation.crs",
            "--json",
        ],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (id, secret) = (
        c["client_id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap(),
    );
    let cacert = dir.join("tls/cert.pem");
    let cacert = cacert.to_str().unwrap();
    let basic = format!("{id}:{secret}");

    let (code, t) = token_request(
        port,
        cacert,
        &["-u", &basic, "-d", "grant_type=client_credentials"],
    );
    assert_eq!(code, "200", "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert_eq!(t["scope"], "system/Patient.rs system/Observation.crs");
    let bearer = format!(
        "authorization: Bearer {}",
        t["access_token"].as_str().unwrap()
    );
    let who = Command::new("curl")
        .args([
            "-s",
            "--cacert",
            cacert,
            "-H",
            &bearer,
            &format!("https://localhost:{port}/auth/whoami"),
        ])
        .output()
        .unwrap();
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(who["actor"], "client:lab-feed");
    assert_eq!(who["role"], "INTEGRATION_MANAGER");

    // Form credentials and a narrower scope.
    let (code, t) = token_request(
        port,
        cacert,
        &[
            "-d",
            "grant_type=client_credentials",
            "-d",
            &format!("client_id={id}"),
            "-d",
            &format!("client_secret={secret}"),
            "--data-urlencode",
            "scope=system/Patient.r",
        ],
    );
    assert_eq!(code, "200", "{t}");
    assert_eq!(t["scope"], "system/Patient.r");
    // A scope beyond the client's.
    let (code, t) = token_request(
        port,
        cacert,
        &[
            "-u",
            &basic,
            "-d",
            "grant_type=client_credentials",
            "--data-urlencode",
            "scope=system/Patient.cruds",
        ],
    );
    assert_eq!(
        (code.as_str(), t["error"].as_str()),
        ("400", Some("invalid_scope"))
    );
    // Wrong secret and unknown client look the same.
    let a = token_request(
        port,
        cacert,
        &[
            "-u",
            &format!("{id}:nope"),
            "-d",
            "grant_type=client_credentials",
        ],
    );
    let b = token_request(
        port,
        cacert,
        &[
            "-u",
            "pvc-nobody:nope",
            "-d",
            "grant_type=client_credentials",
        ],
    );
    assert_eq!(a, b);
    assert_eq!(
        (a.0.as_str(), a.1["error"].as_str()),
        ("401", Some("invalid_client"))
    );
    let (code, t) = token_request(port, cacert, &["-u", &basic, "-d", "grant_type=password"]);
    assert_eq!(
        (code.as_str(), t["error"].as_str()),
        ("400", Some("unsupported_grant_type"))
    );

    // /metrics: Prometheus text for an AUDITOR client, 403 for others, 401 without a token.
    let out = phivault(
        &[
            "client",
            "add",
            "--name",
            "prometheus",
            "--role",
            "AUDITOR",
            "--scopes",
            "system/AuditEvent.rs",
            "--json",
        ],
        &dir,
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mbasic = format!(
        "{}:{}",
        m["client_id"].as_str().unwrap(),
        m["client_secret"].as_str().unwrap()
    );
    let (_, mt) = token_request(
        port,
        cacert,
        &["-u", &mbasic, "-d", "grant_type=client_credentials"],
    );
    let get = |auth: Option<String>| {
        let mut args = vec![
            "-s".to_owned(),
            "-w".into(),
            "\n%{http_code}".into(),
            "--cacert".into(),
            cacert.to_owned(),
        ];
        if let Some(a) = auth {
            args.extend(["-H".into(), a]);
        }
        args.push(format!("https://localhost:{port}/metrics"));
        let out = Command::new("curl").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_owned(), body.to_owned())
    };
    let (code, body) = get(Some(format!(
        "authorization: Bearer {}",
        mt["access_token"].as_str().unwrap()
    )));
    assert_eq!(code, "200", "{body}");
    assert!(
        body.contains("# TYPE phivault_http_requests_total counter"),
        "{body}"
    );
    assert!(
        body.contains(
            r#"phivault_http_requests_total{route="/oauth/token",method="POST",status="200"}"#
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"route="/oauth/token",method="POST",status="401""#),
        "{body}"
    );
    assert!(
        !body.contains(secret) && !body.contains(id),
        "no credentials in metrics"
    );
    assert_eq!(get(Some(bearer.clone())).0, "403");
    assert_eq!(get(None).0, "401");

    let _ = server.kill();
    let _ = server.wait();
    // Both processes wrote to the audit trail; it is one valid chain.
    let out = phivault(&["audit", "verify"], &dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Threat: service tokens that outlive their purpose or carry more than their scopes
/// (OWASP API2/API5:2023; HIPAA §164.312(d), (a)(1)).
#[tokio::test]
async fn service_tokens_expire_and_carry_only_their_scopes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_vault(&dir).await;
    let clock = Arc::new(FakeClock::new(
        OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
    ));
    let o = open_with_clock(&dir, clock.clone()).await;
    let admin = ctx(&o).await;
    let org = admin.org().clone();
    let n = o
        .vault
        .add_client(
            &admin,
            &org,
            "viewer-app",
            Role::Viewer,
            "system/Patient.rs",
            None,
        )
        .await
        .unwrap();
    assert!(matches!(
        o.vault
            .add_client(&admin, &org, "bad", Role::Viewer, "system/Patient.rx", None)
            .await,
        Err(VaultError::Invalid(_))
    ));
    let anon = Ctx::anonymous(org.clone());
    let (t, scope) = o
        .vault
        .issue_client_token(&anon, &n.client_id, &n.client_secret, None)
        .await
        .unwrap();
    assert_eq!(scope, "system/Patient.rs");
    let p = o.vault.authenticate(t.token.expose()).await.unwrap();
    assert_eq!(p.role(), Role::Viewer);
    assert_eq!(p.purposes(), ["TREAT", "HOPERAT"], "the default purposes");
    assert!(matches!(
        o.vault
            .add_client(
                &admin,
                &org,
                "odd",
                Role::Viewer,
                "system/Patient.rs",
                Some("FUN")
            )
            .await,
        Err(VaultError::Invalid(_))
    ));
    assert!(scopes_allow(p.scopes(), "Patient", 'r'));
    assert!(!scopes_allow(p.scopes(), "Patient", 'u'));
    assert!(!scopes_allow(p.scopes(), "Observation", 'r'));
    clock.advance(Duration::minutes(14));
    o.vault.authenticate(t.token.expose()).await.unwrap();
    clock.advance(Duration::minutes(1));
    assert!(matches!(
        o.vault.authenticate(t.token.expose()).await,
        Err(VaultError::Unauthenticated(_))
    ));
    assert!(matches!(
        o.vault
            .issue_client_token(
                &anon,
                &n.client_id,
                &SecretString::new("wrong".into()),
                None
            )
            .await,
        Err(VaultError::Unauthenticated(_))
    ));
    // Token issue and its failure are audited as the client.
    let events = o
        .vault
        .audit_events(
            &admin,
            &phivault_vault::audit::export::AuditFilter::default(),
        )
        .await
        .unwrap();
    let token_events: Vec<_> = events.iter().filter(|e| e.action == "token").collect();
    assert_eq!(token_events.len(), 2, "{token_events:?}");
    assert_eq!(token_events[0].actor, "client:viewer-app");
    assert_eq!(
        token_events[0].outcome,
        phivault_vault::audit::Outcome::Success
    );
    assert_eq!(
        token_events[1].outcome,
        phivault_vault::audit::Outcome::Error
    );
    assert!(events.iter().any(|e| e.action == "client-add"));
    let _ = clock.now();
    o.close().await;
}

#[test]
fn fhir_patient_reads_follow_scopes_purposes_and_roles_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(phivault(&["init"], &dir).status.success());
    let files: Vec<String> = repo_fixtures()
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    assert!(phivault(&args, &dir).status.success());
    let client = |name: &str, role: &str, scopes: &str| {
        let out = phivault(
            &[
                "client", "add", "--name", name, "--role", role, "--scopes", scopes, "--json",
            ],
            &dir,
        );
        let c: Value = serde_json::from_slice(&out.stdout).unwrap();
        format!(
            "{}:{}",
            c["client_id"].as_str().unwrap(),
            c["client_secret"].as_str().unwrap()
        )
    };
    let ehr = client("ehr", "INTEGRATION_MANAGER", "system/Patient.rs");
    let lab = client("lab", "INTEGRATION_MANAGER", "system/*.cruds");
    let kiosk = client("kiosk", "VIEWER", "system/Patient.rs");
    let mut server = Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args(common::live::SERVE)
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", &dir)
        .envs(common::backend_env(&dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(server.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
    let ca = dir.join("tls/cert.pem");
    let ca = ca.to_str().unwrap();
    let token = |basic: &str| {
        let (_, t) = token_request(
            port,
            ca,
            &["-u", basic, "-d", "grant_type=client_credentials"],
        );
        format!(
            "authorization: Bearer {}",
            t["access_token"].as_str().unwrap()
        )
    };
    let (ehr_t, kiosk_t, lab_t) = (token(&ehr), token(&kiosk), token(&lab));
    let get = |auth: &str, purpose: Option<&str>, path: &str| {
        let mut args = vec![
            "-s".to_owned(),
            "-w".into(),
            "\n%{http_code}".into(),
            "--cacert".into(),
            ca.to_owned(),
            "-H".into(),
            auth.to_owned(),
        ];
        if let Some(p) = purpose {
            args.extend(["-H".into(), format!("x-purpose-of-use: {p}")]);
        }
        args.push(format!("https://localhost:{port}{path}"));
        let out = Command::new("curl").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (
            code.to_owned(),
            serde_json::from_str::<Value>(body).unwrap_or(Value::Null),
        )
    };
    let pid = resources_in(&repo_fixtures()[2])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/fhir/Patient/{pid}");

    let (code, p) = get(&ehr_t, Some("TREAT"), &path);
    assert_eq!(code, "200", "{p}");
    assert_eq!(
        p["identifier"][1]["value"], "MRN-8841906",
        "an integration gets every element"
    );
    let (code, p) = get(&kiosk_t, Some("TREAT"), &path);
    assert_eq!(code, "200");
    assert!(
        p.get("identifier").is_none() && p.get("birthDate").is_none(),
        "{p}"
    );
    assert_eq!(p["meta"]["security"][0]["code"], "REDACTED");
    for (auth, purpose, why) in [
        (&ehr_t, None, "no purpose"),
        (&ehr_t, Some("HRESCH"), "a purpose not set on the client"),
        (&ehr_t, Some("NOPE"), "an unknown purpose"),
    ] {
        let (code, o) = get(auth, purpose, &path);
        assert_eq!(code, "403", "{why}: {o}");
        assert_eq!(o["resourceType"], "OperationOutcome");
        assert_eq!(o["issue"][0]["code"], "forbidden");
    }
    let (code, b) = get(
        &ehr_t,
        Some("TREAT"),
        "/fhir/Patient?identifier=MRN-8841906",
    );
    assert_eq!(
        (code.as_str(), &b["resourceType"], &b["total"]),
        ("200", &serde_json::json!("Bundle"), &serde_json::json!(1))
    );
    let (code, o) = get(&ehr_t, Some("TREAT"), "/fhir/Patient/no-such-patient");
    assert_eq!(
        (code.as_str(), &o["issue"][0]["code"]),
        ("404", &serde_json::json!("not-found"))
    );
    let (code, m) = get(&ehr_t, None, "/fhir/metadata");
    assert_eq!(
        (code.as_str(), &m["resourceType"]),
        ("200", &serde_json::json!("CapabilityStatement"))
    );
    // The scope has no "c": creating is refused; a wrong media type is refused first.
    let post = |ct: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                ca,
                "-H",
                &ehr_t,
                "-H",
                "x-purpose-of-use: TREAT",
                "-H",
                &format!("content-type: {ct}"),
                "-d",
                r#"{"resourceType":"Patient","gender":"other"}"#,
            ])
            .arg(format!("https://localhost:{port}/fhir/Patient"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(post("text/plain"), "415");
    assert_eq!(post("application/fhir+json"), "403");

    // Clinical resources and versioned updates, for an integration with system/*.cruds.
    let send = |method: &str, path: &str, body: &str, extra: &[&str]| {
        let mut args = vec![
            "-s",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--cacert",
            ca,
            "-H",
            &lab_t,
            "-H",
            "x-purpose-of-use: TREAT",
            "-H",
            "content-type: application/fhir+json",
            "-d",
            body,
        ];
        args.extend_from_slice(extra);
        let url = format!("https://localhost:{port}{path}");
        args.push(&url);
        let out = Command::new("curl").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (
            code.to_owned(),
            serde_json::from_str::<Value>(body).unwrap_or(Value::Null),
        )
    };
    let (code, b) = get(
        &lab_t,
        Some("TREAT"),
        &format!("/fhir/Observation?patient={pid}"),
    );
    assert_eq!(
        (code.as_str(), &b["total"]),
        ("200", &serde_json::json!(1)),
        "{b}"
    );
    let obs = serde_json::json!({"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
        "subject": {"reference": format!("Patient/{pid}")}, "valueQuantity": {"value": 61, "unit": "/min"}});
    let (code, created) = send("POST", "/fhir/Observation", &obs.to_string(), &[]);
    assert_eq!(code, "201", "{created}");
    let oid = created["id"].as_str().unwrap();
    let (code, read) = get(&lab_t, Some("TREAT"), &format!("/fhir/Observation/{oid}"));
    assert_eq!(
        (code.as_str(), &read["valueQuantity"]["value"]),
        ("200", &serde_json::json!(61))
    );
    let (code, _) = get(&ehr_t, Some("TREAT"), &format!("/fhir/Observation/{oid}"));
    assert_eq!(code, "403", "a Patient-only scope reads no Observation");
    let (_, p1) = get(&lab_t, Some("TREAT"), &path);
    let mut p2 = p1.clone();
    p2["gender"] = serde_json::json!("other");
    let (code, o) = send("PUT", &path, &p2.to_string(), &["-H", "if-match: W/\"9\""]);
    assert_eq!(
        (code.as_str(), &o["resourceType"]),
        ("412", &serde_json::json!("OperationOutcome"))
    );
    let (code, u) = send("PUT", &path, &p2.to_string(), &["-H", "if-match: W/\"1\""]);
    assert_eq!(
        (code.as_str(), &u["meta"]["versionId"]),
        ("200", &serde_json::json!("2")),
        "{u}"
    );
    let (code, _) = send("DELETE", &path, "", &[]);
    assert_eq!(code, "204");
    let (code, _) = get(&lab_t, Some("TREAT"), &path);
    assert_eq!(code, "410");
    let (code, _) = get(&lab_t, Some("TREAT"), "/fhir/Basic/x");
    assert_eq!(code, "404", "types this API does not serve");
    let _ = server.kill();
    let _ = server.wait();
}
