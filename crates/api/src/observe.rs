//! Request observation: a request id on every request and response, one structured log line
//! per request, and Prometheus counters. Logs and metric labels carry the route *template*
//! (`/fhir/Patient/{id}`), the method, the status and the duration — never a query string, a
//! body, a header value, an id from the path, or anything else that could be PHI or a secret.
//!
//! Every label comes from a fixed set, never from what a client sent: the method is one of
//! [`METHODS`] or `other`, the route a template of the router (or `unmatched`, `refused`),
//! the status one of a fixed list or its class; and the number of series is capped
//! ([`MAX_SERIES`]), so no stream of requests can grow `/metrics` or the logs' vocabulary.
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
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

/// The standard methods (RFC 9110 and PATCH): each its own label, and routed (a route that
/// does not serve one answers 405 with `Allow`); any other is answered 405 before routing
/// (see `edge`).
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

/// The method's label: itself when it is one of [`METHODS`], else `other`.
pub fn method_label(m: &Method) -> &'static str {
    METHODS
        .iter()
        .find(|k| **k == m.as_str())
        .copied()
        .unwrap_or("other")
}

/// The statuses the server gives, each its own label.
const STATUSES: [(u16, &str); 20] = [
    (200, "200"),
    (201, "201"),
    (204, "204"),
    (304, "304"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (406, "406"),
    (409, "409"),
    (410, "410"),
    (412, "412"),
    (413, "413"),
    (415, "415"),
    (422, "422"),
    (429, "429"),
    (500, "500"),
    (501, "501"),
    (503, "503"),
];

/// The status's label: the code for those the server gives, else its class (`5xx`).
pub fn status_label(code: u16) -> &'static str {
    match STATUSES.iter().find(|(c, _)| *c == code) {
        Some((_, label)) => label,
        None => match code / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
    }
}

/// Why a request was refused before routing or authentication (a fixed label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A method the API does not serve (405, before routing).
    Method,
    /// A source outside `PHIVAULT_HTTP_ALLOW` (403).
    Source,
    /// A source outside `PHIVAULT_ADMIN_ALLOW` asking for `/admin` or `/metrics` (403).
    AdminSource,
}

impl Refusal {
    const ALL: [Refusal; 3] = [Refusal::Method, Refusal::Source, Refusal::AdminSource];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::Method => "method",
            Refusal::Source => "source",
            Refusal::AdminSource => "admin_source",
        }
    }

    fn index(self) -> usize {
        match self {
            Refusal::Method => 0,
            Refusal::Source => 1,
            Refusal::AdminSource => 2,
        }
    }
}

/// The most (route, method, status) series kept; later ones are counted under `overflow`.
/// The router's templates times the fixed methods and statuses stay far below it.
pub const MAX_SERIES: usize = 2_000;

/// (route template, method, status).
type Series = (String, &'static str, &'static str);

/// Request counters and total durations by route template, method and status; refusals by
/// reason.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Series, (u64, f64)>>,
    refused: [AtomicU64; 3],
}

impl Metrics {
    fn record(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = (route.to_owned(), method, status_label(status));
        if m.len() >= MAX_SERIES && !m.contains_key(&key) {
            key = ("overflow".to_owned(), "other", "other");
        }
        let e = m.entry(key).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += seconds;
    }

