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
        .route(
            "/fhir/Patient/{id}",
            get(read_patient).put(update_patient).delete(delete_patient),
        )
        .route("/fhir/{rtype}", get(search_clinical).post(create_clinical))
        .route("/fhir/{rtype}/{id}", get(read_clinical))
}

/// The clinical resource types this API serves.
pub const CLINICAL: [&str; 5] = [
    "Observation",
    "Condition",
    "Encounter",
    "MedicationRequest",
    "AllergyIntolerance",
];

fn clinical_type(name: &str) -> Result<ResourceType, Box<Response>> {
    if CLINICAL.contains(&name) {
        ResourceType::parse(name).map_err(|_| Box::new(outcome(&VaultError::NotFound)))
    } else {
        Err(Box::new(outcome(&VaultError::NotFound)))
    }
}

fn json_body(headers: &HeaderMap, body: &Bytes, rtype: &str) -> Result<Value, Box<Response>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(ct.starts_with(FHIR_JSON) || ct.starts_with("application/json")) {
        let mut r = outcome(&VaultError::Invalid("send application/fhir+json".into()));
        *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Err(Box::new(r));
    }
    let resource = serde_json::from_slice::<Value>(body)
        .map_err(|_| Box::new(outcome(&VaultError::Invalid("the body is not JSON".into()))))?;
    if resource.get("resourceType").and_then(Value::as_str) != Some(rtype) {
        return Err(Box::new(outcome(&VaultError::Invalid(format!(
            "expected a {rtype} resource"
        )))));
    }
    Ok(resource)
}

fn stored(status: StatusCode, s: phivault_vault::Stored) -> Response {
    let location = format!("{}/{}/_history/{}", s.rtype, s.id, s.version);
    let etag = format!("W/\"{}\"", s.version);
    let mut r = fhir(status, s.resource);
    for (name, value) in [(header::ETAG, etag), (header::LOCATION, location)] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

/// `PUT /fhir/Patient/{id}` with `If-Match: W/"n"` (optimistic concurrency: a stale version is
/// 412). Permissions: by role, purpose and grant.
async fn update_patient(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(id) = ResourceId::parse(&id) else {
        return outcome(&VaultError::Invalid("invalid id".into()));
    };
    let resource = match json_body(&headers, &body, "Patient") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let expected = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .parse::<u64>()
        });
    let expected = match expected {
        None => None,
        Some(Ok(n)) => Some(phivault_core::Version(n)),
        Some(Err(_)) => return outcome(&VaultError::Invalid("If-Match is W/\"<version>\"".into())),
    };
    match state
        .vault
        .update(&auth.ctx(), &id, resource, expected)
        .await
    {
        Ok(s) => stored(StatusCode::OK, s),
        Err(e @ VaultError::Conflict { .. }) if expected.is_some() => {
            let mut r = outcome(&e);
            *r.status_mut() = StatusCode::PRECONDITION_FAILED;
            r
        }
        Err(e) => outcome(&e),
    }
}

/// `DELETE /fhir/Patient/{id}` → 204. Permissions: by role, purpose and grant (clinicians).
async fn delete_patient(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = ResourceId::parse(&id) else {
        return outcome(&VaultError::NotFound);
    };
    match state
        .vault
        .delete(&auth.ctx(), ResourceType::PATIENT, &id, None)
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => outcome(&e),
    }
}

/// `GET /fhir/{type}/{id}` for the clinical types. Permissions: by role, purpose, grant, scope.
async fn read_clinical(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((rtype, id)): Path<(String, String)>,
) -> Response {
    let rtype = match clinical_type(&rtype) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let Ok(id) = ResourceId::parse(&id) else {
        return outcome(&VaultError::NotFound);
    };
    match state.vault.read(&auth.ctx(), rtype, &id).await {
        Ok(s) => stored(StatusCode::OK, s),
        Err(e) => outcome(&e),
    }
}

/// `POST /fhir/{type}`: create a clinical resource under its patient.
async fn create_clinical(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rtype = match clinical_type(&rtype) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let resource = match json_body(&headers, &body, rtype.as_str()) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match state.vault.create(&auth.ctx(), resource).await {
        Ok(s) => stored(StatusCode::CREATED, s),
        Err(e) => outcome(&e),
    }
}

#[derive(Deserialize)]
struct ClinicalParams {
    patient: Option<String>,
    subject: Option<String>,
}

/// `GET /fhir/{type}?patient=ID` (or `subject=Patient/ID`): that patient's resources of the type.
async fn search_clinical(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(rtype): Path<String>,
    Query(p): Query<ClinicalParams>,
) -> Response {
    let rtype = match clinical_type(&rtype) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let raw = p.patient.or(p.subject).unwrap_or_default();
    let raw = raw.strip_prefix("Patient/").unwrap_or(&raw).to_owned();
    let Ok(patient) = ResourceId::parse(&raw) else {
        return outcome(&VaultError::Invalid(
            "search by patient=<id> or subject=Patient/<id>".into(),
        ));
    };
    match state.vault.patient_records(&auth.ctx(), &patient).await {
        Ok(all) => {
            let entries: Vec<Value> = all
                .into_iter()
                .filter(|s| s.rtype == rtype)
                .map(|s| json!({"fullUrl": format!("{}/{}", s.rtype, s.id), "resource": s.resource, "search": {"mode": "match"}}))
                .collect();
            fhir(
                StatusCode::OK,
                json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
            )
        }
        Err(e) => outcome(&e),
    }
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
        Ok(s) => stored(StatusCode::OK, s),
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
    let resource = match json_body(&headers, &body, "Patient") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match state.vault.create(&auth.ctx(), resource).await {
        Ok(s) => stored(StatusCode::CREATED, s),
        Err(e) => outcome(&e),
    }
}
