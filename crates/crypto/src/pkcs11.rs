//! The HSM root-key provider: an AES-256 key inside a PKCS#11 token that never leaves it.
//!
//! The key is a token object (`CKA_TOKEN`), private, sensitive and not extractable, found by
//! its label in the token found by its label. Wrapping a keyring entry is AES-GCM *inside the
//! token* (`CKM_AES_GCM`, a fresh random 96-bit IV, the caller's associated data as GCM AAD,
//! a 128-bit tag); the stored form is `version ‖ IV ‖ ciphertext ‖ tag`. So the keyring is
//! sealed by the HSM, and whoever copies the data dir and the database still needs the token
//! and its PIN.
//!
//! The module is loaded at run time (`dlopen`, through the `cryptoki` crate). One session,
//! logged in as the token's user, serves every call behind a mutex: unwrapping happens at
//! start and on key rotation only.
use crate::error::CryptoError;
use crate::key::random_bytes;
use crate::keyring::RootKeyProvider;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use phivault_core::SecretString;
use std::path::PathBuf;
use std::sync::Mutex;
use thiserror::Error;
use zeroize::Zeroizing;

/// The token user's PIN.
pub type Pin = SecretString;

/// The default label of the root key object.
pub const DEFAULT_KEY_LABEL: &str = "phivault-root";

/// PKCS#11 labels are at most 32 bytes.
const MAX_LABEL: usize = 32;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const FORMAT_V1: u8 = 1;

/// Where the root key is: the module, the token and the key, and the PIN to log in with.
#[derive(Debug)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (`.so`), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The root key object's label.
    pub key_label: String,
    /// The user PIN. Redacted in `Debug`, wiped on drop.
    pub pin: Pin,
}

/// What `create` does when the token already holds a key with the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingKey {
    /// Refuse: a second vault should not silently share (or be thought to own) a key.
    Refuse,
    /// Use it (a key provisioned by the HSM's administrators), after checking its attributes.
    Use,
}

/// HSM failures. None carries the PIN or key material; each names the module, token or key.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HsmError {
    #[error("invalid PKCS#11 configuration: {0}")]
    Config(String),
    #[error("cannot load the PKCS#11 module {module}: {reason}")]
    Module { module: String, reason: String },
    #[error(
        "no token labelled '{token}' is present in the PKCS#11 module {module} \
         (is the HSM connected and the token initialized?)"
    )]
    NoToken { module: String, token: String },
    #[error("cannot log in to the token '{token}': {reason}")]
    Login { token: String, reason: String },
    #[error(
        "the token '{token}' holds no key labelled '{key}' (the vault's root key is missing \
         from this token)"
    )]
    NoKey { token: String, key: String },
    #[error(
        "the token '{token}' already holds a key labelled '{key}'; choose another \
         PHIVAULT_PKCS11_KEY_LABEL, or pass --pkcs11-use-existing-key to adopt it"
    )]
    KeyExists { token: String, key: String },
    #[error("the token '{token}' holds {count} keys labelled '{key}'; labels must be unique")]
    DuplicateKey {
        token: String,
        key: String,
        count: usize,
    },
    #[error(
        "the key '{key}' is not usable as a root key: {reason} (it must be AES-256, sensitive, \
         not extractable, for encryption and decryption)"
    )]
    UnsuitableKey { key: String, reason: &'static str },
    #[error("PKCS#11 operation failed: {0}")]
    Operation(String),
}

impl From<HsmError> for CryptoError {
    fn from(e: HsmError) -> Self {
        CryptoError::Hsm(e.to_string())
    }
}

/// A short, secret-free description of a cryptoki error: the return value and the function.
fn reason(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => format!("{rv:?} from C_{f:?}"),
        other => other.to_string(),
    }
}

fn op(e: CkError) -> HsmError {
    HsmError::Operation(reason(&e))
}

/// The root key in a PKCS#11 token.
pub struct Pkcs11Provider {
    session: Mutex<Session>,
    key: ObjectHandle,
    token_label: String,
    key_label: String,
}

