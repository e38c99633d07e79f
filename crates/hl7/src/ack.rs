//! Original-mode acknowledgments: MSA-1 AA (accepted: stored and audited), AE (a content
//! error, with an ERR segment that says where) or AR (rejected: unsupported or not allowed).
//! MSA-2 echoes MSH-10; the ACK's MSH swaps sender and receiver. An ERR text is a fixed
//! phrase, never a value from the message.
use crate::parse::{Delimiters, Message, ParseError, ParseErrorKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    Accept,
    Error,
    Reject,
}

impl AckCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// HL7 table 0357 message error condition codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    TableValueNotFound,
    UnsupportedMessageType,
    UnsupportedEventCode,
    UnsupportedProcessingId,
    UnsupportedVersion,
    UnknownKey,
    DuplicateKey,
    RecordLocked,
    InternalError,
}

impl ErrorCode {
    pub fn code(&self) -> u16 {
        match self {
            ErrorCode::SegmentSequence => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataType => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersion => 203,
            ErrorCode::UnknownKey => 204,
            ErrorCode::DuplicateKey => 205,
            ErrorCode::RecordLocked => 206,
            ErrorCode::InternalError => 207,
        }
    }

    pub fn text(&self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersion => "Unsupported version id",
            ErrorCode::UnknownKey => "Unknown key identifier",
            ErrorCode::DuplicateKey => "Duplicate key identifier",
            ErrorCode::RecordLocked => "Application record locked",
            ErrorCode::InternalError => "Application internal error",
        }
    }
}

/// Where an error is and what it is, for the ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    pub code: ErrorCode,
    /// Segment id and its 1-based occurrence, e.g. ("PID", 1).
    pub segment: Option<(String, usize)>,
    pub field: Option<usize>,
    /// A fixed explanation (never a value from the message).
    pub detail: &'static str,
}

impl AckError {
    pub fn new(code: ErrorCode, detail: &'static str) -> Self {
        Self {
            code,
            segment: None,
            field: None,
            detail,
        }
    }

    pub fn at(mut self, segment: &str, occurrence: usize, field: usize) -> Self {
        self.segment = Some((segment.to_owned(), occurrence));
        self.field = Some(field);
        self
    }

    /// The error of a message that did not parse.
    pub fn from_parse(e: &ParseError) -> Self {
        let (code, detail) = match e.kind {
            ParseErrorKind::NoMsh => (
                ErrorCode::SegmentSequence,
                "the message must start with MSH",
            ),
            ParseErrorKind::BadDelimiters => (
                ErrorCode::DataType,
                "MSH-1/MSH-2 do not give usable delimiters",
            ),
            ParseErrorKind::UnsupportedCharset => (
                ErrorCode::TableValueNotFound,
                "unsupported character set in MSH-18",
            ),
            ParseErrorKind::BadEncoding => (
                ErrorCode::DataType,
                "text is not valid in the declared character set",
            ),
            ParseErrorKind::BadSegmentId => {
                (ErrorCode::SegmentSequence, "a segment id is not valid")
            }
            ParseErrorKind::MissingRequired => (
                ErrorCode::RequiredFieldMissing,
                "a required MSH field is missing",
            ),
            ParseErrorKind::TooLarge => (ErrorCode::DataType, "too many segments or fields"),
            ParseErrorKind::FieldTooComplex => (
                ErrorCode::DataType,
                "a field has too many repetitions or components",
            ),
            ParseErrorKind::MessageTooComplex => (
                ErrorCode::DataType,
                "the message has too many repetitions or components",
            ),
        };
        Self {
            code,
            segment: None,
            field: (e.field > 0).then_some(e.field),
            detail,
        }
    }
}

/// Escapes text for writing into a field.
pub fn escape(s: &str, d: &Delimiters) -> String {
    let Some(esc) = d.escape.map(char::from) else {
        return s.to_owned();
    };
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let code = match c {
            c if c == esc => Some('E'),
            c if c == char::from(d.field) => Some('F'),
            c if c == char::from(d.component) => Some('S'),
            c if c == char::from(d.subcomponent) => Some('T'),
            c if c == char::from(d.repetition) => Some('R'),
            _ => None,
        };
        match code {
            Some(k) => {
                out.push(esc);
                out.push(k);
                out.push(esc);
            }
            None if c == '\r' || c == '\n' => {}
            None => out.push(c),
        }
    }
    out
}

