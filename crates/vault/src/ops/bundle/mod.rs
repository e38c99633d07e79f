//! FHIR `POST /` Bundles: `transaction` (all or nothing; `urn:uuid:` references between
//! entries resolved to the ids the server assigns) and `batch` (each entry on its own).
//!
//! A transaction is checked whole before anything is written: every entry parsed, every
//! reference resolved, every write authorized and its version precondition read. It is then
//! written in at most two store transactions — the identity store's, then the clinical
//! store's — each all-or-nothing. If the clinical part fails after the identity part
//! committed, the identity part is undone (new patients crypto-shredded, changed ones
//! restored), and the audit trail records both. Only a crash between the two commits can
//! leave the identity part in place; its audit event says exactly what was written. An
//! entry that would write exactly the content its record holds writes nothing (no new
//! version): a resent HL7 message, or a transaction sent again, stores nothing twice. A
//! transaction of such entries only is audited with the reason `unchanged`.
use crate::audit::AuditEvent;
use crate::error::VaultError;
use crate::policy::Action;
use crate::records::{Base, Refs, Stored, fhir, store_kind};
use crate::{Ctx, Vault};
use phivault_core::{
    Digest32, Expected, RecordKey, RecordWrite, ResourceId, ResourceType, StoreKind, Version,
};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The most entries one Bundle may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// The entry number of a message's receipt (not an entry of the Bundle).
const RECEIPT: usize = usize::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Transaction,
    Batch,
}

/// An entry's `request.method` (FHIR's, from the pure `fhir` crate).
pub use phivault_fhir::Method;

/// The answer to one entry.
#[derive(Debug)]
pub struct EntryResponse {
    pub method: Method,
    pub rtype: Option<ResourceType>,
    pub id: Option<ResourceId>,
    pub version: Option<Version>,
    /// The resource as stored (create/update) or as released (read).
    pub stored: Option<Stored>,
    /// Set for an entry of a batch that failed.
    pub error: Option<VaultError>,
}

mod message;
mod parse;
mod plan;
pub use parse::parse_etag;
use parse::{Planned, bad, parse_bundle};

/// The answer to one written entry of a transaction: the resource as stored, with its
/// server meta.
fn entry_response(r: Ready) -> EntryResponse {
    let rec = &r.write.record;
    let stored = r.resource.map(|mut resource| {
        fhir::set_server_meta(&mut resource, rec.version.0, rec.updated_at);
        Stored {
            rtype: rec.rtype,
            id: r.id.clone(),
            version: rec.version,
            resource,
            patient: r.patient,
        }
    });
    EntryResponse {
        method: r.method,
        rtype: Some(rec.rtype),
        id: Some(r.id),
        version: Some(rec.version),
        stored,
        error: None,
    }
}

/// The policy's verb for a bundle entry's method.
fn verb(method: Method) -> Action {
    match method {
        Method::Post => Action::Create,
        Method::Delete => Action::Delete,
        Method::Put | Method::Get => Action::Update,
    }
}

/// A write of a transaction, ready to go.
struct Ready {
    n: usize,
    method: Method,
    id: ResourceId,
    write: RecordWrite,
    resource: Option<Value>,
    patient: Option<Digest32>,
    /// The patient of the record this write replaces (see `Prepared::prior`).
    prior: Option<Option<Digest32>>,
    /// The other patients it names (see `Prepared::others`).
    others: Vec<Digest32>,
    /// The head before this write (for undoing it).
    before: Option<Version>,
    /// An update to exactly the content the record holds: nothing is written (a resent
    /// message or a repeated PUT makes no new version).
    unchanged: bool,
}

impl Vault {
    /// Processes a `transaction` or `batch` Bundle. A transaction returns an error (and
    /// writes nothing) if any entry fails; a batch answers each entry.
    pub async fn bundle(
        &self,
        ctx: &Ctx,
        bundle: Value,
    ) -> Result<(BundleKind, Vec<EntryResponse>), VaultError> {
        let event = self.event(ctx, "transaction");
        let (kind, planned) = match parse_bundle(bundle) {
            Ok(p) => p,
            Err(e) => return self.audit_failure(event, e).await,
        };
        match kind {
            BundleKind::Batch => Ok((kind, self.batch(ctx, planned).await)),
            BundleKind::Transaction => {
                let out = self.transaction(ctx, planned, None).await?;
                Ok((kind, out))
            }
        }
    }

