//! The audit trail end to end: one event per vault call with the right fields and no PHI,
//! tamper detection, fail-closed behaviour when the audit store is unavailable, crash safety
//! under SIGKILL, and FHIR AuditEvent export validated by an independent library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::raw::{self, RawDb};
use common::*;
use phivault::datadir::Opened;
use phivault_core::{ResourceId, ResourceType, StoreKind, Version};
use phivault_vault::audit::export::AuditFilter;
use phivault_vault::audit::verify::{Checkpoint, Problem};
use phivault_vault::audit::{AuditEvent, Outcome};
use phivault_vault::{PatientQuery, VaultError};
use serde_json::json;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

async fn events(o: &Opened) -> Vec<AuditEvent> {
    let c = ctx(o).await;
    o.vault
        .audit_events(&c, &AuditFilter::default())
        .await
        .unwrap()
}

/// Runs `op` and returns the single event it added.
async fn one_event<F, Fut, T>(o: &Opened, op: F) -> (T, AuditEvent)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let before = events(o).await.len();
    let out = op().await;
    let after = events(o).await;
    assert_eq!(after.len(), before + 1, "exactly one event per call");
    (out, after.last().unwrap().clone())
}

/// Threat: PHI access without an audit record, or PHI copied into the audit trail (HIPAA
/// §164.312(b) audit controls; OWASP A09:2021).
#[tokio::test]
async fn every_vault_call_leaves_exactly_one_event_and_no_phi() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    let c = ctx(&o).await;
    let files = repo_fixtures();
    let (report, e) = one_event(&o, || import_files(&o, &files[2..3], true)).await;
    assert_eq!(report.patients, 1);
    assert_eq!(
        (e.action.as_str(), e.outcome, e.count),
        ("import", Outcome::Success, Some(1))
    );
    assert_eq!(e.actor, format!("cli:{}", phivault::config::os_user()));
    let pid = ResourceId::parse(resources_in(&files[2])[0]["id"].as_str().unwrap()).unwrap();
    let pseudonym = o.vault.patient_pseudonym(&c, &pid);
    assert_eq!(e.patients, vec![pseudonym.clone()]);

    let (r, e) = one_event(&o, || o.vault.read(&c, ResourceType::PATIENT, &pid)).await;
    let s = r.unwrap();
    assert_eq!((e.action.as_str(), e.outcome), ("read", Outcome::Success));
    assert_eq!(e.patients, vec![pseudonym.clone()]);
    assert_eq!(e.version, Some(1));
    assert!(e.fields.contains(&"name".to_owned()) && e.fields.contains(&"birthDate".to_owned()));
    assert_eq!(e.resource_type.as_deref(), Some("Patient"));
    // The pseudonymous id is not the FHIR id.
    assert_ne!(e.resource.as_deref(), Some(pid.as_str()));

    let (r, e) = one_event(&o, || {
        o.vault
            .update(&c, &pid, s.resource.clone(), Some(Version(1)))
    })
    .await;
    assert!(r.is_ok());
    assert_eq!(
        (e.action.as_str(), e.outcome, e.version),
        ("update", Outcome::Success, Some(2))
    );
    let (r, e) = one_event(&o, || {
        o.vault
            .update(&c, &pid, s.resource.clone(), Some(Version(1)))
    })
    .await;
    assert!(matches!(r, Err(VaultError::Conflict { .. })));
    assert_eq!(
        (e.action.as_str(), e.outcome, e.reason.as_deref()),
        ("update", Outcome::Error, Some("conflict"))
    );
    let (r, e) = one_event(&o, || {
        o.vault.vread(&c, ResourceType::PATIENT, &pid, Version(1))
    })
    .await;
    assert!(r.is_ok());
    assert_eq!((e.action.as_str(), e.version), ("vread", Some(1)));

    let q = PatientQuery {
        identifier: Some("MRN-8841906".into()),
        ..Default::default()
    };
    let (r, e) = one_event(&o, || o.vault.search_patients(&c, &q)).await;
    assert_eq!(r.unwrap().len(), 1);
    assert_eq!((e.action.as_str(), e.count), ("search", Some(1)));
    assert_eq!(e.patients, vec![pseudonym.clone()]);
    let bad = PatientQuery::default();
    let (r, e) = one_event(&o, || o.vault.search_patients(&c, &bad)).await;
    assert!(r.is_err());
    assert_eq!(
        (e.outcome, e.reason.as_deref()),
        (Outcome::Error, Some("invalid"))
    );

    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                     "subject": {"reference": format!("Patient/{pid}")}});
    let (r, e) = one_event(&o, || o.vault.create(&c, obs.clone())).await;
    let created = r.unwrap();
    assert_eq!(
        (e.action.as_str(), e.outcome, e.resource_type.as_deref()),
        ("create", Outcome::Success, Some("Observation"))
    );
    assert_eq!(
        e.patients,
        vec![pseudonym.clone()],
        "clinical events name the patient's pseudonym"
    );
    let (r, e) = one_event(&o, || o.vault.patient_records(&c, &pid)).await;
    assert_eq!(r.unwrap().len(), 1);
    assert_eq!(
        (e.action.as_str(), e.count),
        ("read-patient-records", Some(1))
    );
    let (r, e) = one_event(&o, || o.vault.delete(&c, created.rtype, &created.id, None)).await;
    assert_eq!(r.unwrap(), Version(2));
    assert_eq!((e.action.as_str(), e.outcome), ("delete", Outcome::Success));
    let (r, e) = one_event(&o, || o.vault.read(&c, created.rtype, &created.id)).await;
    assert!(matches!(r, Err(VaultError::Gone)));
    assert_eq!(
        (e.outcome, e.reason.as_deref()),
        (Outcome::Error, Some("gone"))
    );
    let missing = ResourceId::parse("no-such-patient").unwrap();
    let (r, e) = one_event(&o, || o.vault.read(&c, ResourceType::PATIENT, &missing)).await;
    assert!(matches!(r, Err(VaultError::NotFound)));
    assert_eq!(e.reason.as_deref(), Some("not-found"));
    let (r, e) = one_event(&o, || o.vault.page(&c, StoreKind::Identity, None, 100)).await;
    assert_eq!(r.unwrap().0.len(), 1);
    assert_eq!((e.action.as_str(), e.count), ("export", Some(1)));
    let (r, e) = one_event(&o, || o.vault.create(&c, json!({"resourceType": "Nope"}))).await;
    assert!(r.is_err());
    assert_eq!((e.action.as_str(), e.outcome), ("create", Outcome::Error));
    let (r, e) = one_event(&o, || o.vault.erase_patient(&c, &pid)).await;
    assert!(r.is_ok());
    assert_eq!(
        (e.action.as_str(), e.outcome, e.count),
        ("erase", Outcome::Success, Some(2))
    );

    // Every event is filtered by patient, and the chain verifies.
    let f = AuditFilter {
        patient: Some(pid.clone()),
        ..Default::default()
    };
    let about = o.vault.audit_events(&c, &f).await.unwrap();
    assert!(about.len() >= 9, "{}", about.len());
    let v = o.vault.verify_audit(None).await.unwrap();
    assert_eq!(v.problem, None);
    assert_eq!(v.count as usize, events(&o).await.len());

    // No PHI value in any byte of the audit store.
    import_files(&o, &files, false).await;
    let phi: Vec<Vec<u8>> = phi_strings(&files)
        .into_iter()
        .map(String::into_bytes)
        .collect();
    o.close().await;
    let bytes = raw::store_bytes(&dir, "audit");
    assert!(bytes.len() > 1000);
    for n in &phi {
        assert!(
            !bytes.windows(n.len()).any(|w| w == n.as_slice()),
            "PHI in the audit store"
        );
    }
}

