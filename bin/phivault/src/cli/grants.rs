//! `phivault grants add|lockdown|list|care-team-rule`: need-to-know grants. The vault decides
//! and audits; this file opens the vault as the operator and prints.
use super::{DirArgs, ListArgs, OrgArgs, ctx, open, vault_err};
use clap::Subcommand;
use phivault_core::ResourceId;
use phivault_vault::policy::grants::GrantListing;
use phivault_vault::{Ctx, Vault, views};
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum GrantsCmd {
    /// Give (or renew) a nurse or clinician need-to-know access to a patient.
    Add {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        #[arg(long)]
        username: String,
        /// The Patient id.
        #[arg(long)]
        patient: String,
        /// HL7 purpose of use, e.g. TREAT.
        #[arg(long, default_value = "TREAT")]
        purpose: String,
        /// 1 to 60 (renewals extend it, up to 8 hours from the first grant).
        #[arg(long, default_value_t = 60)]
        minutes: i64,
    },
    /// Revoke every grant and break-glass access of the organization at once.
    Lockdown {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// List every live grant and break-glass access: who, which patient (by pseudonym only),
    /// for what, until when. JSON: `[{id, organization, username, patient_pseudonym, purpose,
    /// kind, granted_by, created_at, expires_at}]`.
    List(ListArgs),
    /// Let integrations grant the clinician a message names (e.g. an ADT's attending doctor).
    CareTeamRule {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// on or off
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

/// Runs a grants command.
pub async fn run(what: GrantsCmd) -> Result<ExitCode, String> {
    let (dir, org) = match &what {
        GrantsCmd::Add { dir, org, .. }
        | GrantsCmd::List(ListArgs { dir, org, .. })
        | GrantsCmd::Lockdown { dir, org }
        | GrantsCmd::CareTeamRule { dir, org, .. } => (dir.data_dir.clone(), org.org.clone()),
    };
    let opened = open(&dir).await?;
    let result = async {
        let c = ctx(&opened, &OrgArgs { org }).await?;
        match what {
            GrantsCmd::Add {
                username,
                patient,
                purpose,
                minutes,
                ..
            } => {
                let patient = ResourceId::parse(&patient).map_err(|e| e.to_string())?;
                let purpose = phivault_vault::policy::Purpose::parse(&purpose)
                    .ok_or("unknown purpose of use (TREAT, HPAYMT, HOPERAT, …)")?;
                let g = opened
                    .vault
                    .grant_access(&c, &username, &patient, purpose, Some(minutes * 60))
                    .await
                    .map_err(|e| vault_err(&e))?;
                println!(
                    "{} may access Patient/{} for {} until {} (unix time)",
                    g.username, patient, g.purpose, g.expires_at
                );
            }
            GrantsCmd::List(ListArgs { json, .. }) => {
                print_grants(&opened.vault, &c, json).await?;
            }
            GrantsCmd::Lockdown { .. } => {
                let n = opened.vault.lockdown(&c).await.map_err(|e| vault_err(&e))?;
                println!("lockdown: {n} live grants revoked");
            }
            GrantsCmd::CareTeamRule { state, .. } => {
                opened
                    .vault
                    .set_care_team_rule(&c, state == "on")
                    .await
                    .map_err(|e| vault_err(&e))?;
                println!("care-team rule {state}");
            }
        }
        Ok::<(), String>(())
    }
    .await;
    opened.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// `grants list`: every live grant and break-glass access of the organization, the patient by
/// its pseudonym only.
async fn print_grants(v: &Vault, c: &Ctx, json: bool) -> Result<(), String> {
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
