//! FHIR search (the vault's engine: `phivault_vault::search`, parameters per type in its
//! table), paged through sealed `_page` cursors, `POST …/_search` (criteria in the body, out
//! of URLs and logs), `Patient/$everything`, and `AuditEvent` for auditors.
use super::{Errors, FhirAuth, Resource, fhir, invalid, outcome, path_id, path_type, tri};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use phivault_core::ResourceId;
use phivault_fhir::{Bundle, Entry, IssueCode, SearchMode, full_url};
use phivault_vault::audit::export::{AuditFilter, to_fhir};
use phivault_vault::search::{Next, SearchSpec};
use phivault_vault::{SearchPage, Stored};
use serde_json::{Value, json};

/// Page size when `_count` is not given, and the most a page may hold.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 500;

const AUDIT_PARAMS: &[&str] = &["date", "agent", "patient", "action", "_count", "_offset"];

/// Search parameters, checked against the names a search supports (an unknown one is an
/// error, not silently ignored: ignoring it would widen the result).
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Self, Box<Response>> {
        Self::from_pairs(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            allowed,
        )
    }

    /// Parameters without a value are ignored, as FHIR search says.
    fn from_pairs(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, Box<Response>> {
        let pairs: Vec<(String, String)> =
            pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        for (k, _) in &pairs {
            if !allowed.contains(&k.as_str()) {
                let shown: String = k.chars().take(40).collect();
                return Err(Box::new(invalid(&format!(
                    "unsupported search parameter '{shown}' (supported: {})",
                    allowed.join(", ")
                ))));
            }
        }
        Ok(Self(pairs))
    }

    /// The one value of a parameter (given twice: an error).
    fn one(&self, name: &str) -> Result<Option<String>, Box<Response>> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.clone());
        if it.next().is_some() {
            return Err(Box::new(invalid(&format!("{name} given more than once"))));
        }
        Ok(first)
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn count(&self, max: usize) -> Result<usize, Box<Response>> {
        match self.one("_count")? {
            None => Ok(DEFAULT_COUNT.min(max)),
            Some(c) => match c.trim().parse::<usize>() {
                Ok(n) => Ok(n.min(max)),
                Err(_) => Err(Box::new(invalid("_count is not a number"))),
            },
        }
    }

    fn page(&self) -> Result<SearchPage, Box<Response>> {
        let count = self.count(MAX_COUNT)?;
        let offset = match self.one("_offset")? {
            None => 0,
            Some(o) => o
                .trim()
                .parse::<usize>()
                .map_err(|_| Box::new(invalid("_offset is not a number")))?,
        };
        Ok(SearchPage { offset, count })
    }

    /// The query string of the next page: the same criteria, the next offset.
    fn next_query(&self, page: SearchPage) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            if k != "_offset" && k != "_count" {
                s.append_pair(k, v);
            }
        }
        s.append_pair("_count", &page.count.to_string());
        s.append_pair(
            "_offset",
            &page.offset.saturating_add(page.count).to_string(),
        );
        s.finish()
    }
}

/// The query a request stands for: its own, or the criteria sealed in its `_page` cursor
/// (which must then stand alone), and whether it came from a cursor.
fn unpage(state: &AppState, auth: &FhirAuth, query: &str) -> Result<(String, bool), Box<Response>> {
    let pairs = pairs_of(query);
    match pairs.iter().find(|(k, _)| k == "_page") {
        None => Ok((query.to_owned(), false)),
        Some(_) if pairs.len() != 1 => Err(Box::new(invalid("_page stands alone"))),
        Some((_, cursor)) => state
            .vault
            .open_cursor(&auth.ctx(), cursor)
            .map(|q| (q, true))
            .map_err(|e| Box::new(outcome(&e))),
    }
}

fn pairs_of(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The next page of a search: its criteria and where the page starts, sealed into a cursor.
fn next_link(
    state: &AppState,
    auth: &FhirAuth,
    pairs: &[(String, String)],
    count: usize,
    next: &Next,
) -> Result<String, Box<Response>> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !matches!(
            k.as_str(),
            "_offset" | "_after" | "_afterseq" | "_seen" | "_count"
        ) {
            s.append_pair(k, v);
        }
    }
    s.append_pair("_count", &count.to_string());
    match next {
        Next::After(id, seen) => s
            .append_pair("_after", id.as_str())
            .append_pair("_seen", &seen.to_string()),
        Next::AfterSeq(seq, seen) => s
            .append_pair("_afterseq", &seq.to_string())
            .append_pair("_seen", &seen.to_string()),
        Next::Offset(n) => s.append_pair("_offset", &n.to_string()),
    };
    let cursor = state
        .vault
        .seal_cursor(&auth.ctx(), &s.finish())
        .map_err(|e| Box::new(outcome(&e)))?;
    Ok(format!("_page={cursor}"))
}

