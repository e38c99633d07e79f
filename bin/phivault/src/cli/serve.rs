//! `phivault serve`: start-up checks, the development mode's first run (a vault, a passphrase
//! file, a certificate and a bootstrap administrator), the schedules, the MLLP listener, and
//! the HTTPS listener of [`crate::serve`].
use super::output::PrivateFile;
use super::{DirArgs, OrgArgs, TlsArgs, clock, ctx, vault_err};
use crate::config;
use crate::datadir::{self, Opened};
use clap::Args;
use phivault_api::edge::EdgePolicy;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

// `phivault serve` (its help is the doc comment of `Command::Serve`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "PHIVAULT_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Development mode: on first run, initialize the data dir with a generated passphrase
    /// kept in a 0600 file beside it. Not for real data.
    #[arg(long)]
    dev: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// Address of the MLLP (HL7 v2) listener, or `off`. TLS unless PHIVAULT_MLLP_TLS=off;
    /// sources from PHIVAULT_MLLP_ALLOW (CIDR, default 127.0.0.1/32).
    #[arg(long, env = "PHIVAULT_MLLP_LISTEN", default_value = "127.0.0.1:2575")]
    mllp_listen: String,
    /// The HL7 interfaces (client certificate DNS name -> interface): `name=dns.name,...`
    /// or the path of a TOML file (see README, HL7 v2 over MLLP).
    #[arg(long, env = "PHIVAULT_MLLP_INTERFACES")]
    mllp_interfaces: Option<String>,
}

/// What the environment configures, read (and checked) before the vault is opened.
struct Settings {
    mllp: Option<crate::mllp::Settings>,
    edge: EdgePolicy,
    retention: Option<super::retention::Schedule>,
    backups: Option<crate::backup::Schedule>,
}

/// The development passphrase file beside a data dir: `./phivault-data.passphrase`.
fn dev_passphrase_path(dir: &Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".passphrase");
    dir.with_file_name(name)
}

/// In development mode, the first run creates the administrator `admin` (SUPER_ADMIN) and
/// returns what to print once: its one-time password and its TOTP enrollment.
async fn dev_bootstrap_admin(opened: &Opened) -> Result<Option<String>, String> {
    let c = ctx(opened, &OrgArgs { org: None }).await?;
    let existing = opened
        .vault
        .list_users(&c)
        .await
        .map_err(|e| vault_err(&e))?;
    if !existing.is_empty() {
        return Ok(None);
    }
    let org = c.org().clone();
    let n = opened
        .vault
        .add_user(&c, &org, "admin", phivault_core::Role::SuperAdmin, true)
        .await
        .map_err(|e| vault_err(&e))?;
    let mut text = format!(
        "bootstrap administrator (shown once): username admin, one-time password {} \
         (change it at first login: POST /auth/login, then /auth/password)",
        n.one_time_password.expose()
    );
    if let Some(e) = &n.enrollment {
        text.push_str(&format!(
            "\nTOTP enrollment for admin: {}\n  (secret {}; add it to an authenticator app)\n{}\nbackup codes (single use): {}",
            e.otpauth_uri.expose(),
            e.secret_base32.expose(),
            crate::qr::terminal_qr(e.otpauth_uri.expose()),
            e.backup_codes.iter().map(|c| c.expose().as_str()).collect::<Vec<_>>().join(" ")
        ));
    }
    Ok(Some(text))
}

/// `serve --dev` on a dir without a vault: creates one with the operator's passphrase when one
/// is given (the vault is then opened with it), else with a generated one kept in `dev_pass`;
/// and the development certificate.
async fn dev_first_run(dir: &Path, dev_pass: &Path) -> Result<(), String> {
    let (pass, kept_in) = match config::given_passphrase()? {
        Some(pass) => (pass, "PHIVAULT_PASSPHRASE(_FILE)".to_owned()),
        None => {
            let pass = phivault_crypto::Passphrase::new(
                phivault_crypto::random_passphrase().map_err(|e| e.to_string())?,
            );
            let mut f = PrivateFile::create(dev_pass, false)?;
            f.write(pass.expose().as_bytes())?;
            f.write(b"\n")?;
            f.finish()?;
            (
                pass,
                format!("{} (a generated one, mode 0600)", dev_pass.display()),
            )
        }
    };
    datadir::init(dir, &pass, clock().as_ref())
        .await
        .map_err(|e| e.to_string())?;
    crate::tls::write_dev_cert(dir)?;
    eprintln!(
        "DEVELOPMENT MODE: created {} with the passphrase from {kept_in}. \
         Not for real patient data.",
        dir.display(),
    );
    Ok(())
}

