//! `POST /fhir`: transaction and batch Bundles.
use super::{Errors, FhirAuth, Resource, WriteErrors, etag, fhir, json_body, outcome, tri};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use phivault_vault::{BundleKind, EntryResponse, Method};
use serde_json::{Value, json};

/// A transaction or batch Bundle.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BundleInput {
    #[schema(rename = "resourceType", pattern = "^Bundle$")]
    resource_type: String,
    #[schema(rename = "type", pattern = "^(transaction|batch)$")]
    kind: String,
    entry: Option<Vec<BundleEntry>>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct BundleEntry {
    #[schema(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<Resource>,
    request: BundleRequest,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct BundleRequest {
    #[schema(pattern = "^(GET|POST|PUT|DELETE)$")]
    method: String,
    url: String,
    #[schema(rename = "ifMatch")]
    if_match: Option<String>,
}

fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

fn entry_json(e: EntryResponse) -> Value {
    if let Some(err) = &e.error {
        let status = crate::error::status_of(err);
        let oo = json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "processing", "diagnostics": err.client_message()}]});
        return json!({"response": {"status": status_line(status), "outcome": oo}});
    }
    let status = match e.method {
        Method::Post => StatusCode::CREATED,
        Method::Delete => StatusCode::NO_CONTENT,
        Method::Get | Method::Put => StatusCode::OK,
    };
    let mut response = json!({"status": status_line(status)});
    if let (Some(t), Some(id), Some(v), Some(o)) =
        (e.rtype, &e.id, e.version, response.as_object_mut())
    {
        o.insert("location".into(), json!(format!("{t}/{id}/_history/{v}")));
        o.insert("etag".into(), json!(etag(v)));
    }
    let mut entry = json!({"response": response});
    if let (Some(s), Some(o)) = (e.stored, entry.as_object_mut()) {
        o.insert("fullUrl".into(), json!(format!("{}/{}", s.rtype, s.id)));
        o.insert("resource".into(), s.resource);
    }
    entry
}

/// `POST /fhir` with a `transaction` Bundle (all or nothing; `urn:uuid:` references between
/// entries resolved to the ids the server assigns) or a `batch` Bundle (each entry on its own,
/// GET included). Entries: `POST Type`, `PUT Type/id` (with `ifMatch`), `DELETE Type/id`, and in
/// batches `GET Type/id[/_history/v]`. Answers a transaction-response or batch-response
/// Bundle. Permissions: every entry by role, purpose, grant and scope; in a transaction one
/// refusal refuses the lot.
#[utoipa::path(post, path = "/fhir", tag = "fhir",
    params(("X-Purpose-Of-Use" = Option<String>, Header)),
    request_body(content = BundleInput, content_type = "application/fhir+json"),
    responses((status = 200, description = "A transaction-response or batch-response Bundle", body = Resource, content_type = "application/fhir+json"), Errors, WriteErrors),
    security(("bearer" = [])))]
pub async fn bundle(
    State(state): State<AppState>,
    auth: FhirAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let doc = tri!(json_body(&headers, body));
    match state.vault.bundle(&auth.ctx(), doc).await {
        Ok((kind, entries)) => {
            let typ = match kind {
                BundleKind::Transaction => "transaction-response",
                BundleKind::Batch => "batch-response",
            };
            let entries: Vec<Value> = entries.into_iter().map(entry_json).collect();
            let mut b = json!({"resourceType": "Bundle", "type": typ});
            if !entries.is_empty()
                && let Some(o) = b.as_object_mut()
            {
                o.insert("entry".into(), Value::Array(entries));
            }
            fhir(StatusCode::OK, b)
        }
        Err(e) => outcome(&e),
    }
}
