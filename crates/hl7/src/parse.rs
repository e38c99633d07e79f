//! The HL7 v2 (2.1–2.8) parser: delimiters from MSH-1/MSH-2, segments ended by CR, LF or
//! CRLF, fields, repetitions, components and subcomponents, escape sequences (`\F\ \S\ \T\
//! \R\ \E\ \Xhh..\ \.br\`), null (`""`) values, Z-segments kept as any other, and the
//! character set named in MSH-18 (ASCII, 8859/1, UTF-8). Errors say where, never what.

/// The encoding characters of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: u8,
    pub component: u8,
    pub repetition: u8,
    pub escape: Option<u8>,
    pub subcomponent: u8,
    /// The truncation character of v2.7+ (`#`), if given.
    pub truncation: Option<u8>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: Some(b'\\'),
            subcomponent: b'&',
            truncation: None,
        }
    }
}

impl Delimiters {
    /// MSH-2 as it is written. Without an escape character, only the component and
    /// repetition separators (MSH-2 is positional).
    pub fn encoding_characters(&self) -> String {
        let mut s = String::new();
        s.push(char::from(self.component));
        s.push(char::from(self.repetition));
        if let Some(e) = self.escape {
            s.push(char::from(e));
            s.push(char::from(self.subcomponent));
            if let Some(t) = self.truncation {
                s.push(char::from(t));
            }
        }
        s
    }
}

/// The character set of a message (MSH-18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// ASCII (the default). Bytes above 127 are read as UTF-8 when they are valid UTF-8,
    /// else as ISO 8859-1: real feeds say ASCII and send both.
    Ascii,
    Latin1,
    Utf8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The message does not start with an MSH segment.
    NoMsh,
    /// MSH-1/MSH-2 do not give usable, distinct delimiters.
    BadDelimiters,
    /// MSH-18 names a character set this parser does not read.
    UnsupportedCharset,
    /// Text that is not valid in the declared character set.
    BadEncoding,
    /// A segment id that is not three upper-case letters or digits.
    BadSegmentId,
    /// A required element is missing (MSH-9 message type, MSH-10 control id…).
    MissingRequired,
    /// Too many segments or fields.
    TooLarge,
    /// A field with more repetitions, or components and subcomponents, than [`ParseLimits`]
    /// allows.
    FieldTooComplex,
    /// A message with more elements (subcomponents, all fields together) than
    /// [`ParseLimits`] allows.
    MessageTooComplex,
}

/// What went wrong and where (1-based segment number; field number within it, 0 if none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HL7 parse error: {kind:?} at segment {segment}, field {field}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub segment: usize,
    pub field: usize,
}

pub(crate) fn err(kind: ParseErrorKind, segment: usize, field: usize) -> ParseError {
    ParseError {
        kind,
        segment,
        field,
    }
}

/// A field: its repetitions, each of components, each of subcomponents (decoded text).
pub type Field = Vec<Vec<Vec<String>>>;

/// One segment. `fields[0]` is the segment id; for MSH, `fields[1]` is MSH-1 (the field
/// separator) and `fields[2]` MSH-2 (the encoding characters), as the standard numbers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: String,
    pub fields: Vec<Field>,
}

impl Segment {
    /// Subcomponent `sub` of component `comp` of repetition `rep` of field `n` (all 1-based);
    /// `None` when absent or empty. A null (`""`) reads as `Some("\"\"")`: see [`Segment::is_null`].
    pub fn get(&self, n: usize, rep: usize, comp: usize, sub: usize) -> Option<&str> {
        let v = self
            .fields
            .get(n)?
            .get(rep.checked_sub(1)?)?
            .get(comp.checked_sub(1)?)?
            .get(sub.checked_sub(1)?)?;
        (!v.is_empty()).then_some(v.as_str())
    }

