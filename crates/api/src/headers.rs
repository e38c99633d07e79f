//! Security headers on every response: HSTS (two years, subdomains; `preload` only when
//! configured), no MIME sniffing, no
//! caching anywhere (every response may carry PHI or a token), no referrer, a strict CSP that
//! loads nothing, no framing; and the request body limit ([`crate::body_limit`]).
use crate::body_limit::{self, Admitted, BodyLimit};
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

pub const HSTS: &str = "max-age=63072000; includeSubDomains";
/// HSTS for a domain submitted to the browsers' preload list (`PHIVAULT_HSTS_PRELOAD=on`).
pub const HSTS_PRELOAD: &str = "max-age=63072000; includeSubDomains; preload";
pub const CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn always(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

/// Wraps a router with the headers and the body limit; HSTS with `preload` when asked.
pub fn secure<S: Clone + Send + Sync + 'static>(
    app: Router<S>,
    preload: bool,
    limit: BodyLimit,
) -> Router<S> {
    secure_with(app, preload, limit, None)
}

/// [`secure`] whose first layer also refuses sources outside the listener's allow-list
/// (`PHIVAULT_HTTP_ALLOW`), before any body rule.
pub fn secure_with<S: Clone + Send + Sync + 'static>(
    app: Router<S>,
    preload: bool,
    limit: BodyLimit,
    http_allow: Option<std::sync::Arc<[phivault_core::net::Cidr]>>,
) -> Router<S> {
    let hsts = if preload { HSTS_PRELOAD } else { HSTS };
    // The extractors' own limit (axum's default is 2 MiB) is the configured one too, so a
    // refusal always comes from the first layer, which answers a declared length over the
    // limit before the body is read and counts a body of unknown length.
    app.layer(axum::extract::DefaultBodyLimit::max(limit.bytes()))
        .layer(axum::middleware::from_fn_with_state(
            (limit, http_allow),
            first_layer,
        ))
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

/// The first layer's state: the body limit, and the listener's allow-list when one is set.
type FirstLayer = (
    BodyLimit,
    Option<std::sync::Arc<[phivault_core::net::Cidr]>>,
);

/// Inside the security headers, before anything else: a method that is not a standard one is
/// refused (405, see [`crate::edge::refuse_method`]) before any route or label is made from
/// it; a body over the limit gets 413 with an OperationOutcome under `/fhir`, a JSON error
/// elsewhere, and the rest of it is drained so the client sees the answer (see
/// [`crate::body_limit`]). (One layer for both: every layer costs every request.)
async fn first_layer(
    axum::extract::State((limit, http_allow)): axum::extract::State<FirstLayer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(refused) = crate::edge::refuse_method(&req) {
        return refused;
    }
    if let Some(list) = http_allow.as_deref()
        && let Some(refused) = crate::edge::refuse_source(Some(list), &req)
    {
        return refused;
    }
    let (req, rest) = match body_limit::admit(req, limit) {
        Admitted::Refused(res) => return res,
        Admitted::Serve(req, rest) => (req, rest),
    };
    let Some(mut rest) = rest else {
        return next.run(req).await;
    };
    let fhir = body_limit::is_fhir(&req);
    let http1 = req.version() < axum::http::Version::HTTP_2;
    let res = next.run(req).await;
    match rest.try_recv() {
        Ok(rest) => body_limit::refusal(rest, limit, fhir, http1),
        Err(_) => res,
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
        let app = secure(
            Router::new().route("/x", get(|| async { "ok" })),
            false,
            BodyLimit::default(),
        );
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
            let app = secure(
                Router::new().route("/x", get(|| async { "ok" })),
                preload,
                BodyLimit::default(),
            );
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
            BodyLimit::default(),
        );
        let big = vec![b'a'; crate::body_limit::DEFAULT_MAX_BODY + 1];
        let res = app
            .oneshot(Request::post("/x").body(Body::from(big)).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
