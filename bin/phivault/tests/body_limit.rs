//! The request-body limit (issue 22): `PHIVAULT_MAX_BODY` (bytes, 64 KiB to 256 MiB, default
//! 8 MiB) is the one limit the API applies; a 3.6 MB batch Bundle goes in with the default;
//! a body over the limit gets 413 with an OperationOutcome over HTTP/1.1 and HTTP/2, whether
//! its length is declared or it grows past the limit, also to a client that sends the whole
//! body before it reads anything (the server reads the rest and drops it instead of closing
//! on an upload, so nothing here depends on who is faster).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::live::{Live, Resp, cli_with};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;

const INTEGRATION: (&str, &str, &str) = ("INTEGRATION_MANAGER", "system/*.cruds", "TREAT HOPERAT");
const DEFAULT: usize = 8 * 1024 * 1024;

/// A server (with `env`) and a bearer token of an integration client.
fn server(env: &[(&str, &str)]) -> (Live, String) {
    let mut ehr = String::new();
    let live = Live::start_with(env, |data| {
        ehr = Live::client(data, "ehr", INTEGRATION.0, INTEGRATION.1, INTEGRATION.2);
    });
    let t = live.token(&ehr);
    (live, t)
}

/// How curl sends the body: with its length declared, or streamed from standard input
/// (`-T -`: chunked on HTTP/1.1, no length on HTTP/2).
#[derive(Clone, Copy, Debug)]
enum Framing {
    Declared,
    Streamed,
}

/// A POST of `body` with curl over `proto` (`--http1.1` or `--http2`), without
/// `Expect: 100-continue`, so curl sends at once and is still sending when a refusal comes.
fn post(live: &Live, proto: &str, send: Framing, path: &str, token: &str, body: &[u8]) -> Resp {
    let dir = tempfile::tempdir().unwrap();
    let (head, file) = (dir.path().join("h"), dir.path().join("body"));
    std::fs::write(&file, body).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "--max-time", "120", proto, "--cacert", &live.ca])
        .args(["-D", head.to_str().unwrap(), "-w", "\n%{http_code}"])
        .args(["-H", &format!("authorization: Bearer {token}")])
        .args(["-H", "x-purpose-of-use: TREAT", "-H", "expect:"])
        .args(["-H", "content-type: application/fhir+json", "-X", "POST"]);
    match send {
        Framing::Declared => {
            cmd.args(["--data-binary", &format!("@{}", file.display())]);
        }
        Framing::Streamed => {
            cmd.args(["-T", "-"])
                .stdin(std::fs::File::open(&file).unwrap());
        }
    }
    let out = cmd
        .arg(format!("https://localhost:{}{path}", live.port))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    Resp::of_curl(&out, &head)
}

/// Asserts a 413 OperationOutcome naming `limit`.
fn assert_refused(r: &Resp, limit: usize, what: &str) {
    assert_eq!(r.status, 413, "{what}: {} {}", r.body, r.error);
    assert_eq!(r.body["resourceType"], "OperationOutcome", "{what}");
    assert_eq!(r.body["issue"][0]["code"], "too-costly", "{what}");
    assert_eq!(
        r.outcome(),
        format!("the body is larger than {limit} bytes"),
        "{what}"
    );
}

/// A Patient padded with spaces to exactly `size` bytes of JSON.
fn patient_of_size(size: usize) -> Vec<u8> {
    let p = json!({"resourceType": "Patient", "name": [{"family": "Limit", "given": ["Edge"]}]})
        .to_string();
    let mut b = p.into_bytes();
    let close = b.pop().unwrap();
    b.resize(size - 1, b' ');
    b.push(close);
    b
}

/// A batch Bundle of a hospital's Organizations and Practitioners, pretty-printed as Synthea
/// writes them, of at least `size` bytes.
fn hospital_batch(size: usize) -> Vec<u8> {
    let mut pairs = 100;
    loop {
        let entries: Vec<Value> = (0..pairs).flat_map(hospital_entries).collect();
        let bundle = serde_json::to_vec_pretty(
            &json!({"resourceType": "Bundle", "type": "batch", "entry": entries}),
        )
        .unwrap();
        if bundle.len() >= size {
            return bundle;
        }
        pairs = pairs * size / bundle.len() + 1;
    }
}

