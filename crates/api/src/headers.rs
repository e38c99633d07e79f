//! Security headers on every response: HSTS (two years, subdomains; `preload` only when
//! configured), no MIME sniffing, no
//! caching anywhere (every response may carry PHI or a token), no referrer, a strict CSP that
//! loads nothing, no framing; and a request body limit.
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

/// The largest request body accepted (bigger bodies get 413 before any handler runs).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

pub const HSTS: &str = "max-age=63072000; includeSubDomains";
/// HSTS for a domain submitted to the browsers' preload list (`PHIVAULT_HSTS_PRELOAD=on`).
pub const HSTS_PRELOAD: &str = "max-age=63072000; includeSubDomains; preload";
pub const CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn always(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

/// Wraps a router with the headers and the body limit; HSTS with `preload` when asked.
pub fn secure<S: Clone + Send + Sync + 'static>(app: Router<S>, preload: bool) -> Router<S> {
    let hsts = if preload { HSTS_PRELOAD } else { HSTS };
    // The extractors' own limit (axum's default is 2 MiB) is the documented one too, so a
    // refusal always comes from the layer, which answers a declared length over the limit
    // before the body is read (no `100 Continue`: the client never starts sending it).
    app.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(too_large_in_kind))
        .layer(always(header::STRICT_TRANSPORT_SECURITY, hsts))
        .layer(always(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(always(header::CACHE_CONTROL, "no-store"))
        .layer(always(header::PRAGMA, "no-cache"))
        .layer(always(header::REFERRER_POLICY, "no-referrer"))
        .layer(always(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(always(header::X_FRAME_OPTIONS, "DENY"))
        .layer(always(
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ))
}

/// Inside the security headers, before anything else: a method that is not a standard one is
/// refused (405, see [`crate::edge::refuse_method`]) before any route or label is made from
/// it; and the body limit's bare 413 becomes an OperationOutcome under `/fhir`, a JSON error
/// elsewhere. (One layer for both: every layer costs every request.)
async fn too_large_in_kind(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    if let Some(refused) = crate::edge::refuse_method(&req) {
        return refused;
    }
    let fhir = req.uri().path().starts_with("/fhir");
    let res = next.run(req).await;
    let typed = res.headers().contains_key(header::CONTENT_TYPE)
        && res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().ends_with(b"json"));
    if res.status() != StatusCode::PAYLOAD_TOO_LARGE || typed {
        return res;
    }
    if fhir {
        crate::fhir::too_large()
    } else {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({"error": "the body is too large"})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_response_carries_the_headers_even_errors() {
        let app = secure(Router::new().route("/x", get(|| async { "ok" })), false);
        for (uri, status) in [("/x", StatusCode::OK), ("/nope", StatusCode::NOT_FOUND)] {
            let res = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), status);
            let h = res.headers();
            assert_eq!(h[header::STRICT_TRANSPORT_SECURITY], HSTS);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::CACHE_CONTROL], "no-store");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        }
    }

    #[tokio::test]
    async fn hsts_preload_only_when_asked() {
        for (preload, want) in [(false, HSTS), (true, HSTS_PRELOAD)] {
            let app = secure(Router::new().route("/x", get(|| async { "ok" })), preload);
            let res = app
                .oneshot(Request::get("/x").body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.headers()[header::STRICT_TRANSPORT_SECURITY], want);
        }
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let app = secure(
            Router::new().route(
                "/x",
                axum::routing::post(|b: String| async move { b.len().to_string() }),
            ),
            false,
        );
        let big = vec![b'a'; MAX_BODY_BYTES + 1];
        let res = app
            .oneshot(Request::post("/x").body(Body::from(big)).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
