//! The fast path of a search whose only selective criterion is one index kind (a name prefix,
//! a postal code, an identifier) in row order: its index is read a chunk at a time after the
//! previous page's last row, and only what fills the page is opened, however many records the
//! criterion selects in all.
use super::engine::{Cand, MAX_KEYS, Next, PageOf};
use super::index;
use super::query::{SearchSpec, Total};
use crate::error::VaultError;
use crate::records::store_kind;
use crate::{Ctx, Vault};
use phivault_core::{Digest32, IndexKind};
use std::collections::BTreeMap;

impl Vault {
    /// The one kind and digests to stream, when this search can be streamed: keyset order (no
    /// `_sort`, no count asked, no `_offset`), not by id or compartment, one lookup of one kind.
    pub(super) fn streamable(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        now: i64,
    ) -> Option<(IndexKind, Vec<Digest32>)> {
        let whole = !spec.sort.is_empty() || spec.total == Total::Accurate || spec.summary_count;
        let by_key = spec.criterion("_id").is_some()
            || (!spec.rtype.is_patient()
                && (spec.criterion("patient").is_some() || spec.criterion("subject").is_some()));
        if whole || by_key || spec.offset > 0 || spec.after.is_some() {
            return None;
        }
        let mut lookups = index::lookups(spec.rtype.as_str(), &spec.criteria, now);
        let terms = match lookups.as_mut_slice() {
            [one] => std::mem::take(one),
            _ => return None,
        };
        let kind = terms.first()?.0;
        if terms.iter().any(|(k, _)| *k != kind) || terms.len() > 500 {
            return None;
        }
        let mut digests: Vec<Digest32> = terms
            .iter()
            .map(|(k, t)| self.term_digest(ctx, *k, t))
            .collect();
        digests.sort();
        digests.dedup();
        Some((kind, digests))
    }

    /// One page by streaming the index after `spec.after_seq`.
    pub(super) async fn stream_page(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        now: i64,
        (kind, digests): (IndexKind, Vec<Digest32>),
    ) -> Result<PageOf, VaultError> {
        let store = self.store(store_kind(spec.rtype));
        let want = spec.count.saturating_add(1);
        let chunk = u32::try_from(want.saturating_mul(2).clamp(32, 500)).unwrap_or(500);
        let mut after = spec.after_seq.unwrap_or(0);
        let (mut found, mut scanned, mut exhausted) = (Vec::new(), 0usize, false);
        while found.len() < want && scanned < MAX_KEYS {
            let rows = store.stream(&ctx.org, kind, &digests, after, chunk).await?;
            exhausted = rows.len() < usize::try_from(chunk).unwrap_or(usize::MAX);
            let Some((last, _)) = rows.last() else { break };
            after = *last;
            scanned += rows.len();
            let seq_of: BTreeMap<_, _> = rows.iter().map(|(s, k)| (k.clone(), *s)).collect();
            let cands = rows
                .into_iter()
                .filter(|(_, k)| k.rtype == spec.rtype)
                .map(|(_, key)| Cand { key, rec: None })
                .collect();
            let (opened, _) = self
                .open_matching(ctx, spec, cands, now, want - found.len())
                .await?;
            for (k, s, bg) in opened {
                let seq = seq_of.get(&k).copied().unwrap_or(after);
                found.push((seq, (k, s, bg)));
            }
            if exhausted {
                break;
            }
        }
        // Matches are in row order: the page ends at its last match, or, when the scan stopped
        // short of a full page (a criterion whose records the caller may not see), where the
        // scan stopped.
        let more = found.len() >= want || (!exhausted && scanned >= MAX_KEYS);
        found.truncate(spec.count);
        let before = spec.seen;
        let next_after = if found.len() == spec.count {
            found.last().map(|(s, _)| *s)
        } else {
            Some(after)
        };
        let page: Vec<_> = found.into_iter().map(|(_, m)| m).collect();
        let total = (!more && spec.total != Total::None).then(|| before + page.len());
        let next = match next_after {
            Some(s) if more && spec.count > 0 => Some(Next::AfterSeq(s, before + page.len())),
            _ => None,
        };
        Ok((page, total, next))
    }
}
