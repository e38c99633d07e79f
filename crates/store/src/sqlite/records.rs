//! The sealed record store on SQLite (used for both identity and clinical, in separate files).
use super::{Db, corrupt, unavailable};
use async_trait::async_trait;
use phivault_core::{
    Digest32, Expected, IndexKind, OrgId, RecordKey, RecordStore, RecordWrite, ResourceId,
    ResourceType, SealedRecord, StoreError, StoreKind, Version, WriteOutcome,
};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use tokio::sync::oneshot;

/// One caller's batch waiting for the next group commit.
struct Job {
    org: OrgId,
    writes: Vec<RecordWrite>,
    done: oneshot::Sender<Result<Vec<WriteOutcome>, StoreError>>,
}

pub struct SqliteRecordStore {
    db: Db,
    kind: StoreKind,
    queue: std::sync::Mutex<Vec<Job>>,
    commit: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SqliteRecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRecordStore")
            .field("path", &self.db.path)
            .field("kind", &self.kind)
            .finish()
    }
}

const COLUMNS: &str = "v.rtype, v.id, v.version, v.deleted, v.link, v.kek_version, \
     v.wrapped_dek, v.ciphertext, v.updated_at";

/// Keeps only head rows of `v`.
const IS_HEAD: &str = "v.version = (SELECT MAX(w.version) FROM record_versions w \
     WHERE w.org = v.org AND w.rtype = v.rtype AND w.id = v.id)";

