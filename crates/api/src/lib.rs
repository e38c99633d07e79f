//! phivault-api: the HTTP adapter. It translates requests into vault calls and back; it never
//! touches a store or a key (it does not depend on phivault-store or phivault-crypto).
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod body_limit;
pub mod deid;
pub mod edge;
pub mod error;
pub mod fhir;
pub mod headers;
pub mod keys;
pub mod oauth;
pub mod observe;

use axum::Router;
use axum::routing::get;
use phivault_vault::Vault;
use serde_json::json;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub vault: Vault,
    pub metrics: std::sync::Arc<observe::Metrics>,
    /// Source allow-lists and HSTS preload.
    pub edge: std::sync::Arc<edge::EdgePolicy>,
}

impl AppState {
    pub fn new(vault: Vault) -> Self {
        Self {
            vault,
            metrics: std::sync::Arc::new(observe::Metrics::default()),
            edge: std::sync::Arc::new(edge::EdgePolicy::default()),
        }
    }

    /// The same state under another edge policy.
    pub fn with_edge(mut self, edge: edge::EdgePolicy) -> Self {
        self.edge = std::sync::Arc::new(edge);
        self
    }
}

/// The application: every route, with the security headers on every response.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let edge = state.edge.clone();
    let (documented, doc) = documented_routes().split_for_parts();
    let doc =
        std::sync::Arc::new(refine(serde_json::to_value(&doc).unwrap_or_default()).to_string());
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .merge(admin::routes())
        .merge(documented)
        .fallback(not_found)
        .with_state(state);
    // The allow-list gates only when a list is set: each layer costs every request.
    let app = if edge.admin_allow.is_some() {
        app.route_layer(axum::middleware::from_fn_with_state(
            edge.clone(),
            edge::admin_gate,
        ))
    } else {
        app
    };
    let app = app.route_layer(axum::middleware::from_fn_with_state(
        metrics.clone(),
        observe::observe_route,
    ));
    let app = if edge.http_allow.is_some() || edge.admin_allow.is_some() {
        app.layer(axum::middleware::from_fn_with_state(
            edge.clone(),
            edge::gate,
        ))
    } else {
        app
    };
    let http_allow = edge.http_allow.as_deref().map(std::sync::Arc::from);
    let app = headers::secure_with(app, edge.hsts_preload, edge.body_limit, http_allow);
    app.layer(axum::middleware::from_fn_with_state(
        metrics,
        observe::observe_outer,
    ))
}

/// The OpenAPI document's frame: title, the bearer scheme.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "phivault", description = "FHIR R4 API, authentication and administration of phivault. Every PHI call needs a bearer token (`/auth` or `/oauth/token`) and an `X-Purpose-Of-Use` header."),
    modifiers(&BearerScheme),
    components(schemas(error::ErrorBody)),
    tags((name = "fhir", description = "FHIR R4, application/fhir+json"), (name = "auth", description = "login, MFA, sessions, OAuth2 client credentials"), (name = "admin", description = "administration and the compliance report"))
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes the OpenAPI document is generated from (their `#[utoipa::path]` annotations).
fn documented_routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(fhir::routes())
        .merge(deid::routes())
        .merge(admin::documented())
        .merge(keys::routes())
        .merge(rate_limited(auth::routes().merge(oauth::routes())))
}

/// The OpenAPI 3 document as served at `/openapi.json`.
pub fn openapi() -> serde_json::Value {
    refine(serde_json::to_value(documented_routes().into_openapi()).unwrap_or_default())
}

/// Tightens the generated path parameters from the same tables the handlers use: `rtype` is
/// one of the stored FHIR R4 types, `id` a FHIR id, `vid` a version number.
fn refine(mut doc: serde_json::Value) -> serde_json::Value {
    let types: Vec<&str> = phivault_core::resource_types::R4_RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|t| phivault_core::ResourceType::parse(t).is_ok() && *t != "AuditEvent")
        .collect();
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return doc;
    };
    if let Some(get) = paths
        .get_mut("/fhir/{rtype}")
        .and_then(|p| p.get_mut("get"))
        .and_then(|g| g.as_object_mut())
    {
        get.insert(
            "parameters".into(),
            serde_json::Value::Array(fhir::search::openapi_parameters()),
        );
    }
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) else {
                continue;
            };
            for p in params {
                let schema = match p.get("name").and_then(|n| n.as_str()) {
                    Some("rtype") => json!({"type": "string", "enum": types}),
                    Some("id") => json!({"type": "string", "pattern": "^[A-Za-z0-9.-]{1,64}$"}),
                    Some("vid") => json!({"type": "integer", "minimum": 1}),
                    Some("date") => json!({"type": "string", "pattern":
                        "^(eq|ne|lt|le|gt|ge|sa|eb|ap)?[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2})?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$"}),
                    Some("patient") | Some("subject") => {
                        json!({"type": "string", "pattern": "^(Patient/)?[A-Za-z0-9.-]{1,64}$"})
                    }
                    Some("_count") | Some("_offset") => json!({"type": "integer", "minimum": 0}),
                    _ => continue,
                };
                p["schema"] = schema;
            }
        }
    }
    doc
}

/// `GET /metrics`: Prometheus text. Permissions: SUPER_ADMIN or AUDITOR (a person, or a
/// service client such as a Prometheus scraper with client credentials).
async fn metrics_text(
    axum::extract::State(state): axum::extract::State<AppState>,
    auth: auth::Authenticated,
) -> Result<String, error::ApiError> {
    use phivault_core::Role;
    match auth.principal.role() {
        Role::SuperAdmin | Role::Auditor => {
            let queue = state.vault.queue_counts().await?;
            Ok(state.metrics.render() + &observe::render_queue(&queue))
        }
        Role::OrgAdmin
        | Role::IntegrationManager
        | Role::Viewer
        | Role::Clinician
        | Role::Nurse => Err(error::ApiError(phivault_vault::VaultError::Forbidden)),
    }
}

/// Requests per address on the authentication endpoints: a burst of 10, then one every
/// 500 ms; beyond that, 429 before any password is checked.
pub const AUTH_BURST: u32 = 10;
pub const AUTH_REPLENISH_MS: u64 = 500;

fn rate_limited(
    routes: utoipa_axum::router::OpenApiRouter<AppState>,
) -> utoipa_axum::router::OpenApiRouter<AppState> {
    use tower_governor::GovernorLayer;
    use tower_governor::governor::GovernorConfigBuilder;
    let Some(config) = GovernorConfigBuilder::default()
        .per_millisecond(AUTH_REPLENISH_MS)
        .burst_size(AUTH_BURST)
        .finish()
    else {
        // The constants above are valid; without a limiter the routes are not served at all.
        return utoipa_axum::router::OpenApiRouter::new();
    };
    let config = std::sync::Arc::new(config);
    let limiter = config.limiter().clone();
    // Forget idle addresses now and then, so the table stays small.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                limiter.retain_recent();
            }
        });
    }
    routes.layer(GovernorLayer::new(config))
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
