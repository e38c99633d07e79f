//! ORU^R01: a DiagnosticReport per OBR and the Observations of its OBX, under the patient PID
//! names (created from PID when unknown, unless the interface refuses unknown patients).
use super::patient::{Record, record_id, write_records};
use super::{Failure, UnknownPatient};
use crate::map;
use crate::parse::Message;
use phivault_core::ResourceId;
use phivault_vault::{Ctx, Vault};
use serde_json::json;

pub(super) async fn results(
    vault: &Vault,
    ctx: &Ctx,
    msg: &Message,
    sender: &str,
    unknown: UnknownPatient,
) -> Result<Vec<ResourceId>, Failure> {
    let groups = map::reports(msg)?;
    let mut records = Vec::new();
    for g in groups {
        let mut results = Vec::new();
        for (k, (n, o)) in g.observations.into_iter().enumerate() {
            // An observation of an order is the k-th of its report; else the n-th OBX.
            let key = g.key.as_ref().map(|order| format!("{order}|{}", k + 1));
            let id = record_id(
                vault,
                ctx,
                "hl7-observation",
                sender,
                msg,
                key.as_deref(),
                n,
            );
            results.push(json!({"reference": format!("Observation/{id}")}));
            records.push(Record {
                rtype: "Observation",
                id,
                resource: o,
            });
        }
        if let Some(mut report) = g.report {
            let id = record_id(
                vault,
                ctx,
                "hl7-report",
                sender,
                msg,
                g.key.as_deref(),
                g.obr,
            );
            if !results.is_empty() {
                report.insert("result".into(), json!(results));
            }
            records.push(Record {
                rtype: "DiagnosticReport",
                id,
                resource: report,
            });
        }
    }
    write_records(vault, ctx, (msg, sender), unknown, "subject", records).await
}
