//! phivault-vault: the one door to PHI.
//!
//! Every path to patient data (CLI, and later FHIR, HL7, exports, backups) calls this crate,
//! which seals and unseals through the keyring and reads and writes only sealed bytes through
//! the store ports. Adapters never touch a store or a key.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
pub mod compliance;
pub mod deid;
mod error;
pub mod keys;
pub mod ops;
pub mod policy;
pub mod records;
pub mod search;
pub mod views;

pub use auth::{ClientAction, ClientChanged, ClientInfo};
pub use deid::{DeidExport, DeidFormat, DeidMethod, DeidOptions};
pub use error::VaultError;
pub use keys::{KeyStatus, RotateOptions, RotationPlan, RotationProgress, RotationReport};
pub use ops::bundle::{BundleKind, EntryResponse, Method};
pub use ops::hl7_queue::{OpenedMessage, QueueCounts, QueuedMessage, Refusal};
pub use ops::import::{ImportOptions, ImportProgress, ImportReport, Skipped};
pub use records::history::HistoryEntry;
pub use records::search::{PatientQuery, SearchPage};
pub use records::{EraseReport, PageCursor, Stored};

use phivault_core::{AuditStore, Clock, ControlStore, OrgId, RecordStore};
use phivault_crypto::Keyring;
use std::sync::Arc;

/// Who is acting. Every vault call names its actor (for authorization and audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator at the command line: `cli:<os user>`.
    Operator { os_user: String },
    /// A signed-in person: `user:<username>`.
    User { id: String, username: String },
    /// A service client (OAuth2 client credentials): `client:<name>`.
    Client { id: String, name: String },
    /// An HL7 v2 interface (a sending system over MLLP): `hl7:<name>`.
    Interface { name: String },
    /// Not signed in (login steps): `anonymous`.
    Anonymous,
}

impl Actor {
    /// The audit name of the actor, e.g. `cli:alice`.
    pub fn audit_name(&self) -> String {
        match self {
            Actor::Operator { os_user } => format!("cli:{os_user}"),
            Actor::User { username, .. } => format!("user:{username}"),
            Actor::Client { name, .. } => format!("client:{name}"),
            Actor::Interface { name } => format!("hl7:{name}"),
            Actor::Anonymous => "anonymous".into(),
        }
    }
}

/// The operator's authority: proof that this process opened the vault with its root key (the
/// passphrase, or the key in the HSM). Only [`Operator::new`] makes one, and it takes the
/// unsealed keyring, which adapters (`api`, `hl7`) cannot reach: they depend on neither the
/// crypto crate nor the stores. Not `Clone`: the command line holds the one it was given.
///
/// ```compile_fail,E0451
/// // An adapter cannot make one up:
/// let forged = phivault_vault::Operator { os_user: "x".into() };
/// ```
#[derive(Debug)]
pub struct Operator {
    os_user: String,
}

impl Operator {
    /// The operator's authority, for whoever holds the vault's unsealed keyring.
    pub fn new(_keyring: &Keyring, os_user: &str) -> Self {
        Self {
            os_user: os_user.to_owned(),
        }
    }

    /// A context for the operator in `org`: everything, audited as `cli:<os user>`.
    pub fn ctx(&self, org: OrgId) -> Ctx {
        let actor = Actor::Operator {
            os_user: self.os_user.clone(),
        };
        Ctx::with_subject(org, actor, policy::Subject::Operator)
    }

    /// A context in `org` for `actor` with the rights of `subject` only: the operator may act
    /// with less than its own authority (to try the policy as a role would), never more.
    pub fn ctx_as(&self, org: OrgId, actor: Actor, subject: policy::Subject) -> Ctx {
        Ctx::with_subject(org, actor, subject)
    }

    /// Leave for the HL7 listener that this operator starts to act as the organization's
    /// interfaces (see [`Ctx::for_interface`]).
    pub fn interfaces(&self) -> InterfaceAuthority {
        InterfaceAuthority { _private: () }
    }
}

/// The operator's leave for an HL7 v2 listener to act as the configured interfaces. Only
/// [`Operator::interfaces`] makes one.
///
/// ```compile_fail,E0451
/// let forged = phivault_vault::InterfaceAuthority { _private: () };
/// ```
#[derive(Debug, Clone)]
pub struct InterfaceAuthority {
    _private: (),
}

