//! phivault-vault: the one door to PHI.
//!
//! Every path to patient data (CLI, and later FHIR, HL7, exports, backups) calls this crate,
//! which seals and unseals through the keyring and reads and writes only sealed bytes through
//! the store ports. Adapters never touch a store or a key.
#![forbid(unsafe_code)]

mod error;
pub mod ops;
pub mod records;

pub use error::VaultError;
pub use ops::import::{ImportOptions, ImportProgress, ImportReport, Skipped};
pub use records::search::PatientQuery;
pub use records::{EraseReport, PageCursor, Stored};

use phivault_core::{Clock, ControlStore, OrgId, RecordStore};
use phivault_crypto::Keyring;
use std::sync::Arc;

/// Who is acting. Every vault call names its actor (for authorization and audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator at the command line: `cli:<os user>`.
    Operator { os_user: String },
}

impl Actor {
    /// The audit name of the actor, e.g. `cli:alice`.
    pub fn audit_name(&self) -> String {
        match self {
            Actor::Operator { os_user } => format!("cli:{os_user}"),
        }
    }
}

/// The context of one vault call: the organization it is scoped to and who acts.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub org: OrgId,
    pub actor: Actor,
}

/// The vault service.
#[derive(Debug, Clone)]
pub struct Vault {
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) identity: Arc<dyn RecordStore>,
    pub(crate) clinical: Arc<dyn RecordStore>,
    pub(crate) control: Arc<dyn ControlStore>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Vault {
    pub fn new(
        keyring: Arc<Keyring>,
        identity: Arc<dyn RecordStore>,
        clinical: Arc<dyn RecordStore>,
        control: Arc<dyn ControlStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            keyring,
            identity,
            clinical,
            control,
            clock,
        }
    }

    /// The organizations of this vault.
    pub async fn organizations(&self) -> Result<Vec<phivault_core::Organization>, VaultError> {
        Ok(self.control.organizations().await?)
    }
}
