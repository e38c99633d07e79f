//! Service clients for integrations: OAuth2 client credentials (RFC 6749 §4.4). The secret is
//! shown once and stored as a keyed hash; tokens are short-lived bearers limited to the scopes
//! asked for, which must be within the client's own (SMART v2 style, e.g. `system/Patient.rs`).
use super::{IssuedToken, Principal, unauthenticated};
use crate::error::VaultError;
use crate::policy::admin::{AdminAction, AdminScope, client_role_allowed};
use crate::{Actor, Ctx, Vault};
use phivault_core::{ClientRecord, OrgId, Role, SecretString};
use phivault_crypto::{random_token, random_uuid};

/// One SMART v2 system scope: `system/<ResourceType|*>.<c r u d s letters>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub resource: String,
    pub actions: String,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        let rest = s.strip_prefix("system/")?;
        let (resource, actions) = rest.split_once('.')?;
        let resource_ok = resource == "*" || phivault_core::ResourceType::parse(resource).is_ok();
        let mut last = 0;
        let order = "cruds";
        let actions_ok = !actions.is_empty()
            && actions.chars().all(|c| match order.find(c) {
                Some(i) if i >= last => {
                    last = i + 1;
                    true
                }
                _ => false,
            });
        (resource_ok && actions_ok).then(|| Scope {
            resource: resource.to_owned(),
            actions: actions.to_owned(),
        })
    }

    /// Whether this scope covers `action` (one of c r u d s) on `resource`.
    pub fn allows(&self, resource: &str, action: char) -> bool {
        (self.resource == "*" || self.resource == resource) && self.actions.contains(action)
    }

    /// Whether this scope is within `other`.
    pub fn within(&self, other: &Scope) -> bool {
        (other.resource == "*" || other.resource == self.resource)
            && self.actions.chars().all(|a| other.actions.contains(a))
    }
}

/// Parses a space-separated scope list; every scope must be valid.
pub fn parse_scopes(s: &str) -> Result<Vec<Scope>, VaultError> {
    let scopes: Vec<&str> = s.split_whitespace().collect();
    if scopes.is_empty() {
        return Err(VaultError::Invalid("give at least one scope".into()));
    }
    scopes
        .into_iter()
        .map(|x| {
            Scope::parse(x).ok_or_else(|| {
                VaultError::Invalid(format!(
                    "invalid scope '{}': use system/<ResourceType or *>.<cruds>",
                    x.chars().take(60).collect::<String>()
                ))
            })
        })
        .collect()
}

/// Whether a principal's scopes allow `action` on `resource` (people have no scopes: their
/// role decides).
pub fn scopes_allow(scopes: &[String], resource: &str, action: char) -> bool {
    scopes
        .iter()
        .filter_map(|s| Scope::parse(s))
        .any(|s| s.allows(resource, action))
}

/// A new client's credentials, the secret shown once.
#[derive(Debug)]
pub struct NewClient {
    pub client_id: String,
    pub client_secret: SecretString,
}

/// The purposes of use of a new client: the list it acts for (default "TREAT HOPERAT") and the
/// one applied when a call states none (must be in the list; none by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientPurposes<'a> {
    pub list: Option<&'a str>,
    pub default: Option<&'a str>,
}

impl Vault {
    /// Registers a service client with no default purpose (see [`Vault::add_client_with`]).
    pub async fn add_client(
        &self,
        ctx: &Ctx,
        org: &OrgId,
        name: &str,
        role: Role,
        scopes: &str,
        purposes: Option<&str>,
    ) -> Result<NewClient, VaultError> {
        let purposes = ClientPurposes {
            list: purposes,
            default: None,
        };
        self.add_client_with(ctx, org, name, role, scopes, purposes)
            .await
    }

    /// Registers a service client, with its purposes of use and optional default purpose.
    pub async fn add_client_with(
        &self,
        ctx: &Ctx,
        org: &OrgId,
        name: &str,
        role: Role,
        scopes: &str,
        purposes: ClientPurposes<'_>,
    ) -> Result<NewClient, VaultError> {
        let mut event = self.event(ctx, "client-add");
        event.reason = Some(format!("client:{name} role:{role}"));
        let scope = self
            .admin_scope_or_deny(ctx, AdminAction::ChangeClient, &event)
            .await?;
        if scope == AdminScope::OwnOrganization && org != &ctx.org {
            return self.deny(&event, "other-organization").await;
        }
        if !crate::policy::admin::client_role_allowed(role) {
            let mut denied = event.clone();
            denied.outcome = crate::audit::Outcome::Denied;
            denied.reason = Some(format!("client-role:{role}"));
            self.audit(denied).await?;
            return Err(VaultError::Invalid(format!(
                "a service client cannot be {role}: administering people needs a person who \
                 signs in with MFA (use `phivault user add`); clients are INTEGRATION_MANAGER, \
                 VIEWER or AUDITOR"
            )));
        }
        if name.trim().is_empty() || name.len() > 100 {
            let e = VaultError::Invalid("a client name is 1-100 characters".into());
            return self.audit_failure(event, e).await;
        }
        let parsed = match parse_scopes(scopes) {
            Ok(p) => p,
            Err(e) => return self.audit_failure(event, e).await,
        };
        let (purposes, default_purpose) = match super::purpose::client_purposes(purposes) {
            Ok(p) => p,
            Err(e) => return self.audit_failure(event, e).await,
        };
        let normalized: Vec<String> = parsed
            .iter()
            .map(|s| format!("system/{}.{}", s.resource, s.actions))
            .collect();
        let secret = SecretString::new(random_token::<32>()?);
        let client = ClientRecord {
            id: format!("pvc-{}", random_uuid()?),
            org: org.clone(),
            name: name.to_owned(),
            role,
            scopes: normalized.join(" "),
            purposes,
            default_purpose,
            secret_hash: self.keyring.token_hash("client", secret.expose()).to_vec(),
            disabled: false,
            created_at: self.clock.now_millis(),
        };
        if !self.control.create_client(&client).await? {
            let e = VaultError::Invalid("client id collision; try again".into());
            return self.audit_failure(event, e).await;
        }
        self.audit(event).await?;
        Ok(NewClient {
            client_id: client.id,
            client_secret: secret,
        })
    }

