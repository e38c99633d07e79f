//! The authorization table, cell by cell: every subject × action × resource × purpose ×
//! grant state, with the decision and the exact Patient fields released. The expected table is
//! `tests/policy_matrix.txt`; any changed cell fails this test (regenerate deliberately with
//! `UPDATE_POLICY_MATRIX=1 cargo test -p phivault-vault --test policy_matrix`, then review the
//! diff). Independent invariants are asserted on top.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use phivault_core::Role;
use phivault_vault::policy::{Action, Decision, GrantState, Purpose, Release, Subject, decide};

fn subjects() -> Vec<(String, Subject)> {
    let mut v: Vec<(String, Subject)> = Role::ALL
        .iter()
        .map(|r| (format!("user:{}", r.as_str()), Subject::User(*r)))
        .collect();
    v.push(("operator".into(), Subject::Operator));
    v.push((
        "client:INTEGRATION_MANAGER[system/*.cruds;TREAT,HOPERAT]".into(),
        Subject::Client {
            role: Role::IntegrationManager,
            scopes: vec!["system/*.cruds".into()],
            purposes: vec![Purpose::Treat, Purpose::Hoperat],
        },
    ));
    v.push((
        "client:INTEGRATION_MANAGER[system/Observation.crs;TREAT]".into(),
        Subject::Client {
            role: Role::IntegrationManager,
            scopes: vec!["system/Observation.crs".into()],
            purposes: vec![Purpose::Treat],
        },
    ));
    v.push((
        "client:VIEWER[system/Patient.rs;TREAT]".into(),
        Subject::Client {
            role: Role::Viewer,
            scopes: vec!["system/Patient.rs".into()],
            purposes: vec![Purpose::Treat],
        },
    ));
    v.push((
        "client:AUDITOR[system/*.rs;TREAT]".into(),
        Subject::Client {
            role: Role::Auditor,
            scopes: vec!["system/*.rs".into()],
            purposes: vec![Purpose::Treat],
        },
    ));
    v
}

const GRANTS: [GrantState; 5] = [
    GrantState::None,
    GrantState::Active,
    GrantState::BreakGlass,
    GrantState::Expired,
    GrantState::OtherOrganization,
];

fn cell(d: &Decision) -> String {
    match d {
        Decision::Deny(r) => format!("deny({r})"),
        Decision::Allow {
            release,
            break_glass,
        } => {
            let f = match release {
                Release::All => "all".to_owned(),
                Release::Only(x) => x.join("+"),
            };
            format!(
                "allow[{f}]{}",
                if *break_glass { " break-glass" } else { "" }
            )
        }
    }
}

/// One cell: subject name, action, resource, purpose, grant state, decision.
type Cell = (
    String,
    Action,
    &'static str,
    Option<Purpose>,
    GrantState,
    Decision,
);

fn matrix() -> (String, Vec<Cell>) {
    let mut text = String::new();
    let mut cells = Vec::new();
    for (name, subject) in subjects() {
        for action in Action::ALL {
            for resource in ["Patient", "Observation"] {
                let purposes: Vec<Option<Purpose>> = std::iter::once(None)
                    .chain(Purpose::ALL.map(Some))
                    .collect();
                for purpose in purposes {
                    for grant in GRANTS {
                        let d = decide(&subject, action, resource, purpose, grant);
                        text.push_str(&format!(
                            "{name} {action:?} {resource} {} {grant:?} => {}\n",
                            purpose.map_or("-", |p| p.as_str()),
                            cell(&d)
                        ));
                        cells.push((name.clone(), action, resource, purpose, grant, d));
                    }
                }
            }
        }
    }
    (text, cells)
}

#[test]
fn every_cell_of_the_table_is_as_recorded() {
    let (text, _) = matrix();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy_matrix.txt");
    if std::env::var_os("UPDATE_POLICY_MATRIX").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    let changed: Vec<(&str, &str)> = expected
        .lines()
        .zip(text.lines())
        .filter(|(a, b)| a != b)
        .take(20)
        .collect();
    assert!(
        changed.is_empty() && expected.lines().count() == text.lines().count(),
        "policy cells changed (expected vs now): {changed:#?}"
    );
}

