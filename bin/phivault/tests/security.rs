//! The security regression suite: one named test per threat, grouped by kind (transport,
//! input, authentication, authorization, leakage), each doc comment naming the threat and the
//! HIPAA / OWASP reference it answers. Threats already proven elsewhere are listed in
//! SECURITY.md with the test that proves them; this file holds the ones that need a live
//! server wired up for the attack. Everything runs against a real `phivault serve` over
//! HTTPS (and MLLP), driven by outside clients (curl, openssl, Python).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, add_user, cli};
use serde_json::{Value, json};
use std::process::Command;

const INTEGRATION: (&str, &str, &str) = ("INTEGRATION_MANAGER", "system/*.cruds", "TREAT HOPERAT");

fn patient(mrn: &str) -> Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": mrn}],
        "name": [{"family": "Vulnerablename", "given": ["Secretgiven"]}],
        "birthDate": "1944-04-04", "telecom": [{"system": "phone", "value": "555-0404"}]})
}

mod transport {
    use super::*;

    /// Threat: a client renegotiates TLS mid-connection (renegotiation attacks, CVE-2009-3555
    /// class, and renegotiation DoS). HIPAA §164.312(e)(1) transmission security; OWASP ASVS
    /// V9.1. phivault's TLS (rustls) never renegotiates: the attempt ends the connection.
    #[test]
    fn transport_tls_renegotiation_is_refused() {
        let live = Live::start(|_| {});
        // s_client's interactive command "R" starts a renegotiation; -msg shows every
        // handshake message. The server answers the new ClientHello with no ServerHello.
        let script = format!(
            "(sleep 2; echo R; sleep 3) | timeout 10 openssl s_client -tls1_2 -msg \\
             -connect 127.0.0.1:{} -CAfile {} -servername localhost 2>&1",
            live.port, live.ca
        );
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        // s_client says RENEGOTIATING on standard error.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (before, after) = text
            .split_once("RENEGOTIATING")
            .unwrap_or_else(|| panic!("s_client did not try to renegotiate: {text}"));
        assert!(
            before.contains("ServerHello"),
            "the first handshake happened: {before}"
        );
        assert!(
            after.contains("ClientHello"),
            "the client sent its renegotiation: {after}"
        );
        assert!(
            !after.contains("ServerHello") && !after.contains("Finished"),
            "the server renegotiated: {after}"
        );
    }
}

mod input {
    use super::*;

