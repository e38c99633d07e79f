//! HL7 v2 durability: the server is killed with SIGKILL in the middle of a feed on eight
//! connections. Every message it acknowledged with AA is stored with its audit event, and
//! after the sender resends what was not acknowledged (as an interface engine does), every
//! message is stored exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::feed::{self, a08, send_one};
use common::live::{Live, cli};
use common::mllp::{ack_parts, connect};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const PATIENTS: usize = 6;
const CONNECTIONS: usize = 8;
const PER_CONNECTION: usize = 300;
/// Acknowledgments before the kill.
const KILL_AFTER: usize = 900;

/// Sends `stream` from message `from` on; returns how many were AA'd before the first that
/// was not (the connection died), bumping `acked` for each.
fn send_until_cut(port: u16, stream: &[feed::Sent], from: usize, acked: &AtomicUsize) -> usize {
    let mut s = connect(port);
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut n = from;
    for (_, _, msg) in &stream[from..] {
        let ack = send_one(&mut s, msg);
        match ack_parts(&ack).0.as_str() {
            "AA" => {
                n += 1;
                acked.fetch_add(1, Ordering::SeqCst);
            }
            "" => break,
            other => panic!("answered {other} before the kill: {ack}"),
        }
    }
    n
}

/// The actions the audit trail holds for each request id (an HL7 message's control id).
fn audited_actions(data: &std::path::Path) -> HashMap<String, HashSet<String>> {
    let out = cli(data, &["audit", "export", "--format", "jsonl"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut by_id: HashMap<String, HashSet<String>> = HashMap::new();
    for e in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        if let (Some(id), Some(action)) = (e["request_id"].as_str(), e["action"].as_str()) {
            by_id
                .entry(id.to_owned())
                .or_default()
                .insert(action.to_owned());
        }
    }
    by_id
}

/// Threat: a crash loses a message the sender was told was stored, or the sender's resend of
/// an unacknowledged message stores it a second time (§164.312(c)(1) integrity).
#[test]
fn killed_mid_feed_every_aa_is_kept_and_resends_store_nothing_twice() {
    let env = [("PHIVAULT_MLLP_TLS", "off")];
    let mut ehr = String::new();
    let mut live = Live::start_with(&env, |data| {
        ehr = Live::client(data, "ehr", "INTEGRATION_MANAGER", "system/*.rs", "TREAT");
    });
    let mut first = connect(live.mllp);
    for p in 0..PATIENTS {
        let ack = send_one(&mut first, &a08(p, "Start", &format!("SEED-{p}")));
        assert_eq!(ack_parts(&ack).0, "AA", "{ack}");
    }
    drop(first);
    let streams: Arc<Vec<Vec<feed::Sent>>> = Arc::new(
        (0..CONNECTIONS)
            .map(|c| feed::stream(c, PER_CONNECTION, PATIENTS))
            .collect(),
    );
    let acked = Arc::new(AtomicUsize::new(0));
    let port = live.mllp;
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (streams, acked) = (streams.clone(), acked.clone());
            std::thread::spawn(move || send_until_cut(port, &streams[c], 0, &acked))
        })
        .collect();
    while acked.load(Ordering::SeqCst) < KILL_AFTER {
        std::thread::yield_now();
    }
    live.kill_now();
    let done: Vec<usize> = senders.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        done.iter().all(|n| *n < PER_CONNECTION),
        "the kill came after a stream ended: {done:?}"
    );
    // Every message AA'd before the kill has its events: the patient looked up, the write,
    // the message.
    let audited = audited_actions(&live.data);
    let want: HashSet<String> = ["search", "transaction", "hl7-message"]
        .map(str::to_owned)
        .into();
    for (c, n) in done.iter().enumerate() {
        for i in 0..*n {
            let got = audited
                .get(&format!("C{c}-{i}"))
                .cloned()
                .unwrap_or_default();
            assert!(got.is_superset(&want), "C{c}-{i}: AA'd, audited {got:?}");
        }
    }
    // The sender resends from the first unacknowledged message of each connection.
    let again = Live::node(&live.data, &env, None);
    let resent = AtomicUsize::new(0);
    for (c, n) in done.iter().enumerate() {
        let end = send_until_cut(again.mllp, &streams[c], *n, &resent);
        assert_eq!(end, PER_CONNECTION, "connection {c}: not all resends AA'd");
    }
    let t = again.token(&ehr);
    feed::assert_applied_once_in_order(&again, &t, &streams, PATIENTS);
}
