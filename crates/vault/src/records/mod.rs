//! Records: sealed create / read / update / delete, clinical records under a patient's
//! pseudonym, and crypto-shredding erasure.
pub mod erase;
pub mod fhir;
pub mod history;
mod page;
pub mod search;
pub mod validate;
mod write;

use crate::audit::AuditEvent;
use crate::error::VaultError;
use crate::policy::{self, Action};
use crate::{Ctx, Vault};
use fhir::{FoundRef, PATIENT_ELEMENTS, PatientRef};
use phivault_core::{
    Digest32, Expected, RecordKey, RecordStore, RecordWrite, ResourceId, ResourceType,
    SealedRecord, StoreKind, Version,
};
use phivault_crypto::{RecordAad, SealedParts};
use serde_json::Value;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// A resource as the vault returns it: decrypted, with `meta.versionId`/`meta.lastUpdated`.
/// Its `Debug` never prints the resource (it is PHI).
#[derive(Clone, PartialEq)]
pub struct Stored {
    pub rtype: ResourceType,
    pub id: ResourceId,
    pub version: Version,
    pub resource: Value,
    /// The keyed pseudonym of the patient this record is (about), if any.
    pub patient: Option<Digest32>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("rtype", &self.rtype)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("resource", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl Stored {
    /// The names of the elements this resource releases.
    pub fn fields(&self) -> Vec<String> {
        self.resource
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// What an erasure destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EraseReport {
    pub patient_versions: u64,
    pub clinical_records: u64,
    pub clinical_versions: u64,
}

/// How references resolve inside one import or transaction.
#[derive(Debug, Default)]
pub(crate) struct Refs {
    /// fullUrl → the Patient id it became (`Some`) or a non-patient entry (`None`).
    pub urns: HashMap<String, Option<ResourceId>>,
    /// Patients this operation has just written, known to exist.
    pub known_patients: std::collections::HashSet<ResourceId>,
}

/// What a write builds on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base {
    /// Whatever the head is now (read it first).
    Current,
    /// Exactly this version; anything else is a conflict.
    Exactly(Version),
    /// A record that should not exist yet (no read; the store refuses if it does).
    New,
}

pub(crate) fn store_kind(rtype: ResourceType) -> StoreKind {
    if rtype.in_identity_store() {
        StoreKind::Identity
    } else {
        StoreKind::Clinical
    }
}

/// A sealed write ready to go, with what authorizing it needs.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub write: RecordWrite,
    /// The resource as written (id set, server meta stripped).
    pub resource: Value,
    /// When the write replaces an existing clinical record: the patient that record is
    /// linked to now (`Some(None)`: to no patient).
    pub prior: Option<Option<Digest32>>,
    /// Every other patient the resource names (a `focus`, a `performer`…): the write must be
    /// allowed for them too, or a reference would tell whether someone is a patient.
    pub others: Vec<Digest32>,
}

/// The patients a clinical resource references: the one it is linked to, and the others.
#[derive(Debug, Default)]
pub(crate) struct Linked {
    pub primary: Option<ResourceId>,
    pub others: Vec<ResourceId>,
}

/// Where a paged listing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor(RecordKey);

impl Vault {
    /// The key a record is stored under: its type and its pseudonymous row id.
    pub(crate) fn row_key(&self, ctx: &Ctx, rtype: ResourceType, id: &ResourceId) -> RecordKey {
        RecordKey {
            rtype,
            id: ResourceId::from_digest(&self.keyring.row_id(&ctx.org, rtype, id)),
        }
    }

    /// Reads and opens the head of a row.
    pub(crate) async fn read_row(&self, ctx: &Ctx, key: &RecordKey) -> Result<Stored, VaultError> {
        let rec = self
            .store(store_kind(key.rtype))
            .head(&ctx.org, key)
            .await?
            .ok_or(VaultError::NotFound)?;
        self.know_keks([&rec]).await?;
        self.unseal(ctx, &rec)
    }

    pub(crate) fn store(&self, kind: StoreKind) -> &dyn RecordStore {
        match kind {
            StoreKind::Identity => self.identity.as_ref(),
            StoreKind::Clinical => self.clinical.as_ref(),
        }
    }

