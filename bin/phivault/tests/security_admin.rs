//! The security regression suite, administration (issue 20, findings 7 and 8 and the listings
//! administrators need): a leaked service-client secret can be stopped at once, on every node;
//! no service client ever holds an administrator role; administrators see who may see which
//! patient (by pseudonym) and who signed in with MFA. Everything runs against a real
//! `phivault serve` over HTTPS and the real command line, on SQLite or PostgreSQL
//! (`PHIVAULT_TEST_BACKEND`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, add_user, cli, json_of, stdout_ok};
use serde_json::{Value, json};
use std::path::Path;

const INTEGRATION: (&str, &str, &str) = ("INTEGRATION_MANAGER", "system/*.cruds", "TREAT HOPERAT");
const MISSING_CLIENT: &str = "pvc-00000000-0000-4000-8000-000000000000";
const CLIENT_ACTIONS: [&str; 4] = ["disable", "enable", "rotate-secret", "revoke-tokens"];

fn client_id(basic: &str) -> String {
    basic.split_once(':').unwrap().0.to_owned()
}

/// A request with an optional bearer and JSON body: (status, body).
fn admin(live: &Live, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let r = live.call(method, path, token, None, None, &[]);
    (r.status, r.body)
}

/// A FHIR search the client's token may do: 200 while the token is good, 401 after.
fn search_status(live: &Live, token: &str) -> u16 {
    live.fhir(
        "GET",
        "/fhir/Patient?identifier=nobody",
        token,
        "TREAT",
        None,
    )
    .status
}

/// The audit events (JSON lines) of organization `org` with action `action`.
fn audit_events(data: &Path, org: &str, action: &str) -> Vec<Value> {
    let out = stdout_ok(&cli(
        data,
        &["audit", "export", "--format", "jsonl", "--org", org],
    ));
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["action"] == action)
        .collect()
}

/// Adds a user in organization `org`; returns its one-time password.
fn add_user_in(data: &Path, org: &str, username: &str, role: &str) -> String {
    let v = json_of(&cli(
        data,
        &[
            "user",
            "add",
            "--org",
            org,
            "--username",
            username,
            "--role",
            role,
            "--json",
        ],
    ));
    v["one_time_password"].as_str().unwrap().to_owned()
}

mod clients {
    use super::*;

    /// Threat: a leaked integration secret keeps giving organization-wide PHI access, because
    /// a client cannot be disabled (finding 7; HIPAA §164.308(a)(6) incident response,
    /// §164.312(a)(1); OWASP API2:2023). A SUPER_ADMIN disables the client over HTTPS on one
    /// node, and a token issued before is refused right after on that node and on another
    /// (token checks read the shared control store, no process cache); enabling it again does
    /// not revive the old token. Every step is audited.
    #[test]
    fn clients_a_disabled_client_is_refused_at_once_on_every_node() {
        let (mut ehr, mut root_otp) = (String::new(), String::new());
        let a = Live::start(|data| {
            ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
            root_otp = add_user(data, "the.super", "SUPER_ADMIN");
        });
        let b = Live::node(&a.data, &[], None);
        let id = client_id(&ehr);
        let before = a.token(&ehr);
        assert_eq!(search_status(&a, &before), 200);
        assert_eq!(search_status(&b, &before), 200);
        let root = b.sign_in("the.super", &root_otp, "127.0.7.1");

        let (s, list) = admin(&b, "GET", "/admin/clients", Some(&root));
        assert_eq!(s, 200, "{list}");
        let listed = list
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_id"] == id.as_str())
            .unwrap_or_else(|| panic!("the client is not listed: {list}"));
        assert_eq!(listed["disabled"], false);
        assert_eq!(listed["role"], "INTEGRATION_MANAGER");
        assert!(
            !list.to_string().contains(ehr.split_once(':').unwrap().1),
            "a listing shows no secret"
        );

        let (s, body) = admin(
            &b,
            "POST",
            &format!("/admin/clients/{id}/disable"),
            Some(&root),
        );
        assert_eq!(s, 200, "{body}");
        assert_eq!(
            search_status(&a, &before),
            401,
            "node A still takes the token"
        );
        assert_eq!(
            search_status(&b, &before),
            401,
            "node B still takes the token"
        );
        assert!(a.try_token(&ehr).is_none(), "a disabled client got a token");
        let listed = json_of(&cli(&a.data, &["client", "list", "--json"]));
        assert_eq!(listed[0]["disabled"], true, "{listed}");

        stdout_ok(&cli(&a.data, &["client", "enable", &id]));
        let after = a.token(&ehr);
        assert_eq!(search_status(&a, &after), 200);
        assert_eq!(
            search_status(&a, &before),
            401,
            "enabling the client revived a token issued before it was disabled"
        );
        for action in ["client-disable", "client-enable"] {
            let events = audit_events(&a.data, "default", action);
            assert_eq!(events.len(), 1, "{action}: {events:?}");
            assert_eq!(events[0]["outcome"], "success");
        }
        assert_eq!(
            audit_events(&a.data, "default", "client-disable")[0]["actor"],
            "user:the.super"
        );
    }

