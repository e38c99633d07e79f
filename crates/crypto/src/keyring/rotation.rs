//! KEK rotation: the keyring's KEK versions live behind a lock so a new version can be added
//! (or a retired one dropped) while the keyring is shared by every request of a running
//! server; a record's data key is rewrapped from one KEK version to another without the DEK
//! leaving zeroizing memory.
use super::{KEK_LINKED, KekKind, Keyring, RecordAad, RootKeyProvider, wrap_aad};
use crate::aead;
use crate::error::CryptoError;
use crate::key::Key32;
use phivault_core::KeyringEntry;
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

/// One KEK version: the key and what the DEKs it wraps bind.
#[derive(Debug)]
pub(super) struct Kek {
    pub(super) key: Key32,
    pub(super) kind: KekKind,
}

impl Kek {
    pub(super) fn new(key: Key32, kind: KekKind) -> Self {
        Self { key, kind }
    }
}

/// The KEK versions of a keyring; the highest is current (new writes are wrapped by it).
/// Versions are numbered across both kinds: a version is of one kind only.
#[derive(Debug)]
pub(super) struct Keks {
    keys: RwLock<BTreeMap<u32, Kek>>,
}

impl Keks {
    pub(super) fn new(keys: BTreeMap<u32, Kek>) -> Result<Self, CryptoError> {
        if keys.is_empty() {
            return Err(CryptoError::MissingKey(KEK_LINKED.into()));
        }
        Ok(Self {
            keys: RwLock::new(keys),
        })
    }

    /// The current (highest) version. A keyring always holds one: `new` refuses an empty set
    /// and `refresh` never empties it.
    pub(super) fn current(&self) -> u32 {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.keys().next_back().copied().unwrap_or(0)
    }

    /// Runs `f` with KEK `version`.
    pub(super) fn with<T>(
        &self,
        version: u32,
        f: impl FnOnce(&Kek) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let kek = keys
            .get(&version)
            .ok_or(CryptoError::UnknownKeyVersion(version))?;
        f(kek)
    }

    /// Runs `f` with the current KEK and its version.
    pub(super) fn with_current<T>(
        &self,
        f: impl FnOnce(u32, &Kek) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let (version, kek) = keys
            .iter()
            .next_back()
            .ok_or_else(|| CryptoError::MissingKey(KEK_LINKED.into()))?;
        f(*version, kek)
    }

    fn versions(&self) -> Vec<u32> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.keys().copied().collect()
    }
}

impl Keyring {
    /// A new random KEK of version `version`, of the linked kind (it binds the patient link),
    /// wrapped by the root key, as a keyring entry to store. This keyring uses it once it has
    /// loaded it back ([`Keyring::refresh_keks`]), so every node takes it from the same stored
    /// entry.
    pub fn new_kek_entry(
        root: &dyn RootKeyProvider,
        version: u32,
        now_millis: i64,
    ) -> Result<KeyringEntry, CryptoError> {
        let key = Key32::random()?;
        Ok(KeyringEntry {
            purpose: KEK_LINKED.into(),
            version,
            wrapped: root.wrap(&wrap_aad(KEK_LINKED, version), key.bytes())?,
            created_at: now_millis,
        })
    }

