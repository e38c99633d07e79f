//! Authentication: Argon2id passwords with a policy, mandatory TOTP MFA with single-use backup
//! codes, opaque session tokens stored hashed with idle and absolute timeouts, lockout after
//! repeated failures. Every step is an audit event. Failures all look alike to the client:
//! nothing tells whether a username exists.
mod client_admin;
pub mod clients;
mod factors;
pub mod lockout;
pub mod purpose;
mod users;

pub use client_admin::{ClientAction, ClientChanged, ClientInfo};
pub use clients::{ClientPurposes, NewClient, Scope, parse_scopes, scopes_allow};
pub use purpose::PurposeSource;
pub use users::{NewUser, UserInfo};

use crate::audit::AuditEvent;
use crate::error::VaultError;
use crate::{Actor, Ctx, Vault};
use phivault_core::{OrgId, Role, SecretString, SessionRecord, UserRecord, UserWrite};
use phivault_crypto::{password, random_token, totp};
use std::sync::Arc;
use std::sync::OnceLock;
use tokio::sync::Semaphore;

/// Timeouts and thresholds (defaults from the issue; seconds).
#[derive(Debug, Clone, Copy)]
pub struct AuthPolicy {
    pub session_idle: i64,
    pub session_absolute: i64,
    pub challenge_ttl: i64,
    pub admin_password_max_age: i64,
    pub lockout_after: i64,
    pub service_token_ttl: i64,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            session_idle: 15 * 60,
            session_absolute: 8 * 3600,
            challenge_ttl: 5 * 60,
            admin_password_max_age: 90 * 24 * 3600,
            lockout_after: 5,
            service_token_ttl: 15 * 60,
        }
    }
}

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub(crate) actor: Actor,
    pub(crate) org: OrgId,
    pub(crate) role: Role,
    pub(crate) scopes: Vec<String>,
    /// The purposes of use a service client acts for (empty for people: they state theirs).
    pub(crate) purposes: Vec<String>,
    /// The purpose applied when a call states none, and where it comes from (a client's
    /// default, a person's session or the role's default in the organization).
    pub(crate) default_purpose: Option<(String, PurposeSource)>,
}

/// Only the vault makes a principal (by authenticating a session or token), so its fields are
/// read-only outside: no adapter can fill in an authority of its own.
///
/// ```compile_fail,E0616
/// fn forge(p: &mut phivault_vault::auth::Principal) {
///     p.role = phivault_core::Role::SuperAdmin;
/// }
/// ```
impl Principal {
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
    pub fn org(&self) -> &OrgId {
        &self.org
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    pub fn purposes(&self) -> &[String] {
        &self.purposes
    }
    pub fn default_purpose(&self) -> Option<(&str, PurposeSource)> {
        self.default_purpose.as_ref().map(|(p, s)| (p.as_str(), *s))
    }
}

/// What the client must do after a correct password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Change the password (first login, reset, or an expired admin password).
    ChangePassword,
    /// Enroll TOTP (no MFA yet: this is all the user may do).
    EnrollMfa,
    /// Give a TOTP or backup code.
    Mfa,
}

impl NextStep {
    pub fn as_str(&self) -> &'static str {
        match self {
            NextStep::ChangePassword => "change_password",
            NextStep::EnrollMfa => "enroll_mfa",
            NextStep::Mfa => "mfa",
        }
    }
}

/// A pending login: the challenge token (shown once) and the next step.
#[derive(Debug)]
pub struct Challenge {
    pub token: SecretString,
    pub next: NextStep,
}

/// A TOTP enrollment, shown once.
#[derive(Debug)]
pub struct Enrollment {
    pub otpauth_uri: SecretString,
    pub secret_base32: SecretString,
    pub backup_codes: Vec<SecretString>,
}

/// A session (or service) token, shown once.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: SecretString,
    pub expires_in: i64,
}

const BACKUP_CODES: usize = 10;

