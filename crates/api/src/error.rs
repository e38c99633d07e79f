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
        VaultError::Invalid(_) | VaultError::TooCostly(_) => StatusCode::BAD_REQUEST,
        VaultError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
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

/// The JSON error body of the non-FHIR endpoints.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: String,
}

/// The errors of the authentication and administration endpoints.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum JsonErrors {
    /// Malformed input.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Authentication failed (always the same words, whatever the reason).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Not allowed.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The body is too large.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// JSON of the wrong shape.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Too many attempts from this address.
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// The audit trail or the store is unavailable.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// `Json<T>` whose rejection is a JSON error that never echoes the body.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => {
                let status = rejection.status();
                let message = match status {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "send application/json",
                    StatusCode::PAYLOAD_TOO_LARGE => "the body is too large",
                    StatusCode::UNPROCESSABLE_ENTITY => {
                        "the JSON body does not have the fields this request needs"
                    }
                    _ => "the body is not valid JSON",
                };
                Err((status, Json(json!({"error": message}))).into_response())
            }
        }
    }
}
