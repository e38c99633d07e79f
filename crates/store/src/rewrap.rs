//! Key rotation's three record-store operations, written once for both backends: count the
//! rows per KEK version, list the rows still labelled with an older KEK (in `seq` order, so a
//! rotation can resume from a cursor), and store rewrapped data keys by compare-and-set.
//!
//! The reads are the same statements on SQLite and PostgreSQL (`{s}.` is the schema prefix;
//! both read `$N` placeholders). The compare-and-set is the same test on both — the row must
//! still hold exactly the key that was unwrapped, under the KEK version it was unwrapped with;
//! matching the bytes too means a row erased and replaced under the same `seq` (SQLite may
//! reuse the highest rowid) is never given another row's key — run as one UPDATE per row on
//! SQLite (local: no round trips) and one per batch on PostgreSQL.
use crate::rows::Cols;
use phivault_core::{
    Digest32, KekUsage, OrgId, ResourceId, ResourceType, Rewrap, StoreError, Version, WrappedDek,
};

const COUNT: &str = "SELECT kek_version, \
     SUM(CASE WHEN length(wrapped_dek) > 0 THEN 1 ELSE 0 END) AS deks, COUNT(*) AS n \
     FROM {s}.record_versions GROUP BY kek_version ORDER BY kek_version";

const BELOW: &str = "SELECT seq, org, rtype, id, version, link, kek_version, wrapped_dek \
     FROM {s}.record_versions WHERE kek_version < $1 AND seq > $2 ORDER BY seq LIMIT $3";

fn corrupt(ctx: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        context: ctx,
        detail: detail.into(),
    }
}

fn unavailable(ctx: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Unavailable {
        context: ctx,
        detail: e.to_string(),
    }
}

fn int<T: TryFrom<i64>>(r: &impl Cols, col: &str, ctx: &'static str) -> Result<T, StoreError> {
    let v = r.int(col).map_err(|e| corrupt(ctx, e.to_string()))?;
    T::try_from(v).map_err(|_| corrupt(ctx, col.to_owned()))
}

fn text(r: &impl Cols, col: &str, ctx: &'static str) -> Result<String, StoreError> {
    r.text(col).map_err(|e| corrupt(ctx, e.to_string()))
}

fn usage(r: &impl Cols) -> Result<KekUsage, StoreError> {
    let ctx = "count kek versions";
    Ok(KekUsage {
        kek_version: int(r, "kek_version", ctx)?,
        deks: int(r, "deks", ctx)?,
        rows: int(r, "n", ctx)?,
    })
}

fn wrapped(r: &impl Cols) -> Result<WrappedDek, StoreError> {
    let ctx = "read wrapped keys";
    Ok(WrappedDek {
        seq: int(r, "seq", ctx)?,
        org: OrgId::parse(&text(r, "org", ctx)?).map_err(|_| corrupt(ctx, "org"))?,
        rtype: ResourceType::parse_stored(&text(r, "rtype", ctx)?)
            .map_err(|_| corrupt(ctx, "resource type"))?,
        id: ResourceId::parse(&text(r, "id", ctx)?).map_err(|_| corrupt(ctx, "resource id"))?,
        version: Version(int(r, "version", ctx)?),
        link: match r
            .opt_bytes("link")
            .map_err(|e| corrupt(ctx, e.to_string()))?
        {
            None => None,
            Some(l) => Some(Digest32::from_slice(&l).ok_or_else(|| corrupt(ctx, "link"))?),
        },
        kek_version: int(r, "kek_version", ctx)?,
        wrapped_dek: r
            .bytes("wrapped_dek")
            .map_err(|e| corrupt(ctx, e.to_string()))?,
    })
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Runs a SELECT with its binds on `exec` and decodes every row.
macro_rules! fetch {
    ($sql:expr, $exec:expr, $ctx:literal, $decode:path $(, $bind:expr)*) => {
        sqlx::query($sql)
            $(.bind($bind))*
            .fetch_all($exec)
            .await
            .map_err(unavailable($ctx))?
            .iter()
            .map($decode)
            .collect()
    };
}

/// The SQLite side (one file per store: no schema prefix).
pub(crate) mod sqlite {
    use super::*;
    use crate::sqlite::Db;

    fn sql(s: &str) -> String {
        s.replace("{s}.", "")
    }

    pub(crate) async fn kek_versions(db: &Db) -> Result<Vec<KekUsage>, StoreError> {
        fetch!(
            sqlx::AssertSqlSafe(sql(COUNT)),
            &db.reader,
            "count kek versions",
            usage
        )
    }

    pub(crate) async fn wrapped_below(
        db: &Db,
        kek: u32,
        after: u64,
        limit: u32,
    ) -> Result<Vec<WrappedDek>, StoreError> {
        let q = sqlx::AssertSqlSafe(sql(BELOW));
        fetch!(
            q,
            &db.reader,
            "read wrapped keys",
            wrapped,
            i64::from(kek),
            i64_of(after),
            i64::from(limit)
        )
    }

    /// The compare-and-set, a row at a time, in one transaction.
    pub(crate) async fn rewrap(db: &Db, items: &[Rewrap]) -> Result<Vec<bool>, StoreError> {
        let ctx = "rewrap keys";
        let update = "UPDATE record_versions SET kek_version = $1, wrapped_dek = $2 \
             WHERE seq = $3 AND kek_version = $4 AND wrapped_dek = $5";
        let mut conn = db.writer.acquire().await.map_err(unavailable(ctx))?;
        let result = async {
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
                .await
                .map_err(unavailable(ctx))?;
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                let done = sqlx::query(update)
                    .bind(i64::from(it.new_kek))
                    .bind(it.new_wrapped.as_slice())
                    .bind(i64_of(it.seq))
                    .bind(i64::from(it.old_kek))
                    .bind(it.old_wrapped.as_slice())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable(ctx))?;
                out.push(done.rows_affected() == 1);
            }
            tx.commit().await.map_err(unavailable(ctx))?;
            Ok(out)
        }
        .await;
        if result.is_err() {
            // Never hand a connection back in an unknown transaction state.
            conn.close_on_drop();
        }
        result
    }
}

