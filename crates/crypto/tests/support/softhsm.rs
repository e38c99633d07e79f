//! A private SoftHSM2 for a test: its own configuration file and token directory in a temp
//! dir (`SOFTHSM2_CONF` points a process at it), tokens made with `softhsm2-util`.
//! Shared by the crypto tests and the end-to-end tests (`#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian and others put SoftHSM2's module.
pub fn module() -> Option<PathBuf> {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// SoftHSM2's module, if SoftHSM2 (module and `softhsm2-util`) is installed. Outside CI its
/// absence prints a note naming `test` and gives `None` (the test skips); in CI (`CI` set)
/// it fails the test.
pub fn available(test: &str) -> Option<PathBuf> {
    let util = Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match module().filter(|_| util) {
        Some(m) => Some(m),
        None if std::env::var_os("CI").is_some() => {
            panic!("SoftHSM2 is not installed (apt-get install softhsm2); CI must run {test}")
        }
        None => {
            eprintln!(
                "note: SoftHSM2 is not installed (apt-get install softhsm2): skipping {test}"
            );
            None
        }
    }
}

/// A SoftHSM2 configuration in `dir` with its own token directory `dir/tokens`.
pub struct SoftHsm {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub module: PathBuf,
}

impl SoftHsm {
    /// Writes the configuration (or reuses the one already in `dir`).
    pub fn at(dir: &Path, module: &Path) -> SoftHsm {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        if !conf.exists() {
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    tokens.display()
                ),
            )
            .unwrap();
        }
        SoftHsm {
            dir: dir.to_owned(),
            conf,
            module: module.to_owned(),
        }
    }

    /// The directory holding the tokens (delete it and every token is gone).
    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    /// `softhsm2-util --init-token --free --label … --so-pin … --pin …`.
    pub fn init_token(&self, label: &str, so_pin: &str, pin: &str) {
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                so_pin,
                "--pin",
                pin,
            ])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
