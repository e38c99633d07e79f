//! Running a search over sealed records: candidates from the keyed indexes (or the patient's
//! compartment, or the ids asked for), then each candidate opened, checked against the
//! caller's policy and every criterion, and only the page released and audited.
use super::index::{self, kept_bits};
use super::matcher::{SortKey, Wanted, sort_key};
use super::query::{SearchSpec, SortBy, Total};
use crate::error::VaultError;
use crate::policy::{self, Action, GrantState, Purpose};
use crate::records::store_kind;
use crate::{Ctx, Stored, Vault};
use phivault_core::{Digest32, IndexKind, RecordKey, ResourceId, SealedRecord};
use std::collections::{BTreeMap, BTreeSet};

/// The most candidates a sorted or counted search opens (it opens them all); one in key order
/// opens only what its page needs.
pub const MAX_CANDIDATES: usize = 5_000;
/// The most keys a criterion may select to give the candidate set; a wider one only narrows
/// the set the others give, and a search with nothing narrower is refused, saying what to add.
pub const MAX_KEYS: usize = 50_000;
/// Candidates opened per store round trip when paging through them.
const BATCH: usize = 200;
/// Candidates few enough to open rather than narrow further by index.
const ENOUGH: usize = 64;

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// After this row (keyset paging, in key order), with how many matches came before.
    After(ResourceId, usize),
    /// After this index position (a streamed search), with how many matches came before.
    AfterSeq(u64, usize),
    /// After this many matches (sorted results).
    Offset(usize),
}

/// What a search found: the page's matches, the records included with them, the total when
/// known, and where the next page starts.
#[derive(Debug, Default)]
pub struct SearchOutcome {
    pub matches: Vec<Stored>,
    pub included: Vec<Stored>,
    pub total: Option<usize>,
    pub next: Option<Next>,
}

/// A candidate: its key and, when the compartment read already brought it, its sealed head.
pub(super) struct Cand {
    pub key: RecordKey,
    pub rec: Option<SealedRecord>,
}

/// A page of matches (key, released record, break-glass), the total when known, the next start.
pub(super) type PageOf = (Vec<(RecordKey, Stored, bool)>, Option<usize>, Option<Next>);

fn too_costly(spec: &SearchSpec) -> VaultError {
    let add = if spec.rtype.is_patient() {
        "add name, family or given (3+ letters), birthdate (a day, a month or a year), \
         identifier, phone, email or address-postalcode"
    } else {
        "add patient (or subject), identifier or _id"
    };
    VaultError::TooCostly(format!(
        "this search selects too many {} records to answer: {add}",
        spec.rtype
    ))
}

impl Vault {
    /// The digests of a term of `kind` (truncated as that index keeps them).
    pub(super) fn term_digest(&self, ctx: &Ctx, kind: IndexKind, term: &str) -> Digest32 {
        index::truncate(
            self.keyring.blind_index(kind, &ctx.org, term),
            kept_bits(kind),
        )
    }

