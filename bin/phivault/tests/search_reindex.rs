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

/// Every search leaves one audit event naming the rows it released (and their patients), and
/// a refused one leaves one failure event; none holds a criterion.
#[tokio::test]
async fn a_search_is_one_audit_event_naming_what_it_released() {
    use phivault_vault::audit::AuditEvent;
    use phivault_vault::audit::export::AuditFilter;
    let tmp = tempfile::tempdir().unwrap();
    let o = new_vault(&tmp.path().join("data")).await;
    import_files(&o, &repo_fixtures(), true).await;
    let c = ctx(&o).await;
    let events = || async {
        let all: Vec<AuditEvent> = o
            .vault
            .audit_events(&c, &AuditFilter::default())
            .await
            .unwrap();
        all
    };
    let before = events().await.len();
    let found = names_found(&o, &c, &[("family", "quin"), ("birthdate", "ge1900")]).await;
    let after = events().await;
    assert_eq!(after.len(), before + 1, "one event for the search");
    let e = after.last().unwrap();
    assert_eq!(
        (e.action.as_str(), e.count),
        ("search", Some(found.len() as u64))
    );
    assert_eq!(e.entities.len(), found.len());
    assert_eq!(e.patients.len(), found.len());
    let shown = format!("{e:?}");
    assert!(!shown.to_lowercase().contains("quin"), "{shown}");

    let pairs = vec![("gender".to_owned(), "female".to_owned())];
    let spec = SearchSpec::parse(ResourceType::PATIENT, &pairs, false).unwrap();
    let refused = o.vault.search(&c, &spec).await;
    assert!(matches!(
        refused,
        Err(phivault_vault::VaultError::TooCostly(_))
    ));
    let last = events().await;
    assert_eq!(last.len(), before + 2);
    assert_eq!(last.last().unwrap().reason.as_deref(), Some("too-costly"));
    o.close().await;
}

/// The Quintanilla-Oyelaran patients found decade by decade (each a family + birth-date
/// search the family-year index answers).
async fn by_decades(o: &Opened, c: &Ctx) -> Vec<String> {
    let mut all = Vec::new();
    for y in (1900..2030).step_by(10) {
        let (ge, lt) = (format!("ge{y}-01-01"), format!("lt{}-01-01", y + 10));
        let q = [
            ("family", "Quintan"),
            ("birthdate", &ge),
            ("birthdate", &lt),
        ];
        all.extend(names_found(o, c, &q).await);
    }
    all.sort();
    all
}

/// A vault indexed by version 1 (before the family + birth-year index) gets it at the next
/// reindex, for its Patients only.
#[tokio::test]
async fn version_one_vaults_get_the_family_year_index_for_patients_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = new_vault(&dir).await;
    import_files(&o, &repo_fixtures(), true).await;
    let c = ctx(&o).await;
    let all = names_found(&o, &c, &[("family", "quin"), ("birthdate", "ge1900")]).await;
    assert!(!all.is_empty());
    assert_eq!(by_decades(&o, &c).await, all);

    let mark = |v: &'static str| {
        let dir = dir.clone();
        async move {
            let control = RawDb::open(&dir, "control").await;
            control
                .exec(&format!(
                    "DELETE FROM settings WHERE key LIKE 'search-index:%'; \
                     INSERT INTO settings (key, value) SELECT 'search-index:default', '{v}' \
                     WHERE '{v}' <> ''"
                ))
                .await;
            control.close().await;
        }
    };
    mark("").await;
    let every = o.vault.reindex_search(&c).await.unwrap().unwrap();

    let raw = RawDb::open(&dir, "identity").await;
    raw.exec("DELETE FROM blind_index WHERE kind = 'family-year'")
        .await;
    raw.close().await;
    mark("1").await;
    assert!(
        by_decades(&o, &c).await.is_empty(),
        "without its entries the family-year index finds nothing"
    );
    let patients = o.vault.reindex_search(&c).await.unwrap().unwrap();
    assert!(
        patients >= all.len() as u64 && patients < every,
        "{patients} Patients reindexed of {every} records"
    );
    assert_eq!(by_decades(&o, &c).await, all);
    assert_eq!(o.vault.reindex_search(&c).await.unwrap(), None);
    o.close().await;
}
