//! `/fhir` (FHIR R4, `application/fhir+json`): a first slice — the CapabilityStatement and
//! Patient read, search and create — over the vault's authorization. Errors are
//! OperationOutcome resources that say what was wrong without echoing PHI.
use crate::AppState;
use crate::auth::Authenticated;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use phivault_core::{ResourceId, ResourceType};
use phivault_vault::{PatientQuery, VaultError};
use serde::Deserialize;
use serde_json::{Value, json};

pub const FHIR_JSON: &str = "application/fhir+json";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/Patient", get(search_patients).post(create_patient))
        .route("/fhir/Patient/{id}", get(read_patient))
}

fn fhir(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body.to_string(),
    )
        .into_response()
}

/// An OperationOutcome for an error (the status mapping is the API's one table).
pub fn outcome(e: &VaultError) -> Response {
    let status = crate::error::status_of(e);
    let code = match status {
        StatusCode::UNAUTHORIZED => "login",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND | StatusCode::GONE => "not-found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::BAD_REQUEST => "invalid",
        _ => "exception",
    };
    let mut r = fhir(
        status,
        json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": code, "diagnostics": e.client_message()}]}),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// `GET /fhir/metadata`: what this server supports, truthfully. Permissions: none.
async fn metadata() -> Response {
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-24",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json"],
            "software": {"name": "phivault"},
            "rest": [{
                "mode": "server",
                "security": {
                    "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth"}]}],
                    "extension": [{
                        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                        "extension": [{"url": "token", "valueUri": "/oauth/token"}]
                    }]
                },
                "resource": [{
                    "type": "Patient",
                    "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}],
                    "searchParam": [
                        {"name": "identifier", "type": "token"},
                        {"name": "family", "type": "string"},
                        {"name": "birthdate", "type": "date"},
                        {"name": "phone", "type": "token"}
                    ]
                }]
            }]
        }),
    )
}

/// `GET /fhir/Patient/{id}`. Permissions: by role, purpose (`X-Purpose-Of-Use`) and grant.
async fn read_patient(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = ResourceId::parse(&id) else {
        return outcome(&VaultError::NotFound);
    };
    match state
        .vault
        .read(&auth.ctx(), ResourceType::PATIENT, &id)
        .await
    {
        Ok(s) => {
            let mut r = fhir(StatusCode::OK, s.resource);
            if let Ok(v) = header::HeaderValue::from_str(&format!("W/\"{}\"", s.version)) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
        Err(e) => outcome(&e),
    }
}

#[derive(Deserialize)]
struct PatientParams {
    identifier: Option<String>,
    family: Option<String>,
    birthdate: Option<String>,
    phone: Option<String>,
}

/// `GET /fhir/Patient?identifier=…|family=…&birthdate=…|phone=…` → a searchset Bundle of the
/// patients the caller may see. Permissions: by role, purpose and grants.
async fn search_patients(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(p): Query<PatientParams>,
) -> Response {
    let q = PatientQuery {
        identifier: p.identifier,
        family: p.family,
        birthdate: p.birthdate,
        phone: p.phone,
    };
    match state.vault.search_patients(&auth.ctx(), &q).await {
        Ok(found) => {
            let entries: Vec<Value> = found
                .into_iter()
                .map(|s| json!({"fullUrl": format!("Patient/{}", s.id), "resource": s.resource, "search": {"mode": "match"}}))
                .collect();
            fhir(
                StatusCode::OK,
                json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
            )
        }
        Err(e) => outcome(&e),
    }
}

/// `POST /fhir/Patient` (application/fhir+json) → 201 with the stored resource.
/// Permissions: by role and purpose.
async fn create_patient(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(ct.starts_with(FHIR_JSON) || ct.starts_with("application/json")) {
        let e = VaultError::Invalid("send application/fhir+json".into());
        let mut r = outcome(&e);
        *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return r;
    }
    let Ok(resource) = serde_json::from_slice::<Value>(&body) else {
        return outcome(&VaultError::Invalid("the body is not JSON".into()));
    };
    if resource.get("resourceType").and_then(Value::as_str) != Some("Patient") {
        return outcome(&VaultError::Invalid("expected a Patient resource".into()));
    }
    match state.vault.create(&auth.ctx(), resource).await {
        Ok(s) => {
            let mut r = fhir(StatusCode::CREATED, s.resource);
            if let Ok(v) =
                header::HeaderValue::from_str(&format!("Patient/{}/_history/{}", s.id, s.version))
            {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Err(e) => outcome(&e),
    }
}
