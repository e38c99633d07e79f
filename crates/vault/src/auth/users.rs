//! User administration: add, disable, enable, reset password, reset MFA, list. Passwords follow
//! a policy (at least 12 characters, at most 1024 bytes, not weak by a strength estimator that
//! knows common passwords, not the username); a new or reset account gets a one-time password
//! that must be changed at first login.
use super::{Enrollment, off_executor};
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{OrgId, Role, SecretString, UserRecord};
use phivault_crypto::{password, random_token, random_uuid};

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks the password policy; the error says what is wrong, never echoing the password.
pub fn check_password_policy(pw: &SecretString, username: &str) -> Result<(), VaultError> {
    let p = pw.expose();
    if p.chars().count() < MIN_PASSWORD_CHARS {
        return Err(VaultError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(VaultError::Invalid("the password is too long".into()));
    }
    if p.to_lowercase().contains(&username.to_lowercase()) && !username.is_empty() {
        return Err(VaultError::Invalid(
            "the password must not contain the username".into(),
        ));
    }
    let estimate = zxcvbn::zxcvbn(p, &[username, "phivault"]);
    if (estimate.score() as u8) < 3 {
        return Err(VaultError::Invalid(
            "the password is too weak or too common: use a longer passphrase".into(),
        ));
    }
    Ok(())
}

/// A user as listed (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: String,
    pub username: String,
    pub org: OrgId,
    pub role: Role,
    pub disabled: bool,
    pub mfa_enrolled: bool,
    pub must_change_password: bool,
    pub last_login_at: Option<i64>,
}

impl From<&UserRecord> for UserInfo {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            org: u.org.clone(),
            role: u.role,
            disabled: u.disabled,
            mfa_enrolled: u.mfa_enrolled,
            must_change_password: u.must_change_password,
            last_login_at: u.last_login_at,
        }
    }
}

/// A created user and its one-time password (shown once).
#[derive(Debug)]
pub struct NewUser {
    pub user: UserInfo,
    pub one_time_password: SecretString,
    /// Set when the caller asked for the TOTP enrollment up front (development bootstrap).
    pub enrollment: Option<Enrollment>,
}

