//! The request-body limit (`PHIVAULT_MAX_BODY`) and a refusal that reaches the client.
//!
//! A body over the limit gets 413 with an OperationOutcome (under `/fhir`; a JSON error
//! elsewhere), whether its `Content-Length` says so (answered before any of it is read) or it
//! grows past the limit while being read (chunked, say). Closing the connection on a client
//! that is still sending loses the answer: its next write fails ("broken pipe") or the reset
//! discards what it had not read yet, and over HTTP/2 a stream reset before the upload ends is
//! all some clients report. So the rest of a refused body is read and thrown away in the
//! background, at most [`DRAIN_BYTES`] more bytes for at most [`DRAIN_TIME`], while the 413
//! goes out: a client reading while it sends (curl) sees it and stops; one that reads only
//! after sending finishes and then reads it. Over HTTP/1.1 the 413 says `Connection: close`
//! and the connection closes once the drain ends (the whole body read: a clean close). The
//! drain starts only once the 413's head is written, so a client waiting on
//! `Expect: 100-continue` is never invited to send the body.
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;

/// The default limit: 8 MiB.
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;
/// The smallest limit `PHIVAULT_MAX_BODY` may set: 64 KiB.
pub const MIN_MAX_BODY: usize = 64 * 1024;
/// The largest limit `PHIVAULT_MAX_BODY` may set: 256 MiB.
pub const MAX_MAX_BODY: usize = 256 * 1024 * 1024;
/// How much of a refused body is read and thrown away at most, past what was read already.
pub const DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// How long a refused body is read and thrown away at most.
pub const DRAIN_TIME: Duration = Duration::from_secs(30);

/// The largest request body accepted, in bytes (within [`MIN_MAX_BODY`]..=[`MAX_MAX_BODY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(usize);

impl Default for BodyLimit {
    fn default() -> Self {
        Self(DEFAULT_MAX_BODY)
    }
}

impl BodyLimit {
    /// A limit of `bytes`, if within the allowed range.
    pub fn new(bytes: usize) -> Option<Self> {
        (MIN_MAX_BODY..=MAX_MAX_BODY)
            .contains(&bytes)
            .then_some(Self(bytes))
    }

    /// The limit a setting (named `var` in the error) gives: a number of bytes in range.
    pub fn parse(var: &str, text: &str) -> Result<Self, String> {
        text.trim()
            .parse::<usize>()
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| {
                format!(
                    "{var} is a number of bytes from {MIN_MAX_BODY} (64 KiB) to {MAX_MAX_BODY} \
                     (256 MiB); the default is {DEFAULT_MAX_BODY} (8 MiB)"
                )
            })
    }

    pub fn bytes(self) -> usize {
        self.0
    }
}

/// What [`admit`] made of a request.
pub enum Admitted {
    /// Its `Content-Length` is over the limit: the refusal to answer (see [`refusal`]).
    Refused(Response),
    /// The request to serve, and for a body of unknown length where the rest of it arrives
    /// if it grows past the limit (the handler then answers 413; answer [`refusal`] instead).
    Serve(Request, Option<oneshot::Receiver<Body>>),
}

/// Applies the limit to a request: refused at once when its declared length is over it; a
/// body of unknown length is counted as it is read. The length is the one hyper's decoder
/// holds the peer to (a `Content-Length` beside `Transfer-Encoding` is dropped; h2 resets a
/// stream whose DATA exceed its `content-length`), so a declared body cannot grow past it.
pub fn admit(req: Request, limit: BodyLimit) -> Admitted {
    match req.body().size_hint().exact() {
        Some(n) if n > limit.0 as u64 => {
            let fhir = is_fhir(&req);
            let http1 = req.version() < Version::HTTP_2;
            Admitted::Refused(refusal(req.into_body(), limit, fhir, http1))
        }
        Some(_) => Admitted::Serve(req, None),
        None if req.body().is_end_stream() => Admitted::Serve(req, None),
        None => {
            let (spill, rest) = oneshot::channel();
            let req = req.map(|inner| {
                let counted = Counted {
                    inner,
                    left: limit.0,
                    spill: Some(spill),
                };
                Body::new(http_body_util::Limited::new(counted, limit.0))
            });
            Admitted::Serve(req, Some(rest))
        }
    }
}

pub fn is_fhir(req: &Request) -> bool {
    req.uri().path().starts_with("/fhir")
}