    /// The client-credentials grant: a bearer for the requested scopes (all of the client's
    /// when none are asked for). Unknown client and wrong secret fail alike.
    pub async fn issue_client_token(
        &self,
        ctx: &Ctx,
        client_id: &str,
        client_secret: &SecretString,
        requested: Option<&str>,
    ) -> Result<(IssuedToken, String), VaultError> {
        let client = self.control.client(client_id).await?;
        let actor = client.as_ref().map_or("client:(unknown)".to_owned(), |c| {
            format!("client:{}", c.name)
        });
        let mut event = self.event(ctx, "token");
        event.actor = actor;
        let hash = self.keyring.token_hash("client", client_secret.expose());
        let client = match client {
            Some(c) if Self::client_accepts(&c, &hash) => c,
            _ => {
                return self
                    .audit_failure(event, unauthenticated("bad client credentials"))
                    .await;
            }
        };
        event.org = client.org.as_str().to_owned();
        let own = parse_scopes(&client.scopes)?;
        let granted = match requested.map(str::trim).filter(|r| !r.is_empty()) {
            None => client.scopes.clone(),
            Some(r) => {
                let asked = match parse_scopes(r) {
                    Ok(a) => a,
                    Err(e) => return self.audit_failure(event, e).await,
                };
                if !asked.iter().all(|a| own.iter().any(|o| a.within(o))) {
                    let e = VaultError::Invalid("invalid_scope: beyond the client's scopes".into());
                    return self.audit_failure(event, e).await;
                }
                asked
                    .iter()
                    .map(|s| format!("system/{}.{}", s.resource, s.actions))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let ttl = self.auth_policy.service_token_ttl;
        let token = self
            .new_token("bearer", &client.id, &client.org, ttl, &granted, None)
            .await?;
        // A disable or rotation that committed between the check above and the token's
        // insert revoked the tokens before this one existed: check again, and revoke it.
        let still = self.control.client(&client.id).await?;
        if !still.is_some_and(|c| Self::client_accepts(&c, &hash)) {
            let token_hash = self.keyring.token_hash("bearer", token.expose());
            self.control.revoke_session(&token_hash).await?;
            return self
                .audit_failure(event, unauthenticated("bad client credentials"))
                .await;
        }
        event.reason = Some(format!("scope:{granted}"));
        self.audit(event).await?;
        Ok((
            IssuedToken {
                token,
                expires_in: ttl,
            },
            granted,
        ))
    }

    /// Whether a client takes this secret: enabled, a role a client may hold, the secret's
    /// hash (compared in constant time).
    fn client_accepts(c: &ClientRecord, hash: &[u8]) -> bool {
        !c.disabled
            && client_role_allowed(c.role)
            && phivault_crypto::aead::ct_eq(&c.secret_hash, hash)
    }

    /// A service bearer token → its client principal (with the token's scopes).
    pub(crate) async fn authenticate_bearer(&self, token: &str) -> Result<Principal, VaultError> {
        let s = self.token_record("bearer", token).await?;
        let c = self
            .control
            .client(&s.subject)
            .await?
            .ok_or(unauthenticated("client gone"))?;
        if c.disabled {
            return Err(unauthenticated("client disabled"));
        }
        if !client_role_allowed(c.role) {
            // A row from before the rule: no client administers people.
            return Err(unauthenticated("client role not allowed"));
        }
        Ok(Principal {
            actor: Actor::Client {
                id: c.id.clone(),
                name: c.name.clone(),
            },
            org: c.org.clone(),
            role: c.role,
            scopes: s.scopes.split_whitespace().map(str::to_owned).collect(),
            purposes: c.purposes.split_whitespace().map(str::to_owned).collect(),
            default_purpose: c
                .default_purpose
                .map(|d| (d, super::PurposeSource::ClientDefault)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_nest() {
        let s = Scope::parse("system/Patient.rs").unwrap();
        assert!(s.allows("Patient", 'r') && s.allows("Patient", 's'));
        assert!(!s.allows("Patient", 'c') && !s.allows("Observation", 'r'));
        let all = Scope::parse("system/*.cruds").unwrap();
        assert!(s.within(&all) && !all.within(&s));
        for bad in [
            "system/Patient",
            "user/Patient.r",
            "system/Nope.r",
            "system/Patient.sr",
            "system/Patient.x",
            "system/Patient.",
        ] {
            assert!(Scope::parse(bad).is_none(), "{bad}");
        }
        assert!(scopes_allow(
            &["system/Observation.crs".into()],
            "Observation",
            'c'
        ));
        assert!(!scopes_allow(
            &["system/Observation.crs".into()],
            "Observation",
            'd'
        ));
    }
}
