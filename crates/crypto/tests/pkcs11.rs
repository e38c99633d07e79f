//! The PKCS#11 root-key provider against a real SoftHSM2.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, when the module is initialized in a process, so every
//! test runs its body in a child process of this test binary with a private configuration
//! and token directory (a temp dir). Without SoftHSM2 installed a test prints a note and
//! passes, except in CI (`CI` set), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use phivault_crypto::pkcs11::{ExistingKey, HsmError, Pin, Pkcs11Config, Pkcs11Provider};
use phivault_crypto::{CryptoError, RootKeyProvider};
use std::path::Path;
use std::process::Command;

const TOKEN: &str = "phivault-test";
const PIN: &str = "user-pin-4321";
const SO_PIN: &str = "so-pin-8765";
const KEY: &str = "phivault-root";
const CHILD: &str = "PHIVAULT_TEST_SOFTHSM_DIR";

#[path = "support/softhsm.rs"]
mod softhsm;

/// Runs `body` in a child process with a private SoftHSM2 holding one initialized token
/// `TOKEN` (user PIN `PIN`). `name` is the test function's name.
fn in_softhsm(name: &str, body: impl FnOnce(&Path, &Path)) {
    let Some(module) = softhsm::available(name) else {
        return;
    };
    if let Some(dir) = std::env::var_os(CHILD) {
        body(&module, Path::new(&dir));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hsm = softhsm::SoftHsm::at(tmp.path(), &module);
    hsm.init_token(TOKEN, SO_PIN, PIN);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env(CHILD, tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
}

fn config(module: &Path) -> Pkcs11Config {
    Pkcs11Config {
        module: module.to_owned(),
        token_label: TOKEN.into(),
        key_label: KEY.into(),
        pin: Pin::new(PIN.into()),
    }
}

/// A logged-in session of our own, to look at the token from outside the provider.
fn raw_session(module: &Path) -> Session {
    let ctx = Pkcs11::new(module).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("{e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == TOKEN)
        .unwrap();
    let s = ctx.open_rw_session(slot).unwrap();
    match s.login(UserType::User, Some(&AuthPin::from(PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("{e}"),
    }
    s
}

#[test]
fn wrap_unwrap_round_trip_inside_the_token() {
    in_softhsm("wrap_unwrap_round_trip_inside_the_token", |module, _| {
        let (p, created) = Pkcs11Provider::create(&config(module), ExistingKey::Refuse).unwrap();
        assert!(created);
        assert_eq!(p.describe(), "pkcs11");
        let secret = [7u8; 32];
        let w = p.wrap(b"keyring|kek|1", &secret).unwrap();
        // version ‖ IV ‖ ciphertext ‖ tag: no plaintext inside.
        assert_eq!(w.len(), 1 + 12 + 32 + 16);
        assert!(!w.windows(32).any(|x| x == secret));
        assert_eq!(&*p.unwrap(b"keyring|kek|1", &w).unwrap(), &secret);
        // A fresh IV every time.
        let w2 = p.wrap(b"keyring|kek|1", &secret).unwrap();
        assert_ne!(w[1..13], w2[1..13]);
        // Any flipped byte (format, IV, body, tag) fails as an integrity error.
        for i in [0, 1, 13, w.len() - 1] {
            let mut bad = w.clone();
            bad[i] ^= 1;
            assert_eq!(
                p.unwrap(b"keyring|kek|1", &bad).unwrap_err(),
                CryptoError::Integrity,
                "byte {i}"
            );
        }
        assert_eq!(
            p.unwrap(b"keyring|kek|1", &w[..20]).unwrap_err(),
            CryptoError::Integrity
        );
        // The session still works after failures.
        assert_eq!(&*p.unwrap(b"keyring|kek|1", &w2).unwrap(), &secret);
        // Debug shows labels, never the PIN.
        let shown = format!("{p:?} {:?}", config(module));
        assert!(!shown.contains(PIN), "{shown}");
    });
}

#[test]
fn wrong_aad_fails() {
    in_softhsm("wrong_aad_fails", |module, _| {
        let (p, _) = Pkcs11Provider::create(&config(module), ExistingKey::Refuse).unwrap();
        let w = p.wrap(b"keyring|kek|1", b"a keyring entry").unwrap();
        assert_eq!(
            p.unwrap(b"keyring|kek|2", &w).unwrap_err(),
            CryptoError::Integrity
        );
        assert_eq!(p.unwrap(b"", &w).unwrap_err(), CryptoError::Integrity);
    });
}

#[test]
fn the_root_key_cannot_leave_the_token() {
    in_softhsm("the_root_key_cannot_leave_the_token", |module, _| {
        let (_p, _) = Pkcs11Provider::create(&config(module), ExistingKey::Refuse).unwrap();
        let s = raw_session(module);
        let keys = s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(KEY.as_bytes().to_vec()),
            ])
            .unwrap();
        assert_eq!(keys.len(), 1);
        let key = keys[0];
        // C_GetAttributeValue(CKA_VALUE) is refused: CKR_ATTRIBUTE_SENSITIVE.
        let info = s.get_attribute_info(key, &[AttributeType::Value]).unwrap();
        assert!(
            matches!(info.as_slice(), [AttributeInfo::Sensitive]),
            "{info:?}"
        );
        let got = s.get_attributes(key, &[AttributeType::Value]).unwrap();
        assert!(got.is_empty(), "the key's value was returned");
        // Its attributes say why, and it persists in the token.
        let attrs = s
            .get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::Token,
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                ],
            )
            .unwrap();
        for want in [
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::NeverExtractable(true),
            Attribute::Token(true),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
        ] {
            assert!(attrs.contains(&want), "{want:?} not in {attrs:?}");
        }
        // C_WrapKey under a key of our own is refused too.
        let wrapping = s
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                    Attribute::Wrap(true),
                ],
            )
            .unwrap();
        let err = s
            .wrap_key(&Mechanism::AesKeyWrap, wrapping, key)
            .unwrap_err();
        assert!(
            matches!(err, CkError::Pkcs11(RvError::KeyUnextractable, _)),
            "{err}"
        );
    });
}

