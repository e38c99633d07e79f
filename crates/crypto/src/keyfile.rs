//! The default root-key provider: `keys/root.key`, a random 256-bit root key sealed with
//! AES-256-GCM under a key derived by Argon2id from the operator's passphrase.
//!
//! The file is JSON so an operator can see what it is; the Argon2 parameters are bound into
//! the associated data, so editing them (a downgrade) makes the file fail to open.
use crate::aead;
use crate::encoding::tuple;
use crate::error::CryptoError;
use crate::key::{Key32, random_bytes};
use crate::keyring::RootKeyProvider;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use phivault_core::SecretString;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// An operator passphrase.
pub type Passphrase = SecretString;

/// Shortest passphrase `init` accepts.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Argon2id parameters: 64 MiB, 3 passes, 1 lane — above OWASP's minimum (19 MiB, 2 passes).
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyfileJson {
    format: String,
    version: u32,
    kdf: KdfJson,
    /// base64(nonce ‖ AES-256-GCM(root key) ‖ tag)
    sealed_root_key: String,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

const FORMAT: &str = "phivault-root-key";

fn derive(pass: &Passphrase, kdf: &KdfJson, salt: &[u8]) -> Result<Key32, CryptoError> {
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
        .map_err(|_| CryptoError::Kdf)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pass.expose().as_bytes(), salt, &mut *out)
        .map_err(|_| CryptoError::Kdf)?;
    Key32::from_slice(&*out)
}

fn aad(kdf: &KdfJson) -> Vec<u8> {
    tuple(
        "root-key",
        &[
            kdf.algorithm.as_bytes(),
            &kdf.m_cost_kib.to_be_bytes(),
            &kdf.t_cost.to_be_bytes(),
            &kdf.p_cost.to_be_bytes(),
            kdf.salt.as_bytes(),
        ],
    )
}

/// The root key, unsealed from a key file; it stays in memory (zeroized on drop).
#[derive(Debug)]
pub struct KeyfileProvider {
    root: Key32,
}

impl KeyfileProvider {
    /// Creates a new random root key and writes it, sealed under `pass`, to `path` (mode 0600).
    /// Refuses to overwrite an existing file.
    pub fn create(path: &Path, pass: &Passphrase) -> Result<Self, CryptoError> {
        let root = Key32::random()?;
        let text = seal_file(&root, pass)?;
        write_new_private(path, &text)?;
        Ok(Self { root })
    }

    /// Re-seals this root key under a new passphrase (fresh salt) and replaces `path`
    /// atomically: a 0600 temporary file beside it, synced, renamed over it, the directory
    /// synced. The root key, and so the keyring, is unchanged; the old passphrase no longer
    /// opens the file. A crash leaves either the old file or the new one.
    pub fn reseal(&self, path: &Path, new_pass: &Passphrase) -> Result<(), CryptoError> {
        let text = seal_file(&self.root, new_pass)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root.key".into());
        let tmp = path.with_file_name(format!(".{name}.new"));
        // A leftover of an interrupted change is ours to replace.
        let _ = std::fs::remove_file(&tmp);
        write_new_private(&tmp, &text)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CryptoError::Io(e.kind().to_string())
        })?;
        sync_parent(path)
    }

    /// Opens the key file with `pass`. A wrong passphrase is [`CryptoError::WrongPassphrase`].
    /// Reads the file only: never writes.
    pub fn open(path: &Path, pass: &Passphrase) -> Result<Self, CryptoError> {
        let text = std::fs::read(path).map_err(|e| CryptoError::Io(e.kind().to_string()))?;
        let json: KeyfileJson = serde_json::from_slice(&text)
            .map_err(|_| CryptoError::KeyfileFormat("not valid JSON of the expected shape"))?;
        if json.format != FORMAT || json.version != 1 {
            return Err(CryptoError::KeyfileFormat("unknown format or version"));
        }
        let kdf = &json.kdf;
        if kdf.algorithm != "argon2id-v19"
            || !(19 * 1024..=4 * 1024 * 1024).contains(&kdf.m_cost_kib)
            || !(2..=64).contains(&kdf.t_cost)
            || !(1..=16).contains(&kdf.p_cost)
        {
            return Err(CryptoError::KeyfileFormat(
                "key derivation parameters out of the accepted range",
            ));
        }
        let salt = B64
            .decode(&kdf.salt)
            .map_err(|_| CryptoError::KeyfileFormat("bad salt"))?;
        if salt.len() < 16 {
            return Err(CryptoError::KeyfileFormat("salt too short"));
        }
        let sealed = B64
            .decode(&json.sealed_root_key)
            .map_err(|_| CryptoError::KeyfileFormat("bad sealed key"))?;
        let wrapping = derive(pass, kdf, &salt)?;
        let root =
            aead::open(&wrapping, &aad(kdf), &sealed).map_err(|_| CryptoError::WrongPassphrase)?;
        Ok(Self {
            root: Key32::from_slice(&root)?,
        })
    }
}

