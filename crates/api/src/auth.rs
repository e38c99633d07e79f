//! `/auth`: login with a password, then MFA; enrollment; forced password change; logout;
//! whoami. The `Authenticated` extractor turns a bearer session token into a principal.
use crate::AppState;
use crate::error::{ApiError, Body, JsonErrors};
use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use phivault_core::SecretString;
use phivault_vault::auth::Principal;
use phivault_vault::{Ctx, VaultError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(change_password))
        .routes(routes!(enroll))
        .routes(routes!(mfa))
        .routes(routes!(logout))
        .routes(routes!(whoami))
        .routes(routes!(break_glass))
}

/// What is known of the request, for the audit trail.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub source: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(200).collect());
        let request_id = parts
            .extensions
            .get::<crate::observe::RequestId>()
            .map_or_else(request_id, |r| r.0.clone());
        Ok(Self {
            source,
            user_agent,
            request_id,
        })
    }
}

/// A request id: time-ordered and random enough to correlate logs, not a secret.
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "req-{:x}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl RequestInfo {
    /// A context for a caller not signed in (login steps, token requests): no rights.
    pub fn anonymous_ctx(&self, org: phivault_core::OrgId) -> Ctx {
        let mut c = Ctx::anonymous(org);
        c.source = self.source.clone();
        c.user_agent = self.user_agent.clone();
        c.request_id = Some(self.request_id.clone());
        c
    }
}

/// A request with a valid session: its principal and its request info.
#[derive(Debug)]
pub struct Authenticated {
    pub principal: Principal,
    pub token: SecretString,
    pub info: RequestInfo,
    /// The `X-Purpose-Of-Use` header (HL7 PurposeOfUse code); no purpose, no PHI.
    pub purpose: Option<String>,
}

impl Authenticated {
    /// The vault context: the principal as the policy's subject, with the stated purpose.
    pub fn ctx(&self) -> Ctx {
        let mut c = Ctx::for_principal(&self.principal, self.purpose.clone());
        c.source = self.info.source.clone();
        c.user_agent = self.info.user_agent.clone();
        c.request_id = Some(self.info.request_id.clone());
        c
    }
}

fn bearer(parts: &Parts) -> Option<SecretString> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = v.strip_prefix("Bearer ")?.trim();
    (!t.is_empty()).then(|| SecretString::new(t.to_owned()))
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let info = RequestInfo::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|e| match e {});
        let token = bearer(parts).ok_or(ApiError(VaultError::Unauthenticated("no token")))?;
        let principal = state.vault.authenticate(token.expose()).await?;
        let purpose = parts
            .headers
            .get("x-purpose-of-use")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().chars().take(32).collect());
        Ok(Self {
            principal,
            token,
            info,
            purpose,
        })
    }
}

/// The org used for audit events of anonymous login steps: the only one, or `default`.
async fn login_ctx(state: &AppState, info: &RequestInfo) -> Ctx {
    let org = match state.vault.organizations().await {
        Ok(orgs) if orgs.len() == 1 => orgs.into_iter().next().map(|o| o.id),
        _ => None,
    }
    .or_else(|| phivault_core::OrgId::parse("default").ok());
    let org = org.unwrap_or_else(phivault_core::OrgId::unknown);
    info.anonymous_ctx(org)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LoginBody {
    username: String,
    password: String,
    /// The organization's id: required when the vault has several organizations (usernames
    /// are unique within an organization, not across them); optional with one.
    organization: Option<String>,
    /// The purpose of use for the session (an HL7 PurposeOfUse code the role may act for):
    /// calls then need no `X-Purpose-Of-Use` header, which still overrides it. Without it,
    /// the organization's default for the role applies, if any.
    purpose_of_use: Option<String>,
}

/// `POST /auth/login {username, password, organization?, purpose_of_use?}` →
/// `{challenge, next}`. Permissions: none.
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body = LoginBody,
    responses((status = 200, description = "`{challenge, next}`: the next step (password, enroll or mfa)", body = Object), JsonErrors))]
