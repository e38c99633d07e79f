//! The control store's behaviour, one set of checks run against both backends (SQLite files;
//! a real PostgreSQL, skipped outside CI when none answers): organizations, the wrapped
//! keyring, settings, users, TOTP steps, backup codes, sessions, grants, clients and their
//! administration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::user;
use phivault_core::{
    ClientChange, ClientRecord, ControlStore, GrantRecord, KeyringEntry, OrgId, Organization,
    RecordKey, ResourceId, ResourceType, Role, SessionRecord, StoreKind, Tombstone,
};
use std::sync::Arc;

/// A live TREAT grant of user `u1` to one patient, from 100 to 200.
fn grant(id: &str, org: &OrgId) -> GrantRecord {
    GrantRecord {
        id: id.into(),
        org: org.clone(),
        user_id: "u1".into(),
        patient: "p-pseudonym".into(),
        purpose: "TREAT".into(),
        kind: "grant".into(),
        reason_sealed: None,
        granted_by: "admin".into(),
        created_at: 100,
        expires_at: 200,
        revoked: false,
    }
}

async fn behaves(c: Arc<dyn ControlStore>) {
    let org = OrgId::parse("default").unwrap();
    let other = OrgId::parse("other").unwrap();
    for (o, name) in [(&org, "Default"), (&other, "Other")] {
        let made = Organization {
            id: o.clone(),
            name: name.into(),
            created_at: 5,
        };
        assert!(c.create_organization(&made).await.unwrap());
        assert!(
            !c.create_organization(&made).await.unwrap(),
            "no second organization of one id"
        );
    }
    assert_eq!(c.organizations().await.unwrap().len(), 2);
    // Settings and the keyring.
    assert_eq!(c.get_setting("k").await.unwrap(), None);
    c.put_setting("k", "1").await.unwrap();
    c.put_setting("k", "2").await.unwrap();
    assert_eq!(c.get_setting("k").await.unwrap().as_deref(), Some("2"));
    // Counters: one atomic step each, so counts made at once are all kept.
    let bumps: Vec<_> = (0..16)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.bump_counter("n").await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for b in bumps {
        seen.push(b.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=16).collect::<Vec<i64>>());
    assert_eq!(c.get_setting("n").await.unwrap().as_deref(), Some("16"));
    let entry = |p: &str, v: u32| KeyringEntry {
        purpose: p.into(),
        version: v,
        wrapped: vec![v as u8; 60],
        created_at: 9,
    };
    c.add_keyring_entries(&[entry("kek", 1), entry("pepper", 1)])
        .await
        .unwrap();
    c.add_keyring_entries(&[entry("kek", 2)]).await.unwrap();
    assert!(
        c.add_keyring_entries(&[entry("kek", 2)]).await.is_err(),
        "a key version is written once"
    );
    let ring = c.keyring().await.unwrap();
    assert_eq!(
        ring.iter()
            .map(|e| (e.purpose.as_str(), e.version))
            .collect::<Vec<_>>(),
        [("kek", 1), ("kek", 2), ("pepper", 1)]
    );
    // Retiring a KEK version removes that entry only, once.
    c.add_keyring_entries(&[entry("kek", 3)]).await.unwrap();
    assert!(c.remove_keyring_entry("kek", 1).await.unwrap());
    assert!(!c.remove_keyring_entry("kek", 1).await.unwrap());
    let ring = c.keyring().await.unwrap();
    assert_eq!(
        ring.iter()
            .map(|e| (e.purpose.as_str(), e.version))
            .collect::<Vec<_>>(),
        [("kek", 2), ("kek", 3), ("pepper", 1)]
    );
    assert!(c.remove_keyring_entry("kek", 3).await.unwrap());
    // Users.
    assert!(c.create_user(&user("u1", "nora", &org)).await.unwrap());
    assert!(
        !c.create_user(&user("u2", "nora", &org)).await.unwrap(),
        "usernames are unique within an organization"
    );
    assert!(c.create_user(&user("u3", "otto", &other)).await.unwrap());
    let mut u = c.user_by_name(&org, "nora").await.unwrap().unwrap();
    assert_eq!(u.id, "u1");
    assert_eq!(c.user_by_name(&other, "nora").await.unwrap(), None);
    assert_eq!(c.users(Some(&org)).await.unwrap().len(), 1);
    assert_eq!(c.users(None).await.unwrap().len(), 2);
    // …not across organizations.
    assert!(c.create_user(&user("u4", "otto", &org)).await.unwrap());
    assert_eq!(
        c.user_by_name(&org, "otto").await.unwrap().unwrap().id,
        "u4"
    );
    assert_eq!(
        c.user_by_name(&other, "otto").await.unwrap().unwrap().id,
        "u3"
    );
    assert_eq!(c.users(None).await.unwrap().len(), 3);
    u.failed_logins = 3;
    u.locked_until = Some(77);
    u.totp_sealed = Some(vec![1, 2, 3]);
    u.mfa_enrolled = true;
    c.update_user(&u).await.unwrap();
    assert_eq!(c.user_by_id("u1").await.unwrap().unwrap(), u);
    // Failed sign-in steps are counted atomically, and lock the account when asked to.
    let lock = |n: i64| (n >= 5).then_some(n * 100);
    assert_eq!(c.count_login_failure("u1", &lock).await.unwrap(), (4, None));
    assert_eq!(
        c.count_login_failure("u1", &lock).await.unwrap(),
        (5, Some(500))
    );
    let racing: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let (n, _) = c.count_login_failure("u1", &|_| None).await.unwrap();
                n
            })
        })
        .collect();
    let mut counts = Vec::new();
    for r in racing {
        counts.push(r.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (6..=15).collect::<Vec<i64>>(), "no failure is lost");
    let locked = c.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!((locked.failed_logins, locked.locked_until), (15, Some(500)));
    assert!(c.accept_totp_step("u1", 100).await.unwrap());
    assert!(
        !c.accept_totp_step("u1", 100).await.unwrap(),
        "a TOTP step is used once"
    );
    assert!(!c.accept_totp_step("u1", 99).await.unwrap());
    c.set_backup_codes("u1", &[vec![1; 32], vec![2; 32]])
        .await
        .unwrap();
    assert!(c.use_backup_code("u1", &[1; 32], 5).await.unwrap());
    assert!(
        !c.use_backup_code("u1", &[1; 32], 6).await.unwrap(),
        "a backup code is used once"
    );
    c.set_backup_codes("u1", &[]).await.unwrap();
    assert!(
        !c.use_backup_code("u1", &[2; 32], 7).await.unwrap(),
        "reset codes are gone"
    );
    // Sessions.
    let s = SessionRecord {
        token_hash: vec![9; 32],
        kind: "session".into(),
        subject: "u1".into(),
        org: org.clone(),
        created_at: 10,
        last_seen_at: 10,
        expires_at: 1000,
        revoked: false,
        scopes: String::new(),
        purpose: Some("TREAT".into()),
    };
    c.put_session(&s).await.unwrap();
    c.touch_session(&s.token_hash, 20).await.unwrap();
    assert_eq!(
        c.session(&s.token_hash)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        20
    );
    assert!(c.revoke_session(&s.token_hash).await.unwrap());
    assert!(!c.revoke_session(&s.token_hash).await.unwrap());
    let s2 = SessionRecord {
        token_hash: vec![8; 32],
        ..s.clone()
    };
    c.put_session(&s2).await.unwrap();
    assert_eq!(c.revoke_sessions_of("u1").await.unwrap(), 1);
    assert!(c.session(&s2.token_hash).await.unwrap().unwrap().revoked);
    // A challenge counts its second-factor attempts; a password change revokes all but it.
    let ch = SessionRecord {
        token_hash: vec![7; 32],
        kind: "challenge".into(),
        ..s.clone()
    };
    c.put_session(&ch).await.unwrap();
    assert_eq!(c.count_challenge_attempt(&ch.token_hash).await.unwrap(), 1);
    assert_eq!(c.count_challenge_attempt(&ch.token_hash).await.unwrap(), 2);
    assert_eq!(c.count_challenge_attempt(&[6; 32]).await.unwrap(), 0);
    let s3 = SessionRecord {
        token_hash: vec![5; 32],
        ..s.clone()
    };
    c.put_session(&s3).await.unwrap();
    assert_eq!(
        c.revoke_sessions_except("u1", &ch.token_hash)
            .await
            .unwrap(),
        1
    );
    assert!(!c.session(&ch.token_hash).await.unwrap().unwrap().revoked);
    assert!(c.session(&s3.token_hash).await.unwrap().unwrap().revoked);
    // Grants.
    let g = grant("g1", &org);
    c.put_grant(&g).await.unwrap();
    assert!(c.extend_grant("g1", 300).await.unwrap());
    assert_eq!(
        c.latest_grant(&org, "u1", "p-pseudonym")
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        300
    );
    assert!(
        c.latest_grant(&other, "u1", "p-pseudonym")
            .await
            .unwrap()
            .is_none(),
        "tenancy"
    );
    assert_eq!(c.revoke_grants(&org, 250).await.unwrap(), 1);
    assert!(
        c.latest_grant(&org, "u1", "p-pseudonym")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !c.extend_grant("g1", 400).await.unwrap(),
        "a revoked grant is not renewed"
    );
    // Clients.
    let cl = new_client("pvc-1", &org, "lab");
    assert!(c.create_client(&cl).await.unwrap());
    assert!(!c.create_client(&cl).await.unwrap());
    assert_eq!(c.client("pvc-1").await.unwrap().unwrap(), cl);
    assert!(c.client("nope").await.unwrap().is_none());
    // An organization's default purpose per role: set, replaced, cleared, per organization.
    let (nurse, clin) = (Role::Nurse, Role::Clinician);
    assert_eq!(c.role_default_purpose(&org, nurse).await.unwrap(), None);
    c.set_role_default_purpose(&org, nurse, Some("TREAT"))
        .await
        .unwrap();
    c.set_role_default_purpose(&org, nurse, Some("HOPERAT"))
        .await
        .unwrap();
    c.set_role_default_purpose(&org, clin, Some("TREAT"))
        .await
        .unwrap();
    let got = c.role_default_purpose(&org, nurse).await.unwrap();
    assert_eq!(got.as_deref(), Some("HOPERAT"));
    assert_eq!(c.role_default_purpose(&other, nurse).await.unwrap(), None);
    c.set_role_default_purpose(&org, nurse, None).await.unwrap();
    assert_eq!(c.role_default_purpose(&org, nurse).await.unwrap(), None);
    let got = c.role_default_purpose(&org, clin).await.unwrap();
    assert_eq!(got.as_deref(), Some("TREAT"));
}

