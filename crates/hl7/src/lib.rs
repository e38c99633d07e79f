//! HL7 v2 for phivault: a small parser for versions 2.1 to 2.8 ([`parse`]), the MLLP codec
//! ([`mllp`]) and acknowledgments ([`ack`]). Pure code: it never does I/O and never sees a key
//! or a store. Its errors carry positions (segment, field), never message text, so they can be
//! logged and returned in an ERR segment without leaking PHI.
#![forbid(unsafe_code)]

pub mod ack;
pub mod mllp;
pub mod parse;

pub use ack::{AckCode, AckError, ErrorCode, build_ack};
pub use mllp::{Event, Framer, frame};
pub use parse::{Charset, Delimiters, Message, ParseError, ParseErrorKind, Segment, parse};
