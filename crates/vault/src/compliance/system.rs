//! System-wide checks: audit controls (§164.312(b)), key management (§164.312(a)(2)(iv),
//! §164.308(a)(1)(ii)(B)), backups (§164.308(a)(7)(ii)(A)) and transmission security
//! (§164.312(e)).
use super::transport::{TlsMeasurement, TransportEvidence, TrialOutcome, is_aead_suite};
use super::{
    AUDIT_CHECKPOINT, AUDIT_CHECKPOINT_AT, Check, CompliancePolicy, LAST_VERIFIED_BACKUP_AT,
    ROOT_KEY_PROVIDER, Status, age_text, older_than,
};
use crate::Vault;
use crate::audit::verify::Checkpoint;
use crate::error::VaultError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A stored time: milliseconds since the epoch, or RFC 3339.
fn parse_millis(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| {
        OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
    })
}

impl Vault {
    /// The audit chain verified from its first event (against the last checkpoint taken, so a
    /// cut tail shows), and that checkpoint's age.
    pub(super) async fn check_audit(&self, policy: &CompliancePolicy) -> Result<Check, VaultError> {
        let now = self.clock.now_millis();
        let checkpoint = self
            .control
            .get_setting(AUDIT_CHECKPOINT)
            .await?
            .and_then(|s| Checkpoint::parse(&s).ok());
        let taken_at = self
            .control
            .get_setting(AUDIT_CHECKPOINT_AT)
            .await?
            .as_deref()
            .and_then(parse_millis);
        let v = self.verify_audit(checkpoint.as_ref()).await?;
        let mut status = Status::Pass;
        let mut evidence = match v.problem {
            None => format!("Audit chain intact: {} events verified.", v.count),
            Some((seq, problem)) => {
                status = Status::Fail;
                format!(
                    "Audit chain BROKEN at event {seq} ({problem}); {} events verified before it.",
                    v.count
                )
            }
        };
        match (&checkpoint, taken_at) {
            (Some(c), Some(at)) => {
                let age = now - at;
                let _ = write!(
                    evidence,
                    " Last checkpoint: event {}, taken {} ago (policy ≤ {} days).",
                    c.seq,
                    age_text(age),
                    policy.checkpoint_max_age_days
                );
                if older_than(age, policy.checkpoint_max_age_days) {
                    status = Status::Fail;
                    evidence
                        .push_str(" The checkpoint is too old: run `phivault audit checkpoint`.");
                }
            }
            _ => {
                status = Status::Fail;
                evidence.push_str(
                    " No checkpoint recorded: run `phivault audit checkpoint` and keep its \
                     output outside the vault.",
                );
            }
        }
        Ok(Check {
            id: "audit-controls",
            safeguard: "§164.312(b) audit controls",
            status,
            evidence,
        })
    }

    /// The current KEK's age against policy, and where the root key lives.
    pub(super) async fn check_keys(&self, policy: &CompliancePolicy) -> Result<Check, VaultError> {
        let now = self.clock.now_millis();
        let entries = self.control.keyring().await?;
        let keks: Vec<_> = entries
            .iter()
            .filter(|e| phivault_crypto::KekKind::of_purpose(&e.purpose).is_some())
            .collect();
        let provider = self.control.get_setting(ROOT_KEY_PROVIDER).await?;
        let mut status = Status::Pass;
        let mut evidence = match keks.iter().max_by_key(|e| e.version) {
            Some(current) => {
                let age = now - current.created_at;
                let mut s = format!(
                    "Current KEK v{} ({} versions) created {} ago (policy ≤ {} days); in use: v{}.",
                    current.version,
                    keks.len(),
                    age_text(age),
                    policy.kek_max_age_days,
                    self.keyring.current_kek_version()
                );
                if older_than(age, policy.kek_max_age_days) {
                    status = Status::Fail;
                    s.push_str(" The KEK is older than policy: rotate it.");
                }
                s
            }
            None => {
                status = Status::Fail;
                "No KEK in the keyring.".to_owned()
            }
        };
        match provider.as_deref() {
            Some("keyfile") => evidence.push_str(
                " Root key provider: keyfile (sealed by an Argon2id-derived passphrase key; an \
                 HSM keeps it off the host).",
            ),
            Some(p @ ("pkcs11" | "hsm")) => {
                let _ = write!(evidence, " Root key provider: {p} (HSM).");
            }
            Some(_) | None => {
                status = Status::Fail;
                evidence.push_str(" Root key provider: not recorded or unknown.");
            }
        }
        Ok(Check {
            id: "key-management",
            safeguard: "§164.312(a)(2)(iv) encryption and decryption (key management); \
                        §164.308(a)(1)(ii)(B) risk management",
            status,
            evidence,
        })
    }