/// An enabled INTEGRATION_MANAGER client.
fn new_client(id: &str, org: &OrgId, name: &str) -> ClientRecord {
    ClientRecord {
        id: id.into(),
        org: org.clone(),
        name: name.into(),
        role: Role::IntegrationManager,
        scopes: "system/Patient.rs".into(),
        purposes: "TREAT HOPERAT".into(),
        default_purpose: Some("TREAT".into()),
        secret_hash: vec![3; 32],
        disabled: false,
        created_at: 1,
    }
}

fn token(byte: u8, kind: &str, subject: &str, org: &OrgId) -> SessionRecord {
    SessionRecord {
        token_hash: vec![byte; 32],
        kind: kind.into(),
        subject: subject.into(),
        org: org.clone(),
        created_at: 1,
        last_seen_at: 1,
        expires_at: 1_000,
        revoked: false,
        scopes: String::new(),
        purpose: None,
    }
}

async fn revoked(c: &dyn ControlStore, byte: u8) -> bool {
    c.session(&[byte; 32]).await.unwrap().unwrap().revoked
}

/// Administering service clients: listing by organization, disable / enable / new secret /
/// revoke-tokens, each committed with the revocation of that client's bearer tokens only, and
/// live grants by organization.
async fn administers_clients(c: Arc<dyn ControlStore>) {
    let (home, away) = (OrgId::parse("home").unwrap(), OrgId::parse("away").unwrap());
    for cl in [
        new_client("pvc-b", &home, "lab"),
        new_client("pvc-a", &home, "ehr"),
        new_client("pvc-c", &away, "rival"),
    ] {
        assert!(c.create_client(&cl).await.unwrap());
    }
    let names = |v: Vec<ClientRecord>| v.into_iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(names(c.clients(Some(&home)).await.unwrap()), ["ehr", "lab"]);
    let all = c.clients(None).await.unwrap();
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|c| (c.org.as_str(), c.name.as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "by organization and name");
    assert!(
        ["pvc-a", "pvc-b", "pvc-c"]
            .iter()
            .all(|id| all.iter().any(|c| c.id == *id))
    );
    // Two tokens of pvc-a, one of pvc-b, and a (hypothetical) non-bearer record naming pvc-a.
    for s in [
        token(101, "bearer", "pvc-a", &home),
        token(102, "bearer", "pvc-a", &home),
        token(103, "bearer", "pvc-b", &home),
        token(104, "session", "pvc-a", &home),
    ] {
        c.put_session(&s).await.unwrap();
    }
    assert_eq!(
        c.change_client("pvc-a", &ClientChange::Disable)
            .await
            .unwrap(),
        Some(2)
    );
    assert!(c.client("pvc-a").await.unwrap().unwrap().disabled);
    assert!(revoked(&*c, 101).await && revoked(&*c, 102).await);
    assert!(!revoked(&*c, 103).await, "another client's token");
    assert!(!revoked(&*c, 104).await, "not a bearer token");
    assert_eq!(
        c.change_client("pvc-a", &ClientChange::Enable)
            .await
            .unwrap(),
        Some(0)
    );
    assert!(!c.client("pvc-a").await.unwrap().unwrap().disabled);
    assert!(revoked(&*c, 101).await, "enabling revives no token");
    let new = ClientChange::Secret(vec![9; 32]);
    assert_eq!(c.change_client("pvc-b", &new).await.unwrap(), Some(1));
    let b = c.client("pvc-b").await.unwrap().unwrap();
    assert_eq!((b.secret_hash, b.disabled), (vec![9; 32], false));
    c.put_session(&token(105, "bearer", "pvc-b", &home))
        .await
        .unwrap();
    assert_eq!(
        c.change_client("pvc-b", &ClientChange::RevokeTokens)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        c.client("pvc-b").await.unwrap().unwrap().secret_hash,
        vec![9; 32]
    );
    assert_eq!(
        c.change_client("nope", &ClientChange::Disable)
            .await
            .unwrap(),
        None
    );
    // Live grants, by organization.
    for (id, org, expires_at, revoked) in [
        ("ga1", &home, 300, false),
        ("ga2", &home, 100, false),
        ("ga3", &home, 300, true),
        ("ga4", &away, 300, false),
    ] {
        let g = GrantRecord {
            expires_at,
            revoked,
            ..grant(id, org)
        };
        c.put_grant(&g).await.unwrap();
    }
    let live: Vec<String> = c
        .live_grants_in(&home, 200)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(live, ["ga1"], "live, unrevoked, this organization's");
}

