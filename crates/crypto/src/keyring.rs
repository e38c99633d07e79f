//! The keyring and envelope encryption.
//!
//! Every key here is random and persisted only wrapped by the root key (through a
//! [`RootKeyProvider`], so an HSM can hold the root key without it ever leaving the token).
//! A record version is sealed with its own random data key (DEK); the DEK is wrapped by the
//! current key-encryption key (KEK). Both ciphertexts carry associated data that binds them to
//! (organization, store, resource type, id, version), so a ciphertext or wrapped key moved to
//! another row does not open. A KEK of the current kind ([`KEK_LINKED`]) also binds the record's
//! patient link into the wrapped DEK's associated data, so a record moved to another patient
//! (or unlinked) in the database does not open either; see `rotation.rs` for the older kind.
use crate::aead;
use crate::encoding::tuple;
use crate::error::CryptoError;
use crate::key::Key32;
use phivault_core::{
    Digest32, IndexKind, KeyringEntry, OrgId, ResourceId, ResourceType, StoreKind, Version,
};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

mod rotation;
use rotation::{Kek, Keks};

/// Where the root key lives. It wraps and unwraps keyring entries; it never hands out the root
/// key itself.
pub trait RootKeyProvider: Send + Sync + std::fmt::Debug {
    fn wrap(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError>;
    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
    /// A short name for reports: `keyfile` or `pkcs11`.
    fn describe(&self) -> &'static str;
}

/// A boxed provider is a provider (the data dir picks one at run time).
impl<T: RootKeyProvider + ?Sized> RootKeyProvider for Box<T> {
    fn wrap(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        (**self).wrap(aad, plaintext)
    }
    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        (**self).unwrap(aad, wrapped)
    }
    fn describe(&self) -> &'static str {
        (**self).describe()
    }
}

/// The purpose of KEK entries of the first kind: their wrapped DEKs do not bind the patient
/// link. Vaults made before it was bound hold them until the migration (a rotation to a
/// [`KEK_LINKED`] version) and `keys retire`.
pub const KEK_LEGACY: &str = "kek";
/// The purpose of KEK entries that bind the patient link into every DEK they wrap. The kind is
/// part of the root key's associated data of the entry (`wrap_aad`), so an entry cannot be
/// relabelled from one kind to the other.
pub const KEK_LINKED: &str = "kek2";
const PEPPER: &str = "pepper";
const AUDIT_MAC: &str = "audit-mac";
const SECRETS: &str = "secrets";
const TOKENS: &str = "tokens";

fn index_purpose(kind: IndexKind) -> String {
    format!("index:{}", kind.as_str())
}

/// What a sealed record is bound to.
#[derive(Debug, Clone, Copy)]
pub struct RecordAad<'a> {
    pub org: &'a OrgId,
    pub store: StoreKind,
    pub rtype: ResourceType,
    pub id: &'a ResourceId,
    pub version: Version,
    /// The keyed pseudonym of the record's patient as stored beside it (`None`: no patient).
    /// Bound into the wrapped DEK by KEKs of the [`KEK_LINKED`] kind.
    pub link: Option<&'a Digest32>,
}

impl RecordAad<'_> {
    fn encode(&self, label: &str, kek_version: Option<u32>) -> Vec<u8> {
        let v = self.version.0.to_be_bytes();
        let k = kek_version.unwrap_or(0).to_be_bytes();
        tuple(label, &self.parts(&v, &k, None))
    }

    fn parts<'b>(&'b self, v: &'b [u8], k: &'b [u8], link: Option<&'b [u8]>) -> Vec<&'b [u8]> {
        let mut parts = vec![
            self.org.as_str().as_bytes(),
            self.store.as_str().as_bytes(),
            self.rtype.as_str().as_bytes(),
            self.id.as_str().as_bytes(),
            v,
            k,
        ];
        parts.extend(link);
        parts
    }

    /// The associated data of the DEK wrapped by KEK `kek_version` of kind `kind`. A linked
    /// KEK's has its own label and one more component: a marker byte, then the link (`0`
    /// alone for none, `1` and the 32 bytes for one), so no link and a link never encode alike.
    fn dek(&self, kek_version: u32, kind: KekKind) -> Vec<u8> {
        match kind {
            KekKind::Legacy => self.encode("dek", Some(kek_version)),
            KekKind::Linked => {
                let v = self.version.0.to_be_bytes();
                let k = kek_version.to_be_bytes();
                let mut link = Vec::with_capacity(33);
                match self.link {
                    None => link.push(0),
                    Some(d) => {
                        link.push(1);
                        link.extend_from_slice(&d.0);
                    }
                }
                tuple("dek-linked", &self.parts(&v, &k, Some(&link)))
            }
        }
    }
}

