//! Control data on SQLite: settings, organizations, the wrapped keyring.
use super::{Db, corrupt, unavailable};
use crate::rows;
use async_trait::async_trait;
use phivault_core::{
    ClientChange, ClientRecord, ControlStore, GrantRecord, KeyringEntry, OrgId, Organization, Role,
    SessionRecord, StoreError, Tombstone, UserRecord, UserWrite,
};
use sqlx::Row;

/// A shared statement ([`crate::rows::sql`]) without the schema prefix SQLite has no use for.
fn sql(statement: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(statement.replace("{s}.", ""))
}

#[derive(Debug)]
pub struct SqliteControlStore {
    db: Db,
}

impl SqliteControlStore {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }
    pub(crate) async fn close(&self) {
        self.db.close().await;
    }
}

#[async_trait]
impl ControlStore for SqliteControlStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.db.reader)
            .await
            .map_err(unavailable("read setting"))?;
        row.map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(unavailable("read setting"))
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("write setting"))?;
        Ok(())
    }

    async fn bump_counter(&self, key: &str) -> Result<i64, StoreError> {
        let value: String =
            sqlx::query_scalar(sqlx::AssertSqlSafe(rows::BUMP_COUNTER.replace("{s}.", "")))
                .bind(key)
                .fetch_one(&self.db.writer)
                .await
                .map_err(unavailable("count"))?;
        rows::counter_value(&value)
    }

    async fn organizations(&self) -> Result<Vec<Organization>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM organizations ORDER BY id")
            .fetch_all(&self.db.reader)
            .await
            .map_err(unavailable("list organizations"))?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id").map_err(unavailable("list organizations"))?;
                Ok(Organization {
                    id: OrgId::parse(&id).map_err(|_| corrupt("list organizations", "org id"))?,
                    name: r
                        .try_get("name")
                        .map_err(unavailable("list organizations"))?,
                    created_at: r
                        .try_get("created_at")
                        .map_err(unavailable("list organizations"))?,
                })
            })
            .collect()
    }

    async fn create_organization(&self, org: &Organization) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT OR IGNORE INTO organizations (id, name, created_at) VALUES (?, ?, ?)",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(org.created_at)
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("create organization"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn keyring(&self) -> Result<Vec<KeyringEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT purpose, version, wrapped, created_at FROM keyring ORDER BY purpose, version",
        )
        .fetch_all(&self.db.reader)
        .await
        .map_err(unavailable("read keyring"))?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version").map_err(unavailable("read keyring"))?;
                Ok(KeyringEntry {
                    purpose: r.try_get("purpose").map_err(unavailable("read keyring"))?,
                    version: u32::try_from(version)
                        .map_err(|_| corrupt("read keyring", "version"))?,
                    wrapped: r.try_get("wrapped").map_err(unavailable("read keyring"))?,
                    created_at: r
                        .try_get("created_at")
                        .map_err(unavailable("read keyring"))?,
                })
            })
            .collect()
    }

    async fn add_keyring_entries(&self, entries: &[KeyringEntry]) -> Result<(), StoreError> {
        let mut tx = self
            .db
            .writer
            .begin()
            .await
            .map_err(unavailable("write keyring"))?;
        for e in entries {
            sqlx::query(
                "INSERT INTO keyring (purpose, version, wrapped, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(&e.purpose)
            .bind(i64::from(e.version))
            .bind(&e.wrapped)
            .bind(e.created_at)
            .execute(&mut *tx)
            .await
            .map_err(unavailable("write keyring"))?;
        }
        tx.commit().await.map_err(unavailable("write keyring"))?;
        Ok(())
    }

    /// Deletes the entry (`secure_delete` zeroes it in the file), then truncates the
    /// write-ahead log so no page image of it stays there.
    async fn remove_keyring_entry(&self, purpose: &str, version: u32) -> Result<bool, StoreError> {
        let ctx = "remove keyring entry";
        let done = sqlx::query("DELETE FROM keyring WHERE purpose = ? AND version = ?")
            .bind(purpose)
            .bind(i64::from(version))
            .execute(&self.db.writer)
            .await
            .map_err(unavailable(ctx))?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.db.writer)
            .await
            .map_err(unavailable(ctx))?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_user(&self, u: &UserRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO users (id, org, username, role, password_hash, password_changed_at, \
             must_change_password, totp_sealed, totp_last_step, mfa_enrolled, disabled, \
             failed_logins, locked_until, last_login_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&u.id)
        .bind(u.org.as_str())
        .bind(&u.username)
        .bind(u.role.as_str())
        .bind(&u.password_hash)
        .bind(u.password_changed_at)
        .bind(u.must_change_password)
        .bind(u.totp_sealed.as_deref())
        .bind(u.totp_last_step)
        .bind(u.mfa_enrolled)
        .bind(u.disabled)
        .bind(u.failed_logins)
        .bind(u.locked_until)
        .bind(u.last_login_at)
        .bind(u.created_at)
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("create user"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn user_by_name(
        &self,
        org: &OrgId,
        username: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE org = ? AND username = ?",
            crate::rows::user_columns("users")
        )))
        .bind(org.as_str())
        .bind(username)
        .fetch_optional(&self.db.reader)
        .await
        .map_err(unavailable("read user"))?;
        row.as_ref().map(crate::rows::user).transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE id = ?",
            crate::rows::user_columns("users")
        )))
        .bind(id)
        .fetch_optional(&self.db.reader)
        .await
        .map_err(unavailable("read user"))?;
        row.as_ref().map(crate::rows::user).transpose()
    }

    async fn users(&self, org: Option<&OrgId>) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE (? IS NULL OR org = ?) ORDER BY org, username",
            crate::rows::user_columns("users")
        )))
        .bind(org.map(OrgId::as_str))
        .bind(org.map(OrgId::as_str))
        .fetch_all(&self.db.reader)
        .await
        .map_err(unavailable("list users"))?;
        rows.iter().map(crate::rows::user).collect()
    }

    async fn update_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET role = ?, password_hash = ?, password_changed_at = ?, \
             must_change_password = ?, totp_sealed = ?, totp_last_step = ?, mfa_enrolled = ?, \
             disabled = ?, failed_logins = ?, locked_until = ?, last_login_at = ? WHERE id = ?",
        )
        .bind(u.role.as_str())
        .bind(&u.password_hash)
        .bind(u.password_changed_at)
        .bind(u.must_change_password)
        .bind(u.totp_sealed.as_deref())
        .bind(u.totp_last_step)
        .bind(u.mfa_enrolled)
        .bind(u.disabled)
        .bind(u.failed_logins)
        .bind(u.locked_until)
        .bind(u.last_login_at)
        .bind(&u.id)
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("update user"))?;
        Ok(())
    }

    async fn write_user(&self, user_id: &str, w: &UserWrite<'_>) -> Result<bool, StoreError> {
        rows::write_user!(&self.db.writer, sql, user_id, w)
    }

    async fn accept_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET totp_last_step = ? \
             WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)",
        )
        .bind(step)
        .bind(user_id)
        .bind(step)
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("accept totp"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_backup_codes(&self, user_id: &str, hashes: &[Vec<u8>]) -> Result<(), StoreError> {
        let ctx = "set backup codes";
        let mut tx = self.db.writer.begin().await.map_err(unavailable(ctx))?;
        sqlx::query("DELETE FROM backup_codes WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
        for h in hashes {
            sqlx::query("INSERT INTO backup_codes (user_id, code_hash) VALUES (?, ?)")
                .bind(user_id)
                .bind(h.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(unavailable(ctx))?;
        }
        tx.commit().await.map_err(unavailable(ctx))
    }

    async fn count_login_failure(
        &self,
        user_id: &str,
        lock: &(dyn Fn(i64) -> Option<i64> + Send + Sync),
    ) -> Result<(i64, Option<i64>), StoreError> {
        let counted =
            rows::count_failure!(self.db.writer.begin(), sql, user_id, lock, None).await?;
        Ok(counted.unwrap_or((0, None)))
    }

    async fn reserve_login_attempt(
        &self,
        user_id: &str,
        now: i64,
        lock: &(dyn Fn(i64) -> Option<i64> + Send + Sync),
    ) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        rows::count_failure!(self.db.writer.begin(), sql, user_id, lock, Some(now)).await
    }

    async fn use_backup_code(
        &self,
        user_id: &str,
        hash: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE backup_codes SET used_at = ? \
             WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(hash)
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("use backup code"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, kind, subject, org, created_at, last_seen_at, \
             expires_at, revoked, scopes, purpose) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.token_hash.as_slice())
        .bind(&s.kind)
        .bind(&s.subject)
        .bind(s.org.as_str())
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(s.revoked)
        .bind(&s.scopes)
        .bind(s.purpose.as_deref().unwrap_or(""))
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("create session"))?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8]) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT token_hash, kind, subject, org, created_at, last_seen_at, expires_at, \
             revoked, scopes, purpose FROM sessions WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.db.reader)
        .await
        .map_err(unavailable("read session"))?;
        row.as_ref().map(crate::rows::session).transpose()
    }

    async fn touch_session(&self, token_hash: &[u8], now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?")
            .bind(now)
            .bind(token_hash)
            .execute(&self.db.writer)
            .await
            .map_err(unavailable("touch session"))?;
        Ok(())
    }

    async fn revoke_session(&self, token_hash: &[u8]) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE sessions SET revoked = 1 WHERE token_hash = ? AND revoked = 0")
                .bind(token_hash)
                .execute(&self.db.writer)
                .await
                .map_err(unavailable("revoke session"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_challenge_attempt(&self, token_hash: &[u8]) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE sessions SET attempts = attempts + 1 WHERE token_hash = ? RETURNING attempts",
        )
        .bind(token_hash)
        .fetch_optional(&self.db.writer)
        .await
        .map_err(unavailable("count challenge attempt"))?;
        Ok(n.unwrap_or(0))
    }

    async fn revoke_sessions_of(&self, subject: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE sessions SET revoked = 1 WHERE subject = ? AND revoked = 0")
            .bind(subject)
            .execute(&self.db.writer)
            .await
            .map_err(unavailable("revoke sessions"))?;
        Ok(done.rows_affected())
    }

    async fn revoke_sessions_except(&self, subject: &str, keep: &[u8]) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked = 1 \
             WHERE subject = ? AND revoked = 0 AND token_hash <> ?",
        )
        .bind(subject)
        .bind(keep)
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("revoke sessions"))?;
        Ok(done.rows_affected())
    }

    async fn put_grant(&self, g: &GrantRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO grants (id, org, user_id, patient, purpose, kind, reason_sealed, \
             granted_by, created_at, expires_at, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&g.id)
        .bind(g.org.as_str())
        .bind(&g.user_id)
        .bind(&g.patient)
        .bind(&g.purpose)
        .bind(&g.kind)
        .bind(g.reason_sealed.as_deref())
        .bind(&g.granted_by)
        .bind(g.created_at)
        .bind(g.expires_at)
        .bind(g.revoked)
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("create grant"))?;
        Ok(())
    }

    async fn extend_grant(&self, id: &str, expires_at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE grants SET expires_at = ? WHERE id = ? AND revoked = 0")
            .bind(expires_at)
            .bind(id)
            .execute(&self.db.writer)
            .await
            .map_err(unavailable("extend grant"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn latest_grant(
        &self,
        org: &OrgId,
        user_id: &str,
        patient: &str,
    ) -> Result<Option<GrantRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, org, user_id, patient, purpose, kind, reason_sealed, granted_by, \
             created_at, expires_at, revoked FROM grants \
             WHERE org = ? AND user_id = ? AND patient = ? AND revoked = 0 \
             ORDER BY expires_at DESC LIMIT 1",
        )
        .bind(org.as_str())
        .bind(user_id)
        .bind(patient)
        .fetch_optional(&self.db.reader)
        .await
        .map_err(unavailable("read grant"))?;
        row.as_ref().map(crate::rows::grant).transpose()
    }

    async fn revoke_grants(&self, org: &OrgId, now: i64) -> Result<u64, StoreError> {
        let live = sqlx::query(
            "UPDATE grants SET revoked = 1 WHERE org = ? AND revoked = 0 AND expires_at > ?",
        )
        .bind(org.as_str())
        .bind(now)
        .execute(&self.db.writer)
        .await
        .map_err(unavailable("revoke grants"))?;
        sqlx::query("UPDATE grants SET revoked = 1 WHERE org = ? AND revoked = 0")
            .bind(org.as_str())
            .execute(&self.db.writer)
            .await
            .map_err(unavailable("revoke grants"))?;
        Ok(live.rows_affected())
    }

    async fn live_grants(&self, now: i64) -> Result<Vec<GrantRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, org, user_id, patient, purpose, kind, reason_sealed, granted_by, \
             created_at, expires_at, revoked FROM grants \
             WHERE revoked = 0 AND expires_at > ? ORDER BY org, created_at",
        )
        .bind(now)
        .fetch_all(&self.db.reader)
        .await
        .map_err(unavailable("list grants"))?;
        rows.iter().map(crate::rows::grant).collect()
    }

    async fn create_client(&self, c: &ClientRecord) -> Result<bool, StoreError> {
        rows::create_client!(&self.db.writer, sql, c)
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, org, name, role, scopes, purposes, default_purpose, secret_hash, disabled, \
             created_at FROM clients WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.db.reader)
        .await
        .map_err(unavailable("read client"))?;
        row.as_ref().map(crate::rows::client).transpose()
    }

    async fn live_grants_in(&self, org: &OrgId, now: i64) -> Result<Vec<GrantRecord>, StoreError> {
        let (st, org) = (sql(rows::sql::LIVE_GRANTS_IN), org.as_str());
        rows::fetch_all!(
            &self.db.reader,
            st,
            rows::grant,
            "list grants",
            org,
            false,
            now
        )
    }

    async fn clients(&self, org: Option<&OrgId>) -> Result<Vec<ClientRecord>, StoreError> {
        let (st, org) = (sql(rows::sql::CLIENTS), org.map(OrgId::as_str));
        rows::fetch_all!(&self.db.reader, st, rows::client, "list clients", org, org)
    }

    async fn change_client(
        &self,
        id: &str,
        change: &ClientChange,
    ) -> Result<Option<u64>, StoreError> {
        rows::change_client!(self.db.writer.begin(), sql, id, change)
    }

    async fn role_default_purpose(
        &self,
        org: &OrgId,
        role: Role,
    ) -> Result<Option<String>, StoreError> {
        rows::role_default_purpose!(&self.db.reader, sql, org, role)
    }

    async fn set_role_default_purpose(
        &self,
        org: &OrgId,
        role: Role,
        p: Option<&str>,
    ) -> Result<(), StoreError> {
        rows::set_role_default_purpose!(&self.db.writer, sql, org, role, p)
    }

    async fn add_tombstones(&self, t: &[Tombstone]) -> Result<(), StoreError> {
        let ctx = "write tombstones";
        let mut tx = self.db.writer.begin().await.map_err(unavailable(ctx))?;
        for x in t {
            sqlx::query(
                "INSERT INTO tombstones (org, store, rtype, id, erased_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(x.org.as_str())
            .bind(x.store.as_str())
            .bind(x.key.rtype.as_str())
            .bind(x.key.id.as_str())
            .bind(x.erased_at)
            .execute(&mut *tx)
            .await
            .map_err(unavailable(ctx))?;
        }
        tx.commit().await.map_err(unavailable(ctx))
    }

    async fn tombstones(&self) -> Result<Vec<Tombstone>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(crate::rows::tombstone_query(
            "tombstones",
        )))
        .fetch_all(&self.db.reader)
        .await
        .map_err(unavailable("read tombstones"))?;
        rows.iter().map(crate::rows::tombstone).collect()
    }
}
