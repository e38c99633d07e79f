//! The security regression suite at the edges: what reaches the server before anyone is
//! authenticated (HTTP methods and paths, source addresses, HL7 frames and connections) and
//! how it starts (`serve --dev`, its settings). One named test per threat, each against a real
//! `phivault serve` over HTTPS (curl) or MLLP (a plain socket), or the real CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::live::{Live, cli};
use common::mllp::{ack_parts, connect, exchange, framed, send_on};
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Unpredictable tokens (the standard library's randomly keyed hasher over a counter).
struct Noise(std::collections::hash_map::RandomState, u64);

impl Noise {
    fn new() -> Self {
        Self(std::collections::hash_map::RandomState::new(), 0)
    }

    fn next(&mut self) -> u64 {
        use std::hash::BuildHasher;
        self.1 += 1;
        self.0.hash_one(self.1) & 0xFFFF_FFFF_FFFF
    }
}

/// One request with curl from the loopback address `from`: (status, headers, body).
fn get_from(live: &Live, from: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("h");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "--max-time", "30", "--interface", from])
        .args(["--cacert", &live.ca, "-D", head.to_str().unwrap()])
        .args(["-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("authorization: Bearer {t}")]);
    }
    let out = cmd
        .arg(format!("https://localhost:{}{path}", live.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        std::fs::read_to_string(&head).unwrap_or_default(),
        body.to_owned(),
    )
}

/// The Prometheus text of `/metrics`, read from `from` with an AUDITOR's token.
fn metrics(live: &Live, from: &str, token: &str) -> String {
    let (status, _, body) = get_from(live, from, "/metrics", Some(token));
    assert_eq!(status, 200, "{body}");
    body
}

/// An AUDITOR service client (a Prometheus scraper).
fn scraper(data: &Path) -> String {
    Live::client(data, "prom", "AUDITOR", "system/AuditEvent.rs", "HOPERAT")
}

/// Threat: unauthenticated requests with invented method names (and random paths) each add a
/// metrics label series and a log line that are kept forever: `/metrics` and the logs grow
/// without bound (a 24 MB `/metrics` was produced) until monitoring or the disk gives out
/// (OWASP API4:2023 unrestricted resource consumption; HIPAA §164.308(a)(1) availability).
#[test]
fn dos_invented_http_methods_and_paths_leave_metrics_small_with_fixed_labels() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut prom = String::new();
    let live = Live::start_logged(&[], log.path(), |data| prom = scraper(data));
    let mut noise = Noise::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flood.curl");
    let (mut text, mut invented) = (String::new(), Vec::new());
    for i in 0..300 {
        let method = format!("Q{:012X}", noise.next());
        let path = if i % 3 == 0 {
            "/fhir/Patient".to_owned()
        } else {
            let (a, b) = (
                format!("{:012x}", noise.next()),
                format!("{:012x}", noise.next()),
            );
            invented.extend([a.clone(), b.clone()]);
            format!("/{a}/{b}")
        };
        text.push_str(&format!(
            "url = \"https://localhost:{}{path}\"\nrequest = \"{method}\"\ncacert = \"{}\"\n\
             silent\nmax-time = 30\noutput = \"/dev/null\"\nwrite-out = \"%{{http_code}}\\n\"\nnext\n",
            live.port, live.ca
        ));
        invented.push(method);
    }
    std::fs::write(&config, text).unwrap();
    let out = Command::new("curl")
        .arg("-K")
        .arg(&config)
        .output()
        .unwrap();
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    let codes: Vec<&str> = codes.lines().collect();
    assert_eq!(codes.len(), 300, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        codes.iter().all(|c| *c == "501" || *c == "405"),
        "invented methods are answered 405 or 501: {codes:?}"
    );

    // A standard method a route does not serve: 405, saying what it serves.
    let trace = live.call("TRACE", "/healthz", None, None, None, &[]);
    assert_eq!(trace.status, 405);
    assert!(trace.header("allow").is_some(), "{}", trace.headers);

    let text = metrics(&live, "127.0.0.1", &live.token(&prom));
    assert!(
        text.len() < 16 * 1024,
        "/metrics grew to {} bytes",
        text.len()
    );
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(series < 100, "{series} series:\n{text}");
    let fixed = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other",
    ];
    for label in text.split("method=\"").skip(1) {
        let m = label.split('"').next().unwrap();
        assert!(fixed.contains(&m), "invented method label {m}:\n{text}");
    }
    let logs = std::fs::read_to_string(log.path()).unwrap();
    for t in &invented {
        assert!(!text.contains(t.as_str()), "/metrics holds {t}");
        assert!(!logs.contains(t.as_str()), "the logs hold {t}");
    }
    // The invented methods are counted, under the fixed label.
    assert!(text.contains("method=\"other\""), "{text}");
}

