//! Import of FHIR R4 Bundles (collection, transaction, batch — as Synthea writes them) and
//! single resources. Patients go to the identity store, everything else to the clinical store,
//! linked through `subject`/`patient` references (`urn:uuid:`, `Patient/id`, or a conditional
//! `Patient?identifier=`). Each entry is written whole or not at all; entries are batched into
//! durable transactions.
use crate::error::VaultError;
use crate::records::{Base, Refs, fhir};
use crate::{Ctx, Vault};
use phivault_core::{RecordKey, RecordWrite, ResourceId, StoreKind, WriteOutcome};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Stop at the first bad entry instead of skipping it.
    pub strict: bool,
}

/// An entry that was not imported, and why (never a PHI value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub entry: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub patients: u64,
    pub resources: u64,
    pub skipped: Vec<Skipped>,
}

impl ImportReport {
    /// `imported N patients, M resources; K skipped: <reasons>`
    pub fn summary(&self) -> String {
        let mut s = format!(
            "imported {} patients, {} resources; {} skipped",
            self.patients,
            self.resources,
            self.skipped.len()
        );
        if !self.skipped.is_empty() {
            s.push_str(": ");
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|k| format!("{}: {}", k.entry, k.reason))
                .collect();
            s.push_str(&reasons.join("; "));
        }
        s
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ImportProgress {
    pub done: u64,
    pub total: u64,
}

const BATCH: usize = 256;

struct Entry {
    name: String,
    full_url: Option<String>,
    resource: Option<Value>,
    id: Option<ResourceId>,
    is_patient: bool,
    problem: Option<String>,
}

#[derive(Default)]
struct Pending {
    writes: Vec<RecordWrite>,
    names: Vec<String>,
    /// The resource and id of each write, to retry it as an update if it already exists.
    sources: Vec<(Value, ResourceId)>,
    keys: HashSet<RecordKey>,
    kind: Option<StoreKind>,
}

impl Vault {
    /// Imports one parsed JSON document. `source` names it in messages (a file name).
    /// In strict mode the first bad entry is returned as an error (entries before it stay
    /// imported); otherwise bad entries are listed in the report. Storage errors always stop.
    pub async fn import_document(
        &self,
        ctx: &Ctx,
        source: &str,
        doc: Value,
        opts: ImportOptions,
        report: &mut ImportReport,
        progress: &mut (dyn FnMut(ImportProgress) + Send),
    ) -> Result<(), VaultError> {
        self.require_operator(ctx, &self.event(ctx, "import"))
            .await?;
        let skipped_before = report.skipped.len();
        let result = self
            .import_entries(ctx, source, doc, opts, report, progress)
            .await;
        // Entries refused before any write get one event for this document.
        let refused = report.skipped.len().saturating_sub(skipped_before);
        let mut event = self.event(ctx, "import");
        match &result {
            Err(e) => {
                event.count = Some(refused as u64 + 1);
                return self.audit_failure(event, clone_err(e)).await;
            }
            Ok(()) if refused > 0 => {
                event.count = Some(refused as u64);
                self.audit(event.failed(&VaultError::Invalid(String::new())))
                    .await?;
            }
            Ok(()) => {}
        }
        result
    }

    async fn import_entries(
        &self,
        ctx: &Ctx,
        source: &str,
        doc: Value,
        opts: ImportOptions,
        report: &mut ImportReport,
        progress: &mut (dyn FnMut(ImportProgress) + Send),
    ) -> Result<(), VaultError> {
        let mut entries = collect_entries(source, doc);
        let mut refs = urn_refs(&entries);
        // Patients first, so that references to them resolve; order kept within each group.
        entries.sort_by_key(|e| !e.is_patient);
        let total = entries.len() as u64;
        let mut pending = Pending::default();
        for (done, entry) in entries.into_iter().enumerate() {
            let name = entry.name.clone();
            let prepared = match (entry.problem, entry.resource, entry.id) {
                (Some(p), _, _) => Err(VaultError::Invalid(p)),
                (None, Some(resource), Some(id)) => {
                    let rtype = fhir::resource_type(&resource)?;
                    let key = RecordKey { rtype, id };
                    let kind = crate::records::store_kind(rtype);
                    if pending.keys.contains(&key) || pending.kind.is_some_and(|k| k != kind) {
                        self.flush(ctx, &mut pending, opts, report, &mut refs)
                            .await?;
                    }
                    let source = resource.clone();
                    self.prepare(ctx, resource, &key.id, Base::New, &refs)
                        .await
                        .map(|p| (p.write, key, kind, source))
                }
                _ => Err(VaultError::Invalid("entry has no resource".into())),
            };
            match prepared {
                Ok((write, key, kind, source)) => {
                    pending.writes.push(write);
                    pending.names.push(name);
                    pending.sources.push((source, key.id.clone()));
                    pending.keys.insert(key);
                    pending.kind = Some(kind);
                    if pending.writes.len() >= BATCH {
                        self.flush(ctx, &mut pending, opts, report, &mut refs)
                            .await?;
                    }
                }
                Err(
                    e @ (VaultError::Invalid(_)
                    | VaultError::Unprocessable(_)
                    | VaultError::Conflict { .. }),
                ) => {
                    let reason = e.client_message();
                    if opts.strict {
                        self.flush(ctx, &mut pending, opts, report, &mut refs)
                            .await?;
                        return Err(VaultError::Invalid(format!("{name}: {reason}")));
                    }
                    report.skipped.push(Skipped {
                        entry: name,
                        reason,
                    });
                }
                Err(e) => {
                    self.flush(ctx, &mut pending, opts, report, &mut refs)
                        .await?;
                    return Err(e);
                }
            }
            progress(ImportProgress {
                done: done as u64 + 1,
                total,
            });
        }
        self.flush(ctx, &mut pending, opts, report, &mut refs).await
    }

