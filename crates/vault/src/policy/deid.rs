//! Who may take a de-identified export, and for what. Deny by default.
//!
//! | subject | allowed |
//! |---|---|
//! | the operator (command line) | always (it holds the passphrase; audited) |
//! | ORG_ADMIN (a person) | for purpose HRESCH or PUBHLTH |
//! | INTEGRATION_MANAGER client | for HRESCH or PUBHLTH, if the client acts for that purpose and its scopes read every type exported |
//! | every other role | never |
//!
//! Research and public health are the purposes a de-identified data set serves; treatment,
//! payment and operations read identified records through the FHIR API instead.
use super::{Purpose, Subject};
use phivault_core::Role;

fn research_or_public_health(p: Purpose) -> bool {
    match p {
        Purpose::Hresch | Purpose::Pubhlth => true,
        Purpose::Treat
        | Purpose::Etreat
        | Purpose::Hpaymt
        | Purpose::Hoperat
        | Purpose::Patrqt
        | Purpose::Famrqt
        | Purpose::Pwatrny
        | Purpose::Sysadmin
        | Purpose::Hsysadmin
        | Purpose::Coverage => false,
    }
}

/// The one role that may export: ORG_ADMIN for a person, INTEGRATION_MANAGER for a client.
fn role_may(role: Role, client: bool) -> bool {
    match role {
        Role::OrgAdmin => !client,
        Role::IntegrationManager => client,
        Role::SuperAdmin | Role::Viewer | Role::Auditor | Role::Clinician | Role::Nurse => false,
    }
}

/// The decision for an export of `types` for the purpose of use `purpose` (the request's
/// code, if any): allowed, or the denial's reason code for the audit trail.
pub fn decide(
    subject: &Subject,
    purpose: Option<&str>,
    types: &[&str],
) -> Result<(), &'static str> {
    if matches!(subject, Subject::Operator) {
        return Ok(());
    }
    let purpose = match purpose {
        None => return Err("no-purpose"),
        Some(p) => Purpose::parse(p).ok_or("purpose-unknown")?,
    };
    match subject {
        Subject::Nobody => Err("unauthenticated"),
        Subject::Operator => Ok(()),
        Subject::User(role) => {
            if !role_may(*role, false) {
                Err("role")
            } else if !research_or_public_health(purpose) {
                Err("purpose")
            } else {
                Ok(())
            }
        }
        Subject::Client {
            role,
            scopes,
            purposes,
        } => {
            if !role_may(*role, true) {
                Err("role")
            } else if !research_or_public_health(purpose) || !purposes.contains(&purpose) {
                Err("purpose")
            } else if !types
                .iter()
                .all(|t| crate::auth::scopes_allow(scopes, t, 'r'))
            {
                Err("scope")
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(role: Role, scopes: &[&str], purposes: &[Purpose]) -> Subject {
        Subject::Client {
            role,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            purposes: purposes.to_vec(),
        }
    }

    #[test]
    fn only_org_admins_for_research_or_public_health_among_people() {
        for role in Role::ALL {
            for p in Purpose::ALL {
                let got = decide(&Subject::User(role), Some(p.as_str()), &["Patient"]);
                let expected =
                    role == Role::OrgAdmin && matches!(p, Purpose::Hresch | Purpose::Pubhlth);
                assert_eq!(got.is_ok(), expected, "{role:?} {p:?}: {got:?}");
            }
            assert_eq!(
                decide(&Subject::User(role), None, &["Patient"]),
                Err("no-purpose")
            );
            assert_eq!(
                decide(&Subject::User(role), Some("RESEARCH"), &["Patient"]),
                Err("purpose-unknown")
            );
        }
    }

    #[test]
    fn integration_clients_need_the_purpose_and_read_scopes_for_every_type() {
        let all = ["system/*.rs"];
        let ok = client(Role::IntegrationManager, &all, &[Purpose::Hresch]);
        assert_eq!(
            decide(&ok, Some("HRESCH"), &["Patient", "Observation"]),
            Ok(())
        );
        assert_eq!(decide(&ok, Some("PUBHLTH"), &["Patient"]), Err("purpose"));
        assert_eq!(decide(&ok, Some("TREAT"), &["Patient"]), Err("purpose"));
        let treat = client(Role::IntegrationManager, &all, &[Purpose::Treat]);
        assert_eq!(decide(&treat, Some("TREAT"), &["Patient"]), Err("purpose"));
        let narrow = client(
            Role::IntegrationManager,
            &["system/Patient.rs"],
            &[Purpose::Pubhlth],
        );
        assert_eq!(decide(&narrow, Some("PUBHLTH"), &["Patient"]), Ok(()));
        assert_eq!(
            decide(&narrow, Some("PUBHLTH"), &["Patient", "Observation"]),
            Err("scope")
        );
        for role in Role::ALL
            .into_iter()
            .filter(|r| *r != Role::IntegrationManager)
        {
            let c = client(role, &all, &[Purpose::Hresch]);
            assert_eq!(
                decide(&c, Some("HRESCH"), &["Patient"]),
                Err("role"),
                "{role:?}"
            );
        }
    }

    #[test]
    fn the_operator_may_always() {
        assert_eq!(decide(&Subject::Operator, None, &["Patient"]), Ok(()));
    }
}