/// The batch entries creating hospital `i` and one of its practitioners.
fn hospital_entries(i: usize) -> [Value; 2] {
    let address = json!([{"line": [format!("{i} Main Street")], "city": "Springfield",
        "state": "MA", "postalCode": "01101", "country": "US"}]);
    let org = json!({"resourceType": "Organization", "active": true,
        "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": format!("org-{i:06}")}],
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov", "display": "Healthcare Provider"}], "text": "Healthcare Provider"}],
        "name": format!("General Hospital {i}"),
        "telecom": [{"system": "phone", "value": format!("555-01{:02}", i % 100)}],
        "address": address});
    let practitioner = json!({"resourceType": "Practitioner", "active": true,
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("9{i:09}")}],
        "name": [{"family": format!("Doctor{i}"), "given": ["Alex"], "prefix": ["Dr."]}],
        "telecom": [{"system": "email", "value": format!("doctor{i}@example.org"), "use": "work"}],
        "address": address,
        "gender": if i.is_multiple_of(2) { "female" } else { "male" }});
    [("Organization", org), ("Practitioner", practitioner)]
        .map(|(t, r)| json!({"resource": r, "request": {"method": "POST", "url": t}}))
}

#[test]
fn a_3_6_mb_batch_bundle_goes_in_with_the_default_limit() {
    let (live, t) = server(&[]);
    let bundle = hospital_batch(3_600_000);
    assert!(bundle.len() < DEFAULT, "{}", bundle.len());
    let sent: Value = serde_json::from_slice(&bundle).unwrap();
    let n = sent["entry"].as_array().unwrap().len();
    for (proto, send) in [
        ("--http2", Framing::Declared),
        ("--http1.1", Framing::Streamed),
    ] {
        let r = post(&live, proto, send, "/fhir", &t, &bundle);
        assert_eq!(r.status, 200, "{proto} {send:?}: {} {}", r.error, r.body);
        assert_eq!(r.body["type"], "batch-response");
        let answers = r.body["entry"].as_array().unwrap();
        assert_eq!(answers.len(), n, "{proto}");
        for e in answers {
            assert_eq!(e["response"]["status"], "201 Created", "{proto}: {e}");
        }
    }
}

/// Over the default limit: 413 over both protocols, declared or streamed, while curl is
/// still sending; then the server still serves.
#[test]
fn over_the_default_limit_is_a_413_outcome_over_http1_and_http2() {
    let (live, t) = server(&[]);
    let over = patient_of_size(DEFAULT + 2 * 1024 * 1024);
    for proto in ["--http1.1", "--http2"] {
        for send in [Framing::Declared, Framing::Streamed] {
            let what = format!("{proto} {send:?}");
            let r = post(&live, proto, send, "/fhir/Patient", &t, &over);
            assert_refused(&r, DEFAULT, &what);
            if proto == "--http1.1" {
                assert_eq!(r.header("connection").as_deref(), Some("close"), "{what}");
            }
        }
    }
    let at = patient_of_size(DEFAULT);
    for proto in ["--http1.1", "--http2"] {
        for send in [Framing::Declared, Framing::Streamed] {
            let r = post(&live, proto, send, "/fhir/Patient", &t, &at);
            assert_eq!(r.status, 201, "{proto} {send:?} at the limit: {}", r.body);
        }
    }
}

/// A client that writes the whole request before it reads (as many HTTP libraries do) over
/// HTTP/1.1: the server reads the rest of a refused body, so every write succeeds and the 413
/// is there to read. Returns the answer's head and body.
fn send_all_then_read(live: &Live, head: &str, body: &[u8]) -> (String, Value) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&live.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", live.port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(head.as_bytes()).expect("the request head");
    tls.write_all(body).expect("the whole body is taken");
    tls.flush().unwrap();
    read_answer(&mut tls)
}

/// One HTTP/1.1 answer with a `Content-Length`: its head (lowercased) and JSON body.
fn read_answer(r: &mut impl Read) -> (String, Value) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(r.read(&mut byte).unwrap(), 1, "the answer ended early");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    (head, serde_json::from_slice(&body).unwrap())
}

