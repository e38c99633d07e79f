//! The MLLP (HL7 v2) listener that `phivault serve` starts: TLS by default with the server's
//! certificate, plain MLLP only when set explicitly; a source allow-list in CIDR form checked
//! before a byte is read; each connection served by `phivault_hl7::conn` as the interface of
//! one organization.
use phivault_hl7::ParseLimits;
use phivault_hl7::conn::{Limits, serve};
use phivault_hl7::ingest::Interface;
use phivault_vault::Vault;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use phivault_core::net::Cidr;

/// The listener's settings, from `PHIVAULT_MLLP_*` (and `--mllp-listen`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub tls: bool,
    pub allow: Vec<Cidr>,
    pub org: Option<String>,
    pub purpose: phivault_vault::policy::Purpose,
    pub limits: Limits,
    /// Connections served at once; more are closed as they come.
    pub max_connections: usize,
    /// CA file for sending systems' client certificates (asked for when set).
    pub client_ca: Option<std::path::PathBuf>,
    /// Refuse connections without a client certificate.
    pub client_cert_required: bool,
    /// Named interfaces: (name, DNS name their client certificate must be valid for).
    pub interfaces: Vec<(String, String)>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A whole number from `var` within `range`, else `default` when unset.
fn bounded(
    var: &str,
    range: std::ops::RangeInclusive<usize>,
    default: usize,
) -> Result<usize, String> {
    match env(var) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                format!(
                    "{var} is a whole number from {} to {}",
                    range.start(),
                    range.end()
                )
            }),
    }
}

/// `PHIVAULT_MLLP_INTERFACES`: `name=dns.name,…`.
fn interfaces_from_env() -> Result<Vec<(String, String)>, String> {
    env("PHIVAULT_MLLP_INTERFACES")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (name, dns) = pair.split_once('=').ok_or_else(|| {
                format!("PHIVAULT_MLLP_INTERFACES: '{pair}' is not name=dns.name")
            })?;
            let (name, dns) = (name.trim(), dns.trim());
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok || rustls::pki_types::DnsName::try_from(dns).is_err() {
                return Err(format!(
                    "PHIVAULT_MLLP_INTERFACES: '{pair}' is not name=dns.name"
                ));
            }
            Ok((name.to_owned(), dns.to_owned()))
        })
        .collect::<Result<Vec<_>, String>>()
}

/// The purpose of use interfaces act for: `PHIVAULT_MLLP_PURPOSE` (default TREAT).
pub(crate) fn purpose_from_env() -> Result<phivault_vault::policy::Purpose, String> {
    match env("PHIVAULT_MLLP_PURPOSE") {
        None => Ok(phivault_vault::policy::Purpose::Treat),
        Some(p) => phivault_vault::policy::Purpose::parse(&p)
            .ok_or_else(|| format!("PHIVAULT_MLLP_PURPOSE '{p}' is not an HL7 PurposeOfUse code")),
    }
}

/// A connection's limits from `PHIVAULT_MLLP_MAX_FRAME` (bytes), `_READ_TIMEOUT` and
/// `_FRAME_TIMEOUT` (seconds), `_MAX_REPETITIONS` and `_MAX_COMPONENTS` (per field) and
/// `_MAX_ELEMENTS` (per message).
pub(crate) fn limits_from_env() -> Result<Limits, String> {
    let d = Limits::default();
    let secs = |var: &str, default: Duration| {
        let default = usize::try_from(default.as_secs()).unwrap_or(60);
        bounded(var, 1..=3600, default).map(|n| Duration::from_secs(n as u64))
    };
    let parse = ParseLimits {
        max_repetitions: bounded(
            "PHIVAULT_MLLP_MAX_REPETITIONS",
            1..=100_000,
            d.parse.max_repetitions,
        )?,
        max_field_elements: bounded(
            "PHIVAULT_MLLP_MAX_COMPONENTS",
            1..=1_000_000,
            d.parse.max_field_elements,
        )?,
        max_message_elements: bounded(
            "PHIVAULT_MLLP_MAX_ELEMENTS",
            1..=10_000_000,
            d.parse.max_message_elements,
        )?,
    };
    Ok(Limits {
        max_frame: bounded(
            "PHIVAULT_MLLP_MAX_FRAME",
            1024..=64 * 1024 * 1024,
            d.max_frame,
        )?,
        read_timeout: secs("PHIVAULT_MLLP_READ_TIMEOUT", d.read_timeout)?,
        frame_timeout: secs("PHIVAULT_MLLP_FRAME_TIMEOUT", d.frame_timeout)?,
        parse,
    })
}

