//! Need-to-know grants: a person may read or change a patient only while holding a live grant
//! for the purpose (one hour by default, renewable up to eight hours from the first), given by
//! an ORG_ADMIN (or the operator). Break-glass: a clinician without a grant opens a patient for
//! ETREAT with a written reason, for 15 minutes, flagged. Lockdown revokes every grant of an
//! organization at once.
use super::admin::AdminAction;
use super::{Action, Decision, GrantState, Purpose, Release, Subject, decide_with};
use crate::audit::Outcome;
use crate::error::VaultError;
use crate::{Actor, Ctx, Vault};
use phivault_core::{Digest32, GrantRecord, OrgId, ResourceId, Role};

pub const GRANT_DEFAULT_SECS: i64 = 3600;
pub const GRANT_MAX_TOTAL_SECS: i64 = 8 * 3600;
pub const BREAK_GLASS_SECS: i64 = 15 * 60;

/// A grant as shown to administrators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantInfo {
    pub id: String,
    pub username: String,
    pub purpose: Purpose,
    pub kind: String,
    pub expires_at: i64,
}

/// A live grant or break-glass access as administrators list it: who, which patient (by its
/// keyed pseudonym, never its id), for what, given by whom, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantListing {
    pub id: String,
    pub org: OrgId,
    pub username: String,
    pub patient_pseudonym: String,
    pub purpose: String,
    /// `grant` or `break-glass`.
    pub kind: String,
    pub granted_by: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    pub expires_at: i64,
}

/// What the policy allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub release: Release,
    pub break_glass: bool,
}

impl Vault {
    fn may_manage_grants(ctx: &Ctx) -> bool {
        matches!(
            ctx.subject,
            Subject::Operator | Subject::User(Role::OrgAdmin)
        )
    }

    /// Gives (or renews) a person's grant to a patient.
    pub async fn grant_access(
        &self,
        ctx: &Ctx,
        username: &str,
        patient: &ResourceId,
        purpose: Purpose,
        ttl_secs: Option<i64>,
    ) -> Result<GrantInfo, VaultError> {
        let pseudonym = self.keyring.pseudonym(&ctx.org, patient);
        let mut event = self.event(ctx, "grant").patient(Some(pseudonym));
        event.purpose = Some(purpose.as_str().to_owned());
        event.reason = Some(format!("user:{username}"));
        if !Self::may_manage_grants(ctx) {
            return self.audit_failure(event, VaultError::Forbidden).await;
        }
        let ttl = ttl_secs.unwrap_or(GRANT_DEFAULT_SECS);
        if !(60..=GRANT_DEFAULT_SECS).contains(&ttl) || purpose == Purpose::Etreat {
            let e = VaultError::Invalid(
                "a grant lasts 1 to 60 minutes and is not for ETREAT (use break-glass)".into(),
            );
            return self.audit_failure(event, e).await;
        }
        let user = match self.control.user_by_name(&ctx.org, username).await? {
            Some(u) if u.org == ctx.org && matches!(u.role, Role::Nurse | Role::Clinician) => u,
            _ => {
                let e = VaultError::Invalid("no nurse or clinician of that name here".into());
                return self.audit_failure(event, e).await;
            }
        };
        if !self.patient_exists(ctx, patient).await? {
            return self.audit_failure(event, VaultError::NotFound).await;
        }
        let now = self.clock.now().unix_timestamp();
        let hex = pseudonym.to_hex();
        if let Some(g) = self.control.latest_grant(&ctx.org, &user.id, &hex).await?
            && g.kind == "grant"
            && g.purpose == purpose.as_str()
            && g.expires_at > now
        {
            let until = (now + ttl).min(g.created_at + GRANT_MAX_TOTAL_SECS);
            self.control.extend_grant(&g.id, until).await?;
            event.reason = Some(format!("user:{username} renewed"));
            self.audit(event).await?;
            return Ok(GrantInfo {
                id: g.id,
                username: username.to_owned(),
                purpose,
                kind: g.kind,
                expires_at: until,
            });
        }
        let g = GrantRecord {
            id: phivault_crypto::random_uuid()?,
            org: ctx.org.clone(),
            user_id: user.id,
            patient: hex,
            purpose: purpose.as_str().to_owned(),
            kind: "grant".into(),
            reason_sealed: None,
            granted_by: ctx.actor.audit_name(),
            created_at: now,
            expires_at: now + ttl,
            revoked: false,
        };
        self.control.put_grant(&g).await?;
        self.audit(event).await?;
        Ok(GrantInfo {
            id: g.id,
            username: username.to_owned(),
            purpose,
            kind: g.kind,
            expires_at: g.expires_at,
        })
    }