    /// Decrypts one stored version.
    pub(crate) fn unseal(&self, ctx: &Ctx, rec: &SealedRecord) -> Result<Stored, VaultError> {
        if rec.rtype.is_internal() {
            return Err(VaultError::Integrity(
                phivault_crypto::CryptoError::Integrity,
            ));
        }
        let plain = self.open_row(ctx, rec)?;
        let integrity = || VaultError::Integrity(phivault_crypto::CryptoError::Integrity);
        let mut resource: Value = serde_json::from_slice(&plain).map_err(|_| integrity())?;
        // The sealed content must be what its row says it is: its type, and an id whose
        // pseudonymous row id is this row's.
        let inner_type = resource.get("resourceType").and_then(Value::as_str);
        let inner_id = resource
            .get("id")
            .and_then(Value::as_str)
            .and_then(|i| ResourceId::parse(i).ok())
            .ok_or_else(integrity)?;
        if inner_type != Some(rec.rtype.as_str())
            || self.row_key(ctx, rec.rtype, &inner_id).id != rec.id
        {
            return Err(integrity());
        }
        fhir::set_server_meta(&mut resource, rec.version.0, rec.updated_at);
        let patient = if rec.rtype.is_patient() {
            Some(self.keyring.pseudonym(&ctx.org, &inner_id))
        } else {
            rec.link
        };
        Ok(Stored {
            rtype: rec.rtype,
            id: inner_id,
            version: rec.version,
            resource,
            patient,
        })
    }

    /// Opens the sealed bytes of one stored version (a tombstone is [`VaultError::Gone`]).
    pub(crate) fn open_row(
        &self,
        ctx: &Ctx,
        rec: &SealedRecord,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if rec.deleted {
            return Err(VaultError::Gone);
        }
        let aad = RecordAad {
            org: &ctx.org,
            store: store_kind(rec.rtype),
            rtype: rec.rtype,
            id: &rec.id,
            version: rec.version,
            link: rec.link.as_ref(),
        };
        let parts = SealedParts {
            kek_version: rec.kek_version,
            wrapped_dek: rec.wrapped_dek.clone(),
            ciphertext: rec.ciphertext.clone(),
        };
        Ok(self.keyring.open_record(&aad, &parts)?)
    }

    /// Every blind-index entry of a record: the exact lookups of a Patient and the search
    /// indexes of every FHIR record (the vault's internal types get none).
    pub(crate) fn index_of(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        resource: &Value,
    ) -> Vec<(phivault_core::IndexKind, Digest32)> {
        if rtype.is_internal() {
            return Vec::new();
        }
        let mut index: Vec<(phivault_core::IndexKind, Digest32)> =
            if store_kind(rtype) == StoreKind::Identity {
                fhir::patient_index_terms(resource)
                    .into_iter()
                    .map(|(k, term)| (k, self.keyring.blind_index(k, &ctx.org, &term)))
                    .collect()
            } else {
                Vec::new()
            };
        index.extend(self.search_index(ctx, rtype.as_str(), resource));
        index
    }

    /// Seals a resource version into a write at row `key`.
    fn seal(
        &self,
        ctx: &Ctx,
        key: &RecordKey,
        version: Version,
        expected: Expected,
        resource: &Value,
        link: Option<Digest32>,
    ) -> Result<RecordWrite, VaultError> {
        let plain = Zeroizing::new(
            serde_json::to_vec(resource)
                .map_err(|_| VaultError::Invalid("resource could not be encoded".into()))?,
        );
        let index = self.index_of(ctx, key.rtype, resource);
        self.seal_bytes(ctx, key, (version, expected), &plain, link, index)
    }

    /// Seals `plain` under a new data key into a write of version `version` at row `key`.
    pub(crate) fn seal_bytes(
        &self,
        ctx: &Ctx,
        key: &RecordKey,
        (version, expected): (Version, Expected),
        plain: &[u8],
        link: Option<Digest32>,
        index: Vec<(phivault_core::IndexKind, Digest32)>,
    ) -> Result<RecordWrite, VaultError> {
        let (rtype, id) = (key.rtype, &key.id);
        let aad = RecordAad {
            org: &ctx.org,
            store: store_kind(rtype),
            rtype,
            id,
            version,
            link: link.as_ref(),
        };
        let parts = self.keyring.seal_record(&aad, plain)?;
        Ok(RecordWrite {
            record: SealedRecord {
                rtype,
                id: id.clone(),
                version,
                deleted: false,
                link,
                kek_version: parts.kek_version,
                wrapped_dek: parts.wrapped_dek,
                ciphertext: parts.ciphertext,
                updated_at: self.clock.now_millis(),
            },
            expected,
            index,
        })
    }

