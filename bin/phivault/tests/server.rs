//! The HTTPS listener against real clients: openssl s_client for protocol versions, curl for
//! headers, over real sockets on 127.0.0.1 with a port picked by the OS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    port: u16,
    /// Everything the server printed after its first line.
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Its log lines (standard error).
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Waits (up to 5 s) for a printed line starting with `prefix`.
    fn line(&self, prefix: &str) -> Option<String> {
        for _ in 0..50 {
            if let Some(l) = self
                .output
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with(prefix))
            {
                return Some(l.clone());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(cwd: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phivault"));
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(common::live::SERVE)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log_sink = logs.clone();
    let stderr = child.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            log_sink.lock().unwrap().push(l);
        }
    });
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(line)) if line.starts_with("phivault is listening on https://127.0.0.1:") => {
            let port = line.rsplit(':').next().unwrap().parse().unwrap();
            // Keep reading stdout so the server never blocks on it.
            let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = output.clone();
            std::thread::spawn(move || {
                for l in lines.map_while(Result::ok) {
                    sink.lock().unwrap().push(l);
                }
            });
            Ok(Server {
                child,
                port,
                output,
                logs,
            })
        }
        _ => {
            let _ = child.wait();
            let _ = log_reader.join();
            let text = logs.lock().unwrap().join("\n");
            Err(text)
        }
    }
}

fn handshake(port: u16, version_flag: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version_flag,
        ])
        // Let the client offer old protocols, so a refusal is the server's.
        .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl is needed (Debian package openssl; .ci/run installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let ok = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is needed (.ci/run installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Threat: downgrade to TLS 1.0/1.1 (or SSLv3), and responses without HSTS, no-store and a strict
/// CSP (HIPAA §164.312(e)(1) transmission security; OWASP ASVS V9.1, V14.4).
#[test]
fn dev_server_speaks_only_modern_tls_with_security_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(tmp.path(), &["--dev"], &[]).unwrap();
    let data = tmp.path().join("phivault-data");
    assert!(data.join("keys/root.key").is_file());
    let pass_file = tmp.path().join("phivault-data.passphrase");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pass_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    for old in ["-tls1", "-tls1_1"] {
        let (ok, text) = handshake(server.port, old);
        assert!(!ok, "{old} handshake succeeded:\n{text}");
    }
    for new in ["-tls1_2", "-tls1_3"] {
        let (ok, text) = handshake(server.port, new);
        assert!(ok, "{new} handshake failed:\n{text}");
        assert!(text.contains("GCM") || text.contains("CHACHA20"), "{text}");
    }

    let cert = data.join("tls/cert.pem");
    let url = format!("https://localhost:{}", server.port);
    for (path, status) in [("/healthz", "200"), ("/no/such/route", "404")] {
        let (code, out) = curl(&[
            "-D",
            "-",
            "--cacert",
            cert.to_str().unwrap(),
            &format!("{url}{path}"),
        ]);
        assert_eq!(code, 0, "{out}");
        let lower = out.to_lowercase();
        assert!(lower.starts_with(&format!("http/2 {status}")), "{out}");
        for h in [
            "strict-transport-security: max-age=63072000; includesubdomains",
            "x-content-type-options: nosniff",
            "cache-control: no-store",
            "referrer-policy: no-referrer",
            "content-security-policy: default-src 'none'",
        ] {
            assert!(lower.contains(h), "{h} missing on {path}:\n{out}");
        }
    }
    let (_, out) = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        &format!("{url}/healthz"),
    ]);
    assert_eq!(out, r#"{"status":"ok"}"#);
    // Plain HTTP to the TLS port gets no API at all.
    let (code, out) = curl(&[&format!("http://127.0.0.1:{}/healthz", server.port)]);
    assert_ne!(code, 0);
    assert!(!out.contains("status"), "{out}");
    drop(server);

    // A second run reuses the vault: same root key, no new passphrase.
    let key_before = std::fs::read(data.join("keys/root.key")).unwrap();
    let pass_before = std::fs::read(&pass_file).unwrap();
    let server = serve(tmp.path(), &["--dev"], &[]).unwrap();
    assert_eq!(
        std::fs::read(data.join("keys/root.key")).unwrap(),
        key_before
    );
    assert_eq!(std::fs::read(&pass_file).unwrap(), pass_before);
    let (code, _) = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        &format!("https://localhost:{}/healthz", server.port),
    ]);
    assert_eq!(code, 0);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = serve(tmp.path(), &["--dev"], &[]).unwrap();
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Threat: a TLS private key other local users can read (HIPAA §164.312(e)(2)(ii);
/// OWASP ASVS V6.4): the server refuses to start.
#[test]
fn a_tls_key_readable_by_others_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    drop(serve(tmp.path(), &["--dev"], &[]).unwrap());
    let key = tmp.path().join("phivault-data/tls/key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = serve(tmp.path(), &["--dev"], &[])
            .err()
            .expect("must refuse");
        assert!(err.contains("readable by other users"), "{err}");
    }
}