impl std::fmt::Debug for Pkcs11Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Provider")
            .field("token", &self.token_label)
            .field("key", &self.key_label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Provider {
    /// Opens the root key of an existing vault: loads the module, finds the token, logs in,
    /// finds the key and checks its attributes.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, HsmError> {
        let session = login(cfg)?;
        let key = find_key(&session, cfg)?.ok_or_else(|| HsmError::NoKey {
            token: cfg.token_label.clone(),
            key: cfg.key_label.clone(),
        })?;
        check_key(&session, key, &cfg.key_label)?;
        Ok(Self::new(session, key, cfg))
    }

    /// For `init`: generates the root key inside the token (`C_GenerateKey`) unless a key with
    /// the label exists; then, by `existing`, refuses or uses that key. Returns the provider
    /// and whether this call generated the key (so a failed `init` can destroy it again).
    pub fn create(cfg: &Pkcs11Config, existing: ExistingKey) -> Result<(Self, bool), HsmError> {
        let session = login(cfg)?;
        if let Some(key) = find_key(&session, cfg)? {
            return match existing {
                ExistingKey::Refuse => Err(HsmError::KeyExists {
                    token: cfg.token_label.clone(),
                    key: cfg.key_label.clone(),
                }),
                ExistingKey::Use => {
                    check_key(&session, key, &cfg.key_label)?;
                    Ok((Self::new(session, key, cfg), false))
                }
            };
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Label(cfg.key_label.as_bytes().to_vec()),
        ];
        let key = session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(op)?;
        check_key(&session, key, &cfg.key_label)?;
        Ok((Self::new(session, key, cfg), true))
    }

    fn new(session: Session, key: ObjectHandle, cfg: &Pkcs11Config) -> Self {
        Self {
            session: Mutex::new(session),
            key,
            token_label: cfg.token_label.clone(),
            key_label: cfg.key_label.clone(),
        }
    }

    /// Destroys the key object. Only for undoing a failed `init` that generated it: nothing
    /// has been sealed under it yet.
    pub fn destroy_key(self) -> Result<(), HsmError> {
        let session = self
            .session
            .into_inner()
            .map_err(|_| HsmError::Operation("session lock poisoned".into()))?;
        session.destroy_object(self.key).map_err(op)
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    /// The key's label.
    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        let session = self
            .session
            .lock()
            .map_err(|_| CryptoError::from(HsmError::Operation("session lock poisoned".into())))?;
        f(&session)
    }
}

impl RootKeyProvider for Pkcs11Provider {
    fn wrap(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let iv: [u8; IV_LEN] = random_bytes()?;
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, aad, (TAG_LEN as u64 * 8).into())
            .map_err(|e| CryptoError::from(op(e)))?;
        let body = self.with_session(|s| {
            s.encrypt(&Mechanism::AesGcm(params), self.key, plaintext)
                .map_err(|e| op(e).into())
        })?;
        let mut out = Vec::with_capacity(1 + IV_LEN + body.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let Some((&FORMAT_V1, rest)) = wrapped.split_first() else {
            return Err(CryptoError::Integrity);
        };
        if rest.len() < IV_LEN + TAG_LEN {
            return Err(CryptoError::Integrity);
        }
        let (iv, body) = rest.split_at(IV_LEN);
        let mut iv_param = [0u8; IV_LEN];
        iv_param.copy_from_slice(iv);
        let params = GcmParams::new(&mut iv_param, aad, (TAG_LEN as u64 * 8).into())
            .map_err(|e| CryptoError::from(op(e)))?;
        self.with_session(|s| {
            match s.decrypt(&Mechanism::AesGcm(params), self.key, body) {
                Ok(plain) => Ok(Zeroizing::new(plain)),
                // A tag that does not verify (altered bytes, another key, other AAD). SoftHSM
                // says CKR_GENERAL_ERROR for it; the spec's CKR_ENCRYPTED_DATA_INVALID is
                // what others say. Errors of C_DecryptInit (a lost session, say) stay HSM
                // errors.
                Err(CkError::Pkcs11(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError,
                    Function::Decrypt,
                )) => Err(CryptoError::Integrity),
                Err(e) => Err(op(e).into()),
            }
        })
    }

    fn describe(&self) -> &'static str {
        "pkcs11"
    }
}

fn check_label(what: &str, label: &str) -> Result<(), HsmError> {
    if label.is_empty() || label.len() > MAX_LABEL {
        return Err(HsmError::Config(format!(
            "the {what} label must be 1 to {MAX_LABEL} bytes"
        )));
    }
    Ok(())
}