#[test]
fn invariants_hold_in_every_cell() {
    let (_, cells) = matrix();
    assert!(cells.len() > 4000);
    for (name, action, resource, purpose, grant, d) in &cells {
        let allowed = matches!(d, Decision::Allow { .. });
        let ctx = format!("{name} {action:?} {resource} {purpose:?} {grant:?}");
        // Deny by default: no purpose, no PHI.
        if purpose.is_none() && name != "operator" {
            assert!(!allowed, "{ctx}");
        }
        // Nothing crosses organizations, whoever asks (the operator included).
        if *grant == GrantState::OtherOrganization {
            assert!(!allowed, "{ctx}");
        }
        // Administrators and auditors never see PHI.
        for r in ["SUPER_ADMIN", "ORG_ADMIN", "AUDITOR"] {
            if name.contains(r) {
                assert!(!allowed, "{ctx}");
            }
        }
        if name == "user:INTEGRATION_MANAGER" {
            assert!(!allowed, "{ctx}");
        }
        // Research and public health never read PHI directly (de-identified exports do).
        if matches!(purpose, Some(Purpose::Hresch | Purpose::Pubhlth)) && name != "operator" {
            assert!(!allowed, "{ctx}");
        }
        // People with clinical roles need a live grant, or break-glass for ETREAT only.
        if name == "user:NURSE" || name == "user:CLINICIAN" {
            // Registering a new patient needs no grant (there is no one to hold it for yet).
            let registering = *action == Action::Create && *resource == "Patient";
            if allowed && !registering {
                let bg = matches!(
                    d,
                    Decision::Allow {
                        break_glass: true,
                        ..
                    }
                );
                assert!(
                    (*grant == GrantState::Active && *purpose != Some(Purpose::Etreat) && !bg)
                        || (*grant == GrantState::BreakGlass
                            && *purpose == Some(Purpose::Etreat)
                            && bg),
                    "{ctx}"
                );
            }
            if (*grant == GrantState::Expired || *grant == GrantState::None) && !registering {
                assert!(!allowed, "{ctx}");
            }
        }
        if name == "user:NURSE" && *action == Action::Delete {
            assert!(!allowed, "{ctx}");
        }
        // Viewers: Patient demographics, read and search, nothing else.
        if name.contains("VIEWER") && allowed {
            assert_eq!(*resource, "Patient", "{ctx}");
            assert!(matches!(action, Action::Read | Action::Search), "{ctx}");
            match d {
                Decision::Allow {
                    release: Release::Only(f),
                    ..
                } => {
                    assert!(
                        !f.iter().any(|e| e == "birthDate")
                            && !f.iter().any(|e| e == "identifier")
                            && !f.iter().any(|e| e == "telecom")
                            && !f.iter().any(|e| e == "address"),
                        "{ctx}"
                    );
                }
                other => panic!("{ctx}: {other:?}"),
            }
        }
        // Nurses never see identifiers or telecom.
        if name == "user:NURSE"
            && let Decision::Allow { release, .. } = d
        {
            match release {
                Release::Only(f) => assert!(
                    !f.iter().any(|e| e == "identifier") && !f.iter().any(|e| e == "telecom"),
                    "{ctx}"
                ),
                Release::All => panic!("{ctx}: a nurse gets everything"),
            }
        }
        // Service clients stay within their scopes and purposes.
        if name.starts_with("client:INTEGRATION_MANAGER[system/Observation") && allowed {
            assert_eq!(*resource, "Observation", "{ctx}");
            assert_ne!(*action, Action::Delete, "{ctx}");
            assert_eq!(*purpose, Some(Purpose::Treat), "{ctx}");
        }
    }
}