fn curl_json(args: &[&str]) -> (String, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.to_owned(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Threat: passwords, codes, tokens or TOTP secrets in logs (trace level scanned) and a sign-in
/// without a second factor (HIPAA §164.312(d), (b); OWASP A09:2021).
#[test]
fn the_dev_administrator_signs_in_with_password_change_and_totp_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(tmp.path(), &["--dev"], &[]).unwrap();
    let boot = server
        .line("bootstrap administrator")
        .expect("bootstrap printed");
    let otp = boot
        .split("one-time password ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let enroll = server
        .line("TOTP enrollment for admin: otpauth://")
        .unwrap();
    let secret = enroll
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let seed = phivault_crypto::totp::seed_from_base32(&secret).unwrap();
    let cert = tmp.path().join("phivault-data/tls/cert.pem");
    let cacert = cert.to_str().unwrap();
    let url = |p: &str| format!("https://localhost:{}{p}", server.port);
    let post = |path: &str, body: serde_json::Value, extra: &[&str]| {
        let b = body.to_string();
        let mut args = vec![
            "--cacert",
            cacert,
            "-H",
            "content-type: application/json",
            "-d",
            &b,
        ];
        args.extend_from_slice(extra);
        let u = url(path);
        args.push(&u);
        curl_json(&args)
    };

    // Unknown user and wrong password: the same answer.
    let a = post(
        "/auth/login",
        serde_json::json!({"username": "ghost", "password": "whatever it is"}),
        &[],
    );
    let b = post(
        "/auth/login",
        serde_json::json!({"username": "admin", "password": "whatever it is"}),
        &[],
    );
    assert_eq!(a, b);
    assert_eq!(a.0, "401");
    assert_eq!(a.1, serde_json::json!({"error": "authentication failed"}));

    let (code, r) = post(
        "/auth/login",
        serde_json::json!({"username": "admin", "password": otp}),
        &[],
    );
    assert_eq!(code, "200", "{r}");
    assert_eq!(r["next"], "change_password");
    let challenge = r["challenge"].as_str().unwrap().to_owned();
    let (code, r) = post(
        "/auth/password",
        serde_json::json!({"challenge": challenge, "new_password": "amber glacier pivot 2041 sings"}),
        &[],
    );
    assert_eq!(code, "200", "{r}");
    assert_eq!(r["next"], "mfa");
    // No session without the second factor.
    let (code, _) = curl_json(&[
        "--cacert",
        cacert,
        "-H",
        &format!("authorization: Bearer {challenge}"),
        &url("/auth/whoami"),
    ]);
    assert_eq!(code, "401");
    let now = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_secs();
    let totp = phivault_crypto::totp::code_at(&seed, now).unwrap();
    let (code, r) = post(
        "/auth/mfa",
        serde_json::json!({"challenge": challenge, "code": totp}),
        &[],
    );
    assert_eq!(code, "200", "{r}");
    assert_eq!(r["token_type"], "Bearer");
    assert_eq!(r["expires_in"], 8 * 3600);
    let token = r["token"].as_str().unwrap().to_owned();
    let auth = format!("authorization: Bearer {token}");
    let (code, r) = curl_json(&["--cacert", cacert, "-H", &auth, &url("/auth/whoami")]);
    assert_eq!(code, "200");
    assert_eq!(r["actor"], "user:admin");
    assert_eq!(r["role"], "SUPER_ADMIN");

    // Administration over the API.
    let (code, r) = post(
        "/admin/users",
        serde_json::json!({"username": "dr.house", "role": "CLINICIAN"}),
        &["-H", &auth],
    );
    assert_eq!(code, "200", "{r}");
    assert!(r["one_time_password"].as_str().unwrap().len() >= 20);
    let (code, r) = curl_json(&["--cacert", cacert, "-H", &auth, &url("/admin/users")]);
    assert_eq!(code, "200");
    assert_eq!(r.as_array().unwrap().len(), 2);
    let (code, _) = post(
        "/admin/users",
        serde_json::json!({"username": "dr.house", "role": "CLINICIAN"}),
        &["-H", &auth],
    );
    assert_eq!(code, "400", "a taken username");
    let (code, r) = post(
        "/admin/users/dr.house/disable",
        serde_json::json!({}),
        &["-H", &auth],
    );
    assert_eq!(
        (code.as_str(), &r["disabled"]),
        ("200", &serde_json::json!(true))
    );
    let (code, _) = post(
        "/admin/users/nobody.at.all/disable",
        serde_json::json!({}),
        &["-H", &auth],
    );
    assert_eq!(code, "404");
    let (code, _) = curl_json(&["--cacert", cacert, &url("/admin/users")]);
    assert_eq!(code, "401");
    // Grants are an ORG_ADMIN's business, not a SUPER_ADMIN's; break-glass is a clinician's.
    let (code, _) = post(
        "/admin/grants",
        serde_json::json!({"username": "dr.house", "patient": "p1", "purpose": "TREAT"}),
        &["-H", &auth],
    );
    assert_eq!(code, "403");
    let (code, _) = post(
        "/admin/grants/lockdown",
        serde_json::json!({}),
        &["-H", &auth],
    );
    assert_eq!(code, "403");
    let (code, _) = post(
        "/auth/break-glass",
        serde_json::json!({"patient": "p1", "reason": "emergency in the ED"}),
        &["-H", &auth],
    );
    assert_eq!(code, "403");

    let (code, _) = post("/auth/logout", serde_json::json!({}), &["-H", &auth]);
    assert_eq!(code, "204");
    let (code, _) = curl_json(&["--cacert", cacert, "-H", &auth, &url("/auth/whoami")]);
    assert_eq!(code, "401");

    // The logs: one JSON line per request, none holding a password, code, token or secret.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = server.logs.lock().unwrap().clone();
    let requests: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["fields"]["message"] == "request")
        .collect();
    assert!(requests.len() >= 8, "{logs:?}");
    assert!(
        requests
            .iter()
            .any(|j| j["fields"]["route"] == "/auth/login" && j["fields"]["status"] == 401)
    );
    for secret in [
        otp.as_str(),
        "amber glacier pivot 2041 sings",
        totp.as_str(),
        token.as_str(),
        challenge.as_str(),
        secret.as_str(),
    ] {
        for l in &logs {
            assert!(
                !common::log_holds(l, secret),
                "a secret reached the log: {l}"
            );
        }
    }
}

/// Threat: online guessing against the authentication endpoints from one address (OWASP
/// API2:2023; HIPAA §164.312(d)).
#[test]
fn authentication_endpoints_are_rate_limited_per_address() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(tmp.path(), &["--dev"], &[]).unwrap();
    let cert = tmp.path().join("phivault-data/tls/cert.pem");
    let url = format!("https://localhost:{}/auth/login", server.port);
    // One curl process, all 30 requests at once (see `assert_within_the_limit`), over HTTP/1.1:
    // over HTTP/2, curl 7.88 reports an early 429 (sent before the body is read) as an error.
    let mut args = vec![
        "-s".to_owned(),
        "--parallel".into(),
        "--parallel-immediate".into(),
    ];
    for i in 0..30 {
        if i > 0 {
            args.push("--next".into());
        }
        args.extend([
            "--http1.1".into(),
            "--cacert".into(),
            cert.to_str().unwrap().into(),
        ]);
        args.extend([
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}\n".into(),
            "-H".into(),
            "content-type: application/json".into(),
            "-d".into(),
            r#"{"username":"admin","password":"guessing guessing"}"#.into(),
            url.clone(),
        ]);
    }
    let started = std::time::Instant::now();
    let out = Command::new("curl").args(&args).output().unwrap();
    let elapsed = started.elapsed();
    let codes: Vec<u16> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(codes.len(), 30, "{codes:?}");
    assert!(
        codes.iter().filter(|c| **c == 401).count() >= 10,
        "the first burst is answered normally: {codes:?}"
    );
    assert!(codes.iter().all(|c| *c == 401 || *c == 429), "{codes:?}");
    common::assert_within_the_limit(&codes, elapsed);
    // Other endpoints are not throttled by it.
    let (code, _) = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        &format!("https://localhost:{}/healthz", server.port),
    ]);
    assert_eq!(code, 0);
}

#[test]
fn a_configured_certificate_is_used_instead_of_the_development_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (cert, key) = (tmp.path().join("site.crt"), tmp.path().join("site.key"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let env = [
        ("PHIVAULT_PASSPHRASE", common::PASS),
        ("PHIVAULT_DATA_DIR", dir.to_str().unwrap()),
        ("PHIVAULT_TLS_CERT", cert.to_str().unwrap()),
        ("PHIVAULT_TLS_KEY", key.to_str().unwrap()),
    ];
    let init = Command::new(env!("CARGO_BIN_EXE_phivault"))
        .arg("init")
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(init.status.success());
    assert!(
        !dir.join("tls").exists(),
        "no development certificate when one is configured"
    );
    let server = serve(tmp.path(), &[], &env).unwrap();
    let (code, out) = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        &format!("https://localhost:{}/healthz", server.port),
    ]);
    assert_eq!((code, out.as_str()), (0, r#"{"status":"ok"}"#));
}
