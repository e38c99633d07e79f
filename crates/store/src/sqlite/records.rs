//! The sealed record store on SQLite (used for both identity and clinical, in separate files).
use super::group::Group;
use super::{Db, corrupt, unavailable};
use async_trait::async_trait;
use phivault_core::{
    BeforeCommit, ColumnInfo, Digest32, Expected, IndexKind, OrgId, RecordKey, RecordStore,
    RecordWrite, ReindexHead, ResourceId, ResourceType, SealedRecord, StoreError, StoreKind,
    Version, WriteOutcome,
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

type Item = (OrgId, RecordWrite);

fn item_key(item: &Item) -> (String, &'static str, String) {
    (
        item.0.as_str().to_owned(),
        item.1.record.rtype.as_str(),
        item.1.record.id.as_str().to_owned(),
    )
}

/// Applies writes inside an open transaction, checking each write's expected version in the
/// insert itself. Creates of distinct new records go in as multi-row inserts (a few statements
/// for a whole group commit); every other write goes one by one, in order. Outcomes come back
/// in the order of `items`.
// Every index below comes from `0..items.len()` (or equals it for `out`): never out of range.
#[allow(clippy::indexing_slicing)]
async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    items: Vec<Item>,
) -> Result<Vec<WriteOutcome>, StoreError> {
    let ctx = "write records";
    let mut seen: std::collections::HashMap<(String, &'static str, String), usize> =
        std::collections::HashMap::new();
    for it in &items {
        *seen.entry(item_key(it)).or_default() += 1;
    }
    let is_bulk = |it: &Item| {
        it.1.expected == Expected::Absent
            && it.1.record.version == Version::FIRST
            && seen.get(&item_key(it)) == Some(&1)
    };
    let mut out: Vec<Option<WriteOutcome>> = vec![None; items.len()];
    let bulk: Vec<usize> = (0..items.len()).filter(|&i| is_bulk(&items[i])).collect();
    for chunk in bulk.chunks(400) {
        let mut sql = String::from(
            "INSERT INTO record_versions (org, rtype, id, version, deleted, link, kek_version, \
             wrapped_dek, ciphertext, updated_at) VALUES ",
        );
        sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", "));
        sql.push_str(
            " ON CONFLICT (org, rtype, id, version) DO NOTHING RETURNING org, rtype, id, seq",
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &i in chunk {
            let (org, w) = &items[i];
            let r = &w.record;
            q = q
                .bind(org.as_str())
                .bind(r.rtype.as_str())
                .bind(r.id.as_str())
                .bind(v64(r.version))
                .bind(i64::from(r.deleted))
                .bind(r.link.map(|l| l.0.to_vec()))
                .bind(i64::from(r.kek_version))
                .bind(r.wrapped_dek.as_slice())
                .bind(r.ciphertext.as_slice())
                .bind(r.updated_at);
        }
        let rows = q.fetch_all(&mut **tx).await.map_err(unavailable(ctx))?;
        let mut inserted = std::collections::HashMap::new();
        for row in rows {
            let o: String = row.try_get(0).map_err(unavailable(ctx))?;
            let t: String = row.try_get(1).map_err(unavailable(ctx))?;
            let id: String = row.try_get(2).map_err(unavailable(ctx))?;
            let seq: i64 = row.try_get(3).map_err(unavailable(ctx))?;
            inserted.insert((o, t, id), seq);
        }
        let mut index_rows = Vec::new();
        for &i in chunk {
            let k = item_key(&items[i]);
            if let Some(seq) = inserted.get(&(k.0.clone(), k.1.to_owned(), k.2.clone())) {
                out[i] = Some(WriteOutcome::Written);
                let (org, w) = &items[i];
                if !w.record.deleted {
                    for (kind, digest) in &w.index {
                        index_rows.push((org, *kind, digest, *seq));
                    }
                }
            } else {
                out[i] = Some(conflict(tx, &items[i]).await?);
            }
        }
        for rows in index_rows.chunks(1000) {
            insert_index(tx, rows).await?;
        }
    }
    for i in 0..items.len() {
        if out[i].is_some() {
            continue;
        }
        let (org, w) = &items[i];
        let r = &w.record;
        let seq = match w.expected {
            Expected::Absent if r.version == Version::FIRST => {
                insert_version(tx, org, r, None).await?
            }
            Expected::Version(e) if r.version == e.next() => {
                insert_version(tx, org, r, Some(e)).await?
            }
            _ => None,
        };
        let Some(seq) = seq else {
            out[i] = Some(conflict(tx, &items[i]).await?);
            continue;
        };
        if w.expected != Expected::Absent || r.deleted {
            delete_index(tx, org, r.rtype, &r.id).await?;
        }
        if !r.deleted && !w.index.is_empty() {
            let rows: Vec<_> = w.index.iter().map(|(k, d)| (org, *k, d, seq)).collect();
            insert_index(tx, &rows).await?;
        }
        out[i] = Some(WriteOutcome::Written);
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or(WriteOutcome::Conflict { current: None }))
        .collect())
}

