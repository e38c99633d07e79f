//! Search's record-store operations, written once for both backends: candidates by any of a
//! set of blind-index digests, the heads of a set of records, and reindexing a head (when the
//! vault learns new index kinds). The statements are the same on SQLite and PostgreSQL (`{s}.`
//! is the schema prefix; both read `$N` placeholders); only the executor differs.
use phivault_core::{
    Digest32, IndexKind, OrgId, RecordKey, ReindexHead, ResourceType, SealedRecord, StoreError,
};
use std::collections::BTreeSet;

fn unavailable(ctx: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Unavailable {
        context: ctx,
        detail: e.to_string(),
    }
}

const IS_HEAD: &str = "v.version = (SELECT MAX(w.version) FROM {s}.record_versions w \
     WHERE w.org = v.org AND w.rtype = v.rtype AND w.id = v.id)";

/// `$from, $from+1, …` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Live heads indexed under any of `n` digests, at most `$3` (unordered: the caller sorts;
/// an ORDER BY here lets a planner walk every record in key order instead of the index).
fn find_any_sql(n: usize) -> String {
    format!(
        "SELECT DISTINCT b.rec AS seq, v.rtype, v.id FROM {{s}}.blind_index b \
         JOIN {{s}}.record_versions v ON v.seq = b.rec \
         WHERE b.org = $1 AND b.kind = $2 AND b.digest IN ({}) LIMIT $3",
        placeholders(4, n)
    )
}

/// The first `$4` entries after row `$3` (in row order) indexed under any of `n` digests,
/// with their keys: an index range scan, then only those rows looked up.
fn stream_sql(n: usize) -> String {
    format!(
        "SELECT b.rec AS seq, v.rtype, v.id FROM (SELECT DISTINCT rec FROM {{s}}.blind_index \
         WHERE org = $1 AND kind = $2 AND rec > $3 AND digest IN ({}) ORDER BY rec LIMIT $4) b \
         JOIN {{s}}.record_versions v ON v.seq = b.rec ORDER BY b.rec",
        placeholders(5, n)
    )
}

/// Which of `m` rows are indexed under any of `n` digests: index probes only.
fn find_within_sql(n: usize, m: usize) -> String {
    format!(
        "SELECT DISTINCT rec FROM {{s}}.blind_index WHERE org = $1 AND kind = $2 \
         AND rec IN ({}) AND digest IN ({})",
        placeholders(3, m),
        placeholders(3 + m, n)
    )
}

/// The live heads of `n` ids of one type.
fn heads_sql(columns: &str, n: usize) -> String {
    format!(
        "SELECT {columns} FROM {{s}}.record_versions v WHERE v.org = $1 AND v.rtype = $2 \
         AND v.deleted = $3 AND v.id IN ({}) AND {IS_HEAD} ORDER BY v.id",
        placeholders(4, n)
    )
}

/// The `seq` of a record's version if it is the live head.
fn head_seq_sql() -> String {
    format!(
        "SELECT v.seq FROM {{s}}.record_versions v WHERE v.org = $1 AND v.rtype = $2 \
         AND v.id = $3 AND v.version = $4 AND v.deleted = $5 AND {IS_HEAD}"
    )
}
const ENTRIES: &str = "SELECT kind, digest FROM {s}.blind_index WHERE rec = $1";
const DROP_ENTRY: &str = "DELETE FROM {s}.blind_index WHERE rec = $1 AND kind = $2 AND digest = $3";
const ADD_INDEX: &str = "INSERT INTO {s}.blind_index (org, kind, digest, rec) VALUES ($1, $2, $3, $4) \
     ON CONFLICT DO NOTHING";

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The keys grouped by type (one statement per type), at most 500 ids a statement.
fn by_type(keys: &[RecordKey]) -> Vec<(ResourceType, Vec<&str>)> {
    let mut out: Vec<(ResourceType, Vec<&str>)> = Vec::new();
    for k in keys {
        match out
            .iter_mut()
            .find(|(t, ids)| *t == k.rtype && ids.len() < 500)
        {
            Some((_, ids)) => ids.push(k.id.as_str()),
            None => out.push((k.rtype, vec![k.id.as_str()])),
        }
    }
    out
}

type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>;

