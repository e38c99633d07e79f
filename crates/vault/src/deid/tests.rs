//! The de-identification engine against every identifier kind of §164.514(b)(2)(i) that FHIR
//! can carry, (A) to (R), plus the whitelist's default (unknown elements and types dropped).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;
use serde_json::json;

const YEAR: i32 = 2026;

/// A patient carrying every kind of identifier FHIR has a place for.
fn patient() -> Value {
    json!({
        "resourceType": "Patient", "id": "pat-1",
        "meta": {"versionId": "3", "lastUpdated": "2024-02-03T04:05:06Z", "source": "http://ehr.example.org/src"},
        "text": {"status": "generated", "div": "<div>Winifred Abernathy-Quist</div>"},
        "extension": [
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"},
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
                {"url": "text", "valueString": "Abernathy family, Sicilian"}]},
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString": "Pennywhistle"},
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "Tewksbury"}},
            {"url": "http://example.org/last-login-ip", "valueString": "203.0.113.77"}
        ],
        "identifier": [
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-41-7263"},
            {"type": {"coding": [{"code": "MR"}]}, "value": "MRN-5550123"},
            {"type": {"coding": [{"code": "MB"}]}, "value": "PLAN-88120042"},
            {"type": {"coding": [{"code": "AN"}]}, "value": "ACCT-31337"},
            {"type": {"coding": [{"code": "DL"}]}, "value": "S99977123"}
        ],
        "name": [{"family": "Abernathy-Quist", "given": ["Winifred"]}],
        "telecom": [
            {"system": "phone", "value": "(555) 867-5309"},
            {"system": "fax", "value": "555-867-5310"},
            {"system": "email", "value": "winnie.aq@example.net"},
            {"system": "url", "value": "https://winnie.example.net/home"}
        ],
        "gender": "female",
        "birthDate": "1958-11-23",
        "address": [
            {"use": "home", "line": ["77 Sassafras Bend"], "city": "Tewksbury", "district": "Middlesex",
             "state": "MA", "postalCode": "01876-2201", "country": "US", "period": {"start": "2001-04-05"}},
            {"use": "old", "line": ["9 Kettle Pond Rd"], "city": "Hanover", "state": "NH", "postalCode": "03601"},
            {"line": ["1 Fir Close"], "city": "Leeds", "postalCode": "LS1 4AP", "country": "GB"}
        ],
        "photo": [{"contentType": "image/jpeg", "data": "RkFDRVBIT1RP", "url": "https://img.example.net/face.jpg"}],
        "contact": [{"name": {"family": "Quist"}, "telecom": [{"system": "phone", "value": "555-222-0199"}]}],
        "generalPractitioner": [{"reference": "Practitioner/dr-7", "display": "Dr. Ignatius Fairweather"}],
        "managingOrganization": {"reference": "Organization/org-3"},
        "maritalStatus": {"coding": [{"code": "M"}], "text": "Married to Bartholomew"},
        "communication": [{"language": {"coding": [{"code": "en"}], "text": "English"}, "preferred": true}],
        "link": [{"other": {"reference": "RelatedPerson/rp-1"}, "type": "seealso"}],
        "favouriteColour": "mauve, says Winifred"
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation", "id": "obs-1", "status": "final",
        "identifier": [{"value": "LAB-ACC-20240001"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}],
                 "text": "Height measured by Nurse Philippa Groat"},
        "subject": {"reference": "Patient/pat-1", "display": "Winifred Abernathy-Quist"},
        "encounter": {"reference": "urn:uuid:enc-1"},
        "performer": [{"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9990001234"}],
        "device": {"reference": "Device/pump-1", "display": "Infusion pump SN-99-A7"},
        "effectiveDateTime": "2024-05-02T09:15:00-04:00",
        "issued": "2024-05-02T09:15:00.123-04:00",
        "valueQuantity": {"value": 162.5, "unit": "cm"},
        "note": [{"text": "Winifred's daughter Petronella called from 555-867-5309"}],
        "interpretation": [{"coding": [{"code": "N"}], "text": "normal for Winifred"}],
        "component": [{"code": {"text": "free text only"}, "valueString": "x"}],
        "contained": [{"resourceType": "Practitioner", "id": "c1", "name": [{"family": "Groat"}]}]
    })
}

