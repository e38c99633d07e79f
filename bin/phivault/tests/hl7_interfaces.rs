//! HL7 interfaces are identities: a real `phivault serve` whose MLLP listener maps TLS client
//! certificates to named interfaces; duplicate detection, derived record ids and care-team
//! grants follow the authenticated interface, never MSH-3/MSH-4 (which any sender can write).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, cli};
use common::mllp::ack_parts;
use common::pki::{client_pki, tls_send};
use phivault::datadir::Opened;
use phivault_core::{ResourceId, ResourceType};
use phivault_hl7::AckCode;
use phivault_hl7::ingest::{Interface, handle};
use phivault_vault::Ctx;
use phivault_vault::policy::Purpose;
use serde_json::{Value, json};
use std::path::Path;

/// MSH-3^MSH-4 of the lab's real messages; interface B writes the same to pass as the lab.
const LAB_MSH: &str = "MSH|^~\\&|LABSYS|NORTHLAB|PHIVAULT|NORTHSIDE|20261101120000-0500||";

/// An ADT of patient `mrn` (NORTHSIDE) for visit V-4242 at `location`, attended by `attending`.
fn adt(event: &str, control_id: &str, mrn: &str, location: &str, attending: &str) -> String {
    let mut pv1 = vec![""; 45];
    pv1[0] = "PV1";
    pv1[1] = "1";
    pv1[2] = "I";
    pv1[3] = location;
    pv1[7] = attending;
    pv1[19] = "V-4242";
    format!(
        "{LAB_MSH}ADT^{event}^ADT_A01|{control_id}|P|2.5.1\rEVN|{event}|20261101083000-0500\r\
         PID|1||{mrn}^^^NORTHSIDE^MR||Forgeworth^Ada||19600101|F\r{}\r",
        pv1.join("|")
    )
}

fn admission(event: &str, control_id: &str, location: &str) -> String {
    adt(event, control_id, "700007", location, "")
}

fn glucose(control_id: &str, value: &str) -> String {
    format!(
        "{LAB_MSH}ORU^R01^ORU_R01|{control_id}|P|2.5.1\rPID|1||700007^^^NORTHSIDE^MR\r\
         OBR|1|ORD-1|FIL-1|2345-7^Glucose^LN|||20261101110000-0500\r\
         OBX|1|NM|2345-7^Glucose^LN||{value}|mg/dL^mg/dL^UCUM|70-99|N|||F\r"
    )
}

/// A server whose interfaces `lab` and `clinic` are the client certificates of `pki`.
fn two_interfaces(pki: &Path, extra: &[(&str, &str)]) -> (Live, String) {
    let ca = pki.join("ca.pem").display().to_string();
    let mut env = vec![
        ("PHIVAULT_MLLP_CLIENT_CA", ca.as_str()),
        ("PHIVAULT_MLLP_CLIENT_CERT", "required"),
        (
            "PHIVAULT_MLLP_INTERFACES",
            "lab=lab.example.org,clinic=clinic.example.org",
        ),
    ];
    env.extend_from_slice(extra);
    let mut reader = String::new();
    let live = Live::start_with(&env, |data| {
        reader = Live::client(
            data,
            "reader",
            "INTEGRATION_MANAGER",
            "system/*.rs",
            "TREAT",
        );
    });
    let token = live.token(&reader);
    (live, token)
}

/// Sends `msg` as interface `who`; returns MSA-1.
fn send_as(live: &Live, pki: &Path, who: &str, msg: &str) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), msg).unwrap();
    ack_parts(&tls_send(live.mllp, &live.ca, pki, Some(who), f.path())).0
}

