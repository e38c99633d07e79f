//! What the binary measures of its TLS listener (the vault holds no socket): handshakes with
//! the listener's own configuration and, when asked, with a live address. The vault judges
//! the results against §164.312(e): TLS 1.2 or newer, AEAD cipher suites only.
use phivault_core::BoxFuture;

/// Supplies transport evidence: the binary's listener configuration and probes.
pub trait TransportSource: Send + Sync + std::fmt::Debug {
    fn measure(&self) -> BoxFuture<'_, TransportEvidence>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 4] = [
        TlsVersion::Tls13,
        TlsVersion::Tls12,
        TlsVersion::Tls11,
        TlsVersion::Tls10,
    ];

    pub fn label(&self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "TLS1.0",
            TlsVersion::Tls11 => "TLS1.1",
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        }
    }

    /// Whether §164.312(e) as phivault reads it (NIST SP 800-52) allows this version.
    pub fn allowed(&self) -> bool {
        matches!(self, TlsVersion::Tls12 | TlsVersion::Tls13)
    }
}

/// Whether a cipher suite (IANA/rustls name) is an AEAD suite: GCM, CCM or ChaCha20-Poly1305.
pub fn is_aead_suite(name: &str) -> bool {
    ["_GCM_", "_CCM", "CHACHA20_POLY1305"]
        .iter()
        .any(|m| name.contains(m))
}

/// How one handshake attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialOutcome {
    /// The server completed (or answered with a ServerHello for) this version and suite.
    Accepted { suite: String },
    /// The server refused (an alert, or the connection closed).
    Refused,
    /// Not measured: the attempt itself failed (timeout, connection refused…).
    Failed(String),
}

/// One handshake attempt: a version, what was offered, how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsTrial {
    pub version: TlsVersion,
    /// The suites offered, e.g. "TLS13_AES_256_GCM_SHA384" or "CBC and RSA-key-exchange suites".
    pub offered: String,
    pub outcome: TrialOutcome,
}

/// The trials against one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMeasurement {
    /// What was handshaken with, e.g. "the listener's configuration" or "https://host:port".
    pub target: String,
    pub trials: Vec<TlsTrial>,
    /// Why nothing could be measured (the certificate unreadable, the host unreachable…).
    pub error: Option<String>,
}

/// What the binary knows of the TLS listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportEvidence {
    /// Handshakes with the listener's configuration (in memory, no network).
    pub configured: Option<TlsMeasurement>,
    /// Handshakes with a live listener.
    pub probed: Option<TlsMeasurement>,
}
