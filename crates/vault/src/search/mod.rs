//! FHIR search over sealed records (issue 22). Nothing is searched in plaintext: keyed
//! indexes (some truncated) propose candidates, each candidate is opened and tested exactly,
//! and only the page the caller may see is released, in one audit event. `_include` and
//! `_revinclude` records are read as reads of their own type and patient, and audited.
pub mod dates;
mod engine;
pub mod index;
mod join;
pub mod matcher;
pub mod params;
pub mod query;
mod reindex;
mod stream;
pub mod text;

pub use engine::{MAX_CANDIDATES, Next, SearchOutcome};
pub use query::{SearchSpec, Total};
pub use reindex::{SEARCH_INDEX_VERSION, index_setting};

use crate::error::VaultError;
use crate::policy::Action;
use crate::{Ctx, Stored, Vault};
use serde_json::json;

/// Keeps only the `_elements` asked for (and `resourceType`, `id`, `meta`), marking the
/// resource SUBSETTED.
fn subset(mut s: Stored, keep: &[String]) -> Stored {
    if let Some(o) = s.resource.as_object_mut() {
        o.retain(|k, _| matches!(k.as_str(), "resourceType" | "id" | "meta") || keep.contains(k));
        let meta = o.entry("meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            let tags = m.entry("tag").or_insert_with(|| json!([]));
            if let Some(a) = tags.as_array_mut() {
                a.push(json!({
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "SUBSETTED"
                }));
            }
        }
    }
    s
}

impl Vault {
    /// Runs a FHIR search: one audit event names every match released (or the refusal), and
    /// included records are audited as reads of their own.
    pub async fn search(&self, ctx: &Ctx, spec: &SearchSpec) -> Result<SearchOutcome, VaultError> {
        let rtype = spec.rtype.as_str();
        let mut event = self.event(ctx, "search");
        event.resource_type = Some(rtype.to_owned());
        if !Self::may_at_all(ctx, Action::Search, rtype) {
            self.authorize(ctx, Action::Search, rtype, None, &event)
                .await?;
        }
        self.check_search_fields(ctx, spec, &event).await?;
        self.authorize_one_patient(ctx, spec, &event).await?;
        let now = self.clock.now_millis();
        let (page, total, next) = match self.search_page(ctx, spec, now).await {
            Ok(p) => p,
            Err(e) => return self.audit_read_failure(ctx, event, e).await,
        };
        event.count = Some(page.len() as u64);
        event.entities = page
            .iter()
            .map(|(k, _, _)| k.id.as_str().to_owned())
            .collect();
        for (_, s, bg) in &page {
            event = event.patient(s.patient);
            event.break_glass |= *bg;
        }
        if let Some((_, s, _)) = page.first() {
            event.fields = s.fields();
        }
        self.audit_read(ctx, event).await?;
        let mut matches: Vec<Stored> = page.into_iter().map(|(_, s, _)| s).collect();
        if spec.summary_count {
            matches.clear();
        }
        let included = if matches.is_empty() {
            Vec::new()
        } else {
            self.joined(ctx, spec, &matches).await?
        };
        if let Some(keep) = &spec.elements {
            matches = matches.into_iter().map(|s| subset(s, keep)).collect();
        }
        Ok(SearchOutcome {
            matches,
            included,
            total,
            next,
        })
    }

    /// A clinical search for one patient is asked of the policy for that patient first, as a
    /// read of the compartment is: a caller without standing gets 403, audited.
    async fn authorize_one_patient(
        &self,
        ctx: &Ctx,
        spec: &SearchSpec,
        event: &crate::audit::AuditEvent,
    ) -> Result<(), VaultError> {
        if spec.rtype.is_patient() {
            return Ok(());
        }
        let Some(c) = spec.criterion("patient").or(spec.criterion("subject")) else {
            return Ok(());
        };
        if let [matcher::Wanted::Reference { id, .. }] = c.any_of.as_slice()
            && let Ok(pid) = phivault_core::ResourceId::parse(id)
        {
            let link = self.keyring.pseudonym(&ctx.org, &pid);
            let event = event.clone().patient(Some(link));
            self.authorize(ctx, Action::Search, spec.rtype.as_str(), Some(link), &event)
                .await?;
        }
        Ok(())
    }
}
