//! The compliance report: each HIPAA safeguard phivault implements, measured from the running
//! system — stored rows opened and inspected, the schema read from the database's catalogue,
//! the audit chain verified, users, grants and keys read from the control store, the TLS
//! listener handshaken with. Nothing is assumed: change the system and the check changes.
//!
//! Evidence holds counts, policy values, pseudonymous row ids, usernames, grant ids and codes;
//! never a PHI value, a key or a token.
mod people;
mod records;
mod system;
#[cfg(test)]
mod tests;
pub mod transport;

use crate::error::VaultError;
use crate::policy::Subject;
use crate::{Ctx, Vault};
use phivault_core::{OrgId, Role};
use serde::Serialize;
use std::fmt::Write as _;

pub use transport::{
    TlsMeasurement, TlsTrial, TlsVersion, TransportEvidence, TransportSource, TrialOutcome,
};

/// Settings key of the time of the last verified backup: milliseconds since the Unix epoch
/// (decimal) or RFC 3339. `phivault backup verify` (issue 9) writes it after a successful
/// restore test; [`Vault::record_verified_backup`] is the call to do so.
pub const LAST_VERIFIED_BACKUP_AT: &str = "last_verified_backup_at";
/// Settings key of the last audit checkpoint taken (`SEQ:MAC`), written by
/// [`Vault::audit_checkpoint`].
pub const AUDIT_CHECKPOINT: &str = "audit_checkpoint";
/// Settings key of when that checkpoint was taken (milliseconds since the Unix epoch).
pub const AUDIT_CHECKPOINT_AT: &str = "audit_checkpoint_at";
/// Settings key naming the root key provider (`keyfile`, `pkcs11`), written by `init`.
pub const ROOT_KEY_PROVIDER: &str = "root_key_provider";

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One measured safeguard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: &'static str,
    /// The HIPAA paragraph, e.g. "§164.312(b) audit controls".
    pub safeguard: &'static str,
    pub status: Status,
    /// What was measured: counts, ages, policy values, pseudonymous ids. Never PHI.
    pub evidence: String,
}

/// The report: `{"checks": [{"id", "safeguard", "status", "evidence"}, …]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// How many checks have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// A readable table: one row per check, its evidence wrapped below it.
    pub fn to_text(&self) -> String {
        let mut s = format!("{:<23} {:<6} {}\n", "CHECK", "STATUS", "SAFEGUARD");
        for c in &self.checks {
            let _ = writeln!(
                s,
                "{:<23} {:<6} {}",
                c.id,
                c.status.as_str().to_uppercase(),
                c.safeguard
            );
            for line in wrap(&c.evidence, 92) {
                let _ = writeln!(s, "    {line}");
            }
        }
        let _ = writeln!(
            s,
            "{} pass, {} warn, {} fail",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.count(Status::Fail)
        );
        s
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The thresholds the checks compare against, from the control store's settings
/// (`compliance.<name>`), with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompliancePolicy {
    /// The current key-encryption key may be at most this old (days).
    pub kek_max_age_days: u32,
    /// The last audit checkpoint may be at most this old (days).
    pub checkpoint_max_age_days: u32,
    /// The last verified backup may be at most this old (days).
    pub backup_max_age_days: u32,
    /// An enabled account without a login for longer than this is inactive (days).
    pub inactive_account_days: u32,
    /// Record versions opened per store (encryption at rest, integrity).
    pub sample_size: u32,
}

impl Default for CompliancePolicy {
    fn default() -> Self {
        Self {
            kek_max_age_days: 365,
            checkpoint_max_age_days: 7,
            backup_max_age_days: 7,
            inactive_account_days: 90,
            sample_size: 10_000,
        }
    }
}

