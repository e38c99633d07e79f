//! A transaction for one HL7 v2 message: its receipt and its event go with its last part.
use super::{BundleKind, Method, RECEIPT, Ready, parse_bundle};
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{Expected, RecordKey, ResourceId, ResourceType, StoreKind, Version};
use serde_json::Value;

impl Vault {
    /// Writes the transaction Bundle of HL7 v2 message `ctx.request_id` from `sender`, with
    /// the message's receipt (see [`ResourceType::HL7_APPLIED`]) in the same store
    /// transaction as its last part, so that "applied" and "recorded as applied" are one
    /// durable commit.
    pub async fn bundle_for_message(
        &self,
        ctx: &Ctx,
        bundle: Value,
        (sender, message_type): (&str, &str),
    ) -> Result<(), VaultError> {
        let event = self.event(ctx, "transaction");
        let planned = match parse_bundle(bundle) {
            Ok((BundleKind::Transaction, p)) => p,
            Ok((BundleKind::Batch, _)) => {
                let e = VaultError::Invalid("a message is written as a transaction".into());
                return self.audit_failure(event, e).await;
            }
            Err(e) => return self.audit_failure(event, e).await,
        };
        let control_id = ctx.request_id.as_deref().unwrap_or("");
        let receipt = self.receipt_id(ctx, sender, control_id)?;
        self.transaction(ctx, planned, Some((receipt, message_type)))
            .await
            .map(|_| ())
    }

    /// The receipt row of a message, ready to be written with the part of `kind`.
    pub(super) fn receipt_ready(
        &self,
        ctx: &Ctx,
        id: ResourceId,
        kind: StoreKind,
    ) -> Result<Ready, VaultError> {
        let rtype = match kind {
            StoreKind::Identity => ResourceType::HL7_APPLIED_IDENTITY,
            StoreKind::Clinical => ResourceType::HL7_APPLIED,
        };
        let key = RecordKey { rtype, id };
        let write = self.seal_bytes(
            ctx,
            &key,
            (Version::FIRST, Expected::Absent),
            b"applied",
            None,
            Vec::new(),
        )?;
        Ok(Ready {
            n: RECEIPT,
            method: Method::Put,
            id: key.id,
            write,
            resource: None,
            patient: None,
            prior: None,
            others: Vec::new(),
            before: None,
            unchanged: false,
        })
    }
}