/// What a KEK version's wrapped DEKs bind: the kind is the purpose of its keyring entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekKind {
    /// Made before the patient link was bound ([`KEK_LEGACY`]).
    Legacy,
    /// Binds the patient link ([`KEK_LINKED`]).
    Linked,
}

impl KekKind {
    pub fn of_purpose(purpose: &str) -> Option<KekKind> {
        match purpose {
            KEK_LEGACY => Some(KekKind::Legacy),
            KEK_LINKED => Some(KekKind::Linked),
            _ => None,
        }
    }

    pub fn purpose(self) -> &'static str {
        match self {
            KekKind::Legacy => KEK_LEGACY,
            KekKind::Linked => KEK_LINKED,
        }
    }
}

/// A sealed record's parts, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedParts {
    pub kek_version: u32,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// The unwrapped keyring, held in memory only (zeroized on drop).
#[derive(Debug)]
pub struct Keyring {
    /// The KEK versions, behind a lock: a rotation (here or on another node) adds one while
    /// records are being sealed and opened.
    keks: Keks,
    pepper: Key32,
    index: BTreeMap<IndexKind, Key32>,
    audit_mac: Key32,
    secrets: Key32,
    tokens: Key32,
}

/// The keys of the index kinds added after the keyring's format was fixed: HKDF-SHA-256 from
/// the secrets key, one per kind, never stored (the same on every node and every backup).
fn derive_index_keys(
    secrets: &Key32,
    index: &mut BTreeMap<IndexKind, Key32>,
) -> Result<(), CryptoError> {
    for kind in IndexKind::DERIVED {
        index.insert(kind, hkdf_key(secrets, &index_purpose(kind))?);
    }
    Ok(())
}

fn hkdf_key(secret: &Key32, purpose: &str) -> Result<Key32, CryptoError> {
    use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
    let prk = Salt::new(HKDF_SHA256, b"phivault.derived-key").extract(secret.bytes());
    let info = [purpose.as_bytes()];
    let okm = prk
        .expand(&info, HKDF_SHA256)
        .map_err(|_| CryptoError::Integrity)?;
    let mut out = Zeroizing::new([0u8; 32]);
    okm.fill(&mut *out).map_err(|_| CryptoError::Integrity)?;
    Key32::from_slice(&*out)
}

fn wrap_aad(purpose: &str, version: u32) -> Vec<u8> {
    tuple("keyring", &[purpose.as_bytes(), &version.to_be_bytes()])
}

impl Keyring {
    /// A fresh keyring and its wrapped entries, to be stored by the control store.
    pub fn generate(
        root: &dyn RootKeyProvider,
        now_millis: i64,
    ) -> Result<(Keyring, Vec<KeyringEntry>), CryptoError> {
        let mut entries = Vec::new();
        let mut make = |purpose: String| -> Result<Key32, CryptoError> {
            let key = Key32::random()?;
            let wrapped = root.wrap(&wrap_aad(&purpose, 1), key.bytes())?;
            entries.push(KeyringEntry {
                purpose,
                version: 1,
                wrapped,
                created_at: now_millis,
            });
            Ok(key)
        };
        let kek = make(KEK_LINKED.into())?;
        let pepper = make(PEPPER.into())?;
        let audit_mac = make(AUDIT_MAC.into())?;
        let secrets = make(SECRETS.into())?;
        let tokens = make(TOKENS.into())?;
        let mut index = BTreeMap::new();
        for kind in IndexKind::ALL {
            index.insert(kind, make(index_purpose(kind))?);
        }
        derive_index_keys(&secrets, &mut index)?;
        let mut keks = BTreeMap::new();
        keks.insert(1, Kek::new(kek, KekKind::Linked));
        Ok((
            Keyring {
                keks: Keks::new(keks)?,
                pepper,
                index,
                audit_mac,
                secrets,
                tokens,
            },
            entries,
        ))
    }

