//! phivault-store: implementations of phivault-core's store ports. They see sealed bytes,
//! ids and keyed digests only — never a key, never plaintext PHI.
#![forbid(unsafe_code)]

mod audit_group;
mod migrations;
pub mod postgres;
mod rewrap;
mod rows;
mod search_index;
pub mod sqlite;

#[doc(hidden)]
pub use migrations::{Dialect, control_before};
pub use sqlite::{SqliteAuditStore, SqliteControlStore, SqliteRecordStore, SqliteStores};
