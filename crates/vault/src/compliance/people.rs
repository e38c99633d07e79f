//! Person authentication (§164.312(d)) and access control (§164.312(a)(1)), measured from the
//! control store's users and grants against the policies the vault enforces.
use super::{Check, CompliancePolicy, Status, older_than, some_of};
use crate::Vault;
use crate::error::VaultError;
use crate::policy::grants::{BREAK_GLASS_SECS, GRANT_MAX_TOTAL_SECS};
use crate::policy::{Action, Decision, GrantState, Purpose, Subject, decide_with};
use phivault_core::{GrantRecord, OrgId, Role};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const NAMED: usize = 10;

impl Vault {
    /// Enabled users without MFA, administrators whose password is older than the
    /// authentication policy allows, enabled accounts without a login for too long.
    pub(super) async fn check_people(
        &self,
        scope: Option<&OrgId>,
        policy: &CompliancePolicy,
    ) -> Result<Check, VaultError> {
        let now = self.clock.now_millis();
        let users = self.control.users(scope).await?;
        let enabled: Vec<_> = users.iter().filter(|u| !u.disabled).collect();
        let name = |u: &&phivault_core::UserRecord| format!("{}/{}", u.org, u.username);
        let no_mfa: Vec<String> = enabled
            .iter()
            .filter(|u| !u.mfa_enrolled)
            .map(name)
            .collect();
        let max_pw_millis = self.auth_policy.admin_password_max_age.saturating_mul(1000);
        let expired: Vec<String> = enabled
            .iter()
            .filter(|u| u.role.is_admin() && now - u.password_changed_at > max_pw_millis)
            .map(name)
            .collect();
        let inactive: Vec<String> = enabled
            .iter()
            .filter(|u| {
                let last = u.last_login_at.unwrap_or(u.created_at);
                older_than(now - last, policy.inactive_account_days)
            })
            .map(name)
            .collect();
        let mut evidence = format!(
            "{} enabled users ({} disabled): {} without MFA enrolled; {} administrators with a \
             password older than {} days; {} enabled accounts without a login for over {} days.",
            enabled.len(),
            users.len() - enabled.len(),
            no_mfa.len(),
            expired.len(),
            self.auth_policy.admin_password_max_age / 86_400,
            inactive.len(),
            policy.inactive_account_days
        );
        for (what, list) in [
            ("Without MFA", &no_mfa),
            ("Expired administrator passwords", &expired),
            ("Inactive", &inactive),
        ] {
            if !list.is_empty() {
                let _ = write!(evidence, " {what}: {}.", some_of(list, NAMED));
            }
        }
        let failing = !(no_mfa.is_empty() && expired.is_empty() && inactive.is_empty());
        Ok(Check {
            id: "person-authentication",
            safeguard: "§164.312(d) person or entity authentication",
            status: if failing { Status::Fail } else { Status::Pass },
            evidence,
        })
    }

    /// Whether people of `role` can reach PHI at all under this vault's policy (with the best
    /// standing: an active grant or break-glass).
    fn role_reaches_phi(&self, role: Role) -> bool {
        let subject = Subject::User(role);
        ["Patient", "Observation"].iter().any(|resource| {
            Action::ALL.iter().any(|action| {
                Purpose::ALL.iter().any(|purpose| {
                    [GrantState::Active, GrantState::BreakGlass]
                        .iter()
                        .any(|grant| {
                            matches!(
                                decide_with(
                                    &self.field_policy,
                                    &subject,
                                    *action,
                                    resource,
                                    Some(*purpose),
                                    *grant
                                ),
                                Decision::Allow { .. }
                            )
                        })
                })
            })
        })
    }