    /// Unwraps stored entries. If the root key cannot open them, this is the wrong root key for
    /// this vault: [`CryptoError::KeyringMismatch`], before any record is touched.
    pub fn load(
        root: &dyn RootKeyProvider,
        entries: &[KeyringEntry],
    ) -> Result<Keyring, CryptoError> {
        let mut keks = BTreeMap::new();
        let mut named: BTreeMap<String, Key32> = BTreeMap::new();
        for e in entries {
            let raw = root
                .unwrap(&wrap_aad(&e.purpose, e.version), &e.wrapped)
                .map_err(|_| CryptoError::KeyringMismatch)?;
            let key = Key32::from_slice(&raw).map_err(|_| CryptoError::KeyringMismatch)?;
            if let Some(kind) = KekKind::of_purpose(&e.purpose) {
                // One version, one kind: the same version under both purposes is refused.
                if keks.insert(e.version, Kek::new(key, kind)).is_some() {
                    return Err(CryptoError::KeyringMismatch);
                }
            } else {
                named.insert(e.purpose.clone(), key);
            }
        }
        let keks = Keks::new(keks)?;
        let mut take = |p: &str| {
            named
                .remove(p)
                .ok_or_else(|| CryptoError::MissingKey(p.to_owned()))
        };
        let pepper = take(PEPPER)?;
        let audit_mac = take(AUDIT_MAC)?;
        let secrets = take(SECRETS)?;
        let tokens = take(TOKENS)?;
        let mut index = BTreeMap::new();
        for kind in IndexKind::ALL {
            index.insert(kind, take(&index_purpose(kind))?);
        }
        derive_index_keys(&secrets, &mut index)?;
        Ok(Keyring {
            keks,
            pepper,
            index,
            audit_mac,
            secrets,
            tokens,
        })
    }

    pub fn current_kek_version(&self) -> u32 {
        self.keks.current()
    }

    /// Seals a record version under a fresh DEK wrapped by the current KEK.
    pub fn seal_record(
        &self,
        aad: &RecordAad<'_>,
        plaintext: &[u8],
    ) -> Result<SealedParts, CryptoError> {
        let dek = Key32::random()?;
        let ciphertext = aead::seal(&dek, &aad.encode("record", None), plaintext)?;
        let (kek_version, wrapped_dek) = self.keks.with_current(|version, kek| {
            let wrapped = aead::seal(&kek.key, &aad.dek(version, kek.kind), dek.bytes())?;
            Ok((version, wrapped))
        })?;
        Ok(SealedParts {
            kek_version,
            wrapped_dek,
            ciphertext,
        })
    }

    /// Opens a record version. Any tampering, swap or wrong binding: [`CryptoError::Integrity`].
    pub fn open_record(
        &self,
        aad: &RecordAad<'_>,
        parts: &SealedParts,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let dek = self.open_dek(aad, parts.kek_version, &parts.wrapped_dek)?;
        aead::open(&dek, &aad.encode("record", None), &parts.ciphertext)
    }

    /// Unwraps a record's DEK, checking its binding (the link too, under a linked KEK).
    fn open_dek(
        &self,
        aad: &RecordAad<'_>,
        kek_version: u32,
        wrapped: &[u8],
    ) -> Result<Key32, CryptoError> {
        let dek = self.keks.with(kek_version, |kek| {
            aead::open(&kek.key, &aad.dek(kek_version, kek.kind), wrapped)
        })?;
        Key32::from_slice(&dek)
    }

    /// Whether the wrapped DEK of a record opens under `aad` — with a linked KEK, whether the
    /// record really is of the patient `aad.link` names, whatever its stored link says. A
    /// legacy KEK's DEK binds no link: `Ok(false)` then, since nothing can be confirmed.
    pub fn dek_binds(
        &self,
        aad: &RecordAad<'_>,
        kek_version: u32,
        wrapped: &[u8],
    ) -> Result<bool, CryptoError> {
        match self.kek_kind(kek_version) {
            None => Err(CryptoError::UnknownKeyVersion(kek_version)),
            Some(KekKind::Legacy) => Ok(false),
            Some(KekKind::Linked) => Ok(self.open_dek(aad, kek_version, wrapped).is_ok()),
        }
    }

