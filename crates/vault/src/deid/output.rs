//! Output formats of a de-identified export: FHIR NDJSON (Bulk Data style, one resource a
//! line) or CSV (one row a resource, one column a leaf element).
//!
//! CSV columns: `id`, then every leaf path found in any resource of the type, sorted, with
//! `.` between element names and array positions as numbers from 0 (`code.coding.0.code`).
//! Strings are written as they are, numbers and booleans as in JSON; fields are quoted per
//! RFC 4180 where needed, and a text field that begins with `=`, `+`, `-`, `@`, tab or
//! carriage return gets a leading `'` so spreadsheets do not run it as a formula.
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeidFormat {
    Ndjson,
    Csv,
}

impl DeidFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ndjson" => Some(Self::Ndjson),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    pub fn extension(&self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
        }
    }
}

/// One resource per line.
pub(crate) fn ndjson(resources: &[Value]) -> String {
    let mut out = String::new();
    for r in resources {
        out.push_str(&r.to_string());
        out.push('\n');
    }
    out
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(o) => o.iter().for_each(|(k, v)| flatten(&join(k), v, out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&join(&i.to_string()), v, out)),
        Value::String(s) => {
            let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{s}")
            } else {
                s.clone()
            };
            out.insert(prefix.to_owned(), guarded);
        }
        Value::Number(n) => {
            out.insert(prefix.to_owned(), n.to_string());
        }
        Value::Bool(b) => {
            out.insert(prefix.to_owned(), b.to_string());
        }
        Value::Null => {}
    }
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A header line and one row per resource (CRLF line ends, as RFC 4180 says).
pub(crate) fn csv(resources: &[Value]) -> String {
    let rows: Vec<BTreeMap<String, String>> = resources
        .iter()
        .map(|r| {
            let mut m = BTreeMap::new();
            flatten("", r, &mut m);
            m.remove("resourceType");
            m
        })
        .collect();
    let others: BTreeSet<&String> = rows
        .iter()
        .flat_map(|r| r.keys())
        .filter(|k| k.as_str() != "id")
        .collect();
    let mut columns: Vec<&str> = vec!["id"];
    columns.extend(others.iter().map(|s| s.as_str()));
    let line = |cells: Vec<String>| cells.join(",") + "\r\n";
    let mut out = line(columns.iter().map(|c| field(c)).collect());
    for r in &rows {
        out.push_str(&line(
            columns
                .iter()
                .map(|c| field(r.get(*c).map_or("", String::as_str)))
                .collect(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ndjson_is_one_resource_per_line() {
        let out = ndjson(&[
            json!({"resourceType": "Patient", "id": "a"}),
            json!({"resourceType": "Patient", "id": "b"}),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        for l in lines {
            assert_eq!(
                serde_json::from_str::<Value>(l).unwrap()["resourceType"],
                "Patient"
            );
        }
    }

    #[test]
    fn csv_flattens_leaves_into_sorted_columns_with_id_first() {
        let out = csv(&[
            json!({"resourceType": "Observation", "id": "o1", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                   "valueQuantity": {"value": 167.3, "unit": "cm"}}),
            json!({"resourceType": "Observation", "id": "o2", "status": "final",
                   "code": {"coding": [{"code": "x,\"y\""}]}, "valueBoolean": true}),
            json!({"resourceType": "Observation", "id": "o3", "status": "=cmd()"}),
        ]);
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "id,code.coding.0.code,code.coding.0.system,status,valueBoolean,valueQuantity.unit,valueQuantity.value"
        );
        assert_eq!(lines[1], "o1,8302-2,http://loinc.org,final,,cm,167.3");
        assert_eq!(lines[2], "o2,\"x,\"\"y\"\"\",,final,true,,");
        assert_eq!(lines[3], "o3,,,'=cmd(),,,");
        assert_eq!(lines[4], "");
    }
}
