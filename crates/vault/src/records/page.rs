//! Paging through a store's live FHIR records (export, backup verification).
use super::{PageCursor, Stored};
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{RecordKey, SealedRecord, StoreKind};

impl Vault {
    /// One page of live records of one store (for export), and the cursor for the next page
    /// (`None` at the end).
    pub async fn page(
        &self,
        ctx: &Ctx,
        kind: StoreKind,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> Result<(Vec<Stored>, Option<PageCursor>), VaultError> {
        self.require_operator(ctx, &self.event(ctx, "export"))
            .await?;
        let (recs, next) = self.fhir_page(ctx, kind, after, limit).await?;
        let mut event = self.event(ctx, "export");
        if let Err(e) = self.know_keks(&recs).await {
            return self.audit_failure(event, e).await;
        }
        let page = match recs
            .iter()
            .map(|r| self.unseal(ctx, r))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(p) => p,
            Err(e) => return self.audit_failure(event, e).await,
        };
        if !page.is_empty() {
            event.count = Some(page.len() as u64);
            event.entities = recs.iter().map(|r| r.id.as_str().to_owned()).collect();
            for s in &page {
                event = event.patient(s.patient);
            }
            self.audit(event).await?;
        }
        Ok((page, next))
    }

    /// One page of live FHIR records (the vault's internal rows, such as the HL7 error queue,
    /// left out: pages of them are skipped, so a page is empty only at the end).
    async fn fhir_page(
        &self,
        ctx: &Ctx,
        kind: StoreKind,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> Result<(Vec<SealedRecord>, Option<PageCursor>), VaultError> {
        let mut after = after.map(|c| c.0.clone());
        loop {
            let mut recs = self
                .store(kind)
                .page(&ctx.org, after.as_ref(), limit)
                .await?;
            let Some(last) = recs.last() else {
                return Ok((recs, None));
            };
            let next = RecordKey {
                rtype: last.rtype,
                id: last.id.clone(),
            };
            recs.retain(|r| !r.rtype.is_internal());
            if !recs.is_empty() {
                return Ok((recs, Some(PageCursor(next))));
            }
            after = Some(next);
        }
    }
}
