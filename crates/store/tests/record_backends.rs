//! The record store's behaviour, one set of checks run against both backends (SQLite files;
//! a real PostgreSQL, `PHIVAULT_TEST_POSTGRES_URL`, skipped outside CI when none answers):
//! version checks, heads, history, blind-index replacement, links, paging, tombstones,
//! all-or-nothing writes, a failing before-commit hook, racing writers, erasure; and key
//! rotation's ports: counts per KEK version, the cursor over older rows, compare-and-set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use phivault_core::{
    Digest32, Expected, IndexKind, OrgId, RecordKey, RecordStore, RecordWrite, ResourceId,
    ResourceType, SealedRecord, StoreError, Version, WriteOutcome,
};
use phivault_core::{KekUsage, ReindexHead, Rewrap, WrappedDek};
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

/// A version written under KEK `kek` (a tombstone when `deleted`).
fn under(id: &str, version: u64, kek: u32, deleted: bool) -> RecordWrite {
    let mut record = rec(id, version, None, deleted);
    record.kek_version = kek;
    if !deleted {
        record.wrapped_dek = format!("dek-{id}-{version}-under-{kek}").into_bytes();
    }
    RecordWrite {
        record,
        expected: if version == 1 {
            Expected::Absent
        } else {
            Expected::Version(Version(version - 1))
        },
        index: Vec::new(),
    }
}

fn rewrap_of(row: &WrappedDek, new_kek: u32, new_wrapped: &[u8]) -> Rewrap {
    Rewrap {
        seq: row.seq,
        old_kek: row.kek_version,
        old_wrapped: row.wrapped_dek.clone(),
        new_kek,
        new_wrapped: new_wrapped.to_vec(),
    }
}

