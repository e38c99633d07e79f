//! Where the purpose of use of a call comes from. Off-the-shelf FHIR clients send no
//! `X-Purpose-Of-Use` header, so a principal may carry a default the vault handed out with it
//! (a client's `--default-purpose`); the header still overrides it, and the policy checks
//! whichever applies against what the principal is allowed (an unknown or not-allowed purpose
//! stays refused).

/// The origin of the purpose of use that applied to a call (recorded in every audit event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurposeSource {
    /// The caller stated it (`X-Purpose-Of-Use`).
    Header,
    /// The service client's default purpose (`client add --default-purpose`).
    ClientDefault,
    /// The purpose a person chose at sign-in, kept in the session.
    Session,
    /// The organization's default purpose for the person's role.
    RoleDefault,
}

impl PurposeSource {
    /// The audit code: `header`, `client-default`, `session` or `role-default`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PurposeSource::Header => "header",
            PurposeSource::ClientDefault => "client-default",
            PurposeSource::Session => "session",
            PurposeSource::RoleDefault => "role-default",
        }
    }
}

/// The purpose of a call: the stated one (header) if any, else the principal's default.
pub(crate) fn applied(
    stated: Option<String>,
    default: Option<&(String, PurposeSource)>,
) -> (Option<String>, Option<PurposeSource>) {
    match (stated, default) {
        (Some(s), _) => (Some(s), Some(PurposeSource::Header)),
        (None, Some((d, src))) => (Some(d.clone()), Some(*src)),
        (None, None) => (None, None),
    }
}

/// A new client's purposes, normalized: the space-separated list and the default, if any.
pub(crate) fn client_purposes(
    p: super::clients::ClientPurposes<'_>,
) -> Result<(String, Option<String>), crate::VaultError> {
    let list = p.list.unwrap_or("TREAT HOPERAT");
    let parsed: Option<Vec<crate::policy::Purpose>> = list
        .split_whitespace()
        .map(crate::policy::Purpose::parse)
        .collect();
    let list = match parsed {
        Some(p) if !p.is_empty() => p.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" "),
        _ => {
            return Err(crate::VaultError::Invalid(
                "purposes are HL7 PurposeOfUse codes such as TREAT HOPERAT".into(),
            ));
        }
    };
    let default = client_default(p.default, &list).map_err(crate::VaultError::Invalid)?;
    Ok((list, default))
}

/// Checks a client's default purpose: one HL7 code among its purposes (normalized).
fn client_default(default: Option<&str>, purposes: &str) -> Result<Option<String>, String> {
    let Some(d) = default.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let parsed = crate::policy::Purpose::parse(d)
        .ok_or_else(|| "the default purpose is not an HL7 PurposeOfUse code".to_owned())?;
    if !purposes.split_whitespace().any(|p| p == parsed.as_str()) {
        return Err(format!(
            "the default purpose {} is not one of the client's purposes ({purposes})",
            parsed.as_str()
        ));
    }
    Ok(Some(parsed.as_str().to_owned()))
}

/// The purpose a person chooses at sign-in, checked against their role: an unknown code or
/// one the role may not act for is refused (the sign-in fails, nothing is stored).
pub(crate) fn sign_in_purpose(
    role: phivault_core::Role,
    purpose: Option<&str>,
) -> Result<Option<String>, crate::VaultError> {
    let Some(p) = purpose.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let parsed = crate::policy::Purpose::parse(p)
        .ok_or_else(|| crate::VaultError::Invalid("unknown purpose of use".into()))?;
    if !crate::policy::user_purpose_ok(role, parsed) {
        return Err(crate::VaultError::Invalid(format!(
            "the purpose of use {parsed} is not allowed for the role {role}"
        )));
    }
    Ok(Some(parsed.as_str().to_owned()))
}

impl crate::Vault {
    /// Sets (`Some`) or clears (`None`) the organization's default purpose of use for people
    /// of `role` who choose none at sign-in (see [`crate::Vault::login_for`]). Permissions:
    /// the operator and an ORG_ADMIN in their organization, a SUPER_ADMIN anywhere. The
    /// purpose must be one the role may act for. Audited as `default-purpose`.
    pub async fn set_role_default_purpose(
        &self,
        ctx: &crate::Ctx,
        org: &phivault_core::OrgId,
        role: phivault_core::Role,
        purpose: Option<&str>,
    ) -> Result<Option<String>, crate::VaultError> {
        use crate::policy::admin::{AdminAction, AdminScope};
        let mut event = self.event(ctx, "default-purpose");
        event.reason = Some(format!("role:{role}"));
        event.purpose = purpose.map(|p| p.chars().take(32).collect());
        event.purpose_source = None;
        let scope = self
            .admin_scope_or_deny(ctx, AdminAction::SetDefaultPurpose, &event)
            .await?;
        if scope == AdminScope::OwnOrganization && org != ctx.org() {
            return self.deny(&event, "other-organization").await;
        }
        event.org = org.as_str().to_owned();
        let purpose = match purpose.map(|p| sign_in_purpose(role, Some(p))) {
            None => None,
            Some(Ok(p)) => p,
            Some(Err(e)) => return self.audit_failure(event, e).await,
        };
        if let Err(e) = self
            .control
            .set_role_default_purpose(org, role, purpose.as_deref())
            .await
        {
            return self.audit_failure(event, e.into()).await;
        }
        self.audit(event).await?;
        Ok(purpose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_overrides_the_default() {
        let d = ("TREAT".to_owned(), PurposeSource::ClientDefault);
        assert_eq!(
            applied(Some("HOPERAT".into()), Some(&d)),
            (Some("HOPERAT".into()), Some(PurposeSource::Header))
        );
        assert_eq!(
            applied(None, Some(&d)),
            (Some("TREAT".into()), Some(PurposeSource::ClientDefault))
        );
        assert_eq!(applied(None, None), (None, None));
    }

    #[test]
    fn a_client_default_is_one_of_its_purposes() {
        assert_eq!(
            client_default(Some("TREAT"), "TREAT HOPERAT"),
            Ok(Some("TREAT".into()))
        );
        assert_eq!(client_default(None, "TREAT"), Ok(None));
        assert!(client_default(Some("HRESCH"), "TREAT HOPERAT").is_err());
        assert!(client_default(Some("NOPE"), "TREAT HOPERAT").is_err());
    }
}
