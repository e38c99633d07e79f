//! The keyed search indexes: what each record adds (terms → keyed digests, some truncated to
//! a few bits so equal digests stop meaning equal values), and which digests a criterion looks
//! up. An index only proposes candidates; the matcher decides on the opened record, so a
//! truncated (colliding) digest costs time, never a wrong answer. docs/SEARCH.md says what
//! each index tells someone holding a copy of the database.
use super::dates::DateParam;
use super::matcher::{Criterion, Wanted, reference_of, tokens, values_at};
use super::params::{self, Kind};
use super::text::{self, digits, fold, prefix};
use phivault_core::{Digest32, IndexKind};
use serde_json::Value;

/// Name and address prefixes are indexed up to this many characters.
pub const PREFIX_LEN: usize = 6;
/// Birth years indexed one by one; the others fall in an `early` or `late` bucket.
pub const FIRST_YEAR: i32 = 1800;
pub const LAST_YEAR: i32 = 2100;
/// The family-name prefix lengths indexed with the birth year.
const FAMILY_YEAR_LENS: [usize; 2] = [3, 5];
/// The most birth years a family + birth-date search looks up together.
const FAMILY_YEAR_MAX: usize = 30;

/// How many leading bits of an index kind's digest are kept (256: all).
pub fn kept_bits(kind: IndexKind) -> u32 {
    match kind {
        IndexKind::NamePrefix | IndexKind::AddressPrefix | IndexKind::FamilyYear => 16,
        IndexKind::BirthDay | IndexKind::NamePhonetic => 12,
        IndexKind::BirthMonth => 8,
        _ => 256,
    }
}

/// How many records a term of this kind typically selects (its rank: lower is narrower).
pub fn width(kind: IndexKind) -> u8 {
    match kind {
        IndexKind::Identifier | IndexKind::IdentifierValue | IndexKind::FamilyBirthdate => 0,
        IndexKind::Phone | IndexKind::Email | IndexKind::FamilyYear => 1,
        IndexKind::BirthDay | IndexKind::NamePhonetic | IndexKind::Reference => 2,
        IndexKind::NamePrefix | IndexKind::AddressPrefix => 3,
        IndexKind::BirthMonth => 4,
        IndexKind::BirthYear => 5,
    }
}

/// Keeps the first `bits` bits of a digest, zeroes the rest.
pub fn truncate(mut d: Digest32, bits: u32) -> Digest32 {
    for (i, b) in d.0.iter_mut().enumerate() {
        let start = u32::try_from(i).unwrap_or(u32::MAX).saturating_mul(8);
        if start >= bits {
            *b = 0;
        } else if start + 8 > bits {
            *b &= 0xffu8 << (start + 8 - bits);
        }
    }
    d
}

/// A term to index or look up: its kind and its normalized text.
pub type Term = (IndexKind, String);

fn name_parts(r: &Value) -> Vec<String> {
    params::find("Patient", "name")
        .map(|d| d.paths)
        .unwrap_or(&[])
        .iter()
        .flat_map(|p| values_at(r, p))
        .filter_map(Value::as_str)
        .map(fold)
        .filter(|s| !s.is_empty())
        .collect()
}

fn prefixes(kind: IndexKind, tag: &str, folded: &str, out: &mut Vec<Term>) {
    for n in 1..=PREFIX_LEN.min(folded.chars().count()) {
        out.push((kind, format!("{tag}{}", prefix(folded, n))));
    }
}

fn year_term(y: i32) -> String {
    if y < FIRST_YEAR {
        "early".into()
    } else if y > LAST_YEAR {
        "late".into()
    } else {
        y.to_string()
    }
}

/// The birth year of a `birthDate`, as the year indexes hold it.
fn birth_year(b: &str) -> Option<String> {
    b.trim().get(..4)?.parse::<i32>().ok().map(year_term)
}

/// The family-prefix length a search for `folded` looks up: the longest indexed one it has.
fn family_year_len(folded: &str) -> Option<usize> {
    let n = folded.chars().count();
    FAMILY_YEAR_LENS.iter().rev().copied().find(|l| *l <= n)
}

fn family_year_terms(r: &Value, out: &mut Vec<Term>) {
    let Some(year) = r
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(birth_year)
    else {
        return;
    };
    for family in values_at(r, "name.family")
        .into_iter()
        .filter_map(Value::as_str)
    {
        let f = fold(family);
        let n = f.chars().count();
        for len in FAMILY_YEAR_LENS.into_iter().filter(|l| *l <= n) {
            out.push((IndexKind::FamilyYear, format!("{}|{year}", prefix(&f, len))));
        }
    }
}

