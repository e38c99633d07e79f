//! OperationOutcome: what went wrong, in words for the client. The text is the caller's
//! client message, which never holds a PHI value, a key or a token.
use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fatal => "fatal",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code` (FHIR's IssueType): the codes phivault answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    /// Malformed input: not JSON, not the expected resource, a bad element or parameter.
    Invalid,
    /// No valid credentials.
    Login,
    /// Not allowed.
    Forbidden,
    /// No such resource (or it was deleted).
    NotFound,
    /// An unknown type, a method or a media type the server does not take.
    NotSupported,
    /// A version conflict.
    Conflict,
    /// Too much work or too large a body.
    TooCostly,
    /// Well-formed but against a rule.
    BusinessRule,
    /// One entry of a Bundle failed.
    Processing,
    /// Anything else (the store, the audit trail, an integrity failure).
    Exception,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Login => "login",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::NotSupported => "not-supported",
            Self::Conflict => "conflict",
            Self::TooCostly => "too-costly",
            Self::BusinessRule => "business-rule",
            Self::Processing => "processing",
            Self::Exception => "exception",
        }
    }
}

/// An OperationOutcome of one issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationOutcome {
    severity: Severity,
    code: IssueCode,
    diagnostics: String,
}

impl OperationOutcome {
    /// One issue: its severity, its code and the words for the client (`diagnostics`).
    pub fn new(severity: Severity, code: IssueCode, diagnostics: &str) -> Self {
        Self {
            severity,
            code,
            diagnostics: diagnostics.to_owned(),
        }
    }

    /// One issue of severity `error`.
    pub fn error(code: IssueCode, diagnostics: &str) -> Self {
        Self::new(Severity::Error, code, diagnostics)
    }

    pub fn into_value(self) -> Value {
        json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": self.severity.as_str(), "code": self.code.as_str(),
            "diagnostics": self.diagnostics}]})
    }
}

impl From<OperationOutcome> for Value {
    fn from(o: OperationOutcome) -> Self {
        o.into_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_outcome_is_pinned() {
        let v = OperationOutcome::error(IssueCode::NotFound, "not found").into_value();
        assert_eq!(
            v.to_string(),
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"not found"}]}"#
        );
    }

    #[test]
    fn the_severity_is_the_one_given() {
        let v: Value = OperationOutcome::new(Severity::Warning, IssueCode::Processing, "x").into();
        assert_eq!(
            v.to_string(),
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"processing","diagnostics":"x"}]}"#
        );
    }

    #[test]
    fn every_code_and_severity_has_its_fhir_name() {
        use IssueCode as C;
        use Severity as S;
        let codes = [
            (C::Invalid, "invalid"),
            (C::Login, "login"),
            (C::Forbidden, "forbidden"),
            (C::NotFound, "not-found"),
            (C::NotSupported, "not-supported"),
            (C::Conflict, "conflict"),
            (C::TooCostly, "too-costly"),
            (C::BusinessRule, "business-rule"),
            (C::Processing, "processing"),
            (C::Exception, "exception"),
        ];
        assert!(codes.iter().all(|(c, name)| c.as_str() == *name));
        let severities = [
            (S::Fatal, "fatal"),
            (S::Error, "error"),
            (S::Warning, "warning"),
            (S::Information, "information"),
        ];
        assert!(severities.iter().all(|(s, name)| s.as_str() == *name));
    }
}
