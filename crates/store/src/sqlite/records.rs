//! The sealed record store on SQLite (used for both identity and clinical, in separate files).
use super::group::Group;
use super::write::{Item, apply, delete_index, v64};
use super::{Db, corrupt, unavailable};
use async_trait::async_trait;
use phivault_core::{
    BeforeCommit, ColumnInfo, Digest32, IndexKind, OrgId, RecordKey, RecordStore, RecordWrite,
    ReindexHead, ResourceId, ResourceType, SealedRecord, StoreError, StoreKind, Version,
    WriteOutcome,
};
use phivault_core::{KekUsage, Rewrap, WrappedDek};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use tokio::sync::oneshot;

/// One caller's batch waiting for the next group commit.
struct Job {
    org: OrgId,
    writes: Vec<RecordWrite>,
    hook: Option<BeforeCommit>,
    done: oneshot::Sender<Result<Vec<WriteOutcome>, StoreError>>,
}

pub struct SqliteRecordStore {
    db: Db,
    kind: StoreKind,
    group: Group<Job>,
}

impl std::fmt::Debug for SqliteRecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRecordStore")
            .field("path", &self.db.path)
            .field("kind", &self.kind)
            .finish()
    }
}

pub(crate) const COLUMNS: &str = "v.rtype, v.id, v.version, v.deleted, v.link, v.kek_version, \
     v.wrapped_dek, v.ciphertext, v.updated_at";

/// Keeps only head rows of `v`.
const IS_HEAD: &str = "v.version = (SELECT MAX(w.version) FROM record_versions w \
     WHERE w.org = v.org AND w.rtype = v.rtype AND w.id = v.id)";

pub(crate) fn decode(row: &SqliteRow) -> Result<SealedRecord, StoreError> {
    let ctx = "decode record";
    let g = |e: sqlx::Error| corrupt(ctx, e.to_string());
    let rtype: String = row.try_get("rtype").map_err(g)?;
    let id: String = row.try_get("id").map_err(g)?;
    let version: i64 = row.try_get("version").map_err(g)?;
    let deleted: i64 = row.try_get("deleted").map_err(g)?;
    let link: Option<Vec<u8>> = row.try_get("link").map_err(g)?;
    let kek_version: i64 = row.try_get("kek_version").map_err(g)?;
    Ok(SealedRecord {
        rtype: ResourceType::parse_stored(&rtype).map_err(|_| corrupt(ctx, "resource type"))?,
        id: ResourceId::parse(&id).map_err(|_| corrupt(ctx, "resource id"))?,
        version: Version(u64::try_from(version).map_err(|_| corrupt(ctx, "version"))?),
        deleted: deleted != 0,
        link: match link {
            None => None,
            Some(l) => Some(Digest32::from_slice(&l).ok_or_else(|| corrupt(ctx, "link"))?),
        },
        kek_version: u32::try_from(kek_version).map_err(|_| corrupt(ctx, "kek version"))?,
        wrapped_dek: row.try_get("wrapped_dek").map_err(g)?,
        ciphertext: row.try_get("ciphertext").map_err(g)?,
        updated_at: row.try_get("updated_at").map_err(g)?,
    })
}

pub(crate) fn decode_key(row: &SqliteRow) -> Result<RecordKey, StoreError> {
    let ctx = "decode key";
    let rtype: String = row
        .try_get("rtype")
        .map_err(|e| corrupt(ctx, e.to_string()))?;
    let id: String = row.try_get("id").map_err(|e| corrupt(ctx, e.to_string()))?;
    Ok(RecordKey {
        rtype: ResourceType::parse_stored(&rtype).map_err(|_| corrupt(ctx, "resource type"))?,
        id: ResourceId::parse(&id).map_err(|_| corrupt(ctx, "resource id"))?,
    })
}

