//! Decoding control rows once for both backends: a row of either kind answers the typed
//! column reads these decoders need.
use phivault_core::{
    ClientChange, ClientRecord, ColumnInfo, GrantRecord, OrgId, RecordKey, ResourceId,
    ResourceType, Role, SessionRecord, StoreError, StoreKind, Tombstone, UserRecord,
};
use sqlx::Row;

/// [`phivault_core::ControlStore::bump_counter`] for both backends (`{s}.` is the schema
/// prefix: removed on SQLite, the store's schema on PostgreSQL).
pub(crate) const BUMP_COUNTER: &str = "INSERT INTO {s}.settings (key, value) VALUES (?, '1') \
     ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT) \
     RETURNING value";

/// The new value [`BUMP_COUNTER`] returned.
pub(crate) fn counter_value(value: &str) -> Result<i64, StoreError> {
    value.trim().parse().map_err(|_| StoreError::Corrupt {
        context: "count",
        detail: "a counter that is not a whole number".into(),
    })
}

/// Typed column reads.
pub(crate) trait Cols {
    fn text(&self, c: &str) -> Result<String, sqlx::Error>;
    fn int(&self, c: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&self, c: &str) -> Result<bool, sqlx::Error>;
    fn bytes(&self, c: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn opt_bytes(&self, c: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

macro_rules! cols_for {
    ($row:ty) => {
        impl Cols for $row {
            fn text(&self, c: &str) -> Result<String, sqlx::Error> {
                self.try_get(c)
            }
            fn int(&self, c: &str) -> Result<i64, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(c)
            }
            fn flag(&self, c: &str) -> Result<bool, sqlx::Error> {
                self.try_get(c)
            }
            fn bytes(&self, c: &str) -> Result<Vec<u8>, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_bytes(&self, c: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
                self.try_get(c)
            }
        }
    };
}

cols_for!(sqlx::sqlite::SqliteRow);
cols_for!(sqlx::postgres::PgRow);

fn bad(ctx: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        context: ctx,
        detail: e.to_string(),
    }
}

fn org(r: &impl Cols, ctx: &'static str) -> Result<OrgId, StoreError> {
    OrgId::parse(&r.text("org").map_err(bad(ctx))?).map_err(|_| StoreError::Corrupt {
        context: ctx,
        detail: "org".into(),
    })
}

fn role(r: &impl Cols, ctx: &'static str) -> Result<Role, StoreError> {
    Role::parse(&r.text("role").map_err(bad(ctx))?).ok_or(StoreError::Corrupt {
        context: ctx,
        detail: "role".into(),
    })
}

/// The columns [`user`] reads, as a `SELECT … FROM {table}`.
pub(crate) fn user_columns(table: &str) -> String {
    format!(
        "SELECT id, org, username, role, password_hash, password_changed_at, \
         must_change_password, totp_sealed, totp_last_step, mfa_enrolled, disabled, \
         failed_logins, locked_until, last_login_at, created_at FROM {table}"
    )
}

pub(crate) fn user(r: &impl Cols) -> Result<UserRecord, StoreError> {
    let ctx = "read user";
    let g = bad(ctx);
    Ok(UserRecord {
        id: r.text("id").map_err(&g)?,
        org: org(r, ctx)?,
        username: r.text("username").map_err(&g)?,
        role: role(r, ctx)?,
        password_hash: r.text("password_hash").map_err(&g)?,
        password_changed_at: r.int("password_changed_at").map_err(&g)?,
        must_change_password: r.flag("must_change_password").map_err(&g)?,
        totp_sealed: r.opt_bytes("totp_sealed").map_err(&g)?,
        totp_last_step: r.opt_int("totp_last_step").map_err(&g)?,
        mfa_enrolled: r.flag("mfa_enrolled").map_err(&g)?,
        disabled: r.flag("disabled").map_err(&g)?,
        failed_logins: r.int("failed_logins").map_err(&g)?,
        locked_until: r.opt_int("locked_until").map_err(&g)?,
        last_login_at: r.opt_int("last_login_at").map_err(&g)?,
        created_at: r.int("created_at").map_err(&g)?,
    })
}

pub(crate) fn session(r: &impl Cols) -> Result<SessionRecord, StoreError> {
    let ctx = "read session";
    let g = bad(ctx);
    Ok(SessionRecord {
        token_hash: r.bytes("token_hash").map_err(&g)?,
        kind: r.text("kind").map_err(&g)?,
        subject: r.text("subject").map_err(&g)?,
        org: org(r, ctx)?,
        created_at: r.int("created_at").map_err(&g)?,
        last_seen_at: r.int("last_seen_at").map_err(&g)?,
        expires_at: r.int("expires_at").map_err(&g)?,
        revoked: r.flag("revoked").map_err(&g)?,
        scopes: r.text("scopes").map_err(&g)?,
        purpose: Some(r.text("purpose").map_err(&g)?).filter(|p| !p.is_empty()),
    })
}

pub(crate) fn grant(r: &impl Cols) -> Result<GrantRecord, StoreError> {
    let ctx = "read grant";
    let g = bad(ctx);
    Ok(GrantRecord {
        id: r.text("id").map_err(&g)?,
        org: org(r, ctx)?,
        user_id: r.text("user_id").map_err(&g)?,
        patient: r.text("patient").map_err(&g)?,
        purpose: r.text("purpose").map_err(&g)?,
        kind: r.text("kind").map_err(&g)?,
        reason_sealed: r.opt_bytes("reason_sealed").map_err(&g)?,
        granted_by: r.text("granted_by").map_err(&g)?,
        created_at: r.int("created_at").map_err(&g)?,
        expires_at: r.int("expires_at").map_err(&g)?,
        revoked: r.flag("revoked").map_err(&g)?,
    })
}

pub(crate) fn client(r: &impl Cols) -> Result<ClientRecord, StoreError> {
    let ctx = "read client";
    let g = bad(ctx);
    Ok(ClientRecord {
        id: r.text("id").map_err(&g)?,
        org: org(r, ctx)?,
        name: r.text("name").map_err(&g)?,
        role: role(r, ctx)?,
        scopes: r.text("scopes").map_err(&g)?,
        purposes: r.text("purposes").map_err(&g)?,
        default_purpose: Some(r.text("default_purpose").map_err(&g)?).filter(|p| !p.is_empty()),
        secret_hash: r.bytes("secret_hash").map_err(&g)?,
        disabled: r.flag("disabled").map_err(&g)?,
        created_at: r.int("created_at").map_err(&g)?,
    })
}

/// The statements both backends run, with `{s}.` before each table name (the schema on
/// PostgreSQL, nothing on SQLite) and `?` placeholders.
pub(crate) mod sql {
    /// A new client: bind [`super::create_client`]'s columns.
    pub(crate) const CREATE_CLIENT: &str = "INSERT INTO {s}.clients (id, org, name, role, \
         scopes, purposes, default_purpose, secret_hash, disabled, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";
    /// An organization's default purpose for a role: bind the organization and the role.
    pub(crate) const ROLE_DEFAULT_PURPOSE: &str =
        "SELECT purpose FROM {s}.role_default_purposes WHERE org = ? AND role = ?";
    /// Sets it: bind the organization, the role and the purpose.
    pub(crate) const SET_ROLE_DEFAULT_PURPOSE: &str = "INSERT INTO {s}.role_default_purposes \
         (org, role, purpose) VALUES (?, ?, ?) \
         ON CONFLICT (org, role) DO UPDATE SET purpose = excluded.purpose";
    /// Clears it: bind the organization and the role.
    pub(crate) const CLEAR_ROLE_DEFAULT_PURPOSE: &str =
        "DELETE FROM {s}.role_default_purposes WHERE org = ? AND role = ?";
    /// The clients, optionally of one organization: bind the organization twice (or NULL).
    pub(crate) const CLIENTS: &str = "SELECT id, org, name, role, scopes, purposes, \
         default_purpose, secret_hash, disabled, created_at FROM {s}.clients \
         WHERE (? IS NULL OR org = ?) ORDER BY org, name, id";
    /// Live grants of one organization: bind the organization and now.
    pub(crate) const LIVE_GRANTS_IN: &str = "SELECT id, org, user_id, patient, purpose, kind, \
         reason_sealed, granted_by, created_at, expires_at, revoked FROM {s}.grants \
         WHERE org = ? AND revoked = ? AND expires_at > ? ORDER BY created_at, id";
    /// A client's change: bind [`super::client_change`]'s disabled flag and secret hash (NULL
    /// keeps the column), then the id.
    pub(crate) const CHANGE_CLIENT: &str = "UPDATE {s}.clients \
         SET disabled = COALESCE(?, disabled), secret_hash = COALESCE(?, secret_hash) \
         WHERE id = ?";
    /// A person's chosen password: bind the new hash, the time, false, the id, the old hash,
    /// false.
    pub(crate) const SET_PASSWORD: &str = "UPDATE {s}.users SET password_hash = ?, \
         password_changed_at = ?, must_change_password = ? \
         WHERE id = ? AND password_hash = ? AND disabled = ?";
    /// A new unconfirmed TOTP seed: bind the sealed seed, false, the id, the password hash,
    /// false.
    pub(crate) const SET_SEED: &str = "UPDATE {s}.users SET totp_sealed = ?, \
         totp_last_step = NULL, mfa_enrolled = ? \
         WHERE id = ? AND password_hash = ? AND disabled = ?";
    /// A completed sign-in: bind true, the time, the id, the sealed seed, false.
    pub(crate) const SIGNED_IN: &str = "UPDATE {s}.users SET mfa_enrolled = ?, \
         last_login_at = ?, failed_logins = 0, locked_until = NULL \
         WHERE id = ? AND totp_sealed = ? AND disabled = ?";
    /// Counts a failed (or reserved) sign-in step, unless locked: bind the id, then the time
    /// twice (NULL: count even when locked).
    pub(crate) const COUNT_FAILURE: &str = "UPDATE {s}.users \
         SET failed_logins = failed_logins + 1 WHERE id = ? \
         AND (? IS NULL OR locked_until IS NULL OR locked_until <= ?) RETURNING failed_logins";
    /// Locks an account: bind the time it unlocks, the id.
    pub(crate) const LOCK_USER: &str = "UPDATE {s}.users SET locked_until = ? WHERE id = ?";
    /// Ends a client's tokens: bind true, the client id, false.
    pub(crate) const REVOKE_CLIENT_TOKENS: &str = "UPDATE {s}.sessions SET revoked = ? \
         WHERE subject = ? AND kind = 'bearer' AND revoked = ?";
}

/// `ControlStore::change_client` for either backend, in one transaction from `$begin` (a
/// pool's `begin()`), `$sql` turning a shared statement of [`sql`] into the backend's, and
/// the backend's `unavailable` in scope.
macro_rules! change_client {
    ($begin:expr, $sql:expr, $id:expr, $change:expr) => {{
        let ctx = "change client";
        let (disabled, secret) = $crate::rows::client_change($change);
        let mut tx = $begin.await.map_err(unavailable(ctx))?;
        let found = sqlx::query($sql($crate::rows::sql::CHANGE_CLIENT))
            .bind(disabled)
            .bind(secret)
            .bind($id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
        if found.rows_affected() != 1 {
            return Ok(None);
        }
        let mut revoked = 0;
        if $change.revokes_tokens() {
            revoked = sqlx::query($sql($crate::rows::sql::REVOKE_CLIENT_TOKENS))
                .bind(true)
                .bind($id)
                .bind(false)
                .execute(&mut *tx)
                .await
                .map_err(unavailable(ctx))?
                .rows_affected();
        }
        tx.commit().await.map_err(unavailable(ctx))?;
        Ok(Some(revoked))
    }};
}
pub(crate) use change_client;

/// `ControlStore::write_user` for either backend, on `$pool`, `$sql` turning a shared statement
/// of [`sql`] into the backend's, and the backend's `unavailable` in scope.
macro_rules! write_user {
    ($pool:expr, $sql:expr, $id:expr, $w:expr) => {{
        use phivault_core::UserWrite as W;
        let q = match $w {
            W::Password {
                old,
                new,
                changed_at,
            } => sqlx::query($sql($crate::rows::sql::SET_PASSWORD))
                .bind(*new)
                .bind(*changed_at)
                .bind(false)
                .bind($id)
                .bind(*old),
            W::Seed { password, sealed } => sqlx::query($sql($crate::rows::sql::SET_SEED))
                .bind(*sealed)
                .bind(false)
                .bind($id)
                .bind(*password),
            W::SignIn { sealed, at } => sqlx::query($sql($crate::rows::sql::SIGNED_IN))
                .bind(true)
                .bind(*at)
                .bind($id)
                .bind(*sealed),
        };
        let done = q
            .bind(false)
            .execute($pool)
            .await
            .map_err(unavailable("write user"))?;
        Ok(done.rows_affected() == 1)
    }};
}
pub(crate) use write_user;

/// `ControlStore::count_login_failure` (`$unless_locked_at` `None`) and
/// `reserve_login_attempt` (`Some(now)`) for either backend, in one transaction from `$begin`:
/// `Some((count, lock))`, or `None` when locked at that time (or no such user).
macro_rules! count_failure {
    ($begin:expr, $sql:expr, $id:expr, $lock:expr, $unless_locked_at:expr) => {
        async {
            let ctx = "count login failure";
            let at: Option<i64> = $unless_locked_at;
            let mut tx = $begin.await.map_err(unavailable(ctx))?;
            let n: Option<i64> = sqlx::query_scalar($sql($crate::rows::sql::COUNT_FAILURE))
                .bind($id)
                .bind(at)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable(ctx))?;
            let Some(n) = n else {
                return Ok(None);
            };
            let until = $lock(n);
            if until.is_some() {
                sqlx::query($sql($crate::rows::sql::LOCK_USER))
                    .bind(until)
                    .bind($id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable(ctx))?;
            }
            tx.commit().await.map_err(unavailable(ctx))?;
            Ok::<_, phivault_core::StoreError>(Some((n, until)))
        }
    };
}
pub(crate) use count_failure;

/// Runs a shared listing statement on `$pool` with the binds and decodes every row with
/// `$decode`; the backend's `unavailable` in scope.
macro_rules! fetch_all {
    ($pool:expr, $statement:expr, $decode:path, $ctx:literal $(, $bind:expr)*) => {{
        let rows = sqlx::query($statement)
            $(.bind($bind))*
            .fetch_all($pool)
            .await
            .map_err(unavailable($ctx))?;
        rows.iter().map($decode).collect()
    }};
}
pub(crate) use fetch_all;

/// What [`sql::CHANGE_CLIENT`] sets: the disabled flag and the secret hash (`None` keeps it).
pub(crate) fn client_change(c: &ClientChange) -> (Option<bool>, Option<&[u8]>) {
    match c {
        ClientChange::Disable => (Some(true), None),
        ClientChange::Enable => (Some(false), None),
        ClientChange::Secret(hash) => (None, Some(hash.as_slice())),
        ClientChange::RevokeTokens => (None, None),
    }
}

/// A row of a catalogue query selecting `tbl`, `col` and `ty`.
pub(crate) fn column(r: &impl Cols) -> Result<ColumnInfo, StoreError> {
    let g = bad("list columns");
    Ok(ColumnInfo {
        table: r.text("tbl").map_err(&g)?,
        column: r.text("col").map_err(&g)?,
        sql_type: r.text("ty").map_err(&g)?,
    })
}

/// The columns [`tombstone`] reads, as a `SELECT … FROM {table}`, oldest first.
pub(crate) fn tombstone_query(table: &str) -> String {
    format!(
        "SELECT org, store, rtype, id, erased_at FROM {table} \
         ORDER BY erased_at, org, store, rtype, id"
    )
}

pub(crate) fn tombstone(r: &impl Cols) -> Result<Tombstone, StoreError> {
    let ctx = "read tombstone";
    let g = bad(ctx);
    let corrupt = |what: &str| StoreError::Corrupt {
        context: ctx,
        detail: what.into(),
    };
    let store = match r.text("store").map_err(&g)?.as_str() {
        "identity" => StoreKind::Identity,
        "clinical" => StoreKind::Clinical,
        _ => return Err(corrupt("store")),
    };
    Ok(Tombstone {
        org: org(r, ctx)?,
        store,
        key: RecordKey {
            rtype: ResourceType::parse_stored(&r.text("rtype").map_err(&g)?)
                .map_err(|_| corrupt("rtype"))?,
            id: ResourceId::parse(&r.text("id").map_err(&g)?).map_err(|_| corrupt("id"))?,
        },
        erased_at: r.int("erased_at").map_err(&g)?,
    })
}

/// An organization's default purpose for a role, on either backend (`$sql` makes a
/// statement of [`sql`]'s text).
macro_rules! role_default_purpose {
    ($pool:expr, $sql:expr, $org:expr, $role:expr) => {{
        let ctx = "read default purpose";
        let row = sqlx::query($sql($crate::rows::sql::ROLE_DEFAULT_PURPOSE))
            .bind($org.as_str())
            .bind($role.as_str())
            .fetch_optional($pool)
            .await
            .map_err(unavailable(ctx))?;
        row.map(|r| r.try_get::<String, _>("purpose"))
            .transpose()
            .map_err(unavailable(ctx))
    }};
}
pub(crate) use role_default_purpose;

/// Sets (`Some`) or clears (`None`) an organization's default purpose for a role.
macro_rules! set_role_default_purpose {
    ($pool:expr, $sql:expr, $org:expr, $role:expr, $purpose:expr) => {{
        let q = match $purpose {
            Some(p) => sqlx::query($sql($crate::rows::sql::SET_ROLE_DEFAULT_PURPOSE))
                .bind($org.as_str())
                .bind($role.as_str())
                .bind(p.to_owned()),
            None => sqlx::query($sql($crate::rows::sql::CLEAR_ROLE_DEFAULT_PURPOSE))
                .bind($org.as_str())
                .bind($role.as_str()),
        };
        q.execute($pool)
            .await
            .map_err(unavailable("set default purpose"))?;
        Ok(())
    }};
}
pub(crate) use set_role_default_purpose;

/// Inserts a client unless its id exists, on either backend: `Ok(true)` if inserted.
macro_rules! create_client {
    ($pool:expr, $sql:expr, $c:expr) => {{
        let c = $c;
        let done = sqlx::query($sql($crate::rows::sql::CREATE_CLIENT))
            .bind(&c.id)
            .bind(c.org.as_str())
            .bind(&c.name)
            .bind(c.role.as_str())
            .bind(&c.scopes)
            .bind(&c.purposes)
            .bind(c.default_purpose.as_deref().unwrap_or(""))
            .bind(c.secret_hash.as_slice())
            .bind(c.disabled)
            .bind(c.created_at)
            .execute($pool)
            .await
            .map_err(unavailable("create client"))?;
        Ok(done.rows_affected() == 1)
    }};
}
pub(crate) use create_client;
