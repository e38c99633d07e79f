//! MDM^T02: a DocumentReference (TXA, the OBX text), under the patient PID names.
use super::patient::{Record, record_id, write_records};
use super::{Failure, UnknownPatient};
use crate::map;
use crate::parse::Message;
use phivault_core::ResourceId;
use phivault_vault::{Ctx, Vault};

pub(super) async fn document(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
    unknown: UnknownPatient,
) -> Result<Vec<ResourceId>, Failure> {
    let (key, resource) = map::document(msg)?;
    let id = record_id(vault, ctx, "hl7-document", sender, msg, key.as_deref(), 1);
    let record = Record {
        rtype: "DocumentReference",
        id,
        resource,
    };
    write_records(vault, ctx, (msg, sender), unknown, "subject", vec![record]).await
}
