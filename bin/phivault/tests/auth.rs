//! Authentication end to end on real stores with a fake clock: one-time passwords, forced
//! change, MFA enrollment, TOTP replay, backup codes, lockout, idle and absolute timeouts,
//! logout, disable — each leaving its audit event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::*;
use phivault_core::{Clock, FakeClock, Role, SecretString};
use phivault_crypto::totp;
use phivault_vault::audit::export::AuditFilter;
use phivault_vault::auth::NextStep;
use phivault_vault::{Ctx, VaultError};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

const STRONG: &str = "quartz lantern velvet 1987 migrates";

fn s(x: &str) -> SecretString {
    SecretString::new(x.to_owned())
}

fn unauth<T: std::fmt::Debug>(r: Result<T, VaultError>) {
    match r {
        Err(e @ VaultError::Unauthenticated(_)) => {
            assert_eq!(e.client_message(), "authentication failed")
        }
        other => panic!("expected an authentication failure, got {other:?}"),
    }
}

/// Threat: password brute force, TOTP replay, reused backup codes, sessions that never end
/// (HIPAA §164.312(d) authentication, (a)(2)(iii) automatic logoff; OWASP ASVS V2, V3).
#[tokio::test]
async fn password_mfa_sessions_lockout_and_timeouts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_vault(&dir).await;
    let start = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    let clock = Arc::new(FakeClock::new(start));
    let o = open_with_clock(&dir, clock.clone()).await;
    let admin = ctx(&o).await;
    let org = admin.org().clone();
    let anon = Ctx::anonymous(org.clone());
    let v = &o.vault;

    let new = v
        .add_user(&admin, &org, "nurse.jones", Role::Nurse, false)
        .await
        .unwrap();
    let otp = new.one_time_password.expose().clone();
    assert!(otp.len() >= 20);
    assert!(matches!(
        v.add_user(&admin, &org, "nurse.jones", Role::Nurse, false)
            .await,
        Err(VaultError::Invalid(_))
    ));

    // Unknown user and wrong password fail alike.
    unauth(v.login(&anon, "nobody.here", s(&otp)).await);
    unauth(
        v.login(&anon, "nurse.jones", s("wrong password entirely"))
            .await,
    );

    // First login: the one-time password must be changed, then MFA enrolled.
    let c = v.login(&anon, "nurse.jones", s(&otp)).await.unwrap();
    assert_eq!(c.next, NextStep::ChangePassword);
    assert!(matches!(
        v.enroll_mfa(&anon, c.token.expose()).await,
        Err(VaultError::Invalid(_))
    ));
    assert!(matches!(
        v.complete_mfa(&anon, c.token.expose(), "123456").await,
        Err(VaultError::Invalid(_))
    ));
    assert!(matches!(
        v.change_password(&anon, c.token.expose(), s("password1234"))
            .await,
        Err(VaultError::Invalid(_))
    ));
    let next = v
        .change_password(&anon, c.token.expose(), s(STRONG))
        .await
        .unwrap();
    assert_eq!(next, NextStep::EnrollMfa);
    // Without MFA there is no session: enrolling is all that is possible.
    let e = v.enroll_mfa(&anon, c.token.expose()).await.unwrap();
    assert_eq!(e.backup_codes.len(), 10);
    let seed = totp::seed_from_base32(e.secret_base32.expose()).unwrap();
    assert!(
        e.otpauth_uri
            .expose()
            .starts_with("otpauth://totp/phivault:nurse.jones")
    );
    let now = |c: &FakeClock| c.now().unix_timestamp() as u64;
    unauth(v.complete_mfa(&anon, c.token.expose(), "000000").await);
    let code = totp::code_at(&seed, now(&clock)).unwrap();
    let session = v
        .complete_mfa(&anon, c.token.expose(), &code)
        .await
        .unwrap();
    let p = v.authenticate(session.token.expose()).await.unwrap();
    assert_eq!((p.role(), p.org().clone()), (Role::Nurse, org.clone()));
    assert_eq!(p.actor().audit_name(), "user:nurse.jones");
    // The challenge is spent.
    unauth(v.complete_mfa(&anon, c.token.expose(), &code).await);

    // A TOTP code is accepted once: the same code on a new login is a replay.
    let c2 = v.login(&anon, "nurse.jones", s(STRONG)).await.unwrap();
    assert_eq!(c2.next, NextStep::Mfa);
    unauth(v.complete_mfa(&anon, c2.token.expose(), &code).await);
    // A backup code works once.
    let backup = e.backup_codes[3].expose().clone();
    v.complete_mfa(&anon, c2.token.expose(), &backup)
        .await
        .unwrap();
    let c3 = v.login(&anon, "nurse.jones", s(STRONG)).await.unwrap();
    unauth(v.complete_mfa(&anon, c3.token.expose(), &backup).await);
    // The next time step's code is fine.
    clock.advance(Duration::seconds(30));
    let code2 = totp::code_at(&seed, now(&clock)).unwrap();
    let s2 = v
        .complete_mfa(&anon, c3.token.expose(), &code2)
        .await
        .unwrap();

    // Idle timeout: 15 minutes without use ends a session; use keeps it alive.
    clock.advance(Duration::minutes(14));
    v.authenticate(s2.token.expose()).await.unwrap();
    clock.advance(Duration::minutes(14));
    v.authenticate(s2.token.expose()).await.unwrap();
    clock.advance(Duration::minutes(15));
    unauth(v.authenticate(s2.token.expose()).await);
    // Absolute timeout: 8 hours however busy.
    clock.advance(Duration::minutes(1));
    let c4 = v.login(&anon, "nurse.jones", s(STRONG)).await.unwrap();
    let s4 = v
        .complete_mfa(
            &anon,
            c4.token.expose(),
            &totp::code_at(&seed, now(&clock)).unwrap(),
        )
        .await
        .unwrap();
    for _ in 0..(8 * 60 / 10 - 1) {
        clock.advance(Duration::minutes(10));
        v.authenticate(s4.token.expose()).await.unwrap();
    }
    clock.advance(Duration::minutes(10));
    unauth(v.authenticate(s4.token.expose()).await);

    // Logout revokes.
    clock.advance(Duration::seconds(30));
    let c5 = v.login(&anon, "nurse.jones", s(STRONG)).await.unwrap();
    let s5 = v
        .complete_mfa(
            &anon,
            c5.token.expose(),
            &totp::code_at(&seed, now(&clock)).unwrap(),
        )
        .await
        .unwrap();
    let user_ctx = Ctx::for_principal(&p, None);
    v.logout(&user_ctx, s5.token.expose()).await.unwrap();
    unauth(v.authenticate(s5.token.expose()).await);

    // Lockout after 5 failures: even the right password is refused until the delay passes.
    for _ in 0..5 {
        unauth(
            v.login(&anon, "nurse.jones", s("not the password at all"))
                .await,
        );
    }
    unauth(v.login(&anon, "nurse.jones", s(STRONG)).await);
    clock.advance(Duration::minutes(2));
    let c6 = v.login(&anon, "nurse.jones", s(STRONG)).await.unwrap();
    clock.advance(Duration::seconds(30));
    let s6 = v
        .complete_mfa(
            &anon,
            c6.token.expose(),
            &totp::code_at(&seed, now(&clock)).unwrap(),
        )
        .await
        .unwrap();

    // Disabling a user ends its sessions at once and blocks login.
    v.set_user_disabled(&admin, "nurse.jones", true)
        .await
        .unwrap();
    unauth(v.authenticate(s6.token.expose()).await);
    unauth(v.login(&anon, "nurse.jones", s(STRONG)).await);
    v.set_user_disabled(&admin, "nurse.jones", false)
        .await
        .unwrap();
    // A password reset forces a change again; an MFA reset forces enrollment again.
    let otp2 = v.reset_password(&admin, "nurse.jones").await.unwrap();
    let c7 = v.login(&anon, "nurse.jones", otp2).await.unwrap();
    assert_eq!(c7.next, NextStep::ChangePassword);
    v.reset_mfa(&admin, "nurse.jones").await.unwrap();

    // Every step was audited: logins (ok and failed), MFA, logout, lockout, admin actions.
    let events = v
        .audit_events(&admin, &AuditFilter::default())
        .await
        .unwrap();
    let count = |action: &str, ok: bool| {
        events
            .iter()
            .filter(|e| {
                e.action == action && (e.outcome == phivault_vault::audit::Outcome::Success) == ok
            })
            .count()
    };
    assert!(count("login", true) >= 7, "{}", count("login", true));
    assert!(count("login", false) >= 9);
    assert!(count("mfa", true) >= 6);
    assert!(count("mfa", false) >= 4);
    assert_eq!(count("logout", true), 1);
    assert_eq!(count("password-change", true), 1);
    assert_eq!(count("mfa-enroll", true), 1);
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("locked")));
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("backup-code"))
    );
    for a in [
        "user-add",
        "user-disable",
        "user-enable",
        "password-reset",
        "mfa-reset",
    ] {
        assert!(count(a, true) >= 1, "{a}");
    }
    // No secret in any event.
    for e in &events {
        let text = serde_json::to_string(e).unwrap();
        for secret in [
            otp.as_str(),
            STRONG,
            backup.as_str(),
            code.as_str(),
            e.time.as_str(),
        ] {
            if secret != e.time {
                assert!(!text.contains(secret), "secret in audit event {}", e.seq);
            }
        }
    }
    // The report counts logins per user.
    let r = phivault_vault::audit::report::build("", &events);
    let jones = &r.logins["user:nurse.jones"];
    assert!(jones.success >= 6 && jones.failed >= 5, "{jones:?}");
    o.close().await;
}