impl SqliteRecordStore {
    pub(crate) fn new(db: Db, kind: StoreKind) -> Self {
        Self {
            db,
            kind,
            group: Group::new(),
        }
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    pub fn path(&self) -> &std::path::Path {
        &self.db.path
    }

    pub(crate) async fn close(&self) {
        self.db.close().await;
    }

    /// Commits queued jobs in one transaction and answers each. If the transaction fails,
    /// every job gets the error and nothing of any of them is written.
    async fn commit_jobs(&self, jobs: Vec<Job>) {
        let ctx = "write records";
        let mut dones = Vec::with_capacity(jobs.len());
        let mut counts = Vec::with_capacity(jobs.len());
        let mut hooks = Vec::with_capacity(jobs.len());
        let mut items = Vec::new();
        for job in jobs {
            counts.push(job.writes.len());
            for w in job.writes {
                items.push((job.org.clone(), w));
            }
            hooks.push(job.hook);
            dones.push(job.done);
        }
        let mut conn = None;
        let result: Result<Vec<Vec<WriteOutcome>>, StoreError> = async {
            let c = conn.insert(self.db.writer.acquire().await.map_err(unavailable(ctx))?);
            let mut tx = sqlx::Connection::begin_with(&mut **c, "BEGIN IMMEDIATE")
                .await
                .map_err(unavailable(ctx))?;
            let outcomes = apply(&mut tx, items).await?;
            let mut rest = outcomes.into_iter();
            let per_job: Vec<Vec<WriteOutcome>> = counts
                .iter()
                .map(|n| rest.by_ref().take(*n).collect())
                .collect();
            // The callers' before-commit work (their audit events), all at once so it can be
            // group-committed too. Any failure rolls the whole transaction back.
            let mut running = tokio::task::JoinSet::new();
            for (hook, outcomes) in hooks.into_iter().zip(&per_job) {
                if let Some(hook) = hook {
                    running.spawn(hook(outcomes.clone()));
                }
            }
            while let Some(done) = running.join_next().await {
                done.map_err(|_| StoreError::Unavailable {
                    context: ctx,
                    detail: "a before-commit task failed".into(),
                })??;
            }
            tx.commit().await.map_err(unavailable(ctx))?;
            Ok(per_job)
        }
        .await;
        if result.is_err()
            && let Some(c) = conn.as_mut()
        {
            // Never hand a connection back in an unknown transaction state.
            c.close_on_drop();
        }
        drop(conn);
        match result {
            Ok(per_job) => {
                for (done, outcomes) in dones.into_iter().zip(per_job) {
                    let _ = done.send(Ok(outcomes));
                }
            }
            Err(e) => {
                for done in dones {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }

    /// Truncates the WAL so no old page image survives in it. Retries while readers hold an
    /// older snapshot.
    async fn checkpoint_truncate(&self) -> Result<(), StoreError> {
        for _ in 0..50 {
            let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.db.writer)
                .await
                .map_err(unavailable("checkpoint"))?;
            let busy: i64 = row.try_get(0).map_err(unavailable("checkpoint"))?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(StoreError::Unavailable {
            context: "checkpoint",
            detail: "readers kept the write-ahead log busy".into(),
        })
    }
}

#[async_trait]
impl RecordStore for SqliteRecordStore {
    async fn head(&self, org: &OrgId, key: &RecordKey) -> Result<Option<SealedRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM record_versions v WHERE v.org = ? AND v.rtype = ? AND v.id = ? \
             ORDER BY v.version DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org.as_str())
            .bind(key.rtype.as_str())
            .bind(key.id.as_str())
            .fetch_optional(&self.db.reader)
            .await
            .map_err(unavailable("read record"))?;
        row.as_ref().map(decode).transpose()
    }

    async fn version(
        &self,
        org: &OrgId,
        key: &RecordKey,
        version: Version,
    ) -> Result<Option<SealedRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT rtype, id, version, deleted, link, kek_version, wrapped_dek, ciphertext, \
             updated_at FROM record_versions WHERE org = ? AND rtype = ? AND id = ? AND version = ?",
        )
        .bind(org.as_str())
        .bind(key.rtype.as_str())
        .bind(key.id.as_str())
        .bind(v64(version))
        .fetch_optional(&self.db.reader)
        .await
        .map_err(unavailable("read record version"))?;
        row.as_ref().map(decode).transpose()
    }

