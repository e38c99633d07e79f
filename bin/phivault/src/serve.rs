//! `phivault serve`: the HTTPS listener over the vault.
use crate::datadir::Opened;
use axum_server::tls_rustls::RustlsConfig;
use phivault_api::body_limit::BodyLimit;
use phivault_api::edge::EdgePolicy;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The HTTPS listener's edge settings: `PHIVAULT_HTTP_ALLOW` (address blocks that may
/// connect at all; default every source), `PHIVAULT_ADMIN_ALLOW` (those that may also use
/// `/admin` and `/metrics`; default every allowed source), `PHIVAULT_HSTS_PRELOAD`
/// (`on` or `off`, default off) and `PHIVAULT_MAX_BODY` (the largest request body, in bytes,
/// 64 KiB to 256 MiB; default 8 MiB). A value that does not parse stops the start.
pub fn edge_from_env() -> Result<EdgePolicy, String> {
    let list = |var: &str| match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{var} is not text")),
        Ok(v) => phivault_core::net::Cidr::parse_list(var, &v).map(Some),
    };
    let hsts_preload = match std::env::var("PHIVAULT_HSTS_PRELOAD").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("off") => false,
        Ok("on") => true,
        _ => return Err("PHIVAULT_HSTS_PRELOAD is on or off".into()),
    };
    let body_limit = match std::env::var("PHIVAULT_MAX_BODY") {
        Err(std::env::VarError::NotPresent) => BodyLimit::default(),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err("PHIVAULT_MAX_BODY is not text".into());
        }
        Ok(v) => BodyLimit::parse("PHIVAULT_MAX_BODY", &v)?,
    };
    Ok(EdgePolicy {
        http_allow: list("PHIVAULT_HTTP_ALLOW")?,
        admin_allow: list("PHIVAULT_ADMIN_ALLOW")?,
        hsts_preload,
        body_limit,
    })
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully. `ready` is told the bound
/// address once the listener accepts connections.
pub async fn run(
    opened: &Opened,
    listen: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    edge: EdgePolicy,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    // The compliance report measures this listener: its configuration, and the bound address.
    let listener = crate::tls_probe::ListenerTls::serving(tls.clone());
    let bound_cell = listener.bound();
    let vault = opened.vault.clone().with_transport(Arc::new(listener));
    tokio::spawn(refresh_keyring(vault.clone()));
    let app = phivault_api::router(phivault_api::AppState::new(vault).with_edge(edge));
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let server = axum_server::bind_rustls(listen, RustlsConfig::from_config(tls))
        .handle(handle.clone())
        .serve(app.into_make_service_with_connect_info::<SocketAddr>());
    let serving = tokio::spawn(server);
    let bound = handle
        .listening()
        .await
        .ok_or_else(|| format!("cannot listen on {listen}"))?;
    let _ = bound_cell.set(bound);
    ready(bound);
    serving
        .await
        .map_err(|_| "the server task failed".to_owned())?
        .map_err(|e| format!("server error: {}", e.kind()))
}

/// How often a server reloads its KEK versions from the control store.
const KEYRING_REFRESH: Duration = Duration::from_secs(10);

/// Picks up KEK versions another node's rotation added (new writes then use the newest) and
/// drops retired ones, even before a record names one (reads reload at once when one does).
async fn refresh_keyring(vault: phivault_vault::Vault) {
    let mut tick = tokio::time::interval(KEYRING_REFRESH);
    loop {
        tick.tick().await;
        if let Err(e) = vault.reload_keyring().await {
            tracing::warn!(error = %e, "keyring reload failed");
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
