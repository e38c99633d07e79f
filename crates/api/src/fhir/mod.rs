//! `/fhir` (FHIR R4, `application/fhir+json`) over the vault: the CapabilityStatement; create,
//! read, vread, history, update (with `If-Match`), delete and search; `Patient/$everything`;
//! transaction and batch Bundles; the audit trail as AuditEvent (AUDITOR only). Every handler
//! is one vault call, so authorization, field release and auditing happen there. Errors are
//! OperationOutcome resources that say what was wrong without echoing PHI.
mod bundle;
mod capability;
pub(crate) mod search;
#[cfg(test)]
mod shapes;

use crate::AppState;
use crate::auth::Authenticated;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use phivault_core::{ResourceId, ResourceType, Version};
use phivault_fhir::{Bundle, Entry, IssueCode, Method, Request, etag, full_url, version_url};
use phivault_vault::{HistoryEntry, Stored, VaultError};
use serde_json::Value;
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const FHIR_JSON: &str = "application/fhir+json";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(capability::metadata))
        .routes(routes!(bundle::bundle))
        .routes(routes!(search::audit_events))
        .routes(routes!(search::everything))
        .routes(routes!(search::search, create))
        .routes(routes!(search::search_post))
        .routes(routes!(read, update, delete))
        .routes(routes!(history))
        .routes(routes!(vread))
}

/// Any FHIR R4 resource (`resourceType` names its type).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Resource {
    #[schema(rename = "resourceType", pattern = "^[A-Z][A-Za-z]{1,63}$")]
    resource_type: String,
}

/// An OperationOutcome: what went wrong, never a PHI value.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OperationOutcome {
    #[schema(rename = "resourceType")]
    resource_type: String,
    issue: Vec<Issue>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct Issue {
    severity: String,
    code: String,
    diagnostics: Option<String>,
}

/// The errors every authenticated FHIR interaction may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Errors {
    /// Malformed input: not JSON, not the expected resource, an invalid element or parameter.
    #[response(status = 400, content_type = "application/fhir+json")]
    BadRequest(OperationOutcome),
    /// No valid bearer token.
    #[response(status = 401, content_type = "application/fhir+json")]
    Unauthorized(OperationOutcome),
    /// Not allowed for this role, scope, purpose of use or grant.
    #[response(status = 403, content_type = "application/fhir+json")]
    Forbidden(OperationOutcome),
    /// No such resource (or type) in the caller's organization.
    #[response(status = 404, content_type = "application/fhir+json")]
    NotFound(OperationOutcome),
    /// The resource was deleted.
    #[response(status = 410, content_type = "application/fhir+json")]
    Gone(OperationOutcome),
    /// The audit trail or the store is unavailable: nothing released or changed.
    #[response(status = 503, content_type = "application/fhir+json")]
    Unavailable(OperationOutcome),
}

/// The errors of an interaction that takes a body.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum WriteErrors {
    /// A version conflict.
    #[response(status = 409, content_type = "application/fhir+json")]
    Conflict(OperationOutcome),
    /// `If-Match` names a version that is not the current one.
    #[response(status = 412, content_type = "application/fhir+json")]
    PreconditionFailed(OperationOutcome),
    /// The body is larger than the server accepts.
    #[response(status = 413, content_type = "application/fhir+json")]
    TooLarge(OperationOutcome),
    /// Not `application/fhir+json`.
    #[response(status = 415, content_type = "application/fhir+json")]
    UnsupportedMediaType(OperationOutcome),
    /// Well-formed but against a rule (a required element missing, a missing patient).
    #[response(status = 422, content_type = "application/fhir+json")]
    Unprocessable(OperationOutcome),
}

/// [`Authenticated`] for FHIR routes: a missing or bad token is an OperationOutcome.
pub struct FhirAuth(pub Authenticated);

impl FromRequestParts<AppState> for FhirAuth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        Authenticated::from_request_parts(parts, state)
            .await
            .map(FhirAuth)
            .map_err(|e| outcome(&e.0))
    }
}

impl FhirAuth {
    pub fn ctx(&self) -> phivault_vault::Ctx {
        self.0.ctx()
    }
}

/// A response carrying FHIR JSON.
pub fn fhir(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body.to_string(),
    )
        .into_response()
}

