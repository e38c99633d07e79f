//! HL7 v2 over MLLP end to end: a real `phivault serve`, messages sent by an independent
//! client (the Python package `hl7`'s `mllp_send`, and Python's ssl module for TLS), ACKs
//! checked against testdata/hl7v2/MANIFEST.json, the data then read back through the FHIR API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, cli};
use common::mllp::{ack_parts, exchange, framed, python};
use common::pki::{client_pki, tls_send};
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn hl7_dir() -> PathBuf {
    repo_root().join("testdata/hl7v2")
}

/// The Python with the `hl7` package (mllp_send), or None outside CI.
fn mllp_send() -> Option<PathBuf> {
    let st = repo_root().join(".venv/bin/mllp_send");
    if st.exists() {
        return Some(st);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install the Python package hl7 (.ci/run)"
    );
    eprintln!("skipped: no .venv/bin/mllp_send; .ci/run installs it");
    None
}

/// The same exchange from a given source address (Python binds before connecting).
fn python_from(src: &str, port: u16, bytes: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in");
    std::fs::write(&f, bytes).unwrap();
    let code = format!(
        "import socket,sys\ns=socket.socket()\ns.settimeout(5)\ns.bind(('{src}',0))\ns.connect(('127.0.0.1',{port}))\n\
         s.sendall(open(sys.argv[1],'rb').read())\nb=b''\ntry:\n  while True:\n    c=s.recv(4096)\n    if not c: break\n    b+=c\n    if b.endswith(b'\\x1c\\r'): break\nexcept Exception: pass\nsys.stdout.buffer.write(b)\n"
    );
    let out = Command::new(python())
        .args(["-c", &code])
        .arg(&f)
        .output()
        .unwrap();
    out.stdout
}

fn integration(live: &Live, data_client: &str) -> String {
    live.token(data_client)
}

