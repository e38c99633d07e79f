//! Security regressions of the sealed records' bindings (issue 20, finding 10): the patient link
//! of a clinical record (the `link` column, the keyed pseudonym of its patient) edited by
//! someone with write access to the database, to move a record to another patient or to hide
//! it from an erasure. Every attack runs against a real `phivault serve` over HTTPS (curl) and
//! the real CLI, on SQLite and, with `PHIVAULT_TEST_BACKEND=postgres`, on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, Resp, cli, created, stdout_ok};
use common::live::{note_of as observation, patient_with_mrn as patient};
use common::raw::RawDb;
use common::scan_vault;
use serde_json::Value;
use std::path::Path;

const EHR: (&str, &str, &str) = ("INTEGRATION_MANAGER", "system/*.cruds", "TREAT HOPERAT");
/// What only patient A's records hold.
const A_SECRET: &str = "Firstpatientsecret";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A clinical row as stored: its `seq` and wrapped data key.
struct Row {
    seq: i64,
    wrapped_dek: Vec<u8>,
}

/// Patients A and B; `a_notes` Observations of A (holding [`A_SECRET`]), then one of B.
struct World {
    live: Live,
    ehr: String,
    a: String,
    b: String,
    /// A's Observations, then B's, in the order written; `rows` in the same order.
    obs: Vec<String>,
    rows: Vec<Row>,
}

fn world(a_notes: usize) -> World {
    let mut basic = String::new();
    let live = Live::start(|data| basic = Live::client(data, "ehr", EHR.0, EHR.1, EHR.2));
    let ehr = live.token(&basic);
    let post =
        |path: &str, body: &Value| created(&live.fhir("POST", path, &ehr, "TREAT", Some(body)));
    let (a, b) = (
        post("/fhir/Patient", &patient("A-110")),
        post("/fhir/Patient", &patient("B-220")),
    );
    let mut obs: Vec<String> = (0..a_notes)
        .map(|i| {
            let note = observation(&format!("Patient/{a}"), &format!("{A_SECRET} {i}"));
            post("/fhir/Observation", &note)
        })
        .collect();
    obs.push(post(
        "/fhir/Observation",
        &observation(&format!("Patient/{b}"), "Secondpatientnote"),
    ));
    let rows = block_on(async {
        let raw = RawDb::open(&live.data, "clinical").await;
        let rows = raw.sealed_rows(true).await;
        raw.close().await;
        rows
    });
    assert_eq!(rows.len(), obs.len(), "one clinical row per Observation");
    let rows = rows
        .into_iter()
        .map(|r| Row {
            seq: r.seq,
            wrapped_dek: r.wrapped_dek,
        })
        .collect();
    World {
        live,
        ehr,
        a,
        b,
        obs,
        rows,
    }
}

/// Plays the insider with write access to the clinical store: sets the patient link of row
/// `seq` to that of row `from` (another patient's), or to none.
fn edit_link(data: &Path, seq: i64, from: Option<i64>) {
    block_on(set_link(data, seq, from));
}

async fn set_link(data: &Path, seq: i64, from: Option<i64>) {
    let value = from.map_or("NULL".to_owned(), |f| {
        format!("(SELECT link FROM record_versions WHERE seq = {f})")
    });
    let raw = RawDb::open(data, "clinical").await;
    raw.exec(&format!(
        "UPDATE record_versions SET link = {value} WHERE seq = {seq}"
    ))
    .await;
    raw.close().await;
}

/// The clinical rows as stored, in `seq` order.
async fn clinical_rows(data: &Path) -> Vec<common::raw::SealedRow> {
    let raw = RawDb::open(data, "clinical").await;
    let rows = raw.sealed_rows(false).await;
    raw.close().await;
    rows
}

fn assert_no_secret(r: &Resp, what: &str) {
    common::live::assert_withholds(r, A_SECRET, what);
}

