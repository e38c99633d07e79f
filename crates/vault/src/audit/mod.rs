//! The audit trail: one event for every vault call — allowed, denied or failed — made durable
//! before PHI leaves (reads) or inside the transaction of a change, before it commits (writes).
//! If the event cannot be written, the call fails: no audit, no PHI.
//!
//! Events are chained: mac_n = HMAC(audit key, mac_{n-1} ‖ seq_n ‖ event_n), with the audit key
//! from the keyring (never from the audit store). Events hold pseudonymous ids and codes, never
//! a PHI value.
pub mod export;
pub mod held;
pub mod report;
pub mod verify;

use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{BeforeCommit, BoxFuture, ChainFn, Digest32, StoreError, WriteOutcome};
use phivault_crypto::Keyring;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Denied,
    Error,
}

/// One audit event. Field order is the canonical order of the stored JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain (set when appended).
    pub seq: u64,
    /// UTC, RFC 3339.
    pub time: String,
    pub org: String,
    /// `cli:<os user>`, later users, service clients and HL7 interfaces.
    pub actor: String,
    pub source: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// create, read, vread, update, delete, search, read-patient-records, import, export, erase.
    pub action: String,
    pub resource_type: Option<String>,
    /// The pseudonymous row id of the record acted on.
    pub resource: Option<String>,
    /// The version written or read.
    pub version: Option<u64>,
    /// Keyed pseudonyms of the patients concerned.
    pub patients: Vec<String>,
    /// Pseudonymous row ids of the records released or changed by a multi-record call.
    pub entities: Vec<String>,
    pub purpose: Option<String>,
    pub outcome: Outcome,
    /// A reason code for denials and errors (`not-found`, `conflict`, `invalid`, …).
    pub reason: Option<String>,
    /// The names of the elements released.
    pub fields: Vec<String>,
    pub break_glass: bool,
    pub count: Option<u64>,
    /// Where the purpose came from: `header`, `client-default`, `session` or `role-default`.
    /// Last and skipped when empty, so events written before it verify unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_source: Option<String>,
}

impl AuditEvent {
    /// A success event for `action`, everything else empty.
    pub(crate) fn new(ctx: &Ctx, action: &str, now: OffsetDateTime) -> Self {
        Self {
            seq: 0,
            time: now
                .format(&Rfc3339)
                .unwrap_or_else(|_| now.unix_timestamp().to_string()),
            org: ctx.org.as_str().to_owned(),
            actor: ctx.actor.audit_name(),
            source: ctx.source.clone(),
            user_agent: ctx.user_agent.clone(),
            request_id: ctx.request_id.clone(),
            action: action.to_owned(),
            resource_type: None,
            resource: None,
            version: None,
            patients: Vec::new(),
            entities: Vec::new(),
            purpose: ctx.purpose.clone(),
            outcome: Outcome::Success,
            reason: None,
            fields: Vec::new(),
            break_glass: false,
            count: None,
            purpose_source: ctx.purpose_source.map(|s| s.as_str().to_owned()),
        }
    }

    pub(crate) fn failed(mut self, e: &VaultError) -> Self {
        self.outcome = Outcome::Error;
        self.reason = Some(reason_code(e).to_owned());
        self
    }

    pub(crate) fn patient(mut self, p: Option<Digest32>) -> Self {
        if let Some(p) = p {
            let hex = p.to_hex();
            if !self.patients.contains(&hex) {
                self.patients.push(hex);
            }
        }
        self
    }
}

/// The reason code of an error, for the audit trail.
pub fn reason_code(e: &VaultError) -> &'static str {
    match e {
        VaultError::Invalid(_) => "invalid",
        VaultError::TooCostly(_) => "too-costly",
        VaultError::Unprocessable(_) => "unprocessable",
        VaultError::NotFound => "not-found",
        VaultError::Gone => "gone",
        VaultError::Conflict { .. } => "conflict",
        VaultError::Integrity(_) => "integrity",
        VaultError::Crypto(_) => "key-error",
        VaultError::Store(_) => "storage",
        VaultError::Audit(_) => "audit-unavailable",
        VaultError::Forbidden => "forbidden",
        VaultError::Unauthenticated(why) => match *why {
            "wrong password" => "wrong-password",
            "unknown user" => "unknown-user",
            "user disabled" => "disabled",
            "account locked" => "locked",
            "wrong or replayed code" => "wrong-code",
            "idle session" => "idle-timeout",
            "expired token" => "expired",
            _ => "unauthenticated",
        },
    }
}

const DRAFT_PREFIX: &str = "{\"seq\":0,";

/// The chain function: puts the sequence number into the event and MACs it after the previous
/// event's MAC.
pub(crate) fn chain_fn(keyring: Arc<Keyring>) -> Arc<ChainFn> {
    Arc::new(move |seq: u64, prev: &[u8], draft: &str| {
        let body = draft.strip_prefix(DRAFT_PREFIX).unwrap_or(draft);
        let event = format!("{{\"seq\":{seq},{body}");
        let mac = keyring.audit_mac(&chain_input(prev, seq, &event)).to_vec();
        (event, mac)
    })
}