fn patient_by(live: &Live, t: &str, ident: &str) -> Value {
    let r = live.fhir(
        "GET",
        &format!("/fhir/Patient?identifier={ident}"),
        t,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total"], 1, "{ident}: {}", r.body);
    r.body["entry"][0]["resource"].clone()
}

fn count_of(live: &Live, t: &str, rtype: &str, patient: &str) -> usize {
    let r = live.fhir(
        "GET",
        &format!("/fhir/{rtype}?patient={patient}"),
        t,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["total"].as_u64().unwrap() as usize
}

/// Threat: HL7 messages acknowledged but not stored, applied twice, or leaving PHI in the audit
/// trail (HIPAA §164.312(b), (c)(1)).
#[test]
fn every_test_message_gets_its_ack_and_its_data_is_found_through_fhir() {
    let Some(sender) = mllp_send() else { return };
    let mut ehr = String::new();
    let live = Live::start_with(&[("PHIVAULT_MLLP_TLS", "off")], |data| {
        ehr = Live::client(data, "ehr", "INTEGRATION_MANAGER", "system/*.rs", "TREAT");
    });
    let t = integration(&live, &ehr);
    let manifest = read_json(&hl7_dir().join("MANIFEST.json"));
    let send = |file: &str| -> String {
        let out = Command::new(&sender)
            .args(["--loose", "-p", &live.mllp.to_string(), "-f"])
            .arg(hl7_dir().join(file))
            .arg("127.0.0.1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).replace('\r', "\n")
    };
    let messages = manifest["messages"].as_array().unwrap();
    for m in messages {
        let file = m["file"].as_str().unwrap();
        let ack = send(file);
        let (code, err) = ack_parts(&ack);
        assert_eq!(code, m["ack"].as_str().unwrap(), "{file}: {ack}");
        if let Some(want) = m.get("err_field").and_then(Value::as_str) {
            assert_eq!(err.as_deref(), Some(want), "{file}: {ack}");
        }
        assert!(ack.contains("MSA|"), "{file}");
    }
    // The data, through the FHIR API.
    let p1 = patient_by(&live, &t, "NORTHSIDE|100001");
    let id1 = p1["id"].as_str().unwrap().to_owned();
    assert_eq!(p1["name"][0]["family"], "Okafor");
    assert_eq!(p1["birthDate"], "1958-07-22");
    assert_eq!(p1["gender"], "female");
    assert_eq!(
        p1["address"][0]["city"], "South Portland",
        "the A08 updated the address"
    );
    assert_eq!(p1["telecom"][0]["value"], "2075550177");
    assert!(p1["identifier"].as_array().unwrap().iter().any(|i| i["system"] == "http://hl7.org/fhir/sid/us-ssn" && i["value"] == "999-11-2222"),
        "the SSN from the A01 is kept by the A08: {p1}");
    assert_eq!(
        count_of(&live, &t, "Encounter", &id1),
        1,
        "the A08 updated the A01's visit"
    );
    let obs = live.fhir(
        "GET",
        &format!("/fhir/Observation?patient={id1}"),
        &t,
        "TREAT",
        None,
    );
    assert_eq!(obs.body["total"], 5);
    let glucose = obs.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["code"]["coding"][0]["code"] == "2345-7")
        .unwrap();
    assert_eq!(glucose["valueQuantity"]["value"], 98.0);
    assert_eq!(glucose["valueQuantity"]["unit"], "mg/dL");
    assert_eq!(glucose["referenceRange"][0]["text"], "70-99");
    let p2 = patient_by(&live, &t, "EASTCLINIC|200002");
    assert_eq!(p2["name"][0]["family"], "Lindqvist");
    assert_eq!(
        count_of(&live, &t, "Encounter", p2["id"].as_str().unwrap()),
        1
    );
    let p3 = patient_by(&live, &t, "REGION|300003");
    let p4 = patient_by(&live, &t, "REGION|400004");
    assert_eq!(
        p4["name"][0]["family"], "Müller",
        "ISO 8859-1 read by MSH-18"
    );
    assert_eq!(p4["active"], false, "merged away");
    assert_eq!(
        p4["link"][0]["other"]["reference"],
        format!("Patient/{}", p3["id"].as_str().unwrap())
    );
    assert_eq!(p3["link"][0]["type"], "replaces");
    // A result for a patient never seen creates the patient (PHIVAULT_MLLP_UNKNOWN_PATIENT
    // defaults to create); the refused messages left nothing.
    let unknown = patient_by(&live, &t, "NORTHSIDE|999999");
    assert_eq!(unknown["name"][0]["family"], "Nobody");
    assert_eq!(
        count_of(&live, &t, "Observation", unknown["id"].as_str().unwrap()),
        1
    );
    let none = live.fhir(
        "GET",
        "/fhir/Patient?family=Nameless&birthdate=1970-01-01",
        &t,
        "TREAT",
        None,
    );
    assert_eq!(none.body["total"], 0, "{}", none.body);
    let before = live.fhir("GET", &format!("/fhir/Patient/{id1}"), &t, "TREAT", None);

    // Replays: AA again, nothing applied twice.
    for file in ["01-adt-a01-admit.hl7", "06-oru-r01-lab.hl7"] {
        assert_eq!(ack_parts(&send(file)).0, "AA");
    }
    assert_eq!(count_of(&live, &t, "Observation", &id1), 5);
    assert_eq!(count_of(&live, &t, "Encounter", &id1), 1);
    let after = live.fhir("GET", &format!("/fhir/Patient/{id1}"), &t, "TREAT", None);
    assert_eq!(
        after.body["meta"]["versionId"], before.body["meta"]["versionId"],
        "a replay writes no new version"
    );

    // Messages written by others (../shared/testdata/hl7v2, when present): each gets an ACK,
    // and the one its manifest names when it names one.
    let shared = repo_root().join("../shared/testdata/hl7v2");
    let shared_manifest = std::fs::read(shared.join("MANIFEST.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let mut shared_sent = 0;
    if let Ok(rd) = std::fs::read_dir(&shared) {
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "hl7" || e == "txt"))
        {
            let bytes = std::fs::read(f).unwrap();
            let text = String::from_utf8_lossy(&bytes)
                .replace("\r\n", "\r")
                .replace('\n', "\r");
            let out = exchange(live.mllp, &framed(&text));
            let (code, _) = ack_parts(&String::from_utf8_lossy(&out).replace('\r', "\n"));
            assert!(
                ["AA", "AE", "AR"].contains(&code.as_str()),
                "{}: no ACK",
                f.display()
            );
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(want) = shared_manifest.as_ref().and_then(|m| {
                m["messages"]
                    .as_array()?
                    .iter()
                    .find(|x| x["file"] == name.as_str())?["ack"]
                    .as_str()
                    .map(str::to_owned)
            }) {
                assert_eq!(code, want, "{name}");
            }
            shared_sent += 1;
        }
    }

    // One audit event per message received, none holding PHI.
    let out = cli(&live.data, &["audit", "export", "--format", "jsonl"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hl7: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "hl7-message")
        .collect();
    assert_eq!(hl7.len(), messages.len() + 2 + shared_sent);
    assert!(hl7.iter().all(|e| e["actor"] == "hl7:default"));
    assert!(
        hl7.iter()
            .any(|e| e["request_id"] == "LAB-5001" && e["resource_type"] == "ORU^R01")
    );
    assert_eq!(hl7.iter().filter(|e| e["reason"] == "duplicate").count(), 2);
    for needle in ["Okafor", "999-11-2222", "Portland", "Müller"] {
        assert!(!text.contains(needle), "the audit trail holds {needle}");
    }
    // An all-digit MRN can turn up by chance in the trail's times (down to the nanosecond) and
    // hex digests, so it is looked for in the events' other values.
    let values: Vec<Values> = events
        .iter()
        .map(|e| Values::of(e, &["time"]).without_digests())
        .collect();
    assert!(values.iter().any(|v| v.holds("LAB-5001")), "{values:?}");
    assert!(
        !values.iter().any(|v| v.holds("100001")),
        "the audit trail holds the MRN"
    );
}

/// Threat: junk, binary, oversized and half-sent MLLP frames that crash or hang the listener or
/// store half a message (OWASP API4:2023; HIPAA §164.312(c)(1) integrity).
#[test]
fn malformed_input_gets_ae_ar_or_a_closed_connection_and_the_listener_keeps_serving() {
    let live = Live::start_with(
        &[
            ("PHIVAULT_MLLP_TLS", "off"),
            ("PHIVAULT_MLLP_MAX_FRAME", "4096"),
            ("PHIVAULT_MLLP_READ_TIMEOUT", "2"),
        ],
        |_| {},
    );
    let good = std::fs::read_to_string(hl7_dir().join("04-adt-a28-add-person-v24.hl7")).unwrap();
    let ack_of = |bytes: &[u8]| {
        let out = exchange(live.mllp, bytes);
        ack_parts(&String::from_utf8_lossy(&out).replace('\r', "\n"))
    };
    // Junk before a frame is skipped; the frame is answered.
    let mut junk = b"\x00\xffGET / HTTP/1.1\r\n\r\n".to_vec();
    junk.extend(framed(&good));
    assert_eq!(ack_of(&junk).0, "AA");
    // No MSH, binary junk in a frame, wrong delimiters: AR (nothing readable) or AE.
    assert_eq!(ack_of(&framed("PID|1||X\r")).0, "AR");
    assert_eq!(
        ack_of(&[0x0b, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x1c, 0x0d]).0,
        "AR"
    );
    assert_eq!(ack_of(&framed("MSH|^^\\&|A|B\r")).0, "AR");
    let (code, err) = ack_of(&framed(
        "MSH|^~\\&|A|B|C|D|2026||ADT^A01|X1|P|2.5\rPID|1||1^^^H||N\r\x01bad\r",
    ));
    assert_eq!((code.as_str(), err.is_some()), ("AE", true));
    // An unsupported version is rejected.
    assert_eq!(
        ack_of(&framed(
            "MSH|^~\\&|A|B|C|D|2026||ADT^A01|X2|P|3.0\rPID|1||1^^^H\r"
        ))
        .0,
        "AR"
    );
    // An oversized frame closes the connection without an answer.
    let big = framed(&format!("{good}NTE|1||{}\r", "x".repeat(8000)));
    assert!(exchange(live.mllp, &big).is_empty());
    // A half-sent frame is never processed: the connection times out, nothing is stored.
    let half = framed("MSH|^~\\&|A|B|C|D|2026||ADT^A28|HALF-1|P|2.5\rPID|1||HALF^^^H||Half^Sent\r");
    assert!(exchange(live.mllp, &half[..half.len() - 2]).is_empty());
    // And the listener still serves.
    assert_eq!(ack_of(&framed(&good)).0, "AA");
    let out = cli(&live.data, &["search", "--identifier", "H|HALF"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Half"),
        "the half frame was applied"
    );
    // Many messages on one connection, answered in order.
    let mut many = Vec::new();
    for i in 0..5 {
        many.extend(framed(&good.replace("MPI-0301", &format!("MANY-{i}"))));
    }
    let out = String::from_utf8_lossy(&exchange(live.mllp, &many)).into_owned();
    for i in 0..5 {
        assert!(out.contains(&format!("MSA|AA|MANY-{i}")), "{out}");
    }
}

/// Threat: HL7 feeds in clear text, or from hosts outside the hospital network (HIPAA
/// §164.312(e)(1) transmission security, (a)(1) access control).
#[test]
fn tls_is_required_and_sources_outside_the_allow_list_are_refused() {
    let live = Live::start_with(&[("PHIVAULT_MLLP_ALLOW", "127.0.0.1/32")], |_| {});
    let file = hl7_dir().join("04-adt-a28-add-person-v24.hl7");
    let script = repo_root().join("bin/phivault/tests/support/mllp_tls_send.py");
    let tls = |f: &std::path::Path| {
        Command::new(python())
            .arg(&script)
            .args(["127.0.0.1", &live.mllp.to_string(), &live.ca])
            .arg(f)
            .output()
            .unwrap()
    };
    let out = tls(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ack_parts(&String::from_utf8_lossy(&out.stdout)).0, "AA");
    // Plain MLLP while TLS is required: no ACK (at most a TLS alert), and nothing stored.
    let good = std::fs::read_to_string(&file).unwrap();
    let plain = good
        .replace("MPI-0301", "PLAIN-1")
        .replace("300003", "PLAIN3");
    let out = exchange(live.mllp, &framed(&plain));
    assert!(
        !String::from_utf8_lossy(&out).contains("MSA"),
        "plain MLLP was answered"
    );
    let found = cli(&live.data, &["search", "--identifier", "REGION|PLAIN3"]);
    assert!(!String::from_utf8_lossy(&found.stdout).contains("Moreau"));
    // From 127.0.0.2 (not allow-listed): closed before a byte is read.
    assert!(python_from("127.0.0.2", live.mllp, &framed(&good)).is_empty());
}

/// Threat: a sending system impersonating another interface (HIPAA §164.312(d) entity
/// authentication): client certificates decide which interface a connection is.
#[test]
fn client_certificates_name_the_interface_and_others_are_refused() {
    let pki = tempfile::tempdir().unwrap();
    client_pki(pki.path());
    let ca = pki.path().join("ca.pem").display().to_string();
    let live = Live::start_with(
        &[
            ("PHIVAULT_MLLP_CLIENT_CA", &ca),
            ("PHIVAULT_MLLP_CLIENT_CERT", "required"),
            ("PHIVAULT_MLLP_INTERFACES", "lab=lab.example.org"),
        ],
        |_| {},
    );
    let file = hl7_dir().join("04-adt-a28-add-person-v24.hl7");
    let send =
        |who: Option<&str>| ack_parts(&tls_send(live.mllp, &live.ca, pki.path(), who, &file)).0;
    assert_eq!(
        send(Some("lab")),
        "AA",
        "the lab's certificate names the lab interface"
    );
    assert_eq!(
        send(None),
        "",
        "no certificate while one is required: refused"
    );
    assert_eq!(
        send(Some("stray")),
        "",
        "a certificate from another CA: refused"
    );
    assert_eq!(
        send(Some("rogue")),
        "",
        "a valid certificate naming no interface: refused"
    );
    let out = cli(&live.data, &["audit", "export", "--format", "jsonl"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let actors: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "hl7-message")
        .map(|e| e["actor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actors, ["hl7:lab"], "one message, from the lab interface");
}

/// Where an ORG_ADMIN turned the care-team rule on, the attending doctor of an ADT (PV1-7.1,
/// a phivault username) gets a need-to-know grant for that patient, and only that one.
#[test]
fn the_attending_doctor_of_an_admission_gets_a_grant_where_the_rule_is_on() {
    let Some(sender) = mllp_send() else { return };
    let mut otp = String::new();
    let env = [
        ("PHIVAULT_MLLP_TLS", "off"),
        ("PHIVAULT_MLLP_GRANTS", "default"),
    ];
    let live = Live::start_with(&env, |data| {
        otp = common::live::add_user(data, "dr.welby", "CLINICIAN");
        let out = cli(data, &["grants", "care-team-rule", "on"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    for file in ["01-adt-a01-admit.hl7", "03-adt-a04-register-v23.hl7"] {
        let out = Command::new(&sender)
            .args(["--loose", "-p", &live.mllp.to_string(), "-f"])
            .arg(hl7_dir().join(file))
            .arg("127.0.0.1")
            .output()
            .unwrap();
        assert_eq!(
            ack_parts(&String::from_utf8_lossy(&out.stdout).replace('\r', "\n")).0,
            "AA"
        );
    }
    let token = live.sign_in("dr.welby", &otp, "127.0.4.1");
    let find = |ident: &str| {
        let r = live.call(
            "GET",
            &format!("/fhir/Patient?identifier={ident}"),
            Some(&token),
            Some("TREAT"),
            None,
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["total"].as_u64().unwrap()
    };
    assert_eq!(
        find("NORTHSIDE|100001"),
        1,
        "Dr Welby attends the A01's patient"
    );
    assert_eq!(
        find("EASTCLINIC|200002"),
        0,
        "no grant for a patient he does not attend"
    );
}

/// ADT^A40 moves every clinical record of the merged-away patient (a Condition here, not only
/// Observations) to the surviving one, as new versions.
#[test]
fn a_merge_moves_every_kind_of_clinical_record() {
    let Some(sender) = mllp_send() else { return };
    let mut ehr = String::new();
    let live = Live::start_with(&[("PHIVAULT_MLLP_TLS", "off")], |data| {
        ehr = Live::client(
            data,
            "ehr",
            "INTEGRATION_MANAGER",
            "system/*.cruds",
            "TREAT",
        );
    });
    let t = live.token(&ehr);
    let send = |file: &str| {
        let out = Command::new(&sender)
            .args(["--loose", "-p", &live.mllp.to_string(), "-f"])
            .arg(hl7_dir().join(file))
            .arg("127.0.0.1")
            .output()
            .unwrap();
        ack_parts(&String::from_utf8_lossy(&out.stdout).replace('\r', "\n")).0
    };
    assert_eq!(send("04-adt-a28-add-person-v24.hl7"), "AA");
    assert_eq!(send("05-adt-a31-update-person-latin1.hl7"), "AA");
    let (survivor, prior) = (
        patient_by(&live, &t, "REGION|300003"),
        patient_by(&live, &t, "REGION|400004"),
    );
    let prior_id = prior["id"].as_str().unwrap();
    let cond = serde_json::json!({"resourceType": "Condition", "code": {"text": "asthma"},
        "subject": {"reference": format!("Patient/{prior_id}")}});
    let c = live.fhir("POST", "/fhir/Condition", &t, "TREAT", Some(&cond));
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(send("07-adt-a40-merge.hl7"), "AA");
    let sid = survivor["id"].as_str().unwrap();
    assert_eq!(
        count_of(&live, &t, "Condition", sid),
        1,
        "the Condition moved to the survivor"
    );
    let moved = live.fhir(
        "GET",
        &format!("/fhir/Condition/{}", c.body["id"].as_str().unwrap()),
        &t,
        "TREAT",
        None,
    );
    assert_eq!(moved.body["subject"]["reference"], format!("Patient/{sid}"));
    assert_eq!(
        moved.body["meta"]["versionId"], "2",
        "a new version; the old one stays in the history"
    );
}
