//! `phivault client list|disable|enable|rotate-secret|revoke-tokens`, `phivault grants list`
//! and the `user list` output. The vault decides and audits (the operator acts in the
//! organization it chose with `--org`); this file opens the vault as the operator and prints.
use crate::cli::{DirArgs, OrgArgs, ctx, open};
use clap::{Args, Subcommand};
use phivault_vault::policy::grants::GrantListing;
use phivault_vault::{ClientAction, ClientInfo, Ctx, Vault, views};
use serde_json::Value;
use std::process::ExitCode;

/// Where a listing looks, and how it prints.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub org: OrgArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// The client a command acts on, and where.
#[derive(Debug, Args)]
pub struct ClientTarget {
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    org: OrgArgs,
    client_id: String,
}

#[derive(Debug, Subcommand)]
pub enum ClientAdminCmd {
    /// List the organization's clients: id, name, role, scopes, enabled or disabled (never a
    /// secret). JSON: `[{client_id, organization, name, role, scopes, purposes, default_purpose, disabled,
    /// created_at}]`.
    List(ListArgs),
    /// Disable a client: its secret is refused and every token it holds ends at once, on
    /// every node.
    Disable(ClientTarget),
    /// Enable a client again (tokens ended by the disable stay ended).
    Enable(ClientTarget),
    /// A new secret, printed once; the old secret and every token it got stop working at once.
    RotateSecret {
        #[command(flatten)]
        target: ClientTarget,
        /// `{client_id, client_secret, tokens_revoked}`.
        #[arg(long)]
        json: bool,
    },
    /// End every token the client holds; its secret keeps working.
    RevokeTokens(ClientTarget),
}

impl ClientAdminCmd {
    fn place(&self) -> (&DirArgs, &OrgArgs) {
        match self {
            ClientAdminCmd::List(l) => (&l.dir, &l.org),
            ClientAdminCmd::Disable(t)
            | ClientAdminCmd::Enable(t)
            | ClientAdminCmd::RotateSecret { target: t, .. }
            | ClientAdminCmd::RevokeTokens(t) => (&t.dir, &t.org),
        }
    }
}

/// Runs a client administration command.
pub async fn client(cmd: ClientAdminCmd) -> Result<ExitCode, String> {
    let (dir, org) = cmd.place();
    let opened = open(&dir.data_dir).await?;
    let result = async {
        let c = ctx(&opened, org).await?;
        let v = &opened.vault;
        let (t, action, json) = match &cmd {
            ClientAdminCmd::List(l) => return list_clients(v, &c, l.json).await,
            ClientAdminCmd::Disable(t) => (t, ClientAction::Disable, false),
            ClientAdminCmd::Enable(t) => (t, ClientAction::Enable, false),
            ClientAdminCmd::RotateSecret { target, json } => {
                (target, ClientAction::RotateSecret, *json)
            }
            ClientAdminCmd::RevokeTokens(t) => (t, ClientAction::RevokeTokens, false),
        };
        let id = &t.client_id;
        let done = v
            .change_client(&c, id, action)
            .await
            .map_err(|e| e.to_string())?;
        let n = done.tokens_revoked;
        match (&done.new_secret, json) {
            (Some(s), true) => println!(
                "{}",
                serde_json::json!({"client_id": id, "client_secret": s.expose(), "tokens_revoked": n})
            ),
            (Some(s), false) => println!(
                "client_id {id}\nclient_secret {} (shown once: store it in the integration's \
                 secret store; the old secret and its {n} tokens no longer work)",
                s.expose()
            ),
            (None, _) => println!("{} {id}: {n} tokens revoked", action.as_str()),
        }
        Ok(())
    }
    .await;
    opened.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn list_clients(v: &Vault, c: &Ctx, json: bool) -> Result<(), String> {
    let clients = v.list_clients(c).await.map_err(|e| e.to_string())?;
    if json {
        let list: Vec<Value> = clients.iter().map(views::client).collect();
        println!("{}", Value::Array(list));
        return Ok(());
    }
    for ClientInfo {
        id,
        org,
        name,
        role,
        scopes,
        disabled,
        ..
    } in &clients
    {
        let state = if *disabled { "disabled" } else { "enabled" };
        println!("{id}\t{org}\t{name}\t{role}\t{state}\t{scopes}");
    }
    Ok(())
}

/// `grants list`: every live grant and break-glass access of the organization, the patient by
/// its pseudonym only.
pub async fn print_grants(v: &Vault, c: &Ctx, json: bool) -> Result<(), String> {
    let grants = v.list_grants(c).await.map_err(|e| e.to_string())?;
    if json {
        let list: Vec<Value> = grants.iter().map(views::grant).collect();
        println!("{}", Value::Array(list));
        return Ok(());
    }
    for g in &grants {
        let GrantListing {
            username,
            kind,
            purpose,
            patient_pseudonym,
            granted_by,
            ..
        } = g;
        let until = views::time_secs(g.expires_at);
        let until = until.as_str().unwrap_or("?");
        println!(
            "{username:<24} {kind:<12} {purpose:<8} until {until}  patient {patient_pseudonym}  by {granted_by}"
        );
    }
    Ok(())
}

/// `user list`: each person's role, MFA state and last sign-in (`never` before the first).
pub fn print_users(users: &[phivault_vault::auth::UserInfo], json: bool) {
    if json {
        let list: Vec<Value> = users.iter().map(views::user).collect();
        println!("{}", Value::Array(list));
        return;
    }
    for u in users {
        let last = views::time_millis(u.last_login_at);
        println!(
            "{:<24} {:<20} mfa:{:<9} last-sign-in:{:<21}{}{}",
            u.username,
            u.role.as_str(),
            views::mfa_state(u),
            last.as_str().unwrap_or("never"),
            if u.disabled { " disabled" } else { "" },
            if u.must_change_password {
                " must-change-password"
            } else {
                ""
            }
        );
    }
}
