//! Password hashing with Argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane), PHC
//! strings. Callers run these off the async executor: they are deliberately slow.
use crate::error::CryptoError;
use crate::key::random_bytes;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

fn hasher() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(|_| CryptoError::Kdf)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string of a fresh Argon2id hash of `password` with a random 16-byte salt.
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt: [u8; 16] = random_bytes()?;
    let hash = hasher()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|_| CryptoError::Kdf)?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string (constant time inside argon2).
pub fn verify_password(password: &str, phc: &str) -> bool {
    match hasher() {
        Ok(h) => PasswordVerifier::<str>::verify_password(&h, password.as_bytes(), phc).is_ok(),
        Err(_) => false,
    }
}

/// Spends the same work as a real verification, for unknown users, so timing does not tell
/// whether a username exists.
pub fn dummy_verify(password: &str) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(phc) = DUMMY.get_or_init(|| hash_password("phivault dummy password").ok()) {
        let _ = verify_password(password, phc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse battery staple").unwrap();
        let b = hash_password("correct horse battery staple").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(verify_password("correct horse battery staple", &a));
        assert!(!verify_password("correct horse battery stapler", &a));
        assert!(!verify_password("x", "not a phc string"));
    }
}
