//! Authorization: one table, deny by default. Every PHI decision is made here, from the
//! principal (role, and scopes for service clients), the action, the resource type, the
//! purpose of use, and the caller's need-to-know grant for the patient. Adapters never decide.
//!
//! | role | PHI | how |
//! |---|---|---|
//! | SUPER_ADMIN | none | runs the system: organizations, keys, settings; every organization's clients and grants (see [`admin`]) |
//! | ORG_ADMIN | none | users, clients and grants of its organization (see [`admin`]) |
//! | INTEGRATION_MANAGER | as a service client, within its scopes | clients and interfaces; writes PHI through integrations |
//! | VIEWER | read and search Patient demographics only | no grant needed |
//! | AUDITOR | none | the audit trail and reports |
//! | NURSE | read, search, create, update | with an active grant (or break-glass) |
//! | CLINICIAN | read, search, create, update, delete | with an active grant (or break-glass) |
pub mod admin;
pub mod deid;
pub mod fields;
pub mod grants;

use phivault_core::Role;
use std::fmt;

/// HL7 v3 ActReason purpose-of-use codes. Unknown codes are refused, not mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    Treat,
    Etreat,
    Hpaymt,
    Hoperat,
    Pubhlth,
    Hresch,
    Patrqt,
    Famrqt,
    Pwatrny,
    Sysadmin,
    Hsysadmin,
    Coverage,
}

impl Purpose {
    pub const ALL: [Purpose; 12] = [
        Purpose::Treat,
        Purpose::Etreat,
        Purpose::Hpaymt,
        Purpose::Hoperat,
        Purpose::Pubhlth,
        Purpose::Hresch,
        Purpose::Patrqt,
        Purpose::Famrqt,
        Purpose::Pwatrny,
        Purpose::Sysadmin,
        Purpose::Hsysadmin,
        Purpose::Coverage,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Purpose::Treat => "TREAT",
            Purpose::Etreat => "ETREAT",
            Purpose::Hpaymt => "HPAYMT",
            Purpose::Hoperat => "HOPERAT",
            Purpose::Pubhlth => "PUBHLTH",
            Purpose::Hresch => "HRESCH",
            Purpose::Patrqt => "PATRQT",
            Purpose::Famrqt => "FAMRQT",
            Purpose::Pwatrny => "PWATRNY",
            Purpose::Sysadmin => "SYSADMIN",
            Purpose::Hsysadmin => "HSYSADMIN",
            Purpose::Coverage => "COVERAGE",
        }
    }

    pub fn parse(s: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == s.trim())
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call wants to do with PHI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Read,
    Search,
    Create,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Read,
        Action::Search,
        Action::Create,
        Action::Update,
        Action::Delete,
    ];

    /// The SMART scope letter.
    pub fn scope_letter(&self) -> char {
        match self {
            Action::Create => 'c',
            Action::Read => 'r',
            Action::Update => 'u',
            Action::Delete => 'd',
            Action::Search => 's',
        }
    }
}

/// The caller's need-to-know standing for the patient concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantState {
    None,
    /// An active grant for this purpose.
    Active,
    /// An active break-glass access (purpose ETREAT, 15 minutes, flagged).
    BreakGlass,
    Expired,
    /// The patient belongs to another organization. Never allowed, whoever asks; the vault
    /// answers these as "not found" before the policy is even asked (tenancy is part of every
    /// query), and the table records the rule anyway.
    OtherOrganization,
}

/// Who is asking, for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// No one authenticated (login steps): nothing.
    Nobody,
    /// The local operator (command line, holding the passphrase): everything, audited.
    Operator,
    /// A person.
    User(Role),
    /// A service client: its role, the token's scopes and the purposes set on the client.
    Client {
        role: Role,
        scopes: Vec<String>,
        purposes: Vec<Purpose>,
    },
}

/// Which Patient elements are released.
pub use fields::Release;

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        release: Release,
        break_glass: bool,
    },
    /// Denied, with a reason code for the audit trail.
    Deny(&'static str),
}

/// Who may change the patient a clinical record belongs to (a misfiled result corrected, an
/// HL7 merge): the operator and integrations, which act for the whole organization anyway.
/// Never a person: a grant on one patient would otherwise reach another patient's record and
/// its history.
pub fn may_change_patient(subject: &Subject) -> bool {
    match subject {
        Subject::Operator => true,
        Subject::Client { role, .. } => *role == Role::IntegrationManager,
        Subject::User(_) | Subject::Nobody => false,
    }
}

/// Whether the subject's access to PHI goes patient by patient (grants): then even whether a
/// patient exists is not for it to learn from a reference it could not follow.
pub fn access_is_per_patient(subject: &Subject) -> bool {
    matches!(subject, Subject::User(_))
}

fn user_allows(role: Role, action: Action, patient: bool) -> bool {
    match role {
        Role::Viewer => patient && matches!(action, Action::Read | Action::Search),
        Role::Nurse => !matches!(action, Action::Delete),
        Role::Clinician => true,
        Role::SuperAdmin | Role::OrgAdmin | Role::IntegrationManager | Role::Auditor => false,
    }
}

