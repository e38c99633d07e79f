//! De-identified exports end to end, through the real binary and a real server: the repo's FHIR
//! fixtures plus `testdata/deid/every-identifier-kind.json` (every Safe Harbor identifier kind
//! FHIR can carry, a patient aged 96, ZIPs in restricted areas, a relative) are imported, then
//! exported de-identified, and every output file is searched for what the input identified.
//! Threat: a research or public-health data set that re-identifies patients (HIPAA
//! §164.514(b)(2), (c)); an export that leaves no trace (§164.312(b)).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
mod deid_support;

use common::live::{self, Live};
use common::*;
use deid_support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const AGE_90: &str = "urn:phivault:fhir:extension:age-90-or-older";

fn fixtures() -> Vec<PathBuf> {
    let mut v = repo_fixtures();
    v.push(repo_root().join("testdata/deid/every-identifier-kind.json"));
    v
}

fn run_ok(data: &Path, args: &[&str]) -> String {
    let out = live::cli(data, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn import_fixtures(data: &Path) {
    let files: Vec<String> = fixtures().iter().map(|p| p.display().to_string()).collect();
    let mut args = vec!["import", "--strict"];
    args.extend(files.iter().map(String::as_str));
    run_ok(data, &args);
}

/// A fresh vault holding the fixtures.
fn vault() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    run_ok(&data, &["init"]);
    import_fixtures(&data);
    (tmp, data)
}

/// `phivault export deid --out OUT --json …`: the printed summary.
fn export(data: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["export", "deid", "--out", out.to_str().unwrap(), "--json"];
    args.extend(extra);
    serde_json::from_str(&run_ok(data, &args)).unwrap()
}

#[test]
fn a_safe_harbor_export_holds_none_of_the_identifiers_of_the_input() {
    let (tmp, data) = vault();
    let out = tmp.path().join("research");
    let summary = export(&data, &out, &[]);
    assert_eq!(summary["method"], "safe-harbor");
    #[cfg(unix)]
    {
        assert_eq!(mode(&out), 0o700);
        for (p, _) in all_files(&out) {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    let files = fixtures();
    let needles = identifying(&files);
    assert!(
        needles.len() >= 150,
        "too few needles ({}) to mean anything",
        needles.len()
    );
    for must in [
        "Ottoline",
        "1930-02-17",
        "03608",
        "89301",
        "(603) 555-0147",
        "6035550147",
        "ottoline.vm@example.com",
        "999-63-1942",
        "MRN-9034417",
        "MBR-4471902266",
        "ACCT-77120934",
        "NHDL55102937",
        "SN-A7-2231",
        "00643169007222",
        "1FTEW1EP5JFA00213",
        "198.51.100.23",
        "https://ottoline-vm.example.com/about",
        "T1RUT0xJTkVGQUNF",
        "Pumpkin Hill",
        "Walpole",
        "Cheshire County",
        "Henrietta",
        "Quimby",
        "9999912345",
        "9999975519",
        "Dr. Lucio Pagac",
    ] {
        assert!(
            needles.iter().any(|n| n.contains(must)),
            "the needles miss {must}"
        );
    }
    // The needles do find what is there: in the input files (all but derived ones such as
    // phone digits).
    let input: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(hits(&input, &needles).len() * 10 >= needles.len() * 9);
    let text = export_text(&out);
    assert_eq!(
        hits(&text, &needles),
        Vec::<String>::new(),
        "identifiers in the export"
    );
    assert!(
        !has_month_precision(&without_pseudonyms(&text)),
        "a date element beyond the year"
    );
    let all = resources(&out);
    assert_eq!(all.len() as u64, summary["total"].as_u64().unwrap());
    // Only the whitelisted types; people, places, relatives, devices, media, coverage: none.
    let types: BTreeSet<&str> = all
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap())
        .collect();
    for t in [
        "RelatedPerson",
        "Practitioner",
        "Organization",
        "Device",
        "Media",
        "Coverage",
        "Claim",
        "Provenance",
    ] {
        assert!(!types.contains(t), "{t} exported");
        assert!(!out.join(format!("{t}.ndjson")).exists());
    }
    // Ids and references are pseudonyms.
    let text_all = serde_json::to_string(&all).unwrap();
    for r in &all {
        assert!(is_pseudonym(r["id"].as_str().unwrap()), "{}", r["id"]);
    }
    for piece in text_all.split("\"reference\":\"").skip(1) {
        let target = piece.split('"').next().unwrap();
        let (t, id) = target.split_once('/').unwrap();
        assert!(
            t.chars().all(|c| c.is_ascii_alphabetic()) && is_pseudonym(id),
            "{target}"
        );
    }
    // Geography: state and ZIP3 only; the restricted areas (036, 893) become 000.
    let patients: Vec<&Value> = all
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .collect();
    assert_eq!(patients.len(), 6);
    let zips: Vec<&str> = patients
        .iter()
        .flat_map(|p| p["address"].as_array().into_iter().flatten())
        .map(|a| a["postalCode"].as_str().unwrap())
        .collect();
    assert_eq!(zips.iter().filter(|z| **z == "000").count(), 2, "{zips:?}");
    assert!(
        zips.iter()
            .all(|z| z.len() == 3 && !["036", "893"].contains(z)),
        "{zips:?}"
    );
    // Ages over 89: the patient born in 1930 is "90 or older", with no birth year left.
    let old: Vec<&&Value> = patients
        .iter()
        .filter(|p| {
            p["extension"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["url"] == AGE_90)
        })
        .collect();
    assert_eq!(old.len(), 1);
    assert!(old[0].get("birthDate").is_none());
    assert!(!without_pseudonyms(&text).contains("1930"));
    assert_eq!(
        all.iter().map(old_ages).sum::<usize>(),
        0,
        "an age of 90+ left"
    );
    live::validate_resources(&all);

    // CSV: one file per type, a header starting with id, one row per resource.
    let csv_out = tmp.path().join("csv");
    let csv = export(
        &data,
        &csv_out,
        &["--format", "csv", "--types", "Patient,Observation"],
    );
    let names: Vec<&str> = csv["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(names, ["Observation.csv", "Patient.csv"]);
    let patients_csv = std::fs::read_to_string(csv_out.join("Patient.csv")).unwrap();
    assert!(patients_csv.starts_with("id,"));
    assert_eq!(patients_csv.lines().count(), 7);
    assert_eq!(hits(&export_text(&csv_out), &needles), Vec::<String>::new());

    // Refusals: a non-empty output directory, a type exports do not include.
    let again = live::cli(&data, &["export", "deid", "--out", out.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let bad = tmp.path().join("bad");
    let r = live::cli(
        &data,
        &[
            "export",
            "deid",
            "--out",
            bad.to_str().unwrap(),
            "--types",
            "RelatedPerson",
        ],
    );
    assert!(!r.status.success());
    assert!(!bad.exists(), "a failed export leaves no directory behind");

    // One audit event per export, with counts and nothing that identifies anyone.
    let jsonl = run_ok(&data, &["audit", "export", "--format", "jsonl"]);
    let events: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "export-deid")
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0]["outcome"], "success");
    assert_eq!(events[0]["count"], summary["total"]);
    assert_eq!(events[0]["reason"], "safe-harbor");
    let patients_field = format!("Patient={}", patients.len());
    assert!(
        events[0]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == &patients_field)
    );
    assert_eq!(events[1]["count"], csv["total"]);
    assert_eq!(events[2]["outcome"], "error");
    assert_eq!(
        audit_hits(&jsonl, &needles),
        Vec::<String>::new(),
        "PHI in the audit trail"
    );
}

#[test]
fn pseudonymized_exports_share_no_pseudonym_and_shift_each_patient_by_one_offset() {
    let (tmp, data) = vault();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    export(&data, &one, &["--method", "pseudonymized"]);
    export(&data, &two, &["--method", "pseudonymized"]);
    let (p1, p2) = (pseudonyms(&one), pseudonyms(&two));
    assert!(p1.len() >= 40);
    assert!(p1.is_disjoint(&p2), "two exports share a pseudonym");
    let all = resources(&one);
    let of = |t: &'static str| all.iter().filter(move |r| r["resourceType"] == t);
    let patient_ids: BTreeSet<&str> = of("Patient").map(|p| p["id"].as_str().unwrap()).collect();
    let subject = |r: &Value| -> String {
        let s = r.get("subject").or_else(|| r.get("patient")).unwrap();
        s["reference"]
            .as_str()
            .unwrap()
            .trim_start_matches("Patient/")
            .to_owned()
    };
    // Every record of a patient names that patient by its one pseudonym of this export.
    for r in all.iter().filter(|r| r["resourceType"] != "Patient") {
        assert!(patient_ids.contains(subject(r).as_str()), "{r}");
    }
    // The patient born 1930-02-17 and the one born 1987-09-04: every date of theirs moved by
    // the same number of days (1 to 365, either way).
    for (born, dates) in [
        (
            "1930-02-17",
            vec![
                ("Encounter", "period.start", "2024-03-15"),
                ("Observation", "effectiveDateTime", "2024-03-15"),
                ("Condition", "onsetDateTime", "2024-03-14"),
                ("Condition", "recordedDate", "2024-03-15"),
                ("Immunization", "occurrenceDateTime", "2023-10-05"),
                ("DiagnosticReport", "effectiveDateTime", "2024-03-16"),
                ("DiagnosticReport", "issued", "2024-03-16"),
                ("Observation", "issued", "2024-03-15"),
            ],
        ),
        (
            "1987-09-04",
            vec![
                ("Procedure", "performedDateTime", "2022-07-19"),
                ("MedicationRequest", "authoredOn", "2022-07-20"),
                (
                    "MedicationRequest",
                    "dispenseRequest.validityPeriod.end",
                    "2022-10-20",
                ),
            ],
        ),
    ] {
        let year: i32 = born[..4].parse().unwrap();
        let p = of("Patient")
            .find(|p| {
                let y: i32 = p["birthDate"].as_str().unwrap()[..4].parse().unwrap();
                (y - year).abs() <= 1
            })
            .unwrap();
        let offset = days(born, p["birthDate"].as_str().unwrap());
        assert!((1..=365).contains(&offset.abs()), "offset {offset}");
        let pid = p["id"].as_str().unwrap();
        let mut seen = 0;
        for (t, path, original) in dates {
            for r in of(t).filter(|r| subject(r) == pid) {
                let v = path.split('.').fold(r, |v, k| &v[k]);
                let Some(s) = v.as_str() else { continue };
                assert_eq!(
                    days(original, s),
                    offset,
                    "{t}.{path} of the patient born {born}"
                );
                seen += 1;
            }
        }
        assert!(
            seen >= 3,
            "only {seen} dates compared for the patient born {born}"
        );
    }
    // Identifiers go as for Safe Harbor (dates are shifted instead of cut, so not searched).
    let needles: Vec<String> = identifying(&fixtures())
        .into_iter()
        .filter(|n| !(n.len() == 10 && n.as_bytes()[4] == b'-'))
        .collect();
    assert_eq!(hits(&export_text(&one), &needles), Vec::<String>::new());
    live::validate_resources(&all);
}

/// A 200 export over HTTPS, its raw body (NDJSON is not one JSON value) and content type.
fn exported(live: &Live, query: &str, token: &str, purpose: &str) -> (String, String) {
    let url = format!("https://localhost:{}/admin/export/deid{query}", live.port);
    let (auth, pou) = (
        format!("authorization: Bearer {token}"),
        format!("x-purpose-of-use: {purpose}"),
    );
    let out = Command::new("curl")
        .args([
            "-sS", "-X", "POST", "--cacert", &live.ca, "-H", &auth, "-H", &pou,
        ])
        .args(["-w", "\n%{http_code} %{content_type}", &url])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    assert!(tail.starts_with("200 "), "{query} {purpose}: {tail} {body}");
    (body.to_owned(), tail[4..].to_owned())
}

#[test]
fn the_api_exports_for_research_and_public_health_roles_only() {
    let (mut research, mut treat, mut otps) = (String::new(), String::new(), Vec::new());
    let live = Live::start(|data| {
        import_fixtures(data);
        research = Live::client(
            data,
            "research",
            "INTEGRATION_MANAGER",
            "system/*.rs",
            "HRESCH PUBHLTH",
        );
        treat = Live::client(
            data,
            "ehr",
            "INTEGRATION_MANAGER",
            "system/*.rs",
            "TREAT HRESCH",
        );
        for (name, role) in [
            ("admin.ada", "ORG_ADMIN"),
            ("dr.bo", "CLINICIAN"),
            ("aud.cy", "AUDITOR"),
        ] {
            otps.push((name, live::add_user(data, name, role)));
        }
    });
    let tokens: Vec<String> = otps
        .iter()
        .enumerate()
        .map(|(i, (n, otp))| live.sign_in(n, otp, &format!("127.0.11.{}", i + 1)))
        .collect();
    let (admin, clinician, auditor) = (&tokens[0], &tokens[1], &tokens[2]);
    let needles = identifying(&fixtures());
    let ok = |query: &str, token: &str, purpose: &str| {
        let (body, ct) = exported(&live, query, token, purpose);
        assert_eq!(ct, "application/fhir+ndjson");
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // A pseudonymized export keeps full dates, shifted: one may land on another input
        // date by chance, so dates are not needles there (their shift is tested elsewhere).
        let is_date = |n: &String| {
            n.len() == 10
                && n.as_bytes().get(4) == Some(&b'-')
                && n.as_bytes().get(7) == Some(&b'-')
        };
        let needles: Vec<String> = needles
            .iter()
            .filter(|n| !(query.contains("pseudonymized") && is_date(n)))
            .cloned()
            .collect();
        assert_eq!(hits(&body, &needles), Vec::<String>::new());
        lines
    };
    let sh = ok("", admin, "HRESCH");
    assert_eq!(sh[0]["resourceType"], "Patient", "Patients first");
    assert_eq!(
        sh.iter().filter(|r| r["resourceType"] == "Patient").count(),
        6
    );
    ok("?method=pseudonymized", admin, "PUBHLTH");
    let rtoken = live.token(&research);
    let only = ok("?types=Patient,Condition", &rtoken, "HRESCH");
    assert!(
        only.iter()
            .all(|r| r["resourceType"] == "Patient" || r["resourceType"] == "Condition")
    );
    ok("", &rtoken, "PUBHLTH");
    // Everyone and everything else: 403 (401 without a token, 400 for a bad method).
    let ttoken = live.token(&treat);
    for (token, purpose) in [
        (admin, Some("TREAT")),
        (admin, Some("HOPERAT")),
        (admin, None),
        (clinician, Some("HRESCH")),
        (auditor, Some("PUBHLTH")),
        (&rtoken, Some("TREAT")),
        (&ttoken, Some("PUBHLTH")),
    ] {
        let r = live.call(
            "POST",
            "/admin/export/deid",
            Some(token),
            purpose,
            None,
            &[],
        );
        assert_eq!(r.status, 403, "{purpose:?}: {}", r.body);
        assert_eq!(hits(&r.body.to_string(), &needles), Vec::<String>::new());
    }
    let call =
        |path: &str, token: Option<&str>| live.call("POST", path, token, Some("HRESCH"), None, &[]);
    assert_eq!(call("/admin/export/deid", None).status, 401);
    assert_eq!(
        call("/admin/export/deid?method=k-anonymity", Some(admin)).status,
        400
    );
    let doc = live.call("GET", "/openapi.json", None, None, None, &[]);
    let op = &doc.body["paths"]["/admin/export/deid"]["post"];
    for s in ["200", "401", "403"] {
        assert!(
            op["responses"].get(s).is_some(),
            "the OpenAPI entry lacks {s}"
        );
    }
    // The trail: four exports, seven refusals (denied), each one event.
    let jsonl = run_ok(&live.data, &["audit", "export", "--format", "jsonl"]);
    let events: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "export-deid")
        .collect();
    let count = |o: &str| events.iter().filter(|e| e["outcome"] == o).count();
    assert_eq!((count("success"), count("denied")), (4, 7), "{events:?}");
}
