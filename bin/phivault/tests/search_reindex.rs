//! Search indexes for records written before them: `reindex_search` (run at `serve` start)
//! gives every live record its entries, once per organization, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::raw::RawDb;
use common::*;
use phivault::datadir::Opened;
use phivault_core::ResourceType;
use phivault_vault::Ctx;
use phivault_vault::search::SearchSpec;

async fn names_found(o: &Opened, c: &Ctx, query: &[(&str, &str)]) -> Vec<String> {
    let pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let spec = SearchSpec::parse(ResourceType::PATIENT, &pairs, false).unwrap();
    let mut ids: Vec<String> = o
        .vault
        .search(c, &spec)
        .await
        .unwrap()
        .matches
        .iter()
        .map(|s| s.id.as_str().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn records_written_before_the_search_indexes_get_them_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    import_files(&o, &repo_fixtures(), true).await;
    let c = ctx(&o).await;
    assert_eq!(
        o.vault.reindex_search(&c).await.unwrap(),
        None,
        "a new vault's records are indexed as they are written"
    );
    let query = [("family", "quin"), ("birthdate", "ge1900")];
    let before = names_found(&o, &c, &query).await;
    assert!(
        !before.is_empty(),
        "the fixtures hold a Quintanilla-Oyelaran"
    );

    // As a vault made before search: none of its entries, no mark.
    let kinds = "('name-prefix', 'name-phonetic', 'birth-year', 'birth-month', 'birth-day', \
                 'address-prefix', 'email', 'reference')";
    for store in ["identity", "clinical"] {
        let raw = RawDb::open(&dir, store).await;
        raw.exec(&format!("DELETE FROM blind_index WHERE kind IN {kinds}"))
            .await;
        raw.close().await;
    }
    let control = RawDb::open(&dir, "control").await;
    control
        .exec("DELETE FROM settings WHERE key LIKE 'search-index:%'")
        .await;
    control.close().await;
    assert!(
        names_found(&o, &c, &query).await.is_empty(),
        "without the entries the index finds nothing"
    );

    let n = o.vault.reindex_search(&c).await.unwrap().unwrap();
    assert!(n >= 5, "every live record reindexed: {n}");
    assert_eq!(names_found(&o, &c, &query).await, before);
    assert_eq!(o.vault.reindex_search(&c).await.unwrap(), None);
    o.close().await;
}
