//! Retention and disposal: per-organization rules by resource type, and the job that erases,
//! by crypto-shredding, what they say has expired.
//!
//! A rule is (resource type, years, anchor). Nothing is ever erased without a rule.
//! - `Patient`: a whole patient (the patient and every clinical record linked to it, as
//!   [`Vault::erase_patient`]) once its anchor is more than `years` before now. With
//!   `last-encounter` the anchor is the end (else the start) of the patient's most recent
//!   Encounter, or, when it has none, its most recent update (the patient's or any of its
//!   records'); with `last-update`, always that most recent update.
//! - any other type: single records of that type, once their anchor is more than `years` old.
//!   With `last-update` the anchor is the record's own last update (its stored `updated_at`,
//!   `meta.lastUpdated`); with `last-encounter` it is its patient's anchor as above (a record
//!   without a patient falls back to its own last update).
//!   A record whose patient is erased by the same run goes with its patient and is not listed
//!   twice.
//!
//! Times come from the injected clock. "More than N years" is calendar years: the cutoff is
//! the same day and time N years earlier (29 February → 28 February). A partial date
//! (`2015`, `2015-06`, `2015-06-30`) counts as its last instant, so a coarse date never makes
//! a record expire sooner. Live records are considered; records deleted through FHIR (whose
//! head is a deletion) are not.
//!
//! The dry run ([`Vault::retention_plan`]) and the real run ([`Vault::retention_run`]) compute
//! the list with the same function, so they agree; the real run then erases exactly that list,
//! one audited erasure per patient and one per batch of single records, each with the reason
//! `retention:<rule>` and tombstones. The audit trail is never touched by retention.
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{Digest32, OrgId, RecordKey, ResourceId, ResourceType, StoreError};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, Time};

/// The longest retention a rule may give.
pub const MAX_YEARS: u32 = 200;
/// Records read per page while planning.
const PAGE: u32 = 500;
/// Single records per audited erasure.
const BATCH: usize = 500;
const MILLIS_PER_DAY: i64 = 86_400_000;

/// What a rule's age is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionAnchor {
    /// The patient's most recent Encounter (end, else start); without one, its last update.
    LastEncounter,
    /// The last update of the record (for a patient: of the patient or any of its records).
    LastUpdate,
}

impl RetentionAnchor {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "last-encounter" => Some(Self::LastEncounter),
            "last-update" => Some(Self::LastUpdate),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::LastEncounter => "last-encounter",
            Self::LastUpdate => "last-update",
        }
    }

    /// The anchor a rule gets when none is named: `last-encounter` for patients,
    /// `last-update` for every other type.
    pub fn default_for(rtype: ResourceType) -> Self {
        if rtype.is_patient() {
            Self::LastEncounter
        } else {
            Self::LastUpdate
        }
    }
}

/// One retention rule of an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    pub rtype: ResourceType,
    pub years: u32,
    pub after: RetentionAnchor,
}

impl RetentionRule {
    /// A rule, checked: 1 to [`MAX_YEARS`] years.
    pub fn new(
        rtype: ResourceType,
        years: u32,
        after: RetentionAnchor,
    ) -> Result<Self, VaultError> {
        if !(1..=MAX_YEARS).contains(&years) {
            return Err(VaultError::Invalid(format!(
                "a retention period is 1 to {MAX_YEARS} years"
            )));
        }
        Ok(Self {
            rtype,
            years,
            after,
        })
    }

    /// `Patient:10y:last-encounter`: how the rule is named in listings and audit reasons.
    pub fn label(&self) -> String {
        format!("{}:{}y:{}", self.rtype, self.years, self.after.as_str())
    }

    /// The instant (ms) before which an anchor has expired under this rule at `now`.
    fn cutoff(&self, now: OffsetDateTime) -> i64 {
        let years = i32::try_from(self.years).unwrap_or(i32::MAX);
        let year = now.year().saturating_sub(years);
        let date = Date::from_calendar_date(year, now.month(), now.day())
            .or_else(|_| Date::from_calendar_date(year, now.month(), now.day().saturating_sub(1)))
            .unwrap_or(Date::MIN);
        millis(date.with_time(now.time()).assume_offset(now.offset()))
    }
}

/// A rule as kept in the control store (`retention.rules.<org>`, a JSON list).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRule {
    #[serde(rename = "type")]
    rtype: String,
    years: u32,
    after: RetentionAnchor,
}

