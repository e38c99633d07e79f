//! Plain MLLP from the tests' side: frames, one exchange over a socket, the parts of an ACK.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The Python that runs the tests' HL7 clients: `PHIVAULT_TEST_PYTHON`, else the repo's
/// `.venv` (with the `hl7` package), else `python3`.
pub fn python() -> String {
    std::env::var("PHIVAULT_TEST_PYTHON").unwrap_or_else(|_| {
        let v = super::repo_root().join(".venv/bin/python");
        if v.exists() {
            v.display().to_string()
        } else {
            "python3".into()
        }
    })
}

/// MSA-1 and the ERR location (`SEG^n^field`) of an ACK as text (segments on lines).
pub fn ack_parts(ack: &str) -> (String, Option<String>) {
    let seg = |id: &str| {
        ack.lines()
            .map(|l| l.trim_matches(['\x0b', '\x1c', '\r']))
            .find(|l| l.starts_with(id))
            .map(str::to_owned)
    };
    let msa = seg("MSA|").unwrap_or_default();
    let code = msa.split('|').nth(1).unwrap_or("").to_owned();
    let err = seg("ERR|").map(|e| e.split('|').nth(2).unwrap_or("").to_owned());
    (code, err)
}

/// A connection to the MLLP listener on 127.0.0.1 (answers awaited up to 5 s).
pub fn connect(port: u16) -> TcpStream {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `bytes` on an open connection; returns what came back (one ACK per frame sent)
/// before close or timeout.
pub fn send_on(s: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.ends_with(b"\x1c\x0d")
                    && out.iter().filter(|b| **b == 0x0b).count()
                        >= bytes.iter().filter(|b| **b == 0x0b).count()
                {
                    break;
                }
            }
        }
    }
    out
}

/// Sends a raw framed exchange over plain TCP; returns what came back before close/timeout.
pub fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    send_on(&mut connect(port), bytes)
}

pub fn framed(msg: &str) -> Vec<u8> {
    let mut v = vec![0x0b];
    v.extend_from_slice(msg.as_bytes());
    v.extend_from_slice(b"\x1c\x0d");
    v
}
