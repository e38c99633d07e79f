//! The security regression suite, authentication and user administration (issue 20, findings
//! 4, 5, 12 and 14): each test replays an attack against a real `phivault serve` over HTTPS
//! (and the command line) and names the threat it answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, Resp, SIGNED_IN_PASSWORD, add_user, cli, json_of, stdout_ok};
use serde_json::{Value, json};

/// A JSON POST without a token from loopback address `from` (each address has its own
/// rate-limit bucket: the attacks below need more than one burst).
fn post(live: &Live, from: &str, path: &str, body: &Value) -> Resp {
    live.post_from(from, path, None, body)
}

/// A server whose vault has VIEWER users of these names; their one-time passwords.
fn live_with_viewers(names: &[&str]) -> (Live, Vec<String>) {
    let mut otps = Vec::new();
    let live = Live::start(|d| otps = names.iter().map(|n| add_user(d, n, "VIEWER")).collect());
    (live, otps)
}

fn login(live: &Live, from: &str, username: &str, password: &str) -> Resp {
    post(
        live,
        from,
        "/auth/login",
        &json!({"username": username, "password": password}),
    )
}

/// Status and body: what tells two refusals apart.
fn answer(r: &Resp) -> (u16, String) {
    (r.status, r.body.to_string())
}

fn whoami(live: &Live, token: &str) -> u16 {
    live.call("GET", "/auth/whoami", Some(token), None, None, &[])
        .status
}

/// `phivault audit report --json` of the live vault's organization `org` (the only one if
/// `None`).
fn audit_report(live: &Live, org: Option<&str>) -> Value {
    let mut args = vec!["audit", "report", "--since", "2000-01-01", "--json"];
    if let Some(o) = org {
        args.extend(["--org", o]);
    }
    json_of(&cli(&live.data, &args))
}

/// Six-digit codes that the TOTP secret does not accept anywhere near now.
fn wrong_codes(secret: &str, n: usize) -> Vec<String> {
    let seed = phivault_crypto::totp::seed_from_base32(secret).unwrap();
    let now = u64::try_from(phivault_core::Clock::now_secs(&phivault_core::SystemClock)).unwrap();
    common::signed_in::codes_not_near(&seed, now, n)
}

mod sessions {
    use super::*;

    /// Threat: a password change with half the credentials (issue 20, finding 4; OWASP ASVS
    /// V2.1.6 / V3.3.3; HIPAA §164.312(d)). Someone who has only the password (a challenge
    /// whose next step is `mfa`) must not change it: the answer is exactly that of an invalid
    /// challenge and nothing changes. A password change ends every other session and
    /// challenge of the user (a second challenge opened with the one-time password cannot
    /// enroll MFA once the owner changed it); an administrator's reset ends its sessions.
    #[test]
    fn sessions_a_password_change_needs_the_change_step_and_ends_every_session() {
        let (live, otps) = live_with_viewers(&["half.creds", "fresh.user"]);
        let (otp, otp2) = (&otps[0], &otps[1]);
        let owner = live.sign_in("half.creds", otp, "127.0.40.1");

        // The attacker has the password, not the second factor.
        let r = login(&live, "127.0.40.2", "half.creds", SIGNED_IN_PASSWORD);
        assert_eq!(r.body["next"], "mfa", "{}", r.body);
        let challenge = r.body["challenge"].as_str().unwrap().to_owned();
        let stolen = "an attacker picked this passphrase 7781";
        let change = |c: &str| {
            post(
                &live,
                "127.0.40.3",
                "/auth/password",
                &json!({"challenge": c, "new_password": stolen}),
            )
        };
        let refused = change(&challenge);
        let invalid = change("not-a-challenge-at-all-0123456789abcdef");
        assert_eq!(invalid.status, 401);
        assert_eq!(
            answer(&refused),
            answer(&invalid),
            "a challenge at the mfa step changed the password"
        );
        // Nothing changed: the owner's password still works, the attacker's does not, and
        // the owner's session lives.
        assert_eq!(login(&live, "127.0.40.4", "half.creds", stolen).status, 401);
        let again = login(&live, "127.0.40.4", "half.creds", SIGNED_IN_PASSWORD);
        assert_eq!(again.body["next"], "mfa", "{}", again.body);
        assert_eq!(whoami(&live, &owner), 200);

        // Two challenges opened with the one-time password (the owner's, and one kept by
        // whoever else saw it). The owner's change ends the other one.
        let c1 = login(&live, "127.0.40.5", "fresh.user", otp2);
        let c2 = login(&live, "127.0.40.5", "fresh.user", otp2);
        let (c1, c2) = (
            c1.body["challenge"].as_str().unwrap().to_owned(),
            c2.body["challenge"].as_str().unwrap().to_owned(),
        );
        let r = post(
            &live,
            "127.0.40.6",
            "/auth/password",
            &json!({"challenge": c1, "new_password": SIGNED_IN_PASSWORD}),
        );
        assert_eq!(r.body["next"], "enroll_mfa", "{}", r.body);
        let hijack = post(
            &live,
            "127.0.40.6",
            "/auth/mfa/enroll",
            &json!({"challenge": c2}),
        );
        assert_eq!(
            hijack.status, 401,
            "a challenge older than the password change enrolled MFA: {}",
            hijack.body
        );
        // The owner's own challenge goes on.
        let r = post(
            &live,
            "127.0.40.6",
            "/auth/mfa/enroll",
            &json!({"challenge": c1}),
        );
        assert_eq!(r.status, 200, "{}", r.body);

        // An administrator's reset (the command line here) ends the user's sessions.
        stdout_ok(&cli(&live.data, &["user", "reset-password", "half.creds"]));
        assert_eq!(whoami(&live, &owner), 401);
    }