/// An OperationOutcome with a status of its own.
pub fn outcome_with(status: StatusCode, code: IssueCode, message: &str) -> Response {
    let mut r = fhir(
        status,
        phivault_fhir::OperationOutcome::error(code, message).into_value(),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// An OperationOutcome for an error (the status mapping is the API's one table).
pub fn outcome(e: &VaultError) -> Response {
    let status = crate::error::status_of(e);
    let code = match status {
        StatusCode::UNAUTHORIZED => IssueCode::Login,
        StatusCode::FORBIDDEN => IssueCode::Forbidden,
        StatusCode::NOT_FOUND | StatusCode::GONE => IssueCode::NotFound,
        StatusCode::CONFLICT => IssueCode::Conflict,
        StatusCode::BAD_REQUEST if matches!(e, VaultError::TooCostly(_)) => IssueCode::TooCostly,
        StatusCode::BAD_REQUEST => IssueCode::Invalid,
        StatusCode::UNPROCESSABLE_ENTITY => IssueCode::BusinessRule,
        _ => IssueCode::Exception,
    };
    outcome_with(status, code, &e.client_message())
}

fn invalid(msg: &str) -> Response {
    outcome(&VaultError::Invalid(msg.into()))
}

/// The resource type of a path a resource is written to, or 400 (an unknown resource is
/// refused as invalid input, nothing stored).
fn write_type(name: &str) -> Result<ResourceType, Box<Response>> {
    ResourceType::parse(name).map_err(|_| Box::new(invalid("unknown resource type")))
}

/// The resource type of a path, or 404.
fn path_type(name: &str) -> Result<ResourceType, Box<Response>> {
    ResourceType::parse(name).map_err(|_| {
        Box::new(outcome_with(
            StatusCode::NOT_FOUND,
            IssueCode::NotSupported,
            "unknown resource type",
        ))
    })
}

fn path_id(id: &str) -> Result<ResourceId, Box<Response>> {
    ResourceId::parse(id).map_err(|_| Box::new(outcome(&VaultError::NotFound)))
}

/// Reads a JSON body of `application/fhir+json` (or `application/json`).
pub fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Box<Response>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !(essence.eq_ignore_ascii_case(FHIR_JSON)
        || essence.eq_ignore_ascii_case("application/json"))
    {
        return Err(Box::new(outcome_with(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueCode::NotSupported,
            "send application/fhir+json",
        )));
    }
    let body = body.map_err(|e| {
        Box::new(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            invalid("the body could not be read")
        })
    })?;
    serde_json::from_slice::<Value>(&body)
        .map_err(|_| Box::new(invalid("the body is not valid JSON")))
}

/// A body over the limit (the first layer answers in its place, naming the limit: see
/// [`crate::body_limit`]).
pub fn too_large() -> Response {
    outcome_with(
        StatusCode::PAYLOAD_TOO_LARGE,
        IssueCode::TooCostly,
        "the body is too large",
    )
}

/// The body's resource must be of the path's type.
fn expect_type(resource: &Value, rtype: ResourceType) -> Result<(), Box<Response>> {
    if resource.get("resourceType").and_then(Value::as_str) == Some(rtype.as_str()) {
        Ok(())
    } else {
        Err(Box::new(invalid(&format!("expected a {rtype} resource"))))
    }
}

fn stored(status: StatusCode, s: Stored) -> Response {
    let location = version_url(s.rtype, &s.id, s.version);
    let mut r = fhir(status, s.resource);
    for (name, value) in [
        (header::ETAG, etag(s.version)),
        (header::LOCATION, location),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}
pub(crate) use tri;

/// `GET /fhir/{type}/{id}`. Permissions: by role, purpose (`X-Purpose-Of-Use`), grant and scope;
/// a VIEWER's Patient carries only its permitted elements, labelled REDACTED.
#[utoipa::path(get, path = "/fhir/{rtype}/{id}", tag = "fhir",
    params(("rtype" = String, Path, description = "resource type"), ("id" = String, Path),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json"), Errors),
    security(("bearer" = [])))]
async fn read(
    State(state): State<AppState>,
    auth: FhirAuth,
    Path((rtype, id)): Path<(String, String)>,
) -> Response {
    let rtype = tri!(path_type(&rtype));
    let id = tri!(path_id(&id));
    match state.vault.read(&auth.ctx(), rtype, &id).await {
        Ok(s) => stored(StatusCode::OK, s),
        Err(e) => outcome(&e),
    }
}

/// `GET /fhir/{type}/{id}/_history/{vid}`: one version. Permissions: as read.
#[utoipa::path(get, path = "/fhir/{rtype}/{id}/_history/{vid}", tag = "fhir",
    params(("rtype" = String, Path), ("id" = String, Path), ("vid" = u64, Path),
        ("X-Purpose-Of-Use" = Option<String>, Header)),
    responses((status = 200, body = Resource, content_type = "application/fhir+json"), Errors),
    security(("bearer" = [])))]
async fn vread(
    State(state): State<AppState>,
    auth: FhirAuth,
    Path((rtype, id, vid)): Path<(String, String, String)>,
) -> Response {
    let rtype = tri!(path_type(&rtype));
    let id = tri!(path_id(&id));
    let Ok(vid) = vid.parse::<u64>() else {
        return outcome(&VaultError::NotFound);
    };
    match state
        .vault
        .vread(&auth.ctx(), rtype, &id, Version(vid))
        .await
    {
        Ok(s) => stored(StatusCode::OK, s),
        Err(e) => outcome(&e),
    }
}

/// `GET /fhir/{type}/{id}/_history`: every version, newest first, as a history Bundle
/// (`_count` caps it). Permissions: as read.
#[utoipa::path(get, path = "/fhir/{rtype}/{id}/_history", tag = "fhir",
    params(("rtype" = String, Path), ("id" = String, Path), ("_count" = Option<u32>, Query),
        ("X-Purpose-Of-Use" = Option<String>, Header)),
    responses((status = 200, body = Resource, content_type = "application/fhir+json"), Errors),
    security(("bearer" = [])))]