/// The PostgreSQL side (the store's schema as prefix).
pub(crate) mod postgres {
    use super::*;
    use sqlx::PgPool;

    fn sql(s: &str, schema: &str) -> String {
        s.replace("{s}", schema)
    }

    pub(crate) async fn kek_versions(
        pool: &PgPool,
        schema: &str,
    ) -> Result<Vec<KekUsage>, StoreError> {
        let q = sqlx::AssertSqlSafe(sql(COUNT, schema));
        fetch!(q, pool, "count kek versions", usage)
    }

    pub(crate) async fn wrapped_below(
        pool: &PgPool,
        schema: &str,
        kek: u32,
        after: u64,
        limit: u32,
    ) -> Result<Vec<WrappedDek>, StoreError> {
        let q = sqlx::AssertSqlSafe(sql(BELOW, schema));
        fetch!(
            q,
            pool,
            "read wrapped keys",
            wrapped,
            i64::from(kek),
            i64_of(after),
            i64::from(limit)
        )
    }

    /// One statement per batch (a row per round trip was ~1,100 rows/s): the items as arrays,
    /// the same compare-and-set per row, the rows that matched returned.
    pub(crate) async fn rewrap(
        pool: &PgPool,
        schema: &str,
        items: &[Rewrap],
    ) -> Result<Vec<bool>, StoreError> {
        let ctx = "rewrap keys";
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let q = sqlx::AssertSqlSafe(sql(
            "UPDATE {s}.record_versions v SET kek_version = u.new_kek, \
             wrapped_dek = u.new_wrapped \
             FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BYTEA[], $4::BIGINT[], $5::BYTEA[]) \
             AS u(seq, old_kek, old_wrapped, new_kek, new_wrapped) \
             WHERE v.seq = u.seq AND v.kek_version = u.old_kek \
             AND v.wrapped_dek = u.old_wrapped RETURNING v.seq",
            schema,
        ));
        let seqs: Vec<i64> = items.iter().map(|i| i64_of(i.seq)).collect();
        let done: Vec<i64> = sqlx::query_scalar(q)
            .bind(&seqs)
            .bind(
                items
                    .iter()
                    .map(|i| i64::from(i.old_kek))
                    .collect::<Vec<_>>(),
            )
            .bind(
                items
                    .iter()
                    .map(|i| i.old_wrapped.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                items
                    .iter()
                    .map(|i| i64::from(i.new_kek))
                    .collect::<Vec<_>>(),
            )
            .bind(
                items
                    .iter()
                    .map(|i| i.new_wrapped.clone())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(pool)
            .await
            .map_err(unavailable(ctx))?;
        let done: std::collections::HashSet<i64> = done.into_iter().collect();
        Ok(seqs.iter().map(|s| done.contains(s)).collect())
    }
}
