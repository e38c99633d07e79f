//! Data written before record keys were the authenticated interface: duplicate records and
//! visit (Encounter) ids derived from MSH-3^MSH-4. They are looked up only for the MSH-3^MSH-4
//! values the operator configured for the interface (`legacy_senders`), so a forged MSH-3/4
//! from another interface finds nothing of them.
use super::Interface;
use crate::parse::Message;
use phivault_core::{ResourceId, ResourceType};
use phivault_vault::{Ctx, Vault, VaultError};

/// The message's MSH-3^MSH-4, if the interface is configured to have sent under it before.
fn legacy_sender(iface: &Interface, msg: &Message) -> Option<String> {
    if iface.legacy_senders.is_empty() {
        return None;
    }
    let m = msg.msh();
    let s = format!("{}^{}", m.value(3).unwrap_or(""), m.value(4).unwrap_or(""));
    iface.legacy_senders.contains(&s).then_some(s)
}

/// The ACK code a message was answered with when applied before: under the interface's key,
/// or under its configured legacy sender.
pub(super) async fn message_applied(
    vault: &Vault,
    ctx: &Ctx,
    iface: &Interface,
    msg: &Message,
    sender: &str,
) -> Result<Option<String>, VaultError> {
    let applied = vault.message_applied(ctx, sender, msg.control_id()).await?;
    match (applied, legacy_sender(iface, msg)) {
        (None, Some(legacy)) => vault.message_applied(ctx, &legacy, msg.control_id()).await,
        (applied, _) => Ok(applied),
    }
}

/// The Encounter id of the message's visit (PV1-19; without one, of the message): derived from
/// the interface, or the id derived from the configured legacy sender where that Encounter
/// exists (a visit admitted before the upgrade keeps its one Encounter).
pub(super) async fn encounter_id(
    vault: &Vault,
    ctx: &Ctx,
    iface: &Interface,
    msg: &Message,
    sender: &str,
) -> Result<ResourceId, VaultError> {
    let visit = msg.segment("PV1").and_then(|p| p.value(19));
    let key = |s: &str| match visit {
        Some(v) => format!("visit|{s}|{v}"),
        None => format!("message|{s}|{}", msg.control_id()),
    };
    if let (Some(_), Some(legacy)) = (visit, legacy_sender(iface, msg)) {
        let old = vault.derived_id(ctx, "hl7-encounter", &key(&legacy));
        let encounter = ResourceType::parse("Encounter")
            .map_err(|_| VaultError::Invalid("Encounter is not a stored type".into()))?;
        match vault.read(ctx, encounter, &old).await {
            Ok(_) => return Ok(old),
            Err(VaultError::NotFound | VaultError::Gone) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(vault.derived_id(ctx, "hl7-encounter", &key(sender)))
}
