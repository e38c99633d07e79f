//! The root key in an HSM, end to end: the same vault flows with the root key inside a
//! SoftHSM2 token (PKCS#11), and no start at all without the token, the module or the PIN.
//!
//! Each test has its own SoftHSM2 (`SOFTHSM2_CONF` for the processes it starts, with its own
//! token directory). Without SoftHSM2 installed a test prints a note and passes, except in CI
//! (`CI` set), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
#[path = "../../../crates/crypto/tests/support/softhsm.rs"]
mod softhsm;

use common::live::{Live, basic_of};
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "phivault-e2e";
const PIN: &str = "e2e-user-pin-2468";
const SO_PIN: &str = "e2e-so-pin-1357";
const PATIENT: &str = "73a32749-dacd-50f2-91b8-4acc18666b46";
const MRN: &str = "MRN-8841906";

/// A process's extra environment.
type Env = Vec<(String, String)>;

/// A temp dir holding a private SoftHSM2 with one token, the PIN file and a data dir.
struct Setup {
    _tmp: tempfile::TempDir,
    hsm: softhsm::SoftHsm,
    pin_file: PathBuf,
    data: PathBuf,
}

impl Setup {
    fn new(test: &str) -> Option<Setup> {
        let module = softhsm::available(test)?;
        let tmp = tempfile::tempdir().unwrap();
        let hsm = softhsm::SoftHsm::at(&tmp.path().join("softhsm"), &module);
        hsm.init_token(TOKEN, SO_PIN, PIN);
        let pin_file = tmp.path().join("pin");
        write_private(&pin_file, &format!("{PIN}\n"));
        let data = tmp.path().join("data");
        Some(Setup {
            _tmp: tmp,
            hsm,
            pin_file,
            data,
        })
    }

    /// The environment of a `phivault` process that uses the token.
    fn env(&self) -> Env {
        vec![
            ("SOFTHSM2_CONF".into(), self.hsm.conf.display().to_string()),
            (
                "PHIVAULT_PKCS11_MODULE".into(),
                self.hsm.module.display().to_string(),
            ),
            ("PHIVAULT_PKCS11_TOKEN".into(), TOKEN.into()),
            (
                "PHIVAULT_PKCS11_PIN_FILE".into(),
                self.pin_file.display().to_string(),
            ),
        ]
    }

    /// [`Setup::env`] with `var` changed (`Some`) or removed (`None`).
    fn env_with(&self, var: &str, value: Option<&str>) -> Env {
        let mut env: Vec<_> = self.env().into_iter().filter(|(k, _)| k != var).collect();
        if let Some(v) = value {
            env.push((var.into(), v.into()));
        }
        env
    }

