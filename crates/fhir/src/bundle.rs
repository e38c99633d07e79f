//! Bundles: `resourceType` and `type` first, then `total`, `entry` and `link` in the order the
//! calls are made.
use crate::Entry;
use serde_json::{Map, Value, json};

/// `Bundle.type`: the kinds phivault writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleType {
    Searchset,
    Collection,
    History,
    Transaction,
    TransactionResponse,
    BatchResponse,
}

impl BundleType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Searchset => "searchset",
            Self::Collection => "collection",
            Self::History => "history",
            Self::Transaction => "transaction",
            Self::TransactionResponse => "transaction-response",
            Self::BatchResponse => "batch-response",
        }
    }
}

/// A Bundle under construction.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle(Map<String, Value>);

impl Bundle {
    /// `{"resourceType": "Bundle", "type": …}`.
    pub fn new(kind: BundleType) -> Self {
        let mut m = Map::new();
        m.insert("resourceType".into(), json!("Bundle"));
        m.insert("type".into(), json!(kind.as_str()));
        Self(m)
    }

    pub fn searchset() -> Self {
        Self::new(BundleType::Searchset)
    }

    pub fn collection() -> Self {
        Self::new(BundleType::Collection)
    }

    pub fn history() -> Self {
        Self::new(BundleType::History)
    }

    pub fn transaction() -> Self {
        Self::new(BundleType::Transaction)
    }

    /// One page of a FHIR search: `entry` (the matches, then what they include; left out when
    /// there is none), `total` when known, a `next` link when more follow. With no entry,
    /// `link` comes before `total`: the order the API has always written.
    pub fn search_page(entries: Vec<Entry>, total: Option<usize>, next: Option<String>) -> Self {
        let (early, late) = if entries.is_empty() {
            (next, None)
        } else {
            (None, next)
        };
        let mut b = Self::searchset().entries_if_any(entries);
        if let Some(url) = early {
            b = b.next(url);
        }
        if let Some(n) = total {
            b = b.total(n);
        }
        if let Some(url) = late {
            b = b.next(url);
        }
        b
    }

    /// `total`: the number of matches (or of entries).
    pub fn total(mut self, n: usize) -> Self {
        self.0.insert("total".into(), json!(n));
        self
    }

    /// `entry`, written even when there is none (`[]`).
    pub fn entries(mut self, entries: impl IntoIterator<Item = Entry>) -> Self {
        let list: Vec<Value> = entries.into_iter().map(Value::from).collect();
        self.0.insert("entry".into(), Value::Array(list));
        self
    }

    /// `entry`, left out when there is none.
    pub fn entries_if_any(self, entries: Vec<Entry>) -> Self {
        if entries.is_empty() {
            self
        } else {
            self.entries(entries)
        }
    }

    /// `total` (the number of entries), then `entry`.
    pub fn counted(self, entries: Vec<Entry>) -> Self {
        let n = entries.len();
        self.total(n).entries(entries)
    }

    /// `link`: `[{"relation": "next", "url": …}]`.
    pub fn next(mut self, url: String) -> Self {
        self.0
            .insert("link".into(), json!([{"relation": "next", "url": url}]));
        self
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    /// The JSON text of this Bundle up to an open `"entry":[`, for writing a large Bundle one
    /// entry at a time: the head, the entries separated by `,`, then [`Bundle::STREAMED_TAIL`].
    pub fn streamed_head(self) -> String {
        let whole = Value::Object(self.0).to_string();
        let open = whole.strip_suffix('}').unwrap_or(&whole);
        format!("{open},\"entry\":[")
    }

    /// What closes a Bundle begun with [`Bundle::streamed_head`].
    pub const STREAMED_TAIL: &'static str = "]}";
}

impl From<Bundle> for Value {
    fn from(b: Bundle) -> Self {
        b.into_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SearchMode;

    fn text(b: Bundle) -> String {
        b.into_value().to_string()
    }

    fn found(id: &str) -> Entry {
        Entry::found(
            format!("Patient/{id}"),
            json!({"id": id}),
            SearchMode::Match,
        )
    }

    #[test]
    fn every_type_has_its_fhir_name() {
        let made = [
            (Bundle::searchset(), "searchset"),
            (Bundle::collection(), "collection"),
            (Bundle::history(), "history"),
            (Bundle::transaction(), "transaction"),
            (
                Bundle::new(BundleType::TransactionResponse),
                "transaction-response",
            ),
            (Bundle::new(BundleType::BatchResponse), "batch-response"),
        ];
        for (bundle, name) in made {
            let want = format!(r#"{{"resourceType":"Bundle","type":"{name}"}}"#);
            assert_eq!(text(bundle), want);
        }
    }

    #[test]
    fn a_search_page_is_pinned_with_and_without_entries() {
        let full = Bundle::search_page(vec![found("a")], Some(3), Some("Patient?_page=x".into()));
        assert_eq!(
            text(full),
            r#"{"resourceType":"Bundle","type":"searchset","entry":[{"fullUrl":"Patient/a","resource":{"id":"a"},"search":{"mode":"match"}}],"total":3,"link":[{"relation":"next","url":"Patient?_page=x"}]}"#
        );
        let empty = Bundle::search_page(Vec::new(), Some(3), Some("Patient?_page=x".into()));
        assert_eq!(
            text(empty),
            r#"{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"Patient?_page=x"}],"total":3}"#
        );
        assert_eq!(
            text(Bundle::search_page(Vec::new(), Some(0), None)),
            r#"{"resourceType":"Bundle","type":"searchset","total":0}"#
        );
        assert_eq!(
            text(Bundle::search_page(vec![found("a")], None, None)),
            r#"{"resourceType":"Bundle","type":"searchset","entry":[{"fullUrl":"Patient/a","resource":{"id":"a"},"search":{"mode":"match"}}]}"#
        );
    }

    #[test]
    fn counted_entries_and_call_order_are_pinned() {
        assert_eq!(
            text(Bundle::history().counted(Vec::new())),
            r#"{"resourceType":"Bundle","type":"history","total":0,"entry":[]}"#
        );
        assert_eq!(
            text(Bundle::collection().counted(vec![Entry::of("urn:x:1".into(), json!({}))])),
            r#"{"resourceType":"Bundle","type":"collection","total":1,"entry":[{"fullUrl":"urn:x:1","resource":{}}]}"#
        );
        let audit = Bundle::searchset()
            .total(7)
            .entries_if_any(Vec::new())
            .next("AuditEvent?_page=y".into());
        assert_eq!(
            text(audit),
            r#"{"resourceType":"Bundle","type":"searchset","total":7,"link":[{"relation":"next","url":"AuditEvent?_page=y"}]}"#
        );
    }

    #[test]
    fn a_streamed_bundle_is_the_same_text_as_a_built_one() {
        let entries = [
            Entry::of("Patient/a".into(), json!({"id": "a"})),
            Entry::of("Patient/b".into(), json!({"id": "b"})),
        ];
        let head = Bundle::collection().streamed_head();
        assert_eq!(
            head,
            r#"{"resourceType":"Bundle","type":"collection","entry":["#
        );
        let body: Vec<String> = entries
            .iter()
            .map(|e| e.clone().into_value().to_string())
            .collect();
        let streamed = format!("{head}{}{}", body.join(","), Bundle::STREAMED_TAIL);
        assert_eq!(streamed, text(Bundle::collection().entries(entries)));
        let empty = format!("{head}{}", Bundle::STREAMED_TAIL);
        assert_eq!(empty, text(Bundle::collection().entries(Vec::new())));
    }
}