pub(crate) fn chain_input(prev: &[u8], seq: u64, event: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(prev.len() + 8 + event.len() + 16);
    m.extend_from_slice(b"phivault.audit.v1");
    m.extend_from_slice(&(prev.len() as u32).to_be_bytes());
    m.extend_from_slice(prev);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(event.as_bytes());
    m
}

impl Vault {
    fn draft(e: &AuditEvent) -> Result<(i64, String), VaultError> {
        let mut e = e.clone();
        e.seq = 0;
        let s = serde_json::to_string(&e).map_err(|_| VaultError::Audit("encode".into()))?;
        let at = OffsetDateTime::parse(&e.time, &Rfc3339)
            .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok((at, s))
    }

    pub(crate) fn event(&self, ctx: &Ctx, action: &str) -> AuditEvent {
        AuditEvent::new(ctx, action, self.clock.now())
    }

    /// Makes one event durable. Fails closed: the caller releases nothing if this fails.
    pub(crate) async fn audit(&self, event: AuditEvent) -> Result<(), VaultError> {
        if self.audit_off {
            return Ok(());
        }
        let draft = Self::draft(&event)?;
        self.audit
            .append(vec![draft], chain_fn(self.keyring.clone()))
            .await
            .map_err(|e| VaultError::Audit(e.to_string()))?;
        Ok(())
    }

    /// Appends several events durably in one append, in order.
    pub(crate) async fn audit_all(&self, events: Vec<AuditEvent>) -> Result<(), VaultError> {
        if self.audit_off {
            return Ok(());
        }
        let drafts = events
            .iter()
            .map(Self::draft)
            .collect::<Result<Vec<_>, _>>()?;
        self.audit
            .append(drafts, chain_fn(self.keyring.clone()))
            .await
            .map_err(|e| VaultError::Audit(e.to_string()))?;
        Ok(())
    }

    /// Audits a failure and returns the error (or the audit failure, which is worse).
    pub(crate) async fn audit_failure<T>(
        &self,
        event: AuditEvent,
        e: VaultError,
    ) -> Result<T, VaultError> {
        match self.audit(event.failed(&e)).await {
            Ok(()) => Err(e),
            Err(audit) => Err(audit),
        }
    }

    /// A before-commit hook that makes the event for a write durable inside its transaction.
    /// `finish` completes the event from the write outcomes.
    pub(crate) fn audit_hook(
        &self,
        event: AuditEvent,
        ran: Arc<std::sync::atomic::AtomicBool>,
        finish: impl FnOnce(AuditEvent, &[WriteOutcome]) -> AuditEvent + Send + 'static,
    ) -> Option<BeforeCommit> {
        self.audit_hook_with(event, ran, finish, (None, None))
    }

    /// [`Vault::audit_hook`] that also appends, in the same append, the events held for an
    /// HL7 message (before the write's event; put back if the append fails) and `after` (the
    /// message's own event, after it).
    pub(crate) fn audit_hook_with(
        &self,
        event: AuditEvent,
        ran: Arc<std::sync::atomic::AtomicBool>,
        finish: impl FnOnce(AuditEvent, &[WriteOutcome]) -> AuditEvent + Send + 'static,
        (held, after): (Option<held::HeldEvents>, Option<AuditEvent>),
    ) -> Option<BeforeCommit> {
        if self.audit_off {
            return None;
        }
        let store = self.audit.clone();
        let chain = chain_fn(self.keyring.clone());
        Some(Box::new(move |outcomes: Vec<WriteOutcome>| {
            let fut: BoxFuture<'static, Result<(), StoreError>> = Box::pin(async move {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                let before = held
                    .as_ref()
                    .map(held::HeldEvents::take)
                    .unwrap_or_default();
                let mut events = before.clone();
                events.push(finish(event, &outcomes));
                events.extend(after);
                let drafts = events
                    .iter()
                    .map(Self::draft)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| StoreError::Corrupt {
                        context: "audit",
                        detail: "event could not be encoded".into(),
                    });
                let result = match drafts {
                    Ok(d) => store.append(d, chain).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let (Err(_), Some(h)) = (&result, &held) {
                    h.restore(before);
                }
                result
            });
            fut
        }))
    }
}

#[cfg(test)]
mod purpose_source_tests {
    use super::*;

    /// `purpose_source` is the last field and absent when empty: events written before it
    /// existed keep their exact JSON, so their MACs still verify.
    #[test]
    fn purpose_source_is_appended_and_skipped_when_empty() {
        let ctx = Ctx::anonymous(phivault_core::OrgId::parse("default").unwrap());
        let mut e = AuditEvent::new(&ctx, "read", OffsetDateTime::UNIX_EPOCH);
        let old = serde_json::to_string(&e).unwrap();
        assert!(!old.contains("purpose_source"), "{old}");
        assert!(old.ends_with(r#""count":null}"#), "{old}");
        let back: AuditEvent = serde_json::from_str(&old).unwrap();
        assert_eq!(back, e);
        e.purpose_source = Some("client-default".into());
        let new = serde_json::to_string(&e).unwrap();
        assert!(
            new.ends_with(r#""count":null,"purpose_source":"client-default"}"#),
            "{new}"
        );
    }
}
