//! A database outage under load (issue 8): two `phivault serve` nodes on one PostgreSQL
//! server — a private cluster this test starts with `initdb`/`pg_ctl` on a free port, so that
//! stopping it disturbs no other test — are driven with creates and reads; the server is
//! stopped mid-load and started again. While it is down, requests fail fast and cleanly (503,
//! never a 200 of PHI without its audit event, never a hang); afterwards both nodes serve again
//! without a restart, every acknowledged create is there, and the audit chain verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, basic_of, cli_with, json_of};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A PostgreSQL cluster of this test's own.
struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// `initdb` + `pg_ctl start` on a free port, or `None` (outside CI) when PostgreSQL's
    /// server binaries are not installed.
    fn start() -> Option<Cluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())?;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pg");
        // initdb refuses to run as root: run the cluster as the `postgres` user then.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Cluster {
            _dir: dir,
            data,
            bin,
            port,
            as_postgres,
        };
        c.run(
            "initdb",
            &[
                "-D",
                c.data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
            ],
        );
        c.pg_ctl("start");
        Some(c)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        let mut args = vec![
            action,
            "-w",
            "-D",
            self.data.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
        ];
        if action == "stop" {
            // Fast shutdown: open connections are cut, as in a failover or a crash.
            args.extend(["-m", "fast"]);
        }
        self.run("pg_ctl", &args);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .output();
        if self.as_postgres {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["stop", "-m", "immediate", "-D"])
                .arg(&self.data)
                .output();
        }
    }
}

/// One request's fate.
#[derive(Debug, Clone)]
struct Call {
    node: usize,
    kind: &'static str,
    started: Instant,
    ended: Instant,
    status: u16,
    id: Option<String>,
}

#[test]
fn a_database_outage_fails_requests_cleanly_and_the_nodes_recover_by_themselves() {
    let Some(pg) = Cluster::start() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs PostgreSQL: initdb must be there"
        );
        eprintln!("skipped: no PostgreSQL server binaries");
        return;
    };
    let url = pg.url();
    let env = [
        ("PHIVAULT_DATABASE_URL", url.as_str()),
        ("PHIVAULT_DATABASE_SCHEMA", "outage"),
        // Fail fast: a request waits at most 1 s for a connection.
        ("PHIVAULT_DATABASE_ACQUIRE_TIMEOUT_MS", "1000"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    json_of(&cli_with(&data, &env, &["init"]));
    let basic = basic_of(&cli_with(
        &data,
        &env,
        &[
            "client",
            "add",
            "--name",
            "ehr",
            "--role",
            "INTEGRATION_MANAGER",
            "--scopes",
            "system/*.cruds",
            "--json",
        ],
    ));
    let nodes = [Live::node(&data, &env, None), Live::node(&data, &env, None)];
    let token = nodes[0].token(&basic);

    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for (n, node) in nodes.iter().enumerate() {
            for worker in 0..2 {
                let (calls, stop, token) = (calls.clone(), stop.clone(), token.clone());
                s.spawn(move || {
                    let mut mine: Vec<String> = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        let started = Instant::now();
                        let (kind, r) = if worker == 0 || mine.is_empty() {
                            let p = serde_json::json!({"resourceType": "Patient",
                                "identifier": [{"system": "urn:outage", "value": format!("N{n}-{i}")}]});
                            ("create", node.fhir("POST", "/fhir/Patient", &token, "TREAT", Some(&p)))
                        } else {
                            let id = &mine[i % mine.len()];
                            ("read", node.fhir("GET", &format!("/fhir/Patient/{id}"), &token, "TREAT", None))
                        };
                        let id = (kind == "create" && r.status == 201)
                            .then(|| r.body["id"].as_str().unwrap().to_owned());
                        if let Some(id) = &id {
                            mine.push(id.clone());
                        }
                        assert!(
                            r.status != 0,
                            "node {n}: no HTTP answer (a hang or a dropped connection): {}",
                            r.error
                        );
                        calls.lock().unwrap().push(Call {
                            node: n,
                            kind,
                            started,
                            ended: Instant::now(),
                            status: r.status,
                            id,
                        });
                    }
                });
            }
        }
        // Load, then the outage, then the database back.
        std::thread::sleep(Duration::from_secs(3));
        let down_from = Instant::now();
        pg.pg_ctl("stop");
        let down = Instant::now();
        std::thread::sleep(Duration::from_secs(4));
        let up_from = Instant::now();
        pg.pg_ctl("start");
        let up = Instant::now();
        // Recovery: each node answers 201 again without a restart.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let recovered =
                (0..2).all(|n| {
                    calls.lock().unwrap().iter().any(|c| {
                        c.node == n && c.started > up && c.kind == "create" && c.status == 201
                    })
                });
            if recovered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a node did not recover within 30 s of the database's return"
            );
        }
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);

        let calls = calls.lock().unwrap().clone();
        let during: Vec<&Call> = calls
            .iter()
            .filter(|c| c.started > down && c.ended < up_from)
            .collect();
        assert!(
            during.len() >= 4,
            "too few requests fell in the outage: {}",
            during.len()
        );
        for c in &during {
            assert_eq!(
                c.status, 503,
                "during the outage: {c:?} (a success here would be PHI without audit)"
            );
            assert!(
                c.ended - c.started < Duration::from_secs(5),
                "fail fast: {c:?}"
            );
        }
        let before = calls.iter().filter(|c| c.ended < down_from).count();
        assert!(before >= 10, "too little load before the outage: {before}");
        // Nothing but successes and 503s, ever.
        for c in &calls {
            assert!(
                matches!(c.status, 200 | 201 | 503),
                "unexpected answer: {c:?}"
            );
        }
        eprintln!(
            "requests: {} in all, {} during the outage (all 503), {} before",
            calls.len(),
            during.len(),
            before
        );

        // Every acknowledged create is there, read through the other node.
        let acked: Vec<(usize, String)> = calls
            .iter()
            .filter_map(|c| c.id.clone().map(|id| (c.node, id)))
            .collect();
        assert!(acked.len() >= 10);
        for (n, id) in &acked {
            let r = nodes[1 - n].fhir("GET", &format!("/fhir/Patient/{id}"), &token, "TREAT", None);
            assert_eq!(r.status, 200, "acknowledged create {id} lost: {:?}", r.body);
        }
    });
    drop(nodes);
    // One audit chain, intact, after all of it.
    let out = cli_with(&data, &env, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
