//! SIU^S12-S15: the Appointment (booked, rescheduled, modified, cancelled: one record, named
//! by its SCH appointment id), with the patient PID names as its first participant.
use super::patient::{Record, record_id, write_records};
use super::{Failure, UnknownPatient};
use crate::map;
use crate::parse::Message;
use phivault_core::ResourceId;
use phivault_vault::{Ctx, Vault};

pub(super) async fn appointment(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
    event: &str,
    unknown: UnknownPatient,
) -> Result<Vec<ResourceId>, Failure> {
    let (key, resource) = map::appointment(msg, event)?;
    let id = record_id(
        vault,
        ctx,
        "hl7-appointment",
        sender,
        msg,
        key.as_deref(),
        1,
    );
    let record = Record {
        rtype: "Appointment",
        id,
        resource,
    };
    write_records(
        vault,
        ctx,
        (msg, sender),
        unknown,
        "participant",
        vec![record],
    )
    .await
}