impl Settings {
    /// `None` when the listener is off (`--mllp-listen off`).
    pub fn from_env(listen: &str) -> Result<Option<Self>, String> {
        if listen.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let listen: SocketAddr = listen
            .trim()
            .parse()
            .map_err(|_| format!("PHIVAULT_MLLP_LISTEN '{listen}' is not host:port (or off)"))?;
        let tls = match env("PHIVAULT_MLLP_TLS").as_deref() {
            None | Some("required") => true,
            Some("off") => false,
            Some(other) => {
                return Err(format!(
                    "PHIVAULT_MLLP_TLS is required or off, not '{other}'"
                ));
            }
        };
        let allow = Cidr::parse_list(
            "PHIVAULT_MLLP_ALLOW",
            &env("PHIVAULT_MLLP_ALLOW").unwrap_or_else(|| "127.0.0.1/32".into()),
        )?;
        let purpose = purpose_from_env()?;
        let limits = limits_from_env()?;
        let max_connections = bounded("PHIVAULT_MLLP_MAX_CONNECTIONS", 1..=100_000, 64)?;
        let client_ca = env("PHIVAULT_MLLP_CLIENT_CA").map(std::path::PathBuf::from);
        let client_cert_required = match env("PHIVAULT_MLLP_CLIENT_CERT").as_deref() {
            None | Some("optional") => false,
            Some("required") => true,
            Some(other) => {
                return Err(format!(
                    "PHIVAULT_MLLP_CLIENT_CERT is optional or required, not '{other}'"
                ));
            }
        };
        let interfaces = interfaces_from_env()?;
        if (client_cert_required || !interfaces.is_empty()) && client_ca.is_none() {
            return Err(
                "client certificates (PHIVAULT_MLLP_CLIENT_CERT, PHIVAULT_MLLP_INTERFACES) need \
                 PHIVAULT_MLLP_CLIENT_CA"
                    .into(),
            );
        }
        if client_ca.is_some() && !tls {
            return Err("PHIVAULT_MLLP_CLIENT_CA needs TLS (PHIVAULT_MLLP_TLS=required)".into());
        }
        Ok(Some(Self {
            listen,
            tls,
            allow,
            org: env("PHIVAULT_MLLP_ORG"),
            purpose,
            limits,
            max_connections,
            client_ca,
            client_cert_required,
            interfaces,
        }))
    }
}

/// An HL7 timestamp (UTC).
pub(crate) fn hl7_ts(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Binds the listener; the returned future serves until the process ends.
pub async fn bind(
    vault: Vault,
    authority: phivault_vault::InterfaceAuthority,
    settings: Settings,
    tls: Arc<rustls::ServerConfig>,
    clock: Arc<dyn phivault_core::Clock>,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), String> {
    let orgs = vault
        .organizations()
        .await
        .map_err(|e| e.client_message())?;
    let org = match (&settings.org, orgs.as_slice()) {
        (Some(name), _) => phivault_core::OrgId::parse(name)
            .ok()
            .filter(|o| orgs.iter().any(|x| &x.id == o))
            .ok_or_else(|| {
                format!("PHIVAULT_MLLP_ORG '{name}' is not an organization of this vault")
            })?,
        (None, [one]) => one.id.clone(),
        (None, _) => return Err("several organizations: set PHIVAULT_MLLP_ORG".into()),
    };
    let iface = Arc::new(Interface {
        org: org.clone(),
        name: "default".into(),
        purpose: settings.purpose,
        authority: authority.clone(),
    });
    let named: Arc<Vec<(String, Arc<Interface>)>> = Arc::new(
        settings
            .interfaces
            .iter()
            .map(|(name, dns)| {
                let i = Interface {
                    org: org.clone(),
                    name: name.clone(),
                    purpose: settings.purpose,
                    authority: authority.clone(),
                };
                (dns.clone(), Arc::new(i))
            })
            .collect(),
    );
    let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
        format!(
            "cannot listen for MLLP on {}: {}",
            settings.listen,
            e.kind()
        )
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("MLLP listener: {}", e.kind()))?;
    let mut tls = (*tls).clone();
    tls.alpn_protocols.clear();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let shared = Arc::new(Shared {
        vault,
        iface,
        named,
        acceptor,
        limits: settings.limits,
        tls: settings.tls,
        clock,
    });
    Ok((bound, accept_loop(listener, settings, shared)))
}

