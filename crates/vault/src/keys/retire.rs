//! Retiring an old KEK version (of either kind): only when no row names it any more, it is not
//! the current one, and the newest version is older than the grace period.
use super::{KekUsage, is_kek};
use crate::error::VaultError;
use crate::{Ctx, Vault};
use phivault_core::StoreKind;
use std::time::Duration;

impl Vault {
    /// Retires KEK version `version`: removes it from the keyring, only when no row of either
    /// store names it any more and it is not the current version. Permissions: the operator and
    /// SUPER_ADMIN. Audited (`keys-retire`).
    pub async fn retire_kek(
        &self,
        ctx: &Ctx,
        version: u32,
        grace: Duration,
    ) -> Result<(), VaultError> {
        let mut event = self.event(ctx, "keys-retire");
        event.resource_type = Some("KEK".into());
        event.version = Some(u64::from(version));
        self.require_key_admin(ctx, &event).await?;
        match self.retire(version, grace).await {
            Ok(()) => self.audit(event).await,
            Err(e) => self.audit_failure(event, e).await,
        }
    }

    async fn retire(&self, version: u32, grace: Duration) -> Result<(), VaultError> {
        let entries = self.control.keyring().await?;
        let keks: Vec<_> = entries.iter().filter(|e| is_kek(e)).collect();
        let Some(entry) = keks.iter().find(|e| e.version == version) else {
            return Err(VaultError::Invalid(format!(
                "there is no KEK version {version}"
            )));
        };
        let Some(newest) = keks.iter().max_by_key(|e| e.version) else {
            return Err(VaultError::Invalid("the keyring holds no KEK".into()));
        };
        if newest.version <= version {
            return Err(VaultError::Invalid(format!(
                "KEK version {version} is the current one: rotate first"
            )));
        }
        let in_use = |usage: &[(StoreKind, Vec<KekUsage>); 2]| -> u64 {
            usage
                .iter()
                .flat_map(|(_, u)| u.iter())
                .filter(|u| u.kek_version == version)
                .map(|u| u.rows)
                .sum()
        };
        let rows = in_use(&self.usage().await?);
        if rows > 0 {
            return Err(VaultError::Invalid(format!(
                "KEK version {version} still wraps {rows} stored rows: run `keys rotate` first"
            )));
        }
        let age_ms = (self.clock.now_millis() - newest.created_at).max(0);
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        if age_ms < grace_ms {
            return Err(VaultError::Invalid(format!(
                "KEK version {} was made {} s ago: processes that loaded the keyring before it \
                 may still be sealing under version {version}; retire it from {} s after the \
                 rotation",
                newest.version,
                age_ms / 1000,
                grace_ms / 1000
            )));
        }
        let kept = (*entry).clone();
        self.control
            .remove_keyring_entry(&entry.purpose, version)
            .await?;
        // A node that had not yet heard of the newer version may have written under this one
        // meanwhile: then put the entry back and refuse.
        let rows = in_use(&self.usage().await?);
        if rows > 0 {
            self.control.add_keyring_entries(&[kept]).await?;
            return Err(VaultError::Invalid(format!(
                "KEK version {version} came back into use ({rows} rows): run `keys rotate` first"
            )));
        }
        self.reload_keyring().await?;
        Ok(())
    }
}