/// The context of one vault call: the organization it is scoped to, who acts, and what is
/// known of the request (all of it goes into the audit event). Who acts, and with which
/// rights, is fixed when it is made — from an authenticated principal, an interface the
/// operator allowed, or the operator's own authority — and cannot be changed afterwards;
/// anything else is [`Ctx::anonymous`], which has no rights at all.
///
/// ```compile_fail,E0616
/// fn escalate(ctx: &mut phivault_vault::Ctx) {
///     ctx.subject = phivault_vault::policy::Subject::Operator;
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Ctx {
    pub(crate) org: OrgId,
    pub(crate) actor: Actor,
    /// HL7 PurposeOfUse code of the request.
    pub purpose: Option<String>,
    /// Where `purpose` came from (header, client default, session, role default).
    pub purpose_source: Option<auth::PurposeSource>,
    /// Network address of the client.
    pub source: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Who is asking, for the policy.
    pub(crate) subject: policy::Subject,
    /// Read events held until the HL7 message's write or event (see [`audit::held`]).
    pub(crate) held: Option<audit::held::HeldEvents>,
}

impl Ctx {
    fn with_subject(org: OrgId, actor: Actor, subject: policy::Subject) -> Self {
        Self {
            org,
            actor,
            purpose: None,
            purpose_source: None,
            source: None,
            user_agent: None,
            request_id: None,
            subject,
            held: None,
        }
    }

    /// A context for someone not signed in (login steps, token requests): audited as
    /// `anonymous`, allowed nothing.
    pub fn anonymous(org: OrgId) -> Self {
        Self::with_subject(org, Actor::Anonymous, policy::Subject::Nobody)
    }

    /// A context for an HL7 v2 interface of `org`: an integration acting for `purpose`, that may
    /// create, read, update and search (never delete). Every type: an ADT^A40 merge moves all of
    /// the old patient's clinical records (Conditions, Encounters, …), not only Observations.
    pub fn for_interface(
        _leave: &InterfaceAuthority,
        org: OrgId,
        name: &str,
        purpose: policy::Purpose,
    ) -> Self {
        let actor = Actor::Interface {
            name: name.to_owned(),
        };
        let subject = policy::Subject::Client {
            role: phivault_core::Role::IntegrationManager,
            scopes: vec!["system/*.crus".to_owned()],
            purposes: vec![purpose],
        };
        let mut c = Self::with_subject(org, actor, subject);
        c.purpose = Some(purpose.as_str().to_owned());
        c
    }

    /// [`Ctx::for_interface`] for one HL7 v2 message: its read events are held and made
    /// durable with the message's write or its own event, in one commit, before the message
    /// is answered (see [`audit::held`]); the adapter must answer only after
    /// [`Vault::message_event`] returned.
    pub fn for_interface_message(
        leave: &InterfaceAuthority,
        org: OrgId,
        name: &str,
        purpose: policy::Purpose,
    ) -> Self {
        let mut c = Self::for_interface(leave, org, name, purpose);
        c.held = Some(audit::held::HeldEvents::default());
        c
    }

    /// A context for an authenticated principal (only the vault makes one), with the purpose
    /// it states (the `X-Purpose-Of-Use` header), else the principal's default purpose.
    pub fn for_principal(p: &auth::Principal, stated: Option<String>) -> Self {
        let subject = match &p.actor {
            Actor::Client { .. } => policy::Subject::Client {
                role: p.role,
                scopes: p.scopes.clone(),
                purposes: p
                    .purposes
                    .iter()
                    .filter_map(|x| policy::Purpose::parse(x))
                    .collect(),
            },
            Actor::User { .. } => policy::Subject::User(p.role),
            // The vault authenticates people and clients only; anything else has no rights.
            Actor::Operator { .. } | Actor::Interface { .. } | Actor::Anonymous => {
                policy::Subject::Nobody
            }
        };
        let mut c = Self::with_subject(p.org.clone(), p.actor.clone(), subject);
        (c.purpose, c.purpose_source) = auth::purpose::applied(stated, p.default_purpose.as_ref());
        c
    }

    /// The organization the call is scoped to.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// Who acts.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Who is asking, for the policy.
    pub fn subject(&self) -> &policy::Subject {
        &self.subject
    }
}

/// The vault service.
#[derive(Debug, Clone)]
pub struct Vault {
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) identity: Arc<dyn RecordStore>,
    pub(crate) clinical: Arc<dyn RecordStore>,
    pub(crate) control: Arc<dyn ControlStore>,
    pub(crate) audit: Arc<dyn AuditStore>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Benchmarks only (feature `bench`): skip audit writes to measure what they cost.
    pub(crate) audit_off: bool,
    pub(crate) auth_policy: auth::AuthPolicy,
    pub(crate) field_policy: Arc<policy::fields::FieldPolicy>,
    /// What the binary measures of its TLS listener, for the compliance report.
    pub(crate) transport: Option<Arc<dyn compliance::TransportSource>>,
    /// The root key, to load KEK versions a rotation adds (here or on another node).
    pub(crate) root: Option<Arc<dyn phivault_crypto::RootKeyProvider>>,
    /// When this process last loaded the KEK versions (writes reload when it is too long ago).
    pub(crate) keyring_loaded: Arc<std::sync::Mutex<std::time::Instant>>,
}

