//! A real `phivault serve` on 127.0.0.1:0 over a fresh data dir, driven with curl over HTTPS
//! (the server's own development certificate as the trust anchor).
use super::PASS;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// `phivault serve` on free ports (HTTPS and MLLP).
pub const SERVE: [&str; 5] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--mllp-listen",
    "127.0.0.1:0",
];

pub struct Live {
    _tmp: Option<tempfile::TempDir>,
    pub data: PathBuf,
    pub port: u16,
    /// The MLLP listener's port.
    pub mllp: u16,
    pub ca: String,
    child: Child,
}

/// An HTTP answer: status, response headers (lowercased names), JSON body (Null if none).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: Value,
    /// What curl said on stderr (transport errors).
    pub error: String,
}

impl Resp {
    /// What curl run with `-D head -w "\n%{http_code}"` got: its status, headers and body.
    pub fn of_curl(out: &Output, head: &Path) -> Resp {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Resp {
            status: code.trim().parse().unwrap_or(0),
            headers: std::fs::read_to_string(head).unwrap_or_default(),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
            error: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The OperationOutcome's diagnostics (panics if the body is not one).
    pub fn outcome(&self) -> String {
        assert_eq!(
            self.body["resourceType"], "OperationOutcome",
            "status {}: {}",
            self.status, self.body
        );
        self.body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// A Patient with one MRN (`urn:test:mrn|mrn`), a name and a birth date.
pub fn patient_with_mrn(mrn: &str) -> Value {
    serde_json::json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": mrn}],
        "name": [{"family": "Movedfamily", "given": ["Someone"]}], "birthDate": "1961-06-06"})
}

/// A final Observation of `patient` (a reference, `Patient/<id>`) holding `note`.
pub fn note_of(patient: &str, note: &str) -> Value {
    serde_json::json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "clinical note"}, "subject": {"reference": patient},
        "valueString": note})
}

