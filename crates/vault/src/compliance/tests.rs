//! Each check flips when the system changes: a fake clock ages keys, checkpoints, backups,
//! passwords and accounts; the stores are changed directly for the rest.
use super::*;
use crate::Stores;
use phivault_core::{Clock, FakeClock, GrantRecord, UserRecord};
use phivault_crypto::{KeyfileProvider, Keyring, Passphrase, RootKeyProvider};
use phivault_store::SqliteStores;
use std::sync::Arc;
use time::Duration;

struct Env {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    vault: Vault,
    clock: Arc<FakeClock>,
    ctx: Ctx,
}

/// A vault on SQLite in a temp dir, its keyring under a key file, on a fake clock.
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let clock = Arc::new(FakeClock::new(
        time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
    ));
    let pass = Passphrase::new("compliance unit tests 2041".into());
    let root = KeyfileProvider::create(&path.join("root.key"), &pass).unwrap();
    let (keyring, entries) = Keyring::generate(&root, clock.now_millis()).unwrap();
    let sqlite = SqliteStores::open(&path, true).await.unwrap();
    let stores = Stores {
        identity: sqlite.identity,
        clinical: sqlite.clinical,
        control: sqlite.control,
        audit: sqlite.audit,
    };
    stores.control.add_keyring_entries(&entries).await.unwrap();
    stores
        .control
        .put_setting(ROOT_KEY_PROVIDER, root.describe())
        .await
        .unwrap();
    let operator = crate::Operator::new(&keyring, "test");
    let vault = Vault::new(Arc::new(keyring), stores, clock.clone());
    let org = OrgId::parse("default").unwrap();
    let ctx = operator.ctx(org.clone());
    vault
        .create_organization(&ctx, &org, "default")
        .await
        .unwrap();
    Env {
        _dir: dir,
        path,
        vault,
        clock,
        ctx,
    }
}

impl Env {
    async fn status(&self, id: &str) -> (Status, String) {
        let r = self.vault.compliance_report(&self.ctx).await.unwrap();
        let c = r.checks.iter().find(|c| c.id == id).unwrap();
        (c.status, c.evidence.clone())
    }

    async fn user(&self, name: &str, role: Role) -> UserRecord {
        let org = self.ctx.org.clone();
        self.vault
            .add_user(&self.ctx, &org, name, role, false)
            .await
            .unwrap();
        self.vault
            .control
            .user_by_name(&org, name)
            .await
            .unwrap()
            .unwrap()
    }

    async fn enroll(&self, mut u: UserRecord) {
        u.mfa_enrolled = true;
        u.last_login_at = Some(self.clock.now_millis());
        self.vault.control.update_user(&u).await.unwrap();
    }

    fn advance_days(&self, days: i64) {
        self.clock.advance(Duration::days(days));
    }
}

#[tokio::test]
async fn compliance_report_has_every_check_in_order_with_its_paragraph() {
    let e = env().await;
    let r = e.vault.compliance_report(&e.ctx).await.unwrap();
    // (The ids and their order are pinned by bin/phivault/tests/compliance.rs.)
    let mut ids: Vec<&str> = r.checks.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    assert!(r.checks.iter().all(|c| c.safeguard.starts_with('§')));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["checks"][0].as_object().unwrap().len(), 4);
    assert!(r.to_text().contains("encryption-at-rest"));
}

#[tokio::test]
async fn compliance_kek_age_and_root_key_provider() {
    let e = env().await;
    assert_eq!(e.status("key-management").await.0, Status::Pass);
    e.advance_days(366);
    let (s, ev) = e.status("key-management").await;
    assert_eq!(s, Status::Fail, "{ev}");
    e.vault
        .set_compliance_policy(&e.ctx, "kek_max_age_days", 400)
        .await
        .unwrap();
    assert_eq!(e.status("key-management").await.0, Status::Pass);
    // The root key provider: an HSM passes, an unknown one fails.
    let provider = |p: &'static str| e.vault.control.put_setting(ROOT_KEY_PROVIDER, p);
    provider("pkcs11").await.unwrap();
    let (s, ev) = e.status("key-management").await;
    assert_eq!(s, Status::Pass);
    assert!(ev.contains("pkcs11 (HSM)"), "{ev}");
    provider("none").await.unwrap();
    let (s, ev) = e.status("key-management").await;
    assert_eq!(s, Status::Fail);
    assert!(ev.contains("not recorded or unknown"), "{ev}");
}

#[tokio::test]
async fn compliance_checkpoint_absent_old_and_fresh() {
    let e = env().await;
    let (s, ev) = e.status("audit-controls").await;
    assert_eq!(s, Status::Fail);
    assert!(ev.contains("No checkpoint"), "{ev}");
    e.vault.audit_checkpoint().await.unwrap();
    assert_eq!(e.status("audit-controls").await.0, Status::Pass);
    e.advance_days(8);
    let (s, ev) = e.status("audit-controls").await;
    assert_eq!(s, Status::Fail);
    assert!(ev.contains("too old"), "{ev}");
    e.vault.audit_checkpoint().await.unwrap();
    assert_eq!(e.status("audit-controls").await.0, Status::Pass);
}