    /// Threat: rotating a leaked secret leaves the old secret or the tokens it already got
    /// working (finding 7; HIPAA §164.308(a)(5)(ii)(D) password management). After an
    /// ORG_ADMIN rotates the secret over HTTPS, the old secret gets no token and the old
    /// token is refused; the new secret (shown once) works. `client rotate-secret` on the
    /// command line does the same, and `client revoke-tokens` ends every token while the
    /// secret keeps working. No secret appears in the audit trail.
    #[test]
    fn clients_rotating_a_secret_refuses_the_old_secret_and_its_tokens() {
        let (mut ehr, mut boss_otp) = (String::new(), String::new());
        let live = Live::start(|data| {
            ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
            boss_otp = add_user(data, "org.admin", "ORG_ADMIN");
        });
        let id = client_id(&ehr);
        let old_token = live.token(&ehr);
        assert_eq!(search_status(&live, &old_token), 200);
        let boss = live.sign_in("org.admin", &boss_otp, "127.0.7.2");
        let (s, body) = admin(
            &live,
            "POST",
            &format!("/admin/clients/{id}/rotate-secret"),
            Some(&boss),
        );
        assert_eq!(s, 200, "{body}");
        let api_secret = body["client_secret"].as_str().unwrap().to_owned();
        assert!(live.try_token(&ehr).is_none(), "the old secret got a token");
        assert_eq!(search_status(&live, &old_token), 401, "the old token works");
        let api_basic = format!("{id}:{api_secret}");
        let t = live.token(&api_basic);
        assert_eq!(search_status(&live, &t), 200);

        let v = json_of(&cli(
            &live.data,
            &["client", "rotate-secret", &id, "--json"],
        ));
        assert_eq!(v["client_id"], id.as_str());
        let cli_secret = v["client_secret"].as_str().unwrap().to_owned();
        assert!(live.try_token(&api_basic).is_none());
        assert_eq!(search_status(&live, &t), 401);
        let cli_basic = format!("{id}:{cli_secret}");
        let t = live.token(&cli_basic);
        assert_eq!(search_status(&live, &t), 200);

        stdout_ok(&cli(&live.data, &["client", "revoke-tokens", &id]));
        assert_eq!(search_status(&live, &t), 401, "revoke-tokens left a token");
        assert!(
            live.try_token(&cli_basic).is_some(),
            "revoke-tokens is not a rotation"
        );

        assert_eq!(
            audit_events(&live.data, "default", "client-rotate-secret").len(),
            2
        );
        assert_eq!(
            audit_events(&live.data, "default", "client-revoke-tokens").len(),
            1
        );
        let trail = stdout_ok(&cli(&live.data, &["audit", "export", "--format", "jsonl"]));
        for secret in [&api_secret, &cli_secret] {
            assert!(
                !trail.contains(secret.as_str()),
                "a secret in the audit trail"
            );
        }
    }