    async fn batch(&self, ctx: &Ctx, planned: Vec<Planned>) -> Vec<EntryResponse> {
        let mut out = Vec::with_capacity(planned.len());
        for p in planned {
            let mut resp = EntryResponse {
                method: p.method,
                rtype: Some(p.rtype),
                id: p.id.clone(),
                version: None,
                stored: None,
                error: None,
            };
            let result: Result<Option<Stored>, VaultError> = match (p.method, p.id, p.resource) {
                (Method::Post, _, Some(r)) => self.create(ctx, r).await.map(Some),
                (Method::Put, Some(id), Some(r)) => {
                    self.update(ctx, &id, r, p.if_match).await.map(Some)
                }
                (Method::Delete, Some(id), _) => {
                    self.delete(ctx, p.rtype, &id, p.if_match).await.map(|v| {
                        resp.version = Some(v);
                        None
                    })
                }
                (Method::Get, Some(id), _) => match p.version {
                    Some(v) => self.vread(ctx, p.rtype, &id, v).await.map(Some),
                    None => self.read(ctx, p.rtype, &id).await.map(Some),
                },
                _ => Err(bad(p.n, "incomplete entry")),
            };
            match result {
                Ok(s) => {
                    if let Some(s) = &s {
                        resp.id = Some(s.id.clone());
                        resp.version = Some(s.version);
                    }
                    resp.stored = s;
                }
                Err(e) => resp.error = Some(e),
            }
            out.push(resp);
        }
        out
    }