/// Threat: the HTTPS listener (and its administration) answers anyone who can reach it; a
/// stolen token or password works from any network, and the login and token endpoints can be
/// brute-forced from anywhere (HIPAA §164.312(a)(1) access control; OWASP ASVS V1.14, V14.2).
/// With `PHIVAULT_HTTP_ALLOW` and `PHIVAULT_ADMIN_ALLOW`, other sources get 403 before any
/// authentication, counted in `/metrics` under fixed labels.
#[test]
fn access_sources_outside_the_https_allow_lists_get_403_before_authentication() {
    // A listener whose list leaves out 127.0.0.0/8: this test's connections are refused.
    let shut = Live::start_with(
        &[("PHIVAULT_HTTP_ALLOW", "10.0.0.0/8, 192.168.0.0/16")],
        |_| {},
    );
    for (path, token) in [
        ("/healthz", None),
        ("/fhir/Patient", Some("bogus-token")),
        ("/auth/whoami", None),
        ("/metrics", None),
        ("/no/such/route", None),
    ] {
        let (status, headers, body) = get_from(&shut, "127.0.0.1", path, token);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body.len() < 300 && !body.contains("127.0.0"),
            "{path}: {body}"
        );
        assert!(
            headers.to_lowercase().contains("strict-transport-security"),
            "{headers}"
        );
        if path.starts_with("/fhir") {
            assert!(body.contains("OperationOutcome"), "{body}");
        }
    }
    drop(shut);

    // 127.0.0.1 and .3 may use the listener; only .3 may use /admin and /metrics.
    let mut prom = String::new();
    let live = Live::start_with(
        &[
            ("PHIVAULT_HTTP_ALLOW", "127.0.0.1/32,127.0.0.3/32"),
            ("PHIVAULT_ADMIN_ALLOW", "127.0.0.3"),
        ],
        |data| prom = scraper(data),
    );
    assert_eq!(get_from(&live, "127.0.0.1", "/healthz", None).0, 200);
    let bogus = Some("bogus-token");
    assert_eq!(get_from(&live, "127.0.0.1", "/fhir/Patient", bogus).0, 401);
    let t = live.token(&prom);
    assert_eq!(get_from(&live, "127.0.0.1", "/metrics", Some(&t)).0, 403);
    assert_eq!(get_from(&live, "127.0.0.1", "/admin/users", None).0, 403);
    assert_eq!(get_from(&live, "127.0.0.1", "/admin/keys", bogus).0, 403);
    assert_eq!(get_from(&live, "127.0.0.2", "/healthz", None).0, 403);
    assert_eq!(get_from(&live, "127.0.0.3", "/admin/users", None).0, 401);
    let text = metrics(&live, "127.0.0.3", &t);
    assert!(
        text.contains("phivault_http_refused_total{reason=\"source\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("phivault_http_refused_total{reason=\"admin_source\"} 3"),
        "{text}"
    );
    assert!(!text.contains("127.0.0"), "no addresses in labels: {text}");
}

