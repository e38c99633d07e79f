//! Measures a TLS listener for the compliance report (§164.312(e)): one handshake per TLS 1.3
//! and TLS 1.2 cipher suite of the crypto provider (a rustls client limited to that version
//! and suite), and a hand-built ClientHello for TLS 1.0, TLS 1.1 and TLS 1.2 with only CBC and
//! RSA-key-exchange suites (rustls clients cannot speak those), whose answer — a ServerHello
//! or an alert — is read and nothing more. The same trials run against the listener's own
//! configuration in memory and, with a probe, against a live address.
//!
//! The probing client does not check the certificate chain (it measures protocols, not trust);
//! it still verifies the server's handshake signatures.
use phivault_core::BoxFuture;
use phivault_vault::compliance::{
    TlsMeasurement, TlsTrial, TlsVersion, TransportEvidence, TransportSource, TrialOutcome,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Suites offered in the hand-built ClientHellos: CBC (and 3DES), with and without ECDHE.
/// A server that answers one of these with a ServerHello allows a non-AEAD suite.
const LEGACY_SUITES: [(u16, &str); 8] = [
    (0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    (0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    (0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    (0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    (0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
];

/// Where to probe: `https://host:port` (port 443 if none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let bad = || format!("--probe takes https://HOST:PORT, not {url:?}");
        let rest = url.trim().strip_prefix("https://").ok_or_else(bad)?;
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let port = match port {
            None => 443,
            Some(p) => p.parse().map_err(|_| bad())?,
        };
        Ok(Target {
            host: host.to_owned(),
            port,
        })
    }

    fn url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// Accepts any certificate (trust is not what is measured) but checks handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection to the listener under test: a TCP socket, or its configuration in memory.
trait Connect {
    type Stream: Read + Write;
    fn connect(&self) -> Result<Self::Stream, String>;
}

struct Live(Vec<SocketAddr>);

impl Connect for Live {
    type Stream = TcpStream;
    fn connect(&self) -> Result<TcpStream, String> {
        let mut last = "no address".to_owned();
        for a in &self.0 {
            match TcpStream::connect_timeout(a, TIMEOUT) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(TIMEOUT));
                    let _ = s.set_write_timeout(Some(TIMEOUT));
                    return Ok(s);
                }
                Err(e) => last = e.kind().to_string(),
            }
        }
        Err(last)
    }
}

struct InMemory(Arc<rustls::ServerConfig>);

/// The server side of an in-memory connection: what the client writes is handed to a rustls
/// server connection; what it reads is that server's answer (end of stream when it has none).
struct Loopback(rustls::ServerConnection);

impl Read for Loopback {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.wants_write() {
            let mut out = buf;
            self.0.write_tls(&mut out)
        } else {
            Ok(0)
        }
    }
}

impl Write for Loopback {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.0.read_tls(&mut rest)? == 0 {
                break;
            }
            if self.0.process_new_packets().is_err() {
                // Refused: the alert (if any) waits in the server's output.
                break;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Connect for InMemory {
    type Stream = Loopback;
    fn connect(&self) -> Result<Loopback, String> {
        rustls::ServerConnection::new(self.0.clone())
            .map(Loopback)
            .map_err(|e| e.to_string())
    }
}

fn failed_or_refused(e: &std::io::Error) -> TrialOutcome {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => TrialOutcome::Failed("timeout".into()),
        _ => TrialOutcome::Refused,
    }
}

/// One rustls handshake limited to `version` and `suite`.
fn rustls_trial(
    conn: &impl Connect,
    server_name: &ServerName<'static>,
    version: &'static rustls::SupportedProtocolVersion,
    suite: rustls::SupportedCipherSuite,
) -> TrialOutcome {
    let base = rustls::crypto::aws_lc_rs::default_provider();
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![suite],
        ..base
    });
    let config = match rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Err(e) => return TrialOutcome::Failed(e.to_string()),
    };
    let mut client = match rustls::ClientConnection::new(Arc::new(config), server_name.clone()) {
        Ok(c) => c,
        Err(e) => return TrialOutcome::Failed(e.to_string()),
    };
    let mut stream = match conn.connect() {
        Ok(s) => s,
        Err(e) => return TrialOutcome::Failed(e),
    };
    match client.complete_io(&mut stream) {
        Ok(_) if !client.is_handshaking() => TrialOutcome::Accepted {
            suite: client
                .negotiated_cipher_suite()
                .map_or_else(|| "unknown".into(), |s| format!("{:?}", s.suite())),
        },
        Ok(_) => TrialOutcome::Refused,
        Err(e) => failed_or_refused(&e),
    }
}

