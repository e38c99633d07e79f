//! What every request meets before routing and authentication: a method the API serves.
//! Refusals carry a small body without detail and a [`Refused`] mark, so they are counted
//! under a fixed label.
use crate::observe::{Refusal, Refused, method_label};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The answer to a refused request: an OperationOutcome under `/fhir`, a small JSON error
/// elsewhere; no detail either way.
fn refuse(why: Refusal, fhir: bool) -> Response {
    let (status, code, text) = match why {
        Refusal::Method => (
            StatusCode::NOT_IMPLEMENTED,
            "not-supported",
            "method not implemented",
        ),
        Refusal::Source | Refusal::AdminSource => (StatusCode::FORBIDDEN, "forbidden", "forbidden"),
    };
    let mut res = if fhir {
        crate::fhir::outcome_with(status, code, text)
    } else {
        (status, axum::Json(serde_json::json!({ "error": text }))).into_response()
    };
    res.extensions_mut().insert(Refused(why));
    res
}

/// Outer gate: a method the API serves (else 501), before anything else looks at the request.
pub async fn gate(req: Request, next: Next) -> Response {
    let fhir = req.uri().path().starts_with("/fhir");
    if method_label(req.method()) == "other" {
        return refuse(Refusal::Method, fhir);
    }
    next.run(req).await
}
