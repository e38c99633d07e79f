//! TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, ±1 step) for MFA. The seed is 160 random
//! bits; the caller stores it sealed and remembers the last accepted step, so a code is
//! accepted once.
use crate::error::CryptoError;
use crate::key::random_bytes;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

pub const SEED_LEN: usize = 20;

/// A fresh random seed.
pub fn new_seed() -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let seed: [u8; SEED_LEN] = random_bytes()?;
    Ok(Zeroizing::new(seed.to_vec()))
}

fn totp(seed: &[u8], account: &str) -> Result<Totp, CryptoError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(seed.to_vec())
        .with_issuer(Some("phivault"))
        .with_account_name(account)
        .build()
        .map_err(|_| CryptoError::Kdf)
}

/// The `otpauth://` URI an authenticator app enrolls from.
pub fn otpauth_uri(seed: &[u8], account: &str) -> Result<Zeroizing<String>, CryptoError> {
    totp(seed, account)?
        .to_url()
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Kdf)
}

/// The base32 seed, for manual entry.
pub fn seed_base32(seed: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(totp_rs::Secret::from(seed.to_vec()).to_base32())
}

/// Decodes a base32 seed (as shown at enrollment).
pub fn seed_from_base32(s: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::try_from_base32(s)
        .ok()
        .map(|x| AsRef::<[u8]>::as_ref(&x).to_vec())
}

/// The time step a code matches at `unix_seconds` (±1 step), if any.
pub fn check(seed: &[u8], code: &str, unix_seconds: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(seed, "x").ok()?.check(code, unix_seconds)
}

/// The code for a time (for tests and tools).
pub fn code_at(seed: &[u8], unix_seconds: u64) -> Result<String, CryptoError> {
    Ok(totp(seed, "x")?.generate(unix_seconds).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", T = 59 → 94287082 (8 digits);
        // its last 6 digits are the 6-digit code.
        let seed = b"12345678901234567890";
        assert_eq!(code_at(seed, 59).unwrap(), "287082");
        assert_eq!(check(seed, "287082", 59), Some(1));
        // ±1 step, not 2.
        assert_eq!(check(seed, "287082", 59 + 30), Some(1));
        assert_eq!(check(seed, "287082", 59 + 60), None);
        assert_eq!(check(seed, "28708", 59), None);
        assert_eq!(check(seed, "abcdef", 59), None);
    }

    #[test]
    fn uri_names_issuer_and_account() {
        let seed = new_seed().unwrap();
        let uri = otpauth_uri(&seed, "alice").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/phivault:alice?"),
            "{}",
            *uri
        );
        assert!(uri.contains(seed_base32(&seed).as_str()));
    }
}