    /// The first repetition's component `comp` of field `n`.
    pub fn component(&self, n: usize, comp: usize) -> Option<&str> {
        self.get(n, 1, comp, 1).filter(|v| *v != "\"\"")
    }

    /// The first component of field `n`.
    pub fn value(&self, n: usize) -> Option<&str> {
        self.component(n, 1)
    }

    /// How many repetitions field `n` has.
    pub fn repetitions(&self, n: usize) -> usize {
        self.fields.get(n).map_or(0, Vec::len)
    }

    /// Whether field `n` is the explicit null `""`.
    pub fn is_null(&self, n: usize) -> bool {
        self.get(n, 1, 1, 1) == Some("\"\"")
    }
}

pub use crate::limits::ParseLimits;
use crate::limits::within;

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub delimiters: Delimiters,
    pub charset: Charset,
    pub segments: Vec<Segment>,
}

impl Message {
    /// The MSH segment ([`parse`] guarantees it comes first).
    pub fn msh(&self) -> &Segment {
        static NONE: Segment = Segment {
            id: String::new(),
            fields: Vec::new(),
        };
        self.segments.first().unwrap_or(&NONE)
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    pub fn segments_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.id == id)
    }

    /// MSH-9.1 and MSH-9.2, e.g. ("ADT", "A01").
    pub fn message_type(&self) -> (&str, &str) {
        let m = self.msh();
        (
            m.component(9, 1).unwrap_or(""),
            m.component(9, 2).unwrap_or(""),
        )
    }

    /// MSH-10.
    pub fn control_id(&self) -> &str {
        self.msh().value(10).unwrap_or("")
    }

    /// MSH-12.1.
    pub fn version(&self) -> &str {
        self.msh().value(12).unwrap_or("")
    }
}

/// The most segments, and fields per segment, a message may have.
pub const MAX_SEGMENTS: usize = 10_000;
pub const MAX_FIELDS: usize = 1_000;

fn split_segments(raw: &[u8]) -> Vec<&[u8]> {
    raw.split(|b| *b == b'\r' || *b == b'\n')
        .filter(|s| !s.iter().all(|b| b.is_ascii_whitespace()))
        .take(MAX_SEGMENTS + 1)
        .collect()
}

fn charset_of(name: &str) -> Option<Charset> {
    let n = name.trim().to_ascii_uppercase();
    match n.as_str() {
        "" | "ASCII" | "US-ASCII" => Some(Charset::Ascii),
        "8859/1" | "ISO-8859-1" | "ISO8859-1" | "ISO_IR 100" | "LATIN1" => Some(Charset::Latin1),
        "UNICODE UTF-8" | "UTF-8" | "UTF8" | "UNICODE" => Some(Charset::Utf8),
        _ => None,
    }
}

fn decode(bytes: &[u8], charset: Charset) -> Option<String> {
    match charset {
        Charset::Utf8 => String::from_utf8(bytes.to_vec()).ok(),
        Charset::Latin1 => Some(bytes.iter().map(|b| *b as char).collect()),
        Charset::Ascii => Some(
            String::from_utf8(bytes.to_vec())
                .unwrap_or_else(|_| bytes.iter().map(|b| *b as char).collect()),
        ),
    }
}

