//! The audit store's behaviour, one set of checks run against both backends: SQLite files and
//! a real PostgreSQL (`PHIVAULT_TEST_POSTGRES_URL`, default the local server's `test`
//! database; outside CI, skipped when no server answers). Concurrent appends — from several
//! tasks, and for PostgreSQL from two pools acting as two nodes — make one chain without gaps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use phivault_core::{AuditStore, ChainFn};
use std::sync::Arc;

/// A stand-in chain: each MAC is its sequence number followed by the previous MAC's first 8
/// bytes, so every record names its predecessor.
fn chain() -> Arc<ChainFn> {
    Arc::new(|seq: u64, prev: &[u8], draft: &str| {
        let mut mac = seq.to_be_bytes().to_vec();
        let mut p = [0u8; 8];
        p[..prev.len().min(8)].copy_from_slice(&prev[..prev.len().min(8)]);
        mac.extend_from_slice(&p);
        (format!("{{\"seq\":{seq},\"draft\":{draft:?}}}"), mac)
    })
}

/// Appends from `writers` concurrently (each `per` events in batches of 1–3), then checks the
/// chain is single, gapless and linked.
async fn appends_make_one_linked_chain(writers: Vec<Arc<dyn AuditStore>>, per: usize) {
    let mut tasks = Vec::new();
    for (w, store) in writers.iter().enumerate() {
        for t in 0..2 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while n < per {
                    let batch = (1 + (n % 3)).min(per - n);
                    let drafts = (0..batch)
                        .map(|i| (1_700_000_000_000, format!("w{w}t{t}e{}", n + i)))
                        .collect();
                    let seqs = store.append(drafts, chain()).await.unwrap();
                    assert_eq!(seqs.len(), batch);
                    assert!(
                        seqs.windows(2).all(|s| s[1] == s[0] + 1),
                        "a batch is contiguous"
                    );
                    n += batch;
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (writers.len() * 2 * per) as u64;
    let store = &writers[0];
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read(after, 97).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        all.extend(page);
    }
    assert_eq!(all.len() as u64, total);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "gapless");
        assert_eq!(&r.mac[..8], &r.seq.to_be_bytes());
        let prev_seq = if i == 0 {
            [0u8; 8]
        } else {
            (i as u64).to_be_bytes()
        };
        assert_eq!(
            &r.mac[8..16],
            &prev_seq,
            "record {} names its predecessor",
            r.seq
        );
    }
    assert_eq!(store.head().await.unwrap().unwrap().seq, total);
}

#[tokio::test]
async fn sqlite_audit_appends_make_one_linked_chain() {
    let dir = tempfile::tempdir().unwrap();
    let stores = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    let audit: Arc<dyn AuditStore> = stores.audit.clone();
    assert!(audit.head().await.unwrap().is_none());
    appends_make_one_linked_chain(vec![audit], 40).await;
}

/// Two openings of the same files (two processes, such as a CLI command beside the server)
/// append concurrently: each one's remembered head goes stale under the other's appends, and
/// its one-statement append must then fall back to reading the head, never forking the chain.
#[tokio::test]
async fn sqlite_audit_appends_from_two_openings_make_one_linked_chain() {
    let dir = tempfile::tempdir().unwrap();
    let a = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    let b = phivault_store::SqliteStores::open(dir.path(), false)
        .await
        .unwrap();
    appends_make_one_linked_chain(vec![a.audit.clone(), b.audit.clone()], 60).await;
    b.close().await;
    a.close().await;
}

#[tokio::test]
async fn postgres_audit_appends_from_two_nodes_make_one_linked_chain() {
    let Some(pool) = common::pool().await else {
        return;
    };
    let schema_name = common::schema("audit");
    // Two pools: two nodes on one database.
    let node_a = phivault_store::postgres::PostgresAuditStore::open(pool.clone(), &schema_name)
        .await
        .unwrap();
    let other = phivault_store::postgres::connect(&common::postgres_url(), Default::default())
        .await
        .unwrap();
    let node_b = phivault_store::postgres::PostgresAuditStore::open(other, &schema_name)
        .await
        .unwrap();
    let a: Arc<dyn AuditStore> = Arc::new(node_a);
    let b: Arc<dyn AuditStore> = Arc::new(node_b);
    assert!(a.head().await.unwrap().is_none());
    appends_make_one_linked_chain(vec![a, b], 40).await;
    // Opening again is idempotent; a schema newer than this build is refused.
    phivault_store::postgres::PostgresAuditStore::open(pool.clone(), &schema_name)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {}.schema_migrations (version, name) VALUES (999, 'future')",
        schema_name
    )))
    .execute(&pool)
    .await
    .unwrap();
    let err = phivault_store::postgres::PostgresAuditStore::open(pool.clone(), &schema_name)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            phivault_core::StoreError::SchemaTooNew { found: 999, .. }
        ),
        "{err}"
    );
    common::drop_schema(&pool, &schema_name).await;
}

/// `sslmode=require` in the URL: the connection to PostgreSQL is TLS (rustls).
#[tokio::test]
async fn postgres_connections_can_require_tls() {
    let Some(_plain) = common::pool().await else {
        return;
    };
    let url = common::postgres_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let pool = phivault_store::postgres::connect(
        &format!("{url}{sep}sslmode=require"),
        Default::default(),
    )
    .await
    .unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ssl, "the connection is not encrypted");
}
