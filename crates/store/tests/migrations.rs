//! Schema migrations on both backends: a store made under older migrations is brought up to
//! date with its rows kept, and a PostgreSQL control schema numbered the old way (before both
//! backends shared one list) is renumbered without running anything again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::user;
use phivault_core::{ControlStore, OrgId, Role};
use phivault_store::{Dialect, control_before};
use std::sync::Arc;

/// A user made under the control migrations before usernames became unique per organization
/// (0007).
const OLD_USER: &str = "INSERT INTO {table} (id, org, username, role, password_hash, \
    password_changed_at, must_change_password, mfa_enrolled, disabled, failed_logins, created_at) \
    VALUES ('old-1', 'default', 'nora', 'NURSE', 'x', 1, {no}, {no}, {no}, 0, 1)";

/// After the migration the old user is there, found in its organization, and its name can
/// be taken again in another organization but not in its own.
async fn names_are_per_organization_after_the_migration(c: Arc<dyn ControlStore>) {
    let org = OrgId::parse("default").unwrap();
    let other = OrgId::parse("other").unwrap();
    let old = c.user_by_name(&org, "nora").await.unwrap().unwrap();
    assert_eq!((old.id.as_str(), old.role), ("old-1", Role::Nurse));
    assert!(
        c.create_user(&user("new-1", "nora", &other)).await.unwrap(),
        "the name is free in another organization"
    );
    assert!(!c.create_user(&user("new-2", "nora", &org)).await.unwrap());
    assert!(c.user_by_name(&other, "nora").await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_migration_makes_usernames_unique_per_organization() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("control.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", db.display()))
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (v, sql) in (1i64..).zip(control_before(7, Dialect::Sqlite)) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES (?, 'old')")
            .bind(v)
            .execute(&pool)
            .await
            .unwrap();
    }
    let old = OLD_USER.replace("{table}", "users").replace("{no}", "0");
    sqlx::raw_sql(sqlx::AssertSqlSafe(old))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let stores = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    names_are_per_organization_after_the_migration(stores.control.clone()).await;
    stores.close().await;
}

#[tokio::test]
async fn postgres_migration_makes_usernames_unique_per_organization() {
    let Some(pool) = common::pool().await else {
        return;
    };
    let schema = common::schema("usernames");
    let run = |sql: String| {
        let pool = pool.clone();
        async move {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    run(format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.schema_migrations \
         (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
    ))
    .await;
    for (v, sql) in (1i64..).zip(control_before(7, Dialect::Postgres(&schema))) {
        run(sql).await;
        run(format!(
            "INSERT INTO {schema}.schema_migrations (version, name) VALUES ({v}, 'old')"
        ))
        .await;
    }
    let table = format!("{schema}.users");
    run(OLD_USER.replace("{table}", &table).replace("{no}", "false")).await;
    let store = phivault_store::postgres::PostgresControlStore::open(pool.clone(), &schema)
        .await
        .unwrap();
    names_are_per_organization_after_the_migration(Arc::new(store)).await;
    common::drop_schema(&pool, &schema).await;
}

/// The control schema's recorded migrations, in order.
async fn recorded(pool: &sqlx::PgPool, schema: &str) -> Vec<(i64, String)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, name FROM {schema}.schema_migrations ORDER BY version"
    )))
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A control schema migrated when PostgreSQL numbered its migrations apart (0001_init holding
/// SQLite's 0001–0004, then 0002_tombstones … 0005_default_purposes) gets the shared numbers
/// and runs nothing again; a store opened on it works.
#[tokio::test]
async fn postgres_control_numbered_the_old_way_is_renumbered() {
    let Some(pool) = common::pool().await else {
        return;
    };
    let schema = common::schema("renumber");
    let store = phivault_store::postgres::PostgresControlStore::open(pool.clone(), &schema)
        .await
        .unwrap();
    drop(store);
    let now = recorded(&pool, &schema).await;
    let names: Vec<&str> = now.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert_eq!(names[4], "0005_tombstones");
    let old = [
        "0001_init",
        "0002_tombstones",
        "0003_challenge_attempts",
        "0004_usernames_per_org",
        "0005_default_purposes",
    ];
    let mut sql = format!("DELETE FROM {schema}.schema_migrations;");
    for (v, name) in (1..).zip(old) {
        sql += &format!("INSERT INTO {schema}.schema_migrations VALUES ({v}, '{name}');");
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    let store = phivault_store::postgres::PostgresControlStore::open(pool.clone(), &schema)
        .await
        .unwrap();
    assert_eq!(recorded(&pool, &schema).await, now);
    let org = OrgId::parse("default").unwrap();
    assert!(store.create_user(&user("u-1", "ana", &org)).await.unwrap());
    common::drop_schema(&pool, &schema).await;
}