    async fn write(
        &self,
        org: &OrgId,
        writes: Vec<RecordWrite>,
        before_commit: Option<BeforeCommit>,
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            org: org.clone(),
            writes,
            hook: before_commit,
            done,
        };
        self.group
            .submit(job, answer, |jobs| self.commit_jobs(jobs))
            .await
    }

    async fn write_all(
        &self,
        org: &OrgId,
        writes: Vec<RecordWrite>,
        before_commit: Option<BeforeCommit>,
    ) -> Result<Result<(), Vec<(usize, Option<Version>)>>, StoreError> {
        let ctx = "write records";
        let items: Vec<Item> = writes.into_iter().map(|w| (org.clone(), w)).collect();
        let mut conn = None;
        let result = async {
            let c = conn.insert(self.db.writer.acquire().await.map_err(unavailable(ctx))?);
            let mut tx = sqlx::Connection::begin_with(&mut **c, "BEGIN IMMEDIATE")
                .await
                .map_err(unavailable(ctx))?;
            let outcomes = apply(&mut tx, items).await?;
            let conflicts: Vec<(usize, Option<Version>)> = outcomes
                .iter()
                .enumerate()
                .filter_map(|(i, o)| match o {
                    WriteOutcome::Written => None,
                    WriteOutcome::Conflict { current } => Some((i, *current)),
                })
                .collect();
            if !conflicts.is_empty() {
                tx.rollback().await.map_err(unavailable(ctx))?;
                return Ok(Err(conflicts));
            }
            if let Some(hook) = before_commit {
                hook(outcomes).await?;
            }
            tx.commit().await.map_err(unavailable(ctx))?;
            Ok(Ok(()))
        }
        .await;
        if result.is_err()
            && let Some(c) = conn.as_mut()
        {
            // Never hand a connection back in an unknown transaction state.
            c.close_on_drop();
        }
        result
    }

    async fn find(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digest: &Digest32,
    ) -> Result<Vec<RecordKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.rtype, v.id FROM blind_index b JOIN record_versions v ON v.seq = b.rec \
             WHERE b.org = ? AND b.kind = ? AND b.digest = ? ORDER BY +v.rtype, +v.id",
        )
        .bind(org.as_str())
        .bind(kind.as_str())
        .bind(digest.0.to_vec())
        .fetch_all(&self.db.reader)
        .await
        .map_err(unavailable("search index"))?;
        rows.iter().map(decode_key).collect()
    }

    async fn linked(&self, org: &OrgId, link: &Digest32) -> Result<Vec<SealedRecord>, StoreError> {
        // `+`: sort what the link index found. Without table statistics SQLite would rather
        // walk the primary key in key order and read every clinical row (8 s on 2 M rows).
        let sql = format!(
            "SELECT {COLUMNS} FROM record_versions v WHERE v.org = ? AND v.link = ? \
             AND v.deleted = 0 AND {IS_HEAD} ORDER BY +v.rtype, +v.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org.as_str())
            .bind(link.0.to_vec())
            .fetch_all(&self.db.reader)
            .await
            .map_err(unavailable("read linked records"))?;
        rows.iter().map(decode).collect()
    }

    async fn page(
        &self,
        org: &OrgId,
        after: Option<&RecordKey>,
        limit: u32,
    ) -> Result<Vec<SealedRecord>, StoreError> {
        let (after_type, after_id) = after
            .map(|k| (k.rtype.as_str(), k.id.as_str()))
            .unwrap_or(("", ""));
        let sql = format!(
            "SELECT {COLUMNS} FROM record_versions v WHERE v.org = ? AND (v.rtype, v.id) > (?, ?) \
             AND v.deleted = 0 AND {IS_HEAD} ORDER BY v.rtype, v.id LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org.as_str())
            .bind(after_type)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.db.reader)
            .await
            .map_err(unavailable("list records"))?;
        rows.iter().map(decode).collect()
    }

    async fn erase(&self, org: &OrgId, keys: &[RecordKey]) -> Result<u64, StoreError> {
        let ctx = "erase records";
        let mut conn = self.db.writer.acquire().await.map_err(unavailable(ctx))?;
        let result = async {
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
                .await
                .map_err(unavailable(ctx))?;
            let mut destroyed = 0;
            for k in keys {
                delete_index(&mut tx, org, k.rtype, &k.id).await?;
                let done = sqlx::query(
                    "DELETE FROM record_versions WHERE org = ? AND rtype = ? AND id = ?",
                )
                .bind(org.as_str())
                .bind(k.rtype.as_str())
                .bind(k.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unavailable(ctx))?;
                destroyed += done.rows_affected();
            }
            tx.commit().await.map_err(unavailable(ctx))?;
            Ok::<u64, StoreError>(destroyed)
        }
        .await;
        if result.is_err() {
            conn.close_on_drop();
        }
        drop(conn);
        let destroyed = result?;
        self.checkpoint_truncate().await?;
        Ok(destroyed)
    }

    async fn linked_keys(
        &self,
        org: &OrgId,
        link: &Digest32,
    ) -> Result<Vec<RecordKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT rtype, id FROM record_versions WHERE org = ? AND link = ? \
             ORDER BY rtype, id",
        )
        .bind(org.as_str())
        .bind(link.0.to_vec())
        .fetch_all(&self.db.reader)
        .await
        .map_err(unavailable("list linked keys"))?;
        rows.iter().map(decode_key).collect()
    }

    async fn columns(&self) -> Result<Vec<ColumnInfo>, StoreError> {
        let ctx = "list columns";
        let rows = sqlx::query(
            "SELECT m.name AS tbl, p.name AS col, lower(p.type) AS ty \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid",
        )
        .fetch_all(&self.db.reader)
        .await
        .map_err(unavailable(ctx))?;
        rows.iter().map(crate::rows::column).collect()
    }

    async fn kek_versions(&self) -> Result<Vec<KekUsage>, StoreError> {
        crate::rewrap::sqlite::kek_versions(&self.db).await
    }

    async fn wrapped_below(
        &self,
        kek: u32,
        after: u64,
        limit: u32,
    ) -> Result<Vec<WrappedDek>, StoreError> {
        crate::rewrap::sqlite::wrapped_below(&self.db, kek, after, limit).await
    }

    async fn find_any(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        limit: u32,
    ) -> Result<Vec<(u64, RecordKey)>, StoreError> {
        crate::search_index::sqlite::index(&self.db)
            .find_any(org, kind, digests, limit)
            .await
    }

    async fn stream(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, RecordKey)>, StoreError> {
        crate::search_index::sqlite::index(&self.db)
            .stream(org, kind, digests, after, limit)
            .await
    }

    async fn find_within(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        within: &[u64],
    ) -> Result<Vec<u64>, StoreError> {
        crate::search_index::sqlite::index(&self.db)
            .find_within(org, kind, digests, within)
            .await
    }

    async fn heads(
        &self,
        org: &OrgId,
        keys: &[RecordKey],
    ) -> Result<Vec<SealedRecord>, StoreError> {
        crate::search_index::sqlite::index(&self.db)
            .heads(org, keys)
            .await
    }

    async fn reindex(&self, org: &OrgId, heads: &[ReindexHead]) -> Result<u64, StoreError> {
        crate::search_index::sqlite::reindex(&self.db, org, heads).await
    }

    async fn rewrap(&self, items: &[Rewrap]) -> Result<Vec<bool>, StoreError> {
        crate::rewrap::sqlite::rewrap(&self.db, items).await
    }
}
