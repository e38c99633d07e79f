//! VXU^V04: an Immunization per RXA, for the patient PID names.
use super::patient::{Record, record_id, write_records};
use super::{Failure, UnknownPatient};
use crate::map;
use crate::parse::Message;
use phivault_core::ResourceId;
use phivault_vault::{Ctx, Vault};

pub(super) async fn immunizations(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
    unknown: UnknownPatient,
) -> Result<Vec<ResourceId>, Failure> {
    let records = map::immunizations(msg)?
        .into_iter()
        .map(|v| Record {
            rtype: "Immunization",
            id: record_id(
                vault,
                ctx,
                "hl7-immunization",
                sender,
                msg,
                v.key.as_deref(),
                v.n,
            ),
            resource: v.immunization,
        })
        .collect();
    write_records(vault, ctx, (msg, sender), unknown, "patient", records).await
}
