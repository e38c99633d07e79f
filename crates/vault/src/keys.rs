//! Key management: KEK rotation (a new version, then every data key rewrapped online, in
//! batches, by compare-and-set, resumable), the keyring's status, retiring an old KEK version,
//! and the audit of a root-passphrase change.
//!
//! Resumption needs no marker of its own: a rotation is unfinished exactly when some row is
//! still labelled with a KEK version below the newest one, so `begin_kek_rotation` resumes
//! towards the newest version instead of adding another. A crash at any step (after the new
//! entry was stored, midway through the rewrap) leaves a state the next run reads the same way.
use crate::audit::AuditEvent;
use crate::error::VaultError;
use crate::policy::Subject;
use crate::records::store_kind;
use crate::{Ctx, Vault};
use phivault_core::{KekUsage, RecordStore, Rewrap, Role, SealedRecord, StoreKind, WrappedDek};
use phivault_crypto::{CryptoError, KekKind, Keyring, RecordAad};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

mod link;
mod retire;

/// How long a process seals new writes under the KEK versions it loaded before it looks for a
/// rotation made elsewhere.
pub const KEYRING_MAX_AGE: Duration = Duration::from_secs(10);

/// How long after the newest KEK version was made `keys retire` refuses to remove an older
/// one by default: three times [`KEYRING_MAX_AGE`], so that every process has moved its new
/// writes off the old version and finished the ones it had sealed.
pub const RETIRE_GRACE: Duration = Duration::from_secs(30);

/// Whether a keyring entry is a KEK (of either kind).
fn is_kek(e: &phivault_core::KeyringEntry) -> bool {
    KekKind::of_purpose(&e.purpose).is_some()
}
/// Full passes over a store before a rotation reports rows it could not finish (rows a stale
/// node kept writing under the old KEK while the pass ran).
const MAX_PASSES: u32 = 3;
const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// One KEK version in [`KeyStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KekStatus {
    pub version: u32,
    /// When it was made (milliseconds since the Unix epoch).
    pub created_at: i64,
    /// Whole days since then.
    pub age_days: i64,
    /// New writes are wrapped by it.
    pub current: bool,
    /// Its data keys bind the record's patient link (`false`: a legacy KEK, to be retired once
    /// it wraps nothing — see `bind_patient_links`).
    pub binds_link: bool,
    /// Data keys it still wraps, per store.
    pub identity_deks: u64,
    pub clinical_deks: u64,
    /// Every row labelled with it (data keys plus tombstones): it can be retired at zero.
    pub rows: u64,
}

/// What `keys status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    pub current: u32,
    pub versions: Vec<KekStatus>,
    /// Rows still labelled with an older version: `keys rotate` finishes the rotation.
    pub unfinished: bool,
    /// The compliance policy's maximum age of the current KEK (`kek_max_age_days`).
    pub max_age_days: u32,
    /// The current KEK is older than that.
    pub overdue: bool,
}

/// What a rotation works towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RotationPlan {
    /// The KEK version every data key is rewrapped to.
    pub target: u32,
    /// `true`: this call added `target`; `false`: it resumes an unfinished rotation.
    pub added: bool,
    /// Rows to rewrap when it started (both stores).
    pub total: u64,
}

/// Progress of a rewrap, after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationProgress {
    pub store: StoreKind,
    /// Rows handled so far (rewrapped, or found changed by someone else), both stores.
    pub done: u64,
    pub total: u64,
}

/// How a rewrap runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotateOptions {
    /// Rows per transaction.
    pub batch: u32,
    /// A pause between batches, to leave I/O to a busy server.
    pub pause: Duration,
    /// Stop after this many batches (tests of resumption; `None` runs to the end).
    pub max_batches: Option<u64>,
}

impl Default for RotateOptions {
    fn default() -> Self {
        Self {
            batch: 256,
            pause: Duration::ZERO,
            max_batches: None,
        }
    }
}

/// What a rewrap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RotationReport {
    pub target: u32,
    /// Data keys (and tombstone labels) moved to `target`.
    pub rewrapped: u64,
    /// Rows that changed under the rewrap (erased, or moved by another rotation): left as
    /// they were, by the compare-and-set.
    pub skipped: u64,
    /// Rows whose data key did not open (damaged): left as they were.
    pub failed: u64,
    /// Rows still labelled with an older version at the end.
    pub remaining: u64,
    /// No row is left on an older version.
    pub finished: bool,
}

/// Per-run counters.
#[derive(Debug, Default)]
struct Run {
    report: RotationReport,
    total: u64,
    batches: u64,
    stopped: bool,
}

fn rows_below(usage: &[KekUsage], target: u32) -> u64 {
    usage
        .iter()
        .filter(|u| u.kek_version < target)
        .map(|u| u.rows)
        .sum()
}