/// The next page's query: the criteria sealed into an opaque `_page` cursor, so no
/// identifier, name or phone travels in the link's URL.
fn sealed_next(
    state: &AppState,
    auth: &FhirAuth,
    p: &Params,
    page: SearchPage,
) -> Result<String, Box<Response>> {
    let cursor = state
        .vault
        .seal_cursor(&auth.ctx(), &p.next_query(page))
        .map_err(|e| Box::new(outcome(&e)))?;
    Ok(format!("_page={cursor}"))
}

/// The searchset entry of a record.
fn entry(mode: SearchMode) -> impl Fn(Stored) -> Entry {
    move |s| Entry::found(full_url(s.rtype, &s.id), s.resource, mode)
}

/// A searchset Bundle of one page (matches, then included records); `next` when more follow.
fn searchset(
    rtype: &str,
    found: Vec<Stored>,
    included: Vec<Stored>,
    total: Option<usize>,
    next: Option<String>,
) -> Response {
    let entries: Vec<Entry> = found
        .into_iter()
        .map(entry(SearchMode::Match))
        .chain(included.into_iter().map(entry(SearchMode::Include)))
        .collect();
    let next = next.map(|q| format!("{rtype}?{q}"));
    fhir(
        StatusCode::OK,
        Bundle::search_page(entries, total, next).into(),
    )
}

/// The criteria of `POST …/_search` (those of the type searched).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SearchForm {
    _id: Option<String>,
    identifier: Option<String>,
    family: Option<String>,
    birthdate: Option<String>,
    phone: Option<String>,
    patient: Option<String>,
    subject: Option<String>,
    code: Option<String>,
    date: Option<String>,
    _count: Option<u32>,
    _offset: Option<u32>,
}

/// The parameters of `GET /fhir/{rtype}` in the OpenAPI document: every search parameter of
/// the vault's table (the types taking each one named), and the result parameters, exactly
/// what the CapabilityStatement lists.
pub fn openapi_parameters() -> Vec<Value> {
    use phivault_vault::search::params;
    let mut out = vec![json!({"name": "rtype", "in": "path", "required": true,
        "schema": {"type": "string"}})];
    let types: Vec<&str> = phivault_core::resource_types::R4_RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|t| phivault_core::ResourceType::parse(t).is_ok() && *t != "AuditEvent")
        .collect();
    let mut names: Vec<(&str, &str)> = Vec::new();
    for t in &types {
        for d in params::of_type(t) {
            if !names.iter().any(|(n, _)| *n == d.name) {
                names.push((d.name, d.kind.fhir_type()));
            }
        }
    }
    for (name, ty) in names {
        let on: Vec<&str> = ["Patient"]
            .into_iter()
            .chain(params::CLINICAL)
            .filter(|t| params::find(t, name).is_some())
            .collect();
        out.push(json!({"name": name, "in": "query", "required": false,
            "description": format!("FHIR {ty} parameter, on {}", if on.len() > 8 { "every type".to_owned() } else { on.join(", ") }),
            "schema": {"type": "string"}}));
    }
    for r in params::RESULT_PARAMS {
        let schema = match r {
            "_count" | "_offset" => json!({"type": "integer", "minimum": 0}),
            _ => json!({"type": "string"}),
        };
        out.push(json!({"name": r, "in": "query", "required": false, "schema": schema}));
    }
    out.push(json!({"name": "_page", "in": "query", "required": false,
        "description": "an opaque cursor from a `next` link (alone)", "schema": {"type": "string"}}));
    out.push(
        json!({"name": "X-Purpose-Of-Use", "in": "header", "required": false,
        "schema": {"type": "string"}}),
    );
    out
}

/// `GET /fhir/{type}?…`: Patient by `identifier` (`system|value`), `family` + `birthdate`,
/// `phone` or `_id`; the clinical types by `patient`/`subject` (+ `code`; `date` with
/// `eq|lt|le|gt|ge` prefixes for Observation). `_count` (≤ 500) and `_offset` page.
/// Permissions: by role, purpose, grant and scope; only what the caller may see is counted.
#[utoipa::path(get, path = "/fhir/{rtype}", tag = "fhir",
    params(("rtype" = String, Path),
        ("_id" = Option<String>, Query), ("identifier" = Option<String>, Query),
        ("family" = Option<String>, Query), ("birthdate" = Option<String>, Query),
        ("phone" = Option<String>, Query), ("patient" = Option<String>, Query),
        ("subject" = Option<String>, Query), ("code" = Option<String>, Query),
        ("date" = Option<String>, Query), ("_count" = Option<u32>, Query),
        ("_offset" = Option<u32>, Query), ("_page" = Option<String>, Query, description = "an opaque cursor from a `next` link (alone)"),
        ("X-Purpose-Of-Use" = Option<String>, Header)),
    responses((status = 200, description = "A searchset Bundle", body = Resource, content_type = "application/fhir+json"), Errors),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    auth: FhirAuth,
    Path(rtype): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let base = base_of(&uri, &headers);
    run_search(&state, &auth, &rtype, query.as_deref().unwrap_or(""), &base).await
}