async fn raw(dir: &Path) -> RawDb {
    RawDb::open(dir, "audit").await
}

/// A vault with 12 events and its checkpoint; its audit table is saved, and restored after
/// each tamper case.
async fn audited_vault(dir: &Path) -> Checkpoint {
    let o = new_vault(dir).await;
    let c = ctx(&o).await;
    import_files(&o, &repo_fixtures(), true).await;
    let pid =
        ResourceId::parse(resources_in(&repo_fixtures()[2])[0]["id"].as_str().unwrap()).unwrap();
    for _ in 0..6 {
        o.vault.read(&c, ResourceType::PATIENT, &pid).await.unwrap();
    }
    let cp = o.vault.audit_checkpoint().await.unwrap().unwrap();
    assert!(cp.seq >= 10);
    o.close().await;
    raw(dir)
        .await
        .exec("CREATE TABLE saved_events AS SELECT * FROM audit_events")
        .await;
    cp
}

/// Puts the saved audit table back (undoing a tamper case).
async fn restore_events(dir: &Path) {
    let db = raw(dir).await;
    db.exec("DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM saved_events")
        .await;
    db.close().await;
}

/// Threat: an insider editing, deleting, reordering or truncating the audit trail (HIPAA
/// §164.312(b), (c)(1)).
#[tokio::test]
async fn any_edit_deletion_reordering_or_truncation_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let cp = audited_vault(&base).await;
    let n = cp.seq as i64;
    type Case = (&'static str, String, Option<(u64, Problem)>, bool);
    let cases: Vec<Case> = vec![
        ("edit a field", "UPDATE audit_events SET event = replace(event, '\"action\":\"read\"', '\"action\":\"vread\"') WHERE seq = 9".into(), Some((9, Problem::Edited)), false),
        ("edit the outcome", "UPDATE audit_events SET event = replace(event, 'success', 'denied') WHERE seq = 3".into(), Some((3, Problem::Edited)), false),
        ("edit the time", "UPDATE audit_events SET recorded_at = 0, event = replace(event, '\"time\":\"2', '\"time\":\"1') WHERE seq = 5".into(), Some((5, Problem::Edited)), false),
        ("replace a MAC", format!("UPDATE audit_events SET mac = {} WHERE seq = 7", raw(&base).await.zero_blob()), Some((7, Problem::Edited)), false),
        ("delete an event", "DELETE FROM audit_events WHERE seq = 6".into(), Some((6, Problem::Missing)), false),
        ("swap two events", "UPDATE audit_events SET seq = -1 WHERE seq = 4; UPDATE audit_events SET seq = 4 WHERE seq = 5; UPDATE audit_events SET seq = 5 WHERE seq = -1".into(), Some((4, Problem::Reordered)), false),
        ("delete and renumber", "DELETE FROM audit_events WHERE seq = 2; UPDATE audit_events SET seq = -(seq - 1) WHERE seq > 2; UPDATE audit_events SET seq = -seq WHERE seq < 0".into(), Some((2, Problem::Reordered)), false),
        ("cut the tail", format!("DELETE FROM audit_events WHERE seq > {}", n - 3), Some((n as u64 - 2, Problem::Truncated)), true),
        ("cut the tail, no checkpoint", format!("DELETE FROM audit_events WHERE seq > {}", n - 3), None, false),
    ];
    for (name, sql, expected, with_checkpoint) in cases {
        let dir = &base;
        let db = raw(dir).await;
        db.exec(&sql).await;
        db.close().await;
        let o = open_vault(dir).await;
        let v = o
            .vault
            .verify_audit(with_checkpoint.then_some(&cp))
            .await
            .unwrap();
        assert_eq!(v.problem, expected, "{name}");
        if let Some((seq, _)) = expected {
            assert_eq!(v.count, seq - 1, "{name}: events before the first bad one");
        }
        o.close().await;
        restore_events(dir).await;
    }
    // The untouched copy verifies, against the checkpoint too.
    let o = open_vault(&base).await;
    let v = o.vault.verify_audit(Some(&cp)).await.unwrap();
    assert_eq!((v.problem, v.count), (None, cp.seq));
    o.close().await;

    // The command line says the same, with exit code 3.
    let dir = base.clone();
    let db = raw(&dir).await;
    db.exec("DELETE FROM audit_events WHERE seq = 6").await;
    db.close().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args([
            "audit",
            "verify",
            "--data-dir",
            dir.to_str().unwrap(),
            "--checkpoint",
            &cp.to_string(),
        ])
        .env("PHIVAULT_PASSPHRASE", PASS)
        .envs(common::backend_env(&dir))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN at event 6: missing"), "{text}");
    restore_events(&base).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args([
            "audit",
            "verify",
            "--data-dir",
            base.to_str().unwrap(),
            "--checkpoint",
            &cp.to_string(),
        ])
        .env("PHIVAULT_PASSPHRASE", PASS)
        .envs(common::backend_env(&dir))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn an_unavailable_audit_store_releases_nothing_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    let c = ctx(&o).await;
    import_files(&o, &repo_fixtures(), true).await;
    let pid =
        ResourceId::parse(resources_in(&repo_fixtures()[2])[0]["id"].as_str().unwrap()).unwrap();
    let before = events(&o).await.len();

    // Another process-like connection takes the audit table's lock and holds it.
    let blocker = raw(&dir).await;
    let lock = blocker.lock_exclusive("audit_events").await;

    let new_patient = json!({"resourceType": "Patient", "name": [{"family": "Lockedoutovich"}]});
    let q = PatientQuery {
        identifier: Some("MRN-8841906".into()),
        ..Default::default()
    };
    let (read, create, search) = tokio::join!(
        o.vault.read(&c, ResourceType::PATIENT, &pid),
        o.vault.create(&c, new_patient.clone()),
        o.vault.search_patients(&c, &q),
    );
    assert!(matches!(read, Err(VaultError::Audit(_))), "{read:?}");
    assert!(matches!(create, Err(VaultError::Audit(_))), "{create:?}");
    assert!(matches!(search, Err(VaultError::Audit(_))), "{search:?}");
    let update = o
        .vault
        .update(
            &c,
            &pid,
            json!({"resourceType": "Patient", "id": pid.as_str(), "gender": "other"}),
            None,
        )
        .await;
    assert!(matches!(update, Err(VaultError::Audit(_))), "{update:?}");

    lock.release().await;
    blocker.close().await;

    // Nothing was changed: the update did not land, nothing new was created.
    let now = o.vault.read(&c, ResourceType::PATIENT, &pid).await.unwrap();
    assert_eq!(now.version, Version(1));
    assert!(now.resource.get("gender") != Some(&json!("other")));
    let exported = o
        .vault
        .page(&c, StoreKind::Identity, None, 100)
        .await
        .unwrap()
        .0;
    assert_eq!(
        exported.len(),
        4,
        "the create during the fault left no patient"
    );
    // The service works again and the chain is intact: only the two reads since.
    let after = events(&o).await.len();
    assert_eq!(after, before + 2);
    let v = o.vault.verify_audit(None).await.unwrap();
    assert_eq!(v.problem, None);
}

