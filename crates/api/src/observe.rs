//! Request observation: a request id on every request and response, one structured log line
//! per request, and Prometheus counters. Logs and metric labels carry the route *template*
//! (`/fhir/Patient/{id}`), the method, the status and the duration — never a query string, a
//! body, a header value, an id from the path, or anything else that could be PHI or a secret.
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The request id, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn next_request_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:08x}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// (route template, method, status).
type Series = (String, String, u16);

/// Request counters and total durations by route template, method and status.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Series, (u64, f64)>>,
}

impl Metrics {
    fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let e = m
            .entry((route.to_owned(), method.to_owned(), status))
            .or_insert((0, 0.0));
        e.0 += 1;
        e.1 += seconds;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from(
            "# HELP phivault_http_requests_total HTTP requests by route template, method and status.\n\
             # TYPE phivault_http_requests_total counter\n",
        );
        for ((route, method, status), (n, _)) in m.iter() {
            out.push_str(&format!(
                "phivault_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}\n"
            ));
        }
        out.push_str(
            "# HELP phivault_http_request_seconds_total Time spent serving requests.\n\
             # TYPE phivault_http_request_seconds_total counter\n",
        );
        for ((route, method, status), (_, secs)) in m.iter() {
            out.push_str(&format!(
                "phivault_http_request_seconds_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {secs:.6}\n"
            ));
        }
        out
    }
}

/// Marks a response already logged and counted by the route layer.
#[derive(Debug, Clone, Copy)]
struct Observed;

fn log_and_count(metrics: &Metrics, id: &str, method: &str, route: &str, status: u16, secs: f64) {
    metrics.record(route, method, status, secs);
    tracing::info!(
        target: "phivault::http",
        request_id = %id,
        method = %method,
        route = %route,
        status,
        ms = (secs * 1000.0).round() as u64,
        "request"
    );
}

/// Outermost layer: gives every request an id (also sent back as `x-request-id`), and logs
/// and counts what no route matched (404s, bodies refused before routing).
pub async fn observe_outer(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let id = next_request_id();
    let method = req.method().as_str().to_owned();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if res.extensions().get::<Observed>().is_none() {
        let secs = start.elapsed().as_secs_f64();
        log_and_count(
            &metrics,
            &id,
            &method,
            "unmatched",
            res.status().as_u16(),
            secs,
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

/// Route layer: logs and counts a matched request under its route template.
pub async fn observe_route(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let id = req
        .extensions()
        .get::<RequestId>()
        .map_or_else(String::new, |r| r.0.clone());
    let method = req.method().as_str().to_owned();
    let mut res = next.run(req).await;
    let secs = start.elapsed().as_secs_f64();
    log_and_count(&metrics, &id, &method, &route, res.status().as_u16(), secs);
    res.extensions_mut().insert(Observed);
    res
}