impl RootKeyProvider for KeyfileProvider {
    fn wrap(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        aead::seal(&self.root, aad, plaintext)
    }
    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        aead::open(&self.root, aad, wrapped)
    }
    fn describe(&self) -> &'static str {
        "keyfile"
    }
}

/// The key file's bytes: `root` sealed under a key derived from `pass` with a fresh salt.
fn seal_file(root: &Key32, pass: &Passphrase) -> Result<Vec<u8>, CryptoError> {
    if pass.expose().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(CryptoError::KeyfileFormat(
            "the passphrase must be at least 12 characters",
        ));
    }
    let salt: [u8; 16] = random_bytes()?;
    let kdf = KdfJson {
        algorithm: "argon2id-v19".into(),
        m_cost_kib: M_COST_KIB,
        t_cost: T_COST,
        p_cost: P_COST,
        salt: B64.encode(salt),
    };
    let wrapping = derive(pass, &kdf, &salt)?;
    let sealed = aead::seal(&wrapping, &aad(&kdf), root.bytes())?;
    let json = KeyfileJson {
        format: FORMAT.into(),
        version: 1,
        kdf,
        sealed_root_key: B64.encode(sealed),
    };
    serde_json::to_vec_pretty(&json).map_err(|_| CryptoError::KeyfileFormat("could not encode"))
}

/// Syncs the directory holding `path`, so a rename or a new file in it survives a crash.
fn sync_parent(path: &Path) -> Result<(), CryptoError> {
    if let Some(d) = path.parent().and_then(|dir| std::fs::File::open(dir).ok()) {
        d.sync_all()
            .map_err(|e| CryptoError::Io(e.kind().to_string()))?;
    }
    Ok(())
}

/// Writes a new file readable by its owner only, durably (fsync file and directory).
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    let io = |e: std::io::Error| CryptoError::Io(e.kind().to_string());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    sync_parent(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.to_owned())
    }

    #[test]
    fn create_open_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let p = KeyfileProvider::create(&path, &pass("a long test passphrase")).unwrap();
        let w = p.wrap(b"x", b"secret").unwrap();
        let again = KeyfileProvider::open(&path, &pass("a long test passphrase")).unwrap();
        assert_eq!(&*again.unwrap(b"x", &w).unwrap(), b"secret");
        assert_eq!(
            KeyfileProvider::open(&path, &pass("a long test passphrasE")).unwrap_err(),
            CryptoError::WrongPassphrase
        );
        // Refuses to overwrite.
        assert!(KeyfileProvider::create(&path, &pass("another long passphrase")).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The file holds no raw key material in clear: it does not contain the passphrase.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("a long test passphrase"));
    }

    #[test]
    fn downgraded_parameters_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        KeyfileProvider::create(&path, &pass("a long test passphrase")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // Lower the passes (still in range): the bound AAD no longer matches.
        let edited = text.replace("\"t_cost\": 3", "\"t_cost\": 2");
        assert_ne!(text, edited);
        std::fs::write(&path, edited).unwrap();
        assert_eq!(
            KeyfileProvider::open(&path, &pass("a long test passphrase")).unwrap_err(),
            CryptoError::WrongPassphrase
        );
        let weak = text.replace("\"m_cost_kib\": 65536", "\"m_cost_kib\": 8");
        std::fs::write(&path, weak).unwrap();
        assert!(matches!(
            KeyfileProvider::open(&path, &pass("a long test passphrase")).unwrap_err(),
            CryptoError::KeyfileFormat(_)
        ));
    }

    #[test]
    fn reseal_changes_the_passphrase_not_the_root_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let old = pass("a long test passphrase");
        let new = pass("another long passphrase 2");
        let p = KeyfileProvider::create(&path, &old).unwrap();
        let w = p.wrap(b"x", b"secret").unwrap();
        assert!(p.reseal(&path, &pass("short")).is_err(), "policy applies");
        p.reseal(&path, &new).unwrap();
        assert_eq!(
            KeyfileProvider::open(&path, &old).unwrap_err(),
            CryptoError::WrongPassphrase
        );
        let again = KeyfileProvider::open(&path, &new).unwrap();
        assert_eq!(&*again.unwrap(b"x", &w).unwrap(), b"secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["root.key"], "no temporary file left behind");
    }

    #[test]
    fn short_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        assert!(KeyfileProvider::create(&path, &pass("short")).is_err());
        assert!(!path.exists());
    }
}
