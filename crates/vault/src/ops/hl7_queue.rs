//! The sealed HL7 v2 error queue: every message an interface did not accept (AE or AR) is
//! kept, sealed like PHI, with its ACK code, reason and interface, until an operator retries
//! or discards it (or a retention rule for `hl7-error` expires it).
//!
//! An entry is a row of the clinical store of internal type [`ResourceType::HL7_ERROR`], so it
//! gets what a record gets: its own data key wrapped by the current KEK, associated data
//! binding it to its organization, row id and version, key rotation, backups, and
//! crypto-shredding with a tombstone when it is discarded. The row id is a keyed digest of
//! the interface and the message bytes: a message sent again and refused again updates its
//! entry (one more attempt) instead of adding another. The sealed plaintext is the entry's
//! header (JSON, no content) followed by the message bytes; no FHIR path can name the type.
//!
//! Counters (queued, retried, discarded per interface) are kept in the control store so that
//! `/metrics` on any node counts what every process (server or CLI) did.
use crate::error::VaultError;
use crate::{Actor, Ctx, Vault};
use phivault_core::{Expected, RecordKey, ResourceId, ResourceType, SealedRecord, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// How often a queue write is tried again when another message raced it to the same entry.
const WRITE_TRIES: usize = 3;
/// Entries read per page when listing.
const PAGE: u32 = 200;
/// The control-store setting naming the interfaces that have counters.
const COUNTED: &str = "hl7.queue.interfaces";

/// What an interface reports about a message it did not accept (no content).
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// `ADT^A01`, or empty when not even the header could be read.
    pub message_type: &'a str,
    /// The ACK code sent (`AE` or `AR`).
    pub ack_code: &'a str,
    /// Why, as the ACK said it: positions and fixed texts, never a value.
    pub reason: &'a str,
}

/// One entry of the queue as listed: everything but the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// Opaque (a keyed digest; no PHI).
    pub id: String,
    /// When it was first refused (milliseconds since the Unix epoch).
    pub received_at: i64,
    /// When it was last refused.
    pub last_attempt_at: i64,
    pub interface: String,
    pub message_type: String,
    pub ack_code: String,
    pub reason: String,
    /// How often it was received or retried and refused.
    pub attempts: u64,
}

/// An entry with its message (operator only). The bytes are wiped when dropped.
pub struct OpenedMessage {
    pub entry: QueuedMessage,
    pub message: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OpenedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedMessage")
            .field("entry", &self.entry)
            .field("message", &"[REDACTED]")
            .finish()
    }
}

/// Per-interface counts for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    pub queued: u64,
    pub retried: u64,
    pub discarded: u64,
}

fn counter_key(kind: &str, interface: &str) -> String {
    format!("hl7.queue.{kind}.{interface}")
}

fn integrity() -> VaultError {
    VaultError::Integrity(phivault_crypto::CryptoError::Integrity)
}

/// header length (4 bytes, big-endian) ‖ header JSON ‖ message.
fn encode(entry: &QueuedMessage, raw: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let header = serde_json::to_vec(entry)
        .map_err(|_| VaultError::Invalid("entry could not be encoded".into()))?;
    let len = u32::try_from(header.len()).map_err(|_| integrity())?;
    let mut out = Zeroizing::new(Vec::with_capacity(4 + header.len() + raw.len()));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(raw);
    Ok(out)
}

fn decode(plain: &[u8]) -> Result<(QueuedMessage, &[u8]), VaultError> {
    let len_bytes: [u8; 4] = plain
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(integrity)?;
    let end = 4usize.saturating_add(u32::from_be_bytes(len_bytes) as usize);
    let header = plain.get(4..end).ok_or_else(integrity)?;
    let entry = serde_json::from_slice(header).map_err(|_| integrity())?;
    Ok((entry, plain.get(end..).unwrap_or_default()))
}