/// Accepts connections until the process ends: sources outside the allow-list and
/// connections beyond the limit are closed before a byte is read.
async fn accept_loop(listener: TcpListener, settings: Settings, shared: Arc<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !settings.allow.iter().any(|c| c.contains(peer.ip())) {
            // Not a byte read, not a byte written.
            tracing::warn!(source = %peer.ip(), "MLLP: connection from outside the allow-list refused");
            drop(tcp);
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                source = %peer.ip(),
                max = settings.max_connections,
                "MLLP: connection limit reached; connection refused"
            );
            drop(tcp);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let summary = connection(&shared, tcp, peer).await;
            // The slot is free before the end is logged.
            drop(slot);
            if let Some(summary) = summary {
                tracing::info!(
                    messages = summary.messages,
                    junk_bytes = summary.junk_bytes,
                    oversized = summary.oversized,
                    timed_out = summary.timed_out,
                    frame_late = summary.frame_late,
                    partial = summary.partial_at_end,
                    "MLLP connection closed"
                );
            }
        });
    }
}

/// What every connection's task shares.
struct Shared {
    vault: Vault,
    iface: Arc<Interface>,
    named: Arc<Vec<(String, Arc<Interface>)>>,
    acceptor: tokio_rustls::TlsAcceptor,
    limits: Limits,
    tls: bool,
    clock: Arc<dyn phivault_core::Clock>,
}

/// Serves one accepted connection (after the TLS handshake, when TLS is on); `None` when it
/// was refused before serving.
async fn connection(
    shared: &Shared,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<phivault_hl7::conn::Summary> {
    let clock = shared.clock.clone();
    let hl7_now = move || hl7_ts(clock.now());
    let source = Some(peer.ip().to_string());
    let limits = shared.limits;
    if !shared.tls {
        return Some(serve(tcp, &shared.vault, &shared.iface, source, limits, &hl7_now).await);
    }
    let handshake = tokio::time::timeout(limits.read_timeout, shared.acceptor.accept(tcp)).await;
    let Ok(Ok(stream)) = handshake else {
        tracing::warn!(source = %peer.ip(), "MLLP: TLS handshake failed (plain MLLP is refused while TLS is required)");
        return None;
    };
    let peer_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned();
    let iface = match peer_cert {
        // Without a certificate (allowed unless required): the default.
        None => shared.iface.clone(),
        Some(cert) => match interface_for(&cert, &shared.named) {
            Some(i) => i,
            None => {
                tracing::warn!(source = %peer.ip(), "MLLP: the client certificate names no configured interface; refused");
                return None;
            }
        },
    };
    Some(serve(stream, &shared.vault, &iface, source, limits, &hl7_now).await)
}

/// The configured interface a (verified) client certificate is valid for, if any.
fn interface_for(
    cert: &rustls::pki_types::CertificateDer<'_>,
    named: &[(String, Arc<Interface>)],
) -> Option<Arc<Interface>> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    named.iter().find_map(|(dns, iface)| {
        let name = rustls::pki_types::ServerName::try_from(dns.as_str()).ok()?;
        ee.verify_is_valid_for_subject_name(&name)
            .ok()
            .map(|()| iface.clone())
    })
}
