//! HL7 v2 feeds over several connections at once: distinct messages about the same patients
//! are all accepted (no AE because another message touched the patient), each applied once,
//! in the order its connection sent it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::Live;
use common::mllp::{ack_parts, connect, framed, send_on};
use serde_json::Value;

const PATIENTS: usize = 6;
const CONNECTIONS: usize = 8;
const PER_CONNECTION: usize = 500;

fn mrn(p: usize) -> String {
    format!("77{p:04}")
}

fn header(kind: &str, ctrl: &str) -> String {
    format!("MSH|^~\\&|FEED|CONC|PHIVAULT|CONC|20261201083000-0500||{kind}|{ctrl}|P|2.5.1\r")
}

/// A demographics update whose city names the connection and the message's place in it.
fn a08(p: usize, city: &str, ctrl: &str) -> String {
    format!(
        "{}EVN|A08|20261201083000-0500\rPID|1||{}^^^CONC^MR||Ordered^Pat{p}||19700101|F|||1 Main St^^{city}^ME^04101^USA^H\r",
        header("ADT^A08^ADT_A01", ctrl),
        mrn(p)
    )
}

fn oru(p: usize, value: usize, ctrl: &str) -> String {
    format!(
        "{}PID|1||{}^^^CONC^MR\rOBR|1|O-{ctrl}||2345-7^Glucose^LN|||20261201080000-0500\rOBX|1|NM|2345-7^Glucose^LN||{value}|mg/dL^mg/dL^UCUM|70-99|N|||F\r",
        header("ORU^R01^ORU_R01", ctrl),
        mrn(p)
    )
}

/// What connection `c` sends: (patient, city of an A08 or None for an ORU, message).
fn stream(c: usize) -> Vec<(usize, Option<String>, String)> {
    (0..PER_CONNECTION)
        .map(|i| {
            let p = (i / 2 + c) % PATIENTS;
            let ctrl = format!("C{c}-{i}");
            if i % 2 == 0 {
                let city = format!("City{c}x{i}");
                (p, Some(city.clone()), a08(p, &city, &ctrl))
            } else {
                (p, None, oru(p, i, &ctrl))
            }
        })
        .collect()
}

fn send_one(s: &mut std::net::TcpStream, msg: &str) -> String {
    let ack = send_on(s, &framed(msg));
    String::from_utf8_lossy(&ack).replace('\r', "\n")
}

fn patient(live: &Live, t: &str, p: usize) -> Value {
    let r = live.fhir(
        "GET",
        &format!("/fhir/Patient?identifier=CONC|{}", mrn(p)),
        t,
        "TREAT",
        None,
    );
    assert_eq!(r.body["total"], 1, "{}", r.body);
    r.body["entry"][0]["resource"].clone()
}

/// The cities of every version of a Patient, oldest first.
fn cities_in_order(live: &Live, t: &str, id: &str) -> Vec<String> {
    let r = live.fhir(
        "GET",
        &format!("/fhir/Patient/{id}/_history?_count=1000"),
        t,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut versions: Vec<(u64, String)> = r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let res = &e["resource"];
            let v: u64 = res["meta"]["versionId"].as_str().unwrap().parse().unwrap();
            let city = res["address"][0]["city"].as_str().unwrap_or("").to_owned();
            (v, city)
        })
        .collect();
    versions.sort();
    versions.into_iter().map(|(_, c)| c).collect()
}

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
                for (_, _, msg) in stream(c) {
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
    let streams: Vec<_> = (0..CONNECTIONS).map(stream).collect();
    for p in 0..PATIENTS {
        let id = patient(&live, &t, p)["id"].as_str().unwrap().to_owned();
        let cities = cities_in_order(&live, &t, &id);
        // Each update applied exactly once (every city differs, so each makes a version).
        let sent: usize = streams
            .iter()
            .flatten()
            .filter(|(q, city, _)| *q == p && city.is_some())
            .count();
        assert_eq!(cities.len(), 1 + sent, "patient {p}: versions");
        // Each connection's updates in the order it sent them.
        for (c, s) in streams.iter().enumerate() {
            let mine: Vec<&String> = s
                .iter()
                .filter(|(q, _, _)| *q == p)
                .filter_map(|(_, city, _)| city.as_ref())
                .collect();
            let applied: Vec<&String> = cities.iter().filter(|x| mine.contains(x)).collect();
            assert_eq!(applied, mine, "patient {p}, connection {c}: order");
        }
        let results: usize = streams
            .iter()
            .flatten()
            .filter(|(q, city, _)| *q == p && city.is_none())
            .count();
        let r = live.fhir(
            "GET",
            &format!("/fhir/Observation?patient={id}&_count=1"),
            &t,
            "TREAT",
            None,
        );
        assert_eq!(r.body["total"], results, "patient {p}: observations");
    }
}
