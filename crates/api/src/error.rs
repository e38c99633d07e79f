//! Vault errors → HTTP status and a JSON body that says what was wrong without internals, PHI
//! or secrets. One exhaustive match: a new error kind does not compile until it is mapped.
use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use phivault_vault::VaultError;
use serde_json::json;

/// An API error response.
#[derive(Debug)]
pub struct ApiError(pub VaultError);

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        Self(e)
    }
}

pub fn status_of(e: &VaultError) -> StatusCode {
    match e {
        VaultError::Invalid(_) => StatusCode::BAD_REQUEST,
        VaultError::NotFound => StatusCode::NOT_FOUND,
        VaultError::Gone => StatusCode::GONE,
        VaultError::Conflict { .. } => StatusCode::CONFLICT,
        VaultError::Integrity(_) => StatusCode::INTERNAL_SERVER_ERROR,
        VaultError::Crypto(_) => StatusCode::INTERNAL_SERVER_ERROR,
        VaultError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        VaultError::Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
        VaultError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        VaultError::Forbidden => StatusCode::FORBIDDEN,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let body = Json(json!({"error": self.0.client_message()}));
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