/// Replaces escape sequences in one subcomponent's bytes.
fn unescape(raw: &[u8], d: &Delimiters) -> Vec<u8> {
    let Some(esc) = d.escape else {
        return raw.to_vec();
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != esc {
            out.push(b);
            i += 1;
            continue;
        }
        // Find the closing escape character.
        let Some(len) = raw
            .get(i + 1..)
            .and_then(|r| r.iter().position(|c| *c == esc))
        else {
            out.extend_from_slice(raw.get(i..).unwrap_or_default());
            break;
        };
        let body = raw.get(i + 1..i + 1 + len).unwrap_or_default();
        match body {
            b"F" => out.push(d.field),
            b"S" => out.push(d.component),
            b"T" => out.push(d.subcomponent),
            b"R" => out.push(d.repetition),
            b"E" => out.push(esc),
            b".br" => out.push(b'\n'),
            // Formatting and character-set switches carry no text of their own.
            b"H" | b"N" => {}
            _ if body.first() == Some(&b'X') && body.len() % 2 == 1 => {
                let hex = body.get(1..).unwrap_or_default();
                let decoded: Option<Vec<u8>> = hex
                    .chunks(2)
                    .map(|p| {
                        std::str::from_utf8(p)
                            .ok()
                            .and_then(|s| u8::from_str_radix(s, 16).ok())
                    })
                    .collect();
                match decoded {
                    Some(bytes) => out.extend(bytes),
                    None => out.extend_from_slice(raw.get(i..i + len + 2).unwrap_or_default()),
                }
            }
            _ if matches!(body.first(), Some(b'C' | b'M' | b'.')) => {}
            // Unknown: kept as written, nothing lost.
            _ => out.extend_from_slice(raw.get(i..i + len + 2).unwrap_or_default()),
        }
        i += len + 2;
    }
    out
}

