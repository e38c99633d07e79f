//! Parsing a transaction or batch Bundle into planned entries (pure: no store, no key).
use super::{BundleKind, MAX_ENTRIES, Method};
use crate::error::VaultError;
use crate::records::fhir;
use phivault_core::{ResourceId, ResourceType, Version};
use serde_json::Value;
use std::collections::HashMap;

/// One parsed entry.
pub(super) struct Planned {
    pub n: usize,
    pub method: Method,
    pub rtype: ResourceType,
    pub id: Option<ResourceId>,
    pub version: Option<Version>,
    pub if_match: Option<Version>,
    pub full_url: Option<String>,
    pub resource: Option<Value>,
}

pub(super) fn bad(n: usize, what: &str) -> VaultError {
    VaultError::Invalid(format!("entry {n}: {what}"))
}

/// Parses `If-Match`-style versions: `W/"3"`, `"3"` or `3`.
pub fn parse_etag(v: &str) -> Option<Version> {
    v.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .ok()
        .map(Version)
}

/// `Type`, `Type/id` or `Type/id/_history/vid` (relative; a leading `/` and a query are
/// refused — conditional operations are not supported).
fn parse_url(
    n: usize,
    url: &str,
) -> Result<(ResourceType, Option<ResourceId>, Option<Version>), VaultError> {
    if url.contains('?') {
        return Err(bad(n, "conditional requests are not supported"));
    }
    let parts: Vec<&str> = url.trim_start_matches('/').split('/').collect();
    let rtype = parts
        .first()
        .and_then(|t| ResourceType::parse(t).ok())
        .ok_or_else(|| bad(n, "request.url does not start with a known resource type"))?;
    let id = match parts.get(1) {
        None => None,
        Some(i) => Some(ResourceId::parse(i).map_err(|_| bad(n, "request.url has an invalid id"))?),
    };
    let version = match (parts.get(2), parts.get(3), parts.len()) {
        (None, None, _) => None,
        (Some(&"_history"), Some(v), 4) => Some(
            v.parse::<u64>()
                .map(Version)
                .map_err(|_| bad(n, "request.url has an invalid version"))?,
        ),
        _ => {
            return Err(bad(
                n,
                "request.url is not Type, Type/id or Type/id/_history/vid",
            ));
        }
    };
    Ok((rtype, id, version))
}

pub(super) fn parse_bundle(bundle: Value) -> Result<(BundleKind, Vec<Planned>), VaultError> {
    let Value::Object(mut b) = bundle else {
        return Err(VaultError::Invalid("expected a Bundle".into()));
    };
    if b.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(VaultError::Invalid("expected a Bundle".into()));
    }
    let kind = match b.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        _ => {
            return Err(VaultError::Invalid(
                "Bundle.type must be transaction or batch".into(),
            ));
        }
    };
    let entries = match b.remove("entry") {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(VaultError::Invalid("Bundle.entry is not an array".into())),
    };
    if entries.len() > MAX_ENTRIES {
        return Err(VaultError::Invalid(format!(
            "a Bundle holds at most {MAX_ENTRIES} entries"
        )));
    }
    let out = entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| parse_entry(i + 1, e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((kind, out))
}

/// The `n`th (1-based) entry of a transaction or batch: its request (method, url, ifMatch),
/// fullUrl and resource, checked against each other.
fn parse_entry(n: usize, e: Value) -> Result<Planned, VaultError> {
    let Value::Object(mut e) = e else {
        return Err(bad(n, "not an object"));
    };
    let request = e.remove("request").ok_or_else(|| bad(n, "no request"))?;
    let method = match request.get("method").and_then(Value::as_str) {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("DELETE") => Method::Delete,
        _ => return Err(bad(n, "request.method must be GET, POST, PUT or DELETE")),
    };
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(n, "no request.url"))?;
    let (rtype, id, version) = parse_url(n, url)?;
    let if_match = match request.get("ifMatch") {
        None => None,
        Some(Value::String(s)) => {
            Some(parse_etag(s).ok_or_else(|| bad(n, "request.ifMatch is not W/\"<version>\""))?)
        }
        Some(_) => return Err(bad(n, "request.ifMatch is not a string")),
    };
    let full_url = match e.remove("fullUrl") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(bad(n, "fullUrl is not a string")),
    };
    let resource = e.remove("resource");
    match method {
        Method::Post if id.is_some() => return Err(bad(n, "POST goes to Type, not Type/id")),
        Method::Put | Method::Delete | Method::Get if id.is_none() => {
            return Err(bad(n, "request.url must be Type/id"));
        }
        Method::Put | Method::Post | Method::Delete if version.is_some() => {
            return Err(bad(n, "only GET may name a version"));
        }
        _ => {}
    }
    match (&method, &resource) {
        (Method::Post | Method::Put, None) => return Err(bad(n, "no resource")),
        (Method::Post | Method::Put, Some(r)) => {
            let t = fhir::resource_type(r).map_err(|e| bad(n, &e.client_message()))?;
            if t != rtype {
                return Err(bad(n, "resourceType does not match request.url"));
            }
        }
        _ => {}
    }
    Ok(Planned {
        n,
        method,
        rtype,
        id,
        version,
        if_match,
        full_url,
        resource,
    })
}

/// Rewrites every `reference` equal to a key of `map` (a fullUrl) to its value.
pub(super) fn rewrite_refs(v: &mut Value, map: &HashMap<String, String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("reference")
                && let Some(to) = map.get(r.as_str())
            {
                *r = to.clone();
            }
            for (k, child) in o.iter_mut() {
                if k != "reference" {
                    rewrite_refs(child, map, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                rewrite_refs(child, map, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_and_etags_parse_strictly() {
        assert_eq!(parse_etag("W/\"3\""), Some(Version(3)));
        assert_eq!(parse_etag("x"), None);
        assert!(parse_url(1, "Patient").is_ok());
        assert!(parse_url(1, "Patient/abc/_history/2").is_ok());
        assert!(parse_url(1, "Patient?identifier=x").is_err());
        assert!(parse_url(1, "Nope/abc").is_err());
        assert!(parse_url(1, "Patient/../x").is_err());
        assert!(parse_url(1, "Patient/abc/_history").is_err());
    }

    #[test]
    fn references_to_entries_are_rewritten() {
        let mut r =
            json!({"subject": {"reference": "urn:uuid:1"}, "x": [{"reference": "urn:uuid:2"}]});
        let map = HashMap::from([("urn:uuid:1".to_owned(), "Patient/a".to_owned())]);
        rewrite_refs(&mut r, &map, 0);
        assert_eq!(r["subject"]["reference"], "Patient/a");
        assert_eq!(r["x"][0]["reference"], "urn:uuid:2");
    }

    #[test]
    fn a_bundle_must_say_what_it_is() {
        for (b, want) in [
            (
                json!({"resourceType": "Bundle", "type": "collection"}),
                "transaction or batch",
            ),
            (json!({"resourceType": "Patient"}), "expected a Bundle"),
            (
                json!({"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "PATCH", "url": "Patient/a"}}]}),
                "entry 1",
            ),
            (
                json!({"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Observation"}}]}),
                "does not match",
            ),
        ] {
            let Err(VaultError::Invalid(m)) = parse_bundle(b) else {
                panic!("accepted")
            };
            assert!(m.contains(want), "{m}");
        }
    }
}
