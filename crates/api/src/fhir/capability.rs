//! `GET /fhir/metadata`: the CapabilityStatement, built from the vault's own tables so it
//! says truthfully what this server supports.
use super::{Resource, fhir};
use axum::http::StatusCode;
use axum::response::Response;
use phivault_core::ResourceType;
use serde_json::{Value, json};

/// The search parameters of a type as the CapabilityStatement lists them: exactly the
/// vault's table, and the result parameters every search takes.
fn search_params(rtype: &str) -> Vec<Value> {
    use phivault_vault::search::params;
    let mut out: Vec<Value> = params::of_type(rtype)
        .iter()
        .map(|d| json!({"name": d.name, "type": d.kind.fhir_type(), "documentation": d.doc}))
        .collect();
    for r in params::RESULT_PARAMS {
        let (ty, doc) = match r {
            "_count" => ("number", "Page size (at most 500)"),
            "_offset" => ("number", "Matches to skip"),
            "_sort" => (
                "special",
                "_id, _lastUpdated and the type's date, string and token parameters; - for descending",
            ),
            _ => ("special", "See docs/SEARCH.md"),
        };
        out.push(json!({"name": r, "type": ty, "documentation": doc}));
    }
    out
}

/// The interactions every resource type supports; `search` adds `search-type`.
fn interactions(search: bool) -> Vec<Value> {
    let mut i = vec![
        json!({"code": "read"}),
        json!({"code": "vread"}),
        json!({"code": "update"}),
        json!({"code": "delete"}),
        json!({"code": "history-instance"}),
        json!({"code": "create"}),
    ];
    if search {
        i.push(json!({"code": "search-type"}));
    }
    i
}

/// The CapabilityStatement entry of one resource type: interactions, search parameters,
/// `_include`/`_revinclude` targets and, for Patient, `$everything`.
fn resource_capability(name: &str) -> Value {
    let mut r = json!({
        "type": name,
        "versioning": "versioned",
        "readHistory": true,
        "updateCreate": true,
        "interaction": interactions(true),
    });
    let params = search_params(name);
    if !params.is_empty()
        && let Some(o) = r.as_object_mut()
    {
        o.insert("searchParam".into(), Value::Array(params));
    }
    if let Some(o) = r.as_object_mut() {
        let inc = phivault_vault::search::params::includes(name);
        let rev = phivault_vault::search::params::revincludes(name);
        if !inc.is_empty() {
            o.insert("searchInclude".into(), json!(inc));
        }
        if !rev.is_empty() {
            o.insert("searchRevInclude".into(), json!(rev));
        }
    }
    if name == "Patient"
        && let Some(o) = r.as_object_mut()
    {
        o.insert(
            "operation".into(),
            json!([{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]),
        );
    }
    r
}

/// The AuditEvent entry: search only (the trail is written by the vault, never by clients).
fn audit_event_capability() -> Value {
    json!({
        "type": "AuditEvent",
        "interaction": [{"code": "search-type"}],
        "searchParam": [
            {"name": "date", "type": "date"},
            {"name": "agent", "type": "reference"},
            {"name": "patient", "type": "reference"},
            {"name": "action", "type": "token"}
        ]
    })
}

/// `GET /fhir/metadata`: what this server supports, truthfully. Permissions: none.
#[utoipa::path(get, path = "/fhir/metadata", tag = "fhir",
    responses((status = 200, description = "The CapabilityStatement", body = Resource, content_type = "application/fhir+json")))]
pub(super) async fn metadata() -> Response {
    let mut resources: Vec<Value> = phivault_core::resource_types::R4_RESOURCE_TYPES
        .iter()
        .filter(|name| ResourceType::parse(name).is_ok() && **name != "AuditEvent")
        .map(|name| resource_capability(name))
        .collect();
    resources.push(audit_event_capability());
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-25",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json"],
            "software": {"name": "phivault"},
            "implementation": {"description": "phivault FHIR R4 API"},
            "rest": [{
                "mode": "server",
                "security": {
                    "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth"}]}],
                    "extension": [{
                        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                        "extension": [{"url": "token", "valueUri": "/oauth/token"}]
                    }]
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }]
        }),
    )
}
