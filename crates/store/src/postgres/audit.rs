//! The append-only audit log on PostgreSQL. One chain for every node: a commit takes a
//! transaction-scoped advisory lock, reads the head, computes the MACs with the callers'
//! `ChainFn`s (the vault holds the key) and inserts, all in one transaction — so appends from
//! any number of nodes serialize in the database and the chain stays single. Within a node,
//! the appends queued while one commit runs are group-committed by the next.
use super::{check_schema, corrupt, migrate, unavailable};
use crate::audit_group::{self, AuditJob, Committer, Work, chain_rows};
use async_trait::async_trait;
use phivault_core::{AuditRecord, AuditStore, ChainFn, StoreError};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use std::sync::Arc;

/// The advisory-lock key that serializes chain appends to the audit log in `schema`: one per
/// schema (FNV-1a of its name), so vaults sharing a database do not wait for each other.
fn chain_lock(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "phivault.audit.chain:".bytes().chain(schema.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

#[derive(Debug, Clone)]
pub struct PostgresAuditStore {
    log: Arc<Log>,
    committer: Arc<Committer>,
}

#[derive(Debug)]
struct Log {
    pool: PgPool,
    schema: String,
}

fn decode(row: &PgRow) -> Result<AuditRecord, StoreError> {
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

impl PostgresAuditStore {
    /// The audit store in `schema` (created and migrated if needed).
    pub async fn open(pool: PgPool, schema: &str) -> Result<Self, StoreError> {
        let schema = check_schema(schema)?.to_owned();
        migrate::run(&pool, "audit", &schema, migrate::AUDIT).await?;
        let log = Arc::new(Log { pool, schema });
        let committer = {
            let log = log.clone();
            Committer::start(move |jobs| {
                let log = log.clone();
                async move { log.commit(jobs).await }
            })
        };
        Ok(Self {
            log,
            committer: Arc::new(committer),
        })
    }
}

impl Log {
    async fn commit(&self, jobs: Vec<AuditJob>) {
        let (answers, work) = audit_group::split(jobs);
        let result = self.append(&work).await;
        audit_group::answer(answers, result);
    }

    async fn append(&self, work: &[Work]) -> Result<Vec<Vec<u64>>, StoreError> {
        let ctx = "append audit";
        let s = &self.schema;
        let mut tx = self.pool.begin().await.map_err(unavailable(ctx))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(chain_lock(s))
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
        let head = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, mac FROM {s}.audit_events ORDER BY seq DESC LIMIT 1"
        )))
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
        let (rows, seqs, _) = chain_rows(work, seq, prev)?;
        for chunk in rows.chunks(500) {
            let mut sql =
                format!("INSERT INTO {s}.audit_events (seq, recorded_at, event, mac) VALUES ");
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(${}, ${}, ${}, ${})",
                        4 * i + 1,
                        4 * i + 2,
                        4 * i + 3,
                        4 * i + 4
                    )
                })
                .collect();
            sql.push_str(&values.join(", "));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (seq, at, event, mac) in chunk {
                q = q
                    .bind(*seq)
                    .bind(*at)
                    .bind(event.as_str())
                    .bind(mac.as_slice());
            }
            q.execute(&mut *tx).await.map_err(unavailable(ctx))?;
        }
        tx.commit().await.map_err(unavailable(ctx))?;
        Ok(seqs)
    }
}

#[async_trait]
impl AuditStore for PostgresAuditStore {
    async fn append(
        &self,
        drafts: Vec<(i64, String)>,
        chain: Arc<ChainFn>,
    ) -> Result<Vec<u64>, StoreError> {
        self.committer.append(drafts, chain).await
    }

    async fn read(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let s = &self.log.schema;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, recorded_at, event, mac FROM {s}.audit_events WHERE seq > $1 \
             ORDER BY seq LIMIT $2"
        )))
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.log.pool)
        .await
        .map_err(unavailable("read audit"))?;
        rows.iter().map(decode).collect()
    }

    async fn head(&self) -> Result<Option<AuditRecord>, StoreError> {
        let s = &self.log.schema;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, recorded_at, event, mac FROM {s}.audit_events ORDER BY seq DESC LIMIT 1"
        )))
        .fetch_optional(&self.log.pool)
        .await
        .map_err(unavailable("read audit"))?;
        row.as_ref().map(decode).transpose()
    }
}
