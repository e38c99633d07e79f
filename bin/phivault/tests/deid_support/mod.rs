//! Helpers of the de-identification tests: what in the input identifies someone, and how to
//! search an export for it.
use crate::common::{Values, all_files, phi_strings, resources_in};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every resource of every `.ndjson` file in `dir`.
pub fn resources(dir: &Path) -> Vec<Value> {
    all_files(dir)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "ndjson"))
        .flat_map(|(_, b)| {
            String::from_utf8(b)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Text with every pseudonym (a run of exactly 64 hex digits) cut out, so a short needle made
/// of digits cannot match one by chance.
pub fn without_pseudonyms(text: &str) -> String {
    let (mut out, mut run) = (String::new(), String::new());
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() != 64 {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    if run.len() != 64 {
        out.push_str(&run);
    }
    out
}

pub fn is_pseudonym(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What identifies someone in the input, beyond `phi_strings` (patients' names, identifiers,
/// birth dates, lines, phones, emails): every person's name, identifier and contact, address
/// lines, cities, districts and ZIP codes, every full date (YYYY-MM-DD), resource ids,
/// reference displays, notes, free-text values, serial and lot numbers, attachments and
/// photos, URLs, and the identifiers inside conditional references.
pub fn identifying(files: &[PathBuf]) -> Vec<String> {
    fn walk(key: &str, v: &Value, parent: &serde_json::Map<String, Value>, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => o.iter().for_each(|(k, c)| walk(k, c, o, out)),
            Value::Array(a) => a.iter().for_each(|c| walk(key, c, parent, out)),
            Value::String(s) => {
                let free = [
                    "family",
                    "given",
                    "line",
                    "city",
                    "district",
                    "postalCode",
                    "valueString",
                    "serialNumber",
                    "lotNumber",
                    "deviceIdentifier",
                    "carrierHRF",
                    "conclusion",
                    "title",
                    "data",
                    "div",
                    "authorString",
                    "subscriberId",
                ];
                // Identifier and contact values, Coverage class values (quantities' are numbers).
                let value = key == "value";
                let reference_display = key == "display" && parent.contains_key("reference");
                // Free text (notes, a CodeableConcept's text), unless it repeats a Coding's display.
                let text = key == "text"
                    && !parent
                        .get("coding")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|c| c["display"] == *s);
                let url = key == "url" && parent.contains_key("contentType");
                if free.contains(&key) || value || reference_display || text || url || key == "id" {
                    out.push(s.clone());
                }
                if let Some(day) = s
                    .get(..10)
                    .filter(|d| d.as_bytes()[4] == b'-' && d.as_bytes()[7] == b'-')
                {
                    out.push(day.to_owned());
                }
                if key == "reference"
                    && let Some((_, id)) = s.split_once('|')
                {
                    out.push(id.to_owned());
                }
                if key == "value" && parent.get("system").and_then(Value::as_str) == Some("phone") {
                    out.push(s.chars().filter(char::is_ascii_digit).collect());
                }
            }
            _ => {}
        }
    }
    let mut out = phi_strings(files);
    for f in files {
        for r in resources_in(f) {
            walk("", &r, &serde_json::Map::new(), &mut out);
        }
    }
    out.retain(|s| s.len() >= 5);
    out.sort();
    out.dedup();
    out
}

/// [`hits`] in the audit trail's JSON lines, searched in each event's [`Values`] without its
/// time and digests, where an all-digit needle (a 5-digit ZIP, say) would turn up by chance.
pub fn audit_hits(jsonl: &str, needles: &[String]) -> Vec<String> {
    let values: Vec<Values> = jsonl
        .lines()
        .map(|l| Values::of(&serde_json::from_str(l).unwrap(), &["time"]).without_digests())
        .collect();
    let texts: Vec<&str> = values
        .iter()
        .flat_map(|v| v.texts.iter().map(String::as_str))
        .collect();
    let mut found = hits(&texts.join("\n"), needles);
    for n in needles {
        if !found.contains(n) && values.iter().any(|v| v.integers.contains(n)) {
            found.push(n.clone());
        }
    }
    found
}

/// The needles found in `text`, as written or as JSON escapes them.
pub fn hits(text: &str, needles: &[String]) -> Vec<String> {
    let text = without_pseudonyms(text);
    needles
        .iter()
        .filter(|n| {
            let escaped = serde_json::to_string(n).unwrap();
            text.contains(n.as_str()) || text.contains(&escaped[1..escaped.len() - 1])
        })
        .cloned()
        .collect()
}

pub fn export_text(dir: &Path) -> String {
    all_files(dir)
        .into_iter()
        .map(|(_, b)| String::from_utf8(b).unwrap())
        .collect()
}

/// A date more precise than a year: `dddd-dd`.
pub fn has_month_precision(text: &str) -> bool {
    let b = text.as_bytes();
    b.windows(7).any(|w| {
        w[..4].iter().all(u8::is_ascii_digit)
            && w[4] == b'-'
            && w[5..].iter().all(u8::is_ascii_digit)
    })
}

/// Quantities of 90 years or more, anywhere.
pub fn old_ages(v: &Value) -> usize {
    match v {
        Value::Object(o) => {
            let years = matches!(o.get("code").and_then(Value::as_str), Some("a"))
                && o.get("value")
                    .and_then(Value::as_f64)
                    .is_some_and(|x| x >= 90.0);
            usize::from(years) + o.values().map(old_ages).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(old_ages).sum(),
        _ => 0,
    }
}

#[cfg(unix)]
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every pseudonym in the files of `dir`.
pub fn pseudonyms(dir: &Path) -> BTreeSet<String> {
    let text = export_text(dir);
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|s| is_pseudonym(s))
        .map(str::to_owned)
        .collect()
}

pub fn days(a: &str, b: &str) -> i64 {
    let d = |s: &str| {
        time::Date::parse(
            &s[..10],
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .unwrap()
    };
    (d(b) - d(a)).whole_days()
}
