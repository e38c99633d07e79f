//! HL7 v2 message types real hospital feeds send (issue 21): ADT transfers, discharges and
//! cancels, ORU with several OBR (and OBR alone), ORM/OML orders, MDM documents, SIU
//! appointments, VXU immunizations, patients created from any message (or refused with
//! `PHIVAULT_MLLP_UNKNOWN_PATIENT=reject`), and the PID-2/PID-4 identifier fallback. Each is
//! sent over MLLP as the file is written (CR, LF or CRLF), read back through the FHIR API and
//! validated with Python `fhir.resources`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use base64::Engine;
use common::live::{Live, validate_resources};
use common::mllp::{ack_parts, exchange, framed};
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

struct Feed {
    live: Live,
    token: String,
}

impl Feed {
    fn start(env: &[(&str, &str)]) -> Feed {
        let mut ehr = String::new();
        let mut all = vec![("PHIVAULT_MLLP_TLS", "off")];
        all.extend_from_slice(env);
        let live = Live::start_with(&all, |data| {
            ehr = Live::client(data, "ehr", "INTEGRATION_MANAGER", "system/*.crus", "TREAT");
        });
        let token = live.token(&ehr);
        Feed { live, token }
    }

    /// Sends a message as written (its own segment endings); returns MSA-1 and the ERR place.
    fn send_text(&self, text: &str) -> (String, Option<String>) {
        let out = exchange(self.live.mllp, &framed(text));
        ack_parts(&String::from_utf8_lossy(&out).replace('\r', "\n"))
    }

    fn send(&self, file: &str) -> (String, Option<String>) {
        let text = std::fs::read_to_string(repo_root().join("testdata/hl7v2").join(file)).unwrap();
        self.send_text(&text)
    }

    fn accepted(&self, file: &str) {
        assert_eq!(self.send(file), ("AA".into(), None), "{file}");
    }

    /// The resources a FHIR search finds (all on one page).
    fn search(&self, query: &str) -> Vec<Value> {
        let r = self
            .live
            .fhir("GET", &format!("/fhir/{query}"), &self.token, "TREAT", None);
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        r.body["entry"]
            .as_array()
            .map(|a| a.iter().map(|e| e["resource"].clone()).collect())
            .unwrap_or_default()
    }

    fn patient(&self, ident: &str) -> Value {
        let mut found = self.search(&format!("Patient?identifier={ident}"));
        assert_eq!(found.len(), 1, "{ident}");
        found.pop().unwrap()
    }

    /// The one resource of `rtype` of the patient with this identifier.
    fn only(&self, rtype: &str, ident: &str) -> Value {
        let mut found = self.of(rtype, ident);
        assert_eq!(found.len(), 1, "{rtype} of {ident}: {found:?}");
        found.pop().unwrap()
    }

    /// The patient's records of `rtype`, through `Patient/$everything` (the API searches
    /// only some types; every type is read this way).
    fn of(&self, rtype: &str, ident: &str) -> Vec<Value> {
        let id = self.patient(ident)["id"].as_str().unwrap().to_owned();
        let all = self.search(&format!("Patient/{id}/$everything"));
        all.into_iter()
            .filter(|r| r["resourceType"] == rtype)
            .collect()
    }
}

fn code(cc: &Value) -> &str {
    cc["coding"][0]["code"].as_str().unwrap_or("")
}

/// Threat: a hospital turns off a feed that phivault NAKs or stores wrongly (issue 21).
#[test]
fn every_feed_message_type_is_stored_and_read_back_as_valid_fhir() {
    let f = Feed::start(&[]);
    for file in [
        "01-adt-a01-admit.hl7",
        "03-adt-a04-register-v23.hl7",
        "04-adt-a28-add-person-v24.hl7",
    ] {
        f.accepted(file);
    }
    let mut checked = Vec::new();
    adt_moves_one_encounter(&f, &mut checked);
    siu_books_then_cancels_one_appointment(&f, &mut checked);
    mdm_gives_a_document(&f, &mut checked);
    oru_gives_a_report_per_obr(&f, &mut checked);
    orders_give_service_requests(&f, &mut checked);
    vxu_creates_the_patient(&f, &mut checked);
    identifier_fallback(&f, &mut checked);
    cancel_admit_and_refusals(&f, &mut checked);
    ambiguous_identifier_creates_no_one(&f);
    validate_resources(&checked);
}