fn split_field(
    raw: &[u8],
    d: &Delimiters,
    charset: Charset,
    seg: usize,
    n: usize,
) -> Result<Field, ParseError> {
    raw.split(|b| *b == d.repetition)
        .map(|rep| {
            rep.split(|b| *b == d.component)
                .map(|comp| {
                    comp.split(|b| *b == d.subcomponent)
                        .map(|sub| {
                            decode(&unescape(sub, d), charset)
                                .ok_or_else(|| err(ParseErrorKind::BadEncoding, seg, n))
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn delimiters(msh: &[u8]) -> Result<Delimiters, ParseError> {
    let bad = || err(ParseErrorKind::BadDelimiters, 1, 2);
    let field = *msh.get(3).ok_or_else(bad)?;
    let rest = msh.get(4..).unwrap_or_default();
    let enc: &[u8] = rest.split(|b| *b == field).next().unwrap_or_default();
    if enc.len() < 2 || enc.len() > 5 {
        return Err(bad());
    }
    let at = |i: usize| enc.get(i).copied();
    let d = Delimiters {
        field,
        component: at(0).ok_or_else(bad)?,
        repetition: at(1).ok_or_else(bad)?,
        escape: at(2),
        subcomponent: at(3).unwrap_or(b'&'),
        truncation: at(4),
    };
    let all: Vec<u8> = [
        Some(d.field),
        Some(d.component),
        Some(d.repetition),
        d.escape,
        Some(d.subcomponent),
        d.truncation,
    ]
    .into_iter()
    .flatten()
    .collect();
    let distinct = all
        .iter()
        .enumerate()
        .all(|(i, a)| all.iter().skip(i + 1).all(|b| a != b));
    let printable = all.iter().all(|b| b.is_ascii_punctuation() || *b == b' ');
    if !distinct || !printable {
        return Err(bad());
    }
    Ok(d)
}

/// Parses one message (the bytes inside an MLLP frame) under the default [`ParseLimits`].
pub fn parse(raw: &[u8]) -> Result<Message, ParseError> {
    parse_with(raw, &ParseLimits::default())
}

/// Parses one message under `limits`.
pub fn parse_with(raw: &[u8], limits: &ParseLimits) -> Result<Message, ParseError> {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let lines = split_segments(raw);
    if lines.len() > MAX_SEGMENTS {
        return Err(err(ParseErrorKind::TooLarge, MAX_SEGMENTS, 0));
    }
    let first = *lines
        .first()
        .ok_or_else(|| err(ParseErrorKind::NoMsh, 1, 0))?;
    let first = first.trim_ascii_start();
    if !first.starts_with(b"MSH") {
        return Err(err(ParseErrorKind::NoMsh, 1, 0));
    }
    let d = delimiters(first)?;
    // MSH-18 decides how the rest is read; it is ASCII itself.
    let msh_fields: Vec<&[u8]> = first.split(|b| *b == d.field).collect();
    let charset_name = msh_fields
        .get(17)
        .map(|f| {
            let rep = f.split(|b| *b == d.repetition).next().unwrap_or_default();
            String::from_utf8_lossy(rep).into_owned()
        })
        .unwrap_or_default();
    let charset =
        charset_of(&charset_name).ok_or_else(|| err(ParseErrorKind::UnsupportedCharset, 1, 18))?;
    let mut segments = Vec::with_capacity(lines.len());
    let mut total = 0usize;
    for (i, line) in lines.iter().enumerate() {
        let seg_no = i + 1;
        let line = if i == 0 { first } else { line };
        let parts: Vec<&[u8]> = line.split(|b| *b == d.field).take(MAX_FIELDS + 1).collect();
        if parts.len() > MAX_FIELDS {
            return Err(err(ParseErrorKind::TooLarge, seg_no, MAX_FIELDS));
        }
        let id_bytes = parts.first().copied().unwrap_or_default();
        let id_ok = id_bytes.len() == 3
            && id_bytes
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !id_ok {
            return Err(err(ParseErrorKind::BadSegmentId, seg_no, 0));
        }
        let id = String::from_utf8_lossy(id_bytes).into_owned();
        let mut fields: Vec<Field> = vec![vec![vec![vec![id.clone()]]]];
        if id == "MSH" {
            if i != 0 {
                return Err(err(ParseErrorKind::BadSegmentId, seg_no, 0));
            }
            fields.push(vec![vec![vec![(d.field as char).to_string()]]]);
            fields.push(vec![vec![vec![d.encoding_characters()]]]);
            for (n, part) in parts.iter().enumerate().skip(2) {
                within(part, &d, limits, &mut total, (seg_no, n + 1))?;
                fields.push(split_field(part, &d, charset, seg_no, n + 1)?);
            }
        } else {
            if i == 0 {
                return Err(err(ParseErrorKind::NoMsh, 1, 0));
            }
            for (n, part) in parts.iter().enumerate().skip(1) {
                within(part, &d, limits, &mut total, (seg_no, n))?;
                fields.push(split_field(part, &d, charset, seg_no, n)?);
            }
        }
        segments.push(Segment { id, fields });
    }
    let msg = Message {
        delimiters: d,
        charset,
        segments,
    };
    if msg.msh().component(9, 1).is_none() {
        return Err(err(ParseErrorKind::MissingRequired, 1, 9));
    }
    if msg.msh().value(10).is_none() {
        return Err(err(ParseErrorKind::MissingRequired, 1, 10));
    }
    Ok(msg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const ADT: &str = "MSH|^~\\&|EPIC|HOSP|PHIVAULT|HOSP|20260101120000||ADT^A01^ADT_A01|MSG0001|P|2.5.1\r\
        EVN|A01|20260101120000\r\
        PID|1||12345^^^HOSP^MR~999-00-1234^^^SSA^SS||O'Neil^Mary^Ann~Smith^Mary||19610314|F|||1 Main St^Apt 2^Boston^MA^02110||(617)555-0100|||||||999-00-1234\r\
        PV1|1|I|ICU^101^A||||1234^Welby^Marcus\r\
        ZPI|custom|data\r";

    #[test]
    fn fields_repetitions_components_and_z_segments() {
        let m = parse(ADT.as_bytes()).unwrap();
        assert_eq!(m.message_type(), ("ADT", "A01"));
        assert_eq!(m.control_id(), "MSG0001");
        assert_eq!(m.version(), "2.5.1");
        assert_eq!(m.msh().value(1), Some("|"));
        assert_eq!(m.msh().value(2), Some("^~\\&"));
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.repetitions(3), 2);
        assert_eq!(pid.get(3, 2, 1, 1), Some("999-00-1234"));
        assert_eq!(pid.get(3, 1, 4, 1), Some("HOSP"));
        assert_eq!(pid.get(5, 2, 1, 1), Some("Smith"));
        assert_eq!(pid.component(11, 3), Some("Boston"));
        assert_eq!(m.segment("ZPI").unwrap().value(2), Some("data"));
        assert_eq!(m.segments.len(), 5);
    }

    #[test]
    fn line_endings_escapes_nulls_and_subcomponents() {
        for sep in ["\r", "\n", "\r\n"] {
            let text = format!(
                "MSH|^~\\&|A|B|C|D|2026||ORU^R01|X1|P|2.3{sep}OBX|1|TX|code||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g\\X41\\||\"\"|x&y{sep}"
            );
            let m = parse(text.as_bytes()).unwrap();
            let obx = m.segment("OBX").unwrap();
            assert_eq!(obx.value(5), Some("a|b^c&d~e\\f\ng\u{41}"));
            assert!(obx.is_null(7));
            assert_eq!(obx.value(7), None);
            assert_eq!(obx.get(8, 1, 1, 2), Some("y"));
        }
    }

    #[test]
    fn delimiters_come_from_the_header() {
        let m = parse(b"MSH#$*!%#A#B#C#D#2026##ADT$A08#C2#P#2.4\rPID#1##77$$$H$MR*88\r").unwrap();
        assert_eq!(m.message_type(), ("ADT", "A08"));
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.get(3, 1, 4, 1), Some("H"));
        assert_eq!(pid.get(3, 2, 1, 1), Some("88"));
    }

    #[test]
    fn character_sets() {
        let mut latin =
            b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|C3|P|2.5||||||8859/1\rPID|1||1||M".to_vec();
        latin.push(0xFC); // ü in ISO 8859-1
        latin.extend_from_slice(b"ller\r");
        let m = parse(&latin).unwrap();
        assert_eq!(m.charset, Charset::Latin1);
        assert_eq!(m.segment("PID").unwrap().value(5), Some("Müller"));
        let utf8 = "MSH|^~\\&|A|B|C|D|2026||ADT^A08|C4|P|2.5||||||UNICODE UTF-8\rPID|1||1||Zoë\r";
        assert_eq!(
            parse(utf8.as_bytes())
                .unwrap()
                .segment("PID")
                .unwrap()
                .value(5),
            Some("Zoë")
        );
        let mut bad =
            b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|C5|P|2.5||||||UNICODE UTF-8\rPID|1||1||".to_vec();
        bad.push(0xFF);
        assert_eq!(parse(&bad).unwrap_err().kind, ParseErrorKind::BadEncoding);
        let other = b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|C6|P|2.5||||||ISO IR87\r";
        assert_eq!(
            parse(other).unwrap_err().kind,
            ParseErrorKind::UnsupportedCharset
        );
    }

    #[test]
    fn malformed_input_is_an_error_with_a_position_never_text() {
        for (raw, kind) in [
            (&b""[..], ParseErrorKind::NoMsh),
            (b"PID|1||SECRETNAME\r", ParseErrorKind::NoMsh),
            (b"MSH", ParseErrorKind::BadDelimiters),
            (b"MSH|^^\\&|A\r", ParseErrorKind::BadDelimiters),
            (
                b"MSH|^~\\&|A|B|C|D|2026||ADT^A01\r",
                ParseErrorKind::MissingRequired,
            ),
            (
                b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rpid|SECRET\r",
                ParseErrorKind::BadSegmentId,
            ),
            (
                b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rMSH|^~\\&|A\r",
                ParseErrorKind::BadSegmentId,
            ),
        ] {
            let e = parse(raw).unwrap_err();
            assert_eq!(e.kind, kind, "{}", String::from_utf8_lossy(raw));
            assert!(!e.to_string().contains("SECRET"));
        }
    }
}
