//! Which patients and records the organization's retention rules expire now, computed the
//! same way for the dry run and the real run.
use super::{
    MILLIS_PER_DAY, PAGE, RetentionAnchor, RetentionItem, RetentionRule, Target, latest_instant,
    millis,
};
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{
    Digest32, OrgId, RecordKey, RecordStore, ResourceId, ResourceType, SealedRecord,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;

/// A record a single-record rule may expire: its key, its patient and its last update.
type Candidate = (RecordKey, Option<Digest32>, i64);

/// A patient a Patient rule expires: key, id, pseudonym, the rule and the anchor it counts from.
type ExpiredPatient<'r> = (RecordKey, ResourceId, Digest32, &'r RetentionRule, i64);

/// What one pass over the clinical store finds: each patient's latest update and latest
/// Encounter, and the candidates of single-record rules.
#[derive(Default)]
struct ClinicalScan {
    last_update: HashMap<Digest32, i64>,
    last_encounter: HashMap<Digest32, i64>,
    candidates: Vec<Candidate>,
}

fn age_days(now_ms: i64, at: i64) -> i64 {
    now_ms.saturating_sub(at) / MILLIS_PER_DAY
}

/// When an Encounter ended (else started), if its period says.
fn encounter_time(resource: &Value) -> Option<i64> {
    let period = resource.get("period")?;
    ["end", "start"].iter().find_map(|k| {
        period
            .get(k)
            .and_then(Value::as_str)
            .and_then(latest_instant)
    })
}

fn raise(map: &mut HashMap<Digest32, i64>, link: Digest32, at: i64) {
    let e = map.entry(link).or_insert(at);
    *e = (*e).max(at);
}

/// Every live head record of a store, page by page.
async fn each_live(
    store: &dyn RecordStore,
    org: &OrgId,
    mut f: impl FnMut(&SealedRecord) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    let mut after: Option<RecordKey> = None;
    loop {
        let page = store.page(org, after.as_ref(), PAGE).await?;
        for rec in &page {
            f(rec)?;
        }
        match page.last() {
            Some(last) if page.len() >= PAGE as usize => {
                after = Some(RecordKey {
                    rtype: last.rtype,
                    id: last.id.clone(),
                });
            }
            _ => return Ok(()),
        }
    }
}

impl Vault {
    /// What the organization's rules say has expired now: whole patients first (in row-id
    /// order), then single records (in type and row-id order).
    pub(super) async fn expired(&self, ctx: &Ctx) -> Result<Vec<RetentionItem>, VaultError> {
        let rules = self.load_rules(&ctx.org).await?;
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let patient_rule = rules.iter().find(|r| r.rtype.is_patient());
        let record_rules: HashMap<ResourceType, &RetentionRule> = rules
            .iter()
            .filter(|r| !r.rtype.is_patient())
            .map(|r| (r.rtype, r))
            .collect();
        let encounters_matter = rules
            .iter()
            .any(|r| r.after == RetentionAnchor::LastEncounter);
        let mut scan = self
            .scan_clinical(ctx, &record_rules, encounters_matter)
            .await?;

        // Patients: their anchors, and those a Patient rule expires.
        let mut anchors: HashMap<Digest32, i64> = HashMap::new();
        let mut expired_patients: Vec<ExpiredPatient<'_>> = Vec::new();
        let identity_rules = record_rules.keys().any(|t| t.in_identity_store());
        if patient_rule.is_some() || encounters_matter || identity_rules {
            each_live(self.identity.as_ref(), &ctx.org, |rec| {
                if rec.rtype.is_internal() {
                    // The receipts of HL7 messages that wrote patients only: no patient.
                    if record_rules.contains_key(&rec.rtype) {
                        let key = RecordKey {
                            rtype: rec.rtype,
                            id: rec.id.clone(),
                        };
                        scan.candidates.push((key, None, rec.updated_at));
                    }
                    return Ok(());
                }
                let opened = self.unseal(ctx, rec)?;
                let link = self.keyring.pseudonym(&ctx.org, &opened.id);
                let updated = scan
                    .last_update
                    .get(&link)
                    .map_or(rec.updated_at, |u| (*u).max(rec.updated_at));
                let by_encounter = scan.last_encounter.get(&link).copied().unwrap_or(updated);
                anchors.insert(link, by_encounter);
                if let Some(rule) = patient_rule {
                    let anchor = match rule.after {
                        RetentionAnchor::LastEncounter => by_encounter,
                        RetentionAnchor::LastUpdate => updated,
                    };
                    if anchor < rule.cutoff(now) {
                        let key = RecordKey {
                            rtype: rec.rtype,
                            id: rec.id.clone(),
                        };
                        expired_patients.push((key, opened.id, link, rule, anchor));
                    }
                }
                Ok(())
            })
            .await?;
        }

        let (mut items, erased_links) = self.patient_items(ctx, expired_patients, now).await?;
        let records = RecordScope {
            rules: &record_rules,
            erased_links: &erased_links,
            anchors: &anchors,
            last_encounter: &scan.last_encounter,
        };
        items.extend(records.expired(scan.candidates, now));
        Ok(items)
    }

