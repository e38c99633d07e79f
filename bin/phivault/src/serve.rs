//! `phivault serve`: the HTTPS listener over the vault.
use crate::datadir::Opened;
use axum_server::tls_rustls::RustlsConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Serves until SIGINT or SIGTERM, then shuts down gracefully. `ready` is told the bound
/// address once the listener accepts connections.
pub async fn run(
    opened: &Opened,
    listen: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    // The compliance report measures this listener: its configuration, and the bound address.
    let listener = crate::tls_probe::ListenerTls::serving(tls.clone());
    let bound_cell = listener.bound();
    let vault = opened.vault.clone().with_transport(Arc::new(listener));
    let app = phivault_api::router(phivault_api::AppState::new(vault));
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