    async fn flush(
        &self,
        ctx: &Ctx,
        pending: &mut Pending,
        opts: ImportOptions,
        report: &mut ImportReport,
        refs: &mut Refs,
    ) -> Result<(), VaultError> {
        let Some(kind) = pending.kind.take() else {
            return Ok(());
        };
        let writes = std::mem::take(&mut pending.writes);
        let names = std::mem::take(&mut pending.names);
        let sources = std::mem::take(&mut pending.sources);
        pending.keys.clear();
        // One audit event per batch transaction, made durable inside it.
        let rows: Vec<String> = writes
            .iter()
            .map(|w| w.record.id.as_str().to_owned())
            .collect();
        let patients: Vec<Option<phivault_core::Digest32>> = writes
            .iter()
            .zip(&sources)
            .map(|(w, (_, id))| {
                if kind == StoreKind::Identity {
                    Some(self.keyring.pseudonym(&ctx.org, id))
                } else {
                    w.record.link
                }
            })
            .collect();
        let event = self.event(ctx, "import");
        let ran = Arc::new(AtomicBool::new(false));
        let hook = self.audit_hook(event.clone(), ran.clone(), move |mut e, outcomes| {
            let mut n = 0;
            for ((o, row), p) in outcomes.iter().zip(rows).zip(patients) {
                if *o == WriteOutcome::Written {
                    n += 1;
                    e.entities.push(row);
                    e = e.patient(p);
                }
            }
            e.count = Some(n);
            e
        });
        let outcomes = match self.store(kind).write(&ctx.org, writes, hook).await {
            Ok(o) => o,
            Err(e) if ran.load(Ordering::SeqCst) => return Err(VaultError::Audit(e.to_string())),
            Err(e) => return self.audit_failure(event, VaultError::Store(e)).await,
        };
        for ((outcome, name), (source, id)) in outcomes.into_iter().zip(names).zip(sources) {
            let written = match outcome {
                WriteOutcome::Written => true,
                // It exists already: import updates it to a new version.
                WriteOutcome::Conflict { current } => {
                    self.import_update(ctx, source, &id, current, refs).await?
                }
            };
            if written {
                if kind == StoreKind::Identity {
                    report.patients += 1;
                    refs.known_patients.insert(id);
                } else {
                    report.resources += 1;
                }
                continue;
            }
            let reason = "changed concurrently by another writer; not imported".to_owned();
            if opts.strict {
                return Err(VaultError::Invalid(format!("{name}: {reason}")));
            }
            report.skipped.push(Skipped {
                entry: name,
                reason,
            });
        }
        Ok(())
    }

