//! FHIR search (issue 22) against a live `phivault serve` over HTTPS, on SQLite and, with
//! `PHIVAULT_TEST_BACKEND=postgres`, on PostgreSQL (scripts/test-postgres.sh).
//!
//! Conformance: the repo's fixtures (testdata/fhir) and generated patients and records
//! (testdata/search, from support/search_gen.py) are loaded as transaction Bundles; then, for
//! every parameter of the contract, a few thousand queries (prefixes, accents, case, :exact,
//! comma OR, AND, every date prefix with partial dates, paging, _sort, _summary, _total,
//! _elements, _include, _revinclude) are answered by the server and, independently, by
//! support/search_oracle.py from the plain files; the ids (over every page) must agree.
//! Then nothing of the fixtures' PHI — names and their prefixes, birth dates, postal codes,
//! phones, emails, codes, values — is in any store's bytes. Field release: a viewer's results
//! carry demographics only, a viewer may not search on a birth date, and an included record
//! the caller may not read is left out and audited. An off-the-shelf client (fhirclient)
//! searches and pages without a purpose header.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::live::{Live, Resp};
use common::search::{self as s, EHR, entries_in, service_client};
use serde_json::Value;
use std::collections::BTreeSet;

/// Every parameter of the contract, by type.
const CONTRACT: &[(&str, &str)] = &[
    (
        "Patient",
        "_id identifier name family given phonetic birthdate gender address-postalcode \
         address-city telecom phone email general-practitioner organization _lastUpdated",
    ),
    (
        "Observation",
        "patient subject category code date status _lastUpdated _id",
    ),
    (
        "Condition",
        "patient subject category clinical-status code onset-date _lastUpdated _id",
    ),
    (
        "Encounter",
        "patient subject date status class type identifier _id",
    ),
    (
        "DiagnosticReport",
        "patient subject category code date status _id",
    ),
    ("Immunization", "patient date status vaccine-code _id"),
    (
        "MedicationRequest",
        "patient subject intent status medication code authoredon _id",
    ),
    ("AllergyIntolerance", "patient clinical-status code _id"),
    ("Procedure", "patient subject date code status _id"),
    (
        "DocumentReference",
        "patient subject category type date status _id",
    ),
];

/// A server with the integration `ehr` (default purpose TREAT) and its token.
fn server(extra: impl FnOnce(&std::path::Path)) -> (Live, String) {
    let mut ehr = String::new();
    let live = Live::start(|d| {
        ehr = service_client(d, "ehr", EHR, Some("TREAT"));
        extra(d);
    });
    let t = live.token(&ehr);
    (live, t)
}

fn covered(report: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (t, params) in CONTRACT {
        for p in params.split_whitespace() {
            let ok = report["covered"][*t]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == p));
            if !ok {
                missing.push(format!("{t}:{p}"));
            }
        }
    }
    missing
}

#[test]
fn every_search_parameter_answers_what_the_contract_computes_and_no_phi_is_stored() {
    let Some(py) = s::python("json", "python3") else {
        return;
    };
    let (mut live, t) = server(|_| {});
    let split = s::load(&py, &live, &t);
    let root = common::repo_root().display().to_string();
    let report = s::run_with_token(&py, "search_check.py", &live, &t, &["check", &root, &split]);
    live.kill_now();
    let scan = s::scan(&py, &live.data);

    let mismatches = report["mismatches"].as_array().unwrap();
    let hits = scan["hits"].as_array().unwrap();
    eprintln!(
        "{} queries, {} non-empty, {} over several pages, {} refused as too costly, checks {}",
        report["queries"],
        report["nonempty"],
        report["multi_page"],
        report["refused"].as_array().unwrap().len(),
        report["checks"]
    );
    for m in mismatches {
        eprintln!("MISMATCH {m}");
    }
    for h in hits {
        eprintln!("STORED {h}");
    }
    assert!(
        mismatches.is_empty() && hits.is_empty(),
        "{} searches disagree with the contract, {} PHI strings found in the stores (above)",
        mismatches.len(),
        hits.len()
    );
    assert!(report["queries"].as_u64().unwrap() >= 1500, "{report}");
    assert!(report["nonempty"].as_u64().unwrap() >= 1000, "{report}");
    assert!(report["multi_page"].as_u64().unwrap() >= 10, "{report}");
    for check in [
        "_sort",
        "_include",
        "_revinclude",
        "_elements",
        "_summary=count",
        "total",
        "paging",
        "refusal",
    ] {
        assert!(report["checks"][check].as_u64().unwrap_or(0) > 0, "{check}");
    }
    assert_eq!(covered(&report), Vec::<String>::new(), "never answered");
    assert!(scan["needles"].as_u64().unwrap() >= 800, "{scan}");
}

