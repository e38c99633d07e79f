//! The record store's behaviour, one set of checks run against both backends (SQLite files;
//! a real PostgreSQL, `PHIVAULT_TEST_POSTGRES_URL`, skipped outside CI when none answers):
//! version checks, heads, history, blind-index replacement, links, paging, tombstones,
//! all-or-nothing writes, a failing before-commit hook, racing writers, erasure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use phivault_core::{
    Digest32, Expected, IndexKind, OrgId, RecordKey, RecordStore, RecordWrite, ResourceId,
    ResourceType, SealedRecord, StoreError, Version, WriteOutcome,
};
use std::sync::Arc;

fn rec(id: &str, version: u64, link: Option<u8>, deleted: bool) -> SealedRecord {
    SealedRecord {
        rtype: ResourceType::parse("Observation").unwrap(),
        id: ResourceId::parse(id).unwrap(),
        version: Version(version),
        deleted,
        link: link.map(|l| Digest32([l; 32])),
        kek_version: 1,
        wrapped_dek: if deleted { Vec::new() } else { vec![7; 40] },
        ciphertext: if deleted {
            Vec::new()
        } else {
            format!("sealed-{id}-{version}").into_bytes()
        },
        updated_at: 1_700_000_000_000 + version as i64,
    }
}

fn write(id: &str, version: u64, expected: Expected, digest: Option<u8>) -> RecordWrite {
    RecordWrite {
        record: rec(id, version, Some(1), false),
        expected,
        index: digest
            .map(|d| vec![(IndexKind::Phone, Digest32([d; 32]))])
            .unwrap_or_default(),
    }
}

fn key(id: &str) -> RecordKey {
    RecordKey {
        rtype: ResourceType::parse("Observation").unwrap(),
        id: ResourceId::parse(id).unwrap(),
    }
}

async fn behaves(store: Arc<dyn RecordStore>) {
    let org = OrgId::parse("default").unwrap();
    let other = OrgId::parse("other").unwrap();
    let w = |ws: Vec<RecordWrite>| {
        let store = store.clone();
        let org = org.clone();
        async move { store.write(&org, ws, None).await.unwrap() }
    };
    assert_eq!(
        w(vec![write("a", 1, Expected::Absent, Some(10))]).await,
        [WriteOutcome::Written]
    );
    assert_eq!(
        w(vec![write("a", 1, Expected::Absent, None)]).await,
        [WriteOutcome::Conflict {
            current: Some(Version(1))
        }],
        "a second create is a conflict"
    );
    assert_eq!(
        w(vec![write("a", 2, Expected::Version(Version(1)), Some(11))]).await,
        [WriteOutcome::Written]
    );
    assert_eq!(
        w(vec![write("a", 2, Expected::Version(Version(1)), None)]).await,
        [WriteOutcome::Conflict {
            current: Some(Version(2))
        }],
        "a stale update is a conflict"
    );
    let head = store.head(&org, &key("a")).await.unwrap().unwrap();
    assert_eq!(head.version, Version(2));
    assert_eq!(head.ciphertext, b"sealed-a-2");
    assert_eq!(
        store
            .version(&org, &key("a"), Version(1))
            .await
            .unwrap()
            .unwrap()
            .ciphertext,
        b"sealed-a-1"
    );
    // Tenancy: another organization sees nothing.
    assert!(store.head(&other, &key("a")).await.unwrap().is_none());
    // The index follows the head.
    let find = |d: u8| {
        let store = store.clone();
        let org = org.clone();
        async move {
            store
                .find(&org, IndexKind::Phone, &Digest32([d; 32]))
                .await
                .unwrap()
        }
    };
    assert!(
        find(10).await.is_empty(),
        "the old version's index entry is gone"
    );
    assert_eq!(find(11).await, [key("a")]);
    // Links and paging.
    w(vec![
        write("b", 1, Expected::Absent, None),
        write("c", 1, Expected::Absent, None),
    ])
    .await;
    let linked = store.linked(&org, &Digest32([1; 32])).await.unwrap();
    assert_eq!(
        linked.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert!(
        linked
            .iter()
            .all(|r| r.version == Version(if r.id.as_str() == "a" { 2 } else { 1 }))
    );
    let page = store.page(&org, None, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    let rest = store
        .page(
            &org,
            Some(&RecordKey {
                rtype: page[1].rtype,
                id: page[1].id.clone(),
            }),
            10,
        )
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    // A tombstone hides the record from links, pages and the index.
    let tomb = RecordWrite {
        record: rec("a", 3, Some(1), true),
        expected: Expected::Version(Version(2)),
        index: Vec::new(),
    };
    assert_eq!(w(vec![tomb]).await, [WriteOutcome::Written]);
    assert!(store.head(&org, &key("a")).await.unwrap().unwrap().deleted);
    assert_eq!(
        store.linked(&org, &Digest32([1; 32])).await.unwrap().len(),
        2
    );
    assert!(find(11).await.is_empty());
    // All or nothing.
    let r = store
        .write_all(
            &org,
            vec![
                write("d", 1, Expected::Absent, None),
                write("b", 1, Expected::Absent, None),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r, Err(vec![(1, Some(Version(1)))]));
    assert!(
        store.head(&org, &key("d")).await.unwrap().is_none(),
        "nothing of a refused set"
    );
    // A failing before-commit hook (the audit write) leaves nothing.
    let hook: phivault_core::BeforeCommit = Box::new(|_| {
        Box::pin(async {
            Err(StoreError::Unavailable {
                context: "audit",
                detail: "down".into(),
            })
        })
    });
    assert!(
        store
            .write(
                &org,
                vec![write("e", 1, Expected::Absent, None)],
                Some(hook)
            )
            .await
            .is_err()
    );
    assert!(store.head(&org, &key("e")).await.unwrap().is_none());
    // Racing writers: exactly one wins each version.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let org = org.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(
                    &org,
                    vec![write("b", 2, Expected::Version(Version(1)), None)],
                    None,
                )
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() == [WriteOutcome::Written] {
            won += 1;
        }
    }
    assert_eq!(won, 1, "one writer wins; the others get a conflict");
    // Erasure destroys every version.
    assert_eq!(
        store
            .linked_keys(&org, &Digest32([1; 32]))
            .await
            .unwrap()
            .len(),
        3
    );
    let n = store.erase(&org, &[key("a"), key("b")]).await.unwrap();
    assert_eq!(n, 3 + 2);
    assert!(store.head(&org, &key("a")).await.unwrap().is_none());
    assert!(
        store
            .version(&org, &key("b"), Version(1))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.linked_keys(&org, &Digest32([1; 32])).await.unwrap(),
        [key("c")]
    );
}

#[tokio::test]
async fn sqlite_record_store_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let stores = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    behaves(stores.clinical.clone()).await;
}

#[tokio::test]
async fn postgres_record_store_behaves() {
    let Some(pool) = common::pool().await else {
        return;
    };
    let schema = common::schema("clinical");
    let store = phivault_store::postgres::PostgresRecordStore::open(pool.clone(), &schema)
        .await
        .unwrap();
    behaves(Arc::new(store)).await;
    common::drop_schema(&pool, &schema).await;
}
