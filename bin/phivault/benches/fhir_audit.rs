//! What the audit costs a FHIR client over HTTPS (issue 3): Patient reads and creates through
//! `phivault serve`'s router, over real TLS on 127.0.0.1, driven by `wrk` (an outside client),
//! against the same router over the same stores with the audit short-circuited (the vault's
//! bench-only switch; it exists only with the `bench` feature, never at run time). 1 and 32
//! keep-alive connections; each figure is the median of BENCH_ROUNDS rounds (default 3) of
//! BENCH_SECONDS (default 5) each, audited and unaudited runs alternating, which goes first
//! alternating too. The two servers share one process and one data dir, so they run on the
//! same disk, the same cores and the same records.
//!
//!   cargo bench -p phivault --features bench --bench fhir_audit      (needs wrk)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

/// The allocator the shipped binary uses (bin/phivault/src/main.rs), so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use phivault::datadir;
use phivault_core::{Role, SystemClock};
use phivault_crypto::Passphrase;
use phivault_vault::Vault;
use phivault_vault::bench::env_count;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// Serves `vault` on a free loopback port over TLS; returns the port.
async fn serve(vault: Vault, tls: Arc<rustls::ServerConfig>) -> u16 {
    let app = phivault_api::router(phivault_api::AppState::new(vault));
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let server = axum_server::bind_rustls(
        "127.0.0.1:0".parse().unwrap(),
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .handle(handle.clone())
    .serve(app.into_make_service_with_connect_info::<SocketAddr>());
    tokio::spawn(server);
    handle.listening().await.unwrap().port()
}

/// One wrk run of `script` (which sets the method, body and headers): requests/s; panics if
/// any response was not 2xx (a benchmark of errors would measure nothing).
async fn wrk(port: u16, conns: usize, path: String, script: String) -> f64 {
    let secs = env_count("BENCH_SECONDS", 5);
    let out = tokio::task::spawn_blocking(move || {
        let mut c = Command::new("wrk");
        c.arg(format!("-t{}", conns.min(2)))
            .arg(format!("-c{conns}"))
            .arg(format!("-d{secs}s"))
            .arg("-s")
            .arg(script)
            .arg(format!("https://localhost:{port}{path}"));
        c.output()
            .expect("wrk is needed: apt-get install wrk (bench/fhir.sh installs it)")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors: {text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in wrk's output: {text}"))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A wrk script (mode 0600: it holds the bearer, which so stays off wrk's command line) with
/// the request's headers, and for a create its method and body.
fn write_script(dir: &Path, name: &str, token: &str, create: bool) -> String {
    let mut lua = format!(
        "wrk.headers[\"authorization\"] = \"Bearer {token}\"\nwrk.headers[\"x-purpose-of-use\"] = \"TREAT\"\n"
    );
    if create {
        let patient = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:bench:mrn", "value": "B-1"}],
            "name": [{"family": "Benchmark", "given": ["Pat"]}],
            "gender": "female", "birthDate": "1970-01-01",
            "telecom": [{"system": "phone", "value": "555-0100"}],
            "address": [{"line": ["1 Main St"], "city": "Springfield", "state": "MA", "postalCode": "01101"}]});
        lua.push_str(&format!(
            "wrk.method = \"POST\"\nwrk.body = '{patient}'\nwrk.headers[\"content-type\"] = \"application/fhir+json\"\n"
        ));
    }
    let path = dir.join(name);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    std::io::Write::write_all(&mut o.open(&path).unwrap(), lua.as_bytes()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let pass = Passphrase::new("https audit benchmark passphrase".into());
    datadir::init_on(&dir, &pass, &SystemClock, None)
        .await
        .unwrap();
    let opened = datadir::open_on(&dir, &pass, Arc::new(SystemClock), None)
        .await
        .unwrap();
    let org = opened.org(None).await.unwrap();
    let ctx = opened.operator.ctx(org.clone());
    let vault = opened.vault.clone();
    let client = vault
        .add_client(
            &ctx,
            &org,
            "bench",
            Role::IntegrationManager,
            "system/Patient.cruds",
            Some("TREAT"),
        )
        .await
        .unwrap();
    let (issued, _) = vault
        .issue_client_token(&ctx, &client.client_id, &client.client_secret, None)
        .await
        .unwrap();
    let get = write_script(tmp.path(), "read.lua", issued.token.expose(), false);
    let post = write_script(tmp.path(), "create.lua", issued.token.expose(), true);
    let p = json!({"resourceType": "Patient",
        "name": [{"family": "Readme", "given": ["Ria"]}], "gender": "female", "birthDate": "1980-02-03"});
    let id = vault.create(&ctx, p).await.unwrap().id;
    let read = format!("/fhir/Patient/{id}");

    phivault::tls::write_dev_cert(&dir).unwrap();
    let (cert, key) = phivault::tls::paths(&dir, None, None);
    let tls = phivault::tls::server_config(&cert, &key).unwrap();
    let audited = serve(vault.clone(), tls.clone()).await;
    let quiet = serve(vault.with_audit_short_circuited_for_benchmarks(), tls).await;

    let rounds = env_count("BENCH_ROUNDS", 3);
    println!(
        "phivault over HTTPS: wrk, keep-alive TLS, {} s a run, median of {rounds} rounds, audited \
         and unaudited servers alternating (wrk and both servers share this machine's cores)",
        env_count("BENCH_SECONDS", 5)
    );
    for (what, path, script) in [
        ("Patient read (GET /fhir/Patient/{id})", read, get),
        (
            "Patient create (POST /fhir/Patient)",
            "/fhir/Patient".to_owned(),
            post,
        ),
    ] {
        for conns in [1, 32] {
            let (mut a, mut q) = (Vec::new(), Vec::new());
            for r in 0..rounds {
                let run = |port| wrk(port, conns, path.clone(), script.clone());
                if r % 2 == 1 {
                    q.push(run(quiet).await);
                    a.push(run(audited).await);
                } else {
                    a.push(run(audited).await);
                    q.push(run(quiet).await);
                }
            }
            let (a, q) = (median(&a), median(&q));
            println!(
                "{what:<40} {conns:>3} conn  audited {a:>7.0}/s  (no audit {q:>7.0}/s, audit costs {:>4.1}%)",
                100.0 * (1.0 - a / q)
            );
        }
    }
}
