//! Encrypted backups of a whole vault in one file: `phivault backup create|verify|restore`
//! and the schedule in `serve`.
//!
//! A backup file is `PHIVAULT-BACKUP1`, a clear header (JSON: time, root-key provider, the
//! passphrase-sealed root key file, the keyring entries as stored — each wrapped by the root
//! key —, the manifest of store files with sizes and SHA-256, the audit chain's head), then
//! the store files' bytes cut into 1 MiB chunks, each sealed with AES-256-GCM under the backup
//! key (derived from the keyring) and bound to the header's hash, its index and whether it is
//! the last (see `phivault_crypto::backup`). So the file opens with the root passphrase (or
//! the HSM) and nothing else, a stolen file opens nothing without it, and any changed byte —
//! header or payload — fails verification before anything is written where it was asked.
use crate::datadir::{self, DB_FILES, KEYS_DIR, ROOT_KEY};
use base64::Engine;
use phivault_core::{AuditStore, Clock, ControlStore, KeyringEntry, StoreKind};
use phivault_crypto::backup::{BackupCipher, Sha256};
use phivault_crypto::{KeyfileProvider, Keyring, Passphrase};
use phivault_store::SqliteStores;
use phivault_vault::audit::verify::Checkpoint;
use phivault_vault::{Actor, Ctx};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 16] = b"PHIVAULT-BACKUP1";
const CHUNK: usize = 1 << 20;
const MAX_HEADER: u32 = 16 << 20;
/// A sealed chunk: 12-byte nonce, at most CHUNK bytes, 16-byte tag.
const MAX_SEALED: u32 = (CHUNK + 28) as u32;
/// The file extension of backups (the schedule keeps only files with it).
pub const EXTENSION: &str = "pvbak";

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    created_at: i64,
    backend: String,
    root_key_provider: String,
    /// `keys/root.key` (sealed by the passphrase), base64; absent when the root key is in an HSM.
    root_key: Option<String>,
    keyring: Vec<WrappedEntry>,
    files: Vec<FileEntry>,
    audit_head: Option<AuditHead>,
    chunk_size: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct WrappedEntry {
    purpose: String,
    version: u32,
    wrapped: String,
    created_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    name: String,
    size: u64,
    sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuditHead {
    seq: u64,
    mac: String,
}

/// What a backup holds, for the command line's report (counts and sizes only).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub file: String,
    pub created_at: i64,
    pub bytes: u64,
    pub store_files: usize,
    pub audit_events: u64,
    /// Records whose every version was opened (verify and restore only).
    pub records_opened: u64,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {}", path.display(), e.kind())
}

/// A private (0700) scratch directory, removed with everything in it when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(beside: &Path, tag: &str) -> Result<Scratch, String> {
        let parent = beside
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = format!(
            ".{tag}-{}",
            phivault_crypto::random_token::<9>().map_err(|e| e.to_string())?
        );
        let path = parent.join(name);
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&path).map_err(io(&path))?;
        std::fs::create_dir(path.join(KEYS_DIR)).map_err(io(&path))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn create_private(path: &Path) -> Result<std::fs::File, String> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(io(path))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes a backup of the vault opened from `data_dir` to `out` (refused if it exists).