fn setting_key(org: &OrgId) -> String {
    format!("retention.rules.{org}")
}

/// One record (or whole patient) a retention run erases. Names it only by type and keyed
/// pseudonymous row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionItem {
    pub rtype: ResourceType,
    /// The pseudonymous row id (never the FHIR id).
    pub id: ResourceId,
    /// The rule's label.
    pub rule: String,
    /// How old its anchor is, in whole days.
    pub age_days: i64,
    /// For a patient: how many clinical records go with it (0 otherwise).
    pub records: u64,
    target: Target,
}

/// What the run erases for an item (the patient's FHIR id stays inside the vault).
#[derive(Clone, PartialEq, Eq)]
enum Target {
    Patient(ResourceId),
    Record(Option<Digest32>),
}

/// The patient's FHIR id never shows in logs or panics.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Patient(_) => f.write_str("Patient([REDACTED])"),
            Target::Record(link) => write!(f, "Record({link:?})"),
        }
    }
}

/// What a real run did: the list it erased (the same as its dry run) and the versions
/// destroyed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub items: Vec<RetentionItem>,
    pub patients: u64,
    pub records: u64,
    pub versions_destroyed: u64,
}

/// The latest instant (ms) a FHIR date, dateTime or instant can denote; `None` if the value
/// is not one.
pub(crate) fn latest_instant(s: &str) -> Option<i64> {
    if s.len() > 10 {
        return OffsetDateTime::parse(s, &Rfc3339).ok().map(millis);
    }
    let mut parts = s.split('-');
    let year: i32 = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let month = match parts.next() {
        Some(m) if m.len() == 2 => Month::try_from(m.parse::<u8>().ok()?).ok()?,
        Some(_) => return None,
        None => Month::December,
    };
    let day = match parts.next() {
        Some(d) if d.len() == 2 => d.parse::<u8>().ok()?,
        Some(_) => return None,
        None => time::util::days_in_month(month, year),
    };
    if parts.next().is_some() {
        return None;
    }
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let end = Time::from_hms_milli(23, 59, 59, 999).ok()?;
    Some(millis(date.with_time(end).assume_utc()))
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MIN)
}

impl Vault {
    /// The retention rules of the context's organization. Permissions: the operator.
    pub async fn retention_rules(&self, ctx: &Ctx) -> Result<Vec<RetentionRule>, VaultError> {
        self.require_operator(ctx, &self.event(ctx, "retention-rules"))
            .await?;
        self.load_rules(&ctx.org).await
    }

    async fn load_rules(&self, org: &OrgId) -> Result<Vec<RetentionRule>, VaultError> {
        let corrupt = || {
            VaultError::Store(StoreError::Corrupt {
                context: "read retention rules",
                detail: "not a list of rules".into(),
            })
        };
        let Some(text) = self.control.get_setting(&setting_key(org)).await? else {
            return Ok(Vec::new());
        };
        let stored: Vec<StoredRule> = serde_json::from_str(&text).map_err(|_| corrupt())?;
        stored
            .into_iter()
            .map(|s| {
                let rtype = ResourceType::parse_stored(&s.rtype).map_err(|_| corrupt())?;
                RetentionRule::new(rtype, s.years, s.after).map_err(|_| corrupt())
            })
            .collect()
    }

    async fn store_rules(
        &self,
        ctx: &Ctx,
        action: &str,
        reason: String,
        change: impl FnOnce(&mut Vec<RetentionRule>) -> bool,
    ) -> Result<bool, VaultError> {
        let mut event = self.event(ctx, action);
        event.reason = Some(reason);
        self.require_operator(ctx, &event).await?;
        let result = async {
            let mut rules = self.load_rules(&ctx.org).await?;
            let changed = change(&mut rules);
            rules.sort_by_key(|r| r.rtype);
            let stored: Vec<StoredRule> = rules
                .iter()
                .map(|r| StoredRule {
                    rtype: r.rtype.as_str().to_owned(),
                    years: r.years,
                    after: r.after,
                })
                .collect();
            let text = serde_json::to_string(&stored)
                .map_err(|_| VaultError::Invalid("rules could not be encoded".into()))?;
            self.control
                .put_setting(&setting_key(&ctx.org), &text)
                .await?;
            Ok::<_, VaultError>(changed)
        }
        .await;
        self.audit_counted(event, result, |changed| u64::from(*changed))
            .await
    }

