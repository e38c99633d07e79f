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
        .route("/admin/users/{username}/{action}", post(act))
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

/// `POST /admin/users/{username}/disable|enable|reset-password|reset-mfa`.
/// Permissions: ORG_ADMIN, SUPER_ADMIN.
async fn act(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((username, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&auth)?;
    let (v, ctx) = (&state.vault, auth.ctx());
    Ok(Json(match action.as_str() {
        "disable" | "enable" => {
            let disabled = action == "disable";
            v.set_user_disabled(&ctx, &username, disabled).await?;
            json!({"username": username, "disabled": disabled})
        }
        "reset-password" => {
            let otp = v.reset_password(&ctx, &username).await?;
            json!({"username": username, "one_time_password": otp.expose()})
        }
        "reset-mfa" => {
            v.reset_mfa(&ctx, &username).await?;
            json!({"username": username, "mfa_enrolled": false})
        }
        _ => return Err(ApiError(VaultError::NotFound)),
    }))
}