fn valid_username(u: &str) -> bool {
    (3..=64).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// Who may create or change a user of role `target`: the operator and SUPER_ADMIN any role,
/// ORG_ADMIN only the non-administrator roles (so no ORG_ADMIN can make, take over or lock
/// out an administrator), nobody else.
fn may_manage(ctx: &Ctx, target: Role) -> bool {
    use crate::policy::Subject;
    let role = match &ctx.subject {
        Subject::Operator => return true,
        Subject::User(r) => *r,
        Subject::Client { role, .. } => *role,
        Subject::Nobody => return false,
    };
    match role {
        Role::SuperAdmin => true,
        Role::OrgAdmin => !target.is_admin(),
        Role::IntegrationManager | Role::Viewer | Role::Auditor | Role::Clinician | Role::Nurse => {
            false
        }
    }
}

/// What every reset by an administrator (or the operator) does: the person's next sign-in
/// must change the password and enroll a new TOTP authenticator, so no old factor survives a
/// reset and whoever signs in next chooses both. (An administrator could still sign in as the
/// person after a reset: `phivault audit report` flags a reset followed by PHI reads of the
/// account within 24 hours.) The backup codes go with the seed.
fn must_reenroll(u: &mut UserRecord) {
    u.must_change_password = true;
    u.totp_sealed = None;
    u.totp_last_step = None;
    u.mfa_enrolled = false;
    u.failed_logins = 0;
    u.locked_until = None;
}

impl Vault {
    /// Adds a user with a one-time password that must be changed at first login.
    /// Permissions: see [`may_manage`].
    pub async fn add_user(
        &self,
        ctx: &Ctx,
        org: &OrgId,
        username: &str,
        role: Role,
        enroll_now: bool,
    ) -> Result<NewUser, VaultError> {
        let mut event = self.event(ctx, "user-add");
        event.reason = Some(format!("user:{username} role:{role}"));
        if !may_manage(ctx, role) {
            return self.deny(&event, "role").await;
        }
        if !matches!(ctx.subject, crate::policy::Subject::Operator) && org != &ctx.org {
            return self.deny(&event, "other-organization").await;
        }
        if !valid_username(username) {
            let e = VaultError::Invalid(
                "a username is 3-64 characters of letters, digits, '.', '_', '-', '@'".into(),
            );
            return self.audit_failure(event, e).await;
        }
        let otp = SecretString::new(random_token::<15>()?);
        let phc = {
            let p = SecretString::new(otp.expose().clone());
            off_executor(move || password::hash_password(p.expose())).await??
        };
        let now = self.clock.now_millis();
        let mut u = UserRecord {
            id: random_uuid()?,
            org: org.clone(),
            username: username.to_owned(),
            role,
            password_hash: phc,
            password_changed_at: now,
            must_change_password: true,
            totp_sealed: None,
            totp_last_step: None,
            mfa_enrolled: false,
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            last_login_at: None,
            created_at: now,
        };
        // Taken means taken in this organization: usernames are unique within one only, so
        // the answer tells nothing of other organizations' users.
        if !self.control.create_user(&u).await? {
            let e = VaultError::Invalid("that username is taken".into());
            return self.audit_failure(event, e).await;
        }
        let enrollment = if enroll_now {
            Some(self.new_enrollment(&mut u).await?)
        } else {
            None
        };
        self.audit(event).await?;
        Ok(NewUser {
            user: UserInfo::from(&u),
            one_time_password: otp,
            enrollment,
        })
    }

    async fn admin_change(
        &self,
        ctx: &Ctx,
        action: &str,
        username: &str,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<UserRecord, VaultError> {
        let mut event = self.event(ctx, action);
        event.reason = Some(format!("user:{username}"));
        // Only the caller's organization is searched: another's user is missing here.
        let Some(mut u) = self.control.user_by_name(&ctx.org, username).await? else {
            return self.audit_failure(event, VaultError::NotFound).await;
        };
        if !may_manage(ctx, u.role) {
            return self.deny(&event, "role").await;
        }
        change(&mut u);
        self.control.update_user(&u).await?;
        self.control.revoke_sessions_of(&u.id).await?;
        self.audit(event).await?;
        Ok(u)
    }

    /// Disables (or enables) a user; disabling ends its sessions at once.
    pub async fn set_user_disabled(
        &self,
        ctx: &Ctx,
        username: &str,
        disabled: bool,
    ) -> Result<UserInfo, VaultError> {
        let action = if disabled {
            "user-disable"
        } else {
            "user-enable"
        };
        let u = self
            .admin_change(ctx, action, username, |u| {
                u.disabled = disabled;
                u.failed_logins = 0;
                u.locked_until = None;
            })
            .await?;
        Ok(UserInfo::from(&u))
    }

    /// A new one-time password; ends the user's sessions and clears its MFA (see
    /// [`must_reenroll`]).
    pub async fn reset_password(
        &self,
        ctx: &Ctx,
        username: &str,
    ) -> Result<SecretString, VaultError> {
        let otp = SecretString::new(random_token::<15>()?);
        let phc = {
            let p = SecretString::new(otp.expose().clone());
            off_executor(move || password::hash_password(p.expose())).await??
        };
        let now = self.clock.now_millis();
        let u = self
            .admin_change(ctx, "password-reset", username, |u| {
                u.password_hash = phc;
                u.password_changed_at = now;
                must_reenroll(u);
            })
            .await?;
        self.control.set_backup_codes(&u.id, &[]).await?;
        Ok(otp)
    }

    /// Forgets the user's TOTP seed and backup codes and ends its sessions (see
    /// [`must_reenroll`]).
    pub async fn reset_mfa(&self, ctx: &Ctx, username: &str) -> Result<(), VaultError> {
        let u = self
            .admin_change(ctx, "mfa-reset", username, must_reenroll)
            .await?;
        self.control.set_backup_codes(&u.id, &[]).await?;
        Ok(())
    }

    /// The users of the caller's organization (with their last sign-in and MFA state: one
    /// audit event per listing).
    pub async fn list_users(&self, ctx: &Ctx) -> Result<Vec<UserInfo>, VaultError> {
        let event = self.event(ctx, "user-list");
        if !may_manage(ctx, Role::Viewer) {
            return self.deny(&event, "role").await;
        }
        let users = match self.control.users(Some(&ctx.org)).await {
            Ok(u) => u,
            Err(e) => return self.audit_failure(event, e.into()).await,
        };
        self.audit(event).await?;
        Ok(users.iter().map(UserInfo::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        let ok = |p: &str| check_password_policy(&SecretString::new(p.into()), "alice").is_ok();
        assert!(ok("violet tractor mango 1987 hums"));
        assert!(!ok("short1!"), "too short");
        assert!(!ok("passwordpassword"), "common");
        assert!(!ok("123456789012345"), "weak");
        assert!(!ok("alice-rules-the-world-99"), "contains the username");
        assert!(!ok(&"x".repeat(2000)));
    }
}
