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
    Some(Database::new(
        url(),
        format!("t{}{tag}", std::process::id()),
    ))
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

/// Two `phivault serve` processes on one database (two nodes with the same root key): a token
/// issued by one works on the other, a patient created through one is read through the other,
/// and the audit trail both wrote verifies as one chain.
#[test]
fn two_servers_on_one_database_share_tokens_records_and_one_audit_chain() {
    use common::live::SERVE;
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let Some(db) = database("c") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [
        ("PHIVAULT_PASSPHRASE", PASS),
        ("PHIVAULT_DATABASE_URL", db.url.as_str()),
        ("PHIVAULT_DATABASE_SCHEMA", db.prefix.as_str()),
    ];
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_phivault"))
            .args(args)
            .env("PHIVAULT_DATA_DIR", &data)
            .envs(env)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["init"]);
    let client: serde_json::Value = serde_json::from_str(&run(&[
        "client",
        "add",
        "--name",
        "ehr",
        "--role",
        "INTEGRATION_MANAGER",
        "--scopes",
        "system/*.cruds",
        "--json",
    ]))
    .unwrap();
    let basic = format!(
        "{}:{}",
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap()
    );
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_phivault"))
            .args(SERVE)
            .env("PHIVAULT_DATA_DIR", &data)
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let first = std::io::BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .unwrap()
            .unwrap();
        let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
        nodes.push((child, port));
    }
    let ca = data.join("tls/cert.pem").display().to_string();
    let call = |port: u16, method: &str, path: &str, token: Option<&str>, body: Option<&str>| {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "20", "--cacert", &ca, "-X", method]);
        if let Some(t) = token {
            cmd.args([
                "-H",
                &format!("authorization: Bearer {t}"),
                "-H",
                "x-purpose-of-use: TREAT",
            ]);
        }
        if let Some(b) = body {
            cmd.args([
                "-H",
                "content-type: application/fhir+json",
                "--data-binary",
                b,
            ]);
        }
        let out = cmd
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let (pa, pb) = (nodes[0].1, nodes[1].1);
    let out = Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &ca,
            "-u",
            &basic,
            "-d",
            "grant_type=client_credentials",
        ])
        .arg(format!("https://localhost:{pa}/oauth/token"))
        .output()
        .unwrap();
    let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let created = call(
        pa,
        "POST",
        "/fhir/Patient",
        Some(&token),
        Some(
            r#"{"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": "TWO-1"}], "gender": "female"}"#,
        ),
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let read = call(
        pb,
        "GET",
        &format!("/fhir/Patient/{id}"),
        Some(&token),
        None,
    );
    assert_eq!(
        read["id"],
        id.as_str(),
        "node B reads what node A wrote, with A's token: {read}"
    );
    let search = call(
        pb,
        "GET",
        "/fhir/Patient?identifier=urn:t|TWO-1",
        Some(&token),
        None,
    );
    assert_eq!(search["total"], 1);
    for (mut child, _) in nodes {
        let _ = child.kill();
        let _ = child.wait();
    }
    let verified = run(&["audit", "verify"]);
    assert!(
        verified.contains("intact") || verified.contains("verified") || verified.contains("ok"),
        "{verified}"
    );
    drop_schemas(&db);
}