/// The stores a vault runs on.
#[derive(Debug, Clone)]
pub struct Stores {
    pub identity: Arc<dyn RecordStore>,
    pub clinical: Arc<dyn RecordStore>,
    pub control: Arc<dyn ControlStore>,
    pub audit: Arc<dyn AuditStore>,
}

impl Vault {
    pub fn new(keyring: Arc<Keyring>, stores: Stores, clock: Arc<dyn Clock>) -> Self {
        Self {
            keyring,
            identity: stores.identity,
            clinical: stores.clinical,
            control: stores.control,
            audit: stores.audit,
            clock,
            audit_off: false,
            auth_policy: auth::AuthPolicy::default(),
            field_policy: Arc::new(policy::fields::FieldPolicy::default()),
            transport: None,
            root: None,
            keyring_loaded: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        }
    }

    /// The same vault with a minimum-necessary field table from a policy file.
    pub fn with_field_policy(mut self, policy: policy::fields::FieldPolicy) -> Self {
        self.field_policy = Arc::new(policy);
        self
    }

    /// The same vault with other authentication timeouts and thresholds.
    pub fn with_auth_policy(mut self, policy: auth::AuthPolicy) -> Self {
        self.auth_policy = policy;
        self
    }

    /// Benchmarks only: the same vault with audit writes short-circuited, to measure their cost.
    /// Not available in the shipped binary (feature `bench`).
    #[cfg(feature = "bench")]
    #[doc(hidden)]
    pub fn with_audit_short_circuited_for_benchmarks(mut self) -> Self {
        self.audit_off = true;
        self
    }

    /// The keyed pseudonym (hex) under which the audit trail names a patient.
    /// The cipher of a backup file whose clear header is `header`: its key is derived from
    /// this vault's keyring and never leaves it.
    pub fn backup_cipher(
        &self,
        header: &[u8],
    ) -> Result<phivault_crypto::backup::BackupCipher, VaultError> {
        phivault_crypto::backup::BackupCipher::new(&self.keyring, header)
            .map_err(VaultError::Crypto)
    }

    /// A fingerprint of this vault (hex; derived from its keyring, so the same on every node
    /// and in every backup of it, and revealing nothing of any key).
    pub fn fingerprint(&self) -> Result<String, VaultError> {
        let key = self
            .keyring
            .derived_key("fingerprint-v1")
            .map_err(VaultError::Crypto)?;
        let tag = phivault_crypto::aead::hmac_sha256(&key, b"phivault.vault-fingerprint");
        Ok(tag.iter().take(16).map(|b| format!("{b:02x}")).collect())
    }

    /// Records that a backup is being made (`count`: store files), before its snapshot is
    /// taken, so the backup holds its own event. Permissions: the operator.
    pub async fn record_backup(&self, ctx: &Ctx, count: u64) -> Result<(), VaultError> {
        let mut event = self.event(ctx, "backup");
        self.require_operator(ctx, &event).await?;
        event.count = Some(count);
        self.audit(event).await
    }

    pub fn patient_pseudonym(&self, ctx: &Ctx, patient: &phivault_core::ResourceId) -> String {
        self.keyring.pseudonym(&ctx.org, patient).to_hex()
    }

    /// The organizations of this vault.
    pub async fn organizations(&self) -> Result<Vec<phivault_core::Organization>, VaultError> {
        Ok(self.control.organizations().await?)
    }

    /// Creates an organization (a tenant). Permissions: the operator and SUPER_ADMIN.
    pub async fn create_organization(
        &self,
        ctx: &Ctx,
        id: &OrgId,
        name: &str,
    ) -> Result<(), VaultError> {
        let mut event = self.event(ctx, "org-add");
        event.reason = Some(format!("org:{id}"));
        let allowed = matches!(
            ctx.subject,
            policy::Subject::Operator | policy::Subject::User(phivault_core::Role::SuperAdmin)
        );
        if !allowed {
            return self.deny(&event, "role").await;
        }
        let org = phivault_core::Organization {
            id: id.clone(),
            name: name.to_owned(),
            created_at: self.clock.now_millis(),
        };
        match self.control.create_organization(&org).await {
            Ok(true) => {
                self.control
                    .put_setting(&search::index_setting(id), search::SEARCH_INDEX_VERSION)
                    .await?;
                self.audit(event).await
            }
            Ok(false) => {
                let e = VaultError::Invalid("that organization exists".into());
                self.audit_failure(event, e).await
            }
            Err(e) => self.audit_failure(event, e.into()).await,
        }
    }
}