impl Vault {
    /// The row of the entry for `raw` from `interface`: a keyed digest, so it reveals nothing.
    fn queue_key(&self, ctx: &Ctx, interface: &str, raw: &[u8]) -> Result<RecordKey, VaultError> {
        let key = self.keyring.derived_key("hl7-error-id-v1")?;
        let mut input = Vec::with_capacity(raw.len() + 96);
        for part in [ctx.org.as_str().as_bytes(), interface.as_bytes()] {
            input.extend_from_slice(&(part.len() as u32).to_be_bytes());
            input.extend_from_slice(part);
        }
        input.extend_from_slice(raw);
        let tag = phivault_crypto::aead::hmac_sha256(&key, &input);
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        Ok(RecordKey {
            rtype: ResourceType::HL7_ERROR,
            id: ResourceId::parse(&hex).map_err(|_| integrity())?,
        })
    }

    /// Opens one stored entry, checking that the sealed header names its own row.
    fn open_entry(&self, ctx: &Ctx, rec: &SealedRecord) -> Result<OpenedMessage, VaultError> {
        let plain = self.open_row(ctx, rec)?;
        let (entry, raw) = decode(&plain)?;
        if rec.rtype != ResourceType::HL7_ERROR || entry.id != rec.id.as_str() {
            return Err(integrity());
        }
        Ok(OpenedMessage {
            entry,
            message: Zeroizing::new(raw.to_vec()),
        })
    }

