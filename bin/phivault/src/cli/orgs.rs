//! `phivault org add|list|default-purpose`: organizations (tenants). The vault decides and
//! audits; this file opens the vault as the operator and prints.
use super::{DirArgs, OrgArgs, ctx, open, parse_role, vault_err};
use crate::datadir::Opened;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum OrgCmd {
    /// Add an organization; users, clients and patients of one never see another's.
    Add {
        #[command(flatten)]
        dir: DirArgs,
        /// Its id (letters, digits, '-', '_').
        id: String,
        /// A display name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the organizations.
    List {
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Set the organization's default purpose of use for people of a role who choose none at
    /// sign-in (their calls then need no X-Purpose-Of-Use header), or clear it.
    DefaultPurpose {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// The role, e.g. CLINICIAN.
        #[arg(long)]
        role: String,
        /// An HL7 PurposeOfUse code the role may act for, e.g. TREAT.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        purpose: Option<String>,
        /// Remove the default: people of the role must state a purpose.
        #[arg(long)]
        clear: bool,
    },
}

/// Runs an organization command.
pub async fn run(what: OrgCmd) -> Result<ExitCode, String> {
    let dir = match &what {
        OrgCmd::Add { dir, .. } | OrgCmd::List { dir } | OrgCmd::DefaultPurpose { dir, .. } => {
            dir.data_dir.clone()
        }
    };
    let opened = open(&dir).await?;
    let result = run_on(&opened, what).await;
    opened.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn run_on(opened: &Opened, what: OrgCmd) -> Result<(), String> {
    match what {
        OrgCmd::Add { id, name, .. } => {
            let org = phivault_core::OrgId::parse(&id).map_err(|e| e.to_string())?;
            let c = opened.operator.ctx(org.clone());
            opened
                .vault
                .create_organization(&c, &org, name.as_deref().unwrap_or(&id))
                .await
                .map_err(|e| vault_err(&e))?;
            println!("added organization {org}");
        }
        OrgCmd::List { .. } => {
            for o in opened
                .vault
                .organizations()
                .await
                .map_err(|e| vault_err(&e))?
            {
                println!("{}\t{}", o.id, o.name);
            }
        }
        OrgCmd::DefaultPurpose {
            org, role, purpose, ..
        } => {
            let role = parse_role(&role)?;
            let c = ctx(opened, &org).await?;
            let o = c.org().clone();
            let set = opened
                .vault
                .set_role_default_purpose(&c, &o, role, purpose.as_deref())
                .await
                .map_err(|e| vault_err(&e))?;
            let set = set.as_deref().unwrap_or("none");
            println!("default purpose of {role} in {o}: {set}");
        }
    }
    Ok(())
}