fn request_head(live: &Live, token: &str, framing: &str) -> String {
    format!(
        "POST /fhir/Patient HTTP/1.1\r\nhost: localhost:{}\r\nauthorization: Bearer {token}\r\n\
         x-purpose-of-use: TREAT\r\ncontent-type: application/fhir+json\r\n{framing}\r\n",
        live.port
    )
}

/// `bytes` as one HTTP/1.1 chunk per 64 KiB, and the last chunk.
fn chunked(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in bytes.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn a_client_that_sends_everything_before_reading_gets_the_413() {
    let (live, t) = server(&[]);
    // Far more than the socket buffers hold: closing on it would fail the writes.
    let over = patient_of_size(DEFAULT + 24 * 1024 * 1024);
    let declared = request_head(&live, &t, &format!("content-length: {}\r\n", over.len()));
    let streamed = request_head(&live, &t, "transfer-encoding: chunked\r\n");
    for (what, head, body) in [
        ("declared", declared, over.clone()),
        ("chunked", streamed, chunked(&over)),
    ] {
        let (head, outcome) = send_all_then_read(&live, &head, &body);
        assert!(head.starts_with("http/1.1 413"), "{what}: {head}");
        assert!(head.contains("connection: close"), "{what}: {head}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
    }
    // A client waiting on `Expect: 100-continue` is answered 413, never invited to send.
    let head = request_head(
        &live,
        &t,
        &format!("content-length: {}\r\nexpect: 100-continue\r\n", over.len()),
    );
    let (head, outcome) = send_all_then_read(&live, &head, b"");
    assert!(head.starts_with("http/1.1 413"), "expect: {head}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
}

/// `PHIVAULT_MAX_BODY` sets the limit (bodies up to it go in, one byte more is refused); a
/// value that is not a number of bytes in range stops the start, naming the variable.
#[test]
fn the_limit_is_a_setting() {
    let limit = 64 * 1024;
    let (live, t) = server(&[("PHIVAULT_MAX_BODY", "65536")]);
    for proto in ["--http1.1", "--http2"] {
        for send in [Framing::Declared, Framing::Streamed] {
            let what = format!("{proto} {send:?}");
            let r = post(
                &live,
                proto,
                send,
                "/fhir/Patient",
                &t,
                &patient_of_size(limit),
            );
            assert_eq!(r.status, 201, "{what} at the limit: {}", r.body);
            let r = post(
                &live,
                proto,
                send,
                "/fhir/Patient",
                &t,
                &patient_of_size(limit + 1),
            );
            assert_refused(&r, limit, &what);
        }
    }
    // Outside /fhir: a JSON error, the same limit.
    let login = format!("{{\"username\": \"{}\"}}", "x".repeat(limit));
    let r = post(
        &live,
        "--http2",
        Framing::Declared,
        "/auth/login",
        &t,
        login.as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(
        r.body["error"],
        format!("the body is larger than {limit} bytes")
    );
    drop(live);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(cli_with(&data, &[], &["init"]).status.success());
    for bad in [
        "",
        "8MiB",
        "-1",
        "65535",
        "268435457",
        "99999999999999999999999",
    ] {
        let out = cli_with(
            &data,
            &[("PHIVAULT_MAX_BODY", bad)],
            &["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "off"],
        );
        assert!(!out.status.success(), "{bad:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("PHIVAULT_MAX_BODY"), "{bad:?}: {err}");
    }
}

/// Threat: a source the listener's allow-list refuses makes the server read and drop a large
/// body (the drain that lets an allowed client see its 413). A refused source gets its 403
/// before any body rule, declared or streamed, on both protocols (or, when the server closes
/// while curl is still sending, no answer at all: nothing of the body is read for it).
#[test]
fn a_refused_source_gets_403_not_a_drained_413() {
    let live = Live::start_with(&[("PHIVAULT_HTTP_ALLOW", "10.0.0.0/8")], |_| {});
    let big = patient_of_size(12 * 1024 * 1024);
    for proto in ["--http1.1", "--http2"] {
        for send in [Framing::Declared, Framing::Streamed] {
            let r = post(&live, proto, send, "/fhir/Patient", "none", &big);
            assert!(
                r.status == 403 || r.status == 0,
                "{proto} {send:?}: {} {} {}",
                r.status,
                r.body,
                r.error
            );
        }
    }
}