/// Loads the module, finds the token by label and opens a read-write session logged in as
/// the user.
fn login(cfg: &Pkcs11Config) -> Result<Session, HsmError> {
    check_label("token", &cfg.token_label)?;
    check_label("key", &cfg.key_label)?;
    if cfg.pin.expose().is_empty() {
        return Err(HsmError::Config("the PIN is empty".into()));
    }
    let module = cfg.module.display().to_string();
    if !cfg.module.is_file() {
        return Err(HsmError::Module {
            module,
            reason: "no such file".into(),
        });
    }
    let ctx = Pkcs11::new(&cfg.module).map_err(|e| HsmError::Module {
        module: module.clone(),
        reason: reason(&e),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another provider in this process initialized the same module already.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(HsmError::Module {
                module,
                reason: reason(&e),
            });
        }
    }
    let slot = find_token(&ctx, &cfg.token_label).map_err(|e| match e {
        None => HsmError::NoToken {
            module: module.clone(),
            token: cfg.token_label.clone(),
        },
        Some(e) => e,
    })?;
    let session = ctx.open_rw_session(slot).map_err(op)?;
    let pin = AuthPin::from(cfg.pin.expose().as_str());
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(e) => Err(HsmError::Login {
            token: cfg.token_label.clone(),
            reason: match &e {
                CkError::Pkcs11(RvError::PinIncorrect, _) => "wrong PIN".into(),
                CkError::Pkcs11(RvError::PinLocked, _) => "the PIN is locked".into(),
                CkError::Pkcs11(RvError::PinExpired, _) => "the PIN has expired".into(),
                CkError::Pkcs11(RvError::UserPinNotInitialized, _) => {
                    "the token has no user PIN yet".into()
                }
                other => reason(other),
            },
        }),
    }
}

/// The slot holding the token labelled `label`: `Err(None)` if there is none.
fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot, Option<HsmError>> {
    let slots = ctx.get_slots_with_token().map_err(|e| Some(op(e)))?;
    let mut found = Vec::new();
    for slot in slots {
        let info = ctx.get_token_info(slot).map_err(|e| Some(op(e)))?;
        if info.label() == label {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(None),
        many => Err(Some(HsmError::Config(format!(
            "{} tokens are labelled '{label}'; token labels must be unique",
            many.len()
        )))),
    }
}

/// The secret-key object labelled `cfg.key_label`, if any.
fn find_key(session: &Session, cfg: &Pkcs11Config) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(cfg.key_label.as_bytes().to_vec()),
        ])
        .map_err(op)?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(HsmError::DuplicateKey {
            token: cfg.token_label.clone(),
            key: cfg.key_label.clone(),
            count: many.len(),
        }),
    }
}

/// Refuses a key that is not AES-256, could leave the token, or cannot encrypt and decrypt.
fn check_key(session: &Session, key: ObjectHandle, label: &str) -> Result<(), HsmError> {
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Token,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Private,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
            ],
        )
        .map_err(op)?;
    let unsuitable = |reason| HsmError::UnsuitableKey {
        key: label.to_owned(),
        reason,
    };
    let (mut aes, mut len32, mut token, mut sensitive, mut fixed, mut enc, mut dec) =
        (false, false, false, false, false, false, false);
    // A public object is usable without the PIN; a key once extractable or not sensitive may
    // have been copied out before it was locked down.
    let (mut private, mut never_extractable, mut always_sensitive) = (false, false, false);
    for a in &attrs {
        match a {
            Attribute::KeyType(t) => aes = *t == KeyType::AES,
            Attribute::ValueLen(n) => len32 = u64::from(*n) == 32,
            Attribute::Token(t) => token = *t,
            Attribute::Sensitive(s) => sensitive = *s,
            Attribute::Extractable(x) => fixed = !*x,
            Attribute::Encrypt(e) => enc = *e,
            Attribute::Decrypt(d) => dec = *d,
            Attribute::Private(p) => private = *p,
            Attribute::NeverExtractable(n) => never_extractable = *n,
            Attribute::AlwaysSensitive(a) => always_sensitive = *a,
            _ => {}
        }
    }
    // An attribute the token did not report counts as a failed check.
    for (ok, why) in [
        (aes, "not AES"),
        (len32, "not 256 bits long"),
        (token, "not a token object"),
        (sensitive, "not sensitive"),
        (fixed, "extractable"),
        (private, "not private (usable without the PIN)"),
        (never_extractable, "once extractable"),
        (always_sensitive, "once not sensitive"),
        (enc, "not allowed to encrypt"),
        (dec, "not allowed to decrypt"),
    ] {
        if !ok {
            return Err(unsuitable(why));
        }
    }
    Ok(())
}
