//! Administering service clients in the control store, one set of checks run against both
//! backends (SQLite files; a real PostgreSQL, skipped outside CI when none answers): listing
//! by organization, disable / enable / new secret / revoke-tokens, each committed with the
//! revocation of that client's bearer tokens only, and live grants by organization.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use phivault_core::{
    ClientChange, ClientRecord, ControlStore, GrantRecord, OrgId, Role, SessionRecord,
};
use std::sync::Arc;

fn client(id: &str, org: &OrgId, name: &str) -> ClientRecord {
    ClientRecord {
        id: id.into(),
        org: org.clone(),
        name: name.into(),
        role: Role::IntegrationManager,
        scopes: "system/Patient.rs".into(),
        purposes: "TREAT".into(),
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
    }
}

async fn revoked(c: &dyn ControlStore, byte: u8) -> bool {
    c.session(&[byte; 32]).await.unwrap().unwrap().revoked
}

async fn administers_clients(c: Arc<dyn ControlStore>) {
    let (home, away) = (OrgId::parse("home").unwrap(), OrgId::parse("away").unwrap());
    for cl in [
        client("pvc-b", &home, "lab"),
        client("pvc-a", &home, "ehr"),
        client("pvc-c", &away, "rival"),
    ] {
        assert!(c.create_client(&cl).await.unwrap());
    }
    let names = |v: Vec<ClientRecord>| v.into_iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(names(c.clients(Some(&home)).await.unwrap()), ["ehr", "lab"]);
    assert_eq!(
        names(c.clients(None).await.unwrap()),
        ["rival", "ehr", "lab"]
    );
    // Two tokens of pvc-a, one of pvc-b, and a (hypothetical) non-bearer record naming pvc-a.
    for s in [
        token(1, "bearer", "pvc-a", &home),
        token(2, "bearer", "pvc-a", &home),
        token(3, "bearer", "pvc-b", &home),
        token(4, "session", "pvc-a", &home),
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
    assert!(revoked(&*c, 1).await && revoked(&*c, 2).await);
    assert!(!revoked(&*c, 3).await, "another client's token");
    assert!(!revoked(&*c, 4).await, "not a bearer token");
    assert_eq!(
        c.change_client("pvc-a", &ClientChange::Enable)
            .await
            .unwrap(),
        Some(0)
    );
    assert!(!c.client("pvc-a").await.unwrap().unwrap().disabled);
    assert!(revoked(&*c, 1).await, "enabling revives no token");
    let new = ClientChange::Secret(vec![9; 32]);
    assert_eq!(c.change_client("pvc-b", &new).await.unwrap(), Some(1));
    let b = c.client("pvc-b").await.unwrap().unwrap();
    assert_eq!((b.secret_hash, b.disabled), (vec![9; 32], false));
    c.put_session(&token(5, "bearer", "pvc-b", &home))
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
        ("g1", &home, 300, false),
        ("g2", &home, 100, false),
        ("g3", &home, 300, true),
        ("g4", &away, 300, false),
    ] {
        let g = GrantRecord {
            id: id.into(),
            org: org.clone(),
            user_id: "u1".into(),
            patient: "p-pseudonym".into(),
            purpose: "TREAT".into(),
            kind: "grant".into(),
            reason_sealed: None,
            granted_by: "admin".into(),
            created_at: 50,
            expires_at,
            revoked,
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
    assert_eq!(live, ["g1"], "live, unrevoked, this organization's");
}

#[tokio::test]
async fn sqlite_control_store_administers_clients() {
    let dir = tempfile::tempdir().unwrap();
    let stores = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    administers_clients(stores.control.clone()).await;
}

#[tokio::test]
async fn postgres_control_store_administers_clients() {
    let Some(pool) = common::pool().await else {
        return;
    };
    let schema = common::schema("clientadmin");
    let store = phivault_store::postgres::PostgresControlStore::open(pool.clone(), &schema)
        .await
        .unwrap();
    administers_clients(Arc::new(store)).await;
    common::drop_schema(&pool, &schema).await;
}