#[tokio::test]
async fn compliance_backup_absent_then_recorded_then_old() {
    let e = env().await;
    let (s, ev) = e.status("backups").await;
    assert_eq!(
        (s, ev.as_str()),
        (Status::Fail, "no verified backup recorded")
    );
    e.vault.record_verified_backup(&e.ctx).await.unwrap();
    assert_eq!(e.status("backups").await.0, Status::Pass);
    e.advance_days(8);
    assert_eq!(e.status("backups").await.0, Status::Fail);
}

#[tokio::test]
async fn compliance_people_without_mfa_expired_admins_and_inactive_accounts() {
    let e = env().await;
    assert_eq!(e.status("person-authentication").await.0, Status::Pass);
    let nurse = e.user("nurse.one", Role::Nurse).await;
    let (s, ev) = e.status("person-authentication").await;
    assert_eq!(s, Status::Fail);
    assert!(ev.contains("Without MFA: default/nurse.one"), "{ev}");
    e.enroll(nurse).await;
    assert_eq!(e.status("person-authentication").await.0, Status::Pass);

    let admin = e.user("admin.one", Role::OrgAdmin).await;
    e.enroll(admin.clone()).await;
    assert_eq!(e.status("person-authentication").await.0, Status::Pass);
    // 91 days on: the admin's password is past the 90-day policy, and both accounts are idle.
    e.advance_days(91);
    let (s, ev) = e.status("person-authentication").await;
    assert_eq!(s, Status::Fail);
    assert!(
        ev.contains("Expired administrator passwords: default/admin.one"),
        "{ev}"
    );
    assert!(ev.contains("2 enabled accounts without a login"), "{ev}");
    let mut fresh = e
        .vault
        .control
        .user_by_name(&e.ctx.org, "admin.one")
        .await
        .unwrap()
        .unwrap();
    fresh.password_changed_at = e.clock.now_millis();
    e.enroll(fresh).await;
    e.vault
        .set_user_disabled(&e.ctx, "nurse.one", true)
        .await
        .unwrap();
    let (s, ev) = e.status("person-authentication").await;
    assert_eq!(s, Status::Pass, "{ev}");
}

fn grant(org: &OrgId, kind: &str, created: i64, secs: i64) -> GrantRecord {
    GrantRecord {
        id: phivault_crypto::random_uuid().unwrap(),
        org: org.clone(),
        user_id: "u1".into(),
        patient: "00".repeat(32),
        purpose: if kind == "break-glass" {
            "ETREAT"
        } else {
            "TREAT"
        }
        .into(),
        kind: kind.into(),
        reason_sealed: None,
        granted_by: "test".into(),
        created_at: created,
        expires_at: created + secs,
        revoked: false,
    }
}

#[tokio::test]
async fn compliance_long_grants_fail_and_open_break_glass_warns() {
    let e = env().await;
    let now = e.clock.now().unix_timestamp();
    let env = &e;
    let put = |kind: &'static str, secs: i64| {
        let g = grant(&env.ctx.org, kind, now, secs);
        async move { env.vault.control.put_grant(&g).await.unwrap() }
    };
    assert_eq!(e.status("access-control").await.0, Status::Pass);
    put("grant", 3600).await;
    assert_eq!(e.status("access-control").await.0, Status::Pass);
    put("break-glass", 15 * 60).await;
    let (s, ev) = e.status("access-control").await;
    assert_eq!(s, Status::Warn, "{ev}");
    put("grant", 30 * 86_400).await;
    let (s, ev) = e.status("access-control").await;
    assert_eq!(s, Status::Fail, "{ev}");
    assert!(ev.contains("lasts 43200 min"), "{ev}");
    e.vault.lockdown(&e.ctx).await.unwrap();
    assert_eq!(e.status("access-control").await.0, Status::Pass);
}

#[derive(Debug)]
struct FixedTransport(TransportEvidence);

impl TransportSource for FixedTransport {
    fn measure(&self) -> phivault_core::BoxFuture<'_, TransportEvidence> {
        let e = self.0.clone();
        Box::pin(async move { e })
    }
}

fn trial(version: TlsVersion, outcome: TrialOutcome) -> TlsTrial {
    TlsTrial {
        version,
        offered: "test".into(),
        outcome,
    }
}

