//! The security officer's digest (§164.308(a)(1)(ii)(D) information system activity review).
use super::{AuditEvent, Outcome};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LoginCounts {
    pub success: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Notable {
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub reason: Option<String>,
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnusualVolume {
    pub actor: String,
    pub day: String,
    pub patients: u64,
    pub daily_median: f64,
}

/// An administrator's change that hands an account to whoever made it (a reset of its
/// password or MFA, its creation with a one-time password, a client's new secret or its
/// re-enabling) followed, within 24 hours, by PHI reads under that account: whoever made the
/// change could have signed in (or taken tokens) as it, so the security officer checks that
/// the reads were the account's own.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResetThenReads {
    pub org: String,
    /// Who made the change (`user:<name>`, or `cli:<os user>` for the operator).
    pub admin: String,
    /// The account handed over (`user:<name>` or `client:<name>`).
    pub account: String,
    /// The change: `password-reset`, `mfa-reset`, `user-add`, `client-rotate-secret` or
    /// `client-enable`.
    pub reset: String,
    pub reset_seq: u64,
    pub reset_time: String,
    /// PHI reads (read, vread, search, history, `$everything`) by the account in the window.
    pub reads: u64,
    pub first_read_time: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub since: String,
    pub events: u64,
    pub logins: BTreeMap<String, LoginCounts>,
    /// How many times each user's account was locked (wrong passwords or codes).
    pub lockouts: BTreeMap<String, u64>,
    pub denials: Vec<Notable>,
    pub errors: BTreeMap<String, u64>,
    pub break_glass: Vec<Notable>,
    pub exports: Vec<Notable>,
    pub erasures: Vec<Notable>,
    pub unusual_volume: Vec<UnusualVolume>,
    pub reset_then_reads: Vec<ResetThenReads>,
}

fn notable(e: &AuditEvent) -> Notable {
    Notable {
        seq: e.seq,
        time: e.time.clone(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        reason: e.reason.clone(),
        count: e.count,
    }
}

fn median(v: &mut [u64]) -> f64 {
    v.sort_unstable();
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(0) as f64,
        n => {
            let a = v.get(n / 2 - 1).copied().unwrap_or(0);
            let b = v.get(n / 2).copied().unwrap_or(0);
            (a + b) as f64 / 2.0
        }
    }
}

const READS: &[&str] = &["read", "vread", "search", "read-patient-records", "export"];
/// Data leaving the vault: plain and de-identified exports, and backups.
const EXPORTS: &[&str] = &["export", "export-deid", "backup"];
/// Crypto-shredding: on request, by retention, and re-applied at a restore.
const ERASURES: &[&str] = &["erase", "erase-tombstones"];

/// Builds the report from events (already filtered to the period).
pub fn build(since: &str, events: &[AuditEvent]) -> Report {
    let mut logins: BTreeMap<String, LoginCounts> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut r = Report {
        since: since.to_owned(),
        events: events.len() as u64,
        logins: BTreeMap::new(),
        lockouts: lockouts(events),
        denials: Vec::new(),
        errors: BTreeMap::new(),
        break_glass: Vec::new(),
        exports: Vec::new(),
        erasures: Vec::new(),
        unusual_volume: Vec::new(),
        reset_then_reads: resets_then_reads(events),
    };
    // actor → day → distinct patients read
    let mut volume: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for e in events {
        if e.action == "login" || e.action == "mfa" {
            let c = logins.entry(e.actor.clone()).or_default();
            match e.outcome {
                Outcome::Success => c.success += 1,
                _ => c.failed += 1,
            }
        }
        match e.outcome {
            Outcome::Denied => r.denials.push(notable(e)),
            Outcome::Error => {
                *errors
                    .entry(e.reason.clone().unwrap_or_else(|| "unknown".into()))
                    .or_default() += 1
            }
            Outcome::Success => {}
        }
        if e.break_glass {
            r.break_glass.push(notable(e));
        }
        if EXPORTS.contains(&e.action.as_str()) && e.outcome == Outcome::Success {
            r.exports.push(notable(e));
        }
        if ERASURES.contains(&e.action.as_str()) {
            r.erasures.push(notable(e));
        }
        if READS.contains(&e.action.as_str()) && e.outcome == Outcome::Success {
            let day = e.time.get(..10).unwrap_or("").to_owned();
            let set = volume
                .entry(e.actor.clone())
                .or_default()
                .entry(day)
                .or_default();
            set.extend(e.patients.iter().cloned());
        }
    }
    for (actor, days) in volume {
        let mut counts: Vec<u64> = days.values().map(|s| s.len() as u64).collect();
        let med = median(&mut counts);
        for (day, set) in days {
            let n = set.len() as u64;
            // Far above the actor's own daily median (and not a trickle).
            if days_flag(n, med) {
                r.unusual_volume.push(UnusualVolume {
                    actor: actor.clone(),
                    day,
                    patients: n,
                    daily_median: med,
                });
            }
        }
    }
    r.logins = logins;
    r.errors = errors;
    r
}

/// How many times each actor's account was locked: the failing sign-in steps that locked it
/// carry a lockout reason.
fn lockouts(events: &[AuditEvent]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for e in events {
        let reason = e.reason.as_deref().unwrap_or("");
        if crate::auth::lockout::LOCKOUT_REASONS.contains(&reason) {
            *out.entry(e.actor.clone()).or_default() += 1;
        }
    }
    out
}

/// Administrators' changes that hand an account to whoever made them; each event names the
/// account first in its reason (`user:<name> …` or `client:<name> …`).
const HANDOVERS: &[&str] = &[
    "password-reset",
    "mfa-reset",
    "user-add",
    "client-rotate-secret",
    "client-enable",
];
/// Calls that release PHI to the caller.
const PHI_READS: &[&str] = &[
    "read",
    "vread",
    "search",
    "history",
    "everything",
    "read-patient-records",
];
/// How long after a handover the account's reads are flagged.
const RESET_WINDOW_SECS: i64 = 24 * 3600;

fn unix_time(rfc3339: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Every successful handover ([`HANDOVERS`]) followed by PHI reads of the account (same
/// organization) within [`RESET_WINDOW_SECS`]. The change's event names its account first in
/// `reason` (`user:<name>`, `client:<name>`), as the account's own events name it in `actor`.
fn resets_then_reads(events: &[AuditEvent]) -> Vec<ResetThenReads> {
    let mut out = Vec::new();
    for (i, reset) in events.iter().enumerate() {
        if !HANDOVERS.contains(&reset.action.as_str()) || reset.outcome != Outcome::Success {
            continue;
        }
        let account = reset
            .reason
            .as_deref()
            .and_then(|r| r.split_whitespace().next());
        let (Some(account), Some(at)) = (account, unix_time(&reset.time)) else {
            continue;
        };
        let reads: Vec<&AuditEvent> = events
            .get(i + 1..)
            .unwrap_or_default()
            .iter()
            .filter(|e| {
                e.actor == account
                    && e.org == reset.org
                    && e.outcome == Outcome::Success
                    && PHI_READS.contains(&e.action.as_str())
                    && unix_time(&e.time)
                        .is_some_and(|t| (at..=at + RESET_WINDOW_SECS).contains(&t))
            })
            .collect();
        if let Some(first) = reads.first() {
            out.push(ResetThenReads {
                org: reset.org.clone(),
                admin: reset.actor.clone(),
                account: account.to_owned(),
                reset: reset.action.clone(),
                reset_seq: reset.seq,
                reset_time: reset.time.clone(),
                reads: reads.len() as u64,
                first_read_time: first.time.clone(),
            });
        }
    }
    out
}

/// Items separated by commas, or `none`.
fn joined(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn days_flag(n: u64, median: f64) -> bool {
    n >= 20 && (n as f64) > 3.0 * median
}

impl Report {
    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "audit report since {}: {} events\n",
            self.since, self.events
        );
        let logins = self
            .logins
            .iter()
            .map(|(u, c)| format!("{u}: {}/{}", c.success, c.failed));
        s.push_str(&format!("logins (user: ok/failed): {}\n", joined(logins)));
        let lockouts = self.lockouts.iter().map(|(u, n)| format!("{u}: {n}"));
        s.push_str(&format!(
            "account lockouts (user: times): {}\n",
            joined(lockouts)
        ));
        let list = |title: &str, items: &[Notable], s: &mut String| {
            s.push_str(&format!("{title}: {}\n", items.len()));
            for n in items.iter().take(50) {
                s.push_str(&format!(
                    "  #{} {} {} {}{}{}\n",
                    n.seq,
                    n.time,
                    n.actor,
                    n.action,
                    n.reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                    n.count
                        .map(|c| format!(" [{c} records]"))
                        .unwrap_or_default()
                ));
            }
        };
        list("denials", &self.denials, &mut s);
        list("break-glass uses", &self.break_glass, &mut s);
        list("exports", &self.exports, &mut s);
        list("erasures", &self.erasures, &mut s);
        let errors = self.errors.iter().map(|(k, v)| format!("{k}: {v}"));
        s.push_str(&format!("errors by reason: {}\n", joined(errors)));
        s.push_str(&format!(
            "resets, new users, client secrets or re-enables followed by PHI reads of the account within 24 h: {}\n",
            self.reset_then_reads.len()
        ));
        for f in &self.reset_then_reads {
            s.push_str(&format!(
                "  #{} {} {} {} {}, then {} PHI reads by it from {}\n",
                f.reset_seq, f.reset_time, f.admin, f.reset, f.account, f.reads, f.first_read_time
            ));
        }
        s.push_str(&format!("unusual volume: {}\n", self.unusual_volume.len()));
        for u in &self.unusual_volume {
            s.push_str(&format!(
                "  {} read {} patients on {} (daily median {})\n",
                u.actor, u.patients, u.day, u.daily_median
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(actor: &str, day: &str, patient: &str) -> AuditEvent {
        AuditEvent {
            seq: 1,
            time: format!("{day}T10:00:00Z"),
            org: "default".into(),
            actor: actor.into(),
            source: None,
            user_agent: None,
            request_id: None,
            action: "read".into(),
            resource_type: Some("Patient".into()),
            resource: None,
            version: None,
            patients: vec![patient.into()],
            entities: vec![],
            purpose: None,
            outcome: Outcome::Success,
            reason: None,
            fields: vec![],
            break_glass: false,
            count: None,
            purpose_source: None,
        }
    }

    #[test]
    fn flags_a_day_far_above_the_actors_median() {
        let mut events = Vec::new();
        for d in 1..=5 {
            for p in 0..3 {
                events.push(ev("cli:a", &format!("2026-01-0{d}"), &format!("p{p}")));
            }
        }
        for p in 0..40 {
            events.push(ev("cli:a", "2026-01-06", &format!("q{p}")));
        }
        // Another actor who always reads a lot is not flagged.
        for d in 1..=3 {
            for p in 0..30 {
                events.push(ev("cli:b", &format!("2026-01-0{d}"), &format!("r{p}")));
            }
        }
        let mut deid = ev("cli:c", "2026-01-02", "p1");
        deid.action = "export-deid".into();
        let mut backup = ev("cli:c", "2026-01-02", "p1");
        backup.action = "backup".into();
        let mut shred = ev("cli:c", "2026-01-02", "p1");
        shred.action = "erase-tombstones".into();
        events.extend([deid, backup, shred]);
        let r = build("2026-01-01", &events);
        assert_eq!(
            r.exports.len(),
            2,
            "de-identified exports and backups are exports"
        );
        assert_eq!(r.erasures.len(), 1);
        assert_eq!(r.unusual_volume.len(), 1, "{r:?}");
        assert_eq!(r.unusual_volume[0].actor, "cli:a");
        assert_eq!(r.unusual_volume[0].patients, 40);
        assert_eq!(r.unusual_volume[0].daily_median, 3.0);
    }

    /// A client's secret rotated or the client re-enabled, and a user created, by an
    /// administrator: each hands the account to whoever did it, so its reads are flagged too.
    #[test]
    fn flags_a_handed_over_client_or_a_new_account_followed_by_its_reads() {
        let at = |actor: &str, action: &str, time: &str, reason: Option<&str>| {
            let mut e = ev(actor, "2026-01-01", "p1");
            (e.action, e.time, e.reason) = (action.into(), time.into(), reason.map(Into::into));
            e
        };
        let events = [
            at(
                "user:boss",
                "client-rotate-secret",
                "2026-01-01T10:00:00Z",
                Some("client:ehr id:pvc-1"),
            ),
            at("client:ehr", "search", "2026-01-01T10:01:00Z", None),
            at(
                "cli:root",
                "client-enable",
                "2026-01-01T11:00:00Z",
                Some("client:lab id:pvc-2"),
            ),
            at("client:lab", "history", "2026-01-01T11:01:00Z", None),
            at(
                "user:boss",
                "user-add",
                "2026-01-01T12:00:00Z",
                Some("user:new.doc role:CLINICIAN"),
            ),
            at("user:new.doc", "everything", "2026-01-01T12:30:00Z", None),
            // Revoking tokens hands nothing over.
            at(
                "user:boss",
                "client-revoke-tokens",
                "2026-01-01T13:00:00Z",
                Some("client:ehr id:pvc-1"),
            ),
        ];
        let r = build("2026-01-01", &events);
        let got: Vec<(&str, &str, &str, u64)> = r
            .reset_then_reads
            .iter()
            .map(|f| {
                (
                    f.admin.as_str(),
                    f.account.as_str(),
                    f.reset.as_str(),
                    f.reads,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("user:boss", "client:ehr", "client-rotate-secret", 1),
                ("cli:root", "client:lab", "client-enable", 1),
                ("user:boss", "user:new.doc", "user-add", 1),
            ]
        );
    }

    #[test]
    fn flags_a_reset_followed_by_reads_of_the_account_within_24_hours() {
        let at = |actor: &str, action: &str, time: &str, reason: Option<&str>| {
            let mut e = ev(actor, "2026-01-01", "p1");
            e.action = action.into();
            e.time = time.into();
            e.reason = reason.map(Into::into);
            e
        };
        let dr = Some("user:dr.x");
        let events = [
            at("user:boss", "password-reset", "2026-01-01T10:00:00Z", dr),
            at("user:dr.x", "login", "2026-01-01T10:05:00Z", None),
            at("user:dr.x", "read", "2026-01-01T10:10:00Z", None),
            at("user:dr.x", "everything", "2026-01-02T09:59:00Z", None),
            // After the window, another account, another organization: not counted.
            at("user:dr.x", "search", "2026-01-02T10:00:01Z", None),
            at("user:dr.y", "read", "2026-01-01T11:00:00Z", None),
            {
                let mut e = at("user:dr.x", "read", "2026-01-01T12:00:00Z", None);
                e.org = "other".into();
                e
            },
            // A reset with no read of the account in the next 24 hours.
            at(
                "user:boss",
                "mfa-reset",
                "2026-01-03T10:00:00Z",
                Some("user:dr.y"),
            ),
            at("user:dr.y", "read", "2026-01-04T10:00:01Z", None),
        ];
        let r = build("2026-01-01", &events);
        assert_eq!(r.reset_then_reads.len(), 1, "{:?}", r.reset_then_reads);
        let f = &r.reset_then_reads[0];
        assert_eq!(
            (f.admin.as_str(), f.account.as_str(), f.reads),
            ("user:boss", "user:dr.x", 2)
        );
        assert_eq!(f.first_read_time, "2026-01-01T10:10:00Z");
        assert!(
            r.to_text()
                .contains("user:boss password-reset user:dr.x, then 2")
        );
    }
}