fn adt_moves_one_encounter(f: &Feed, checked: &mut Vec<Value>) {
    let okafor = "NORTHSIDE|100001";
    // ADT: transfer (LF endings), discharge, cancelled discharge (CRLF): one Encounter moved.
    f.accepted("12-adt-a02-transfer-lf.hl7");
    let enc = f.only("Encounter", okafor);
    assert_eq!(enc["location"][0]["location"]["display"], "SURG 210 A");
    assert_eq!(enc["status"], "in-progress");
    f.accepted("13-adt-a03-discharge-v24.hl7");
    let enc = f.only("Encounter", okafor);
    assert_eq!(enc["status"], "finished");
    assert_eq!(enc["period"]["start"], "2026-11-01T08:00:00-05:00");
    assert_eq!(enc["period"]["end"], "2026-11-04T10:30:00-05:00");
    checked.push(enc);
    f.accepted("14-adt-a13-cancel-discharge-crlf.hl7");
    let enc = f.only("Encounter", okafor);
    assert_eq!(enc["status"], "in-progress");
    assert!(enc["period"].get("end").is_none(), "{enc}");
    assert_eq!(enc["class"]["code"], "IMP");
    checked.push(enc);
}

fn siu_books_then_cancels_one_appointment(f: &Feed, checked: &mut Vec<Value>) {
    let okafor = "NORTHSIDE|100001";
    // SIU: booked (times in MSH-7's offset), then cancelled: the same Appointment.
    f.accepted("08-siu-s12-booked.hl7");
    let appt = f.only("Appointment", okafor);
    assert_eq!(appt["status"], "booked");
    assert_eq!(appt["start"], "2026-11-20T10:30:00-05:00");
    assert_eq!(appt["end"], "2026-11-20T11:00:00-05:00");
    assert_eq!(appt["minutesDuration"], 30);
    assert_eq!(
        appt["participant"][0]["actor"]["reference"],
        format!("Patient/{}", f.patient(okafor)["id"].as_str().unwrap())
    );
    assert_eq!(appt["participant"][1]["actor"]["display"], "Welby, Marcus");
    assert_eq!(appt["participant"][2]["actor"]["display"], "CLINIC 2 B");
    assert_eq!(code(&appt["serviceType"][0]), "99213");
    checked.push(appt.clone());
    f.accepted("19-siu-s15-cancel.hl7");
    let cancelled = f.only("Appointment", okafor);
    assert_eq!(
        (cancelled["id"].clone(), cancelled["status"].clone()),
        (appt["id"].clone(), "cancelled".into())
    );
    checked.push(cancelled);
}

