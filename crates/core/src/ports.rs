//! The ports: what the vault needs from storage. Implementations (SQLite, PostgreSQL) live in
//! phivault-store and only ever see sealed bytes, ids and keyed digests.
use crate::error::StoreError;
use crate::ids::{Digest32, IndexKind, OrgId, ResourceId, ResourceType, Version};
use async_trait::async_trait;

/// One stored version of a record, as the store sees it: ciphertext and metadata, no plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub rtype: ResourceType,
    pub id: ResourceId,
    pub version: Version,
    /// A FHIR delete: this version is a tombstone with no content.
    pub deleted: bool,
    /// In the clinical store: the keyed pseudonym of the record's patient, if any.
    pub link: Option<Digest32>,
    /// The key-encryption-key version that wraps `wrapped_dek`.
    pub kek_version: u32,
    /// The record's data key, wrapped (AEAD) by the KEK. Empty for tombstones.
    pub wrapped_dek: Vec<u8>,
    /// nonce ‖ AEAD ciphertext ‖ tag of the resource JSON. Empty for tombstones.
    pub ciphertext: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// Identifies a record within an organization.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub rtype: ResourceType,
    pub id: ResourceId,
}

/// What the writer believes the record's head is: the optimistic-concurrency check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The record must not exist yet (a create).
    Absent,
    /// The head must be this version (an update or delete).
    Version(Version),
}

/// One record version to write, with the blind-index entries that replace the record's old ones.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    pub record: SealedRecord,
    pub expected: Expected,
    pub index: Vec<(IndexKind, Digest32)>,
}

/// The outcome of one write of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The head was not what the writer expected: nothing was written for this record.
    Conflict {
        current: Option<Version>,
    },
}

/// One column of a store's schema, as the database itself describes it (for the compliance
/// report's check that no column holds plaintext PHI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub table: String,
    pub column: String,
    /// The declared type, lowercased (`blob`, `bytea`, `text`, `integer`, …).
    pub sql_type: String,
}

/// How many rows of a record store name one KEK version (for rotation and `keys status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KekUsage {
    pub kek_version: u32,
    /// Record versions whose data key this KEK wraps.
    pub deks: u64,
    /// Every row labelled with this KEK version: the DEKs plus tombstones (which wrap nothing
    /// but carry the label until rotation moves it).
    pub rows: u64,
}

/// One row's wrapped data key, as key rotation reads it: everything the DEK's associated data
/// binds (organization, type, row id, version, KEK version), no ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDek {
    /// The row's position in its store (monotonic), the rotation's cursor.
    pub seq: u64,
    pub org: OrgId,
    pub rtype: ResourceType,
    pub id: ResourceId,
    pub version: Version,
    /// The patient link stored beside it (clinical rows): a linked KEK binds it.
    pub link: Option<Digest32>,
    pub kek_version: u32,
    /// Empty for tombstones.
    pub wrapped_dek: Vec<u8>,
}

/// A rewrapped data key to store in place of the old one, only if the row still holds exactly
/// `old_wrapped` under `old_kek` (compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrap {
    pub seq: u64,
    pub old_kek: u32,
    pub old_wrapped: Vec<u8>,
    pub new_kek: u32,
    pub new_wrapped: Vec<u8>,
}

/// A head to reindex: its new blind-index entries, applied only if `version` is still the
/// record's live head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReindexHead {
    pub key: RecordKey,
    pub version: Version,
    pub index: Vec<(IndexKind, Digest32)>,
}

/// A sealed record store (identity or clinical). Every method is scoped to one organization:
/// tenancy is part of every query.
#[async_trait]
pub trait RecordStore: Send + Sync + std::fmt::Debug {
    /// The head version of a record, tombstones included.
    async fn head(&self, org: &OrgId, key: &RecordKey) -> Result<Option<SealedRecord>, StoreError>;

    /// One specific version.
    async fn version(
        &self,
        org: &OrgId,
        key: &RecordKey,
        version: Version,
    ) -> Result<Option<SealedRecord>, StoreError>;

    /// Applies the writes in one durable transaction. Each write is checked and applied on its
    /// own: a conflict on one leaves the others written. `before_commit` runs with the outcomes
    /// inside the transaction; if it fails, nothing is written.
    async fn write(
        &self,
        org: &OrgId,
        writes: Vec<RecordWrite>,
        before_commit: Option<BeforeCommit>,
    ) -> Result<Vec<WriteOutcome>, StoreError>;