#[tokio::test]
async fn administrators_passwords_expire_after_90_days() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_vault(&dir).await;
    let clock = Arc::new(FakeClock::new(
        OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
    ));
    let o = open_with_clock(&dir, clock.clone()).await;
    let admin = ctx(&o).await;
    let org = admin.org().clone();
    let anon = Ctx::anonymous(org.clone());
    let v = &o.vault;
    for (name, role) in [("org.admin", Role::OrgAdmin), ("viewer.one", Role::Viewer)] {
        let n = v.add_user(&admin, &org, name, role, false).await.unwrap();
        let c = v.login(&anon, name, n.one_time_password).await.unwrap();
        assert_eq!(
            v.change_password(&anon, c.token.expose(), s(STRONG))
                .await
                .unwrap(),
            NextStep::EnrollMfa
        );
    }
    clock.advance(Duration::days(89));
    assert_eq!(
        v.login(&anon, "org.admin", s(STRONG)).await.unwrap().next,
        NextStep::EnrollMfa
    );
    clock.advance(Duration::days(2));
    let c = v.login(&anon, "org.admin", s(STRONG)).await.unwrap();
    assert_eq!(
        c.next,
        NextStep::ChangePassword,
        "an admin password expires"
    );
    assert_eq!(
        v.login(&anon, "viewer.one", s(STRONG)).await.unwrap().next,
        NextStep::EnrollMfa,
        "others do not"
    );
    v.change_password(
        &anon,
        c.token.expose(),
        s("second quartz lantern 2042 walks"),
    )
    .await
    .unwrap();
    assert_eq!(
        v.login(&anon, "org.admin", s("second quartz lantern 2042 walks"))
            .await
            .unwrap()
            .next,
        NextStep::EnrollMfa
    );
    o.close().await;
}
