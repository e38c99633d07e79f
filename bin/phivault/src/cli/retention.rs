//! `phivault retention`: an organization's retention rules, and the run that erases what they
//! say has expired (crypto-shredding, audited, tombstones recorded), with a dry run that lists
//! the same records first. Also the schedule `serve` runs (`PHIVAULT_RETENTION_INTERVAL`).
//! The vault decides and does the work; this file parses, opens the vault and prints. Output
//! names records by type and pseudonymous row id only.
use super::{DirArgs, OrgArgs};
use std::sync::Arc;

use crate::datadir::Opened;
use clap::{Args, Subcommand};
use phivault_core::{OrgId, ResourceType};
use phivault_vault::Vault;
use phivault_vault::ops::retention::{
    RetentionAnchor, RetentionItem, RetentionReport, RetentionRule,
};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum RetentionCmd {
    /// Set (or replace) the organization's rule for a resource type: `--type Patient` erases
    /// whole patients (with all their records), any other type single records, once their
    /// anchor is more than --years old.
    Set {
        #[command(flatten)]
        target: RuleTarget,
        /// Years to keep after the anchor (1 to 200).
        #[arg(long)]
        years: u32,
        /// last-encounter (the patient's most recent Encounter; without one, its last update)
        /// or last-update (the record's own). Default: last-encounter for Patient, last-update
        /// for every other type.
        #[arg(long)]
        after: Option<String>,
    },
    /// List the rules (of one organization with --org, else of every one).
    List {
        #[command(flatten)]
        dir: DirArgs,
        /// Only this organization.
        #[arg(long, env = "PHIVAULT_ORG")]
        org: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove the organization's rule for a resource type.
    Remove {
        #[command(flatten)]
        target: RuleTarget,
    },
    /// Erase by crypto-shredding every record the rules say has expired (of one organization
    /// with --org, else of every one), printing what was erased; --dry-run only lists it.
    Run {
        #[command(flatten)]
        dir: DirArgs,
        /// Only this organization.
        #[arg(long, env = "PHIVAULT_ORG")]
        org: Option<String>,
        /// List what would be erased and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// `{"dry_run", "items": [{"org", "resource_type", "id", "rule", "age_days",
        /// "records"}], …}`.
        #[arg(long)]
        json: bool,
    },
}

/// Which rule: the data dir, the organization, the resource type.
#[derive(Debug, Args)]
pub struct RuleTarget {
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    org: OrgArgs,
    /// A FHIR resource type, e.g. Patient or Observation, or `hl7-error` for the sealed HL7
    /// error queue (entries expire by their last attempt).
    #[arg(long = "type")]
    rtype: String,
}

fn parse_type(s: &str) -> Result<ResourceType, String> {
    ResourceType::parse_stored(s).map_err(|e| format!("--type: {e}"))
}

/// The organizations a command covers: the one named, or every one.
async fn orgs(opened: &Opened, org: Option<&str>) -> Result<Vec<OrgId>, String> {
    match org {
        Some(o) => Ok(vec![opened.org(Some(o)).await.map_err(|e| e.to_string())?]),
        None => Ok(opened
            .vault
            .organizations()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|o| o.id)
            .collect()),
    }
}

fn item_json(org: &OrgId, i: &RetentionItem) -> Value {
    json!({"org": org.as_str(), "resource_type": i.rtype.as_str(), "id": i.id.as_str(),
           "rule": i.rule, "age_days": i.age_days, "records": i.records})
}

fn item_line(org: &OrgId, i: &RetentionItem) -> String {
    let with = match i.records {
        0 => String::new(),
        n => format!(" with {n} clinical records"),
    };
    format!(
        "{org} {}/{} ({}; {} days){with}",
        i.rtype, i.id, i.rule, i.age_days
    )
}

pub async fn run(cmd: RetentionCmd) -> Result<ExitCode, String> {
    let dir = match &cmd {
        RetentionCmd::Set { target, .. } | RetentionCmd::Remove { target } => {
            target.dir.data_dir.clone()
        }
        RetentionCmd::List { dir, .. } | RetentionCmd::Run { dir, .. } => dir.data_dir.clone(),
    };
    let opened = super::open(&dir).await?;
    let result = run_on(&opened, cmd).await;
    opened.close().await;
    result
}

async fn run_on(opened: &Opened, cmd: RetentionCmd) -> Result<ExitCode, String> {
    let vault = &opened.vault;
    match cmd {
        RetentionCmd::Set {
            target,
            years,
            after,
        } => {
            let rtype = parse_type(&target.rtype)?;
            let after = match after.as_deref() {
                None => RetentionAnchor::default_for(rtype),
                Some(a) => {
                    RetentionAnchor::parse(a).ok_or("--after is last-encounter or last-update")?
                }
            };
            let rule = RetentionRule::new(rtype, years, after).map_err(|e| e.to_string())?;
            let ctx = super::ctx(opened, &target.org).await?;
            vault
                .set_retention_rule(&ctx, rule)
                .await
                .map_err(|e| e.to_string())?;
            println!("{}: {}", ctx.org(), rule.label());
            Ok(ExitCode::SUCCESS)
        }
        RetentionCmd::Remove { target } => {
            let rtype = parse_type(&target.rtype)?;
            let ctx = super::ctx(opened, &target.org).await?;
            let removed = vault
                .remove_retention_rule(&ctx, rtype)
                .await
                .map_err(|e| e.to_string())?;
            if !removed {
                return Err(format!("{} has no retention rule for {rtype}", ctx.org()));
            }
            println!("{}: removed the rule for {rtype}", ctx.org());
            Ok(ExitCode::SUCCESS)
        }
        RetentionCmd::List { org, json, .. } => list(opened, org.as_deref(), json).await,
        RetentionCmd::Run {
            org, dry_run, json, ..
        } => run_rules(opened, org.as_deref(), dry_run, json).await,
    }
}