/// Not a test: the writer process that `acknowledged_writes_survive_sigkill` kills.
#[test]
#[ignore = "helper process for acknowledged_writes_survive_sigkill"]
fn sigkill_child_writer() {
    let Ok(dir) = std::env::var("PHIVAULT_TEST_CHILD_DIR") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let o = open_vault(Path::new(&dir)).await;
        let c = ctx(&o).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for t in 0..4 {
            let vault = o.vault.clone();
            let c = c.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let p = json!({"resourceType": "Patient", "name": [{"family": format!("Crash{t}x{i}")}]});
                    let s = vault.create(&c, p).await.unwrap();
                    tx.send(s.id.to_string()).unwrap();
                }
            });
        }
        let mut out = std::io::stdout();
        while let Some(id) = rx.recv().await {
            use std::io::Write;
            writeln!(out, "ACK {id}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_with_their_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    new_vault(&dir).await.close().await;
    let mut acked: Vec<String> = Vec::new();
    for round in 0..5 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "sigkill_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PHIVAULT_TEST_CHILD_DIR", &dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let want = 15 + round * 17;
        let mut got = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(id.to_owned());
                got += 1;
                if got == want {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL, mid-stream: other writes are in flight
        child.wait().unwrap();
        assert_eq!(got, want, "round {round}: the child stopped early");
        tokio::time::sleep(Duration::from_millis(20)).await;

        let o = open_vault(&dir).await;
        let c = ctx(&o).await;
        let v = o.vault.verify_audit(None).await.unwrap();
        assert_eq!(v.problem, None, "round {round}");
        let evs = events(&o).await;
        let created: std::collections::HashSet<String> = evs
            .iter()
            .filter(|e| e.action == "create" && e.outcome == Outcome::Success)
            .flat_map(|e| e.patients.clone())
            .collect();
        for id in &acked {
            let id = ResourceId::parse(id).unwrap();
            assert!(
                created.contains(&o.vault.patient_pseudonym(&c, &id)),
                "round {round}: acknowledged create without its event"
            );
            o.vault.read(&c, ResourceType::PATIENT, &id).await.unwrap();
        }
        o.close().await;
    }
    assert!(acked.len() > 100);
}

#[tokio::test]
async fn fhir_audit_export_validates_as_r4_audit_events() {
    let python = std::env::var("PHIVAULT_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = repo_root().join(".venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
    let has_validator = std::process::Command::new(&python)
        .args(["-c", "import fhir.resources.R4B"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_validator {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install fhir.resources (see .ci/run)"
        );
        eprintln!("skipped: no Python with fhir.resources; .ci/run installs it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    let c = ctx(&o).await;
    import_files(&o, &repo_fixtures(), true).await;
    import_files(
        &o,
        &[repo_root().join("testdata/fhir-invalid/mixed-bundle.json")],
        false,
    )
    .await;
    let pid =
        ResourceId::parse(resources_in(&repo_fixtures()[2])[0]["id"].as_str().unwrap()).unwrap();
    o.vault.read(&c, ResourceType::PATIENT, &pid).await.unwrap();
    let _ = o
        .vault
        .read(
            &c,
            ResourceType::PATIENT,
            &ResourceId::parse("nope").unwrap(),
        )
        .await;
    o.vault.erase_patient(&c, &pid).await.unwrap();
    o.close().await;
    let out = tmp.path().join("audit.json");
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args([
            "audit",
            "export",
            "--format",
            "fhir",
            "--data-dir",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("PHIVAULT_PASSPHRASE", PASS)
        .envs(common::backend_env(&dir))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let n = bundle["entry"].as_array().unwrap().len();
    assert!(n >= 8);
    let v = std::process::Command::new(&python)
        .arg(repo_root().join("bin/phivault/tests/support/validate_fhir.py"))
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        text.contains(&format!("validated {n} resources, 0 invalid")),
        "{text}"
    );
}

/// Mounts a small tmpfs (root only). `None` when this machine does not allow it.
fn small_tmpfs(at: &Path) -> Option<()> {
    std::fs::create_dir_all(at).ok()?;
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(at)
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(())
}

struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .output();
    }
}

/// A full disk under the audit store: on SQLite a 16 MiB tmpfs holding the data dir, filled
/// up; on PostgreSQL the server's own disk-full error (SQLSTATE 53100) raised by a trigger on
/// every audit insert, as PostgreSQL raises it when it cannot extend a table's file.
enum FullDisk {
    Tmpfs {
        _unmount: Unmount,
        filler: std::path::PathBuf,
    },
    Trigger(RawDb),
}

impl FullDisk {
    async fn fill(&mut self) {
        match self {
            FullDisk::Tmpfs { filler, .. } => {
                use std::io::Write;
                let mut f = std::fs::File::create(filler).unwrap();
                let chunk = vec![0u8; 64 * 1024];
                while f.write_all(&chunk).is_ok() {}
                let _ = f.sync_all();
            }
            FullDisk::Trigger(db) => {
                db.exec(
                    "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     RAISE EXCEPTION 'could not extend file: No space left on device' \
                     USING ERRCODE = 'disk_full'; END $$; \
                     CREATE TRIGGER disk_full BEFORE INSERT ON audit_events \
                     FOR EACH ROW EXECUTE FUNCTION disk_full()",
                )
                .await
            }
        }
    }

    async fn clear(&mut self) {
        match self {
            FullDisk::Tmpfs { filler, .. } => std::fs::remove_file(filler).unwrap(),
            FullDisk::Trigger(db) => {
                db.exec("DROP TRIGGER disk_full ON audit_events; DROP FUNCTION disk_full()")
                    .await
            }
        }
    }
}

#[tokio::test]
async fn a_full_disk_releases_nothing_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let dir = mnt.join("data");
    if !on_postgres() && small_tmpfs(&mnt).is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must be able to mount a tmpfs for this test"
        );
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let unmount = Unmount(mnt.clone());
    new_vault(&dir).await.close().await;
    let o = open_vault(&dir).await;
    let c = ctx(&o).await;
    import_files(&o, &repo_fixtures(), true).await;
    let pid =
        ResourceId::parse(resources_in(&repo_fixtures()[2])[0]["id"].as_str().unwrap()).unwrap();
    let before = events(&o).await.len();
    // Checkpoint so the write-ahead logs restart small, then fill the disk.
    o.close().await;
    let o = open_vault(&dir).await;
    let mut disk = if on_postgres() {
        FullDisk::Trigger(raw(&dir).await)
    } else {
        FullDisk::Tmpfs {
            _unmount: unmount,
            filler: mnt.join("filler"),
        }
    };
    disk.fill().await;
    let read = o.vault.read(&c, ResourceType::PATIENT, &pid).await;
    assert!(matches!(read, Err(VaultError::Audit(_))), "{read:?}");
    let update = o
        .vault
        .update(
            &c,
            &pid,
            json!({"resourceType": "Patient", "id": pid.as_str(), "gender": "unknown"}),
            None,
        )
        .await;
    assert!(update.is_err(), "{update:?}");
    // The fault clears.
    disk.clear().await;
    let now = o.vault.read(&c, ResourceType::PATIENT, &pid).await.unwrap();
    assert_eq!(
        now.version,
        Version(1),
        "the update during the fault changed nothing"
    );
    let v = o.vault.verify_audit(None).await.unwrap();
    assert_eq!(v.problem, None);
    assert_eq!(events(&o).await.len(), before + 1);
    o.close().await;
}
