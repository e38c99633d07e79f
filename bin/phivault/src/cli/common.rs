//! Helpers every command group uses: opening the vault as the operator, its context in an
//! organization, and parsing times and roles.
use super::OrgArgs;
use crate::config;
use crate::datadir::{self, Opened};
use phivault_core::{Clock, SystemClock};
use phivault_vault::{Ctx, VaultError};
use std::path::Path;
use std::sync::Arc;

pub(crate) fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

pub(crate) async fn open(dir: &Path) -> Result<Opened, String> {
    let root = config::root_key(dir)?;
    datadir::open(dir, &root, clock())
        .await
        .map_err(|e| e.to_string())
}

pub(crate) async fn ctx(opened: &Opened, org: &OrgArgs) -> Result<Ctx, String> {
    let org = opened
        .org(org.org.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(opened.operator.ctx(org))
}

/// Opens the vault at `dir` as the operator, runs `f` in the organization `org` names (the
/// only one by default), and closes the vault whatever `f` returned. `f`'s error becomes its
/// message (for a [`VaultError`], what [`vault_err`] makes of it).
pub(crate) async fn in_org<T, E: std::fmt::Display>(
    dir: &Path,
    org: &OrgArgs,
    f: impl AsyncFnOnce(&Opened, &Ctx) -> Result<T, E>,
) -> Result<T, String> {
    let opened = open(dir).await?;
    let result = async {
        let c = ctx(&opened, org).await?;
        f(&opened, &c).await.map_err(|e| e.to_string())
    }
    .await;
    opened.close().await;
    result
}

/// RFC 3339, or a date (midnight UTC).
pub(crate) fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            format!("'{s}' is not a time: use RFC 3339 (2026-01-31T12:00:00Z) or YYYY-MM-DD")
        })
}

pub(crate) fn parse_role(role: &str) -> Result<phivault_core::Role, String> {
    phivault_core::Role::parse(role).ok_or_else(|| {
        format!(
            "unknown role '{}': one of {}",
            role.chars().take(40).collect::<String>(),
            phivault_core::Role::ALL.map(|r| r.as_str()).join(", ")
        )
    })
}

pub(crate) fn vault_err(e: &VaultError) -> String {
    e.to_string()
}
