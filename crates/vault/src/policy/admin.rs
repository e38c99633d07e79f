//! Administration rules: who may list and change service clients, who may list grants, and
//! which roles a service client may hold. Deny by default, like the PHI table.
//!
//! | who | service clients (list, disable, enable, rotate-secret, revoke-tokens) | grants (list) |
//! |---|---|---|
//! | operator (command line) | the organization it chose (`--org`) | the organization it chose |
//! | SUPER_ADMIN (a person) | every organization | every organization |
//! | ORG_ADMIN (a person) | its own organization | its own organization |
//! | anyone else, and every service client | no | no |
//!
//! A service client never administers: user and client administration needs a person who
//! signed in with MFA, so no client holds SUPER_ADMIN or ORG_ADMIN ([`client_role_allowed`]).
use super::Subject;
use phivault_core::Role;

/// An administrative action of this table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminAction {
    ListClients,
    /// Disable, enable, rotate the secret, revoke the tokens.
    ChangeClient,
    ListGrants,
    /// Set or clear an organization's default purpose of use for a role.
    SetDefaultPurpose,
}

/// Where an allowed administrator may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminScope {
    /// Every organization.
    Everywhere,
    /// The caller's own organization only (for the operator, the one it chose).
    OwnOrganization,
}

/// The one decision for the actions above: where the caller may act, or `None` (denied).
pub fn admin_scope(subject: &Subject, action: AdminAction) -> Option<AdminScope> {
    // Today every action of the table has the same row per subject; a new action must be
    // placed here before it compiles.
    match action {
        AdminAction::ListClients
        | AdminAction::ChangeClient
        | AdminAction::ListGrants
        | AdminAction::SetDefaultPurpose => {}
    }
    match subject {
        Subject::Operator => Some(AdminScope::OwnOrganization),
        Subject::User(Role::SuperAdmin) => Some(AdminScope::Everywhere),
        Subject::User(Role::OrgAdmin) => Some(AdminScope::OwnOrganization),
        Subject::User(
            Role::IntegrationManager | Role::Viewer | Role::Auditor | Role::Clinician | Role::Nurse,
        )
        | Subject::Client { .. }
        | Subject::Nobody => None,
    }
}

/// Whether a service client may hold `role`. The roles that administer people (SUPER_ADMIN,
/// ORG_ADMIN) need a person with MFA: refused when a client is added, and a client that holds
/// one anyway (an old row) is refused at authentication.
pub fn client_role_allowed(role: Role) -> bool {
    match role {
        Role::SuperAdmin | Role::OrgAdmin => false,
        Role::IntegrationManager | Role::Viewer | Role::Auditor | Role::Clinician | Role::Nurse => {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIONS: [AdminAction; 4] = [
        AdminAction::ListClients,
        AdminAction::ChangeClient,
        AdminAction::ListGrants,
        AdminAction::SetDefaultPurpose,
    ];

    #[test]
    fn only_people_administer_and_only_super_admins_everywhere() {
        for action in ACTIONS {
            assert_eq!(
                admin_scope(&Subject::Operator, action),
                Some(AdminScope::OwnOrganization)
            );
            for role in Role::ALL {
                let person = admin_scope(&Subject::User(role), action);
                let expected = match role {
                    Role::SuperAdmin => Some(AdminScope::Everywhere),
                    Role::OrgAdmin => Some(AdminScope::OwnOrganization),
                    _ => None,
                };
                assert_eq!(person, expected, "{role} {action:?}");
                let client = Subject::Client {
                    role,
                    scopes: vec!["system/*.cruds".into()],
                    purposes: Vec::new(),
                };
                assert_eq!(admin_scope(&client, action), None, "client {role}");
            }
        }
    }

    #[test]
    fn no_client_holds_a_role_that_administers_people() {
        assert!(!client_role_allowed(Role::SuperAdmin));
        assert!(!client_role_allowed(Role::OrgAdmin));
        assert!(client_role_allowed(Role::IntegrationManager));
        assert!(client_role_allowed(Role::Auditor));
    }
}
