//! The MLLP (HL7 v2) listener that `phivault serve` starts: TLS by default with the server's
//! certificate, plain MLLP only when set explicitly; a source allow-list in CIDR form checked
//! before a byte is read; each connection served by `phivault_hl7::conn` as the interface of
//! one organization.
use phivault_hl7::ParseLimits;
use phivault_hl7::conn::{Limits, serve};
use phivault_hl7::ingest::{Interface, UnknownPatient};
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
    /// The default interface and the named ones (client certificate DNS name → interface).
    pub interfaces: crate::mllp_interfaces::Interfaces,
    /// `PHIVAULT_MLLP_UNKNOWN_PATIENT`: what a non-ADT message about an unknown patient does.
    pub unknown_patient: UnknownPatient,
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

/// `PHIVAULT_MLLP_UNKNOWN_PATIENT`: `create` (the default) or `reject`.
pub(crate) fn unknown_patient_from_env() -> Result<UnknownPatient, String> {
    match env("PHIVAULT_MLLP_UNKNOWN_PATIENT").as_deref() {
        None | Some("create") => Ok(UnknownPatient::Create),
        Some("reject") => Ok(UnknownPatient::Reject),
        Some(other) => Err(format!(
            "PHIVAULT_MLLP_UNKNOWN_PATIENT is create or reject, not '{other}'"
        )),
    }
}

/// The configuration of interface `name` as `PHIVAULT_MLLP_INTERFACES` and
/// `PHIVAULT_MLLP_GRANTS` give it now (an interface no longer configured: no grants, no
/// legacy senders).
pub(crate) fn interface_conf_from_env(
    name: &str,
) -> Result<crate::mllp_interfaces::InterfaceConf, String> {
    let all = crate::mllp_interfaces::parse(
        env("PHIVAULT_MLLP_INTERFACES").as_deref(),
        env("PHIVAULT_MLLP_GRANTS").as_deref(),
    )?;
    Ok(std::iter::once(all.default)
        .chain(all.named)
        .find(|c| c.name == name)
        .unwrap_or_else(|| crate::mllp_interfaces::InterfaceConf {
            name: name.to_owned(),
            ..Default::default()
        }))
}

impl Settings {
    /// `None` when the listener is off (`--mllp-listen off`). `interfaces`: the value of
    /// `--mllp-interfaces` / `PHIVAULT_MLLP_INTERFACES`.
    pub fn from_env(listen: &str, interfaces: Option<&str>) -> Result<Option<Self>, String> {
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
        let client_cert_required = client_cert_required(&allow, client_ca.is_some())?;
        let interfaces =
            crate::mllp_interfaces::parse(interfaces, env("PHIVAULT_MLLP_GRANTS").as_deref())?;
        let unknown_patient = unknown_patient_from_env()?;
        if (client_cert_required || !interfaces.named.is_empty()) && client_ca.is_none() {
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
            unknown_patient,
        }))
    }
}

/// Whether connections need a client certificate: `PHIVAULT_MLLP_CLIENT_CERT`, by default
/// `required` as soon as the allow-list admits a source beyond loopback (each sending system
/// is then an interface named by its certificate). Such a list without a client CA is a
/// startup error that names what to set; an explicit `optional` is allowed, with a warning.
fn client_cert_required(allow: &[Cidr], have_ca: bool) -> Result<bool, String> {
    let beyond_loopback = allow.iter().any(|c| !c.is_loopback_only());
    match env("PHIVAULT_MLLP_CLIENT_CERT").as_deref() {
        None if beyond_loopback && !have_ca => Err(
            "PHIVAULT_MLLP_ALLOW admits sources beyond loopback, so MLLP client certificates are \
             required: set PHIVAULT_MLLP_CLIENT_CA (the CA of the sending systems' certificates) \
             and PHIVAULT_MLLP_INTERFACES (which certificate is which interface), or \
             PHIVAULT_MLLP_CLIENT_CERT=optional to accept senders without one"
                .into(),
        ),
        None => Ok(beyond_loopback),
        Some("required") => Ok(true),
        Some("optional") => {
            if beyond_loopback {
                tracing::warn!(
                    "MLLP: PHIVAULT_MLLP_CLIENT_CERT=optional while PHIVAULT_MLLP_ALLOW admits \
                     sources beyond loopback: senders without a client certificate all act as \
                     the one default interface"
                );
            }
            Ok(false)
        }
        Some(other) => Err(format!(
            "PHIVAULT_MLLP_CLIENT_CERT is optional or required, not '{other}'"
        )),
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
    let make = |c: &crate::mllp_interfaces::InterfaceConf| {
        Arc::new(Interface {
            org: org.clone(),
            name: c.name.clone(),
            purpose: settings.purpose,
            authority: authority.clone(),
            grants: c.grants,
            legacy_senders: c.legacy_senders.clone(),
            unknown_patient: settings.unknown_patient,
        })
    };
    let iface = make(&settings.interfaces.default);
    let named: Arc<Vec<(String, Arc<Interface>)>> = Arc::new(
        settings
            .interfaces
            .named
            .iter()
            .filter_map(|c| Some((c.dns_name.clone()?, make(c))))
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
                tracing::warn!(source = %peer.ip(), "MLLP: the client certificate names no configured interface, or several; refused");
                return None;
            }
        },
    };
    Some(serve(stream, &shared.vault, &iface, source, limits, &hl7_now).await)
}

/// The one configured interface a (verified) client certificate is valid for: `None` when it
/// names none, or several (a wildcard or many-name certificate must not pick an identity).
fn interface_for(
    cert: &rustls::pki_types::CertificateDer<'_>,
    named: &[(String, Arc<Interface>)],
) -> Option<Arc<Interface>> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut matching = named.iter().filter(|(dns, _)| {
        rustls::pki_types::ServerName::try_from(dns.as_str())
            .is_ok_and(|name| ee.verify_is_valid_for_subject_name(&name).is_ok())
    });
    match (matching.next(), matching.next()) {
        (Some((_, iface)), None) => Some(iface.clone()),
        _ => None,
    }
}
