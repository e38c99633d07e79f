//! Vault throughput against the raw storage baseline, measured in the same run.
//!
//! `cargo bench -p phivault-vault` (set BENCH_N to change the record count, default 2000).
//! The baseline stores the same plaintext bytes under the same (UUID-shaped) ids in a plain
//! SQLite table with the same durability (WAL, synchronous=FULL), so the ratios show what
//! sealing, blind indexes, versioning and pseudonymous ids cost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use phivault_core::{ControlStore, OrgId, Organization, ResourceId, ResourceType, SystemClock};
use phivault_crypto::{KeyfileProvider, Keyring, Passphrase};
use phivault_store::SqliteStores;
use phivault_vault::{Actor, Ctx, ImportOptions, ImportReport, Stores, Vault};
use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::sync::Arc;
use std::time::Instant;

/// A UUID-shaped id, as Synthea and most FHIR servers use: random-looking, not sequential.
fn bench_id(i: usize) -> String {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        i % 0xfff,
        i
    )
}

fn patient(i: usize) -> Value {
    json!({
        "resourceType": "Patient",
        "id": bench_id(i),
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
        "identifier": [
            {"system": "https://github.com/synthetichealth/synthea", "value": format!("5c2f1b7e-0000-4000-8000-{i:012}")},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
             "system": "http://hospital.smarthealthit.org", "value": format!("MRN-{i:08}")},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
             "system": "http://hl7.org/fhir/sid/us-ssn", "value": format!("999-{:02}-{:04}", i % 100, i % 10000)}
        ],
        "name": [{"use": "official", "family": format!("Benchfamily{i}"), "given": ["Alexandra", "Maria"], "prefix": ["Ms."]}],
        "telecom": [{"system": "phone", "value": format!("555-{:03}-{:04}", i % 1000, i % 10000), "use": "home"}],
        "gender": "female",
        "birthDate": format!("19{:02}-0{}-1{}", 30 + i % 60, 1 + i % 9, i % 10),
        "address": [{"line": [format!("{} Bench Street", i)], "city": "Boston", "state": "MA", "postalCode": "02118", "country": "US"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]}}]
    })
}