/// `retention list`: the rules of one organization, or of every one.
async fn list(opened: &Opened, org: Option<&str>, json: bool) -> Result<ExitCode, String> {
    let vault = &opened.vault;
    let mut rows = Vec::new();
    for org in orgs(opened, org).await? {
        let rules = vault
            .retention_rules(&opened.operator.ctx(org.clone()))
            .await
            .map_err(|e| e.to_string())?;
        rows.extend(rules.into_iter().map(|r| (org.clone(), r)));
    }
    if json {
        let list: Vec<Value> = rows
            .iter()
            .map(|(o, r)| {
                json!({"org": o.as_str(), "type": r.rtype.as_str(),
                                 "years": r.years, "after": r.after.as_str(),
                                 "rule": r.label()})
            })
            .collect();
        println!("{}", json!({"rules": list}));
    } else if rows.is_empty() {
        println!("no retention rules: nothing is erased by retention");
    } else {
        for (o, r) in &rows {
            println!("{o} {}", r.label());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `retention run`: erases (or with `dry_run` lists) what the rules say has expired.
async fn run_rules(
    opened: &Opened,
    org: Option<&str>,
    dry_run: bool,
    json: bool,
) -> Result<ExitCode, String> {
    let vault = &opened.vault;
    let mut items: Vec<(OrgId, RetentionItem)> = Vec::new();
    let mut total = RetentionReport::default();
    for org in orgs(opened, org).await? {
        let ctx = opened.operator.ctx(org.clone());
        let listed = if dry_run {
            vault.retention_plan(&ctx).await
        } else {
            vault.retention_run(&ctx).await.map(|r| {
                total.patients += r.patients;
                total.records += r.records;
                total.versions_destroyed += r.versions_destroyed;
                r.items
            })
        }
        .map_err(|e| e.to_string())?;
        items.extend(listed.into_iter().map(|i| (org.clone(), i)));
    }
    print_run(&items, dry_run, json, &total);
    Ok(ExitCode::SUCCESS)
}

fn print_run(items: &[(OrgId, RetentionItem)], dry_run: bool, json: bool, total: &RetentionReport) {
    if json {
        let list: Vec<Value> = items.iter().map(|(o, i)| item_json(o, i)).collect();
        let out = if dry_run {
            json!({"dry_run": true, "items": list})
        } else {
            json!({"dry_run": false, "items": list, "patients": total.patients,
                   "records": total.records, "versions_destroyed": total.versions_destroyed})
        };
        println!("{out}");
        return;
    }
    for (o, i) in items {
        println!("{}", item_line(o, i));
    }
    if dry_run {
        println!(
            "dry run: {} would be erased; nothing was changed",
            items.len()
        );
    } else {
        println!(
            "erased {} patients and {} records ({} versions destroyed with their keys)",
            total.patients, total.records, total.versions_destroyed
        );
    }
}

/// The retention schedule of `serve`: `PHIVAULT_RETENTION_INTERVAL` (`90s`, `30m`, `24h`,
/// `7d`; unset or `off`: no schedule).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub interval: std::time::Duration,
}

impl Schedule {
    pub fn from_env() -> Result<Option<Schedule>, String> {
        match std::env::var("PHIVAULT_RETENTION_INTERVAL") {
            Err(_) => Ok(None),
            Ok(s) if s.trim().is_empty() || s.trim() == "off" => Ok(None),
            Ok(s) => crate::backup::parse_interval(&s)
                .map(|interval| Some(Schedule { interval }))
                .map_err(|e| format!("PHIVAULT_RETENTION_INTERVAL: {e}")),
        }
    }

    /// Runs forever: every `interval`, the retention run of every organization, as the
    /// operator who started the server. Logs counts only.
    pub async fn run(self, vault: Vault, op: Arc<phivault_vault::Operator>) {
        loop {
            tokio::time::sleep(self.interval).await;
            let orgs = match vault.organizations().await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "retention run skipped");
                    continue;
                }
            };
            for org in orgs {
                let ctx = op.ctx(org.id.clone());
                match vault.retention_run(&ctx).await {
                    Ok(r) => tracing::info!(
                        org = %org.id,
                        patients = r.patients,
                        records = r.records,
                        versions_destroyed = r.versions_destroyed,
                        "retention run"
                    ),
                    Err(e) => tracing::warn!(org = %org.id, error = %e, "retention run failed"),
                }
            }
        }
    }
}
