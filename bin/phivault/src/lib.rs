//! The phivault binary's library: command line, configuration, and the wiring of crypto,
//! stores and vault for a data dir.
#![forbid(unsafe_code)]

pub mod admin_cmd;
pub mod backup;
pub mod backup_cmd;
pub mod cli;
pub mod compliance_cmd;
pub mod config;
pub mod datadir;
pub mod deid_cmd;
pub mod hl7_cmd;
pub mod keys_cmd;
pub mod mllp;
pub mod mllp_interfaces;
pub mod qr;
pub mod retention_cmd;
pub mod serve;
pub mod tls;
pub mod tls_probe;
