//! HL7 v2 ingestion benchmark: messages/s end to end (frame sent → ACK received) for ADT^A08
//! and ORU^R01 over 1 and 8 MLLP connections to a real `phivault serve`, beside a raw-storage
//! baseline measured in the same run (each message's bytes inserted into SQLite with the same
//! durability: WAL, synchronous=FULL, one transaction per message, 1 and 8 writers).
//!
//!   cargo bench -p phivault --bench hl7          (BENCH_MESSAGES per run, default 2000)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Instant;

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

fn send_all(port: u16, messages: &[String]) -> usize {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut ok = 0;
    let mut buf = Vec::with_capacity(1024);
    for m in messages {
        let mut f = vec![0x0b];
        f.extend_from_slice(m.as_bytes());
        f.extend_from_slice(b"\x1c\x0d");
        s.write_all(&f).unwrap();
        buf.clear();
        let mut byte = [0u8; 512];
        while !buf.ends_with(b"\x1c\x0d") {
            let n = s.read(&mut byte).unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&byte[..n]);
        }
        if buf.windows(6).any(|w| w == b"MSA|AA") {
            ok += 1;
        }
    }
    ok
}

/// Messages/s over `conns` connections; every message must be accepted.
fn run(port: u16, conns: usize, messages: Vec<String>) -> f64 {
    let n = messages.len();
    let per = n / conns;
    let chunks: Vec<Vec<String>> = messages
        .chunks(per.max(1))
        .map(<[String]>::to_vec)
        .collect();
    let t = Instant::now();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|c| std::thread::spawn(move || send_all(port, &c)))
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(ok, n, "every message must be acknowledged AA");
    rate
}

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

fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bin = env!("CARGO_BIN_EXE_phivault");
    let st = Command::new(bin)
        .arg("init")
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", &data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let mut server = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mllp-listen",
            "127.0.0.1:0",
        ])
        .env("PHIVAULT_PASSPHRASE", PASS)
        .env("PHIVAULT_DATA_DIR", &data)
        .env("PHIVAULT_MLLP_TLS", "off")
        .env("PHIVAULT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let _https = lines.next().unwrap().unwrap();
    let mllp_line = lines.next().unwrap().unwrap();
    let port: u16 = mllp_line
        .split_whitespace()
        .nth(5)
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    println!(
        "phivault HL7 v2 ingestion benchmark: {n} messages per run, plain MLLP on loopback, 2 cores shared by client and server"
    );
    // The patients the A08s and ORUs refer to (not measured).
    let admits: Vec<String> = (0..n).map(|i| adt("A01", i, &format!("ADM-{i}"))).collect();
    run(port, 8, admits);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let raw_dir = tempfile::tempdir().unwrap();
    let mut lines_out = Vec::new();
    for (label, make) in [
        (
            "ADT^A08",
            &(|i: usize, c: &str| adt("A08", i, c)) as &dyn Fn(usize, &str) -> String,
        ),
        (
            "ORU^R01",
            &(|i: usize, c: &str| oru(i, c)) as &dyn Fn(usize, &str) -> String,
        ),
    ] {
        for conns in [1usize, 8] {
            let msgs: Vec<String> = (0..n)
                .map(|i| make(i, &format!("{label}-{conns}-{i}")))
                .collect();
            let raw = rt.block_on(raw_baseline(raw_dir.path(), conns, &msgs));
            let rate = run(port, conns, msgs);
            lines_out.push(format!(
                "{label} over {conns} connection(s): {rate:>7.0} msg/s   raw SQLite insert of the same bytes: {raw:>7.0}/s   phivault/raw {:.2}",
                rate / raw
            ));
        }
    }
    for l in lines_out {
        println!("{l}");
    }
    let _ = server.kill();
    let _ = server.wait();
}