/// The policy's names, their bounds, and where each lives in the struct.
type Field = fn(&mut CompliancePolicy) -> &mut u32;
const POLICY_FIELDS: [(&str, u32, u32, Field); 5] = [
    ("kek_max_age_days", 0, 36_500, |p| &mut p.kek_max_age_days),
    ("checkpoint_max_age_days", 0, 36_500, |p| {
        &mut p.checkpoint_max_age_days
    }),
    ("backup_max_age_days", 0, 36_500, |p| {
        &mut p.backup_max_age_days
    }),
    ("inactive_account_days", 0, 36_500, |p| {
        &mut p.inactive_account_days
    }),
    ("sample_size", 1, 1_000_000, |p| &mut p.sample_size),
];

fn policy_setting(name: &str) -> String {
    format!("compliance.{name}")
}

impl CompliancePolicy {
    /// `(name, value)` of every setting.
    pub fn entries(&self) -> Vec<(&'static str, u32)> {
        let mut copy = *self;
        POLICY_FIELDS
            .iter()
            .map(|(name, _, _, field)| (*name, *field(&mut copy)))
            .collect()
    }
}

/// Which organizations a caller may see in the report: all (operator, SUPER_ADMIN) or its own
/// (AUDITOR); `Err` for everyone else.
fn scope_of(ctx: &Ctx) -> Result<Option<OrgId>, ()> {
    let role = match &ctx.subject {
        Subject::Operator => return Ok(None),
        Subject::User(role) | Subject::Client { role, .. } => *role,
        Subject::Nobody => return Err(()),
    };
    match role {
        Role::SuperAdmin => Ok(None),
        Role::Auditor => Ok(Some(ctx.org.clone())),
        Role::OrgAdmin
        | Role::IntegrationManager
        | Role::Viewer
        | Role::Clinician
        | Role::Nurse => Err(()),
    }
}

