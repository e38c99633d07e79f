//! Verifying the audit chain: finds any edit, deletion, reordering, or (against a checkpoint
//! kept elsewhere) truncation, and names the first bad sequence number.
use super::{AuditEvent, chain_input};
use crate::Vault;
use crate::error::VaultError;
use std::fmt;

/// What is wrong at the first bad event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The event's bytes or MAC do not match the chain.
    Edited,
    /// Sequence numbers jump: events were deleted.
    Missing,
    /// An event sits at a position other than its own.
    Reordered,
    /// The log ends before the checkpoint's sequence number.
    Truncated,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::Edited => "edited",
            Problem::Missing => "missing",
            Problem::Reordered => "reordered",
            Problem::Truncated => "truncated",
        })
    }
}

/// A checkpoint: the sequence number and MAC of an event, kept outside the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub mac: Vec<u8>,
}

impl Checkpoint {
    /// `SEQ:MAC` with the MAC in hex.
    pub fn parse(s: &str) -> Result<Self, VaultError> {
        let bad =
            || VaultError::Invalid("a checkpoint is SEQ:MAC (decimal, then 64 hex digits)".into());
        let (seq, mac) = s.trim().split_once(':').ok_or_else(bad)?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        if mac.len() != 64 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mac = (0..32)
            .map(|i| u8::from_str_radix(mac.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        Ok(Self { seq, mac })
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.seq)?;
        for b in &self.mac {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Events that verified before the first problem (all of them when intact).
    pub count: u64,
    /// The last verified event, as a checkpoint.
    pub head: Option<Checkpoint>,
    /// The first bad sequence number and what is wrong there.
    pub problem: Option<(u64, Problem)>,
}

impl Vault {
    /// Walks the whole chain from the first event.
    pub async fn verify_audit(
        &self,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<Verification, VaultError> {
        let mut expected = 1u64;
        let mut prev: Vec<u8> = Vec::new();
        let mut head = None;
        let mut seen_checkpoint = false;
        loop {
            let page = self.audit.read(expected - 1, 1000).await?;
            if page.is_empty() {
                break;
            }
            for rec in page {
                let problem = if rec.seq != expected {
                    Some((expected, Problem::Missing))
                } else {
                    match serde_json::from_str::<AuditEvent>(&rec.event) {
                        Err(_) => Some((rec.seq, Problem::Edited)),
                        Ok(ev) if ev.seq != rec.seq => Some((rec.seq, Problem::Reordered)),
                        Ok(_) => {
                            let input = chain_input(&prev, rec.seq, &rec.event);
                            if self.keyring.audit_mac_verify(&input, &rec.mac) {
                                None
                            } else {
                                Some((rec.seq, Problem::Edited))
                            }
                        }
                    }
                };
                if let Some(p) = problem {
                    return Ok(Verification {
                        count: expected - 1,
                        head,
                        problem: Some(p),
                    });
                }
                if let Some(c) = checkpoint
                    && c.seq == rec.seq
                {
                    if !phivault_crypto::aead::ct_eq(&c.mac, &rec.mac) {
                        return Ok(Verification {
                            count: expected - 1,
                            head,
                            problem: Some((rec.seq, Problem::Edited)),
                        });
                    }
                    seen_checkpoint = true;
                }
                prev = rec.mac.clone();
                head = Some(Checkpoint {
                    seq: rec.seq,
                    mac: rec.mac,
                });
                expected += 1;
            }
        }
        let count = expected - 1;
        let problem = match checkpoint {
            Some(c) if !seen_checkpoint && c.seq > count => Some((count + 1, Problem::Truncated)),
            Some(c) if !seen_checkpoint && c.seq == 0 => None,
            _ => None,
        };
        Ok(Verification {
            count,
            head,
            problem,
        })
    }

    /// The current head of a verified chain, to keep elsewhere. Fails if the chain is broken.
    /// The checkpoint and the time it was taken are also recorded in the control store's
    /// settings, so the compliance report can verify against it and measure its age.
    pub async fn audit_checkpoint(&self) -> Result<Option<Checkpoint>, VaultError> {
        use crate::compliance::{AUDIT_CHECKPOINT, AUDIT_CHECKPOINT_AT};
        let v = self.verify_audit(None).await?;
        match v.problem {
            None => {
                let text = v.head.as_ref().map_or_else(
                    || {
                        Checkpoint {
                            seq: 0,
                            mac: vec![0; 32],
                        }
                        .to_string()
                    },
                    ToString::to_string,
                );
                self.control.put_setting(AUDIT_CHECKPOINT, &text).await?;
                let now = self.clock.now_millis().to_string();
                self.control.put_setting(AUDIT_CHECKPOINT_AT, &now).await?;
                Ok(v.head)
            }
            Some((seq, p)) => Err(VaultError::Invalid(format!(
                "the audit chain is broken at event {seq} ({p}); no checkpoint"
            ))),
        }
    }
}