fn records() -> Vec<Value> {
    vec![
        patient(),
        observation(),
        json!({"resourceType": "Encounter", "id": "enc-1", "status": "finished",
               "class": {"code": "IMP"}, "subject": {"reference": "Patient/pat-1"},
               "period": {"start": "2024-05-01T22:00:00Z", "end": "2024-05-03T10:00:00Z"},
               "hospitalization": {"admitSource": {"coding": [{"code": "emd"}]},
                                   "origin": {"reference": "Location/ambulance-bay-4"}},
               "location": [{"location": {"reference": "Location/room-412", "display": "Room 412, West Wing"}}],
               "participant": [{"individual": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "NPI-4433221"}}}]}),
        json!({"resourceType": "Condition", "id": "cond-1", "subject": {"reference": "Patient/pat-1"},
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
               "onsetAge": {"value": 95, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"},
               "recordedDate": "2023-12-30", "note": [{"text": "per husband Bartholomew"}]}),
        json!({"resourceType": "RelatedPerson", "id": "rp-1", "patient": {"reference": "Patient/pat-1"},
               "name": [{"family": "Abernathy", "given": ["Petronella"]}],
               "telecom": [{"system": "phone", "value": "555-222-0199"}]}),
        json!({"resourceType": "Device", "id": "pump-1", "patient": {"reference": "Patient/pat-1"},
               "serialNumber": "SN-99-A7", "udiCarrier": [{"deviceIdentifier": "00844588003288"}]}),
        json!({"resourceType": "Media", "id": "face-1", "status": "completed", "subject": {"reference": "Patient/pat-1"},
               "content": {"contentType": "image/jpeg", "data": "RkFDRVBIT1RP"}}),
        json!({"resourceType": "Practitioner", "id": "dr-7", "name": [{"family": "Fairweather"}]}),
    ]
}

/// Runs the engine over records, each linked to the patient its `subject`/`patient` names.
fn run(method: DeidMethod, records: &[Value]) -> DeidExport {
    let ids: HashMap<String, &'static str> = records
        .iter()
        .map(|r| {
            let t =
                phivault_core::ResourceType::parse(r["resourceType"].as_str().unwrap()).unwrap();
            (r["id"].as_str().unwrap().to_owned(), t.as_str())
        })
        .collect();
    let inputs: Vec<Input> = records
        .iter()
        .filter_map(|r| {
            let t =
                phivault_core::ResourceType::parse(r["resourceType"].as_str().unwrap()).unwrap();
            rules::keeps_top(t.as_str(), "")?;
            let patient = if t.is_patient() {
                r["id"].as_str().map(str::to_owned)
            } else {
                ["subject", "patient"]
                    .iter()
                    .find_map(|k| r[*k]["reference"].as_str())
                    .and_then(|s| s.strip_prefix("Patient/"))
                    .map(str::to_owned)
            };
            Some(Input {
                rtype: t.as_str(),
                resource: r.clone(),
                patient,
            })
        })
        .collect();
    deidentify(method, YEAR, &ids, &inputs).unwrap()
}

/// The export as text, ids and references left out (they are pseudonyms, tested on their own),
/// so a short needle of digits cannot match a pseudonym by chance.
fn text_of(e: &DeidExport) -> String {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.retain(|k, _| k != "id" && k != "reference");
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut all: Vec<Value> = e.resources.values().flatten().cloned().collect();
    all.iter_mut().for_each(strip);
    serde_json::to_string(&all).unwrap()
}

fn assert_absent(e: &DeidExport, needles: &[&str]) {
    let text = text_of(e);
    for n in needles {
        assert!(!text.contains(n), "{n:?} survived: {text}");
    }
}

fn only(e: &DeidExport, rtype: &str) -> Value {
    let list = e.resources(rtype);
    assert_eq!(list.len(), 1, "{rtype}: {list:?}");
    list[0].clone()
}

