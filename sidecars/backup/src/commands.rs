//! The one-shot commands: `now`, `list`, `verify`, `restore`,
//! `restore-relay` and `keygen`. Each prints what it did on standard output
//! and returns whether everything worked.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::archive::{self, Manifest, PartKind, TempDir};
use crate::config::{BackupConfig, ListArgs, NowArgs, RestoreArgs, RestoreRelayArgs, VerifyArgs};
use crate::metrics::Figures;
use crate::queue::{OpenError, Queue};
use crate::repo::{self, Mark};
use crate::target::{ErrorKind, Target};
use crate::{backup, id, ship};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The configured targets, built, with their names.
type Named = Vec<(String, Box<dyn Target>)>;

fn targets(config: &BackupConfig, env: Env) -> Result<Named, String> {
    config
        .targets
        .iter()
        .map(|t| t.build(env).map(|b| (t.name.clone(), b)))
        .collect()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

pub fn now(config: &BackupConfig, args: &NowArgs, env: Env) -> Result<bool, String> {
    let targets = if args.no_ship {
        Vec::new()
    } else {
        targets(config, env)?
    };
    let figures = Figures::default();
    let outcome = backup::take(config, &figures)?;
    let m = &outcome.manifest;
    println!(
        "backup {} written to {}: {} parts, {} bytes{}, in {:.1} s",
        m.id,
        config.dir.join(&m.archive.file).display(),
        m.parts.len(),
        m.archive.bytes,
        if m.encrypted { ", encrypted" } else { "" },
        outcome.took.as_secs_f64()
    );
    for s in &m.skipped {
        println!("  left out: {}: {}", s.source, s.reason);
    }
    let mut ok = outcome.failed.is_empty();
    if targets.is_empty() {
        local_retention(config, None);
        return Ok(ok);
    }
    let queue = match Queue::open(&config.state_dir) {
        Ok(q) => q,
        Err(OpenError::Busy) => {
            println!(
                "the running daemon ships it (it holds {})",
                config.state_dir.join("queue").display()
            );
            return Ok(ok);
        }
        Err(OpenError::Other(e)) => return Err(e),
    };
    // Every complete backup not yet at a target goes (a `now` killed
    // before it shipped left its backup behind).
    let local = repo::list(&config.dir, &config.name)?;
    for (name, target) in &targets {
        for b in local.iter().filter(|b| b.manifest.is_ok()) {
            queue
                .enqueue(name, &b.id)
                .map_err(|e| format!("the upload queue: {e}"))?;
        }
        // Whatever else waits for this target goes too, oldest first.
        let pending = queue
            .pending(name)
            .map_err(|e| format!("the upload queue: {e}"))?;
        for (id_, _) in pending {
            let manifest = match archive::read_manifest(&config.dir.join(id::manifest_file(&id_))) {
                Ok(m) => m,
                Err(_) => {
                    let _ = queue.drop_pending(name, &id_);
                    continue;
                }
            };
            match ship_with_retries(target.as_ref(), &config.dir, &manifest) {
                Ok(bytes) => {
                    queue
                        .shipped(name, &id_, bytes)
                        .map_err(|e| format!("the upload queue: {e}"))?;
                    println!("{name}: shipped {id_} ({bytes} bytes)");
                }
                Err(e) => {
                    let _ = queue.failed(name, &id_, &e.message);
                    println!(
                        "{name}: not shipped: {e}{}",
                        if e.kind == ErrorKind::Refused {
                            ""
                        } else {
                            "; it stays queued and goes out with the next `now` or with `run`"
                        }
                    );
                    ok = false;
                    break;
                }
            }
        }
        let marks = repo::read_marks(&config.state_dir, name);
        match ship::retention_at(target.as_ref(), &config.name, &config.retention, &marks) {
            Ok(deleted) => {
                for d in deleted {
                    println!("{name}: retention deleted {d}");
                }
            }
            Err(e) => println!("{name}: retention: {e}"),
        }
    }
    local_retention(config, Some(&queue));
    Ok(ok)
}

fn ship_with_retries(
    target: &dyn Target,
    dir: &Path,
    m: &Manifest,
) -> Result<u64, crate::target::TargetError> {
    let mut wait = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match ship::ship(target, dir, m) {
            Err(e) if e.kind != ErrorKind::Refused && attempt < 3 => {
                std::thread::sleep(wait);
                wait *= 3;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn local_retention(config: &BackupConfig, queue: Option<&Queue>) {
    let Ok(_lock) = repo::lock(&config.dir, Duration::from_secs(60)) else {
        return;
    };
    let marks = repo::read_marks(&config.state_dir, "local");
    let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    let keep = |id_: &str| {
        queue.is_some_and(|q| names.iter().any(|n| q.is_pending(n, id_).unwrap_or(true)))
    };
    match repo::apply_retention(&config.dir, &config.name, &config.retention, &marks, &keep) {
        Ok(deleted) => {
            for d in deleted {
                println!("retention ({}): deleted {d}", config.retention.describe());
            }
        }
        Err(e) => println!("retention: {e}"),
    }
}

/// The state of one backup at one place, for `list`.
fn local_state(b: &repo::Local, marks: &repo::Marks) -> String {
    match (&b.manifest, marks.get(&b.id)) {
        (Err(e), _) => format!("damaged: {e}"),
        (Ok(_), Some(m)) if !m.ok => format!(
            "FAILED verify at {}: {}",
            m.at,
            m.error.clone().unwrap_or_default()
        ),
        (Ok(_), Some(m)) if m.contents_checked => format!("verified {}", m.at),
        (Ok(_), Some(m)) => format!("sha256 checked {} (encrypted)", m.at),
        (Ok(_), None) => "checked when written".to_string(),
    }
}

pub fn list(config: &BackupConfig, args: &ListArgs, env: Env) -> Result<bool, String> {
    let local = repo::list(&config.dir, &config.name)?;
    let marks = repo::read_marks(&config.state_dir, "local");
    let mut rows: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for b in &local {
        let mut row =
            serde_json::json!({ "id": b.id, "local": local_state(b, &marks), "targets": {} });
        if let Ok(m) = &b.manifest {
            row["createdAt"] = m.created_at.clone().into();
            row["bytes"] = m.archive.bytes.into();
            row["encrypted"] = m.encrypted.into();
            row["parts"] = m
                .parts
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .into();
        }
        rows.insert(b.id.clone(), row);
    }
    let mut ok = true;
    let mut target_names = Vec::new();
    if !args.local {
        for (name, target) in targets(config, env)? {
            target_names.push(name.clone());
            let tmarks = repo::read_marks(&config.state_dir, &name);
            match ship::remote_backups(target.as_ref(), &config.name) {
                Ok(remote) => {
                    for (id_, r) in remote {
                        let state = match (r.complete(), tmarks.get(&id_)) {
                            (false, _) => "incomplete (upload interrupted)".to_string(),
                            (true, Some(m)) if !m.ok => format!("FAILED verify at {}", m.at),
                            (true, Some(m)) => format!("verified {}", m.at),
                            (true, None) => "present".to_string(),
                        };
                        let row = rows.entry(id_.clone()).or_insert_with(
                            || serde_json::json!({ "id": id_, "local": "absent", "targets": {} }),
                        );
                        if row.get("bytes").is_none() {
                            if let Some((_, size)) = &r.archive {
                                row["bytes"] = (*size).into();
                            }
                        }
                        row["targets"][&name] = state.into();
                    }
                }
                Err(e) => {
                    ok = false;
                    eprintln!("{name}: cannot list: {e}");
                }
            }
        }
    }
    if args.json {
        let list: Vec<&serde_json::Value> = rows.values().collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("serializes")
        );
        return Ok(ok);
    }
    if rows.is_empty() {
        println!("no backups in {}", config.dir.display());
        return Ok(ok);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<28} {:>12}  {:<10} LOCAL",
        "ID", "BYTES", "ENCRYPTED"
    );
    for row in rows.values() {
        let _ = writeln!(
            out,
            "{:<28} {:>12}  {:<10} {}",
            row["id"].as_str().unwrap_or(""),
            row.get("bytes")
                .and_then(|b| b.as_u64())
                .map_or("-".to_string(), |b| b.to_string()),
            match row.get("encrypted").and_then(|e| e.as_bool()) {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            row["local"].as_str().unwrap_or("")
        );
        for name in &target_names {
            let _ = writeln!(
                out,
                "{:<28} {:>12}  {:<10} {name}: {}",
                "",
                "",
                "",
                row["targets"]
                    .get(name)
                    .and_then(|s| s.as_str())
                    .unwrap_or("absent")
            );
        }
    }
    Ok(ok)
}

/// Fetches a complete backup from a target into a new directory.
fn fetch(config: &BackupConfig, env: Env, from: &str, id_: &str) -> Result<TempDir, String> {
    let spec = config
        .targets
        .iter()
        .find(|t| t.name == from)
        .ok_or_else(|| {
            format!(
                "no target named {from:?}; the targets are: {}",
                config
                    .targets
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let target = spec.build(env)?;
    let remote = ship::remote_backups(target.as_ref(), &config.name).map_err(|e| e.message)?;
    let r = remote
        .get(id_)
        .ok_or_else(|| format!("{from} has no backup {id_}"))?;
    if !r.complete() {
        return Err(format!(
            "{from}: {id_} is incomplete there (no manifest): an interrupted upload"
        ));
    }
    repo::ensure_dir(&config.state_dir)?;
    let dir = archive::tempdir_in(&config.state_dir)?;
    let manifest = id::manifest_file(id_);
    target
        .get(&manifest, &dir.path.join(&manifest))
        .map_err(|e| e.message)?;
    let (file, _) = r.archive.clone().expect("complete");
    target
        .get(&file, &dir.path.join(&file))
        .map_err(|e| e.message)?;
    Ok(dir)
}

/// A backup to restore from: fetched from `from` into a temporary
/// directory (returned, removed on drop) or left in the local directory;
/// its manifest, read and checked for form.
fn located(
    config: &BackupConfig,
    env: Env,
    from: Option<&str>,
    id_: &str,
) -> Result<(Option<TempDir>, Manifest), String> {
    let fetched = match from {
        Some(from) => Some(fetch(config, env, from, id_)?),
        None => None,
    };
    let dir = fetched
        .as_ref()
        .map_or(config.dir.as_path(), |d| d.path.as_path());
    let manifest = archive::read_manifest(&dir.join(id::manifest_file(id_)))?;
    Ok((fetched, manifest))
}

pub fn verify(config: &BackupConfig, args: &VerifyArgs, env: Env) -> Result<bool, String> {
    let place = args.from.clone().unwrap_or_else(|| "local".to_string());
    let ids: Vec<String> = match (&args.id, args.all, &args.from) {
        (Some(id_), _, _) => vec![id_.clone()],
        (None, all, None) => {
            let list = repo::list(&config.dir, &config.name)?;
            let ids: Vec<String> = list.iter().map(|b| b.id.clone()).collect();
            if all {
                ids
            } else {
                ids.last().cloned().into_iter().collect()
            }
        }
        (None, all, Some(from)) => {
            let spec = config
                .targets
                .iter()
                .find(|t| &t.name == from)
                .ok_or_else(|| format!("no target named {from:?}"))?;
            let remote = ship::remote_backups(spec.build(env)?.as_ref(), &config.name)
                .map_err(|e| e.message)?;
            let ids: Vec<String> = remote.keys().cloned().collect();
            if all {
                ids
            } else {
                ids.last().cloned().into_iter().collect()
            }
        }
    };
    if ids.is_empty() {
        return Err(format!("no backups at {place}"));
    }
    let mut ok = true;
    for id_ in ids {
        let result = match &args.from {
            None => archive::check(&config.dir, &id_, config.identity.as_deref(), None),
            Some(from) => fetch(config, env, from, &id_)
                .and_then(|dir| archive::check(&dir.path, &id_, config.identity.as_deref(), None)),
        };
        let mark = match &result {
            Ok(c) => Mark {
                ok: true,
                at: now_rfc3339(),
                contents_checked: c.contents_checked,
                error: None,
            },
            Err(e) => Mark {
                ok: false,
                at: now_rfc3339(),
                contents_checked: false,
                error: Some(e.clone()),
            },
        };
        if let Err(e) = repo::write_mark(&config.state_dir, &place, &id_, mark) {
            eprintln!("cannot record the result: {e}");
        }
        match result {
            Ok(c) if c.contents_checked => {
                let dbs = c.manifest.parts.iter().filter(|p| p.kind == PartKind::Sqlite).count();
                println!(
                    "{id_} at {place}: ok: archive and {} parts match their sha256, {dbs} database(s) pass integrity_check",
                    c.manifest.parts.len()
                );
            }
            Ok(_) => println!(
                "{id_} at {place}: archive matches its sha256; its contents are encrypted and were not read (give --identity to check them)"
            ),
            Err(e) => {
                ok = false;
                println!("{id_} at {place}: FAILED: {e}");
            }
        }
    }
    Ok(ok)
}

/// Processes that have `path` (or its -wal/-shm) open: `(pid, command)`.
fn users_of(path: &Path) -> Vec<(u32, String)> {
    let Ok(canonical) = fs::canonicalize(path) else {
        return Vec::new();
    };
    let names: BTreeSet<PathBuf> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|s| {
            let mut p = canonical.as_os_str().to_os_string();
            p.push(s);
            PathBuf::from(p)
        })
        .collect();
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| names.contains(&l)))
        {
            let comm = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

fn stamp() -> String {
    let id_ = id::format("x", std::time::SystemTime::now());
    id_.trim_start_matches("x-").to_string()
}

pub fn restore(config: &BackupConfig, args: &RestoreArgs, env: Env) -> Result<bool, String> {
    let (fetched, manifest) = located(config, env, args.from.as_deref(), &args.id)?;
    let dir = fetched
        .as_ref()
        .map_or(config.dir.as_path(), |d| d.path.as_path());
    let part = match &args.part {
        Some(name) => manifest.parts.iter().find(|p| &p.name == name),
        None => {
            let dbs: Vec<_> = manifest
                .parts
                .iter()
                .filter(|p| p.kind == PartKind::Sqlite)
                .collect();
            if dbs.len() == 1 {
                Some(dbs[0])
            } else {
                None
            }
        }
    }
    .ok_or_else(|| {
        format!(
            "{}: name the part to restore with --part; the parts are: {}",
            args.id,
            manifest
                .parts
                .iter()
                .map(|p| format!("{} ({:?})", p.name, p.kind))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?
    .clone();
    let to = &args.to;
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(format!(
            "{}: the directory does not exist",
            parent.display()
        ));
    }
    let users = users_of(to);
    if !users.is_empty() {
        return Err(format!(
            "{} is in use by {}: stop it first (systemctl --user stop bsv-p2p), then restore",
            to.display(),
            users
                .iter()
                .map(|(p, c)| format!("{c} (pid {p})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let exists = fs::symlink_metadata(to).is_ok();
    if exists && !args.force {
        return Err(format!(
            "{} exists: pass --force to replace it (the current file is kept beside it)",
            to.display()
        ));
    }
    // Extract and check everything into a directory beside the target.
    let tmp = archive::tempdir_beside(to)?;
    let wanted = |p: &archive::Part| p.name == part.name;
    let checked = archive::check(
        dir,
        &args.id,
        config.identity.as_deref(),
        Some((&tmp.path, &wanted)),
    )?;
    if !checked.contents_checked {
        return Err(format!(
            "{} is encrypted: give the age identity file with --identity (or BSV_P2P_BACKUP_IDENTITY)",
            args.id
        ));
    }
    let mut kept = Vec::new();
    if exists {
        // The database and its WAL keep their pairing: NAME.before-restore-T
        // and NAME.before-restore-T-wal open together as the old database.
        let aside_db = with_suffix(to, &format!(".before-restore-{}", stamp()));
        for s in ["", "-wal", "-shm", "-journal"] {
            let old = with_suffix(to, s);
            if fs::symlink_metadata(&old).is_ok() {
                let aside = with_suffix(&aside_db, s);
                fs::rename(&old, &aside).map_err(|e| format!("{}: {e}", old.display()))?;
                kept.push(aside);
            }
        }
    } else {
        // A WAL left without its database would be applied to the restored one.
        for s in ["-wal", "-shm", "-journal"] {
            let stale = with_suffix(to, s);
            if fs::symlink_metadata(&stale).is_ok() {
                let aside = with_suffix(&stale, &format!(".stale-{}", stamp()));
                fs::rename(&stale, &aside).map_err(|e| format!("{}: {e}", stale.display()))?;
                kept.push(aside);
            }
        }
    }
    fs::rename(tmp.path.join(&part.name), to).map_err(|e| format!("{}: {e}", to.display()))?;
    archive::sync_dir(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let what = match &part.sqlite {
        Some(s) => format!("{} pages, integrity_check ok", s.page_count),
        None => "sha256 ok".to_string(),
    };
    println!(
        "restored {} from {} ({}) to {} ({} bytes, {what})",
        part.name,
        args.id,
        args.from.as_deref().unwrap_or("local"),
        to.display(),
        part.bytes
    );
    for k in kept {
        println!("  the file that was there is kept as {}", k.display());
    }
    Ok(true)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RelayDoc {
    peer_id: String,
    #[serde(default)]
    identity_key: Option<String>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn restore_relay(
    config: &BackupConfig,
    args: &RestoreRelayArgs,
    env: Env,
) -> Result<bool, String> {
    let (fetched, manifest) = located(config, env, args.from.as_deref(), &args.id)?;
    let dir = fetched
        .as_ref()
        .map_or(config.dir.as_path(), |d| d.path.as_path());
    let snapshot = manifest
        .parts
        .iter()
        .find(|p| p.kind == PartKind::RelaySnapshot)
        .ok_or_else(|| {
            format!(
                "{} holds no relay state (it was taken without --relay-socket)",
                args.id
            )
        })?
        .clone();
    let relay_config = manifest
        .parts
        .iter()
        .find(|p| p.kind == PartKind::RelayConfig)
        .cloned();
    repo::ensure_dir(&args.data_dir)?;
    let socket = args.data_dir.join(bsv_p2p_proto::SOCKET_FILE);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(format!(
            "a relay is running on {} (its socket answers): stop it first",
            args.data_dir.display()
        ));
    }
    let identity_path = args.data_dir.join("identity.key");
    let config_to = match (&args.config_to, &relay_config) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(p)) => Some(PathBuf::from(&p.source)),
        (None, None) => None,
    };
    let tmp = archive::tempdir_in(&args.data_dir)?;
    let wanted =
        |p: &archive::Part| matches!(p.kind, PartKind::RelaySnapshot | PartKind::RelayConfig);
    let checked = archive::check(
        dir,
        &args.id,
        config.identity.as_deref(),
        Some((&tmp.path, &wanted)),
    )?;
    if !checked.contents_checked {
        return Err(format!(
            "{} is encrypted: give the age identity file with --identity",
            args.id
        ));
    }
    let doc: RelayDoc = serde_json::from_slice(
        &fs::read(tmp.path.join(&snapshot.name)).map_err(|e| format!("{}: {e}", snapshot.name))?,
    )
    .map_err(|e| format!("the relay snapshot in {}: {e}", args.id))?;
    let key_hex = doc.identity_key.ok_or_else(|| {
        format!(
            "{}: the relay snapshot was taken without its identity key",
            args.id
        )
    })?;
    let key = unhex(&key_hex).ok_or("the relay snapshot's identityKey is not hex")?;
    let keypair = libp2p_identity::Keypair::from_protobuf_encoding(&key)
        .map_err(|e| format!("the relay snapshot's identityKey is not a libp2p key: {e}"))?;
    let peer_id = keypair.public().to_peer_id().to_string();
    if peer_id != doc.peer_id {
        return Err(format!(
            "the relay snapshot's key is the key of {peer_id}, but it says {}: refusing it",
            doc.peer_id
        ));
    }
    // Check everything before changing anything.
    let differs = |path: &Path, bytes: &[u8]| fs::read(path).map_or(true, |b| b != bytes);
    let identity_exists = identity_path.exists();
    if identity_exists && differs(&identity_path, &key) && !args.force {
        return Err(format!(
            "{} holds another identity: pass --force to replace it (kept beside it)",
            identity_path.display()
        ));
    }
    let config_bytes = match &relay_config {
        Some(p) => Some(fs::read(tmp.path.join(&p.name)).map_err(|e| format!("{}: {e}", p.name))?),
        None => None,
    };
    if let (Some(to), Some(bytes)) = (&config_to, &config_bytes) {
        if to.exists() && differs(to, bytes) && !args.force {
            return Err(format!(
                "{} exists and differs: pass --force to replace it (kept beside it)",
                to.display()
            ));
        }
    }
    let suffix = format!(".before-restore-{}", stamp());
    let mut report = Vec::new();
    if identity_exists && !differs(&identity_path, &key) {
        report.push(format!(
            "{} already holds this identity",
            identity_path.display()
        ));
    } else {
        if identity_exists {
            let aside = with_suffix(&identity_path, &suffix);
            fs::rename(&identity_path, &aside)
                .map_err(|e| format!("{}: {e}", identity_path.display()))?;
            report.push(format!(
                "the identity that was there is kept as {}",
                aside.display()
            ));
        }
        archive::write_atomic(&args.data_dir, "identity.key", &key)
            .and_then(|()| archive::sync_dir(&args.data_dir))
            .map_err(|e| format!("{}: {e}", identity_path.display()))?;
        report.push(format!(
            "identity written to {} (mode 0600)",
            identity_path.display()
        ));
    }
    if let (Some(to), Some(bytes)) = (&config_to, &config_bytes) {
        if to.exists() && !differs(to, bytes) {
            report.push(format!("{} already holds this config", to.display()));
        } else {
            let parent = to
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            repo::ensure_dir(parent)?;
            if to.exists() {
                let aside = with_suffix(to, &suffix);
                fs::rename(to, &aside).map_err(|e| format!("{}: {e}", to.display()))?;
                report.push(format!(
                    "the config that was there is kept as {}",
                    aside.display()
                ));
            }
            let name = to
                .file_name()
                .ok_or("--config-to names no file")?
                .to_string_lossy()
                .into_owned();
            archive::write_atomic(parent, &name, bytes)
                .and_then(|()| archive::sync_dir(parent))
                .map_err(|e| format!("{}: {e}", to.display()))?;
            report.push(format!("config written to {}", to.display()));
        }
    }
    println!("relay restored from {}: peer ID {peer_id}", args.id);
    for r in report {
        println!("  {r}");
    }
    let config_arg = config_to
        .map(|c| format!(" --config {}", c.display()))
        .unwrap_or_default();
    println!(
        "  start it: bsv-p2p-relay{config_arg} --data-dir {}",
        args.data_dir.display()
    );
    Ok(true)
}

pub fn keygen(out: &Path) -> Result<bool, String> {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {public}\n{}\n",
        now_rfc3339(),
        identity.to_string().expose_secret()
    );
    let mut f = archive::create_new(out).map_err(|e| format!("{}: {e}", out.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!(
        "wrote the private key to {}; keep it away from the backups",
        out.display()
    );
    println!("{public}");
    Ok(true)
}
