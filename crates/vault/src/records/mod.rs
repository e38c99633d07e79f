//! Records: sealed create / read / update / delete, clinical records under a patient's
//! pseudonym, and crypto-shredding erasure.
pub mod fhir;
pub mod search;

use crate::error::VaultError;
use crate::{Ctx, Vault};
use fhir::{FoundRef, PATIENT_ELEMENTS, PatientRef};
use phivault_core::{
    Digest32, Expected, RecordKey, RecordStore, RecordWrite, ResourceId, ResourceType,
    SealedRecord, StoreKind, Version, WriteOutcome,
};
use phivault_crypto::{RecordAad, SealedParts};
use serde_json::Value;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// A resource as the vault returns it: decrypted, with `meta.versionId`/`meta.lastUpdated`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub rtype: ResourceType,
    pub id: ResourceId,
    pub version: Version,
    pub resource: Value,
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
    if rtype.is_patient() {
        StoreKind::Identity
    } else {
        StoreKind::Clinical
    }
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
        if rec.deleted {
            return Err(VaultError::Gone);
        }
        let aad = RecordAad {
            org: &ctx.org,
            store: store_kind(rec.rtype),
            rtype: rec.rtype,
            id: &rec.id,
            version: rec.version,
        };
        let parts = SealedParts {
            kek_version: rec.kek_version,
            wrapped_dek: rec.wrapped_dek.clone(),
            ciphertext: rec.ciphertext.clone(),
        };
        let plain = self.keyring.open_record(&aad, &parts)?;
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
        Ok(Stored {
            rtype: rec.rtype,
            id: inner_id,
            version: rec.version,
            resource,
        })
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
        let (rtype, id) = (key.rtype, &key.id);
        let kind = store_kind(rtype);
        let aad = RecordAad {
            org: &ctx.org,
            store: kind,
            rtype,
            id,
            version,
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(resource)
                .map_err(|_| VaultError::Invalid("resource could not be encoded".into()))?,
        );
        let parts = self.keyring.seal_record(&aad, &plain)?;
        let index = if kind == StoreKind::Identity {
            fhir::patient_index_terms(resource)
                .into_iter()
                .map(|(k, term)| (k, self.keyring.blind_index(k, &ctx.org, &term)))
                .collect()
        } else {
            Vec::new()
        };
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
    ) -> Result<(RecordWrite, Value), VaultError> {
        let rtype = fhir::resource_type(&resource)?;
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
        let link = if rtype.is_patient() {
            None
        } else {
            self.patient_link(ctx, &resource, refs)
                .await?
                .map(|p| self.keyring.pseudonym(&ctx.org, &p))
        };
        let key = self.row_key(ctx, rtype, id);
        let head_version = match base {
            Base::Current => self
                .store(store_kind(rtype))
                .head(&ctx.org, &key)
                .await?
                .map(|h| h.version),
            Base::Exactly(v) => Some(v),
            Base::New => None,
        };
        let (version, exp) = match head_version {
            Some(h) => (h.next(), Expected::Version(h)),
            None => (Version::FIRST, Expected::Absent),
        };
        let write = self.seal(ctx, &key, version, exp, &resource, link)?;
        Ok((write, resource))
    }

    /// Which patient a clinical resource belongs to: the first patient named by `subject`,
    /// `patient` or `beneficiary`, else any other Patient reference. Every Patient reference
    /// must resolve to a patient that exists in this organization.
    pub(crate) async fn patient_link(
        &self,
        ctx: &Ctx,
        resource: &Value,
        refs: &Refs,
    ) -> Result<Option<ResourceId>, VaultError> {
        let mut primary = None;
        let mut other = None;
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
                            return Err(VaultError::Invalid(format!(
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
                    return Err(VaultError::Invalid(format!(
                        "{element}: reference to a missing patient"
                    )));
                }
                checked.insert(pid.clone(), ());
            }
            if is_patient_element && primary.is_none() {
                primary = Some(pid);
            } else if other.is_none() {
                other = Some(pid);
            }
        }
        Ok(primary.or(other))
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

    async fn write_one(&self, ctx: &Ctx, write: RecordWrite) -> Result<(), VaultError> {
        let kind = store_kind(write.record.rtype);
        let outcomes = self.store(kind).write(&ctx.org, vec![write]).await?;
        match outcomes.first() {
            Some(WriteOutcome::Written) => Ok(()),
            Some(WriteOutcome::Conflict { current }) => {
                Err(VaultError::Conflict { current: *current })
            }
            None => Err(VaultError::Store(phivault_core::StoreError::Corrupt {
                context: "write",
                detail: "no outcome".into(),
            })),
        }
    }

    /// Creates a resource under a new server-assigned id (FHIR `create`).
    pub async fn create(&self, ctx: &Ctx, resource: Value) -> Result<Stored, VaultError> {
        let id = ResourceId::parse(&phivault_crypto::random_uuid()?)
            .map_err(|_| VaultError::Invalid("id".into()))?;
        let mut resource = resource;
        if let Some(obj) = resource.as_object_mut() {
            obj.remove("id");
        }
        let (write, mut resource) = self
            .prepare(ctx, resource, &id, Base::New, &Refs::default())
            .await?;
        let (version, updated) = (write.record.version, write.record.updated_at);
        let rtype = write.record.rtype;
        self.write_one(ctx, write).await?;

        fhir::set_server_meta(&mut resource, version.0, updated);
        Ok(Stored {
            rtype,
            id,
            version,
            resource,
        })
    }

    /// Updates (or creates at a client-chosen id) a resource. With `expected`, the update is
    /// refused unless the current version is exactly that one (optimistic concurrency).
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: &ResourceId,
        resource: Value,
        expected: Option<Version>,
    ) -> Result<Stored, VaultError> {
        let base = expected.map_or(Base::Current, Base::Exactly);
        let (write, mut resource) = self
            .prepare(ctx, resource, id, base, &Refs::default())
            .await?;
        let (version, updated) = (write.record.version, write.record.updated_at);
        let rtype = write.record.rtype;
        self.write_one(ctx, write).await?;
        fhir::set_server_meta(&mut resource, version.0, updated);
        Ok(Stored {
            rtype,
            id: id.clone(),
            version,
            resource,
        })
    }

    /// Reads the current version.
    pub async fn read(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        id: &ResourceId,
    ) -> Result<Stored, VaultError> {
        self.read_row(ctx, &self.row_key(ctx, rtype, id)).await
    }

    /// Reads one version (FHIR `vread`).
    pub async fn vread(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        id: &ResourceId,
        version: Version,
    ) -> Result<Stored, VaultError> {
        let key = self.row_key(ctx, rtype, id);
        let rec = self
            .store(store_kind(rtype))
            .version(&ctx.org, &key, version)
            .await?
            .ok_or(VaultError::NotFound)?;
        self.unseal(ctx, &rec)
    }

    /// Deletes a resource (FHIR `delete`): a tombstone version; history stays sealed.
    pub async fn delete(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        id: &ResourceId,
        expected: Option<Version>,
    ) -> Result<Version, VaultError> {
        let key = self.row_key(ctx, rtype, id);
        let head = self
            .store(store_kind(rtype))
            .head(&ctx.org, &key)
            .await?
            .ok_or(VaultError::NotFound)?;
        if head.deleted {
            return Err(VaultError::Gone);
        }
        if expected.is_some_and(|e| e != head.version) {
            return Err(VaultError::Conflict {
                current: Some(head.version),
            });
        }
        let version = head.version.next();
        let write = RecordWrite {
            record: SealedRecord {
                rtype,
                id: key.id.clone(),
                version,
                deleted: true,
                link: head.link,
                kek_version: head.kek_version,
                wrapped_dek: Vec::new(),
                ciphertext: Vec::new(),
                updated_at: self.clock.now_millis(),
            },
            expected: Expected::Version(head.version),
            index: Vec::new(),
        };
        self.write_one(ctx, write).await?;
        Ok(version)
    }

    /// Every live clinical record of a patient.
    pub async fn patient_records(
        &self,
        ctx: &Ctx,
        patient: &ResourceId,
    ) -> Result<Vec<Stored>, VaultError> {
        if !self.patient_exists(ctx, patient).await? {
            return Err(VaultError::NotFound);
        }
        let link = self.keyring.pseudonym(&ctx.org, patient);
        let recs = self.clinical.linked(&ctx.org, &link).await?;
        recs.iter().map(|r| self.unseal(ctx, r)).collect()
    }

    /// Erases a patient by crypto-shredding: every version of the patient and of every clinical
    /// record linked to it is destroyed with its data key. Nothing left in the data dir opens
    /// them afterwards, even with the root key. Idempotent if interrupted and run again.
    pub async fn erase_patient(
        &self,
        ctx: &Ctx,
        patient: &ResourceId,
    ) -> Result<EraseReport, VaultError> {
        let key = self.row_key(ctx, ResourceType::PATIENT, patient);
        if self.identity.head(&ctx.org, &key).await?.is_none() {
            return Err(VaultError::NotFound);
        }
        let link = self.keyring.pseudonym(&ctx.org, patient);
        let clinical_keys = self.clinical.linked_keys(&ctx.org, &link).await?;
        let clinical_versions = self.clinical.erase(&ctx.org, &clinical_keys).await?;
        let patient_versions = self.identity.erase(&ctx.org, &[key]).await?;
        Ok(EraseReport {
            patient_versions,
            clinical_records: clinical_keys.len() as u64,
            clinical_versions,
        })
    }

    /// One page of live records of one store (for export), and the cursor for the next page
    /// (`None` at the end).
    pub async fn page(
        &self,
        ctx: &Ctx,
        kind: StoreKind,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> Result<(Vec<Stored>, Option<PageCursor>), VaultError> {
        let recs = self
            .store(kind)
            .page(&ctx.org, after.map(|c| &c.0), limit)
            .await?;
        let next = recs.last().map(|r| {
            PageCursor(RecordKey {
                rtype: r.rtype,
                id: r.id.clone(),
            })
        });
        let page = recs
            .iter()
            .map(|r| self.unseal(ctx, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((page, next))
    }
}
