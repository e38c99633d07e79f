//! Encrypted backups end to end with the real binary, on SQLite and (with
//! PHIVAULT_TEST_BACKEND=postgres) on PostgreSQL: taken while the server serves and
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

#[test]
fn backup_while_serving_then_wipe_and_restore_gives_back_everything() {
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
        let out = cli(
            &live.data,
            &[
                "backup",
                "create",
                "--out",
                file.to_str().unwrap(),
                "--json",
            ],
        );
        // Stop the writer before any assertion: a panic here would wait for it forever.
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let summary: Value = serde_json::from_str(ok(&out).trim()).unwrap();
        assert!(summary["store_files"].as_u64().unwrap() >= 4, "{summary}");
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
    let r = again.fhir(
        "GET",
        &format!("/fhir/{}/{}", id.0, id.1),
        &t,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[test]
fn a_damaged_backup_or_a_wrong_passphrase_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&cli(&data, &["init"]));
    import_all(&data);
    let file = tmp.path().join("b.pvbak");
    ok(&cli(
        &data,
        &["backup", "create", "--out", file.to_str().unwrap()],
    ));
    let good = std::fs::read(&file).unwrap();
    let header_len = u32::from_be_bytes(good[16..20].try_into().unwrap()) as usize;
    let positions = [
        3,                    // the magic
        17,                   // the header's length
        20 + header_len / 2,  // inside the clear header
        20 + header_len + 2,  // a chunk's length
        20 + header_len + 40, // inside the first chunk
        good.len() / 2,       // somewhere in the payload
        good.len() - 1,       // the last tag byte
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
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    for (i, (name, bytes)) in cases.iter().enumerate() {
        let bad = bad_dir.join(format!("bad{i}.pvbak"));
        std::fs::write(&bad, bytes).unwrap();
        let v = cli(&data, &["backup", "verify", bad.to_str().unwrap()]);
        assert!(!v.status.success(), "verify accepted a backup with {name}");
        let target = tmp.path().join(format!("restored{i}"));
        let r = cli(&target, &["backup", "restore", bad.to_str().unwrap()]);
        assert!(!r.status.success(), "restore accepted a backup with {name}");
        assert!(
            !target.exists(),
            "{name}: restore wrote {}",
            target.display()
        );
        let leftovers: Vec<_> = std::fs::read_dir(&bad_dir)
            .unwrap()
            .chain(std::fs::read_dir(tmp.path()).unwrap())
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
    let r = cli(
        &data,
        &["backup", "create", "--out", file.to_str().unwrap()],
    );
    assert!(!r.status.success());
    assert_eq!(std::fs::read(&file).unwrap(), good);
    // A damaged backup beside the good one stops its restore: it may know of erasures.
    let beside = tmp.path().join("damaged.pvbak");
    std::fs::write(&beside, &cases[0].1).unwrap();
    let r = cli(&target, &["backup", "restore", file.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("move it away"));
    assert!(!target.exists());
    std::fs::remove_file(&beside).unwrap();
    // The good one restores, and its scratch lock does not come along into the data dir.
    ok(&cli(
        &target,
        &["backup", "restore", file.to_str().unwrap()],
    ));
    assert!(target.join("keys").exists());
    assert!(!target.join(".in-use").exists());
}

#[test]
fn serve_takes_scheduled_backups_and_keeps_the_newest() {
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
    std::fs::create_dir(tmp.path().join("kept")).unwrap();
    let kept = tmp.path().join("kept/newest.pvbak");
    let files = loop {
        assert!(std::time::Instant::now() < deadline, "no scheduled backups");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "pvbak"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        // The newest, copied at once: by the time it is verified below, later rounds may have
        // pruned it (each CLI run here costs an Argon2 of its own).
        let Some(newest) = names.last() else { continue };
        if std::fs::copy(newest, &kept).is_err() {
            continue;
        }
        // Four rounds at least: the pruning has had to remove some.
        let made = common::live::cli(&live.data, &["audit", "export", "--format", "jsonl"]);
        let rounds = String::from_utf8_lossy(&made.stdout)
            .lines()
            .filter(|l| l.contains("\"action\":\"backup\""))
            .count();
        if rounds >= 4 {
            break names;
        }
    };
    assert!(
        (1..=3).contains(&files.len()),
        "keep 2 (a third may be in the making): {files:?}"
    );
    ok(&cli(
        &live.data,
        &["backup", "verify", kept.to_str().unwrap()],
    ));
}

/// Crypto-shredding reaches backups: patients erased (here by a retention run) after a backup
/// was taken do not come back when that older backup is restored, because restore applies the
/// tombstones of newer backups beside it (or of `--tombstones-from`, a live vault). Restored
/// alone, with nothing newer to learn from, the old backup does bring them back — which is what
/// the tombstones are for.
#[test]
fn a_restored_older_backup_does_not_resurrect_erased_patients() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&cli(&data, &["init"]));
    let mut fixtures: Vec<String> = std::fs::read_dir(repo_root().join("testdata/retention"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.display().to_string())
        .collect();
    fixtures.sort();
    let mut import = vec!["import"];
    import.extend(fixtures.iter().map(String::as_str));
    ok(&cli(&data, &import));
    let mrns = [
        "MRN-RT-1001",
        "MRN-RT-1002",
        "MRN-RT-1003",
        "MRN-RT-1004",
        "MRN-RT-1005",
    ];
    let found = |dir: &Path, mrn: &str| -> bool {
        let out = ok(&cli(dir, &["search", "--identifier", mrn]));
        serde_json::from_str::<Value>(&out).unwrap()["total"] == 1
    };
    assert!(mrns.iter().all(|m| found(&data, m)));

    let backups = tmp.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let old = backups.join("1-old.pvbak");
    ok(&cli(
        &data,
        &["backup", "create", "--out", old.to_str().unwrap()],
    ));
    ok(&cli(
        &data,
        &["retention", "set", "--type", "Patient", "--years", "1"],
    ));
    ok(&cli(&data, &["retention", "run"]));
    let erased: Vec<&str> = mrns.iter().copied().filter(|m| !found(&data, m)).collect();
    assert!(
        !erased.is_empty() && erased.len() < mrns.len(),
        "{erased:?}"
    );
    let new = backups.join("2-new.pvbak");
    ok(&cli(
        &data,
        &["backup", "create", "--out", new.to_str().unwrap()],
    ));

    // The old backup, beside the newer one: the erased stay erased.
    let r1 = tmp.path().join("restored1");
    let out = ok(&cli(
        &r1,
        &["backup", "restore", old.to_str().unwrap(), "--json"],
    ));
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        summary["tombstones_applied"].as_u64().unwrap() > 0,
        "{summary}"
    );
    for m in mrns {
        assert_eq!(found(&r1, m), !erased.contains(&m), "{m} after restore");
    }
    let out = ok(&cli(&r1, &["audit", "verify"]));
    assert!(!out.contains("BROKEN"), "{out}");

    // The old backup alone: nothing newer to learn from, so the erased come back…
    let alone = tmp.path().join("alone");
    std::fs::create_dir(&alone).unwrap();
    let moved = alone.join("old.pvbak");
    std::fs::copy(&old, &moved).unwrap();
    let r2 = tmp.path().join("restored2");
    ok(&cli(&r2, &["backup", "restore", moved.to_str().unwrap()]));
    assert!(erased.iter().all(|m| found(&r2, m)));
    // …unless a newer backup, or (SQLite: the command's database is the restored one's) the
    // live vault, is named as the source of what was erased since.
    let mut sources = vec![new.clone()];
    if !on_postgres() {
        sources.push(data.clone());
    }
    for (i, source) in sources.iter().enumerate() {
        let r3 = tmp.path().join(format!("restored3-{i}"));
        ok(&cli(
            &r3,
            &[
                "backup",
                "restore",
                moved.to_str().unwrap(),
                "--tombstones-from",
                source.to_str().unwrap(),
            ],
        ));
        for m in mrns {
            assert_eq!(found(&r3, m), !erased.contains(&m), "{m} after restore");
        }
    }
}

/// Tombstones are applied by time: a patient erased and later re-created under the same id
/// before a backup is kept when that backup is restored (the old tombstone names the erased
/// record, not the new one). And `verify --data-dir` records only a backup of that vault.
#[test]
fn old_tombstones_spare_re_created_records_and_verify_records_only_this_vault() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&cli(&data, &["init"]));
    let fixture = repo_fixtures()[2].clone();
    let fixture = fixture.to_str().unwrap();
    ok(&cli(&data, &["import", fixture]));
    let pid = resources_in(&repo_fixtures()[2])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&cli(
        &data,
        &["erase", "patient", &pid, "--reason", "request"],
    ));
    ok(&cli(&data, &["import", fixture]));
    let present = |dir: &Path| {
        let out = ok(&cli(
            dir,
            &["export", "--out", dir.join("x.json").to_str().unwrap()],
        ));
        let _ = out;
        let v = read_json(&dir.join("x.json"));
        let found = v["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["id"] == pid.as_str());
        std::fs::remove_file(dir.join("x.json")).unwrap();
        found
    };
    assert!(present(&data), "re-created");
    let file = tmp.path().join("b.pvbak");
    ok(&cli(
        &data,
        &["backup", "create", "--out", file.to_str().unwrap()],
    ));
    let restored = tmp.path().join("restored");
    ok(&cli(
        &restored,
        &["backup", "restore", file.to_str().unwrap()],
    ));
    assert!(
        present(&restored),
        "the re-created patient survives its own old tombstone"
    );

    // Another vault's backup verifies, but is not recorded as this vault's.
    let other = tmp.path().join("other");
    ok(&cli(&other, &["init"]));
    let theirs = tmp.path().join("theirs.pvbak");
    ok(&cli(
        &other,
        &["backup", "create", "--out", theirs.to_str().unwrap()],
    ));
    let r = cli(&data, &["backup", "verify", theirs.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("another vault"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    ok(&cli(&data, &["backup", "verify", file.to_str().unwrap()]));
}

/// A new, empty vault in a temp dir (`data`) and a backup of it (`b.pvbak`) beside it.
fn empty_vault_with_backup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&cli(&data, &["init"]));
    let file = tmp.path().join("b.pvbak");
    ok(&cli(
        &data,
        &["backup", "create", "--out", file.to_str().unwrap()],
    ));
    (tmp, data, file)
}

/// A scratch directory left behind by a killed `backup` command (its `.in-use` lock released
/// by the kernel) is removed by the next one working beside it; a scratch directory some live
/// process holds, one without a lock file, another program's and a link are all left alone.
#[test]
fn scratch_left_by_a_killed_backup_command_is_swept_and_nothing_else() {
    let (tmp, data, file) = empty_vault_with_backup();
    let make = |name: &str, lock: bool| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(d.join("keys")).unwrap();
        std::fs::write(d.join("identity.db"), b"sealed pages").unwrap();
        if lock {
            std::fs::write(d.join(".in-use"), b"").unwrap();
        }
        d
    };
    let abandoned = make(".phivault-verify-abandoned1", true);
    let abandoned_restore = make(".phivault-restore-abandoned2", true);
    let live = make(".phivault-verify-live", true);
    let held = std::fs::File::open(live.join(".in-use")).unwrap();
    held.lock().unwrap();
    let unlocked = make(".phivault-backup-nolock", false);
    let foreign = make(".phivault-other-thing", true);
    let elsewhere = make("elsewhere", true);
    std::os::unix::fs::symlink(&elsewhere, tmp.path().join(".phivault-verify-link")).unwrap();

    ok(&cli(&data, &["backup", "verify", file.to_str().unwrap()]));
    assert!(!abandoned.exists(), "an abandoned verify scratch stays");
    assert!(
        !abandoned_restore.exists(),
        "an abandoned restore scratch stays"
    );
    for kept in [&live, &unlocked, &foreign, &elsewhere] {
        assert!(
            kept.join("identity.db").exists(),
            "{} was removed",
            kept.display()
        );
    }
    assert!(tmp.path().join(".phivault-verify-link").exists());
    // Once its holder lets go, the live one is abandoned too; the verify's own scratch is gone.
    drop(held);
    ok(&cli(&data, &["backup", "verify", file.to_str().unwrap()]));
    assert!(!live.exists());
    let ours: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".phivault-verify-") && n != ".phivault-verify-link")
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
}