/// Every row below `kek`, read in pages of `page` through the cursor.
/// Search's ports: candidates by any of several digests (distinct, capped, live heads only,
/// one organization), the subset of given keys a digest holds, heads in bulk, reindexing.
async fn searches(store: Arc<dyn RecordStore>) {
    let org = OrgId::parse("search").unwrap();
    let other = OrgId::parse("search-other").unwrap();
    let d = |b: u8| Digest32([b; 32]);
    let idx = |ds: &[u8]| ds.iter().map(|b| (IndexKind::NamePrefix, d(*b))).collect();
    let mut writes = Vec::new();
    for (i, ds) in [(1, vec![1, 2]), (2, vec![1]), (3, vec![2, 3]), (4, vec![3])] {
        let mut w = write(&format!("s{i}"), 1, Expected::Absent, None);
        w.index = idx(&ds);
        writes.push(w);
    }
    store.write(&org, writes, None).await.unwrap();
    let mut stranger = write("s9", 1, Expected::Absent, None);
    stranger.index = idx(&[1]);
    store.write(&other, vec![stranger], None).await.unwrap();
    let any_rows = |ds: Vec<u8>, limit: u32| {
        let (store, org) = (store.clone(), org.clone());
        async move {
            let ds: Vec<Digest32> = ds.into_iter().map(d).collect();
            store
                .find_any(&org, IndexKind::NamePrefix, &ds, limit)
                .await
                .unwrap()
        }
    };
    let any = |ds: Vec<u8>, limit: u32| {
        let rows = any_rows(ds, limit);
        async move { rows.await.into_iter().map(|(_, k)| k).collect::<Vec<_>>() }
    };
    assert_eq!(any(vec![1, 2], 10).await, [key("s1"), key("s2"), key("s3")]);
    assert_eq!(any(vec![1, 2], 2).await.len(), 2, "capped");
    assert!(any(vec![9], 10).await.is_empty());
    // Rows by their position: s1, s3 and s4 asked, s3 and s4 hold digest 3.
    let rows = any_rows(vec![1, 2, 3], 10).await;
    let seq = |id: &str| rows.iter().find(|(_, k)| *k == key(id)).unwrap().0;
    let within = store
        .find_within(
            &org,
            IndexKind::NamePrefix,
            &[d(3)],
            &[seq("s1"), seq("s3"), seq("s4")],
        )
        .await
        .unwrap();
    let mut want = vec![seq("s3"), seq("s4")];
    want.sort_unstable();
    assert_eq!(within, want);
    // Streamed in row order, a chunk at a time after the previous one's last row.
    let ds = [d(1), d(2)];
    let keys = |v: &[(u64, RecordKey)]| v.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>();
    let first = store
        .stream(&org, IndexKind::NamePrefix, &ds, 0, 2)
        .await
        .unwrap();
    assert_eq!(keys(&first), [key("s1"), key("s2")]);
    let rest = store
        .stream(&org, IndexKind::NamePrefix, &ds, first[1].0, 2)
        .await
        .unwrap();
    assert_eq!(keys(&rest), [key("s3")]);
    let heads = store
        .heads(&org, &[key("s2"), key("s4"), key("s9")])
        .await
        .unwrap();
    assert_eq!(
        heads.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["s2", "s4"]
    );
    // Reindex replaces a head's entries, and only while that version is the head.
    let head = |id: &str, v: u64, d: &[u8]| ReindexHead {
        key: key(id),
        version: Version(v),
        index: idx(d),
    };
    let stale = [head("s4", 2, &[3]), head("s9", 1, &[3])];
    let batch = [
        head("s4", 1, &[1]),
        stale[0].clone(),
        head("s3", 1, &[3, 4]),
    ];
    assert_eq!(store.reindex(&org, &batch).await.unwrap(), 2);
    assert_eq!(any(vec![1], 10).await, [key("s1"), key("s2"), key("s4")]);
    assert_eq!(any(vec![3], 10).await, [key("s3")]);
    assert_eq!(any(vec![4], 10).await, [key("s3")]);
    assert_eq!(
        any(vec![2], 10).await,
        [key("s1")],
        "s3's old entry is gone"
    );
    assert_eq!(store.reindex(&org, &stale).await.unwrap(), 0);
    store
        .write(
            &org,
            vec![write("s2", 2, Expected::Version(Version(1)), None)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        any(vec![1], 10).await,
        [key("s1"), key("s4")],
        "an update replaces them"
    );
}

async fn all_below(store: &dyn RecordStore, kek: u32, page: u32) -> Vec<WrappedDek> {
    let mut out: Vec<WrappedDek> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.seq);
        let rows = store.wrapped_below(kek, after, page).await.unwrap();
        assert!(rows.len() <= page as usize);
        if rows.is_empty() {
            return out;
        }
        out.extend(rows);
    }
}

