//! Taking one backup: every source copied into a private staging directory
//! (databases with SQLite's online backup and checked, files as they are,
//! the relay's state through its `snapshot`), then one archive and its
//! manifest written into the backup directory. The directory's lock is held
//! throughout, so two backups never run at once.
//!
//! A source that fails (a database that does not pass `integrity_check`, a
//! relay that is down) is left out and named in the manifest's `skipped`
//! with the reason, and the backup goes on with the rest: a relay that is
//! down must not stop the wallet from being saved. It is counted as a
//! failure of that source, and `now` exits 1.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bsv_p2p_proto::{Client, Options as ClientOptions, SnapshotResult};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::archive::{self, Manifest, NewBackup, Part, PartKind, RelayInfo, Skipped, Staged};
use crate::config::BackupConfig;
use crate::metrics::Figures;
use crate::{id, repo, sqlite};

/// A config file larger than this is not a config file.
const MAX_FILE_BYTES: u64 = 64 << 20;
/// How long a backup waits for another one to finish.
const LOCK_WAIT: Duration = Duration::from_secs(3600);

pub struct Outcome {
    pub manifest: Manifest,
    /// Sources that failed, with the reason (optional files that do not
    /// exist are not failures).
    pub failed: Vec<String>,
    pub took: Duration,
}