    /// Threat: SQL injection through search parameters and ids (OWASP A03:2021 Injection;
    /// HIPAA §164.312(c)(1) integrity). Every parameter of every search, and the id in the
    /// path, gets a table of classic payloads: each answer is a clean 200/400/404 (never a 5xx,
    /// never a database message), no extra record is released, and nothing changes.
    #[test]
    fn input_sql_injection_payloads_in_every_search_parameter_and_id() {
        let mut ehr = String::new();
        let live = Live::start(|data| {
            ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
        });
        let t = live.token(&ehr);
        let created = live.fhir(
            "POST",
            "/fhir/Patient",
            &t,
            "TREAT",
            Some(&patient("SQLI-1")),
        );
        let pid = created.body["id"].as_str().unwrap().to_owned();
        let payloads = [
            "' OR '1'='1",
            "1' OR 1=1--",
            "\" OR \"\"=\"",
            "1; DROP TABLE record_versions;--",
            "' UNION SELECT ciphertext FROM record_versions--",
            "%' AND 1=0 UNION SELECT NULL,NULL--",
            "1' AND SLEEP(5)--",
            "'||(SELECT sqlite_version())||'",
            "\\'; --",
            "') OR ('a'='a",
        ];
        let enc = |s: &str| form_encode(s);
        let mut checked = 0;
        for p in payloads {
            for query in [
                format!("/fhir/Patient?identifier={}", enc(p)),
                format!("/fhir/Patient?identifier=urn:test:mrn|{}", enc(p)),
                format!("/fhir/Patient?family={}&birthdate=1944-04-04", enc(p)),
                format!("/fhir/Patient?family=Vulnerablename&birthdate={}", enc(p)),
                format!("/fhir/Patient?phone=555{}", enc(p)),
                format!("/fhir/Patient?_id={}", enc(p)),
                format!("/fhir/Observation?patient={}", enc(p)),
                format!("/fhir/Observation?patient={pid}&code={}", enc(p)),
                format!("/fhir/Observation?patient={pid}&date={}", enc(p)),
                format!("/fhir/Patient/{}", enc(p)),
                format!("/fhir/Patient/{}/_history", enc(p)),
                format!("/fhir/AuditEvent?agent={}", enc(p)),
            ] {
                let r = live.fhir("GET", &query, &t, "TREAT", None);
                assert!(
                    [200, 400, 403, 404].contains(&r.status),
                    "{query}: {} {}",
                    r.status,
                    r.body
                );
                let text = r.body.to_string().to_lowercase();
                for leak in ["sqlite", "syntax", "record_versions", "sql"] {
                    assert!(!text.contains(leak), "{query} leaked '{leak}': {text}");
                }
                if r.status == 200 && r.body["resourceType"] == "Bundle" {
                    let n = r.body["entry"].as_array().map_or(0, Vec::len);
                    assert_eq!(n, 0, "{query} released records");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, payloads.len() * 12);
        // Nothing changed: one patient, still at version 1, still found by its identifier.
        let r = live.fhir(
            "GET",
            "/fhir/Patient?identifier=urn:test:mrn|SQLI-1",
            &t,
            "TREAT",
            None,
        );
        assert_eq!(r.body["total"], 1);
        assert_eq!(r.body["entry"][0]["resource"]["meta"]["versionId"], "1");
    }

    /// Threat: resource-exhaustion and parser attacks in request bodies — deep JSON nesting,
    /// huge arrays, invalid UTF-8, bodies over the limit (OWASP API4:2023 Unrestricted Resource
    /// Consumption; HIPAA §164.312(c)(1)). Each gets its 400/413 OperationOutcome, the server
    /// keeps serving, and nothing is stored.
    #[test]
    fn input_deep_nesting_huge_arrays_and_invalid_utf8_are_refused() {
        let mut ehr = String::new();
        let live = Live::start(|data| {
            ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
        });
        let t = live.token(&ehr);
        let deep = format!(
            "{{\"resourceType\": \"Patient\", \"extension\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let wide = format!(
            "{{\"resourceType\": \"Patient\", \"name\": [{}]}}",
            vec!["{\"family\": \"X\"}"; 600_000].join(",")
        );
        let mut bad_utf8 = b"{\"resourceType\": \"Patient\", \"name\": [{\"family\": \"".to_vec();
        bad_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
        bad_utf8.extend_from_slice(b"\"}]}");
        let nested_ok_shape = {
            let mut v = json!("x");
            // 30 levels: within serde_json's own limit (128), past the validator's (48).
            for _ in 0..30 {
                v = json!({"extension": [{"url": "urn:x", "valueString": "y", "extension": [v]}]});
            }
            json!({"resourceType": "Patient", "extension": [v]}).to_string()
        };
        for (body, status, what) in [
            (deep.into_bytes(), 400, "100k-deep arrays"),
            (
                wide.into_bytes(),
                413,
                "600k-element array over the body limit",
            ),
            (bad_utf8, 400, "invalid UTF-8"),
            (
                nested_ok_shape.into_bytes(),
                400,
                "nesting deeper than validation allows",
            ),
        ] {
            let r = live.call_http1(
                "POST",
                "/fhir/Patient",
                &t,
                ("application/fhir+json", &body),
            );
            assert_eq!(r.status, status, "{what}: {} {}", r.body, r.error);
            assert_eq!(r.body["resourceType"], "OperationOutcome", "{what}");
        }
        // A big but legal array of names is a 201 (the limit is the body size, not a count).
        let many =
            json!({"resourceType": "Patient", "name": vec![json!({"family": "Many"}); 5000]});
        assert_eq!(
            live.fhir("POST", "/fhir/Patient", &t, "TREAT", Some(&many))
                .status,
            201
        );
        let r = live.fhir(
            "GET",
            "/fhir/Patient?family=X&birthdate=1944-04-04",
            &t,
            "TREAT",
            None,
        );
        assert_eq!(r.status, 200, "the server still serves");
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

mod authz {
    use super::*;

    /// Threat: insecure direct object references across tenants — another organization's
    /// patient ids used to read, vread, list history, update, delete, search and
    /// `$everything` (OWASP API1:2023 Broken Object Level Authorization; HIPAA §164.308(a)(4)
    /// access management, §164.312(a)(1)). Every attempt is "not found", exactly as for an id
    /// that does not exist, and nothing changes.
    #[test]
    fn authz_idor_other_organizations_patients_by_every_interaction() {
        let (mut home, mut away) = (String::new(), String::new());
        let live = Live::start(|data| {
            home = Live::client(
                data,
                "home-ehr",
                INTEGRATION.0,
                INTEGRATION.1,
                INTEGRATION.2,
            );
            let out = cli(data, &["org", "add", "rival"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            away = Live::client_in(
                data,
                Some("rival"),
                "rival-ehr",
                INTEGRATION.0,
                INTEGRATION.1,
                INTEGRATION.2,
            );
        });
        let (t, rival) = (live.token(&home), live.token(&away));
        let p = live.fhir(
            "POST",
            "/fhir/Patient",
            &t,
            "TREAT",
            Some(&patient("IDOR-1")),
        );
        let pid = p.body["id"].as_str().unwrap().to_owned();
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": format!("Patient/{pid}")}});
        let o = live.fhir("POST", "/fhir/Observation", &t, "TREAT", Some(&obs));
        let oid = o.body["id"].as_str().unwrap().to_owned();
        let missing = "00000000-0000-4000-8000-000000000000";
        let probe = |method: &str, path: &str, body: Option<&Value>| {
            let r = live.fhir(method, path, &rival, "TREAT", body);
            (r.status, r.body.to_string())
        };
        for q in [
            "/fhir/Patient?identifier=urn:test:mrn|IDOR-1".to_owned(),
            format!("/fhir/Patient?_id={pid}"),
            "/fhir/Patient?family=Vulnerablename&birthdate=1944-04-04".to_owned(),
            "/fhir/Patient?phone=555-0404".to_owned(),
        ] {
            let r = live.fhir("GET", &q, &rival, "TREAT", None);
            assert_eq!(r.status, 200, "{q}");
            assert_eq!(
                r.body["total"], 0,
                "{q} found the other organization's patient"
            );
        }
        // A search answers as for a patient that does not exist: nothing.
        let r = live.fhir(
            "GET",
            &format!("/fhir/Observation?patient={pid}"),
            &rival,
            "TREAT",
            None,
        );
        assert_eq!((r.status, &r.body["total"]), (200, &json!(0)), "{}", r.body);
        for (method, path, body) in [
            ("GET", format!("/fhir/Patient/{pid}"), None),
            ("GET", format!("/fhir/Patient/{pid}/_history/1"), None),
            ("GET", format!("/fhir/Patient/{pid}/_history"), None),
            ("GET", format!("/fhir/Patient/{pid}/$everything"), None),
            ("GET", format!("/fhir/Observation/{oid}"), None),
            ("DELETE", format!("/fhir/Patient/{pid}"), None),
            ("DELETE", format!("/fhir/Observation/{oid}"), None),
            (
                "PUT",
                format!("/fhir/Patient/{pid}"),
                Some(json!({"resourceType": "Patient", "id": pid, "gender": "male"})),
            ),
        ] {
            let (status, text) = probe(method, &path, body.as_ref());
            let same_as_missing = probe(
                method,
                &path.replace(&pid, missing).replace(&oid, missing),
                None,
            );
            if method == "PUT" {
                // An update at an unknown id in the rival's organization creates the rival's
                // own record there; the home patient must be untouched (checked below).
                assert!(
                    status == 200 || status == 201 || status == 404,
                    "{method} {path}: {status} {text}"
                );
            } else {
                assert_eq!(status, 404, "{method} {path}: {text}");
                assert_eq!(
                    status, same_as_missing.0,
                    "{method} {path} differs from a missing id"
                );
            }
            assert!(
                !text.contains("Vulnerablename"),
                "{method} {path} leaked: {text}"
            );
        }
        // The home organization's records are unchanged.
        let r = live.fhir("GET", &format!("/fhir/Patient/{pid}"), &t, "TREAT", None);
        assert_eq!(r.status, 200);
        assert_eq!(r.body["meta"]["versionId"], "1");
        assert!(r.body.get("gender").is_none());
        assert_eq!(
            live.fhir(
                "GET",
                &format!("/fhir/Observation/{oid}"),
                &t,
                "TREAT",
                None
            )
            .status,
            200
        );
    }

    /// Threat: privilege escalation through user administration — an ORG_ADMIN creating a
    /// SUPER_ADMIN, or taking over or locking out an administrator by resetting its password
    /// or MFA, or reaching into another organization (OWASP API5:2023 Broken Function Level
    /// Authorization; HIPAA §164.308(a)(4)(ii)(C) access modification). All refused, audited.
    #[test]
    fn authz_no_privilege_escalation_through_user_administration() {
        let mut otp = String::new();
        let live = Live::start(|data| {
            otp = add_user(data, "org.admin", "ORG_ADMIN");
            add_user(data, "the.super", "SUPER_ADMIN");
            add_user(data, "other.admin", "ORG_ADMIN");
            add_user(data, "a.nurse", "NURSE");
        });
        let token = live.sign_in("org.admin", &otp, "127.0.5.1");
        let admin = |method: &str, path: &str, body: Option<Value>| {
            let b = body.map(|b| b.to_string());
            let r = live.call(
                method,
                path,
                Some(&token),
                None,
                b.as_deref().map(|b| ("application/json", b.as_bytes())),
                &[],
            );
            (r.status, r.body)
        };
        for role in ["SUPER_ADMIN", "ORG_ADMIN", "INTEGRATION_MANAGER"] {
            let (s, b) = admin(
                "POST",
                "/admin/users",
                Some(json!({"username": format!("new.{}", role.to_lowercase()), "role": role})),
            );
            assert_eq!(s, 403, "an ORG_ADMIN created a {role}: {b}");
        }
        for target in ["the.super", "other.admin"] {
            for action in ["reset-password", "reset-mfa", "disable"] {
                let (s, b) = admin("POST", &format!("/admin/users/{target}/{action}"), None);
                assert_eq!(s, 403, "an ORG_ADMIN could {action} {target}: {b}");
            }
        }
        // What an ORG_ADMIN may do, it can.
        let (s, b) = admin("POST", "/admin/users/a.nurse/reset-password", None);
        assert_eq!(s, 200, "{b}");
        let (s, _) = admin(
            "POST",
            "/admin/users",
            Some(json!({"username": "new.viewer", "role": "VIEWER"})),
        );
        assert_eq!(s, 200);
        // The denials are in the audit trail.
        let out = cli(&live.data, &["audit", "export", "--format", "jsonl"]);
        let denied = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("\"outcome\":\"denied\"") && l.contains("user:org.admin"))
            .count();
        assert_eq!(denied, 3 + 6, "every refused attempt is audited");
    }
}

mod sessions {
    use super::*;

    /// Threat: session fixation and pre-authentication tokens used as sessions — the login
    /// challenge (issued after the password, before the second factor) must not open
    /// anything, and the session token must be new (OWASP ASVS V3.2.1; HIPAA §164.312(d)
    /// person or entity authentication).
    #[test]
    fn sessions_a_login_challenge_is_never_a_session_and_sessions_are_new() {
        let mut otp = String::new();
        let live = Live::start(|data| otp = add_user(data, "fix.user", "VIEWER"));
        let post = |path: &str, body: Value| {
            let b = body.to_string();
            live.call(
                "POST",
                path,
                None,
                None,
                Some(("application/json", b.as_bytes())),
                &[],
            )
        };
        let r = post(
            "/auth/login",
            json!({"username": "fix.user", "password": otp}),
        );
        let challenge = r.body["challenge"].as_str().unwrap().to_owned();
        for path in ["/auth/whoami", "/fhir/Patient?phone=5550404"] {
            let r = live.call("GET", path, Some(&challenge), Some("TREAT"), None, &[]);
            assert_eq!(r.status, 401, "the challenge opened {path}");
        }
        // The full sign-in (from another address) gives a different, new token.
        let token = live.sign_in("fix.user", &otp, "127.0.6.1");
        assert_ne!(token, challenge);
        assert_eq!(
            live.call("GET", "/auth/whoami", Some(&token), None, None, &[])
                .status,
            200
        );
        // Logged out, the token is dead; it cannot be revived.
        assert_eq!(
            live.call("POST", "/auth/logout", Some(&token), None, None, &[])
                .status,
            204
        );
        assert_eq!(
            live.call("GET", "/auth/whoami", Some(&token), None, None, &[])
                .status,
            401
        );
    }

    /// Threat: credential stuffing — many usernames tried from one address (OWASP API2:2023
    /// Broken Authentication; HIPAA §164.312(d)). After a burst of 10 the address gets 429
    /// before any password is checked, whatever usernames it tries.
    #[test]
    fn sessions_credential_stuffing_across_users_from_one_address_is_throttled() {
        let live = Live::start(|_| {});
        // All at once (see `assert_within_the_limit`).
        let started = std::time::Instant::now();
        let statuses: Vec<(u16, String)> = std::thread::scope(|scope| {
            let live = &live;
            let calls: Vec<_> = (0..16)
                .map(|i| {
                    scope.spawn(move || {
                        let b = json!({"username": format!("victim{i}"), "password": "Password123!leaked"})
                            .to_string();
                        // HTTP/1.1: over HTTP/2, curl 7.88 reports the server's early 429 (sent
                        // before the body is read, then the stream reset) as a transport error.
                        let r = live.call(
                            "POST",
                            "/auth/login",
                            None,
                            None,
                            Some(("application/json", b.as_bytes())),
                            &["x-http1: 1"],
                        );
                        (r.status, r.error.clone())
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let elapsed = started.elapsed();
        let statuses: Vec<u16> = statuses
            .into_iter()
            .map(|(s, e)| {
                assert!(s != 0, "transport error: {e}");
                s
            })
            .collect();
        // A burst of 10, then 429 (one more attempt per 500 ms as the bucket refills).
        assert!(
            statuses.iter().filter(|s| **s == 401).count() >= 10,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 401 || *s == 429),
            "{statuses:?}"
        );
        common::assert_within_the_limit(&statuses, elapsed);
    }
}

mod leakage {
    use super::*;

    /// Threat: PHI, secrets or internals leaking through logs, error bodies or URLs (HIPAA
    /// §164.312(b) and §164.502(b) minimum necessary; OWASP A09:2021 Security Logging and
    /// Monitoring Failures, API3:2023). A full scenario — a person's sign-in, FHIR writes,
    /// reads, searches and errors, an HL7 message, a transaction — runs with logs at debug
    /// level; every log line and every error body is scanned for the patients' names,
    /// identifiers, phone, birth date, the password, the one-time password, the TOTP secret
    /// and every token; so is the Prometheus text of `/metrics`.
    #[test]
    fn leakage_nothing_sensitive_in_debug_logs_or_error_bodies() {
        let log = tempfile::NamedTempFile::new().unwrap();
        let (mut ehr, mut otp, mut siem) = (String::new(), String::new(), String::new());
        let live = Live::start_logged(
            &[("PHIVAULT_LOG", "debug"), ("PHIVAULT_MLLP_TLS", "off")],
            log.path(),
            |data| {
                ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
                otp = add_user(data, "leak.viewer", "VIEWER");
                siem = Live::client(data, "siem", "AUDITOR", "system/AuditEvent.rs", "HOPERAT");
            },
        );
        let t = live.token(&ehr);
        let person = live.sign_in("leak.viewer", &otp, "127.0.7.1");
        let mut bodies = Vec::new();
        let p = live.fhir(
            "POST",
            "/fhir/Patient",
            &t,
            "TREAT",
            Some(&patient("LEAK-77")),
        );
        let pid = p.body["id"].as_str().unwrap().to_owned();
        for r in [
            live.fhir("GET", "/fhir/Patient?identifier=urn:test:mrn|LEAK-77", &t, "TREAT", None),
            live.fhir("GET", "/fhir/Patient?phone=555-0404", &person, "TREAT", None),
            live.fhir("GET", &format!("/fhir/Patient/{pid}"), &person, "HRESCH", None),
            live.fhir("POST", "/fhir/Patient", &t, "TREAT", Some(&json!({"resourceType": "Patient", "name": [{"family": "Vulnerablename", "bad key": 1}]}))),
            live.fhir("POST", "/fhir/Observation", &t, "TREAT", Some(&json!({"resourceType": "Observation", "status": "final", "code": {"text": "Vulnerablename"}, "subject": {"reference": "Patient/Vulnerablename"}}))),
            live.fhir("PUT", &format!("/fhir/Patient/{pid}"), &t, "TREAT", Some(&json!({"resourceType": "Patient", "id": "LEAK-77"}))),
            live.fhir("GET", "/fhir/Patient?family:contains=Vulnerablename", &t, "TREAT", None),
            live.call("GET", "/fhir/Patient/LEAK-77", Some("bogus-token-LEAK"), Some("TREAT"), None, &[]),
        ] {
            bodies.push(r.body.to_string());
        }
        let hl7 = "MSH|^~\\&|LAB|L|PV|H|20260101||ADT^A08|LEAKMSG|P|2.5\rPID|1||LEAK-77^^^urn:test:mrn||Vulnerablename^Secretgiven||19440404|F|||||555-0404\r";
        let mut s = std::net::TcpStream::connect(("127.0.0.1", live.mllp)).unwrap();
        use std::io::{Read, Write};
        s.write_all(&[&[0x0b][..], hl7.as_bytes(), b"\x1c\x0d"].concat())
            .unwrap();
        let mut ack = [0u8; 2048];
        let _ = s.read(&mut ack);
        drop(s);
        std::thread::sleep(std::time::Duration::from_millis(300));
        // Metrics (names and labels) as a monitoring system reads them.
        let metrics = live.call("GET", "/metrics", Some(&live.token(&siem)), None, None, &[]);
        assert_eq!(metrics.status, 200);
        let metrics_text = std::process::Command::new("curl")
            .args(["-s", "--cacert", &live.ca, "-H"])
            .arg(format!("authorization: Bearer {}", live.token(&siem)))
            .arg(format!("https://localhost:{}/metrics", live.port))
            .output()
            .unwrap()
            .stdout;
        let metrics_text = String::from_utf8_lossy(&metrics_text).into_owned();
        assert!(metrics_text.contains("phivault_"), "{metrics_text}");
        let logs = std::fs::read_to_string(log.path()).unwrap();
        assert!(logs.lines().count() > 10, "debug logs were written: {logs}");
        let needles = [
            "Vulnerablename",
            "Secretgiven",
            "LEAK-77",
            "555-0404",
            "5550404",
            "1944-04-04",
            "19440404",
            otp.as_str(),
            t.as_str(),
            person.as_str(),
            "bogus-token-LEAK",
            "walks the amber glacier",
        ];
        for n in needles {
            assert!(
                !logs.lines().any(|l| common::log_holds(l, n)),
                "the logs hold {n}"
            );
            assert!(!metrics_text.contains(n), "the metrics hold {n}");
        }
        for (i, b) in bodies.iter().enumerate().skip(2) {
            for n in [
                "Vulnerablename",
                "LEAK-77",
                "555-0404",
                "sqlite",
                "panicked",
                "backtrace",
            ] {
                assert!(!b.contains(n), "error body {i} holds {n}: {b}");
            }
        }
    }
}