/// The outcome of a refused write: a conflict naming the current head version.
async fn conflict(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    item: &Item,
) -> Result<WriteOutcome, StoreError> {
    let (org, w) = item;
    let current: Option<i64> = sqlx::query(
        "SELECT MAX(version) FROM record_versions WHERE org = ? AND rtype = ? AND id = ?",
    )
    .bind(org.as_str())
    .bind(w.record.rtype.as_str())
    .bind(w.record.id.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(unavailable("write records"))?
    .try_get(0)
    .map_err(unavailable("write records"))?;
    Ok(WriteOutcome::Conflict {
        current: current.map(|v| Version(u64::try_from(v).unwrap_or(0))),
    })
}

/// Inserts a record version if the head is what the writer expects: absent (`None`), or
/// exactly version `e` (then `e + 1` cannot exist yet, by the unique constraint).
async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: &OrgId,
    r: &SealedRecord,
    after: Option<Version>,
) -> Result<Option<i64>, StoreError> {
    let sql = match after {
        None => {
            "INSERT INTO record_versions (org, rtype, id, version, deleted, link, kek_version, \
             wrapped_dek, ciphertext, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE ?11 IS NULL \
             ON CONFLICT (org, rtype, id, version) DO NOTHING RETURNING seq"
        }
        Some(_) => {
            "INSERT INTO record_versions (org, rtype, id, version, deleted, link, kek_version, \
             wrapped_dek, ciphertext, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE EXISTS (SELECT 1 FROM record_versions \
               WHERE org = ?1 AND rtype = ?2 AND id = ?3 AND version = ?11) \
             ON CONFLICT (org, rtype, id, version) DO NOTHING RETURNING seq"
        }
    };
    let row = sqlx::query(sql)
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
        .fetch_optional(&mut **tx)
        .await
        .map_err(unavailable("write records"))?;
    row.map(|r| r.try_get::<i64, _>(0))
        .transpose()
        .map_err(unavailable("write records"))
}

/// Inserts blind-index entries pointing at record versions (by `seq`).
async fn insert_index(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &[(&OrgId, IndexKind, &Digest32, i64)],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(1000) {
        let mut sql =
            String::from("INSERT OR IGNORE INTO blind_index (org, kind, digest, rec) VALUES ");
        sql.push_str(&vec!["(?, ?, ?, ?)"; chunk.len()].join(", "));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (org, kind, digest, seq) in chunk {
            q = q
                .bind(org.as_str())
                .bind(kind.as_str())
                .bind(digest.0.as_slice())
                .bind(*seq);
        }
        q.execute(&mut **tx)
            .await
            .map_err(unavailable("write index"))?;
    }
    Ok(())
}

/// Removes the blind-index entries of every version of a record.
async fn delete_index(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: &OrgId,
    rtype: ResourceType,
    id: &ResourceId,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM blind_index WHERE rec IN \
         (SELECT seq FROM record_versions WHERE org = ? AND rtype = ? AND id = ?)",
    )
    .bind(org.as_str())
    .bind(rtype.as_str())
    .bind(id.as_str())
    .execute(&mut **tx)
    .await
    .map_err(unavailable("write index"))?;
    Ok(())
}

fn v64(v: Version) -> i64 {
    i64::try_from(v.0).unwrap_or(i64::MAX)
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
