//! Writing record versions on SQLite inside an open transaction: version checks in the
//! insert itself, multi-row inserts for new records, and the blind-index rows.
use super::unavailable;
use phivault_core::{
    Digest32, Expected, IndexKind, OrgId, RecordWrite, ResourceId, ResourceType, SealedRecord,
    StoreError, Version, WriteOutcome,
};
use sqlx::Row;

pub(super) type Item = (OrgId, RecordWrite);

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
pub(super) async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    items: Vec<Item>,
) -> Result<Vec<WriteOutcome>, StoreError> {
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
        insert_bulk(tx, &items, chunk, &mut out).await?;
    }
    for i in 0..items.len() {
        if out[i].is_none() {
            out[i] = Some(write_one(tx, &items[i]).await?);
        }
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or(WriteOutcome::Conflict { current: None }))
        .collect())
}

/// One chunk of new records as one multi-row insert, then their blind-index rows; a record
/// another writer created first gets a conflict. Sets `out` for every item of the chunk.
// Every index in `chunk` comes from `0..items.len()`, the length of `out`: never out of range.
#[allow(clippy::indexing_slicing)]
async fn insert_bulk(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    items: &[Item],
    chunk: &[usize],
    out: &mut [Option<WriteOutcome>],
) -> Result<(), StoreError> {
    let ctx = "write records";
    let mut sql = String::from(
        "INSERT INTO record_versions (org, rtype, id, version, deleted, link, kek_version, \
         wrapped_dek, ciphertext, updated_at) VALUES ",
    );
    sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", "));
    sql.push_str(" ON CONFLICT (org, rtype, id, version) DO NOTHING RETURNING org, rtype, id, seq");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for &i in chunk {
        let (org, w) = &items[i];
        q = bind_version(q, org, &w.record);
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
    Ok(())
}

/// One write on its own, its expected version checked in the insert: written (with its
/// blind-index rows replaced), or a conflict.
async fn write_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    item: &Item,
) -> Result<WriteOutcome, StoreError> {
    let (org, w) = item;
    let r = &w.record;
    let seq = match w.expected {
        Expected::Absent if r.version == Version::FIRST => insert_version(tx, org, r, None).await?,
        Expected::Version(e) if r.version == e.next() => {
            insert_version(tx, org, r, Some(e)).await?
        }
        _ => None,
    };
    let Some(seq) = seq else {
        return conflict(tx, item).await;
    };
    if w.expected != Expected::Absent || r.deleted {
        delete_index(tx, org, r.rtype, &r.id).await?;
    }
    if !r.deleted && !w.index.is_empty() {
        let rows: Vec<_> = w.index.iter().map(|(k, d)| (org, *k, d, seq)).collect();
        insert_index(tx, &rows).await?;
    }
    Ok(WriteOutcome::Written)
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

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds the ten columns of a record version, in the order of `record_versions`.
fn bind_version<'q>(q: SqliteQuery<'q>, org: &'q OrgId, r: &'q SealedRecord) -> SqliteQuery<'q> {
    q.bind(org.as_str())
        .bind(r.rtype.as_str())
        .bind(r.id.as_str())
        .bind(v64(r.version))
        .bind(i64::from(r.deleted))
        .bind(r.link.map(|l| l.0.to_vec()))
        .bind(i64::from(r.kek_version))
        .bind(r.wrapped_dek.as_slice())
        .bind(r.ciphertext.as_slice())
        .bind(r.updated_at)
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
    let row = bind_version(sqlx::query(sql), org, r)
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
pub(super) async fn delete_index(
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

pub(super) fn v64(v: Version) -> i64 {
    i64::try_from(v.0).unwrap_or(i64::MAX)
}
