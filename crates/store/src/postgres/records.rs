//! The sealed record store on PostgreSQL (identity and clinical, each in its own schema). Each
//! write's version check is in the insert itself (a unique version per record, and the
//! expected head must exist), so writers on any number of nodes never lose an update.
use super::{check_schema, corrupt, migrate, unavailable};
use async_trait::async_trait;
use phivault_core::{
    BeforeCommit, ColumnInfo, Digest32, Expected, IndexKind, OrgId, RecordKey, RecordStore,
    RecordWrite, ReindexHead, ResourceId, ResourceType, SealedRecord, StoreError, Version,
    WriteOutcome,
};
use phivault_core::{KekUsage, Rewrap, WrappedDek};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

#[derive(Debug, Clone)]
pub struct PostgresRecordStore {
    pool: PgPool,
    schema: String,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

fn v64(v: Version) -> i64 {
    i64::try_from(v.0).unwrap_or(i64::MAX)
}

pub(crate) fn decode(row: &PgRow) -> Result<SealedRecord, StoreError> {
    let ctx = "decode record";
    let g = |e: sqlx::Error| corrupt(ctx, e.to_string());
    let rtype: String = row.try_get("rtype").map_err(g)?;
    let id: String = row.try_get("id").map_err(g)?;
    let version: i64 = row.try_get("version").map_err(g)?;
    let link: Option<Vec<u8>> = row.try_get("link").map_err(g)?;
    let kek_version: i64 = row.try_get("kek_version").map_err(g)?;
    Ok(SealedRecord {
        rtype: ResourceType::parse_stored(&rtype).map_err(|_| corrupt(ctx, "resource type"))?,
        id: ResourceId::parse(&id).map_err(|_| corrupt(ctx, "resource id"))?,
        version: Version(u64::try_from(version).map_err(|_| corrupt(ctx, "version"))?),
        deleted: row.try_get("deleted").map_err(g)?,
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

pub(crate) fn decode_key(row: &PgRow) -> Result<RecordKey, StoreError> {
    let ctx = "decode key";
    let g = |e: sqlx::Error| corrupt(ctx, e.to_string());
    let rtype: String = row.try_get("rtype").map_err(g)?;
    let id: String = row.try_get("id").map_err(g)?;
    Ok(RecordKey {
        rtype: ResourceType::parse_stored(&rtype).map_err(|_| corrupt(ctx, "resource type"))?,
        id: ResourceId::parse(&id).map_err(|_| corrupt(ctx, "resource id"))?,
    })
}

pub(crate) const COLUMNS: &str = "v.rtype, v.id, v.version, v.deleted, v.link, v.kek_version, \
     v.wrapped_dek, v.ciphertext, v.updated_at";

impl PostgresRecordStore {
    /// This store's search reads.
    fn index(&self) -> crate::search_index::Index<'_, sqlx::Postgres> {
        crate::search_index::postgres::index(&self.pool, &self.schema)
    }

    /// The record store in `schema` (created and migrated if needed).
    pub async fn open(pool: PgPool, schema: &str) -> Result<Self, StoreError> {
        let schema = check_schema(schema)?.to_owned();
        migrate::run(&pool, "records", &schema, migrate::RECORDS).await?;
        Ok(Self { pool, schema })
    }

    fn is_head(&self) -> String {
        format!(
            "v.version = (SELECT MAX(w.version) FROM {}.record_versions w \
             WHERE w.org = v.org AND w.rtype = v.rtype AND w.id = v.id)",
            self.schema
        )
    }

    /// Inserts one version if the head is what the writer expects; `None` on a conflict.
    async fn insert_version(
        &self,
        tx: &mut Tx<'_>,
        org: &OrgId,
        w: &RecordWrite,
    ) -> Result<Option<i64>, StoreError> {
        let s = &self.schema;
        let r = &w.record;
        let after = match w.expected {
            Expected::Absent if r.version == Version::FIRST => None,
            Expected::Version(e) if r.version == e.next() => Some(e),
            _ => return Ok(None),
        };
        let guard = match after {
            None => "$11::BIGINT IS NULL".to_owned(),
            Some(_) => format!(
                "EXISTS (SELECT 1 FROM {s}.record_versions WHERE org = $1 AND rtype = $2 \
                 AND id = $3 AND version = $11)"
            ),
        };
        let sql = format!(
            "INSERT INTO {s}.record_versions (org, rtype, id, version, deleted, link, \
             kek_version, wrapped_dek, ciphertext, updated_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE {guard} \
             ON CONFLICT (org, rtype, id, version) DO NOTHING RETURNING seq"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org.as_str())
            .bind(r.rtype.as_str())
            .bind(r.id.as_str())
            .bind(v64(r.version))
            .bind(r.deleted)
            .bind(r.link.map(|l| l.0.to_vec()))
            .bind(i64::from(r.kek_version))
            .bind(r.wrapped_dek.as_slice())
            .bind(r.ciphertext.as_slice())
            .bind(r.updated_at)
            .bind(after.map(v64))
            .fetch_optional(&mut **tx)
            .await
            .map_err(unavailable("write records"))?;
        row.map(|r| r.try_get::<i64, _>(0))
            .transpose()
            .map_err(unavailable("write records"))
    }

    async fn current(
        &self,
        tx: &mut Tx<'_>,
        org: &OrgId,
        w: &RecordWrite,
    ) -> Result<Option<Version>, StoreError> {
        let s = &self.schema;
        let v: Option<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT MAX(version) FROM {s}.record_versions WHERE org = $1 AND rtype = $2 AND id = $3"
        )))
        .bind(org.as_str())
        .bind(w.record.rtype.as_str())
        .bind(w.record.id.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(unavailable("write records"))?
        .try_get(0)
        .map_err(unavailable("write records"))?;
        Ok(v.map(|v| Version(u64::try_from(v).unwrap_or(0))))
    }

    /// Applies the writes in order inside `tx`; the index follows each written head.
    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        org: &OrgId,
        writes: &[RecordWrite],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let s = &self.schema;
        let ctx = "write index";
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            let Some(seq) = self.insert_version(tx, org, w).await? else {
                out.push(WriteOutcome::Conflict {
                    current: self.current(tx, org, w).await?,
                });
                continue;
            };
            let r = &w.record;
            if w.expected != Expected::Absent || r.deleted {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {s}.blind_index WHERE rec IN (SELECT seq FROM {s}.record_versions \
                     WHERE org = $1 AND rtype = $2 AND id = $3 AND seq <> $4)"
                )))
                .bind(org.as_str())
                .bind(r.rtype.as_str())
                .bind(r.id.as_str())
                .bind(seq)
                .execute(&mut **tx)
                .await
                .map_err(unavailable(ctx))?;
            }
            if !r.deleted {
                for (kind, digest) in &w.index {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO {s}.blind_index (org, kind, digest, rec) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT DO NOTHING"
                    )))
                    .bind(org.as_str())
                    .bind(kind.as_str())
                    .bind(digest.0.as_slice())
                    .bind(seq)
                    .execute(&mut **tx)
                    .await
                    .map_err(unavailable(ctx))?;
                }
            }
            out.push(WriteOutcome::Written);
        }
        Ok(out)
    }
}