/// The scanner is not blind: strings planted in a plain file, in an SQLite table's text,
/// integer and binary cells (and, on PostgreSQL, in a schema of the suite's naming) are found.
#[test]
fn the_phi_scanner_finds_what_is_planted() {
    let Some(py) = s::python("sqlite3", "python3") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let clean = s::scan(&py, &data);
    assert_eq!(clean["hits"], serde_json::json!([]), "{clean}");
    std::fs::write(data.join("plain.log"), "x Quintanilla-Oyelaran y").unwrap();
    let plant = "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); \
        d.execute('CREATE TABLE t (a TEXT, b BLOB, c INTEGER)'); \
        d.execute(\"INSERT INTO t VALUES ('prefix hol here', ?, -277776000)\", \
        ('Zoë'.encode(),)); d.commit()";
    let out = std::process::Command::new(&py)
        .args(["-c", plant])
        .arg(data.join("clinical.db"))
        .output()
        .unwrap();
    common::live::stdout_ok(&out);
    if let Some(db) = common::test_database(&data) {
        let sql = format!(
            "CREATE SCHEMA {p}_audit; CREATE TABLE {p}_audit.t (a text, b bytea); \
             INSERT INTO {p}_audit.t VALUES ('Aegirson', '\\x3031383532'::bytea);",
            p = db.prefix
        );
        let out = std::process::Command::new("psql")
            .args([db.url.as_str(), "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .output()
            .unwrap();
        common::live::stdout_ok(&out);
    }
    let found = s::scan(&py, &data);
    let got: BTreeSet<String> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}={}",
                h["where"].as_str().unwrap(),
                h["needle"].as_str().unwrap()
            )
        })
        .collect();
    let mut want = vec![
        ("plain.log", "Quintanilla-Oyelaran"),
        ("clinical.db:t", "hol"),
        ("clinical.db:t", "Zoë"),
        ("clinical.db:t", "-277776000"),
    ];
    if common::on_postgres() {
        want.extend([("pg:", "Aegirson"), ("pg:", "01852")]);
    }
    for (place, needle) in want {
        let w = format!("{place}…={needle}");
        let hit = got
            .iter()
            .any(|g| g.starts_with(place) && g.ends_with(&format!("={needle}")));
        assert!(hit, "{w} not found: {got:?}");
    }
}

/// A GET with no purpose header (the caller's default applies).
fn get(live: &Live, token: &str, path: &str) -> Resp {
    live.call(
        "GET",
        &format!("/fhir/{path}"),
        Some(token),
        None,
        None,
        &[],
    )
}

/// Whether the audit trail holds a denied event of `actor` (`client:name`, `user:name`) with
/// one of the `|`-separated `actions`, of `rtype` when given.
fn denied(data: &std::path::Path, actor: &str, actions: &str, rtype: Option<&str>) -> bool {
    s::audit_events(data).iter().any(|e| {
        e["actor"] == actor
            && actions.split('|').any(|a| e["action"] == a)
            && e["outcome"] == "denied"
            && rtype.is_none_or(|t| e["resource_type"] == t)
    })
}

/// What the audit trail holds of `actor`: (action, resource type, outcome, reason).
fn events_of(data: &std::path::Path, actor: &str) -> Vec<String> {
    s::audit_events(data)
        .iter()
        .filter(|e| e["actor"] == actor)
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["action"], e["resource_type"], e["outcome"], e["reason"]
            )
        })
        .collect()
}

