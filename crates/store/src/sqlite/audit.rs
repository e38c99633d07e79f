//! The append-only audit log on SQLite. Appends are group-committed; the chain MAC is computed
//! by the caller's `ChainFn` (the vault holds the key), inside the transaction that reads the
//! head, so the chain stays single even with several writers (processes included).
use super::group::Group;
use super::{Db, corrupt, unavailable};
use async_trait::async_trait;
use phivault_core::{AuditRecord, AuditStore, ChainFn, StoreError};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::sync::Arc;
use tokio::sync::oneshot;

type Answer = oneshot::Sender<Result<Vec<u64>, StoreError>>;

struct Job {
    drafts: Vec<(i64, String)>,
    chain: Arc<ChainFn>,
    done: Answer,
}

pub struct SqliteAuditStore {
    db: Db,
    group: Group<Job>,
}

impl std::fmt::Debug for SqliteAuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAuditStore")
            .field("path", &self.db.path)
            .finish()
    }
}

fn decode(row: &SqliteRow) -> Result<AuditRecord, StoreError> {
    let ctx = "read audit";
    let g = |e: sqlx::Error| corrupt(ctx, e.to_string());
    let seq: i64 = row.try_get("seq").map_err(g)?;
    Ok(AuditRecord {
        seq: u64::try_from(seq).map_err(|_| corrupt(ctx, "seq"))?,
        recorded_at: row.try_get("recorded_at").map_err(g)?,
        event: row.try_get("event").map_err(g)?,
        mac: row.try_get("mac").map_err(g)?,
    })
}

impl SqliteAuditStore {
    pub(crate) fn new(db: Db) -> Self {
        Self {
            db,
            group: Group::new(),
        }
    }

    pub(crate) async fn close(&self) {
        self.db.close().await;
    }

    async fn commit(&self, jobs: Vec<Job>) {
        let ctx = "append audit";
        // Take every answer channel first, so that any failure below reaches every caller.
        let mut answers: Vec<(Answer, Vec<u64>)> = Vec::with_capacity(jobs.len());
        let mut work = Vec::with_capacity(jobs.len());
        for job in jobs {
            answers.push((job.done, Vec::new()));
            work.push((job.drafts, job.chain));
        }
        let mut conn = None;
        let result: Result<(), StoreError> = async {
            let c = conn.insert(self.db.writer.acquire().await.map_err(unavailable(ctx))?);
            let mut tx = sqlx::Connection::begin_with(&mut **c, "BEGIN IMMEDIATE")
                .await
                .map_err(unavailable(ctx))?;
            let head = sqlx::query("SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable(ctx))?;
            let (mut seq, mut prev): (u64, Vec<u8>) = match head {
                None => (0, Vec::new()),
                Some(r) => (
                    u64::try_from(r.try_get::<i64, _>(0).map_err(unavailable(ctx))?)
                        .map_err(|_| corrupt(ctx, "seq"))?,
                    r.try_get(1).map_err(unavailable(ctx))?,
                ),
            };
            let mut rows: Vec<(i64, i64, String, Vec<u8>)> = Vec::new();
            for ((drafts, chain), (_, seqs)) in work.iter().zip(answers.iter_mut()) {
                for (at, draft) in drafts {
                    seq += 1;
                    let (event, mac) = chain(seq, &prev, draft);
                    let s = i64::try_from(seq).map_err(|_| corrupt(ctx, "seq overflow"))?;
                    rows.push((s, *at, event, mac.clone()));
                    prev = mac;
                    seqs.push(seq);
                }
            }
            for chunk in rows.chunks(500) {
                let mut sql =
                    String::from("INSERT INTO audit_events (seq, recorded_at, event, mac) VALUES ");
                sql.push_str(&vec!["(?, ?, ?, ?)"; chunk.len()].join(", "));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (s, at, event, mac) in chunk {
                    q = q
                        .bind(*s)
                        .bind(*at)
                        .bind(event.as_str())
                        .bind(mac.as_slice());
                }
                q.execute(&mut *tx).await.map_err(unavailable(ctx))?;
            }
            tx.commit().await.map_err(unavailable(ctx))
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
            Ok(()) => {
                for (done, seqs) in answers {
                    let _ = done.send(Ok(seqs));
                }
            }
            Err(e) => {
                for (done, _) in answers {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn append(
        &self,
        drafts: Vec<(i64, String)>,
        chain: Arc<ChainFn>,
    ) -> Result<Vec<u64>, StoreError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let (done, answer) = oneshot::channel();
        let job = Job {
            drafts,
            chain,
            done,
        };
        self.group
            .submit(job, answer, |jobs| self.commit(jobs))
            .await
    }

    async fn read(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, recorded_at, event, mac FROM audit_events WHERE seq > ? \
             ORDER BY seq LIMIT ?",
        )
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.db.reader)
        .await
        .map_err(unavailable("read audit"))?;
        rows.iter().map(decode).collect()
    }

    async fn head(&self) -> Result<Option<AuditRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, recorded_at, event, mac FROM audit_events ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.db.reader)
        .await
        .map_err(unavailable("read audit"))?;
        row.as_ref().map(decode).transpose()
    }
}