    /// Live grants longer than policy, open break-glass accesses, and who can reach PHI per
    /// organization.
    pub(super) async fn check_access(
        &self,
        orgs: &[OrgId],
        scope: Option<&OrgId>,
    ) -> Result<Check, VaultError> {
        let now = self.clock.now().unix_timestamp();
        let grants: Vec<GrantRecord> = self
            .control
            .live_grants(now)
            .await?
            .into_iter()
            .filter(|g| scope.is_none_or(|s| *s == g.org))
            .collect();
        let too_long = grants_too_long(&grants);
        let break_glass = open_break_glass(&grants, now);
        let phi = self.phi_reach_per_org(orgs, scope).await?;
        let mut evidence = format!(
            "{} live grants, {} longer than policy (grant ≤ {} h from the first, break-glass ≤ \
             {} min); {} open break-glass accesses. Enabled people whose role reaches PHI — {}.",
            grants.len(),
            too_long.len(),
            GRANT_MAX_TOTAL_SECS / 3600,
            BREAK_GLASS_SECS / 60,
            break_glass.len(),
            phi.join("; ")
        );
        if !too_long.is_empty() {
            let _ = write!(evidence, " Too long: {}.", some_of(&too_long, NAMED));
        }
        if !break_glass.is_empty() {
            let _ = write!(
                evidence,
                " Open break-glass (review each): {}.",
                some_of(&break_glass, NAMED)
            );
        }
        let status = if !too_long.is_empty() {
            Status::Fail
        } else if !break_glass.is_empty() {
            Status::Warn
        } else {
            Status::Pass
        };
        Ok(Check {
            id: "access-control",
            safeguard: "§164.312(a)(1) access control; (a)(2)(ii) emergency access procedure",
            status,
            evidence,
        })
    }

    /// Per organization, how many enabled people of each role can reach PHI.
    async fn phi_reach_per_org(
        &self,
        orgs: &[OrgId],
        scope: Option<&OrgId>,
    ) -> Result<Vec<String>, VaultError> {
        let users = self.control.users(scope).await?;
        let mut per_org: BTreeMap<&OrgId, BTreeMap<Role, usize>> =
            orgs.iter().map(|o| (o, BTreeMap::new())).collect();
        for u in users.iter().filter(|u| !u.disabled) {
            if self.role_reaches_phi(u.role)
                && let Some(roles) = per_org.get_mut(&u.org)
            {
                *roles.entry(u.role).or_default() += 1;
            }
        }
        Ok(per_org
            .iter()
            .map(|(org, roles)| {
                let counts: Vec<String> = roles.iter().map(|(r, n)| format!("{r} {n}")).collect();
                let counts = if counts.is_empty() {
                    "none".to_owned()
                } else {
                    counts.join(", ")
                };
                format!("{org}: {counts}")
            })
            .collect())
    }
}

/// The live grants that last longer than policy allows, or are of a kind it does not know.
fn grants_too_long(grants: &[GrantRecord]) -> Vec<String> {
    grants
        .iter()
        .filter_map(|g| {
            let lasts = g.expires_at - g.created_at;
            let limit = match g.kind.as_str() {
                "grant" if g.purpose != Purpose::Etreat.as_str() => GRANT_MAX_TOTAL_SECS,
                "break-glass" => BREAK_GLASS_SECS,
                _ => return Some(format!("{} ({}): kind {} not allowed", g.id, g.org, g.kind)),
            };
            (lasts > limit).then(|| {
                format!(
                    "{} {} ({}, {}) lasts {} min, policy {} min",
                    g.kind,
                    g.id,
                    g.org,
                    g.purpose,
                    lasts / 60,
                    limit / 60
                )
            })
        })
        .collect()
}

/// The open break-glass accesses, with the minutes each has left.
fn open_break_glass(grants: &[GrantRecord], now: i64) -> Vec<String> {
    grants
        .iter()
        .filter(|g| g.kind == "break-glass")
        .map(|g| {
            format!(
                "{} ({}, {} min left)",
                g.id,
                g.org,
                (g.expires_at - now) / 60
            )
        })
        .collect()
}
