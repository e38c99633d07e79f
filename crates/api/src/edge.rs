//! What every request meets before routing and authentication: a source address the
//! listener's allow-list holds (`PHIVAULT_HTTP_ALLOW`), for `/admin` and `/metrics` also the
//! administration's (`PHIVAULT_ADMIN_ALLOW`), and a standard method. Refusals carry a
//! small body without detail and a [`Refused`] mark, so they are counted under a fixed label.
use crate::observe::{Refusal, Refused, method_label};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use phivault_core::net::Cidr;
use phivault_fhir::IssueCode;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Who may reach the listener and its administration, whether HSTS says `preload`, and the
/// largest request body. The default allows every source (a firewall in front decides), does
/// not preload, and accepts bodies up to 8 MiB.
#[derive(Debug, Clone, Default)]
pub struct EdgePolicy {
    /// Sources that may use the listener at all (`None`: every source).
    pub http_allow: Option<Vec<Cidr>>,
    /// Sources that may use `/admin` and `/metrics`, besides the listener's list (`None`:
    /// every source the listener allows).
    pub admin_allow: Option<Vec<Cidr>>,
    /// HSTS with `preload` (hard to undo: browsers ship the list).
    pub hsts_preload: bool,
    /// The largest request body (`PHIVAULT_MAX_BODY`).
    pub body_limit: crate::body_limit::BodyLimit,
}

/// Whether `list` lets `peer` in; without a known peer address, only when there is no list.
fn allows(list: Option<&[Cidr]>, peer: Option<IpAddr>) -> bool {
    match list {
        None => true,
        Some(l) => peer.is_some_and(|ip| l.iter().any(|c| c.contains(ip))),
    }
}

/// Whether a path (or route template) is the administration's: `/admin…` and `/metrics`.
fn is_admin(path: &str) -> bool {
    path == "/metrics" || path == "/admin" || path.starts_with("/admin/")
}

fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The answer to a refused request: an OperationOutcome under `/fhir`, a small JSON error
/// elsewhere; no detail either way.
fn refuse(why: Refusal, fhir: bool) -> Response {
    let (status, code, text) = match why {
        Refusal::Method => (
            StatusCode::METHOD_NOT_ALLOWED,
            IssueCode::NotSupported,
            "method not allowed",
        ),
        Refusal::Source | Refusal::AdminSource => {
            (StatusCode::FORBIDDEN, IssueCode::Forbidden, "forbidden")
        }
    };
    let mut res = if fhir {
        crate::fhir::outcome_with(status, code, text)
    } else {
        (status, axum::Json(serde_json::json!({ "error": text }))).into_response()
    };
    res.extensions_mut().insert(Refused(why));
    res
}

/// Outer gate, before routing and authentication, when an allow-list is set: a source the
/// listener allows (else 403), and for an administration path one the administration allows
/// (else 403).
pub async fn gate(State(policy): State<Arc<EdgePolicy>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let fhir = path.starts_with("/fhir");
    let ip = peer(&req);
    if !allows(policy.http_allow.as_deref(), ip) {
        return refuse(Refusal::Source, fhir);
    }
    if is_admin(path) && !allows(policy.admin_allow.as_deref(), ip) {
        return refuse(Refusal::AdminSource, fhir);
    }
    next.run(req).await
}

/// The refusal of a method that is not a standard one (405, before routing), if it is one.
/// The first layer inside the security headers asks it of every request
/// (`headers::too_large_in_kind`), so no label or route is ever made from an invented method.
pub fn refuse_method(req: &Request) -> Option<Response> {
    (method_label(req.method()) == "other")
        .then(|| refuse(Refusal::Method, req.uri().path().starts_with("/fhir")))
}

/// The refusal of a source the listener's allow-list does not hold, if it is one. The first
/// layer asks it before any body rule, so a refused source never makes the server read its
/// body (the outer [`gate`] asks it again, with the administration's list).
pub fn refuse_source(list: Option<&[Cidr]>, req: &Request) -> Option<Response> {
    (!allows(list, peer(req)))
        .then(|| refuse(Refusal::Source, req.uri().path().starts_with("/fhir")))
}

/// Route gate: the administration's allow-list again, on the route the router matched (so
/// no spelling of a path reaches `/admin` or `/metrics` past the outer gate).
pub async fn admin_gate(
    State(policy): State<Arc<EdgePolicy>>,
    req: Request,
    next: Next,
) -> Response {
    let admin = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| is_admin(p.as_str()));
    if admin && !allows(policy.admin_allow.as_deref(), peer(&req)) {
        return refuse(Refusal::AdminSource, false);
    }
    next.run(req).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists() {
        let l = Cidr::parse_list("T", "10.0.0.0/8").unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(allows(None, None));
        assert!(allows(None, ip("192.0.2.1")));
        assert!(allows(Some(&l), ip("10.9.8.7")));
        assert!(!allows(Some(&l), ip("127.0.0.1")));
        assert!(
            !allows(Some(&l), None),
            "an unknown peer is refused by any list"
        );
        for p in ["/metrics", "/admin", "/admin/users", "/admin/keys/rotate"] {
            assert!(is_admin(p), "{p}");
        }
        for p in ["/administrator", "/metricsx", "/fhir/admin", "/healthz"] {
            assert!(!is_admin(p), "{p}");
        }
    }
}
