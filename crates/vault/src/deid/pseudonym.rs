//! The per-export pepper and what is derived from it: pseudonyms for patients and other
//! resources, and each patient's date offset.
//!
//! The pepper is 256 fresh random bits made for one export and dropped (zeroized) when the
//! export is done; it is never written anywhere. Pseudonyms are HMAC-SHA-256 under it, so two
//! exports cannot be joined on a pseudonym, and no export can be joined to the vault (whose own
//! pseudonyms use the keyring's pepper). This is the re-identification code §164.514(c)
//! allows: not derived from the individual's information in a way anyone can reverse, and its
//! key is never disclosed (nor kept).
use phivault_crypto::{CryptoError, Key32, aead::hmac_sha256};

/// Dates of a patient move by 1 to 365 days, earlier or later (never 0).
pub(crate) const MAX_SHIFT_DAYS: i64 = 365;

/// One export's pepper. `Debug` prints `[REDACTED]`; the key is wiped when this is dropped.
#[derive(Debug)]
pub(crate) struct Pepper(Key32);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Pepper {
    /// A fresh pepper from the operating system's random generator.
    pub(crate) fn fresh() -> Result<Self, CryptoError> {
        Ok(Self(Key32::random()?))
    }

    /// HMAC over a label and length-prefixed parts, so no two inputs collide.
    fn mac(&self, label: &str, parts: &[&str]) -> [u8; 32] {
        let mut m = Vec::with_capacity(64);
        m.extend_from_slice(b"phivault.deid.v1");
        for p in std::iter::once(label).chain(parts.iter().copied()) {
            m.extend_from_slice(&(p.len() as u32).to_be_bytes());
            m.extend_from_slice(p.as_bytes());
        }
        hmac_sha256(&self.0, &m)
    }

    /// A patient's pseudonym (64 hex digits, a valid FHIR id).
    pub(crate) fn patient(&self, patient_id: &str) -> String {
        hex(&self.mac("patient", &[patient_id]))
    }

    /// Any other resource's pseudonym; `key` is its id, or the whole text of a conditional
    /// reference (`Practitioner?identifier=…`), so the same target gets the same pseudonym.
    pub(crate) fn resource(&self, rtype: &str, key: &str) -> String {
        hex(&self.mac("resource", &[rtype, key]))
    }

    /// How many days a patient's dates move: ±1..=365, the same for every record of the
    /// patient within this export, unrelated across exports.
    pub(crate) fn shift_days(&self, patient_id: &str) -> i64 {
        let mac = self.mac("date-shift", &[patient_id]);
        let n = u64::from_be_bytes(mac.first_chunk::<8>().copied().unwrap_or_default());
        let magnitude = (n % MAX_SHIFT_DAYS as u64) as i64 + 1;
        if n & (1 << 63) == 0 {
            magnitude
        } else {
            -magnitude
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_within_an_export_and_unrelated_across_exports() {
        let (a, b) = (Pepper::fresh().unwrap(), Pepper::fresh().unwrap());
        assert_eq!(a.patient("p1"), a.patient("p1"));
        assert_ne!(a.patient("p1"), a.patient("p2"));
        assert_ne!(a.patient("p1"), b.patient("p1"));
        assert_ne!(a.patient("p1"), a.resource("Patient", "p1"));
        assert_ne!(
            a.resource("Observation", "o1"),
            b.resource("Observation", "o1")
        );
        assert_eq!(a.patient("p1").len(), 64);
        assert!(a.patient("p1").bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn offsets_are_within_a_year_never_zero_and_per_patient() {
        let p = Pepper::fresh().unwrap();
        let offsets: Vec<i64> = (0..200).map(|i| p.shift_days(&format!("p{i}"))).collect();
        assert!(
            offsets
                .iter()
                .all(|d| (1..=MAX_SHIFT_DAYS).contains(&d.abs()))
        );
        assert!(offsets.iter().any(|d| *d < 0) && offsets.iter().any(|d| *d > 0));
        assert_eq!(p.shift_days("p7"), p.shift_days("p7"));
        let distinct: std::collections::BTreeSet<i64> = offsets.into_iter().collect();
        assert!(distinct.len() > 100, "offsets should vary between patients");
    }

    #[test]
    fn the_pepper_never_prints() {
        let p = Pepper::fresh().unwrap();
        assert_eq!(format!("{p:?}"), "Pepper(Key32([REDACTED]))");
    }
}
