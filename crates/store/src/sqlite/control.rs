//! Control data on SQLite: settings, organizations, the wrapped keyring.
use super::{Db, corrupt, unavailable};
use async_trait::async_trait;
use phivault_core::{ControlStore, KeyringEntry, OrgId, Organization, StoreError};
use sqlx::Row;

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
}