    /// Validates a resource for writing at `(rtype, id)` and prepares its sealed write: the
    /// version follows the head (or `expected`), clinical resources are linked to their patient.
    pub(crate) async fn prepare(
        &self,
        ctx: &Ctx,
        mut resource: Value,
        id: &ResourceId,
        base: Base,
        refs: &Refs,
    ) -> Result<Prepared, VaultError> {
        let rtype = fhir::resource_type(&resource)?;
        validate::validate(rtype, &resource)?;
        match resource.get("id") {
            None => {}
            Some(Value::String(s)) if s == id.as_str() => {}
            Some(_) => {
                return Err(VaultError::Invalid(
                    "the resource id does not match the id it is written to".into(),
                ));
            }
        }
        if let Some(obj) = resource.as_object_mut() {
            obj.insert("id".into(), Value::String(id.as_str().to_owned()));
        }
        fhir::strip_server_meta(&mut resource);
        let (link, others) = if rtype.is_patient() {
            (None, Vec::new())
        } else {
            match self.patient_link(ctx, &resource, refs).await {
                Ok(l) => (
                    l.primary.map(|p| self.keyring.pseudonym(&ctx.org, &p)),
                    l.others
                        .iter()
                        .map(|p| self.keyring.pseudonym(&ctx.org, p))
                        .collect(),
                ),
                // Whether a patient exists is itself PHI for a caller whose access goes by
                // patient: an unresolvable reference is answered as a forbidden one.
                Err(_) if policy::access_is_per_patient(&ctx.subject) => {
                    return Err(VaultError::Forbidden);
                }
                Err(e) => return Err(e),
            }
        };
        let key = self.row_key(ctx, rtype, id);
        let head = match base {
            Base::New => None,
            Base::Current | Base::Exactly(_) => {
                self.store(store_kind(rtype)).head(&ctx.org, &key).await?
            }
        };
        if let (Base::Exactly(want), Some(h)) = (base, &head)
            && want != h.version
        {
            return Err(VaultError::Conflict {
                current: Some(h.version),
            });
        }
        // The patient of the version this write replaces: the write must be allowed for it too.
        let prior = head
            .as_ref()
            .filter(|_| !rtype.is_patient())
            .map(|h| h.link);
        let head_version = match base {
            Base::Exactly(v) => Some(v),
            Base::Current | Base::New => head.map(|h| h.version),
        };
        let (version, exp) = match head_version {
            Some(h) => (h.next(), Expected::Version(h)),
            None => (Version::FIRST, Expected::Absent),
        };
        self.fresh_keyring().await?;
        let write = self.seal(ctx, &key, version, exp, &resource, link)?;
        Ok(Prepared {
            write,
            resource,
            prior,
            others,
        })
    }

    /// Which patient a clinical resource belongs to: the first patient named by `subject`,
    /// `patient` or `beneficiary`, else any other Patient reference. Every Patient reference
    /// must resolve to a patient that exists in this organization.
    pub(crate) async fn patient_link(
        &self,
        ctx: &Ctx,
        resource: &Value,
        refs: &Refs,
    ) -> Result<Linked, VaultError> {
        let mut primary = None;
        let mut others: Vec<ResourceId> = Vec::new();
        let mut checked: HashMap<ResourceId, ()> = HashMap::new();
        for FoundRef { element, reference } in fhir::references(resource) {
            let is_patient_element = PATIENT_ELEMENTS.contains(&element.as_str());
            let target = match fhir::classify_reference(&reference) {
                PatientRef::Id(id) => Some(ResourceId::parse(&id).map_err(|_| {
                    VaultError::Invalid(format!("{element}: reference to an invalid patient id"))
                })?),
                PatientRef::Urn(u) => match refs.urns.get(&reference) {
                    Some(resolved) => resolved.clone(),
                    None if is_patient_element => Some(ResourceId::parse(&u).map_err(|_| {
                        VaultError::Invalid(format!("{element}: unresolvable urn:uuid reference"))
                    })?),
                    None => None,
                },
                PatientRef::Identifier(system, value) => {
                    let q = search::PatientQuery {
                        identifier: Some(fhir::identifier_term(system.as_deref(), &value)),
                        ..Default::default()
                    };
                    let found = self.find_patient_keys(ctx, &q).await?;
                    match found.as_slice() {
                        [one] => Some(self.read_row(ctx, one).await?.id),
                        [] => {
                            return Err(VaultError::Unprocessable(format!(
                                "{element}: conditional reference matches no patient"
                            )));
                        }
                        _ => {
                            return Err(VaultError::Invalid(format!(
                                "{element}: conditional reference matches several patients"
                            )));
                        }
                    }
                }
                PatientRef::Other => None,
            };
            let Some(pid) = target else { continue };
            if !checked.contains_key(&pid) && !refs.known_patients.contains(&pid) {
                if !self.patient_exists(ctx, &pid).await? {
                    return Err(VaultError::Unprocessable(format!(
                        "{element}: reference to a missing patient"
                    )));
                }
                checked.insert(pid.clone(), ());
            }
            if is_patient_element && primary.is_none() {
                primary = Some(pid);
            } else if !others.contains(&pid) {
                others.push(pid);
            }
        }
        // The link: the primary patient, else the first other one.
        if primary.is_none() && !others.is_empty() {
            primary = Some(others.remove(0));
        }
        others.retain(|o| Some(o) != primary.as_ref());
        Ok(Linked { primary, others })
    }

