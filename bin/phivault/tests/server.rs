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
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(line)) if line.starts_with("phivault is listening on https://127.0.0.1:") => {
            let port = line.rsplit(':').next().unwrap().parse().unwrap();
            // Keep draining stdout so the server never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            Ok(Server { child, port })
        }
        _ => {
            let out = child.wait_with_output().unwrap();
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
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
