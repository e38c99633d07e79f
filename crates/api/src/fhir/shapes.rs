//! The exact JSON text of the API's history entries, transaction/batch response entries and
//! OperationOutcome answers (the text the code wrote by hand before the `fhir` crate): a
//! field renamed or moved fails here.
use super::bundle::entry_of;
use super::{history_entry, outcome, outcome_with};
use axum::http::StatusCode;
use axum::response::Response;
use phivault_core::{ResourceId, ResourceType, Version};
use phivault_fhir::IssueCode;
use phivault_vault::{EntryResponse, HistoryEntry, Method, Stored, VaultError};
use serde_json::json;

fn patient() -> (ResourceType, ResourceId) {
    (
        ResourceType::parse("Patient").unwrap(),
        ResourceId::parse("p1").unwrap(),
    )
}

fn stored(version: u64) -> Stored {
    let (rtype, id) = patient();
    Stored {
        rtype,
        id,
        version: Version(version),
        resource: json!({"resourceType": "Patient", "id": "p1"}),
        patient: None,
    }
}

fn version(v: u64, kept: bool) -> HistoryEntry {
    HistoryEntry {
        version: Version(v),
        updated_at_millis: 0,
        stored: kept.then(|| stored(v)),
    }
}

#[test]
fn history_entries_are_pinned() {
    let (rtype, id) = patient();
    let text = |h| history_entry(rtype, &id, h).into_value().to_string();
    assert_eq!(
        text(version(1, true)),
        r#"{"fullUrl":"Patient/p1","resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"POST","url":"Patient"},"response":{"status":"200 OK","etag":"W/\"1\"","location":"Patient/p1/_history/1"}}"#
    );
    assert_eq!(
        text(version(2, true)),
        r#"{"fullUrl":"Patient/p1","resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1"},"response":{"status":"200 OK","etag":"W/\"2\"","location":"Patient/p1/_history/2"}}"#
    );
    assert_eq!(
        text(version(3, false)),
        r#"{"fullUrl":"Patient/p1","request":{"method":"DELETE","url":"Patient/p1"},"response":{"status":"204 No Content","etag":"W/\"3\"","location":"Patient/p1/_history/3"}}"#
    );
}

fn answer(method: Method, version: Option<u64>, kept: bool) -> EntryResponse {
    let (rtype, id) = patient();
    EntryResponse {
        method,
        rtype: Some(rtype),
        id: Some(id),
        version: version.map(Version),
        stored: kept.then(|| stored(version.unwrap_or(1))),
        error: None,
    }
}

#[test]
fn transaction_response_entries_are_pinned() {
    let text = |e| entry_of(e).into_value().to_string();
    assert_eq!(
        text(answer(Method::Post, Some(1), true)),
        r#"{"response":{"status":"201 Created","location":"Patient/p1/_history/1","etag":"W/\"1\""},"fullUrl":"Patient/p1","resource":{"resourceType":"Patient","id":"p1"}}"#
    );
    assert_eq!(
        text(answer(Method::Delete, Some(2), false)),
        r#"{"response":{"status":"204 No Content","location":"Patient/p1/_history/2","etag":"W/\"2\""}}"#
    );
    assert_eq!(
        text(answer(Method::Put, None, false)),
        r#"{"response":{"status":"200 OK"}}"#
    );
    let mut failed = answer(Method::Get, Some(1), false);
    failed.error = Some(VaultError::NotFound);
    assert_eq!(
        text(failed),
        r#"{"response":{"status":"404 Not Found","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"no such resource"}]}}}"#
    );
}

async fn body(r: Response) -> String {
    let bytes = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn error_outcomes_are_pinned() {
    let cases = [
        (VaultError::Forbidden, 403, "forbidden", "not allowed"),
        (
            VaultError::Gone,
            410,
            "not-found",
            "the resource was deleted",
        ),
        (VaultError::Invalid("bad".into()), 400, "invalid", "bad"),
        (
            VaultError::TooCostly("big".into()),
            400,
            "too-costly",
            "big",
        ),
        (
            VaultError::Unprocessable("rule".into()),
            422,
            "business-rule",
            "rule",
        ),
    ];
    for (e, status, code, text) in cases {
        let r = outcome(&e);
        assert_eq!(r.status().as_u16(), status);
        let want = format!(
            r#"{{"resourceType":"OperationOutcome","issue":[{{"severity":"error","code":"{code}","diagnostics":"{text}"}}]}}"#
        );
        assert_eq!(body(r).await, want);
    }
    let r = outcome_with(StatusCode::UNAUTHORIZED, IssueCode::Login, "who?");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        body(r).await,
        r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login","diagnostics":"who?"}]}"#
    );
}