    /// The kind of KEK `version`, if this keyring holds it.
    pub fn kek_kind(&self, version: u32) -> Option<KekKind> {
        self.keks.with(version, |kek| Ok(kek.kind)).ok()
    }

    /// The keyed pseudonym that links clinical records to a patient: HMAC(pepper, org, id).
    pub fn pseudonym(&self, org: &OrgId, patient: &ResourceId) -> Digest32 {
        Digest32(aead::hmac_sha256(
            &self.pepper,
            &tuple(
                "pseudonym",
                &[org.as_str().as_bytes(), patient.as_str().as_bytes()],
            ),
        ))
    }

    /// A keyed, stable digest of `input` for `purpose` (e.g. the id a message-derived
    /// resource gets, so replaying the message writes the same resource, not a new one).
    /// Domain-separated from pseudonyms and row ids.
    pub fn derived(&self, org: &OrgId, purpose: &str, input: &str) -> Digest32 {
        Digest32(aead::hmac_sha256(
            &self.pepper,
            &tuple(
                "derived",
                &[
                    org.as_str().as_bytes(),
                    purpose.as_bytes(),
                    input.as_bytes(),
                ],
            ),
        ))
    }

    /// The pseudonymous row id a record is stored under: HMAC(pepper, org, type, id), so no
    /// plaintext resource id (which may equal an identifier value) sits in a store. Distinct
    /// from [`Keyring::pseudonym`], so identity rows and clinical links do not join without
    /// the key.
    pub fn row_id(&self, org: &OrgId, rtype: ResourceType, id: &ResourceId) -> Digest32 {
        Digest32(aead::hmac_sha256(
            &self.pepper,
            &tuple(
                "row-id",
                &[
                    org.as_str().as_bytes(),
                    rtype.as_str().as_bytes(),
                    id.as_str().as_bytes(),
                ],
            ),
        ))
    }

    /// A blind index: HMAC(per-field key, org, normalized value).
    pub fn blind_index(&self, kind: IndexKind, org: &OrgId, normalized: &str) -> Digest32 {
        // Every IndexKind has a key (checked in `load`/`generate`); fall back to the pepper
        // domain-separated by kind rather than panic.
        let key = self.index.get(&kind).unwrap_or(&self.pepper);
        Digest32(aead::hmac_sha256(
            key,
            &tuple(
                kind.as_str(),
                &[org.as_str().as_bytes(), normalized.as_bytes()],
            ),
        ))
    }

    /// Seals a small control secret (a TOTP seed) bound to `context` (e.g. the user id).
    pub fn seal_secret(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        aead::seal(
            &self.secrets,
            &tuple("secret", &[context.as_bytes()]),
            plaintext,
        )
    }

    /// Opens a control secret sealed for `context`.
    pub fn open_secret(
        &self,
        context: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        aead::open(
            &self.secrets,
            &tuple("secret", &[context.as_bytes()]),
            sealed,
        )
    }

    /// The keyed hash under which a bearer secret (session token, backup code, client secret)
    /// is stored: HMAC(tokens key, kind, secret). High-entropy secrets need no slow hash.
    pub fn token_hash(&self, kind: &str, secret: &str) -> [u8; 32] {
        aead::hmac_sha256(&self.tokens, &tuple(kind, &[secret.as_bytes()]))
    }

    /// HMAC under the audit key, for the audit chain.
    /// A key for `purpose` derived (HKDF-SHA-256) from the keyring's secrets key: the same
    /// for every node and every backup of this vault, never stored.
    pub fn derived_key(&self, purpose: &str) -> Result<Key32, CryptoError> {
        hkdf_key(&self.secrets, purpose)
    }

    pub fn audit_mac(&self, msg: &[u8]) -> [u8; 32] {
        aead::hmac_sha256(&self.audit_mac, msg)
    }