#[cfg(test)]
mod ctx_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use policy::{Action, Decision, GrantState, Purpose, Subject, decide};

    /// Deny by default, in the type (issue 20, finding 13): a context nobody authenticated —
    /// and a principal the vault never makes, such as an operator or an interface presented
    /// as one — is allowed nothing, whatever it claims as purpose and standing.
    #[test]
    fn a_context_that_authenticated_nobody_has_no_rights() {
        let org = OrgId::parse("default").unwrap();
        let odd = auth::Principal {
            actor: Actor::Operator {
                os_user: "root".into(),
            },
            org: org.clone(),
            role: phivault_core::Role::SuperAdmin,
            scopes: vec!["system/*.cruds".into()],
            purposes: vec!["TREAT".into()],
            default_purpose: Some(("TREAT".into(), auth::PurposeSource::ClientDefault)),
        };
        for ctx in [
            Ctx::anonymous(org.clone()),
            Ctx::for_principal(&odd, Some("TREAT".into())),
            Ctx::for_principal(&odd, None),
        ] {
            assert_eq!(ctx.subject(), &Subject::Nobody);
            let purposes = Purpose::ALL.map(Some);
            for (action, purpose, grant) in Action::ALL.iter().flat_map(|a| {
                purposes.iter().chain(&[None]).flat_map(move |p| {
                    [GrantState::None, GrantState::Active, GrantState::BreakGlass]
                        .map(|g| (*a, *p, g))
                })
            }) {
                for rtype in ["Patient", "Observation", "AuditEvent"] {
                    let d = decide(ctx.subject(), action, rtype, purpose, grant);
                    assert_eq!(d, Decision::Deny("unauthenticated"), "{action:?} {rtype}");
                }
            }
            assert!(!policy::may_change_patient(ctx.subject()));
        }
    }

    /// The operator's authority needs the unsealed keyring ([`Operator::new`]): the adapters
    /// cannot reach one because they depend on neither the crypto crate nor the stores, and
    /// no adapter source names the operator's authority or builds a context around it.
    #[test]
    fn adapters_can_neither_reach_the_keyring_nor_name_the_operator() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for adapter in ["crates/api", "crates/hl7"] {
            let manifest = std::fs::read_to_string(root.join(adapter).join("Cargo.toml")).unwrap();
            assert!(
                manifest.contains("phivault-vault"),
                "{adapter}: the scan read it"
            );
            for dep in ["phivault-crypto", "phivault-store"] {
                assert!(!manifest.contains(dep), "{adapter} depends on {dep}");
            }
            let mut files = Vec::new();
            bench_switch_tests::rust_files(&root.join(adapter).join("src"), &mut files);
            assert!(!files.is_empty());
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap();
                for name in [
                    "Subject::Operator",
                    "Operator::new",
                    ".ctx_as(",
                    ".interfaces()",
                ] {
                    assert!(!text.contains(name), "{} names {name}", f.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod bench_switch_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::path::{Path, PathBuf};

    pub(super) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The audit short-circuit exists for benchmarks only: no source of the shipped code (any
    /// crate's `src/`, the binary's included) calls it, so no configuration can turn the audit
    /// off. Benchmarks (`benches/`) are the only callers.
    #[test]
    fn the_audit_short_circuit_is_called_by_benchmarks_only() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for top in ["crates", "bin"] {
            for member in std::fs::read_dir(root.join(top)).unwrap() {
                let src = member.unwrap().path().join("src");
                if src.is_dir() {
                    rust_files(&src, &mut files);
                }
            }
        }
        assert!(
            files.len() > 20,
            "the scan found the sources: {}",
            files.len()
        );
        let name = ["with_audit_short_circuited", "_for_benchmarks"].concat();
        let callers: Vec<String> = files
            .iter()
            .filter(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                let uses = text.matches(name.as_str()).count();
                let defines = text.matches(&format!("pub fn {name}(")).count();
                uses > defines
            })
            .map(|f| f.display().to_string())
            .collect();
        assert!(callers.is_empty(), "called outside benchmarks: {callers:?}");
        let lib = std::fs::read_to_string(root.join("crates/vault/src/lib.rs")).unwrap();
        assert!(lib.contains(&format!(
            "#[cfg(feature = \"bench\")]\n    #[doc(hidden)]\n    pub fn {name}("
        )));
    }
}
