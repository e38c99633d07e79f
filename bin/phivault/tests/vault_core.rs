//! The vault core end to end on real SQLite files: sealing, leak scan of raw bytes, round trip,
//! tamper detection, blind-index search, crypto-shredding, optimistic concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::raw::RawDb;
use common::*;
use phivault_core::{ResourceId, ResourceType, StoreKind, Version};
use phivault_vault::{PageCursor, PatientQuery, VaultError};
use serde_json::{Value, json};
use std::collections::BTreeMap;

async fn export_all(o: &phivault::datadir::Opened) -> BTreeMap<(String, String), Value> {
    let c = ctx(o).await;
    let mut out = BTreeMap::new();
    for kind in [StoreKind::Identity, StoreKind::Clinical] {
        let mut after: Option<PageCursor> = None;
        loop {
            let (page, next) = o.vault.page(&c, kind, after.as_ref(), 7).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = next;
            for s in page {
                let key = (s.rtype.as_str().to_owned(), s.id.as_str().to_owned());
                assert!(out.insert(key, s.resource).is_none(), "listed twice");
            }
        }
    }
    out
}

/// Threat: PHI readable from the database files, journals or any byte at rest (HIPAA
/// §164.312(a)(2)(iv) encryption).
#[tokio::test]
async fn imported_phi_appears_in_no_byte_of_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    let mut files = repo_fixtures();
    files.extend(shared_fixtures());
    let report = import_files(&o, &files, false).await;
    assert!(report.patients >= 4, "{}", report.summary());
    let phi = phi_strings(&files);
    assert!(
        phi.len() >= 40,
        "too few PHI strings to make the scan meaningful"
    );
    let needles: Vec<Vec<u8>> = phi.iter().map(|s| s.as_bytes().to_vec()).collect();
    // Sanity: the scanner does find PHI where it is (the input files themselves).
    assert!(!scan(&repo_root().join("testdata/fhir"), &needles).is_empty());
    // While the stores are open: main files, -wal, -shm, keys/.
    let names: Vec<String> = all_files(&dir)
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        on_postgres() || names.iter().any(|n| n.ends_with("-wal")),
        "{names:?}"
    );
    let hits = scan_vault(&dir, &needles);
    assert!(
        hits.is_empty(),
        "PHI found in the data dir: {:?}",
        hits.iter()
            .map(|(p, i)| (p.file_name().unwrap().to_owned(), i))
            .collect::<Vec<_>>()
    );
    // And after a clean close (checkpointed into the main files).
    o.close().await;
    assert!(scan_vault(&dir, &needles).is_empty());
}

