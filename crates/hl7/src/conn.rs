//! One MLLP connection: frames in, one ACK out per message, in order. A read timeout ends an
//! idle connection; a frame deadline ends one whose frame (or bytes between frames) does not
//! complete in time, however the bytes trickle in; an oversized frame ends it (there is no
//! whole message to answer); bytes outside frames are skipped and counted; a frame cut off by
//! the end is never processed. Nothing of a message's content is logged.
use crate::ingest::{Interface, handle};
use crate::mllp::{Event, Framer, frame};
use crate::parse::ParseLimits;
use phivault_vault::Vault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest frame accepted.
    pub max_frame: usize,
    /// How long a connection may stay silent.
    pub read_timeout: Duration,
    /// How long a frame may take from its first byte to its last (bytes between frames
    /// count as the start of the next one): a slow sender cannot hold a connection open by
    /// dribbling bytes.
    pub frame_timeout: Duration,
    /// What one message may make the parser build.
    pub parse: ParseLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 1024 * 1024,
            read_timeout: Duration::from_secs(60),
            frame_timeout: Duration::from_secs(30),
            parse: ParseLimits::default(),
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
    /// A frame was not complete by its deadline.
    pub frame_late: bool,
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

/// What one read brought.
enum Read {
    Bytes(usize),
    /// End of stream or an error.
    Closed,
    Idle,
    Late,
}

/// Reads once, until the idle timeout or the pending frame's deadline, whichever is first.
async fn read_until<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    limits: &Limits,
    deadline: Option<Instant>,
) -> Read {
    let idle = Instant::now() + limits.read_timeout;
    let until = deadline.map_or(idle, |d| d.min(idle));
    match tokio::time::timeout_at(until, stream.read(buf)).await {
        Err(_) if deadline.is_some_and(|d| d <= idle) => Read::Late,
        Err(_) => Read::Idle,
        Ok(Err(_)) | Ok(Ok(0)) => Read::Closed,
        Ok(Ok(n)) => Read::Bytes(n),
    }
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
    // When the bytes received since the last whole frame must have made one.
    let mut deadline: Option<Instant> = None;
    loop {
        let n = match read_until(&mut stream, &mut buf, &limits, deadline).await {
            Read::Bytes(n) => n,
            Read::Closed => break,
            Read::Idle => {
                summary.timed_out = true;
                break;
            }
            Read::Late => {
                summary.frame_late = true;
                tracing::warn!(
                    seconds = limits.frame_timeout.as_secs(),
                    "MLLP: frame not complete by the frame deadline; connection closed"
                );
                break;
            }
        };
        let (mut framed_one, mut loose) = (false, false);
        for event in framer.push(buf.get(..n).unwrap_or_default()) {
            match event {
                Event::Junk(k) => {
                    summary.junk_bytes += k as u64;
                    loose = true;
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
                    (framed_one, loose) = (true, false);
                    summary.messages += 1;
                    if !answer(&mut stream, vault, iface, &source, &message, &limits, now).await {
                        return summary;
                    }
                }
            }
        }
        if framed_one {
            deadline = None;
        }
        let pending = framer.partial() || loose;
        deadline = match (pending, deadline) {
            (false, _) => None,
            (true, Some(d)) => Some(d),
            (true, None) => Some(Instant::now() + limits.frame_timeout),
        };
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

/// Handles one message and sends its ACK; false when the ACK could not be sent.
async fn answer<S: AsyncWrite + Unpin>(
    stream: &mut S,
    vault: &Vault,
    iface: &Interface,
    source: &Option<String>,
    message: &[u8],
    limits: &Limits,
    now: &(dyn Fn() -> String + Sync),
) -> bool {
    let (ack, outcome) = handle(
        vault,
        iface,
        source.clone(),
        message,
        &limits.parse,
        &ack_id(),
        &now(),
    )
    .await;
    tracing::info!(
        ack = outcome.code.as_str(),
        duplicate = outcome.duplicate,
        "HL7 message"
    );
    stream.write_all(&frame(ack.as_bytes())).await.is_ok() && stream.flush().await.is_ok()
}
