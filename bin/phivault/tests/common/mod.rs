//! Shared helpers for the end-to-end tests: real SQLite files in a temp dir, the real key file,
//! the repo's own FHIR fixtures plus ../shared/testdata when it is there.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

pub mod feed;
pub mod live;
pub mod mllp;
pub mod pki;
pub mod raw;
pub mod search;
pub mod signed_in;

use phivault::datadir::{self, Opened};
use phivault_core::SystemClock;
use phivault_crypto::Passphrase;
use phivault_vault::{Ctx, ImportOptions, ImportReport};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const PASS: &str = "correct horse battery staple 42";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn json_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            json_files_under(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

/// The repo's valid FHIR fixtures, in import order.
pub fn repo_fixtures() -> Vec<PathBuf> {
    let mut v = Vec::new();
    json_files_under(&repo_root().join("testdata/fhir"), &mut v);
    assert!(v.len() >= 5, "fixtures missing");
    v
}

/// FHIR JSON files (a top-level `resourceType`) under ../shared/testdata, if it exists.
pub fn shared_fixtures() -> Vec<PathBuf> {
    let mut v = Vec::new();
    json_files_under(&repo_root().join("../shared/testdata"), &mut v);
    v.retain(|p| {
        std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|j| j.get("resourceType").is_some())
    });
    v
}

pub fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Every resource in a file: the entries of a Bundle, or the resource itself.
pub fn resources_in(p: &Path) -> Vec<Value> {
    let Some(doc) = std::fs::read(p)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return Vec::new();
    };
    if doc["resourceType"] == "Bundle" {
        doc["entry"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get("resource").cloned())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![doc]
    }
}

pub fn pass() -> Passphrase {
    Passphrase::new(PASS.to_owned())
}