    /// The index entries a record gets for search (beside the exact-lookup ones).
    pub(crate) fn search_index(
        &self,
        ctx: &Ctx,
        rtype: &str,
        r: &serde_json::Value,
    ) -> Vec<(IndexKind, Digest32)> {
        let terms = if rtype == "Patient" {
            index::patient_terms(r)
        } else {
            index::record_terms(rtype, r)
        };
        let mut out: Vec<(IndexKind, Digest32)> = terms
            .iter()
            .map(|(k, t)| (*k, self.term_digest(ctx, *k, t)))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Candidates from the criteria that have an index, narrowest first: the first criterion
    /// selecting at most [`MAX_KEYS`] gives the set, each later one keeps those of the set it
    /// holds too (looked up within the set), until few enough are left to open. `None`: no
    /// criterion selects.
    async fn indexed_candidates(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        now: i64,
    ) -> Result<Option<Vec<RecordKey>>, VaultError> {
        let store = self.store(store_kind(spec.rtype));
        let limit = u32::try_from(MAX_KEYS + 1).unwrap_or(u32::MAX);
        let mut lookups = index::lookups(spec.rtype.as_str(), &spec.criteria, now);
        lookups.sort_by_key(|terms| {
            let widest = terms.iter().map(|(k, _)| index::width(*k)).max();
            (widest, terms.len())
        });
        let mut result: Option<BTreeMap<RecordKey, u64>> = None;
        let mut wide: Vec<BTreeMap<IndexKind, Vec<Digest32>>> = Vec::new();
        for terms in lookups {
            let by_kind = self.digests_by_kind(ctx, &terms);
            if result.is_some() {
                wide.push(by_kind);
                continue;
            }
            let mut found = BTreeMap::new();
            for (kind, digests) in &by_kind {
                for (seq, key) in store.find_any(&ctx.org, *kind, digests, limit).await? {
                    found.insert(key, seq);
                }
                if found.len() > MAX_KEYS {
                    break;
                }
            }
            if found.len() > MAX_KEYS {
                wide.push(by_kind);
                continue;
            }
            found.retain(|k, _| k.rtype == spec.rtype);
            result = Some(found);
        }
        let Some(mut keys) = result else {
            return Ok(None);
        };
        // The wider criteria, on the set: each keeps the rows it indexes (index probes only).
        for by_kind in wide {
            if keys.len() <= ENOUGH {
                break;
            }
            let seqs: Vec<u64> = keys.values().copied().collect();
            let mut kept = BTreeSet::new();
            for (kind, digests) in &by_kind {
                kept.extend(store.find_within(&ctx.org, *kind, digests, &seqs).await?);
            }
            keys.retain(|_, seq| kept.contains(seq));
        }
        Ok(Some(keys.into_keys().collect()))
    }

    /// The digests of a criterion's terms, by index kind, sorted.
    fn digests_by_kind(
        &self,
        ctx: &Ctx,
        terms: &[index::Term],
    ) -> BTreeMap<IndexKind, Vec<Digest32>> {
        let mut by_kind: BTreeMap<IndexKind, Vec<Digest32>> = BTreeMap::new();
        for (k, t) in terms {
            by_kind
                .entry(*k)
                .or_default()
                .push(self.term_digest(ctx, *k, t));
        }
        for d in by_kind.values_mut() {
            d.sort();
            d.dedup();
        }
        by_kind
    }

    /// The records a search looks at, in key order.
    async fn candidates(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        now: i64,
    ) -> Result<Vec<Cand>, VaultError> {
        if let Some(c) = spec.criterion("_id") {
            let mut keys: Vec<RecordKey> = c
                .any_of
                .iter()
                .filter_map(|w| match w {
                    Wanted::Id(id) => ResourceId::parse(id).ok(),
                    _ => None,
                })
                .map(|id| self.row_key(ctx, spec.rtype, &id))
                .collect();
            keys.sort();
            keys.dedup();
            return Ok(keys
                .into_iter()
                .map(|key| Cand { key, rec: None })
                .collect());
        }
        if !spec.rtype.is_patient()
            && let Some(c) = spec.criterion("patient").or(spec.criterion("subject"))
        {
            let mut out = Vec::new();
            for w in &c.any_of {
                if let Wanted::Reference { rtype, id } = w
                    && (rtype.is_empty() || rtype == "Patient")
                    && let Ok(pid) = ResourceId::parse(id)
                {
                    let link = self.keyring.pseudonym(&ctx.org, &pid);
                    let recs = self.clinical.linked(&ctx.org, &link).await?;
                    out.extend(
                        recs.into_iter()
                            .filter(|r| r.rtype == spec.rtype)
                            .map(|r| Cand {
                                key: RecordKey {
                                    rtype: r.rtype,
                                    id: r.id.clone(),
                                },
                                rec: Some(r),
                            }),
                    );
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            out.dedup_by(|a, b| a.key == b.key);
            return Ok(out);
        }
        match self.indexed_candidates(ctx, spec, now).await? {
            Some(keys) => Ok(keys
                .into_iter()
                .map(|key| Cand { key, rec: None })
                .collect()),
            None => Err(too_costly(spec)),
        }
    }

    /// The patient pseudonyms a clinical `patient` / `subject` criterion names: a record
    /// linked to one of them matches, however its reference is written (a conditional
    /// `Patient?identifier=…` reference resolved when it was stored, an absolute URL).
    fn criterion_links(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        c: &super::matcher::Criterion,
    ) -> Vec<Digest32> {
        if spec.rtype.is_patient() || !matches!(c.def.name, "patient" | "subject") {
            return Vec::new();
        }
        c.any_of
            .iter()
            .filter_map(|w| match w {
                Wanted::Reference { rtype, id } if rtype.is_empty() || rtype == "Patient" => {
                    ResourceId::parse(id).ok()
                }
                _ => None,
            })
            .map(|id| self.keyring.pseudonym(&ctx.org, &id))
            .collect()
    }

    /// Opens candidates (fetching the heads not yet read), keeps those the caller may see and
    /// every criterion accepts. `stop`: enough matches.
    pub(super) async fn open_matching(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        cands: Vec<Cand>,
        now: i64,
        stop: usize,
    ) -> Result<(Vec<(RecordKey, Stored, bool)>, bool), VaultError> {
        let store = self.store(store_kind(spec.rtype));
        let links: Vec<Vec<Digest32>> = spec
            .criteria
            .iter()
            .map(|c| self.criterion_links(ctx, spec, c))
            .collect();
        let mut out = Vec::new();
        let mut iter = cands.into_iter().peekable();
        // Fetch no more heads than the page can use (most candidates match).
        let batch_size = stop.clamp(16, BATCH);
        while iter.peek().is_some() {
            let batch: Vec<Cand> = iter.by_ref().take(batch_size).collect();
            let missing: Vec<RecordKey> = batch
                .iter()
                .filter(|c| c.rec.is_none())
                .map(|c| c.key.clone())
                .collect();
            let mut fetched: BTreeMap<RecordKey, SealedRecord> = BTreeMap::new();
            if !missing.is_empty() {
                for r in store.heads(&ctx.org, &missing).await? {
                    let key = RecordKey {
                        rtype: r.rtype,
                        id: r.id.clone(),
                    };
                    fetched.insert(key, r);
                }
            }
            let recs: Vec<(RecordKey, SealedRecord)> = batch
                .into_iter()
                .filter_map(|c| {
                    let rec = c.rec.or_else(|| fetched.remove(&c.key))?;
                    Some((c.key, rec))
                })
                .filter(|(_, r)| !r.deleted)
                .collect();
            self.know_keks(recs.iter().map(|(_, r)| r)).await?;
            for (key, rec) in recs {
                let s = self.unseal(ctx, &rec)?;
                let linked = |l: &Vec<Digest32>| s.patient.is_some_and(|p| l.contains(&p));
                if !spec
                    .criteria
                    .iter()
                    .zip(&links)
                    .all(|(c, l)| linked(l) || c.matches(&s.resource, now))
                {
                    continue;
                }
                let verdict = self
                    .check(ctx, Action::Search, spec.rtype.as_str(), s.patient)
                    .await?;
                // Only what this caller may see; the others are not counted.
                if let Ok(allowed) = verdict {
                    let s = self.release(&allowed, s);
                    out.push((key, s, allowed.break_glass));
                    if out.len() >= stop {
                        return Ok((out, iter.peek().is_some()));
                    }
                }
            }
        }
        Ok((out, false))
    }

    /// The release a caller's Patient searches get (at the best standing a grant gives).
    fn search_release(
        ctx: &Ctx,
        policy: &crate::policy::fields::FieldPolicy,
    ) -> Option<policy::fields::Release> {
        let purpose = ctx.purpose.as_deref().and_then(Purpose::parse);
        match policy::decide_with(
            policy,
            &ctx.subject,
            Action::Search,
            "Patient",
            purpose,
            GrantState::Active,
        ) {
            policy::Decision::Allow { release, .. } => Some(release),
            policy::Decision::Deny(_) => None,
        }
    }

    /// Refuses (audited) a Patient search on, or sorted by, an element the caller's role may
    /// not see: a match would tell it the value.
    pub(crate) async fn check_search_fields(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        event: &crate::audit::AuditEvent,
    ) -> Result<(), VaultError> {
        if !spec.rtype.is_patient() {
            return Ok(());
        }
        let Some(release) = Self::search_release(ctx, &self.field_policy) else {
            return Ok(());
        };
        let mut elements: Vec<&str> = spec.criteria.iter().map(|c| c.element()).collect();
        elements.extend(spec.sort.iter().filter_map(|s| {
            s.def
                .and_then(|d| d.paths.first())
                .and_then(|p| p.split('.').next())
        }));
        // An identifier is how a patient is looked up (a wristband, a referral): an exact
        // lookup tells nothing the caller did not bring, so every role may use it.
        if elements
            .iter()
            .all(|e| matches!(*e, "id" | "meta" | "identifier") || release.keeps(e))
        {
            return Ok(());
        }
        self.deny(event, "search-withheld-field").await
    }

    /// Sorts matches by the `_sort` keys, ties by key.
    fn sort_matches(sort: &[SortBy], found: &mut [(RecordKey, Stored, bool)]) {
        let key_of = |s: &Stored| -> Vec<Option<SortKey>> {
            sort.iter()
                .map(|b| match b.def {
                    None => Some(SortKey::Text(s.id.as_str().to_owned())),
                    Some(d) => sort_key(d, &s.resource),
                })
                .collect()
        };
        found.sort_by(|a, b| {
            let (ka, kb) = (key_of(&a.1), key_of(&b.1));
            for (i, by) in sort.iter().enumerate() {
                let (x, y) = (ka.get(i).cloned().flatten(), kb.get(i).cloned().flatten());
                let ord = match (x, y) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (Some(x), Some(y)) if by.descending => y.cmp(&x),
                    (Some(x), Some(y)) => x.cmp(&y),
                };
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            a.1.id.cmp(&b.1.id)
        });
    }

    /// The page of matches, the total when known, and the next page's start.
    pub(crate) async fn search_page(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        now: i64,
    ) -> Result<PageOf, VaultError> {
        if let Some(stream) = self.streamable(ctx, spec, now) {
            return self.stream_page(ctx, spec, now, stream).await;
        }
        if spec.after_seq.is_some() {
            return Err(VaultError::Invalid("bad cursor".into()));
        }
        let mut cands = self.candidates(ctx, spec, now).await?;
        let whole = !spec.sort.is_empty() || spec.total == Total::Accurate || spec.summary_count;
        if whole {
            if cands.len() > MAX_CANDIDATES {
                return Err(too_costly(spec));
            }
            let (mut found, _) = self
                .open_matching(ctx, spec, cands, now, usize::MAX)
                .await?;
            Self::sort_matches(&spec.sort, &mut found);
            let total = found.len();
            let page: Vec<_> = found
                .into_iter()
                .skip(spec.offset)
                .take(spec.count)
                .collect();
            let end = spec.offset.saturating_add(page.len());
            let next = (end < total && spec.count > 0).then_some(Next::Offset(end));
            return Ok((page, Some(total), next));
        }
        if let Some(after) = &spec.after {
            cands.retain(|c| &c.key.id > after);
        }
        let want = spec.offset.saturating_add(spec.count).saturating_add(1);
        let (found, more_cands) = self.open_matching(ctx, spec, cands, now, want).await?;
        let more = found.len() == want || (more_cands && found.len() >= want);
        let page: Vec<_> = found
            .into_iter()
            .skip(spec.offset)
            .take(spec.count)
            .collect();
        let before = spec.seen.saturating_add(spec.offset);
        let total = (!more && spec.total != Total::None).then(|| before + page.len());
        let next = match page.last() {
            Some((k, _, _)) if more && spec.count > 0 => {
                Some(Next::After(k.id.clone(), before + page.len()))
            }
            _ => None,
        };
        Ok((page, total, next))
    }
}