fn push_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
}

/// A ClientHello record for `version` (0x0301 TLS 1.0 … 0x0303 TLS 1.2) offering `suites`.
fn legacy_hello(version: u16, suites: &[u16], sni: Option<&str>) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0u8];
        push_u16(&mut list, name.len());
        list.extend_from_slice(name.as_bytes());
        ext.extend_from_slice(&[0, 0]);
        push_u16(&mut ext, list.len() + 2);
        push_u16(&mut ext, list.len());
        ext.extend_from_slice(&list);
    }
    // supported_groups: x25519, secp256r1, secp384r1; ec_point_formats: uncompressed;
    // signature_algorithms: ECDSA/RSA-PSS/RSA with SHA-256, SHA-384, SHA-1;
    // renegotiation_info: empty.
    ext.extend_from_slice(&[0x00, 0x0a, 0, 8, 0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]);
    ext.extend_from_slice(&[0x00, 0x0b, 0, 2, 1, 0]);
    ext.extend_from_slice(&[
        0x00, 0x0d, 0, 12, 0, 10, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x02, 0x01,
    ]);
    ext.extend_from_slice(&[0xff, 0x01, 0, 1, 0]);
    let mut body = version.to_be_bytes().to_vec();
    body.extend_from_slice(&[0x5a; 32]); // client random: a probe needs no secrecy
    body.push(0); // no session id
    push_u16(&mut body, suites.len() * 2);
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression only
    push_u16(&mut body, ext.len());
    body.extend_from_slice(&ext);
    let len = u32::try_from(body.len()).unwrap_or(0).to_be_bytes();
    let mut hs = vec![1u8];
    hs.extend_from_slice(len.get(1..).unwrap_or(&[0, 0, 0]));
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    push_u16(&mut record, hs.len());
    record.extend_from_slice(&hs);
    record
}

/// Reads until `n` bytes or the end of the stream.
fn read_up_to(stream: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match stream.read(buf.get_mut(got..).unwrap_or_default())? {
            0 => break,
            k => got += k,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Sends a hand-built ClientHello and reads the answer's first record: a ServerHello for the
/// version offered is acceptance (the suite it picked is named); an alert or a close is refusal.
fn legacy_trial(conn: &impl Connect, version: u16, sni: Option<&str>) -> TrialOutcome {
    let suites: Vec<u16> = LEGACY_SUITES.iter().map(|(id, _)| *id).collect();
    let mut stream = match conn.connect() {
        Ok(s) => s,
        Err(e) => return TrialOutcome::Failed(e),
    };
    if let Err(e) = stream
        .write_all(&legacy_hello(version, &suites, sni))
        .and_then(|()| stream.flush())
    {
        return failed_or_refused(&e);
    }
    // Record header (5) + handshake header (4) + version (2) + random (32) + session id length.
    let head = match read_up_to(&mut stream, 44) {
        Ok(h) => h,
        Err(e) => return failed_or_refused(&e),
    };
    let is_server_hello = head.first() == Some(&0x16) && head.get(5) == Some(&0x02);
    let offered = version.to_be_bytes();
    if !is_server_hello || head.get(9..11) != Some(&offered[..]) {
        return TrialOutcome::Refused;
    }
    let sid_len = head.get(43).copied().map_or(0, usize::from);
    let suite = read_up_to(&mut stream, sid_len + 2).ok().and_then(|b| {
        let id = u16::from_be_bytes([*b.get(sid_len)?, *b.get(sid_len + 1)?]);
        Some(
            LEGACY_SUITES
                .iter()
                .find(|(i, _)| *i == id)
                .map_or_else(|| format!("0x{id:04x}"), |(_, n)| (*n).to_owned()),
        )
    });
    TrialOutcome::Accepted {
        suite: suite.unwrap_or_else(|| "unknown".into()),
    }
}

/// Every trial against one listener.
fn trials(conn: &impl Connect, host: &str) -> Vec<TlsTrial> {
    let server_name = ServerName::try_from(host.to_owned())
        .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let sni = match &server_name {
        ServerName::DnsName(d) => Some(d.as_ref().to_owned()),
        _ => None,
    };
    let mut out = Vec::new();
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    for (version, tls) in [
        (TlsVersion::Tls13, &rustls::version::TLS13),
        (TlsVersion::Tls12, &rustls::version::TLS12),
    ] {
        for suite in provider.cipher_suites.iter().filter(|s| s.version() == tls) {
            out.push(TlsTrial {
                version,
                offered: format!("{:?}", suite.suite()),
                outcome: rustls_trial(conn, &server_name, tls, *suite),
            });
        }
    }
    for (version, code) in [
        (TlsVersion::Tls12, 0x0303),
        (TlsVersion::Tls11, 0x0302),
        (TlsVersion::Tls10, 0x0301),
    ] {
        out.push(TlsTrial {
            version,
            offered: "CBC and RSA-key-exchange suites".into(),
            outcome: legacy_trial(conn, code, sni.as_deref()),
        });
    }
    out
}

/// Handshakes with a TLS server configuration in memory.
pub fn measure_config(config: &Arc<rustls::ServerConfig>, what: &str) -> TlsMeasurement {
    TlsMeasurement {
        target: what.to_owned(),
        trials: trials(&InMemory(config.clone()), "localhost"),
        error: None,
    }
}

/// Handshakes with a live listener.
pub fn measure_live(target: &Target) -> TlsMeasurement {
    let addrs: Vec<SocketAddr> = match (target.host.as_str(), target.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            return TlsMeasurement {
                target: target.url(),
                trials: Vec::new(),
                error: Some(format!("cannot resolve the host: {}", e.kind())),
            };
        }
    };
    let live = Live(addrs);
    if let Err(e) = live.connect() {
        return TlsMeasurement {
            target: target.url(),
            trials: Vec::new(),
            error: Some(format!("cannot connect: {e}")),
        };
    }
    TlsMeasurement {
        target: target.url(),
        trials: trials(&live, &target.host),
        error: None,
    }
}

/// The HTTPS listener, for the compliance report: its configuration (or why it could not be
/// read), and a live address to probe — given on the command line, or the serving process's
/// own once it is bound.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    config: Result<Arc<rustls::ServerConfig>, String>,
    probe: Option<Target>,
    bound: Arc<OnceLock<SocketAddr>>,
}