async fn login(
    State(state): State<AppState>,
    info: RequestInfo,
    Body(body): Body<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    let ctx = login_ctx(&state, &info).await;
    let c = state
        .vault
        .login_for(
            &ctx,
            body.organization.as_deref(),
            &body.username,
            SecretString::new(body.password),
            body.purpose_of_use.as_deref(),
        )
        .await?;
    Ok(Json(
        json!({"challenge": c.token.expose(), "next": c.next.as_str()}),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PasswordBody {
    challenge: String,
    new_password: String,
}

/// `POST /auth/password {challenge, new_password}` → `{next}`. Permissions: a login challenge.
#[utoipa::path(post, path = "/auth/password", tag = "auth",
    request_body = PasswordBody,
    responses((status = 200, description = "`{next}`", body = Object), JsonErrors))]
async fn change_password(
    State(state): State<AppState>,
    info: RequestInfo,
    Body(body): Body<PasswordBody>,
) -> Result<Json<Value>, ApiError> {
    let ctx = login_ctx(&state, &info).await;
    let next = state
        .vault
        .change_password(&ctx, &body.challenge, SecretString::new(body.new_password))
        .await?;
    Ok(Json(json!({"next": next.as_str()})))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ChallengeBody {
    challenge: String,
}

/// `POST /auth/mfa/enroll {challenge}` → `{otpauth_uri, secret, backup_codes}`, shown once.
#[utoipa::path(post, path = "/auth/mfa/enroll", tag = "auth",
    request_body = ChallengeBody,
    responses((status = 200, description = "`{otpauth_uri, secret, backup_codes}`, shown once", body = Object), JsonErrors))]
async fn enroll(
    State(state): State<AppState>,
    info: RequestInfo,
    Body(body): Body<ChallengeBody>,
) -> Result<Json<Value>, ApiError> {
    let ctx = login_ctx(&state, &info).await;
    let e = state.vault.enroll_mfa(&ctx, &body.challenge).await?;
    let codes: Vec<&String> = e.backup_codes.iter().map(|c| c.expose()).collect();
    Ok(Json(json!({
        "otpauth_uri": e.otpauth_uri.expose(),
        "secret": e.secret_base32.expose(),
        "backup_codes": codes,
        "next": "mfa",
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct MfaBody {
    challenge: String,
    code: String,
}

/// `POST /auth/mfa {challenge, code}` → `{token, token_type, expires_in}`.
#[utoipa::path(post, path = "/auth/mfa", tag = "auth",
    request_body = MfaBody,
    responses((status = 200, description = "`{token, token_type, expires_in}`", body = Object), JsonErrors))]
async fn mfa(
    State(state): State<AppState>,
    info: RequestInfo,
    Body(body): Body<MfaBody>,
) -> Result<Json<Value>, ApiError> {
    let ctx = login_ctx(&state, &info).await;
    let t = state
        .vault
        .complete_mfa(&ctx, &body.challenge, &body.code)
        .await?;
    Ok(Json(json!({
        "token": t.token.expose(),
        "token_type": "Bearer",
        "expires_in": t.expires_in,
    })))
}

/// `POST /auth/logout` (bearer session) → 204. Permissions: any signed-in user.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out"), JsonErrors),
    security(("bearer" = [])))]
async fn logout(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<StatusCode, ApiError> {
    state.vault.logout(&auth.ctx(), auth.token.expose()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /auth/whoami` → who the session belongs to. Permissions: any signed-in user.
#[utoipa::path(get, path = "/auth/whoami", tag = "auth",
    responses((status = 200, description = "`{actor, organization, role, scopes}`", body = Object), JsonErrors),
    security(("bearer" = [])))]
async fn whoami(auth: Authenticated) -> Json<Value> {
    let p = &auth.principal;
    Json(json!({
        "actor": p.actor().audit_name(),
        "organization": p.org().as_str(),
        "role": p.role().as_str(),
        "scopes": p.scopes(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct BreakGlassBody {
    patient: String,
    reason: String,
}

/// `POST /auth/break-glass {patient, reason}`: emergency access for 15 minutes with purpose
/// ETREAT, flagged in the audit trail. Permissions: CLINICIAN.
#[utoipa::path(post, path = "/auth/break-glass", tag = "auth",
    request_body = BreakGlassBody,
    responses((status = 200, description = "`{purpose, expires_at}`", body = Object), JsonErrors),
    security(("bearer" = [])))]
async fn break_glass(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(body): Body<BreakGlassBody>,
) -> Result<Json<Value>, ApiError> {
    let patient = phivault_core::ResourceId::parse(&body.patient)
        .map_err(|_| ApiError(VaultError::Invalid("invalid patient id".into())))?;
    let mut ctx = auth.ctx();
    ctx.purpose = Some("ETREAT".into());
    ctx.purpose_source = None;
    let g = state
        .vault
        .break_glass(&ctx, &patient, &body.reason)
        .await?;
    Ok(Json(
        json!({"purpose": "ETREAT", "expires_at": g.expires_at}),
    ))
}
