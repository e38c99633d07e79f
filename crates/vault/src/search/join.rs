//! `_include` and `_revinclude`: records joined to a page of matches. An included record is
//! read as a read of its own type and patient (a denial leaves it out and is audited); the
//! records of a `_revinclude` are found by a search of their own type, audited as one.
use super::matcher::{Criterion, Wanted, reference_of, values_at};
use super::query::{Join, SearchSpec, Total};
use crate::error::VaultError;
use crate::{Ctx, Stored, Vault};
use phivault_core::{ResourceId, ResourceType};
use std::collections::BTreeSet;

/// The most records joined to one page.
const MAX_JOINED: usize = 500;

impl Vault {
    /// The records the search's `_include`s and `_revinclude`s join to `matches`.
    pub(crate) async fn joined(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        matches: &[Stored],
    ) -> Result<Vec<Stored>, VaultError> {
        let mut seen: BTreeSet<(String, String)> = matches
            .iter()
            .map(|s| (s.rtype.as_str().to_owned(), s.id.as_str().to_owned()))
            .collect();
        let mut out = Vec::new();
        for j in &spec.includes {
            for s in self.included(ctx, j, matches, &mut seen).await? {
                out.push(s);
            }
        }
        for j in &spec.revincludes {
            for s in self.revincluded(ctx, j, matches).await? {
                if seen.insert((s.rtype.as_str().to_owned(), s.id.as_str().to_owned())) {
                    out.push(s);
                }
            }
        }
        out.truncate(MAX_JOINED);
        Ok(out)
    }

    async fn included(
        &self,
        ctx: &Ctx,
        j: &Join,
        matches: &[Stored],
        seen: &mut BTreeSet<(String, String)>,
    ) -> Result<Vec<Stored>, VaultError> {
        let mut targets = Vec::new();
        for m in matches.iter().filter(|m| m.rtype == j.rtype) {
            for p in j.def.paths {
                for v in values_at(&m.resource, p) {
                    if let Some((t, id)) = reference_of(v)
                        && seen.insert((t.to_owned(), id.to_owned()))
                    {
                        targets.push((t.to_owned(), id.to_owned()));
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (t, id) in targets.into_iter().take(MAX_JOINED) {
            let (Ok(rtype), Ok(id)) = (ResourceType::parse(&t), ResourceId::parse(&id)) else {
                continue;
            };
            // Each read is audited on its own, a denial too.
            match self.read(ctx, rtype, &id).await {
                Ok(s) => out.push(s),
                Err(VaultError::Forbidden | VaultError::NotFound | VaultError::Gone) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn revincluded(
        &self,
        ctx: &Ctx,
        j: &Join,
        matches: &[Stored],
    ) -> Result<Vec<Stored>, VaultError> {
        let any_of: Vec<Wanted> = matches
            .iter()
            .map(|m| Wanted::Reference {
                rtype: m.rtype.as_str().to_owned(),
                id: m.id.as_str().to_owned(),
            })
            .collect();
        let sub = SearchSpec {
            rtype: j.rtype,
            criteria: vec![Criterion { def: j.def, any_of }],
            sort: Vec::new(),
            count: MAX_JOINED,
            offset: 0,
            after: None,
            after_seq: None,
            seen: 0,
            summary_count: false,
            total: Total::None,
            elements: None,
            includes: Vec::new(),
            revincludes: Vec::new(),
        };
        match Box::pin(self.search(ctx, &sub)).await {
            Ok(found) => Ok(found.matches),
            // The caller may not search that type at all: nothing joined (the refusal is
            // audited by the search).
            Err(VaultError::Forbidden | VaultError::TooCostly(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
