//! Reindexing for search: a vault whose records were written before the current search
//! indexes gets them at `serve` start (resumable: a record already done is simply done again;
//! the organization is marked once every record of both stores has its entries).
use crate::error::VaultError;
use crate::records::store_kind;
use crate::{Ctx, Vault};
use phivault_core::{RecordKey, ReindexHead, StoreKind};

/// The version of the search indexes records get; a vault marked with an older one (or none)
/// is reindexed.
pub const SEARCH_INDEX_VERSION: &str = "2";

/// The stores to reindex from a version: version 2 added the family + birth-year index, to
/// Patients (the identity store) only.
fn stores_since(version: Option<&str>) -> &'static [StoreKind] {
    match version {
        Some("1") => &[StoreKind::Identity],
        _ => &[StoreKind::Identity, StoreKind::Clinical],
    }
}

/// The control setting that marks an organization's records as indexed for search (set when
/// the organization is created: it has no records yet).
pub fn index_setting(org: &phivault_core::OrgId) -> String {
    format!("search-index:{}", org.as_str())
}

fn setting(ctx: &Ctx) -> String {
    index_setting(&ctx.org)
}

impl Vault {
    /// Gives every live record of the caller's organization the current search indexes, if it
    /// has not got them yet. Operator only; audited as one `reindex` event. Answers how many
    /// records were reindexed (`None`: nothing to do).
    pub async fn reindex_search(&self, ctx: &Ctx) -> Result<Option<u64>, VaultError> {
        let event = self.event(ctx, "reindex");
        self.require_operator(ctx, &event).await?;
        let version = self.control.get_setting(&setting(ctx)).await?;
        if version.as_deref() == Some(SEARCH_INDEX_VERSION) {
            return Ok(None);
        }
        let mut done = 0u64;
        for kind in stores_since(version.as_deref()) {
            done += self.reindex_store(ctx, *kind).await?;
        }
        let mut event = event;
        event.count = Some(done);
        self.audit(event).await?;
        self.control
            .put_setting(&setting(ctx), SEARCH_INDEX_VERSION)
            .await?;
        Ok(Some(done))
    }

    async fn reindex_store(&self, ctx: &Ctx, kind: StoreKind) -> Result<u64, VaultError> {
        let store = self.store(kind);
        let mut after: Option<RecordKey> = None;
        let mut done = 0u64;
        loop {
            let recs = store.page(&ctx.org, after.as_ref(), 500).await?;
            let Some(last) = recs.last() else {
                return Ok(done);
            };
            after = Some(RecordKey {
                rtype: last.rtype,
                id: last.id.clone(),
            });
            self.know_keks(&recs).await?;
            let mut heads = Vec::new();
            for rec in recs.iter().filter(|r| !r.rtype.is_internal() && !r.deleted) {
                debug_assert_eq!(store_kind(rec.rtype), kind);
                let s = self.unseal(ctx, rec)?;
                heads.push(ReindexHead {
                    index: self.index_of(ctx, rec.rtype, &s.resource),
                    key: RecordKey {
                        rtype: rec.rtype,
                        id: rec.id.clone(),
                    },
                    version: rec.version,
                });
            }
            // A page in one transaction; a record changed meanwhile was indexed by its own
            // write (its version is no longer the head).
            done += store.reindex(&ctx.org, &heads).await?;
        }
    }
}