/// Tombstones of crypto-shredded records: recorded once (idempotent, the first erasure time
/// kept), listed oldest first, kept apart by organization and store.
async fn keeps_tombstones(c: Arc<dyn ControlStore>) {
    assert!(c.tombstones().await.unwrap().is_empty());
    let t = |org: &str, store: StoreKind, rtype: &str, id: char, at: i64| Tombstone {
        org: OrgId::parse(org).unwrap(),
        store,
        key: RecordKey {
            rtype: ResourceType::parse_stored(rtype).unwrap(),
            id: ResourceId::parse(&id.to_string().repeat(64)).unwrap(),
        },
        erased_at: at,
    };
    let patient = t("default", StoreKind::Identity, "Patient", 'a', 20);
    let obs = t("default", StoreKind::Clinical, "Observation", 'b', 10);
    c.add_tombstones(&[patient.clone(), obs.clone()])
        .await
        .unwrap();
    // Again, later (an erasure run twice, a restore applying what is already recorded).
    let again = Tombstone {
        erased_at: 99,
        ..patient.clone()
    };
    c.add_tombstones(&[again, obs.clone()]).await.unwrap();
    // The same row id in another organization and in the other store are other records.
    let other_org = t("other", StoreKind::Identity, "Patient", 'a', 30);
    let other_store = t("default", StoreKind::Clinical, "Patient", 'a', 40);
    // A discarded HL7 error-queue entry (an internal type) leaves one too.
    let queued = t("default", StoreKind::Clinical, "hl7-error", 'c', 50);
    c.add_tombstones(&[other_org.clone(), other_store.clone(), queued.clone()])
        .await
        .unwrap();
    c.add_tombstones(&[]).await.unwrap();
    assert_eq!(
        c.tombstones().await.unwrap(),
        [obs, patient, other_org, other_store, queued]
    );
}

