//! Safe Harbor geography: a US ZIP code keeps its first three digits, unless the three-digit
//! area held 20,000 people or fewer (2000 census; the table ships as `zip3_restricted.txt`),
//! in which case it becomes `000`. Anything that is not a US ZIP code is dropped.

/// The restricted three-digit ZIP codes, one per line (comments start with '#').
const RESTRICTED: &str = include_str!("zip3_restricted.txt");

/// The restricted three-digit ZIP codes of the shipped table.
pub(crate) fn restricted() -> impl Iterator<Item = &'static str> {
    RESTRICTED
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
}

/// Whether a three-digit ZIP code's area is too small to be released.
pub(crate) fn is_restricted(zip3: &str) -> bool {
    restricted().any(|z| z == zip3)
}

/// The Safe Harbor form of a postal code: `Some("014")` for `01420` or `01420-1234`,
/// `Some("000")` for a restricted area, `None` for anything that is not a US ZIP code.
pub(crate) fn generalize(postal_code: &str) -> Option<String> {
    let code = postal_code.trim();
    let (five, plus4) = match code.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (code, None),
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(five, 5) || plus4.is_some_and(|p| !digits(p, 4)) {
        return None;
    }
    let zip3 = five.get(..3)?;
    Some(if is_restricted(zip3) {
        "000".to_owned()
    } else {
        zip3.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_seventeen_restricted_areas_of_the_2000_census() {
        let table: Vec<&str> = restricted().collect();
        assert_eq!(
            table,
            [
                "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831",
                "878", "879", "884", "890", "893"
            ]
        );
    }

    #[test]
    fn restricted_areas_become_000_and_others_keep_three_digits() {
        assert_eq!(generalize("03601").as_deref(), Some("000"));
        assert_eq!(generalize("89301-2210").as_deref(), Some("000"));
        assert_eq!(generalize("01420").as_deref(), Some("014"));
        assert_eq!(generalize("01852-1234").as_deref(), Some("018"));
        // 037 is not restricted although 036 is.
        assert_eq!(generalize("03755").as_deref(), Some("037"));
    }

    #[test]
    fn what_is_not_a_us_zip_code_is_dropped() {
        for bad in [
            "", "0142", "014201", "SW1A 1AA", "01420-12", "K1A 0B1", "0142O",
        ] {
            assert_eq!(generalize(bad), None, "{bad}");
        }
    }
}
