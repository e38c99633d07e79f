//! Instance history (FHIR `_history`), `$everything`, and a patient's clinical records by type
//! with filters — each one audited read that releases only what the caller may see.
use super::{Stored, store_kind};
use crate::error::VaultError;
use crate::policy::Action;
use crate::policy::fields::Release;
use crate::{Ctx, Vault};
use phivault_core::{ResourceId, ResourceType, Version};

/// One version in a resource's history: its content, or a deletion.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub version: Version,
    pub updated_at_millis: i64,
    /// `None` for a deletion (a tombstone).
    pub stored: Option<Stored>,
}

/// The most versions one history read returns.
pub const MAX_HISTORY: usize = 1000;

impl Vault {
    /// Every version of a resource, newest first (at most `limit`). One audit event.
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
        let event = event.patient(patient);
        let allowed = self
            .authorize(ctx, Action::Read, rtype.as_str(), patient, &event)
            .await?;
        let result = async {
            let mut out = Vec::new();
            let mut v = head.version.0;
            while v >= 1 && out.len() < limit.min(MAX_HISTORY) {
                let rec = if v == head.version.0 {
                    Some(head.clone())
                } else {
                    store.version(&ctx.org, &key, Version(v)).await?
                };
                if let Some(rec) = rec {
                    self.know_keks([&rec]).await?;
                    let stored = if rec.deleted {
                        None
                    } else {
                        Some(self.release(&allowed, self.unseal(ctx, &rec)?))
                    };
                    out.push(HistoryEntry {
                        version: rec.version,
                        updated_at_millis: rec.updated_at,
                        stored,
                    });
                }
                v -= 1;
            }
            Ok::<_, VaultError>(out)
        }
        .await;
        match result {
            Ok(list) => {
                let mut event = event;
                event.count = Some(list.len() as u64);
                event.break_glass = allowed.break_glass;
                if let Some(s) = list.iter().find_map(|e| e.stored.as_ref()) {
                    event.fields = s.fields();
                }
                self.audit(event).await?;
                Ok(list)
            }
            Err(e) => self.audit_failure(event, e).await,
        }
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
        self.audit_listing(event, result).await
    }

    /// `Patient/$everything`: the patient and every live clinical record linked to it, for a
    /// caller who may see the patient in full (a redacted release is refused). One event.
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
        self.authorize(ctx, Action::Read, "Observation", Some(link), &event)
            .await?;
        event.break_glass = allowed.break_glass;
        let result = async {
            let me = self.read_row(ctx, &key).await?;
            let recs = self.clinical.linked(&ctx.org, &link).await?;
            self.know_keks(&recs).await?;
            let mut out = vec![(key.id.clone(), me)];
            for r in &recs {
                out.push((r.id.clone(), self.unseal(ctx, r)?));
            }
            Ok::<_, VaultError>(out)
        }
        .await;
        self.audit_listing(event, result).await
    }
}