/// Online: the stores are copied with `VACUUM INTO` while the server keeps serving.
pub async fn create(
    vault: &phivault_vault::Vault,
    on_postgres: bool,
    data_dir: &Path,
    out: &Path,
    clock: &dyn Clock,
) -> Result<Summary, String> {
    if on_postgres {
        return Err("backups of PostgreSQL stores are not built yet: use PostgreSQL's own \
                    backups (pg_basebackup or pg_dump; the stores hold ciphertext only) and keep \
                    keys/root.key apart from them"
            .into());
    }
    if out.exists() {
        return Err(format!("{} exists; a backup never overwrites", out.display()));
    }
    let scratch = Scratch::new(out, "phivault-backup")?;
    for org in vault.organizations().await.map_err(|e| e.to_string())? {
        vault
            .record_backup(&operator(org.id), DB_FILES.len() as u64)
            .await
            .map_err(|e| e.to_string())?;
    }
    phivault_store::sqlite::snapshot_into(data_dir, &scratch.0)
        .await
        .map_err(|e| e.to_string())?;
    // The copy's own keyring and audit head: consistent with the copied records.
    let copy = SqliteStores::open(&scratch.0, false)
        .await
        .map_err(|e| e.to_string())?;
    let read = async {
        let keyring = copy.control.keyring().await?;
        let provider = copy.control.get_setting("root_key_provider").await?;
        let head = copy.audit.head().await?;
        Ok::<_, phivault_core::StoreError>((keyring, provider, head))
    }
    .await;
    copy.close().await;
    let (keyring, provider, head) = read.map_err(|e| e.to_string())?;
    let provider = provider.unwrap_or_else(|| "keyfile".into());
    let root_key = match provider.as_str() {
        "keyfile" => {
            let p = data_dir.join(KEYS_DIR).join(ROOT_KEY);
            Some(b64().encode(std::fs::read(&p).map_err(io(&p))?))
        }
        _ => None,
    };
    let mut files = Vec::new();
    for name in phivault_store::sqlite::SNAPSHOT_ORDER {
        let p = scratch.0.join(name);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(scratch.0.join(format!("{name}{suffix}")));
        }
        let mut r = BufReader::new(std::fs::File::open(&p).map_err(io(&p))?);
        let (mut h, mut size, mut buf) = (Sha256::default(), 0u64, vec![0u8; 64 * 1024]);
        loop {
            let n = r.read(&mut buf).map_err(io(&p))?;
            let Some(piece) = buf.get(..n).filter(|p| !p.is_empty()) else {
                break;
            };
            h.update(piece);
            size += n as u64;
        }
        files.push(FileEntry {
            name: name.to_owned(),
            size,
            sha256: hex(&h.finish()),
        });
    }
    let header = Header {
        format: 1,
        created_at: clock.now_millis(),
        backend: "sqlite".into(),
        root_key_provider: provider,
        root_key,
        keyring: keyring
            .iter()
            .map(|e| WrappedEntry {
                purpose: e.purpose.clone(),
                version: e.version,
                wrapped: b64().encode(&e.wrapped),
                created_at: e.created_at,
            })
            .collect(),
        files,
        audit_head: head.map(|h| AuditHead {
            seq: h.seq,
            mac: hex(&h.mac),
        }),
        chunk_size: CHUNK as u32,
    };
    let header_bytes = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let cipher = vault
        .backup_cipher(&header_bytes)
        .map_err(|e| e.to_string())?;
    let partial = out.with_extension(format!("{EXTENSION}.partial"));
    let _ = std::fs::remove_file(&partial);
    let written = write_file(&partial, &header, &header_bytes, &cipher, &scratch.0);
    let bytes = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, out).map_err(io(out))?;
    if let Some(parent) = out.parent() {
        sync_dir(parent);
    }
    Ok(Summary {
        file: out.display().to_string(),
        created_at: header.created_at,
        bytes,
        store_files: header.files.len(),
        audit_events: header.audit_head.map_or(0, |h| h.seq),
        records_opened: 0,
    })
}

/// The operator's context in `org` (the command line's OS user, or the server's schedule).
fn operator(org: phivault_core::OrgId) -> Ctx {
    Ctx::new(
        org,
        Actor::Operator {
            os_user: crate::config::os_user(),
        },
    )
}

fn total_size(header: &Header) -> u64 {
    header.files.iter().map(|f| f.size).sum()
}

fn chunk_count(header: &Header) -> u64 {
    total_size(header).div_ceil(CHUNK as u64).max(1)
}

