//! The JSON of the administrators' listings (clients, grants, users): one shape for the
//! command line's `--json` and the HTTPS API, so the two never drift apart. Times are RFC 3339
//! UTC to the second; no secret, hash or patient id is ever part of a view.
use crate::auth::{ClientInfo, UserInfo};
use crate::policy::grants::GrantListing;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds since the Unix epoch as RFC 3339 UTC (`null` if out of range).
pub fn time_secs(secs: i64) -> Value {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC to the second; `null` for none.
pub fn time_millis(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| time_secs(ms.div_euclid(1000)))
}

/// A service client: `{client_id, organization, name, role, scopes, purposes, default_purpose,
/// disabled, created_at}` (`default_purpose` null when none).
pub fn client(c: &ClientInfo) -> Value {
    json!({
        "client_id": c.id,
        "organization": c.org.as_str(),
        "name": c.name,
        "role": c.role.as_str(),
        "scopes": c.scopes,
        "purposes": c.purposes,
        "default_purpose": c.default_purpose,
        "disabled": c.disabled,
        "created_at": time_millis(Some(c.created_at)),
    })
}

/// A live grant: `{id, organization, username, patient_pseudonym, purpose, kind, granted_by,
/// created_at, expires_at}`.
pub fn grant(g: &GrantListing) -> Value {
    json!({
        "id": g.id,
        "organization": g.org.as_str(),
        "username": g.username,
        "patient_pseudonym": g.patient_pseudonym,
        "purpose": g.purpose,
        "kind": g.kind,
        "granted_by": g.granted_by,
        "created_at": time_secs(g.created_at),
        "expires_at": time_secs(g.expires_at),
    })
}

/// A person's MFA state: `enrolled` (a confirmed TOTP) or `none`.
pub fn mfa_state(u: &UserInfo) -> &'static str {
    if u.mfa_enrolled { "enrolled" } else { "none" }
}

/// A person: `{username, role, organization, disabled, mfa, mfa_enrolled,
/// must_change_password, last_sign_in}` (`last_sign_in` is `null` before the first).
pub fn user(u: &UserInfo) -> Value {
    json!({
        "username": u.username,
        "role": u.role.as_str(),
        "organization": u.org.as_str(),
        "disabled": u.disabled,
        "mfa": mfa_state(u),
        "mfa_enrolled": u.mfa_enrolled,
        "must_change_password": u.must_change_password,
        "last_sign_in": time_millis(u.last_login_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_to_the_second() {
        assert_eq!(time_secs(0), json!("1970-01-01T00:00:00Z"));
        assert_eq!(time_millis(Some(1_500)), json!("1970-01-01T00:00:01Z"));
        assert_eq!(time_millis(None), Value::Null);
        assert_eq!(time_secs(i64::MAX), Value::Null);
    }
}
