//! Authorization end to end on real stores with a fake clock: need-to-know grants that expire
//! on the second, minimum-necessary fields, purpose of use, break-glass, lockdown, search that
//! never leaks, organizations that never see each other — every denial audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::*;
use phivault::datadir::Opened;
use phivault_core::{Clock, FakeClock, OrgId, Organization, ResourceId, ResourceType, Role};
use phivault_vault::audit::Outcome;
use phivault_vault::audit::export::AuditFilter;
use phivault_vault::policy::{Purpose, Subject};
use phivault_vault::{Actor, Ctx, PatientQuery, VaultError};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

async fn person(o: &Opened, org: &OrgId, name: &str, role: Role, purpose: Option<&str>) -> Ctx {
    let admin = o.operator.ctx(org.clone());
    let n = o
        .vault
        .add_user(&admin, org, name, role, false)
        .await
        .unwrap();
    let actor = Actor::User {
        id: n.user.id.clone(),
        username: name.into(),
    };
    let mut c = o.operator.ctx_as(org.clone(), actor, Subject::User(role));
    c.purpose = purpose.map(str::to_owned);
    c
}

fn pid(file: &str) -> ResourceId {
    let r = resources_in(&repo_root().join("testdata/fhir").join(file))
        .into_iter()
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    ResourceId::parse(r["id"].as_str().unwrap()).unwrap()
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, VaultError>) {
    assert!(matches!(r, Err(VaultError::Forbidden)), "{r:?}");
}

