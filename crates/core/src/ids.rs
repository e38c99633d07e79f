//! Newtype identifiers, parsed at the edge. A value of these types is known to be well formed.
use std::fmt;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error(
        "organization id must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    BadOrg,
    #[error("resource id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'")]
    BadResourceId,
    #[error("unknown FHIR R4 resource type")]
    UnknownResourceType,
    #[error("this resource type cannot be stored")]
    NotStorable,
}

/// An organization (tenant) slug, e.g. `default`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(String);

impl OrgId {
    /// `unknown`: for audit events of requests that belong to no organization yet.
    pub fn unknown() -> Self {
        Self("unknown".to_owned())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadOrg)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A FHIR logical id (`[A-Za-z0-9\-\.]{1,64}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

impl ResourceId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadResourceId)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The hex form of a keyed digest, used as a pseudonymous row id.
    pub fn from_digest(d: &Digest32) -> Self {
        Self(d.to_hex())
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A storable FHIR R4 resource type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(&'static str);

impl ResourceType {
    pub const PATIENT: ResourceType = ResourceType("Patient");
    /// The sealed HL7 v2 error queue: a message that was not accepted (AE/AR), kept in the
    /// clinical store like a record (its own data key, so discarding it crypto-shreds it). Not
    /// a FHIR type: [`ResourceType::parse`] never returns it, so no FHIR request can name it.
    pub const HL7_ERROR: ResourceType = ResourceType("hl7-error");
    /// The receipt of an applied HL7 v2 message (interface and control id, as a keyed
    /// digest; no content), written in the same store transaction as the message's records:
    /// in the clinical store when the message wrote clinical records, else in the identity
    /// store ([`ResourceType::HL7_APPLIED_IDENTITY`]). A resend finds it and is not applied
    /// twice, whatever happened to the process between the commit and the ACK.
    pub const HL7_APPLIED: ResourceType = ResourceType("hl7-applied");
    /// [`ResourceType::HL7_APPLIED`] of a message that wrote identity records only.
    pub const HL7_APPLIED_IDENTITY: ResourceType = ResourceType("hl7-applied-identity");

    /// Parses a `resourceType`: it must be an R4 resource and one phivault stores
    /// (not `Bundle`, `OperationOutcome` or `Parameters`, which are containers or messages).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        match crate::resource_types::R4_RESOURCE_TYPES
            .iter()
            .find(|t| **t == s)
        {
            None => Err(IdError::UnknownResourceType),
            Some(t) if crate::resource_types::NOT_STORED.contains(t) => Err(IdError::NotStorable),
            Some(t) => Ok(Self(t)),
        }
    }
    /// Parses a type as stored in a record store or named in a retention rule: a storable FHIR
    /// type ([`ResourceType::parse`]) or one of the vault's internal types
    /// ([`ResourceType::HL7_ERROR`]).
    pub fn parse_stored(s: &str) -> Result<Self, IdError> {
        for internal in [
            Self::HL7_ERROR,
            Self::HL7_APPLIED,
            Self::HL7_APPLIED_IDENTITY,
        ] {
            if s == internal.0 {
                return Ok(internal);
            }
        }
        Self::parse(s)
    }
    /// A type of the vault's own (not FHIR): never released as a FHIR resource, exported,
    /// or de-identified.
    pub fn is_internal(&self) -> bool {
        [
            Self::HL7_ERROR,
            Self::HL7_APPLIED,
            Self::HL7_APPLIED_IDENTITY,
        ]
        .contains(self)
    }
    /// Whether rows of this type live in the identity store (patients, and the receipts of
    /// messages that wrote patients only); every other type lives in the clinical store.
    pub fn in_identity_store(&self) -> bool {
        self.is_patient() || *self == Self::HL7_APPLIED_IDENTITY
    }
    pub fn as_str(&self) -> &'static str {
        self.0
    }
    pub fn is_patient(&self) -> bool {
        self.0 == "Patient"
    }
    /// `AuditEvent` is only ever the view of the real audit trail, never a stored resource.
    pub fn is_audit_trail(&self) -> bool {
        self.0 == "AuditEvent"
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A record version (FHIR `meta.versionId`), starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(pub u64);

impl Version {
    pub const FIRST: Version = Version(1);
    pub fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which sealed store a record lives in. Part of every record's associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// Patients: names, identifiers, birth dates, addresses, telecom (PII).
    Identity,
    /// Every other resource, keyed by a pseudonym of its patient (PHI).
    Clinical,
}

impl StoreKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            StoreKind::Identity => "identity",
            StoreKind::Clinical => "clinical",
        }
    }
}

/// The searchable fields that get a blind index, each under its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKind {
    /// `system|value` of an identifier.
    Identifier,
    /// The value of an identifier, whatever its system.
    IdentifierValue,
    /// Family name and birth date together.
    FamilyBirthdate,
    /// A phone number, digits only.
    Phone,
    /// A prefix (1 to 6 letters, folded) of a name part, truncated to 2 bytes.
    NamePrefix,
    /// The Soundex code of a family or given name.
    NamePhonetic,
    /// A birth year, a birth year-month (truncated), a birth date (truncated).
    BirthYear,
    BirthMonth,
    BirthDay,
    /// A prefix (1 to 6 characters, folded) of a city or postal code, truncated to 2 bytes.
    AddressPrefix,
    /// An email address, lowercased.
    Email,
    /// A reference from one search parameter to its target (`Type|param|Target/id`).
    Reference,
    /// A family name's prefix (3 or 5 letters, folded) with the birth year, truncated to
    /// 2 bytes: family + birth-date range searches.
    FamilyYear,
}

impl IndexKind {
    pub const ALL: [IndexKind; 4] = [
        IndexKind::Identifier,
        IndexKind::IdentifierValue,
        IndexKind::FamilyBirthdate,
        IndexKind::Phone,
    ];
    /// The kinds whose keys are derived from the keyring (added with search, issue 22): no
    /// keyring entry of their own, so vaults made before them open unchanged.
    pub const DERIVED: [IndexKind; 9] = [
        IndexKind::NamePrefix,
        IndexKind::NamePhonetic,
        IndexKind::BirthYear,
        IndexKind::BirthMonth,
        IndexKind::BirthDay,
        IndexKind::AddressPrefix,
        IndexKind::Email,
        IndexKind::Reference,
        IndexKind::FamilyYear,
    ];
    pub fn as_str(&self) -> &'static str {
        match self {
            IndexKind::Identifier => "identifier",
            IndexKind::IdentifierValue => "identifier-value",
            IndexKind::FamilyBirthdate => "family-birthdate",
            IndexKind::Phone => "phone",
            IndexKind::NamePrefix => "name-prefix",
            IndexKind::NamePhonetic => "name-phonetic",
            IndexKind::BirthYear => "birth-year",
            IndexKind::BirthMonth => "birth-month",
            IndexKind::BirthDay => "birth-day",
            IndexKind::AddressPrefix => "address-prefix",
            IndexKind::Email => "email",
            IndexKind::Reference => "reference",
            IndexKind::FamilyYear => "family-year",
        }
    }
}

/// A 32-byte keyed digest: a pseudonym or a blind-index value. Not secret by itself, but never
/// reversible without the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest32(pub [u8; 32]);

impl fmt::Debug for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest32(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl Digest32 {
    pub fn from_slice(s: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(s).ok().map(Self)
    }
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids() {
        assert!(OrgId::parse("default").is_ok());
        assert!(OrgId::parse("st-mary-2").is_ok());
        for bad in ["", "-x", "Default", "a b", "ä", &"a".repeat(64)] {
            assert_eq!(OrgId::parse(bad), Err(IdError::BadOrg), "{bad}");
        }
    }

    #[test]
    fn resource_ids() {
        assert!(ResourceId::parse("2b3c-4.5").is_ok());
        for bad in ["", "../etc", "a/b", "a b", "x'--", &"a".repeat(65)] {
            assert_eq!(ResourceId::parse(bad), Err(IdError::BadResourceId), "{bad}");
        }
    }

    #[test]
    fn resource_types() {
        assert!(ResourceType::parse("Patient").unwrap().is_patient());
        assert!(ResourceType::parse("Observation").is_ok());
        assert_eq!(
            ResourceType::parse("Patients"),
            Err(IdError::UnknownResourceType)
        );
        assert_eq!(ResourceType::parse("Bundle"), Err(IdError::NotStorable));
        // The error queue's type is stored, never parsed from FHIR input.
        assert!(ResourceType::parse("hl7-error").is_err());
        let queue = ResourceType::parse_stored("hl7-error").unwrap();
        assert!(queue.is_internal() && !queue.is_patient());
        assert!(
            !ResourceType::parse_stored("Observation")
                .unwrap()
                .is_internal()
        );
        assert!(ResourceType::parse_stored("Bundle").is_err());
    }
}
