//! HL7 v2 for phivault: a small parser for versions 2.1 to 2.8 ([`parse`]), the MLLP codec
//! ([`mllp`]), acknowledgments ([`ack`]), the mapping of ADT and ORU messages to FHIR
//! ([`map`]), their ingestion through the vault ([`ingest`]) and one MLLP connection
//! ([`conn`]). The parser, codec, ACKs and mapping are pure; ingestion only calls the vault
//! (this crate never sees a store or a key). Errors carry positions, never message text.
#![forbid(unsafe_code)]

pub mod ack;
pub mod conn;
pub mod ingest;
pub mod limits;
pub mod map;
pub mod mllp;
pub mod parse;

pub use ack::{AckCode, AckError, ErrorCode, build_ack};
pub use mllp::{Event, Framer, frame};
pub use parse::{
    Charset, Delimiters, Message, ParseError, ParseErrorKind, ParseLimits, Segment, parse,
    parse_with,
};