fn write_file(
    path: &Path,
    header: &Header,
    header_bytes: &[u8],
    cipher: &BackupCipher,
    from: &Path,
) -> Result<u64, String> {
    let file = create_private(path)?;
    let mut w = BufWriter::new(file);
    let e = io(path);
    let header_len = u32::try_from(header_bytes.len()).map_err(|_| "header too large")?;
    w.write_all(MAGIC).map_err(&e)?;
    w.write_all(&header_len.to_be_bytes()).map_err(&e)?;
    w.write_all(header_bytes).map_err(&e)?;
    let n = chunk_count(header);
    let mut index = 0u64;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let emit = |buf: &mut Vec<u8>,
                w: &mut BufWriter<std::fs::File>,
                index: &mut u64|
     -> Result<(), String> {
        let sealed = cipher
            .seal_chunk(*index, *index + 1 == n, buf)
            .map_err(|e| e.to_string())?;
        let len = u32::try_from(sealed.len()).map_err(|_| "chunk too large")?;
        w.write_all(&len.to_be_bytes()).map_err(&e)?;
        w.write_all(&sealed).map_err(&e)?;
        *index += 1;
        buf.clear();
        Ok(())
    };
    for f in &header.files {
        let p = from.join(&f.name);
        let mut r = BufReader::new(std::fs::File::open(&p).map_err(io(&p))?);
        let mut left = f.size;
        while left > 0 {
            let room = (CHUNK - buf.len()) as u64;
            let take = usize::try_from(left.min(room)).map_err(|_| "size")?;
            let start = buf.len();
            buf.resize(start + take, 0);
            r.read_exact(&mut buf[start..]).map_err(io(&p))?;
            left -= take as u64;
            if buf.len() == CHUNK {
                emit(&mut buf, &mut w, &mut index)?;
            }
        }
    }
    if !buf.is_empty() || index == 0 {
        emit(&mut buf, &mut w, &mut index)?;
    }
    if index != n {
        return Err("backup: chunk count mismatch".into());
    }
    let file = w.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(io(path))?;
    file.metadata().map(|m| m.len()).map_err(io(path))
}

