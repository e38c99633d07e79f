//! `Bundle.entry` and its `request`, `response` and `search` parts. Elements are written in
//! the order the calls are made.
use crate::OperationOutcome;
use serde_json::{Map, Value, json};

/// `Bundle.entry.search.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// A match of the search.
    Match,
    /// Included with a match (`_include`, `_revinclude`).
    Include,
}

impl SearchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Include => "include",
        }
    }
}

/// One `Bundle.entry`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry(Map<String, Value>);

impl Entry {
    /// An empty entry, to be filled in call order.
    pub fn new() -> Self {
        Self::default()
    }

    /// `{"fullUrl", "resource"}`: an entry of a collection Bundle.
    pub fn of(full_url: String, resource: Value) -> Self {
        Self::new().full_url(full_url).resource(resource)
    }

    /// `{"fullUrl", "resource", "search": {"mode"}}`: an entry of a searchset Bundle.
    pub fn found(full_url: String, resource: Value, mode: SearchMode) -> Self {
        Self::of(full_url, resource).search(mode)
    }

    pub fn full_url(self, url: String) -> Self {
        self.with("fullUrl", Value::String(url))
    }

    pub fn resource(self, resource: Value) -> Self {
        self.with("resource", resource)
    }

    pub fn search(self, mode: SearchMode) -> Self {
        self.with("search", json!({"mode": mode.as_str()}))
    }

    pub fn request(self, request: Request) -> Self {
        self.with("request", Value::Object(request.0))
    }

    pub fn response(self, response: Response) -> Self {
        self.with("response", Value::Object(response.0))
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.to_owned(), value);
        self
    }
}

impl From<Entry> for Value {
    fn from(e: Entry) -> Self {
        e.into_value()
    }
}

/// `Bundle.entry.request.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// `Bundle.entry.request`: `{"method", "url"}`, then `ifMatch` when given.
#[derive(Debug, Clone, PartialEq)]
pub struct Request(Map<String, Value>);

impl Request {
    pub fn new(method: Method, url: String) -> Self {
        let mut m = Map::new();
        m.insert("method".into(), json!(method.as_str()));
        m.insert("url".into(), Value::String(url));
        Self(m)
    }

    /// `ifMatch`: the weak ETag the write expects (see [`crate::etag`]).
    pub fn if_match(mut self, etag: String) -> Self {
        self.0.insert("ifMatch".into(), Value::String(etag));
        self
    }
}

/// `Bundle.entry.response`: `{"status"}`, then what the calls add, in call order.
#[derive(Debug, Clone, PartialEq)]
pub struct Response(Map<String, Value>);

impl Response {
    /// `status`: the HTTP status line, e.g. `201 Created`.
    pub fn new(status: String) -> Self {
        let mut m = Map::new();
        m.insert("status".into(), Value::String(status));
        Self(m)
    }

    pub fn location(self, url: String) -> Self {
        self.with("location", Value::String(url))
    }

    pub fn etag(self, etag: String) -> Self {
        self.with("etag", Value::String(etag))
    }

    /// `outcome`: why this entry failed.
    pub fn outcome(self, outcome: OperationOutcome) -> Self {
        self.with("outcome", outcome.into_value())
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.to_owned(), value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IssueCode, etag, full_url, version_url};

    fn text(e: Entry) -> String {
        e.into_value().to_string()
    }

    #[test]
    fn collection_and_search_entries_are_pinned() {
        let r = json!({"resourceType": "Patient", "id": "p1"});
        assert_eq!(
            text(Entry::of(full_url("Patient", "p1"), r.clone())),
            r#"{"fullUrl":"Patient/p1","resource":{"resourceType":"Patient","id":"p1"}}"#
        );
        assert_eq!(
            text(Entry::found(
                "Patient/p1".into(),
                r.clone(),
                SearchMode::Match
            )),
            r#"{"fullUrl":"Patient/p1","resource":{"resourceType":"Patient","id":"p1"},"search":{"mode":"match"}}"#
        );
        assert_eq!(
            text(Entry::new().resource(r).search(SearchMode::Include)),
            r#"{"resource":{"resourceType":"Patient","id":"p1"},"search":{"mode":"include"}}"#
        );
    }

    #[test]
    fn a_transaction_entry_with_its_request_is_pinned() {
        let r = json!({"resourceType": "Patient"});
        let plain = Request::new(Method::Put, "Patient/p1".into());
        assert_eq!(
            text(Entry::new().resource(r.clone()).request(plain)),
            r#"{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient/p1"}}"#
        );
        let guarded = Request::new(Method::Put, "Patient/p1".into()).if_match(etag(2));
        assert_eq!(
            text(Entry::new().resource(r).request(guarded)),
            r#"{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\"2\""}}"#
        );
        for (m, name) in [
            (Method::Get, "GET"),
            (Method::Post, "POST"),
            (Method::Put, "PUT"),
            (Method::Delete, "DELETE"),
        ] {
            assert_eq!(m.as_str(), name);
        }
    }

    #[test]
    fn response_entries_are_pinned() {
        let ok = Response::new("201 Created".into())
            .location(version_url("Patient", "p1", 1))
            .etag(etag(1));
        assert_eq!(
            text(
                Entry::new()
                    .response(ok)
                    .full_url("Patient/p1".into())
                    .resource(json!({}))
            ),
            r#"{"response":{"status":"201 Created","location":"Patient/p1/_history/1","etag":"W/\"1\""},"fullUrl":"Patient/p1","resource":{}}"#
        );
        let failed = Response::new("404 Not Found".into())
            .outcome(OperationOutcome::error(IssueCode::Processing, "not found"));
        assert_eq!(
            text(Entry::new().response(failed)),
            r#"{"response":{"status":"404 Not Found","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"not found"}]}}}"#
        );
    }
}