/// Takes one backup of every configured source.
pub fn take(config: &BackupConfig, figures: &Figures) -> Result<Outcome, String> {
    let started = Instant::now();
    lower_priority();
    repo::ensure_dir(&config.dir)?;
    repo::ensure_dir(&config.state_dir)?;
    let _lock = repo::lock(&config.dir, LOCK_WAIT)?;
    for file in repo::clean(&config.dir, &config.name) {
        log::info!("removed {file}, left by an interrupted backup");
    }
    // One ID per second: wait for the next second if this one is taken.
    let id = loop {
        let id = id::format(&config.name, SystemTime::now());
        let taken = [
            id::manifest_file(&id),
            id::archive_file(&id, false),
            id::archive_file(&id, true),
        ]
        .iter()
        .any(|f| config.dir.join(f).exists());
        if !taken {
            break id;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let staging_root = config.state_dir.join("staging");
    let _ = fs::remove_dir_all(&staging_root);
    repo::ensure_dir(&staging_root)?;
    let staging = fs::canonicalize(&staging_root)
        .map_err(|e| format!("{}: {e}", staging_root.display()))?
        .join(&id);
    repo::ensure_dir(&staging)?;
    let result = stage_and_write(config, figures, &id, &staging);
    let _ = fs::remove_dir_all(&staging_root);
    let (manifest, failed) = result?;
    figures.backup_done(&manifest, started.elapsed());
    Ok(Outcome {
        manifest,
        failed,
        took: started.elapsed(),
    })
}

fn stage_and_write(
    config: &BackupConfig,
    figures: &Figures,
    id: &str,
    staging: &Path,
) -> Result<(Manifest, Vec<String>), String> {
    let mut names = BTreeSet::new();
    let mut unique = |wanted: &str| -> String {
        let mut name = wanted.to_string();
        let mut n = 2;
        while !names.insert(name.clone()) || name == archive::INNER_MANIFEST {
            name = format!("{n}-{wanted}");
            n += 1;
        }
        name
    };
    let mut staged: Vec<Staged> = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut fail = |source: String, reason: String, skipped: &mut Vec<Skipped>| {
        log::error!("{source}: left out of {id}: {reason}");
        figures.source_failed(&source);
        failed.push(format!("{source}: {reason}"));
        skipped.push(Skipped { source, reason });
    };

    for db in &config.databases {
        let source = db.display().to_string();
        let name = unique(&file_name(db, "wallet.db"));
        let dest = staging.join(&name);
        match sqlite::copy(db, &dest).and_then(|info| {
            let (bytes, sha256) =
                archive::sha256_file(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
            Ok((info, bytes, sha256))
        }) {
            Ok((info, bytes, sha256)) => {
                figures.source_done(&source);
                staged.push(Staged {
                    part: Part {
                        name,
                        kind: PartKind::Sqlite,
                        source,
                        bytes,
                        sha256,
                        sqlite: Some(info),
                        relay: None,
                    },
                    path: dest,
                });
            }
            Err(e) => fail(source, e, &mut skipped),
        }
    }

    for f in &config.files {
        let source = f.path.display().to_string();
        match read_small(&f.path) {
            Ok(Some(bytes)) => {
                let name = unique(&file_name(&f.path, "file"));
                let dest = staging.join(&name);
                match stage_bytes(&dest, &bytes) {
                    Ok(()) => {
                        figures.source_done(&source);
                        staged.push(Staged {
                            part: Part {
                                name,
                                kind: PartKind::File,
                                source,
                                bytes: bytes.len() as u64,
                                sha256: archive::hex(&Sha256::digest(&bytes)),
                                sqlite: None,
                                relay: None,
                            },
                            path: dest,
                        });
                    }
                    Err(e) => fail(source, e, &mut skipped),
                }
            }
            Ok(None) if !f.required => skipped.push(Skipped {
                source,
                reason: "not present".into(),
            }),
            Ok(None) => fail(source, "does not exist".into(), &mut skipped),
            Err(e) => fail(source, e, &mut skipped),
        }
    }

    if let Some(socket) = &config.relay_socket {
        let source = format!("relay:{}", socket.display());
        match relay_snapshot(socket, staging, config.relay_identity) {
            Ok((result, doc)) => {
                figures.source_done(&source);
                let name = unique("relay-state.json");
                let path = staging.join(&name);
                fs::rename(&result.path, &path).map_err(|e| format!("{}: {e}", path.display()))?;
                staged.push(Staged {
                    part: Part {
                        name,
                        kind: PartKind::RelaySnapshot,
                        source: source.clone(),
                        bytes: result.bytes,
                        sha256: result.sha256.clone(),
                        sqlite: None,
                        relay: Some(RelayInfo {
                            peer_id: doc.peer_id.clone(),
                            seq: result.seq,
                            taken_at: humantime::format_rfc3339_millis(result.taken_at.0)
                                .to_string(),
                            identity: doc.identity_key.is_some(),
                        }),
                    },
                    path,
                });
                // The relay's config file, when the relay runs from one we
                // can read; a file already among the sources is marked.
                let config_path = PathBuf::from(&doc.config);
                if config_path.is_absolute() {
                    let src = config_path.display().to_string();
                    if let Some(s) = staged.iter_mut().find(|s| s.part.source == src) {
                        s.part.kind = PartKind::RelayConfig;
                    } else {
                        match read_small(&config_path) {
                            Ok(Some(bytes)) => {
                                let name = unique("relay-config.json");
                                let dest = staging.join(&name);
                                stage_bytes(&dest, &bytes)?;
                                staged.push(Staged {
                                    part: Part {
                                        name,
                                        kind: PartKind::RelayConfig,
                                        source: src,
                                        bytes: bytes.len() as u64,
                                        sha256: archive::hex(&Sha256::digest(&bytes)),
                                        sqlite: None,
                                        relay: None,
                                    },
                                    path: dest,
                                });
                            }
                            Ok(None) => skipped.push(Skipped {
                                source: src,
                                reason: "the relay's config file is not present".into(),
                            }),
                            Err(e) => fail(src, e, &mut skipped),
                        }
                    }
                }
            }
            Err(e) => fail(source, e, &mut skipped),
        }
    }

    if staged.is_empty() {
        return Err(format!(
            "nothing could be backed up: {}",
            skipped
                .iter()
                .map(|s| format!("{}: {}", s.source, s.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let manifest = archive::write(
        NewBackup {
            id,
            dir: &config.dir,
            recipients: &config.recipients,
            compression: config.compression,
            skipped,
        },
        &staged,
    )?;
    Ok((manifest, failed))
}

/// The thread that takes backups runs at nice 10: compressing a large
/// wallet keeps a core busy for seconds, and the bot writing that wallet
/// comes first. Once per thread; failure (a seccomp profile) changes nothing.
fn lower_priority() {
    thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if LOWERED.with(|l| l.replace(true)) {
        return;
    }
    // SAFETY: setpriority on this thread's own id (Linux: a thread is a
    // process for the scheduler).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

fn file_name(path: &Path, fallback: &str) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
        .unwrap_or(fallback)
        .to_string()
}

/// A small regular file's bytes; `None` if it does not exist.
fn read_small(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{e}")),
    };
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes; files over {MAX_FILE_BYTES} bytes are not config files",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{e}"))?;
    Ok(Some(bytes))
}

fn stage_bytes(dest: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = archive::create_new(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", dest.display()))
}

/// What the backup reads of a relay snapshot.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotDoc {
    peer_id: String,
    #[serde(default)]
    config: String,
    #[serde(default)]
    identity_key: Option<String>,
}

/// Asks the relay for a snapshot into `dir`, and checks what it wrote.
fn relay_snapshot(
    socket: &Path,
    dir: &Path,
    identity: bool,
) -> Result<(SnapshotResult, SnapshotDoc), String> {
    let path = dir.join(".relay-state.json");
    let result = async_std::task::block_on(async {
        let mut options = ClientOptions::new(concat!("bsv-p2p-backup/", env!("CARGO_PKG_VERSION")));
        options.connect_timeout = Duration::from_secs(5);
        let client = Client::connect_with(socket, options)
            .await
            .map_err(|e| format!("cannot reach the relay: {e}"))?;
        let mut params = serde_json::json!({ "path": path });
        if !identity {
            params["includeIdentity"] = false.into();
        }
        let value = client
            .call("snapshot", params)
            .await
            .map_err(|e| format!("the relay's snapshot failed: {e}"))?;
        serde_json::from_value::<SnapshotResult>(value)
            .map_err(|e| format!("the relay's snapshot answer: {e}"))
    })?;
    let (bytes, sha256) =
        archive::sha256_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if (bytes, sha256.as_str()) != (result.bytes, result.sha256.as_str()) {
        return Err(format!(
            "{}: {bytes} bytes with sha256 {sha256}, the relay said {} bytes with sha256 {}",
            path.display(),
            result.bytes,
            result.sha256
        ));
    }
    let doc: SnapshotDoc =
        serde_json::from_slice(&fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?)
            .map_err(|e| format!("the relay's snapshot is not what this version reads: {e}"))?;
    if identity && doc.identity_key.is_none() {
        return Err("the relay's snapshot has no identity key".into());
    }
    Ok((result, doc))
}