#[test]
fn a_names() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(
        &e,
        &[
            "Winifred",
            "Abernathy",
            "Quist",
            "Petronella",
            "Bartholomew",
            "Groat",
            "Fairweather",
            "Pennywhistle",
        ],
    );
    assert!(only(&e, "Patient").get("name").is_none());
}

#[test]
fn b_geography_below_the_state() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(
        &e,
        &[
            "Sassafras",
            "Tewksbury",
            "Middlesex",
            "Kettle Pond",
            "Hanover",
            "01876",
            "03601",
            "Leeds",
            "LS1",
            "Room 412",
            "room-412",
            "ambulance",
        ],
    );
    let p = only(&e, "Patient");
    assert_eq!(
        p["address"],
        json!([{"use": "home", "state": "MA", "country": "US", "postalCode": "018"},
               {"use": "old", "state": "NH", "postalCode": "000"},
               {"country": "GB"}])
    );
}

#[test]
fn c_dates_keep_the_year_only_and_instants_go() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(
        &e,
        &[
            "1958-11", "2024-05", "2023-12", "2001-04", "2024-02", "09:15", "22:00",
        ],
    );
    let o = only(&e, "Observation");
    assert_eq!(o["effectiveDateTime"], "2024");
    assert!(
        o.get("issued").is_none(),
        "an instant cannot be a bare year"
    );
    assert_eq!(only(&e, "Patient")["birthDate"], "1958");
    assert_eq!(
        only(&e, "Encounter")["period"],
        json!({"start": "2024", "end": "2024"})
    );
}

#[test]
fn c_ages_of_90_or_more_are_aggregated() {
    let mut old = patient();
    old["birthDate"] = json!(format!("{}-06-01", YEAR - 95));
    let mut borderline = patient();
    borderline["id"] = json!("pat-2");
    borderline["birthDate"] = json!(format!("{}-12-31", YEAR - 90));
    let mut young = patient();
    young["id"] = json!("pat-3");
    young["birthDate"] = json!(format!("{}-01-01", YEAR - 89));
    let e = run(
        DeidMethod::SafeHarbor,
        &[old, borderline, young, records()[3].clone()],
    );
    let flag = json!({"url": rules::AGE_90_OR_OLDER, "valueBoolean": true});
    let patients = e.resources("Patient");
    for p in &patients[..2] {
        assert!(p.get("birthDate").is_none(), "{p}");
        assert!(p["extension"].as_array().unwrap().contains(&flag), "{p}");
    }
    assert_eq!(patients[2]["birthDate"], json!(format!("{}", YEAR - 89)));
    assert!(!patients[2]["extension"].as_array().unwrap().contains(&flag));
    // An age of 95 years (Condition.onsetAge) is removed too.
    assert!(only(&e, "Condition").get("onsetAge").is_none());
    assert_absent(&e, &[&format!("{}", YEAR - 95), &format!("{}", YEAR - 90)]);
}

#[test]
fn d_e_f_telephone_fax_and_email() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(
        &e,
        &[
            "867-5309",
            "8675309",
            "867-5310",
            "222-0199",
            "winnie.aq",
            "@example",
        ],
    );
    assert!(only(&e, "Patient").get("telecom").is_none());
}

#[test]
fn g_to_k_ssn_record_plan_account_and_license_numbers() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(
        &e,
        &[
            "999-41-7263",
            "MRN-5550123",
            "PLAN-88120042",
            "ACCT-31337",
            "S99977123",
            "LAB-ACC-20240001",
            "NPI-4433221",
            "9990001234",
        ],
    );
    assert!(!text_of(&e).contains("\"identifier\""));
}

#[test]
fn l_m_vehicle_and_device_identifiers() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(&e, &["SN-99-A7", "00844588003288", "pump-1"]);
    assert!(e.resources("Device").is_empty());
    assert!(only(&e, "Observation").get("device").is_none());
}

#[test]
fn n_o_urls_and_ip_addresses() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(
        &e,
        &[
            "winnie.example.net",
            "img.example.net",
            "ehr.example.org",
            "203.0.113.77",
            "mothersMaidenName",
            "birthPlace",
        ],
    );
}