#[test]
fn a_second_provider_opens_what_the_first_wrapped() {
    in_softhsm(
        "a_second_provider_opens_what_the_first_wrapped",
        |module, _| {
            let (first, _) = Pkcs11Provider::create(&config(module), ExistingKey::Refuse).unwrap();
            let w = first.wrap(b"aad", b"entry").unwrap();
            let second = Pkcs11Provider::open(&config(module)).unwrap();
            assert_eq!(&*second.unwrap(b"aad", &w).unwrap(), b"entry");
            drop(first);
            let w2 = second.wrap(b"aad", b"other").unwrap();
            let third = Pkcs11Provider::open(&config(module)).unwrap();
            assert_eq!(&*third.unwrap(b"aad", &w2).unwrap(), b"other");
            // create again: refused unless told to use the existing key.
            assert!(matches!(
                Pkcs11Provider::create(&config(module), ExistingKey::Refuse).unwrap_err(),
                HsmError::KeyExists { .. }
            ));
            let (adopted, created) =
                Pkcs11Provider::create(&config(module), ExistingKey::Use).unwrap();
            assert!(!created);
            assert_eq!(&*adopted.unwrap(b"aad", &w).unwrap(), b"entry");
        },
    );
}

#[test]
fn a_destroyed_key_is_gone() {
    in_softhsm("a_destroyed_key_is_gone", |module, _| {
        let (p, created) = Pkcs11Provider::create(&config(module), ExistingKey::Refuse).unwrap();
        assert!(created);
        p.destroy_key().unwrap();
        assert!(matches!(
            Pkcs11Provider::open(&config(module)).unwrap_err(),
            HsmError::NoKey { .. }
        ));
    });
}

#[test]
fn missing_pieces_are_named() {
    in_softhsm("missing_pieces_are_named", |module, dir| {
        // No key yet.
        let e = Pkcs11Provider::open(&config(module)).unwrap_err();
        assert!(matches!(e, HsmError::NoKey { .. }), "{e}");
        assert!(e.to_string().contains(KEY), "{e}");
        Pkcs11Provider::create(&config(module), ExistingKey::Refuse).unwrap();
        // A token label that is not there.
        let mut c = config(module);
        c.token_label = "no-such-token".into();
        let e = Pkcs11Provider::open(&c).unwrap_err();
        assert!(matches!(e, HsmError::NoToken { .. }), "{e}");
        assert!(e.to_string().contains("no-such-token"), "{e}");
        // A wrong PIN, named as such and never echoed.
        let mut c = config(module);
        c.pin = Pin::new("not-the-pin".into());
        let e = Pkcs11Provider::open(&c).unwrap_err();
        assert!(matches!(e, HsmError::Login { .. }), "{e}");
        assert!(e.to_string().contains("wrong PIN"), "{e}");
        assert!(!e.to_string().contains("not-the-pin"), "{e}");
        // A module that does not exist.
        let mut c = config(module);
        c.module = dir.join("missing.so");
        let e = Pkcs11Provider::open(&c).unwrap_err();
        assert!(matches!(e, HsmError::Module { .. }), "{e}");
        assert!(e.to_string().contains("missing.so"), "{e}");
        // A file that is not a PKCS#11 module.
        let mut c = config(module);
        c.module = dir.join("softhsm2.conf");
        let e = Pkcs11Provider::open(&c).unwrap_err();
        assert!(matches!(e, HsmError::Module { .. }), "{e}");
        // A label too long for PKCS#11.
        let mut c = config(module);
        c.key_label = "k".repeat(33);
        assert!(matches!(
            Pkcs11Provider::open(&c).unwrap_err(),
            HsmError::Config(_)
        ));
        // The right configuration still opens.
        Pkcs11Provider::open(&config(module)).unwrap();
    });
}

#[test]
fn an_extractable_key_is_not_adopted() {
    in_softhsm("an_extractable_key_is_not_adopted", |module, _| {
        let s = raw_session(module);
        existing_key(&s, true, true);
        let e = Pkcs11Provider::create(&config(module), ExistingKey::Use).unwrap_err();
        assert!(
            matches!(
                e,
                HsmError::UnsuitableKey {
                    reason: "extractable",
                    ..
                }
            ),
            "{e}"
        );
        let e = Pkcs11Provider::open(&config(module)).unwrap_err();
        assert!(matches!(e, HsmError::UnsuitableKey { .. }), "{e}");
    });
}

#[test]
fn a_public_key_usable_without_the_pin_is_not_adopted() {
    let test = "a_public_key_usable_without_the_pin_is_not_adopted";
    in_softhsm(test, |module, _| {
        existing_key(&raw_session(module), false, false);
        let e = Pkcs11Provider::create(&config(module), ExistingKey::Use).unwrap_err();
        let why = "not private (usable without the PIN)";
        assert!(
            matches!(e, HsmError::UnsuitableKey { reason, .. } if reason == why),
            "{e}"
        );
    });
}

/// An AES key with the root key's label, made outside phivault: private or public,
/// extractable or not.
fn existing_key(s: &Session, private: bool, extractable: bool) {
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Sensitive(true),
            Attribute::Extractable(extractable),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(KEY.as_bytes().to_vec()),
        ],
    )
    .unwrap();
}
