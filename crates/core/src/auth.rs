//! Identities and roles. Secrets (password hashes, TOTP seeds, token hashes) are carried as
//! opaque strings/bytes that only the vault interprets; none of them is ever logged.
use crate::ids::OrgId;
use std::fmt;

/// The roles of the permission table (see the README). Deny by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    SuperAdmin,
    OrgAdmin,
    IntegrationManager,
    Viewer,
    Auditor,
    Clinician,
    Nurse,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::SuperAdmin,
        Role::OrgAdmin,
        Role::IntegrationManager,
        Role::Viewer,
        Role::Auditor,
        Role::Clinician,
        Role::Nurse,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::SuperAdmin => "SUPER_ADMIN",
            Role::OrgAdmin => "ORG_ADMIN",
            Role::IntegrationManager => "INTEGRATION_MANAGER",
            Role::Viewer => "VIEWER",
            Role::Auditor => "AUDITOR",
            Role::Clinician => "CLINICIAN",
            Role::Nurse => "NURSE",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Administrative roles: their passwords expire (90 days by default).
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Role::SuperAdmin | Role::OrgAdmin | Role::IntegrationManager
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human user, as the control store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub org: OrgId,
    pub username: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub password_changed_at: i64,
    pub must_change_password: bool,
    /// The TOTP seed, sealed (AEAD) by the vault; `None` until enrolled.
    pub totp_sealed: Option<Vec<u8>>,
    /// The last accepted TOTP time step (a code is accepted once).
    pub totp_last_step: Option<i64>,
    pub mfa_enrolled: bool,
    pub disabled: bool,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("org", &self.org)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("mfa_enrolled", &self.mfa_enrolled)
            .finish_non_exhaustive()
    }
}

/// A session or a pending login, stored by the hash of its token only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub token_hash: Vec<u8>,
    /// `session`, `challenge` (password checked, MFA pending) or `bearer` (service token).
    pub kind: String,
    /// The user id, or the client id for `bearer`.
    pub subject: String,
    pub org: OrgId,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
    /// Space-separated scopes (service tokens).
    pub scopes: String,
    /// The purpose of use a person chose at sign-in (challenges and sessions), if any.
    pub purpose: Option<String>,
}

/// A service client (OAuth2 client credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: String,
    pub org: OrgId,
    pub name: String,
    pub role: Role,
    pub scopes: String,
    /// Space-separated purpose-of-use codes the client acts for.
    pub purposes: String,
    /// The purpose of use applied when a call states none (one of `purposes`), if any.
    pub default_purpose: Option<String>,
    pub secret_hash: Vec<u8>,
    pub disabled: bool,
    pub created_at: i64,
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRecord")
            .field("id", &self.id)
            .field("org", &self.org)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// An administrator's change to a service client (`ControlStore::change_client`).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientChange {
    /// Refuse its secret and end every token it holds.
    Disable,
    /// Accept its secret again (tokens ended by a disable stay ended).
    Enable,
    /// Replace the secret's keyed hash and end every token issued under the old one.
    Secret(Vec<u8>),
    /// End every token it holds; the secret keeps working.
    RevokeTokens,
}

impl ClientChange {
    /// Whether the change ends the client's tokens.
    pub fn revokes_tokens(&self) -> bool {
        !matches!(self, ClientChange::Enable)
    }
}

impl fmt::Debug for ClientChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientChange::Disable => "Disable",
            ClientChange::Enable => "Enable",
            ClientChange::Secret(_) => "Secret(..)",
            ClientChange::RevokeTokens => "RevokeTokens",
        })
    }
}

/// A person's own write to their user row, applied only while the row is as the sign-in step
/// read it and the user is enabled, so an administrator's disable or reset committed in between
/// is never undone (each touches its own columns only).
pub enum UserWrite<'a> {
    /// A chosen password replaces the one-time (or expired) password `old`.
    Password {
        old: &'a str,
        new: &'a str,
        changed_at: i64,
    },
    /// A new, unconfirmed TOTP seed, while the password hash is still `password`.
    Seed { password: &'a str, sealed: &'a [u8] },
    /// A completed sign-in with the seed `sealed`: MFA confirmed, failures cleared, last
    /// sign-in at `at` (milliseconds).
    SignIn { sealed: &'a [u8], at: i64 },
}

impl fmt::Debug for UserWrite<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UserWrite::Password { .. } => "Password(..)",
            UserWrite::Seed { .. } => "Seed(..)",
            UserWrite::SignIn { .. } => "SignIn(..)",
        })
    }
}

/// A need-to-know grant (or a break-glass access) of a person to a patient.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub org: OrgId,
    pub user_id: String,
    /// The patient's keyed pseudonym (hex): no plaintext patient id in the control store.
    pub patient: String,
    /// HL7 purpose-of-use code.
    pub purpose: String,
    /// `grant` or `break-glass`.
    pub kind: String,
    /// The break-glass reason, sealed by the vault (free text may name the patient).
    pub reason_sealed: Option<Vec<u8>>,
    pub granted_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
}

impl fmt::Debug for GrantRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantRecord")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("purpose", &self.purpose)
            .field("expires_at", &self.expires_at)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}