/// On PostgreSQL, `verify` checks a backup in scratch schemas (`pvcheck…`) that its session
/// locks. Scratch schemas a killed process left (no session holds their lock) are dropped by
/// the next check; those a live session holds are left alone.
#[tokio::test]
async fn scratch_schemas_left_by_a_killed_verify_are_dropped_and_live_ones_kept() {
    if !on_postgres() {
        return;
    }
    let (_tmp, data, file) = empty_vault_with_backup();
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let abandoned = "pvcheckabandon001";
    let live = "pvcheckliveholder";
    // Not scratch: another shape (a vault could be named so, were it allowed); never dropped.
    let lookalike = "pvcheckout";
    for p in [abandoned, live, lookalike] {
        for store in ["identity", "audit"] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {p}_{store} CASCADE; CREATE SCHEMA {p}_{store}; \
                 CREATE TABLE {p}_{store}.t (x int)"
            )))
            .execute(&pool)
            .await
            .unwrap();
        }
    }
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtext('phivault.scratch:' || $1))")
        .bind(live)
        .execute(&mut *holder)
        .await
        .unwrap();
    let schemas = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'pvcheck%' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let v = tokio::task::spawn_blocking({
        let data = data.clone();
        let file = file.clone();
        move || cli(&data, &["backup", "verify", file.to_str().unwrap()])
    })
    .await
    .unwrap();
    ok(&v);
    let left = schemas(pool.clone()).await;
    assert!(
        !left.iter().any(|s| s.starts_with(abandoned)),
        "abandoned scratch kept: {left:?}"
    );
    assert_eq!(
        left.iter().filter(|s| s.starts_with(live)).count(),
        2,
        "{left:?}"
    );
    assert_eq!(
        left.iter()
            .filter(|s| s.starts_with(&format!("{lookalike}_")))
            .count(),
        2,
        "a schema not of the scratch shape was dropped: {left:?}"
    );
    // A vault's own prefix may not take the scratch prefix.
    let refused = cli(
        &data,
        &[
            "--database-schema",
            "pvcheckmine",
            "backup",
            "verify",
            file.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("must not start with"));
    drop(holder);
    for (p, store) in [live, lookalike]
        .into_iter()
        .flat_map(|p| ["identity", "audit"].map(|s| (p, s)))
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {p}_{store} CASCADE"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
}