/// The 413 for a body over `limit` (an OperationOutcome when `fhir`), the rest of the body
/// (`rest`) drained in the background once its head is written; `Connection: close` on
/// HTTP/1.x.
pub fn refusal(rest: Body, limit: BodyLimit, fhir: bool, http1: bool) -> Response {
    let mut res = too_large(limit, fhir);
    if http1 {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let (go, head_written) = oneshot::channel();
    tokio::spawn(drain(rest, head_written));
    res.map(|inner| {
        Body::new(Gate {
            inner,
            go: Some(go),
        })
    })
}

/// The answer to a body over `limit`.
pub fn too_large(limit: BodyLimit, fhir: bool) -> Response {
    let text = format!("the body is larger than {} bytes", limit.0);
    if fhir {
        crate::fhir::outcome_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            phivault_fhir::IssueCode::TooCostly,
            &text,
        )
    } else {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({ "error": text })),
        )
            .into_response()
    }
}

/// Reads `rest` and drops it, once `head_written` fires (never if the response is dropped
/// unsent), up to [`DRAIN_BYTES`] and [`DRAIN_TIME`]; then drops the body, which ends the
/// request's reading (over HTTP/1.1 hyper closes the connection, over HTTP/2 h2 resets the
/// stream if the client is still sending).
async fn drain(mut rest: Body, head_written: oneshot::Receiver<()>) {
    use http_body_util::BodyExt;
    if head_written.await.is_err() {
        return;
    }
    let read = async {
        let mut left = DRAIN_BYTES;
        while let Some(Ok(frame)) = rest.frame().await {
            let n = frame.data_ref().map_or(0, Bytes::len);
            match left.checked_sub(n) {
                Some(l) if l > 0 => left = l,
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// A request body of unknown length, counted as [`http_body_util::Limited`] counts (which
/// wraps it and answers the frame that crosses the limit with the error the extractors
/// answer 413 to): past the limit, the rest of the body goes to `spill`.
struct Counted {
    inner: Body,
    left: usize,
    spill: Option<oneshot::Sender<Body>>,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let n = match &frame {
            Some(Ok(f)) => f.data_ref().map_or(0, Bytes::len),
            _ => 0,
        };
        match this.left.checked_sub(n) {
            Some(left) => this.left = left,
            None => {
                if let Some(spill) = this.spill.take() {
                    let _ = spill.send(std::mem::replace(&mut this.inner, Body::empty()));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells `go` when it is first asked for data: its head is written.
struct Gate {
    inner: Body,
    go: Option<oneshot::Sender<()>>,
}

impl HttpBody for Gate {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_bytes_in_range() {
        assert_eq!(BodyLimit::default().bytes(), 8 * 1024 * 1024);
        for (text, bytes) in [
            ("65536", 65536),
            (" 3600000 ", 3_600_000),
            ("268435456", MAX_MAX_BODY),
        ] {
            assert_eq!(
                BodyLimit::parse("V", text).unwrap().bytes(),
                bytes,
                "{text}"
            );
        }
        for bad in [
            "",
            "65535",
            "268435457",
            "8MiB",
            "-1",
            "1e6",
            "99999999999999999999999",
        ] {
            let err = BodyLimit::parse("PHIVAULT_MAX_BODY", bad).unwrap_err();
            assert!(err.starts_with("PHIVAULT_MAX_BODY "), "{bad:?}: {err}");
        }
    }

    /// `n` frames of `size` spaces, of unknown length (as a chunked upload).
    struct Chunks(usize, usize);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 == 0 {
                return Poll::Ready(None);
            }
            self.0 -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; self.1])))))
        }
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_is_counted() {
        use tower::ServiceExt;
        let limit = BodyLimit::new(MIN_MAX_BODY).unwrap();
        let app = crate::headers::secure(
            axum::Router::new().route(
                "/fhir/x",
                axum::routing::post(|b: String| async move { b.len().to_string() }),
            ),
            false,
            limit,
        );
        for (frames, status) in [(4, StatusCode::OK), (5, StatusCode::PAYLOAD_TOO_LARGE)] {
            let body = Body::new(Chunks(frames, MIN_MAX_BODY / 4));
            let req = axum::http::Request::post("/fhir/x").body(body).unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), status, "{frames} frames");
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                let bytes = http_body_util::BodyExt::collect(res.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(
                    v["issue"][0]["diagnostics"],
                    "the body is larger than 65536 bytes"
                );
            }
        }
    }
}
