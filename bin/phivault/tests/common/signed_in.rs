//! A person signed in on the vault itself (real stores, a fake clock), for the tests that move
//! the clock or need the vault's own answers: one-time password, a chosen password, TOTP
//! enrollment, a first code.
use phivault::datadir::Opened;
use phivault_core::{Clock, FakeClock, Role, SecretString};
use phivault_crypto::totp;
use phivault_vault::auth::{AuthPolicy, IssuedToken};
use phivault_vault::{Ctx, Vault};
use std::sync::Arc;

pub struct SignedIn {
    /// The vault (with the policy asked for).
    pub vault: Vault,
    /// The operator's context, in the only organization.
    pub op: Ctx,
    /// An anonymous context for the sign-in steps.
    pub anon: Ctx,
    pub clock: Arc<FakeClock>,
    /// The person's TOTP seed.
    pub seed: Vec<u8>,
    /// The session of the first sign-in.
    pub session: IssuedToken,
    pub opened: Opened,
    _dir: tempfile::TempDir,
}

impl SignedIn {
    /// The TOTP code at the clock's time.
    pub fn code(&self) -> String {
        let now = u64::try_from(self.clock.now().unix_timestamp()).unwrap();
        totp::code_at(&self.seed, now).unwrap()
    }
}

/// A new vault whose `username` (of `role`) signed in once with `password`, under `policy`.
pub async fn signed_in(username: &str, role: Role, password: &str, policy: AuthPolicy) -> SignedIn {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    super::init_vault(&data).await;
    let start = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    let clock = Arc::new(FakeClock::new(start));
    let opened = super::open_with_clock(&data, clock.clone()).await;
    let op = super::ctx(&opened).await;
    let anon = Ctx::anonymous(op.org().clone());
    let vault = opened.vault.clone().with_auth_policy(policy);
    let n = vault
        .add_user(&op, op.org(), username, role, false)
        .await
        .unwrap();
    let c = vault
        .login(&anon, username, n.one_time_password)
        .await
        .unwrap();
    let tok = c.token.expose();
    let pw = SecretString::new(password.to_owned());
    vault.change_password(&anon, tok, pw).await.unwrap();
    let e = vault.enroll_mfa(&anon, tok).await.unwrap();
    let seed = totp::seed_from_base32(e.secret_base32.expose()).unwrap();
    let now = u64::try_from(clock.now().unix_timestamp()).unwrap();
    let code = totp::code_at(&seed, now).unwrap();
    let session = vault.complete_mfa(&anon, tok, &code).await.unwrap();
    SignedIn {
        vault,
        op,
        anon,
        clock,
        seed,
        session,
        opened,
        _dir: dir,
    }
}

/// `n` six-digit codes that `seed` accepts nowhere near the time `now` (Unix seconds).
pub fn codes_not_near(seed: &[u8], now: u64, n: usize) -> Vec<String> {
    let near: Vec<String> = (0..9u64)
        .map(|i| totp::code_at(seed, now + i * 30 - 120).unwrap())
        .collect();
    (0..)
        .map(|i: u32| format!("{:06}", i * 137_731 % 1_000_000))
        .filter(|c| !near.contains(c))
        .take(n)
        .collect()
}
