//! Output helpers: private files written atomically, and a progress bar on a terminal.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// A new private output file (mode 0600), written under a temporary name beside `out` and
/// renamed into place by [`PrivateFile::finish`]; dropped unfinished, it leaves nothing.
pub(crate) struct PrivateFile {
    tmp: PathBuf,
    out: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl PrivateFile {
    pub(crate) fn create(out: &Path, force: bool) -> Result<Self, String> {
        if out.exists() && !force {
            return Err(format!(
                "{} exists; choose another --out or add --force",
                out.display()
            ));
        }
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.partial",
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "out".into())
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&tmp)
            .map_err(|e| format!("cannot write {}: {}", out.display(), e.kind()))?;
        Ok(Self {
            tmp,
            out: out.to_owned(),
            file: Some(std::io::BufWriter::new(file)),
        })
    }

    fn err(&self, e: std::io::Error) -> String {
        format!("cannot write {}: {}", self.out.display(), e.kind())
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes).map_err(|e| self.err(e)),
            None => Err("file already finished".into()),
        }
    }

    pub(crate) fn writer(&mut self) -> Result<&mut std::io::BufWriter<std::fs::File>, String> {
        self.file
            .as_mut()
            .ok_or_else(|| "file already finished".to_owned())
    }

    /// Flushes, syncs and renames into place.
    pub(crate) fn finish(mut self) -> Result<(), String> {
        let w = self.file.take().ok_or("file already finished")?;
        let f = w.into_inner().map_err(|e| self.err(e.into_error()))?;
        f.sync_all().map_err(|e| self.err(e))?;
        std::fs::rename(&self.tmp, &self.out).map_err(|e| self.err(e))
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A one-line progress bar on a terminal (standard error), nothing otherwise.
pub(crate) struct Progress {
    on: bool,
    last: u64,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            last: u64::MAX,
        }
    }
    pub(crate) fn show(&mut self, label: &str, done: u64, total: u64) {
        if !self.on || total == 0 {
            return;
        }
        let pct = done * 100 / total;
        if pct == self.last && done != total {
            return;
        }
        self.last = pct;
        let width = 30u64;
        let filled = (done * width / total) as usize;
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            ".".repeat(width as usize - filled)
        );
        let mut err = std::io::stderr();
        let _ = write!(err, "\r{label} [{bar}] {done}/{total}");
        if done == total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}