/// Threat: HSTS preload is hard to undo (browsers ship the list), so it must never be sent by
/// accident; and a mistyped security setting must stop the start, not fall back silently
/// (OWASP ASVS V14.4.5; HIPAA §164.312(e)(1)).
#[test]
fn transport_hsts_preload_only_when_turned_on_and_bad_settings_stop_the_start() {
    let hsts = |live: &Live| {
        get_from(live, "127.0.0.1", "/healthz", None)
            .1
            .to_lowercase()
    };
    let on = Live::start_with(&[("PHIVAULT_HSTS_PRELOAD", "on")], |_| {});
    assert!(
        hsts(&on)
            .contains("strict-transport-security: max-age=63072000; includesubdomains; preload"),
        "{}",
        hsts(&on)
    );
    drop(on);
    let off = Live::start_with(&[("PHIVAULT_HSTS_PRELOAD", "off")], |_| {});
    let h = hsts(&off);
    assert!(h.contains("strict-transport-security: max-age=63072000; includesubdomains"));
    assert!(!h.contains("preload"), "{h}");
    drop(off);
    for (var, bad, says) in [
        (
            "PHIVAULT_HSTS_PRELOAD",
            "yes",
            "PHIVAULT_HSTS_PRELOAD is on or off",
        ),
        ("PHIVAULT_HTTP_ALLOW", "10.0.0.0/33", "prefix length"),
        ("PHIVAULT_ADMIN_ALLOW", "localhost", "not an address block"),
        ("PHIVAULT_MLLP_FRAME_TIMEOUT", "0", "from 1 to 3600"),
        ("PHIVAULT_MLLP_MAX_CONNECTIONS", "many", "a whole number"),
        ("PHIVAULT_MLLP_MAX_REPETITIONS", "-1", "a whole number"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("phivault-data");
        let out = Command::new("timeout")
            .arg("60")
            .arg(env!("CARGO_BIN_EXE_phivault"))
            .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .args(["--mllp-listen", "127.0.0.1:0"])
            .env("PHIVAULT_DATA_DIR", &data)
            .envs(backend_env(&data))
            .env(var, bad)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={bad} was accepted");
        assert!(
            err.contains(var) && err.contains(says),
            "{var}={bad}: {err}"
        );
        assert!(
            !data.exists(),
            "{var}={bad}: a vault was created before the refusal"
        );
    }
}

/// Threat: `serve --dev` with `PHIVAULT_PASSPHRASE` (or `_FILE`) set creates the vault under a
/// generated passphrase, then opens it with the given one: the first run fails with "wrong
/// passphrase" and leaves a vault that the operator's passphrase does not open (HIPAA
/// §164.308(a)(7) contingency plan; availability).
#[test]
fn keys_dev_first_run_uses_the_given_passphrase_for_the_new_vault() {
    for var in ["PHIVAULT_PASSPHRASE", "PHIVAULT_PASSPHRASE_FILE"] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("phivault-data");
        let given = tmp.path().join("given.pass");
        std::fs::write(&given, format!("{PASS}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&given, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let value = if var == "PHIVAULT_PASSPHRASE" {
            PASS.to_owned()
        } else {
            given.display().to_string()
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_phivault"))
            .current_dir(tmp.path())
            .args([
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--mllp-listen",
                "off",
            ])
            .env("PHIVAULT_DATA_DIR", &data)
            .envs(backend_env(&data))
            .env(var, &value)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let first = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .and_then(Result::ok)
            .unwrap_or_default();
        let _ = child.kill();
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let _ = child.wait();
        assert!(
            first.starts_with("phivault is listening on https://"),
            "{var}: the first run failed: {err}"
        );
        assert!(
            !tmp.path().join("phivault-data.passphrase").exists(),
            "{var}: a generated passphrase was written beside the vault"
        );
        // The vault opens with the operator's passphrase.
        let out = cli(&data, &["audit", "verify"]);
        assert!(
            out.status.success(),
            "{var}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The process id of the `phivault serve` over `data` (found by its environment).
fn server_pid(data: &Path) -> u32 {
    let want = format!("PHIVAULT_DATA_DIR={}", data.display());
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let serving = cmd.split(|b| *b == 0).any(|a| a == b"serve");
        if serving && env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            return pid;
        }
    }
    panic!("no phivault serve over {}", data.display());
}

/// The peak resident memory of a process so far (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A server with plain MLLP and the settings `env`, its logs written to `log`.
fn plain_mllp(env: &[(&str, &str)], log: &Path) -> Live {
    let mut all = vec![("PHIVAULT_MLLP_TLS", "off")];
    all.extend_from_slice(env);
    Live::start_logged(&all, log, |_| {})
}

const GOOD: &str = "04-adt-a28-add-person-v24.hl7";

fn good_message(control_id: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(repo_root().join("testdata/hl7v2").join(GOOD)).unwrap();
    framed(&text.replace("MPI-0301", control_id))
}

/// Threat: HL7 frame amplification. A 1 MiB frame of repetition separators costs ~170 times
/// its size in the parser (every empty repetition a few vectors), so a few frames on a few
/// connections exhaust the server's memory; many small fields do the same per message (OWASP
/// API4:2023; HIPAA §164.308(a)(1) availability). Both are refused with a logged reason.
#[test]
fn dos_hl7_separator_floods_are_refused_without_amplification() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let live = plain_mllp(&[], log.path());
    let pid = server_pid(&live.data);
    let before = peak_kib(pid);
    let head = "MSH|^~\\&|A|B|C|D|2026||ADT^A08|FLOOD-1|P|2.5\rPID|1||";
    let flood = format!("{head}{}\r", "~".repeat(1024 * 1024 - head.len() - 1));
    let ack = String::from_utf8_lossy(&exchange(live.mllp, &framed(&flood))).replace('\r', "\n");
    let grown = peak_kib(pid).saturating_sub(before);
    assert!(
        grown < 40 * 1024,
        "a 1 MiB frame raised the server's peak memory by {grown} KiB"
    );
    assert_eq!(ack_parts(&ack).0, "AE", "{ack}");
    assert!(ack.contains("too many repetitions or components"), "{ack}");
    // Many fields each within the per-field cap, beyond the per-message one.
    let mut many = "MSH|^~\\&|A|B|C|D|2026||ORU^R01|FLOOD-2|P|2.5\rPID|1||F2^^^H\r".to_owned();
    let value = vec!["v"; 199].join("~");
    for i in 1..=600 {
        many.push_str(&format!("OBX|{i}|ST|X^Y||{value}\r"));
    }
    let ack = String::from_utf8_lossy(&exchange(live.mllp, &framed(&many))).replace('\r', "\n");
    assert_eq!(ack_parts(&ack).0, "AE", "{ack}");
    assert!(ack.contains("too many repetitions or components"), "{ack}");
    // The listener still serves; each refusal was logged with its reason and no content.
    let ok = String::from_utf8_lossy(&exchange(live.mllp, &good_message("FLOOD-OK"))).into_owned();
    assert_eq!(ack_parts(&ok.replace('\r', "\n")).0, "AA", "{ok}");
    let logs = std::fs::read_to_string(log.path()).unwrap();
    for reason in ["FieldTooComplex", "MessageTooComplex"] {
        assert!(
            logs.lines()
                .any(|l| l.contains(reason) && l.contains("refused")),
            "no logged reason {reason}:\n{logs}"
        );
    }
    assert!(
        !logs.contains("F2^^^H") && !logs.contains("~~~"),
        "message text logged"
    );
}

/// Threat: slow-loris over MLLP. The read timeout is per read, so a sender that dribbles a
/// byte now and then holds a connection (and a growing frame buffer) forever (OWASP
/// API4:2023). A frame must now complete within `PHIVAULT_MLLP_FRAME_TIMEOUT`.
#[test]
fn dos_hl7_slow_loris_frame_is_cut_off_at_the_frame_deadline() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let live = plain_mllp(&[("PHIVAULT_MLLP_FRAME_TIMEOUT", "2")], log.path());
    let mut s = connect(live.mllp);
    // The pace of the dribble: one byte, then up to 200 ms waiting for the server to answer.
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"\x0bMSH|^~\\&|A|B|C|D|2026||ADT^A08|SLOW-1|P|2.5\rPID|1||")
        .unwrap();
    let start = Instant::now();
    let (mut cut, mut answer) = (false, Vec::new());
    while !cut && start.elapsed() < Duration::from_secs(30) {
        if s.write_all(b"9").is_err() {
            cut = true;
            continue;
        }
        let mut b = [0u8; 256];
        match s.read(&mut b) {
            Ok(0) => cut = true,
            Ok(n) => answer.extend_from_slice(&b[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => cut = true,
        }
    }
    assert!(cut, "a frame dribbled for 30 s was never cut off");
    assert!(answer.is_empty(), "the partial frame was answered");
    let logs = std::fs::read_to_string(log.path()).unwrap();
    assert!(logs.contains("frame deadline"), "{logs}");
}

/// Waits (up to 20 s) until the log file holds `n` lines containing `what`.
fn await_log(log: &Path, what: &str, n: usize) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().filter(|l| l.contains(what)).count() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the log never held {n} × {what}");
}

/// Threat: unbounded MLLP connections. Every connection holds a task, buffers and a database
/// slot; a sender (or a compromised host on the allow-list) opening thousands exhausts them
/// (OWASP API4:2023). Beyond `PHIVAULT_MLLP_MAX_CONNECTIONS`, connections are closed at
/// once, logged; a slot comes back when a connection ends.
#[test]
fn dos_hl7_connections_beyond_the_limit_are_refused() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let live = plain_mllp(&[("PHIVAULT_MLLP_MAX_CONNECTIONS", "2")], log.path());
    let ack = |out: Vec<u8>| ack_parts(&String::from_utf8_lossy(&out).replace('\r', "\n")).0;
    let mut a = connect(live.mllp);
    let mut b = connect(live.mllp);
    assert_eq!(ack(send_on(&mut a, &good_message("LIMIT-A"))), "AA");
    assert_eq!(ack(send_on(&mut b, &good_message("LIMIT-B"))), "AA");
    // A third, while both are open: closed unanswered.
    assert!(exchange(live.mllp, &good_message("LIMIT-C")).is_empty());
    let logs = std::fs::read_to_string(log.path()).unwrap();
    assert!(logs.contains("connection limit"), "{logs}");
    // One ends: its slot comes back.
    drop(a);
    await_log(log.path(), "MLLP connection closed", 1);
    assert_eq!(ack(exchange(live.mllp, &good_message("LIMIT-D"))), "AA");
    assert_eq!(ack(send_on(&mut b, &good_message("LIMIT-E"))), "AA");
}
