//! TLS for the HTTPS listener: rustls on AWS-LC, TLS 1.2 and 1.3 only, AEAD cipher suites only
//! (rustls implements no CBC, RC4 or export suite), and a self-signed development certificate
//! that `init` writes when no certificate is configured.
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const TLS_DIR: &str = "tls";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// Where the certificate and key are: the configured files, else the data dir's dev pair.
pub fn paths(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> (PathBuf, PathBuf) {
    match (cert, key) {
        (Some(c), Some(k)) => (c.to_owned(), k.to_owned()),
        _ => (
            data_dir.join(TLS_DIR).join(CERT_FILE),
            data_dir.join(TLS_DIR).join(KEY_FILE),
        ),
    }
}

/// Writes a self-signed certificate for localhost, 127.0.0.1 and ::1 (key mode 0600).
pub fn write_dev_cert(data_dir: &Path) -> Result<PathBuf, String> {
    let dir = data_dir.join(TLS_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create {}: {}", dir.display(), e.kind()))?;
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a development certificate: {e}"))?;
    let cert_path = dir.join(CERT_FILE);
    write_file(&cert_path, cert.cert.pem().as_bytes(), 0o644)?;
    write_file(
        &dir.join(KEY_FILE),
        cert.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    Ok(cert_path)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = o
        .open(path)
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.kind()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.kind()))
}

/// The rustls server configuration. Refuses a private key readable by group or others.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    build(cert, key, None)
}

/// Client certificates for the MLLP listener: the CA file that signs sending systems'
/// certificates, and whether a connection without one is refused.
pub struct ClientAuth<'a> {
    pub ca: &'a Path,
    pub required: bool,
}

/// [`server_config`] that asks for client certificates signed by `auth.ca`.
pub fn server_config_with_clients(
    cert: &Path,
    key: &Path,
    auth: ClientAuth<'_>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    build(cert, key, Some(auth))
}

fn build(
    cert: &Path,
    key: &Path,
    clients: Option<ClientAuth<'_>>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(key)
            .map_err(|e| format!("cannot read the TLS key {}: {}", key.display(), e.kind()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "the TLS key {} is readable by other users; chmod 600 it",
                key.display()
            ));
        }
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS configuration: {e}"))?;
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(auth.ca)
                .map_err(|e| format!("cannot read the client CA file {}: {e}", auth.ca.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("bad client CA file {}: {e}", auth.ca.display()))?;
            for ca in cas {
                roots
                    .add(ca)
                    .map_err(|e| format!("bad client CA in {}: {e}", auth.ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("no CA certificate in {}", auth.ca.display()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client certificate verifier: {e}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's preference (strongest first) decides the cipher suite, not the client's.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}
