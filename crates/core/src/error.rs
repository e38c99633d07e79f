//! Errors of the storage ports. Each carries a message fit for a client and one for the log;
//! neither ever contains PHI (stores only ever see sealed bytes, ids and keyed digests).
use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The database could not be reached or refused the operation (locked, read-only, full...).
    #[error("storage unavailable during {context}: {detail}")]
    Unavailable {
        context: &'static str,
        detail: String,
    },
    /// A row or schema did not have the shape this version of phivault expects.
    #[error("storage corrupt or unexpected during {context}: {detail}")]
    Corrupt {
        context: &'static str,
        detail: String,
    },
    /// The schema was written by a newer phivault.
    #[error(
        "the {store} store has schema version {found}, newer than this phivault knows ({known}); upgrade phivault"
    )]
    SchemaTooNew {
        store: &'static str,
        found: i64,
        known: i64,
    },
}

impl StoreError {
    /// The message a client may see: no internals.
    pub fn client_message(&self) -> &'static str {
        match self {
            StoreError::Unavailable { .. } => "storage is temporarily unavailable",
            StoreError::Corrupt { .. } => "stored data failed an integrity check",
            StoreError::SchemaTooNew { .. } => "storage schema is newer than this server",
        }
    }
}
