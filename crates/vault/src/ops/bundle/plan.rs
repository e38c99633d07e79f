//! Planning a transaction: server ids for POSTs, `fullUrl`s resolved, every write prepared
//! and its version precondition checked, before anything is authorized or written.
use super::Ready;
use super::parse::{Planned, bad, rewrite_refs};
use crate::error::VaultError;
use crate::records::{Base, Prepared, Refs, fhir, store_kind};
use crate::{Ctx, Vault};
use phivault_core::{RecordWrite, ResourceId, ResourceType, SealedRecord};
use phivault_fhir::Method;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// What the entries of a transaction say about each other: each `fullUrl` → `Type/id`, and
/// the patients it writes (so references to them resolve).
struct Names {
    urls: HashMap<String, String>,
    refs: Refs,
}

/// Gives each POST a new id and checks the entries against each other: writes only, no
/// resource twice, no `fullUrl` twice.
fn assign_ids(planned: &mut [Planned]) -> Result<Names, VaultError> {
    let mut urls: HashMap<String, String> = HashMap::new();
    let mut refs = Refs::default();
    let mut seen: HashSet<(ResourceType, ResourceId)> = HashSet::new();
    for p in planned.iter_mut() {
        if p.method == Method::Get {
            return Err(bad(
                p.n,
                "a transaction only writes (POST, PUT, DELETE); read in a batch",
            ));
        }
        if p.method == Method::Post {
            let id = ResourceId::parse(&phivault_crypto::random_uuid()?)
                .map_err(|_| VaultError::Invalid("id".into()))?;
            p.id = Some(id);
        }
        let Some(id) = p.id.clone() else {
            return Err(bad(p.n, "no id"));
        };
        if !seen.insert((p.rtype, id.clone())) {
            return Err(bad(
                p.n,
                "the same resource appears twice in the transaction",
            ));
        }
        if let Some(u) = &p.full_url
            && urls
                .insert(u.clone(), format!("{}/{}", p.rtype, id))
                .is_some()
        {
            return Err(bad(p.n, "duplicate fullUrl"));
        }
        if p.rtype.is_patient() && p.method != Method::Delete {
            refs.known_patients.insert(id);
        }
    }
    Ok(Names { urls, refs })
}

/// The tombstone of a DELETE entry, if its record is live and at the version `ifMatch` names.
fn delete_write(
    vault: &Vault,
    p: &Planned,
    head: Option<SealedRecord>,
) -> Result<RecordWrite, VaultError> {
    let head = match head {
        Some(h) if !h.deleted => h,
        Some(_) => return Err(bad(p.n, "already deleted")),
        None => return Err(bad(p.n, "not found")),
    };
    if p.if_match.is_some_and(|v| v != head.version) {
        return Err(VaultError::Conflict {
            current: Some(head.version),
        });
    }
    Ok(vault.tombstone(&head))
}

impl Vault {
    /// Resolves ids and references and prepares every write of a transaction.
    pub(super) async fn plan_transaction(
        &self,
        ctx: &Ctx,
        mut planned: Vec<Planned>,
    ) -> Result<Vec<Ready>, VaultError> {
        let names = assign_ids(&mut planned)?;
        let deleted_patients: HashSet<ResourceId> = planned
            .iter()
            .filter(|p| p.rtype.is_patient() && p.method == Method::Delete)
            .filter_map(|p| p.id.clone())
            .collect();
        let mut out = Vec::with_capacity(planned.len());
        for mut p in planned {
            let Some(id) = p.id.take() else { continue };
            let key = self.row_key(ctx, p.rtype, &id);
            let store = self.store(store_kind(p.rtype));
            let head = store.head(&ctx.org, &key).await?;
            let before = head.as_ref().map(|h| h.version);
            let mut unchanged = false;
            let (write, resource, prior, others) = match p.method {
                Method::Delete => (delete_write(self, &p, head)?, None, None, Vec::new()),
                _ => {
                    let (prepared, same) = self
                        .prepare_upsert(ctx, &mut p, &id, head.as_ref(), &names)
                        .await?;
                    unchanged = same;
                    let Prepared {
                        write,
                        resource,
                        prior,
                        others,
                        ..
                    } = prepared;
                    (write, Some(resource), prior, others)
                }
            };
            let patient = if p.rtype.is_patient() {
                Some(self.keyring.pseudonym(&ctx.org, &id))
            } else {
                write.record.link
            };
            if let Some(link) = write.record.link
                && p.method != Method::Delete
                && deleted_patients
                    .iter()
                    .any(|d| self.keyring.pseudonym(&ctx.org, d) == link)
            {
                return Err(bad(p.n, "refers to a patient this transaction deletes"));
            }
            out.push(Ready {
                n: p.n,
                method: p.method,
                id,
                write,
                resource,
                patient,
                prior,
                others,
                before,
                unchanged,
            });
        }
        Ok(out)
    }

    /// The write of a POST or PUT entry, its references rewritten to the ids the transaction
    /// assigns and its version precondition checked; `true` if it holds exactly the content
    /// the record holds now (then it keeps the head's version and writes nothing).
    async fn prepare_upsert(
        &self,
        ctx: &Ctx,
        p: &mut Planned,
        id: &ResourceId,
        head: Option<&SealedRecord>,
        names: &Names,
    ) -> Result<(Prepared, bool), VaultError> {
        let before = head.map(|h| h.version);
        let mut resource = p.resource.take().unwrap_or(Value::Null);
        if p.method == Method::Post
            && let Some(o) = resource.as_object_mut()
        {
            o.remove("id");
        }
        rewrite_refs(&mut resource, &names.urls, 0);
        let base = match (p.method, p.if_match, before) {
            (Method::Post, _, _) => Base::New,
            (_, Some(v), _) => Base::Exactly(v),
            (_, None, Some(v)) => Base::Exactly(v),
            (_, None, None) => Base::New,
        };
        if let (Base::Exactly(want), Some(cur)) = (base, before)
            && want != cur
        {
            return Err(VaultError::Conflict { current: Some(cur) });
        }
        let n = p.n;
        let mut prepared = self
            .prepare(ctx, resource, id, base, &names.refs)
            .await
            .map_err(|e| match e {
                VaultError::Invalid(m) => bad(n, &m),
                VaultError::Unprocessable(m) => {
                    VaultError::Unprocessable(format!("entry {n}: {m}"))
                }
                other => other,
            })?;
        let mut unchanged = false;
        if let Some(h) = head.filter(|h| !h.deleted)
            && self.same_content(ctx, h, &prepared.resource).await?
        {
            prepared.write.record.version = h.version;
            prepared.write.record.updated_at = h.updated_at;
            unchanged = true;
        }
        Ok((prepared, unchanged))
    }

    /// Whether `new` is the content the record holds now.
    async fn same_content(
        &self,
        ctx: &Ctx,
        head: &SealedRecord,
        new: &Value,
    ) -> Result<bool, VaultError> {
        self.know_keks([head]).await?;
        let mut current = self.unseal(ctx, head)?.resource;
        fhir::strip_server_meta(&mut current);
        let mut new = new.clone();
        fhir::strip_server_meta(&mut new);
        Ok(current == new)
    }
}
