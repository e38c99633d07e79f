//! phivault-core: the domain vocabulary every other crate shares, and the ports the stores
//! implement. No I/O lives here.
#![forbid(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod error;
pub mod ids;
pub mod net;
pub mod ports;
pub mod resource_types;
pub mod secret;

pub use auth::{
    ClientChange, ClientRecord, GrantRecord, Role, SessionRecord, UserRecord, UserWrite,
};
pub use clock::{Clock, FakeClock, SystemClock};
pub use error::StoreError;
pub use ids::{Digest32, IndexKind, OrgId, ResourceId, ResourceType, StoreKind, Version};
pub use ports::{
    AuditRecord, AuditStore, BeforeCommit, BoxFuture, ChainFn, ColumnInfo, ControlStore, Expected,
    KeyringEntry, Organization, RecordKey, RecordStore, RecordWrite, SealedRecord, Tombstone,
    WriteOutcome,
};
pub use ports::{KekUsage, ReindexHead, Rewrap, WrappedDek};
pub use secret::{Secret, SecretString};