    /// Keeps a message the interface of `ctx` did not accept, sealed, with its ACK code and
    /// reason; a message already queued (same interface, same bytes) counts one more attempt.
    /// Only an HL7 interface queues. Audited (`hl7-queue`) in the same commit. Returns the
    /// entry's id.
    pub async fn queue_message(
        &self,
        ctx: &Ctx,
        raw: &[u8],
        refusal: Refusal<'_>,
    ) -> Result<String, VaultError> {
        let Actor::Interface { name } = &ctx.actor else {
            let event = self.event(ctx, "hl7-queue");
            return self.deny(&event, "role").await;
        };
        let key = self.queue_key(ctx, name, raw)?;
        let mut tries = 0;
        loop {
            tries += 1;
            let head = self.clinical.head(&ctx.org, &key).await?;
            let now = self.clock.now_millis();
            let (mut entry, version, expected) = match &head {
                Some(h) if !h.deleted => {
                    self.know_keks([h]).await?;
                    let mut e = self.open_entry(ctx, h)?.entry;
                    e.attempts = e.attempts.saturating_add(1);
                    (e, h.version.next(), Expected::Version(h.version))
                }
                other => {
                    let e = QueuedMessage {
                        id: key.id.as_str().to_owned(),
                        received_at: now,
                        last_attempt_at: now,
                        interface: name.clone(),
                        message_type: String::new(),
                        ack_code: String::new(),
                        reason: String::new(),
                        attempts: 1,
                    };
                    match other {
                        Some(h) => (e, h.version.next(), Expected::Version(h.version)),
                        None => (e, Version::FIRST, Expected::Absent),
                    }
                }
            };
            entry.last_attempt_at = now;
            refusal.message_type.clone_into(&mut entry.message_type);
            refusal.ack_code.clone_into(&mut entry.ack_code);
            refusal.reason.clone_into(&mut entry.reason);
            self.fresh_keyring().await?;
            let plain = encode(&entry, raw)?;
            let write =
                self.seal_bytes(ctx, &key, (version, expected), &plain, None, Vec::new())?;
            let mut event = self.write_event(ctx, "hl7-queue", &write);
            event.reason = Some(entry.ack_code.clone());
            match self.write_audited(ctx, write, event).await {
                Ok(()) => {
                    if entry.attempts == 1 {
                        self.count_queue("queued", name).await;
                    }
                    return Ok(entry.id);
                }
                Err(VaultError::Conflict { .. }) if tries < WRITE_TRIES => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The queue of the context's organization, oldest first: entries last refused at or
    /// after `since` (ms), of `interface` when given. No content. Permissions: the operator.
    /// Audited (`hl7-errors-list`, the count and the entries' ids).
    pub async fn queued_messages(
        &self,
        ctx: &Ctx,
        since: Option<i64>,
        interface: Option<&str>,
    ) -> Result<Vec<QueuedMessage>, VaultError> {
        let mut event = self.event(ctx, "hl7-errors-list");
        self.require_operator(ctx, &event).await?;
        let result = self.all_queued(ctx).await.map(|all| {
            let mut list: Vec<QueuedMessage> = all
                .into_iter()
                .filter(|e| since.is_none_or(|s| e.last_attempt_at >= s))
                .filter(|e| interface.is_none_or(|i| e.interface == i))
                .collect();
            list.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
            list
        });
        if let Ok(list) = &result {
            event.entities = list.iter().map(|e| e.id.clone()).collect();
        }
        self.audit_counted(event, result, |l| l.len() as u64).await
    }

    /// Every entry of the organization (the internal type's rows are contiguous in key order).
    async fn all_queued(&self, ctx: &Ctx) -> Result<Vec<QueuedMessage>, VaultError> {
        let mut after = RecordKey {
            rtype: ResourceType::HL7_ERROR,
            id: ResourceId::parse("0").map_err(|_| integrity())?,
        };
        let mut out = Vec::new();
        loop {
            let page = self.clinical.page(&ctx.org, Some(&after), PAGE).await?;
            let mine: Vec<&SealedRecord> = page
                .iter()
                .take_while(|r| r.rtype == ResourceType::HL7_ERROR)
                .collect();
            self.know_keks(mine.iter().copied()).await?;
            for rec in &mine {
                out.push(self.open_entry(ctx, rec)?.entry);
            }
            match mine.last() {
                Some(last) if mine.len() == page.len() && page.len() >= PAGE as usize => {
                    after.id = last.id.clone();
                }
                _ => return Ok(out),
            }
        }
    }

    /// One entry with its message, for `action` (`hl7-errors-show`, `hl7-retry`).
    /// Permissions: the operator. Audited before the message leaves.
    async fn open_queued(
        &self,
        ctx: &Ctx,
        id: &str,
        action: &str,
    ) -> Result<OpenedMessage, VaultError> {
        let mut event = self.event(ctx, action);
        event.resource_type = Some(ResourceType::HL7_ERROR.as_str().to_owned());
        self.require_operator(ctx, &event).await?;
        let result = async {
            let key = RecordKey {
                rtype: ResourceType::HL7_ERROR,
                id: ResourceId::parse(id).map_err(|_| VaultError::NotFound)?,
            };
            event.resource = Some(key.id.as_str().to_owned());
            let rec = self
                .clinical
                .head(&ctx.org, &key)
                .await?
                .filter(|r| !r.deleted)
                .ok_or(VaultError::NotFound)?;
            self.know_keks([&rec]).await?;
            event.version = Some(rec.version.0);
            self.open_entry(ctx, &rec)
        }
        .await;
        match result {
            Ok(opened) => {
                event.reason = Some(opened.entry.interface.clone());
                self.audit(event).await?;
                Ok(opened)
            }
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    /// One entry with its message, for an operator to look at. Audited (`hl7-errors-show`).
    pub async fn queued_message(&self, ctx: &Ctx, id: &str) -> Result<OpenedMessage, VaultError> {
        self.open_queued(ctx, id, "hl7-errors-show").await
    }

    /// One entry with its message, to run it through the interface again. Audited
    /// (`hl7-retry`) and counted as retried. After an AA, [`Vault::settle_queued`] removes it;
    /// after another refusal the interface's queueing has already counted one more attempt.
    pub async fn take_for_retry(&self, ctx: &Ctx, id: &str) -> Result<OpenedMessage, VaultError> {
        let opened = self.open_queued(ctx, id, "hl7-retry").await?;
        self.count_queue("retried", &opened.entry.interface).await;
        Ok(opened)
    }

    /// Removes an entry whose retry was accepted, by crypto-shredding (audited `erase`,
    /// reason `hl7-retry:accepted`). Permissions: the operator.
    pub async fn settle_queued(&self, ctx: &Ctx, id: &str) -> Result<(), VaultError> {
        self.shred_queued(ctx, id, "hl7-retry:accepted".into())
            .await
    }

    /// Discards an entry: its data key and sealed bytes are destroyed (crypto-shredding, with
    /// a tombstone so no older backup brings it back). Audited (`erase`, reason
    /// `hl7-discard:<reason>`) before anything is destroyed. Permissions: the operator.
    pub async fn discard_queued(
        &self,
        ctx: &Ctx,
        id: &str,
        reason: &str,
    ) -> Result<(), VaultError> {
        let reason: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        if reason.trim().is_empty() {
            return Err(VaultError::Invalid("a reason is required".into()));
        }
        let interface = self
            .open_queued(ctx, id, "hl7-discard")
            .await?
            .entry
            .interface;
        self.shred_queued(ctx, id, format!("hl7-discard:{reason}"))
            .await?;
        self.count_queue("discarded", &interface).await;
        Ok(())
    }

    async fn shred_queued(&self, ctx: &Ctx, id: &str, reason: String) -> Result<(), VaultError> {
        let key = RecordKey {
            rtype: ResourceType::HL7_ERROR,
            id: ResourceId::parse(id).map_err(|_| VaultError::NotFound)?,
        };
        let n = self
            .erase_records_because(ctx, ResourceType::HL7_ERROR, &[(key, None)], reason)
            .await?;
        if n == 0 {
            return Err(VaultError::NotFound);
        }
        Ok(())
    }

    /// Counts one event of the queue (best effort: the entry itself is already durable and
    /// audited; a counter that cannot be written must not fail the message).
    async fn count_queue(&self, kind: &str, interface: &str) {
        if self
            .control
            .bump_counter(&counter_key(kind, interface))
            .await
            .is_err()
        {
            return;
        }
        let mut names = self.counted_interfaces().await.unwrap_or_default();
        if !names.iter().any(|n| n == interface) {
            names.push(interface.to_owned());
            names.sort();
            if let Ok(text) = serde_json::to_string(&names) {
                // A name lost to a race is added again by the interface's next count.
                self.control.put_setting(COUNTED, &text).await.ok();
            }
        }
    }

    async fn queue_counter(&self, kind: &str, interface: &str) -> Result<u64, VaultError> {
        let v = self
            .control
            .get_setting(&counter_key(kind, interface))
            .await?;
        Ok(v.and_then(|v| v.trim().parse().ok()).unwrap_or(0))
    }

    async fn counted_interfaces(&self) -> Result<Vec<String>, VaultError> {
        Ok(match self.control.get_setting(COUNTED).await? {
            Some(t) => serde_json::from_str(&t).unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// The queue's counters per interface, every organization (for `/metrics`: counts and
    /// interface names only).
    pub async fn queue_counts(&self) -> Result<Vec<(String, QueueCounts)>, VaultError> {
        let mut out = Vec::new();
        for name in self.counted_interfaces().await? {
            let counts = QueueCounts {
                queued: self.queue_counter("queued", &name).await?,
                retried: self.queue_counter("retried", &name).await?,
                discarded: self.queue_counter("discarded", &name).await?,
            };
            out.push((name, counts));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_sealed_layout_round_trips_and_rejects_truncation() {
        let e = QueuedMessage {
            id: "ab".into(),
            received_at: 1,
            last_attempt_at: 2,
            interface: "lab".into(),
            message_type: "ORU^R01".into(),
            ack_code: "AE".into(),
            reason: "PID-3: required".into(),
            attempts: 1,
        };
        let plain = encode(&e, b"MSH|^~\\&|x").unwrap();
        let (back, raw) = decode(&plain).unwrap();
        assert_eq!(back, e);
        assert_eq!(raw, b"MSH|^~\\&|x");
        assert!(decode(&plain[..10]).is_err());
        assert!(decode(&[0, 0]).is_err());
    }

    #[test]
    fn an_opened_message_never_prints_its_content() {
        let o = OpenedMessage {
            entry: QueuedMessage {
                id: "x".into(),
                received_at: 0,
                last_attempt_at: 0,
                interface: "i".into(),
                message_type: String::new(),
                ack_code: "AR".into(),
                reason: String::new(),
                attempts: 1,
            },
            message: Zeroizing::new(b"PID|||123||Secretfamily".to_vec()),
        };
        assert!(!format!("{o:?}").contains("Secretfamily"));
    }
}
