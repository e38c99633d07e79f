//! The append-only audit log on SQLite. Appends are group-committed by one committer task per
//! opened store: it takes every append queued while the previous commit ran and makes them
//! durable in one transaction. The chain MAC is computed by the caller's `ChainFn` (the vault
//! holds the key) for the head read (or guarded) inside that transaction, so the chain stays
//! single even with several writers (processes included).
use super::{Db, corrupt, unavailable};
use crate::audit_group::{self, AuditJob, Committer, Head, Work, chain_rows};
use async_trait::async_trait;
use phivault_core::{AuditRecord, AuditStore, ChainFn, StoreError};
use sqlx::Row;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteRow};
use std::sync::Arc;

pub struct SqliteAuditStore {
    log: Arc<Log>,
    committer: Committer,
}

struct Log {
    db: Db,
    /// The head this process last appended, so the next append can skip reading it.
    head: std::sync::Mutex<Option<Head>>,
    /// The writer connection, held between appends: handing it back to the pool costs a round
    /// trip to its thread (a ping) that the next append would wait for. Dropped on any error.
    conn: tokio::sync::Mutex<Option<PoolConnection<Sqlite>>>,
}

impl std::fmt::Debug for SqliteAuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAuditStore")
            .field("path", &self.log.db.path)
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
    /// Opens the store on `db` and starts its committer task (on the current Tokio runtime).
    pub(crate) fn new(db: Db) -> Self {
        let log = Arc::new(Log {
            db,
            head: std::sync::Mutex::new(None),
            conn: tokio::sync::Mutex::new(None),
        });
        let committer = {
            let log = log.clone();
            Committer::start(move |jobs| {
                let log = log.clone();
                async move { log.commit(jobs).await }
            })
        };
        Self { log, committer }
    }

    pub(crate) async fn close(&self) {
        // Held while the pool closes, so the committer cannot take a connection back out of
        // it meanwhile (the pool's close waits for every connection taken out).
        let mut held = self.log.conn.lock().await;
        drop(held.take());
        self.log.db.close().await;
        drop(held);
    }
}

impl Log {
    async fn commit(&self, jobs: Vec<AuditJob>) {
        let (answers, work) = audit_group::split(jobs);
        let cached = self.head.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = match cached {
            Some(head) => self.append_after(head, &work).await,
            None => Ok(None),
        };
        let result = match result {
            Ok(Some(done)) => Ok(done),
            Ok(None) => self.append_locked(&work).await,
            Err(e) => Err(e),
        };
        let result = result.map(|(seqs, head)| {
            *self.head.lock().unwrap_or_else(|p| p.into_inner()) = Some(head);
            seqs
        });
        audit_group::answer(answers, result);
    }

    /// The common case in one statement (one round trip, one implicit transaction): appends
    /// after the head this process wrote last, guarded so that nothing is written unless that
    /// head is still the last event. `Ok(None)` when another writer appended in between.
    async fn append_after(&self, head: Head, work: &[Work]) -> Appended {
        let ctx = "append audit";
        let (seq, mac) = head;
        let (rows, seqs, last) = chain_rows(work, seq, mac.clone())?;
        if rows.len() > FAST_ROWS {
            return Ok(None);
        }
        let mut sql = String::from(
            "INSERT INTO audit_events (seq, recorded_at, event, mac) \
             SELECT column1, column2, column3, column4 FROM (VALUES ",
        );
        sql.push_str(&vec!["(?, ?, ?, ?)"; rows.len()].join(", "));
        sql.push_str(
            ") WHERE NOT EXISTS (SELECT 1 FROM audit_events WHERE seq > ?) \
             AND EXISTS (SELECT 1 FROM audit_events WHERE seq = ? AND mac = ?)",
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (s, at, event, mac) in &rows {
            q = q
                .bind(*s)
                .bind(*at)
                .bind(event.as_str())
                .bind(mac.as_slice());
        }
        let s = i64::try_from(seq).map_err(|_| corrupt(ctx, "seq overflow"))?;
        q = q.bind(s).bind(s).bind(mac);
        let mut held = self.conn.lock().await;
        let conn = match held.as_mut() {
            Some(c) => c,
            None => held.insert(self.db.writer.acquire().await.map_err(unavailable(ctx))?),
        };
        let done = q.execute(&mut **conn).await;
        match done {
            Ok(r) if r.rows_affected() == rows.len() as u64 => Ok(Some((seqs, last))),
            Ok(r) if r.rows_affected() == 0 => Ok(None),
            Ok(_) => Err(corrupt(ctx, "a guarded append wrote part of its events")),
            Err(e) => {
                if let Some(mut c) = held.take() {
                    c.close_on_drop();
                }
                Err(unavailable(ctx)(e))
            }
        }
    }

    /// Appends after whatever head the log has, read inside an immediate transaction.
    async fn append_locked(&self, work: &[Work]) -> Result<(Vec<Vec<u64>>, Head), StoreError> {
        let ctx = "append audit";
        let mut held = self.conn.lock().await;
        let result = async {
            let c = match held.as_mut() {
                Some(c) => c,
                None => held.insert(self.db.writer.acquire().await.map_err(unavailable(ctx))?),
            };
            let mut tx = sqlx::Connection::begin_with(&mut **c, "BEGIN IMMEDIATE")
                .await
                .map_err(unavailable(ctx))?;
            let head = sqlx::query("SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable(ctx))?;
            let (seq, prev): (u64, Vec<u8>) = match head {
                None => (0, Vec::new()),
                Some(r) => (
                    u64::try_from(r.try_get::<i64, _>(0).map_err(unavailable(ctx))?)
                        .map_err(|_| corrupt(ctx, "seq"))?,
                    r.try_get(1).map_err(unavailable(ctx))?,
                ),
            };
            let (rows, seqs, last) = chain_rows(work, seq, prev)?;
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
            tx.commit().await.map_err(unavailable(ctx))?;
            Ok((seqs, last))
        }
        .await;
        if result.is_err()
            && let Some(mut c) = held.take()
        {
            // Never hand a connection back in an unknown transaction state.
            c.close_on_drop();
        }
        result
    }
}

type Appended = Result<Option<(Vec<Vec<u64>>, Head)>, StoreError>;

/// The most events the one-statement append takes (4 parameters each).
const FAST_ROWS: usize = 256;

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn append(
        &self,
        drafts: Vec<(i64, String)>,
        chain: Arc<ChainFn>,
    ) -> Result<Vec<u64>, StoreError> {
        self.committer.append(drafts, chain).await
    }

    async fn read(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, recorded_at, event, mac FROM audit_events WHERE seq > ? \
             ORDER BY seq LIMIT ?",
        )
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.log.db.reader)
        .await
        .map_err(unavailable("read audit"))?;
        rows.iter().map(decode).collect()
    }

    async fn head(&self) -> Result<Option<AuditRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, recorded_at, event, mac FROM audit_events ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.log.db.reader)
        .await
        .map_err(unavailable("read audit"))?;
        row.as_ref().map(decode).transpose()
    }
}