/// Builds an ACK for `original` (its header, if it could be read at all), with a new control
/// id and timestamp (`YYYYMMDDHHMMSS`) from the caller. Segments end with CR.
pub fn build_ack(
    original: Option<&Message>,
    code: AckCode,
    error: Option<&AckError>,
    control_id: &str,
    timestamp: &str,
) -> String {
    // The sender's delimiters, unless they have no escape character (then values could not
    // be written back safely): the standard ones.
    let d = original
        .map(|m| m.delimiters)
        .filter(|d| d.escape.is_some())
        .unwrap_or_default();
    let f = char::from(d.field);
    let c = char::from(d.component);
    let s = char::from(d.subcomponent);
    let get = |n: usize| -> String {
        original
            .and_then(|m| m.msh().fields.get(n))
            .and_then(|field| field.first())
            .map(|comps| {
                comps
                    .iter()
                    .map(|subs| {
                        subs.iter()
                            .map(|v| escape(v, &d))
                            .collect::<Vec<_>>()
                            .join(&s.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(&c.to_string())
            })
            .unwrap_or_default()
    };
    let trigger = original
        .and_then(|m| m.msh().component(9, 2))
        .map(|t| escape(t, &d))
        .unwrap_or_default();
    let processing = {
        let p = get(11);
        if p.is_empty() { "P".to_owned() } else { p }
    };
    let version = {
        let v = get(12);
        if v.is_empty() { "2.5".to_owned() } else { v }
    };
    let mut out = format!(
        "MSH{f}{}{f}{}{f}{}{f}{}{f}{}{f}{timestamp}{f}{f}ACK{c}{trigger}{c}ACK{f}{}{f}{processing}{f}{version}\r",
        d.encoding_characters(),
        get(5),
        get(6),
        get(3),
        get(4),
        escape(control_id, &d),
    );
    let echoed = original
        .map(|m| escape(m.control_id(), &d))
        .unwrap_or_default();
    out.push_str(&format!("MSA{f}{}{f}{echoed}\r", code.as_str()));
    if let Some(e) = error {
        let (seg, occ) = e.segment.clone().unwrap_or_else(|| ("MSH".to_owned(), 1));
        let field = e.field.map(|n| n.to_string()).unwrap_or_default();
        let location = format!("{seg}{c}{occ}{c}{field}");
        let severity = if code == AckCode::Accept { "W" } else { "E" };
        out.push_str(&format!(
            "ERR{f}{location}{c}{code}{s}{text}{s}HL70357{f}{location}{f}{code}{c}{text}{c}HL70357{f}{severity}{f}{f}{f}{f}{detail}\r",
            code = e.code.code(),
            text = e.code.text(),
            detail = escape(e.detail, &d),
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::parse::parse;

    #[test]
    fn an_ack_swaps_sender_and_receiver_and_echoes_the_control_id() {
        let m =
            parse(b"MSH|^~\\&|LAB|NORTH|PHIVAULT|HOSP|20260101||ORU^R01|CTRL-9|P|2.3\rPID|1||X\r")
                .unwrap();
        let ack = build_ack(Some(&m), AckCode::Accept, None, "ACK-1", "20260102030405");
        let a = parse(ack.as_bytes()).unwrap();
        let msh = a.msh();
        assert_eq!(msh.value(3), Some("PHIVAULT"));
        assert_eq!(msh.value(4), Some("HOSP"));
        assert_eq!(msh.value(5), Some("LAB"));
        assert_eq!(msh.value(6), Some("NORTH"));
        assert_eq!(a.message_type(), ("ACK", "R01"));
        assert_eq!(a.control_id(), "ACK-1");
        assert_eq!(a.version(), "2.3");
        let msa = a.segment("MSA").unwrap();
        assert_eq!(msa.value(1), Some("AA"));
        assert_eq!(msa.value(2), Some("CTRL-9"));
        assert!(a.segment("ERR").is_none());
    }

    #[test]
    fn errors_say_where_and_what_in_fixed_words() {
        let m = parse(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|C1|P|2.5.1\rPID|1||\r").unwrap();
        let e = AckError::new(ErrorCode::RequiredFieldMissing, "PID-3 needs an identifier")
            .at("PID", 1, 3);
        let ack = build_ack(Some(&m), AckCode::Error, Some(&e), "A2", "2026");
        let a = parse(ack.as_bytes()).unwrap();
        assert_eq!(a.segment("MSA").unwrap().value(1), Some("AE"));
        let err = a.segment("ERR").unwrap();
        assert_eq!(err.get(2, 1, 1, 1), Some("PID"));
        assert_eq!(err.get(2, 1, 3, 1), Some("3"));
        assert_eq!(err.get(3, 1, 1, 1), Some("101"));
        assert_eq!(err.value(4), Some("E"));
        assert_eq!(err.value(8), Some("PID-3 needs an identifier"));
        // Unparseable input: an AR with default delimiters and an empty MSA-2.
        let ack = build_ack(
            None,
            AckCode::Reject,
            Some(&AckError::new(ErrorCode::SegmentSequence, "no MSH")),
            "A3",
            "2026",
        );
        let a = parse(ack.as_bytes()).unwrap();
        assert_eq!(a.segment("MSA").unwrap().value(1), Some("AR"));
        assert_eq!(a.segment("MSA").unwrap().value(2), None);
    }

    #[test]
    fn a_header_without_an_escape_character_gets_an_ack_in_standard_delimiters() {
        // Found by the fuzzer: MSH-2 "^~" and an '&' in a value.
        let m = parse(b"MSH|^~|M\\&PI|R|P|R|2026||ADT^A40|C1|P|2.5\r").unwrap();
        let ack = build_ack(Some(&m), AckCode::Accept, None, "A1", "2026");
        let a = parse(ack.as_bytes()).unwrap();
        assert_eq!(a.delimiters, Delimiters::default());
        assert_eq!(a.segment("MSA").unwrap().value(2), Some("C1"));
    }

    #[test]
    fn values_written_back_are_escaped() {
        let d = Delimiters::default();
        assert_eq!(
            escape("a|b^c&d~e\\f", &d),
            "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
        );
    }
}