    /// Counts a refusal.
    pub fn refused(&self, why: Refusal) {
        if let Some(n) = self.refused.get(why.index()) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many (route, method, status) series there are.
    pub fn series(&self) -> usize {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
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
        out.push_str(
            "# HELP phivault_http_refused_total Requests refused before routing and authentication, by reason.\n\
             # TYPE phivault_http_refused_total counter\n",
        );
        for why in Refusal::ALL {
            let n = self
                .refused
                .get(why.index())
                .map_or(0, |n| n.load(Ordering::Relaxed));
            out.push_str(&format!(
                "phivault_http_refused_total{{reason=\"{}\"}} {n}\n",
                why.label()
            ));
        }
        out
    }
}

/// The HL7 error queue's counters (kept by the vault, so they count what every process did),
/// labelled by interface name only; a name that is not a plain configured name is skipped.
pub fn render_queue(counts: &[(String, phivault_vault::QueueCounts)]) -> String {
    type Get = fn(&phivault_vault::QueueCounts) -> u64;
    let mut out = String::new();
    let series: [(&str, &str, Get); 3] = [
        (
            "queued",
            "Messages not accepted (AE/AR) and kept in the sealed error queue",
            |c| c.queued,
        ),
        ("retried", "Queued messages retried by an operator", |c| {
            c.retried
        }),
        (
            "discarded",
            "Queued messages discarded (crypto-shredded) by an operator",
            |c| c.discarded,
        ),
    ];
    for (kind, help, get) in series {
        out.push_str(&format!(
            "# HELP phivault_hl7_errors_{kind}_total {help}, by interface.\n\
             # TYPE phivault_hl7_errors_{kind}_total counter\n"
        ));
        for (name, c) in counts {
            let plain = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if plain {
                out.push_str(&format!(
                    "phivault_hl7_errors_{kind}_total{{interface=\"{name}\"}} {}\n",
                    get(c)
                ));
            }
        }
    }
    out
}

/// Marks a response already logged and counted by the route layer.
#[derive(Debug, Clone, Copy)]
struct Observed;

/// Marks a response refused before routing or authentication, and why.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub Refusal);

fn log_and_count(
    metrics: &Metrics,
    id: &str,
    method: &'static str,
    route: &str,
    status: u16,
    secs: f64,
) {
    metrics.record(route, method, status, secs);
    tracing::info!(
        target: "phivault::http",
        request_id = %id,
        method,
        route = %route,
        status,
        ms = (secs * 1000.0).round() as u64,
        "request"
    );
}

/// Outermost layer: gives every request an id (also sent back as `x-request-id`), and logs
/// and counts what no route matched (404s, refusals, bodies refused before routing).
pub async fn observe_outer(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let id = next_request_id();
    let method = method_label(req.method());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    let refused = res.extensions().get::<Refused>().map(|r| r.0);
    if let Some(why) = refused {
        metrics.refused(why);
    }
    if res.extensions().get::<Observed>().is_none() {
        let secs = start.elapsed().as_secs_f64();
        let route = if refused.is_some() {
            "refused"
        } else {
            "unmatched"
        };
        log_and_count(&metrics, &id, method, route, res.status().as_u16(), secs);
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
    let method = method_label(req.method());
    let mut res = next.run(req).await;
    let secs = start.elapsed().as_secs_f64();
    log_and_count(&metrics, &id, method, &route, res.status().as_u16(), secs);
    res.extensions_mut().insert(Observed);
    res
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn queue_counters_are_labelled_by_plain_interface_names_only() {
        let c = phivault_vault::QueueCounts {
            queued: 3,
            retried: 2,
            discarded: 1,
        };
        let text = render_queue(&[("lab".into(), c), ("x\"}} 9\nevil".into(), c)]);
        assert!(text.contains("phivault_hl7_errors_queued_total{interface=\"lab\"} 3\n"));
        assert!(text.contains("phivault_hl7_errors_retried_total{interface=\"lab\"} 2\n"));
        assert!(text.contains("phivault_hl7_errors_discarded_total{interface=\"lab\"} 1\n"));
        assert!(!text.contains("evil"), "{text}");
    }

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        for invented in ["FOO", "get", "PROPFIND", "QZX1"] {
            let m = Method::from_bytes(invented.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other", "{invented}");
        }
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(599), "5xx");
    }

    #[test]
    fn the_number_of_series_is_capped() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES * 2 {
            m.record(&format!("/r{i}"), "GET", 200, 0.0);
        }
        assert_eq!(
            m.series(),
            MAX_SERIES + 1,
            "the cap, plus the overflow series"
        );
        assert!(m.render().contains("route=\"overflow\""));
        m.refused(Refusal::Source);
        assert!(
            m.render()
                .contains("phivault_http_refused_total{reason=\"source\"} 1")
        );
    }
}
