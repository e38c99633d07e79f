//! `phivault client add|list|disable|enable|rotate-secret|revoke-tokens`: service clients
//! (OAuth2 client credentials). The vault decides and audits (the operator acts in the
//! organization it chose with `--org`); this file opens the vault as the operator and prints.
use super::{DirArgs, ListArgs, OrgArgs, in_org, parse_role};
use clap::{Args, Subcommand};
use phivault_vault::{ClientAction, ClientInfo, Ctx, Vault, views};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    /// Register a client; prints its id and secret (the secret is shown once).
    Add(AddArgs),
    #[command(flatten)]
    Manage(ClientAdminCmd),
}

// `phivault client add` (its help is the doc comment of `ClientCmd::Add`).
#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    org: OrgArgs,
    #[arg(long)]
    name: String,
    /// The client's role (e.g. INTEGRATION_MANAGER).
    #[arg(long)]
    role: String,
    /// Space-separated SMART v2 system scopes, e.g. "system/Patient.rs system/Observation.crs".
    #[arg(long)]
    scopes: String,
    /// Space-separated purposes of use the client acts for (default "TREAT HOPERAT").
    #[arg(long)]
    purposes: Option<String>,
    /// The purpose of use applied when a call sends no `X-Purpose-Of-Use` header (one of
    /// `--purposes`, e.g. TREAT); without it such calls are refused.
    #[arg(long)]
    default_purpose: Option<String>,
    #[arg(long)]
    json: bool,
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

/// Runs a client command.
pub async fn run(what: ClientCmd) -> Result<ExitCode, String> {
    match what {
        ClientCmd::Add(a) => add(a).await,
        ClientCmd::Manage(cmd) => manage(cmd).await,
    }
}

/// `client add`: prints the new client's id and secret (once).
async fn add(a: AddArgs) -> Result<ExitCode, String> {
    let AddArgs {
        dir,
        org,
        name,
        role,
        scopes,
        purposes,
        default_purpose,
        json,
    } = a;
    let role = parse_role(&role)?;
    let n = in_org(&dir.data_dir, &org, async |opened, c| {
        let o = c.org().clone();
        let purposes = phivault_vault::auth::ClientPurposes {
            list: purposes.as_deref(),
            default: default_purpose.as_deref(),
        };
        opened
            .vault
            .add_client_with(c, &o, &name, role, &scopes, purposes)
            .await
    })
    .await?;
    if json {
        println!(
            "{}",
            json!({"client_id": n.client_id, "client_secret": n.client_secret.expose()})
        );
    } else {
        println!(
            "client_id {}\nclient_secret {} (shown once: store it in the integration's secret store)",
            n.client_id,
            n.client_secret.expose()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `client list|disable|enable|rotate-secret|revoke-tokens`.
async fn manage(cmd: ClientAdminCmd) -> Result<ExitCode, String> {
    let (dir, org) = cmd.place();
    in_org(&dir.data_dir, org, async |opened, c| {
        let v = &opened.vault;
        let (t, action, json) = match &cmd {
            ClientAdminCmd::List(l) => return list_clients(v, c, l.json).await,
            ClientAdminCmd::Disable(t) => (t, ClientAction::Disable, false),
            ClientAdminCmd::Enable(t) => (t, ClientAction::Enable, false),
            ClientAdminCmd::RotateSecret { target, json } => {
                (target, ClientAction::RotateSecret, *json)
            }
            ClientAdminCmd::RevokeTokens(t) => (t, ClientAction::RevokeTokens, false),
        };
        let id = &t.client_id;
        let done = v
            .change_client(c, id, action)
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
    })
    .await
    .map(|()| ExitCode::SUCCESS)
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
