//! Instance history (FHIR `_history`), `$everything`, and a patient's clinical records by type
//! with filters — each one audited read that releases only what the caller may see.
use super::{Stored, store_kind};
use crate::error::VaultError;
use crate::policy::Action;
use crate::policy::fields::Release;
use crate::policy::grants::Allowed;
use crate::{Ctx, Vault};
use phivault_core::{Digest32, ResourceId, ResourceType, SealedRecord, Version};

/// One version in a resource's history: its content, or a deletion.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub version: Version,
    pub updated_at_millis: i64,
    /// `None` for a deletion (a tombstone).
    pub stored: Option<Stored>,
}

/// What the caller may read of each patient a listing meets, asked once per patient.
struct Standing {
    seen: Vec<(Option<Digest32>, Result<Allowed, &'static str>)>,
}

impl Standing {
    fn new(patient: Option<Digest32>, allowed: Allowed) -> Self {
        Self {
            seen: vec![(patient, Ok(allowed))],
        }
    }

    /// The release for a record of `link`'s patient, or `None` if the caller may not read it.
    async fn of(
        &mut self,
        vault: &Vault,
        ctx: &Ctx,
        rtype: ResourceType,
        link: Option<Digest32>,
    ) -> Result<Option<Allowed>, VaultError> {
        if let Some((_, d)) = self.seen.iter().find(|(p, _)| *p == link) {
            return Ok(d.as_ref().ok().cloned());
        }
        let d = vault.check(ctx, Action::Read, rtype.as_str(), link).await?;
        let out = d.as_ref().ok().cloned();
        self.seen.push((link, d));
        Ok(out)
    }

    /// The patients whose records were left out, with the policy's reason.
    fn denied(&self) -> Vec<(Digest32, &'static str)> {
        self.seen
            .iter()
            .filter_map(|(p, d)| Some(((*p)?, *d.as_ref().err()?)))
            .collect()
    }

    fn released(&self) -> Vec<Digest32> {
        self.seen
            .iter()
            .filter_map(|(p, d)| d.as_ref().ok().and(*p))
            .collect()
    }

