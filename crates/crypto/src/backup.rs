//! Encryption of backup files: the payload is cut into chunks, each sealed with AES-256-GCM
//! under the backup key, a key derived (HKDF-SHA-256) from the keyring's secrets key, so a
//! backup opens only with the vault's root key. Each chunk's associated data binds it to the
//! file's header (its SHA-256), its position and whether it is the last one, so a chunk moved,
//! dropped, duplicated or cut off — or a header changed — fails to open.
use crate::aead;
use crate::error::CryptoError;
use crate::key::Key32;
use crate::keyring::Keyring;
use zeroize::Zeroizing;

/// Seals and opens the chunks of one backup file.
#[derive(Debug)]
pub struct BackupCipher {
    key: Key32,
    header_hash: [u8; 32],
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl BackupCipher {
    /// The cipher for a backup whose (clear, authenticated) header is `header`.
    pub fn new(keyring: &Keyring, header: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            key: keyring.derived_key("backup-v1")?,
            header_hash: sha256(header),
        })
    }

    fn aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"phivault.backup.v1");
        aad.extend_from_slice(&self.header_hash);
        aad.extend_from_slice(&index.to_be_bytes());
        aad.push(u8::from(last));
        aad
    }

    /// Seals chunk number `index` (`last` for the final one).
    pub fn seal_chunk(&self, index: u64, last: bool, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        aead::seal(&self.key, &self.aad(index, last), plain)
    }

    /// Opens chunk number `index`; [`CryptoError::Integrity`] on any change.
    pub fn open_chunk(
        &self,
        index: u64,
        last: bool,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        aead::open(&self.key, &self.aad(index, last), sealed)
    }
}

/// SHA-256 over data fed in pieces.
pub struct Sha256(aws_lc_rs::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
}

impl Sha256 {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> [u8; 32] {
        let d = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_sha256_matches_one_shot() {
        let mut h = Sha256::default();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), sha256(b"hello world"));
        assert_ne!(sha256(b"a"), sha256(b"b"));
    }
}
