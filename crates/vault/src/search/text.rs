//! How search compares text: folded strings (FHIR's case- and accent-insensitive match),
//! Soundex codes for the `phonetic` parameter, phone numbers by their digits.
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Case- and accent-insensitive form: Unicode NFKD, combining marks dropped, lowercased,
/// runs of white space made one space, trimmed.
pub fn fold(s: &str) -> String {
    let bare: String = s.nfkd().filter(|c| !is_combining_mark(*c)).collect();
    bare.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first `n` characters of a folded string.
pub fn prefix(folded: &str, n: usize) -> &str {
    match folded.char_indices().nth(n) {
        Some((at, _)) => folded.get(..at).unwrap_or(folded),
        None => folded,
    }
}

/// American Soundex (a letter and three digits) of the first word's letters, `None` if it has
/// no ASCII letter once folded.
pub fn soundex(s: &str) -> Option<String> {
    let letters: Vec<char> = fold(s).chars().filter(char::is_ascii_alphabetic).collect();
    let first = *letters.first()?;
    let code = |c: char| match c {
        'b' | 'f' | 'p' | 'v' => '1',
        'c' | 'g' | 'j' | 'k' | 'q' | 's' | 'x' | 'z' => '2',
        'd' | 't' => '3',
        'l' => '4',
        'm' | 'n' => '5',
        'r' => '6',
        'h' | 'w' => 'h',
        _ => '0',
    };
    let mut out = String::from(first.to_ascii_uppercase());
    let mut last = code(first);
    for &c in letters.iter().skip(1) {
        let d = code(c);
        if d == 'h' {
            // H and W do not separate letters of the same code.
            continue;
        }
        if d != '0' && d != last {
            out.push(d);
            if out.len() == 4 {
                break;
            }
        }
        last = d;
    }
    while out.len() < 4 {
        out.push('0');
    }
    Some(out)
}

/// The digits of a phone number.
pub fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Two phone numbers are the same if their digits are, or if both have at least ten digits and
/// the last ten agree (a country code written on one side only).
pub fn same_phone(a: &str, b: &str) -> bool {
    let (a, b) = (digits(a), digits(b));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a == b || (a.len() >= 10 && b.len() >= 10 && last10(&a) == last10(&b))
}

pub fn last10(d: &str) -> &str {
    d.get(d.len().saturating_sub(10)..).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_drops_case_and_accents() {
        assert_eq!(fold("  José   MUÑOZ "), "jose munoz");
        assert_eq!(fold("Zoë"), "zoe");
        assert_eq!(fold("Ångström"), "angstrom");
        assert_eq!(prefix("jose", 2), "jo");
        assert_eq!(prefix("jo", 6), "jo");
        assert_eq!(prefix("ñandú", 3), "ñan");
    }

    #[test]
    fn soundex_codes() {
        for (name, code) in [
            ("Robert", "R163"),
            ("Rupert", "R163"),
            ("Ashcraft", "A261"),
            ("Tymczak", "T522"),
            ("Pfister", "P236"),
            ("Honeyman", "H555"),
            ("Lee", "L000"),
            ("Müller", "M460"),
        ] {
            assert_eq!(soundex(name).as_deref(), Some(code), "{name}");
        }
        assert_eq!(soundex("123"), None);
    }

    #[test]
    fn phones_compare_by_digits() {
        assert!(same_phone("(555) 010-9999", "555.010.9999"));
        assert!(same_phone("+1 555 010 9999", "5550109999"));
        assert!(!same_phone("555 0109", "5550109999"));
        assert!(!same_phone("", ""));
    }
}