/// Whether the suite runs on PostgreSQL: `PHIVAULT_TEST_BACKEND=postgres` (CI runs the
/// behaviour suites once per backend). Default: SQLite files in the data dir.
pub fn on_postgres() -> bool {
    match std::env::var("PHIVAULT_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("PHIVAULT_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

/// The PostgreSQL test database (`PHIVAULT_TEST_POSTGRES_URL`, default the local server's
/// `test` database).
pub fn postgres_url() -> String {
    std::env::var("PHIVAULT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The database of the vault in `data` when the suite runs on PostgreSQL: its own schemas,
/// named from the data dir's (unique, temporary) path, so every helper and every process
/// agrees without state.
/// `scripts/pg-test-cleanup.sh` drops them after a run.
pub fn test_database(data: &Path) -> Option<datadir::Database> {
    if !on_postgres() {
        return None;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    Some(datadir::Database::new(
        postgres_url(),
        format!("t{:016x}", h.finish()),
    ))
}

/// The environment that points a `phivault` process at the vault in `data`.
pub fn backend_env(data: &Path) -> Vec<(&'static str, String)> {
    match test_database(data) {
        Some(db) => vec![
            ("PHIVAULT_DATABASE_URL", db.url),
            ("PHIVAULT_DATABASE_SCHEMA", db.prefix),
        ],
        None => Vec::new(),
    }
}

/// Initializes a vault in `dir` on the suite's backend.
pub async fn init_vault(dir: &Path) {
    datadir::init_on(dir, &pass(), &SystemClock, test_database(dir).as_ref())
        .await
        .unwrap();
}

pub async fn new_vault(dir: &Path) -> Opened {
    init_vault(dir).await;
    open_vault(dir).await
}

/// Opens the vault in `dir` with the given clock (a fake one, in most tests).
pub async fn open_with_clock(dir: &Path, clock: Arc<dyn phivault_core::Clock>) -> Opened {
    datadir::open_on(dir, &pass(), clock, test_database(dir).as_ref())
        .await
        .unwrap()
}

pub async fn open_vault(dir: &Path) -> Opened {
    try_open_vault(dir).await.unwrap()
}

pub async fn try_open_vault(dir: &Path) -> Result<Opened, datadir::DataDirError> {
    datadir::open_on(
        dir,
        &pass(),
        Arc::new(SystemClock),
        test_database(dir).as_ref(),
    )
    .await
}

pub async fn ctx(o: &Opened) -> Ctx {
    o.operator.ctx(o.org(None).await.unwrap())
}

/// A new vault in `dir` on a fake clock set to `start` (RFC 3339), the operator's context,
/// and HL7 interface `name` of its organization, for ingestion in-process
/// (`phivault_hl7::ingest::handle`).
pub async fn interface_vault(
    dir: &Path,
    start: &str,
    name: &str,
) -> (
    Opened,
    Arc<phivault_core::FakeClock>,
    Ctx,
    phivault_hl7::ingest::Interface,
) {
    init_vault(dir).await;
    let at =
        time::OffsetDateTime::parse(start, &time::format_description::well_known::Rfc3339).unwrap();
    let clock = Arc::new(phivault_core::FakeClock::new(at));
    let o = open_with_clock(dir, clock.clone()).await;
    let c = ctx(&o).await;
    let iface = phivault_hl7::ingest::Interface {
        org: c.org().clone(),
        name: name.into(),
        purpose: phivault_vault::policy::Purpose::Treat,
        authority: o.operator.interfaces(),
        grants: false,
        legacy_senders: Vec::new(),
        unknown_patient: Default::default(),
    };
    (o, clock, c, iface)
}

pub async fn import_files(o: &Opened, files: &[PathBuf], strict: bool) -> ImportReport {
    let c = ctx(o).await;
    let mut report = ImportReport::default();
    for f in files {
        let doc = match std::fs::read(f)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(d) => d,
            None => continue,
        };
        o.vault
            .import_document(
                &c,
                &f.display().to_string(),
                doc,
                ImportOptions { strict },
                &mut report,
                &mut |_| {},
            )
            .await
            .unwrap();
    }
    report
}

/// The PHI of every Patient in the files: names, identifier values, birth dates, address lines,
/// phone numbers (as written and digits only), emails. Short strings are left out: random
/// ciphertext could contain them by chance.
pub fn phi_strings(files: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |s: &str| {
        let s = s.trim();
        if s.len() >= 6 {
            out.push(s.to_owned());
        }
    };
    for f in files {
        for r in resources_in(f) {
            if r["resourceType"] != "Patient" {
                continue;
            }
            for n in r["name"].as_array().into_iter().flatten() {
                if let Some(f) = n["family"].as_str() {
                    push(f);
                }
                for g in n["given"].as_array().into_iter().flatten() {
                    if let Some(g) = g.as_str() {
                        push(g);
                    }
                }
            }
            for i in r["identifier"].as_array().into_iter().flatten() {
                if let Some(v) = i["value"].as_str() {
                    push(v);
                }
            }
            if let Some(b) = r["birthDate"].as_str() {
                push(b);
            }
            for a in r["address"].as_array().into_iter().flatten() {
                for l in a["line"].as_array().into_iter().flatten() {
                    if let Some(l) = l.as_str() {
                        push(l);
                    }
                }
            }
            for t in r["telecom"].as_array().into_iter().flatten() {
                if let Some(v) = t["value"].as_str() {
                    push(v);
                    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                    push(&digits);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every regular file below `dir`, recursively, with its bytes.
pub fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The (file, needle) pairs where a needle occurs in a file's raw bytes.
pub fn scan(dir: &Path, needles: &[Vec<u8>]) -> Vec<(PathBuf, usize)> {
    let mut hits = Vec::new();
    for (path, bytes) in all_files(dir) {
        for (i, n) in needles.iter().enumerate() {
            if contains(&bytes, n) {
                hits.push((path.clone(), i));
            }
        }
    }
    hits
}

/// [`scan`] of everything a vault keeps: its data dir and, on PostgreSQL, a `pg_dump` of each
/// of its four schemas (named `pg_dump:<store>` in the hits).
pub fn scan_vault(dir: &Path, needles: &[Vec<u8>]) -> Vec<(PathBuf, usize)> {
    let mut hits = scan(dir, needles);
    if test_database(dir).is_some() {
        for store in ["identity", "clinical", "control", "audit"] {
            let bytes = raw::store_bytes(dir, store);
            for (i, n) in needles.iter().enumerate() {
                if contains(&bytes, n) {
                    hits.push((PathBuf::from(format!("pg_dump:{store}")), i));
                }
            }
        }
    }
    hits
}

/// A resource without `meta`, for comparisons "equal apart from meta".
pub fn without_meta(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("meta");
    }
    v
}

/// What the limiter on the authentication endpoints guarantees for attempts sent all at once:
/// no more than its burst plus one per refill in `elapsed` were answered (the `+ 1` is slack),
/// and at least one was refused with 429. The attempts must be sent together: one after another,
/// each answered login's Argon2 lets the bucket refill, and on a slow enough machine none is
/// refused.
pub fn assert_within_the_limit(statuses: &[u16], elapsed: std::time::Duration) {
    let answered = statuses.iter().filter(|s| **s == 401).count() as u128;
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let refills = elapsed.as_millis() / u128::from(phivault_api::AUTH_REPLENISH_MS);
    let most = u128::from(phivault_api::AUTH_BURST) + refills + 1;
    assert!(
        answered <= most,
        "{answered} answered in {elapsed:?}, at most {most} allowed: {statuses:?}"
    );
    assert!(limited >= 1, "nothing limited in {elapsed:?}: {statuses:?}");
}

/// The values of a JSON document as a search for a leaked secret or identifier sees them: its
/// strings, searched for the needle anywhere in them, and its integers, compared whole. (A short
/// all-digit needle, a TOTP code or an MRN, turns up by chance inside times down to the
/// nanosecond, durations and counts; as the whole of an integer it is a leak.) Floats are left
/// out, and so is everything under a key in `skip` (`"time"`, `"timestamp"`).
#[derive(Debug, Default)]
pub struct Values {
    pub texts: Vec<String>,
    pub integers: Vec<String>,
}

impl Values {
    pub fn of(v: &Value, skip: &[&str]) -> Values {
        fn walk(v: &Value, skip: &[&str], out: &mut Values) {
            match v {
                Value::String(s) => out.texts.push(s.clone()),
                Value::Number(n) if n.is_i64() || n.is_u64() => out.integers.push(n.to_string()),
                Value::Array(a) => a.iter().for_each(|x| walk(x, skip, out)),
                Value::Object(o) => o
                    .iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .for_each(|(_, x)| walk(x, skip, out)),
                _ => {}
            }
        }
        let mut out = Values::default();
        walk(v, skip, &mut out);
        out
    }

    /// The same without digests (strings of 32 or more hex digits and nothing else), where a
    /// short run of digits occurs by chance. Only for needles that are not hex themselves.
    pub fn without_digests(mut self) -> Values {
        self.texts
            .retain(|s| !(s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit())));
        self
    }

    pub fn holds(&self, needle: &str) -> bool {
        self.texts.iter().any(|t| t.contains(needle)) || self.integers.iter().any(|n| n == needle)
    }
}

/// Whether a log line holds `needle`: a JSON line in its [`Values`] without its timestamp; any
/// other line as text.
pub fn log_holds(line: &str, needle: &str) -> bool {
    match serde_json::from_str::<Value>(line) {
        Ok(v) if v.is_object() => Values::of(&v, &["timestamp"]).holds(needle),
        _ => line.contains(needle),
    }
}

/// The bytes of an even run of hex digits; `None` for anything else.
pub fn unhex(digits: &[u8]) -> Option<Vec<u8>> {
    let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}
