//! Administering service clients: list them, disable and enable them, rotate a secret, end
//! every token. Who may is decided by the policy ([`crate::policy::admin`]): the operator and
//! an ORG_ADMIN in their organization, a SUPER_ADMIN everywhere; another organization's client
//! gets the answer a missing one gets. Each change commits together with the revocation of the
//! client's tokens, and every token check reads the client and the token from the control
//! store (shared by every node): a disabled or rotated client's old tokens are refused at once,
//! everywhere. Every call is audited.
use crate::audit::AuditEvent;
use crate::error::VaultError;
use crate::policy::admin::{AdminAction, AdminScope, admin_scope};
use crate::{Ctx, Vault};
use phivault_core::{ClientChange, ClientRecord, OrgId, Role, SecretString};
use phivault_crypto::random_token;

/// A service client as administrators see it (never its secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub id: String,
    pub org: OrgId,
    pub name: String,
    pub role: Role,
    pub scopes: String,
    pub purposes: String,
    /// The purpose applied when a call states none, if any.
    pub default_purpose: Option<String>,
    pub disabled: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl From<&ClientRecord> for ClientInfo {
    fn from(c: &ClientRecord) -> Self {
        Self {
            id: c.id.clone(),
            org: c.org.clone(),
            name: c.name.clone(),
            role: c.role,
            scopes: c.scopes.clone(),
            purposes: c.purposes.clone(),
            default_purpose: c.default_purpose.clone(),
            disabled: c.disabled,
            created_at: c.created_at,
        }
    }
}

/// What an administrator does to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAction {
    Disable,
    Enable,
    RotateSecret,
    RevokeTokens,
}

impl ClientAction {
    pub const ALL: [ClientAction; 4] = [
        ClientAction::Disable,
        ClientAction::Enable,
        ClientAction::RotateSecret,
        ClientAction::RevokeTokens,
    ];

    /// `disable`, `enable`, `rotate-secret`, `revoke-tokens`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ClientAction::Disable => "disable",
            ClientAction::Enable => "enable",
            ClientAction::RotateSecret => "rotate-secret",
            ClientAction::RevokeTokens => "revoke-tokens",
        }
    }

    pub fn parse(s: &str) -> Option<ClientAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// What a change did: the tokens it ended and, for a rotation, the new secret (shown once).
#[derive(Debug)]
pub struct ClientChanged {
    pub client: ClientInfo,
    pub tokens_revoked: u64,
    pub new_secret: Option<SecretString>,
}

impl Vault {
    /// Where the policy lets the caller do `action`; a denial is audited and refused.
    pub(crate) async fn admin_scope_or_deny(
        &self,
        ctx: &Ctx,
        action: AdminAction,
        event: &AuditEvent,
    ) -> Result<AdminScope, VaultError> {
        match admin_scope(&ctx.subject, action) {
            Some(scope) => Ok(scope),
            None => self.deny(event, "role").await,
        }
    }

    /// The organization a listing covers: the caller's, or every one (`None`).
    pub(crate) fn listing_org(ctx: &Ctx, scope: AdminScope) -> Option<&OrgId> {
        match scope {
            AdminScope::Everywhere => None,
            AdminScope::OwnOrganization => Some(&ctx.org),
        }
    }

    /// The service clients the caller administers.
    pub async fn list_clients(&self, ctx: &Ctx) -> Result<Vec<ClientInfo>, VaultError> {
        let mut event = self.event(ctx, "client-list");
        let scope = self
            .admin_scope_or_deny(ctx, AdminAction::ListClients, &event)
            .await?;
        let clients = match self.control.clients(Self::listing_org(ctx, scope)).await {
            Ok(c) => c,
            Err(e) => return self.audit_failure(event, e.into()).await,
        };
        event.count = Some(clients.len() as u64);
        self.audit(event).await?;
        Ok(clients.iter().map(ClientInfo::from).collect())
    }

    /// Disables, enables, rotates the secret of, or ends the tokens of a client. Disable,
    /// rotate-secret and revoke-tokens end every token the client holds, in the same commit.
    pub async fn change_client(
        &self,
        ctx: &Ctx,
        client_id: &str,
        action: ClientAction,
    ) -> Result<ClientChanged, VaultError> {
        let mut event = self.event(ctx, &format!("client-{}", action.as_str()));
        event.reason = Some(format!(
            "client:{}",
            client_id.chars().take(64).collect::<String>()
        ));
        let scope = self
            .admin_scope_or_deny(ctx, AdminAction::ChangeClient, &event)
            .await?;
        let client = match self.control.client(client_id).await {
            Ok(Some(c)) if scope == AdminScope::Everywhere || c.org == ctx.org => c,
            // Another organization's client: the same answer as a missing one.
            Ok(_) => return self.audit_failure(event, VaultError::NotFound).await,
            Err(e) => return self.audit_failure(event, e.into()).await,
        };
        event.org = client.org.as_str().to_owned();
        // The account first, as its own events name it (`audit report` matches them).
        event.reason = Some(format!("client:{} id:{}", client.name, client.id));
        let mut new_secret = None;
        let change = match action {
            ClientAction::Disable => ClientChange::Disable,
            ClientAction::Enable => ClientChange::Enable,
            ClientAction::RevokeTokens => ClientChange::RevokeTokens,
            ClientAction::RotateSecret => {
                let secret = SecretString::new(random_token::<32>()?);
                let hash = self.keyring.token_hash("client", secret.expose()).to_vec();
                new_secret = Some(secret);
                ClientChange::Secret(hash)
            }
        };
        let revoked = match self.control.change_client(&client.id, &change).await {
            Ok(Some(n)) => n,
            Ok(None) => return self.audit_failure(event, VaultError::NotFound).await,
            Err(e) => return self.audit_failure(event, e.into()).await,
        };
        event.count = Some(revoked);
        self.audit(event).await?;
        let mut info = ClientInfo::from(&client);
        match action {
            ClientAction::Disable => info.disabled = true,
            ClientAction::Enable => info.disabled = false,
            ClientAction::RotateSecret | ClientAction::RevokeTokens => {}
        }
        Ok(ClientChanged {
            client: info,
            tokens_revoked: revoked,
            new_secret,
        })
    }
}