    pub(crate) fn care_team_setting(ctx: &Ctx) -> String {
        format!("care-team-rule:{}", ctx.org)
    }

    /// Turns the care-team rule of the organization's integrations on or off (ORG_ADMIN or
    /// operator): when on, an integration may grant the clinician a message names (the
    /// attending doctor of an HL7 ADT message) need-to-know access to that patient.
    pub async fn set_care_team_rule(&self, ctx: &Ctx, on: bool) -> Result<(), VaultError> {
        let mut event = self.event(ctx, "care-team-rule");
        event.reason = Some(if on { "on" } else { "off" }.into());
        if !Self::may_manage_grants(ctx) {
            return self.audit_failure(event, VaultError::Forbidden).await;
        }
        self.control
            .put_setting(&Self::care_team_setting(ctx), if on { "on" } else { "off" })
            .await?;
        self.audit(event).await
    }

    /// The care-team rule: an integration (service client with role INTEGRATION_MANAGER)
    /// grants a named nurse or clinician access to a patient, where an ORG_ADMIN turned the
    /// rule on. Same limits as any grant.
    pub async fn care_team_grant(
        &self,
        ctx: &Ctx,
        username: &str,
        patient: &ResourceId,
        purpose: Purpose,
    ) -> Result<GrantInfo, VaultError> {
        let pseudonym = self.keyring.pseudonym(&ctx.org, patient);
        let mut event = self.event(ctx, "grant").patient(Some(pseudonym));
        event.reason = Some(format!("user:{username} care-team"));
        let is_integration = matches!(
            ctx.subject,
            Subject::Client {
                role: Role::IntegrationManager,
                ..
            }
        );
        let rule_on = self
            .control
            .get_setting(&Self::care_team_setting(ctx))
            .await?
            .as_deref()
            == Some("on");
        if !is_integration || !rule_on {
            return self.deny(&event, "care-team-rule").await;
        }
        // Act with the operator's grant-giving power, for this one grant.
        let mut as_rule = ctx.clone();
        as_rule.subject = Subject::Operator;
        self.grant_access(&as_rule, username, patient, purpose, None)
            .await
    }

    /// Emergency access for a clinician without a grant: ETREAT, 15 minutes, flagged.
    pub async fn break_glass(
        &self,
        ctx: &Ctx,
        patient: &ResourceId,
        reason: &str,
    ) -> Result<GrantInfo, VaultError> {
        let pseudonym = self.keyring.pseudonym(&ctx.org, patient);
        let mut event = self.event(ctx, "break-glass").patient(Some(pseudonym));
        event.break_glass = true;
        event.purpose = Some("ETREAT".into());
        // The vault's own purpose for break-glass, not one stated or defaulted.
        event.purpose_source = None;
        let (user_id, username) = match (&ctx.subject, &ctx.actor) {
            (Subject::User(Role::Clinician), Actor::User { id, username }) => {
                (id.clone(), username.clone())
            }
            _ => return self.audit_failure(event, VaultError::Forbidden).await,
        };
        if reason.trim().chars().count() < 10 {
            let e =
                VaultError::Invalid("break-glass needs a written reason (10+ characters)".into());
            return self.audit_failure(event, e).await;
        }
        if !self.patient_exists(ctx, patient).await? {
            return self.audit_failure(event, VaultError::NotFound).await;
        }
        let now = self.clock.now().unix_timestamp();
        let id = phivault_crypto::random_uuid()?;
        let g = GrantRecord {
            id: id.clone(),
            org: ctx.org.clone(),
            user_id,
            patient: pseudonym.to_hex(),
            purpose: "ETREAT".into(),
            kind: "break-glass".into(),
            // The reason may name the patient: sealed, never in the audit trail.
            reason_sealed: Some(
                self.keyring
                    .seal_secret(&format!("break-glass:{id}"), reason.as_bytes())?,
            ),
            granted_by: ctx.actor.audit_name(),
            created_at: now,
            expires_at: now + BREAK_GLASS_SECS,
            revoked: false,
        };
        self.control.put_grant(&g).await?;
        self.audit(event).await?;
        Ok(GrantInfo {
            id,
            username,
            purpose: Purpose::Etreat,
            kind: g.kind,
            expires_at: g.expires_at,
        })
    }

