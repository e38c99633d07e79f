//! Writes: create, update and delete, each authorized for every patient it touches — the
//! patient the new content names and the patient of the version it replaces — and audited in
//! the same commit.
use super::{Base, Prepared, Refs, Stored, fhir, store_kind};
use crate::audit::AuditEvent;
use crate::error::VaultError;
use crate::policy::grants::Allowed;
use crate::policy::{self, Action};
use crate::{Ctx, Vault};
use phivault_core::{Digest32, RecordWrite, ResourceId, ResourceType, Version, WriteOutcome};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

impl Vault {
    /// The audit event of a write: its type, pseudonymous row id and version.
    pub(crate) fn write_event(&self, ctx: &Ctx, action: &str, write: &RecordWrite) -> AuditEvent {
        let mut e = self.event(ctx, action);
        let r = &write.record;
        e.resource_type = Some(r.rtype.as_str().to_owned());
        e.resource = Some(r.id.as_str().to_owned());
        e.version = Some(r.version.0);
        e.patient(r.link)
    }

    /// Authorizes a write of `rtype` for every patient it touches: the one its new content
    /// is linked to (`patient`), every other patient it names (`others`) and, when it
    /// replaces an existing record, the one that record is linked to now (`prior`). Moving a
    /// record to another patient (or to none) is refused unless the policy lets the caller
    /// change patients (integrations, the operator). The event names every one of them, so
    /// each one's accounting shows the attempt.
    pub(crate) async fn authorize_write(
        &self,
        ctx: &Ctx,
        action: Action,
        rtype: ResourceType,
        (patient, others): (Option<Digest32>, &[Digest32]),
        prior: Option<Option<Digest32>>,
        event: AuditEvent,
    ) -> Result<(Allowed, AuditEvent), VaultError> {
        let mut event = event.patient(patient);
        for other in others {
            event = event.patient(Some(*other));
        }
        for other in others.iter().filter(|o| Some(**o) != patient) {
            self.authorize(ctx, action, rtype.as_str(), Some(*other), &event)
                .await?;
        }
        let moved = prior.filter(|old| *old != patient);
        if let Some(Some(old)) = moved {
            event = event.patient(Some(old));
            self.authorize(ctx, action, rtype.as_str(), Some(old), &event)
                .await?;
        }
        let allowed = self
            .authorize(ctx, action, rtype.as_str(), patient, &event)
            .await?;
        if moved.is_some() && !policy::may_change_patient(&ctx.subject) {
            let e = VaultError::Unprocessable(
                "a record cannot be moved to another patient; create a new one instead".into(),
            );
            return self.deny_with(&event, "patient-change", e).await;
        }
        event.break_glass = allowed.break_glass;
        Ok((allowed, event))
    }