fn read_header(r: &mut impl Read, path: &Path) -> Result<(Header, Vec<u8>), String> {
    let bad = || format!("{} is not a phivault backup, or is damaged", path.display());
    let mut magic = [0u8; 16];
    r.read_exact(&mut magic).map_err(|_| bad())?;
    if &magic != MAGIC {
        return Err(bad());
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(|_| bad())?;
    let len = u32::from_be_bytes(len);
    if len == 0 || len > MAX_HEADER {
        return Err(bad());
    }
    let mut bytes = vec![0u8; len as usize];
    r.read_exact(&mut bytes).map_err(|_| bad())?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let names_ok = header.files.len() == DB_FILES.len()
        && header
            .files
            .iter()
            .all(|f| DB_FILES.contains(&f.name.as_str()));
    if header.format != 1 || header.chunk_size as usize != CHUNK || !names_ok {
        return Err(bad());
    }
    Ok((header, bytes))
}

/// Decrypts the backup at `file` into `into` (a fresh private dir: the store files and
/// `keys/root.key`), checking every chunk and every file's hash. Returns the header.
fn unpack(file: &Path, into: &Path, pass: &Passphrase) -> Result<Header, String> {
    let damaged = || format!("{} is damaged or was changed", file.display());
    let mut r = BufReader::new(std::fs::File::open(file).map_err(io(file))?);
    let (header, header_bytes) = read_header(&mut r, file)?;
    let key_path = into.join(KEYS_DIR).join(ROOT_KEY);
    let keyring = match (&header.root_key_provider[..], &header.root_key) {
        ("keyfile", Some(k)) => {
            let bytes = b64().decode(k).map_err(|_| damaged())?;
            let mut f = create_private(&key_path)?;
            f.write_all(&bytes).map_err(io(&key_path))?;
            f.sync_all().map_err(io(&key_path))?;
            let provider = KeyfileProvider::open(&key_path, pass).map_err(|e| e.to_string())?;
            let entries = header
                .keyring
                .iter()
                .map(|e| {
                    Ok(KeyringEntry {
                        purpose: e.purpose.clone(),
                        version: e.version,
                        wrapped: b64().decode(&e.wrapped).map_err(|_| damaged())?,
                        created_at: e.created_at,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Keyring::load(&provider, &entries).map_err(|_| damaged())?
        }
        (other, _) => {
            return Err(format!(
                "this backup's root key is in a '{other}' provider, which restore does not \
                 support yet"
            ));
        }
    };
    let cipher = BackupCipher::new(&keyring, &header_bytes).map_err(|e| e.to_string())?;
    let n = chunk_count(&header);
    let mut outs = Vec::new();
    for f in &header.files {
        let p = into.join(&f.name);
        outs.push((BufWriter::new(create_private(&p)?), f.size, p));
    }
    let mut current = 0usize;
    let mut hashers: Vec<Sha256> = outs.iter().map(|_| Sha256::default()).collect();
    for index in 0..n {
        let mut len = [0u8; 4];
        r.read_exact(&mut len).map_err(|_| damaged())?;
        let len = u32::from_be_bytes(len);
        if len > MAX_SEALED {
            return Err(damaged());
        }
        let mut sealed = vec![0u8; len as usize];
        r.read_exact(&mut sealed).map_err(|_| damaged())?;
        let plain = cipher
            .open_chunk(index, index + 1 == n, &sealed)
            .map_err(|_| damaged())?;
        let mut rest: &[u8] = &plain;
        while !rest.is_empty() {
            let Some((w, left, p)) = outs.get_mut(current) else {
                return Err(damaged());
            };
            let take = usize::try_from((*left).min(rest.len() as u64)).map_err(|_| damaged())?;
            let (now, later) = rest.split_at(take);
            w.write_all(now).map_err(io(p))?;
            if let Some(h) = hashers.get_mut(current) {
                h.update(now);
            }
            *left -= take as u64;
            rest = later;
            if *left == 0 {
                current += 1;
            }
        }
        while outs.get(current).is_some_and(|(_, left, _)| *left == 0) {
            current += 1;
        }
    }
    let mut trailing = [0u8; 1];
    if r.read(&mut trailing).map_err(io(file))? != 0 || current != outs.len() {
        return Err(damaged());
    }
    for (w, _, p) in outs {
        let f = w.into_inner().map_err(|e| e.to_string())?;
        f.sync_all().map_err(io(&p))?;
    }
    for (f, h) in header.files.iter().zip(hashers) {
        if unhex(&f.sha256).as_deref() != Some(&h.finish()[..]) {
            return Err(damaged());
        }
    }
    Ok(header)
}

/// Opens the unpacked vault in `dir` and checks it: the audit chain verifies up to the head
/// the backup recorded, and every record (every live head, identity and clinical) opens.
async fn check(
    dir: &Path,
    header: &Header,
    pass: &Passphrase,
    clock: Arc<dyn Clock>,
) -> Result<(u64, u64), String> {
    let opened = datadir::open_on(dir, pass, clock, None)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let checkpoint = match &header.audit_head {
            Some(h) => Some(Checkpoint {
                seq: h.seq,
                mac: unhex(&h.mac).ok_or("the backup's audit head is damaged")?,
            }),
            None => None,
        };
        let v = opened
            .vault
            .verify_audit(checkpoint.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        if let Some((seq, problem)) = v.problem {
            return Err(format!(
                "the backup's audit chain is broken at event {seq}: {problem:?}"
            ));
        }
        let mut records = 0u64;
        for org in opened.vault.organizations().await.map_err(|e| e.to_string())? {
            let ctx = operator(org.id);
            for kind in [StoreKind::Identity, StoreKind::Clinical] {
                let mut after = None;
                loop {
                    let (page, next) = opened
                        .vault
                        .page(&ctx, kind, after.as_ref(), 500)
                        .await
                        .map_err(|e| format!("a record in the backup does not open: {e}"))?;
                    records += page.len() as u64;
                    match next {
                        Some(n) if !page.is_empty() => after = Some(n),
                        _ => break,
                    }
                }
            }
        }
        Ok((v.count, records))
    }
    .await;
    opened.close().await;
    result
}

/// Checks the backup at `file` without restoring it anywhere: decrypts it into a private
/// scratch dir beside it, verifies hashes, the audit chain and every record, removes the copy.
pub async fn verify(file: &Path, pass: &Passphrase, clock: Arc<dyn Clock>) -> Result<Summary, String> {
    let scratch = Scratch::new(file, "phivault-verify")?;
    let header = unpack(file, &scratch.0, pass)?;
    let (events, records) = check(&scratch.0, &header, pass, clock).await?;
    Ok(Summary {
        file: file.display().to_string(),
        created_at: header.created_at,
        bytes: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        store_files: header.files.len(),
        audit_events: events,
        records_opened: records,
    })
}

/// Restores the backup at `file` into `dir`, which must not exist or be empty. Everything is
/// unpacked and checked in a scratch dir beside `dir` first; only a backup that verifies is
/// moved into place, so a damaged one writes nothing at `dir`.
pub async fn restore(
    file: &Path,
    dir: &Path,
    pass: &Passphrase,
    clock: Arc<dyn Clock>,
) -> Result<Summary, String> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .next()
            .is_none();
        if !empty {
            return Err(format!(
                "{} is not empty: restore only into a new or empty directory",
                dir.display()
            ));
        }
    }
    let scratch = Scratch::new(dir, "phivault-restore")?;
    let header = unpack(file, &scratch.0, pass)?;
    let (events, records) = check(&scratch.0, &header, pass, clock).await?;
    for f in DB_FILES {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(scratch.0.join(format!("{f}{suffix}")));
        }
    }
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(io(dir))?;
    }
    std::fs::rename(&scratch.0, dir).map_err(io(dir))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    Ok(Summary {
        file: file.display().to_string(),
        created_at: header.created_at,
        bytes: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        store_files: header.files.len(),
        audit_events: events,
        records_opened: records,
    })
}

/// The backup schedule of `serve`: `PHIVAULT_BACKUP_DIR` (none: no schedule),
/// `PHIVAULT_BACKUP_INTERVAL` (`90s`, `30m`, `6h`, `1d`; default `24h`) and
/// `PHIVAULT_BACKUP_KEEP` (how many backups to keep, default 7).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub dir: PathBuf,
    pub interval: std::time::Duration,
    pub keep: usize,
}