    /// Revokes every grant (and break-glass access) of the organization at once.
    pub async fn lockdown(&self, ctx: &Ctx) -> Result<u64, VaultError> {
        let mut event = self.event(ctx, "lockdown");
        if !Self::may_manage_grants(ctx) {
            return self.audit_failure(event, VaultError::Forbidden).await;
        }
        let n = self
            .control
            .revoke_grants(&ctx.org, self.clock.now().unix_timestamp())
            .await?;
        event.count = Some(n);
        self.audit(event).await?;
        Ok(n)
    }

    /// The live grants and break-glass accesses the caller may review (see
    /// [`super::admin`]): an ORG_ADMIN's (or the operator's) organization, every organization
    /// for a SUPER_ADMIN.
    pub async fn list_grants(&self, ctx: &Ctx) -> Result<Vec<GrantListing>, VaultError> {
        let mut event = self.event(ctx, "grants-list");
        let scope = self
            .admin_scope_or_deny(ctx, AdminAction::ListGrants, &event)
            .await?;
        let org = Self::listing_org(ctx, scope);
        let now = self.clock.now().unix_timestamp();
        let found = match org {
            Some(o) => self.control.live_grants_in(o, now).await,
            None => self.control.live_grants(now).await,
        };
        let (grants, users) = match (found, self.control.users(org).await) {
            (Ok(g), Ok(u)) => (g, u),
            (Err(e), _) | (_, Err(e)) => return self.audit_failure(event, e.into()).await,
        };
        let names: std::collections::HashMap<&str, &str> = users
            .iter()
            .map(|u| (u.id.as_str(), u.username.as_str()))
            .collect();
        let listed: Vec<GrantListing> = grants
            .into_iter()
            .map(|g| GrantListing {
                username: names
                    .get(g.user_id.as_str())
                    .map_or("(removed)", |n| n)
                    .to_owned(),
                id: g.id,
                org: g.org,
                patient_pseudonym: g.patient,
                purpose: g.purpose,
                kind: g.kind,
                granted_by: g.granted_by,
                created_at: g.created_at,
                expires_at: g.expires_at,
            })
            .collect();
        event.count = Some(listed.len() as u64);
        self.audit(event).await?;
        Ok(listed)
    }

    async fn grant_state(
        &self,
        ctx: &Ctx,
        patient: &Digest32,
        purpose: Option<Purpose>,
    ) -> Result<GrantState, VaultError> {
        let Actor::User { id, .. } = &ctx.actor else {
            return Ok(GrantState::None);
        };
        let Some(g) = self
            .control
            .latest_grant(&ctx.org, id, &patient.to_hex())
            .await?
        else {
            return Ok(GrantState::None);
        };
        let now = self.clock.now().unix_timestamp();
        Ok(if g.expires_at <= now {
            GrantState::Expired
        } else if g.kind == "break-glass" {
            GrantState::BreakGlass
        } else if Some(g.purpose.as_str()) == purpose.map(|p| p.as_str()) {
            GrantState::Active
        } else {
            GrantState::None
        })
    }