fn unauthenticated(why: &'static str) -> VaultError {
    VaultError::Unauthenticated(why)
}

/// Argon2 runs on the blocking pool, at most half the cores at once (at least one), so
/// password checks never starve the async executor or the other requests.
fn argon_permits() -> &'static Arc<Semaphore> {
    static P: OnceLock<Arc<Semaphore>> = OnceLock::new();
    P.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new((n / 2).max(1)))
    })
}

pub(crate) async fn off_executor<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, VaultError> {
    let _permit = argon_permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| VaultError::Invalid("shutting down".into()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| VaultError::Invalid("a password check failed to run".into()))
}

impl Vault {
    fn now_secs(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    fn auth_event(&self, ctx: &Ctx, action: &str, actor: String) -> AuditEvent {
        let mut e = self.event(ctx, action);
        e.actor = actor;
        e
    }

    fn user_password_expired(&self, u: &UserRecord) -> bool {
        u.role.is_admin()
            && self.now_secs() - u.password_changed_at / 1000
                > self.auth_policy.admin_password_max_age
    }

    fn next_step(&self, u: &UserRecord) -> NextStep {
        if u.must_change_password || self.user_password_expired(u) {
            NextStep::ChangePassword
        } else if !u.mfa_enrolled && u.totp_sealed.is_none() {
            NextStep::EnrollMfa
        } else {
            // Enrolled, or enrolled and awaiting its first code (which confirms it).
            NextStep::Mfa
        }
    }

    async fn new_token(
        &self,
        kind: &str,
        subject: &str,
        org: &OrgId,
        ttl: i64,
        scopes: &str,
        purpose: Option<String>,
    ) -> Result<SecretString, VaultError> {
        let token = SecretString::new(random_token::<32>()?);
        let now = self.now_secs();
        self.control
            .put_session(&SessionRecord {
                token_hash: self.keyring.token_hash(kind, token.expose()).to_vec(),
                kind: kind.to_owned(),
                subject: subject.to_owned(),
                org: org.clone(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + ttl,
                revoked: false,
                scopes: scopes.to_owned(),
                purpose,
            })
            .await?;
        Ok(token)
    }

    /// The live record behind a token of `kind`, or an authentication failure.
    async fn token_record(&self, kind: &str, token: &str) -> Result<SessionRecord, VaultError> {
        let hash = self.keyring.token_hash(kind, token);
        let s = self
            .control
            .session(&hash)
            .await?
            .ok_or(unauthenticated("unknown token"))?;
        let now = self.now_secs();
        if s.kind != kind || s.revoked {
            return Err(unauthenticated("revoked token"));
        }
        if now >= s.expires_at {
            return Err(unauthenticated("expired token"));
        }
        if kind == "session" && now - s.last_seen_at >= self.auth_policy.session_idle {
            return Err(unauthenticated("idle session"));
        }
        Ok(s)
    }

    async fn challenge_user(
        &self,
        challenge: &str,
    ) -> Result<(SessionRecord, UserRecord), VaultError> {
        let s = self.token_record("challenge", challenge).await?;
        let u = self
            .control
            .user_by_id(&s.subject)
            .await?
            .ok_or(unauthenticated("user gone"))?;
        if u.disabled {
            return Err(unauthenticated("user disabled"));
        }
        Ok((s, u))
    }

    /// The user behind a challenge; a bad challenge is audited under `action` and refused.
    async fn challenge_or_audit(
        &self,
        ctx: &Ctx,
        action: &str,
        challenge: &str,
    ) -> Result<(SessionRecord, UserRecord), VaultError> {
        match self.challenge_user(challenge).await {
            Ok(x) => Ok(x),
            Err(e) => {
                let ev = self.auth_event(ctx, action, "user:(unknown)".into());
                self.audit_failure(ev, e).await
            }
        }
    }

    /// Step 1 with no organization named: see [`Vault::login_in`].
    pub async fn login(
        &self,
        ctx: &Ctx,
        username: &str,
        password: SecretString,
    ) -> Result<Challenge, VaultError> {
        self.login_in(ctx, None, username, password).await
    }

    /// The organization a sign-in names, or the only one when it names none. With several
    /// organizations, a sign-in naming none (or a malformed one) finds nobody: names are only
    /// ever looked up inside one organization, so no answer depends on other organizations'
    /// users.
    async fn sign_in_org(&self, org: Option<&str>) -> Result<Option<OrgId>, VaultError> {
        Ok(match org {
            Some(o) => OrgId::parse(o).ok(),
            None => {
                let mut orgs = self.control.organizations().await?;
                orgs.pop().filter(|_| orgs.is_empty()).map(|o| o.id)
            }
        })
    }

    /// Step 1: username and password, and the organization (its id): required once the vault
    /// has several organizations (usernames are unique within an organization only); with
    /// one, it may be left out. Wrong password, unknown user, missing, wrong or malformed
    /// organization, disabled or locked account all fail alike (same error, same Argon2 work).
    pub async fn login_in(
        &self,
        ctx: &Ctx,
        org: Option<&str>,
        username: &str,
        password: SecretString,
    ) -> Result<Challenge, VaultError> {
        self.login_for(ctx, org, username, password, None).await
    }

    /// [`Vault::login_in`] with the purpose of use the person chooses for the session (an
    /// HL7 code their role may act for; checked once the password is): the session carries
    /// it, so their calls need no `X-Purpose-Of-Use` header (which still overrides it).
    pub async fn login_for(
        &self,
        ctx: &Ctx,
        org: Option<&str>,
        username: &str,
        password: SecretString,
        purpose: Option<&str>,
    ) -> Result<Challenge, VaultError> {
        let user = match self.sign_in_org(org).await? {
            Some(org) => self.control.user_by_name(&org, username).await?,
            None => None,
        };
        let actor = match &user {
            Some(u) => format!("user:{}", u.username),
            None => "user:(unknown)".to_owned(),
        };
        let mut event = self.auth_event(ctx, "login", actor);
        let Some(u) = user else {
            off_executor(move || password::dummy_verify(password.expose())).await?;
            return self
                .audit_failure(event, unauthenticated("unknown user"))
                .await;
        };
        event.org = u.org.as_str().to_owned();
        let phc = u.password_hash.clone();
        let ok = off_executor(move || password::verify_password(password.expose(), &phc)).await?;
        if u.disabled {
            return self
                .audit_failure(event, unauthenticated("user disabled"))
                .await;
        }
        if self.is_locked(&u) {
            return self.locked_out(event).await;
        }
        if !ok {
            let locked = lockout::LOCKED_BY_PASSWORD;
            return self
                .credential_failure(event, &u.id, "wrong password", locked)
                .await;
        }
        let purpose = match purpose::sign_in_purpose(u.role, purpose) {
            Ok(p) => p,
            Err(e) => return self.audit_failure(event, e).await,
        };
        // A correct password does not reset the failure count: only a completed sign-in does.
        let next = self.next_step(&u);
        let token = self
            .new_token(
                "challenge",
                &u.id,
                &u.org,
                self.auth_policy.challenge_ttl,
                "",
                purpose,
            )
            .await?;
        event.reason = Some(format!("next:{}", next.as_str()));
        self.audit(event).await?;
        Ok(Challenge { token, next })
    }

    /// Forced password change during login: only a challenge at the `change_password` step
    /// (a one-time or expired password) may change it; any other challenge (one at the `mfa`
    /// step needs only the password) gets the invalid-challenge answer. The change ends every
    /// other session and challenge of the user.
    pub async fn change_password(
        &self,
        ctx: &Ctx,
        challenge: &str,
        new_password: SecretString,
    ) -> Result<NextStep, VaultError> {
        let (chal, mut u) = self
            .challenge_or_audit(ctx, "password-change", challenge)
            .await?;
        let mut event = self.auth_event(ctx, "password-change", format!("user:{}", u.username));
        event.org = u.org.as_str().to_owned();
        if self.next_step(&u) != NextStep::ChangePassword {
            let e = unauthenticated("challenge not at the password step");
            return self.audit_failure(event, e).await;
        }
        if let Err(e) = users::check_password_policy(&new_password, &u.username) {
            return self.audit_failure(event, e).await;
        }
        let (old, old_hash) = (u.password_hash.clone(), u.password_hash.clone());
        let same = {
            let p = SecretString::new(new_password.expose().clone());
            off_executor(move || password::verify_password(p.expose(), &old)).await?
        };
        if same {
            let e = VaultError::Invalid("the new password must differ from the old one".into());
            return self.audit_failure(event, e).await;
        }
        u.password_hash =
            off_executor(move || password::hash_password(new_password.expose())).await??;
        u.password_changed_at = self.clock.now_millis();
        u.must_change_password = false;
        // Only if the row is still as read: an administrator's disable or reset committed
        // during the two Argon2 runs stays.
        let change = UserWrite::Password {
            old: &old_hash,
            new: &u.password_hash,
            changed_at: u.password_changed_at,
        };
        if !self.control.write_user(&u.id, &change).await? {
            let e = unauthenticated("user changed meanwhile");
            return self.audit_failure(event, e).await;
        }
        self.control
            .revoke_sessions_except(&u.id, &chal.token_hash)
            .await?;
        self.audit(event).await?;
        Ok(self.next_step(&u))
    }

    /// Enrollment: a fresh TOTP seed (sealed) and 10 backup codes (hashed), shown once.
    /// MFA counts as enrolled once a first code from it is accepted.
    pub async fn enroll_mfa(&self, ctx: &Ctx, challenge: &str) -> Result<Enrollment, VaultError> {
        let (_, mut u) = self
            .challenge_or_audit(ctx, "mfa-enroll", challenge)
            .await?;
        let event = self.auth_event(ctx, "mfa-enroll", format!("user:{}", u.username));
        match self.next_step(&u) {
            NextStep::EnrollMfa => {}
            NextStep::ChangePassword => {
                let e = VaultError::Invalid("change the password first".into());
                return self.audit_failure(event, e).await;
            }
            NextStep::Mfa => {
                let e = VaultError::Invalid(
                    "MFA is already enrolled; an administrator can reset it".into(),
                );
                return self.audit_failure(event, e).await;
            }
        }
        match self.new_enrollment(&mut u).await {
            Ok(enrollment) => {
                self.audit(event).await?;
                Ok(enrollment)
            }
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    pub(crate) async fn new_enrollment(
        &self,
        u: &mut UserRecord,
    ) -> Result<Enrollment, VaultError> {
        let seed = totp::new_seed()?;
        let sealed = self.keyring.seal_secret(&u.id, &seed)?;
        let write = UserWrite::Seed {
            password: &u.password_hash,
            sealed: &sealed,
        };
        if !self.control.write_user(&u.id, &write).await? {
            return Err(unauthenticated("user changed meanwhile"));
        }
        u.totp_sealed = Some(sealed);
        u.totp_last_step = None;
        u.mfa_enrolled = false;
        let mut codes = Vec::with_capacity(BACKUP_CODES);
        let mut hashes = Vec::with_capacity(BACKUP_CODES);
        for _ in 0..BACKUP_CODES {
            let code = SecretString::new(random_token::<10>()?);
            hashes.push(self.keyring.token_hash("backup", code.expose()).to_vec());
            codes.push(code);
        }
        self.control.set_backup_codes(&u.id, &hashes).await?;
        Ok(Enrollment {
            otpauth_uri: SecretString::new(totp::otpauth_uri(&seed, &u.username)?.to_string()),
            secret_base32: SecretString::new(totp::seed_base32(&seed).to_string()),
            backup_codes: codes,
        })
    }

    /// Step 2: a TOTP code (each accepted once) or a backup code (single use) → a session.
    /// A locked account is refused before any code is checked; a wrong code counts toward the
    /// lockout; the challenge dies at its 5th attempt (see [`lockout`]).
    pub async fn complete_mfa(
        &self,
        ctx: &Ctx,
        challenge: &str,
        code: &str,
    ) -> Result<IssuedToken, VaultError> {
        let (chal, u) = self.challenge_or_audit(ctx, "mfa", challenge).await?;
        let mut event = self.auth_event(ctx, "mfa", format!("user:{}", u.username));
        event.org = u.org.as_str().to_owned();
        if self.next_step(&u) == NextStep::ChangePassword {
            let e = VaultError::Invalid("change the password first".into());
            return self.audit_failure(event, e).await;
        }
        let Some(sealed) = u.totp_sealed.clone() else {
            let e = VaultError::Invalid("enroll MFA first".into());
            return self.audit_failure(event, e).await;
        };
        // The lock is checked and the attempt counted as a failure (locking the account when
        // a failure would) in one atomic step before the code is looked at, so parallel
        // guesses, on one challenge or many, can never pass the lockout.
        let Some(locks) = self.reserve_code_attempt(&u.id).await? else {
            return self.locked_out(event).await;
        };
        // The challenge's own attempts are counted too, so it dies at its 5th whatever the
        // account's count.
        let attempt = self
            .control
            .count_challenge_attempt(&chal.token_hash)
            .await?;
        if attempt >= lockout::MAX_CODE_ATTEMPTS {
            self.control.revoke_session(&chal.token_hash).await?;
        }
        if attempt > lockout::MAX_CODE_ATTEMPTS {
            return self.code_failure(event, "challenge spent", locks).await;
        }
        if !self.second_factor_ok(&u, &sealed, code, &mut event).await? {
            return self
                .code_failure(event, "wrong or replayed code", locks)
                .await;
        }
        self.control.revoke_session(&chal.token_hash).await?;
        match self.signed_in(&u, &sealed, chal.purpose.clone()).await {
            Ok(token) => {
                self.audit(event).await?;
                Ok(token)
            }
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    /// Checks a bearer: a person's session (absolute and idle timeouts, user still enabled;
    /// marked used now) or a service token (expiry, client still enabled).
    pub async fn authenticate(&self, token: &str) -> Result<Principal, VaultError> {
        let s = match self.token_record("session", token).await {
            Ok(s) => s,
            Err(VaultError::Unauthenticated("unknown token")) => {
                return self.authenticate_bearer(token).await;
            }
            Err(e) => return Err(e),
        };
        let u = self
            .control
            .user_by_id(&s.subject)
            .await?
            .ok_or(unauthenticated("user gone"))?;
        if u.disabled {
            return Err(unauthenticated("user disabled"));
        }
        self.control
            .touch_session(&s.token_hash, self.now_secs())
            .await?;
        let default_purpose = match s.purpose {
            Some(p) => Some((p, PurposeSource::Session)),
            None => self
                .control
                .role_default_purpose(&u.org, u.role)
                .await?
                .map(|p| (p, PurposeSource::RoleDefault)),
        };
        Ok(Principal {
            actor: Actor::User {
                id: u.id.clone(),
                username: u.username.clone(),
            },
            org: u.org.clone(),
            role: u.role,
            scopes: Vec::new(),
            purposes: Vec::new(),
            default_purpose,
        })
    }

    /// Revokes a session.
    pub async fn logout(&self, ctx: &Ctx, token: &str) -> Result<(), VaultError> {
        let hash = self.keyring.token_hash("session", token);
        let revoked = self.control.revoke_session(&hash).await?;
        let event = self.event(ctx, "logout");
        if revoked {
            self.audit(event).await
        } else {
            self.audit_failure(event, unauthenticated("unknown session"))
                .await
        }
    }
}