/// Purposes a person may read or write PHI for (directly; research and public health go
/// through de-identified exports).
pub(crate) fn user_purpose_ok(role: Role, purpose: Purpose) -> bool {
    match role {
        Role::Viewer => matches!(purpose, Purpose::Treat | Purpose::Hoperat | Purpose::Hpaymt),
        Role::Nurse | Role::Clinician => {
            matches!(
                purpose,
                Purpose::Treat | Purpose::Etreat | Purpose::Hoperat | Purpose::Hpaymt
            )
        }
        Role::SuperAdmin | Role::OrgAdmin | Role::IntegrationManager | Role::Auditor => false,
    }
}

/// The one decision function. `resource` is the FHIR resource type; `grant` the caller's
/// standing for the patient (ignored where no grant is needed).
pub fn decide(
    subject: &Subject,
    action: Action,
    resource: &str,
    purpose: Option<Purpose>,
    grant: GrantState,
) -> Decision {
    decide_with(
        fields::FieldPolicy::builtin(),
        subject,
        action,
        resource,
        purpose,
        grant,
    )
}

/// [`decide`] with a field table from a policy file.
pub fn decide_with(
    policy: &fields::FieldPolicy,
    subject: &Subject,
    action: Action,
    resource: &str,
    purpose: Option<Purpose>,
    grant: GrantState,
) -> Decision {
    let patient = resource == "Patient";
    if grant == GrantState::OtherOrganization {
        return Decision::Deny("other-organization");
    }
    if *subject == Subject::Nobody {
        return Decision::Deny("unauthenticated");
    }
    let Some(purpose) = purpose else {
        return match subject {
            Subject::Operator => Decision::Allow {
                release: Release::All,
                break_glass: false,
            },
            _ => Decision::Deny("no-purpose"),
        };
    };
    match subject {
        Subject::Nobody => Decision::Deny("unauthenticated"),
        Subject::Operator => Decision::Allow {
            release: Release::All,
            break_glass: false,
        },
        Subject::User(role) => decide_user(policy, *role, action, patient, purpose, grant),
        Subject::Client {
            role,
            scopes,
            purposes,
        } => decide_client(policy, *role, scopes, purposes, action, resource, purpose),
    }
}

/// A signed-in user's decision: the role table, the purposes the role may claim, then the
/// standing for the patient (VIEWERs and new registrations need no grant).
fn decide_user(
    policy: &fields::FieldPolicy,
    role: Role,
    action: Action,
    patient: bool,
    purpose: Purpose,
    grant: GrantState,
) -> Decision {
    if !user_allows(role, action, patient) {
        return Decision::Deny("role");
    }
    if !user_purpose_ok(role, purpose) {
        return Decision::Deny("purpose");
    }
    let release = policy.release_for(role, purpose);
    if role == Role::Viewer {
        // Demographics only, no grant needed.
        return Decision::Allow {
            release,
            break_glass: false,
        };
    }
    if action == Action::Create && patient && purpose != Purpose::Etreat {
        // Registering a new patient: there is no one to hold a grant for yet.
        return Decision::Allow {
            release,
            break_glass: false,
        };
    }
    match (grant, purpose) {
        (GrantState::BreakGlass, Purpose::Etreat) => Decision::Allow {
            release,
            break_glass: true,
        },
        (GrantState::Active, p) if p != Purpose::Etreat => Decision::Allow {
            release,
            break_glass: false,
        },
        (GrantState::Expired, _) => Decision::Deny("grant-expired"),
        (GrantState::OtherOrganization, _) => Decision::Deny("other-organization"),
        (_, Purpose::Etreat) => Decision::Deny("no-break-glass"),
        _ => Decision::Deny("no-grant"),
    }
}

/// An OAuth client's decision: its purposes and scopes, then its role (integrations act for
/// their organization without per-patient grants).
fn decide_client(
    policy: &fields::FieldPolicy,
    role: Role,
    scopes: &[String],
    purposes: &[Purpose],
    action: Action,
    resource: &str,
    purpose: Purpose,
) -> Decision {
    let patient = resource == "Patient";
    if !purposes.contains(&purpose) {
        return Decision::Deny("purpose");
    }
    if !crate::auth::scopes_allow(scopes, resource, action.scope_letter()) {
        return Decision::Deny("scope");
    }
    match role {
        // Integrations act for their organization without per-patient grants.
        Role::IntegrationManager => Decision::Allow {
            release: policy.release_for(Role::IntegrationManager, purpose),
            break_glass: false,
        },
        Role::Viewer if patient && matches!(action, Action::Read | Action::Search) => {
            Decision::Allow {
                release: policy.release_for(Role::Viewer, purpose),
                break_glass: false,
            }
        }
        Role::Viewer
        | Role::Auditor
        | Role::SuperAdmin
        | Role::OrgAdmin
        | Role::Nurse
        | Role::Clinician => Decision::Deny("role"),
    }
}