/// Threat (finding 10): an insider with write access to the clinical store moves patient A's
/// Observation to patient B by rewriting its `link` column; the vault trusts the column, so B's
/// `$everything` and search release A's note and the record reads as B's. HIPAA §164.312(c)(1)
/// integrity, §164.312(a)(1) access control. Must: the patient link is bound into the sealed
/// record's associated data, and a record whose link was changed fails like any other tamper —
/// the read answers the integrity error, and neither patient's `$everything` or search
/// releases it.
#[test]
fn aad_a_patient_link_edited_in_the_database_fails_the_read_as_tampered() {
    let w = world(1);
    let (live, ehr) = (&w.live, w.ehr.as_str());
    let path = format!("/fhir/Observation/{}", w.obs[0]);
    let r = live.fhir("GET", &path, ehr, "TREAT", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.to_string().contains(A_SECRET));

    edit_link(&live.data, w.rows[0].seq, Some(w.rows[1].seq));
    let r = live.fhir("GET", &path, ehr, "TREAT", None);
    assert_no_secret(&r, "the read");
    assert_eq!(r.status, 500, "the moved record was read: {}", r.body);
    assert!(
        r.outcome().to_lowercase().contains("integrity"),
        "not the integrity error: {}",
        r.body
    );
    for p in [&w.a, &w.b] {
        for (what, q) in [
            ("everything", format!("/fhir/Patient/{p}/$everything")),
            ("search", format!("/fhir/Observation?patient={p}")),
            ("search", format!("/fhir/Observation?subject=Patient/{p}")),
        ] {
            let r = live.fhir("GET", &q, ehr, "TREAT", None);
            assert_no_secret(&r, what);
        }
    }
    // Unlinked from every patient: the same.
    edit_link(&live.data, w.rows[0].seq, None);
    let r = live.fhir("GET", &path, ehr, "TREAT", None);
    assert_no_secret(&r, "the read of the unlinked record");
    assert_eq!(r.status, 500, "the unlinked record was read: {}", r.body);
}

/// Threat (finding 10): the insider hides patient A's records from A's erasure by moving one to
/// patient B and unlinking another; `phivault erase patient` finds records by the link column
/// only, so the two stay, with their keys, after A "was erased" (HIPAA §164.310(d)(2)(i)
/// disposal; a right-to-erasure request). Must: the erasure still reaches every record that
/// really is A's — their wrapped keys are gone from the store — and leaves B's own record.
#[test]
fn aad_erasing_a_patient_reaches_records_whose_link_was_edited_away() {
    let w = world(3);
    let data = w.live.data.clone();
    edit_link(&data, w.rows[0].seq, Some(w.rows[3].seq));
    edit_link(&data, w.rows[1].seq, None);
    let out = cli(&data, &["erase", "patient", &w.a, "--reason", "request"]);
    let said = stdout_ok(&out);
    assert!(said.contains(" 3 clinical records "), "{said}");
    let left = block_on(clinical_rows(&data));
    for (i, row) in w.rows.iter().take(3).enumerate() {
        assert!(
            left.iter().all(|r| r.wrapped_dek != row.wrapped_dek),
            "A's record {i} (link edited: {}) kept its key after the erasure",
            i < 2
        );
    }
    let hidden: Vec<Vec<u8>> = w.rows[..2].iter().map(|r| r.wrapped_dek.clone()).collect();
    let hits = scan_vault(&data, &hidden);
    assert!(hits.is_empty(), "erased keys survive in {hits:?}");
    // B's own record is untouched and reads.
    let r = w.live.fhir(
        "GET",
        &format!("/fhir/Observation/{}", w.obs[3]),
        &w.ehr,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 200, "B's record: {}", r.body);
    assert_eq!(r.body["valueString"], "Secondpatientnote");
    let _ = &w.b;
}