impl Vault {
    /// The same vault with the root-key provider, so it can load KEK versions added after it
    /// started (by a rotation here or on another node) and add new ones.
    pub fn with_root_key(
        mut self,
        root: std::sync::Arc<dyn phivault_crypto::RootKeyProvider>,
    ) -> Self {
        self.root = Some(root);
        self
    }

    /// Reloads the KEK versions from the control store: adds versions another node made,
    /// drops retired ones. Returns the current version. Without a root-key provider (a vault
    /// built for a test), the keyring stays as it is.
    pub async fn reload_keyring(&self) -> Result<u32, VaultError> {
        let Some(root) = &self.root else {
            return Ok(self.keyring.current_kek_version());
        };
        let started = std::time::Instant::now();
        let entries = self.control.keyring().await?;
        let current = self.keyring.refresh_keks(root.as_ref(), &entries)?;
        *self
            .keyring_loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = started;
        Ok(current)
    }

    /// Before sealing: reloads the KEK versions when they were loaded more than
    /// [`KEYRING_MAX_AGE`] ago, so that every process — a long CLI import beside the server
    /// too — moves its new writes to a version another process's rotation made within that
    /// time (`keys retire` waits longer than that after a rotation).
    pub(crate) async fn fresh_keyring(&self) -> Result<(), VaultError> {
        let loaded = *self
            .keyring_loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if loaded.elapsed() > KEYRING_MAX_AGE {
            self.reload_keyring().await?;
        }
        Ok(())
    }

