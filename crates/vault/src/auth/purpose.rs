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