/// Threat: a viewer (minimum necessary: name, gender, active) learns a birth date, an
/// address or a phone through search results, search criteria or sort order; an `_include`
/// or `_revinclude` releases a record the caller may not read (HIPAA §164.502(b)).
#[test]
fn a_viewer_gets_demographics_only_and_includes_release_nothing_unreadable() {
    let Some(py) = s::python("json", "python3") else {
        return;
    };
    let (mut viewer, mut narrow, mut otp) = (String::new(), String::new(), String::new());
    let (live, t) = server(|d| {
        let v = ("VIEWER", "system/Patient.rs system/Observation.rs", "TREAT");
        viewer = service_client(d, "kiosk", v, Some("TREAT"));
        let n = ("INTEGRATION_MANAGER", "system/Observation.rs", "TREAT");
        narrow = service_client(d, "narrow", n, Some("TREAT"));
        otp = common::live::add_user(d, "viewer.v", "VIEWER");
    });
    s::load(&py, &live, &t);
    let (viewer, narrow) = (live.token(&viewer), live.token(&narrow));
    let chosen = serde_json::json!({"purpose_of_use": "TREAT"});
    let person = live
        .enroll_with(None, "viewer.v", &otp, "127.0.22.1", &chosen)
        .token;

    let r = get(&live, &viewer, "Patient?name=hol");
    assert_eq!(r.status, 200, "{}", r.body);
    let found = entries_in(&r.body, "match");
    let set: BTreeSet<String> = found.iter().cloned().collect();
    assert_eq!(set.len(), found.len(), "no id twice: {found:?}");
    let want: BTreeSet<String> = s::expected(&py, "Patient", "name=hol")
        .into_iter()
        .collect();
    assert_eq!(set, want);
    for e in r.body["entry"].as_array().unwrap() {
        let keys: BTreeSet<&str> = e["resource"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        // The age range the field policy derives for viewers (policy/fields.rs) is the one
        // extension allowed; never the birth date itself.
        let allowed = [
            "resourceType",
            "id",
            "meta",
            "name",
            "gender",
            "active",
            "extension",
        ];
        let ext = e["resource"]["extension"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        assert!(
            ext.iter().all(|x| x["url"] == "urn:phivault:age-range"),
            "{ext:?}"
        );
        assert!(
            keys.iter().all(|k| allowed.contains(k)),
            "a viewer got {keys:?}: {}",
            e["resource"]
        );
    }
    for query in [
        "Patient?name=hol&birthdate=ge1980",
        "Patient?birthdate=1980-01-01",
        "Patient?address-city=spring",
        "Patient?address-postalcode=01852",
        "Patient?phone=5550102233",
        "Patient?email=jose.0@example.org",
        "Patient?name=hol&_sort=birthdate",
    ] {
        let r = get(&live, &viewer, query);
        assert_eq!(r.status, 403, "{query}: {}", r.body);
    }
    assert!(denied(&live.data, "client:kiosk", "search", None));
    // An identifier is how a patient is looked up: every role may, and gets its release.
    let r = get(&live, &viewer, "Patient?identifier=SP-1003");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["entry"][0]["resource"].get("identifier").is_none());
    let r = get(&live, &person, "Patient?birthdate=1980-01-01");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(denied(&live.data, "user:viewer.v", "search", None));

    // Records the caller may not read are left out of _include and _revinclude, audited.
    let (p0, observations) = s::first_patient();
    let r = get(
        &live,
        &viewer,
        &format!("Patient?_id={p0}&_revinclude=Observation:patient"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(entries_in(&r.body, "match"), [format!("Patient/{p0}")]);
    assert_eq!(entries_in(&r.body, "include"), Vec::<String>::new());
    assert!(
        denied(
            &live.data,
            "client:kiosk",
            "read|search",
            Some("Observation")
        ),
        "the left-out Observations are audited as denied reads: {:?}",
        events_of(&live.data, "client:kiosk")
    );
    let r = get(
        &live,
        &narrow,
        &format!("Observation?patient={p0}&_include=Observation:patient&_count=100"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut got = entries_in(&r.body, "match");
    got.sort();
    assert_eq!(got, observations);
    assert_eq!(entries_in(&r.body, "include"), Vec::<String>::new());
    assert!(
        denied(&live.data, "client:narrow", "read|search", Some("Patient")),
        "the left-out Patient is audited as a denied read: {:?}",
        events_of(&live.data, "client:narrow")
    );
    // The same searches by the integration include them.
    let r = get(
        &live,
        &t,
        &format!("Observation?patient={p0}&_include=Observation:patient&_count=100"),
    );
    assert_eq!(entries_in(&r.body, "include"), [format!("Patient/{p0}")]);
}

/// An off-the-shelf SMART client (fhirclient) searches by a name prefix and a birth date
/// range and pages with its own paging, with no purpose header (the client's default).
#[test]
fn fhirclient_searches_by_name_prefix_and_birthdate_and_pages_without_a_header() {
    let Some(py) = s::python("fhirclient.models.patient", "fhirclient") else {
        return;
    };
    let (live, t) = server(|_| {});
    s::load(&py, &live, &t);
    let want = s::expected(&py, "Patient", "name=hol,muñ,reyes&birthdate=ge1980-01-01");
    assert!(want.len() > 2, "the answer spans pages of 2: {want:?}");
    let out = s::run_with_token(
        &py,
        "fhirclient_search.py",
        &live,
        &t,
        &["hol,muñ,reyes", "1980-01-01"],
    );
    assert_eq!(out["status"], "ok", "{out}");
    assert!(out["pages"].as_u64().unwrap() >= 2, "{out}");
    let mut got: Vec<String> = out["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("Patient/{}", i.as_str().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, want);
    let events = s::audit_events(&live.data);
    assert!(
        events.iter().any(|e| e["actor"] == "client:ehr"
            && e["action"] == "search"
            && e["outcome"] == "success"
            && e["purpose_source"] == "client-default"),
        "the searches ran under the client's default purpose"
    );
}
