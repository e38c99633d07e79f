//! `POST /fhir`: transaction and batch Bundles.
use super::{Errors, FhirAuth, Resource, WriteErrors, fhir, json_body, outcome, tri};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use phivault_fhir::{Bundle, BundleType, Entry, IssueCode, OperationOutcome, etag};
use phivault_fhir::{full_url, version_url};
use phivault_vault::{BundleKind, EntryResponse, Method};

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

/// An entry of the response Bundle: the status (with an OperationOutcome when the entry
/// failed), the new version's location and ETag, and the resource when one is returned.
pub(super) fn entry_of(e: EntryResponse) -> Entry {
    if let Some(err) = &e.error {
        let status = crate::error::status_of(err);
        let oo = OperationOutcome::error(IssueCode::Processing, &err.client_message());
        return Entry::new()
            .response(phivault_fhir::Response::new(status_line(status)).outcome(oo));
    }
    let status = match e.method {
        Method::Post => StatusCode::CREATED,
        Method::Delete => StatusCode::NO_CONTENT,
        Method::Get | Method::Put => StatusCode::OK,
    };
    let mut response = phivault_fhir::Response::new(status_line(status));
    if let (Some(t), Some(id), Some(v)) = (e.rtype, &e.id, e.version) {
        response = response.location(version_url(t, id, v)).etag(etag(v));
    }
    let entry = Entry::new().response(response);
    match e.stored {
        Some(s) => entry
            .full_url(full_url(s.rtype, &s.id))
            .resource(s.resource),
        None => entry,
    }
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
                BundleKind::Transaction => BundleType::TransactionResponse,
                BundleKind::Batch => BundleType::BatchResponse,
            };
            let entries: Vec<Entry> = entries.into_iter().map(entry_of).collect();
            fhir(
                StatusCode::OK,
                Bundle::new(typ).entries_if_any(entries).into(),
            )
        }
        Err(e) => outcome(&e),
    }
}
