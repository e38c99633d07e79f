//! Lockout. Wrong passwords and wrong (or replayed) second-factor codes, TOTP and backup codes
//! alike, count toward one per-account failure count: at 5, the account locks for 1 minute,
//! then 2, 4, … at most an hour per further failure. Only a completed sign-in resets the count
//! (a correct password alone does not). A second-factor attempt is counted (and the lock
//! it would cause set) before its code is checked, atomically with the lock check, so parallel
//! guesses never pass a lock. A login challenge allows at most 5 code attempts, then it is
//! dead. Every failure that locks the account is audited with a `…-locked` reason, which
//! `phivault audit report` counts per user.
use super::unauthenticated;
use crate::Vault;
use crate::audit::{AuditEvent, Outcome};
use crate::error::VaultError;
use phivault_core::UserRecord;

/// Second-factor attempts one login challenge allows.
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// The audit reason of a wrong password that locked the account.
pub const LOCKED_BY_PASSWORD: &str = "wrong-password-locked";
/// The audit reason of a wrong second-factor code that locked the account.
pub const LOCKED_BY_CODE: &str = "wrong-code-locked";
/// Every audit reason that records an account being locked.
pub const LOCKOUT_REASONS: &[&str] = &[LOCKED_BY_PASSWORD, LOCKED_BY_CODE];

/// How long the `n`th consecutive failure locks the account (`None` below the threshold):
/// 1, 2, 4, … minutes, at most an hour.
fn lock_minutes(n: i64, after: i64) -> Option<i64> {
    let over = n - after;
    (over >= 0).then(|| (1i64 << over.clamp(0, 6)).min(60))
}

impl Vault {
    pub(super) fn is_locked(&self, u: &UserRecord) -> bool {
        u.locked_until.is_some_and(|t| self.now_secs() < t)
    }

    /// The answer to a sign-in step on a locked account (audited as denied, reason `locked`).
    pub(super) async fn locked_out<T>(&self, mut event: AuditEvent) -> Result<T, VaultError> {
        event.outcome = Outcome::Denied;
        event.reason = Some("locked".into());
        self.audit(event).await?;
        Err(unauthenticated("account locked"))
    }

    /// The account's lock at this failure count (`None` below the threshold).
    fn lock_at(&self) -> impl Fn(i64) -> Option<i64> + Send + Sync + 'static {
        let now = self.now_secs();
        let after = self.auth_policy.lockout_after;
        move |n: i64| lock_minutes(n, after).map(|m| now + m * 60)
    }

    /// Reserves a second-factor attempt before its code is checked: refused (`None`) while
    /// the account is locked, else counted as a failure, with the lock a failure would set
    /// (`Some(true)` then), in one atomic step. A completed sign-in clears both again.
    pub(super) async fn reserve_code_attempt(
        &self,
        user_id: &str,
    ) -> Result<Option<bool>, VaultError> {
        let lock = self.lock_at();
        let reserved = self
            .control
            .reserve_login_attempt(user_id, self.now_secs(), &lock)
            .await?;
        Ok(reserved.map(|(_, until)| until.is_some()))
    }

    /// A refused code (wrong, replayed, or on a spent challenge), already counted by its
    /// reservation: audited (with [`LOCKED_BY_CODE`] when the reservation locked the account)
    /// and refused.
    pub(super) async fn code_failure<T>(
        &self,
        event: AuditEvent,
        why: &'static str,
        locked: bool,
    ) -> Result<T, VaultError> {
        let e = unauthenticated(why);
        let mut event = event.failed(&e);
        if locked {
            event.reason = Some(LOCKED_BY_CODE.into());
        }
        self.audit(event).await?;
        Err(e)
    }

    /// A wrong password or code: counted toward the lockout (atomically, so parallel guesses
    /// are all counted), audited (`locked_reason` when it locked the account), refused.
    pub(super) async fn credential_failure<T>(
        &self,
        event: AuditEvent,
        user_id: &str,
        why: &'static str,
        locked_reason: &'static str,
    ) -> Result<T, VaultError> {
        let lock = self.lock_at();
        let (_, locked) = self.control.count_login_failure(user_id, &lock).await?;
        let e = unauthenticated(why);
        let mut event = event.failed(&e);
        if locked.is_some() {
            event.reason = Some(locked_reason.into());
        }
        self.audit(event).await?;
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_doubles_from_the_fifth_failure_up_to_an_hour() {
        let got: Vec<Option<i64>> = (1..=13).map(|n| lock_minutes(n, 5)).collect();
        let mut want = vec![None; 4];
        want.extend([1, 2, 4, 8, 16, 32, 60, 60, 60].map(Some));
        assert_eq!(got, want);
    }
}