    pub(crate) async fn patient_exists(
        &self,
        ctx: &Ctx,
        id: &ResourceId,
    ) -> Result<bool, VaultError> {
        let key = self.row_key(ctx, ResourceType::PATIENT, id);
        Ok(matches!(
            self.identity.head(&ctx.org, &key).await?,
            Some(h) if !h.deleted
        ))
    }

    /// Reads the current version. The read is audited before anything is returned.
    pub async fn read(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        id: &ResourceId,
    ) -> Result<Stored, VaultError> {
        let key = self.row_key(ctx, rtype, id);
        let result = self.read_row(ctx, &key).await;
        self.audited_read(ctx, "read", rtype, &key, result).await
    }

    /// Reads one version (FHIR `vread`), audited likewise.
    pub async fn vread(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        id: &ResourceId,
        version: Version,
    ) -> Result<Stored, VaultError> {
        let key = self.row_key(ctx, rtype, id);
        let result = async {
            let rec = self
                .store(store_kind(rtype))
                .version(&ctx.org, &key, version)
                .await?
                .ok_or(VaultError::NotFound)?;
            self.know_keks([&rec]).await?;
            self.unseal(ctx, &rec)
        }
        .await;
        self.audited_read(ctx, "vread", rtype, &key, result).await
    }

    async fn audited_read(
        &self,
        ctx: &Ctx,
        action: &str,
        rtype: ResourceType,
        key: &RecordKey,
        result: Result<Stored, VaultError>,
    ) -> Result<Stored, VaultError> {
        let mut event = self.event(ctx, action);
        event.resource_type = Some(rtype.as_str().to_owned());
        event.resource = Some(key.id.as_str().to_owned());
        match result {
            Ok(s) => {
                event.version = Some(s.version.0);
                let event = event.patient(s.patient);
                let allowed = self
                    .authorize(ctx, Action::Read, rtype.as_str(), s.patient, &event)
                    .await?;
                let s = self.release(&allowed, s);
                let mut event = event;
                event.fields = s.fields();
                event.break_glass = allowed.break_glass;
                self.audit_read(ctx, event).await?;
                Ok(s)
            }
            Err(e) => self.audit_read_failure(ctx, event, e).await,
        }
    }

    /// Every live clinical record of a patient, of the types the caller may read (one audit
    /// event for the lot).
    pub async fn patient_records(
        &self,
        ctx: &Ctx,
        patient: &ResourceId,
    ) -> Result<Vec<Stored>, VaultError> {
        let link = self.keyring.pseudonym(&ctx.org, patient);
        let mut event = self.event(ctx, "read-patient-records").patient(Some(link));
        let allowed = self
            .authorize(ctx, Action::Read, "Observation", Some(link), &event)
            .await?;
        event.break_glass = allowed.break_glass;
        let result = async {
            if !self.patient_exists(ctx, patient).await? {
                return Err(VaultError::NotFound);
            }
            let recs = self.readable_linked(ctx, &link).await?;
            recs.iter()
                .map(|r| self.unseal(ctx, r).map(|s| (r.id.clone(), s)))
                .collect::<Result<Vec<_>, _>>()
        }
        .await;
        self.audit_listing(ctx, event, result).await
    }

    /// Finishes a multi-record read: on success one event names every row released (and
    /// counts them) before anything is returned; on failure the failure is audited.
    pub(crate) async fn audit_listing(
        &self,
        ctx: &Ctx,
        mut event: AuditEvent,
        result: Result<Vec<(ResourceId, Stored)>, VaultError>,
    ) -> Result<Vec<Stored>, VaultError> {
        match result {
            Ok(list) => {
                event.count = Some(list.len() as u64);
                event.entities = list.iter().map(|(k, _)| k.as_str().to_owned()).collect();
                self.audit_read(ctx, event).await?;
                Ok(list.into_iter().map(|(_, s)| s).collect())
            }
            Err(e) => self.audit_read_failure(ctx, event, e).await,
        }
    }

    /// Erases a patient by crypto-shredding: every version of the patient and of every clinical
    /// record linked to it is destroyed with its data key. Nothing left in the data dir opens
    /// them afterwards, even with the root key. Idempotent if interrupted and run again.
    /// The event is made durable first, so no erasure ever happens unaudited; then a tombstone
    /// for each record is recorded (see [`erase`]), then the records are destroyed.
    pub async fn erase_patient(
        &self,
        ctx: &Ctx,
        patient: &ResourceId,
    ) -> Result<EraseReport, VaultError> {
        self.erase_patient_because(ctx, patient, None, None).await
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_resource() {
        let s = Stored {
            rtype: ResourceType::PATIENT,
            id: ResourceId::parse("p1").unwrap(),
            version: Version(1),
            resource: serde_json::json!({"name": [{"family": "Secretfamilyname"}]}),
            patient: None,
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("Secretfamilyname"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }
}
