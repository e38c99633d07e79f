//! 256-bit symmetric keys that zeroize on drop and never print.
use crate::error::CryptoError;
use phivault_core::Secret;

/// A 256-bit key. `Debug` prints `[REDACTED]`; memory is wiped on drop.
#[derive(Debug)]
pub struct Key32(Secret<[u8; 32]>);

impl Key32 {
    /// A fresh key from the operating system's CSPRNG (via AWS-LC).
    pub fn random() -> Result<Self, CryptoError> {
        let mut buf = [0u8; 32];
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| CryptoError::Random)?;
        let key = Self(Secret::new(buf));
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(key)
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Integrity)?;
        Ok(Self(Secret::new(arr)))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        self.0.expose()
    }
}

/// Fills a buffer with random bytes.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| CryptoError::Random)?;
    Ok(buf)
}

/// A random bearer secret of `N` bytes, base64url without padding.
pub fn random_token<const N: usize>() -> Result<String, CryptoError> {
    use base64::Engine;
    let bytes: [u8; N] = random_bytes()?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A random passphrase (256 bits, base64url), for development data dirs.
pub fn random_passphrase() -> Result<String, CryptoError> {
    use base64::Engine;
    let bytes: [u8; 32] = random_bytes()?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A random (version 4) UUID, for server-assigned resource ids.
pub fn random_uuid() -> Result<String, CryptoError> {
    let mut b: [u8; 16] = random_bytes()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_redacted() {
        let a = Key32::random().unwrap();
        let b = Key32::random().unwrap();
        assert_ne!(a.bytes(), b.bytes());
        let shown = format!("{a:?}");
        assert_eq!(shown, "Key32([REDACTED])");
    }

    fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}

    #[test]
    fn key_material_zeroizes_on_drop() {
        assert_zeroize_on_drop::<Secret<[u8; 32]>>();
    }
}