async fn history(
    State(state): State<AppState>,
    auth: FhirAuth,
    Path((rtype, id)): Path<(String, String)>,
    query: axum::extract::RawQuery,
) -> Response {
    let rtype = tri!(path_type(&rtype));
    let id = tri!(path_id(&id));
    let params = tri!(search::Params::parse(query.0.as_deref(), &["_count"]));
    let count = tri!(params.count(phivault_vault::records::history::MAX_HISTORY));
    match state.vault.history(&auth.ctx(), rtype, &id, count).await {
        Ok(list) => {
            let entries: Vec<Entry> = list
                .into_iter()
                .map(|h| history_entry(rtype, &id, h))
                .collect();
            fhir(StatusCode::OK, Bundle::history().counted(entries).into())
        }
        Err(e) => outcome(&e),
    }
}

/// A version in a history Bundle: the write that made it (`POST` for the first version, `PUT`
/// after, `DELETE` for a deletion, which carries no resource) and its `response`.
fn history_entry(rtype: ResourceType, id: &ResourceId, h: HistoryEntry) -> Entry {
    let url = full_url(rtype, id);
    let response = |status: &str| {
        phivault_fhir::Response::new(status.to_owned())
            .etag(etag(h.version))
            .location(version_url(rtype, id, h.version))
    };
    let entry = Entry::new().full_url(url.clone());
    match h.stored {
        Some(s) => {
            let request = if h.version == Version::FIRST {
                Request::new(Method::Post, rtype.as_str().to_owned())
            } else {
                Request::new(Method::Put, url)
            };
            entry
                .resource(s.resource)
                .request(request)
                .response(response("200 OK"))
        }
        None => entry
            .request(Request::new(Method::Delete, url))
            .response(response("204 No Content")),
    }
}

/// `POST /fhir/{type}`: create under a server-assigned id → 201 with `Location` and `ETag`.
/// Permissions: by role, purpose and scope (clinical types also by the patient's grant).
#[utoipa::path(post, path = "/fhir/{rtype}", tag = "fhir",
    params(("rtype" = String, Path), ("X-Purpose-Of-Use" = Option<String>, Header)),
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 201, body = Resource, content_type = "application/fhir+json"), Errors, WriteErrors),
    security(("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    auth: FhirAuth,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let rtype = tri!(write_type(&rtype));
    let resource = tri!(json_body(&headers, body));
    tri!(expect_type(&resource, rtype));
    match state.vault.create(&auth.ctx(), resource).await {
        Ok(s) => stored(StatusCode::CREATED, s),
        Err(e) => outcome(&e),
    }
}

/// `PUT /fhir/{type}/{id}`, with `If-Match: W/"n"` for optimistic concurrency (a stale
/// version is 412); without it, the update goes on the current version (or creates the id).
/// Permissions: by role, purpose, grant and scope.
#[utoipa::path(put, path = "/fhir/{rtype}/{id}", tag = "fhir",
    params(("rtype" = String, Path), ("id" = String, Path), ("If-Match" = Option<String>, Header),
        ("X-Purpose-Of-Use" = Option<String>, Header)),
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 200, body = Resource, content_type = "application/fhir+json"), Errors, WriteErrors),
    security(("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    auth: FhirAuth,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let rtype = tri!(write_type(&rtype));
    let Ok(id) = ResourceId::parse(&id) else {
        return invalid("invalid id");
    };
    let resource = tri!(json_body(&headers, body));
    tri!(expect_type(&resource, rtype));
    let expected = tri!(if_match(&headers));
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

fn if_match(headers: &HeaderMap) -> Result<Option<Version>, Box<Response>> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(phivault_vault::ops::bundle::parse_etag)
            .map(Some)
            .ok_or_else(|| Box::new(invalid("If-Match is W/\"<version>\""))),
    }
}

/// `DELETE /fhir/{type}/{id}` → 204 (`If-Match` optional). Permissions: by role (clinicians),
/// purpose, grant and scope.
#[utoipa::path(delete, path = "/fhir/{rtype}/{id}", tag = "fhir",
    params(("rtype" = String, Path), ("id" = String, Path), ("If-Match" = Option<String>, Header),
        ("X-Purpose-Of-Use" = Option<String>, Header)),
    responses((status = 204, description = "Deleted"), Errors, WriteErrors),
    security(("bearer" = [])))]
async fn delete(
    State(state): State<AppState>,
    auth: FhirAuth,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let rtype = tri!(path_type(&rtype));
    let id = tri!(path_id(&id));
    let expected = tri!(if_match(&headers));
    match state.vault.delete(&auth.ctx(), rtype, &id, expected).await {
        Ok(v) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            if let Ok(v) = header::HeaderValue::from_str(&etag(v)) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
        Err(e @ VaultError::Conflict { .. }) if expected.is_some() => {
            let mut r = outcome(&e);
            *r.status_mut() = StatusCode::PRECONDITION_FAILED;
            r
        }
        Err(e) => outcome(&e),
    }
}
