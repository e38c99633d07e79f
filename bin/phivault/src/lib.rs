//! The phivault binary's library: command line, configuration, and the wiring of crypto,
//! stores and vault for a data dir.
#![forbid(unsafe_code)]

pub mod backup;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod mllp;
pub mod mllp_interfaces;
pub mod qr;
pub mod serve;
pub mod tls;
pub mod tls_probe;
