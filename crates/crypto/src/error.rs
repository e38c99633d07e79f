use thiserror::Error;

/// Crypto failures. None of them carries key material or plaintext.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CryptoError {
    /// A ciphertext, wrapped key or tag did not verify: it was altered, moved, or belongs to
    /// another key.
    #[error(
        "integrity check failed: the stored data was altered, moved or does not belong to this record"
    )]
    Integrity,
    #[error("wrong passphrase: the root key could not be unsealed")]
    WrongPassphrase,
    #[error("the root key does not match this vault's keyring (key check failed)")]
    KeyringMismatch,
    #[error("the key file is not a phivault key file or is damaged: {0}")]
    KeyfileFormat(&'static str),
    #[error("the keyring is incomplete: missing {0}")]
    MissingKey(String),
    #[error("a record is wrapped by key version {0}, which is not in the keyring")]
    UnknownKeyVersion(u32),
    #[error("key derivation failed")]
    Kdf,
    #[error("the system random number generator failed")]
    Random,
    #[error("key file I/O failed: {0}")]
    Io(String),
    /// The PKCS#11 root key could not be used (module, token, login, key); the text names what.
    #[error("{0}")]
    Hsm(String),
}
