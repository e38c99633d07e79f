//! ORM^O01 / OML^O21 (orders): a ServiceRequest per ORC/OBR, under the patient PID names.
use super::patient::{Record, record_id, write_records};
use super::{Failure, UnknownPatient};
use crate::map;
use crate::parse::Message;
use phivault_core::ResourceId;
use phivault_vault::{Ctx, Vault};

pub(super) async fn orders(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
    unknown: UnknownPatient,
) -> Result<Vec<ResourceId>, Failure> {
    let records = map::orders(msg)?
        .into_iter()
        .map(|o| Record {
            rtype: "ServiceRequest",
            id: record_id(vault, ctx, "hl7-order", sender, msg, o.key.as_deref(), o.n),
            resource: o.request,
        })
        .collect();
    write_records(vault, ctx, (msg, sender), unknown, "subject", records).await
}
