//! Encrypted backups end to end with the real binary: taken while the server serves and
//! writes; wipe and restore gives back every record and a verifying audit chain; any flipped
//! or missing byte fails `verify` and `restore` with nothing written; the file holds no
//! plaintext; the wrong passphrase opens nothing; the schedule in `serve` keeps N backups.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, cli, cli_with};
use common::*;
use serde_json::Value;
use std::path::Path;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn import_all(data: &Path) {
    let files: Vec<String> = repo_fixtures()
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    ok(&cli(data, &args));
}

/// Every resource of the vault in `data`, by (type, id), without `meta`.
fn exported(data: &Path) -> std::collections::BTreeMap<(String, String), Value> {
    let out = data.parent().unwrap().join(format!(
        "export-{}.json",
        data.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&out);
    ok(&cli(data, &["export", "--out", out.to_str().unwrap()]));
    let bundle = read_json(&out);
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = without_meta(e["resource"].clone());
            (
                (
                    r["resourceType"].as_str().unwrap().to_owned(),
                    r["id"].as_str().unwrap().to_owned(),
                ),
                r,
            )
        })
        .collect()
}

fn skip_on_postgres() -> bool {
    if on_postgres() {
        eprintln!("skipped: backups of PostgreSQL stores are PostgreSQL's own (see README)");
    }
    on_postgres()
}

