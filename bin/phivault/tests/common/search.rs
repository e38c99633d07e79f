//! The search suite's setup (tests/search.rs): a live server with service clients that have a
//! default purpose, the fixtures loaded over HTTPS, and the Python side of the suite
//! (support/search_check.py, search_scan.py, fhirclient_search.py) run with the test Python.
use super::live::{Live, cli, stdout_ok};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An integration acting for TREAT by default (no purpose header needed).
pub const EHR: (&str, &str, &str) = ("INTEGRATION_MANAGER", "system/*.cruds", "TREAT HOPERAT");

/// Registers a service client with `default` as its default purpose; returns `id:secret`.
pub fn service_client(
    data: &Path,
    name: &str,
    (role, scopes, purposes): (&str, &str, &str),
    default: Option<&str>,
) -> String {
    let extra: &[&str] = match default {
        Some(d) => &["--default-purpose", d],
        None => &[],
    };
    Live::client_with(data, name, (role, scopes, purposes), extra)
}

/// The test Python if it has `module` (see [`super::live::python_with`]).
pub fn python(module: &str, package: &str) -> Option<PathBuf> {
    super::live::python_with(module, package).map(PathBuf::from)
}

pub fn support(script: &str) -> PathBuf {
    super::repo_root()
        .join("bin/phivault/tests/support")
        .join(script)
}

/// The generated search fixtures (testdata/search, written by support/search_gen.py).
pub fn search_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(super::repo_root().join("testdata/search"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

/// Runs a support script with the live server's base URL, CA and `token` (in a file), then
/// `args`; returns the JSON it printed.
pub fn run_with_token(py: &Path, script: &str, live: &Live, token: &str, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let base = format!("https://localhost:{}/fhir", live.port);
    let mut cmd = Command::new(py);
    cmd.arg(support(script));
    if script == "search_check.py" {
        cmd.arg(args[0]);
    }
    cmd.args([base.as_str(), live.ca.as_str()])
        .arg(&token_file)
        .args(if script == "search_check.py" {
            &args[1..]
        } else {
            args
        });
    let out = cmd.output().unwrap();
    let text = stdout_ok(&out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{script}: {e}: {text}"))
}

/// Loads testdata/fhir and testdata/search as transaction Bundles; returns the instant
/// between the two phases (for `_lastUpdated`).
pub fn load(py: &Path, live: &Live, token: &str) -> String {
    let root = super::repo_root().display().to_string();
    let v = run_with_token(py, "search_check.py", live, token, &["load", &root]);
    v["split"].as_str().unwrap().to_owned()
}

/// What the oracle says `Type?query` must return (`Type/id`, sorted).
pub fn expected(py: &Path, rtype: &str, query: &str) -> Vec<String> {
    let root = super::repo_root().display().to_string();
    let out = Command::new(py)
        .arg(support("search_check.py"))
        .args(["expect", &root, rtype, query])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    assert_eq!(v["must"], v["may"], "{rtype}?{query} is not certain");
    v["must"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The byte scan of `data` (and, on PostgreSQL, of its schemas) for the fixtures' PHI:
/// `{"needles": n, "hits": [...]}`.
pub fn scan(py: &Path, data: &Path) -> Value {
    let root = super::repo_root().display().to_string();
    let mut cmd = Command::new(py);
    cmd.arg(support("search_scan.py")).arg(&root).arg(data);
    if let Some(db) = super::test_database(data) {
        cmd.args([db.url, db.prefix]);
    }
    serde_json::from_str(&stdout_ok(&cmd.output().unwrap())).unwrap()
}

/// The first Patient of the generated fixtures (the one with every kind of record) and the
/// ids of its Observations.
pub fn first_patient() -> (String, Vec<String>) {
    let all: Vec<Value> = search_fixtures()
        .iter()
        .flat_map(|f| super::resources_in(f))
        .collect();
    let p = all.iter().find(|r| r["resourceType"] == "Patient").unwrap();
    let id = p["id"].as_str().unwrap().to_owned();
    let subject = format!("Patient/{id}");
    let mut obs: Vec<String> = all
        .iter()
        .filter(|r| r["resourceType"] == "Observation" && r["subject"]["reference"] == *subject)
        .map(|r| format!("Observation/{}", r["id"].as_str().unwrap()))
        .collect();
    obs.sort();
    (id, obs)
}

/// Every audit event of the vault, as JSON.
pub fn audit_events(data: &Path) -> Vec<Value> {
    stdout_ok(&cli(data, &["audit", "export", "--format", "jsonl"]))
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `Type/id` of a searchset's entries in search mode `mode`.
pub fn entries_in(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["search"]["mode"].as_str().unwrap_or("match") == mode)
                .map(|e| {
                    let r = &e["resource"];
                    format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap(),
                        r["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
