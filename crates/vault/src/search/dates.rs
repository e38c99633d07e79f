//! FHIR date search: a date, a partial date, a dateTime or a Period is a range of instants
//! `[lo, hi)` in Unix milliseconds at its own precision; a parameter's prefix compares ranges as
//! FHIR R4 defines (`eq ne lt le gt ge sa eb ap`).
use serde_json::Value;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A half-open range of Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lo: i64,
    pub hi: i64,
}

/// The comparison of a date parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Sa,
    Eb,
    Ap,
}

/// A date parameter: a prefix and the range of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateParam {
    pub prefix: Prefix,
    pub range: Range,
}

fn date_of(y: i32, m: u8, d: u8) -> Option<Date> {
    Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
}

/// A day's first millisecond.
fn secs(d: Date) -> i64 {
    PrimitiveDateTime::new(d, Time::MIDNIGHT)
        .assume_utc()
        .unix_timestamp()
        * 1000
}

/// One day in milliseconds.
pub const DAY: i64 = 86_400_000;

fn num<T: std::str::FromStr>(s: &str, at: std::ops::Range<usize>) -> Option<T> {
    let part = s.get(at)?;
    part.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| part.parse().ok())?
}

/// The range of a FHIR `date`, `dateTime` or `instant` string; `None` if it is not one.
/// A dateTime without a zone is taken as UTC.
pub fn parse(s: &str) -> Option<Range> {
    let s = s.trim();
    let year: i32 = num(s, 0..4)?;
    match s.len() {
        4 => {
            let lo = date_of(year, 1, 1)?;
            let hi = date_of(year.checked_add(1)?, 1, 1)?;
            return Some(Range {
                lo: secs(lo),
                hi: secs(hi),
            });
        }
        7 if s.get(4..5) == Some("-") => {
            let month: u8 = num(s, 5..7)?;
            let lo = date_of(year, month, 1)?;
            let hi = if month == 12 {
                date_of(year.checked_add(1)?, 1, 1)?
            } else {
                date_of(year, month + 1, 1)?
            };
            return Some(Range {
                lo: secs(lo),
                hi: secs(hi),
            });
        }
        _ => {}
    }
    if s.get(4..5) != Some("-") || s.get(7..8) != Some("-") {
        return None;
    }
    let day = date_of(year, num(s, 5..7)?, num(s, 8..10)?)?;
    if s.len() == 10 {
        let lo = secs(day);
        return Some(Range { lo, hi: lo + DAY });
    }
    date_time(day, s.get(10..)?)
}

