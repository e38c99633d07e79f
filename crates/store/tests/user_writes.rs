//! A person's own writes to their user row (a password change, a new TOTP seed, a completed
//! sign-in) change only their columns, and only while the row is as the sign-in step read it:
//! an administrator's disable or reset committed in between is never undone (issue 20, lost
//! updates). A second-factor attempt is reserved (lock checked, counted) in one atomic step,
//! so parallel attempts never pass a lock. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::user;
use phivault_core::{ControlStore, OrgId, Organization, UserWrite};
use std::sync::Arc;

async fn stale_writes_never_undo_an_administrators_change(c: Arc<dyn ControlStore>) {
    let org = OrgId::parse("default").unwrap();
    let made = Organization {
        id: org.clone(),
        name: "Default".into(),
        created_at: 5,
    };
    assert!(c.create_organization(&made).await.unwrap());
    assert!(c.create_user(&user("u1", "nora", &org)).await.unwrap());
    let now = |c: &Arc<dyn ControlStore>| {
        let c = c.clone();
        async move { c.user_by_id("u1").await.unwrap().unwrap() }
    };
    // The sign-in step reads the user; an administrator disables it meanwhile.
    let read = now(&c).await;
    let mut admin = read.clone();
    admin.disabled = true;
    c.update_user(&admin).await.unwrap();
    let change = UserWrite::Password {
        old: &read.password_hash,
        new: "$argon2id$new",
        changed_at: 9,
    };
    assert!(!c.write_user("u1", &change).await.unwrap());
    assert_eq!(
        now(&c).await,
        admin,
        "the stale password change undid the disable"
    );

    // Enabled again and reset: a password change from before the reset changes nothing.
    admin.disabled = false;
    admin.password_hash = "$argon2id$reset".into();
    c.update_user(&admin).await.unwrap();
    assert!(!c.write_user("u1", &change).await.unwrap());
    let seed = UserWrite::Seed {
        password: &read.password_hash,
        sealed: &[7, 7],
    };
    assert!(!c.write_user("u1", &seed).await.unwrap());
    assert_eq!(now(&c).await, admin, "a stale write undid the reset");

    // Writes from the current row apply, each to its own columns only.
    let fresh = UserWrite::Password {
        old: "$argon2id$reset",
        new: "$argon2id$chosen",
        changed_at: 9,
    };
    assert!(c.write_user("u1", &fresh).await.unwrap());
    let seed = UserWrite::Seed {
        password: "$argon2id$chosen",
        sealed: &[7, 7],
    };
    assert!(c.write_user("u1", &seed).await.unwrap());
    let lock = |_: i64| Some(1_000);
    c.count_login_failure("u1", &lock).await.unwrap();
    let u = now(&c).await;
    assert_eq!(
        (
            u.password_hash.as_str(),
            u.password_changed_at,
            u.must_change_password
        ),
        ("$argon2id$chosen", 9, false)
    );
    assert_eq!(
        (u.totp_sealed.as_deref(), u.mfa_enrolled),
        (Some(&[7u8, 7][..]), false)
    );

    // A sign-in completed with a seed the administrator reset meanwhile changes nothing…
    let mut reset = u.clone();
    reset.totp_sealed = None;
    c.update_user(&reset).await.unwrap();
    let sign_in = UserWrite::SignIn {
        sealed: &[7, 7],
        at: 42,
    };
    assert!(!c.write_user("u1", &sign_in).await.unwrap());
    assert_eq!(
        now(&c).await,
        reset,
        "the stale sign-in undid the MFA reset"
    );
    // …nor on a disabled user; on the current seed it confirms MFA and clears the failures.
    c.update_user(&u).await.unwrap();
    let mut off = u.clone();
    off.disabled = true;
    c.update_user(&off).await.unwrap();
    assert!(!c.write_user("u1", &sign_in).await.unwrap());
    assert_eq!(now(&c).await, off);
    c.update_user(&u).await.unwrap();
    assert!(c.write_user("u1", &sign_in).await.unwrap());
    let done = now(&c).await;
    assert_eq!(
        (
            done.mfa_enrolled,
            done.last_login_at,
            done.failed_logins,
            done.locked_until
        ),
        (true, Some(42), 0, None)
    );
    assert_eq!(
        (done.password_hash, done.disabled),
        (u.password_hash, false)
    );
}

async fn parallel_reservations_never_pass_a_lock(c: Arc<dyn ControlStore>) {
    let lock = |n: i64| (n >= 5).then_some(1_000);
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let c = c.clone();
        tries.spawn(async move { c.reserve_login_attempt("u1", 100, &lock).await.unwrap() });
    }
    let mut got: Vec<_> = tries.join_all().await.into_iter().flatten().collect();
    got.sort();
    let want: Vec<_> = (1..=5).map(|n| (n, lock(n))).collect();
    assert_eq!(got, want, "only the reservations before the lock pass");
    assert_eq!(
        c.reserve_login_attempt("u1", 999, &lock).await.unwrap(),
        None
    );
    assert_eq!(
        c.reserve_login_attempt("u1", 1_000, &lock).await.unwrap(),
        Some((6, Some(1_000))),
        "once unlocked, the next attempt is counted"
    );
    assert_eq!(c.user_by_id("u1").await.unwrap().unwrap().failed_logins, 6);
}

#[tokio::test]
async fn sqlite_stale_user_writes_never_undo_an_administrators_change() {
    let dir = tempfile::tempdir().unwrap();
    let stores = phivault_store::SqliteStores::open(dir.path(), true)
        .await
        .unwrap();
    stale_writes_never_undo_an_administrators_change(stores.control.clone()).await;
    parallel_reservations_never_pass_a_lock(stores.control.clone()).await;
}

#[tokio::test]
async fn postgres_stale_user_writes_never_undo_an_administrators_change() {
    let Some(pool) = common::pool().await else {
        return;
    };
    let schema = common::schema("user_writes");
    let store = phivault_store::postgres::PostgresControlStore::open(pool.clone(), &schema)
        .await
        .unwrap();
    let store: Arc<dyn ControlStore> = Arc::new(store);
    stale_writes_never_undo_an_administrators_change(store.clone()).await;
    parallel_reservations_never_pass_a_lock(store).await;
    common::drop_schema(&pool, &schema).await;
}