/// The associated data under which the root key wraps a keyring entry (`wrap_aad` in
/// crates/crypto: length-prefixed components), to make the KEK entry of a vault from before.
fn entry_aad(purpose: &str, version: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [
        b"phivault.v1".as_slice(),
        b"keyring",
        purpose.as_bytes(),
        &version.to_be_bytes(),
    ] {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// One field of each KEK version in `keys status`, by version.
fn per_version(data: &Path, field: &str) -> Vec<(u64, Value)> {
    let status = common::live::json_of(&cli(data, &["keys", "status", "--json"]));
    let list = status["versions"].as_array().unwrap();
    list.iter()
        .map(|v| (v["version"].as_u64().unwrap(), v[field].clone()))
        .collect()
}

/// The clinical data keys per KEK version.
fn clinical_deks(data: &Path) -> Vec<(u64, u64)> {
    let deks = per_version(data, "clinical_deks");
    deks.into_iter()
        .map(|(v, n)| (v, n.as_u64().unwrap()))
        .collect()
}

/// Threat (finding 10, the migration): a vault made before the link was bound keeps its
/// records under a KEK whose data keys do not bind the link, so the attack above goes on
/// working there unless the stored rows are migrated. Must: `serve` binds every row (a
/// rotation to a linked KEK version) before it listens, an interrupted migration resumes and
/// reads work meanwhile, the legacy KEK can then be retired, and an edited link of a migrated
/// row fails the read as tampered.
#[test]
fn aad_a_vault_from_before_has_its_links_bound_at_serve_and_reads_meanwhile() {
    use phivault_crypto::{KeyfileProvider, RootKeyProvider};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    stdout_ok(&cli(&data, &["init"]));
    let patients = block_on(async {
        let o = common::open_vault(&data).await;
        // The vault from before: a legacy KEK (purpose `kek`) current, every record under it.
        let root = KeyfileProvider::open(&data.join("keys/root.key"), &common::pass()).unwrap();
        let entry = phivault_core::KeyringEntry {
            purpose: "kek".into(),
            version: 2,
            wrapped: root.wrap(&entry_aad("kek", 2), &[0x5a; 32]).unwrap(),
            created_at: 0,
        };
        o.stores
            .control
            .add_keyring_entries(&[entry])
            .await
            .unwrap();
        assert_eq!(o.vault.reload_keyring().await.unwrap(), 2);
        common::import_files(&o, &common::repo_fixtures(), true).await;
        let c = common::ctx(&o).await;
        let patients: Vec<phivault_core::ResourceId> = common::repo_fixtures()
            .iter()
            .flat_map(|f| common::resources_in(f))
            .filter(|r| r["resourceType"] == "Patient")
            .map(|r| phivault_core::ResourceId::parse(r["id"].as_str().unwrap()).unwrap())
            .collect();
        let read_all = || async {
            let mut n = 0;
            for p in &patients {
                n += o.vault.patient_records(&c, p).await.unwrap().len();
            }
            n
        };
        let before = read_all().await;
        assert!(before > 0);
        // Interrupted after one batch of three rows: both formats read meanwhile.
        let opts = phivault_vault::RotateOptions {
            batch: 3,
            max_batches: Some(1),
            ..Default::default()
        };
        let report = o
            .vault
            .bind_patient_links(&c, opts, &mut |_| {})
            .await
            .unwrap()
            .unwrap();
        assert!(!report.finished && report.rewrapped == 3, "{report:?}");
        assert_eq!(read_all().await, before, "reads during the migration");
        o.close().await;
        patients
    });
    let deks = clinical_deks(&data);
    assert!(deks.iter().any(|&(v, n)| v == 2 && n > 0), "{deks:?}");
    let binds = per_version(&data, "binds_link");
    let expected = [(1, true), (2, false), (3, true)].map(|(v, b)| (v, Value::Bool(b)));
    assert_eq!(binds, expected, "which versions bind the link");
    let basic = Live::client(&data, "ehr", EHR.0, EHR.1, EHR.2);
    let log = tmp.path().join("serve.log");
    let live = Live::node(&data, &[], Some(&log));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("bound the patient link"), "{logged}");
    // Served: the migration finished before the listener opened.
    let deks = clinical_deks(&data);
    assert!(
        deks.iter().all(|&(v, n)| v == 3 || n == 0),
        "rows left on a legacy KEK: {deks:?}"
    );
    let ehr = live.token(&basic);
    let mut observations = Vec::new();
    for p in &patients {
        let r = live.fhir(
            "GET",
            &format!("/fhir/Patient/{p}/$everything"),
            &ehr,
            "TREAT",
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        observations.extend(r.body["entry"].as_array().unwrap().iter().filter_map(|e| {
            let res = &e["resource"];
            (res["resourceType"] != "Patient").then(|| {
                format!(
                    "/fhir/{}/{}",
                    res["resourceType"].as_str().unwrap(),
                    res["id"].as_str().unwrap()
                )
            })
        }));
    }
    assert!(!observations.is_empty());
    let out = cli(
        &data,
        &["keys", "retire", "--version", "2", "--grace-seconds", "0"],
    );
    stdout_ok(&out);
    // Every migrated row is now bound to its link: unlinked, none reads.
    block_on(async {
        let raw = RawDb::open(&data, "clinical").await;
        raw.exec("UPDATE record_versions SET link = NULL").await;
        raw.close().await;
    });
    for path in &observations {
        let r = live.fhir("GET", path, &ehr, "TREAT", None);
        assert_eq!(
            r.status, 500,
            "{path} read with its link edited: {}",
            r.body
        );
    }
}

/// Threat (finding 10, retention): the same hiding, from a retention run, which looks for the
/// records of all the patients it erases in one scan: A's record moved to a patient the run
/// keeps, B's unlinked. Must: both erased with their patients, the kept patient's record left.
#[tokio::test]
async fn aad_a_retention_run_reaches_records_whose_link_was_edited_away() {
    use phivault_core::{FakeClock, ResourceId, ResourceType};
    use phivault_vault::ops::retention::{RetentionAnchor, RetentionRule};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::init_vault(&data).await;
    let at = |y: i32| {
        let day = time::Date::from_calendar_date(y, time::Month::January, 1).unwrap();
        day.midnight().assume_utc()
    };
    let clock = std::sync::Arc::new(FakeClock::new(at(2000)));
    let o = common::open_with_clock(&data, clock.clone()).await;
    let c = common::ctx(&o).await;
    let import = |patients: &[&str]| {
        let mut entries = Vec::new();
        for p in patients {
            let mut patient = patient(&format!("R-{p}"));
            patient["id"] = Value::from(*p);
            entries.push(serde_json::json!({"resource": patient}));
            let mut note = observation(&format!("Patient/{p}"), &format!("{A_SECRET} {p}"));
            note["id"] = Value::from(format!("obs-{p}"));
            entries.push(serde_json::json!({"resource": note}));
        }
        serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
    };
    let mut report = phivault_vault::ImportReport::default();
    let opts = phivault_vault::ImportOptions { strict: true };
    o.vault
        .import_document(
            &c,
            "old",
            import(&["pa", "pb"]),
            opts,
            &mut report,
            &mut |_| {},
        )
        .await
        .unwrap();
    clock.set(at(2030));
    o.vault
        .import_document(&c, "new", import(&["pc"]), opts, &mut report, &mut |_| {})
        .await
        .unwrap();
    let before = clinical_rows(&data).await;
    assert_eq!(before.len(), 3);
    set_link(&data, before[0].seq, Some(before[2].seq)).await;
    set_link(&data, before[1].seq, None).await;
    let rule = RetentionRule::new(ResourceType::PATIENT, 10, RetentionAnchor::LastUpdate).unwrap();
    o.vault.set_retention_rule(&c, rule).await.unwrap();
    clock.set(at(2035));
    let run = o.vault.retention_run(&c).await.unwrap();
    assert_eq!((run.patients, run.records), (2, 2), "{run:?}");
    let after = clinical_rows(&data).await;
    assert_eq!(after.len(), 1, "A's and B's records outlived their erasure");
    assert_eq!(after[0].wrapped_dek, before[2].wrapped_dek);
    let kept = ResourceId::parse("obs-pc").unwrap();
    let read = o
        .vault
        .read(&c, ResourceType::parse("Observation").unwrap(), &kept)
        .await;
    assert!(read.is_ok(), "{read:?}");
}
