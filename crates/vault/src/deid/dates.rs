//! Date elements: recognizing FHIR `date`, `dateTime` and `instant` values, cutting them to the
//! year (Safe Harbor) or moving them by a whole number of days (pseudonymized exports).
use time::{Date, Duration, Month};

/// The calendar part of a FHIR date, dateTime or instant, and its precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed<'a> {
    year: i32,
    month: Option<u8>,
    day: Option<u8>,
    /// Whatever follows the day (`T09:15:00-04:00`), empty for a plain date.
    rest: &'a str,
}

fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// `Thh:mm[:ss[.fff]][Z|±hh:mm]`.
fn is_time_part(rest: &str) -> bool {
    let Some(t) = rest.strip_prefix('T') else {
        return false;
    };
    let (clock, zone) = match t.find(['Z', '+', '-']) {
        Some(i) => (t.get(..i).unwrap_or(""), t.get(i..).unwrap_or("")),
        None => (t, ""),
    };
    let zone_ok = zone.is_empty()
        || zone == "Z"
        || (zone.len() == 6
            && digits(zone.get(1..3).unwrap_or(""), 2).is_some()
            && zone.get(3..4) == Some(":")
            && digits(zone.get(4..6).unwrap_or(""), 2).is_some());
    let (hms, fraction) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let clock_ok = (parts.len() == 2 || parts.len() == 3)
        && parts.iter().all(|p| digits(p, 2).is_some())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        && (fraction.is_none() || parts.len() == 3);
    zone_ok && clock_ok
}

/// The two-digit part after the `-` at byte `at` (a month or a day), if it is in `1..=max`.
fn part(s: &str, at: usize, max: u32) -> Option<u8> {
    if s.get(at..at + 1)? != "-" {
        return None;
    }
    let n = digits(s.get(at + 1..at + 3)?, 2)?;
    (1..=max).contains(&n).then_some(n as u8)
}

fn parse(s: &str) -> Option<Parsed<'_>> {
    let year = digits(s.get(..4)?, 4)? as i32;
    let month = if s.len() > 4 {
        Some(part(s, 4, 12)?)
    } else {
        None
    };
    let day = if s.len() > 7 {
        Some(part(s, 7, 31)?)
    } else {
        None
    };
    let rest = s.get(10..).unwrap_or("");
    (rest.is_empty() || is_time_part(rest)).then_some(Parsed {
        year,
        month,
        day,
        rest,
    })
}

/// Whether a string is a FHIR date, dateTime or instant (`2019`, `2019-05`, `2019-05-02`,
/// `2019-05-02T09:15:00-04:00`, …).
pub(crate) fn is_date(s: &str) -> bool {
    parse(s).is_some()
}

/// The year of a date (Safe Harbor keeps nothing else).
pub(crate) fn year(s: &str) -> Option<i32> {
    parse(s).map(|p| p.year)
}

/// The year alone, as a FHIR date (`"2019"`).
pub(crate) fn year_only(s: &str) -> Option<String> {
    year(s).map(|y| format!("{y:04}"))
}

/// The same date moved by `days`, at the same precision: a full date keeps its time of day
/// and zone; a year-month is moved from its 15th, a year from its 2 July (mid-points), so a
/// coarse date moves by about as much as a precise one.
pub(crate) fn shift(s: &str, days: i64) -> Option<String> {
    let p = parse(s)?;
    let month = Month::try_from(p.month.unwrap_or(7)).ok()?;
    let day = p.day.unwrap_or(if p.month.is_some() { 15 } else { 2 });
    let date = Date::from_calendar_date(p.year, month, day).ok()?;
    let moved = date.checked_add(Duration::days(days))?;
    if !(1..=9999).contains(&moved.year()) {
        return None;
    }
    let (y, m, d) = (moved.year(), u8::from(moved.month()), moved.day());
    Some(match (p.month, p.day) {
        (None, _) => format!("{y:04}"),
        (Some(_), None) => format!("{y:04}-{m:02}"),
        (Some(_), Some(_)) => format!("{y:04}-{m:02}-{d:02}{}", p.rest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_fhir_dates_and_nothing_else() {
        for good in [
            "2019",
            "2019-05",
            "2019-05-02",
            "2019-05-02T09:15:00-04:00",
            "2019-05-02T09:15:00.123-04:00",
            "2019-05-02T09:15:00Z",
            "2019-05-02T09:15",
        ] {
            assert!(is_date(good), "{good}");
        }
        for bad in [
            "",
            "201",
            "8302-2",
            "85354-9",
            "2019-13",
            "2019-05-32",
            "2019/05/02",
            "2019-05-02 09:15",
            "2019-05-02T9:15",
            "20190502",
            "09:15:00",
            "555-301-8842",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }

    #[test]
    fn safe_harbor_keeps_the_year_only() {
        assert_eq!(
            year_only("2019-05-02T09:15:00-04:00").as_deref(),
            Some("2019")
        );
        assert_eq!(year_only("1961-03-14").as_deref(), Some("1961"));
        assert_eq!(year_only("1961").as_deref(), Some("1961"));
        assert_eq!(year_only("not a date"), None);
    }

    #[test]
    fn shifting_moves_the_calendar_day_and_keeps_time_and_zone() {
        assert_eq!(
            shift("2019-05-02T09:15:00-04:00", 30).as_deref(),
            Some("2019-06-01T09:15:00-04:00")
        );
        assert_eq!(shift("2019-12-31", 1).as_deref(), Some("2020-01-01"));
        assert_eq!(shift("2020-03-01", -1).as_deref(), Some("2020-02-29"));
        assert_eq!(shift("2019-05", 20).as_deref(), Some("2019-06"));
        assert_eq!(shift("2019", -200).as_deref(), Some("2018"));
        assert_eq!(shift("2019-02-30", 1), None);
        assert_eq!(shift("0001-01-01", -1), None);
    }

    #[test]
    fn two_dates_of_one_patient_keep_their_interval() {
        let a = shift("2011-06-18T10:00:00-04:00", -123).unwrap();
        let b = shift("2019-05-02T09:15:00-04:00", -123).unwrap();
        let day = |s: &str| {
            let p = parse(s).unwrap();
            Date::from_calendar_date(
                p.year,
                Month::try_from(p.month.unwrap()).unwrap(),
                p.day.unwrap(),
            )
            .unwrap()
        };
        assert_eq!(day(&b) - day(&a), day("2019-05-02") - day("2011-06-18"));
    }
}
