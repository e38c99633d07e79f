//! Retention and disposal end to end, on the suite's backend (SQLite, or PostgreSQL with
//! PHIVAULT_TEST_BACKEND=postgres): rules erase exactly the expired records (computed here
//! independently from the fixtures' dates), the dry run lists what the real run erases,
//! every erasure is audited and leaves tombstones, and the tombstones of one vault erase the
//! same records from an older copy of it (a restored backup) down to the last stored byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::live::{cli, json_of};
use common::*;
use phivault::datadir::Opened;
use phivault_core::{Clock, FakeClock, ResourceId, ResourceType, StoreKind};
use phivault_vault::VaultError;
use phivault_vault::audit::AuditEvent;
use phivault_vault::audit::export::AuditFilter;
use phivault_vault::ops::retention::{RetentionAnchor, RetentionRule};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn fixtures() -> Vec<PathBuf> {
    let dir = repo_root().join("testdata/retention");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    assert_eq!(v.len(), 3, "retention fixtures missing");
    v
}

fn ts(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

/// (type, FHIR id) of a fixture resource.
type Rid = (String, String);

/// What the fixtures say, read here without the vault: when each resource was last received
/// (its Bundle's timestamp), its patient, and each patient's encounter times.
struct Fixtures {
    last_received: BTreeMap<Rid, OffsetDateTime>,
    patient_of: BTreeMap<Rid, String>,
    encounters: BTreeMap<String, Vec<OffsetDateTime>>,
}

/// The last instant a FHIR date(Time) can mean (`2020` → 2020-12-31T23:59:59.999Z).
fn end_of(s: &str) -> OffsetDateTime {
    match s.len() {
        4 => ts(&format!("{s}-12-31T23:59:59.999Z")),
        10 => ts(&format!("{s}T23:59:59.999Z")),
        _ => ts(s),
    }
}

fn read_fixtures() -> Fixtures {
    let mut f = Fixtures {
        last_received: BTreeMap::new(),
        patient_of: BTreeMap::new(),
        encounters: BTreeMap::new(),
    };
    for file in fixtures() {
        let doc = read_json(&file);
        let at = ts(doc["timestamp"].as_str().unwrap());
        for e in doc["entry"].as_array().unwrap() {
            let r = &e["resource"];
            let rid: Rid = (
                r["resourceType"].as_str().unwrap().into(),
                r["id"].as_str().unwrap().into(),
            );
            f.last_received.insert(rid.clone(), at);
            if let Some(p) = r["subject"]["reference"].as_str() {
                let pid = p.strip_prefix("Patient/").unwrap().to_owned();
                f.patient_of.insert(rid.clone(), pid.clone());
                if rid.0 == "Encounter" {
                    let period = &r["period"];
                    let when = period["end"].as_str().or(period["start"].as_str());
                    f.encounters
                        .entry(pid)
                        .or_default()
                        .push(end_of(when.unwrap()));
                }
            }
        }
    }
    f
}

fn years_before(now: OffsetDateTime, years: i32) -> OffsetDateTime {
    now.replace_year(now.year() - years).unwrap()
}

/// The rules of the test: whole patients 10 years after their last encounter, single
/// Observations 7 years after their last update. Returns (patients, observations) expired at
/// `now`, by FHIR id.
fn expected(f: &Fixtures, now: OffsetDateTime) -> (BTreeSet<String>, BTreeSet<String>) {
    let patient_cutoff = years_before(now, 10);
    let obs_cutoff = years_before(now, 7);
    let mut patients = BTreeSet::new();
    for (rid, received) in &f.last_received {
        if rid.0 != "Patient" {
            continue;
        }
        let anchor = match f.encounters.get(&rid.1) {
            Some(times) => *times.iter().max().unwrap(),
            None => f
                .last_received
                .iter()
                .filter(|(r, _)| f.patient_of.get(*r) == Some(&rid.1))
                .map(|(_, t)| *t)
                .chain([*received])
                .max()
                .unwrap(),
        };
        if anchor < patient_cutoff {
            patients.insert(rid.1.clone());
        }
    }
    let observations = f
        .last_received
        .iter()
        .filter(|(r, t)| {
            r.0 == "Observation"
                && **t < obs_cutoff
                && !patients.contains(f.patient_of.get(*r).unwrap())
        })
        .map(|(r, _)| r.1.clone())
        .collect();
    (patients, observations)
}

/// Imports each fixture Bundle with the clock at its timestamp.
async fn import_at_their_times(o: &Opened, clock: &FakeClock) {
    for file in fixtures() {
        let doc = read_json(&file);
        clock.set(ts(doc["timestamp"].as_str().unwrap()));
        let report = import_files(o, &[file], true).await;
        assert!(report.skipped.is_empty());
    }
}

/// The audit trail as the operator reads it.
async fn trail(o: &Opened) -> Vec<AuditEvent> {
    let filter = AuditFilter::default();
    o.vault.audit_events(&ctx(o).await, &filter).await.unwrap()
}

fn rtype(s: &str) -> ResourceType {
    ResourceType::parse(s).unwrap()
}

fn rid(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

/// Threat: records kept past their retention period, or erased before it, and a dry run that
/// lies about what the real run does (HIPAA §164.310(d)(2)(i) disposal, §164.530(j)
/// retention of documentation).
#[tokio::test]
async fn retention_erases_exactly_the_expired_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_vault(&dir).await;
    let clock = Arc::new(FakeClock::new(ts("2015-01-01T00:00:00Z")));
    let o = open_with_clock(&dir, clock.clone()).await;
    let c = ctx(&o).await;
    let v = &o.vault;
    import_at_their_times(&o, &clock).await;
    let f = read_fixtures();

    // No rule, nothing expires, however far the clock goes.
    clock.set(ts("2199-01-01T00:00:00Z"));
    assert!(v.retention_plan(&c).await.unwrap().is_empty());
    assert!(v.retention_run(&c).await.unwrap().items.is_empty());

    let patient_rule =
        RetentionRule::new(ResourceType::PATIENT, 10, RetentionAnchor::LastEncounter).unwrap();
    let obs_rule =
        RetentionRule::new(rtype("Observation"), 7, RetentionAnchor::LastUpdate).unwrap();
    let cond_rule = RetentionRule::new(rtype("Condition"), 1, RetentionAnchor::LastUpdate).unwrap();
    for r in [patient_rule, obs_rule, cond_rule] {
        v.set_retention_rule(&c, r).await.unwrap();
    }
    assert!(
        v.remove_retention_rule(&c, rtype("Condition"))
            .await
            .unwrap()
    );
    assert!(
        !v.remove_retention_rule(&c, rtype("Condition"))
            .await
            .unwrap()
    );
    assert_eq!(
        v.retention_rules(&c).await.unwrap(),
        [obs_rule, patient_rule]
    );

    let now = ts("2030-06-01T00:00:00Z");
    clock.set(now);
    let (patients, observations) = expected(&f, now);
    // What the fixtures were written to exercise (so a wrong computation above shows too):
    // an old last encounter; no encounter and old updates; a partial date counted to its end
    // (p-elm's "2020" is kept); an update that renews a 2015 Observation (obs-birch-2).
    assert_eq!(
        patients,
        BTreeSet::from(["p-alder".to_owned(), "p-dogwood".to_owned()])
    );
    assert_eq!(
        observations,
        ["obs-birch-1", "obs-birch-3", "obs-cedar-1", "obs-elm-1"]
            .map(String::from)
            .into()
    );
    let erased = |r: &Rid| {
        (r.0 == "Patient" && patients.contains(&r.1))
            || f.patient_of.get(r).is_some_and(|p| patients.contains(p))
            || (r.0 == "Observation" && observations.contains(&r.1))
    };
    let pseudo = |t: &str, id: &str| v.record_pseudonym(&c, rtype(t), &rid(id)).to_string();
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    for p in &patients {
        want.insert(("Patient".into(), pseudo("Patient", p)));
    }
    for ob in &observations {
        want.insert(("Observation".into(), pseudo("Observation", ob)));
    }

    // The dry run lists exactly those, names them only by pseudonym, and changes nothing.
    let before = trail(&o).await.len();
    let plan = v.retention_plan(&c).await.unwrap();
    let listed: BTreeSet<(String, String)> = plan
        .iter()
        .map(|i| (i.rtype.to_string(), i.id.to_string()))
        .collect();
    assert_eq!(listed, want);
    assert_eq!(plan.len(), want.len(), "nothing listed twice");
    for i in &plan {
        let (rule, records) = if i.rtype.is_patient() {
            let p = patients
                .iter()
                .find(|p| pseudo("Patient", p) == i.id.as_str())
                .unwrap();
            let n = f.patient_of.values().filter(|x| *x == p).count() as u64;
            (patient_rule.label(), n)
        } else {
            (obs_rule.label(), 0)
        };
        assert_eq!((i.rule.as_str(), i.records), (rule.as_str(), records));
        assert!(i.age_days > 365 * 7, "{i:?}");
    }
    let after_plan = trail(&o).await;
    assert_eq!(after_plan.len(), before + 1, "a dry run is one event");
    let plan_event = after_plan.last().unwrap();
    assert_eq!(
        (plan_event.action.as_str(), plan_event.count),
        ("retention-plan", Some(want.len() as u64))
    );
    assert!(v.tombstones(&c).await.unwrap().is_empty());
    for r in f.last_received.keys() {
        v.read(&c, rtype(&r.0), &rid(&r.1)).await.unwrap();
    }

    // The real run erases exactly the same list.
    let before = trail(&o).await.len();
    let report = v.retention_run(&c).await.unwrap();
    assert_eq!(
        report.items, plan,
        "the real run lists what the dry run listed"
    );
    assert_eq!(report.patients, 2);
    let erased_count = f.last_received.keys().filter(|r| erased(r)).count();
    assert_eq!(
        report.records as usize,
        erased_count - 2,
        "clinical records erased, with their patients or alone"
    );
    for r in f.last_received.keys() {
        let got = v.read(&c, rtype(&r.0), &rid(&r.1)).await;
        if erased(r) {
            assert!(matches!(got, Err(VaultError::NotFound)), "{r:?} kept");
        } else {
            assert!(got.is_ok(), "{r:?} erased: {got:?}");
        }
    }

    // Audited: one erasure per patient and one for the batch of Observations, each with its
    // rule as the reason and counts, after the run's own event.
    let new: Vec<AuditEvent> = trail(&o).await.split_off(before);
    assert_eq!(new[0].action, "retention-run");
    assert_eq!(new[0].count, Some(want.len() as u64));
    let erasures: Vec<&AuditEvent> = new.iter().filter(|e| e.action == "erase").collect();
    assert_eq!(erasures.len(), 3, "{new:#?}");
    let patient_reason = format!("retention:{}", patient_rule.label());
    for p in &patients {
        let e = erasures
            .iter()
            .find(|e| e.resource.as_deref() == Some(pseudo("Patient", p).as_str()))
            .unwrap();
        assert_eq!(e.reason.as_deref(), Some(patient_reason.as_str()));
        let n = f.patient_of.values().filter(|x| *x == p).count() as u64;
        assert_eq!(e.count, Some(n + 1));
        assert_eq!(e.patients, [v.patient_pseudonym(&c, &rid(p))]);
    }
    let batch = erasures
        .iter()
        .find(|e| e.resource_type.as_deref() == Some("Observation"))
        .unwrap();
    assert_eq!(
        batch.reason.as_deref(),
        Some(format!("retention:{}", obs_rule.label()).as_str())
    );
    assert_eq!(batch.count, Some(observations.len() as u64));
    let batch_ids: BTreeSet<String> = batch.entities.iter().cloned().collect();
    let want_ids: BTreeSet<String> = observations
        .iter()
        .map(|ob| pseudo("Observation", ob))
        .collect();
    assert_eq!(batch_ids, want_ids);
    // No event holds a fixture's FHIR id (the ids double as identifiers in many EHRs).
    for e in &new {
        let text = serde_json::to_string(e).unwrap();
        for r in f.last_received.keys() {
            assert!(!text.contains(&r.1), "{} in {text}", r.1);
        }
    }

    // Tombstones: one for every record destroyed, in its store, none for the others.
    let tombs: BTreeSet<(&str, String, String)> = v
        .tombstones(&c)
        .await
        .unwrap()
        .into_iter()
        .map(|t| {
            assert_eq!(&t.org, c.org());
            assert_eq!(t.erased_at, clock.now_millis());
            (
                t.store.as_str(),
                t.key.rtype.to_string(),
                t.key.id.to_string(),
            )
        })
        .collect();
    let want_tombs: BTreeSet<(&str, String, String)> = f
        .last_received
        .keys()
        .filter(|r| erased(r))
        .map(|r| {
            let store = if r.0 == "Patient" {
                StoreKind::Identity
            } else {
                StoreKind::Clinical
            };
            (store.as_str(), r.0.clone(), pseudo(&r.0, &r.1))
        })
        .collect();
    assert_eq!(tombs, want_tombs);

    // Run again: nothing left to erase.
    assert!(v.retention_run(&c).await.unwrap().items.is_empty());
    o.close().await;
}

/// A copy of the vault in `from` at `to`: its data dir and, on PostgreSQL, its four schemas
/// (as a restored backup would be: same keyring, same records).
fn copy_vault(from: &Path, to: &Path) {
    for (p, bytes) in all_files(from) {
        let target = to.join(p.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
    let (Some(a), Some(b)) = (test_database(from), test_database(to)) else {
        return;
    };
    for store in ["identity", "clinical", "control", "audit"] {
        let dump = std::process::Command::new("pg_dump")
            .args(["--no-owner", "--schema", &format!("{}_{store}", a.prefix)])
            .arg(&a.url)
            .output()
            .unwrap();
        assert!(dump.status.success());
        // Schema names appear only as themselves: bytea is dumped as hex, without a 't'.
        let sql = String::from_utf8(dump.stdout)
            .unwrap()
            .replace(&format!("{}_", a.prefix), &format!("{}_", b.prefix));
        let mut psql = std::process::Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &b.url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        psql.stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        assert!(psql.wait().unwrap().success());
    }
}

/// Every sealed byte string (wrapped DEKs, ciphertexts) of the vault's record stores.
async fn sealed_bytes(dir: &Path) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    for store in ["identity", "clinical"] {
        let db = raw::RawDb::open(dir, store).await;
        for row in db.sealed_rows(false).await {
            out.insert(row.wrapped_dek);
            out.insert(row.ciphertext);
        }
        db.close().await;
    }
    out.retain(|b| !b.is_empty());
    out
}

/// Threat: a backup taken before an erasure bringing the erased patient back on restore
/// (HIPAA §164.310(d)(2)(i) disposal; crypto-shredding must reach every copy).
#[tokio::test]
async fn tombstones_erase_the_same_records_from_an_older_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");
    let a = new_vault(&a_dir).await;
    let files = fixtures();
    import_files(&a, &files, true).await;
    a.close().await;
    copy_vault(&a_dir, &b_dir);

    // In A: erase a patient; its tombstones are recorded; erasing again changes nothing.
    let a = open_vault(&a_dir).await;
    let ca = ctx(&a).await;
    let report = a.vault.erase_patient(&ca, &rid("p-alder")).await.unwrap();
    assert_eq!(report.clinical_records, 4);
    let tombstones = a.vault.tombstones(&ca).await.unwrap();
    assert_eq!(tombstones.len(), 5);
    assert_eq!(
        tombstones
            .iter()
            .filter(|t| t.store == StoreKind::Identity)
            .map(|t| t.key.id.to_string())
            .collect::<Vec<_>>(),
        [a.vault
            .record_pseudonym(&ca, ResourceType::PATIENT, &rid("p-alder"))
            .to_string()]
    );
    assert!(matches!(
        a.vault.erase_patient(&ca, &rid("p-alder")).await,
        Err(VaultError::NotFound)
    ));
    assert_eq!(a.vault.tombstones(&ca).await.unwrap(), tombstones);
    a.close().await;

    // B, the older copy, still has the patient: the bytes only it holds are the erased ones.
    let erased_bytes: Vec<Vec<u8>> = sealed_bytes(&b_dir)
        .await
        .difference(&sealed_bytes(&a_dir).await)
        .cloned()
        .collect();
    assert_eq!(
        erased_bytes.len(),
        2 * 5,
        "a DEK and a ciphertext per version"
    );
    let b = open_vault(&b_dir).await;
    let cb = ctx(&b).await;
    b.vault
        .read(&cb, ResourceType::PATIENT, &rid("p-alder"))
        .await
        .unwrap();
    assert!(b.vault.tombstones(&cb).await.unwrap().is_empty());

    // Only the operator may apply tombstones.
    let admin = b.operator.ctx_as(
        cb.org().clone(),
        cb.actor().clone(),
        phivault_vault::policy::Subject::User(phivault_core::Role::OrgAdmin),
    );
    assert!(matches!(
        b.vault.apply_tombstones(&admin, &tombstones).await,
        Err(VaultError::Forbidden)
    ));

    // Applying A's tombstones erases the patient and its records from B, to the last byte.
    let before = trail(&b).await.len();
    assert_eq!(b.vault.apply_tombstones(&cb, &tombstones).await.unwrap(), 5);
    let new: Vec<AuditEvent> = trail(&b).await.split_off(before);
    assert_eq!(new.len(), 1);
    assert_eq!(
        (new[0].action.as_str(), new[0].count),
        ("erase-tombstones", Some(5))
    );
    for r in read_fixtures()
        .patient_of
        .iter()
        .filter(|(_, p)| *p == "p-alder")
    {
        assert!(matches!(
            b.vault.read(&cb, rtype(&r.0.0), &rid(&r.0.1)).await,
            Err(VaultError::NotFound)
        ));
    }
    assert!(matches!(
        b.vault
            .read(&cb, ResourceType::PATIENT, &rid("p-alder"))
            .await,
        Err(VaultError::NotFound)
    ));
    b.vault
        .read(&cb, ResourceType::PATIENT, &rid("p-birch"))
        .await
        .unwrap();
    b.vault
        .read(&cb, rtype("Observation"), &rid("obs-birch-4"))
        .await
        .unwrap();
    b.close().await;
    let hits = scan_vault(&b_dir, &erased_bytes);
    assert!(hits.is_empty(), "erased bytes still stored: {hits:?}");

    // B keeps the tombstones (for its own backups); applying them again destroys nothing.
    let b = open_vault(&b_dir).await;
    let cb = ctx(&b).await;
    assert_eq!(b.vault.tombstones(&cb).await.unwrap(), tombstones);
    assert_eq!(b.vault.apply_tombstones(&cb, &tombstones).await.unwrap(), 0);
    b.close().await;
}

/// The command line: rules set, listed and removed; the dry run's list equals the real run's;
/// output names records by pseudonym only. Real clock: a one-year rule on last encounters
/// expires every fixture patient with an encounter (the newest is in 2021) and none without
/// (their last update is the import, now).
#[test]
fn retention_commands_dry_run_then_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(cli(&data, &["init"]).status.success());
    let mut import = vec!["import".to_owned()];
    import.extend(fixtures().iter().map(|p| p.display().to_string()));
    let import: Vec<&str> = import.iter().map(String::as_str).collect();
    assert!(cli(&data, &import).status.success());

    let list = |data: &Path| json_of(&cli(data, &["retention", "list", "--json"]));
    assert_eq!(list(&data)["rules"], Value::Array(vec![]));
    for bad in [
        vec!["--type", "Patient", "--years", "0"],
        vec!["--type", "NoSuchType", "--years", "5"],
        vec!["--type", "Patient", "--years", "5", "--after", "sometime"],
    ] {
        let mut args = vec!["retention", "set"];
        args.extend(bad);
        assert!(!cli(&data, &args).status.success(), "{args:?}");
    }
    let set = |args: &[&str]| {
        let mut all = vec!["retention", "set"];
        all.extend(args);
        let out = cli(&data, &all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    set(&["--type", "Patient", "--years", "1"]);
    set(&[
        "--type",
        "Observation",
        "--years",
        "3",
        "--after",
        "last-update",
    ]);
    let rules = list(&data);
    assert_eq!(rules["rules"].as_array().unwrap().len(), 2);
    assert_eq!(rules["rules"][1]["rule"], "Patient:1y:last-encounter");
    let rm = cli(&data, &["retention", "remove", "--type", "Observation"]);
    assert!(rm.status.success());
    assert!(
        !cli(&data, &["retention", "remove", "--type", "Observation"])
            .status
            .success()
    );
    assert_eq!(list(&data)["rules"].as_array().unwrap().len(), 1);

    let found = |mrn: &str| {
        let out = cli(&data, &["search", "--identifier", mrn]);
        json_of(&out)["total"].as_u64().unwrap()
    };
    let dry = cli(&data, &["retention", "run", "--dry-run", "--json"]);
    let dry_json = json_of(&dry);
    assert_eq!(dry_json["dry_run"], true);
    let items = dry_json["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{dry_json}");
    assert!(items.iter().all(|i| i["resource_type"] == "Patient"));
    assert_eq!(found("MRN-RT-1001"), 1, "a dry run erases nothing");

    let real = cli(&data, &["retention", "run", "--json"]);
    let real_json = json_of(&real);
    assert_eq!(real_json["dry_run"], false);
    assert_eq!(real_json["items"], dry_json["items"]);
    assert_eq!(real_json["patients"], 3);
    for (mrn, kept) in [
        ("MRN-RT-1001", false),
        ("MRN-RT-1002", false),
        ("MRN-RT-1003", true),
        ("MRN-RT-1004", true),
        ("MRN-RT-1005", false),
    ] {
        assert_eq!(found(mrn), u64::from(kept), "{mrn}");
    }
    let text = cli(&data, &["retention", "run", "--dry-run"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("dry run: 0 would be erased"));

    // No PHI and no FHIR id in anything the runs printed.
    let f = read_fixtures();
    let mut needles: Vec<String> = phi_strings(&fixtures());
    needles.extend(f.last_received.keys().map(|r| r.1.clone()));
    for out in [&dry, &real] {
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for n in &needles {
            assert!(!printed.contains(n.as_str()), "{n} printed");
        }
    }
}

/// `serve` runs the same job on a schedule (`PHIVAULT_RETENTION_INTERVAL`) and logs counts
/// only; a malformed interval stops start-up.
#[test]
fn serve_runs_retention_on_its_schedule() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let files = fixtures();
    let live = common::live::Live::start_logged(
        &[
            ("PHIVAULT_RETENTION_INTERVAL", "1s"),
            ("PHIVAULT_MLLP_TLS", "off"),
        ],
        log.path(),
        |data| {
            let mut import = vec!["import".to_owned()];
            import.extend(files.iter().map(|p| p.display().to_string()));
            let import: Vec<&str> = import.iter().map(String::as_str).collect();
            assert!(cli(data, &import).status.success());
            let set = ["retention", "set", "--type", "Patient", "--years", "1"];
            assert!(cli(data, &set).status.success());
        },
    );
    let run = (0..120)
        .find_map(|_| {
            let text = std::fs::read_to_string(log.path()).unwrap();
            let line = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["fields"]["message"] == "retention run");
            if line.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            line
        })
        .expect("no scheduled retention run within 30 s");
    assert_eq!(run["fields"]["patients"], 3, "{run}");
    let found = |mrn: &str| {
        let out = cli(&live.data, &["search", "--identifier", mrn]);
        json_of(&out)["total"].as_u64().unwrap()
    };
    assert_eq!(found("MRN-RT-1001"), 0);
    assert_eq!(found("MRN-RT-1003"), 1);
    let data = live.data.clone();
    drop(live);
    let text = std::fs::read_to_string(log.path()).unwrap();
    let mut needles = phi_strings(&files);
    needles.extend(read_fixtures().last_received.keys().map(|r| r.1.clone()));
    for n in &needles {
        assert!(!text.contains(n.as_str()), "{n} logged");
    }

    let bad = common::live::cli_with(
        &data,
        &[("PHIVAULT_RETENTION_INTERVAL", "soon")],
        &["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "off"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("PHIVAULT_RETENTION_INTERVAL"));
}