/// `Thh:mm[:ss[.fff]][Z|±hh:mm]` after a day.
fn date_time(day: Date, rest: &str) -> Option<Range> {
    let rest = rest.strip_prefix('T')?;
    let (hour, minute): (u8, u8) = (num(rest, 0..2)?, num(rest, 3..5)?);
    if rest.get(2..3) != Some(":") {
        return None;
    }
    let mut tail = rest.get(5..)?;
    let (second, millis, width): (u8, i64, i64) = match tail.strip_prefix(':') {
        Some(t) => {
            let s = num(t, 0..2)?;
            tail = t.get(2..)?;
            let (mut ms, mut w) = (0, 1000);
            if let Some(f) = tail.strip_prefix('.') {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 {
                    return None;
                }
                let digits = format!("{:0<3}", f.get(..n.min(3))?);
                ms = digits.parse().ok()?;
                w = 1;
                tail = f.get(n..)?;
            }
            (s, ms, w)
        }
        None => (0, 0, 60_000),
    };
    let offset = match tail {
        "" | "Z" => UtcOffset::UTC,
        z => {
            let sign: i8 = match z.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            if z.len() != 6 || z.get(3..4) != Some(":") {
                return None;
            }
            let (h, m): (i8, i8) = (num(z, 1..3)?, num(z, 4..6)?);
            UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
    };
    let t = Time::from_hms(hour, minute, second).ok()?;
    let lo = PrimitiveDateTime::new(day, t)
        .assume_offset(offset)
        .unix_timestamp()
        * 1000
        + millis;
    Some(Range { lo, hi: lo + width })
}

/// The range of a date element's value: a string, or a Period (`start`/`end`; an open end
/// is unbounded).
pub fn of_value(v: &Value) -> Option<Range> {
    match v {
        Value::String(s) => parse(s),
        Value::Object(o) => {
            let start = o.get("start").and_then(Value::as_str).and_then(parse);
            let end = o.get("end").and_then(Value::as_str).and_then(parse);
            if start.is_none() && end.is_none() {
                return None;
            }
            Some(Range {
                lo: start.map_or(i64::MIN, |r| r.lo),
                hi: end.map_or(i64::MAX, |r| r.hi),
            })
        }
        _ => None,
    }
}

impl DateParam {
    /// `[prefix]value`; `None` if the value is not a FHIR date.
    pub fn parse(s: &str) -> Option<DateParam> {
        let s = s.trim();
        let prefixes = [
            ("eq", Prefix::Eq),
            ("ne", Prefix::Ne),
            ("lt", Prefix::Lt),
            ("le", Prefix::Le),
            ("gt", Prefix::Gt),
            ("ge", Prefix::Ge),
            ("sa", Prefix::Sa),
            ("eb", Prefix::Eb),
            ("ap", Prefix::Ap),
        ];
        let (prefix, value) = prefixes
            .iter()
            .find_map(|(p, k)| s.strip_prefix(p).map(|v| (*k, v)))
            .unwrap_or((Prefix::Eq, s));
        Some(DateParam {
            prefix,
            range: parse(value)?,
        })
    }

    /// The range `ap` accepts: the value widened by a tenth of its distance from now, at least
    /// a day each side.
    fn approx(&self, now: i64) -> Range {
        let gap = (now - self.range.lo).unsigned_abs() / 10;
        let w = i64::try_from(gap).unwrap_or(i64::MAX).max(DAY);
        Range {
            lo: self.range.lo.saturating_sub(w),
            hi: self.range.hi.saturating_add(w),
        }
    }

    /// Whether a value's range matches, `now` in Unix milliseconds (for `ap`).
    pub fn matches(&self, f: Range, now: i64) -> bool {
        let p = self.range;
        let eq = p.lo <= f.lo && f.hi <= p.hi;
        match self.prefix {
            Prefix::Eq => eq,
            Prefix::Ne => !eq,
            Prefix::Gt => f.hi > p.hi,
            Prefix::Lt => f.lo < p.lo,
            Prefix::Ge => f.hi > p.hi || eq,
            Prefix::Le => f.lo < p.lo || eq,
            Prefix::Sa => f.lo >= p.hi,
            Prefix::Eb => f.hi <= p.lo,
            Prefix::Ap => {
                let a = self.approx(now);
                f.lo < a.hi && f.hi > a.lo
            }
        }
    }

    /// The years a value matching this parameter can start in or span, as far as
    /// `[first, last]`: what a birth-year index must look up. `None`: any year.
    pub fn years(&self, now: i64, first: i32, last: i32) -> (i32, i32) {
        let year_of = |t: i64| {
            OffsetDateTime::from_unix_timestamp(
                t.div_euclid(1000).clamp(-62_135_596_800, 253_402_300_799),
            )
            .map(|d| d.year())
            .unwrap_or(first)
        };
        let p = self.range;
        let (lo, hi) = match self.prefix {
            Prefix::Eq => (year_of(p.lo), year_of(p.hi - 1)),
            Prefix::Ne => (first, last),
            Prefix::Gt | Prefix::Ge | Prefix::Sa => (year_of(p.lo), last),
            // Starting before the value: at the latest the year before it starts.
            Prefix::Lt | Prefix::Eb => (first, year_of(p.lo - 1)),
            Prefix::Le => (first, year_of(p.hi - 1)),
            Prefix::Ap => {
                let a = self.approx(now);
                (year_of(a.lo), year_of(a.hi - 1))
            }
        };
        (lo.max(first), hi.min(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DateParam {
        DateParam::parse(s).unwrap()
    }

    fn r(s: &str) -> Range {
        parse(s).unwrap()
    }

    #[test]
    fn precisions_are_ranges() {
        assert_eq!(r("2020").hi - r("2020").lo, 366 * DAY);
        assert_eq!(r("2021-02").hi - r("2021-02").lo, 28 * DAY);
        assert_eq!(r("2020-05-01").hi - r("2020-05-01").lo, DAY);
        assert_eq!(
            r("2020-05-01T10:00:00Z").hi - r("2020-05-01T10:00:00Z").lo,
            1000
        );
        assert_eq!(
            r("2020-05-01T10:00:00.36Z").lo - r("2020-05-01T10:00:00Z").lo,
            360
        );
        assert_eq!(
            r("2020-05-01T12:00:00+02:00").lo,
            r("2020-05-01T10:00:00Z").lo
        );
        assert_eq!(
            r("2020-05-01T10:00:00.123-05:00").lo,
            r("2020-05-01T15:00:00").lo + 123
        );
        for bad in [
            "20x0",
            "2020-13",
            "2020-02-30",
            "2020-05-01T25:00",
            "2020-01-01' OR 1",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn prefixes_follow_fhir() {
        let now = r("2026-01-01").lo;
        let day = r("2020-05-01");
        assert!(p("2020").matches(day, now));
        assert!(p("2020-05").matches(day, now));
        assert!(!p("2020-05-01").matches(r("2020-05"), now));
        assert!(p("ne2021").matches(day, now));
        assert!(p("ge2020-05").matches(day, now));
        assert!(!p("gt2020-05").matches(r("2020-05-31"), now));
        assert!(p("lt2021").matches(day, now));
        assert!(p("le2020-05-01").matches(r("2020-05-01T23:59:59Z"), now));
        assert!(p("sa2020-04").matches(day, now));
        assert!(!p("sa2020-05").matches(day, now));
        assert!(p("eb2020-06").matches(day, now));
        assert!(p("ap2020-05-10").matches(day, now));
        assert!(!p("ap2010").matches(day, now));
        let period = of_value(&serde_json::json!({"start": "2020-01-01"})).unwrap();
        assert!(p("gt2030").matches(period, now));
    }

    #[test]
    fn years_to_look_up() {
        let now = r("2026-01-01").lo;
        assert_eq!(p("1970-01-01").years(now, 1800, 2100), (1970, 1970));
        assert_eq!(p("ge1950").years(now, 1800, 2100), (1950, 2100));
        assert_eq!(p("lt1950-06").years(now, 1800, 2100), (1800, 1950));
        assert_eq!(p("lt1950-01-01").years(now, 1800, 2100), (1800, 1949));
        assert_eq!(p("le1950-01-01").years(now, 1800, 2100), (1800, 1950));
        assert_eq!(p("ne1950").years(now, 1800, 2100), (1800, 2100));
    }
}
