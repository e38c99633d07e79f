//! MLLP framing: `0x0B` message `0x1C 0x0D`. The framer takes bytes as they arrive and hands
//! out whole frames only: bytes between frames are skipped and reported, a frame larger than
//! the cap is an error (the caller closes the connection), and a frame cut off by the end of
//! the stream is never handed out.

pub const START: u8 = 0x0B;
pub const END: [u8; 2] = [0x1C, 0x0D];

/// What the framer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message (without the framing bytes).
    Frame(Vec<u8>),
    /// This many bytes outside any frame were skipped (garbage, or a frame restarted).
    Junk(usize),
    /// A frame grew past the cap: stop reading this connection.
    TooLarge,
}

#[derive(Debug)]
pub struct Framer {
    max: usize,
    buf: Vec<u8>,
    in_frame: bool,
    failed: bool,
}

impl Framer {
    /// A framer that accepts frames of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            buf: Vec::new(),
            in_frame: false,
            failed: false,
        }
    }

    /// Whether a frame has started and not ended (at end of stream it is dropped unprocessed).
    pub fn partial(&self) -> bool {
        self.in_frame
    }

    /// Feeds bytes; returns what they completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        if self.failed {
            return out;
        }
        let mut junk = 0usize;
        let mut rest = data;
        while !rest.is_empty() {
            if !self.in_frame {
                match rest.iter().position(|b| *b == START) {
                    Some(i) => {
                        junk += i;
                        self.in_frame = true;
                        self.buf.clear();
                        rest = rest.get(i + 1..).unwrap_or_default();
                    }
                    None => {
                        junk += rest.len();
                        break;
                    }
                }
                continue;
            }
            // Inside a frame: up to the next end marker or a new start byte.
            let stop = rest.iter().position(|b| *b == END[1] || *b == START);
            let take = stop.unwrap_or(rest.len());
            self.buf
                .extend_from_slice(rest.get(..take).unwrap_or_default());
            if self.buf.len() > self.max + 1 {
                self.failed = true;
                self.buf = Vec::new();
                if junk > 0 {
                    out.push(Event::Junk(junk));
                }
                out.push(Event::TooLarge);
                return out;
            }
            let Some(i) = stop else { break };
            let b = rest.get(i).copied().unwrap_or(0);
            rest = rest.get(i + 1..).unwrap_or_default();
            if b == START {
                // A new frame before this one ended: the half frame is junk, never processed.
                junk += self.buf.len() + 1;
                self.buf.clear();
                continue;
            }
            // A CR: the end only when it follows 0x1C; otherwise a segment separator.
            if self.buf.last() == Some(&END[0]) {
                self.buf.pop();
                if junk > 0 {
                    out.push(Event::Junk(std::mem::take(&mut junk)));
                }
                out.push(Event::Frame(std::mem::take(&mut self.buf)));
                self.in_frame = false;
            } else {
                self.buf.push(b);
            }
        }
        if junk > 0 {
            out.push(Event::Junk(junk));
        }
        out
    }
}

/// Wraps a message in MLLP framing.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(message.len() + 3);
    v.push(START);
    v.extend_from_slice(message);
    v.extend_from_slice(&END);
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let stream = [frame(b"MSH|a\rPID|1\r"), frame(b"MSH|b")].concat();
        for cut in 0..stream.len() {
            let mut f = Framer::new(1024);
            let (a, b) = stream.split_at(cut);
            let mut ev = f.push(a);
            ev.extend(f.push(b));
            assert_eq!(
                ev,
                vec![
                    Event::Frame(b"MSH|a\rPID|1\r".to_vec()),
                    Event::Frame(b"MSH|b".to_vec())
                ],
                "cut at {cut}"
            );
            assert!(!f.partial());
        }
    }

    #[test]
    fn junk_is_skipped_and_reported_and_half_frames_dropped() {
        let mut f = Framer::new(1024);
        let mut input = b"garbage".to_vec();
        input.extend(frame(b"MSH|1"));
        input.extend(b"\x0bMSH|half");
        input.extend(frame(b"MSH|2"));
        input.extend(b"\x0bMSH|cut off by the end");
        let ev = f.push(&input);
        assert_eq!(
            ev,
            vec![
                Event::Junk(7),
                Event::Frame(b"MSH|1".to_vec()),
                Event::Junk(9),
                Event::Frame(b"MSH|2".to_vec()),
            ]
        );
        assert!(f.partial(), "the cut-off frame is held, never handed out");
    }

    #[test]
    fn oversized_frames_stop_the_framer() {
        let mut f = Framer::new(10);
        assert_eq!(
            f.push(&frame(b"0123456789")),
            vec![Event::Frame(b"0123456789".to_vec())]
        );
        assert_eq!(f.push(&frame(b"0123456789AB")), vec![Event::TooLarge]);
        assert!(
            f.push(&frame(b"x")).is_empty(),
            "nothing after an oversized frame"
        );
    }
}
