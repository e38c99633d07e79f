//! HL7 v2 ingestion benchmark: messages/s and ACK latency (frame sent → ACK received, p50 and
//! p99) over 1 and 8 MLLP connections, for a real `phivault serve` (every ACK an AA sent once
//! the message and its audit event are durable) and for Medplum's MLLP server
//! (`@medplum/hl7` `Hl7Server`, bench/medplum: it parses and answers AA from memory), driven
//! by the same client with the same messages (ADT^A01, A04, A08 and ORU^R01 per patient, each
//! with a unique MSH-10) in the same run. Each figure is the median of BENCH_ROUNDS runs.
//!
//!   (cd bench/medplum && npm ci)                 # once: the peer (skipped when missing)
//!   cargo bench -p phivault --bench hl7          # BENCH_MESSAGES per run (default 2000), BENCH_ROUNDS (3)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASS: &str = "hl7 benchmark passphrase 2026";

fn adt(kind: &str, i: usize, ctrl: &str) -> String {
    let mut pv1 = vec![""; 45];
    pv1[0] = "PV1";
    pv1[1] = "1";
    pv1[2] = "I";
    pv1[3] = "MED^402^B";
    pv1[7] = "dr.welby^Welby^Marcus";
    let visit = format!("V-{i}");
    pv1[19] = &visit;
    pv1[44] = "20261101080000-0500";
    format!(
        "MSH|^~\\&|EPICADT|NORTHSIDE|PHIVAULT|NORTHSIDE|20261101083000-0500||ADT^{kind}^ADT_A01|{ctrl}|P|2.5.1\r\
         EVN|{kind}|20261101083000-0500\r\
         PID|1||{mrn}^^^NORTHSIDE^MR||Patient{i}^Bench^Q^^^^L||19580722|F|||{i} Harbor Lane^^Portland^ME^04101^USA^H||^PRN^PH^^^207^555{p:04}\r\
         {pv1}\r",
        mrn = 500_000 + i,
        p = i % 10_000,
        pv1 = pv1.join("|")
    )
}

fn oru(i: usize, ctrl: &str) -> String {
    format!(
        "MSH|^~\\&|LABSYS|NORTHLAB|PHIVAULT|NORTHSIDE|20261101120000-0500||ORU^R01^ORU_R01|{ctrl}|P|2.5.1\r\
         PID|1||{mrn}^^^NORTHSIDE^MR\r\
         OBR|1|ORD-{i}|FIL-{i}|24323-8^Comprehensive metabolic panel^LN|||20261101110000-0500\r\
         OBX|1|NM|2345-7^Glucose^LN||{g}|mg/dL^mg/dL^UCUM|70-99|N|||F\r\
         OBX|2|NM|2160-0^Creatinine^LN||1.1|mg/dL^mg/dL^UCUM|0.6-1.2|N|||F\r",
        mrn = 500_000 + i,
        g = 80 + i % 40
    )
}