    /// Applies the writes all together or not at all, in one durable transaction of their
    /// own. If any write conflicts, nothing is written and the answer lists the conflicts
    /// (index in `writes`, current head). `before_commit` runs only when every write applied;
    /// if it fails, nothing is written.
    async fn write_all(
        &self,
        org: &OrgId,
        writes: Vec<RecordWrite>,
        before_commit: Option<BeforeCommit>,
    ) -> Result<Result<(), Vec<(usize, Option<Version>)>>, StoreError>;

    /// Live (not deleted) records whose blind index `kind` holds `digest`.
    async fn find(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digest: &Digest32,
    ) -> Result<Vec<RecordKey>, StoreError>;

    /// Live heads whose blind index `kind` holds any of `digests`: their rows and keys in key
    /// order,
    /// at most `limit` of them (which ones, when there are more, is unspecified: search asks
    /// for one more than it will take, to know when a criterion is too wide).
    async fn find_any(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        limit: u32,
    ) -> Result<Vec<(u64, RecordKey)>, StoreError>;

    /// Live heads indexed under `kind` with any of `digests`, in row order (`seq`) after row
    /// `after`, at most `limit`, with their rows: a search with one selective criterion pages
    /// through its index without reading the rest of it.
    async fn stream(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, RecordKey)>, StoreError>;

    /// Which of the rows `within` (as [`RecordStore::find_any`] gave them) are indexed under
    /// `kind` with any of `digests`: a wide criterion applied to the candidates the narrow
    /// ones left, by index probes alone.
    async fn find_within(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        within: &[u64],
    ) -> Result<Vec<u64>, StoreError>;

    /// The live heads of these records (those that exist and are not deleted).
    async fn heads(&self, org: &OrgId, keys: &[RecordKey])
    -> Result<Vec<SealedRecord>, StoreError>;

    /// Replaces the blind-index entries of these records' heads, each only if its `version`
    /// is still the live head (search's reindex when new index kinds arrive), in one
    /// transaction. Answers how many applied.
    async fn reindex(&self, org: &OrgId, heads: &[ReindexHead]) -> Result<u64, StoreError>;

    /// Live head records linked to a pseudonym.
    async fn linked(&self, org: &OrgId, link: &Digest32) -> Result<Vec<SealedRecord>, StoreError>;

    /// Live head records in key order, after `after`, at most `limit`.
    async fn page(
        &self,
        org: &OrgId,
        after: Option<&RecordKey>,
        limit: u32,
    ) -> Result<Vec<SealedRecord>, StoreError>;

    /// Crypto-shredding: removes every version of the given records (their wrapped data keys
    /// and ciphertexts) and their index entries, overwriting the freed pages, then checkpoints
    /// so no copy remains in a journal. Returns how many versions were destroyed.
    async fn erase(&self, org: &OrgId, keys: &[RecordKey]) -> Result<u64, StoreError>;

    /// Keys of every record (deleted or not) linked to a pseudonym.
    async fn linked_keys(&self, org: &OrgId, link: &Digest32)
    -> Result<Vec<RecordKey>, StoreError>;

    /// Every column of the store's tables, from the database's own catalogue.
    async fn columns(&self) -> Result<Vec<ColumnInfo>, StoreError>;

    /// Key rotation: per KEK version, how many rows (and DEKs) name it, every organization.
    async fn kek_versions(&self) -> Result<Vec<KekUsage>, StoreError>;

    /// Key rotation: rows (tombstones included) labelled with a KEK version below `kek`, with
    /// `seq > after`, in `seq` order, at most `limit`, every organization.
    async fn wrapped_below(
        &self,
        kek: u32,
        after: u64,
        limit: u32,
    ) -> Result<Vec<WrappedDek>, StoreError>;

    /// Key rotation: stores the rewrapped keys in one durable transaction, each only if its row
    /// still holds the old wrapped key under the old KEK version (a concurrent rotation, an
    /// erasure or a reused row is never clobbered). Answers, per item, whether it applied.
    async fn rewrap(&self, items: &[Rewrap]) -> Result<Vec<bool>, StoreError>;
}

/// An organization (tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: i64,
}

/// One keyring entry, wrapped by the root key. `purpose` is e.g. `kek`, `pepper`,
/// `index:phone`, `audit-mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringEntry {
    pub purpose: String,
    pub version: u32,
    pub wrapped: Vec<u8>,
    pub created_at: i64,
}

