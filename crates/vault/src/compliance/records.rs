//! Encryption at rest (§164.312(a)(2)(iv)) and integrity (§164.312(c)(1), (c)(2)), measured
//! in one pass over a sample of stored record versions: each is opened through the keyring
//! (its AEAD tags and associated data verify), inspected for readable text, and searched for
//! its own plaintext's strings; and each store's schema is read from the database catalogue
//! and compared with the reviewed list of sealed, keyed and metadata columns.
use super::{Check, CompliancePolicy, Status, some_of};
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{ColumnInfo, OrgId, RecordKey, SealedRecord, StoreKind, Version};
use serde_json::Value;
use std::fmt::Write as _;

/// What a column of a record store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    /// AEAD ciphertext (must be a binary column).
    Sealed,
    /// A keyed HMAC: pseudonymous row id, patient pseudonym, blind-index digest.
    Keyed,
    /// Organization, resource type, versions, flags, times, migration bookkeeping.
    Metadata,
}

/// The reviewed schema of the identity and clinical stores: every other column is reported.
const REVIEWED: &[(&str, &str, Holds)] = &[
    ("record_versions", "seq", Holds::Metadata),
    ("record_versions", "org", Holds::Metadata),
    ("record_versions", "rtype", Holds::Metadata),
    ("record_versions", "id", Holds::Keyed),
    ("record_versions", "version", Holds::Metadata),
    ("record_versions", "deleted", Holds::Metadata),
    ("record_versions", "link", Holds::Keyed),
    ("record_versions", "kek_version", Holds::Metadata),
    ("record_versions", "wrapped_dek", Holds::Sealed),
    ("record_versions", "ciphertext", Holds::Sealed),
    ("record_versions", "updated_at", Holds::Metadata),
    ("blind_index", "org", Holds::Metadata),
    ("blind_index", "kind", Holds::Metadata),
    ("blind_index", "digest", Holds::Keyed),
    ("blind_index", "rec", Holds::Metadata),
    ("schema_migrations", "version", Holds::Metadata),
    ("schema_migrations", "name", Holds::Metadata),
];

/// Strings shorter than this are not searched for in ciphertext (random bytes match short
/// strings by chance).
const MIN_NEEDLE: usize = 8;
/// Versions per store whose ciphertext is searched for their own plaintext's strings.
const STRING_SEARCHES: usize = 200;
/// Problems named in the evidence, at most.
const NAMED: usize = 10;

const AT_REST: &str = "§164.312(a)(2)(iv) encryption and decryption";
const INTEGRITY: &str = "§164.312(c)(1) integrity; (c)(2) mechanism to authenticate ePHI";

/// One store's tally.
#[derive(Debug, Default)]
struct Tally {
    sampled: u64,
    opened: u64,
    searched: u64,
    /// Pseudonymous names (`store rtype/row-id vN`) of versions whose tags did not verify.
    not_opened: Vec<String>,
    /// … whose ciphertext is readable text.
    readable: Vec<String>,
    /// … whose ciphertext or wrapped key holds one of its own plaintext's strings.
    leaking: Vec<String>,
    columns: usize,
    /// Columns not in the reviewed schema, or sealed columns of a text type.
    schema: Vec<String>,
}

fn label(kind: StoreKind, rec: &SealedRecord) -> String {
    format!(
        "{} {}/{} v{}",
        kind.as_str(),
        rec.rtype.as_str(),
        rec.id.as_str(),
        rec.version.0
    )
}

/// Ciphertext that is valid UTF-8 is text, not AEAD output (random bytes of this length are
/// valid UTF-8 with negligible probability).
fn readable_text(bytes: &[u8]) -> bool {
    bytes.len() >= 16 && std::str::from_utf8(bytes).is_ok()
}

