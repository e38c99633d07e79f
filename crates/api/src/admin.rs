//! `/admin/users`: the same user administration as `phivault user`, for ORG_ADMIN and
//! SUPER_ADMIN, within their own organization. Only a SUPER_ADMIN creates administrators.
//! `/admin/clients` and `/admin/grants`: the same as `phivault client` and `phivault grants`;
//! who may is the vault's policy (`phivault_vault::policy::admin`), not these handlers.
use crate::AppState;
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::error::JsonErrors;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use phivault_core::Role;
use phivault_vault::{ClientAction, VaultError, views};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list).post(add))
        .route("/admin/users/{username}/{action}", post(act))
        .route("/admin/grants/lockdown", post(lockdown))
}

/// The documented administration routes (in the OpenAPI document).
pub fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(compliance))
        .routes(routes!(list_clients))
        .routes(routes!(change_client))
        .routes(routes!(list_grants, grant))
        .routes(routes!(default_purpose))
}

/// `GET /admin/clients` → `[{client_id, organization, name, role, scopes, purposes, default_purpose, disabled,
/// created_at}]`, never a secret. Permissions: ORG_ADMIN (its organization), SUPER_ADMIN
/// (every organization); the vault's policy decides.
#[utoipa::path(get, path = "/admin/clients", tag = "admin",
    responses((status = 200, description = "`[{client_id, organization, name, role, scopes, purposes, default_purpose, disabled, created_at}]`", body = Object), JsonErrors),
    security(("bearer" = [])))]
async fn list_clients(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let clients = state.vault.list_clients(&auth.ctx()).await?;
    Ok(Json(Value::Array(
        clients.iter().map(views::client).collect(),
    )))
}

/// `POST /admin/clients/{client_id}/disable|enable|rotate-secret|revoke-tokens`: disable
/// (its tokens end at once), enable (ended tokens stay ended), rotate the secret (the new one
/// is in the answer, once; the old secret and its tokens stop working at once), end every
/// token. Permissions: ORG_ADMIN of the client's organization, SUPER_ADMIN; the vault's
/// policy decides. Another organization's client gets the answer a missing one gets (404).
#[utoipa::path(post, path = "/admin/clients/{client_id}/{action}", tag = "admin",
    params(("client_id" = String, Path, description = "the client's id (`pvc-…`)"),
        ("action" = String, Path, description = "`disable`, `enable`, `rotate-secret` or `revoke-tokens`")),
    responses((status = 200, description = "`{client_id, disabled, tokens_revoked}`, and `client_secret` (shown once) for rotate-secret", body = Object),
        (status = 404, description = "no such client in the caller's organization, or no such action", body = crate::error::ErrorBody),
        JsonErrors),
    security(("bearer" = [])))]
async fn change_client(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((client_id, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let action = ClientAction::parse(&action).ok_or(ApiError(VaultError::NotFound))?;
    let done = state
        .vault
        .change_client(&auth.ctx(), &client_id, action)
        .await?;
    let secret = done.new_secret.as_ref().map(|s| s.expose().as_str());
    let mut body = json!({"client_id": done.client.id, "disabled": done.client.disabled,
        "tokens_revoked": done.tokens_revoked});
    if let (Some(secret), Some(fields)) = (secret, body.as_object_mut()) {
        fields.insert("client_secret".into(), json!(secret));
    }
    Ok(Json(body))
}

/// `GET /admin/grants` → `[{id, organization, username, patient_pseudonym, purpose, kind,
/// granted_by, created_at, expires_at}]`: every live grant and break-glass access, the
/// patient by its pseudonym only. Permissions: ORG_ADMIN (its organization), SUPER_ADMIN
/// (every organization); the vault's policy decides.
#[utoipa::path(get, path = "/admin/grants", tag = "admin",
    responses((status = 200, description = "`[{id, organization, username, patient_pseudonym, purpose, kind: grant|break-glass, granted_by, created_at, expires_at}]`", body = Object), JsonErrors),
    security(("bearer" = [])))]
async fn list_grants(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let grants = state.vault.list_grants(&auth.ctx()).await?;
    Ok(Json(Value::Array(
        grants.iter().map(views::grant).collect(),
    )))
}

/// `GET /admin/compliance` → `{"checks": [{id, safeguard, status, evidence}, …]}`, each
/// safeguard measured now (200 whether or not a check fails: the statuses say). Permissions:
/// SUPER_ADMIN (every organization), AUDITOR (its own organization); the vault decides.
#[utoipa::path(get, path = "/admin/compliance", tag = "admin",
    responses((status = 200, description = "`{checks: [{id, safeguard, status: pass|fail|warn, evidence}]}`", body = Object), JsonErrors),
    security(("bearer" = [])))]
