//! The `phivault` binary as an operator runs it: real processes, real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn phivault(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phivault"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER", "tester")
        .stdin(Stdio::null())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

const GOOD: &[(&str, &str)] = &[("PHIVAULT_PASSPHRASE", PASS)];
const WRONG: &[(&str, &str)] = &[("PHIVAULT_PASSPHRASE", "not the right passphrase at all")];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    all_files(dir).into_iter().collect()
}

fn init(dir: &Path) {
    let r = phivault(&["init", "--data-dir", s(dir)], GOOD);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn import_fixtures(dir: &Path) -> Run {
    let files: Vec<String> = repo_fixtures()
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    let mut args = vec!["import", "--data-dir", s(dir)];
    args.extend(files.iter().map(String::as_str));
    phivault(&args, GOOD)
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Threat: key and database files readable by other users, or a second init destroying keys
/// (HIPAA §164.312(a)(2)(iv); OWASP ASVS V6.4).
#[test]
fn init_creates_a_private_vault_and_refuses_a_second_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = phivault(&["init", "--data-dir", s(&dir), "--json"], GOOD);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(out["organization"], "default");
    for f in [
        "keys/root.key",
        "identity.db",
        "clinical.db",
        "audit.db",
        "control.db",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
        #[cfg(unix)]
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    #[cfg(unix)]
    assert_eq!(mode(&dir), 0o700);
    let before = snapshot(&dir);
    let again = phivault(&["init", "--data-dir", s(&dir)], GOOD);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already holds"), "{}", again.stderr);
    assert_eq!(
        snapshot(&dir),
        before,
        "a refused init changed the data dir"
    );
    // Root key file: sealed, with the KDF named; the passphrase is nowhere in it.
    let key = std::fs::read_to_string(dir.join("keys/root.key")).unwrap();
    assert!(key.contains("argon2id"));
    assert!(!key.contains(PASS));
}

/// Threat: a copied data dir opened without the passphrase, or damaged by a wrong one (HIPAA
/// §164.312(a)(2)(iv)).
#[test]
fn a_wrong_passphrase_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    assert_eq!(import_fixtures(&dir).code, 0);
    let before = snapshot(&dir);
    let out = tmp.path().join("out.json");
    let fixture = repo_fixtures()[0].to_str().unwrap().to_owned();
    let commands: Vec<Vec<&str>> = vec![
        vec!["import", "--data-dir", s(&dir), &fixture],
        vec!["export", "--data-dir", s(&dir), "--out", s(&out)],
        vec![
            "search",
            "--data-dir",
            s(&dir),
            "--identifier",
            "MRN-7730152",
        ],
        vec![
            "erase",
            "patient",
            "x1",
            "--reason",
            "test",
            "--data-dir",
            s(&dir),
        ],
    ];
    for args in commands {
        let r = phivault(&args, WRONG);
        assert_eq!(r.code, 1, "{args:?}");
        assert!(
            r.stderr.contains("wrong passphrase"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty());
        assert_eq!(
            snapshot(&dir),
            before,
            "{args:?} changed the data dir with a wrong passphrase"
        );
    }
    assert!(!out.exists());
}

#[test]
fn a_missing_passphrase_or_vault_or_unknown_setting_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = phivault(&["init", "--data-dir", s(&dir)], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no passphrase"), "{}", r.stderr);
    assert!(!dir.exists(), "nothing is created without a passphrase");
    let r = phivault(&["export", "--data-dir", s(&dir), "--out", "x.json"], GOOD);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no phivault vault"), "{}", r.stderr);
    let r = phivault(
        &["init", "--data-dir", s(&dir)],
        &[("PHIVAULT_PASSPHRASE", PASS), ("PHIVAULT_DATADIR", "typo")],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("PHIVAULT_DATADIR"), "{}", r.stderr);
    assert!(!dir.exists());
    let r = phivault(
        &["init", "--data-dir", s(&dir)],
        &[("PHIVAULT_PASSPHRASE", "short")],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("12 characters"), "{}", r.stderr);
    assert!(!dir.join("keys/root.key").exists());
}

#[test]
fn passphrase_file_and_data_dir_come_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let pass_file = tmp.path().join("pass");
    std::fs::write(&pass_file, format!("{PASS}\n")).unwrap();
    let env = [
        ("PHIVAULT_PASSPHRASE_FILE", s(&pass_file)),
        ("PHIVAULT_DATA_DIR", s(&dir)),
    ];
    assert_eq!(phivault(&["init"], &env).code, 0);
    let fixture = repo_fixtures()[2].to_str().unwrap().to_owned();
    let r = phivault(&["import", &fixture], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        "imported 1 patients, 0 resources; 0 skipped"
    );
    // The file wins over the variable (trailing newline stripped), same vault either way.
    let r = phivault(&["search", "--identifier", "MRN-8841906"], &env);
    let b: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(b["total"], 1);
    let r = phivault(
        &["search", "--identifier", "MRN-8841906"],
        &[
            ("PHIVAULT_PASSPHRASE", PASS),
            ("PHIVAULT_DATA_DIR", s(&dir)),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn import_skips_bad_entries_naming_each_and_leaks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let mut bad: Vec<PathBuf> = std::fs::read_dir(repo_root().join("testdata/fhir-invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    bad.sort();
    let mut args = vec!["import", "--data-dir", s(&dir)];
    args.extend(bad.iter().map(|p| p.to_str().unwrap()));
    let r = phivault(&args, GOOD);
    assert_eq!(r.code, 2, "partial import exits 2: {}", r.stderr);
    assert!(
        r.stdout
            .starts_with("imported 1 patients, 1 resources; 8 skipped: "),
        "{}",
        r.stdout
    );
    for needle in [
        "missing-patient.json (Observation/orphan-1): subject: reference to a missing patient",
        "mixed-bundle.json entry 3",
        "mixed-bundle.json entry 4: resourceType 'NotAThing': unknown FHIR R4 resource type",
        "mixed-bundle.json entry 5: resource id must be",
        "mixed-bundle.json entry 6: only create (POST) and update (PUT)",
        "not-fhir.json: not a FHIR resource: no resourceType",
        "not-json.json: not JSON",
        "unknown-type.json: resourceType 'Patientt'",
    ] {
        assert!(r.stdout.contains(needle), "{needle} not in {}", r.stdout);
    }
    let phi = phi_strings(&bad);
    assert!(!phi.is_empty());
    for p in &phi {
        assert!(!r.stdout.contains(p.as_str()) && !r.stderr.contains(p.as_str()));
    }
    // Machine-readable form.
    args.insert(1, "--json");
    let r = phivault(&args, GOOD);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    // Importing again updates (a new version), it does not duplicate or skip the good entries.
    assert_eq!(j["skipped"].as_array().unwrap().len(), 8, "{j}");
    assert_eq!(
        (j["patients"].as_u64(), j["resources"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn strict_import_stops_at_the_first_bad_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let mixed = repo_root().join("testdata/fhir-invalid/mixed-bundle.json");
    let r = phivault(
        &["import", "--strict", "--data-dir", s(&dir), s(&mixed)],
        GOOD,
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("mixed-bundle.json entry 3")
            && r.stderr.contains("reference to a missing patient"),
        "{}",
        r.stderr
    );
    // Entries before the bad one were written whole; the bad one not at all.
    let out = tmp.path().join("out.json");
    let r = phivault(&["export", "--data-dir", s(&dir), "--out", s(&out)], GOOD);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let types: Vec<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Patient", "Observation"]);
}

#[test]
fn export_round_trips_through_the_binary_into_a_private_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let r = import_fixtures(&dir);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout.trim(),
        "imported 4 patients, 28 resources; 0 skipped"
    );
    let out = tmp.path().join("export.json");
    let r = phivault(&["export", "--data-dir", s(&dir), "--out", s(&out)], GOOD);
    assert_eq!(r.code, 0, "{}", r.stderr);
    #[cfg(unix)]
    assert_eq!(mode(&out), 0o600);
    let bundle: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    let exported: BTreeMap<(String, String), Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            assert_eq!(
                e["fullUrl"],
                format!("urn:uuid:{}", r["id"].as_str().unwrap())
            );
            (
                (
                    r["resourceType"].as_str().unwrap().to_owned(),
                    r["id"].as_str().unwrap().to_owned(),
                ),
                without_meta(r.clone()),
            )
        })
        .collect();
    let mut n = 0;
    for f in repo_fixtures() {
        for r in resources_in(&f) {
            let k = (
                r["resourceType"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            );
            assert_eq!(exported.get(&k), Some(&without_meta(r)), "{k:?}");
            n += 1;
        }
    }
    assert_eq!(exported.len(), n);
    // No silent overwrite.
    let r = phivault(&["export", "--data-dir", s(&dir), "--out", s(&out)], GOOD);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--force"));
    let r = phivault(
        &["export", "--data-dir", s(&dir), "--out", s(&out), "--force"],
        GOOD,
    );
    assert_eq!(r.code, 0);
}

#[test]
fn erase_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    assert_eq!(import_fixtures(&dir).code, 0);
    let id = resources_in(&repo_fixtures()[1])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = phivault(
        &[
            "erase",
            "patient",
            &id,
            "--reason",
            "patient request",
            "--data-dir",
            s(&dir),
            "--json",
        ],
        GOOD,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["clinical_records"], 8);
    let r = phivault(
        &[
            "search",
            "--data-dir",
            s(&dir),
            "--identifier",
            "MRN-2208461",
        ],
        GOOD,
    );
    let b: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(b["total"], 0);
    let r = phivault(
        &[
            "erase",
            "patient",
            &id,
            "--reason",
            " ",
            "--data-dir",
            s(&dir),
        ],
        GOOD,
    );
    assert_eq!(r.code, 1);
}

#[test]
fn grants_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    assert_eq!(import_fixtures(&dir).code, 0);
    let r = phivault(
        &[
            "user",
            "add",
            "--data-dir",
            s(&dir),
            "--username",
            "dr.grey",
            "--role",
            "CLINICIAN",
            "--json",
        ],
        GOOD,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let patient = resources_in(&repo_fixtures()[2])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = phivault(
        &[
            "grants",
            "add",
            "--data-dir",
            s(&dir),
            "--username",
            "dr.grey",
            "--patient",
            &patient,
            "--minutes",
            "30",
        ],
        GOOD,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("dr.grey may access"), "{}", r.stdout);
    let r = phivault(
        &[
            "grants",
            "add",
            "--data-dir",
            s(&dir),
            "--username",
            "dr.grey",
            "--patient",
            "no-such-patient",
        ],
        GOOD,
    );
    assert_eq!(r.code, 1);
    let r = phivault(
        &[
            "grants",
            "add",
            "--data-dir",
            s(&dir),
            "--username",
            "dr.grey",
            "--patient",
            &patient,
            "--purpose",
            "ETREAT",
        ],
        GOOD,
    );
    assert_eq!(r.code, 1, "break-glass is not granted by an administrator");
    let r = phivault(
        &["grants", "care-team-rule", "on", "--data-dir", s(&dir)],
        GOOD,
    );
    assert_eq!((r.code, r.stdout.trim()), (0, "care-team rule on"));
    let r = phivault(
        &["grants", "care-team-rule", "maybe", "--data-dir", s(&dir)],
        GOOD,
    );
    assert_ne!(r.code, 0);
    let r = phivault(&["grants", "lockdown", "--data-dir", s(&dir)], GOOD);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout.trim(), "lockdown: 1 live grants revoked");
}

#[test]
fn a_policy_file_is_checked_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[fields.KING]\ndefault = \"all\"\n").unwrap();
    let r = phivault(
        &["search", "--data-dir", s(&dir), "--identifier", "x"],
        &[
            ("PHIVAULT_PASSPHRASE", PASS),
            ("PHIVAULT_POLICY_FILE", s(&bad)),
        ],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("policy file: unknown role KING"),
        "{}",
        r.stderr
    );
    let example = repo_root().join("docs/policy.example.toml");
    let r = phivault(
        &["search", "--data-dir", s(&dir), "--identifier", "x"],
        &[
            ("PHIVAULT_PASSPHRASE", PASS),
            ("PHIVAULT_POLICY_FILE", s(&example)),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `migrate` brings the stores up to date without the passphrase, and a store whose schema is
/// newer than this binary stops it (and every command) with a clear error.
#[tokio::test]
async fn migrate_is_idempotent_and_refuses_a_newer_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    for _ in 0..2 {
        let r = phivault(&["migrate", "--data-dir", s(&dir)], &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains("stores up to date (SQLite)"),
            "{}",
            r.stdout
        );
    }
    {
        use sqlx::ConnectOptions;
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("control.db"))
            .connect()
            .await
            .unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
            .execute(&mut c)
            .await
            .unwrap();
    }
    for args in [
        &["migrate", "--data-dir", s(&dir)][..],
        &["search", "--data-dir", s(&dir), "--phone", "5550100"],
    ] {
        let r = phivault(args, GOOD);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("newer"), "{}", r.stderr);
    }
}