    /// One pass over the clinical store: each patient's latest update and (when a rule counts
    /// from it) latest Encounter, and the records single-record rules apply to.
    async fn scan_clinical(
        &self,
        ctx: &Ctx,
        record_rules: &HashMap<ResourceType, &RetentionRule>,
        encounters_matter: bool,
    ) -> Result<ClinicalScan, VaultError> {
        let mut scan = ClinicalScan::default();
        each_live(self.clinical.as_ref(), &ctx.org, |rec| {
            if let Some(link) = rec.link {
                raise(&mut scan.last_update, link, rec.updated_at);
                if encounters_matter && rec.rtype.as_str() == "Encounter" {
                    let opened = self.unseal(ctx, rec)?;
                    let at = encounter_time(&opened.resource).unwrap_or(rec.updated_at);
                    raise(&mut scan.last_encounter, link, at);
                }
            }
            if record_rules.contains_key(&rec.rtype) {
                let key = RecordKey {
                    rtype: rec.rtype,
                    id: rec.id.clone(),
                };
                scan.candidates.push((key, rec.link, rec.updated_at));
            }
            Ok(())
        })
        .await?;
        Ok(scan)
    }

    /// The items of the expired patients (each with its count of clinical records), and their
    /// pseudonyms, whose single records then need no item of their own.
    async fn patient_items(
        &self,
        ctx: &Ctx,
        expired_patients: Vec<ExpiredPatient<'_>>,
        now: OffsetDateTime,
    ) -> Result<(Vec<RetentionItem>, HashSet<Digest32>), VaultError> {
        let now_ms = millis(now);
        let mut items = Vec::new();
        let mut erased_links = HashSet::new();
        for (key, pid, link, rule, anchor) in expired_patients {
            let records = self.clinical.linked_keys(&ctx.org, &link).await?.len() as u64;
            erased_links.insert(link);
            items.push(RetentionItem {
                rtype: key.rtype,
                id: key.id,
                rule: rule.label(),
                age_days: age_days(now_ms, anchor),
                records,
                target: Target::Patient(pid),
            });
        }
        Ok((items, erased_links))
    }
}

/// What single-record rules need to know: the rules by type, the patients erased whole, and
/// each patient's anchor (from the identity pass, else its latest Encounter).
struct RecordScope<'a> {
    rules: &'a HashMap<ResourceType, &'a RetentionRule>,
    erased_links: &'a HashSet<Digest32>,
    anchors: &'a HashMap<Digest32, i64>,
    last_encounter: &'a HashMap<Digest32, i64>,
}

impl RecordScope<'_> {
    /// The candidates whose rule expires them now, except those of patients erased whole.
    fn expired(&self, candidates: Vec<Candidate>, now: OffsetDateTime) -> Vec<RetentionItem> {
        let now_ms = millis(now);
        let mut items = Vec::new();
        for (key, link, updated) in candidates {
            let Some(rule) = self.rules.get(&key.rtype) else {
                continue;
            };
            if link.is_some_and(|l| self.erased_links.contains(&l)) {
                continue;
            }
            let anchor = match rule.after {
                RetentionAnchor::LastUpdate => updated,
                RetentionAnchor::LastEncounter => link
                    .and_then(|l| self.anchors.get(&l).or_else(|| self.last_encounter.get(&l)))
                    .copied()
                    .unwrap_or(updated),
            };
            if anchor < rule.cutoff(now) {
                items.push(RetentionItem {
                    rtype: key.rtype,
                    id: key.id,
                    rule: rule.label(),
                    age_days: age_days(now_ms, anchor),
                    records: 0,
                    target: Target::Record(link),
                });
            }
        }
        items
    }
}
