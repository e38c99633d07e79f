//! Configuration from the environment: `PHIVAULT_*` variables (flags override them, through
//! clap's `env`). An unknown `PHIVAULT_*` variable is an error, so a typo never silently
//! falls back to a default. Secrets come from a file (`_FILE`) or the environment, never from
//! a command-line flag.
use crate::datadir::{RootKey, RootKeyKind};
use phivault_crypto::Passphrase;
use phivault_crypto::pkcs11::{DEFAULT_KEY_LABEL, ExistingKey, Pin, Pkcs11Config};
use std::io::IsTerminal;
use std::path::Path;

/// Every variable phivault reads. `PHIVAULT_TEST_*` is reserved for test harnesses.
pub const KNOWN_VARS: &[&str] = &[
    "PHIVAULT_ADMIN_ALLOW",
    "PHIVAULT_DATABASE_ACQUIRE_TIMEOUT_MS",
    "PHIVAULT_DATABASE_POOL_SIZE",
    "PHIVAULT_DATABASE_SCHEMA",
    "PHIVAULT_DATABASE_STATEMENT_TIMEOUT_MS",
    "PHIVAULT_DATABASE_URL",
    "PHIVAULT_DATABASE_URL_AUDIT",
    "PHIVAULT_DATABASE_URL_CLINICAL",
    "PHIVAULT_DATABASE_URL_CONTROL",
    "PHIVAULT_DATABASE_URL_IDENTITY",
    "PHIVAULT_BACKUP_DIR",
    "PHIVAULT_BACKUP_INTERVAL",
    "PHIVAULT_BACKUP_KEEP",
    "PHIVAULT_DATA_DIR",
    "PHIVAULT_HSTS_PRELOAD",
    "PHIVAULT_HTTP_ALLOW",
    "PHIVAULT_LISTEN",
    "PHIVAULT_LOG",
    "PHIVAULT_MAX_BODY",
    "PHIVAULT_MLLP_ALLOW",
    "PHIVAULT_MLLP_CLIENT_CA",
    "PHIVAULT_MLLP_CLIENT_CERT",
    "PHIVAULT_MLLP_FRAME_TIMEOUT",
    "PHIVAULT_MLLP_GRANTS",
    "PHIVAULT_MLLP_INTERFACES",
    "PHIVAULT_MLLP_LISTEN",
    "PHIVAULT_MLLP_MAX_COMPONENTS",
    "PHIVAULT_MLLP_MAX_CONNECTIONS",
    "PHIVAULT_MLLP_MAX_ELEMENTS",
    "PHIVAULT_MLLP_MAX_FRAME",
    "PHIVAULT_MLLP_MAX_REPETITIONS",
    "PHIVAULT_MLLP_ORG",
    "PHIVAULT_MLLP_PURPOSE",
    "PHIVAULT_MLLP_READ_TIMEOUT",
    "PHIVAULT_MLLP_TLS",
    "PHIVAULT_MLLP_UNKNOWN_PATIENT",
    "PHIVAULT_NEW_PASSPHRASE",
    "PHIVAULT_NEW_PASSPHRASE_FILE",
    "PHIVAULT_ORG",
    "PHIVAULT_PASSPHRASE",
    "PHIVAULT_PASSPHRASE_FILE",
    "PHIVAULT_PKCS11_KEY_LABEL",
    "PHIVAULT_PKCS11_MODULE",
    "PHIVAULT_PKCS11_PIN_FILE",
    "PHIVAULT_PKCS11_TOKEN",
    "PHIVAULT_POLICY_FILE",
    "PHIVAULT_RETENTION_INTERVAL",
    "PHIVAULT_TLS_CERT",
    "PHIVAULT_TLS_KEY",
];

/// Checks that every `PHIVAULT_*` variable in the environment is one phivault knows.
pub fn check_env() -> Result<(), String> {
    let mut unknown: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("PHIVAULT_") && !k.starts_with("PHIVAULT_TEST_"))
        .filter(|k| !KNOWN_VARS.contains(&k.as_str()))
        .collect();
    unknown.sort();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown environment variable(s) {}; known: {}",
            unknown.join(", "),
            KNOWN_VARS.join(", ")
        ))
    }
}