/// Milliseconds as a short age: "42 s", "5 min", "3 h", "12 days".
pub(crate) fn age_text(millis: i64) -> String {
    let s = millis.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

pub(crate) const DAY_MILLIS: i64 = 86_400_000;

/// Whether `age_millis` is beyond a limit of `days`.
pub(crate) fn older_than(age_millis: i64, days: u32) -> bool {
    age_millis > i64::from(days) * DAY_MILLIS
}

/// Up to `n` names, then "and N more".
pub(crate) fn some_of(names: &[String], n: usize) -> String {
    let shown: Vec<&str> = names.iter().take(n).map(String::as_str).collect();
    let mut s = shown.join(", ");
    if names.len() > n {
        let _ = write!(s, " and {} more", names.len() - n);
    }
    s
}

impl Vault {
    /// The same vault, reporting on the TLS listener through `source`.
    pub fn with_transport(mut self, source: std::sync::Arc<dyn TransportSource>) -> Self {
        self.transport = Some(source);
        self
    }

    /// The compliance thresholds now in force.
    pub async fn compliance_policy(&self) -> Result<CompliancePolicy, VaultError> {
        let mut p = CompliancePolicy::default();
        for (name, _, _, field) in POLICY_FIELDS {
            if let Some(v) = self.control.get_setting(&policy_setting(name)).await? {
                *field(&mut p) = v.trim().parse().map_err(|_| {
                    VaultError::Invalid(format!(
                        "the setting compliance.{name} is not a whole number"
                    ))
                })?;
            }
        }
        Ok(p)
    }

    /// Sets one compliance threshold (`kek_max_age_days`, `checkpoint_max_age_days`,
    /// `backup_max_age_days`, `inactive_account_days`, `sample_size`). Permissions: the
    /// operator and SUPER_ADMIN. Audited.
    pub async fn set_compliance_policy(
        &self,
        ctx: &Ctx,
        name: &str,
        value: u32,
    ) -> Result<(), VaultError> {
        let mut event = self.event(ctx, "compliance-policy");
        let known = POLICY_FIELDS.iter().find(|(n, ..)| *n == name);
        event.reason = Some(match known {
            Some((n, ..)) => format!("{n}={value}"),
            None => "unknown".into(),
        });
        if !matches!(scope_of(ctx), Ok(None)) {
            return self.deny(&event, "role").await;
        }
        let Some((name, min, max, _)) = known else {
            let names: Vec<&str> = POLICY_FIELDS.iter().map(|(n, ..)| *n).collect();
            let e = VaultError::Invalid(format!("unknown setting; one of {}", names.join(", ")));
            return self.audit_failure(event, e).await;
        };
        if !(*min..=*max).contains(&value) {
            let e = VaultError::Invalid(format!("{name} is {min} to {max}"));
            return self.audit_failure(event, e).await;
        }
        if let Err(e) = self
            .control
            .put_setting(&policy_setting(name), &value.to_string())
            .await
        {
            return self.audit_failure(event, e.into()).await;
        }
        self.audit(event).await
    }

    /// Records that a backup was verified now (restored and checked): the backups check
    /// measures its age. For `phivault backup verify` (issue 9). Permissions: the operator.
    pub async fn record_verified_backup(&self, ctx: &Ctx) -> Result<(), VaultError> {
        self.record_verified_backup_made_at(ctx, self.clock.now_millis())
            .await
    }

    /// Records that a backup of this vault made at `made_at` (ms) was verified: the backups
    /// check then measures the age of that backup, not of the verification. A verification of
    /// an older backup never makes the record younger. Permissions: the operator.
    pub async fn record_verified_backup_made_at(
        &self,
        ctx: &Ctx,
        made_at: i64,
    ) -> Result<(), VaultError> {
        let event = self.event(ctx, "backup-verified");
        self.require_operator(ctx, &event).await?;
        let known = match self.control.get_setting(LAST_VERIFIED_BACKUP_AT).await {
            Ok(v) => v.and_then(|v| v.trim().parse::<i64>().ok()),
            Err(e) => return self.audit_failure(event, e.into()).await,
        };
        let now = made_at.max(known.unwrap_or(i64::MIN)).to_string();
        if let Err(e) = self
            .control
            .put_setting(LAST_VERIFIED_BACKUP_AT, &now)
            .await
        {
            return self.audit_failure(event, e.into()).await;
        }
        self.audit(event).await
    }

    /// Measures every safeguard and returns the report. The operator and SUPER_ADMIN see every
    /// organization; an AUDITOR sees its own (system-wide checks — audit chain, keys, TLS,
    /// backups — are the same for all). Others are refused. Running it is an audit event with
    /// the counts of each status.
    pub async fn compliance_report(&self, ctx: &Ctx) -> Result<Report, VaultError> {
        let mut event = self.event(ctx, "compliance-report");
        let Ok(scope) = scope_of(ctx) else {
            return self.deny(&event, "role").await;
        };
        let report = match self.measure(ctx, scope.as_ref()).await {
            Ok(r) => r,
            Err(e) => return self.audit_failure(event, e).await,
        };
        event.count = Some(report.checks.len() as u64);
        event.reason = Some(format!(
            "pass:{} warn:{} fail:{}",
            report.count(Status::Pass),
            report.count(Status::Warn),
            report.count(Status::Fail)
        ));
        self.audit(event).await?;
        Ok(report)
    }

    async fn measure(&self, ctx: &Ctx, scope: Option<&OrgId>) -> Result<Report, VaultError> {
        let policy = self.compliance_policy().await?;
        let orgs: Vec<OrgId> = self
            .control
            .organizations()
            .await?
            .into_iter()
            .map(|o| o.id)
            .filter(|o| scope.is_none_or(|s| s == o))
            .collect();
        let (at_rest, integrity) = self.check_records(ctx, &orgs, &policy).await?;
        let transport = match &self.transport {
            Some(t) => Some(t.measure().await),
            None => None,
        };
        Ok(Report {
            checks: vec![
                at_rest,
                system::check_transport(transport.as_ref()),
                integrity,
                self.check_audit(&policy).await?,
                self.check_people(scope, &policy).await?,
                self.check_access(&orgs, scope).await?,
                self.check_keys(&policy).await?,
                self.check_backups(&policy).await?,
            ],
        })
    }
}
