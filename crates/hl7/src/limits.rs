//! Caps on what one HL7 message may make the parser build (see [`ParseLimits`]).
use crate::parse::{Delimiters, ParseError, ParseErrorKind, err};

/// Caps on what one message may make the parser build. Every element costs a few vectors
/// however short its text, so without caps a frame of separators (`~~~~…`) costs over a
/// hundred times its size; the counts are taken from the separators before anything is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Repetitions of one field.
    pub max_repetitions: usize,
    /// Components and subcomponents of one field, all its repetitions together.
    pub max_field_elements: usize,
    /// Elements (subcomponents, so at least one per field) of the whole message.
    pub max_message_elements: usize,
}

impl Default for ParseLimits {
    /// Far above what real feeds send (a few repetitions, a few dozen components per
    /// field), low enough that a whole message costs a few MiB at most.
    fn default() -> Self {
        Self {
            max_repetitions: 200,
            max_field_elements: 2_000,
            max_message_elements: 100_000,
        }
    }
}

/// A field's repetitions and elements, counted from its separators.
fn counts(raw: &[u8], d: &Delimiters) -> (usize, usize) {
    let (mut reps, mut elements) = (1, 1);
    for b in raw {
        if *b == d.repetition {
            reps += 1;
            elements += 1;
        } else if *b == d.component || *b == d.subcomponent {
            elements += 1;
        }
    }
    (reps, elements)
}

/// Counts a field against the caps before it is built; `total` is the message's so far.
pub(crate) fn within(
    raw: &[u8],
    d: &Delimiters,
    limits: &ParseLimits,
    total: &mut usize,
    at: (usize, usize),
) -> Result<(), ParseError> {
    let (reps, elements) = counts(raw, d);
    if reps > limits.max_repetitions || elements > limits.max_field_elements {
        return Err(err(ParseErrorKind::FieldTooComplex, at.0, at.1));
    }
    *total = total.saturating_add(elements);
    if *total > limits.max_message_elements {
        return Err(err(ParseErrorKind::MessageTooComplex, at.0, at.1));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::parse::{MAX_FIELDS, MAX_SEGMENTS, parse, parse_with};

    #[test]
    fn separator_floods_are_refused_before_anything_is_built() {
        let head = "MSH|^~\\&|A|B|C|D|2026||ADT^A08|C1|P|2.5\rPID|1||";
        let limits = ParseLimits::default();
        let at = |body: String| parse(format!("{head}{body}\r").as_bytes());
        assert!(at("~".repeat(limits.max_repetitions - 1)).is_ok());
        let e = at("~".repeat(limits.max_repetitions)).unwrap_err();
        assert_eq!(
            (e.kind, e.segment, e.field),
            (ParseErrorKind::FieldTooComplex, 2, 3)
        );
        let e = at("^&".repeat(limits.max_field_elements)).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::FieldTooComplex);
        let e = at(format!("X{}", "|^".repeat(MAX_FIELDS))).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::TooLarge);
        // Many fields, each within the field caps: the message's cap.
        let small = ParseLimits {
            max_message_elements: 50,
            ..limits
        };
        let msg = format!("{head}1\r{}", "OBX|1|ST|^^^^^^^^^\r".repeat(5));
        let e = parse_with(msg.as_bytes(), &small).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::MessageTooComplex);
        assert!(parse(msg.as_bytes()).is_ok());
        let lines = "\rA".repeat(MAX_SEGMENTS + 5);
        assert_eq!(at(lines).unwrap_err().kind, ParseErrorKind::TooLarge);
    }
}