    /// Brings the KEK versions in line with the stored keyring `entries`: versions not held yet
    /// are unwrapped and added, versions no longer stored (retired) are dropped, and the
    /// highest becomes current. Other purposes' entries are ignored (they never change).
    /// Returns the current version. Entries with no KEK at all change nothing.
    pub fn refresh_keks(
        &self,
        root: &dyn RootKeyProvider,
        entries: &[KeyringEntry],
    ) -> Result<u32, CryptoError> {
        let stored: Vec<(&KeyringEntry, KekKind)> = entries
            .iter()
            .filter_map(|e| KekKind::of_purpose(&e.purpose).map(|k| (e, k)))
            .collect();
        if stored.is_empty() {
            return Err(CryptoError::MissingKey(KEK_LINKED.into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        if !stored.iter().all(|(e, _)| seen.insert(e.version)) {
            // One version under both purposes: which kind it is cannot be told.
            return Err(CryptoError::KeyringMismatch);
        }
        let held = self.keks.versions();
        // Unwrap outside the lock: an HSM round trip must not stall sealing and opening.
        let mut fresh = Vec::new();
        for (e, kind) in stored.iter().filter(|(e, _)| !held.contains(&e.version)) {
            let raw = root
                .unwrap(&wrap_aad(kind.purpose(), e.version), &e.wrapped)
                .map_err(|_| CryptoError::KeyringMismatch)?;
            let key = Key32::from_slice(&raw).map_err(|_| CryptoError::KeyringMismatch)?;
            fresh.push((e.version, Kek::new(key, *kind)));
        }
        let mut keys = self
            .keks
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        keys.retain(|v, _| stored.iter().any(|(e, _)| e.version == *v));
        keys.extend(fresh);
        Ok(keys.keys().next_back().copied().unwrap_or(0))
    }

    /// The KEK versions this keyring holds, oldest first.
    pub fn kek_versions(&self) -> Vec<u32> {
        self.keks.versions()
    }

    /// Whether this keyring holds KEK `version`.
    pub fn has_kek(&self, version: u32) -> bool {
        self.keks.with(version, |_| Ok(())).is_ok()
    }

    /// Whether KEK `version` is held and binds the patient link.
    pub fn kek_binds_link(&self, version: u32) -> bool {
        self.kek_kind(version) == Some(KekKind::Linked)
    }

    /// Rewraps a record's data key from KEK `from` to KEK `to`: opened under the old KEK (its
    /// associated data naming `from`, in `from`'s format), sealed under the new one (naming
    /// `to`, in `to`'s: from a legacy to a linked KEK, this binds `aad.link`, the link stored
    /// beside the record now — the migration). The DEK is held only in zeroizing memory. A key
    /// that does not open is [`CryptoError::Integrity`].
    pub fn rewrap_dek(
        &self,
        aad: &RecordAad<'_>,
        from: u32,
        wrapped: &[u8],
        to: u32,
    ) -> Result<Vec<u8>, CryptoError> {
        let dek = self.open_dek(aad, from, wrapped)?;
        self.keks.with(to, |kek| {
            aead::seal(&kek.key, &aad.dek(to, kek.kind), dek.bytes())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::SealedParts;
    use crate::keyring::tests::{TestRoot, ids};
    use phivault_core::{ResourceType, StoreKind, Version};

    #[test]
    fn a_new_kek_version_becomes_current_and_rewraps_old_keys() {
        let root = TestRoot(Key32::random().unwrap());
        let (ring, mut entries) = Keyring::generate(&root, 0).unwrap();
        let (org, p1, _) = ids();
        let aad = RecordAad {
            org: &org,
            store: StoreKind::Identity,
            rtype: ResourceType::PATIENT,
            id: &p1,
            version: Version(1),
            link: None,
        };
        let old = ring.seal_record(&aad, b"{}").unwrap();
        assert_eq!(old.kek_version, 1);
        // Another keyring loaded from the same entries: a second node.
        let node2 = Keyring::load(&root, &entries).unwrap();
        entries.push(Keyring::new_kek_entry(&root, 2, 5).unwrap());
        assert_eq!(ring.refresh_keks(&root, &entries).unwrap(), 2);
        assert_eq!(ring.kek_versions(), [1, 2]);
        let new = ring.seal_record(&aad, b"{}").unwrap();
        assert_eq!(new.kek_version, 2);
        // The node that has not refreshed cannot open it yet; after a refresh it can.
        assert_eq!(
            node2.open_record(&aad, &new).unwrap_err(),
            CryptoError::UnknownKeyVersion(2)
        );
        node2.refresh_keks(&root, &entries).unwrap();
        assert_eq!(&*node2.open_record(&aad, &new).unwrap(), b"{}");
        // Rewrapping: the same DEK, now under v2; bound to the new version.
        let rewrapped = ring.rewrap_dek(&aad, 1, &old.wrapped_dek, 2).unwrap();
        let moved = SealedParts {
            kek_version: 2,
            wrapped_dek: rewrapped.clone(),
            ciphertext: old.ciphertext.clone(),
        };
        assert_eq!(&*ring.open_record(&aad, &moved).unwrap(), b"{}");
        let mislabelled = SealedParts {
            kek_version: 1,
            ..moved.clone()
        };
        assert!(ring.open_record(&aad, &mislabelled).is_err());
        // Another row's key does not rewrap under this row's binding.
        let other = RecordAad {
            version: Version(2),
            ..aad
        };
        assert_eq!(
            ring.rewrap_dek(&other, 1, &old.wrapped_dek, 2).unwrap_err(),
            CryptoError::Integrity
        );
        // Retiring v1: the stored entries no longer list it; a refresh drops it.
        entries.retain(|e| !(e.purpose == KEK_LINKED && e.version == 1));
        ring.refresh_keks(&root, &entries).unwrap();
        assert_eq!(ring.kek_versions(), [2]);
        assert!(!ring.has_kek(1));
        assert_eq!(&*ring.open_record(&aad, &moved).unwrap(), b"{}");
        // A KEK entry under another root key is refused, and changes nothing.
        let stranger = TestRoot(Key32::random().unwrap());
        let mut foreign = entries.clone();
        foreign.push(Keyring::new_kek_entry(&stranger, 3, 9).unwrap());
        assert_eq!(
            ring.refresh_keks(&root, &foreign).unwrap_err(),
            CryptoError::KeyringMismatch
        );
        assert_eq!(ring.current_kek_version(), 2);
        // No KEK at all: refused, nothing dropped.
        assert!(ring.refresh_keks(&root, &[]).is_err());
        assert_eq!(ring.kek_versions(), [2]);
    }
}

#[cfg(test)]
mod linked_tests {
    use super::*;
    use crate::keyring::KEK_LEGACY;
    use crate::keyring::SealedParts;
    use crate::keyring::tests::{TestRoot, ids};
    use phivault_core::{Digest32, ResourceType, StoreKind, Version};

    /// A KEK entry of the kind vaults made before the link was bound.
    fn legacy_entry(root: &TestRoot, version: u32) -> KeyringEntry {
        let key = Key32::random().unwrap();
        KeyringEntry {
            purpose: KEK_LEGACY.into(),
            version,
            wrapped: root
                .wrap(&wrap_aad(KEK_LEGACY, version), key.bytes())
                .unwrap(),
            created_at: 0,
        }
    }

    #[test]
    fn a_linked_kek_binds_the_patient_link_and_the_migration_rewraps_legacy_keys() {
        let root = TestRoot(Key32::random().unwrap());
        let (ring, mut entries) = Keyring::generate(&root, 0).unwrap();
        assert!(ring.kek_binds_link(1), "a new vault binds the link");
        let (org, obs, _) = ids();
        let (a, b) = (Digest32([1; 32]), Digest32([2; 32]));
        let of = |link| RecordAad {
            org: &org,
            store: StoreKind::Clinical,
            rtype: ResourceType::parse("Observation").unwrap(),
            id: &obs,
            version: Version(1),
            link,
        };
        let sealed = ring.seal_record(&of(Some(&a)), b"{}").unwrap();
        assert_eq!(&*ring.open_record(&of(Some(&a)), &sealed).unwrap(), b"{}");
        for moved in [of(Some(&b)), of(None)] {
            assert_eq!(
                ring.open_record(&moved, &sealed).unwrap_err(),
                CryptoError::Integrity
            );
        }
        let binds = |aad, parts: &SealedParts| {
            ring.dek_binds(&aad, parts.kek_version, &parts.wrapped_dek)
                .unwrap()
        };
        assert!(binds(of(Some(&a)), &sealed));
        assert!(!binds(of(Some(&b)), &sealed));
        // No link is bound too: a record of no patient does not open as A's.
        let unlinked = ring.seal_record(&of(None), b"{}").unwrap();
        assert!(!binds(of(Some(&a)), &unlinked));

        // A legacy KEK becomes current (a vault from before): its keys bind no link.
        entries.push(legacy_entry(&root, 2));
        assert_eq!(ring.refresh_keks(&root, &entries).unwrap(), 2);
        assert_eq!(ring.kek_kind(2), Some(KekKind::Legacy));
        let old = ring.seal_record(&of(Some(&a)), b"{}").unwrap();
        assert_eq!(old.kek_version, 2);
        assert_eq!(&*ring.open_record(&of(Some(&b)), &old).unwrap(), b"{}");
        assert!(!binds(of(Some(&a)), &old), "nothing to confirm");
        // The migration: a linked version, and the legacy key rewrapped to it, binding the link.
        entries.push(Keyring::new_kek_entry(&root, 3, 0).unwrap());
        ring.refresh_keks(&root, &entries).unwrap();
        let rewrapped = SealedParts {
            kek_version: 3,
            wrapped_dek: ring
                .rewrap_dek(&of(Some(&a)), 2, &old.wrapped_dek, 3)
                .unwrap(),
            ciphertext: old.ciphertext.clone(),
        };
        assert_eq!(
            &*ring.open_record(&of(Some(&a)), &rewrapped).unwrap(),
            b"{}"
        );
        assert_eq!(
            ring.open_record(&of(Some(&b)), &rewrapped).unwrap_err(),
            CryptoError::Integrity
        );
        // Meanwhile the row not yet rewrapped still opens in its own version's format.
        assert_eq!(&*ring.open_record(&of(Some(&a)), &old).unwrap(), b"{}");
        // A linked key does not rewrap under another link.
        assert_eq!(
            ring.rewrap_dek(&of(Some(&b)), 3, &rewrapped.wrapped_dek, 3)
                .unwrap_err(),
            CryptoError::Integrity
        );
    }

    #[test]
    fn a_kek_entry_cannot_change_kind() {
        let root = TestRoot(Key32::random().unwrap());
        let (_, entries) = Keyring::generate(&root, 0).unwrap();
        // A linked entry relabelled legacy (to stop binding the link), and the reverse.
        let mut relabelled = entries.clone();
        relabelled[0].purpose = KEK_LEGACY.into();
        assert_eq!(
            Keyring::load(&root, &relabelled).unwrap_err(),
            CryptoError::KeyringMismatch
        );
        let mut legacy = entries.clone();
        let mut entry = legacy_entry(&root, 2);
        entry.purpose = KEK_LINKED.into();
        legacy.push(entry);
        assert_eq!(
            Keyring::load(&root, &legacy).unwrap_err(),
            CryptoError::KeyringMismatch
        );
        // One version under both purposes: refused at load and at refresh.
        let mut both = entries.clone();
        both.push(legacy_entry(&root, 1));
        assert_eq!(
            Keyring::load(&root, &both).unwrap_err(),
            CryptoError::KeyringMismatch
        );
        let ring = Keyring::load(&root, &entries).unwrap();
        assert_eq!(
            ring.refresh_keks(&root, &both).unwrap_err(),
            CryptoError::KeyringMismatch
        );
    }
}