    fn break_glass(&self) -> bool {
        self.seen
            .iter()
            .any(|(_, d)| d.as_ref().is_ok_and(|a| a.break_glass))
    }
}

/// The most versions one history read returns.
pub const MAX_HISTORY: usize = 1000;

impl Vault {
    /// Every version of a resource, newest first (at most `limit`). Each version is released
    /// only if the caller may read its own patient's records: a record moved between patients
    /// keeps its earlier versions from the new patient's readers. One audit event for what is
    /// released, and one denial naming each patient whose versions were left out.
    pub async fn history(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        id: &ResourceId,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, VaultError> {
        let key = self.row_key(ctx, rtype, id);
        let mut event = self.event(ctx, "history");
        event.resource_type = Some(rtype.as_str().to_owned());
        event.resource = Some(key.id.as_str().to_owned());
        let store = self.store(store_kind(rtype));
        let head = match store.head(&ctx.org, &key).await {
            Ok(Some(h)) => h,
            Ok(None) => return self.audit_failure(event, VaultError::NotFound).await,
            Err(e) => return self.audit_failure(event, e.into()).await,
        };
        let patient = if rtype.is_patient() {
            Some(self.keyring.pseudonym(&ctx.org, id))
        } else {
            head.link
        };
        let head_event = event.clone().patient(patient);
        let allowed = self
            .authorize(ctx, Action::Read, rtype.as_str(), patient, &head_event)
            .await?;
        let mut standing = Standing::new(patient, allowed.clone());
        let result = async {
            let mut out = Vec::new();
            let mut v = head.version.0;
            while v >= 1 && out.len() < limit.min(MAX_HISTORY) {
                let rec = if v == head.version.0 {
                    Some(head.clone())
                } else {
                    store.version(&ctx.org, &key, Version(v)).await?
                };
                v -= 1;
                let Some(rec) = rec else { continue };
                if let Some(entry) = self
                    .history_entry(ctx, rtype, patient, rec, &mut standing)
                    .await?
                {
                    out.push(entry);
                }
            }
            Ok::<_, VaultError>(out)
        }
        .await;
        for (other, reason) in standing.denied() {
            self.note_denial(&event.clone().patient(Some(other)), reason)
                .await?;
        }
        match result {
            Ok(list) => {
                let mut event = head_event;
                for p in standing.released() {
                    event = event.patient(Some(p));
                }
                event.count = Some(list.len() as u64);
                event.break_glass = standing.break_glass();
                if let Some(s) = list.iter().find_map(|e| e.stored.as_ref()) {
                    event.fields = s.fields();
                }
                self.audit(event).await?;
                Ok(list)
            }
            Err(e) => self.audit_failure(head_event, e).await,
        }
    }

    /// One version of a history read: released if the caller may read its patient's records
    /// (`None` if not), or a tombstone.
    async fn history_entry(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        patient: Option<Digest32>,
        rec: SealedRecord,
        standing: &mut Standing,
    ) -> Result<Option<HistoryEntry>, VaultError> {
        let link = if rtype.is_patient() {
            patient
        } else {
            rec.link
        };
        let Some(allowed) = standing.of(self, ctx, rtype, link).await? else {
            return Ok(None);
        };
        self.know_keks([&rec]).await?;
        let stored = if rec.deleted {
            None
        } else {
            Some(self.release(&allowed, self.unseal(ctx, &rec)?))
        };
        Ok(Some(HistoryEntry {
            version: rec.version,
            updated_at_millis: rec.updated_at,
            stored,
        }))
    }

    /// A patient's live clinical records of one type that `keep` selects (filters on the
    /// decrypted content run before release; only the kept ones are released and audited).
    pub async fn patient_records_of(
        &self,
        ctx: &Ctx,
        patient: &ResourceId,
        rtype: ResourceType,
        keep: &(dyn Fn(&serde_json::Value) -> bool + Sync),
    ) -> Result<Vec<Stored>, VaultError> {
        let link = self.keyring.pseudonym(&ctx.org, patient);
        let mut event = self.event(ctx, "search").patient(Some(link));
        event.resource_type = Some(rtype.as_str().to_owned());
        let allowed = self
            .authorize(ctx, Action::Search, rtype.as_str(), Some(link), &event)
            .await?;
        event.break_glass = allowed.break_glass;
        let result = async {
            if !self.patient_exists(ctx, patient).await? {
                return Err(VaultError::NotFound);
            }
            let recs = self.clinical.linked(&ctx.org, &link).await?;
            self.know_keks(&recs).await?;
            let mut out = Vec::new();
            for r in recs.iter().filter(|r| r.rtype == rtype) {
                let s = self.unseal(ctx, r)?;
                if keep(&s.resource) {
                    out.push((r.id.clone(), s));
                }
            }
            Ok(out)
        }
        .await;
        self.audit_listing(ctx, event, result).await
    }

    /// A patient's live clinical records of the types the caller may read (scope and policy
    /// asked for each type, as for a read of it).
    pub(crate) async fn readable_linked(
        &self,
        ctx: &Ctx,
        link: &Digest32,
    ) -> Result<Vec<SealedRecord>, VaultError> {
        let recs = self.clinical.linked(&ctx.org, link).await?;
        let mut types: Vec<(ResourceType, bool)> = Vec::new();
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            let ok = match types.iter().find(|(t, _)| *t == r.rtype) {
                Some((_, ok)) => *ok,
                None => {
                    let d = self.check(ctx, Action::Read, r.rtype.as_str(), Some(*link));
                    let ok = d.await?.is_ok();
                    types.push((r.rtype, ok));
                    ok
                }
            };
            if ok {
                out.push(r);
            }
        }
        self.know_keks(&out).await?;
        Ok(out)
    }

    /// `Patient/$everything`: the patient and every live clinical record linked to it that the
    /// caller may read (each type asked of scope and policy), for a caller who may see the
    /// patient in full (a redacted release is refused). One event.
    pub async fn everything(
        &self,
        ctx: &Ctx,
        patient: &ResourceId,
    ) -> Result<Vec<Stored>, VaultError> {
        let key = self.row_key(ctx, ResourceType::PATIENT, patient);
        let link = self.keyring.pseudonym(&ctx.org, patient);
        let mut event = self.event(ctx, "everything").patient(Some(link));
        event.resource_type = Some("Patient".into());
        event.resource = Some(key.id.as_str().to_owned());
        let allowed = self
            .authorize(ctx, Action::Read, "Patient", Some(link), &event)
            .await?;
        if allowed.release != Release::All {
            return self.deny(&event, "not-full-release").await;
        }
        event.break_glass = allowed.break_glass;
        let result = async {
            let me = self.read_row(ctx, &key).await?;
            let recs = self.readable_linked(ctx, &link).await?;
            let mut out = vec![(key.id.clone(), me)];
            for r in &recs {
                out.push((r.id.clone(), self.unseal(ctx, r)?));
            }
            Ok::<_, VaultError>(out)
        }
        .await;
        self.audit_listing(ctx, event, result).await
    }
}
