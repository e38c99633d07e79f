//! The FHIR R4 JSON that phivault writes, in one place: Bundles ([`Bundle`]: searchset,
//! collection, history, transaction, transaction-response, batch-response), their entries
//! ([`Entry`] with `request`, `response` and `search`), `fullUrl`s, weak ETags and
//! OperationOutcomes ([`OperationOutcome`]). The API, the HL7 adapter, the vault's audit
//! export and the command line build their FHIR answers with it.
//!
//! Pure: no I/O, no store, no key, nothing about HTTP. Elements are written in the order the
//! builder calls are made (the workspace's serde_json keeps insertion order, so that order is
//! part of the output); each shape's exact JSON is pinned by the tests beside it.
pub mod bundle;
pub mod entry;
pub mod outcome;

pub use bundle::{Bundle, BundleType};
pub use entry::{Entry, Method, Request, Response, SearchMode};
pub use outcome::{IssueCode, OperationOutcome, Severity};

use std::fmt::Display;

/// The relative URL of a stored resource, `Type/id` (from the server's FHIR base): its
/// `fullUrl` in the Bundles phivault answers, and the `url` of a transaction's `PUT`.
pub fn full_url(rtype: impl Display, id: impl Display) -> String {
    format!("{rtype}/{id}")
}

/// The `fullUrl` of a resource in an exported collection Bundle: `urn:uuid:<id>` when the id
/// is a UUID (so the Bundle can be imported elsewhere under new ids), `Type/id` otherwise.
pub fn export_full_url(rtype: &str, id: &str) -> String {
    let is_uuid = id.len() == 36
        && id.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if is_uuid {
        format!("urn:uuid:{id}")
    } else {
        full_url(rtype, id)
    }
}

/// The URL of one version of a resource: `Type/id/_history/version` (a `Location`).
pub fn version_url(rtype: impl Display, id: impl Display, version: impl Display) -> String {
    format!("{rtype}/{id}/_history/{version}")
}

/// The weak ETag of a version: `W/"3"`.
pub fn etag(version: impl Display) -> String {
    format!("W/\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_etags_are_pinned() {
        assert_eq!(full_url("Patient", "p1"), "Patient/p1");
        assert_eq!(
            version_url("Observation", "o1", 3),
            "Observation/o1/_history/3"
        );
        assert_eq!(etag(3), "W/\"3\"");
    }

    #[test]
    fn an_exported_uuid_becomes_a_urn_and_anything_else_stays_relative() {
        let uuid = "0b5f8c3e-1d2a-4c6b-9e7f-a1b2c3d4e5f6";
        assert_eq!(export_full_url("Patient", uuid), format!("urn:uuid:{uuid}"));
        assert_eq!(export_full_url("Patient", "p1"), "Patient/p1");
        let upper = "0B5F8C3E-1D2A-4C6B-9E7F-A1B2C3D4E5F6";
        assert_eq!(
            export_full_url("Patient", upper),
            format!("urn:uuid:{upper}")
        );
        let not_quite = "0b5f8c3e-1d2a-4c6b-9e7f_a1b2c3d4e5f6";
        assert_eq!(
            export_full_url("Patient", not_quite),
            format!("Patient/{not_quite}")
        );
        let long = "0b5f8c3e-1d2a-4c6b-9e7f-a1b2c3d4e5f60";
        assert_eq!(
            export_full_url("Observation", long),
            format!("Observation/{long}")
        );
    }
}
