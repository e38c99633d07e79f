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
use crate::datadir::RootKey;
use crate::datadir::{self, DB_FILES, KEYS_DIR, ROOT_KEY};
use base64::Engine;
use phivault_core::{AuditStore, Clock, ControlStore, KeyringEntry, StoreKind, Tombstone};
use phivault_crypto::backup::{BackupCipher, Sha256};
use phivault_crypto::pkcs11::Pkcs11Provider;
use phivault_crypto::{KeyfileProvider, Keyring, RootKeyProvider};
use phivault_store::SqliteStores;
use phivault_store::postgres::snapshot::TableCopy;
use phivault_vault::audit::verify::Checkpoint;

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
    /// When the snapshot began: erasures from then on may be missing from the copy.
    #[serde(default)]
    started_at: i64,
    /// A fingerprint of the vault (derived from its keyring), to tell its backups from others'.
    #[serde(default)]
    vault: String,
    backend: String,
    root_key_provider: String,
    /// `keys/root.key` (sealed by the passphrase), base64; absent when the root key is in an HSM.
    root_key: Option<String>,
    /// `keys/root.pkcs11` (which token and key label hold the root key), base64, for an HSM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_key_marker: Option<String>,
    keyring: Vec<WrappedEntry>,
    files: Vec<FileEntry>,
    audit_head: Option<AuditHead>,
    chunk_size: u32,
    /// PostgreSQL backups: the tables, in the order of `files` (`pg-<store>-<table>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pg_tables: Vec<PgTable>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PgTable {
    store: String,
    table: String,
    columns: Vec<String>,
}

impl PgTable {
    fn file_name(&self) -> String {
        format!("pg-{}-{}", self.store, self.table)
    }
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
    /// The fingerprint of the vault the backup is of.
    pub vault: String,
    pub bytes: u64,
    pub store_files: usize,
    pub audit_events: u64,
    /// Records whose every version was opened (verify and restore only).
    pub records_opened: u64,
    /// Restore only: erasures known to newer backups (or `--tombstones-from`) applied again,
    /// as record versions destroyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tombstones_applied: Option<u64>,
    /// Restore only: records the vault's retention rules erased because they expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_erased: Option<u64>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
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

/// A private (0700) scratch directory, removed with everything in it when dropped. While in
/// use it holds a locked `.in-use` file; a scratch directory left behind by a killed process
/// (its lock released by the kernel) is removed by the next backup command working beside it.
struct Scratch(PathBuf, Option<std::fs::File>, bool);

/// The names of scratch directories: `.<tag>-<random>`.
const SCRATCH_TAGS: [&str; 4] = [
    "phivault-backup",
    "phivault-verify",
    "phivault-tombstones",
    "phivault-restore",
];
const SCRATCH_LOCK: &str = ".in-use";

impl Scratch {
    fn new(beside: &Path, tag: &str) -> Result<Scratch, String> {
        let parent = beside
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sweep_scratch(parent);
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
        let mut scratch = Scratch(path, None, false);
        // Locked before it takes its name, so no sweeper ever sees it unlocked.
        let fresh = scratch.0.join(".in-use.new");
        let lock = create_private(&fresh)?;
        lock.try_lock()
            .map_err(|_| format!("{}: cannot lock", fresh.display()))?;
        std::fs::rename(&fresh, scratch.0.join(SCRATCH_LOCK)).map_err(io(&fresh))?;
        scratch.1 = Some(lock);
        std::fs::create_dir(scratch.0.join(KEYS_DIR)).map_err(io(&scratch.0))?;
        Ok(scratch)
    }