/// `90s`, `30m`, `6h`, `1d` → a duration (at least one second).
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let bad = || format!("'{s}' is not an interval like 90s, 30m, 6h or 1d");
    let split = s.len().checked_sub(1).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(secs))
}

impl Schedule {
    pub fn from_env() -> Result<Option<Schedule>, String> {
        let Some(dir) = std::env::var_os("PHIVAULT_BACKUP_DIR").filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let interval = parse_interval(
            &std::env::var("PHIVAULT_BACKUP_INTERVAL").unwrap_or_else(|_| "24h".into()),
        )
        .map_err(|e| format!("PHIVAULT_BACKUP_INTERVAL: {e}"))?;
        let keep = match std::env::var("PHIVAULT_BACKUP_KEEP") {
            Err(_) => 7,
            Ok(k) => k
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|k| *k >= 1)
                .ok_or("PHIVAULT_BACKUP_KEEP is a number of backups, at least 1")?,
        };
        let dir = PathBuf::from(dir);
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&dir).map_err(io(&dir))?;
        Ok(Some(Schedule {
            dir,
            interval,
            keep,
        }))
    }

    /// Runs forever: every `interval`, a backup named by its UTC time, then the oldest beyond
    /// `keep` removed. Logs counts and names only.
    pub async fn run(
        self,
        vault: phivault_vault::Vault,
        on_postgres: bool,
        data_dir: PathBuf,
        clock: Arc<dyn Clock>,
    ) {
        loop {
            tokio::time::sleep(self.interval).await;
            let name = format!("phivault-{}.{EXTENSION}", stamp(clock.now_millis()));
            let out = self.dir.join(name);
            match create(&vault, on_postgres, &data_dir, &out, clock.as_ref()).await {
                Ok(s) => tracing::info!(file = %s.file, bytes = s.bytes, "scheduled backup written"),
                Err(e) => tracing::error!(error = %e, "scheduled backup failed"),
            }
            let removed = prune(&self.dir, self.keep);
            if removed > 0 {
                tracing::info!(removed, "old backups removed");
            }
        }
    }
}

/// `YYYYMMDDTHHMMSSmmmZ` for a time in milliseconds: names sort by time.
fn stamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Removes the oldest `phivault-*.pvbak` files in `dir` beyond the newest `keep`.
pub fn prune(dir: &Path, keep: usize) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut names: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == EXTENSION)
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("phivault-"))
        })
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    names
        .iter()
        .take(excess)
        .filter(|p| std::fs::remove_file(p).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_interval("90s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(parse_interval("6h"), Ok(std::time::Duration::from_secs(21_600)));
        assert_eq!(parse_interval("1d"), Ok(std::time::Duration::from_secs(86_400)));
        for bad in ["", "0s", "h", "5", "5w", "-1h", "99999999999999999999d"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stamps_sort_by_time() {
        assert_eq!(stamp(0), "19700101T000000000Z");
        assert!(stamp(1_700_000_000_123) < stamp(1_700_000_001_000));
    }
}