/// The FHIR base URL the client used (`https://host/fhir/`), for absolute `next` links (a
/// client such as Python's fhirclient follows only those); empty (relative links) when the
/// request names no usable host.
fn base_of(uri: &Uri, headers: &HeaderMap) -> String {
    let host = uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    match host {
        Some(h)
            if !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) =>
        {
            format!("https://{h}/fhir/")
        }
        _ => String::new(),
    }
}

/// `POST /fhir/{type}/_search` with the criteria as `application/x-www-form-urlencoded`: the
/// same search, with no identifier or name in any URL. Permissions: as search.
#[utoipa::path(post, path = "/fhir/{rtype}/_search", tag = "fhir",
    params(("rtype" = String, Path), ("X-Purpose-Of-Use" = Option<String>, Header)),
    request_body(content = SearchForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "A searchset Bundle", body = Resource, content_type = "application/fhir+json"), Errors,
        (status = 415, body = super::OperationOutcome, content_type = "application/fhir+json")),
    security(("bearer" = [])))]
pub async fn search_post(
    State(state): State<AppState>,
    auth: FhirAuth,
    Path(rtype): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return super::outcome_with(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueCode::NotSupported,
            "send the criteria as application/x-www-form-urlencoded",
        );
    }
    let Ok(body) = body else {
        return super::too_large();
    };
    let Ok(form) = std::str::from_utf8(&body) else {
        return invalid("the body is not UTF-8");
    };
    run_search(&state, &auth, &rtype, form, &base_of(&uri, &headers)).await
}

async fn run_search(
    state: &AppState,
    auth: &FhirAuth,
    rtype: &str,
    query: &str,
    base: &str,
) -> Response {
    let rtype = tri!(path_type(rtype));
    let (query, from_cursor) = tri!(unpage(state, auth, query));
    let pairs = pairs_of(&query);
    let spec = match SearchSpec::parse(rtype, &pairs, from_cursor) {
        Ok(s) => s,
        Err(e) => return outcome(&e),
    };
    match state.vault.search(&auth.ctx(), &spec).await {
        Ok(found) => {
            let next = match &found.next {
                Some(n) => Some(tri!(next_link(state, auth, &pairs, spec.count, n))),
                None => None,
            };
            searchset(
                &format!("{base}{rtype}"),
                found.matches,
                found.included,
                found.total,
                next,
            )
        }
        Err(e) => outcome(&e),
    }
}

/// A date parameter: a prefix and a (partial) date, compared at the parameter's precision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateParam {
    prefix: &'static str,
    value: String,
}

impl DateParam {
    pub fn parse(s: &str) -> Option<Self> {
        let (prefix, value) = ["eq", "lt", "le", "gt", "ge"]
            .into_iter()
            .find_map(|p| s.strip_prefix(p).map(|v| (p, v)))
            .unwrap_or(("eq", s));
        let shape_ok = value.len() >= 4
            && value.len() <= 35
            && value.chars().take(4).all(|c| c.is_ascii_digit())
            && value
                .chars()
                .all(|c| c.is_ascii_digit() || "-T:.+Z".contains(c));
        shape_ok.then(|| Self {
            prefix,
            value: value.to_owned(),
        })
    }

    pub fn matches(&self, when: &str) -> bool {
        let n = self.value.len().min(when.len());
        let (Some(w), Some(v)) = (when.get(..n), self.value.get(..n)) else {
            return false;
        };
        match self.prefix {
            "lt" => w < v,
            "le" => w <= v,
            "gt" => w > v,
            "ge" => w >= v,
            _ => w == v,
        }
    }
}

/// `GET /fhir/Patient/{id}/$everything`: the patient and every record linked to it, as a
/// searchset Bundle. Permissions: read of the patient in full (a redacted release is 403) and
/// of its clinical records, by role, purpose, grant and scope.
#[utoipa::path(get, path = "/fhir/Patient/{id}/$everything", tag = "fhir",
    params(("id" = String, Path), ("X-Purpose-Of-Use" = Option<String>, Header)),
    responses((status = 200, description = "A searchset Bundle", body = Resource, content_type = "application/fhir+json"), Errors),
    security(("bearer" = [])))]