    /// Writes an imported resource over an existing record, retrying a few times if other
    /// writers keep moving the head. `false` if it never got through.
    async fn import_update(
        &self,
        ctx: &Ctx,
        source: Value,
        id: &ResourceId,
        mut current: Option<phivault_core::Version>,
        refs: &Refs,
    ) -> Result<bool, VaultError> {
        for _ in 0..3 {
            let base = current.map_or(Base::New, Base::Exactly);
            let write = self
                .prepare(ctx, source.clone(), id, base, refs)
                .await?
                .write;
            let patient = if write.record.rtype.is_patient() {
                Some(self.keyring.pseudonym(&ctx.org, id))
            } else {
                write.record.link
            };
            let event = self.write_event(ctx, "import", &write).patient(patient);
            match self.write_audited(ctx, write, event).await {
                Ok(()) => return Ok(true),
                Err(VaultError::Conflict { current: c }) => current = c,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

/// What an import would make of a document, without touching any store: for each entry, its
/// `Type/id` or the reason it would be refused. Pure; the fuzz target drives it.
pub fn inspect_document(source: &str, doc: Value) -> Vec<Result<String, String>> {
    collect_entries(source, doc)
        .into_iter()
        .map(|e| match (e.problem, e.resource, e.id) {
            (Some(p), _, _) => Err(p),
            (None, Some(r), Some(id)) => {
                let _ = fhir::references(&r);
                if e.is_patient {
                    let _ = fhir::patient_index_terms(&r);
                }
                fhir::resource_type(&r)
                    .map(|t| format!("{t}/{id}"))
                    .map_err(|err| err.client_message())
            }
            _ => Err("entry has no resource".into()),
        })
        .collect()
}

/// A copy of an error for the audit trail (the original goes back to the caller).
fn clone_err(e: &VaultError) -> VaultError {
    match e {
        VaultError::Invalid(m) => VaultError::Invalid(m.clone()),
        VaultError::TooCostly(m) => VaultError::TooCostly(m.clone()),
        VaultError::Unprocessable(m) => VaultError::Unprocessable(m.clone()),
        VaultError::NotFound => VaultError::NotFound,
        VaultError::Gone => VaultError::Gone,
        VaultError::Conflict { current } => VaultError::Conflict { current: *current },
        VaultError::Integrity(c) => VaultError::Integrity(c.clone()),
        VaultError::Crypto(c) => VaultError::Crypto(c.clone()),
        VaultError::Store(s) => VaultError::Store(s.clone()),
        VaultError::Audit(a) => VaultError::Audit(a.clone()),
        VaultError::Unauthenticated(w) => VaultError::Unauthenticated(w),
        VaultError::Forbidden => VaultError::Forbidden,
    }
}

/// The references an import resolves: each entry's fullUrl, to the Patient id it becomes.
fn urn_refs(entries: &[Entry]) -> Refs {
    let mut refs = Refs::default();
    for e in entries {
        if let (Some(full), Some(id)) = (&e.full_url, &e.id) {
            refs.urns
                .insert(full.clone(), e.is_patient.then(|| id.clone()));
        }
    }
    refs
}

fn collect_entries(source: &str, doc: Value) -> Vec<Entry> {
    let is_bundle = doc.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    if !is_bundle {
        return vec![make_entry(source.to_owned(), None, Some(doc), None)];
    }
    let Value::Object(mut bundle) = doc else {
        return Vec::new();
    };
    let items = match bundle.remove("entry") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return vec![make_entry(
                source.to_owned(),
                None,
                None,
                Some("Bundle.entry is not an array".into()),
            )];
        }
        None => Vec::new(),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let name = format!("{source} entry {}", i + 1);
            let Value::Object(mut item) = item else {
                return make_entry(name, None, None, Some("entry is not an object".into()));
            };
            let method = item
                .get("request")
                .and_then(|r| r.get("method"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let problem = match method.as_deref() {
                None | Some("POST") | Some("PUT") => None,
                Some(_) => Some("only create (POST) and update (PUT) entries are imported".into()),
            };
            let full_url = item
                .remove("fullUrl")
                .and_then(|v| v.as_str().map(str::to_owned));
            make_entry(name, full_url, item.remove("resource"), problem)
        })
        .collect()
}

fn make_entry(
    name: String,
    full_url: Option<String>,
    resource: Option<Value>,
    problem: Option<String>,
) -> Entry {
    let mut e = Entry {
        name,
        full_url: full_url.clone(),
        resource: None,
        id: None,
        is_patient: false,
        problem,
    };
    let Some(resource) = resource else {
        e.problem
            .get_or_insert_with(|| "entry has no resource".into());
        return e;
    };
    let rtype = match fhir::resource_type(&resource) {
        Ok(t) => t,
        Err(err) => {
            e.problem.get_or_insert(err.client_message());
            return e;
        }
    };
    e.is_patient = rtype.is_patient();
    let id = match resource.get("id") {
        Some(Value::String(s)) => ResourceId::parse(s).map_err(|err| err.to_string()),
        Some(_) => Err("id is not a string".to_owned()),
        None => {
            let from_urn = full_url
                .as_deref()
                .and_then(|u| u.strip_prefix("urn:uuid:"))
                .and_then(|u| ResourceId::parse(u).ok());
            match from_urn {
                Some(id) => Ok(id),
                None => phivault_crypto::random_uuid()
                    .map_err(|err| err.to_string())
                    .and_then(|u| ResourceId::parse(&u).map_err(|err| err.to_string())),
            }
        }
    };
    match id {
        Ok(id) => {
            e.name = format!("{} ({}/{})", e.name, rtype, id);
            e.id = Some(id);
        }
        Err(msg) => {
            e.problem.get_or_insert(msg);
        }
    }
    e.resource = Some(resource);
    e
}