#[tokio::test]
async fn sqlite_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let stores = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    keeps_tombstones(stores.control.clone()).await;
    // They survive closing and opening the store again.
    stores.close().await;
    let stores = phivault_store::SqliteStores::open(dir.path(), false)
        .await
        .unwrap();
    assert_eq!(stores.control.tombstones().await.unwrap().len(), 5);
}

#[tokio::test]
async fn postgres_tombstones() {
    let Some(pool) = common::pool().await else {
        return;
    };
    let schema = common::schema("tombstones");
    let store = phivault_store::postgres::PostgresControlStore::open(pool.clone(), &schema)
        .await
        .unwrap();
    keeps_tombstones(Arc::new(store)).await;
    common::drop_schema(&pool, &schema).await;
}

#[tokio::test]
async fn sqlite_control_store_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let stores = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    behaves(stores.control.clone()).await;
    administers_clients(stores.control.clone()).await;
}

#[tokio::test]
async fn postgres_control_store_behaves() {
    let Some(pool) = common::pool().await else {
        return;
    };
    let schema = common::schema("control");
    let store = phivault_store::postgres::PostgresControlStore::open(pool.clone(), &schema)
        .await
        .unwrap();
    let store = Arc::new(store);
    behaves(store.clone()).await;
    administers_clients(store).await;
    common::drop_schema(&pool, &schema).await;
}