#[test]
fn p_q_biometrics_and_photographs() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(&e, &["RkFDRVBIT1RP", "image/jpeg"]);
    assert!(e.resources("Media").is_empty());
    assert!(only(&e, "Patient").get("photo").is_none());
}

#[test]
fn r_ids_and_references_become_pseudonyms() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(
        &e,
        &[
            "pat-1", "obs-1", "enc-1", "cond-1", "rp-1", "dr-7", "org-3", "urn:uuid",
        ],
    );
    let p = only(&e, "Patient");
    let o = only(&e, "Observation");
    let enc = only(&e, "Encounter");
    let pid = p["id"].as_str().unwrap();
    assert_eq!(pid.len(), 64);
    assert_eq!(o["subject"], json!({"reference": format!("Patient/{pid}")}));
    assert_eq!(
        o["encounter"]["reference"],
        format!("Encounter/{}", enc["id"].as_str().unwrap())
    );
    // A conditional reference (carrying an NPI) becomes a pseudonymous literal one.
    let perf = o["performer"][0]["reference"].as_str().unwrap();
    assert!(perf.starts_with("Practitioner/") && perf.len() == "Practitioner/".len() + 64);
    // Every id and every reference, whatever its form in the input, is a pseudonym.
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let all = serde_json::to_string(&e.resources.values().flatten().collect::<Vec<_>>()).unwrap();
    let refs: Vec<&str> = all.split("\"reference\":\"").skip(1).collect();
    assert!(refs.len() >= 5);
    for r in refs {
        let target = r.split('"').next().unwrap();
        let (t, id) = target.split_once('/').unwrap();
        assert!(rules::keeps_top(t, "").is_some() || t == "Practitioner" || t == "Organization");
        assert!(hex(id), "{target}");
    }
    assert!(
        e.resources
            .values()
            .flatten()
            .all(|r| hex(r["id"].as_str().unwrap()))
    );
}