    /// Threat: an administrator of one organization finds, stops or takes over another
    /// organization's integrations (finding 7; OWASP API1/API5:2023; HIPAA §164.308(a)(4)).
    /// An ORG_ADMIN of another organization gets exactly the answer a missing client gets, for
    /// every action, and does not see it listed; people without an administrator role get 403,
    /// no token 401, and a service client cannot administer clients. The client keeps working
    /// and every attempt is audited.
    #[test]
    fn clients_another_organizations_admin_gets_the_answer_for_a_missing_client() {
        let (mut ehr, mut rival_otp, mut nurse_otp, mut rival_ehr) =
            (String::new(), String::new(), String::new(), String::new());
        let live = Live::start(|data| {
            ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
            nurse_otp = add_user(data, "a.nurse", "NURSE");
            stdout_ok(&cli(data, &["org", "add", "rival"]));
            rival_otp = add_user_in(data, "rival", "rival.admin", "ORG_ADMIN");
            let (role, scopes, purposes) = INTEGRATION;
            rival_ehr = Live::client_in(data, Some("rival"), "rival-ehr", role, scopes, purposes);
        });
        let id = client_id(&ehr);
        let token = live.token(&ehr);
        let rival = live.sign_in_in("rival", "rival.admin", &rival_otp, "127.0.7.3");
        let nurse = live.sign_in_in("default", "a.nurse", &nurse_otp, "127.0.7.4");
        let integration = live.token(&rival_ehr);

        let (s, list) = admin(&live, "GET", "/admin/clients", Some(&rival));
        assert_eq!(s, 200, "{list}");
        let ids: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["client_id"].as_str())
            .collect();
        assert_eq!(ids, [client_id(&rival_ehr).as_str()], "{list}");
        for action in CLIENT_ACTIONS {
            let theirs = admin(
                &live,
                "POST",
                &format!("/admin/clients/{id}/{action}"),
                Some(&rival),
            );
            let missing = admin(
                &live,
                "POST",
                &format!("/admin/clients/{MISSING_CLIENT}/{action}"),
                Some(&rival),
            );
            assert_eq!(theirs.0, 404, "{action}: {}", theirs.1);
            assert_eq!(theirs, missing, "{action} tells another org's client apart");
            let path = format!("/admin/clients/{id}/{action}");
            assert_eq!(admin(&live, "POST", &path, Some(&nurse)).0, 403, "{action}");
            assert_eq!(
                admin(&live, "POST", &path, Some(&integration)).0,
                403,
                "{action}"
            );
            assert_eq!(admin(&live, "POST", &path, None).0, 401, "{action}");
        }
        assert_eq!(admin(&live, "GET", "/admin/clients", Some(&nurse)).0, 403);
        assert_eq!(
            admin(&live, "GET", "/admin/clients", Some(&integration)).0,
            403
        );
        assert_eq!(admin(&live, "GET", "/admin/clients", None).0, 401);
        assert_eq!(search_status(&live, &token), 200, "the client was touched");
        assert!(live.try_token(&ehr).is_some(), "the secret was touched");
        let refused: Vec<Value> = CLIENT_ACTIONS
            .iter()
            .flat_map(|a| audit_events(&live.data, "rival", &format!("client-{a}")))
            .filter(|e| e["actor"] == "user:rival.admin")
            .collect();
        assert_eq!(refused.len(), 8, "every refused attempt is audited");
        assert!(refused.iter().all(|e| e["outcome"] != "success"));
        let denied = audit_events(&live.data, "default", "client-list")
            .into_iter()
            .filter(|e| e["actor"] == "user:a.nurse" && e["outcome"] == "denied")
            .count();
        assert_eq!(denied, 1, "the nurse's listing attempt is audited");
        let doc = live
            .call("GET", "/openapi.json", None, None, None, &[])
            .body;
        for (path, method) in [
            ("/admin/clients", "get"),
            ("/admin/clients/{client_id}/{action}", "post"),
            ("/admin/grants", "get"),
        ] {
            let responses = doc["paths"][path][method]["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} is not documented"));
            for status in ["401", "403"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
        }
    }

    /// Threat: a service client with an administrator role administers people without MFA
    /// (finding 8; HIPAA §164.312(d) person authentication). `client add --role SUPER_ADMIN`
    /// or `ORG_ADMIN` is refused with a clear error and exit code 1, and nothing is created.
    #[test]
    fn clients_with_an_administrator_role_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        stdout_ok(&cli(&data, &["init"]));
        for role in ["SUPER_ADMIN", "ORG_ADMIN"] {
            let out = cli(
                &data,
                &[
                    "client",
                    "add",
                    "--name",
                    "sneaky",
                    "--role",
                    role,
                    "--scopes",
                    "system/*.cruds",
                    "--json",
                ],
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{role}: {err}");
            assert!(out.stdout.is_empty(), "{role}: something printed");
            assert!(
                err.contains("person") && err.contains("MFA"),
                "{role}: unclear error: {err}"
            );
        }
        let listed = json_of(&cli(&data, &["client", "list", "--json"]));
        assert_eq!(listed, json!([]), "a client was created");
        let events = audit_events(&data, "default", "client-add");
        assert_eq!(events.len(), 2);
        assert!(
            events.iter().all(|e| e["outcome"] == "denied"),
            "{events:?}"
        );
    }
}