/// The mark a crypto-shredded record leaves behind: which organization and store it was in
/// and its keyed pseudonymous row id, never its content or FHIR id (no PHI). The list of them
/// keeps an erasure effective beyond the live vault: restoring an older backup applies the
/// newer tombstones, so an erased record does not come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub org: OrgId,
    pub store: crate::ids::StoreKind,
    pub key: RecordKey,
    /// When it was erased (milliseconds since the Unix epoch).
    pub erased_at: i64,
}

/// Control data: organizations, the wrapped keyring, settings. Holds no PHI.
#[async_trait]
pub trait ControlStore: Send + Sync + std::fmt::Debug {
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Adds one to the counter kept in the setting `key` (a whole number; absent counts as 0)
    /// in one atomic statement, so processes and nodes counting at once lose no increment.
    /// Returns the new value.
    async fn bump_counter(&self, key: &str) -> Result<i64, StoreError>;
    async fn organizations(&self) -> Result<Vec<Organization>, StoreError>;
    async fn create_organization(&self, org: &Organization) -> Result<bool, StoreError>;
    async fn keyring(&self) -> Result<Vec<KeyringEntry>, StoreError>;
    async fn add_keyring_entries(&self, entries: &[KeyringEntry]) -> Result<(), StoreError>;
    /// Removes one keyring entry (a retired KEK version); `false` if there was none.
    async fn remove_keyring_entry(&self, purpose: &str, version: u32) -> Result<bool, StoreError>;