async fn rotates(store: Arc<dyn RecordStore>) {
    let org = OrgId::parse("default").unwrap();
    let other = OrgId::parse("other").unwrap();
    for (o, ws) in [
        (
            &org,
            vec![
                under("r1", 1, 1, false),
                under("r2", 1, 1, false),
                under("r4", 1, 2, false),
            ],
        ),
        (&other, vec![under("r3", 1, 1, false)]),
    ] {
        let out = store.write(o, ws, None).await.unwrap();
        assert!(out.iter().all(|w| *w == WriteOutcome::Written));
    }
    let more = vec![under("r1", 2, 1, false)];
    assert_eq!(
        store.write(&org, more, None).await.unwrap(),
        [WriteOutcome::Written]
    );
    let tomb = vec![under("r2", 2, 1, true)];
    assert_eq!(
        store.write(&org, tomb, None).await.unwrap(),
        [WriteOutcome::Written]
    );
    let usage = |deks1, rows1, deks2, rows2| {
        vec![
            KekUsage {
                kek_version: 1,
                deks: deks1,
                rows: rows1,
            },
            KekUsage {
                kek_version: 2,
                deks: deks2,
                rows: rows2,
            },
        ]
    };
    // Four data keys and a tombstone under v1 (both organizations), one key under v2.
    assert_eq!(store.kek_versions().await.unwrap(), usage(4, 5, 1, 1));
    // The cursor walks every older row once, in seq order, across organizations, in pages.
    let below = all_below(store.as_ref(), 2, 2).await;
    assert_eq!(below.len(), 5);
    assert!(below.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(below.iter().all(|r| r.kek_version == 1));
    assert!(below.iter().any(|r| r.org == other));
    assert_eq!(below.iter().filter(|r| r.wrapped_dek.is_empty()).count(), 1);
    assert!(all_below(store.as_ref(), 1, 10).await.is_empty());
    let row = |id: &str, v: u64| {
        below
            .iter()
            .find(|r| r.id.as_str() == id && r.version == Version(v))
            .unwrap()
            .clone()
    };
    // Compare-and-set: applies once; a second attempt, a stale key or a wrong version does not.
    let r1 = row("r1", 1);
    assert_eq!(
        store
            .rewrap(&[rewrap_of(&r1, 2, b"new-r1-1")])
            .await
            .unwrap(),
        [true]
    );
    let again = rewrap_of(&r1, 2, b"clobber");
    let mut stale = rewrap_of(&row("r1", 2), 2, b"clobber");
    stale.old_wrapped = b"not what the row holds".to_vec();
    let mut wrong_kek = rewrap_of(&row("r3", 1), 2, b"clobber");
    wrong_kek.old_kek = 3;
    assert_eq!(
        store.rewrap(&[again, stale, wrong_kek]).await.unwrap(),
        [false, false, false]
    );
    let head = store
        .version(&org, &key("r1"), Version(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (head.kek_version, head.wrapped_dek.as_slice()),
        (2, &b"new-r1-1"[..])
    );
    assert_eq!(head.ciphertext, b"sealed-r1-1", "only the key moves");
    // Racing rotations of one row: exactly one wins; the row holds the winner's key.
    let r3 = row("r3", 1);
    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let store = store.clone();
        let item = rewrap_of(&r3, 2, &[i; 40]);
        tasks.push(tokio::spawn(
            async move { store.rewrap(&[item]).await.unwrap() },
        ));
    }
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.unwrap() == [true] {
            winners.push(i as u8);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "one rotation wins, the others leave the row alone"
    );
    let key3 = RecordKey {
        rtype: r3.rtype,
        id: r3.id.clone(),
    };
    let h3 = store.head(&other, &key3).await.unwrap().unwrap();
    assert_eq!(h3.wrapped_dek, vec![winners[0]; 40]);
    // An erased row is never rewritten; a tombstone's label moves with an empty key.
    assert_eq!(store.erase(&org, &[key("r1")]).await.unwrap(), 2);
    let tomb = row("r2", 2);
    let out = store
        .rewrap(&[rewrap_of(&row("r1", 2), 2, b"x"), rewrap_of(&tomb, 2, b"")])
        .await
        .unwrap();
    assert_eq!(out, [false, true]);
    // What is left under v1: r2's first version. Then nothing.
    assert_eq!(store.kek_versions().await.unwrap(), usage(1, 1, 2, 3));
    let left = all_below(store.as_ref(), 2, 10).await;
    assert_eq!(left.len(), 1);
    assert_eq!(
        store.rewrap(&[rewrap_of(&left[0], 2, b"y")]).await.unwrap(),
        [true]
    );
    assert_eq!(
        store.kek_versions().await.unwrap(),
        [KekUsage {
            kek_version: 2,
            deks: 3,
            rows: 4
        }]
    );
    assert!(all_below(store.as_ref(), 2, 10).await.is_empty());
}

#[tokio::test]
async fn sqlite_record_store_rotates_keys() {
    let dir = tempfile::tempdir().unwrap();
    let stores = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    rotates(stores.identity.clone()).await;
}

#[tokio::test]
async fn postgres_record_store_rotates_keys() {
    let Some(pool) = common::pool().await else {
        return;
    };
    let schema = common::schema("rotation");
    let store = phivault_store::postgres::PostgresRecordStore::open(pool.clone(), &schema)
        .await
        .unwrap();
    rotates(Arc::new(store)).await;
    common::drop_schema(&pool, &schema).await;
}

#[tokio::test]
async fn sqlite_record_store_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let stores = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    behaves(stores.clinical.clone()).await;
    searches(stores.clinical.clone()).await;
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
    let store: Arc<dyn RecordStore> = Arc::new(store);
    behaves(store.clone()).await;
    searches(store).await;
    common::drop_schema(&pool, &schema).await;
}