/// The ceiling of any durable server on this machine: each message's bytes inserted into
/// SQLite (WAL, synchronous=FULL, one transaction per message) by `writers` writers.
async fn raw_baseline(dir: &std::path::Path, writers: usize, messages: &[String]) -> f64 {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let opts = SqliteConnectOptions::new()
        .filename(dir.join(format!("raw-{writers}.db")))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(std::time::Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(writers as u32)
        .connect_with(opts)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let per = messages.len() / writers;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..writers {
        let pool = pool.clone();
        let mine: Vec<Vec<u8>> = messages[k * per..(k + 1) * per]
            .iter()
            .map(|m| m.as_bytes().to_vec())
            .collect();
        tasks.push(tokio::spawn(async move {
            for b in mine {
                sqlx::query("INSERT INTO m (body) VALUES (?)")
                    .bind(b)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per * writers) as f64 / t.elapsed().as_secs_f64()
}

/// One run's figures.
#[derive(Clone, Copy)]
struct Stats {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// Sends each message and waits for its ACK; returns the latencies (every ACK must be AA).
fn send_all(port: u16, messages: &[String]) -> Vec<Duration> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut lat = Vec::with_capacity(messages.len());
    let mut buf = Vec::with_capacity(1024);
    for m in messages {
        let mut f = vec![0x0b];
        f.extend_from_slice(m.as_bytes());
        f.extend_from_slice(b"\x1c\x0d");
        let t = Instant::now();
        s.write_all(&f).unwrap();
        buf.clear();
        let mut byte = [0u8; 512];
        while !buf.ends_with(b"\x1c\x0d") {
            let n = s.read(&mut byte).unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&byte[..n]);
        }
        lat.push(t.elapsed());
        let ack = String::from_utf8_lossy(&buf);
        assert!(ack.contains("MSA|AA"), "not accepted: {ack}");
    }
    lat
}

/// Messages/s and latencies over `conns` connections; a patient's messages stay on one
/// connection, in order.
fn run(port: u16, conns: usize, messages: &[String]) -> Stats {
    let per = messages.len().div_ceil(conns * 4) * 4;
    let chunks: Vec<Vec<String>> = messages.chunks(per).map(<[String]>::to_vec).collect();
    let t = Instant::now();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|c| std::thread::spawn(move || send_all(port, &c)))
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let rate = messages.len() as f64 / t.elapsed().as_secs_f64();
    lat.sort();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    Stats {
        rate,
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// `n` messages (a multiple of 4): per patient an admission, a registration, an update and
/// a result, with control ids unique to `tag`.
fn mix(n: usize, first_patient: usize, tag: &str) -> Vec<String> {
    (0..n / 4)
        .flat_map(|k| {
            let i = first_patient + k;
            let c = |e: &str| format!("{tag}-{e}-{i}");
            [
                adt("A01", i, &c("A01")),
                adt("A04", i, &c("A04")),
                adt("A08", i, &c("A08")),
                oru(i, &c("ORU")),
            ]
        })
        .collect()
}

/// A server under test.
struct Peer {
    child: Child,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_phivault(data: &std::path::Path) -> Peer {
    let bin = env!("CARGO_BIN_EXE_phivault");
    let st = Command::new(bin)
        .arg("init")
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mllp-listen",
            "127.0.0.1:0",
        ])
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", data)
        .env("PHIVAULT_MLLP_TLS", "off")
        .env("PHIVAULT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _https = lines.next().unwrap().unwrap();
    let mllp_line = lines.next().unwrap().unwrap();
    let port: u16 = mllp_line
        .split_whitespace()
        .nth(5)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    Peer { child, port }
}

/// Medplum's server from bench/medplum, or None (with the reason) when it is not installed.
fn start_medplum() -> Option<Peer> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/medplum");
    if !dir.join("node_modules/@medplum/hl7").exists() {
        println!("Medplum peer skipped: run (cd bench/medplum && npm ci) first");
        return None;
    }
    let mut child = Command::new("node")
        .arg("server.js")
        .arg("0")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next()?.ok()?;
    let port = line.strip_prefix("listening ")?.trim().parse().ok()?;
    Some(Peer { child, port })
}

fn median(mut v: Vec<Stats>) -> Stats {
    v.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let env_num = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env_num("BENCH_MESSAGES", 2000).div_ceil(32) * 32;
    let rounds = env_num("BENCH_ROUNDS", 3).max(1);
    let tmp = tempfile::tempdir().unwrap();
    let phivault = start_phivault(&tmp.path().join("data"));
    let medplum = start_medplum();
    println!(
        "HL7 v2 over MLLP (plain, loopback): {n} messages per run, median of {rounds} runs, 2 cores shared by client and servers"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let raw_dir = tempfile::tempdir().unwrap();
    let mut patient = 0;
    for conns in [1usize, 8] {
        let (mut ours, mut theirs, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            if let Some(m) = &medplum {
                theirs.push(run(
                    m.port,
                    conns,
                    &mix(n, patient, &format!("M{conns}{round}")),
                ));
            }
            let msgs = mix(n, patient, &format!("P{conns}{round}"));
            raw.push(rt.block_on(raw_baseline(raw_dir.path(), conns, &msgs)));
            ours.push(run(phivault.port, conns, &msgs));
            patient += n / 4;
        }
        raw.sort_by(f64::total_cmp);
        let raw = raw[raw.len() / 2];
        let ours = median(ours);
        let line = |who: &str, s: Stats| {
            format!(
                "{who:<9} {conns} connection(s): {:>7.0} msg/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
                s.rate,
                ms(s.p50),
                ms(s.p99)
            )
        };
        println!("{}", line("phivault", ours));
        println!(
            "raw SQLite {conns} writer(s), one durable insert per message: {raw:>7.0}/s (the ceiling of a durable ACK here); phivault/raw {:.2}",
            ours.rate / raw
        );
        if !theirs.is_empty() {
            let theirs = median(theirs);
            println!("{}", line("Medplum", theirs));
            println!(
                "phivault/Medplum on {conns} connection(s): {:.2}x",
                ours.rate / theirs.rate
            );
        }
    }
}