    /// Threat: sessions opened with an old password outlive its change (issue 20, finding 4,
    /// the self-service side; OWASP ASVS V3.3.3). An administrator whose password expired
    /// changes it at sign-in: the sessions opened before end at once. On the vault with a fake
    /// clock, so that the 90 days pass within the test.
    #[tokio::test]
    async fn sessions_a_self_service_password_change_ends_the_older_sessions() {
        use phivault_core::{Role, SecretString};
        use phivault_vault::VaultError;
        use phivault_vault::auth::{AuthPolicy, NextStep};
        use time::Duration;
        let s = |x: &str| SecretString::new(x.to_owned());
        let p = AuthPolicy::default();
        let si = common::signed_in::signed_in("org.admin", Role::OrgAdmin, SIGNED_IN_PASSWORD, p);
        let si = si.await;
        let (v, anon, clock) = (&si.vault, si.anon.clone(), &si.clock);
        let code = |_| si.code();
        // An hour before the password expires, a session is opened and kept busy.
        clock.advance(Duration::days(90) - Duration::hours(1));
        let c = v
            .login(&anon, "org.admin", s(SIGNED_IN_PASSWORD))
            .await
            .unwrap();
        assert_eq!(c.next, NextStep::Mfa);
        let old = v
            .complete_mfa(&anon, c.token.expose(), &code(&clock))
            .await
            .unwrap();
        for _ in 0..12 {
            clock.advance(Duration::minutes(10));
            v.authenticate(old.token.expose()).await.unwrap();
        }
        // The password expired: the sign-in changes it, and the old session ends.
        let c = v
            .login(&anon, "org.admin", s(SIGNED_IN_PASSWORD))
            .await
            .unwrap();
        assert_eq!(c.next, NextStep::ChangePassword);
        v.change_password(
            &anon,
            c.token.expose(),
            s("a fresh quartz lantern 2043 hums"),
        )
        .await
        .unwrap();
        assert!(
            matches!(
                v.authenticate(old.token.expose()).await,
                Err(VaultError::Unauthenticated(_))
            ),
            "a session opened before the password change lives on"
        );
        si.opened.close().await;
    }