/// `phivault serve`: serves until SIGINT or SIGTERM.
pub async fn serve_cmd(a: ServeArgs) -> Result<ExitCode, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    crate::config::init_logging()?;
    let settings = Settings {
        mllp: crate::mllp::Settings::from_env(&a.mllp_listen, a.mllp_interfaces.as_deref())?,
        edge: crate::serve::edge_from_env()?,
        retention: super::retention::Schedule::from_env()?,
        backups: crate::backup::Schedule::from_env()?,
    };
    let dir = a.dir.data_dir;
    let root = root_key(&dir, a.dev).await?;
    let opened = datadir::open(&dir, &root, clock())
        .await
        .map_err(|e| e.to_string())?;
    let result = serve_on(&opened, &dir, a.listen, a.dev, a.tls, settings).await;
    opened.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// The root key to open the vault with. With `--dev`, a dir without a vault gets one first,
/// and the generated passphrase file beside it opens it unless a passphrase is given.
async fn root_key(dir: &Path, dev: bool) -> Result<datadir::RootKey, String> {
    let dev_pass = dev_passphrase_path(dir);
    if dev && !datadir::holds_vault(dir) && config::pkcs11()?.is_some() {
        return Err(
            "serve --dev creates a passphrase vault; with PHIVAULT_PKCS11_* set, \
                    run `phivault init` first (it makes the root key in the token)"
                .into(),
        );
    }
    if dev && !datadir::holds_vault(dir) {
        dev_first_run(dir, &dev_pass).await?;
    }
    if dev
        && std::env::var_os("PHIVAULT_PASSPHRASE_FILE").is_none()
        && std::env::var_os("PHIVAULT_PASSPHRASE").is_none()
        && datadir::root_key_kind(dir) == Some(datadir::RootKeyKind::Keyfile)
        && dev_pass.exists()
    {
        Ok(datadir::RootKey::Passphrase(config::passphrase_from_file(
            &dev_pass,
        )?))
    } else {
        config::root_key(dir)
    }
}

/// Start-up work on the opened vault, the schedules and the listeners; returns when the
/// HTTPS listener has shut down. The caller closes the vault.
async fn serve_on(
    opened: &Opened,
    dir: &Path,
    listen: SocketAddr,
    dev: bool,
    tls: TlsArgs,
    settings: Settings,
) -> Result<(), String> {
    super::keys::bind_links_at_start(opened).await?;
    super::keys::reindex_at_start(opened).await?;
    let bootstrap = if dev {
        dev_bootstrap_admin(opened).await?
    } else {
        None
    };
    if let Some(schedule) = settings.backups {
        tokio::spawn(schedule.run(
            opened.vault.clone(),
            opened.operator.clone(),
            opened.stores.clone(),
            dir.to_owned(),
            clock(),
        ));
    }
    if let Some(schedule) = settings.retention {
        tokio::spawn(schedule.run(opened.vault.clone(), opened.operator.clone()));
    }
    let (cert, key) = crate::tls::paths(dir, tls.tls_cert.as_deref(), tls.tls_key.as_deref());
    let config = crate::tls::server_config(&cert, &key)?;
    let mllp_line = start_mllp(opened, settings.mllp, &config, (&cert, &key)).await?;
    crate::serve::run(opened, listen, config, settings.edge, |addr| {
        tracing::info!(target: "phivault::serve", address = %addr, "listening");
        // Never println!: a closed standard output must not bring the server down.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "phivault is listening on https://{addr}");
        if let Some(l) = &mllp_line {
            let _ = writeln!(out, "{l}");
        }
        if dev {
            let _ = writeln!(out, "development certificate: {}", cert.display());
        }
        if let Some(b) = &bootstrap {
            let _ = writeln!(out, "{b}");
        }
        let _ = out.flush();
    })
    .await
}

/// Starts the MLLP (HL7 v2) listener when one is configured; returns the line that tells the
/// operator about it.
async fn start_mllp(
    opened: &Opened,
    mllp: Option<crate::mllp::Settings>,
    https: &Arc<rustls::ServerConfig>,
    (cert, key): (&Path, &Path),
) -> Result<Option<String>, String> {
    let several_orgs = opened
        .vault
        .organizations()
        .await
        .map(|o| o.len() > 1)
        .unwrap_or(false);
    let settings = match mllp {
        None => return Ok(None),
        Some(settings) if settings.org.is_none() && several_orgs => {
            tracing::warn!(
                "MLLP listener not started: several organizations and no PHIVAULT_MLLP_ORG"
            );
            return Ok(Some(
                "MLLP (HL7 v2) not started: several organizations; set PHIVAULT_MLLP_ORG"
                    .to_owned(),
            ));
        }
        Some(settings) => settings,
    };
    let tls_on = settings.tls;
    let mllp_tls = match &settings.client_ca {
        None => https.clone(),
        Some(ca) => crate::tls::server_config_with_clients(
            cert,
            key,
            crate::tls::ClientAuth {
                ca,
                required: settings.client_cert_required,
            },
        )?,
    };
    let (addr, serving) = crate::mllp::bind(
        opened.vault.clone(),
        opened.operator.interfaces(),
        settings,
        mllp_tls,
        clock(),
    )
    .await?;
    tokio::spawn(serving);
    Ok(Some(format!(
        "MLLP (HL7 v2) listening on {addr} ({})",
        if tls_on {
            "TLS"
        } else {
            "plain, allow-listed sources only"
        }
    )))
}