#[tokio::test]
async fn export_gives_back_every_imported_resource() {
    let tmp = tempfile::tempdir().unwrap();
    let o = new_vault(&tmp.path().join("data")).await;
    let files = repo_fixtures();
    let report = import_files(&o, &files, true).await;
    assert!(report.skipped.is_empty(), "{}", report.summary());
    let exported = export_all(&o).await;
    let mut expected = 0;
    for f in &files {
        for r in resources_in(f) {
            expected += 1;
            let key = (
                r["resourceType"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            );
            let got = exported
                .get(&key)
                .unwrap_or_else(|| panic!("{key:?} missing"));
            assert_eq!(
                without_meta(got.clone()),
                without_meta(r.clone()),
                "{key:?}"
            );
            assert_eq!(got["meta"]["versionId"], "1");
        }
    }
    assert_eq!(exported.len(), expected);
    assert_eq!(
        report.patients + report.resources,
        expected as u64,
        "{}",
        report.summary()
    );

    // Shared test data, when present: whatever was imported comes back equal.
    let shared = shared_fixtures();
    if !shared.is_empty() {
        let r2 = import_files(&o, &shared, false).await;
        let exported = export_all(&o).await;
        let mut compared = 0;
        for f in &shared {
            for r in resources_in(f) {
                let (Some(t), Some(i)) = (r["resourceType"].as_str(), r["id"].as_str()) else {
                    continue;
                };
                if let Some(got) = exported.get(&(t.to_owned(), i.to_owned())) {
                    assert_eq!(
                        without_meta(got.clone()),
                        without_meta(r.clone()),
                        "{t}/{i}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 0, "{}", r2.summary());
    }
}

fn patient_id(file: &str) -> ResourceId {
    let p = repo_root().join("testdata/fhir").join(file);
    let r = resources_in(&p)
        .into_iter()
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    ResourceId::parse(r["id"].as_str().unwrap()).unwrap()
}

/// Threat: tampering with or swapping sealed records at rest (HIPAA §164.312(c)(1), (c)(2)
/// integrity).
#[tokio::test]
async fn flipped_or_swapped_ciphertext_fails_with_an_integrity_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    import_files(&o, &repo_fixtures(), true).await;
    let c = ctx(&o).await;
    let raw = RawDb::open(&dir, "identity").await;
    let rows = raw.sealed_rows(false).await;
    assert_eq!(rows.len(), 4);
    // Every patient reads fine first.
    let ids: Vec<ResourceId> = repo_fixtures()
        .iter()
        .flat_map(|f| resources_in(f))
        .filter(|r| r["resourceType"] == "Patient")
        .map(|r| ResourceId::parse(r["id"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    let read_all = || async {
        let mut results = Vec::new();
        for id in &ids {
            results.push(o.vault.read(&c, ResourceType::PATIENT, id).await);
        }
        results
    };
    assert!(read_all().await.iter().all(Result::is_ok));

    for row in &rows {
        let rowid = row.seq;
        for column in ["ciphertext", "wrapped_dek"] {
            let original = row.column(column).to_vec();
            for pos in [0, original.len() / 2, original.len() - 1] {
                let mut bad = original.clone();
                bad[pos] ^= 0x01;
                raw.set_sealed(column, rowid, &bad).await;
                let results = read_all().await;
                let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
                assert_eq!(
                    failed.len(),
                    1,
                    "flip at {column}[{pos}] of row {rowid}: exactly that record fails"
                );
                assert!(
                    matches!(failed[0], Err(VaultError::Integrity(_))),
                    "{:?}",
                    failed[0]
                );
                raw.set_sealed(column, rowid, &original).await;
            }
        }
    }
    assert!(
        read_all().await.iter().all(Result::is_ok),
        "restored rows read again"
    );

    // Swap the ciphertexts of two records; then swap whole sealed records (DEK + ciphertext).
    let (a, b) = (rows[0].seq, rows[1].seq);
    for cols in [&["ciphertext"][..], &["ciphertext", "wrapped_dek"][..]] {
        for col in cols {
            raw.set_sealed(col, a, rows[1].column(col)).await;
            raw.set_sealed(col, b, rows[0].column(col)).await;
        }
        let results = read_all().await;
        let errors = results
            .iter()
            .filter(|r| matches!(r, Err(VaultError::Integrity(_))))
            .count();
        assert!(errors >= 1, "swap of {cols:?} went unnoticed");
        assert!(
            results
                .iter()
                .all(|r| r.is_ok() || matches!(r, Err(VaultError::Integrity(_))))
        );
        // Restore.
        for col in cols {
            raw.set_sealed(col, a, rows[0].column(col)).await;
            raw.set_sealed(col, b, rows[1].column(col)).await;
        }
    }
    assert!(read_all().await.iter().all(Result::is_ok));

    // A clinical record: flip a ciphertext byte, the patient's record list fails whole.
    let craw = RawDb::open(&dir, "clinical").await;
    let row = craw.sealed_rows(true).await.remove(0);
    let mut ct = row.ciphertext.clone();
    let mid = ct.len() / 2;
    ct[mid] ^= 0x80;
    craw.set_sealed("ciphertext", row.seq, &ct).await;
    let mut failures = 0;
    for id in &ids {
        match o.vault.patient_records(&c, id).await {
            Ok(list) => assert!(!list.is_empty()),
            Err(VaultError::Integrity(_)) => failures += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        failures, 1,
        "exactly the patient owning the flipped record fails"
    );
}

#[tokio::test]
async fn search_by_identifier_family_birthdate_and_phone() {
    let tmp = tempfile::tempdir().unwrap();
    let o = new_vault(&tmp.path().join("data")).await;
    import_files(&o, &repo_fixtures(), true).await;
    let c = ctx(&o).await;
    let fam = |s: &Value| s["name"][0]["given"][0].as_str().unwrap().to_owned();
    let run = |q: PatientQuery| {
        let o = &o;
        let c = &c;
        async move {
            let mut v: Vec<String> = o
                .vault
                .search_patients(c, &q)
                .await
                .unwrap()
                .iter()
                .map(|s| fam(&s.resource))
                .collect();
            v.sort();
            v
        }
    };
    let q = |i: Option<&str>, f: Option<&str>, b: Option<&str>, p: Option<&str>| PatientQuery {
        identifier: i.map(Into::into),
        family: f.map(Into::into),
        birthdate: b.map(Into::into),
        phone: p.map(Into::into),
        id: None,
    };
    assert_eq!(
        run(q(
            Some("http://hospital.smarthealthit.org|MRN-7730152"),
            None,
            None,
            None
        ))
        .await,
        ["Maribel"]
    );
    assert_eq!(
        run(q(Some("MRN-5590318"), None, None, None)).await,
        ["Thaddeus"]
    );
    assert_eq!(
        run(q(
            Some("http://hl7.org/fhir/sid/us-ssn|999-27-5561"),
            None,
            None,
            None
        ))
        .await,
        ["Ngozi"]
    );
    // The right value under the wrong system finds nothing.
    assert!(
        run(q(
            Some("http://hl7.org/fhir/sid/us-ssn|MRN-7730152"),
            None,
            None,
            None
        ))
        .await
        .is_empty()
    );
    // Two people share family name and birth date; case and spacing do not matter.
    assert_eq!(
        run(q(
            None,
            Some("quintanilla-oyelaran "),
            Some("1961-03-14"),
            None
        ))
        .await,
        ["Maribel", "Rosalind"]
    );
    assert!(
        run(q(
            None,
            Some("Quintanilla-Oyelaran"),
            Some("1961-03-15"),
            None
        ))
        .await
        .is_empty()
    );
    // Criteria combine with AND.
    assert_eq!(
        run(q(
            Some("MRN-8841906"),
            Some("Quintanilla-Oyelaran"),
            Some("1961-03-14"),
            None
        ))
        .await,
        ["Rosalind"]
    );
    // Phones in any punctuation, with or without the country code.
    assert_eq!(
        run(q(None, None, None, Some("555.772.4091"))).await,
        ["Thaddeus"]
    );
    assert_eq!(
        run(q(None, None, None, Some("5556482017"))).await,
        ["Ngozi"]
    );
    assert_eq!(
        run(q(None, None, None, Some("+1 555 648 2017"))).await,
        ["Ngozi"]
    );
    // Incomplete criteria are refused with a clear error.
    for bad in [
        q(None, Some("x"), None, None),
        q(None, None, None, None),
        q(Some("sys|"), None, None, None),
    ] {
        assert!(matches!(
            o.vault.search_patients(&c, &bad).await,
            Err(VaultError::Invalid(_))
        ));
    }
}

/// Threat: an erased patient recoverable from leftover keys or pages (HIPAA §164.310(d)(2)(i)
/// disposal).
#[tokio::test]
async fn erase_shreds_the_patient_and_its_clinical_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    import_files(&o, &repo_fixtures(), true).await;
    let c = ctx(&o).await;
    let victim = patient_id("02-collection-bundle.json");
    let records = o.vault.patient_records(&c, &victim).await.unwrap();
    assert_eq!(records.len(), 8);

    // Every sealed byte string in both stores, before.
    let sealed = |store: &'static str| {
        let dir = dir.clone();
        async move {
            let raw = RawDb::open(&dir, store).await;
            let rows = raw.sealed_rows(false).await;
            raw.close().await;
            rows.into_iter()
                .flat_map(|r| [r.wrapped_dek, r.ciphertext])
                .collect::<Vec<_>>()
        }
    };
    let before_identity = sealed("identity").await;
    let before_clinical = sealed("clinical").await;

    // Sanity: the scanner finds a sealed record's bytes where they are, on either backend.
    let found: std::collections::BTreeSet<usize> = scan_vault(&dir, &before_identity)
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    assert_eq!(
        found.len(),
        before_identity.len(),
        "the scanner missed some"
    );
    let report = o.vault.erase_patient(&c, &victim).await.unwrap();
    assert_eq!(report.patient_versions, 1);
    assert_eq!(report.clinical_records, 8);

    let after_identity = sealed("identity").await;
    let after_clinical = sealed("clinical").await;
    let gone: Vec<Vec<u8>> = before_identity
        .iter()
        .filter(|b| !after_identity.contains(b))
        .chain(
            before_clinical
                .iter()
                .filter(|b| !after_clinical.contains(b)),
        )
        .cloned()
        .collect();
    // One patient + 8 clinical records, each a wrapped DEK and a ciphertext.
    assert_eq!(gone.len(), 2 * 9);
    let hits = scan_vault(&dir, &gone);
    assert!(
        hits.is_empty(),
        "erased key or ciphertext bytes survive in {hits:?}"
    );

    assert!(matches!(
        o.vault.read(&c, ResourceType::PATIENT, &victim).await,
        Err(VaultError::NotFound)
    ));
    assert!(matches!(
        o.vault.patient_records(&c, &victim).await,
        Err(VaultError::NotFound)
    ));
    for r in &records {
        assert!(matches!(
            o.vault.read(&c, r.rtype, &r.id).await,
            Err(VaultError::NotFound)
        ));
    }
    let q = PatientQuery {
        identifier: Some("MRN-2208461".into()),
        ..Default::default()
    };
    assert!(o.vault.search_patients(&c, &q).await.unwrap().is_empty());
    let q = PatientQuery {
        family: Some("Okonkwo-Brightwater".into()),
        birthdate: Some("1990-07-29".into()),
        ..Default::default()
    };
    assert!(o.vault.search_patients(&c, &q).await.unwrap().is_empty());
    // Other patients are untouched (the first one also owns the bundle's Provenance).
    assert_eq!(
        o.vault
            .patient_records(&c, &patient_id("01-synthea-style-transaction.json"))
            .await
            .unwrap()
            .len(),
        9
    );
    // Erasing again: nothing there.
    assert!(matches!(
        o.vault.erase_patient(&c, &victim).await,
        Err(VaultError::NotFound)
    ));
}

#[tokio::test]
async fn stale_updates_are_refused_and_versions_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let o = new_vault(&tmp.path().join("data")).await;
    let c = ctx(&o).await;
    let created = o
        .vault
        .create(&c, json!({"resourceType": "Patient", "name": [{"family": "Zwicklebaum", "given": ["Ottilie"]}], "birthDate": "1975-05-05"}))
        .await
        .unwrap();
    assert_eq!(created.version, Version(1));
    let mut v2 = created.resource.clone();
    v2["gender"] = json!("female");
    let updated = o
        .vault
        .update(&c, &created.id, v2, Some(Version(1)))
        .await
        .unwrap();
    assert_eq!(updated.version, Version(2));
    let mut stale = created.resource.clone();
    stale["gender"] = json!("male");
    match o
        .vault
        .update(&c, &created.id, stale, Some(Version(1)))
        .await
    {
        Err(VaultError::Conflict { current }) => assert_eq!(current, Some(Version(2))),
        other => panic!("stale update accepted: {other:?}"),
    }
    let now = o
        .vault
        .read(&c, ResourceType::PATIENT, &created.id)
        .await
        .unwrap();
    assert_eq!(now.version, Version(2));
    assert_eq!(now.resource["gender"], "female");
    // Every version stays readable; a delete is a tombstone.
    let v1 = o
        .vault
        .vread(&c, ResourceType::PATIENT, &created.id, Version(1))
        .await
        .unwrap();
    assert!(v1.resource.get("gender").is_none());
    assert!(matches!(
        o.vault
            .delete(&c, ResourceType::PATIENT, &created.id, Some(Version(1)))
            .await,
        Err(VaultError::Conflict { .. })
    ));
    assert_eq!(
        o.vault
            .delete(&c, ResourceType::PATIENT, &created.id, Some(Version(2)))
            .await
            .unwrap(),
        Version(3)
    );
    assert!(matches!(
        o.vault.read(&c, ResourceType::PATIENT, &created.id).await,
        Err(VaultError::Gone)
    ));
    // A clinical resource needs an existing patient.
    let orphan = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{}", created.id)}});
    assert!(matches!(
        o.vault.create(&c, orphan).await,
        Err(VaultError::Unprocessable(_))
    ));
    // A body whose id disagrees with the target is refused.
    let other = ResourceId::parse("someone-else").unwrap();
    assert!(matches!(
        o.vault
            .update(&c, &other, created.resource.clone(), None)
            .await,
        Err(VaultError::Invalid(_))
    ));
}

/// Threat: a resent message (an interface engine resends what it saw no ACK for) stores the
/// same data a second time. A transaction that would change nothing writes no version, and
/// is still audited.
#[tokio::test]
async fn a_transaction_that_changes_nothing_writes_no_version_and_is_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let o = new_vault(&tmp.path().join("data")).await;
    let c = ctx(&o).await;
    let id = "a7d0c1e2f3a4b5c6d7e8f9a0b1c2d3e4";
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Patient", "id": id, "name": [{"family": "Same"}]},
        "request": {"method": "PUT", "url": format!("Patient/{id}")}}]});
    for round in 0..2 {
        let (_, out) = o.vault.bundle(&c, tx.clone()).await.unwrap();
        assert_eq!(out[0].version, Some(Version(1)), "round {round}");
    }
    let rid = ResourceId::parse(id).unwrap();
    let history = o.vault.history(&c, ResourceType::PATIENT, &rid, 10).await;
    assert_eq!(history.unwrap().len(), 1);
    let filter = phivault_vault::audit::export::AuditFilter::default();
    let events = o.vault.audit_events(&c, &filter).await.unwrap();
    let tx_events: Vec<_> = events
        .iter()
        .filter(|e| e.action == "transaction")
        .collect();
    assert_eq!(tx_events.len(), 2, "{tx_events:?}");
    assert_eq!(tx_events[1].reason.as_deref(), Some("unchanged"));
    // A real change still makes a version.
    let mut changed = tx.clone();
    changed["entry"][0]["resource"]["name"][0]["family"] = json!("Other");
    let (_, out) = o.vault.bundle(&c, changed).await.unwrap();
    assert_eq!(out[0].version, Some(Version(2)));
}