fn strings_of(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() >= MIN_NEEDLE => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings_of(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings_of(x, out)),
        _ => {}
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn review_schema(columns: &[ColumnInfo], tally: &mut Tally) {
    tally.columns = columns.len();
    for c in columns {
        let holds = REVIEWED
            .iter()
            .find(|(t, n, _)| *t == c.table && *n == c.column)
            .map(|r| r.2);
        match holds {
            None => tally.schema.push(format!(
                "{}.{} ({}) is not a reviewed sealed, keyed or metadata column",
                c.table, c.column, c.sql_type
            )),
            Some(Holds::Sealed) if !matches!(c.sql_type.as_str(), "blob" | "bytea") => {
                tally.schema.push(format!(
                    "{}.{} should hold sealed bytes but is of type {}",
                    c.table, c.column, c.sql_type
                ));
            }
            Some(_) => {}
        }
    }
}

impl Vault {
    /// Opens and inspects one stored version.
    fn inspect(&self, ctx: &Ctx, kind: StoreKind, rec: &SealedRecord, tally: &mut Tally) {
        tally.sampled += 1;
        if readable_text(&rec.ciphertext) || readable_text(&rec.wrapped_dek) {
            tally.readable.push(label(kind, rec));
        }
        if rec.rtype.is_internal() {
            // Internal rows (the HL7 error queue) hold no FHIR resource: they must open.
            match self.open_row(ctx, rec) {
                Ok(_) => tally.opened += 1,
                Err(_) => tally.not_opened.push(label(kind, rec)),
            }
            return;
        }
        match self.unseal(ctx, rec) {
            Ok(stored) => {
                tally.opened += 1;
                if (tally.searched as usize) < STRING_SEARCHES {
                    tally.searched += 1;
                    let mut strings = Vec::new();
                    strings_of(&stored.resource, &mut strings);
                    let leaks = strings.iter().any(|s| {
                        contains(&rec.ciphertext, s.as_bytes())
                            || contains(&rec.wrapped_dek, s.as_bytes())
                    });
                    if leaks {
                        tally.leaking.push(label(kind, rec));
                    }
                }
            }
            Err(_) => tally.not_opened.push(label(kind, rec)),
        }
    }

    /// Samples up to `policy.sample_size` record versions of one store (heads first, then
    /// their earlier versions), across the organizations in scope.
    async fn sample_store(
        &self,
        ctx: &Ctx,
        kind: StoreKind,
        orgs: &[OrgId],
        cap: u64,
        tally: &mut Tally,
    ) -> Result<(), VaultError> {
        let store = self.store(kind);
        review_schema(&store.columns().await?, tally);
        for org in orgs {
            let octx = Ctx {
                org: org.clone(),
                ..ctx.clone()
            };
            let mut after: Option<RecordKey> = None;
            while tally.sampled < cap {
                let limit = u32::try_from((cap - tally.sampled).min(500)).unwrap_or(500);
                let page = store.page(org, after.as_ref(), limit).await?;
                let Some(last) = page.last() else { break };
                after = Some(RecordKey {
                    rtype: last.rtype,
                    id: last.id.clone(),
                });
                self.know_keks(&page).await?;
                for rec in &page {
                    self.inspect(&octx, kind, rec, tally);
                }
                for head in &page {
                    let key = RecordKey {
                        rtype: head.rtype,
                        id: head.id.clone(),
                    };
                    for v in 1..head.version.0 {
                        if tally.sampled >= cap {
                            break;
                        }
                        match store.version(org, &key, Version(v)).await? {
                            Some(rec) if !rec.deleted => {
                                self.know_keks([&rec]).await?;
                                self.inspect(&octx, kind, &rec, tally);
                            }
                            Some(_) | None => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The encryption-at-rest and integrity checks.
    pub(super) async fn check_records(
        &self,
        ctx: &Ctx,
        orgs: &[OrgId],
        policy: &CompliancePolicy,
    ) -> Result<(Check, Check), VaultError> {
        let cap = u64::from(policy.sample_size);
        let mut tallies = Vec::new();
        for kind in [StoreKind::Identity, StoreKind::Clinical] {
            let mut t = Tally::default();
            self.sample_store(ctx, kind, orgs, cap, &mut t).await?;
            tallies.push((kind, t));
        }
        Ok((at_rest(&tallies), integrity(&tallies)))
    }
}

fn at_rest(tallies: &[(StoreKind, Tally)]) -> Check {
    let mut evidence = String::new();
    let mut status = Status::Pass;
    let mut problems = Vec::new();
    let mut sampled = 0;
    for (kind, t) in tallies {
        sampled += t.sampled;
        let _ = write!(
            evidence,
            "{}: {} versions sampled, {} opened only through the keyring, {} readable as text, \
             {} of {} searched holding their own plaintext's strings; schema: {} columns, {} \
             not sealed, keyed or metadata. ",
            kind.as_str(),
            t.sampled,
            t.opened,
            t.readable.len(),
            t.leaking.len(),
            t.searched,
            t.columns,
            t.schema.len()
        );
        if !t.readable.is_empty() || !t.leaking.is_empty() || !t.schema.is_empty() {
            status = Status::Fail;
        }
        problems.extend(t.readable.iter().map(|l| format!("{l}: readable text")));
        problems.extend(t.leaking.iter().map(|l| format!("{l}: holds plaintext")));
        problems.extend(t.schema.iter().map(|c| format!("{} {c}", kind.as_str())));
        if !t.not_opened.is_empty() && status == Status::Pass {
            status = Status::Warn;
        }
    }
    let not_opened: usize = tallies.iter().map(|(_, t)| t.not_opened.len()).sum();
    if not_opened > 0 {
        let _ = write!(
            evidence,
            "{not_opened} versions did not open (see integrity). "
        );
    }
    if sampled == 0 && status == Status::Pass {
        status = Status::Warn;
        evidence.push_str("No records stored: nothing to sample. ");
    }
    if !problems.is_empty() {
        let _ = write!(evidence, "Problems: {}.", some_of(&problems, NAMED));
    }
    Check {
        id: "encryption-at-rest",
        safeguard: AT_REST,
        status,
        evidence: evidence.trim_end().to_owned(),
    }
}

fn integrity(tallies: &[(StoreKind, Tally)]) -> Check {
    let sampled: u64 = tallies.iter().map(|(_, t)| t.sampled).sum();
    let opened: u64 = tallies.iter().map(|(_, t)| t.opened).sum();
    let failed: Vec<String> = tallies
        .iter()
        .flat_map(|(_, t)| t.not_opened.iter().cloned())
        .collect();
    let per_store: Vec<String> = tallies
        .iter()
        .map(|(k, t)| format!("{} {}/{}", k.as_str(), t.opened, t.sampled))
        .collect();
    let mut evidence = format!(
        "{opened} of {sampled} sampled record versions verified their authentication tags and \
         row binding ({}).",
        per_store.join(", ")
    );
    let status = if !failed.is_empty() {
        let _ = write!(evidence, " Failed: {}.", some_of(&failed, NAMED));
        Status::Fail
    } else if sampled == 0 {
        evidence.push_str(" No records stored: nothing to verify.");
        Status::Warn
    } else {
        Status::Pass
    };
    Check {
        id: "integrity",
        safeguard: INTEGRITY,
        status,
        evidence,
    }
}