#[async_trait]
impl RecordStore for PostgresRecordStore {
    async fn head(&self, org: &OrgId, key: &RecordKey) -> Result<Option<SealedRecord>, StoreError> {
        let s = &self.schema;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {s}.record_versions v WHERE v.org = $1 AND v.rtype = $2 \
             AND v.id = $3 ORDER BY v.version DESC LIMIT 1"
        )))
        .bind(org.as_str())
        .bind(key.rtype.as_str())
        .bind(key.id.as_str())
        .fetch_optional(&self.pool)
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
        let s = &self.schema;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {s}.record_versions v WHERE v.org = $1 AND v.rtype = $2 \
             AND v.id = $3 AND v.version = $4"
        )))
        .bind(org.as_str())
        .bind(key.rtype.as_str())
        .bind(key.id.as_str())
        .bind(v64(version))
        .fetch_optional(&self.pool)
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
        let ctx = "write records";
        let mut tx = self.pool.begin().await.map_err(unavailable(ctx))?;
        let outcomes = self.apply(&mut tx, org, &writes).await?;
        if let Some(hook) = before_commit {
            hook(outcomes.clone()).await?;
        }
        tx.commit().await.map_err(unavailable(ctx))?;
        Ok(outcomes)
    }

    async fn write_all(
        &self,
        org: &OrgId,
        writes: Vec<RecordWrite>,
        before_commit: Option<BeforeCommit>,
    ) -> Result<Result<(), Vec<(usize, Option<Version>)>>, StoreError> {
        let ctx = "write records";
        let mut tx = self.pool.begin().await.map_err(unavailable(ctx))?;
        let outcomes = self.apply(&mut tx, org, &writes).await?;
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

    async fn find(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digest: &Digest32,
    ) -> Result<Vec<RecordKey>, StoreError> {
        let s = &self.schema;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT v.rtype, v.id FROM {s}.blind_index b JOIN {s}.record_versions v ON v.seq = b.rec \
             WHERE b.org = $1 AND b.kind = $2 AND b.digest = $3 ORDER BY v.rtype, v.id"
        )))
        .bind(org.as_str())
        .bind(kind.as_str())
        .bind(digest.0.to_vec())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable("search index"))?;
        rows.iter().map(decode_key).collect()
    }

    async fn linked(&self, org: &OrgId, link: &Digest32) -> Result<Vec<SealedRecord>, StoreError> {
        let s = &self.schema;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {s}.record_versions v WHERE v.org = $1 AND v.link = $2 \
             AND NOT v.deleted AND {} ORDER BY v.rtype, v.id",
            self.is_head()
        )))
        .bind(org.as_str())
        .bind(link.0.to_vec())
        .fetch_all(&self.pool)
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
        let s = &self.schema;
        let (after_type, after_id) = after
            .map(|k| (k.rtype.as_str(), k.id.as_str()))
            .unwrap_or(("", ""));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {s}.record_versions v WHERE v.org = $1 \
             AND (v.rtype, v.id) > ($2, $3) AND NOT v.deleted AND {} \
             ORDER BY v.rtype, v.id LIMIT $4",
            self.is_head()
        )))
        .bind(org.as_str())
        .bind(after_type)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable("list records"))?;
        rows.iter().map(decode).collect()
    }

    /// Deletes every version and index entry. PostgreSQL keeps dead row versions until VACUUM
    /// reuses their space, so the store runs a VACUUM of its tables afterwards; what stays in
    /// old WAL segments and backups is wrapped under a KEK (rotate it to retire those copies).
    async fn erase(&self, org: &OrgId, keys: &[RecordKey]) -> Result<u64, StoreError> {
        let ctx = "erase records";
        let s = &self.schema;
        let mut tx = self.pool.begin().await.map_err(unavailable(ctx))?;
        let mut destroyed = 0;
        for k in keys {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {s}.blind_index WHERE rec IN (SELECT seq FROM {s}.record_versions \
                 WHERE org = $1 AND rtype = $2 AND id = $3)"
            )))
            .bind(org.as_str())
            .bind(k.rtype.as_str())
            .bind(k.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
            let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {s}.record_versions WHERE org = $1 AND rtype = $2 AND id = $3"
            )))
            .bind(org.as_str())
            .bind(k.rtype.as_str())
            .bind(k.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
            destroyed += done.rows_affected();
        }
        tx.commit().await.map_err(unavailable(ctx))?;
        // One statement each: VACUUM cannot run inside a (multi-statement) transaction block.
        for table in ["record_versions", "blind_index"] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM {s}.{table}")))
                .execute(&self.pool)
                .await
                .map_err(unavailable(ctx))?;
        }
        Ok(destroyed)
    }

    async fn linked_keys(
        &self,
        org: &OrgId,
        link: &Digest32,
    ) -> Result<Vec<RecordKey>, StoreError> {
        let s = &self.schema;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT rtype, id FROM {s}.record_versions WHERE org = $1 AND link = $2 \
             ORDER BY rtype, id"
        )))
        .bind(org.as_str())
        .bind(link.0.to_vec())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable("list linked keys"))?;
        rows.iter().map(decode_key).collect()
    }

    async fn columns(&self) -> Result<Vec<ColumnInfo>, StoreError> {
        let ctx = "list columns";
        let rows = sqlx::query(
            "SELECT table_name::text AS tbl, column_name::text AS col, \
             lower(data_type::text) AS ty FROM information_schema.columns \
             WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
        )
        .bind(&self.schema)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable(ctx))?;
        rows.iter().map(crate::rows::column).collect()
    }

    async fn kek_versions(&self) -> Result<Vec<KekUsage>, StoreError> {
        crate::rewrap::postgres::kek_versions(&self.pool, &self.schema).await
    }

    async fn wrapped_below(
        &self,
        kek: u32,
        after: u64,
        limit: u32,
    ) -> Result<Vec<WrappedDek>, StoreError> {
        crate::rewrap::postgres::wrapped_below(&self.pool, &self.schema, kek, after, limit).await
    }

    async fn find_any(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        limit: u32,
    ) -> Result<Vec<(u64, RecordKey)>, StoreError> {
        self.index().find_any(org, kind, digests, limit).await
    }

    async fn stream(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, RecordKey)>, StoreError> {
        self.index().stream(org, kind, digests, after, limit).await
    }

    async fn find_within(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        within: &[u64],
    ) -> Result<Vec<u64>, StoreError> {
        self.index().find_within(org, kind, digests, within).await
    }

    async fn heads(
        &self,
        org: &OrgId,
        keys: &[RecordKey],
    ) -> Result<Vec<SealedRecord>, StoreError> {
        self.index().heads(org, keys).await
    }

    async fn reindex(&self, org: &OrgId, heads: &[ReindexHead]) -> Result<u64, StoreError> {
        crate::search_index::postgres::reindex(&self.pool, &self.schema, org, heads).await
    }

    async fn rewrap(&self, items: &[Rewrap]) -> Result<Vec<bool>, StoreError> {
        crate::rewrap::postgres::rewrap(&self.pool, &self.schema, items).await
    }
}