pub async fn everything(
    State(state): State<AppState>,
    auth: FhirAuth,
    Path(id): Path<String>,
) -> Response {
    let id = tri!(path_id(&id));
    match state.vault.everything(&auth.ctx(), &id).await {
        Ok(all) => {
            let n = all.len();
            searchset("Patient", all, Vec::new(), Some(n), None)
        }
        Err(e) => outcome(&e),
    }
}

/// `GET /fhir/AuditEvent?date=…&agent=…&patient=…&action=…`: the organization's audit trail
/// as FHIR AuditEvent resources, oldest first (`_count`/`_offset` page). `agent` is the actor
/// (`user:alice`, `client:…`, `cli:…`), `patient` a Patient id, `action` C/R/U/D/E or the
/// vault's action name. Permissions: AUDITOR only; the read is itself audited.
#[utoipa::path(get, path = "/fhir/AuditEvent", tag = "fhir",
    params(("date" = Option<String>, Query), ("agent" = Option<String>, Query),
        ("patient" = Option<String>, Query), ("action" = Option<String>, Query),
        ("_count" = Option<u32>, Query), ("_offset" = Option<u32>, Query),
        ("_page" = Option<String>, Query, description = "an opaque cursor from a `next` link (alone)")),
    responses((status = 200, description = "A searchset Bundle of AuditEvent", body = Resource, content_type = "application/fhir+json"), Errors),
    security(("bearer" = [])))]
pub async fn audit_events(
    State(state): State<AppState>,
    auth: FhirAuth,
    RawQuery(query): RawQuery,
) -> Response {
    let (query, _) = tri!(unpage(&state, &auth, query.as_deref().unwrap_or("")));
    let p = tri!(Params::parse(Some(&query), AUDIT_PARAMS));
    let page = tri!(p.page());
    let dates = match p
        .all("date")
        .iter()
        .map(|d| DateParam::parse(d))
        .collect::<Option<Vec<_>>>()
    {
        Some(d) => d,
        None => return invalid("date is [eq|lt|le|gt|ge]YYYY[-MM[-DD[Thh:mm:ss]]]"),
    };
    let patient = match tri!(p.one("patient")) {
        None => None,
        Some(x) => {
            let x = x.strip_prefix("Patient/").unwrap_or(&x).to_owned();
            match ResourceId::parse(&x) {
                Ok(id) => Some(id),
                Err(_) => return invalid("patient is not a valid id"),
            }
        }
    };
    let filter = AuditFilter {
        actor: tri!(p.one("agent")),
        patient,
        ..Default::default()
    };
    let action = tri!(p.one("action"));
    match state.vault.review_audit(&auth.ctx(), &filter).await {
        Ok(events) => {
            let mut out = Vec::new();
            let mut matched = 0usize;
            for ev in &events {
                if !dates.iter().all(|d| d.matches(&ev.time)) {
                    continue;
                }
                let r = to_fhir(ev);
                if let Some(a) = &action
                    && r.get("action").and_then(Value::as_str) != Some(a.as_str())
                    && &ev.action != a
                {
                    continue;
                }
                if matched >= page.offset && out.len() < page.count {
                    out.push(r);
                }
                matched += 1;
            }
            let more = matched > page.offset.saturating_add(page.count);
            let entries: Vec<Entry> = out
                .into_iter()
                .map(|r| Entry::new().resource(r).search(SearchMode::Match))
                .collect();
            let mut b = Bundle::searchset().total(matched).entries_if_any(entries);
            if more && page.count > 0 {
                let next = tri!(sealed_next(&state, &auth, &p, page));
                b = b.next(format!("AuditEvent?{next}"));
            }
            fhir(StatusCode::OK, b.into())
        }
        Err(e) => outcome(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_prefixes_compare_at_the_parameter_precision() {
        let d = |s: &str| DateParam::parse(s).unwrap();
        assert!(d("2020").matches("2020-05-01T10:00:00Z"));
        assert!(d("ge2020-05").matches("2020-05-01"));
        assert!(!d("gt2020-05").matches("2020-05-31"));
        assert!(d("lt2021").matches("2020-12-31"));
        assert!(d("le2020-05-01").matches("2020-05-01T23:59:59Z"));
        assert!(DateParam::parse("ge20x").is_none());
        assert!(DateParam::parse("2020-01-01' OR 1=1").is_none());
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        assert!(Params::parse(Some("name=x"), AUDIT_PARAMS).is_err());
        let p = Params::parse(Some("agent=1&agent=2"), AUDIT_PARAMS).unwrap();
        assert!(p.one("agent").is_err());
        let p = Params::parse(Some("agent=555%201234&_count=2"), AUDIT_PARAMS).unwrap();
        assert_eq!(p.one("agent").unwrap().as_deref(), Some("555 1234"));
        assert_eq!(
            p.next_query(SearchPage {
                offset: 0,
                count: 2
            }),
            "agent=555+1234&_count=2&_offset=2"
        );
    }
}
