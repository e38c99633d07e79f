//! `phivault client list|disable|enable|rotate-secret|revoke-tokens`, `phivault grants list`
//! and the `user list` output. The vault decides and audits (the operator acts in the
//! organization it chose with `--org`); this file opens the vault as the operator and prints.
use crate::cli::{DirArgs, OrgArgs, ctx, open};
use clap::Subcommand;
use phivault_vault::policy::grants::GrantListing;
use phivault_vault::{ClientAction, ClientInfo, Ctx, Vault, views};
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ClientAdminCmd {
    /// List the organization's clients: id, name, role, scopes, enabled or disabled (never a
    /// secret).
    List {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// `[{client_id, organization, name, role, scopes, purposes, disabled, created_at}]`.
        #[arg(long)]
        json: bool,
    },
    /// Disable a client: its secret is refused and every token it holds ends at once, on
    /// every node.
    Disable {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        client_id: String,
    },
    /// Enable a client again (tokens ended by the disable stay ended).
    Enable {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        client_id: String,
    },
    /// A new secret, printed once; the old secret and every token it got stop working at once.
    RotateSecret {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        client_id: String,
        /// `{client_id, client_secret, tokens_revoked}`.
        #[arg(long)]
        json: bool,
    },
    /// End every token the client holds; its secret keeps working.
    RevokeTokens {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        client_id: String,
    },
}

impl ClientAdminCmd {
    fn place(&self) -> (&DirArgs, &OrgArgs) {
        match self {
            ClientAdminCmd::List { dir, org, .. }
            | ClientAdminCmd::Disable { dir, org, .. }
            | ClientAdminCmd::Enable { dir, org, .. }
            | ClientAdminCmd::RotateSecret { dir, org, .. }
            | ClientAdminCmd::RevokeTokens { dir, org, .. } => (dir, org),
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
        let (id, action, json) = match &cmd {
            ClientAdminCmd::List { json, .. } => return list_clients(v, &c, *json).await,
            ClientAdminCmd::Disable { client_id, .. } => (client_id, ClientAction::Disable, false),
            ClientAdminCmd::Enable { client_id, .. } => (client_id, ClientAction::Enable, false),
            ClientAdminCmd::RotateSecret {
                client_id, json, ..
            } => (client_id, ClientAction::RotateSecret, *json),
            ClientAdminCmd::RevokeTokens { client_id, .. } => {
                (client_id, ClientAction::RevokeTokens, false)
            }
        };
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