    /// Makes sure the keyring knows the KEK version of every record about to be opened: a
    /// version it does not hold was made by a rotation elsewhere, so reload once.
    pub(crate) async fn know_keks<'a>(
        &self,
        recs: impl IntoIterator<Item = &'a SealedRecord>,
    ) -> Result<(), VaultError> {
        let unknown = recs
            .into_iter()
            .any(|r| !r.deleted && !self.keyring.has_kek(r.kek_version));
        if unknown {
            self.reload_keyring().await?;
        }
        Ok(())
    }

    /// Key administration: the operator and SUPER_ADMIN; a denial is audited.
    pub(super) async fn require_key_admin(
        &self,
        ctx: &Ctx,
        event: &AuditEvent,
    ) -> Result<(), VaultError> {
        match ctx.subject {
            Subject::Operator | Subject::User(Role::SuperAdmin) => Ok(()),
            Subject::User(_) | Subject::Client { .. } | Subject::Nobody => {
                self.deny(event, "role").await
            }
        }
    }

    pub(super) async fn usage(&self) -> Result<[(StoreKind, Vec<KekUsage>); 2], VaultError> {
        Ok([
            (StoreKind::Identity, self.identity.kek_versions().await?),
            (StoreKind::Clinical, self.clinical.kek_versions().await?),
        ])
    }

    /// The KEK versions with their age and the data keys each still wraps, per store.
    /// Permissions: the operator and SUPER_ADMIN.
    pub async fn key_status(&self, ctx: &Ctx) -> Result<KeyStatus, VaultError> {
        let event = self.event(ctx, "keys-status");
        self.require_key_admin(ctx, &event).await?;
        let now = self.clock.now_millis();
        let entries = self.control.keyring().await?;
        let usage = self.usage().await?;
        let max_age_days = self.compliance_policy().await?.kek_max_age_days;
        let mut versions: BTreeMap<u32, KekStatus> = entries
            .iter()
            .filter(|e| is_kek(e))
            .map(|e| {
                let status = KekStatus {
                    version: e.version,
                    created_at: e.created_at,
                    age_days: (now - e.created_at).max(0) / DAY_MILLIS,
                    current: false,
                    binds_link: KekKind::of_purpose(&e.purpose) == Some(KekKind::Linked),
                    identity_deks: 0,
                    clinical_deks: 0,
                    rows: 0,
                };
                (e.version, status)
            })
            .collect();
        let current = versions.keys().next_back().copied().unwrap_or(0);
        for (kind, list) in &usage {
            for u in list {
                // Rows naming a version the keyring lacks show up too: they cannot be opened.
                let v = versions.entry(u.kek_version).or_insert(KekStatus {
                    version: u.kek_version,
                    created_at: 0,
                    age_days: 0,
                    current: false,
                    binds_link: false,
                    identity_deks: 0,
                    clinical_deks: 0,
                    rows: 0,
                });
                match kind {
                    StoreKind::Identity => v.identity_deks += u.deks,
                    StoreKind::Clinical => v.clinical_deks += u.deks,
                }
                v.rows += u.rows;
            }
        }
        let unfinished = usage.iter().any(|(_, u)| rows_below(u, current) > 0);
        let mut overdue = false;
        for v in versions.values_mut() {
            v.current = v.version == current;
            if v.current {
                overdue = crate::compliance::older_than(now - v.created_at, max_age_days);
            }
        }
        Ok(KeyStatus {
            current,
            versions: versions.into_values().collect(),
            unfinished,
            max_age_days,
            overdue,
        })
    }

    /// Starts a KEK rotation: adds KEK version N+1 (random, wrapped by the root key), which
    /// becomes current for new writes here at once and on other nodes when they next reload —
    /// or, when rows are still labelled with an older version, resumes that unfinished
    /// rotation without adding another version. Then call [`Vault::rewrap_deks`].
    /// Permissions: the operator and SUPER_ADMIN. Audited (`keys-rotate`, or
    /// `keys-rotate-resume`, with the target version and the rows to rewrap).
    pub async fn begin_kek_rotation(&self, ctx: &Ctx) -> Result<RotationPlan, VaultError> {
        let event = self.event(ctx, "keys-rotate");
        self.require_key_admin(ctx, &event).await?;
        match self.plan_rotation().await {
            Ok(plan) => {
                let mut event = event;
                if !plan.added {
                    event.action = "keys-rotate-resume".into();
                }
                event.resource_type = Some("KEK".into());
                event.version = Some(u64::from(plan.target));
                event.count = Some(plan.total);
                self.audit(event).await?;
                Ok(plan)
            }
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    async fn plan_rotation(&self) -> Result<RotationPlan, VaultError> {
        let root = self
            .root
            .clone()
            .ok_or(VaultError::Crypto(CryptoError::MissingKey(
                "the root key provider".into(),
            )))?;
        let current = self.reload_keyring().await?;
        let usage = self.usage().await?;
        let below = |usage: &[(StoreKind, Vec<KekUsage>); 2], v| {
            usage.iter().map(|(_, u)| rows_below(u, v)).sum::<u64>()
        };
        let left = below(&usage, current);
        if left > 0 {
            return Ok(RotationPlan {
                target: current,
                added: false,
                total: left,
            });
        }
        let target = current
            .checked_add(1)
            .ok_or_else(|| VaultError::Invalid("no KEK version is left".into()))?;
        let entry = Keyring::new_kek_entry(root.as_ref(), target, self.clock.now_millis())?;
        let added = self.control.add_keyring_entries(&[entry]).await;
        // Another node may have added this very version a moment ago: then resume towards it.
        let now_current = self.reload_keyring().await?;
        if let Err(e) = &added
            && now_current < target
        {
            return Err(e.clone().into());
        }
        let usage = self.usage().await?;
        Ok(RotationPlan {
            target: now_current,
            added: added.is_ok() && now_current == target,
            total: below(&usage, now_current),
        })
    }

    /// Rewraps every data key labelled with a KEK version below `target` to `target`, store by
    /// store, `opts.batch` rows per transaction, each row by compare-and-set (a row that
    /// changed meanwhile is left alone). Reads and writes go on meanwhile. `progress` hears
    /// after every batch. Runs up to three passes (rows a node still on the old KEK wrote
    /// during a pass are caught by the next); what is left is in the report, and running
    /// [`Vault::begin_kek_rotation`] again resumes. Permissions: the operator and SUPER_ADMIN.
    /// Audited (`keys-rewrap`, with the count of rows rewrapped).
    pub async fn rewrap_deks(
        &self,
        ctx: &Ctx,
        target: u32,
        opts: RotateOptions,
        progress: &mut (dyn FnMut(&RotationProgress) + Send),
    ) -> Result<RotationReport, VaultError> {
        let mut event = self.event(ctx, "keys-rewrap");
        event.resource_type = Some("KEK".into());
        event.version = Some(u64::from(target));
        self.require_key_admin(ctx, &event).await?;
        let mut run = Run::default();
        run.report.target = target;
        let result = self.rewrap_all(target, opts, &mut run, progress).await;
        event.count = Some(run.report.rewrapped);
        match result {
            Ok(()) => {
                if !run.report.finished {
                    event.reason = Some(format!("unfinished:{}", run.report.remaining));
                }
                self.audit(event).await?;
                Ok(run.report)
            }
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    /// [`Vault::begin_kek_rotation`] then [`Vault::rewrap_deks`].
    pub async fn rotate_keys(
        &self,
        ctx: &Ctx,
        opts: RotateOptions,
        progress: &mut (dyn FnMut(&RotationProgress) + Send),
    ) -> Result<(RotationPlan, RotationReport), VaultError> {
        let plan = self.begin_kek_rotation(ctx).await?;
        let report = self.rewrap_deks(ctx, plan.target, opts, progress).await?;
        Ok((plan, report))
    }

    async fn rewrap_all(
        &self,
        target: u32,
        opts: RotateOptions,
        run: &mut Run,
        progress: &mut (dyn FnMut(&RotationProgress) + Send),
    ) -> Result<(), VaultError> {
        if !self.keyring.has_kek(target) {
            self.reload_keyring().await?;
        }
        let usage = self.usage().await?;
        run.total = usage.iter().map(|(_, u)| rows_below(u, target)).sum();
        let batch = opts.batch.clamp(1, 10_000);
        let mut remaining = 0;
        for kind in [StoreKind::Identity, StoreKind::Clinical] {
            remaining += self
                .rewrap_store(kind, target, opts, batch, run, progress)
                .await?;
            if run.stopped {
                // Stopped on request: count what is left everywhere.
                let usage = self.usage().await?;
                remaining = usage.iter().map(|(_, u)| rows_below(u, target)).sum();
                break;
            }
        }
        run.report.remaining = remaining;
        run.report.finished = remaining == 0;
        Ok(())
    }

    /// One store's passes. Returns the rows still below `target` in it at the end.
    async fn rewrap_store(
        &self,
        kind: StoreKind,
        target: u32,
        opts: RotateOptions,
        batch: u32,
        run: &mut Run,
        progress: &mut (dyn FnMut(&RotationProgress) + Send),
    ) -> Result<u64, VaultError> {
        let store: &dyn RecordStore = self.store(kind);
        let mut damaged: HashSet<u64> = HashSet::new();
        let mut left = 0;
        for _ in 0..MAX_PASSES {
            let mut after = 0;
            loop {
                if opts.max_batches.is_some_and(|max| run.batches >= max) {
                    run.stopped = true;
                    return Ok(left);
                }
                let rows = store.wrapped_below(target, after, batch).await?;
                let Some(last) = rows.last() else { break };
                after = last.seq;
                if rows.iter().any(|r| !self.keyring.has_kek(r.kek_version)) {
                    self.reload_keyring().await?;
                }
                let items = self.rewrap_batch(&rows, target, &mut damaged, run);
                let applied = store.rewrap(&items).await?;
                let moved = applied.iter().filter(|a| **a).count() as u64;
                run.report.rewrapped += moved;
                run.report.skipped += applied.len() as u64 - moved;
                run.batches += 1;
                progress(&RotationProgress {
                    store: kind,
                    done: run.report.rewrapped + run.report.skipped + run.report.failed,
                    total: run.total,
                });
                if !opts.pause.is_zero() {
                    tokio::time::sleep(opts.pause).await;
                }
            }
            left = rows_below(&store.kek_versions().await?, target);
            if left <= damaged.len() as u64 {
                break;
            }
        }
        Ok(left)
    }

    /// The new wrappings of a batch of rows under KEK `target`. A row whose DEK does not unwrap
    /// is counted as failed and remembered in `damaged`, so later passes skip it.
    fn rewrap_batch(
        &self,
        rows: &[WrappedDek],
        target: u32,
        damaged: &mut HashSet<u64>,
        run: &mut Run,
    ) -> Vec<Rewrap> {
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            if damaged.contains(&r.seq) {
                continue;
            }
            let aad = RecordAad {
                org: &r.org,
                store: store_kind(r.rtype),
                rtype: r.rtype,
                id: &r.id,
                version: r.version,
                link: r.link.as_ref(),
            };
            let new_wrapped = if r.wrapped_dek.is_empty() {
                Vec::new() // a tombstone: only its label moves
            } else {
                match self
                    .keyring
                    .rewrap_dek(&aad, r.kek_version, &r.wrapped_dek, target)
                {
                    Ok(w) => w,
                    Err(_) => {
                        damaged.insert(r.seq);
                        run.report.failed += 1;
                        continue;
                    }
                }
            };
            items.push(Rewrap {
                seq: r.seq,
                old_kek: r.kek_version,
                old_wrapped: r.wrapped_dek.clone(),
                new_kek: target,
                new_wrapped,
            });
        }
        items
    }

    /// Audits a change of the root-key passphrase, running `reseal` (which re-seals the key
    /// file; the keyring is untouched) off the async executor (Argon2). Permissions: the
    /// operator only. Audited (`keys-change-passphrase`); no secret enters the event.
    pub async fn change_root_passphrase(
        &self,
        ctx: &Ctx,
        reseal: impl FnOnce() -> Result<(), CryptoError> + Send + 'static,
    ) -> Result<(), VaultError> {
        let event = self.event(ctx, "keys-change-passphrase");
        self.require_operator(ctx, &event).await?;
        let done = tokio::task::spawn_blocking(reseal)
            .await
            .map_err(|_| VaultError::Crypto(CryptoError::Io("the re-seal task failed".into())));
        match done {
            Ok(Ok(())) => self.audit(event).await,
            Ok(Err(e)) => self.audit_failure(event, e.into()).await,
            Err(e) => self.audit_failure(event, e).await,
        }
    }
}
