//! What an HL7 v2 interface needs beyond the FHIR-shaped calls: ids derived from message
//! content (so a replayed message writes the same resources), the record of messages already
//! applied (so a duplicate is acknowledged again, not applied twice), and the care-team rule.
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{RecordKey, ResourceId, ResourceType};

impl Vault {
    /// A stable id for a resource derived from message content (`purpose`, `input`): keyed, so
    /// it reveals nothing of the input.
    pub fn derived_id(&self, ctx: &Ctx, purpose: &str, input: &str) -> ResourceId {
        let d = self.keyring.derived(&ctx.org, purpose, input);
        // 32 hex characters: a valid FHIR id with 128 bits of the digest.
        let hex = d.to_hex();
        ResourceId::parse(hex.get(..32).unwrap_or(&hex))
            .unwrap_or_else(|_| ResourceId::from_digest(&d))
    }

    /// The row id of the receipt of message `control_id` from `sender` (a keyed digest).
    pub(crate) fn receipt_id(
        &self,
        ctx: &Ctx,
        sender: &str,
        control_id: &str,
    ) -> Result<ResourceId, VaultError> {
        let d = self.keyring.derived(
            &ctx.org,
            "hl7-receipt",
            &format!("{sender}\u{1f}{control_id}"),
        );
        ResourceId::parse(&d.to_hex()).map_err(|_| VaultError::Invalid("receipt id".into()))
    }

    fn message_key(&self, ctx: &Ctx, sender: &str, control_id: &str) -> String {
        let d = self.keyring.derived(
            &ctx.org,
            "hl7-message",
            &format!("{sender}\u{1f}{control_id}"),
        );
        format!("hl7-applied:{}", d.to_hex())
    }

    /// The acknowledgment code a message from `sender` with this control id was answered with,
    /// if it was applied before.
    pub async fn message_applied(
        &self,
        ctx: &Ctx,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, VaultError> {
        let id = self.receipt_id(ctx, sender, control_id)?;
        for rtype in [
            ResourceType::HL7_APPLIED,
            ResourceType::HL7_APPLIED_IDENTITY,
        ] {
            let key = RecordKey {
                rtype,
                id: id.clone(),
            };
            let store = self.store(crate::records::store_kind(rtype));
            if store.head(&ctx.org, &key).await?.is_some() {
                return Ok(Some("AA".into()));
            }
        }
        // Recorded by a version that kept receipts in the control store.
        Ok(self
            .control
            .get_setting(&self.message_key(ctx, sender, control_id))
            .await?)
    }

    /// Records that a message was applied (after its data and audit event are durable).
    pub async fn remember_message(
        &self,
        ctx: &Ctx,
        sender: &str,
        control_id: &str,
        ack: &str,
    ) -> Result<(), VaultError> {
        Ok(self
            .control
            .put_setting(&self.message_key(ctx, sender, control_id), ack)
            .await?)
    }

    /// The one audit event of an HL7 message: the interface (actor), the message type, its
    /// control id (the context's request id), the patients touched (as pseudonyms) and the
    /// outcome (`reason` set for anything but a plain success: `duplicate`, `refused`, …).
    pub async fn message_event(
        &self,
        ctx: &Ctx,
        message_type: &str,
        patients: Vec<ResourceId>,
        reason: Option<&'static str>,
    ) -> Result<(), VaultError> {
        let written = ctx.held.as_ref().is_some_and(|h| h.message_written());
        if reason.is_none() && written {
            // The event went with the message's write; only what was held since remains.
            return self.audit_with_held(ctx, None).await;
        }
        let e = self.message_audit_event(ctx, message_type, &patients, reason);
        self.audit_with_held(ctx, Some(e)).await
    }

    /// The event [`Vault::message_event`] writes.
    pub(crate) fn message_audit_event(
        &self,
        ctx: &Ctx,
        message_type: &str,
        patients: &[ResourceId],
        reason: Option<&'static str>,
    ) -> crate::audit::AuditEvent {
        let pseudonyms: Vec<_> = patients
            .iter()
            .map(|p| self.keyring.pseudonym(&ctx.org, p))
            .collect();
        self.message_event_for(ctx, message_type, &pseudonyms, reason)
    }

    /// The event of a message touching the patients of these pseudonyms.
    pub(crate) fn message_event_for(
        &self,
        ctx: &Ctx,
        message_type: &str,
        pseudonyms: &[phivault_core::Digest32],
        reason: Option<&'static str>,
    ) -> crate::audit::AuditEvent {
        let mut e = self.event(ctx, "hl7-message");
        e.resource_type = Some(message_type.to_owned());
        for p in pseudonyms {
            e = e.patient(Some(*p));
        }
        e.count = Some(pseudonyms.len() as u64);
        if let Some(r) = reason {
            if r != "duplicate" {
                e.outcome = crate::audit::Outcome::Error;
            }
            e.reason = Some(r.to_owned());
        }
        e
    }

    /// Whether an ORG_ADMIN turned on the care-team rule (integrations grant the attending).
    pub async fn care_team_rule_on(&self, ctx: &Ctx) -> Result<bool, VaultError> {
        Ok(self
            .control
            .get_setting(&Self::care_team_setting(ctx))
            .await?
            .as_deref()
            == Some("on"))
    }
}

impl Vault {
    /// Seals search criteria into an opaque page cursor, bound to the organization and the
    /// caller, so that a `next` link carries no identifier, name or phone in its URL.
    pub fn seal_cursor(&self, ctx: &Ctx, criteria: &str) -> Result<String, VaultError> {
        let sealed = self
            .keyring
            .seal_secret(&cursor_context(ctx), criteria.as_bytes())?;
        Ok(sealed.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Opens a page cursor sealed by [`Vault::seal_cursor`] for the same caller.
    pub fn open_cursor(&self, ctx: &Ctx, cursor: &str) -> Result<String, VaultError> {
        let bad = || VaultError::Invalid("_page is not a page cursor of this caller".into());
        if !cursor.len().is_multiple_of(2) || cursor.len() > 16_384 {
            return Err(bad());
        }
        let bytes: Vec<u8> = (0..cursor.len())
            .step_by(2)
            .map(|i| {
                cursor
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let plain = self
            .keyring
            .open_secret(&cursor_context(ctx), &bytes)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }
}

fn cursor_context(ctx: &Ctx) -> String {
    format!(
        "page-cursor\u{1f}{}\u{1f}{}",
        ctx.org,
        ctx.actor.audit_name()
    )
}
