//! One backup on disk: `ID.tar.gz` (or `ID.tar.gz.age`, encrypted to age
//! X25519 recipients) and `ID.manifest.json` beside it.
//!
//! The archive is a tar stream, gzip-compressed, whose first entry is
//! `MANIFEST.json` (the list of parts) followed by the parts themselves. The
//! manifest beside it repeats that list and adds the archive's own size and
//! sha256, the sources and the SQLite page counts. Both are written through
//! a temporary file that is synced and renamed, the manifest last, and then
//! the directory is synced: a backup whose manifest is there is complete,
//! and anything else (a `.tmp` file, an archive without a manifest) is what
//! a crash left and is never listed, shipped or restored.
//!
//! Reading one back checks everything before anything is trusted: the
//! archive's size and sha256 against the manifest, the manifest inside
//! against the one beside it, each part's size and sha256, no entry that is
//! not a listed part, and `PRAGMA integrity_check` plus the page count of
//! each database.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id;

pub const FORMAT: &str = "bsv-p2p-backup/1";
/// The parts list inside the archive, its first entry.
pub const INNER_MANIFEST: &str = "MANIFEST.json";
/// A manifest larger than this is not one of ours.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub id: String,
    pub created_at: String,
    pub host: String,
    pub tool: String,
    pub encrypted: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    pub archive: ArchiveInfo,
    pub parts: Vec<Part>,
    /// Sources that were configured but are not in this backup, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchiveInfo {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Part {
    /// The entry's name in the archive: a plain file name.
    pub name: String,
    pub kind: PartKind,
    /// Where it came from: a path, or the relay's control socket.
    pub source: String,
    pub bytes: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    Sqlite,
    File,
    RelaySnapshot,
    RelayConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqliteInfo {
    pub page_count: u64,
    pub page_size: u64,
    /// The source's journal mode (`wal`, `delete`, …) when it was copied.
    pub journal_mode: String,
    /// `PRAGMA integrity_check` of the copy: always "ok" in a manifest.
    pub integrity: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RelayInfo {
    pub peer_id: String,
    /// The last relay event the snapshot includes.
    pub seq: u64,
    pub taken_at: String,
    pub identity: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Skipped {
    pub source: String,
    pub reason: String,
}

/// The parts list inside the archive.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Inner {
    format: String,
    id: String,
    parts: Vec<Part>,
}

/// A part ready to go into an archive: its manifest entry and its file.
pub struct Staged {
    pub part: Part,
    pub path: PathBuf,
}

/// Counts and hashes what passes through.
pub struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex(&self.hash.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 and size of a file.
pub fn sha256_file(path: &Path) -> io::Result<(u64, String)> {
    let mut h = Hashing::new(io::sink());
    io::copy(
        &mut BufReader::with_capacity(1 << 20, File::open(path)?),
        &mut h,
    )?;
    let (_, n, sum) = h.finish();
    Ok((n, sum))
}

/// Writes a large file without piling up dirty pages: every
/// [`TRICKLE_CHUNK`] bytes it starts the kernel writing that chunk out and
/// waits for the chunk before it, so the final fsync is short and the disk
/// never has hundreds of megabytes to flush at once. A bot's own fsync (its
/// WAL checkpoint) queued behind such a flush is what a writer would see as
/// a stall.
pub struct Trickle {
    pub file: File,
    written: u64,
    /// Where the range being written out now starts, and the one before.
    started: u64,
    previous: Option<u64>,
}

/// 8 MiB: large enough to keep the disk streaming, small enough that a
/// writer's fsync never waits behind much.
const TRICKLE_CHUNK: u64 = 8 << 20;

impl Trickle {
    pub fn new(file: File) -> Self {
        Trickle {
            file,
            written: 0,
            started: 0,
            previous: None,
        }
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::io::AsRawFd;
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= TRICKLE_CHUNK {
            let fd = self.file.as_raw_fd();
            // SAFETY: sync_file_range on our own open descriptor; offsets
            // are within what was written. Failures only lose the pacing
            // (the final fsync still makes the file durable).
            unsafe {
                if let Some(previous) = self.previous {
                    libc::sync_file_range(
                        fd,
                        previous as i64,
                        (self.started - previous) as i64,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                }
                libc::sync_file_range(
                    fd,
                    self.started as i64,
                    (self.written - self.started) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.previous = Some(self.started);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Creates `path` as a new file (never following a link), mode 0600.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` through a synced temporary file and a rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Everything a new backup needs besides its parts.
pub struct NewBackup<'a> {
    pub id: &'a str,
    pub dir: &'a Path,
    pub recipients: &'a [String],
    pub compression: u32,
    pub skipped: Vec<Skipped>,
}

/// Writes the archive and then the manifest of a new backup into `dir`.
pub fn write(new: NewBackup, parts: &[Staged]) -> Result<Manifest, String> {
    let encrypted = !new.recipients.is_empty();
    let file = id::archive_file(new.id, encrypted);
    let tmp = new.dir.join(format!(".{file}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let inner = Inner {
        format: FORMAT.to_string(),
        id: new.id.to_string(),
        parts: parts.iter().map(|s| s.part.clone()).collect(),
    };
    let inner = serde_json::to_vec_pretty(&inner).map_err(|e| e.to_string())?;
    let result = (|| -> Result<(u64, String), String> {
        let f = create_new(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let hashing = Hashing::new(BufWriter::with_capacity(1 << 20, Trickle::new(f)));
        let hashing = if encrypted {
            let recipients = new
                .recipients
                .iter()
                .map(|r| r.parse::<age::x25519::Recipient>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("encryption recipient: {e}"))?;
            let encryptor = age::Encryptor::with_recipients(
                recipients.iter().map(|r| r as &dyn age::Recipient),
            )
            .map_err(|e| format!("cannot encrypt: {e}"))?;
            let w = encryptor
                .wrap_output(hashing)
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            tar_gz(w, &inner, parts, new.compression)?
                .finish()
                .map_err(|e| format!("{}: {e}", tmp.display()))?
        } else {
            tar_gz(hashing, &inner, parts, new.compression)?
        };
        let (buffered, bytes, sha256) = hashing.finish();
        let f = buffered
            .into_inner()
            .map_err(|e| format!("{}: {e}", tmp.display()))?
            .file;
        f.sync_all()
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, new.dir.join(&file)).map_err(|e| format!("{}: {e}", new.dir.display()))?;
        Ok((bytes, sha256))
    })();
    let (bytes, sha256) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let manifest = Manifest {
        format: FORMAT.to_string(),
        id: new.id.to_string(),
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        host: hostname(),
        tool: concat!("bsv-p2p-backup ", env!("CARGO_PKG_VERSION")).to_string(),
        encrypted,
        recipients: new.recipients.to_vec(),
        archive: ArchiveInfo {
            file,
            bytes,
            sha256,
        },
        parts: parts.iter().map(|s| s.part.clone()).collect(),
        skipped: new.skipped,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    write_atomic(new.dir, &id::manifest_file(new.id), &text)
        .and_then(|()| sync_dir(new.dir))
        .map_err(|e| format!("{}: {e}", new.dir.display()))?;
    Ok(manifest)
}

fn tar_gz<W: Write>(w: W, inner: &[u8], parts: &[Staged], level: u32) -> Result<W, String> {
    let gz = flate2::write::GzEncoder::new(w, flate2::Compression::new(level));
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut header = tar::Header::new_gnu();
    header.set_size(inner.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(&mut header, INNER_MANIFEST, inner)
        .map_err(|e| format!("cannot write the archive: {e}"))?;
    for s in parts {
        let f = File::open(&s.path).map_err(|e| format!("{}: {e}", s.path.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(s.part.bytes);
        header.set_mode(0o600);
        header.set_cksum();
        // Exactly the bytes hashed: a staged file never changes, but a
        // shorter read would be a broken archive, so it is checked.
        let mut reader = Hashing::new(BufReader::with_capacity(1 << 20, f)).take(s.part.bytes);
        tar.append_data(&mut header, &s.part.name, &mut reader)
            .map_err(|e| format!("cannot write {} into the archive: {e}", s.part.name))?;
        let (_, n, sum) = reader.into_inner().finish();
        if n != s.part.bytes || sum != s.part.sha256 {
            return Err(format!(
                "{} changed while it was archived ({} bytes read of {})",
                s.path.display(),
                n,
                s.part.bytes
            ));
        }
    }
    let gz = tar
        .into_inner()
        .map_err(|e| format!("cannot write the archive: {e}"))?;
    gz.finish()
        .map_err(|e| format!("cannot write the archive: {e}"))
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Reads and checks a manifest file's form (not yet the archive).
pub fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = Vec::new();
    f.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!("{}: larger than a manifest can be", path.display()));
    }
    let m: Manifest = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not a backup manifest: {e}", path.display()))?;
    check_form(&m).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(m)
}

fn check_form(m: &Manifest) -> Result<(), String> {
    if m.format != FORMAT {
        return Err(format!("format {:?}, expected {FORMAT:?}", m.format));
    }
    if m.archive.file != id::archive_file(&m.id, m.encrypted) {
        return Err(format!(
            "archive file {:?} does not belong to backup {}",
            m.archive.file, m.id
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for p in &m.parts {
        if !plain_name(&p.name) || p.name == INNER_MANIFEST || !names.insert(&p.name) {
            return Err(format!("part name {:?} is not allowed or repeated", p.name));
        }
        if p.sha256.len() != 64 || !p.sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "part {}: sha256 {:?} is not a sha256",
                p.name, p.sha256
            ));
        }
        if (p.kind == PartKind::Sqlite) != p.sqlite.is_some() {
            return Err(format!(
                "part {}: SQLite details do not match its kind",
                p.name
            ));
        }
    }
    Ok(())
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
}

/// Where a check puts the parts it extracts, and which ones.
pub type Extract<'a> = (&'a Path, &'a dyn Fn(&Part) -> bool);

/// What a check found.
#[derive(Debug, Clone)]
pub struct Checked {
    pub manifest: Manifest,
    /// Whether the parts were read (an encrypted archive without the
    /// identity is checked only against its sha256).
    pub contents_checked: bool,
}

/// Checks a backup in `dir` (the local directory, or where it was fetched)
/// and extracts the parts `wanted` picks into `out` (synced), which must
/// exist and be empty. `identity` reads an encrypted archive.
pub fn check(
    dir: &Path,
    id: &str,
    identity: Option<&Path>,
    out: Option<Extract>,
) -> Result<Checked, String> {
    let manifest = read_manifest(&dir.join(id::manifest_file(id)))?;
    if manifest.id != id {
        return Err(format!(
            "the manifest of {id} names backup {}: it was renamed or tampered with",
            manifest.id
        ));
    }
    let path = dir.join(&manifest.archive.file);
    let (bytes, sum) = sha256_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes != manifest.archive.bytes || sum != manifest.archive.sha256 {
        return Err(format!(
            "{}: {bytes} bytes with sha256 {sum}, the manifest says {} bytes with sha256 {}: the archive is damaged or was tampered with",
            path.display(),
            manifest.archive.bytes,
            manifest.archive.sha256
        ));
    }
    let f = BufReader::with_capacity(
        1 << 20,
        File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    let plain: Box<dyn Read> = if manifest.encrypted {
        let Some(identity) = identity else {
            return Ok(Checked {
                manifest,
                contents_checked: false,
            });
        };
        let identities = age::IdentityFile::from_file(identity.display().to_string())
            .map_err(|e| format!("{}: cannot read the age identity: {e}", identity.display()))?
            .into_identities()
            .map_err(|e| format!("{}: {e}", identity.display()))?;
        let decryptor = age::Decryptor::new_buffered(f)
            .map_err(|e| format!("{}: not an age file: {e}", path.display()))?;
        Box::new(
            decryptor
                .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(|e| {
                    format!(
                        "{}: cannot decrypt with {}: {e}",
                        path.display(),
                        identity.display()
                    )
                })?,
        )
    } else {
        Box::new(f)
    };
    read_parts(&path, &manifest, plain, out)?;
    Ok(Checked {
        manifest,
        contents_checked: true,
    })
}

fn read_parts(
    path: &Path,
    manifest: &Manifest,
    plain: Box<dyn Read>,
    out: Option<Extract>,
) -> Result<(), String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(plain));
    let mut entries = tar.entries().map_err(|e| at(&e))?;
    // The inner manifest first.
    let mut first = entries
        .next()
        .ok_or_else(|| at(&"the archive is empty"))?
        .map_err(|e| at(&e))?;
    if first.path().map_err(|e| at(&e))?.to_str() != Some(INNER_MANIFEST)
        || first.header().size().map_err(|e| at(&e))? > MAX_MANIFEST_BYTES
    {
        return Err(at(&"the archive does not start with its manifest"));
    }
    let mut text = Vec::new();
    first.read_to_end(&mut text).map_err(|e| at(&e))?;
    let inner: Inner =
        serde_json::from_slice(&text).map_err(|e| at(&format!("its manifest: {e}")))?;
    if inner.id != manifest.id || inner.parts != manifest.parts {
        return Err(at(&"the manifest inside the archive differs from the one beside it: one of them was tampered with"));
    }
    let mut seen = std::collections::BTreeSet::new();
    let scratch_sqlite =
        if out.is_none() && manifest.parts.iter().any(|p| p.kind == PartKind::Sqlite) {
            Some(tempdir_beside(path)?)
        } else {
            None
        };
    for entry in entries {
        let mut entry = entry.map_err(|e| at(&e))?;
        let name = entry
            .path()
            .map_err(|e| at(&e))?
            .to_str()
            .unwrap_or("")
            .to_string();
        let part = manifest
            .parts
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| at(&format!("entry {name:?} is not in the manifest")))?;
        if !seen.insert(name.clone()) {
            return Err(at(&format!("entry {name:?} appears twice")));
        }
        if entry.header().entry_type() != tar::EntryType::Regular
            || entry.header().size().map_err(|e| at(&e))? != part.bytes
        {
            return Err(at(&format!(
                "entry {name:?} is not the {} bytes the manifest says",
                part.bytes
            )));
        }
        let dest = match (&out, &scratch_sqlite) {
            (Some((dir, wanted)), _) if wanted(part) => Some(dir.join(&part.name)),
            (None, Some(s)) if part.kind == PartKind::Sqlite => Some(s.path.join(&part.name)),
            _ => None,
        };
        let (n, sum) = match &dest {
            Some(dest) => {
                let f = create_new(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
                let mut w = Hashing::new(BufWriter::with_capacity(1 << 20, f));
                io::copy(&mut (&mut entry).take(part.bytes), &mut w).map_err(|e| at(&e))?;
                let (b, n, sum) = w.finish();
                let f = b
                    .into_inner()
                    .map_err(|e| format!("{}: {e}", dest.display()))?;
                f.sync_all()
                    .map_err(|e| format!("{}: {e}", dest.display()))?;
                (n, sum)
            }
            None => {
                let mut w = Hashing::new(io::sink());
                io::copy(&mut (&mut entry).take(part.bytes), &mut w).map_err(|e| at(&e))?;
                let (_, n, sum) = w.finish();
                (n, sum)
            }
        };
        if n != part.bytes || sum != part.sha256 {
            return Err(at(&format!(
                "part {name}: sha256 {sum} of {n} bytes, the manifest says {} of {} bytes",
                part.sha256, part.bytes
            )));
        }
        if let (Some(dest), Some(info)) = (&dest, &part.sqlite) {
            crate::sqlite::check_copy(dest, info).map_err(|e| format!("part {name}: {e}"))?;
        }
    }
    if let Some(missing) = manifest.parts.iter().find(|p| !seen.contains(&p.name)) {
        return Err(at(&format!(
            "part {} is missing from the archive",
            missing.name
        )));
    }
    Ok(())
}

/// A directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A new private directory beside `path` (same file system, so a rename
/// from it is atomic).
pub fn tempdir_beside(path: &Path) -> Result<TempDir, String> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempdir_in(parent)
}

pub fn tempdir_in(parent: &Path) -> Result<TempDir, String> {
    use std::os::unix::fs::DirBuilderExt;
    for _ in 0..16 {
        let p = parent.join(format!(
            ".bsv-p2p-backup-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        match fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(TempDir { path: p }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(format!(
                    "{}: cannot create a temporary directory: {e}",
                    parent.display()
                ))
            }
        }
    }
    Err(format!(
        "{}: cannot create a temporary directory",
        parent.display()
    ))
}