#[test]
fn backup_while_serving_then_wipe_and_restore_gives_back_everything() {
    if skip_on_postgres() {
        return;
    }
    let live = Live::start(|data| {
        import_all(data);
    });
    let basic = Live::client(
        &live.data,
        "ehr",
        "INTEGRATION_MANAGER",
        "system/*.cruds",
        "TREAT",
    );
    let token = live.token(&basic);
    let before = exported(&live.data);
    assert!(before.len() >= 10);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("one.pvbak");
    // Online: a writer keeps creating patients through the API while the backup is taken.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let created = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let p = serde_json::json!({"resourceType": "Patient", "gender": "unknown"});
                let r = live.fhir("POST", "/fhir/Patient", &token, "TREAT", Some(&p));
                assert_eq!(r.status, 201, "{:?}", r.body);
                n += 1;
            }
            n
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let out = ok(&cli(
            &live.data,
            &["backup", "create", "--out", file.to_str().unwrap(), "--json"],
        ));
        let summary: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(summary["store_files"], 4);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        writer.join().unwrap()
    });
    assert!(created > 0, "the writer wrote nothing during the backup");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // No plaintext: none of the patients' PHI is in the file.
    let bytes = std::fs::read(&file).unwrap();
    let phi = phi_strings(&repo_fixtures());
    assert!(phi.len() >= 20);
    for s in &phi {
        assert!(
            !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
            "plaintext PHI in the backup file"
        );
    }

    // Verify: checked without restoring, and the vault remembers it (compliance: backups).
    let out = ok(&cli(
        &live.data,
        &["backup", "verify", file.to_str().unwrap(), "--json"],
    ));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["records_opened"].as_u64().unwrap() >= before.len() as u64);
    assert!(v["audit_events"].as_u64().unwrap() > 0);
    let report = cli(&live.data, &["compliance", "report", "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let backups = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"].as_str().unwrap_or("").contains("backup"))
        .unwrap()
        .clone();
    assert_eq!(backups["status"], "pass", "{backups}");

    // Wipe: stopping the server removes its whole temporary dir. Restore: everything is back.
    let wiped = live.data.clone();
    // The TLS certificate is the server's configuration, not the vault's: kept apart.
    let tls = tmp.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(wiped.join("tls").join(f), tls.join(f)).unwrap();
    }
    drop(live);
    assert!(!wiped.exists());
    let data = tmp.path().join("data");
    ok(&cli(
        &data,
        &["backup", "restore", file.to_str().unwrap(), "--json"],
    ));
    let after = exported(&data);
    for (key, resource) in &before {
        assert_eq!(after.get(key), Some(resource), "{key:?} after restore");
    }
    assert!(
        after.len() > before.len(),
        "the patients created before the snapshot are there too"
    );
    let out = ok(&cli(&data, &["audit", "verify"]));
    assert!(!out.contains("BROKEN"), "{out}");
    // And the restored vault serves.
    std::fs::rename(&tls, data.join("tls")).unwrap();
    let again = Live::node(&data, &[], None);
    let (t, id) = (again.token(&basic), before.keys().next().unwrap());
    let r = again.fhir("GET", &format!("/fhir/{}/{}", id.0, id.1), &t, "TREAT", None);
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[test]
fn a_damaged_backup_or_a_wrong_passphrase_fails_and_writes_nothing() {
    if skip_on_postgres() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&cli(&data, &["init"]));
    import_all(&data);
    let file = tmp.path().join("b.pvbak");
    ok(&cli(&data, &["backup", "create", "--out", file.to_str().unwrap()]));
    let good = std::fs::read(&file).unwrap();
    let header_len = u32::from_be_bytes(good[16..20].try_into().unwrap()) as usize;
    let positions = [
        3,                      // the magic
        17,                     // the header's length
        20 + header_len / 2,    // inside the clear header
        20 + header_len + 2,    // a chunk's length
        20 + header_len + 40,   // inside the first chunk
        good.len() / 2,         // somewhere in the payload
        good.len() - 1,         // the last tag byte
    ];
    let mut cases: Vec<(String, Vec<u8>)> = positions
        .iter()
        .map(|&p| {
            let mut b = good.clone();
            b[p] ^= 0x01;
            (format!("byte {p} flipped"), b)
        })
        .collect();
    cases.push(("cut short".into(), good[..good.len() - 100].to_vec()));
    let mut longer = good.clone();
    longer.extend_from_slice(b"trailing");
    cases.push(("bytes appended".into(), longer));
    for (i, (name, bytes)) in cases.iter().enumerate() {
        let bad = tmp.path().join(format!("bad{i}.pvbak"));
        std::fs::write(&bad, bytes).unwrap();
        let v = cli(&data, &["backup", "verify", bad.to_str().unwrap()]);
        assert!(!v.status.success(), "verify accepted a backup with {name}");
        let target = tmp.path().join(format!("restored{i}"));
        let r = cli(&target, &["backup", "restore", bad.to_str().unwrap()]);
        assert!(!r.status.success(), "restore accepted a backup with {name}");
        assert!(!target.exists(), "{name}: restore wrote {}", target.display());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".phivault-"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: scratch left behind");
    }
    // The wrong passphrase opens nothing and writes nothing.
    let target = tmp.path().join("wrong");
    let r = cli_with(
        &target,
        &[("PHIVAULT_PASSPHRASE", "not the passphrase of this vault")],
        &["backup", "restore", file.to_str().unwrap()],
    );
    assert!(!r.status.success());
    assert!(!target.exists());
    // Restoring into a non-empty directory is refused.
    let r = cli(&data, &["backup", "restore", file.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("not empty"));
    // An existing output file is never overwritten.
    let r = cli(&data, &["backup", "create", "--out", file.to_str().unwrap()]);
    assert!(!r.status.success());
    assert_eq!(std::fs::read(&file).unwrap(), good);
    // The good one restores.
    ok(&cli(&target, &["backup", "restore", file.to_str().unwrap()]));
}

#[test]
fn serve_takes_scheduled_backups_and_keeps_the_newest() {
    if skip_on_postgres() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let dir_s = dir.display().to_string();
    let live = Live::start_with(
        &[
            ("PHIVAULT_BACKUP_DIR", dir_s.as_str()),
            ("PHIVAULT_BACKUP_INTERVAL", "1s"),
            ("PHIVAULT_BACKUP_KEEP", "2"),
        ],
        import_all,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let files = loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "pvbak"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        // Four rounds at least: the pruning has had to remove some.
        let made = common::live::cli(&live.data, &["audit", "export", "--format", "jsonl"]);
        let rounds = String::from_utf8_lossy(&made.stdout)
            .lines()
            .filter(|l| l.contains("\"action\":\"backup\""))
            .count();
        if rounds >= 4 {
            break names;
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled backups");
    };
    assert!(
        (1..=3).contains(&files.len()),
        "keep 2 (a third may be in the making): {files:?}"
    );
    let newest = files.last().unwrap();
    ok(&cli(&live.data, &["backup", "verify", newest.to_str().unwrap()]));
}