    /// Constant-time check of an audit MAC.
    pub fn audit_mac_verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        aead::hmac_sha256_verify(&self.audit_mac, msg, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    pub(super) struct TestRoot(pub(super) Key32);
    impl RootKeyProvider for TestRoot {
        fn wrap(&self, aad: &[u8], p: &[u8]) -> Result<Vec<u8>, CryptoError> {
            aead::seal(&self.0, aad, p)
        }
        fn unwrap(&self, aad: &[u8], w: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
            aead::open(&self.0, aad, w)
        }
        fn describe(&self) -> &'static str {
            "test"
        }
    }

    pub(super) fn ids() -> (OrgId, ResourceId, ResourceId) {
        (
            OrgId::parse("default").unwrap(),
            ResourceId::parse("p1").unwrap(),
            ResourceId::parse("p2").unwrap(),
        )
    }

    #[test]
    fn generate_load_round_trip_and_wrong_root() {
        let root = TestRoot(Key32::random().unwrap());
        let (ring, entries) = Keyring::generate(&root, 0).unwrap();
        assert_eq!(entries.len(), 5 + IndexKind::ALL.len());
        let again = Keyring::load(&root, &entries).unwrap();
        let (org, p1, _) = ids();
        assert_eq!(ring.pseudonym(&org, &p1), again.pseudonym(&org, &p1));
        let other = TestRoot(Key32::random().unwrap());
        assert_eq!(
            Keyring::load(&other, &entries).unwrap_err(),
            CryptoError::KeyringMismatch
        );
        // An entry relabelled as another purpose does not open.
        let mut swapped = entries.clone();
        swapped[0].purpose = "pepper".into();
        swapped[1].purpose = "kek".into();
        assert_eq!(
            Keyring::load(&root, &swapped).unwrap_err(),
            CryptoError::KeyringMismatch
        );
    }

    #[test]
    fn records_are_bound_to_their_place() {
        let root = TestRoot(Key32::random().unwrap());
        let (ring, _) = Keyring::generate(&root, 0).unwrap();
        let (org, p1, p2) = ids();
        let a1 = RecordAad {
            org: &org,
            store: StoreKind::Identity,
            rtype: ResourceType::PATIENT,
            id: &p1,
            version: Version(1),
            link: None,
        };
        let sealed = ring.seal_record(&a1, b"{\"name\":\"x\"}").unwrap();
        assert_eq!(
            &*ring.open_record(&a1, &sealed).unwrap(),
            b"{\"name\":\"x\"}"
        );
        let moved = [
            RecordAad { id: &p2, ..a1 },
            RecordAad {
                version: Version(2),
                ..a1
            },
            RecordAad {
                store: StoreKind::Clinical,
                ..a1
            },
            RecordAad {
                org: &OrgId::parse("other").unwrap(),
                ..a1
            },
            // A link added where there was none (the patient link is bound).
            RecordAad {
                link: Some(&Digest32([0; 32])),
                ..a1
            },
        ];
        for aad in &moved {
            assert_eq!(
                ring.open_record(aad, &sealed).unwrap_err(),
                CryptoError::Integrity
            );
        }
        let mut bad = sealed.clone();
        bad.kek_version = 9;
        assert_eq!(
            ring.open_record(&a1, &bad).unwrap_err(),
            CryptoError::UnknownKeyVersion(9)
        );
    }

    #[test]
    fn pseudonyms_and_indexes_are_keyed_and_separated() {
        let root = TestRoot(Key32::random().unwrap());
        let (a, _) = Keyring::generate(&root, 0).unwrap();
        let (b, _) = Keyring::generate(&root, 0).unwrap();
        let (org, p1, p2) = ids();
        assert_ne!(a.pseudonym(&org, &p1), a.pseudonym(&org, &p2));
        assert_ne!(a.pseudonym(&org, &p1), b.pseudonym(&org, &p1));
        let other = OrgId::parse("other").unwrap();
        assert_ne!(a.pseudonym(&org, &p1), a.pseudonym(&other, &p1));
        assert_ne!(
            a.blind_index(IndexKind::Phone, &org, "5551234"),
            a.blind_index(IndexKind::Identifier, &org, "5551234")
        );
        assert_eq!(
            a.blind_index(IndexKind::Phone, &org, "5551234"),
            a.blind_index(IndexKind::Phone, &org, "5551234")
        );
    }
}
