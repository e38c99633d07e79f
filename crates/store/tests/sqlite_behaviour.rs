//! Behaviour of the SQLite record store on real files: optimistic concurrency, group commit
//! under concurrency, index lookups, paging, erasure, migrations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use phivault_core::{
    Digest32, Expected, IndexKind, OrgId, RecordKey, RecordStore, RecordWrite, ResourceId,
    ResourceType, SealedRecord, StoreError, Version, WriteOutcome,
};
use phivault_store::SqliteStores;
use std::sync::Arc;

fn org() -> OrgId {
    OrgId::parse("default").unwrap()
}

fn rec(id: &str, version: u64, link: Option<u8>) -> SealedRecord {
    SealedRecord {
        rtype: ResourceType::parse("Observation").unwrap(),
        id: ResourceId::parse(id).unwrap(),
        version: Version(version),
        deleted: false,
        link: link.map(|b| Digest32([b; 32])),
        kek_version: 1,
        wrapped_dek: vec![1, 2, 3],
        ciphertext: format!("sealed-{id}-{version}").into_bytes(),
        updated_at: 0,
    }
}

fn write(r: SealedRecord, expected: Expected) -> RecordWrite {
    RecordWrite {
        record: r,
        expected,
        index: vec![(IndexKind::Phone, Digest32([9; 32]))],
    }
}

fn key(id: &str) -> RecordKey {
    RecordKey {
        rtype: ResourceType::parse("Observation").unwrap(),
        id: ResourceId::parse(id).unwrap(),
    }
}

#[tokio::test]
async fn versions_are_checked_optimistically() {
    let tmp = tempfile::tempdir().unwrap();
    let stores = SqliteStores::open(tmp.path(), true).await.unwrap();
    let s = stores.clinical.clone();
    let o = org();
    assert_eq!(
        s.write(&o, vec![write(rec("a", 1, None), Expected::Absent)], None)
            .await
            .unwrap(),
        [WriteOutcome::Written]
    );
    assert_eq!(
        s.write(&o, vec![write(rec("a", 1, None), Expected::Absent)], None)
            .await
            .unwrap(),
        [WriteOutcome::Conflict {
            current: Some(Version(1))
        }]
    );
    // A write must name the next version exactly.
    assert!(matches!(
        s.write(
            &o,
            vec![write(rec("a", 3, None), Expected::Version(Version(1)))],
            None
        )
        .await
        .unwrap()[..],
        [WriteOutcome::Conflict { .. }]
    ));
    assert_eq!(
        s.write(
            &o,
            vec![write(rec("a", 2, None), Expected::Version(Version(1)))],
            None
        )
        .await
        .unwrap(),
        [WriteOutcome::Written]
    );
    let head = s.head(&o, &key("a")).await.unwrap().unwrap();
    assert_eq!(head.version, Version(2));
    assert_eq!(head.ciphertext, b"sealed-a-2");
    let v1 = s.version(&o, &key("a"), Version(1)).await.unwrap().unwrap();
    assert_eq!(v1.ciphertext, b"sealed-a-1");
    // Another organization sees nothing.
    let other = OrgId::parse("other").unwrap();
    assert!(s.head(&other, &key("a")).await.unwrap().is_none());
    assert!(
        s.find(&other, IndexKind::Phone, &Digest32([9; 32]))
            .await
            .unwrap()
            .is_empty()
    );
    stores.close().await;
}

#[tokio::test]
async fn concurrent_writers_are_group_committed_without_losing_or_doubling_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let stores = SqliteStores::open(tmp.path(), true).await.unwrap();
    let s: Arc<dyn RecordStore> = stores.clinical.clone();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.write(
                &org(),
                vec![write(
                    rec(&format!("r{i}"), 1, Some(i as u8 % 4)),
                    Expected::Absent,
                )],
                None,
            )
            .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), [WriteOutcome::Written]);
    }
    // 16 racing creators of one record: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.write(
                &org(),
                vec![write(rec("contested", 1, None), Expected::Absent)],
                None,
            )
            .await
        }));
    }
    let mut written = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == [WriteOutcome::Written] {
            written += 1;
        }
    }
    assert_eq!(written, 1);
    // Paging sees every record once.
    let mut seen = 0;
    let mut after: Option<RecordKey> = None;
    loop {
        let page = s.page(&org(), after.as_ref(), 10).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(RecordKey {
            rtype: last.rtype,
            id: last.id.clone(),
        });
        seen += page.len();
    }
    assert_eq!(seen, 65);
    assert_eq!(
        s.linked(&org(), &Digest32([1; 32])).await.unwrap().len(),
        16
    );
    assert_eq!(
        s.find(&org(), IndexKind::Phone, &Digest32([9; 32]))
            .await
            .unwrap()
            .len(),
        65
    );
    // Erasing the records of one link removes them and their index entries.
    let keys = s.linked_keys(&org(), &Digest32([1; 32])).await.unwrap();
    assert_eq!(s.erase(&org(), &keys).await.unwrap(), 16);
    assert!(
        s.linked(&org(), &Digest32([1; 32]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.find(&org(), IndexKind::Phone, &Digest32([9; 32]))
            .await
            .unwrap()
            .len(),
        49
    );
    stores.close().await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_a_newer_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let stores = SqliteStores::open(tmp.path(), true).await.unwrap();
    stores.close().await;
    let stores = SqliteStores::open(tmp.path(), false).await.unwrap();
    stores.close().await;
    let raw = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(tmp.path().join("clinical.db")),
    )
    .await
    .unwrap();
    sqlx::query("INSERT INTO schema_migrations (version, name) VALUES (99, 'from the future')")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    match SqliteStores::open(tmp.path(), false).await {
        Err(StoreError::SchemaTooNew { store, found, .. }) => {
            assert_eq!((store, found), ("clinical", 99));
        }
        other => panic!("a newer schema was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn opening_without_create_does_not_make_files() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(SqliteStores::open(tmp.path(), false).await.is_err());
    assert!(!tmp.path().join("identity.db").exists());
}