#[test]
fn free_text_and_unknown_elements_are_dropped_coded_values_kept() {
    let e = run(DeidMethod::SafeHarbor, &records());
    assert_absent(
        &e,
        &[
            "\"text\"",
            "\"note\"",
            "\"div\"",
            "favouriteColour",
            "mauve",
            "\"contained\"",
            "valueString",
            "display\":\"Dr",
            "Married",
        ],
    );
    let o = only(&e, "Observation");
    assert_eq!(
        o["code"]["coding"][0]["display"], "Body Height",
        "a Coding's display is terminology"
    );
    assert_eq!(o["valueQuantity"], json!({"value": 162.5, "unit": "cm"}));
    assert!(
        o.get("component").is_none(),
        "a component without a code goes"
    );
    let p = only(&e, "Patient");
    assert_eq!(p["gender"], "female");
    assert_eq!(
        p["extension"][1]["extension"],
        json!([{"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}}])
    );
    assert_eq!(
        p["meta"],
        json!({"security": [{"system": rules::SECURITY_SYSTEM, "code": "ANONYED"}]})
    );
}

#[test]
fn people_and_places_other_than_the_patient_are_not_exported() {
    let e = run(DeidMethod::SafeHarbor, &records());
    let types: Vec<&str> = e.counts().keys().copied().collect();
    assert_eq!(types, ["Condition", "Encounter", "Observation", "Patient"]);
}

#[test]
fn a_resource_that_would_lose_a_required_element_is_left_out() {
    let imm = json!({"resourceType": "Immunization", "id": "imm-1", "status": "completed",
        "vaccineCode": {"coding": [{"code": "140"}]}, "patient": {"reference": "Patient/pat-1"},
        "occurrenceString": "the spring Winifred moved"});
    let e = run(DeidMethod::SafeHarbor, &[patient(), imm]);
    assert!(e.resources("Immunization").is_empty());
    assert_eq!(e.left_out.get("incomplete"), Some(&1));
}

#[test]
fn pseudonymized_dates_move_by_one_offset_per_patient() {
    let mut other = patient();
    other["id"] = json!("pat-2");
    let mut obs2 = observation();
    obs2["id"] = json!("obs-2");
    obs2["subject"] = json!({"reference": "Patient/pat-2"});
    let mut recs = records();
    recs.extend([other, obs2]);
    let e = run(DeidMethod::Pseudonymized, &recs);
    let day = |s: &str| {
        let d = &s[..10];
        time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
    };
    let offset = |orig: &str, new: &Value| (day(new.as_str().unwrap()) - day(orig)).whole_days();
    let patients = e.resources("Patient");
    let by_id = |id: &str| patients.iter().find(|p| p["id"] == id).unwrap().clone();
    let obs = e.resources("Observation");
    let mut offsets = Vec::new();
    for o in obs {
        let pid = o["subject"]["reference"]
            .as_str()
            .unwrap()
            .trim_start_matches("Patient/");
        let p = by_id(pid);
        let from_birth = offset("1958-11-23", &p["birthDate"]);
        let from_obs = offset("2024-05-02", &o["effectiveDateTime"]);
        let from_issued = offset("2024-05-02", &o["issued"]);
        assert_eq!(from_birth, from_obs, "one offset per patient");
        assert_eq!(from_birth, from_issued);
        assert!((1..=365).contains(&from_birth.abs()));
        assert!(
            o["effectiveDateTime"]
                .as_str()
                .unwrap()
                .ends_with("T09:15:00-04:00")
        );
        offsets.push((pid.to_owned(), from_birth));
    }
    assert_eq!(offsets.len(), 2);
    assert_ne!(offsets[0].0, offsets[1].0, "two patients, two pseudonyms");
    let enc = only(&e, "Encounter");
    let p1 = by_id(
        enc["subject"]["reference"]
            .as_str()
            .unwrap()
            .trim_start_matches("Patient/"),
    );
    assert_eq!(
        offset("2024-05-01", &enc["period"]["start"]),
        offset("1958-11-23", &p1["birthDate"])
    );
    // Identifiers go as in Safe Harbor; ages are kept.
    assert_absent(
        &e,
        &[
            "Winifred",
            "999-41-7263",
            "867-5309",
            "Tewksbury",
            "pat-1",
            "1958-11-23",
        ],
    );
    assert_eq!(only(&e, "Condition")["onsetAge"]["value"], 95);
    assert_eq!(patients[0]["meta"]["security"][0]["code"], "PSEUDED");
}

#[test]
fn two_exports_share_no_pseudonym() {
    let a = run(DeidMethod::Pseudonymized, &records());
    let b = run(DeidMethod::Pseudonymized, &records());
    let ids = |e: &DeidExport| -> BTreeSet<String> {
        e.counts()
            .keys()
            .flat_map(|t| {
                e.resources(t)
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    assert!(ids(&a).is_disjoint(&ids(&b)));
    assert_eq!(ids(&a).len(), a.total() as usize);
}

#[test]
fn wanted_types_are_checked_against_the_whitelist() {
    assert_eq!(wanted_types(&[]).unwrap().len(), rules::EXPORTED.len());
    assert_eq!(
        wanted_types(&["Patient".into(), " Observation".into()])
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["Observation", "Patient"]
    );
    for bad in ["RelatedPerson", "Practitioner", "Nope", ""] {
        assert!(wanted_types(&[bad.into()]).is_err(), "{bad}");
    }
}

#[test]
fn debug_shows_counts_never_resources() {
    let e = run(DeidMethod::SafeHarbor, &records());
    let shown = format!("{e:?}");
    assert!(
        shown.contains("Patient") && !shown.contains("female"),
        "{shown}"
    );
}

#[test]
fn a_text_where_a_number_belongs_is_dropped() {
    let mut o = observation();
    o["valueQuantity"] = json!({"value": "ask Winifred", "unit": "kg"});
    let e = run(DeidMethod::SafeHarbor, &[patient(), o]);
    assert_eq!(
        only(&e, "Observation")["valueQuantity"],
        json!({"unit": "kg"})
    );
}
