//! The patient link bound into every sealed clinical record (issue 20, finding 10).
//!
//! A KEK of the linked kind binds the record's patient link (its `link` column) into the
//! associated data of each data key it wraps, so a record whose link was edited in the database
//! no longer opens: its read fails as tampered, and no patient's `$everything` or search
//! releases it. Vaults made before hold KEKs of the legacy kind; binding their rows is a
//! rotation to a linked KEK ([`Vault::bind_patient_links`]) — a rewrap of every data key, not a
//! re-encryption — and the legacy versions are retired afterwards with `keys retire`.
//!
//! An erasure must not trust the link column either: besides the rows linked to the patient it
//! scans the organization's wrapped data keys and takes every row whose key opens with the
//! patient's link bound ([`Vault::records_bound_to`]) — only a row that really is the patient's
//! does, wherever its link column now points. A retention run scans once for all the patients
//! it erases.
use super::{RotateOptions, RotationProgress, RotationReport};
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::{Digest32, OrgId, RecordKey, ResourceId, StoreKind};
use phivault_crypto::{KekKind, RecordAad};
use std::collections::{BTreeMap, BTreeSet};

/// Rows per read while an erasure scans for the patient's records.
const SCAN_BATCH: u32 = 2000;
/// Rotations the migration runs at most: an unfinished one resumed (perhaps towards a legacy
/// version), then one to a new linked version.
const MAX_ROTATIONS: usize = 3;

impl Vault {
    /// Rows of both stores whose data key is wrapped by a legacy (unlinked) KEK version.
    async fn legacy_rows(&self) -> Result<u64, VaultError> {
        let usage = self.usage().await?;
        Ok(usage
            .iter()
            .flat_map(|(_, u)| u.iter())
            .filter(|u| self.keyring.kek_kind(u.kek_version) == Some(KekKind::Legacy))
            .map(|u| u.rows)
            .sum())
    }

    /// Whether rows still wait for their link to be bound: the current KEK is legacy, or rows
    /// are still wrapped by a legacy version.
    async fn links_unbound(&self) -> Result<Option<u64>, VaultError> {
        let current = self.reload_keyring().await?;
        let rows = self.legacy_rows().await?;
        Ok((!self.keyring.kek_binds_link(current) || rows > 0).then_some(rows))
    }

    /// The migration that binds the patient link of every stored record: when the current KEK
    /// is of the legacy kind, or rows are still wrapped by one, rotates to a linked KEK version
    /// and rewraps every data key to it (the rotation job: batched, by compare-and-set,
    /// resumable; reads go on meanwhile, each row opening in its own KEK version's format).
    /// An interrupted run resumes where it stopped. Returns the last rewrap's report, or
    /// `None` when there was nothing to do. Permissions: the operator and SUPER_ADMIN. Audited
    /// (`keys-bind-links`, with the rows still unbound when it started; the rotation's own
    /// `keys-rotate` and `keys-rewrap` events).
    pub async fn bind_patient_links(
        &self,
        ctx: &Ctx,
        opts: RotateOptions,
        progress: &mut (dyn FnMut(&RotationProgress) + Send),
    ) -> Result<Option<RotationReport>, VaultError> {
        let mut event = self.event(ctx, "keys-bind-links");
        event.resource_type = Some("KEK".into());
        self.require_key_admin(ctx, &event).await?;
        let pending = match self.links_unbound().await {
            Ok(p) => p,
            Err(e) => return self.audit_failure(event, e).await,
        };
        event.count = Some(pending.unwrap_or(0));
        self.audit(event).await?;
        if pending.is_none() {
            return Ok(None);
        }
        let mut last = None;
        for _ in 0..MAX_ROTATIONS {
            let plan = self.begin_kek_rotation(ctx).await?;
            let report = self.rewrap_deks(ctx, plan.target, opts, progress).await?;
            let done = report.finished && self.links_unbound().await?.is_none();
            let stop = !report.finished;
            last = Some(report);
            if done || stop {
                break;
            }
        }
        Ok(last)
    }

    /// [`Vault::records_bound_to`] for the patients `patients` of the context's organization,
    /// by patient pseudonym (no scan when there are none).
    pub(crate) async fn moved_records_of<'a>(
        &self,
        ctx: &Ctx,
        patients: impl Iterator<Item = &'a ResourceId>,
    ) -> Result<BTreeMap<Digest32, Vec<RecordKey>>, VaultError> {
        let links: Vec<Digest32> = patients
            .map(|p| self.keyring.pseudonym(&ctx.org, p))
            .collect();
        if links.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.records_bound_to(&ctx.org, &links).await
    }

    /// The clinical records of `org` that belong to one of the patients `links` although their
    /// link column names someone else (or no one): records whose link was edited away. One scan
    /// of the store's wrapped data keys: a row whose key opens with its own stored link bound is
    /// that patient's (one AEAD open per row); only a row whose key does not (tampered) is tried
    /// with each of `links`, and is that patient's when it opens. Rows under a legacy KEK bind
    /// no link and cannot be confirmed; rows already linked to one of `links` are left to the
    /// caller (it finds them by the column).
    pub(crate) async fn records_bound_to(
        &self,
        org: &OrgId,
        links: &[Digest32],
    ) -> Result<BTreeMap<Digest32, Vec<RecordKey>>, VaultError> {
        let mut found: BTreeMap<Digest32, BTreeSet<RecordKey>> = BTreeMap::new();
        let mut after = 0;
        loop {
            let rows = self
                .clinical
                .wrapped_below(u32::MAX, after, SCAN_BATCH)
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.seq;
            if rows.iter().any(|r| !self.keyring.has_kek(r.kek_version)) {
                self.reload_keyring().await?;
            }
            for r in &rows {
                let skip = &r.org != org
                    || r.wrapped_dek.is_empty()
                    || r.link.as_ref().is_some_and(|l| links.contains(l));
                if skip {
                    continue;
                }
                let binds = |link: Option<&Digest32>| {
                    let aad = RecordAad {
                        org,
                        store: StoreKind::Clinical,
                        rtype: r.rtype,
                        id: &r.id,
                        version: r.version,
                        link,
                    };
                    // A version this keyring does not hold cannot be confirmed either.
                    self.keyring
                        .dek_binds(&aad, r.kek_version, &r.wrapped_dek)
                        .unwrap_or(false)
                };
                if !self.keyring.kek_binds_link(r.kek_version) || binds(r.link.as_ref()) {
                    continue;
                }
                if let Some(link) = links.iter().find(|l| binds(Some(l))) {
                    found.entry(*link).or_default().insert(RecordKey {
                        rtype: r.rtype,
                        id: r.id.clone(),
                    });
                }
            }
        }
        Ok(found
            .into_iter()
            .map(|(l, keys)| (l, keys.into_iter().collect()))
            .collect())
    }
}