    /// Asks the policy without auditing: the allowance, or the denial's reason code.
    pub(crate) async fn check(
        &self,
        ctx: &Ctx,
        action: Action,
        resource: &str,
        patient: Option<Digest32>,
    ) -> Result<Result<Allowed, &'static str>, VaultError> {
        let purpose = match ctx.purpose.as_deref() {
            None => None,
            Some(p) => match Purpose::parse(p) {
                Some(p) => Some(p),
                None => return Ok(Err("purpose-unknown")),
            },
        };
        let grant = match (&ctx.subject, patient) {
            (Subject::User(_), Some(p)) => self.grant_state(ctx, &p, purpose).await?,
            _ => GrantState::None,
        };
        Ok(
            match decide_with(
                &self.field_policy,
                &ctx.subject,
                action,
                resource,
                purpose,
                grant,
            ) {
                Decision::Allow {
                    release,
                    break_glass,
                } => Ok(Allowed {
                    release,
                    break_glass,
                }),
                Decision::Deny(reason) => Err(reason),
            },
        )
    }

    /// Asks the policy; a denial is audited (outcome denied, with its reason) and refused.
    pub(crate) async fn authorize(
        &self,
        ctx: &Ctx,
        action: Action,
        resource: &str,
        patient: Option<Digest32>,
        event: &crate::audit::AuditEvent,
    ) -> Result<Allowed, VaultError> {
        match self.check(ctx, action, resource, patient).await? {
            Ok(a) => Ok(a),
            Err(reason) => self.deny(event, reason).await,
        }
    }

    /// Applies the release to a Patient resource (others pass unchanged).
    pub(crate) fn release(&self, allowed: &Allowed, s: crate::Stored) -> crate::Stored {
        if !s.rtype.is_patient() {
            return s;
        }
        let year = self.clock.now().year();
        let range = s
            .resource
            .get("birthDate")
            .and_then(serde_json::Value::as_str)
            .and_then(|b| super::fields::age_range(b, year));
        crate::Stored {
            resource: super::fields::apply(&allowed.release, s.resource, range),
            ..s
        }
    }

    /// Whether the policy allows `action` for this caller at all (with the best standing).
    pub(crate) fn may_at_all(ctx: &Ctx, action: Action, resource: &str) -> bool {
        let purpose = ctx.purpose.as_deref().and_then(Purpose::parse);
        [GrantState::Active, GrantState::BreakGlass]
            .into_iter()
            .any(|g| {
                matches!(
                    super::decide(&ctx.subject, action, resource, purpose, g),
                    Decision::Allow { .. }
                )
            })
    }

    /// Asks the policy, before anything about a patient is looked up, whether `action` on
    /// `resource` could be allowed to this caller at all (with the best standing a grant
    /// gives); a refusal is audited and refused.
    pub(crate) async fn authorize_kind(
        &self,
        ctx: &Ctx,
        action: Action,
        resource: &str,
        event: &crate::audit::AuditEvent,
    ) -> Result<(), VaultError> {
        if Self::may_at_all(ctx, action, resource) {
            return Ok(());
        }
        let purpose = ctx.purpose.as_deref().and_then(Purpose::parse);
        let reason =
            match super::decide(&ctx.subject, action, resource, purpose, GrantState::Active) {
                Decision::Deny(r) => r,
                Decision::Allow { .. } => "no-grant",
            };
        self.deny(event, reason).await
    }

    /// Audits a denial (with its reason code) without failing the call: for the parts of a
    /// listing that are left out.
    pub(crate) async fn note_denial(
        &self,
        event: &crate::audit::AuditEvent,
        reason: &'static str,
    ) -> Result<(), VaultError> {
        let mut e = event.clone();
        e.outcome = Outcome::Denied;
        e.reason = Some(reason.to_owned());
        self.audit(e).await
    }

    /// Audits a denial and refuses with `error` (an answer more precise than "forbidden").
    pub(crate) async fn deny_with<T>(
        &self,
        event: &crate::audit::AuditEvent,
        reason: &'static str,
        error: VaultError,
    ) -> Result<T, VaultError> {
        self.note_denial(event, reason).await?;
        Err(error)
    }

    pub(crate) async fn deny<T>(
        &self,
        event: &crate::audit::AuditEvent,
        reason: &'static str,
    ) -> Result<T, VaultError> {
        self.deny_with(event, reason, VaultError::Forbidden).await
    }

    /// Operator-only operations (bulk import, export, erasure) for now.
    pub(crate) async fn require_operator(
        &self,
        ctx: &Ctx,
        event: &crate::audit::AuditEvent,
    ) -> Result<(), VaultError> {
        if matches!(ctx.subject, Subject::Operator) {
            Ok(())
        } else {
            self.deny(event, "operator-only").await
        }
    }
}
