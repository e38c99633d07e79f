//! `/admin/users`: the same user administration as `phivault user`, for ORG_ADMIN and
//! SUPER_ADMIN, within their own organization. Only a SUPER_ADMIN creates administrators.
use crate::AppState;
use crate::auth::Authenticated;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use phivault_core::Role;
use phivault_vault::VaultError;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list).post(add))
        .route("/admin/users/{username}/disable", post(disable))
        .route("/admin/users/{username}/enable", post(enable))
        .route(
            "/admin/users/{username}/reset-password",
            post(reset_password),
        )
        .route("/admin/users/{username}/reset-mfa", post(reset_mfa))
}

/// The administrators' gate: ORG_ADMIN or SUPER_ADMIN, else 403.
fn require_admin(auth: &Authenticated) -> Result<(), ApiError> {
    match auth.principal.role {
        Role::SuperAdmin | Role::OrgAdmin => Ok(()),
        Role::IntegrationManager | Role::Viewer | Role::Auditor | Role::Clinician | Role::Nurse => {
            Err(ApiError(VaultError::Forbidden))
        }
    }
}

/// `GET /admin/users`. Permissions: ORG_ADMIN, SUPER_ADMIN.
async fn list(State(state): State<AppState>, auth: Authenticated) -> Result<Json<Value>, ApiError> {
    require_admin(&auth)?;
    let users = state.vault.list_users(&auth.ctx()).await?;
    let list: Vec<Value> = users
        .iter()
        .map(|u| {
            json!({"username": u.username, "role": u.role.as_str(), "disabled": u.disabled,
                   "mfa_enrolled": u.mfa_enrolled, "must_change_password": u.must_change_password})
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

#[derive(Deserialize)]
struct AddBody {
    username: String,
    role: String,
}

/// `POST /admin/users {username, role}` → the one-time password, shown once.
/// Permissions: ORG_ADMIN (non-administrator roles), SUPER_ADMIN (any role).
async fn add(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(body): Json<AddBody>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&auth)?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError(VaultError::Invalid("unknown role".into())))?;
    if role.is_admin() && auth.principal.role != Role::SuperAdmin {
        return Err(ApiError(VaultError::Forbidden));
    }
    let ctx = auth.ctx();
    let n = state
        .vault
        .add_user(&ctx, &ctx.org, &body.username, role, false)
        .await?;
    Ok(Json(json!({
        "username": n.user.username,
        "role": n.user.role.as_str(),
        "one_time_password": n.one_time_password.expose(),
    })))
}

/// Permissions: ORG_ADMIN, SUPER_ADMIN.
async fn disable(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&auth)?;
    state
        .vault
        .set_user_disabled(&auth.ctx(), &username, true)
        .await?;
    Ok(Json(json!({"username": username, "disabled": true})))
}

/// Permissions: ORG_ADMIN, SUPER_ADMIN.
async fn enable(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&auth)?;
    state
        .vault
        .set_user_disabled(&auth.ctx(), &username, false)
        .await?;
    Ok(Json(json!({"username": username, "disabled": false})))
}

/// Permissions: ORG_ADMIN, SUPER_ADMIN.
async fn reset_password(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&auth)?;
    let otp = state.vault.reset_password(&auth.ctx(), &username).await?;
    Ok(Json(
        json!({"username": username, "one_time_password": otp.expose()}),
    ))
}

/// Permissions: ORG_ADMIN, SUPER_ADMIN.
async fn reset_mfa(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&auth)?;
    state.vault.reset_mfa(&auth.ctx(), &username).await?;
    Ok(Json(json!({"username": username, "mfa_enrolled": false})))
}