    /// Threat: TOTP brute force (issue 20, finding 5; OWASP ASVS V2.2.1, V2.8.x; HIPAA
    /// §164.312(d)). Wrong codes count toward the account's lockout like wrong passwords; a
    /// challenge dies after 5 wrong codes (even the right code then gets the invalid-challenge
    /// answer; here both limits are 5, so `security_authfix.rs` tells the challenge's own
    /// limit apart from the lockout); a correct password alone does not reset the count, a completed sign-in does;
    /// every lockout is an audit event, counted per user in `phivault audit report`.
    #[test]
    fn sessions_totp_brute_force_kills_the_challenge_and_locks_the_account() {
        let (live, otps) = live_with_viewers(&["totp.victim", "slow.guesser"]);
        let (otp, otp2) = (&otps[0], &otps[1]);
        let victim = live.enroll("totp.victim", otp, "127.0.41.1");

        // The attacker has the password and guesses codes on one challenge.
        let r = login(&live, "127.0.41.2", "totp.victim", SIGNED_IN_PASSWORD);
        let challenge = r.body["challenge"].as_str().unwrap().to_owned();
        for code in wrong_codes(&victim.secret, 5) {
            let r = post(
                &live,
                "127.0.41.3",
                "/auth/mfa",
                &json!({"challenge": challenge, "code": code}),
            );
            assert_eq!(r.status, 401, "{}", r.body);
        }
        // Five wrong codes: the challenge is dead, even for a right (backup) code…
        let mfa = |c: &str, code: &str| {
            post(
                &live,
                "127.0.41.4",
                "/auth/mfa",
                &json!({"challenge": c, "code": code}),
            )
        };
        let late = mfa(&challenge, &victim.backup_codes[0]);
        let invalid = mfa("not-a-challenge-at-all-0123456789abcdef", "123456");
        assert_eq!(
            answer(&late),
            answer(&invalid),
            "a challenge outlived 5 wrong codes: {}",
            late.body
        );
        // …and the account is locked: the right password is refused for now.
        assert_eq!(
            login(&live, "127.0.41.5", "totp.victim", SIGNED_IN_PASSWORD).status,
            401,
            "5 wrong codes did not lock the account"
        );

        // A slower guesser: only a completed sign-in resets the count, a right password not.
        let guesser = live.enroll("slow.guesser", otp2, "127.0.42.1");
        let wrong = "not the password of this user 1";
        for _ in 0..2 {
            assert_eq!(
                login(&live, "127.0.42.2", "slow.guesser", wrong).status,
                401
            );
        }
        let r = login(&live, "127.0.42.3", "slow.guesser", SIGNED_IN_PASSWORD);
        let c = r.body["challenge"].as_str().unwrap().to_owned();
        let r = mfa(&c, &guesser.backup_codes[0]);
        assert_eq!(r.status, 200, "the owner signs in: {}", r.body);
        for _ in 0..4 {
            assert_eq!(
                login(&live, "127.0.42.4", "slow.guesser", wrong).status,
                401
            );
        }
        // 4 failures since the last sign-in: the right password still opens a challenge…
        let r = login(&live, "127.0.42.5", "slow.guesser", SIGNED_IN_PASSWORD);
        assert_eq!(r.status, 200, "{}", r.body);
        let c = r.body["challenge"].as_str().unwrap().to_owned();
        // …but does not reset the count: one wrong code is the fifth failure.
        let code = wrong_codes(&guesser.secret, 1).remove(0);
        assert_eq!(mfa(&c, &code).status, 401);
        assert_eq!(
            login(&live, "127.0.42.6", "slow.guesser", SIGNED_IN_PASSWORD).status,
            401,
            "a right password reset the failure count"
        );

        // Both lockouts are in the audit report, per user.
        let report = audit_report(&live, None);
        assert_eq!(
            report["lockouts"],
            json!({"user:totp.victim": 1, "user:slow.guesser": 1}),
            "{report:#}"
        );
    }
}

mod admin {
    use super::*;