impl ListenerTls {
    /// For the command line: the configuration the listener would use, and an optional probe.
    pub fn configured(
        config: Result<Arc<rustls::ServerConfig>, String>,
        probe: Option<Target>,
    ) -> Self {
        Self {
            config,
            probe,
            bound: Arc::new(OnceLock::new()),
        }
    }

    /// For `serve`: the live configuration, and the address once bound (see [`Self::bound`]).
    pub fn serving(config: Arc<rustls::ServerConfig>) -> Self {
        Self::configured(Ok(config), None)
    }

    /// Where the serving process records its bound address.
    pub fn bound(&self) -> Arc<OnceLock<SocketAddr>> {
        self.bound.clone()
    }

    fn target(&self) -> Option<Target> {
        if let Some(t) = &self.probe {
            return Some(t.clone());
        }
        let addr = *self.bound.get()?;
        let ip = match addr.ip() {
            std::net::IpAddr::V4(v) if v.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(v) if v.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        Some(Target {
            host: ip.to_string(),
            port: addr.port(),
        })
    }

    fn evidence(&self) -> TransportEvidence {
        let configured = Some(match &self.config {
            Ok(c) => measure_config(c, "the listener's TLS configuration (in memory)"),
            Err(e) => TlsMeasurement {
                target: "the listener's TLS configuration".into(),
                trials: Vec::new(),
                error: Some(e.clone()),
            },
        });
        TransportEvidence {
            configured,
            probed: self.target().as_ref().map(measure_live),
        }
    }
}

impl TransportSource for ListenerTls {
    fn measure(&self) -> BoxFuture<'_, TransportEvidence> {
        let me = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || me.evidence())
                .await
                .unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_targets_parse() {
        let t = |s: &str| Target::parse(s);
        assert_eq!(
            t("https://localhost:8443"),
            Ok(Target {
                host: "localhost".into(),
                port: 8443
            })
        );
        assert_eq!(t("https://example.org/x").map(|t| t.port), Ok(443));
        assert_eq!(
            t("https://[::1]:9000").map(|t| (t.host, t.port)),
            Ok(("::1".into(), 9000))
        );
        assert!(t("http://localhost:80").is_err());
        assert!(t("https://user@host:1").is_err());
        assert!(t("https://:1").is_err());
        assert!(t("https://host:99999").is_err());
    }

    #[test]
    fn a_legacy_hello_is_a_well_formed_record() {
        let h = legacy_hello(0x0301, &[0x002f], Some("localhost"));
        assert_eq!(h.first(), Some(&0x16));
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        assert_eq!(h.len(), 5 + len);
        assert_eq!(h[5], 1);
        assert_eq!(&h[9..11], &[0x03, 0x01]);
    }
}