/// The id of the resource a `POST` created (asserting 201).
pub fn created(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

/// Asserts that an answer holds nothing of `secret` (a string only the victim's records hold).
pub fn assert_withholds(r: &Resp, secret: &str, what: &str) {
    assert!(
        !r.body.to_string().contains(secret),
        "{what} released the first patient's record: {} {}",
        r.status,
        r.body
    );
}

pub fn cli(data: &Path, args: &[&str]) -> Output {
    cli_with(data, &[], args)
}

/// [`cli`] with extra environment (a database of the test's own, say).
pub fn cli_with(data: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phivault"))
        .args(args)
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", data)
        .envs(super::backend_env(data))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The JSON a successful `phivault … --json` printed.
pub fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// What a successful `phivault …` printed on standard output (panics with its output if it
/// failed).
pub fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `phivault import` of the repo's fixtures into the vault in `data`.
pub fn import_repo_fixtures(data: &Path) {
    let files: Vec<String> = super::repo_fixtures()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    stdout_ok(&cli(data, &args));
}

/// `id:secret` of the client `phivault client add --json` printed.
pub fn basic_of(out: &Output) -> String {
    let c = json_of(out);
    format!(
        "{}:{}",
        c["client_id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap()
    )
}

impl Live {
    /// Initializes a data dir, lets `setup` prepare it (imports, clients), then serves it.
    pub fn start(setup: impl FnOnce(&Path)) -> Live {
        Self::start_with(&[], setup)
    }

    /// [`Live::start`] with extra environment for the server (`PHIVAULT_MLLP_*`, …).
    pub fn start_with(env: &[(&str, &str)], setup: impl FnOnce(&Path)) -> Live {
        Self::start_inner(env, None, setup)
    }

    /// [`Live::start_with`], the server's standard error (its logs) written to `log`.
    pub fn start_logged(env: &[(&str, &str)], log: &Path, setup: impl FnOnce(&Path)) -> Live {
        Self::start_inner(env, Some(log), setup)
    }

    fn start_inner(env: &[(&str, &str)], log: Option<&Path>, setup: impl FnOnce(&Path)) -> Live {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let out = cli(&data, &["init"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        setup(&data);
        let mut live = Self::node(&data, env, log);
        live._tmp = Some(tmp);
        live
    }

    /// One more `phivault serve` on the existing vault in `data` (several nodes on one
    /// PostgreSQL database, or a server started again).
    pub fn node(data: &Path, env: &[(&str, &str)], log: Option<&Path>) -> Live {
        let data = data.to_owned();
        let mut child = Command::new(env!("CARGO_BIN_EXE_phivault"))
            .args(SERVE)
            .env("PHIVAULT_PASSPHRASE", PASS)
            .env("PHIVAULT_DATA_DIR", &data)
            .envs(super::backend_env(&data))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
        let second = lines.next().unwrap().unwrap();
        // 0 when the MLLP listener did not start (several organizations, none chosen).
        let mllp: u16 = if second.contains("not started") {
            0
        } else {
            second
                .split_whitespace()
                .nth(5)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no MLLP port in: {second}"))
        };
        let ca = data.join("tls/cert.pem").display().to_string();
        Live {
            _tmp: None,
            data,
            port,
            mllp,
            ca,
            child,
        }
    }

    /// Registers a service client; returns `id:secret` for HTTP Basic.
    pub fn client(data: &Path, name: &str, role: &str, scopes: &str, purposes: &str) -> String {
        Self::client_in(data, None, name, role, scopes, purposes)
    }

    /// [`Live::client`] in organization `org` (the only one when `None`).
    pub fn client_in(
        data: &Path,
        org: Option<&str>,
        name: &str,
        role: &str,
        scopes: &str,
        purposes: &str,
    ) -> String {
        let extra: &[&str] = match org {
            Some(o) => &["--org", o],
            None => &[],
        };
        Self::client_with(data, name, (role, scopes, purposes), extra)
    }

    /// `phivault client add` with `extra` arguments; returns `id:secret` for HTTP Basic.
    pub fn client_with(
        data: &Path,
        name: &str,
        (role, scopes, purposes): (&str, &str, &str),
        extra: &[&str],
    ) -> String {
        let mut args = vec![
            "client",
            "add",
            "--name",
            name,
            "--role",
            role,
            "--scopes",
            scopes,
            "--purposes",
            purposes,
            "--json",
        ];
        args.extend_from_slice(extra);
        basic_of(&cli(data, &args))
    }

    /// A bearer token for client credentials `id:secret`.
    pub fn token(&self, basic: &str) -> String {
        self.try_token(basic).unwrap_or_else(|| {
            panic!(
                "no token for client {}",
                basic.split(':').next().unwrap_or("")
            )
        })
    }

    /// A bearer token for client credentials `id:secret`, or `None` when refused.
    pub fn try_token(&self, basic: &str) -> Option<String> {
        let out = Command::new("curl")
            .args([
                "-s",
                "-S",
                "--max-time",
                "20",
                "--cacert",
                &self.ca,
                "-u",
                basic,
            ])
            .args(["-d", "grant_type=client_credentials"])
            .arg(format!("https://localhost:{}/oauth/token", self.port))
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["access_token"].as_str().map(str::to_owned)
    }

    /// One request. `body` is (content type, bytes).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        purpose: Option<&str>,
        body: Option<(&str, &[u8])>,
        headers: &[&str],
    ) -> Resp {
        let dir = tempfile::tempdir().unwrap();
        let head = dir.path().join("h");
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-S",
            "--max-time",
            "60",
            "-X",
            method,
            "--cacert",
            &self.ca,
        ])
        .args(["-D", head.to_str().unwrap(), "-w", "\n%{http_code}"]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("authorization: Bearer {t}")]);
        }
        if let Some(p) = purpose {
            cmd.args(["-H", &format!("x-purpose-of-use: {p}")]);
        }
        for h in headers {
            // Sent from this loopback address (its own rate-limit bucket).
            if let Some(from) = h.strip_prefix("x-from: ") {
                cmd.args(["--interface", from]);
                continue;
            }
            if *h == "x-http1: 1" {
                // Wait for the server's answer to `Expect: 100-continue` however loaded the
                // machine is (curl's default is 1 s, after which it sends the body anyway and
                // an early 413 races the upload into a broken pipe).
                cmd.args(["--http1.1", "--expect100-timeout", "60"]);
                continue;
            }
            cmd.args(["-H", h]);
        }
        if let Some((ct, bytes)) = body {
            let f = dir.path().join("body");
            std::fs::write(&f, bytes).unwrap();
            cmd.args(["-H", &format!("content-type: {ct}")])
                .args(["--data-binary", &format!("@{}", f.display())]);
        }
        cmd.arg(format!("https://localhost:{}{path}", self.port));
        Resp::of_curl(&cmd.output().unwrap(), &head)
    }

    /// A request over HTTP/1.1 (with `Expect: 100-continue`, so an early answer arrives before
    /// the body is sent). A 413 reaches curl over either protocol whenever it comes (the
    /// server drains a refused body: tests/body_limit.rs); other answers given before the body
    /// is read (429, a route that reads no body) are followed by a close or a stream reset,
    /// which curl 7.88 may report as a transport error mid-upload.
    pub fn call_http1(&self, method: &str, path: &str, token: &str, body: (&str, &[u8])) -> Resp {
        self.call(
            method,
            path,
            Some(token),
            Some("TREAT"),
            Some(body),
            &["x-http1: 1"],
        )
    }

    /// A FHIR request with a JSON body.
    pub fn fhir(
        &self,
        method: &str,
        path: &str,
        token: &str,
        purpose: &str,
        body: Option<&Value>,
    ) -> Resp {
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.call(
            method,
            path,
            Some(token),
            Some(purpose),
            bytes.as_deref().map(|b| ("application/fhir+json", b)),
            &[],
        )
    }
}

