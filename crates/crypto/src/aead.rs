//! AES-256-GCM with a fresh random 96-bit nonce per seal. Output: nonce ‖ ciphertext ‖ tag.
use crate::error::CryptoError;
use crate::key::{Key32, random_bytes};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

const TAG_LEN: usize = 16;

fn aead_key(key: &Key32) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, key.bytes())
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Integrity)
}

/// Encrypts and authenticates `plaintext`, binding it to `aad`.
pub fn seal(key: &Key32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes()?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce_bytes);
    let mut body = Zeroizing::new(plaintext.to_vec());
    aead_key(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut *body,
        )
        .map_err(|_| CryptoError::Integrity)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Verifies and decrypts. Any change to the sealed bytes, the key or the associated data gives
/// [`CryptoError::Integrity`] and no plaintext at all.
pub fn open(key: &Key32, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Integrity);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Integrity)?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = aead_key(key)?
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Integrity)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// HMAC-SHA-256.
pub fn hmac_sha256(key: &Key32, msg: &[u8]) -> [u8; 32] {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.bytes());
    let tag = aws_lc_rs::hmac::sign(&k, msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Constant-time check of an HMAC-SHA-256 tag.
pub fn hmac_sha256_verify(key: &Key32, msg: &[u8], tag: &[u8]) -> bool {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.bytes());
    aws_lc_rs::hmac::verify(&k, msg, tag).is_ok()
}

/// Constant-time equality of two secrets (lengths are not hidden).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fresh_nonces() {
        let k = Key32::random().unwrap();
        let a = seal(&k, b"ctx", b"hello").unwrap();
        let b = seal(&k, b"ctx", b"hello").unwrap();
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(&*open(&k, b"ctx", &a).unwrap(), b"hello");
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let k = Key32::random().unwrap();
        let sealed = seal(&k, b"ctx", b"some patient json").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                open(&k, b"ctx", &bad),
                Err(CryptoError::Integrity),
                "byte {i}"
            );
        }
        assert_eq!(
            open(&k, b"other", &sealed),
            Err(CryptoError::Integrity),
            "aad"
        );
        let other = Key32::random().unwrap();
        assert_eq!(open(&other, b"ctx", &sealed), Err(CryptoError::Integrity));
        assert_eq!(open(&k, b"ctx", &sealed[..10]), Err(CryptoError::Integrity));
    }

    #[test]
    fn hmac_verifies_in_constant_time_api() {
        let k = Key32::random().unwrap();
        let t = hmac_sha256(&k, b"m");
        assert!(hmac_sha256_verify(&k, b"m", &t));
        assert!(!hmac_sha256_verify(&k, b"n", &t));
    }
}
