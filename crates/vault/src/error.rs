//! Vault errors. Each has a message for the client ([`VaultError::client_message`]) and one for
//! the log (`Display`); neither ever contains a PHI value, a key or a secret.
use phivault_core::{StoreError, Version};
use phivault_crypto::CryptoError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum VaultError {
    /// The input was not acceptable. The text says what was wrong, never echoing values.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Well-formed, but against a rule (a required element missing, a reference to a patient
    /// that does not exist). The text names the rule, never a value.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// A search whose criteria select too much: the text says which criterion to add.
    #[error("too costly: {0}")]
    TooCostly(String),
    #[error("not found")]
    NotFound,
    #[error("deleted")]
    Gone,
    /// Optimistic concurrency: the caller's version is not the current one.
    #[error("version conflict (current version: {current:?})")]
    Conflict { current: Option<Version> },
    #[error("integrity check failed: {0}")]
    Integrity(CryptoError),
    #[error("key error: {0}")]
    Crypto(CryptoError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// Authentication failed. The reason is for the log; the client only ever hears
    /// "authentication failed".
    #[error("authentication failed: {0}")]
    Unauthenticated(&'static str),
    /// Authenticated, but not allowed.
    #[error("forbidden")]
    Forbidden,
    /// The audit event could not be made durable: nothing was released or changed.
    #[error("audit trail unavailable: {0}")]
    Audit(String),
}

impl From<CryptoError> for VaultError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Integrity | CryptoError::UnknownKeyVersion(_) => VaultError::Integrity(e),
            other => VaultError::Crypto(other),
        }
    }
}

impl VaultError {
    /// What a client may be told.
    pub fn client_message(&self) -> String {
        match self {
            VaultError::Invalid(m) | VaultError::Unprocessable(m) | VaultError::TooCostly(m) => {
                m.clone()
            }
            VaultError::NotFound => "no such resource".into(),
            VaultError::Gone => "the resource was deleted".into(),
            VaultError::Conflict { .. } => {
                "the resource was changed by someone else: read it again and retry".into()
            }
            VaultError::Integrity(_) => {
                "stored data failed its integrity check; nothing was released".into()
            }
            VaultError::Crypto(_) => "a key operation failed".into(),
            VaultError::Store(e) => e.client_message().into(),
            VaultError::Unauthenticated(_) => "authentication failed".into(),
            VaultError::Forbidden => "not allowed".into(),
            VaultError::Audit(_) => {
                "the audit trail is unavailable, so nothing was released or changed".into()
            }
        }
    }
}