/// Where the passphrase comes from, in order: `PHIVAULT_PASSPHRASE_FILE`,
/// `PHIVAULT_PASSPHRASE`, else a prompt on a terminal. `confirm` asks twice (for `init`).
pub fn passphrase(confirm: bool) -> Result<Passphrase, String> {
    passphrase_from("PHIVAULT_PASSPHRASE", "phivault passphrase", confirm)
}

/// The passphrase the operator gave (`PHIVAULT_PASSPHRASE_FILE` or `PHIVAULT_PASSPHRASE`),
/// if any; never a prompt.
pub fn given_passphrase() -> Result<Option<Passphrase>, String> {
    let given = std::env::var_os("PHIVAULT_PASSPHRASE_FILE").is_some()
        || std::env::var_os("PHIVAULT_PASSPHRASE").is_some();
    if given {
        passphrase(false).map(Some)
    } else {
        Ok(None)
    }
}

/// The new passphrase of `keys change-passphrase`: `PHIVAULT_NEW_PASSPHRASE_FILE`,
/// `PHIVAULT_NEW_PASSPHRASE`, else a prompt on a terminal, asked twice.
pub fn new_passphrase() -> Result<Passphrase, String> {
    passphrase_from("PHIVAULT_NEW_PASSPHRASE", "new phivault passphrase", true)
}

/// A passphrase from `{var}_FILE`, `{var}`, or a prompt (twice when `confirm`).
fn passphrase_from(var: &str, prompt: &str, confirm: bool) -> Result<Passphrase, String> {
    let file_var = format!("{var}_FILE");
    if let Some(path) = std::env::var_os(&file_var) {
        return secret_file(&file_var, Path::new(&path));
    }
    if let Ok(value) = std::env::var(var) {
        if value.is_empty() {
            return Err(format!("{var} is set but empty"));
        }
        return Ok(Passphrase::new(value));
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let ask = |p: &str| {
            rpassword::prompt_password(p)
                .map(Passphrase::new)
                .map_err(|e| format!("could not read the passphrase: {}", e.kind()))
        };
        let first = ask(&format!("{prompt}: "))?;
        if confirm {
            let second = ask("repeat it: ")?;
            if !phivault_crypto::aead::ct_eq(first.expose().as_bytes(), second.expose().as_bytes())
            {
                return Err("the two passphrases differ".into());
            }
        }
        return Ok(first);
    }
    Err(format!(
        "no passphrase: set {file_var} (a file holding it) or {var}, or run on a terminal to \
         be prompted"
    ))
}

pub fn passphrase_from_file(path: &Path) -> Result<Passphrase, String> {
    secret_file("PHIVAULT_PASSPHRASE_FILE", path)
}

/// A passphrase from the file `path` (named by `var`), without its final newline.
fn secret_file(var: &str, path: &Path) -> Result<Passphrase, String> {
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {var} {}: {}", path.display(), e.kind()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: {} is readable by other users; chmod 600 it",
                path.display()
            );
        }
    }
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    let pass = Passphrase::new(text);
    if pass.expose().is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(pass)
}

const PKCS11_VARS: [&str; 4] = [
    "PHIVAULT_PKCS11_MODULE",
    "PHIVAULT_PKCS11_TOKEN",
    "PHIVAULT_PKCS11_PIN_FILE",
    "PHIVAULT_PKCS11_KEY_LABEL",
];

