//! Key management end to end, on the suite's backend (SQLite files, or PostgreSQL with
//! PHIVAULT_TEST_BACKEND=postgres): `keys rotate` rewraps every data key to a new KEK version
//! (the old one then wraps none and can be retired), reads and writes keep working while it
//! runs (on the rotating vault and on a second one that must reload its keyring), a rotation
//! killed midway finishes when run again without a third version, `change-passphrase`
//! re-seals the root key only, `/admin/keys/rotate` is for SUPER_ADMIN only, and a rotation
//! makes an overdue KEK pass the compliance report's key-management check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, add_user, cli, cli_with, import_repo_fixtures, json_of, stdout_ok};
use common::*;
use phivault::datadir::Opened;
use phivault_core::{FakeClock, StoreKind};
use phivault_vault::{ImportOptions, ImportReport, PageCursor, RotateOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Every live record of both stores, opened: (type, id) → resource.
async fn everything(o: &Opened) -> BTreeMap<(String, String), Value> {
    let c = ctx(o).await;
    let mut out = BTreeMap::new();
    for kind in [StoreKind::Identity, StoreKind::Clinical] {
        let mut after: Option<PageCursor> = None;
        loop {
            let (page, next) = o.vault.page(&c, kind, after.as_ref(), 200).await.unwrap();
            for s in page {
                out.insert((s.rtype.as_str().to_owned(), s.id.to_string()), s.resource);
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    out
}

/// `n` patients, each with one Observation, as one collection Bundle.
fn generated(n: usize, tag: &str) -> Value {
    let mut entries = Vec::new();
    for i in 0..n {
        let pid = format!("{tag}-p{i}");
        entries.push(json!({"resource": {"resourceType": "Patient", "id": pid,
            "name": [{"family": format!("Rotation{i}"), "given": ["Kay"]}],
            "gender": "unknown", "birthDate": "1980-01-01"}}));
        entries.push(
            json!({"resource": {"resourceType": "Observation", "id": format!("{tag}-o{i}"),
            "status": "final", "code": {"text": "heart rate"},
            "valueQuantity": {"value": 60 + (i % 40), "unit": "/min"},
            "subject": {"reference": format!("Patient/{pid}")}}}),
        );
    }
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

async fn import_doc(o: &Opened, doc: Value) -> ImportReport {
    let c = ctx(o).await;
    let mut report = ImportReport::default();
    o.vault
        .import_document(
            &c,
            "generated",
            doc,
            ImportOptions { strict: true },
            &mut report,
            &mut |_| {},
        )
        .await
        .unwrap();
    report
}

/// A vault in `dir` holding the repo fixtures and `n` generated patients with an Observation
/// each; returns what it holds.
async fn vault_with(dir: &Path, n: usize) -> BTreeMap<(String, String), Value> {
    let o = new_vault(dir).await;
    let r = import_files(&o, &repo_fixtures(), false).await;
    assert!(r.patients > 0);
    if n > 0 {
        let r = import_doc(&o, generated(n, "gen")).await;
        assert_eq!(r.patients, n as u64);
    }
    let all = everything(&o).await;
    o.close().await;
    all
}

fn status(data: &Path) -> Value {
    json_of(&cli(data, &["keys", "status", "--json"]))
}

/// (version, identity DEKs, clinical DEKs, rows) of each KEK version.
fn versions(s: &Value) -> Vec<(u64, u64, u64, u64)> {
    s["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["identity_deks"].as_u64().unwrap(),
                v["clinical_deks"].as_u64().unwrap(),
                v["rows"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The audit events of the default organization, as JSON.
fn audit_events(data: &Path) -> Vec<Value> {
    stdout_ok(&cli(data, &["audit", "export"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn rotate_rewraps_every_key_then_the_old_version_retires_and_everything_still_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let before = vault_with(&data, 0).await;
    assert!(before.len() >= 10, "fixtures: {}", before.len());
    let s = status(&data);
    assert_eq!(s["current"], 1);
    let (_, id1, cl1, rows1) = versions(&s)[0];
    assert!(id1 > 0 && cl1 > 0);
    // The only, current version cannot be retired.
    let out = cli(&data, &["keys", "retire", "--version", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("current"));

    let r = json_of(&cli(&data, &["keys", "rotate", "--json"]));
    assert_eq!(r["target"], 2, "{r}");
    assert_eq!(r["added"], true);
    assert_eq!(r["finished"], true);
    assert_eq!(r["total"].as_u64(), Some(rows1));
    assert_eq!(r["rewrapped"].as_u64(), Some(rows1));
    assert_eq!(
        (r["skipped"].as_u64(), r["failed"].as_u64()),
        (Some(0), Some(0))
    );
    let s = status(&data);
    assert_eq!(s["current"], 2);
    assert_eq!(s["unfinished"], false);
    assert_eq!(versions(&s), [(1, 0, 0, 0), (2, id1, cl1, rows1)]);
    // Every record opens, unchanged.
    let o = open_vault(&data).await;
    assert_eq!(everything(&o).await, before);
    o.close().await;

    // Right after the rotation, a process that loaded the keyring before it may still seal
    // under version 1 for a few seconds: retiring it is refused until the grace has passed.
    let early = cli(&data, &["keys", "retire", "--version", "1"]);
    assert!(!early.status.success());
    let why = String::from_utf8_lossy(&early.stderr);
    assert!(why.contains("was made") && why.contains("30 s"), "{why}");
    // No other process runs here, so the operator may waive the wait.
    stdout_ok(&cli(
        &data,
        &["keys", "retire", "--version", "1", "--grace-seconds", "0"],
    ));
    let s = status(&data);
    assert_eq!(versions(&s), [(2, id1, cl1, rows1)]);
    let o = open_vault(&data).await;
    assert_eq!(
        everything(&o).await,
        before,
        "everything reads after retiring"
    );
    o.close().await;
    // Once retired, it is gone; the current one stays.
    assert!(
        !cli(&data, &["keys", "retire", "--version", "1"])
            .status
            .success()
    );
    assert!(
        !cli(&data, &["keys", "retire", "--version", "2"])
            .status
            .success()
    );
    // A second rotation adds version 3.
    let r = json_of(&cli(&data, &["keys", "rotate", "--json"]));
    assert_eq!(
        (r["target"].as_u64(), r["added"].as_bool()),
        (Some(3), Some(true))
    );
    // Audited, with counts only; the chain verifies.
    let events = audit_events(&data);
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["keys-rotate", "keys-rewrap", "keys-retire"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let rewrap = events
        .iter()
        .find(|e| e["action"] == "keys-rewrap")
        .unwrap();
    assert_eq!(rewrap["count"].as_u64(), Some(rows1));
    assert_eq!(rewrap["version"], 2);
    let refused = events
        .iter()
        .filter(|e| e["action"] == "keys-retire" && e["outcome"] == "error")
        .count();
    assert_eq!(refused, 4, "each refused retire is audited");
    stdout_ok(&cli(&data, &["audit", "verify"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_keep_working_while_rotation_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let n = 1500;
    let before = vault_with(&data, n).await;
    let patients = before.keys().filter(|(t, _)| t == "Patient").count();
    let o = open_vault(&data).await;
    // A second vault on the same stores: another node, whose keyring nobody tells about the
    // new version (it must reload when it meets it).
    let node2 = open_vault(&data).await;
    let stop = Arc::new(AtomicBool::new(false));
    let loops = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for i in 0..4 {
        let vault = if i % 2 == 0 {
            o.vault.clone()
        } else {
            node2.vault.clone()
        };
        let c = ctx(&o).await;
        let (stop, loops) = (stop.clone(), loops.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let mut seen = 0;
                let mut after: Option<PageCursor> = None;
                loop {
                    let (page, next) = vault
                        .page(&c, StoreKind::Identity, after.as_ref(), 250)
                        .await
                        .map_err(|e| format!("reader {i}: {e}"))?;
                    seen += page.len();
                    // Counted per page, not per pass: a whole pass over thousands of patients
                    // can outlast a quick rotation on a loaded machine.
                    loops.fetch_add(1, Ordering::SeqCst);
                    match next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                if seen < patients {
                    return Err(format!("reader {i} saw {seen} of {patients} patients"));
                }
                let some = phivault_core::ResourceId::parse(&format!("gen-p{}", seen % n)).unwrap();
                vault
                    .read(&c, phivault_core::ResourceType::PATIENT, &some)
                    .await
                    .map_err(|e| format!("reader {i}: {e}"))?;
            }
            Ok::<(), String>(())
        }));
    }
    let writer = {
        let (vault, c, stop) = (node2.vault.clone(), ctx(&o).await, stop.clone());
        tokio::spawn(async move {
            let mut made = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let p = json!({"resourceType": "Patient", "gender": "unknown"});
                vault
                    .create(&c, p)
                    .await
                    .map_err(|e| format!("writer: {e}"))?;
                made += 1;
            }
            Ok::<u64, String>(made)
        })
    };
    while loops.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let started = loops.load(Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    let opts = RotateOptions {
        batch: 64,
        pause: std::time::Duration::from_millis(5),
        max_batches: None,
    };
    let c = ctx(&o).await;
    let mut batches = 0;
    let (plan, report) = o
        .vault
        .rotate_keys(&c, opts, &mut |_| batches += 1)
        .await
        .unwrap();
    let took = t0.elapsed();
    let during = loops.load(Ordering::SeqCst) - started;
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap().unwrap();
    }
    let made = writer.await.unwrap().unwrap();
    eprintln!(
        "rotation: {} of {} rows rewrapped ({} skipped) in {batches} batches, {took:?}; \
         {during} reader pages and {made} creates meanwhile",
        report.rewrapped, plan.total, report.skipped
    );
    assert!(plan.total >= 2 * n as u64);
    assert!(report.finished, "{report:?}");
    assert!(during >= 2, "the readers did not run during the rotation");
    assert!(made > 0, "the writer did not run");
    // Nothing is left on version 1: not the records, not what the writer made meanwhile.
    let s = o.vault.key_status(&c).await.unwrap();
    assert_eq!(s.current, 2);
    assert!(!s.unfinished);
    assert_eq!(s.versions[0].rows, 0, "{s:?}");
    let after = everything(&node2).await;
    assert_eq!(after.len(), before.len() + made as usize);
    assert!(before.iter().all(|(k, v)| after.get(k) == Some(v)));
    o.close().await;
    node2.close().await;
}

/// `phivault keys rotate` as a child process, with the suite's backend.
fn rotate_child(data: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args(["keys", "rotate"])
        .args(extra)
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", data)
        .envs(backend_env(data))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_rotation_killed_midway_finishes_when_run_again_without_a_third_version() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let before = vault_with(&data, 1500).await;
    let mut child = rotate_child(&data, &["--batch-size", "32", "--pause-ms", "40"]);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut progress = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("rewrapped ") {
            let done: u64 = rest.split('/').next().unwrap().parse().unwrap();
            progress.push(done);
            if done >= 200 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no chance to tidy up
    child.wait().unwrap();
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    let s = status(&data);
    assert_eq!(s["current"], 2);
    assert_eq!(s["unfinished"], true, "{s}");
    let v = versions(&s);
    assert_eq!(v.len(), 2);
    assert!(v[0].3 > 0 && v[1].3 >= 200, "midway: {v:?}");
    // Half-rotated, every record still opens (each under the version its row names).
    let o = open_vault(&data).await;
    assert_eq!(everything(&o).await, before);
    o.close().await;
    // Version 1 still wraps keys: it cannot be retired yet.
    let out = cli(&data, &["keys", "retire", "--version", "1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still wraps"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Run again: it resumes towards version 2 and finishes; no version 3.
    let out = cli(&data, &["keys", "rotate", "--json"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resuming towards KEK version 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_of(&out);
    assert_eq!(
        (r["target"].as_u64(), r["added"].as_bool()),
        (Some(2), Some(false))
    );
    assert_eq!(r["finished"], true);
    assert_eq!(r["total"], v[0].3);
    let s = status(&data);
    assert_eq!(s["unfinished"], false);
    let v = versions(&s);
    assert_eq!(
        v.iter().map(|x| x.0).collect::<Vec<_>>(),
        [1, 2],
        "no third version"
    );
    assert_eq!(v[0].3, 0, "nothing left on version 1");
    stdout_ok(&cli(
        &data,
        &["keys", "retire", "--version", "1", "--grace-seconds", "0"],
    ));
    let o = open_vault(&data).await;
    assert_eq!(everything(&o).await, before);
    o.close().await;
    let events = audit_events(&data);
    assert!(events.iter().any(|e| e["action"] == "keys-rotate-resume"));
}

#[tokio::test]
async fn change_passphrase_reseals_the_root_key_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let before = vault_with(&data, 0).await;
    let key_file = data.join("keys/root.key");
    let old_file = std::fs::read(&key_file).unwrap();
    let keyring = status(&data)["versions"].clone();
    let new = "a different long passphrase 77";
    // Too short, or the same one: refused, nothing changed.
    for bad in ["short", PASS] {
        let out = cli_with(
            &data,
            &[("PHIVAULT_NEW_PASSPHRASE", bad)],
            &["keys", "change-passphrase"],
        );
        assert!(!out.status.success());
        assert_eq!(std::fs::read(&key_file).unwrap(), old_file);
    }
    // From a file, as an operator would.
    let pass_file = tmp.path().join("new-pass");
    std::fs::write(&pass_file, format!("{new}\n")).unwrap();
    stdout_ok(&cli_with(
        &data,
        &[("PHIVAULT_NEW_PASSPHRASE_FILE", pass_file.to_str().unwrap())],
        &["keys", "change-passphrase"],
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let names: Vec<String> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["root.key"], "no temporary file left");
    // The old passphrase is refused; the new one opens everything, keyring unchanged.
    let out = cli(&data, &["keys", "status", "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    let with_new = [("PHIVAULT_PASSPHRASE", new)];
    let s = json_of(&cli_with(&data, &with_new, &["keys", "status", "--json"]));
    assert_eq!(s["versions"], keyring);
    let o = phivault::datadir::open_on(
        &data,
        &phivault_crypto::Passphrase::new(new.to_owned()),
        Arc::new(phivault_core::SystemClock),
        test_database(&data).as_ref(),
    )
    .await
    .unwrap();
    assert_eq!(everything(&o).await, before);
    o.close().await;
    // No file holds the new passphrase; the change is audited.
    assert!(scan_vault(&data, &[new.as_bytes().to_vec()]).is_empty());
    let out = cli_with(&data, &with_new, &["audit", "export"]);
    let text = stdout_ok(&out);
    assert!(text.contains("\"action\":\"keys-change-passphrase\""));
    assert!(!text.contains(new) && !text.contains(PASS));
}

#[tokio::test]
async fn admin_keys_rotate_is_for_super_admin_only_and_a_running_server_follows_the_new_version() {
    let mut otps = Vec::new();
    let mut ehr = String::new();
    let live = Live::start(|data| {
        import_repo_fixtures(data);
        for (name, role) in [("root.admin", "SUPER_ADMIN"), ("org.admin", "ORG_ADMIN")] {
            otps.push(add_user(data, name, role));
        }
        ehr = Live::client(
            data,
            "ehr",
            "INTEGRATION_MANAGER",
            "system/*.cruds",
            "TREAT",
        );
    });
    let tokens: Vec<String> = ["root.admin", "org.admin"]
        .iter()
        .enumerate()
        .map(|(i, n)| live.sign_in(n, &otps[i], &format!("127.0.7.{}", 10 + i)))
        .collect();
    let client = live.token(&ehr);
    let rotate = |t: Option<&str>| live.call("POST", "/admin/keys/rotate", t, None, None, &[]);
    assert_eq!(rotate(None).status, 401);
    assert_eq!(rotate(Some(&tokens[1])).status, 403);
    assert_eq!(rotate(Some(&client)).status, 403);
    assert_eq!(
        live.call("GET", "/admin/keys", Some(&tokens[1]), None, None, &[])
            .status,
        403
    );
    assert_eq!(
        status(&live.data)["current"],
        1,
        "refused calls change nothing"
    );
    let r = rotate(Some(&tokens[0]));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["target"].as_u64(), r.body["added"].as_bool()),
        (Some(2), Some(true))
    );
    // The rewrap runs in the background: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = live.call("GET", "/admin/keys", Some(&tokens[0]), None, None, &[]);
        assert_eq!(s.status, 200, "{:?}", s.body);
        if s.body["unfinished"] == false {
            assert_eq!(s.body["versions"][0]["rows"], 0, "{}", s.body);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rewrap did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Another process rotates again (another node): the server reads every record under the
    // version it has never seen, and its new writes use that version.
    let r = json_of(&cli(&live.data, &["keys", "rotate", "--json"]));
    assert_eq!(
        (r["target"].as_u64(), r["finished"].as_bool()),
        (Some(3), Some(true))
    );
    let ids: Vec<String> = repo_fixtures()
        .iter()
        .flat_map(|f| resources_in(f))
        .filter(|r| r["resourceType"] == "Patient")
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    assert!(!ids.is_empty());
    for id in &ids {
        let r = live.fhir(
            "GET",
            &format!("/fhir/Patient/{id}"),
            &client,
            "TREAT",
            None,
        );
        assert_eq!(r.status, 200, "{id}: {:?}", r.body);
    }
    let p = json!({"resourceType": "Patient", "gender": "unknown"});
    let made = live.fhir("POST", "/fhir/Patient", &client, "TREAT", Some(&p));
    assert_eq!(made.status, 201, "{:?}", made.body);
    let s = status(&live.data);
    assert_eq!(
        s["unfinished"], false,
        "the server wrote under an old version: {s}"
    );
    // The route is in the OpenAPI document with its 401 and 403.
    let doc = live.call("GET", "/openapi.json", None, None, None, &[]);
    let op = &doc.body["paths"]["/admin/keys/rotate"]["post"]["responses"];
    assert!(op.get("401").is_some() && op.get("403").is_some(), "{op}");
    let events = audit_events(&live.data);
    let denied = events
        .iter()
        .filter(|e| e["action"] == "keys-rotate" && e["outcome"] == "denied")
        .count();
    assert_eq!(denied, 2);
    assert!(events.iter().any(|e| e["action"] == "keys-rewrap"
        && e["actor"] == "user:root.admin"
        && e["count"].as_u64() > Some(0)));
}

#[tokio::test]
async fn a_rotation_makes_an_overdue_kek_pass_the_compliance_check() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    vault_with(&data, 0).await;
    // 400 days later (the policy allows 365).
    let later = phivault_core::Clock::now(&phivault_core::SystemClock) + time::Duration::days(400);
    let clock = Arc::new(FakeClock::new(later));
    let o = open_with_clock(&data, clock.clone()).await;
    let c = ctx(&o).await;
    let check = |r: &phivault_vault::compliance::Report| {
        r.checks
            .iter()
            .find(|c| c.id == "key-management")
            .unwrap()
            .clone()
    };
    let k = check(&o.vault.compliance_report(&c).await.unwrap());
    assert_eq!(k.status.as_str(), "fail", "{}", k.evidence);
    let s = o.vault.key_status(&c).await.unwrap();
    assert!(s.overdue);
    assert_eq!(s.versions[0].age_days, 400);
    o.vault
        .rotate_keys(&c, RotateOptions::default(), &mut |_| {})
        .await
        .unwrap();
    let k = check(&o.vault.compliance_report(&c).await.unwrap());
    assert_eq!(k.status.as_str(), "pass", "{}", k.evidence);
    assert!(k.evidence.contains("Current KEK v2"), "{}", k.evidence);
    let s = o.vault.key_status(&c).await.unwrap();
    assert!(!s.overdue);
    assert_eq!(
        s.versions
            .iter()
            .map(|v| (v.version, v.age_days, v.current))
            .collect::<Vec<_>>(),
        [(1, 400, false), (2, 0, true)]
    );
    o.close().await;
}

/// A process that opened the vault before another process rotated the KEK (a long CLI import
/// beside the server, say) moves its new writes to the new version within 10 s: it reloads the
/// keyring before a write when it loaded it longer ago than that.
#[tokio::test]
async fn a_process_opened_before_a_rotation_moves_its_writes_to_the_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    vault_with(&data, 0).await;
    let o = open_vault(&data).await;
    let ctx = ctx(&o).await;
    let r = json_of(&cli(&data, &["keys", "rotate", "--json"]));
    assert_eq!(r["target"], 2, "{r}");
    let patient = |i: usize| serde_json::json!({"resourceType": "Patient", "name": [{"family": format!("Late{i}")}]});
    // Within the window, this process still seals under the version it loaded. (The write
    // comes straight after the rotation: every CLI run costs an Argon2, and the window is
    // counted from the open.)
    o.vault.create(&ctx, patient(1)).await.unwrap();
    let identity_on = |v: u64| {
        versions(&status(&data))
            .iter()
            .find(|x| x.0 == v)
            .map_or(0, |x| x.1)
    };
    assert_eq!(identity_on(1), 1, "this write used version 1");
    let rows_on_2 = versions(&status(&data))
        .iter()
        .find(|x| x.0 == 2)
        .map_or(0, |x| x.3);
    assert_eq!(
        Some(rows_on_2),
        r["rewrapped"].as_u64(),
        "version 2 holds what the rotation moved, nothing else: {r}"
    );
    tokio::time::sleep(
        phivault_vault::keys::KEYRING_MAX_AGE + std::time::Duration::from_millis(500),
    )
    .await;
    o.vault.create(&ctx, patient(2)).await.unwrap();
    assert_eq!(
        identity_on(1),
        1,
        "a write after the window sealed under the old version"
    );
    o.close().await;
    // The straggler keeps version 1 from being retired until a rotation takes it along.
    let out = cli(
        &data,
        &["keys", "retire", "--version", "1", "--grace-seconds", "0"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("still wraps 1"));
}