    /// Sets (adds or replaces) the organization's rule for a resource type. Permissions: the
    /// operator. Audited (`retention-rule-set`, the rule's label).
    pub async fn set_retention_rule(
        &self,
        ctx: &Ctx,
        rule: RetentionRule,
    ) -> Result<(), VaultError> {
        self.store_rules(ctx, "retention-rule-set", rule.label(), |rules| {
            rules.retain(|r| r.rtype != rule.rtype);
            rules.push(rule);
            true
        })
        .await
        .map(|_| ())
    }

    /// Removes the organization's rule for a resource type; `false` if it had none.
    /// Permissions: the operator. Audited (`retention-rule-remove`).
    pub async fn remove_retention_rule(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
    ) -> Result<bool, VaultError> {
        self.store_rules(
            ctx,
            "retention-rule-remove",
            rtype.as_str().to_owned(),
            |rules| {
                let before = rules.len();
                rules.retain(|r| r.rtype != rtype);
                rules.len() != before
            },
        )
        .await
    }

    /// The dry run: what a retention run would erase now in the context's organization,
    /// changing nothing. Permissions: the operator. Audited (`retention-plan`, the count).
    pub async fn retention_plan(&self, ctx: &Ctx) -> Result<Vec<RetentionItem>, VaultError> {
        self.retention_items(ctx, "retention-plan").await
    }

    /// The real run: computes the same list as [`Vault::retention_plan`] and erases exactly
    /// it by crypto-shredding (tombstones recorded), one audited erasure per patient and per
    /// batch of single records, with the reason `retention:<rule>`. Permissions: the operator.
    pub async fn retention_run(&self, ctx: &Ctx) -> Result<RetentionReport, VaultError> {
        let items = self.retention_items(ctx, "retention-run").await?;
        let mut report = RetentionReport::default();
        let mut batch: Vec<(RecordKey, Option<Digest32>)> = Vec::new();
        let mut batch_rule: Option<(ResourceType, String)> = None;
        // The patients' records whose link column was edited away, in one scan for all.
        let patients = items.iter().filter_map(|i| match &i.target {
            Target::Patient(p) => Some(p),
            Target::Record(_) => None,
        });
        let mut moved = self.moved_records_of(ctx, patients).await?;
        for item in &items {
            let reason = format!("retention:{}", item.rule);
            match &item.target {
                Target::Patient(pid) => {
                    let link = self.keyring.pseudonym(&ctx.org, pid);
                    let mine = Some(moved.remove(&link).unwrap_or_default());
                    match self
                        .erase_patient_because(ctx, pid, Some(reason), mine)
                        .await
                    {
                        Ok(r) => {
                            report.patients += 1;
                            report.records += r.clinical_records;
                            report.versions_destroyed += r.patient_versions + r.clinical_versions;
                        }
                        // Gone since the list was made (erased by someone else): nothing to do.
                        Err(VaultError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                Target::Record(link) => {
                    let same = batch_rule
                        .as_ref()
                        .is_some_and(|(t, r)| *t == item.rtype && *r == reason);
                    if !same || batch.len() >= BATCH {
                        report.versions_destroyed +=
                            self.flush_batch(ctx, &mut batch, batch_rule.take()).await?;
                    }
                    batch_rule = Some((item.rtype, reason));
                    batch.push((
                        RecordKey {
                            rtype: item.rtype,
                            id: item.id.clone(),
                        },
                        *link,
                    ));
                    report.records += 1;
                }
            }
        }
        report.versions_destroyed += self.flush_batch(ctx, &mut batch, batch_rule).await?;
        report.items = items;
        Ok(report)
    }

    async fn flush_batch(
        &self,
        ctx: &Ctx,
        batch: &mut Vec<(RecordKey, Option<Digest32>)>,
        rule: Option<(ResourceType, String)>,
    ) -> Result<u64, VaultError> {
        let Some((rtype, reason)) = rule else {
            return Ok(0);
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let records = std::mem::take(batch);
        self.erase_records_because(ctx, rtype, &records, reason)
            .await
    }

    /// The list a run erases, audited under `action` with its count.
    async fn retention_items(
        &self,
        ctx: &Ctx,
        action: &str,
    ) -> Result<Vec<RetentionItem>, VaultError> {
        let event = self.event(ctx, action);
        self.require_operator(ctx, &event).await?;
        let result = self.expired(ctx).await;
        self.audit_counted(event, result, |items| items.len() as u64)
            .await
    }
}

mod expired;

#[cfg(test)]
mod tests;
