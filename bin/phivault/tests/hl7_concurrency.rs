//! HL7 v2 feeds over several connections at once: distinct messages about the same patients
//! are all accepted (no AE because another message touched the patient), each applied once,
//! in the order its connection sent it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::feed::{self, a08, send_one};
use common::live::Live;
use common::mllp::{ack_parts, connect};

const PATIENTS: usize = 6;
const CONNECTIONS: usize = 8;
const PER_CONNECTION: usize = 500;

/// Threat: a feed stalls (an interface engine retries or parks what it is refused) or is
/// applied out of order when several connections send about the same patient.
#[test]
fn eight_connections_about_six_patients_all_accepted_in_order() {
    let mut ehr = String::new();
    let live = Live::start_with(&[("PHIVAULT_MLLP_TLS", "off")], |data| {
        ehr = Live::client(data, "ehr", "INTEGRATION_MANAGER", "system/*.rs", "TREAT");
    });
    let t = live.token(&ehr);
    let mut first = connect(live.mllp);
    for p in 0..PATIENTS {
        let ack = send_one(&mut first, &a08(p, "Start", &format!("SEED-{p}")));
        assert_eq!(ack_parts(&ack).0, "AA", "{ack}");
    }
    drop(first);
    let port = live.mllp;
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = connect(port);
                s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
                    .unwrap();
                let mut refused = Vec::new();
                for (_, _, msg) in feed::stream(c, PER_CONNECTION, PATIENTS) {
                    let ack = send_one(&mut s, &msg);
                    let (code, _) = ack_parts(&ack);
                    if code != "AA" {
                        refused.push(ack);
                    }
                }
                refused
            })
        })
        .collect();
    let refused: Vec<String> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} messages not AA, first: {}",
        refused.len(),
        CONNECTIONS * PER_CONNECTION,
        refused[0]
    );
    let streams: Vec<_> = (0..CONNECTIONS)
        .map(|c| feed::stream(c, PER_CONNECTION, PATIENTS))
        .collect();
    feed::assert_applied_once_in_order(&live, &t, &streams, PATIENTS);
}
