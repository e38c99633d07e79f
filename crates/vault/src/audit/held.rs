//! Events held for one HL7 v2 message. An interface's reads (finding the patient, the visit's
//! Encounter) release PHI to the adapter only, inside this process, and nothing of it leaves
//! before the message's ACK; the ACK waits for the message's events. So those read events
//! need not each wait for a durable commit of their own: they are held with the message's
//! context and made durable in the same append as the message's write (inside its store
//! transaction) or, when nothing is written, with the message's own event — one commit for
//! the lot, and still before the ACK. Only a context for an HL7 message holds events
//! ([`crate::Ctx::for_interface_message`], made only with the operator's leave); every other
//! caller's read event is durable before the read returns.
use super::AuditEvent;
use crate::error::VaultError;
use crate::{Ctx, Vault};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Default)]
struct Held {
    events: Vec<AuditEvent>,
    /// The message's own event went with its write.
    message_written: bool,
}

/// The events held for one message (shared by clones of its context).
#[derive(Debug, Clone, Default)]
pub struct HeldEvents(Arc<Mutex<Held>>);

impl HeldEvents {
    fn with<T>(&self, f: impl FnOnce(&mut Held) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn hold(&self, event: AuditEvent) {
        self.with(|h| h.events.push(event));
    }

    /// Takes every held event (to append them).
    pub(crate) fn take(&self) -> Vec<AuditEvent> {
        self.with(|h| std::mem::take(&mut h.events))
    }

    /// Puts back events whose append failed, before any held since.
    pub(crate) fn restore(&self, mut events: Vec<AuditEvent>) {
        self.with(|h| {
            events.append(&mut h.events);
            h.events = events;
        });
    }

    pub(crate) fn mark_message_written(&self) {
        self.with(|h| h.message_written = true);
    }

    pub(crate) fn message_written(&self) -> bool {
        self.with(|h| h.message_written)
    }
}

impl Vault {
    /// Audits a read: held with an HL7 message's context, else durable before it returns.
    pub(crate) async fn audit_read(&self, ctx: &Ctx, event: AuditEvent) -> Result<(), VaultError> {
        match &ctx.held {
            Some(h) => {
                h.hold(event);
                Ok(())
            }
            None => self.audit(event).await,
        }
    }

    /// [`Vault::audit_failure`] for a read (held like [`Vault::audit_read`]).
    pub(crate) async fn audit_read_failure<T>(
        &self,
        ctx: &Ctx,
        event: AuditEvent,
        e: VaultError,
    ) -> Result<T, VaultError> {
        match &ctx.held {
            Some(h) => {
                h.hold(event.failed(&e));
                Err(e)
            }
            None => self.audit_failure(event, e).await,
        }
    }

    /// Makes the held events and `last` durable in one append (all or nothing: on failure
    /// the held events stay held).
    pub(crate) async fn audit_with_held(
        &self,
        ctx: &Ctx,
        last: Option<AuditEvent>,
    ) -> Result<(), VaultError> {
        let held = ctx.held.as_ref().map(HeldEvents::take).unwrap_or_default();
        let mut events = held.clone();
        events.extend(last);
        if events.is_empty() {
            return Ok(());
        }
        let result = self.audit_all(events).await;
        if result.is_err()
            && let Some(h) = &ctx.held
        {
            h.restore(held);
        }
        result
    }
}
