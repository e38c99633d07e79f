//! One MLLP connection: frames in, one ACK out per message, in order. A read timeout ends an
//! idle connection; an oversized frame ends it (there is no whole message to answer); bytes
//! outside frames are skipped and counted; a frame cut off by the end is never processed.
//! Nothing of a message's content is logged.
use crate::ingest::{Interface, handle};
use crate::mllp::{Event, Framer, frame};
use phivault_vault::Vault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest frame accepted.
    pub max_frame: usize,
    /// How long a connection may stay silent (also bounds a slow half-sent frame).
    pub read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 1024 * 1024,
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// What a connection did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub messages: u64,
    pub junk_bytes: u64,
    pub oversized: bool,
    pub timed_out: bool,
    pub partial_at_end: bool,
}

static ACKS: AtomicU64 = AtomicU64::new(1);

/// A fresh ACK control id.
fn ack_id() -> String {
    format!(
        "PV{}-{}",
        std::process::id(),
        ACKS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Serves one connection until it ends. `now` gives the HL7 timestamp for ACKs.
pub async fn serve<S>(
    mut stream: S,
    vault: &Vault,
    iface: &Interface,
    source: Option<String>,
    limits: Limits,
    now: &(dyn Fn() -> String + Sync),
) -> Summary
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framer = Framer::new(limits.max_frame);
    let mut summary = Summary::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(limits.read_timeout, stream.read(&mut buf)).await {
            Err(_) => {
                summary.timed_out = true;
                break;
            }
            Ok(Err(_)) | Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
        };
        for event in framer.push(buf.get(..n).unwrap_or_default()) {
            match event {
                Event::Junk(k) => {
                    summary.junk_bytes += k as u64;
                    tracing::warn!(bytes = k, "MLLP: bytes outside any frame skipped");
                }
                Event::TooLarge => {
                    summary.oversized = true;
                    tracing::warn!(
                        max = limits.max_frame,
                        "MLLP: frame over the size limit; connection closed"
                    );
                    let _ = stream.shutdown().await;
                    return summary;
                }
                Event::Frame(message) => {
                    let (ack, outcome) =
                        handle(vault, iface, source.clone(), &message, &ack_id(), &now()).await;
                    summary.messages += 1;
                    tracing::info!(
                        ack = outcome.code.as_str(),
                        duplicate = outcome.duplicate,
                        "HL7 message"
                    );
                    if stream.write_all(&frame(ack.as_bytes())).await.is_err()
                        || stream.flush().await.is_err()
                    {
                        return summary;
                    }
                }
            }
        }
    }
    summary.partial_at_end = framer.partial();
    if summary.partial_at_end {
        tracing::warn!(
            "MLLP: connection ended inside a frame; the partial message was not processed"
        );
    }
    let _ = stream.shutdown().await;
    summary
}