    async fn transaction(
        &self,
        ctx: &Ctx,
        planned: Vec<Planned>,
        receipt: Option<(ResourceId, &str)>,
    ) -> Result<Vec<EntryResponse>, VaultError> {
        let event = self.event(ctx, "transaction");
        // Role, scope and purpose for every entry before any reference or record is looked up.
        for p in &planned {
            self.authorize_kind(ctx, verb(p.method), p.rtype.as_str(), &event)
                .await?;
        }
        let ready = match self.plan_transaction(ctx, planned).await {
            Ok(r) => r,
            Err(e) => return self.prepare_failed(event, e).await,
        };
        // Authorize every write before anything is written; a refusal refuses the lot.
        let break_glass = self.authorize_ready(ctx, &ready).await?;
        let (unchanged, ready): (Vec<Ready>, Vec<Ready>) =
            ready.into_iter().partition(|r| r.unchanged);
        let (mut identity, mut clinical): (Vec<Ready>, Vec<Ready>) = ready
            .into_iter()
            .partition(|r| store_kind(r.write.record.rtype) == StoreKind::Identity);
        // A message's receipt and its event go with the part committed last (nothing
        // written: neither; the adapter writes the event).
        let message_event =
            self.attach_receipt(ctx, receipt, (&mut identity, &mut clinical), &unchanged)?;
        let mut event = event;
        event.break_glass = break_glass;
        if identity.is_empty() && clinical.is_empty() {
            self.audit_unchanged(event.clone(), &unchanged).await?;
        }
        let (last_identity, last_clinical) = match clinical.is_empty() {
            true => (message_event.clone(), None),
            false => (None, message_event.clone()),
        };
        let identity = self
            .commit_part(ctx, StoreKind::Identity, identity, (&event, last_identity))
            .await?;
        let clinical = match self
            .commit_part(ctx, StoreKind::Clinical, clinical, (&event, last_clinical))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.undo_identity(ctx, &identity).await?;
                return Err(e);
            }
        };
        if let (Some(_), Some(h)) = (&message_event, &ctx.held) {
            h.mark_message_written();
        }
        let mut all: Vec<Ready> = identity
            .into_iter()
            .chain(clinical)
            .chain(unchanged)
            .filter(|r| r.n != RECEIPT)
            .collect();
        all.sort_by_key(|r| r.n);
        Ok(all.into_iter().map(entry_response).collect())
    }

    /// Authorizes every write of a planned transaction (role, purpose, grant for each patient
    /// it touches); whether any needed break-glass.
    async fn authorize_ready(&self, ctx: &Ctx, ready: &[Ready]) -> Result<bool, VaultError> {
        let mut break_glass = false;
        for r in ready {
            let mut ev = self.write_event(ctx, "transaction", &r.write);
            ev.count = Some(ready.len() as u64);
            let rtype = r.write.record.rtype;
            let (allowed, _) = self
                .authorize_write(
                    ctx,
                    verb(r.method),
                    rtype,
                    (r.patient, &r.others),
                    r.prior,
                    ev,
                )
                .await?;
            break_glass |= allowed.break_glass;
        }
        Ok(break_glass)
    }

    /// Adds a message's receipt to the part committed last (identity, or clinical when it
    /// writes anything) and returns the message's event; nothing when nothing is written.
    fn attach_receipt(
        &self,
        ctx: &Ctx,
        receipt: Option<(ResourceId, &str)>,
        (identity, clinical): (&mut Vec<Ready>, &mut Vec<Ready>),
        unchanged: &[Ready],
    ) -> Result<Option<AuditEvent>, VaultError> {
        let Some((id, message_type)) = receipt else {
            return Ok(None);
        };
        let mut pseudonyms: Vec<Digest32> = Vec::new();
        for p in identity.iter().chain(clinical.iter()).chain(unchanged) {
            if let Some(p) = p.patient.filter(|p| !pseudonyms.contains(p)) {
                pseudonyms.push(p);
            }
        }
        let last = if !clinical.is_empty() {
            Some((clinical, StoreKind::Clinical))
        } else if !identity.is_empty() {
            Some((identity, StoreKind::Identity))
        } else {
            None
        };
        if let Some((part, kind)) = last {
            part.push(self.receipt_ready(ctx, id, kind)?);
            return Ok(Some(self.message_event_for(
                ctx,
                message_type,
                &pseudonyms,
                None,
            )));
        }
        Ok(None)
    }

    /// The event of a transaction that wrote nothing: every entry was already so.
    async fn audit_unchanged(
        &self,
        mut event: AuditEvent,
        done: &[Ready],
    ) -> Result<(), VaultError> {
        event.count = Some(0);
        event.reason = Some("unchanged".into());
        for r in done {
            event.entities.push(r.write.record.id.as_str().to_owned());
            event = event.patient(r.patient);
        }
        self.audit(event).await
    }

    /// Writes one store's part of a transaction, all or nothing, with its audit event.
    async fn commit_part(
        &self,
        ctx: &Ctx,
        kind: StoreKind,
        part: Vec<Ready>,
        (base_event, after): (&AuditEvent, Option<AuditEvent>),
    ) -> Result<Vec<Ready>, VaultError> {
        if part.is_empty() {
            return Ok(part);
        }
        let mut event = base_event.clone();
        event.count = Some(part.len() as u64);
        for r in &part {
            event.entities.push(r.write.record.id.as_str().to_owned());
            event = event.patient(r.patient);
        }
        let writes: Vec<RecordWrite> = part.iter().map(|r| r.write.clone()).collect();
        let ran = Arc::new(AtomicBool::new(false));
        let extra = (ctx.held.clone(), after);
        let hook = self.audit_hook_with(event.clone(), ran.clone(), |e, _| e, extra);
        match self.store(kind).write_all(&ctx.org, writes, hook).await {
            Ok(Ok(())) => Ok(part),
            Ok(Err(conflicts)) => {
                let current = conflicts.first().and_then(|(_, c)| *c);
                self.audit_failure(event, VaultError::Conflict { current })
                    .await
            }
            Err(e) if ran.load(Ordering::SeqCst) => Err(VaultError::Audit(e.to_string())),
            Err(e) => self.audit_failure(event, VaultError::Store(e)).await,
        }
    }

    /// Undoes a committed identity part after the clinical part failed: patients it created
    /// are crypto-shredded, patients it changed or deleted get their previous content back
    /// as a new version. Audited as `transaction-undo`.
    async fn undo_identity(&self, ctx: &Ctx, done: &[Ready]) -> Result<(), VaultError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut event = self.event(ctx, "transaction-undo");
        event.count = Some(done.len() as u64);
        for r in done {
            event.entities.push(r.write.record.id.as_str().to_owned());
            event = event.patient(r.patient);
        }
        self.audit(event.clone()).await?;
        let result = async {
            let created: Vec<RecordKey> = done
                .iter()
                .filter(|r| r.write.expected == Expected::Absent)
                .map(|r| RecordKey {
                    rtype: r.write.record.rtype,
                    id: r.write.record.id.clone(),
                })
                .collect();
            if !created.is_empty() {
                self.identity.erase(&ctx.org, &created).await?;
            }
            for r in done.iter().filter(|r| r.write.expected != Expected::Absent) {
                let Some(before) = r.before else { continue };
                let key = RecordKey {
                    rtype: r.write.record.rtype,
                    id: r.write.record.id.clone(),
                };
                let Some(old) = self.identity.version(&ctx.org, &key, before).await? else {
                    continue;
                };
                self.know_keks([&old]).await?;
                let write = if old.deleted {
                    self.tombstone(&r.write.record)
                } else {
                    let s = self.unseal(ctx, &old)?;
                    let mut resource = s.resource;
                    fhir::strip_server_meta(&mut resource);
                    self.prepare(
                        ctx,
                        resource,
                        &r.id,
                        Base::Exactly(r.write.record.version),
                        &Refs::default(),
                    )
                    .await?
                    .write
                };
                let ev = self
                    .write_event(ctx, "transaction-undo", &write)
                    .patient(r.patient);
                self.write_audited(ctx, write, ev).await?;
            }
            Ok::<_, VaultError>(())
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.audit_failure(event, e).await,
        }
    }
}