/// Replaces one head's index entries if `h.version` is still its live head, on either
/// backend (`schema`: the PostgreSQL schema, or "" on SQLite). Answers whether it applied.
async fn reindex_head<DB>(
    conn: &mut DB::Connection,
    schema: &str,
    org: &OrgId,
    h: &ReindexHead,
) -> Result<bool, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DB::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'r> (String, Vec<u8>): sqlx::FromRow<'r, DB::Row>,
{
    let ctx = "reindex";
    let sql = |s: &str| prefixed(schema, s);
    let seq: Option<i64> = sqlx::query_scalar(sql(&head_seq_sql()))
        .bind(org.as_str())
        .bind(h.key.rtype.as_str())
        .bind(h.key.id.as_str())
        .bind(i64_of(h.version.0))
        .bind(false)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable(ctx))?;
    let Some(seq) = seq else { return Ok(false) };
    // Only what changed is written: a new index kind adds a few entries per record, and the
    // rest (dozens per Patient) stay where they are.
    let had: BTreeSet<(String, Vec<u8>)> = sqlx::query_as(sql(ENTRIES))
        .bind(seq)
        .fetch_all(&mut *conn)
        .await
        .map_err(unavailable(ctx))?
        .into_iter()
        .collect();
    let want: BTreeSet<(String, Vec<u8>)> = h
        .index
        .iter()
        .map(|(k, d)| (k.as_str().to_owned(), d.0.to_vec()))
        .collect();
    for (kind, digest) in had.difference(&want) {
        sqlx::query(sql(DROP_ENTRY))
            .bind(seq)
            .bind(kind.as_str())
            .bind(digest.clone())
            .execute(&mut *conn)
            .await
            .map_err(unavailable(ctx))?;
    }
    for (kind, digest) in want.difference(&had) {
        sqlx::query(sql(ADD_INDEX))
            .bind(org.as_str())
            .bind(kind.as_str())
            .bind(digest.clone())
            .bind(seq)
            .execute(&mut *conn)
            .await
            .map_err(unavailable(ctx))?;
    }
    Ok(true)
}

/// Binds the parameters of [`find_any_sql`], [`find_within_sql`] and [`stream_sql`]: the
/// organization and the index kind, then `numbers` (a limit, row positions, or a position and
/// a limit), then the digests.
fn bind_lookup<'q, DB: sqlx::Database>(
    q: Query<'q, DB>,
    org: &'q OrgId,
    kind: IndexKind,
    numbers: &[i64],
    digests: &[Digest32],
) -> Query<'q, DB>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut q = q.bind(org.as_str()).bind(kind.as_str());
    for n in numbers {
        q = q.bind(*n);
    }
    for d in digests {
        q = q.bind(d.0.to_vec());
    }
    q
}

fn seq_of<R: sqlx::Row>(r: &R) -> Result<u64, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let seq: i64 = r.try_get("rec").map_err(|e| StoreError::Corrupt {
        context: "search index",
        detail: e.to_string(),
    })?;
    u64::try_from(seq).map_err(|_| StoreError::Corrupt {
        context: "search index",
        detail: "seq".into(),
    })
}

fn seq_key<R: sqlx::Row>(
    r: &R,
    decode_key: impl Fn(&R) -> Result<RecordKey, StoreError>,
) -> Result<(u64, RecordKey), StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let seq: i64 = r.try_get("seq").map_err(|e| StoreError::Corrupt {
        context: "search index",
        detail: e.to_string(),
    })?;
    let seq = u64::try_from(seq).map_err(|_| StoreError::Corrupt {
        context: "search index",
        detail: "seq".into(),
    })?;
    Ok((seq, decode_key(r)?))
}

/// A record store's search reads, written once: the backend lends its reader pool, its schema
/// (`""` on SQLite, one file per store) and its row decoders.
pub(crate) struct Index<'a, DB: sqlx::Database> {
    pub reader: &'a sqlx::Pool<DB>,
    pub schema: &'a str,
    pub columns: &'static str,
    pub decode: fn(&DB::Row) -> Result<SealedRecord, StoreError>,
    pub decode_key: fn(&DB::Row) -> Result<RecordKey, StoreError>,
}

/// A statement with `{s}.` made the schema prefix (none when `schema` is empty).
fn prefixed(schema: &str, s: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(if schema.is_empty() {
        s.replace("{s}.", "")
    } else {
        s.replace("{s}", schema)
    })
}