    fn init(&self) {
        let out = run(&self.data, &self.env(), &["init", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["root_key_provider"], "pkcs11", "{v}");
    }
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn command(data: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phivault"));
    cmd.args(args)
        .env_remove("PHIVAULT_PASSPHRASE")
        .env_remove("PHIVAULT_PASSPHRASE_FILE")
        .env("PHIVAULT_DATA_DIR", data)
        .envs(backend_env(data))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    cmd
}

/// `phivault ARGS` on the vault in `data`, with no passphrase in its environment.
fn run(data: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    command(data, env, args).output().unwrap()
}

/// `phivault serve` that must refuse to start: its output once it exited (within 60 s).
fn serve_must_fail(data: &Path, env: &[(String, String)]) -> Output {
    let mut child = command(data, env, &live_serve_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve started without a usable root key: {}",
                text(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn live_serve_args() -> Vec<&'static str> {
    common::live::SERVE.to_vec()
}

fn fixtures_args() -> Vec<String> {
    let mut args = vec!["import".to_owned()];
    args.extend(repo_fixtures().iter().map(|p| p.display().to_string()));
    args
}

#[test]
fn the_vault_runs_with_its_root_key_in_softhsm() {
    let Some(s) = Setup::new("the_vault_runs_with_its_root_key_in_softhsm") else {
        return;
    };
    s.init();
    let env = s.env();

    // The data dir holds no root key: only a note naming the token and the key.
    let keys = s.data.join("keys");
    assert!(!keys.join("root.key").exists());
    let marker = std::fs::read_to_string(keys.join("root.pkcs11")).unwrap();
    assert!(
        marker.contains(TOKEN) && marker.contains("phivault-root"),
        "{marker}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("root.pkcs11")).unwrap();
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    // Import, search, export, verify: no passphrase anywhere, the token opens the keyring.
    let args = fixtures_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&s.data, &env, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&s.data, &env, &["search", "--identifier", MRN]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundle: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(bundle["entry"][0]["resource"]["id"], PATIENT);
    let export = s.data.with_file_name("export.json");
    let out = run(
        &s.data,
        &env,
        &["export", "--out", export.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported = std::fs::read_to_string(&export).unwrap();
    assert!(exported.contains(MRN));
    let out = run(&s.data, &env, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Key rotation wraps the new KEK in the token; the vault opens with it afterwards.
    let out = run(&s.data, &env, &["keys", "rotate", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["finished"], true, "{rotated}");
    let out = run(&s.data, &env, &["search", "--identifier", MRN]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(PATIENT));
    // The compliance report names the HSM; there is no passphrase to change.
    let out = run(&s.data, &env, &["compliance", "report", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "key-management")
        .unwrap();
    assert_eq!(keys_check["status"], "pass", "{keys_check}");
    assert!(
        keys_check["evidence"].as_str().unwrap().contains("pkcs11"),
        "{keys_check}"
    );
    let out = run(&s.data, &env, &["keys", "change-passphrase"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no passphrase to change"));

    // The server answers a FHIR read with the key in the token.
    let out = run(
        &s.data,
        &env,
        &[
            "client",
            "add",
            "--name",
            "ehr",
            "--role",
            "INTEGRATION_MANAGER",
            "--scopes",
            "system/*.cruds",
            "--purposes",
            "TREAT",
            "--json",
        ],
    );
    let basic = basic_of(&out);
    let log = s.data.with_file_name("serve.log");
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let live = Live::node(&s.data, &env_ref, Some(&log));
    let token = live.token(&basic);
    let r = live.fhir(
        "GET",
        &format!("/fhir/Patient/{PATIENT}"),
        &token,
        "TREAT",
        None,
    );
    assert_eq!(r.status, 200, "{} {}", r.body, r.error);
    assert_eq!(r.body["id"], PATIENT);
    assert!(r.body.to_string().contains(MRN));
    drop(live);

    // Neither the data dir nor the server's log holds the PIN.
    assert!(scan(&s.data, &[PIN.as_bytes().to_vec()]).is_empty());
    assert!(!std::fs::read_to_string(&log).unwrap().contains(PIN));
    // Still no key file after all that.
    assert!(!keys.join("root.key").exists());
}

/// A command that must refuse: non-zero exit, an `error:` line that says `expect`, no panic,
/// no PIN, and the data dir unchanged.
fn assert_refused(what: &str, out: &Output, expect: &[&str]) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{what}: it ran\n{err}");
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(err.contains("error: "), "{what}: {err}");
    for e in expect {
        assert!(err.contains(e), "{what}: expected {e:?} in\n{err}");
    }
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(!err.contains(PIN), "{what}: the PIN was printed");
    assert!(
        !text(&out.stdout).contains("listening on"),
        "{what}: the server started"
    );
}

#[test]
fn without_the_token_module_or_pin_nothing_starts() {
    let Some(s) = Setup::new("without_the_token_module_or_pin_nothing_starts") else {
        return;
    };
    s.init();
    let args = fixtures_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&s.data, &s.env(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = all_files(&s.data);

    let wrong_pin = s.data.with_file_name("wrong-pin");
    write_private(&wrong_pin, "not-the-pin\n");
    let cases: Vec<(&str, Env, Vec<&str>)> = vec![
        (
            "no PKCS#11 configuration",
            vec![("PHIVAULT_PASSPHRASE".into(), PASS.into())],
            vec![
                "is in a PKCS#11 token",
                "PHIVAULT_PKCS11_MODULE",
                "PHIVAULT_PKCS11_PIN_FILE",
            ],
        ),
        (
            "no PIN file",
            s.env_with("PHIVAULT_PKCS11_PIN_FILE", None),
            vec!["PHIVAULT_PKCS11_PIN_FILE"],
        ),
        (
            "no module",
            s.env_with("PHIVAULT_PKCS11_MODULE", None),
            vec!["PHIVAULT_PKCS11_MODULE"],
        ),
        (
            "a module that is not there",
            s.env_with("PHIVAULT_PKCS11_MODULE", Some("/nonexistent/libpkcs11.so")),
            vec![
                "cannot load the PKCS#11 module",
                "/nonexistent/libpkcs11.so",
            ],
        ),
        (
            "a token that is not there",
            s.env_with("PHIVAULT_PKCS11_TOKEN", Some("no-such-token")),
            vec!["no token labelled 'no-such-token'"],
        ),
        (
            "a wrong PIN",
            s.env_with(
                "PHIVAULT_PKCS11_PIN_FILE",
                Some(wrong_pin.to_str().unwrap()),
            ),
            vec!["wrong PIN", TOKEN],
        ),
        (
            "a key label the token does not hold",
            s.env_with("PHIVAULT_PKCS11_KEY_LABEL", Some("other-key")),
            vec!["holds no key labelled 'other-key'"],
        ),
    ];
    for (what, env, expect) in &cases {
        assert_refused(
            &format!("serve, {what}"),
            &serve_must_fail(&s.data, env),
            expect,
        );
        assert_refused(
            &format!("search, {what}"),
            &run(&s.data, env, &["search", "--identifier", MRN]),
            expect,
        );
    }

    // The token itself gone (its directory removed): the server does not start.
    let tokens = s.hsm.tokens();
    let away = s.hsm.dir.join("tokens-away");
    std::fs::rename(&tokens, &away).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    let out = serve_must_fail(&s.data, &s.env());
    assert_refused(
        "serve, token removed",
        &out,
        &[&format!("no token labelled '{TOKEN}'")],
    );
    assert_refused(
        "audit verify, token removed",
        &run(&s.data, &s.env(), &["audit", "verify"]),
        &[&format!("no token labelled '{TOKEN}'")],
    );
    // Nothing any refusal did changed the data dir.
    assert_eq!(
        all_files(&s.data),
        before,
        "a refused start changed the data dir"
    );

    // The token back: the vault opens again.
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&away, &tokens).unwrap();
    let out = run(&s.data, &s.env(), &["search", "--identifier", MRN]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn init_refuses_an_existing_key_unless_told_and_keyfile_vaults_stay_keyfile() {
    let Some(s) =
        Setup::new("init_refuses_an_existing_key_unless_told_and_keyfile_vaults_stay_keyfile")
    else {
        return;
    };
    s.init();
    // A second vault on the same token and label: refused, nothing left behind, and the
    // first vault's key is still there (the failed init destroyed only what it made).
    let second = s.data.with_file_name("second");
    let out = run(&second, &s.env(), &["init"]);
    assert_refused(
        "init over an existing key",
        &out,
        &[
            "already holds a key labelled 'phivault-root'",
            "--pkcs11-use-existing-key",
        ],
    );
    assert!(!second.join("keys/root.pkcs11").exists());
    let out = run(&s.data, &s.env(), &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Told to, it adopts the key; both vaults open.
    let out = run(&second, &s.env(), &["init", "--pkcs11-use-existing-key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&second, &s.env(), &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The flag without the configuration is an error, not a passphrase vault.
    let third = s.data.with_file_name("third");
    let out = run(
        &third,
        &[("PHIVAULT_PASSPHRASE".into(), PASS.into())],
        &["init", "--pkcs11-use-existing-key"],
    );
    assert_refused(
        "flag without configuration",
        &out,
        &["PHIVAULT_PKCS11_MODULE"],
    );
    assert!(!third.exists());

    // A passphrase vault is not opened with the HSM configuration set (it would not be
    // what the operator thinks): the error says where its root key is.
    let keyfile = s.data.with_file_name("keyfile");
    let out = run(
        &keyfile,
        &[("PHIVAULT_PASSPHRASE".into(), PASS.into())],
        &["init"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut env = s.env();
    env.push(("PHIVAULT_PASSPHRASE".into(), PASS.into()));
    assert_refused(
        "keyfile vault with the HSM set",
        &run(&keyfile, &env, &["audit", "verify"]),
        &["keys/root.key, sealed by a passphrase", "PKCS#11"],
    );
    // Its key file swapped for an HSM note: the control store still says `keyfile`, and
    // start-up stops on that, before the keyring is tried.
    std::fs::remove_file(keyfile.join("keys/root.key")).unwrap();
    std::fs::copy(
        s.data.join("keys/root.pkcs11"),
        keyfile.join("keys/root.pkcs11"),
    )
    .unwrap();
    assert_refused(
        "keyfile vault made to look like an HSM one",
        &run(&keyfile, &s.env(), &["audit", "verify"]),
        &["the keyfile root key its control store names"],
    );
}

/// Backups of a vault whose root key is in the token: the file carries the token and key
/// labels, not a key; restore opens it with the token (and only with it) and gives back every
/// record; with the passphrase instead of the token it is refused and writes nothing.
#[test]
fn a_backup_of_an_hsm_vault_restores_with_the_token_only() {
    let Some(s) = Setup::new("a_backup_of_an_hsm_vault_restores_with_the_token_only") else {
        return;
    };
    s.init();
    let import = fixtures_args();
    let import: Vec<&str> = import.iter().map(String::as_str).collect();
    let out = run(&s.data, &s.env(), &import);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = s.data.parent().unwrap().join("hsm.pvbak");
    let out = run(
        &s.data,
        &s.env(),
        &["backup", "create", "--out", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let export = |data: &Path, name: &str| -> Value {
        let path = data.parent().unwrap().join(name);
        let out = run(data, &s.env(), &["export", "--out", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut v = read_json(&path);
        let mut entries: Vec<Value> = v["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| without_meta(e["resource"].clone()))
            .collect();
        entries.sort_by_key(|e| e.to_string());
        v = Value::Array(entries);
        v
    };
    let before = export(&s.data, "before.json");
    // Without the token (a passphrase instead): refused, nothing written.
    let target = s.data.parent().unwrap().join("restored");
    let out = command(&target, &[], &["backup", "restore", file.to_str().unwrap()])
        .env("PHIVAULT_PASSPHRASE", common::PASS)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("PKCS#11"),
        "{}",
        text(&out.stderr)
    );
    assert!(!target.exists());
    // With the token: everything back, no key file in the restored dir.
    let out = run(
        &target,
        &s.env(),
        &["backup", "restore", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!target.join("keys/root.key").exists());
    assert!(target.join("keys/root.pkcs11").exists());
    assert_eq!(export(&target, "after.json"), before);
}