fn birth_terms(b: &str, out: &mut Vec<Term>) {
    let b = b.trim();
    let Some(year) = birth_year(b) else {
        return;
    };
    out.push((IndexKind::BirthYear, year));
    if let Some(m) = b.get(..7).filter(|_| b.len() >= 7) {
        out.push((IndexKind::BirthMonth, m.to_owned()));
    }
    if let Some(d) = b.get(..10).filter(|_| b.len() >= 10) {
        out.push((IndexKind::BirthDay, d.to_owned()));
    }
}

/// A contact point's terms: phone-like values by digits, emails lowercased, any other value
/// (and a value without a system) as written.
fn contact_terms(system: Option<&str>, value: &str, out: &mut Vec<Term>) {
    let d = digits(value);
    match system {
        Some("email") => out.push((IndexKind::Email, value.trim().to_lowercase())),
        Some("phone" | "sms" | "fax" | "pager") | None if !d.is_empty() => {
            out.push((IndexKind::Phone, d.clone()));
            if d.len() > 10 {
                out.push((IndexKind::Phone, text::last10(&d).to_owned()));
            }
        }
        _ => {}
    }
    if !matches!(system, Some("email" | "phone" | "sms" | "fax" | "pager")) {
        out.push((IndexKind::Email, format!("other:{}", value.trim())));
    }
}

fn reference_terms(rtype: &str, r: &Value, skip: &[&str], out: &mut Vec<Term>) {
    for def in params::of_type(rtype)
        .iter()
        .filter(|d| d.kind == Kind::Reference && !skip.contains(&d.name))
    {
        for p in def.paths {
            for v in values_at(r, p) {
                if let Some((_, id)) = reference_of(v) {
                    out.push((IndexKind::Reference, format!("{rtype}|{}|{id}", def.name)));
                }
            }
        }
    }
}

/// The search terms of a Patient (beside the exact-lookup terms it already had).
pub fn patient_terms(r: &Value) -> Vec<Term> {
    let mut out = Vec::new();
    for part in name_parts(r) {
        prefixes(IndexKind::NamePrefix, "", &part, &mut out);
    }
    for p in ["name.family", "name.given"] {
        for s in values_at(r, p).into_iter().filter_map(Value::as_str) {
            if let Some(code) = text::soundex(s) {
                out.push((IndexKind::NamePhonetic, code));
            }
        }
    }
    if let Some(b) = r.get("birthDate").and_then(Value::as_str) {
        birth_terms(b, &mut out);
    }
    family_year_terms(r, &mut out);
    for (path, tag) in [("address.city", "city:"), ("address.postalCode", "postal:")] {
        for s in values_at(r, path).into_iter().filter_map(Value::as_str) {
            prefixes(IndexKind::AddressPrefix, tag, &fold(s), &mut out);
        }
    }
    for t in values_at(r, "telecom") {
        for (system, value) in tokens(t) {
            contact_terms(system, value, &mut out);
        }
    }
    reference_terms("Patient", r, &[], &mut out);
    out
}

/// The search terms of a clinical (or other non-Patient) record: identifiers (by type) and
/// references other than to its patient (found through the patient's pseudonym instead).
pub fn record_terms(rtype: &str, r: &Value) -> Vec<Term> {
    let mut out = Vec::new();
    for ident in values_at(r, "identifier") {
        for (system, value) in tokens(ident) {
            let value = value.trim();
            out.push((
                IndexKind::Identifier,
                format!("{rtype}|{}|{value}", system.unwrap_or("").trim()),
            ));
            out.push((IndexKind::IdentifierValue, format!("{rtype}|{value}")));
        }
    }
    reference_terms(rtype, r, &["patient", "subject"], &mut out);
    out
}

fn birth_lookup(p: &DateParam, now: i64, out: &mut Vec<Term>) {
    use super::dates::{DAY, Prefix};
    let width = p.range.hi - p.range.lo;
    let day = time::OffsetDateTime::from_unix_timestamp(p.range.lo.div_euclid(1000))
        .ok()
        .map(|d| d.date());
    match (p.prefix, day) {
        (Prefix::Eq, Some(d)) if width == DAY && p.range.lo.rem_euclid(DAY) == 0 => {
            out.push((IndexKind::BirthDay, d.to_string()));
        }
        (Prefix::Eq, Some(d)) if (28..=31).contains(&(width / DAY)) && d.day() == 1 => {
            out.push((
                IndexKind::BirthMonth,
                format!("{:04}-{:02}", d.year(), u8::from(d.month())),
            ));
        }
        _ => {
            let (lo, hi) = p.years(now, FIRST_YEAR - 1, LAST_YEAR + 1);
            for y in lo..=hi {
                out.push((IndexKind::BirthYear, year_term(y)));
            }
        }
    }
}