    /// The age of the last verified backup.
    pub(super) async fn check_backups(
        &self,
        policy: &CompliancePolicy,
    ) -> Result<Check, VaultError> {
        let now = self.clock.now_millis();
        let recorded = self.control.get_setting(LAST_VERIFIED_BACKUP_AT).await?;
        let (status, evidence) = match recorded.as_deref().map(parse_millis) {
            None => (Status::Fail, "no verified backup recorded".to_owned()),
            Some(None) => (
                Status::Fail,
                format!("{LAST_VERIFIED_BACKUP_AT} is not a time"),
            ),
            Some(Some(at)) => {
                let age = now - at;
                let text = format!(
                    "Last verified backup {} ago (policy ≤ {} days).",
                    age_text(age),
                    policy.backup_max_age_days
                );
                if older_than(age, policy.backup_max_age_days) {
                    (Status::Fail, text + " Too old: back up and verify.")
                } else {
                    (Status::Pass, text)
                }
            }
        };
        Ok(Check {
            id: "backups",
            safeguard: "§164.308(a)(7)(ii)(A) data backup plan",
            status,
            evidence,
        })
    }
}

/// Judges one measurement: its status and a sentence.
fn judge(m: &TlsMeasurement) -> (Status, String) {
    if let Some(e) = &m.error {
        return (Status::Warn, format!("{}: not measured ({e})", m.target));
    }
    let mut status = Status::Pass;
    let mut by_version: BTreeMap<_, (Vec<&str>, usize, Vec<&str>)> = BTreeMap::new();
    let mut good = false;
    for t in &m.trials {
        let entry = by_version.entry(std::cmp::Reverse(t.version)).or_default();
        match &t.outcome {
            TrialOutcome::Accepted { suite } => {
                entry.0.push(suite);
                if !t.version.allowed() || !is_aead_suite(suite) {
                    status = Status::Fail;
                } else {
                    good = true;
                }
            }
            TrialOutcome::Refused => entry.1 += 1,
            TrialOutcome::Failed(e) => {
                entry.2.push(e);
                status = status.max(Status::Warn);
            }
        }
    }
    if !good {
        status = Status::Fail;
    }
    let parts: Vec<String> = by_version
        .iter()
        .map(|(std::cmp::Reverse(v), (accepted, refused, failed))| {
            let mut s = v.label().to_owned();
            if !accepted.is_empty() {
                let _ = write!(s, " accepted ({})", accepted.join(", "));
            }
            if *refused > 0 {
                let _ = write!(s, " refused {refused} offer(s)");
            }
            if !failed.is_empty() {
                let _ = write!(s, " not measured ({})", failed.join(", "));
            }
            s
        })
        .collect();
    let mut text = format!("{}: {}", m.target, parts.join("; "));
    if !good {
        text.push_str("; no TLS 1.2+ AEAD handshake succeeded");
    }
    (status, text)
}

/// TLS 1.2+ with AEAD suites only, as configured and, if probed, as served.
pub(super) fn check_transport(evidence: Option<&TransportEvidence>) -> Check {
    let mut status = Status::Pass;
    let mut parts = Vec::new();
    let empty = TransportEvidence::default();
    let e = evidence.unwrap_or(&empty);
    for m in [&e.configured, &e.probed].into_iter().flatten() {
        let (s, text) = judge(m);
        status = status.max(s);
        parts.push(text);
    }
    if e.configured.is_none() {
        status = status.max(Status::Warn);
        parts.push("TLS configuration: not known to this process".into());
    }
    if e.probed.is_none() {
        status = status.max(Status::Warn);
        parts.push("live listener: not probed (use --probe https://HOST:PORT)".into());
    }
    Check {
        id: "encryption-in-transit",
        safeguard: "§164.312(e)(1) transmission security; (e)(2)(ii) encryption",
        status,
        evidence: parts.join(". ") + ".",
    }
}
