//! The vault on PostgreSQL (`PHIVAULT_TEST_POSTGRES_URL`, default the local server's `test`
//! database; outside CI skipped when no server answers): the same import, search, export,
//! audit and erase behaviour as on SQLite; a `pg_dump` holding none of the patients' PHI; and
//! two vaults on one database (two nodes) writing at once without a lost update or a second
//! audit chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use phivault::datadir::{self, Database, Opened};
use phivault_core::{ResourceType, SystemClock, Version};
use phivault_vault::{PatientQuery, VaultError};
use serde_json::json;
use std::sync::Arc;

fn url() -> String {
    std::env::var("PHIVAULT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema prefix on the test database, or `None` (outside CI) without a server.
fn database(tag: &str) -> Option<Database> {
    let ok = std::process::Command::new("pg_isready")
        .args(["-q", "-d", &url()])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs PostgreSQL at {}",
            url()
        );
        eprintln!("skipped: no PostgreSQL at {}", url());
        return None;
    }
    Some(Database {
        url: url(),
        prefix: format!("t{}{tag}", std::process::id()),
    })
}

fn drop_schemas(db: &Database) {
    let sql: String = ["identity", "clinical", "control", "audit"]
        .iter()
        .map(|s| format!("DROP SCHEMA IF EXISTS {}_{s} CASCADE;", db.prefix))
        .collect();
    let out = std::process::Command::new("psql")
        .args([&db.url, "-q", "-c", &sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn open(dir: &std::path::Path, db: &Database) -> Opened {
    datadir::open_on(dir, &pass(), Arc::new(SystemClock), Some(db))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_vault_behaves_the_same_on_postgres_and_a_dump_holds_no_phi() {
    let Some(db) = database("a") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    datadir::init_on(&dir, &pass(), &SystemClock, Some(&db))
        .await
        .unwrap();
    // The data dir holds the root key only; a second init on the same database refuses.
    assert!(!dir.join("control.db").exists());
    let again = tmp.path().join("again");
    assert!(matches!(
        datadir::init_on(&again, &pass(), &SystemClock, Some(&db)).await,
        Err(datadir::DataDirError::AlreadyInitialized(_))
    ));
    let o = open(&dir, &db).await;
    assert!(o.stores.is_postgres());
    let files = repo_fixtures();
    let report = import_files(&o, &files, false).await;
    assert!(
        report.patients >= 4 && report.resources >= 15,
        "{}",
        report.summary()
    );
    let c = ctx(&o).await;
    // Search through the blind index.
    let found = o
        .vault
        .search_patients(
            &c,
            &PatientQuery {
                identifier: Some("MRN-8841906".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let pid = found[0].id.clone();
    // Versions and conflicts.
    let mut p = found[0].resource.clone();
    p.as_object_mut().unwrap().remove("meta");
    let v2 = o
        .vault
        .update(&c, &pid, p.clone(), Some(found[0].version))
        .await
        .unwrap();
    assert_eq!(v2.version, Version(found[0].version.0 + 1));
    assert!(matches!(
        o.vault.update(&c, &pid, p, Some(found[0].version)).await,
        Err(VaultError::Conflict { .. })
    ));
    // Everything comes back out.
    let records = o.vault.patient_records(&c, &pid).await.unwrap();
    assert!(!records.is_empty());
    // pg_dump of the four schemas holds none of the imported PHI.
    let dump = std::process::Command::new("pg_dump")
        .args(["-d", &db.url, "-n", &format!("{}_*", db.prefix)])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains("record_versions"), "the dump has the stores");
    let phi = phi_strings(&files);
    assert!(phi.len() >= 40);
    let leaked: Vec<&String> = phi.iter().filter(|s| dump.contains(s.as_str())).collect();
    assert!(leaked.is_empty(), "PHI in pg_dump: {leaked:?}");
    // The audit chain verifies; erasure destroys every version.
    let erased = o.vault.erase_patient(&c, &pid).await.unwrap();
    assert!(erased.patient_versions >= 2);
    assert!(matches!(
        o.vault.read(&c, ResourceType::PATIENT, &pid).await,
        Err(VaultError::NotFound)
    ));
    let v = o.vault.verify_audit(None).await.unwrap();
    assert!(v.problem.is_none() && v.count > 5, "{v:?}");
    o.close().await;
    drop_schemas(&db);
}

#[tokio::test]
async fn two_nodes_on_one_database_lose_no_update_and_keep_one_chain() {
    let Some(db) = database("b") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    datadir::init_on(&dir, &pass(), &SystemClock, Some(&db))
        .await
        .unwrap();
    // Two nodes: two opened vaults (their own pools) with the same root key.
    let (a, b) = (open(&dir, &db).await, open(&dir, &db).await);
    let c = ctx(&a).await;
    let created = a
        .vault
        .create(&c, json!({"resourceType": "Patient", "gender": "female", "identifier": [{"system": "urn:t", "value": "N-1"}]}))
        .await
        .unwrap();
    let pid = created.id.clone();
    // More concurrent writers than a pool has connections: every write holds a record
    // connection while its audit event is appended, and none may starve.
    let a = Arc::new(a);
    let mut many = Vec::new();
    for i in 0..40 {
        let (a, c) = (a.clone(), c.clone());
        many.push(tokio::spawn(async move {
            a.vault
                .create(
                    &c,
                    json!({"resourceType": "Patient", "gender": "male", "id": format!("x{i}")}),
                )
                .await
                .map(|_| ())
        }));
    }
    for m in many {
        m.await.unwrap().unwrap();
    }
    let a = Arc::try_unwrap(a).unwrap();
    // Each node runs 3 writers; each writer does 10 read-modify-write updates, retrying on
    // conflicts: every acknowledged update must be in the history.
    let mut tasks = Vec::new();
    for (n, node) in [Arc::new(a), Arc::new(b)].into_iter().enumerate() {
        for w in 0..3 {
            let node = node.clone();
            let c = c.clone();
            let pid = pid.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                while done < 10 {
                    let cur = node
                        .vault
                        .read(&c, ResourceType::PATIENT, &pid)
                        .await
                        .unwrap();
                    let mut r = cur.resource.clone();
                    r.as_object_mut().unwrap().remove("meta");
                    r["gender"] = json!(format!("other"));
                    r["birthDate"] = json!(format!("19{:02}-01-0{}", n * 10 + w, 1 + done % 9));
                    match node.vault.update(&c, &pid, r, Some(cur.version)).await {
                        Ok(_) => done += 1,
                        Err(VaultError::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                node
            }));
        }
    }
    let mut nodes = Vec::new();
    for t in tasks {
        nodes.push(t.await.unwrap());
    }
    let node = &nodes[0];
    let history = node
        .vault
        .history(&c, ResourceType::PATIENT, &pid, 1000)
        .await
        .unwrap();
    assert_eq!(
        history.len(),
        1 + 6 * 10,
        "every acknowledged update is a version"
    );
    let v = node.vault.verify_audit(None).await.unwrap();
    assert!(
        v.problem.is_none(),
        "one valid chain across both nodes: {v:?}"
    );
    for n in &nodes {
        n.close().await;
    }
    drop_schemas(&db);
}