/// The bounds a sqlx database meets for these statements (SQLite and PostgreSQL do).
impl<DB> Index<'_, DB>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c str: sqlx::ColumnIndex<DB::Row>,
{
    pub(crate) async fn find_any(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        limit: u32,
    ) -> Result<Vec<(u64, RecordKey)>, StoreError> {
        let mut out = Vec::new();
        for chunk in digests.chunks(500) {
            let q = sqlx::query::<DB>(prefixed(self.schema, &find_any_sql(chunk.len())));
            let rows = bind_lookup(q, org, kind, &[i64::from(limit)], chunk)
                .fetch_all(self.reader)
                .await
                .map_err(unavailable("search index"))?;
            for r in &rows {
                out.push(seq_key(r, self.decode_key)?);
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out.dedup();
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }

    pub(crate) async fn stream(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, RecordKey)>, StoreError> {
        let q = sqlx::query::<DB>(prefixed(self.schema, &stream_sql(digests.len())));
        let rows = bind_lookup(q, org, kind, &[i64_of(after), i64::from(limit)], digests)
            .fetch_all(self.reader)
            .await
            .map_err(unavailable("search index"))?;
        rows.iter().map(|r| seq_key(r, self.decode_key)).collect()
    }

    pub(crate) async fn find_within(
        &self,
        org: &OrgId,
        kind: IndexKind,
        digests: &[Digest32],
        within: &[u64],
    ) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for chunk in digests.chunks(200) {
            for seqs in within.chunks(500) {
                let s = find_within_sql(chunk.len(), seqs.len());
                let q = sqlx::query::<DB>(prefixed(self.schema, &s));
                let seqs: Vec<i64> = seqs.iter().map(|s| i64_of(*s)).collect();
                let rows = bind_lookup(q, org, kind, &seqs, chunk)
                    .fetch_all(self.reader)
                    .await
                    .map_err(unavailable("search index"))?;
                for r in &rows {
                    out.push(seq_of(r)?);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    pub(crate) async fn heads(
        &self,
        org: &OrgId,
        keys: &[RecordKey],
    ) -> Result<Vec<SealedRecord>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for (rtype, ids) in by_type(keys) {
            let s = heads_sql(self.columns, ids.len());
            let mut q = sqlx::query::<DB>(prefixed(self.schema, &s))
                .bind(org.as_str())
                .bind(rtype.as_str())
                .bind(false);
            for id in ids {
                q = q.bind(id);
            }
            let rows = q
                .fetch_all(self.reader)
                .await
                .map_err(unavailable("read records"))?;
            for r in &rows {
                out.push((self.decode)(r)?);
            }
        }
        Ok(out)
    }
}

/// Reindexing on SQLite: one write transaction on the writer (`BEGIN IMMEDIATE`).
pub(crate) mod sqlite {
    use super::*;
    use crate::sqlite::Db;
    use sqlx::Sqlite;

    /// The store's search reads.
    pub(crate) fn index(db: &Db) -> Index<'_, Sqlite> {
        Index {
            reader: &db.reader,
            schema: "",
            columns: crate::sqlite::records::COLUMNS,
            decode: crate::sqlite::records::decode,
            decode_key: crate::sqlite::records::decode_key,
        }
    }

    /// Replaces the index entries of these heads, each if its `version` is still the live
    /// head, in one transaction.
    pub(crate) async fn reindex(
        db: &Db,
        org: &OrgId,
        heads: &[ReindexHead],
    ) -> Result<u64, StoreError> {
        let ctx = "reindex";
        let mut conn = db.writer.acquire().await.map_err(unavailable(ctx))?;
        let result = async {
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
                .await
                .map_err(unavailable(ctx))?;
            let mut done = 0;
            for h in heads {
                done += u64::from(reindex_head::<Sqlite>(&mut tx, "", org, h).await?);
            }
            tx.commit().await.map_err(unavailable(ctx))?;
            Ok(done)
        }
        .await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }
}

/// Reindexing on PostgreSQL: one transaction from the pool.
pub(crate) mod postgres {
    use super::*;
    use sqlx::{PgPool, Postgres};

    /// The store's search reads, in `schema`.
    pub(crate) fn index<'a>(pool: &'a PgPool, schema: &'a str) -> Index<'a, Postgres> {
        Index {
            reader: pool,
            schema,
            columns: crate::postgres::records::COLUMNS,
            decode: crate::postgres::records::decode,
            decode_key: crate::postgres::records::decode_key,
        }
    }

    /// Replaces the index entries of these heads, each if its `version` is still the live
    /// head, in one transaction.
    pub(crate) async fn reindex(
        pool: &PgPool,
        schema: &str,
        org: &OrgId,
        heads: &[ReindexHead],
    ) -> Result<u64, StoreError> {
        let ctx = "reindex";
        let mut tx = pool.begin().await.map_err(unavailable(ctx))?;
        let mut done = 0;
        for h in heads {
            done += u64::from(reindex_head::<Postgres>(&mut tx, schema, org, h).await?);
        }
        tx.commit().await.map_err(unavailable(ctx))?;
        Ok(done)
    }
}