fn decode(row: &SqliteRow) -> Result<SealedRecord, StoreError> {
    let ctx = "decode record";
    let g = |e: sqlx::Error| corrupt(ctx, e.to_string());
    let rtype: String = row.try_get("rtype").map_err(g)?;
    let id: String = row.try_get("id").map_err(g)?;
    let version: i64 = row.try_get("version").map_err(g)?;
    let deleted: i64 = row.try_get("deleted").map_err(g)?;
    let link: Option<Vec<u8>> = row.try_get("link").map_err(g)?;
    let kek_version: i64 = row.try_get("kek_version").map_err(g)?;
    Ok(SealedRecord {
        rtype: ResourceType::parse(&rtype).map_err(|_| corrupt(ctx, "resource type"))?,
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

fn decode_key(row: &SqliteRow) -> Result<RecordKey, StoreError> {
    let ctx = "decode key";
    let rtype: String = row
        .try_get("rtype")
        .map_err(|e| corrupt(ctx, e.to_string()))?;
    let id: String = row.try_get("id").map_err(|e| corrupt(ctx, e.to_string()))?;
    Ok(RecordKey {
        rtype: ResourceType::parse(&rtype).map_err(|_| corrupt(ctx, "resource type"))?,
        id: ResourceId::parse(&id).map_err(|_| corrupt(ctx, "resource id"))?,
    })
}

/// Applies a job's writes inside an open transaction, checking each write's expected version
/// in the insert itself (one statement for the record, one for its index entries).
async fn apply(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    org: &OrgId,
    writes: Vec<RecordWrite>,
) -> Result<Vec<WriteOutcome>, StoreError> {
    let ctx = "write records";
    let mut outcomes = Vec::with_capacity(writes.len());
    for w in writes {
        let r = &w.record;
        let inserted = match w.expected {
            Expected::Absent if r.version == Version::FIRST => {
                insert_version(tx, org, r, None).await?
            }
            Expected::Version(e) if r.version == e.next() => {
                insert_version(tx, org, r, Some(e)).await?
            }
            _ => false,
        };
        if !inserted {
            let current: Option<i64> = sqlx::query(
                "SELECT MAX(version) FROM record_versions WHERE org = ? AND rtype = ? AND id = ?",
            )
            .bind(org.as_str())
            .bind(r.rtype.as_str())
            .bind(r.id.as_str())
            .fetch_one(&mut **tx)
            .await
            .map_err(unavailable(ctx))?
            .try_get(0)
            .map_err(unavailable(ctx))?;
            outcomes.push(WriteOutcome::Conflict {
                current: current.map(|v| Version(u64::try_from(v).unwrap_or(0))),
            });
            continue;
        }
        if w.expected != Expected::Absent || r.deleted {
            sqlx::query("DELETE FROM blind_index WHERE org = ? AND rtype = ? AND id = ?")
                .bind(org.as_str())
                .bind(r.rtype.as_str())
                .bind(r.id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(unavailable(ctx))?;
        }
        if !r.deleted && !w.index.is_empty() {
            let mut sql = String::from(
                "INSERT OR IGNORE INTO blind_index (org, kind, digest, rtype, id) VALUES ",
            );
            sql.push_str(&vec!["(?, ?, ?, ?, ?)"; w.index.len()].join(", "));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (kind, digest) in &w.index {
                q = q
                    .bind(org.as_str())
                    .bind(kind.as_str())
                    .bind(digest.0.to_vec())
                    .bind(r.rtype.as_str())
                    .bind(r.id.as_str());
            }
            q.execute(&mut **tx).await.map_err(unavailable(ctx))?;
        }
        outcomes.push(WriteOutcome::Written);
    }
    Ok(outcomes)
}

/// Inserts a record version if the head is what the writer expects: absent (`None`), or
/// exactly version `e` (then `e + 1` cannot exist yet, by the unique constraint).
async fn insert_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    org: &OrgId,
    r: &SealedRecord,
    after: Option<Version>,
) -> Result<bool, StoreError> {
    let sql = match after {
        None => {
            "INSERT INTO record_versions (org, rtype, id, version, deleted, link, kek_version, \
             wrapped_dek, ciphertext, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE ?11 IS NULL \
             ON CONFLICT (org, rtype, id, version) DO NOTHING"
        }
        Some(_) => {
            "INSERT INTO record_versions (org, rtype, id, version, deleted, link, kek_version, \
             wrapped_dek, ciphertext, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE EXISTS (SELECT 1 FROM record_versions \
               WHERE org = ?1 AND rtype = ?2 AND id = ?3 AND version = ?11) \
             ON CONFLICT (org, rtype, id, version) DO NOTHING"
        }
    };
    let done = sqlx::query(sql)
        .bind(org.as_str())
        .bind(r.rtype.as_str())
        .bind(r.id.as_str())
        .bind(v64(r.version))
        .bind(i64::from(r.deleted))
        .bind(r.link.map(|l| l.0.to_vec()))
        .bind(i64::from(r.kek_version))
        .bind(&r.wrapped_dek)
        .bind(&r.ciphertext)
        .bind(r.updated_at)
        .bind(after.map(v64))
        .execute(&mut **tx)
        .await
        .map_err(unavailable("write records"))?;
    Ok(done.rows_affected() == 1)
}

fn v64(v: Version) -> i64 {
    i64::try_from(v.0).unwrap_or(i64::MAX)
}

impl SqliteRecordStore {
    pub(crate) fn new(db: Db, kind: StoreKind) -> Self {
        Self {
            db,
            kind,
            queue: std::sync::Mutex::new(Vec::new()),
            commit: tokio::sync::Mutex::new(()),
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
        let mut answers: Vec<(oneshot::Sender<_>, Vec<WriteOutcome>)> = Vec::new();
        let result: Result<(), StoreError> = async {
            let mut tx = self
                .db
                .writer
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(unavailable(ctx))?;
            let mut pending = Vec::with_capacity(jobs.len());
            for job in jobs {
                let outcomes = apply(&mut tx, &job.org, job.writes).await;
                pending.push((job.done, outcomes));
            }
            let mut failed = None;
            for (done, outcomes) in pending {
                match outcomes {
                    Ok(o) => answers.push((done, o)),
                    Err(e) => {
                        failed.get_or_insert(e);
                        answers.push((done, Vec::new()));
                    }
                }
            }
            if let Some(e) = failed {
                // Dropping the transaction rolls it back.
                return Err(e);
            }
            tx.commit().await.map_err(unavailable(ctx))
        }
        .await;
        match result {
            Ok(()) => {
                for (done, outcomes) in answers {
                    let _ = done.send(Ok(outcomes));
                }
            }
            Err(e) => {
                for (done, _) in answers {
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
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        // Group commit: queue the job; whoever holds the commit lock next takes every queued
        // job and makes them durable in one transaction (one fsync for all).
        let (done, result) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Job {
                org: org.clone(),
                writes,
                done,
            });
        {
            let _leader = self.commit.lock().await;
            let jobs: Vec<Job> =
                std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
            if !jobs.is_empty() {
                self.commit_jobs(jobs).await;
            }
        }
        result.await.map_err(|_| StoreError::Unavailable {
            context: "write records",
            detail: "the committing task stopped".into(),
        })?
    }

    async fn find(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digest: &Digest32,
    ) -> Result<Vec<RecordKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT rtype, id FROM blind_index WHERE org = ? AND kind = ? AND digest = ? \
             ORDER BY rtype, id",
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
        let sql = format!(
            "SELECT {COLUMNS} FROM record_versions v WHERE v.org = ? AND v.link = ? \
             AND v.deleted = 0 AND {IS_HEAD} ORDER BY v.rtype, v.id"
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
        let mut tx = self
            .db
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable(ctx))?;
        let mut destroyed = 0;
        for k in keys {
            let done =
                sqlx::query("DELETE FROM record_versions WHERE org = ? AND rtype = ? AND id = ?")
                    .bind(org.as_str())
                    .bind(k.rtype.as_str())
                    .bind(k.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable(ctx))?;
            destroyed += done.rows_affected();
            {
                sqlx::query("DELETE FROM blind_index WHERE org = ? AND rtype = ? AND id = ?")
                    .bind(org.as_str())
                    .bind(k.rtype.as_str())
                    .bind(k.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable(ctx))?;
            }
        }
        tx.commit().await.map_err(unavailable(ctx))?;
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
}