    /// Writes one record with its audit event made durable inside the transaction.
    pub(crate) async fn write_audited(
        &self,
        ctx: &Ctx,
        write: RecordWrite,
        event: AuditEvent,
    ) -> Result<(), VaultError> {
        let kind = store_kind(write.record.rtype);
        let ran = Arc::new(AtomicBool::new(false));
        let hook = self.audit_hook(event.clone(), ran.clone(), |e, outcomes| {
            match outcomes.first() {
                Some(WriteOutcome::Written) => e,
                Some(WriteOutcome::Conflict { current }) => {
                    e.failed(&VaultError::Conflict { current: *current })
                }
                None => e.failed(&VaultError::NotFound),
            }
        });
        let result = self.store(kind).write(&ctx.org, vec![write], hook).await;
        match result {
            Ok(outcomes) => match outcomes.first() {
                Some(WriteOutcome::Written) => Ok(()),
                Some(WriteOutcome::Conflict { current }) => {
                    Err(VaultError::Conflict { current: *current })
                }
                None => Err(VaultError::Store(phivault_core::StoreError::Corrupt {
                    context: "write",
                    detail: "no outcome".into(),
                })),
            },
            // The event was attempted inside the transaction: the failure was the audit
            // write or the commit, and nothing was written.
            Err(e) if ran.load(Ordering::SeqCst) => Err(VaultError::Audit(e.to_string())),
            Err(e) => self.audit_failure(event, VaultError::Store(e)).await,
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
        self.put(ctx, Action::Create, &id, resource, Base::New)
            .await
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
        self.put(ctx, Action::Update, id, resource, base).await
    }

    /// Audits a failed preparation: a hidden reference (see [`Vault::prepare`]) as a denial,
    /// anything else as an error.
    pub(crate) async fn prepare_failed<T>(
        &self,
        event: AuditEvent,
        e: VaultError,
    ) -> Result<T, VaultError> {
        match e {
            VaultError::Forbidden => self.deny(&event, "reference").await,
            e => self.audit_failure(event, e).await,
        }
    }

    async fn put(
        &self,
        ctx: &Ctx,
        verb: Action,
        id: &ResourceId,
        resource: Value,
        base: Base,
    ) -> Result<Stored, VaultError> {
        let action = if verb == Action::Create {
            "create"
        } else {
            "update"
        };
        let mut event = self.event(ctx, action);
        if let Ok(t) = fhir::resource_type(&resource) {
            event.resource_type = Some(t.as_str().to_owned());
            event.resource = Some(self.row_key(ctx, t, id).id.as_str().to_owned());
            // Role, scope and purpose first: nothing about any patient is looked up for a
            // caller who may not write this type at all.
            self.authorize_kind(ctx, verb, t.as_str(), &event).await?;
        }
        let Prepared {
            write,
            mut resource,
            prior,
            others,
        } = match self
            .prepare(ctx, resource, id, base, &Refs::default())
            .await
        {
            Ok(p) => p,
            Err(e) => return self.prepare_failed(event, e).await,
        };
        let rtype = write.record.rtype;
        let patient = if rtype.is_patient() {
            Some(self.keyring.pseudonym(&ctx.org, id))
        } else {
            write.record.link
        };
        let event = self.write_event(ctx, action, &write);
        let (_, event) = self
            .authorize_write(ctx, verb, rtype, (patient, &others), prior, event)
            .await?;
        let (version, updated) = (write.record.version, write.record.updated_at);
        self.write_audited(ctx, write, event).await?;
        fhir::set_server_meta(&mut resource, version.0, updated);
        Ok(Stored {
            rtype,
            id: id.clone(),
            version,
            resource,
            patient,
        })
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
        let mut event = self.event(ctx, "delete");
        event.resource_type = Some(rtype.as_str().to_owned());
        event.resource = Some(key.id.as_str().to_owned());
        self.authorize_kind(ctx, Action::Delete, rtype.as_str(), &event)
            .await?;
        let head = match self.store(store_kind(rtype)).head(&ctx.org, &key).await {
            Ok(Some(h)) if !h.deleted => h,
            Ok(Some(_)) => return self.audit_failure(event, VaultError::Gone).await,
            Ok(None) => return self.audit_failure(event, VaultError::NotFound).await,
            Err(e) => return self.audit_failure(event, e.into()).await,
        };
        if expected.is_some_and(|e| e != head.version) {
            let e = VaultError::Conflict {
                current: Some(head.version),
            };
            return self.audit_failure(event, e).await;
        }
        let write = self.tombstone(&head);
        let version = write.record.version;
        let patient = if rtype.is_patient() {
            Some(self.keyring.pseudonym(&ctx.org, id))
        } else {
            head.link
        };
        let event = self.write_event(ctx, "delete", &write);
        let (_, event) = self
            .authorize_write(ctx, Action::Delete, rtype, (patient, &[]), None, event)
            .await?;
        self.write_audited(ctx, write, event).await?;
        Ok(version)
    }

    /// The write that deletes a record whose head is `head`: a tombstone version.
    pub(crate) fn tombstone(&self, head: &phivault_core::SealedRecord) -> RecordWrite {
        RecordWrite {
            record: phivault_core::SealedRecord {
                rtype: head.rtype,
                id: head.id.clone(),
                version: head.version.next(),
                deleted: true,
                link: head.link,
                kek_version: head.kek_version,
                wrapped_dek: Vec::new(),
                ciphertext: Vec::new(),
                updated_at: self.clock.now_millis(),
            },
            expected: phivault_core::Expected::Version(head.version),
            index: Vec::new(),
        }
    }
}