/// Threat: access without need to know, beyond minimum necessary, after a grant expired, or
/// across organizations (HIPAA §164.312(a)(1), (a)(2)(ii), §164.502(b); OWASP API1:2023).
#[tokio::test]
async fn grants_fields_purposes_break_glass_lockdown_and_tenancy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_vault(&dir).await;
    let clock = Arc::new(FakeClock::new(
        OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
    ));
    let o = open_with_clock(&dir, clock.clone()).await;
    import_files(&o, &repo_fixtures(), true).await;
    let v = &o.vault;
    let org = OrgId::parse("default").unwrap();
    let operator = o.operator.ctx(org.clone());
    let maribel = pid("01-synthea-style-transaction.json");
    let rosalind = pid("03-single-patient.json");

    let nurse = person(&o, &org, "nurse.n", Role::Nurse, Some("TREAT")).await;
    let doc = person(&o, &org, "doctor.d", Role::Clinician, Some("TREAT")).await;
    let viewer = person(&o, &org, "viewer.v", Role::Viewer, Some("TREAT")).await;
    let auditor = person(&o, &org, "auditor.a", Role::Auditor, Some("TREAT")).await;
    let orgadmin = person(&o, &org, "orgadmin.o", Role::OrgAdmin, Some("TREAT")).await;
    let superadmin = person(&o, &org, "super.s", Role::SuperAdmin, Some("TREAT")).await;

    // Without a grant: nothing for nurse and clinician.
    forbidden(v.read(&nurse, ResourceType::PATIENT, &maribel).await);
    forbidden(v.patient_records(&doc, &maribel).await);
    // Administrators and auditors never see PHI; no purpose, no PHI; unknown purposes refused.
    forbidden(v.read(&auditor, ResourceType::PATIENT, &maribel).await);
    forbidden(v.read(&superadmin, ResourceType::PATIENT, &maribel).await);
    forbidden(v.read(&orgadmin, ResourceType::PATIENT, &maribel).await);
    let mut no_purpose = doc.clone();
    no_purpose.purpose = None;
    forbidden(v.read(&no_purpose, ResourceType::PATIENT, &maribel).await);
    let mut bogus = doc.clone();
    bogus.purpose = Some("FUN".into());
    forbidden(v.read(&bogus, ResourceType::PATIENT, &maribel).await);

    // A viewer sees demographics only, marked REDACTED, with an age range instead of a date.
    let seen = v
        .read(&viewer, ResourceType::PATIENT, &maribel)
        .await
        .unwrap();
    let keys: Vec<&String> = seen.resource.as_object().unwrap().keys().collect();
    for gone in ["identifier", "telecom", "address", "birthDate"] {
        assert!(
            seen.resource.get(gone).is_none(),
            "{gone} released to a viewer"
        );
    }
    assert!(
        seen.resource.get("name").is_some() && seen.resource.get("gender").is_some(),
        "{keys:?}"
    );
    assert_eq!(seen.resource["meta"]["security"][0]["code"], "REDACTED");
    assert_eq!(seen.resource["extension"][0]["valueString"], "60-69");
    forbidden(v.patient_records(&viewer, &maribel).await);

    // The org admin grants the nurse an hour for TREAT.
    forbidden(
        v.grant_access(&nurse, "nurse.n", &maribel, Purpose::Treat, None)
            .await,
    );
    v.grant_access(&orgadmin, "nurse.n", &maribel, Purpose::Treat, None)
        .await
        .unwrap();
    let n = v
        .read(&nurse, ResourceType::PATIENT, &maribel)
        .await
        .unwrap();
    assert!(n.resource.get("birthDate").is_some() && n.resource.get("address").is_some());
    assert!(n.resource.get("identifier").is_none() && n.resource.get("telecom").is_none());
    assert_eq!(v.patient_records(&nurse, &maribel).await.unwrap().len(), 9);
    // The grant is for this patient only, and for TREAT only.
    forbidden(v.read(&nurse, ResourceType::PATIENT, &rosalind).await);
    let mut billing = nurse.clone();
    billing.purpose = Some("HPAYMT".into());
    forbidden(v.read(&billing, ResourceType::PATIENT, &maribel).await);
    // Research goes through de-identified exports, never direct reads.
    let mut research = nurse.clone();
    research.purpose = Some("HRESCH".into());
    forbidden(v.read(&research, ResourceType::PATIENT, &maribel).await);
    // It expires on the second.
    clock.advance(Duration::seconds(3599));
    v.read(&nurse, ResourceType::PATIENT, &maribel)
        .await
        .unwrap();
    clock.advance(Duration::seconds(1));
    forbidden(v.read(&nurse, ResourceType::PATIENT, &maribel).await);
    // Renewals extend it, but never past 8 hours from the first grant.
    v.grant_access(&orgadmin, "nurse.n", &maribel, Purpose::Treat, None)
        .await
        .unwrap();
    let start = clock.now_secs();
    for _ in 0..9 {
        clock.advance(Duration::minutes(50));
        v.grant_access(&orgadmin, "nurse.n", &maribel, Purpose::Treat, None)
            .await
            .unwrap();
    }
    let g = v
        .grant_access(&orgadmin, "nurse.n", &maribel, Purpose::Treat, None)
        .await
        .unwrap();
    assert_eq!(g.expires_at, start + 8 * 3600);
    assert!(matches!(
        v.grant_access(&orgadmin, "nurse.n", &maribel, Purpose::Treat, Some(7200))
            .await,
        Err(VaultError::Invalid(_))
    ));

    // Search never leaks: the clinician with one grant finds only that patient, though two
    // share the family name and birth date.
    let q = PatientQuery {
        family: Some("Quintanilla-Oyelaran".into()),
        birthdate: Some("1961-03-14".into()),
        ..Default::default()
    };
    assert!(v.search_patients(&doc, &q).await.unwrap().is_empty());
    v.grant_access(&orgadmin, "doctor.d", &rosalind, Purpose::Treat, None)
        .await
        .unwrap();
    let found = v.search_patients(&doc, &q).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, rosalind);
    assert!(
        found[0].resource.get("identifier").is_some(),
        "a clinician sees identifiers"
    );
    assert_eq!(v.search_patients(&viewer, &q).await.unwrap().len(), 2);
    forbidden(v.search_patients(&auditor, &q).await);
    let events = v
        .audit_events(&operator, &AuditFilter::default())
        .await
        .unwrap();
    let doc_search = events
        .iter()
        .rev()
        .find(|e| e.actor == "user:doctor.d" && e.action == "search")
        .unwrap();
    assert_eq!(
        doc_search.count,
        Some(1),
        "the count does not reveal the other patient"
    );

    // Break-glass: ETREAT without a grant is refused until the clinician breaks the glass
    // with a written reason; it lasts 15 minutes and is flagged.
    let mut emergency = doc.clone();
    emergency.purpose = Some("ETREAT".into());
    forbidden(v.read(&emergency, ResourceType::PATIENT, &maribel).await);
    assert!(matches!(
        v.break_glass(&emergency, &maribel, "short").await,
        Err(VaultError::Invalid(_))
    ));
    forbidden(
        v.break_glass(&nurse, &maribel, "patient unconscious in the ED")
            .await,
    );
    v.break_glass(
        &emergency,
        &maribel,
        "patient unconscious in the ED, no grant on call",
    )
    .await
    .unwrap();
    let r = v
        .read(&emergency, ResourceType::PATIENT, &maribel)
        .await
        .unwrap();
    assert!(r.resource.get("identifier").is_some());
    clock.advance(Duration::minutes(15));
    forbidden(v.read(&emergency, ResourceType::PATIENT, &maribel).await);

    // Lockdown cuts every grant at once.
    v.grant_access(&orgadmin, "nurse.n", &rosalind, Purpose::Treat, None)
        .await
        .unwrap();
    v.read(&nurse, ResourceType::PATIENT, &rosalind)
        .await
        .unwrap();
    v.read(&doc, ResourceType::PATIENT, &rosalind)
        .await
        .unwrap();
    forbidden(v.lockdown(&nurse).await);
    assert!(v.lockdown(&orgadmin).await.unwrap() >= 2);
    forbidden(v.read(&nurse, ResourceType::PATIENT, &rosalind).await);
    forbidden(v.read(&doc, ResourceType::PATIENT, &rosalind).await);

    // Writes follow the same rules: a nurse may not delete; no grant, no change.
    v.grant_access(&orgadmin, "nurse.n", &rosalind, Purpose::Treat, None)
        .await
        .unwrap();
    let obs = serde_json::json!({"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
        "subject": {"reference": format!("Patient/{rosalind}")}});
    let created = v.create(&nurse, obs.clone()).await.unwrap();
    forbidden(v.delete(&nurse, created.rtype, &created.id, None).await);
    forbidden(v.create(&doc, obs.clone()).await);
    forbidden(v.create(&viewer, obs).await);
    // Bulk operations are the operator's.
    forbidden(v.erase_patient(&orgadmin, &rosalind).await);
    forbidden(
        v.page(&doc, phivault_core::StoreKind::Identity, None, 10)
            .await,
    );

    // Another organization sees nothing of this one, whatever its role.
    let other = OrgId::parse("other").unwrap();
    o.stores
        .control
        .create_organization(&Organization {
            id: other.clone(),
            name: "Other".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    let outsider = person(&o, &other, "outsider.doc", Role::Clinician, Some("TREAT")).await;
    let outsider_admin = person(
        &o,
        &other,
        "outsider.super",
        Role::SuperAdmin,
        Some("TREAT"),
    )
    .await;
    let outsider_viewer = person(&o, &other, "outsider.viewer", Role::Viewer, Some("TREAT")).await;
    for c in [&outsider, &outsider_admin, &outsider_viewer] {
        let r = v.read(c, ResourceType::PATIENT, &maribel).await;
        assert!(
            matches!(r, Err(VaultError::NotFound) | Err(VaultError::Forbidden)),
            "{r:?}"
        );
        let q = PatientQuery {
            identifier: Some("MRN-7730152".into()),
            ..Default::default()
        };
        match v.search_patients(c, &q).await {
            Ok(found) => assert!(found.is_empty()),
            Err(e) => assert!(matches!(e, VaultError::Forbidden), "{e}"),
        }
    }
    let other_admin = person(&o, &other, "outsider.admin", Role::OrgAdmin, Some("TREAT")).await;
    assert!(
        v.grant_access(&other_admin, "outsider.doc", &maribel, Purpose::Treat, None)
            .await
            .is_err()
    );
    assert!(
        v.grant_access(&other_admin, "nurse.n", &maribel, Purpose::Treat, None)
            .await
            .is_err()
    );

    // Every denial is in the audit trail with its reason; break-glass is flagged and reported.
    let events = v
        .audit_events(&operator, &AuditFilter::default())
        .await
        .unwrap();
    let denied: Vec<_> = events
        .iter()
        .filter(|e| e.outcome == Outcome::Denied)
        .collect();
    assert!(denied.len() >= 15, "{}", denied.len());
    for reason in [
        "no-grant",
        "role",
        "no-purpose",
        "purpose-unknown",
        "purpose",
        "grant-expired",
        "no-break-glass",
        "operator-only",
    ] {
        assert!(
            denied.iter().any(|e| e.reason.as_deref() == Some(reason)),
            "no denial with reason {reason}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e.action == "break-glass" && e.break_glass)
    );
    assert!(
        events
            .iter()
            .any(|e| e.action == "read" && e.break_glass && e.outcome == Outcome::Success)
    );
    let report = phivault_vault::audit::report::build("", &events);
    assert!(report.break_glass.len() >= 2);
    assert!(report.denials.len() >= 15);
    // The reason text is sealed, never in the trail.
    for e in &events {
        assert!(!serde_json::to_string(e).unwrap().contains("unconscious"));
    }
    o.close().await;
}

#[tokio::test]
async fn a_policy_file_decides_which_fields_are_released() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    import_files(&o, &repo_fixtures(), true).await;
    let org = OrgId::parse("default").unwrap();
    let viewer = person(&o, &org, "viewer.p", Role::Viewer, Some("TREAT")).await;
    let maribel = pid("01-synthea-style-transaction.json");
    let default = o
        .vault
        .read(&viewer, ResourceType::PATIENT, &maribel)
        .await
        .unwrap();
    assert!(default.resource.get("name").is_some());
    let policy = phivault_vault::policy::fields::FieldPolicy::from_toml(
        "[fields.VIEWER]\ndefault = [\"gender\"]\n",
    )
    .unwrap();
    let strict = o.vault.clone().with_field_policy(policy);
    let r = strict
        .read(&viewer, ResourceType::PATIENT, &maribel)
        .await
        .unwrap();
    assert!(
        r.resource.get("name").is_none(),
        "the file removed names for viewers"
    );
    assert_eq!(r.resource["gender"], "female");
    // The released fields are what the audit event lists.
    let events = o
        .vault
        .audit_events(&o.operator.ctx(org.clone()), &AuditFilter::default())
        .await
        .unwrap();
    let last = events.iter().rev().find(|e| e.action == "read").unwrap();
    assert!(
        last.fields.contains(&"gender".to_owned()) && !last.fields.contains(&"name".to_owned()),
        "{:?}",
        last.fields
    );
    o.close().await;
}

#[tokio::test]
async fn an_integration_grants_the_attending_clinician_only_where_the_rule_is_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    import_files(&o, &repo_fixtures(), true).await;
    let org = OrgId::parse("default").unwrap();
    let operator = o.operator.ctx(org.clone());
    let doc = person(&o, &org, "attending.a", Role::Clinician, Some("TREAT")).await;
    let orgadmin = person(&o, &org, "orgadmin.r", Role::OrgAdmin, Some("TREAT")).await;
    let feed_actor = Actor::Client {
        id: "pvc-adt".into(),
        name: "adt-feed".into(),
    };
    let mut feed = o.operator.ctx_as(
        org.clone(),
        feed_actor,
        Subject::Client {
            role: Role::IntegrationManager,
            scopes: vec!["system/*.cruds".into()],
            purposes: vec![Purpose::Treat],
        },
    );
    feed.purpose = Some("TREAT".into());
    let maribel = pid("01-synthea-style-transaction.json");
    forbidden(
        o.vault
            .care_team_grant(&feed, "attending.a", &maribel, Purpose::Treat)
            .await,
    );
    forbidden(o.vault.set_care_team_rule(&doc, true).await);
    o.vault.set_care_team_rule(&orgadmin, true).await.unwrap();
    forbidden(
        o.vault
            .care_team_grant(&doc, "attending.a", &maribel, Purpose::Treat)
            .await,
    );
    forbidden(o.vault.read(&doc, ResourceType::PATIENT, &maribel).await);
    o.vault
        .care_team_grant(&feed, "attending.a", &maribel, Purpose::Treat)
        .await
        .unwrap();
    o.vault
        .read(&doc, ResourceType::PATIENT, &maribel)
        .await
        .unwrap();
    o.vault.set_care_team_rule(&orgadmin, false).await.unwrap();
    forbidden(
        o.vault
            .care_team_grant(&feed, "attending.a", &maribel, Purpose::Treat)
            .await,
    );
    let events = o
        .vault
        .audit_events(&operator, &AuditFilter::default())
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("care-team-rule") && e.outcome == Outcome::Denied)
    );
    o.close().await;
}
