//! Crypto-shredding and its tombstones. Every erasure records, in the control store, a
//! tombstone (organization, store, keyed pseudonymous row id; no PHI) for each record it
//! destroys, after its audit event and before destroying anything: a crash leaves a tombstone
//! for a record perhaps not yet destroyed, never a destroyed record without its tombstone.
//! Restoring an older backup applies the newer tombstones ([`Vault::apply_tombstones`]), so
//! an erased record does not come back from a copy taken before its erasure.
use super::{EraseReport, store_kind};
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{Digest32, OrgId, RecordKey, ResourceId, ResourceType, StoreKind, Tombstone};
use std::collections::BTreeMap;

/// How many records one store erasure takes at most (each call ends with a checkpoint or a
/// VACUUM, so fewer, larger calls are cheaper; bounded so one transaction stays reasonable).
const ERASE_CHUNK: usize = 1000;

impl Vault {
    /// The keyed pseudonymous row id under which the stores, tombstones, audit events and
    /// retention listings name a record (never its FHIR id).
    pub fn record_pseudonym(&self, ctx: &Ctx, rtype: ResourceType, id: &ResourceId) -> ResourceId {
        self.row_key(ctx, rtype, id).id
    }

    /// [`Vault::erase_patient`] with the reason recorded in its audit event (`retention:…`
    /// for retention runs). `moved`: the patient's records whose link column was edited away,
    /// when the caller already looked for them ([`Vault::records_bound_to`], once for many
    /// patients); `None` looks for them here.
    pub(crate) async fn erase_patient_because(
        &self,
        ctx: &Ctx,
        patient: &ResourceId,
        reason: Option<String>,
        moved: Option<Vec<RecordKey>>,
    ) -> Result<EraseReport, VaultError> {
        let key = self.row_key(ctx, ResourceType::PATIENT, patient);
        let link = self.keyring.pseudonym(&ctx.org, patient);
        let mut event = self.event(ctx, "erase").patient(Some(link));
        event.resource_type = Some("Patient".into());
        event.resource = Some(key.id.as_str().to_owned());
        event.reason = reason;
        self.require_operator(ctx, &event).await?;
        match self.identity.head(&ctx.org, &key).await {
            Ok(Some(_)) => {}
            Ok(None) => return self.audit_failure(event, VaultError::NotFound).await,
            Err(e) => return self.audit_failure(event, e.into()).await,
        }
        // The rows linked to the patient, and the patient's rows whose link column was edited
        // away (their data key opens with the patient's link bound: see keys/link.rs).
        let clinical_keys = match self.patient_rows(ctx, &link, moved).await {
            Ok(k) => k,
            Err(e) => return self.audit_failure(event, e).await,
        };
        event.count = Some(clinical_keys.len() as u64 + 1);
        self.audit(event.clone()).await?;
        let result = async {
            let mut tombstones = self.tombstones_for(ctx, StoreKind::Clinical, &clinical_keys);
            tombstones.extend(self.tombstones_for(
                ctx,
                StoreKind::Identity,
                std::slice::from_ref(&key),
            ));
            self.control.add_tombstones(&tombstones).await?;
            let clinical_versions = self.clinical.erase(&ctx.org, &clinical_keys).await?;
            let patient_versions = self.identity.erase(&ctx.org, &[key]).await?;
            Ok::<_, VaultError>(EraseReport {
                patient_versions,
                clinical_records: clinical_keys.len() as u64,
                clinical_versions,
            })
        }
        .await;
        match result {
            Ok(r) => Ok(r),
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    /// Every clinical record of the patient `link`, whatever its link column says.
    async fn patient_rows(
        &self,
        ctx: &Ctx,
        link: &Digest32,
        moved: Option<Vec<RecordKey>>,
    ) -> Result<Vec<RecordKey>, VaultError> {
        let mut keys = self.clinical.linked_keys(&ctx.org, link).await?;
        match moved {
            Some(m) => keys.extend(m),
            None => keys.extend(
                self.records_bound_to(&ctx.org, std::slice::from_ref(link))
                    .await?
                    .remove(link)
                    .unwrap_or_default(),
            ),
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Erases single records of one type (not patients: a patient goes with all its records,
    /// [`Vault::erase_patient`]) by crypto-shredding, with one audit event naming them (row
    /// ids, their patients' pseudonyms, the count, `reason`) made durable first, then their
    /// tombstones. Operator only. Returns how many versions were destroyed.
    pub(crate) async fn erase_records_because(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        records: &[(RecordKey, Option<Digest32>)],
        reason: String,
    ) -> Result<u64, VaultError> {
        let mut event = self.event(ctx, "erase");
        event.resource_type = Some(rtype.as_str().to_owned());
        event.reason = Some(reason);
        event.count = Some(records.len() as u64);
        event.entities = records
            .iter()
            .map(|(k, _)| k.id.as_str().to_owned())
            .collect();
        for (_, link) in records {
            event = event.patient(*link);
        }
        self.require_operator(ctx, &event).await?;
        if rtype.is_patient() || records.iter().any(|(k, _)| k.rtype != rtype) {
            let e = VaultError::Invalid("records of one non-patient type only".into());
            return self.audit_failure(event, e).await;
        }
        self.audit(event.clone()).await?;
        let kind = store_kind(rtype);
        let keys: Vec<RecordKey> = records.iter().map(|(k, _)| k.clone()).collect();
        let result = async {
            self.control
                .add_tombstones(&self.tombstones_for(ctx, kind, &keys))
                .await?;
            let mut destroyed = 0;
            for chunk in keys.chunks(ERASE_CHUNK) {
                destroyed += self.store(kind).erase(&ctx.org, chunk).await?;
            }
            Ok::<_, VaultError>(destroyed)
        }
        .await;
        match result {
            Ok(n) => Ok(n),
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    /// Tombstones, erased now, for `keys` of one store of the context's organization.
    fn tombstones_for(&self, ctx: &Ctx, store: StoreKind, keys: &[RecordKey]) -> Vec<Tombstone> {
        let now = self.clock.now_millis();
        keys.iter()
            .map(|k| Tombstone {
                org: ctx.org.clone(),
                store,
                key: k.clone(),
                erased_at: now,
            })
            .collect()
    }

    /// Every tombstone this vault has recorded (what a backup carries, so that restoring an
    /// older one can apply them). Operator only; audited (count only).
    pub async fn tombstones(&self, ctx: &Ctx) -> Result<Vec<Tombstone>, VaultError> {
        let event = self.event(ctx, "read-tombstones");
        self.require_operator(ctx, &event).await?;
        let result = self.control.tombstones().await.map_err(VaultError::from);
        self.audit_counted(event, result, |t| t.len() as u64).await
    }

    /// Finishes a call whose event carries a count: on success the event, with the count of
    /// the result, is made durable before the result is returned; on failure the failure is
    /// audited.
    pub(crate) async fn audit_counted<T>(
        &self,
        mut event: crate::audit::AuditEvent,
        result: Result<T, VaultError>,
        count: impl FnOnce(&T) -> u64,
    ) -> Result<T, VaultError> {
        match result {
            Ok(t) => {
                event.count = Some(count(&t));
                self.audit(event).await?;
                Ok(t)
            }
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    /// Applies tombstones (of newer backups, or of the live vault) to this vault: destroys by
    /// crypto-shredding every listed record still present, in whichever organization the
    /// tombstone names, and records the tombstones, so the erasure holds here too. One audit
    /// event (`erase-tombstones`, the count) is made durable first. Operator only. Returns how
    /// many record versions were destroyed (0 when none was present). Idempotent.
    pub async fn apply_tombstones(
        &self,
        ctx: &Ctx,
        tombstones: &[Tombstone],
    ) -> Result<u64, VaultError> {
        let mut event = self.event(ctx, "erase-tombstones");
        event.count = Some(tombstones.len() as u64);
        self.require_operator(ctx, &event).await?;
        self.audit(event.clone()).await?;
        let result = async {
            self.control.add_tombstones(tombstones).await?;
            let mut destroyed = 0;
            // Clinical records first, patients last, as an erasure of a patient does.
            for kind in [StoreKind::Clinical, StoreKind::Identity] {
                let mut by_org: BTreeMap<&OrgId, Vec<RecordKey>> = BTreeMap::new();
                for t in tombstones.iter().filter(|t| t.store == kind) {
                    by_org.entry(&t.org).or_default().push(t.key.clone());
                }
                for (org, keys) in by_org {
                    for chunk in keys.chunks(ERASE_CHUNK) {
                        destroyed += self.store(kind).erase(org, chunk).await?;
                    }
                }
            }
            Ok::<_, VaultError>(destroyed)
        }
        .await;
        match result {
            Ok(n) => Ok(n),
            Err(e) => self.audit_failure(event, e).await,
        }
    }
}