impl Live {
    /// Kills the server with SIGKILL (no chance to tidy up) and waits for it to be gone.
    pub fn kill_now(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python that has `fhir.resources`, or `None` outside CI when there is none (in CI its
/// absence is a failure).
pub fn fhir_validator() -> Option<String> {
    python_with("fhir.resources.R4B", "fhir.resources")
}

/// The test Python (`PHIVAULT_TEST_PYTHON`, else the repo's .venv, else `python3`) if it can
/// import `module`; `None` outside CI when it cannot (in CI that is a failure: .ci/run
/// installs `package`).
pub fn python_with(module: &str, package: &str) -> Option<String> {
    let python = std::env::var("PHIVAULT_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = super::repo_root().join(".venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install {package} (see .ci/run)"
        );
        eprintln!("skipped: no Python with {package}; .ci/run installs it");
        return None;
    }
    Some(python)
}

/// Validates resources with `fhir.resources` (R4): panics with its report if any is invalid.
pub fn validate_resources(resources: &[Value]) {
    let Some(python) = fhir_validator() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bundle.json");
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| serde_json::json!({"resource": r}))
        .collect();
    let bundle =
        serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
    std::fs::write(&f, bundle.to_string()).unwrap();
    let v = Command::new(&python)
        .arg(super::repo_root().join("bin/phivault/tests/support/validate_fhir.py"))
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success()
            && text.contains(&format!(
                "validated {} resources, 0 invalid",
                resources.len()
            )),
        "{text}{}",
        String::from_utf8_lossy(&v.stderr)
    );
}

/// Adds a user; returns its one-time password.
pub fn add_user(data: &Path, username: &str, role: &str) -> String {
    let out = cli(
        data,
        &[
            "user",
            "add",
            "--username",
            username,
            "--role",
            role,
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["one_time_password"].as_str().unwrap().to_owned()
}

/// The password [`Live::sign_in`] sets.
pub const SIGNED_IN_PASSWORD: &str = "walks the amber glacier 2041 at dawn";

/// What a first sign-in left: the session, the TOTP secret (base32) and the backup codes.
pub struct Enrolled {
    pub token: String,
    pub secret: String,
    pub backup_codes: Vec<String>,
}

impl Live {
    /// A person's whole sign-in over HTTPS from loopback address `from` (its own address, so
    /// the per-address rate limit does not interfere): the one-time password, a new password,
    /// TOTP enrollment, a code. Returns the session token.
    pub fn sign_in(&self, username: &str, one_time_password: &str, from: &str) -> String {
        self.enroll(username, one_time_password, from).token
    }

    /// [`Live::sign_in`] naming the organization (needed once the vault has several).
    pub fn sign_in_in(&self, org: &str, username: &str, otp: &str, from: &str) -> String {
        self.enroll_in(Some(org), username, otp, from).token
    }

    /// A JSON POST, with a bearer token or none, from loopback address `from` (its own
    /// rate-limit bucket).
    pub fn post_from(&self, from: &str, path: &str, token: Option<&str>, body: &Value) -> Resp {
        let b = body.to_string();
        let r = self.call(
            "POST",
            path,
            token,
            None,
            Some(("application/json", b.as_bytes())),
            &[&format!("x-from: {from}")],
        );
        assert!(r.error.is_empty(), "{path}: {}", r.error);
        r
    }

    /// [`Live::sign_in`], returning what the enrollment showed as well.
    pub fn enroll(&self, username: &str, one_time_password: &str, from: &str) -> Enrolled {
        self.enroll_in(None, username, one_time_password, from)
    }

    /// [`Live::enroll`] in organization `org` (none named when `None`).
    pub fn enroll_in(&self, org: Option<&str>, username: &str, otp: &str, from: &str) -> Enrolled {
        self.enroll_with(org, username, otp, from, &Value::Null)
    }

    /// [`Live::enroll_in`], the sign-in's first step given the fields of `extra` as well
    /// (`{"purpose_of_use": "TREAT"}`, say).
    pub fn enroll_with(
        &self,
        org: Option<&str>,
        username: &str,
        otp: &str,
        from: &str,
        extra: &Value,
    ) -> Enrolled {
        let post = |path: &str, body: Value| self.post_from(from, path, None, &body).body;
        let mut login = serde_json::json!({"username": username, "password": otp});
        if let Some(o) = org {
            login["organization"] = Value::from(o);
        }
        if let Some(fields) = extra.as_object() {
            for (k, v) in fields {
                login[k] = v.clone();
            }
        }
        let r = post("/auth/login", login);
        let challenge = r["challenge"]
            .as_str()
            .unwrap_or_else(|| panic!("no challenge: {r}"))
            .to_owned();
        let r = post(
            "/auth/password",
            serde_json::json!({"challenge": challenge, "new_password": SIGNED_IN_PASSWORD}),
        );
        assert_eq!(r["next"], "enroll_mfa", "{r}");
        let r = post(
            "/auth/mfa/enroll",
            serde_json::json!({"challenge": challenge}),
        );
        let secret = r["secret"].as_str().unwrap().to_owned();
        let backup_codes = r["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let seed = phivault_crypto::totp::seed_from_base32(&secret).unwrap();
        let now =
            u64::try_from(phivault_core::Clock::now_secs(&phivault_core::SystemClock)).unwrap();
        let code = phivault_crypto::totp::code_at(&seed, now).unwrap();
        let r = post(
            "/auth/mfa",
            serde_json::json!({"challenge": challenge, "code": code}),
        );
        let token = r["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Enrolled {
            token,
            secret,
            backup_codes,
        }
    }
}