fn mdm_gives_a_document(f: &Feed, checked: &mut Vec<Value>) {
    let okafor = "NORTHSIDE|100001";
    // MDM: the document text as a base64 text/plain attachment.
    f.accepted("18-mdm-t02-discharge-summary-lf.hl7");
    let doc = f.only("DocumentReference", okafor);
    assert_eq!(doc["masterIdentifier"]["value"], "DOC-3001");
    assert_eq!(
        (doc["status"].as_str(), doc["docStatus"].as_str()),
        (Some("current"), Some("final"))
    );
    assert_eq!(code(&doc["type"]), "DS");
    let att = &doc["content"][0]["attachment"];
    assert_eq!(att["contentType"], "text/plain");
    let text = base64::engine::general_purpose::STANDARD
        .decode(att["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "Admitted for elective knee replacement.\nRecovered without complication.\nFollow up in clinic in two weeks."
    );
    checked.push(doc);
}

fn oru_gives_a_report_per_obr(f: &Feed, checked: &mut Vec<Value>) {
    // ORU with two OBR: a final panel with its results, a pending culture with none.
    let lind = "EASTCLINIC|200002";
    f.accepted("15-oru-r01-multi-obr-v231.hl7");
    let reports = f.of("DiagnosticReport", lind);
    assert_eq!(reports.len(), 2);
    let cbc = reports
        .iter()
        .find(|r| code(&r["code"]) == "58410-2")
        .unwrap();
    let culture = reports
        .iter()
        .find(|r| code(&r["code"]) == "600-7")
        .unwrap();
    assert_eq!(
        (cbc["status"].as_str(), culture["status"].as_str()),
        (Some("final"), Some("registered"))
    );
    assert_eq!(cbc["effectiveDateTime"], "2026-11-07T08:00:00-05:00");
    assert!(culture.get("result").is_none());
    let observations = f.of("Observation", lind);
    assert_eq!(observations.len(), 2);
    let mut results: Vec<&str> = cbc["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect();
    let mut stored: Vec<String> = observations
        .iter()
        .map(|o| format!("Observation/{}", o["id"].as_str().unwrap()))
        .collect();
    results.sort_unstable();
    stored.sort();
    assert_eq!(results, stored, "the report's results are its Observations");
    let hb = observations
        .iter()
        .find(|o| code(&o["code"]) == "718-7")
        .unwrap();
    assert_eq!(hb["valueQuantity"]["value"], 14.2);
    checked.extend(reports.clone());
    checked.extend(observations);
    // A replay writes nothing new.
    f.accepted("15-oru-r01-multi-obr-v231.hl7");
    assert_eq!(f.of("DiagnosticReport", lind).len(), 2);
}

fn orders_give_service_requests(f: &Feed, checked: &mut Vec<Value>) {
    let lind = "EASTCLINIC|200002";
    // ORM^O01 and OML^O21: ServiceRequests.
    f.accepted("16-orm-o01-new-order-v23.hl7");
    let order = f.only("ServiceRequest", lind);
    assert_eq!(
        (order["status"].as_str(), order["intent"].as_str()),
        (Some("active"), Some("order"))
    );
    assert_eq!(code(&order["code"]), "24323-8");
    assert_eq!(order["identifier"][0]["value"], "ORD-90");
    assert_eq!(order["authoredOn"], "2026-11-07T09:55:00-05:00");
    assert_eq!(order["requester"]["display"], "Strand, Ingrid");
    checked.push(order);
    f.accepted("17-oml-o21-lab-order.hl7");
    let lab = f.only("ServiceRequest", "REGION|300003");
    assert_eq!(code(&lab["code"]), "4548-4");
    assert_eq!(lab["status"], "active");
    checked.push(lab);
}

fn vxu_creates_the_patient(f: &Feed, checked: &mut Vec<Value>) {
    // VXU for a patient phivault has not seen: the patient is created from PID.
    f.accepted("20-vxu-v04-new-patient.hl7");
    let child = f.patient("NORTHSIDE|600006");
    assert_eq!(child["name"][0]["family"], "Tanaka");
    assert_eq!(child["birthDate"], "2024-03-15");
    let imm = f.only("Immunization", "NORTHSIDE|600006");
    assert_eq!(imm["status"], "completed");
    assert_eq!(
        imm["vaccineCode"]["coding"][0]["system"],
        "http://hl7.org/fhir/sid/cvx"
    );
    assert_eq!(code(&imm["vaccineCode"]), "08");
    assert_eq!(imm["occurrenceDateTime"], "2026-11-08T10:00:00-05:00");
    assert_eq!(imm["lotNumber"], "HB-2291");
    assert_eq!(
        imm["patient"]["reference"],
        format!("Patient/{}", child["id"].as_str().unwrap())
    );
    checked.push(child);
    checked.push(imm);
}

fn identifier_fallback(f: &Feed, checked: &mut Vec<Value>) {
    // Identifier fallback: PID-2 (PID-3 empty), PID-4 (PID-3 null); none at all is AE.
    f.accepted("21-oru-r01-pid2-only-v23-lf.hl7");
    let p2 = f.patient("WESTLAB|500005");
    assert_eq!(p2["name"][0]["family"], "Abara");
    assert_eq!(f.of("Observation", "WESTLAB|500005").len(), 1);
    f.accepted("22-orm-o01-pid4-only-v23.hl7");
    let p4 = f.patient("SOUTHCLINIC|700007");
    assert_eq!(
        code(&f.only("ServiceRequest", "SOUTHCLINIC|700007")["code"]),
        "36643-5"
    );
    checked.push(p2);
    checked.push(p4);
    assert_eq!(
        f.send("23-oru-r01-no-identifier.hl7"),
        ("AE".into(), Some("PID^1^3".into()))
    );
}

fn cancel_admit_and_refusals(f: &Feed, checked: &mut Vec<Value>) {
    let okafor = "NORTHSIDE|100001";
    // A11 cancels an admission; other event codes of the families are still refused (AR).
    let adt = |event: &str, ctl: &str| {
        format!(
            "MSH|^~\\&|EPICADT|NORTHSIDE|PHIVAULT|NORTHSIDE|20261112080000-0500||ADT^{event}|{ctl}|P|2.5.1\r\
            PID|1||100001^^^NORTHSIDE^MR||Okafor^Adaeze\rPV1|1|E|ER^1||||||||||||||||V-900002\r"
        )
    };
    assert_eq!(f.send_text(&adt("A01", "NS-0101")).0, "AA");
    assert_eq!(f.send_text(&adt("A11", "NS-0102")).0, "AA");
    let visits = f.of("Encounter", okafor);
    let er = visits
        .iter()
        .find(|e| e["identifier"][0]["value"] == "V-900002")
        .unwrap();
    assert_eq!(
        (er["status"].as_str(), er["class"]["code"].as_str()),
        (Some("cancelled"), Some("EMER"))
    );
    checked.push(er.clone());
    assert_eq!(f.send_text(&adt("A14", "NS-0103")).0, "AR");
    let siu = "MSH|^~\\&|S|N|P|N|20261112||SIU^S26|S-9|P|2.5\rSCH|X\r";
    assert_eq!(f.send_text(siu), ("AR".into(), Some("MSH^1^9".into())));
}

/// Two patients share an identifier (entered twice through the API): a result naming it is
/// refused (AE, duplicate key at PID-3), neither record is touched and no third is made.
fn ambiguous_identifier_creates_no_one(f: &Feed) {
    let twin = common::live::patient_with_mrn("800008");
    let ident = twin["identifier"][0].clone();
    let query = format!(
        "Patient?identifier={}|{}",
        ident["system"].as_str().unwrap_or(""),
        ident["value"].as_str().unwrap()
    );
    for _ in 0..2 {
        let r = f
            .live
            .fhir("POST", "/fhir/Patient", &f.token, "TREAT", Some(&twin));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let before = f.search(&query);
    assert_eq!(before.len(), 2);
    let oru = format!(
        "MSH|^~\\&|LAB|L|PHIVAULT|N|20261112090000-0500||ORU^R01|AMB-1|P|2.5.1\r\
         PID|1||{}^^^{}||Twin^Tess\rOBX|1|NM|2345-7^Glucose^LN||90|mg/dL|||||F\r",
        ident["value"].as_str().unwrap(),
        ident["system"].as_str().unwrap_or("")
    );
    assert_eq!(f.send_text(&oru), ("AE".into(), Some("PID^1^3".into())));
    assert_eq!(f.search(&query), before, "no third patient, no change");
}

/// Threat: with `PHIVAULT_MLLP_UNKNOWN_PATIENT=reject`, a result or immunization for an unknown
/// patient creates no one (AE at PID-3), as a site that wants only its ADT feed to make patients
/// asks; a known patient's results are still taken; a value that is neither create nor reject
/// stops the server at start.
#[test]
fn unknown_patients_are_refused_when_the_interface_says_reject() {
    let f = Feed::start(&[("PHIVAULT_MLLP_UNKNOWN_PATIENT", "reject")]);
    for file in [
        "09-oru-r01-unknown-patient.hl7",
        "20-vxu-v04-new-patient.hl7",
        "21-oru-r01-pid2-only-v23-lf.hl7",
    ] {
        assert_eq!(
            f.send(file),
            ("AE".into(), Some("PID^1^3".into())),
            "{file}"
        );
    }
    for ident in ["NORTHSIDE|999999", "NORTHSIDE|600006", "WESTLAB|500005"] {
        assert!(
            f.search(&format!("Patient?identifier={ident}")).is_empty(),
            "{ident}"
        );
    }
    f.accepted("01-adt-a01-admit.hl7");
    f.accepted("06-oru-r01-lab.hl7");
    assert_eq!(f.of("Observation", "NORTHSIDE|100001").len(), 5);

    let mut child = Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args(common::live::SERVE)
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", &f.live.data)
        .envs(backend_env(&f.live.data))
        .env("PHIVAULT_MLLP_UNKNOWN_PATIENT", "maybe")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = BufReader::new(child.stdout.take().unwrap()).lines().next();
    if started.is_some() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        started.is_none() && !out.status.success(),
        "started with a bad value"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PHIVAULT_MLLP_UNKNOWN_PATIENT"), "{err}");
}
