//! phivault-api: the HTTP adapter. It translates requests into vault calls and back; it never
//! touches a store or a key (it does not depend on phivault-store or phivault-crypto).
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod headers;
pub mod oauth;

use axum::Router;
use axum::routing::get;
use phivault_vault::Vault;
use serde_json::json;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub vault: Vault,
}

/// The application: every route, with the security headers on every response.
pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .merge(auth::routes())
        .merge(oauth::routes())
        .fallback(not_found)
        .with_state(state);
    headers::secure(app)
}

/// Liveness: no authentication, and it reveals nothing (no version, no counts).
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "ok"}))
}

async fn not_found() -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "not found"})),
    )
}
