//! A feed for tests: messages about patients `CONC|77000p` (demographics updates naming a
//! city, results with one value) sent as several connections' streams, and the checks that
//! every message was applied exactly once, in its connection's order.
use super::live::Live;
use super::mllp::{framed, send_on};
use serde_json::Value;

/// A stream's message: (patient, the city of an update or None for a result, message).
pub type Sent = (usize, Option<String>, String);

pub fn mrn(p: usize) -> String {
    format!("77{p:04}")
}

fn header(kind: &str, ctrl: &str) -> String {
    format!("MSH|^~\\&|FEED|CONC|PHIVAULT|CONC|20261201083000-0500||{kind}|{ctrl}|P|2.5.1\r")
}

pub fn a08(p: usize, city: &str, ctrl: &str) -> String {
    format!(
        "{}EVN|A08|20261201083000-0500\rPID|1||{}^^^CONC^MR||Ordered^Pat{p}||19700101|F|||1 Main St^^{city}^ME^04101^USA^H\r",
        header("ADT^A08^ADT_A01", ctrl),
        mrn(p)
    )
}

pub fn oru(p: usize, value: usize, ctrl: &str) -> String {
    format!(
        "{}PID|1||{}^^^CONC^MR\rOBR|1|O-{ctrl}||2345-7^Glucose^LN|||20261201080000-0500\rOBX|1|NM|2345-7^Glucose^LN||{value}|mg/dL^mg/dL^UCUM|70-99|N|||F\r",
        header("ORU^R01^ORU_R01", ctrl),
        mrn(p)
    )
}

/// What connection `c` of a stream sends: `n` messages alternating updates and results
/// over `patients` patients.
pub fn stream(c: usize, n: usize, patients: usize) -> Vec<Sent> {
    (0..n)
        .map(|i| {
            let p = (i / 2 + c) % patients;
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

/// One message on an open connection; its ACK as text (segments on lines).
pub fn send_one(s: &mut std::net::TcpStream, msg: &str) -> String {
    let ack = send_on(s, &framed(msg));
    String::from_utf8_lossy(&ack).replace('\r', "\n")
}

pub fn patient(live: &Live, t: &str, p: usize) -> Value {
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
pub fn cities_in_order(live: &Live, t: &str, id: &str) -> Vec<String> {
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

/// Every message of `streams` was applied exactly once, each connection's in its order: one
/// Patient version per update (every city differs), the updates of each connection in the
/// order sent, one Observation (in its first version) per result.
pub fn assert_applied_once_in_order(live: &Live, t: &str, streams: &[Vec<Sent>], patients: usize) {
    for p in 0..patients {
        let id = patient(live, t, p)["id"].as_str().unwrap().to_owned();
        let cities = cities_in_order(live, t, &id);
        let sent = |q: usize, update: bool| {
            streams
                .iter()
                .flatten()
                .filter(move |(r, city, _)| *r == q && city.is_some() == update)
        };
        assert_eq!(
            cities.len(),
            1 + sent(p, true).count(),
            "patient {p}: versions"
        );
        for (c, s) in streams.iter().enumerate() {
            let mine: Vec<&String> = s
                .iter()
                .filter(|(q, _, _)| *q == p)
                .filter_map(|(_, city, _)| city.as_ref())
                .collect();
            let applied: Vec<&String> = cities.iter().filter(|x| mine.contains(x)).collect();
            assert_eq!(applied, mine, "patient {p}, connection {c}: order");
        }
        let r = live.fhir(
            "GET",
            &format!("/fhir/Observation?patient={id}&_count=500"),
            t,
            "TREAT",
            None,
        );
        assert_eq!(
            r.body["total"],
            sent(p, false).count(),
            "patient {p}: observations"
        );
        for e in r.body["entry"].as_array().unwrap() {
            let v = &e["resource"]["meta"]["versionId"];
            assert_eq!(v, "1", "patient {p}: a result written twice");
        }
    }
}
