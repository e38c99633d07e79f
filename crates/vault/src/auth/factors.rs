//! The end of a sign-in: checking the second factor, and recording a completed sign-in
//! without undoing an administrator's change made meanwhile.
use super::{IssuedToken, unauthenticated};
use crate::Vault;
use crate::audit::AuditEvent;
use crate::error::VaultError;
use phivault_core::{UserRecord, UserWrite};
use phivault_crypto::totp;

impl Vault {
    /// A completed sign-in: MFA confirmed and the failure count reset (only its columns, and
    /// only while the user is enabled with the seed `sealed`), then a session, which is
    /// revoked again if an administrator disabled the user meanwhile.
    pub(super) async fn signed_in(
        &self,
        u: &UserRecord,
        sealed: &[u8],
        purpose: Option<String>,
    ) -> Result<IssuedToken, VaultError> {
        let at = self.clock.now_millis();
        let write = UserWrite::SignIn { sealed, at };
        if !self.control.write_user(&u.id, &write).await? {
            return Err(unauthenticated("user changed meanwhile"));
        }
        let ttl = self.auth_policy.session_absolute;
        let token = self
            .new_token("session", &u.id, &u.org, ttl, "", purpose)
            .await?;
        let now = self.control.user_by_id(&u.id).await?;
        if now.is_none_or(|n| n.disabled) {
            let hash = self.keyring.token_hash("session", token.expose());
            self.control.revoke_session(&hash).await?;
            return Err(unauthenticated("user disabled"));
        }
        Ok(IssuedToken {
            token,
            expires_in: ttl,
        })
    }

    /// Whether `code` is a fresh TOTP code of the user's seed or, once MFA is enrolled, one of
    /// its unused backup codes (then used up, and the event says so).
    pub(super) async fn second_factor_ok(
        &self,
        u: &UserRecord,
        sealed: &[u8],
        code: &str,
        event: &mut AuditEvent,
    ) -> Result<bool, VaultError> {
        let seed = self.keyring.open_secret(&u.id, sealed)?;
        let now = self.now_secs();
        Ok(
            match totp::check(&seed, code, u64::try_from(now).unwrap_or(0)) {
                Some(step) => {
                    self.control
                        .accept_totp_step(&u.id, i64::try_from(step).unwrap_or(i64::MAX))
                        .await?
                }
                None if u.mfa_enrolled => {
                    let hash = self.keyring.token_hash("backup", code.trim());
                    let used = self.control.use_backup_code(&u.id, &hash, now).await?;
                    if used {
                        event.reason = Some("backup-code".into());
                    }
                    used
                }
                None => false,
            },
        )
    }
}
