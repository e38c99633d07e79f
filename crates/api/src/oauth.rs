//! `POST /oauth/token`: the OAuth2 client-credentials grant (RFC 6749 §4.4), client
//! authentication by HTTP Basic (§2.3.1) or form fields, errors as in §5.2.
use crate::AppState;
use crate::auth::RequestInfo;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use phivault_core::SecretString;
use phivault_vault::VaultError;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = Json(json!({"error": error, "error_description": description}));
    if status == StatusCode::UNAUTHORIZED {
        (
            status,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"phivault\"")],
            body,
        )
            .into_response()
    } else {
        (status, body).into_response()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |x: Option<&u8>| x.and_then(|x| (*x as char).to_digit(16));
        match (c, hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `client_id:client_secret` from `Authorization: Basic`, each form-urlencoded (§2.3.1).
fn basic(headers: &HeaderMap) -> Option<(String, SecretString)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((
        percent_decode(id),
        SecretString::new(percent_decode(secret)),
    ))
}

/// Permissions: valid client credentials. Returns `access_token`, `token_type`,
/// `expires_in`, `scope`.
#[utoipa::path(post, path = "/oauth/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "`{access_token, token_type, expires_in, scope}`", body = Object),
        (status = 400, description = "RFC 6749 §5.2 error", body = Object),
        (status = 401, description = "invalid_client", body = Object),
        (status = 415, description = "not a form", body = Object),
        (status = 429, description = "too many attempts", body = Object),
        (status = 503, description = "unavailable", body = Object)))]
async fn token(
    State(state): State<AppState>,
    info: RequestInfo,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send an application/x-www-form-urlencoded body",
        );
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    let creds = match (basic(&headers), form.client_id, form.client_secret) {
        (Some(c), None, None) => c,
        (None, Some(id), Some(secret)) => (id, SecretString::new(secret)),
        (None, _, _) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            );
        }
        (Some(_), _, _) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method",
            );
        }
    };
    let org = state
        .vault
        .organizations()
        .await
        .ok()
        .and_then(|o| {
            (o.len() == 1)
                .then(|| o.into_iter().next().map(|o| o.id))
                .flatten()
        })
        .unwrap_or_else(phivault_core::OrgId::unknown);
    let ctx = info.anonymous_ctx(org);
    match state
        .vault
        .issue_client_token(&ctx, &creds.0, &creds.1, form.scope.as_deref())
        .await
    {
        Ok((t, scope)) => Json(json!({
            "access_token": t.token.expose(),
            "token_type": "Bearer",
            "expires_in": t.expires_in,
            "scope": scope,
        }))
        .into_response(),
        Err(VaultError::Unauthenticated(_)) => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ),
        Err(VaultError::Invalid(m)) if m.starts_with("invalid_scope") => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the requested scope is beyond the client's",
        ),
        Err(VaultError::Invalid(_)) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the scope is not valid: use system/<ResourceType or *>.<cruds>",
        ),
        Err(e) => crate::error::ApiError(e).into_response(),
    }
}