mod listings {
    use super::*;

    /// Threat: nobody can tell who may see which patient, for what and until when, so an
    /// over-broad or forgotten grant goes unnoticed (HIPAA §164.308(a)(4)(ii)(C) access
    /// review, §164.308(a)(1)(ii)(D) information system activity review). `grants list` and
    /// `GET /admin/grants` show every live grant and break-glass access of the organization,
    /// with the patient's pseudonym and never its id; another organization's admin sees
    /// none of them, others get 403. Every listing is audited.
    #[test]
    fn listings_grants_show_who_may_see_which_patient_by_pseudonym_only() {
        let (mut boss_otp, mut er_otp, mut rival_otp) =
            (String::new(), String::new(), String::new());
        let fixture = common::repo_fixtures()[2].clone();
        let pid = common::resources_in(&fixture)[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let live = Live::start(|data| {
            stdout_ok(&cli(data, &["import", fixture.to_str().unwrap()]));
            boss_otp = add_user(data, "org.admin", "ORG_ADMIN");
            add_user(data, "a.doc", "CLINICIAN");
            er_otp = add_user(data, "er.doc", "CLINICIAN");
            stdout_ok(&cli(data, &["org", "add", "rival"]));
            rival_otp = add_user_in(data, "rival", "rival.admin", "ORG_ADMIN");
        });
        stdout_ok(&cli(
            &live.data,
            &[
                "grants",
                "add",
                "--org",
                "default",
                "--username",
                "a.doc",
                "--patient",
                &pid,
                "--purpose",
                "TREAT",
                "--minutes",
                "30",
            ],
        ));
        let er = live.sign_in_in("default", "er.doc", &er_otp, "127.0.7.5");
        let bg = json!({"patient": pid, "reason": "unconscious in the ED, no grant on call"});
        let r = live.call(
            "POST",
            "/auth/break-glass",
            Some(&er),
            None,
            Some(("application/json", bg.to_string().as_bytes())),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.body);

        let out = cli(
            &live.data,
            &["grants", "list", "--org", "default", "--json"],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let listed = json_of(&out);
        assert!(!text.contains(&pid), "the patient id is listed: {text}");
        let rows = listed.as_array().unwrap();
        assert_eq!(rows.len(), 2, "{listed}");
        let find = |user: &str| rows.iter().find(|g| g["username"] == user).unwrap();
        let (g, b) = (find("a.doc"), find("er.doc"));
        assert_eq!(
            (g["kind"].as_str(), g["purpose"].as_str()),
            (Some("grant"), Some("TREAT"))
        );
        assert_eq!(
            (b["kind"].as_str(), b["purpose"].as_str()),
            (Some("break-glass"), Some("ETREAT"))
        );
        let pseudonym = g["patient_pseudonym"].as_str().unwrap();
        assert_eq!(pseudonym.len(), 64, "{g}");
        assert_eq!(
            b["patient_pseudonym"], pseudonym,
            "one patient, one pseudonym"
        );
        assert!(g["expires_at"].is_string() && b["expires_at"].is_string());
        let human = stdout_ok(&cli(&live.data, &["grants", "list", "--org", "default"]));
        assert!(human.contains("a.doc") && human.contains("break-glass") && !human.contains(&pid));

        let boss = live.sign_in_in("default", "org.admin", &boss_otp, "127.0.7.6");
        let (s, api) = admin(&live, "GET", "/admin/grants", Some(&boss));
        assert_eq!(s, 200, "{api}");
        assert_eq!(api, listed, "the API and the command line disagree");
        let rival = live.sign_in_in("rival", "rival.admin", &rival_otp, "127.0.7.7");
        assert_eq!(
            admin(&live, "GET", "/admin/grants", Some(&rival)),
            (200, json!([]))
        );
        assert_eq!(admin(&live, "GET", "/admin/grants", Some(&er)).0, 403);
        assert_eq!(admin(&live, "GET", "/admin/grants", None).0, 401);
        let events = audit_events(&live.data, "default", "grants-list");
        let outcomes: Vec<&str> = events
            .iter()
            .filter_map(|e| e["outcome"].as_str())
            .collect();
        assert_eq!(
            outcomes.iter().filter(|o| **o == "success").count(),
            3,
            "{events:?}"
        );
        assert_eq!(
            outcomes.iter().filter(|o| **o == "denied").count(),
            1,
            "{events:?}"
        );
    }

    /// Threat: accounts that never enrolled MFA or have not signed in for months go unnoticed
    /// (HIPAA §164.308(a)(3)(ii)(C) termination, §164.312(d)). `user list` (text and
    /// `--json`) and `GET /admin/users` show each person's last sign-in and MFA state; each
    /// listing is audited.
    #[test]
    fn listings_users_show_last_sign_in_and_mfa_state() {
        let mut boss_otp = String::new();
        let live = Live::start(|data| {
            boss_otp = add_user(data, "org.admin", "ORG_ADMIN");
            add_user(data, "a.nurse", "NURSE");
        });
        let user = |list: &Value, name: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|u| u["username"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} not in {list}"))
        };
        let before = json_of(&cli(&live.data, &["user", "list", "--json"]));
        let n = user(&before, "a.nurse");
        assert_eq!(
            (&n["last_sign_in"], &n["mfa"]),
            (&Value::Null, &json!("none")),
            "{n}"
        );
        let boss = live.sign_in("org.admin", &boss_otp, "127.0.7.8");
        let after = json_of(&cli(&live.data, &["user", "list", "--json"]));
        let b = user(&after, "org.admin");
        assert_eq!(b["mfa"], "enrolled", "{b}");
        let when = b["last_sign_in"].as_str().unwrap_or_else(|| panic!("{b}"));
        assert!(
            when.len() >= 20 && when.ends_with('Z'),
            "not RFC 3339 UTC: {when}"
        );
        let text = stdout_ok(&cli(&live.data, &["user", "list"]));
        let line = text.lines().find(|l| l.contains("org.admin")).unwrap();
        assert!(line.contains(when) && line.contains("mfa"), "{line}");
        let nurse_line = text.lines().find(|l| l.contains("a.nurse")).unwrap();
        assert!(nurse_line.contains("never"), "{nurse_line}");
        let (s, api) = admin(&live, "GET", "/admin/users", Some(&boss));
        assert_eq!(s, 200, "{api}");
        let b = user(&api, "org.admin");
        assert_eq!(
            (b["last_sign_in"].as_str(), b["mfa"].as_str()),
            (Some(when), Some("enrolled"))
        );
        // Each listing (it shows sign-in times and MFA state) is audited: one event.
        let listed = audit_events(&live.data, "default", "user-list")
            .into_iter()
            .filter(|e| e["actor"] == "user:org.admin" && e["outcome"] == "success")
            .count();
        assert_eq!(listed, 1, "the administrator's user listing is not audited");
    }
}