/// Grants, lockdown and sessions are the database's, not a node's: a grant made through node A
/// opens a record on node B, a lockdown through A closes it on B at once, a session made on B
/// works on A, and a logout on A ends it on B.
#[test]
fn grants_lockdown_and_sessions_take_effect_on_every_node() {
    use common::live::Live;
    let Some(db) = database("d") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [
        ("PHIVAULT_DATABASE_URL", db.url.as_str()),
        ("PHIVAULT_DATABASE_SCHEMA", db.prefix.as_str()),
    ];
    let run = |args: &[&str]| common::live::json_of(&common::live::cli_with(&data, &env, args));
    run(&["init"]);
    let fixture = repo_fixtures()[2].clone();
    run(&["import", fixture.to_str().unwrap()]);
    let pid = resources_in(&fixture)[0]["id"].as_str().unwrap().to_owned();
    let otp = |user: &str, role: &str| {
        run(&["user", "add", "--username", user, "--role", role, "--json"])["one_time_password"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (boss_otp, doc_otp) = (otp("boss", "ORG_ADMIN"), otp("doc", "CLINICIAN"));
    let a = Live::node(&data, &env, None);
    let b = Live::node(&data, &env, None);
    let boss = a.sign_in("boss", &boss_otp, "127.0.0.2");
    let doc = b.sign_in("doc", &doc_otp, "127.0.0.3");
    let read = |node: &Live| {
        node.fhir("GET", &format!("/fhir/Patient/{pid}"), &doc, "TREAT", None)
            .status
    };
    let admin = |path: &str, body: serde_json::Value| {
        let bytes = body.to_string().into_bytes();
        a.call(
            "POST",
            path,
            Some(&boss),
            None,
            Some(("application/json", &bytes)),
            &[],
        )
        .status
    };
    assert_eq!(read(&b), 403, "no grant yet");
    assert_eq!(
        admin(
            "/admin/grants",
            json!({"username": "doc", "patient": pid, "purpose": "TREAT"})
        ),
        200
    );
    assert_eq!(read(&b), 200, "node A's grant opens the record on node B");
    assert_eq!(read(&a), 200, "node B's session works on node A");
    assert_eq!(admin("/admin/grants/lockdown", json!({})), 200);
    assert_eq!(
        read(&b),
        403,
        "node A's lockdown closes it on node B at once"
    );
    assert_eq!(read(&a), 403);
    let out = a.call("POST", "/auth/logout", Some(&doc), None, None, &[]);
    assert_eq!(out.status, 204);
    let whoami = b.call("GET", "/auth/whoami", Some(&doc), None, None, &[]);
    assert_eq!(whoami.status, 401, "a logout on A ends the session on B");
    drop((a, b));
    drop_schemas(&db);
}

/// Separate stores for real: each store's pool logs in as a role of its own
/// (`PHIVAULT_DATABASE_URL_<STORE>`) that owns its schema and has no right on the others, so a
/// leaked clinical credential reads no identity; the vault works the same.
#[test]
fn each_store_runs_under_its_own_role_that_cannot_read_another_store() {
    let Some(db) = database("e") else { return };
    let p = &db.prefix;
    let psql = |url: &str, sql: &str| {
        std::process::Command::new("psql")
            .args([url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap()
    };
    let stores = ["identity", "clinical", "control", "audit"];
    for s in stores {
        let out = psql(
            &db.url,
            &format!("CREATE ROLE {p}_{s} LOGIN; CREATE SCHEMA {p}_{s} AUTHORIZATION {p}_{s}"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let role_url = |s: &str| db.url.replacen("postgres@", &format!("{p}_{s}@"), 1);
    assert_ne!(role_url("audit"), db.url);
    let urls: Vec<(String, String)> = stores
        .iter()
        .map(|s| {
            (
                format!("PHIVAULT_DATABASE_URL_{}", s.to_uppercase()),
                role_url(s),
            )
        })
        .collect();
    let mut env: Vec<(&str, &str)> = urls.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let main = role_url("control");
    env.push(("PHIVAULT_DATABASE_URL", &main));
    env.push(("PHIVAULT_DATABASE_SCHEMA", p));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let run = |args: &[&str]| common::live::cli_with(&data, &env, args);
    let out = run(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<String> = repo_fixtures()
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Each role reads its own store, and is refused every other.
    for s in stores {
        for other in stores {
            let table = match other {
                "identity" | "clinical" => "record_versions",
                "control" => "settings",
                _ => "audit_events",
            };
            let out = psql(
                &role_url(s),
                &format!("SELECT count(*) FROM {p}_{other}.{table}"),
            );
            if s == other {
                assert!(
                    out.status.success(),
                    "{s}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let n: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
                assert!(n > 0, "{s} holds nothing");
            } else {
                assert!(!out.status.success(), "role {s} read the {other} store");
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("permission denied"),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    drop_schemas(&db);
    let roles: Vec<String> = stores.iter().map(|s| format!("{p}_{s}")).collect();
    let out = psql(&db.url, &format!("DROP ROLE {}", roles.join(", ")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database password given as a command-line flag is refused (the process list shows
/// arguments to every user), and the refusal does not repeat it.
#[test]
fn a_password_in_database_url_flag_is_refused_without_echoing_it() {
    let tmp = tempfile::tempdir().unwrap();
    for url in [
        "postgres://phivault:Sup3rSecretPw@127.0.0.1:5432/test",
        "postgres://phivault@127.0.0.1:5432/test?password=Sup3rSecretPw",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_phivault"))
            .args(["migrate", "--data-dir"])
            .arg(tmp.path())
            .args(["--database-url", url])
            .env_remove("PHIVAULT_DATABASE_URL")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("password"), "{err}");
        assert!(!err.contains("Sup3rSecretPw"), "{err}");
    }
    // Through the environment, the same URL is accepted (the connection then fails: there is
    // no such role; the error names neither the password nor the URL).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args(["migrate", "--data-dir"])
        .arg(tmp.path())
        .env(
            "PHIVAULT_DATABASE_URL",
            "postgres://phivault:Sup3rSecretPw@127.0.0.1:1/test",
        )
        .env("PHIVAULT_DATABASE_ACQUIRE_TIMEOUT_MS", "500")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("Sup3rSecretPw"), "{err}");
}

/// Two `phivault serve` processes on one database, driven at once for a bounded time with
/// creates, reads and `If-Match` updates of the same few patients: every update that was
/// acknowledged got a version of its own (no lost update: the acknowledged versions of each
/// patient are exactly 2..=head), every acknowledged create is there, and the audit trail
/// both nodes wrote verifies as one chain.
#[test]
fn two_servers_under_concurrent_creates_updates_and_reads_lose_nothing() {
    use common::live::{Live, basic_of, cli_with};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    let Some(db) = database("f") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [
        ("PHIVAULT_DATABASE_URL", db.url.as_str()),
        ("PHIVAULT_DATABASE_SCHEMA", db.prefix.as_str()),
    ];
    assert!(cli_with(&data, &env, &["init"]).status.success());
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
    let shared: Vec<String> = (0..3)
        .map(|i| {
            let p = json!({"resourceType": "Patient", "identifier": [{"system": "urn:load", "value": format!("S{i}")}]});
            let r = nodes[0].fhir("POST", "/fhir/Patient", &token, "TREAT", Some(&p));
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    // (patient, acknowledged version) of every update; ids of every acknowledged create.
    let updates: Mutex<Vec<(String, u64)>> = Mutex::default();
    let creates: Mutex<Vec<String>> = Mutex::default();
    let statuses: Mutex<BTreeMap<(&str, u16), u32>> = Mutex::default();
    let until = Instant::now() + Duration::from_secs(8);
    std::thread::scope(|s| {
        for (n, node) in nodes.iter().enumerate() {
            for w in 0..3 {
                let (token, shared) = (&token, &shared);
                let (updates, creates, statuses) = (&updates, &creates, &statuses);
                s.spawn(move || {
                    let mut i = 0usize;
                    while Instant::now() < until {
                        i += 1;
                        let id = &shared[(i + w + n) % shared.len()];
                        let (kind, status) = match (w + i) % 3 {
                            0 => {
                                let p = json!({"resourceType": "Patient",
                                    "identifier": [{"system": "urn:load", "value": format!("N{n}W{w}I{i}")}]});
                                let r = node.fhir("POST", "/fhir/Patient", token, "TREAT", Some(&p));
                                if r.status == 201 {
                                    creates.lock().unwrap().push(r.body["id"].as_str().unwrap().to_owned());
                                }
                                ("create", r.status)
                            }
                            1 => {
                                let r = node.fhir("GET", &format!("/fhir/Patient/{id}"), token, "TREAT", None);
                                ("read", r.status)
                            }
                            _ => {
                                // Read the head, then update it conditionally on that version.
                                let head = node.fhir("GET", &format!("/fhir/Patient/{id}"), token, "TREAT", None);
                                assert_eq!(head.status, 200);
                                let v: u64 = head.body["meta"]["versionId"].as_str().unwrap().parse().unwrap();
                                let mut body = head.body.clone();
                                body["gender"] = json!(["male", "female", "other"][i % 3]);
                                body["birthDate"] = json!(format!("19{:02}-01-0{}", n * 10 + w, 1 + i % 9));
                                let bytes = body.to_string().into_bytes();
                                let r = node.call(
                                    "PUT",
                                    &format!("/fhir/Patient/{id}"),
                                    Some(token),
                                    Some("TREAT"),
                                    Some(("application/fhir+json", &bytes)),
                                    &[&format!("if-match: W/\"{v}\"")],
                                );
                                if r.status == 200 {
                                    let got: u64 = r.body["meta"]["versionId"].as_str().unwrap().parse().unwrap();
                                    assert_eq!(got, v + 1, "an update lands on the version it read");
                                    updates.lock().unwrap().push((id.clone(), got));
                                }
                                ("update", r.status)
                            }
                        };
                        *statuses.lock().unwrap().entry((kind, status)).or_default() += 1;
                    }
                });
            }
        }
    });
    let statuses = statuses.into_inner().unwrap();
    eprintln!("answers (kind, status) → count: {statuses:?}");
    for (kind, status) in statuses.keys() {
        let fine = match *kind {
            "create" => *status == 201,
            "read" => *status == 200,
            _ => *status == 200 || *status == 412,
        };
        assert!(fine, "{kind} answered {status}");
    }
    let updates = updates.into_inner().unwrap();
    assert!(
        updates.len() >= 10,
        "too few updates landed: {}",
        updates.len()
    );
    assert!(
        statuses.get(&("update", 412)).copied().unwrap_or(0) > 0,
        "the load made no conflicting update: it tests nothing"
    );
    for id in &shared {
        let mut versions: Vec<u64> = updates
            .iter()
            .filter(|(p, _)| p == id)
            .map(|(_, v)| *v)
            .collect();
        versions.sort_unstable();
        let head = nodes[1].fhir("GET", &format!("/fhir/Patient/{id}"), &token, "TREAT", None);
        let head: u64 = head.body["meta"]["versionId"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let expected: Vec<u64> = (2..=head).collect();
        assert_eq!(
            versions, expected,
            "patient {id}: every acknowledged update, each its own version"
        );
    }
    let creates = creates.into_inner().unwrap();
    assert!(creates.len() >= 10);
    for (i, id) in creates.iter().enumerate() {
        let r = nodes[i % 2].fhir("GET", &format!("/fhir/Patient/{id}"), &token, "TREAT", None);
        assert_eq!(r.status, 200, "acknowledged create {id} missing");
    }
    drop(nodes);
    let out = cli_with(&data, &env, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop_schemas(&db);
}
