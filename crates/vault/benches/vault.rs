//! Vault throughput against the raw storage baseline, measured in the same run.
//!
//! `cargo bench -p phivault-vault --features bench` (BENCH_N: the record count, default 2000;
//! BENCH_ROUNDS: rounds per figure, default 3; BENCH_ONLY=reads: only the read lines, e.g.
//! under a profiler).
//! The baseline stores the same plaintext bytes under the same (UUID-shaped) ids in a plain
//! SQLite table with the same durability (WAL, synchronous=FULL), so the ratios show what
//! sealing, blind indexes, versioning and pseudonymous ids cost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// The allocator the shipped binary uses (bin/phivault/src/main.rs), so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use phivault_core::{ControlStore, OrgId, Organization, ResourceId, ResourceType, SystemClock};
use phivault_crypto::{KeyfileProvider, Keyring, Passphrase};
use phivault_store::SqliteStores;
use phivault_vault::bench::{cpu_micros, env_count};
use phivault_vault::{Ctx, ImportOptions, ImportReport, Stores, Vault};
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
    let operator = phivault_vault::Operator::new(&keyring, "bench");
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
        ctx: operator.ctx(org),
    }
}

fn rate(n: usize, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs one measurement that returns a rate for `n` calls; returns the rate and the process
/// CPU time spent per call, in microseconds (NaN where it cannot be read).
async fn with_cpu(n: usize, run: impl std::future::Future<Output = f64>) -> (f64, f64) {
    let before = cpu_micros();
    let r = run.await;
    let per = match (before, cpu_micros()) {
        (Some(b), Some(a)) => (a - b) / n as f64,
        _ => f64::NAN,
    };
    (r, per)
}

/// Vault throughput with audit, without audit (bench-only switch), and the raw baseline.
fn line(what: &str, audited: f64, unaudited: f64, raw: f64) {
    let raw = if raw.is_nan() {
        String::new()
    } else {
        format!("  raw {raw:>7.0}/s  vault/raw {:.2}", audited / raw)
    };
    println!(
        "{what:<40} vault {audited:>7.0}/s  (no audit {unaudited:>7.0}/s, audit costs {:>4.1}%){raw}",
        100.0 * (1.0 - audited / unaudited),
    );
}

async fn creates_sequential(v: &Vault, ctx: &Ctx, from: usize, n: usize) -> f64 {
    let t = Instant::now();
    for i in from..from + n {
        let mut p = patient(i);
        p.as_object_mut().unwrap().remove("id");
        v.create(ctx, p).await.unwrap();
    }
    rate(n, t)
}

async fn creates_batched(v: &Vault, ctx: &Ctx, from: usize, n: usize) -> f64 {
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": (from..from + n).map(|i| json!({"resource": patient(i)})).collect::<Vec<_>>()});
    let t = Instant::now();
    let mut report = ImportReport::default();
    v.import_document(
        ctx,
        "bench",
        bundle,
        ImportOptions::default(),
        &mut report,
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.patients as usize, n);
    rate(n, t)
}

async fn creates_concurrent(v: &Vault, ctx: &Ctx, from: usize, tasks: usize, per: usize) -> f64 {
    let t = Instant::now();
    let mut handles = Vec::new();
    for k in 0..tasks {
        let vault = v.clone();
        let ctx = ctx.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per {
                let mut p = patient(from + k * per + i);
                p.as_object_mut().unwrap().remove("id");
                vault.create(&ctx, p).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    rate(tasks * per, t)
}

async fn reads(v: &Vault, ctx: &Ctx, from: usize, n: usize) -> f64 {
    let t = Instant::now();
    for k in 0..n {
        let i = from + (k * 7919) % n;
        let id = ResourceId::parse(&bench_id(i)).unwrap();
        std::hint::black_box(v.read(ctx, ResourceType::PATIENT, &id).await.unwrap());
    }
    rate(n, t)
}

async fn reads_concurrent(v: &Vault, ctx: &Ctx, from: usize, tasks: usize, per: usize) -> f64 {
    let t = Instant::now();
    let mut handles = Vec::new();
    for k in 0..tasks {
        let vault = v.clone();
        let ctx = ctx.clone();
        handles.push(tokio::spawn(async move {
            for j in 0..per {
                let id = ResourceId::parse(&bench_id(from + (k * per + j * 7919) % (tasks * per)))
                    .unwrap();
                std::hint::black_box(vault.read(&ctx, ResourceType::PATIENT, &id).await.unwrap());
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    rate(tasks * per, t)
}

/// One round of an audited (`a`) and an unaudited (`q`) write measurement. Whoever writes
/// second writes into a larger store, so the one that goes first takes turns.
macro_rules! turns {
    ($r:expr, $a:ident <- $audited:expr, $q:ident <- $quiet:expr) => {
        if $r % 2 == 1 {
            $q.push($quiet);
            $a.push($audited);
        } else {
            $a.push($audited);
            $q.push($quiet);
        }
    };
}

#[tokio::main]
async fn main() {
    let n = env_count("BENCH_N", 2000);
    // BENCH_N / 128 records per caller at 128 callers: fewer would divide to none.
    assert!(n >= 128, "BENCH_N must be at least 128, not {n}");
    let only_reads = match std::env::var("BENCH_ONLY") {
        Err(_) => false,
        Ok(v) if v == "reads" => true,
        Ok(v) => panic!("BENCH_ONLY takes one value, reads (not {v:?})"),
    };
    rounds(); // checks BENCH_ROUNDS before the long setup
    let s = setup().await;
    let quiet = s.vault.clone().with_audit_short_circuited_for_benchmarks();
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&patient(i)).unwrap())
        .collect();
    let avg = bodies.iter().map(Vec::len).sum::<usize>() / n;
    println!("phivault vault benchmark: {n} patients, {avg} bytes of JSON each");
    println!("durability: WAL + synchronous=FULL for vault and raw alike; same ids for both");

    // Raw baselines.
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
    for k in 0..n {
        let i = (k * 7919) % n;
        let row: (Vec<u8>,) = sqlx::query_as("SELECT body FROM raw WHERE id = ?")
            .bind(bench_id(i))
            .fetch_one(&s.raw)
            .await
            .unwrap();
        std::hint::black_box(serde_json::from_slice::<Value>(&row.0).unwrap());
    }
    let raw_read = rate(n, t);

    // The vault, audited and not: rounds() rounds, alternating so drift hits both alike; each
    // figure is the median of its rounds.
    println!(
        "each vault figure: median of {} rounds, audited and unaudited runs alternating \
         (writes: which goes first alternates too)",
        rounds()
    );
    let ctx = &s.ctx;
    if only_reads {
        // Only the records the reads read, then the read lines (for profiling the read path).
        creates_batched(&s.vault, ctx, 0, n).await;
        creates_batched(&quiet, ctx, n, n).await;
        read_lines(&s.vault, &quiet, ctx, n, raw_read).await;
        return;
    }
    let (mut a, mut q) = (Vec::new(), Vec::new());
    for r in 0..rounds() {
        turns!(r, a <- creates_sequential(&s.vault, ctx, r * seq, seq).await, q <- creates_sequential(&quiet, ctx, r * seq, seq).await);
    }
    let (create_a, create_q) = (median(&a), median(&q));
    line("creates, 1 caller", create_a, create_q, raw_seq);
    let (mut a, mut q) = (Vec::new(), Vec::new());
    for r in 0..rounds() {
        // The first round imports the records the reads below read.
        turns!(r, a <- creates_batched(&s.vault, ctx, 2 * r * n, n).await, q <- creates_batched(&quiet, ctx, (2 * r + 1) * n, n).await);
    }
    line(
        "creates, batched 256 per transaction",
        median(&a),
        median(&q),
        raw_batch,
    );
    for tasks in CALLERS {
        let (mut a, mut q) = (Vec::new(), Vec::new());
        for r in 0..rounds() {
            turns!(r, a <- creates_concurrent(&s.vault, ctx, r * n, tasks, n / tasks).await, q <- creates_concurrent(&quiet, ctx, r * n, tasks, n / tasks).await);
        }
        let raw = if tasks == 32 { raw_conc } else { f64::NAN };
        line(
            &format!("creates, {tasks} concurrent callers"),
            median(&a),
            median(&q),
            raw,
        );
    }
    let (read_a, read_q) = read_lines(&s.vault, &quiet, ctx, n, raw_read).await;
    // One caller at a time cannot share a durable write with anyone: each audited call waits
    // for its own event's fsync. What the audit adds there is latency, set against one durable
    // one-row commit on the same disk (the raw baseline's sequential inserts).
    let commit_us = 1e6 / raw_seq;
    for (what, a, q) in [("create", create_a, create_q), ("read", read_a, read_q)] {
        let added = 1e6 / a - 1e6 / q;
        println!(
            "1 caller, per {what}: audit adds {added:>5.0} us = {:.2} x one durable one-row commit here ({commit_us:.0} us)",
            added / commit_us
        );
    }
}

/// The read lines (1 caller, then each of CALLERS), audited and not; returns the 1-caller
/// medians.
async fn read_lines(
    vault: &Vault,
    quiet: &Vault,
    ctx: &Ctx,
    n: usize,
    raw_read: f64,
) -> (f64, f64) {
    let (mut a, mut q, mut ca, mut cq) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds() {
        let (r, c) = with_cpu(n, reads(vault, ctx, 0, n)).await;
        a.push(r);
        ca.push(c);
        let (r, c) = with_cpu(n, reads(quiet, ctx, n, n)).await;
        q.push(r);
        cq.push(c);
    }
    let (read_a, read_q) = (median(&a), median(&q));
    line("reads by id, 1 caller", read_a, read_q, raw_read);
    cpu_line(&ca, &cq);
    for tasks in CALLERS {
        let (mut a, mut q, mut ca, mut cq) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let per = n / tasks;
        for _ in 0..rounds() {
            let (r, c) = with_cpu(tasks * per, reads_concurrent(vault, ctx, 0, tasks, per)).await;
            a.push(r);
            ca.push(c);
            let (r, c) = with_cpu(tasks * per, reads_concurrent(quiet, ctx, n, tasks, per)).await;
            q.push(r);
            cq.push(c);
        }
        line(
            &format!("reads by id, {tasks} concurrent callers"),
            median(&a),
            median(&q),
            raw_read,
        );
        cpu_line(&ca, &cq);
    }
    (read_a, read_q)
}

/// The CPU time per call under a throughput line: where the audit's cost goes is CPU (work
/// the audit adds) or waiting (CPUs idle while callers wait for a durable commit).
fn cpu_line(audited: &[f64], unaudited: &[f64]) {
    let (a, q) = (median(audited), median(unaudited));
    println!(
        "{:<40} CPU per call {a:>5.0} us  (no audit {q:>5.0} us, audit adds {:>4.1}%)",
        "",
        100.0 * (a / q - 1.0)
    );
}

/// Rounds per figure (BENCH_ROUNDS, default 3).
fn rounds() -> usize {
    env_count("BENCH_ROUNDS", 3)
}

/// Concurrent callers for the throughput lines; audit writes are group-committed across them.
const CALLERS: [usize; 3] = [8, 32, 128];

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