async fn compliance(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let report = state.vault.compliance_report(&auth.ctx()).await?;
    Ok(Json(json!({ "checks": report.checks })))
}

/// The administrators' gate: ORG_ADMIN or SUPER_ADMIN, else 403.
fn require_admin(auth: &Authenticated) -> Result<(), ApiError> {
    match auth.principal.role() {
        Role::SuperAdmin | Role::OrgAdmin => Ok(()),
        Role::IntegrationManager | Role::Viewer | Role::Auditor | Role::Clinician | Role::Nurse => {
            Err(ApiError(VaultError::Forbidden))
        }
    }
}

/// `GET /admin/users` → `[{username, role, organization, disabled, mfa, mfa_enrolled,
/// must_change_password, last_sign_in}]`. Permissions: ORG_ADMIN, SUPER_ADMIN.
async fn list(State(state): State<AppState>, auth: Authenticated) -> Result<Json<Value>, ApiError> {
    require_admin(&auth)?;
    let users = state.vault.list_users(&auth.ctx()).await?;
    Ok(Json(Value::Array(users.iter().map(views::user).collect())))
}

#[derive(Deserialize)]
struct AddBody {
    username: String,
    role: String,
}

/// `POST /admin/users {username, role}` → the one-time password, shown once.
/// Permissions: ORG_ADMIN (non-administrator roles), SUPER_ADMIN (any role); the vault decides.
async fn add(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(body): Json<AddBody>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&auth)?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError(VaultError::Invalid("unknown role".into())))?;
    let ctx = auth.ctx();
    let n = state
        .vault
        .add_user(&ctx, ctx.org(), &body.username, role, false)
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

#[derive(Deserialize, utoipa::ToSchema)]
struct GrantBody {
    username: String,
    patient: String,
    purpose: String,
    minutes: Option<i64>,
}

/// `POST /admin/grants {username, patient, purpose, minutes}`: give or renew need-to-know
/// access. Permissions: ORG_ADMIN.
#[utoipa::path(post, path = "/admin/grants", tag = "admin", request_body = GrantBody,
    responses((status = 200, description = "`{id, username, purpose, expires_at}`", body = Object),
        (status = 404, description = "no such patient", body = crate::error::ErrorBody), JsonErrors),
    security(("bearer" = [])))]
async fn grant(
    State(state): State<AppState>,
    auth: Authenticated,
    crate::error::Body(body): crate::error::Body<GrantBody>,
) -> Result<Json<Value>, ApiError> {
    let patient = phivault_core::ResourceId::parse(&body.patient)
        .map_err(|_| ApiError(VaultError::Invalid("invalid patient id".into())))?;
    let purpose = phivault_vault::policy::Purpose::parse(&body.purpose)
        .ok_or_else(|| ApiError(VaultError::Invalid("unknown purpose of use".into())))?;
    let g = state
        .vault
        .grant_access(
            &auth.ctx(),
            &body.username,
            &patient,
            purpose,
            body.minutes.map(|m| m * 60),
        )
        .await?;
    Ok(Json(
        json!({"id": g.id, "username": g.username, "purpose": g.purpose.as_str(), "expires_at": g.expires_at}),
    ))
}

/// `POST /admin/grants/lockdown`: revoke every grant of the organization. Permissions: ORG_ADMIN.
async fn lockdown(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let n = state.vault.lockdown(&auth.ctx()).await?;
    Ok(Json(json!({"revoked": n})))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct DefaultPurposeBody {
    /// An HL7 PurposeOfUse code the role may act for, or null to clear the default.
    purpose: Option<String>,
}

/// `PUT /admin/default-purposes/{role} {purpose}` → `{role, purpose}`: the organization's
/// default purpose of use for people of `role` who choose none at sign-in (null clears it).
/// Permissions: ORG_ADMIN (its organization), SUPER_ADMIN; the vault's policy decides.
#[utoipa::path(put, path = "/admin/default-purposes/{role}", tag = "admin",
    params(("role" = String, Path, description = "e.g. CLINICIAN")),
    request_body = DefaultPurposeBody,
    responses((status = 200, description = "`{role, purpose}`", body = Object), JsonErrors),
    security(("bearer" = [])))]
async fn default_purpose(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(role): Path<String>,
    crate::error::Body(body): crate::error::Body<DefaultPurposeBody>,
) -> Result<Json<Value>, ApiError> {
    let role = Role::parse(&role).ok_or(ApiError(VaultError::Invalid("unknown role".into())))?;
    let ctx = auth.ctx();
    let org = ctx.org().clone();
    let purpose = state
        .vault
        .set_role_default_purpose(&ctx, &org, role, body.purpose.as_deref())
        .await?;
    Ok(Json(json!({"role": role.as_str(), "purpose": purpose})))
}