    /// Creates a user; `false` if its organization already has a user of that name (or the id
    /// is taken). Usernames are unique within an organization, not across organizations.
    async fn create_user(&self, user: &crate::UserRecord) -> Result<bool, StoreError>;
    /// The user of that name in `org`.
    async fn user_by_name(
        &self,
        org: &OrgId,
        username: &str,
    ) -> Result<Option<crate::UserRecord>, StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<crate::UserRecord>, StoreError>;
    async fn users(&self, org: Option<&OrgId>) -> Result<Vec<crate::UserRecord>, StoreError>;
    /// Replaces a user's mutable fields (everything but id, org, username, created_at).
    async fn update_user(&self, user: &crate::UserRecord) -> Result<(), StoreError>;
    /// A person's own targeted write (see [`crate::UserWrite`]): `false`, changing nothing,
    /// when the row is no longer as the caller read it or the user is disabled.
    async fn write_user(&self, user_id: &str, w: &crate::UserWrite<'_>)
    -> Result<bool, StoreError>;
    /// Accepts TOTP step `step` for a user only if it is newer than the last accepted one
    /// (atomic: a code is accepted once, even by two racing logins).
    async fn accept_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError>;
    async fn set_backup_codes(&self, user_id: &str, hashes: &[Vec<u8>]) -> Result<(), StoreError>;
    /// Counts one failed sign-in step (a wrong password or code) of a user, atomically, and
    /// sets `locked_until` to `lock(count)` when that is `Some`. Returns the new count and lock.
    async fn count_login_failure(
        &self,
        user_id: &str,
        lock: &(dyn Fn(i64) -> Option<i64> + Send + Sync),
    ) -> Result<(i64, Option<i64>), StoreError>;
    /// Reserves one second-factor attempt of a user: unless the account is locked at `now`,
    /// counts it as a failure and sets `locked_until` to `lock(count)` when that is `Some`, in
    /// one atomic step (so parallel attempts can never pass a lock). `None` when locked
    /// (nothing counted); a completed sign-in clears the count and the lock again.
    async fn reserve_login_attempt(
        &self,
        user_id: &str,
        now: i64,
        lock: &(dyn Fn(i64) -> Option<i64> + Send + Sync),
    ) -> Result<Option<(i64, Option<i64>)>, StoreError>;
    /// Marks an unused backup code used; `false` if there is no such unused code.
    async fn use_backup_code(
        &self,
        user_id: &str,
        hash: &[u8],
        now: i64,
    ) -> Result<bool, StoreError>;

    async fn put_session(&self, s: &crate::SessionRecord) -> Result<(), StoreError>;
    async fn session(&self, token_hash: &[u8]) -> Result<Option<crate::SessionRecord>, StoreError>;
    async fn touch_session(&self, token_hash: &[u8], now: i64) -> Result<(), StoreError>;
    async fn revoke_session(&self, token_hash: &[u8]) -> Result<bool, StoreError>;
    /// Counts one second-factor attempt on a challenge, atomically; returns the attempts so far
    /// (0 if there is no such token).
    async fn count_challenge_attempt(&self, token_hash: &[u8]) -> Result<i64, StoreError>;
    /// Revokes every session of a subject (disable, password reset).
    async fn revoke_sessions_of(&self, subject: &str) -> Result<u64, StoreError>;
    /// Revokes every session and challenge of a subject but the one whose hash is `keep` (a
    /// password changed during sign-in ends everything else).
    async fn revoke_sessions_except(&self, subject: &str, keep: &[u8]) -> Result<u64, StoreError>;

    async fn put_grant(&self, g: &crate::GrantRecord) -> Result<(), StoreError>;
    /// Extends a live grant's expiry.
    async fn extend_grant(&self, id: &str, expires_at: i64) -> Result<bool, StoreError>;
    /// The latest unrevoked grant of a user to a patient (live or expired).
    async fn latest_grant(
        &self,
        org: &OrgId,
        user_id: &str,
        patient: &str,
    ) -> Result<Option<crate::GrantRecord>, StoreError>;
    /// Revokes every grant of an organization; returns how many were live.
    async fn revoke_grants(&self, org: &OrgId, now: i64) -> Result<u64, StoreError>;
    /// Every unrevoked grant and break-glass access, of every organization, that has not
    /// expired at `now` (seconds).
    async fn live_grants(&self, now: i64) -> Result<Vec<crate::GrantRecord>, StoreError>;

    /// The unrevoked grants and break-glass accesses of one organization that have not
    /// expired at `now` (seconds), oldest first.
    async fn live_grants_in(
        &self,
        org: &OrgId,
        now: i64,
    ) -> Result<Vec<crate::GrantRecord>, StoreError>;

    async fn create_client(&self, c: &crate::ClientRecord) -> Result<bool, StoreError>;
    async fn client(&self, id: &str) -> Result<Option<crate::ClientRecord>, StoreError>;
    /// The clients of one organization (of every organization when `None`), by organization
    /// and name.
    async fn clients(&self, org: Option<&OrgId>) -> Result<Vec<crate::ClientRecord>, StoreError>;
    /// Applies an administrator's change to a client in one transaction: the client row and,
    /// when the change [revokes tokens](crate::ClientChange::revokes_tokens), every unrevoked
    /// bearer token of the client. `None` if there is no such client, else how many tokens
    /// were revoked.
    async fn change_client(
        &self,
        id: &str,
        change: &crate::ClientChange,
    ) -> Result<Option<u64>, StoreError>;

    /// Records tombstones of erased records. Idempotent: a tombstone already recorded (same
    /// organization, store and key) is kept as it is.
    async fn add_tombstones(&self, t: &[Tombstone]) -> Result<(), StoreError>;
    /// An organization's default purpose of use for people of `role` who chose none at
    /// sign-in, if it set one.
    async fn role_default_purpose(
        &self,
        org: &OrgId,
        role: crate::Role,
    ) -> Result<Option<String>, StoreError>;
    /// Sets (`Some`) or clears (`None`) that default.
    async fn set_role_default_purpose(
        &self,
        org: &OrgId,
        role: crate::Role,
        purpose: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Every recorded tombstone, oldest first.
    async fn tombstones(&self) -> Result<Vec<Tombstone>, StoreError>;
}

/// A boxed future, for callbacks across the ports.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Runs inside a record write's transaction, after the writes were checked and before they
/// commit, with their outcomes: the vault makes the audit event durable here. If it fails, the
/// transaction rolls back and nothing is written (fail closed).
pub type BeforeCommit =
    Box<dyn FnOnce(Vec<WriteOutcome>) -> BoxFuture<'static, Result<(), StoreError>> + Send>;

/// Builds an audit event's final bytes and chain MAC from its sequence number, the previous
/// event's MAC (empty for the first) and the event draft. Supplied by the vault, which holds the
/// audit key; the audit store never sees the key.
pub type ChainFn = dyn Fn(u64, &[u8], &str) -> (String, Vec<u8>) + Send + Sync;

/// One stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    pub recorded_at: i64,
    /// The canonical JSON of the event, exactly the bytes the MAC covers.
    pub event: String,
    pub mac: Vec<u8>,
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Appends events durably and in order after the current head, chaining each with `chain`.
    /// Returns their sequence numbers. Concurrent appends are group-committed.
    async fn append(
        &self,
        drafts: Vec<(i64, String)>,
        chain: std::sync::Arc<ChainFn>,
    ) -> Result<Vec<u64>, StoreError>;

    /// Events with `seq > after`, in order, at most `limit`.
    async fn read(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;

    /// The last event.
    async fn head(&self) -> Result<Option<AuditRecord>, StoreError>;
}