fn measurement(old_accepted: bool) -> TlsMeasurement {
    let accepted = |s: &str| TrialOutcome::Accepted { suite: s.into() };
    TlsMeasurement {
        target: "test".into(),
        trials: vec![
            trial(TlsVersion::Tls13, accepted("TLS13_AES_256_GCM_SHA384")),
            trial(
                TlsVersion::Tls12,
                accepted("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
            ),
            trial(
                TlsVersion::Tls10,
                if old_accepted {
                    accepted("TLS_RSA_WITH_AES_128_CBC_SHA")
                } else {
                    TrialOutcome::Refused
                },
            ),
        ],
        error: None,
    }
}

#[tokio::test]
async fn compliance_transport_not_probed_warns_old_versions_fail() {
    let e = env().await;
    let (s, ev) = e.status("encryption-in-transit").await;
    assert_eq!(s, Status::Warn);
    assert!(ev.contains("not probed"), "{ev}");
    let with = |configured, probed| {
        e.vault
            .clone()
            .with_transport(Arc::new(FixedTransport(TransportEvidence {
                configured,
                probed,
            })))
    };
    let ctx = &e.ctx;
    let check = |v: Vault| async move {
        let r = v.compliance_report(ctx).await.unwrap();
        r.checks
            .into_iter()
            .find(|c| c.id == "encryption-in-transit")
            .unwrap()
    };
    let c = check(with(Some(measurement(false)), None)).await;
    assert_eq!(c.status, Status::Warn, "{}", c.evidence);
    let c = check(with(Some(measurement(false)), Some(measurement(false)))).await;
    assert_eq!(c.status, Status::Pass, "{}", c.evidence);
    assert!(c.evidence.contains("TLS1.0 refused"), "{}", c.evidence);
    let c = check(with(Some(measurement(false)), Some(measurement(true)))).await;
    assert_eq!(c.status, Status::Fail, "{}", c.evidence);
}

#[tokio::test]
async fn compliance_records_tampered_or_plaintext_rows_and_plaintext_columns() {
    let e = env().await;
    let (s, ev) = e.status("encryption-at-rest").await;
    assert_eq!(s, Status::Warn, "nothing stored yet: {ev}");
    let patient = serde_json::json!({"resourceType": "Patient", "id": "p1",
        "name": [{"family": "Quackenbush", "given": ["Theodora"]}], "birthDate": "1961-04-02"});
    e.vault.create(&e.ctx, patient.clone()).await.unwrap();
    assert_eq!(e.status("encryption-at-rest").await.0, Status::Pass);
    assert_eq!(e.status("integrity").await.0, Status::Pass);

    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        e.path.join("identity.db").display()
    ))
    .await
    .unwrap();
    let original: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM record_versions")
        .fetch_one(&pool)
        .await
        .unwrap();
    // A flipped bit: still ciphertext, but its tag fails.
    let mut flipped = original.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let set = |bytes: Vec<u8>| {
        let pool = pool.clone();
        async move {
            sqlx::query("UPDATE record_versions SET ciphertext = ?")
                .bind(bytes)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    set(flipped).await;
    let (s, ev) = e.status("integrity").await;
    assert_eq!(s, Status::Fail);
    assert!(
        ev.contains("identity Patient/") && !ev.contains("Quackenbush"),
        "{ev}"
    );
    assert_eq!(e.status("encryption-at-rest").await.0, Status::Warn);
    // The plaintext itself in the ciphertext column.
    set(patient.to_string().into_bytes()).await;
    let (s, ev) = e.status("encryption-at-rest").await;
    assert_eq!(s, Status::Fail);
    assert!(
        ev.contains("readable text") && !ev.contains("Quackenbush"),
        "{ev}"
    );
    set(original).await;
    assert_eq!(e.status("encryption-at-rest").await.0, Status::Pass);
    // A plaintext column added to the schema.
    sqlx::query("ALTER TABLE record_versions ADD COLUMN family_name TEXT")
        .execute(&pool)
        .await
        .unwrap();
    let (s, ev) = e.status("encryption-at-rest").await;
    assert_eq!(s, Status::Fail);
    assert!(ev.contains("record_versions.family_name (text)"), "{ev}");
}

#[tokio::test]
async fn compliance_report_is_audited_and_limited_to_admins_and_auditors() {
    let e = env().await;
    let r = e.vault.compliance_report(&e.ctx).await.unwrap();
    let head = e.vault.audit.head().await.unwrap().unwrap();
    let ev: crate::audit::AuditEvent = serde_json::from_str(&head.event).unwrap();
    assert_eq!(ev.action, "compliance-report");
    assert_eq!(ev.count, Some(r.checks.len() as u64));
    assert_eq!(
        ev.reason.unwrap(),
        format!(
            "pass:{} warn:{} fail:{}",
            r.count(Status::Pass),
            r.count(Status::Warn),
            r.count(Status::Fail)
        )
    );
    for (role, allowed) in [
        (Role::SuperAdmin, true),
        (Role::Auditor, true),
        (Role::OrgAdmin, false),
        (Role::Clinician, false),
        (Role::Nurse, false),
        (Role::Viewer, false),
        (Role::IntegrationManager, false),
    ] {
        let mut c = e.ctx.clone();
        c.subject = Subject::User(role);
        let got = e.vault.compliance_report(&c).await;
        assert_eq!(got.is_ok(), allowed, "{role}");
        assert_eq!(
            e.vault
                .set_compliance_policy(&c, "sample_size", 5)
                .await
                .is_ok(),
            role == Role::SuperAdmin,
            "{role}"
        );
    }
    assert!(
        e.vault
            .set_compliance_policy(&e.ctx, "no_such_thing", 5)
            .await
            .is_err()
    );
}