    /// Threat: an ORG_ADMIN becomes a clinician (issue 20, finding 12; HIPAA §164.308(a)(3)
    /// workforce security, §164.312(b) audit controls; OWASP ASVS V2.5). An administrator's
    /// reset clears the person's MFA, so the next sign-in must change the password and enroll
    /// TOTP again; and `phivault audit report` flags the same administrator's reset followed
    /// by PHI reads of that account within 24 hours.
    #[test]
    fn admin_reset_then_sign_in_as_the_clinician_is_flagged() {
        let (mut boss, mut dr, mut ehr) = (String::new(), String::new(), String::new());
        let live = Live::start(|d| {
            boss = add_user(d, "org.boss", "ORG_ADMIN");
            dr = add_user(d, "dr.target", "CLINICIAN");
            ehr = Live::client(d, "ehr", "INTEGRATION_MANAGER", "system/*.cruds", "TREAT");
        });
        let admin = live.sign_in("org.boss", &boss, "127.0.43.1");
        let clinician = live.sign_in("dr.target", &dr, "127.0.43.2");
        let p = live.fhir(
            "POST",
            "/fhir/Patient",
            &live.token(&ehr),
            "TREAT",
            Some(&json!({"resourceType": "Patient",
                "identifier": [{"system": "urn:test:mrn", "value": "TAKEOVER-1"}],
                "name": [{"family": "Takeoverfamily"}]})),
        );
        let pid = p.body["id"].as_str().unwrap().to_owned();

        // The administrator resets the clinician's password only: the clinician's session
        // ends and its MFA goes with the password.
        let r = live.call(
            "POST",
            "/admin/users/dr.target/reset-password",
            Some(&admin),
            None,
            None,
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(whoami(&live, &clinician), 401);
        let reset_otp = r.body["one_time_password"].as_str().unwrap().to_owned();
        // The next sign-in must change the password and then enroll a new authenticator
        // (`Live::enroll` checks that the step after the password is `enroll_mfa`, not `mfa`,
        // which would mean the old TOTP survived the reset). The administrator does it, with
        // its own authenticator: the takeover. It grants the account access and reads the
        // patient as the clinician.
        let as_dr = live.enroll("dr.target", &reset_otp, "127.0.43.3").token;
        let g = live.post_from(
            "127.0.43.5",
            "/admin/grants",
            Some(&admin),
            &json!({"username": "dr.target", "patient": pid, "purpose": "TREAT"}),
        );
        assert_eq!(g.status, 200, "{}", g.body);
        let read = live.fhir(
            "GET",
            &format!("/fhir/Patient/{pid}"),
            &as_dr,
            "TREAT",
            None,
        );
        assert_eq!(read.status, 200, "{}", read.body);

        let report = audit_report(&live, None);
        let flags = report["reset_then_reads"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            flags.iter().any(|f| f["admin"] == "user:org.boss"
                && f["account"] == "user:dr.target"
                && f["reads"].as_u64().unwrap_or(0) >= 1),
            "the reset followed by reads is not flagged: {report:#}"
        );
        let text = stdout_ok(&cli(
            &live.data,
            &["audit", "report", "--since", "2000-01-01"],
        ));
        assert!(
            text.contains("user:org.boss") && text.contains("reset"),
            "{text}"
        );
    }

    /// Threat: usernames as a cross-organization oracle (issue 20, finding 14; OWASP API3
    /// excessive data exposure; HIPAA §164.308(a)(4) isolating organizations). An ORG_ADMIN
    /// of organization B creating a user whose name exists only in organization A gets the
    /// same answer as for a fresh name. Signing in cannot tell them apart either: once the
    /// vault has several organizations, a sign-in must name its `organization`, and without
    /// it every name (held elsewhere, held only here, or not at all) is answered exactly like
    /// a wrong password; names are looked up only inside the named organization.
    #[test]
    fn admin_usernames_of_other_organizations_are_not_revealed() {
        let (mut a_otp, mut b_admin) = (String::new(), String::new());
        let live = Live::start(|d| {
            a_otp = add_user(d, "shared.name", "VIEWER");
            stdout_ok(&cli(d, &["org", "add", "clinic-b"]));
            let out = cli(
                d,
                &[
                    "user",
                    "add",
                    "--org",
                    "clinic-b",
                    "--username",
                    "b.admin",
                    "--role",
                    "ORG_ADMIN",
                    "--json",
                ],
            );
            b_admin = json_of(&out)["one_time_password"]
                .as_str()
                .unwrap()
                .to_owned();
        });
        // With several organizations, a sign-in names its organization.
        let admin = live.sign_in_in("clinic-b", "b.admin", &b_admin, "127.0.44.1");
        let add = |name: &str| {
            let body = json!({"username": name, "role": "VIEWER"});
            live.post_from("127.0.44.5", "/admin/users", Some(&admin), &body)
        };
        let taken_elsewhere = add("shared.name");
        let fresh = add("fresh.name");
        assert_eq!(
            (taken_elsewhere.status, fresh.status),
            (200, 200),
            "another organization's username was revealed: {}",
            taken_elsewhere.body
        );
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&taken_elsewhere.body), keys(&fresh.body));
        // Its own organization's names are still refused.
        assert_eq!(add("fresh.name").status, 400);

        // Without an organization, every name is answered exactly like a wrong password,
        // whether another organization holds it or not (no oracle), even with the right
        // password (B cannot tell its one-time passwords apart from A's users either).
        let otp_of = |r: &Resp| r.body["one_time_password"].as_str().unwrap().to_owned();
        let (b_otp, fresh_otp) = (otp_of(&taken_elsewhere), otp_of(&fresh));
        let wrong = login(
            &live,
            "127.0.44.2",
            "b.admin",
            "certainly not the password 1",
        );
        let no_org = [
            ("shared.name", b_otp.as_str()),
            ("fresh.name", fresh_otp.as_str()),
            ("b.admin", SIGNED_IN_PASSWORD),
        ];
        for (i, (name, pw)) in no_org.into_iter().enumerate() {
            let r = login(&live, &format!("127.0.44.{}", 6 + i), name, pw);
            assert_eq!(answer(&r), answer(&wrong), "{name} without an organization");
        }
        for (org, otp) in [("clinic-b", &b_otp), ("default", &a_otp)] {
            let r = post(
                &live,
                "127.0.44.3",
                "/auth/login",
                &json!({"username": "shared.name", "password": otp, "organization": org}),
            );
            assert_eq!(r.body["next"], "change_password", "{org}: {}", r.body);
        }
        // The wrong organization is a wrong password too.
        let r = post(
            &live,
            "127.0.44.4",
            "/auth/login",
            &json!({"username": "b.admin", "password": SIGNED_IN_PASSWORD,
                "organization": "default"}),
        );
        assert_eq!(answer(&r), answer(&wrong));
    }
}
