//! Secrets that redact themselves in `Debug` and wipe their memory on drop.
use std::fmt;
use zeroize::Zeroize;

/// A secret value. `Debug` prints `[REDACTED]`; dropping it zeroizes the contents.
/// There is deliberately no `Display`, `Clone` or `Serialize`.
pub struct Secret<T: Zeroize>(T);

/// A secret text: a passphrase, password or token.
pub type SecretString = Secret<String>;

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// Borrow the secret. Call sites are easy to grep for.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<T: Zeroize> Zeroize for Secret<T> {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> zeroize::ZeroizeOnDrop for Secret<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::new("hunter2-but-longer".to_owned());
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }

    #[test]
    fn zeroize_wipes_contents() {
        let mut s = Secret::new(vec![7u8; 32]);
        s.zeroize();
        assert!(s.expose().iter().all(|b| *b == 0));
        let mut t = SecretString::new("passphrase".to_owned());
        t.zeroize();
        assert!(t.expose().is_empty());
    }

    fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}

    #[test]
    fn secret_zeroizes_on_drop() {
        assert_zeroize_on_drop::<SecretString>();
    }
}