/// The terms a criterion looks up (their union holds every match), or `None` when it has no
/// index (it then only filters).
pub fn lookup(rtype: &str, c: &Criterion, now: i64) -> Option<Vec<Term>> {
    let mut out = Vec::new();
    for w in &c.any_of {
        match (rtype, c.def.name, w) {
            ("Patient", "identifier", Wanted::Token { system, code }) => match system {
                Some(s) if !s.is_empty() => {
                    out.push((IndexKind::Identifier, format!("{s}|{}", code.trim())))
                }
                _ => out.push((IndexKind::IdentifierValue, code.trim().to_owned())),
            },
            (_, "identifier", Wanted::Token { system, code }) => match system {
                Some(s) if !s.is_empty() => out.push((
                    IndexKind::Identifier,
                    format!("{rtype}|{s}|{}", code.trim()),
                )),
                _ => out.push((
                    IndexKind::IdentifierValue,
                    format!("{rtype}|{}", code.trim()),
                )),
            },
            ("Patient", "name" | "family" | "given", Wanted::Str { text, exact }) => {
                let f = if *exact { fold(text) } else { text.clone() };
                if f.is_empty() {
                    return None;
                }
                out.push((IndexKind::NamePrefix, prefix(&f, PREFIX_LEN).to_owned()));
            }
            ("Patient", "phonetic", Wanted::Phonetic(code)) => {
                out.push((IndexKind::NamePhonetic, code.clone()))
            }
            ("Patient", "birthdate", Wanted::Date(p)) => birth_lookup(p, now, &mut out),
            ("Patient", "address-city" | "address-postalcode", Wanted::Str { text, exact }) => {
                let f = if *exact { fold(text) } else { text.clone() };
                if f.is_empty() {
                    return None;
                }
                let tag = if c.def.name == "address-city" {
                    "city:"
                } else {
                    "postal:"
                };
                out.push((
                    IndexKind::AddressPrefix,
                    format!("{tag}{}", prefix(&f, PREFIX_LEN)),
                ));
            }
            ("Patient", "telecom" | "phone" | "email", Wanted::Token { system, code }) => {
                contact_lookup(c.def.name, system.as_deref(), code, &mut out)
            }
            (_, _, Wanted::Reference { id, .. })
                if !matches!(c.def.name, "patient" | "subject") =>
            {
                out.push((IndexKind::Reference, format!("{rtype}|{}|{id}", c.def.name)))
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The lookups of a search's criteria (see [`lookup`]), with every birth-year lookup of a
/// Patient search (`birthdate=ge1968&birthdate=lt1973`: ANDed ranges) made one, of the years
/// they all allow.
pub fn lookups(rtype: &str, criteria: &[Criterion], now: i64) -> Vec<Vec<Term>> {
    let mut out = Vec::new();
    let mut years: Option<Vec<Term>> = None;
    for c in criteria {
        let Some(terms) = lookup(rtype, c, now) else {
            continue;
        };
        let only_years = c.def.name == "birthdate"
            && !terms.is_empty()
            && terms.iter().all(|(k, _)| *k == IndexKind::BirthYear);
        if !only_years {
            out.push(terms);
            continue;
        }
        years = Some(match years {
            None => terms,
            Some(prev) => prev.into_iter().filter(|t| terms.contains(t)).collect(),
        });
    }
    if let Some(years) = &years {
        out.extend(family_year_lookup(rtype, criteria, years));
    }
    out.extend(years);
    out
}

/// A Patient search by family and a birth-date range of a few years also looks up the family
/// prefixes with each of those years: far fewer candidates than either alone.
fn family_year_lookup(rtype: &str, criteria: &[Criterion], years: &[Term]) -> Option<Vec<Term>> {
    let family = criteria
        .iter()
        .find(|c| rtype == "Patient" && c.def.name == "family")?;
    if years.is_empty() || years.len() > FAMILY_YEAR_MAX {
        return None;
    }
    let mut out = Vec::new();
    for w in &family.any_of {
        let Wanted::Str { text, exact } = w else {
            return None;
        };
        let f = if *exact { fold(text) } else { text.clone() };
        let len = family_year_len(&f)?;
        for (_, y) in years {
            out.push((IndexKind::FamilyYear, format!("{}|{y}", prefix(&f, len))));
        }
    }
    Some(out)
}

fn contact_lookup(param: &str, system: Option<&str>, code: &str, out: &mut Vec<Term>) {
    let system = match param {
        "phone" => Some("phone"),
        "email" => Some("email"),
        _ => system.filter(|s| !s.is_empty()),
    };
    let d = digits(code);
    if matches!(system, None | Some("phone" | "sms" | "fax" | "pager")) && !d.is_empty() {
        out.push((IndexKind::Phone, d.clone()));
        if d.len() > 10 {
            out.push((IndexKind::Phone, text::last10(&d).to_owned()));
        }
    }
    if matches!(system, None | Some("email")) {
        out.push((IndexKind::Email, code.trim().to_lowercase()));
    }
    if !matches!(system, Some("email" | "phone" | "sms" | "fax" | "pager")) {
        out.push((IndexKind::Email, format!("other:{}", code.trim())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anded_birth_ranges_look_up_the_years_they_share() {
        let spec = crate::search::SearchSpec::parse(
            phivault_core::ResourceType::PATIENT,
            &[
                ("family".into(), "smith".into()),
                ("birthdate".into(), "ge1968-01-01".into()),
                ("birthdate".into(), "lt1973-01-01".into()),
            ],
            false,
        )
        .unwrap();
        let l = lookups("Patient", &spec.criteria, 0);
        assert_eq!(l.len(), 3);
        let years: Vec<&str> = l[2].iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(years, ["1968", "1969", "1970", "1971", "1972"]);
        let both: Vec<&str> = l[1].iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            both,
            [
                "smith|1968",
                "smith|1969",
                "smith|1970",
                "smith|1971",
                "smith|1972"
            ]
        );
        assert!(l[1].iter().all(|(k, _)| *k == IndexKind::FamilyYear));
    }

    #[test]
    fn family_year_needs_three_letters_and_a_few_years() {
        let l = |q: &[(&str, &str)]| {
            let q: Vec<(String, String)> =
                q.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect();
            let spec =
                crate::search::SearchSpec::parse(phivault_core::ResourceType::PATIENT, &q, false)
                    .unwrap();
            lookups("Patient", &spec.criteria, 0)
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k == IndexKind::FamilyYear)
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
        };
        assert_eq!(l(&[("family", "Smi"), ("birthdate", "1970")]), ["smi|1970"]);
        assert_eq!(
            l(&[("family", "Smit"), ("birthdate", "1970")]),
            ["smi|1970"]
        );
        assert_eq!(
            l(&[("family", "Smithson"), ("birthdate", "1970")]),
            ["smith|1970"]
        );
        assert_eq!(
            l(&[("family", "Lee,Ngu"), ("birthdate", "1970")]),
            ["lee|1970", "ngu|1970"]
        );
        assert!(l(&[("family", "Li"), ("birthdate", "1970")]).is_empty());
        assert!(l(&[("family", "Lee,Li"), ("birthdate", "1970")]).is_empty());
        assert!(l(&[("family", "Lee"), ("birthdate", "ge1900")]).is_empty());
        assert!(l(&[("name", "Lee"), ("birthdate", "1970")]).is_empty());
    }

    #[test]
    fn truncation_keeps_leading_bits() {
        let d = Digest32([0xff; 32]);
        let t = truncate(d, 12);
        assert_eq!(t.0[0], 0xff);
        assert_eq!(t.0[1], 0xf0);
        assert!(t.0[2..].iter().all(|b| *b == 0));
        assert_eq!(truncate(d, 256), d);
    }

    #[test]
    fn patient_terms_cover_names_births_addresses_contacts() {
        let p = json!({"name": [{"family": "Muñoz", "given": ["José"]}],
            "birthDate": "1970-05-01",
            "address": [{"city": "Zürich", "postalCode": "8001"}],
            "telecom": [{"system": "phone", "value": "+1 (555) 010-9999"},
                        {"system": "email", "value": "J@X.org"}],
            "generalPractitioner": [{"reference": "Practitioner/dr1"}]});
        let t = patient_terms(&p);
        let has = |k: IndexKind, s: &str| t.contains(&(k, s.to_owned()));
        assert!(has(IndexKind::NamePrefix, "m"));
        assert!(has(IndexKind::NamePrefix, "munoz"));
        assert!(has(IndexKind::NamePrefix, "jose"));
        assert!(has(IndexKind::NamePhonetic, "M520"));
        assert!(has(IndexKind::BirthYear, "1970"));
        assert!(has(IndexKind::BirthMonth, "1970-05"));
        assert!(has(IndexKind::BirthDay, "1970-05-01"));
        assert!(has(IndexKind::FamilyYear, "mun|1970"));
        assert!(has(IndexKind::FamilyYear, "munoz|1970"));
        assert!(has(IndexKind::AddressPrefix, "city:zurich"));
        assert!(has(IndexKind::AddressPrefix, "postal:800"));
        assert!(has(IndexKind::Phone, "5550109999"));
        assert!(has(IndexKind::Email, "j@x.org"));
        assert!(has(
            IndexKind::Reference,
            "Patient|general-practitioner|dr1"
        ));
    }
}
