//! phivault-crypto: the only crate that touches key bytes.
//!
//! - [`aead`]: AES-256-GCM seal/open with a fresh random nonce and associated data.
//! - [`keyfile`]: the default root-key provider, a passphrase-sealed `keys/root.key`.
//! - [`pkcs11`]: the HSM root-key provider, an AES key inside a PKCS#11 token.
//! - [`keyring`]: versioned KEKs and purpose keys (pseudonym pepper, blind-index keys, audit MAC
//!   key), each stored only wrapped by the root key; envelope encryption of records.
#![forbid(unsafe_code)]

pub mod aead;
pub mod backup;
mod encoding;
pub mod error;
pub mod key;
pub mod keyfile;
pub mod keyring;
pub mod password;
pub mod pkcs11;
pub mod totp;

pub use error::CryptoError;
pub use key::{Key32, random_passphrase, random_token, random_uuid};
pub use keyfile::{KeyfileProvider, Passphrase};
pub use keyring::{
    KEK_LEGACY, KEK_LINKED, KekKind, Keyring, RecordAad, RootKeyProvider, SealedParts,
};