fn env_value(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The PKCS#11 root key's configuration, if any `PHIVAULT_PKCS11_*` variable is set: the
/// module, the token label and the PIN file are then all required (the key label defaults to
/// `phivault-root`). The PIN comes only from a file.
pub fn pkcs11() -> Result<Option<Pkcs11Config>, String> {
    if PKCS11_VARS.iter().all(|v| std::env::var_os(v).is_none()) {
        return Ok(None);
    }
    let values = PKCS11_VARS.map(env_value);
    let missing: Vec<&str> = PKCS11_VARS
        .iter()
        .zip(&values)
        .take(3)
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| *name)
        .collect();
    let [module, token, pin_file, key] = values;
    let (Some(module), Some(token), Some(pin_file)) = (module, token, pin_file) else {
        return Err(format!(
            "{} not set: the PKCS#11 root key needs the module's path \
             (PHIVAULT_PKCS11_MODULE), the token's label (PHIVAULT_PKCS11_TOKEN) and a file \
             holding the user PIN (PHIVAULT_PKCS11_PIN_FILE)",
            missing.join(", ")
        ));
    };
    let pin: Pin = secret_file("PHIVAULT_PKCS11_PIN_FILE", Path::new(&pin_file))?;
    Ok(Some(Pkcs11Config {
        module: module.into(),
        token_label: token,
        key_label: key.unwrap_or_else(|| DEFAULT_KEY_LABEL.to_owned()),
        pin,
    }))
}

/// The root key to open the vault in `dir` with: the PKCS#11 token if the vault keeps its
/// root key there (or if `PHIVAULT_PKCS11_*` is set, so a mismatch is reported, not ignored),
/// else the passphrase.
pub fn root_key(dir: &Path) -> Result<RootKey, String> {
    let hsm = pkcs11()?;
    match (crate::datadir::root_key_kind(dir), hsm) {
        (_, Some(config)) => Ok(RootKey::Pkcs11 {
            config,
            existing: ExistingKey::Refuse,
        }),
        (Some(RootKeyKind::Pkcs11), None) => Err(format!(
            "the root key of the vault at {} is in a PKCS#11 token: set \
             PHIVAULT_PKCS11_MODULE, PHIVAULT_PKCS11_TOKEN and PHIVAULT_PKCS11_PIN_FILE",
            dir.display(),
        )),
        (_, None) => passphrase(false).map(RootKey::Passphrase),
    }
}

/// The root key `init` makes: a key in the PKCS#11 token when `PHIVAULT_PKCS11_*` is set
/// (`use_existing`: adopt a key that already has the label), else a key file sealed by the
/// passphrase (asked twice on a terminal).
pub fn root_key_for_init(use_existing: bool) -> Result<RootKey, String> {
    match pkcs11()? {
        Some(config) => Ok(RootKey::Pkcs11 {
            config,
            existing: if use_existing {
                ExistingKey::Use
            } else {
                ExistingKey::Refuse
            },
        }),
        None if use_existing => Err("--pkcs11-use-existing-key needs the PKCS#11 \
                                     configuration (PHIVAULT_PKCS11_MODULE, \
                                     PHIVAULT_PKCS11_TOKEN, PHIVAULT_PKCS11_PIN_FILE)"
            .into()),
        None => passphrase(true).map(RootKey::Passphrase),
    }
}

/// The operator's OS user name, for `cli:<user>` in the audit trail: `USER`/`LOGNAME`, else
/// the name of the process's real uid in /etc/passwd, else `uid-N`.
pub fn os_user() -> String {
    if let Ok(u) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME"))
        && !u.is_empty()
    {
        return u;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        });
    let Some(uid) = uid else {
        return "unknown".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let _pw = f.next()?;
                (f.next()? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or(format!("uid-{uid}"))
}

/// Structured JSON logs on standard error, at `PHIVAULT_LOG` (error, warn, info, debug, trace;
/// default info). Log lines carry ids, counts, codes and route templates only.
pub fn init_logging() -> Result<(), String> {
    let level = match std::env::var("PHIVAULT_LOG").as_deref() {
        Err(_) | Ok("info") => tracing::Level::INFO,
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        Ok(_) => return Err("PHIVAULT_LOG is one of error, warn, info, debug, trace".into()),
    };
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
    Ok(())
}
