//! The CapabilityStatement lists exactly the search parameters each type takes, and
//! `/openapi.json` agrees: every listed parameter is accepted (never "unsupported"), a
//! parameter of another type is refused, and the OpenAPI search operation names the same set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::live::Live;
use common::search::{EHR, service_client};
use serde_json::Value;
use std::collections::BTreeSet;

/// A value of the right shape for a parameter of FHIR type `ty`.
fn sample(name: &str, ty: &str, r: &Value) -> Option<String> {
    let first = |k: &str| {
        r[k].as_array()
            .and_then(|a| a.first()?.as_str().map(str::to_owned))
    };
    Some(match (name, ty) {
        ("_sort", _) => "_id".into(),
        ("_summary", _) => "count".into(),
        ("_total", _) => "accurate".into(),
        ("_elements", _) => "id".into(),
        ("_include", _) => first("searchInclude")?,
        ("_revinclude", _) => first("searchRevInclude")?,
        (_, "number") => "5".into(),
        (_, "date") => "ge2020".into(),
        (_, "reference") => "x1".into(),
        (_, "string") => "abc".into(),
        _ => "x1".into(),
    })
}

fn unsupported(r: &common::live::Resp) -> bool {
    r.status == 400 && r.outcome().contains("unsupported search parameter")
}

#[test]
fn the_capability_statement_lists_exactly_what_search_accepts_and_openapi_agrees() {
    let mut ehr = String::new();
    let live = Live::start(|d| ehr = service_client(d, "ehr", EHR, Some("TREAT")));
    let t = live.token(&ehr);
    let meta = live.call("GET", "/fhir/metadata", None, None, None, &[]);
    let resources = meta.body["rest"][0]["resource"].as_array().unwrap().clone();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut checked = 0;
    for r in &resources {
        let ty = r["type"].as_str().unwrap();
        let params: Vec<(String, String)> = r["searchParam"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap().into(),
                            p["type"].as_str().unwrap().into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        listed.extend(params.iter().map(|(n, _)| n.clone()));
        // One type of each table shape: Patient, two clinical ones, one other.
        if !matches!(
            ty,
            "Patient" | "Observation" | "Encounter" | "Provenance" | "Practitioner"
        ) {
            continue;
        }
        for (name, kind) in &params {
            let Some(v) = sample(name, kind, r) else {
                continue;
            };
            let q = format!("/fhir/{ty}?{name}={}&_id=x1", v.replace('|', "%7C"));
            let resp = live.fhir("GET", &q, &t, "TREAT", None);
            assert!(
                !unsupported(&resp),
                "{ty} lists {name} but refuses it: {}",
                resp.body
            );
            checked += 1;
        }
        let names: BTreeSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        for other in ["birthdate", "category", "intent", "target", "nickname"] {
            if !names.contains(other) {
                let resp = live.fhir("GET", &format!("/fhir/{ty}?{other}=x1"), &t, "TREAT", None);
                assert!(
                    unsupported(&resp),
                    "{ty} does not list {other} yet takes it: {}",
                    resp.body
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "{checked}");
    let doc = live.call("GET", "/openapi.json", None, None, None, &[]);
    let documented: BTreeSet<String> = doc.body["paths"]["/fhir/{rtype}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .filter(|n| n != "_page")
        .collect();
    listed.retain(|n| {
        // AuditEvent is its own route (/fhir/AuditEvent), documented there.
        !matches!(n.as_str(), "agent" | "action")
    });
    assert_eq!(
        documented, listed,
        "openapi and the CapabilityStatement name the same parameters"
    );
}
