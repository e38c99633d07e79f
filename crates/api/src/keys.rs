//! `/admin/keys`: KEK rotation and the keyring's status, the same as `phivault keys rotate`
//! and `phivault keys status`. The vault decides and audits; this adapter starts the rewrap
//! in the background and answers at once.
use crate::AppState;
use crate::auth::Authenticated;
use crate::error::{ApiError, JsonErrors};
use axum::Json;
use axum::extract::State;
use phivault_vault::RotateOptions;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rotate))
        .routes(routes!(status))
}

/// `POST /admin/keys/rotate` → `{target, added, total}`: adds a KEK version, current for new
/// writes at once (or, when an earlier rotation did not finish, resumes it: `added` false),
/// then rewraps every data key to it in the background, online; `GET /admin/keys` shows how
/// many rows each version still wraps. Permissions: SUPER_ADMIN; the vault decides (others:
/// 403).
#[utoipa::path(post, path = "/admin/keys/rotate", tag = "admin",
    responses((status = 200, description = "`{target: KEK version, added: bool, total: rows to rewrap}`; the rewrap runs in the background", body = Object), JsonErrors),
    security(("bearer" = [])))]
async fn rotate(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let ctx = auth.ctx();
    let plan = state.vault.begin_kek_rotation(&ctx).await?;
    let vault = state.vault.clone();
    tokio::spawn(async move {
        let done = vault
            .rewrap_deks(&ctx, plan.target, RotateOptions::default(), &mut |_| {})
            .await;
        match done {
            Ok(r) => tracing::info!(
                target_version = r.target,
                rewrapped = r.rewrapped,
                remaining = r.remaining,
                "key rotation rewrap done"
            ),
            Err(e) => tracing::warn!(error = %e, "key rotation rewrap stopped"),
        }
    });
    Ok(Json(
        json!({"target": plan.target, "added": plan.added, "total": plan.total}),
    ))
}

/// `GET /admin/keys` → `{current, versions: [{version, created_at, age_days, current,
/// identity_deks, clinical_deks, rows}], unfinished, max_age_days, overdue}`.
/// Permissions: SUPER_ADMIN; the vault decides (others: 403).
#[utoipa::path(get, path = "/admin/keys", tag = "admin",
    responses((status = 200, description = "The KEK versions, their age and the data keys each still wraps", body = Object), JsonErrors),
    security(("bearer" = [])))]
async fn status(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let s = state.vault.key_status(&auth.ctx()).await?;
    Ok(Json(json!(s)))
}