fn search(live: &Live, token: &str, query: &str) -> Vec<Value> {
    let r = live.fhir("GET", &format!("/fhir/{query}"), token, "TREAT", None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["entry"]
        .as_array()
        .map(|a| a.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

/// The hl7-message audit events: (actor, control id, reason).
fn message_events(data: &Path) -> Vec<(String, String, String)> {
    let out = cli(data, &["audit", "export", "--format", "jsonl"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "hl7-message")
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("actor"), s("request_id"), s("reason"))
        })
        .collect()
}

/// Threat: one sending system forging another's MSH-3/MSH-4 to overwrite its records, or to
/// send its control ids first so that its real messages are dropped as duplicates (HIPAA
/// §164.312(c)(1) integrity, (d) entity authentication).
#[test]
fn a_forged_msh_3_4_from_interface_b_cannot_touch_a_s_records_or_replay_a_s_control_ids() {
    let pki = tempfile::tempdir().unwrap();
    client_pki(pki.path());
    let (live, t) = two_interfaces(pki.path(), &[]);
    let a01 = admission("A01", "LAB-1", "MED^402^B");
    assert_eq!(
        send_as(&live, pki.path(), "multi", &a01),
        "",
        "a certificate valid for both interfaces is neither"
    );

    // A admits; B, writing A's MSH-3/4, "updates" the same visit number.
    assert_eq!(send_as(&live, pki.path(), "lab", &a01), "AA");
    let patient = search(&live, &t, "Patient?identifier=NORTHSIDE|700007");
    assert_eq!(patient.len(), 1);
    let pid = patient[0]["id"].as_str().unwrap().to_owned();
    let encounters = search(&live, &t, &format!("Encounter?patient={pid}"));
    assert_eq!(encounters.len(), 1);
    let a_encounter = encounters[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        send_as(
            &live,
            pki.path(),
            "clinic",
            &admission("A08", "CLN-1", "ICU^1^A")
        ),
        "AA"
    );
    let r = live.fhir(
        "GET",
        &format!("/fhir/Encounter/{a_encounter}"),
        &t,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["meta"]["versionId"], "1",
        "interface B rewrote interface A's encounter: {}",
        r.body
    );
    assert_eq!(r.body["location"][0]["location"]["display"], "MED 402 B");

    // B sends A's next control id first, with its own value; then A sends the real message.
    assert_eq!(
        send_as(&live, pki.path(), "clinic", &glucose("LAB-2", "500")),
        "AA"
    );
    assert_eq!(
        send_as(&live, pki.path(), "lab", &glucose("LAB-2", "98")),
        "AA"
    );
    let values = |live: &Live| -> Vec<f64> {
        let mut v: Vec<f64> = search(live, &t, &format!("Observation?patient={pid}"))
            .iter()
            .map(|o| o["valueQuantity"]["value"].as_f64().unwrap())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    assert_eq!(
        values(&live),
        [98.0, 500.0],
        "A's result was dropped as a duplicate of B's forgery, or overwritten by it"
    );
    let events = message_events(&live.data);
    let lab2: Vec<_> = events.iter().filter(|e| e.1 == "LAB-2").collect();
    assert_eq!(lab2.len(), 2, "{events:?}");
    assert!(
        lab2.iter().all(|e| e.2.is_empty()),
        "both applied, neither a duplicate: {lab2:?}"
    );

    // Each interface's own replays are still duplicates, written once.
    assert_eq!(
        send_as(&live, pki.path(), "lab", &glucose("LAB-2", "98")),
        "AA"
    );
    assert_eq!(
        send_as(&live, pki.path(), "clinic", &glucose("LAB-2", "500")),
        "AA"
    );
    assert_eq!(values(&live), [98.0, 500.0], "a replay applied twice");
    let dups: Vec<String> = message_events(&live.data)
        .into_iter()
        .filter(|e| e.2 == "duplicate")
        .map(|e| e.0)
        .collect();
    assert_eq!(dups, ["hl7:lab", "hl7:clinic"]);
}

/// `phivault serve` with `env` and `args` on a data dir that holds no vault: the settings are
/// checked first, so it stops at once; returns its standard error.
fn serve_error(env: &[(&str, &str)], args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args(common::live::SERVE)
        .args(args)
        .env("PHIVAULT_DATA_DIR", dir.path().join("none"))
        .env("PHIVAULT_PASSPHRASE", common::PASS)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Threat: an MLLP listener open to the hospital network where any host on an allowed subnet
/// is taken for a sending system (HIPAA §164.312(d)): beyond loopback, client certificates
/// are required unless the operator explicitly says otherwise.
#[test]
fn beyond_loopback_client_certificates_are_required_by_default() {
    let wide = ("PHIVAULT_MLLP_ALLOW", "10.0.0.0/8,127.0.0.1/32");
    let err = serve_error(&[wide], &[]);
    assert!(
        err.contains("PHIVAULT_MLLP_CLIENT_CA") && err.contains("PHIVAULT_MLLP_ALLOW"),
        "the startup error names what to set: {err}"
    );
    let err = serve_error(&[wide, ("PHIVAULT_MLLP_CLIENT_CERT", "sometimes")], &[]);
    assert!(err.contains("PHIVAULT_MLLP_CLIENT_CERT"), "{err}");
    // Interfaces from the command line need a client CA too.
    let err = serve_error(&[], &["--mllp-interfaces", "lab=lab.example.org"]);
    assert!(err.contains("need PHIVAULT_MLLP_CLIENT_CA"), "{err}");

    let pki = tempfile::tempdir().unwrap();
    client_pki(pki.path());
    let ca = pki.path().join("ca.pem").display().to_string();
    let file = pki.path().join("a28.hl7");
    std::fs::write(&file, adt("A28", "A28-1", "730003", "", "")).unwrap();
    let env = [
        wide,
        ("PHIVAULT_MLLP_CLIENT_CA", ca.as_str()),
        ("PHIVAULT_MLLP_INTERFACES", "lab=lab.example.org"),
    ];
    let live = Live::start_with(&env, |_| {});
    let send = |who| ack_parts(&tls_send(live.mllp, &live.ca, pki.path(), who, &file)).0;
    assert_eq!(send(None), "", "no certificate: refused by default");
    assert_eq!(send(Some("lab")), "AA");
    drop(live);

    // Explicitly optional: served as the default interface, and the log warns.
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("serve.log");
    let mut env = env.to_vec();
    env.push(("PHIVAULT_MLLP_CLIENT_CERT", "optional"));
    let live = Live::start_logged(&env, &log, |_| {});
    let send = |who| ack_parts(&tls_send(live.mllp, &live.ca, pki.path(), who, &file)).0;
    assert_eq!(send(None), "AA");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("PHIVAULT_MLLP_CLIENT_CERT=optional"),
        "no warning: {logged}"
    );
}

/// Threat: any feed handing clinicians access to patients (HIPAA §164.308(a)(4) access
/// authorization): the care-team rule grants the attending doctor only for admissions from
/// interfaces configured to grant (`grants = true` in the interfaces file).
#[test]
fn care_team_grants_come_only_from_interfaces_configured_to_grant() {
    let pki = tempfile::tempdir().unwrap();
    client_pki(pki.path());
    let ca = pki.path().join("ca.pem").display().to_string();
    let conf = pki.path().join("interfaces.toml");
    std::fs::write(
        &conf,
        "[[interface]]\nname = \"lab\"\ndns_name = \"lab.example.org\"\ngrants = true\n\n\
         [[interface]]\nname = \"clinic\"\ndns_name = \"clinic.example.org\"\n",
    )
    .unwrap();
    let conf = conf.display().to_string();
    let mut otp = String::new();
    let env = [
        ("PHIVAULT_MLLP_CLIENT_CA", ca.as_str()),
        ("PHIVAULT_MLLP_INTERFACES", conf.as_str()),
    ];
    let live = Live::start_with(&env, |data| {
        otp = common::live::add_user(data, "dr.welby", "CLINICIAN");
        common::live::stdout_ok(&cli(data, &["grants", "care-team-rule", "on"]));
    });
    let attending = "dr.welby^Welby^Marcus";
    let lab = adt("A01", "G-1", "740004", "MED^1^A", attending);
    let clinic = adt("A01", "G-2", "750005", "MED^2^A", attending);
    assert_eq!(send_as(&live, pki.path(), "lab", &lab), "AA");
    assert_eq!(send_as(&live, pki.path(), "clinic", &clinic), "AA");
    let token = live.sign_in("dr.welby", &otp, "127.0.4.2");
    let found = |mrn: &str| {
        let q = format!("/fhir/Patient?identifier=NORTHSIDE|{mrn}");
        let r = live.call("GET", &q, Some(&token), Some("TREAT"), None, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["total"].as_u64().unwrap()
    };
    assert_eq!(found("740004"), 1, "the lab may grant");
    assert_eq!(found("750005"), 0, "the clinic is not configured to grant");
}

/// One message through the ingestion as interface `iface`; returns its outcome.
async fn ingest(o: &Opened, iface: &Interface, msg: &str) -> phivault_hl7::ingest::Outcome {
    let limits = phivault_hl7::ParseLimits::default();
    let now = "20261201000000+0000";
    handle(&o.vault, iface, None, msg.as_bytes(), &limits, "ACK-1", now)
        .await
        .1
}

/// Upgrade: data written before record keys were the interface (a visit's Encounter id and the
/// duplicate record derived from MSH-3^MSH-4) stays reachable for the interface the operator
/// configured with that legacy sender (`legacy_senders`), and for no other: a forged MSH-3/4
/// reaches no record of before either.
#[tokio::test]
async fn records_from_before_the_upgrade_follow_the_configured_legacy_sender_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = common::new_vault(&dir.path().join("data")).await;
    let org = o.org(None).await.unwrap();
    let iface = |name: &str, legacy: &[&str]| Interface {
        org: org.clone(),
        name: name.into(),
        purpose: Purpose::Treat,
        authority: o.operator.interfaces(),
        grants: false,
        unknown_patient: Default::default(),
        legacy_senders: legacy.iter().map(|s| (*s).to_owned()).collect(),
    };
    let (lab, clinic) = (iface("lab", &["LABSYS^NORTHLAB"]), iface("clinic", &[]));
    // What the previous version wrote for the lab's A01 (control id OLD-1, visit V-4242).
    let ctx = Ctx::for_interface(&o.operator.interfaces(), org.clone(), "lab", Purpose::Treat);
    let pid = o.vault.derived_id(&ctx, "hl7-patient", "NORTHSIDE|760006");
    let legacy = o
        .vault
        .derived_id(&ctx, "hl7-encounter", "visit|LABSYS^NORTHLAB|V-4242");
    let put = |rtype: &str, id: &ResourceId, r: Value| json!({"resource": r, "request": {"method": "PUT", "url": format!("{rtype}/{id}")}});
    let patient = json!({"resourceType": "Patient", "id": pid.as_str(),
        "identifier": [{"system": "NORTHSIDE", "value": "760006"}], "name": [{"family": "Olden"}]});
    let encounter = json!({"resourceType": "Encounter", "id": legacy.as_str(),
        "status": "in-progress", "class": {"code": "IMP"},
        "subject": {"reference": format!("Patient/{pid}")},
        "location": [{"location": {"display": "MED 402 B"}}]});
    let entries = [
        put("Patient", &pid, patient),
        put("Encounter", &legacy, encounter),
    ];
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    o.vault.bundle(&ctx, bundle).await.unwrap();
    o.vault
        .remember_message(&ctx, "LABSYS^NORTHLAB", "OLD-1", "AA")
        .await
        .unwrap();
    let enc_type = ResourceType::parse("Encounter").unwrap();
    let version = async || o.vault.read(&ctx, enc_type, &legacy).await.unwrap();

    let a08 = |control: &str, location: &str| adt("A08", control, "760006", location, "");
    let out = ingest(&o, &clinic, &a08("CLN-9", "ICU^1^A")).await;
    assert_eq!((out.code, out.duplicate), (AckCode::Accept, false));
    assert_eq!(
        version().await.version.0,
        1,
        "a forged MSH-3/4 reached a visit of before"
    );
    let out = ingest(&o, &lab, &a08("LAB-9", "MED^403^C")).await;
    assert_eq!((out.code, out.duplicate), (AckCode::Accept, false));
    let updated = version().await;
    assert_eq!(
        updated.version.0, 2,
        "the lab's A08 updates its visit of before"
    );
    assert_eq!(
        updated.resource["location"][0]["location"]["display"],
        "MED 403 C"
    );
    let encounters = o.vault.patient_records(&ctx, &pid).await.unwrap();
    let encounters = encounters.iter().filter(|r| r.rtype == enc_type).count();
    assert_eq!(
        encounters, 2,
        "the one of before (the lab's) and the clinic's own"
    );

    // A replay of the lab's message of before is a duplicate; the same id from the clinic is not.
    let replay = a08("OLD-1", "MED^402^B");
    assert!(ingest(&o, &lab, &replay).await.duplicate);
    assert!(!ingest(&o, &clinic, &replay).await.duplicate);
    o.close().await;
}