    /// Moves the scratch dir into place as `dir` (a data dir from then on), still locked
    /// while it moves, then removes its lock file.
    fn into_place(mut self, dir: &Path) -> Result<(), String> {
        std::fs::rename(&self.0, dir).map_err(io(dir))?;
        self.2 = true;
        let _ = std::fs::remove_file(dir.join(SCRATCH_LOCK));
        drop(self.1.take());
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.2 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Removes the scratch directories in `dir` that no live process holds: named like ours, a
/// real directory (not a link), with an `.in-use` file whose lock can be taken. Anything else
/// is left alone.
fn sweep_scratch(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !SCRATCH_TAGS.iter().any(|t| {
            name.strip_prefix('.')
                .is_some_and(|n| n.starts_with(&format!("{t}-")))
        }) {
            continue;
        }
        let path = entry.path();
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let lock_path = path.join(SCRATCH_LOCK);
        let Ok(lock) = std::fs::File::open(&lock_path) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        // Locked: but is it still that directory's lock file? (Its owner may have moved the
        // directory into place and removed the file between the open and the lock.)
        let same = match (lock.metadata(), std::fs::symlink_metadata(&lock_path)) {
            #[cfg(unix)]
            (Ok(a), Ok(b)) => {
                use std::os::unix::fs::MetadataExt;
                a.dev() == b.dev() && a.ino() == b.ino()
            }
            _ => false,
        };
        if same {
            let _ = std::fs::remove_dir_all(&path);
        }
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
/// Online: SQLite stores are copied with `VACUUM INTO`, PostgreSQL schemas in one
/// `REPEATABLE READ` snapshot, while the server keeps serving.
pub async fn create(
    vault: &phivault_vault::Vault,
    op: &phivault_vault::Operator,
    stores: &datadir::Backend,
    data_dir: &Path,
    out: &Path,
    clock: &dyn Clock,
) -> Result<Summary, String> {
    if out.exists() {
        return Err(format!(
            "{} exists; a backup never overwrites",
            out.display()
        ));
    }
    let scratch = Scratch::new(out, "phivault-backup")?;
    let started_at = clock.now_millis();
    for org in vault.organizations().await.map_err(|e| e.to_string())? {
        vault
            .record_backup(&op.ctx(org.id), DB_FILES.len() as u64)
            .await
            .map_err(|e| e.to_string())?;
    }
    let (keyring, provider, head, pg_tables) = match stores.postgres_stores() {
        None => {
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
            let (k, p, h) = read.map_err(|e| e.to_string())?;
            (k, p, h, Vec::new())
        }
        Some(pg) => {
            let pool = pg.whole_database().ok_or(
                "the stores have databases of their own (PHIVAULT_DATABASE_URL_<STORE>): back \
                 each up with PostgreSQL's own tools",
            )?;
            // The head before the snapshot: the copy holds at least the chain up to it.
            let head = stores.audit.head().await.map_err(|e| e.to_string())?;
            let copies = phivault_store::postgres::snapshot::export(pool, pg.prefix())
                .await
                .map_err(|e| e.to_string())?;
            // Keys are only ever added (a KEK is retired only when it wraps nothing): the
            // keyring read after the snapshot opens every copied record.
            let keyring = stores.control.keyring().await.map_err(|e| e.to_string())?;
            let provider = stores
                .control
                .get_setting("root_key_provider")
                .await
                .map_err(|e| e.to_string())?;
            let mut tables = Vec::new();
            for c in copies {
                let t = PgTable {
                    store: c.store,
                    table: c.table,
                    columns: c.columns,
                };
                let p = scratch.0.join(t.file_name());
                let mut f = create_private(&p)?;
                f.write_all(&c.data).map_err(io(&p))?;
                tables.push(t);
            }
            (keyring, provider, head, tables)
        }
    };
    let provider = provider.unwrap_or_else(|| "keyfile".into());
    let key_file = |name: &str| -> Result<String, String> {
        let p = data_dir.join(KEYS_DIR).join(name);
        Ok(b64().encode(std::fs::read(&p).map_err(io(&p))?))
    };
    let (root_key, root_key_marker) = match provider.as_str() {
        "keyfile" => (Some(key_file(ROOT_KEY)?), None),
        "pkcs11" => (None, Some(key_file(datadir::ROOT_KEY_PKCS11)?)),
        other => return Err(format!("unknown root key provider '{other}'")),
    };
    let names: Vec<String> = if pg_tables.is_empty() {
        phivault_store::sqlite::SNAPSHOT_ORDER
            .iter()
            .map(|n| (*n).to_owned())
            .collect()
    } else {
        pg_tables.iter().map(PgTable::file_name).collect()
    };
    let mut files = Vec::new();
    for name in &names {
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
            name: name.clone(),
            size,
            sha256: hex(&h.finish()),
        });
    }
    let header = Header {
        format: 1,
        created_at: clock.now_millis(),
        started_at,
        vault: vault.fingerprint().map_err(|e| e.to_string())?,
        backend: if pg_tables.is_empty() {
            "sqlite".into()
        } else {
            "postgres".into()
        },
        root_key_provider: provider,
        root_key,
        root_key_marker,
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
        pg_tables,
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
        vault: header.vault.clone(),
        bytes,
        store_files: header.files.len(),
        audit_events: header.audit_head.map_or(0, |h| h.seq),
        records_opened: 0,
        tombstones_applied: None,
        retention_erased: None,
    })
}

fn total_size(header: &Header) -> u64 {
    // Sizes are checked against the chunks later; an absurd sum is refused here (u64::MAX).
    header
        .files
        .iter()
        .try_fold(0u64, |a, f| a.checked_add(f.size))
        .unwrap_or(u64::MAX)
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
            let tail = buf.get_mut(start..).ok_or("backup: buffer")?;
            r.read_exact(tail).map_err(io(&p))?;
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
    let names_ok = match header.backend.as_str() {
        "sqlite" => {
            header.pg_tables.is_empty()
                && header.files.len() == DB_FILES.len()
                && header
                    .files
                    .iter()
                    .all(|f| DB_FILES.contains(&f.name.as_str()))
        }
        "postgres" => {
            header.files.len() == header.pg_tables.len()
                && header
                    .files
                    .iter()
                    .zip(&header.pg_tables)
                    .all(|(f, t)| f.name == t.file_name() && !f.name.contains(['/', '.']))
        }
        _ => false,
    };
    if header.format != 1
        || header.chunk_size as usize != CHUNK
        || !names_ok
        || total_size(&header) == u64::MAX
    {
        return Err(bad());
    }
    Ok((header, bytes))
}

/// Decrypts the backup at `file` into `into` (a fresh private dir: the store files and
/// `keys/root.key`), checking every chunk and every file's hash. Returns the header.
fn unpack(file: &Path, into: &Path, root: &RootKey) -> Result<Header, String> {
    let damaged = || format!("{} is damaged or was changed", file.display());
    let mut r = BufReader::new(std::fs::File::open(file).map_err(io(file))?);
    let (header, header_bytes) = read_header(&mut r, file)?;
    let write_key_file = |name: &str, b64_text: &str| -> Result<PathBuf, String> {
        let bytes = b64().decode(b64_text).map_err(|_| damaged())?;
        let path = into.join(KEYS_DIR).join(name);
        let mut f = create_private(&path)?;
        f.write_all(&bytes).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        Ok(path)
    };
    let provider: Box<dyn RootKeyProvider> = match (
        header.root_key_provider.as_str(),
        header.root_key.as_deref(),
        root,
    ) {
        ("keyfile", Some(k), RootKey::Passphrase(pass)) => {
            let key_path = write_key_file(ROOT_KEY, k)?;
            Box::new(KeyfileProvider::open(&key_path, pass).map_err(|e| e.to_string())?)
        }
        ("pkcs11", None, RootKey::Pkcs11 { config, .. }) => {
            let marker = header.root_key_marker.as_deref().ok_or_else(damaged)?;
            write_key_file(datadir::ROOT_KEY_PKCS11, marker)?;
            Box::new(Pkcs11Provider::open(config).map_err(|e| e.to_string())?)
        }
        ("keyfile", _, RootKey::Pkcs11 { .. }) => {
            return Err("this backup's root key is sealed by a passphrase: unset \
                        PHIVAULT_PKCS11_* and give the passphrase"
                .into());
        }
        ("pkcs11", _, RootKey::Passphrase(_)) => {
            return Err("this backup's root key is in a PKCS#11 token: set \
                        PHIVAULT_PKCS11_MODULE, PHIVAULT_PKCS11_TOKEN and \
                        PHIVAULT_PKCS11_PIN_FILE"
                .into());
        }
        _ => return Err(damaged()),
    };
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
    let keyring = Keyring::load(provider.as_ref(), &entries).map_err(|_| damaged())?;
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
    root: &RootKey,
    clock: Arc<dyn Clock>,
    db: Option<&datadir::Database>,
) -> Result<(u64, u64), String> {
    let opened = datadir::open_on(dir, root, clock, db)
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
        for org in opened
            .vault
            .organizations()
            .await
            .map_err(|e| e.to_string())?
        {
            let ctx = opened.operator.ctx(org.id);
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

/// The table copies of an unpacked PostgreSQL backup, read back from `dir`.
fn pg_copies(dir: &Path, header: &Header) -> Result<Vec<TableCopy>, String> {
    header
        .pg_tables
        .iter()
        .map(|t| {
            let p = dir.join(t.file_name());
            Ok(TableCopy {
                store: t.store.clone(),
                table: t.table.clone(),
                columns: t.columns.clone(),
                data: std::fs::read(&p).map_err(io(&p))?,
            })
        })
        .collect()
}

/// The configured database, for a PostgreSQL backup (and none for a SQLite one).
fn target_database(header: &Header) -> Result<Option<datadir::Database>, String> {
    let db = datadir::Database::from_env();
    match (header.backend.as_str(), db) {
        ("postgres", Some(db)) => Ok(Some(db)),
        ("postgres", None) => Err("this backup is of PostgreSQL stores: set \
             PHIVAULT_DATABASE_URL (and PHIVAULT_DATABASE_SCHEMA) to the database to use"
            .into()),
        (_, Some(_)) => Err(
            "this backup is of SQLite stores: unset PHIVAULT_DATABASE_URL to \
             restore it into a data dir"
                .into(),
        ),
        (_, None) => Ok(None),
    }
}

/// Loads table copies into `db` (a new vault's empty schemas; `keys_dir` holds its root key
/// file), in one transaction: all or nothing.
async fn load_copies(
    keys_dir: &Path,
    db: &datadir::Database,
    copies: &[TableCopy],
) -> Result<(), String> {
    let stores = datadir::Backend::open(keys_dir, true, Some(db))
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let pg = stores.postgres_stores().ok_or("not PostgreSQL")?;
        let pool = pg.whole_database().ok_or(
            "restore needs the four schemas in one database (no PHIVAULT_DATABASE_URL_<STORE>)",
        )?;
        phivault_store::postgres::snapshot::import(pool, pg.prefix(), copies)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    stores.close().await;
    result
}

/// Loads an unpacked PostgreSQL backup into `db` (a new vault's empty schemas).
async fn load_pg(unpacked: &Path, header: &Header, db: &datadir::Database) -> Result<(), String> {
    load_copies(unpacked, db, &pg_copies(unpacked, header)?).await
}

/// Every table of the vault in `db`, copied in one snapshot.
async fn copy_out(db: &datadir::Database) -> Result<Vec<TableCopy>, String> {
    let pool = phivault_store::postgres::connect(&db.url, db.limits)
        .await
        .map_err(|e| e.to_string())?;
    let copies = phivault_store::postgres::snapshot::export(&pool, &db.prefix).await;
    pool.close().await;
    copies.map_err(|e| e.to_string())
}

/// Scratch schemas in the configured database, for checking a PostgreSQL backup: a fresh
/// prefix, locked for this process's session. Leftovers of killed processes (unlocked
/// `pvcheck…` schemas) are dropped first.
struct ScratchSchemas {
    db: datadir::Database,
    pool: phivault_store::postgres::PgPool,
    lock: Option<phivault_store::postgres::snapshot::ScratchLock>,
}

async fn scratch_database(db: &datadir::Database) -> Result<ScratchSchemas, String> {
    use phivault_store::postgres::snapshot::{self, SCRATCH_PREFIX, SCRATCH_TAG_LEN};
    let mut tag = String::new();
    while tag.len() < SCRATCH_TAG_LEN {
        let token = phivault_crypto::random_token::<12>().map_err(|e| e.to_string())?;
        tag.extend(
            token
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase()),
        );
    }
    tag.truncate(SCRATCH_TAG_LEN);
    let mut scratch = db.clone();
    scratch.prefix = format!("{SCRATCH_PREFIX}{tag}");
    debug_assert!(snapshot::is_scratch_prefix(&scratch.prefix));
    let pool = phivault_store::postgres::connect(&db.url, db.limits)
        .await
        .map_err(|e| e.to_string())?;
    // Best effort: a leftover that cannot be dropped must not stop this check.
    let _ = snapshot::sweep_scratch(&pool).await;
    match snapshot::hold_scratch(&pool, &scratch.prefix).await {
        Ok(lock) => Ok(ScratchSchemas {
            db: scratch,
            pool,
            lock: Some(lock),
        }),
        Err(e) => {
            pool.close().await;
            Err(e.to_string())
        }
    }
}

impl ScratchSchemas {
    /// Fails unless this process still holds its scratch schemas' lock (a lost session lets
    /// another check's sweep drop them).
    async fn still_held(&mut self) -> Result<(), String> {
        let held = match self.lock.as_mut() {
            Some(lock) => phivault_store::postgres::snapshot::still_holds(lock)
                .await
                .unwrap_or(false),
            None => false,
        };
        if held {
            Ok(())
        } else {
            Err(
                "lost the lock on the scratch schemas (database session ended): run it again"
                    .into(),
            )
        }
    }
}

/// Drops a scratch vault's schemas, then lets go of their lock.
async fn drop_scratch(mut tmp: ScratchSchemas) {
    let _ = phivault_store::postgres::snapshot::drop_schemas(&tmp.pool, &tmp.db.prefix).await;
    drop(tmp.lock.take());
    tmp.pool.close().await;
}

/// Unpacks and checks `file` in `scratch` (and, for PostgreSQL, in scratch schemas of the
/// configured database, dropped afterwards). Returns the header and (events, records).
async fn unpack_and_check(
    file: &Path,
    scratch: &Path,
    root: &RootKey,
    clock: Arc<dyn Clock>,
) -> Result<(Header, u64, u64), String> {
    let header = unpack(file, scratch, root)?;
    let (events, records) = match target_database(&header)? {
        None => check(scratch, &header, root, clock, None).await?,
        Some(db) => {
            let tmp = scratch_database(&db).await?;
            let result = async {
                load_pg(scratch, &header, &tmp.db).await?;
                check(scratch, &header, root, clock, Some(&tmp.db)).await
            }
            .await;
            drop_scratch(tmp).await;
            result?
        }
    };
    Ok((header, events, records))
}

/// Checks the backup at `file` without restoring it anywhere: decrypts it into a private
/// scratch dir beside it (and scratch schemas, for PostgreSQL), verifies hashes, the audit
/// chain and every record, and removes the copy.
pub async fn verify(file: &Path, root: &RootKey, clock: Arc<dyn Clock>) -> Result<Summary, String> {
    let scratch = Scratch::new(file, "phivault-verify")?;
    let (header, events, records) = unpack_and_check(file, &scratch.0, root, clock).await?;
    Ok(summary(file, &header, events, records))
}

fn summary(file: &Path, header: &Header, events: u64, records: u64) -> Summary {
    Summary {
        file: file.display().to_string(),
        created_at: header.created_at,
        vault: header.vault.clone(),
        bytes: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        store_files: header.files.len(),
        audit_events: events,
        records_opened: records,
        tombstones_applied: None,
        retention_erased: None,
    }
}

/// The tombstones a vault knows: a data dir (opened with `root`) or another backup file.
async fn tombstones_of(
    source: &Path,
    root: &RootKey,
    clock: Arc<dyn Clock>,
) -> Result<Vec<Tombstone>, String> {
    let read = |opened: datadir::Opened| async move {
        let mut all = Vec::new();
        let result = async {
            for org in opened.vault.organizations().await? {
                all.extend(
                    opened
                        .vault
                        .tombstones(&opened.operator.ctx(org.id))
                        .await?,
                );
            }
            Ok::<_, phivault_vault::VaultError>(())
        }
        .await;
        opened.close().await;
        result.map(|()| all).map_err(|e| e.to_string())
    };
    if source.is_dir() {
        let opened = datadir::open(source, root, clock)
            .await
            .map_err(|e| format!("{}: {e}", source.display()))?;
        return read(opened).await;
    }
    let scratch = Scratch::new(source, "phivault-tombstones")?;
    let header = unpack(source, &scratch.0, root)?;
    match target_database(&header)? {
        None => {
            let opened = datadir::open_on(&scratch.0, root, clock, None)
                .await
                .map_err(|e| e.to_string())?;
            read(opened).await
        }
        Some(db) => {
            let tmp = scratch_database(&db).await?;
            let result = async {
                load_pg(&scratch.0, &header, &tmp.db).await?;
                let opened = datadir::open_on(&scratch.0, root, clock, Some(&tmp.db))
                    .await
                    .map_err(|e| e.to_string())?;
                read(opened).await
            }
            .await;
            drop_scratch(tmp).await;
            result
        }
    }
}

/// The backups beside `file` (same directory, `.pvbak`) made after `created_at`. A backup
/// file there whose header cannot be read stops the restore: its erasures would be missed.
fn newer_backups(file: &Path, created_at: i64) -> Result<Vec<PathBuf>, String> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let rd = std::fs::read_dir(dir).map_err(io(dir))?;
    let mut out = Vec::new();
    for p in rd.filter_map(|e| e.ok().map(|e| e.path())) {
        if p.extension().is_none_or(|x| x != EXTENSION) || p.as_path() == file {
            continue;
        }
        let f = std::fs::File::open(&p).map_err(io(&p))?;
        let (h, _) = read_header(&mut BufReader::new(f), &p).map_err(|e| {
            format!("{e}: it may know of erasures this restore must apply; move it away to go on")
        })?;
        if h.created_at > created_at {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a restored vault forget what was erased after its backup was taken: applies the
/// tombstones of `sources` (crypto-shredding again what they erased), then the vault's own
/// retention rules (what has expired since is erased again). Returns (versions destroyed by
/// tombstones, records erased by retention).
async fn forget_erased(
    dir: &Path,
    root: &RootKey,
    clock: Arc<dyn Clock>,
    db: Option<&datadir::Database>,
    tombstones: &[Tombstone],
    since: i64,
) -> Result<(u64, u64), String> {
    let opened = datadir::open_on(dir, root, clock, db)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let orgs = opened.vault.organizations().await?;
        // The copy's own tombstones too (an erasure that ran while the stores were copied one
        // by one), but only erasures from the snapshot's start on: an older tombstone names a
        // record erased before the backup, and a record with that id in the copy is a new one.
        let mut all: Vec<Tombstone> = tombstones.to_vec();
        for org in &orgs {
            let ctx = opened.operator.ctx(org.id.clone());
            all.extend(opened.vault.tombstones(&ctx).await?);
        }
        all.retain(|t| t.erased_at >= since);
        let mut destroyed = 0;
        if let Some(first) = orgs.first() {
            destroyed = opened
                .vault
                .apply_tombstones(&opened.operator.ctx(first.id.clone()), &all)
                .await?;
        }
        let mut expired = 0;
        for org in orgs {
            let ctx = opened.operator.ctx(org.id);
            let report = opened.vault.retention_run(&ctx).await?;
            expired += report.patients + report.records;
        }
        Ok::<_, phivault_vault::VaultError>((destroyed, expired))
    }
    .await;
    opened.close().await;
    result.map_err(|e| e.to_string())
}

/// Restores the backup at `file` into `dir`, which must not exist or be empty (and, for a
/// PostgreSQL backup, into the configured database's schemas, which must be empty).
/// Everything is unpacked and checked in scratch first; only a backup that verifies is moved
/// into place (for PostgreSQL: loaded in one transaction), so a damaged one writes nothing.
/// Crypto-shredding reaches backups: before the vault is put into place, the erasures known to
/// newer backups beside `file` and to `tombstones_from` (data dirs or backup files) are applied
/// again, and so are the vault's retention rules.
pub async fn restore(
    file: &Path,
    dir: &Path,
    root: &RootKey,
    clock: Arc<dyn Clock>,
    tombstones_from: &[PathBuf],
) -> Result<Summary, String> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io(dir))?.next().is_none();
        if !empty {
            return Err(format!(
                "{} is not empty: restore only into a new or empty directory",
                dir.display()
            ));
        }
    }
    let scratch = Scratch::new(dir, "phivault-restore")?;
    let header = unpack(file, &scratch.0, root)?;
    let target = target_database(&header)?;
    let mut sources = newer_backups(file, header.created_at)?;
    for s in tombstones_from {
        if target.is_some() && s.is_dir() {
            return Err(format!(
                "{}: on PostgreSQL, --tombstones-from takes backup files (make a fresh backup \
                 of the vault whose erasures should be kept)",
                s.display()
            ));
        }
        sources.push(s.clone());
    }
    let mut tombstones = Vec::new();
    for source in &sources {
        tombstones.extend(tombstones_of(source, root, clock.clone()).await?);
    }
    let since = header.started_at;
    let (events, records, applied, expired) = match &target {
        None => {
            let (events, records) = check(&scratch.0, &header, root, clock.clone(), None).await?;
            let (applied, expired) =
                forget_erased(&scratch.0, root, clock.clone(), None, &tombstones, since).await?;
            (events, records, applied, expired)
        }
        Some(db) => {
            // Checked and made to forget in scratch schemas; only the result is loaded into
            // the target, in one transaction, so no node there ever sees erased records.
            let mut tmp = scratch_database(db).await?;
            let result = async {
                load_pg(&scratch.0, &header, &tmp.db).await?;
                let (events, records) =
                    check(&scratch.0, &header, root, clock.clone(), Some(&tmp.db)).await?;
                let (applied, expired) = forget_erased(
                    &scratch.0,
                    root,
                    clock.clone(),
                    Some(&tmp.db),
                    &tombstones,
                    since,
                )
                .await?;
                tmp.still_held().await?;
                let copies = copy_out(&tmp.db).await?;
                load_copies(&scratch.0, db, &copies).await?;
                Ok::<_, String>((events, records, applied, expired))
            }
            .await;
            drop_scratch(tmp).await;
            for t in &header.pg_tables {
                let _ = std::fs::remove_file(scratch.0.join(t.file_name()));
            }
            result?
        }
    };
    for f in DB_FILES {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(scratch.0.join(format!("{f}{suffix}")));
        }
    }
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(io(dir))?;
    }
    scratch.into_place(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    let mut s = summary(file, &header, events, records);
    s.tombstones_applied = Some(applied);
    s.retention_erased = Some(expired);
    Ok(s)
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
        op: Arc<phivault_vault::Operator>,
        stores: datadir::Backend,
        data_dir: PathBuf,
        clock: Arc<dyn Clock>,
    ) {
        loop {
            tokio::time::sleep(self.interval).await;
            let name = format!("phivault-{}.{EXTENSION}", stamp(clock.now_millis()));
            let out = self.dir.join(name);
            match create(&vault, &op, &stores, &data_dir, &out, clock.as_ref()).await {
                Ok(s) => {
                    tracing::info!(file = %s.file, bytes = s.bytes, "scheduled backup written")
                }
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
        assert_eq!(
            parse_interval("90s"),
            Ok(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_interval("6h"),
            Ok(std::time::Duration::from_secs(21_600))
        );
        assert_eq!(
            parse_interval("1d"),
            Ok(std::time::Duration::from_secs(86_400))
        );
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