struct Setup {
    _dir: tempfile::TempDir,
    vault: Vault,
    raw: SqlitePool,
    ctx: Ctx,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pass = Passphrase::new("benchmark passphrase 123".into());
    let provider = KeyfileProvider::create(&dir.path().join("root.key"), &pass).unwrap();
    let stores = SqliteStores::open(dir.path(), true).await.unwrap();
    let (keyring, entries) = Keyring::generate(&provider, 0).unwrap();
    stores.control.add_keyring_entries(&entries).await.unwrap();
    let org = OrgId::parse("default").unwrap();
    stores
        .control
        .create_organization(&Organization {
            id: org.clone(),
            name: "default".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    let vault = Vault::new(
        Arc::new(keyring),
        Stores {
            identity: stores.identity.clone(),
            clinical: stores.clinical.clone(),
            control: stores.control.clone(),
            audit: stores.audit.clone(),
        },
        Arc::new(SystemClock),
    );
    let opts = SqliteConnectOptions::new()
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let raw = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE raw (id TEXT PRIMARY KEY, body BLOB NOT NULL)")
        .execute(&raw)
        .await
        .unwrap();
    Setup {
        _dir: dir,
        vault,
        raw,
        ctx: Ctx::new(
            org,
            Actor::Operator {
                os_user: "bench".into(),
            },
        ),
    }
}

fn rate(n: usize, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

fn line(what: &str, vault: f64, raw: f64) {
    println!(
        "{what:<44} vault {vault:>9.0}/s   raw {raw:>9.0}/s   ratio {:.2}",
        vault / raw
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let s = setup().await;
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&patient(i)).unwrap())
        .collect();
    let avg = bodies.iter().map(Vec::len).sum::<usize>() / n;
    println!("phivault vault benchmark: {n} patients, {avg} bytes of JSON each");
    println!("durability: WAL + synchronous=FULL for vault and raw alike");

    // 1. One write per transaction, sequential.
    let seq = n / 4;
    let t = Instant::now();
    for (i, b) in bodies.iter().enumerate().take(seq) {
        sqlx::query("INSERT INTO raw (id, body) VALUES (?, ?)")
            .bind(format!("seq-{}", bench_id(i)))
            .bind(b)
            .execute(&s.raw)
            .await
            .unwrap();
    }
    let raw_seq = rate(seq, t);
    let t = Instant::now();
    for i in 0..seq {
        let mut p = patient(i);
        p.as_object_mut().unwrap().remove("id");
        s.vault.create(&s.ctx, p).await.unwrap();
    }
    let vault_seq = rate(seq, t);
    line("creates, 1 per transaction, sequential", vault_seq, raw_seq);

    // 2. Batched writes: 256 per transaction (the import path).
    let t = Instant::now();
    for (c, chunk) in bodies.chunks(256).enumerate() {
        let mut tx = s.raw.begin().await.unwrap();
        for (i, b) in chunk.iter().enumerate() {
            sqlx::query("INSERT INTO raw (id, body) VALUES (?, ?)")
                .bind(bench_id(c * 256 + i))
                .bind(b)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let raw_batch = rate(n, t);
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": (0..n).map(|i| json!({"resource": patient(i)})).collect::<Vec<_>>()});
    let t = Instant::now();
    let mut report = ImportReport::default();
    s.vault
        .import_document(
            &s.ctx,
            "bench",
            bundle,
            ImportOptions::default(),
            &mut report,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.patients as usize, n);
    let vault_batch = rate(n, t);
    line(
        "creates, batched 256 per transaction",
        vault_batch,
        raw_batch,
    );

    // 3. Concurrent creates from 32 tasks: the vault group-commits them; the raw baseline is
    //    the same 32 tasks, one insert per transaction each.
    let tasks = 32;
    let per = n / tasks;
    let t = Instant::now();
    let mut handles = Vec::new();
    for k in 0..tasks {
        let raw = s.raw.clone();
        let bodies: Vec<Vec<u8>> = bodies[k * per..(k + 1) * per].to_vec();
        handles.push(tokio::spawn(async move {
            for (i, b) in bodies.iter().enumerate() {
                sqlx::query("INSERT INTO raw (id, body) VALUES (?, ?)")
                    .bind(format!("conc-{}", bench_id(k * per + i)))
                    .bind(b)
                    .execute(&raw)
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let raw_conc = rate(per * tasks, t);
    let t = Instant::now();
    let mut handles = Vec::new();
    for k in 0..tasks {
        let vault = s.vault.clone();
        let ctx = s.ctx.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per {
                let mut p = patient(k * per + i);
                p.as_object_mut().unwrap().remove("id");
                vault.create(&ctx, p).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let vault_conc = rate(per * tasks, t);
    line(
        "creates, 32 concurrent callers (group commit)",
        vault_conc,
        raw_conc,
    );
    line(
        "  same, against raw batched 256/transaction",
        vault_conc,
        raw_batch,
    );

    // 4. Reads by id, in a scattered order.
    let order: Vec<usize> = (0..n).map(|i| (i * 7919) % n).collect();
    let t = Instant::now();
    for &i in &order {
        let row: (Vec<u8>,) = sqlx::query_as("SELECT body FROM raw WHERE id = ?")
            .bind(bench_id(i))
            .fetch_one(&s.raw)
            .await
            .unwrap();
        std::hint::black_box(serde_json::from_slice::<Value>(&row.0).unwrap());
    }
    let raw_read = rate(n, t);
    let t = Instant::now();
    for &i in &order {
        let id = ResourceId::parse(&bench_id(i)).unwrap();
        std::hint::black_box(
            s.vault
                .read(&s.ctx, ResourceType::PATIENT, &id)
                .await
                .unwrap(),
        );
    }
    let vault_read = rate(n, t);
    line(
        "reads by id (decrypt + parse vs. parse)",
        vault_read,
        raw_read,
    );
}
