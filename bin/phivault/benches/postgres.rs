//! PostgreSQL benchmark (issue 8): sealed Patient creates/s and reads/s through the vault on
//! PostgreSQL, beside, in the same run and on the same server: plain inserts of the same JSON
//! bytes (same durability: PostgreSQL's defaults, synchronous_commit on), and the seeds'
//! approach — `pgp_sym_encrypt` (pgcrypto) of the same JSON in the database. Reported as
//! ratios. 1 caller and 32 concurrent callers.
//!
//!   cargo bench -p phivault --bench postgres    (PHIVAULT_TEST_POSTGRES_URL, BENCH_N=1000)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

/// The allocator the shipped binary uses (bin/phivault/src/main.rs), so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use phivault::datadir::{self, Database};
use phivault_core::{ResourceType, SystemClock};
use phivault_crypto::Passphrase;

use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

fn patient(i: usize) -> serde_json::Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:bench:mrn", "value": format!("B-{i}")}],
        "name": [{"family": format!("Bench{i}"), "given": ["Pat", "Q"]}],
        "gender": "female", "birthDate": "1970-01-01",
        "telecom": [{"system": "phone", "value": format!("555-{:04}", i % 10000)}],
        "address": [{"line": [format!("{i} Main St")], "city": "Springfield", "state": "MA", "postalCode": "01101"}]})
}

fn rate(n: usize, t: Instant) -> f64 {
    n as f64 / t.elapsed().as_secs_f64()
}

async fn concurrently<F, Fut>(n: usize, tasks: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let per = n / tasks;
    let t = Instant::now();
    let mut hs = Vec::new();
    for k in 0..tasks {
        let f = f.clone();
        hs.push(tokio::spawn(async move {
            for i in k * per..(k + 1) * per {
                f(i).await;
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    rate(per * tasks, t)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let url = std::env::var("PHIVAULT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let db = Database::new(url.clone(), format!("bench{}", std::process::id()));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let pass = Passphrase::new("postgres benchmark passphrase".into());
    datadir::init_on(&dir, &pass, &SystemClock, Some(&db))
        .await
        .unwrap();
    let o = datadir::open_on(&dir, &pass, Arc::new(SystemClock), Some(&db))
        .await
        .unwrap();
    let ctx = o.operator.ctx(o.org(None).await.unwrap());
    let raw = phivault_store::postgres::connect(
        &url,
        phivault_store::postgres::PoolLimits {
            max_connections: 32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let schema = format!("bench{}_raw", std::process::id());
    for sql in [
        "CREATE EXTENSION IF NOT EXISTS pgcrypto".to_owned(),
        format!("CREATE SCHEMA {schema}"),
        format!("CREATE TABLE {schema}.plain (id TEXT PRIMARY KEY, body BYTEA NOT NULL)"),
        format!("CREATE TABLE {schema}.pgcrypto (id TEXT PRIMARY KEY, body BYTEA NOT NULL)"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&raw)
            .await
            .unwrap();
    }
    let bodies: Arc<Vec<String>> = Arc::new((0..n * 2).map(|i| patient(i).to_string()).collect());
    println!(
        "phivault on PostgreSQL: {n} patients per run, ~{} bytes of JSON each",
        bodies[0].len()
    );

    // 1 caller.
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n / 4 {
        ids.push(o.vault.create(&ctx, patient(i)).await.unwrap().id);
    }
    let vault_seq = rate(n / 4, t);
    let t = Instant::now();
    for i in 0..n / 4 {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {schema}.plain (id, body) VALUES ($1, $2)"
        )))
        .bind(format!("s{i}"))
        .bind(bodies[i].as_bytes())
        .execute(&raw)
        .await
        .unwrap();
    }
    let plain_seq = rate(n / 4, t);
    let t = Instant::now();
    for i in 0..n / 4 {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {schema}.pgcrypto (id, body) VALUES ($1, pgp_sym_encrypt($2, $3))"
        )))
        .bind(format!("s{i}"))
        .bind(&bodies[i])
        .bind("a symmetric key held by the application")
        .execute(&raw)
        .await
        .unwrap();
    }
    let pgc_seq = rate(n / 4, t);

    // 32 concurrent callers.
    let vault = Arc::new(o.vault.clone());
    let (v, c) = (vault.clone(), ctx.clone());
    let vault_conc = concurrently(n, 32, move |i| {
        let (v, c) = (v.clone(), c.clone());
        async move {
            v.create(&c, patient(n + i)).await.unwrap();
        }
    })
    .await;
    let (r, s, b) = (raw.clone(), schema.clone(), bodies.clone());
    let plain_conc = concurrently(n, 32, move |i| {
        let (r, s, b) = (r.clone(), s.clone(), b.clone());
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {s}.plain (id, body) VALUES ($1, $2)"
            )))
            .bind(format!("c{i}"))
            .bind(b[n + i].as_bytes())
            .execute(&r)
            .await
            .unwrap();
        }
    })
    .await;
    let (r, s, b) = (raw.clone(), schema.clone(), bodies.clone());
    let pgc_conc = concurrently(n, 32, move |i| {
        let (r, s, b) = (r.clone(), s.clone(), b.clone());
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {s}.pgcrypto (id, body) VALUES ($1, pgp_sym_encrypt($2, $3))"
            )))
            .bind(format!("c{i}"))
            .bind(&b[n + i])
            .bind("a symmetric key held by the application")
            .execute(&r)
            .await
            .unwrap();
        }
    })
    .await;

    // Reads by id, 1 caller: the vault (unseal + audited read) vs plain select vs pgp_sym_decrypt.
    let t = Instant::now();
    for id in &ids {
        o.vault.read(&ctx, ResourceType::PATIENT, id).await.unwrap();
    }
    let vault_read = rate(ids.len(), t);
    let t = Instant::now();
    for i in 0..n / 4 {
        let body: Vec<u8> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT body FROM {schema}.plain WHERE id = $1"
        )))
        .bind(format!("s{i}"))
        .fetch_one(&raw)
        .await
        .unwrap();
        std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&body).unwrap());
    }
    let plain_read = rate(n / 4, t);
    let t = Instant::now();
    for i in 0..n / 4 {
        let body: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT pgp_sym_decrypt(body, $2) FROM {schema}.pgcrypto WHERE id = $1"
        )))
        .bind(format!("s{i}"))
        .bind("a symmetric key held by the application")
        .fetch_one(&raw)
        .await
        .unwrap();
        std::hint::black_box(serde_json::from_str::<serde_json::Value>(&body).unwrap());
    }
    let pgc_read = rate(n / 4, t);

    let line = |what: &str, vault: f64, plain: f64, pgc: f64| {
        println!(
            "{what:<28} vault {vault:>7.0}/s   plain {plain:>7.0}/s   pgcrypto {pgc:>7.0}/s   vault/plain {:.2}   vault/pgcrypto {:.2}",
            vault / plain,
            vault / pgc
        );
    };
    line("creates, 1 caller", vault_seq, plain_seq, pgc_seq);
    line("creates, 32 callers", vault_conc, plain_conc, pgc_conc);
    line("reads by id, 1 caller", vault_read, plain_read, pgc_read);
    o.close().await;
    let mut drop = format!("DROP SCHEMA {schema} CASCADE;");
    for s in ["identity", "clinical", "control", "audit"] {
        drop.push_str(&format!("DROP SCHEMA {}_{s} CASCADE;", db.prefix));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(&raw)
        .await
        .unwrap();
}
