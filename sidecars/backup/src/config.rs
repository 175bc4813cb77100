//! What the sidecar runs with: the command line, then the environment, then
//! the config file, then the defaults, resolved and checked in one place.
//! A bad value is refused before anything runs, with a message naming the
//! flag, variable or config key, what was expected and what was found.
//!
//! Secrets never come from a flag (flags show in `ps`): S3 credentials come
//! from the standard AWS environment variables or a credentials file, the
//! age identity (private key) from a file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use argh::FromArgs;
use log::LevelFilter;
use serde::Deserialize;

use crate::retention::Rules;
use crate::target::TargetSpec;

pub const DEFAULT_NAME: &str = "wallet";
/// The guide's cron: `0 */6 * * *`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// On-change mode waits for this much quiet after a write before it starts
/// a backup, so a burst of writes becomes one backup.
pub const DEFAULT_CHANGE_DELAY: Duration = Duration::from_secs(5);
/// ... but never longer than this after the first write it saw, so a
/// writer that never pauses is still backed up well inside the 60 s RPO.
pub const DEFAULT_CHANGE_MAX_DELAY: Duration = Duration::from_secs(20);
/// The guide's `find -mtime +30 -delete`.
pub const DEFAULT_KEEP_WITHIN: Duration = Duration::from_secs(30 * 86400);
/// Beside the health sidecar (4003) and the log shipper (4005).
pub const DEFAULT_METRICS_BIND: &str = "127.0.0.1:4006";
/// gzip level 1: on a 200 MB wallet, level 6 took 2.7 times the CPU
/// (11.3 s against 4.2 s on the benchmark machine) and 6 s longer, for
/// archives 0.5% smaller; the CPU it takes is CPU the bot does not get.
pub const DEFAULT_COMPRESSION: u32 = 1;

pub const ENV_CONFIG: &str = "BSV_P2P_BACKUP_CONFIG";
pub const ENV_NAME: &str = "BSV_P2P_BACKUP_NAME";
pub const ENV_DIR: &str = "BSV_P2P_BACKUP_DIR";
pub const ENV_STATE_DIR: &str = "BSV_P2P_BACKUP_STATE_DIR";
pub const ENV_DATABASES: &str = "BSV_P2P_BACKUP_DATABASES";
pub const ENV_FILES: &str = "BSV_P2P_BACKUP_FILES";
pub const ENV_RELAY_SOCKET: &str = "BSV_P2P_BACKUP_RELAY_SOCKET";
pub const ENV_INTERVAL: &str = "BSV_P2P_BACKUP_INTERVAL";
pub const ENV_ON_CHANGE: &str = "BSV_P2P_BACKUP_ON_CHANGE";
pub const ENV_CHANGE_DELAY: &str = "BSV_P2P_BACKUP_CHANGE_DELAY";
pub const ENV_KEEP_LAST: &str = "BSV_P2P_BACKUP_KEEP_LAST";
pub const ENV_KEEP_DAILY: &str = "BSV_P2P_BACKUP_KEEP_DAILY";
pub const ENV_KEEP_WEEKLY: &str = "BSV_P2P_BACKUP_KEEP_WEEKLY";
pub const ENV_KEEP_WITHIN: &str = "BSV_P2P_BACKUP_KEEP_WITHIN";
pub const ENV_RECIPIENTS: &str = "BSV_P2P_BACKUP_RECIPIENTS";
pub const ENV_IDENTITY: &str = "BSV_P2P_BACKUP_IDENTITY";
pub const ENV_TARGETS: &str = "BSV_P2P_BACKUP_TARGETS";
pub const ENV_METRICS_BIND: &str = "BSV_P2P_BACKUP_METRICS_BIND";
pub const ENV_COMPRESSION: &str = "BSV_P2P_BACKUP_COMPRESSION";
pub const ENV_LOG_LEVEL: &str = "BSV_P2P_BACKUP_LOG_LEVEL";

/// Backs up the bot's wallet database, its config files and the relay's identity: live SQLite snapshots, verified archives, retention, shipping to a directory, S3 or rsync over ssh, and restore.
///
/// Options go before the command: bsv-p2p-backup --config /etc/bsv-p2p/backup.json run
#[derive(FromArgs)]
pub struct Args {
    /// config file (JSON; default ~/.bsv-p2p/backup.json when it exists; env BSV_P2P_BACKUP_CONFIG)
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// archive name prefix: archives are NAME-YYYYMMDD-HHMMSS (default wallet; env BSV_P2P_BACKUP_NAME)
    #[argh(option)]
    pub name: Option<String>,
    /// the local backup directory (default ~/.bsv-p2p/backups; env BSV_P2P_BACKUP_DIR)
    #[argh(option)]
    pub dir: Option<PathBuf>,
    /// where the upload queue and scratch copies live (default ~/.bsv-p2p/backup-state; env BSV_P2P_BACKUP_STATE_DIR)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
    /// a SQLite database to back up; repeat for more (default ~/.bsv-p2p/wallet.db; env BSV_P2P_BACKUP_DATABASES, paths separated by ':')
    #[argh(option)]
    pub db: Vec<PathBuf>,
    /// a file to back up as it is, such as config.json; repeat for more (default ~/.bsv-p2p/config.json and relay-config.json when they exist; env BSV_P2P_BACKUP_FILES, separated by ':')
    #[argh(option)]
    pub file: Vec<PathBuf>,
    /// the relay's control socket, to back up the relay's identity and state with its `snapshot` (default: not backed up; env BSV_P2P_BACKUP_RELAY_SOCKET)
    #[argh(option)]
    pub relay_socket: Option<PathBuf>,
    /// time between scheduled backups, such as 6h or 30m; 0 turns the schedule off (default 6h; env BSV_P2P_BACKUP_INTERVAL)
    #[argh(option)]
    pub interval: Option<String>,
    /// also back up within seconds of every committed write to a database (env BSV_P2P_BACKUP_ON_CHANGE=1)
    #[argh(switch)]
    pub on_change: bool,
    /// on-change mode: quiet time after a write before the backup starts (default 5s; env BSV_P2P_BACKUP_CHANGE_DELAY)
    #[argh(option)]
    pub change_delay: Option<String>,
    /// retention: keep the newest N backups (env BSV_P2P_BACKUP_KEEP_LAST)
    #[argh(option)]
    pub keep_last: Option<String>,
    /// retention: keep the newest backup of each of the last N days that have one (env BSV_P2P_BACKUP_KEEP_DAILY)
    #[argh(option)]
    pub keep_daily: Option<String>,
    /// retention: keep the newest backup of each of the last N ISO weeks that have one (env BSV_P2P_BACKUP_KEEP_WEEKLY)
    #[argh(option)]
    pub keep_weekly: Option<String>,
    /// retention: keep every backup younger than this, such as 30d (default 30d when no keep rule is given; env BSV_P2P_BACKUP_KEEP_WITHIN)
    #[argh(option)]
    pub keep_within: Option<String>,
    /// encrypt archives to this age public key (age1...); repeat for more (env BSV_P2P_BACKUP_RECIPIENTS, separated by ',')
    #[argh(option)]
    pub recipient: Vec<String>,
    /// the age identity file (private key) that reads encrypted archives, for verify and restore (env BSV_P2P_BACKUP_IDENTITY)
    #[argh(option)]
    pub identity: Option<PathBuf>,
    /// where to ship archives: /path or dir:/path, s3://BUCKET/PREFIX?endpoint=URL&region=R, rsync:USER@HOST:/PATH?ssh=COMMAND; repeat for more (env BSV_P2P_BACKUP_TARGETS, separated by spaces)
    #[argh(option)]
    pub target: Vec<String>,
    /// address for /metrics and /health of `run`, or off (default 127.0.0.1:4006; env BSV_P2P_BACKUP_METRICS_BIND)
    #[argh(option)]
    pub metrics_bind: Option<String>,
    /// gzip level from 1 (fastest) to 9 (smallest) (default 1; env BSV_P2P_BACKUP_COMPRESSION)
    #[argh(option)]
    pub compression: Option<String>,
    /// log level: off, error, warn, info, debug or trace (default info; env BSV_P2P_BACKUP_LOG_LEVEL)
    #[argh(option)]
    pub log_level: Option<String>,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum Command {
    Run(RunArgs),
    Now(NowArgs),
    List(ListArgs),
    Verify(VerifyArgs),
    Restore(RestoreArgs),
    RestoreRelay(RestoreRelayArgs),
    Keygen(KeygenArgs),
}

/// Run the daemon: scheduled and on-change backups, shipping, retention, /metrics.
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
pub struct RunArgs {}

/// Take a backup now and ship it (or leave it to the running daemon).
#[derive(FromArgs)]
#[argh(subcommand, name = "now")]
pub struct NowArgs {
    /// keep the backup local: do not ship it
    #[argh(switch)]
    pub no_ship: bool,
}

/// List the backups, local and at every target, with their verification state.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListArgs {
    /// local backups only: do not ask the targets
    #[argh(switch)]
    pub local: bool,
    /// print JSON instead of a table
    #[argh(switch)]
    pub json: bool,
}

/// Check a backup: sha256 of the archive and every part, the manifest inside against the one beside, and integrity_check of each database.
#[derive(FromArgs)]
#[argh(subcommand, name = "verify")]
pub struct VerifyArgs {
    /// the backup (default: the newest)
    #[argh(positional)]
    pub id: Option<String>,
    /// fetch it from this target (its name as `list` shows it) instead of the local directory
    #[argh(option)]
    pub from: Option<String>,
    /// verify every backup
    #[argh(switch)]
    pub all: bool,
}

/// Restore a database (or a file) from a backup: verified in a temporary file, then renamed into place.
#[derive(FromArgs)]
#[argh(subcommand, name = "restore")]
pub struct RestoreArgs {
    /// the backup
    #[argh(positional)]
    pub id: String,
    /// where to write it
    #[argh(option)]
    pub to: PathBuf,
    /// which part of the backup (default: the only database; see `list --json`)
    #[argh(option)]
    pub part: Option<String>,
    /// fetch it from this target instead of the local directory
    #[argh(option)]
    pub from: Option<String>,
    /// replace an existing file (kept beside it as NAME.before-restore-TIME)
    #[argh(switch)]
    pub force: bool,
}

/// Restore the relay's identity (its peer ID) and config file from a backup.
#[derive(FromArgs)]
#[argh(subcommand, name = "restore-relay")]
pub struct RestoreRelayArgs {
    /// the backup
    #[argh(positional)]
    pub id: String,
    /// the relay's data directory, where identity.key goes
    #[argh(option)]
    pub data_dir: PathBuf,
    /// where the relay's config file goes (default: where it was when backed up)
    #[argh(option)]
    pub config_to: Option<PathBuf>,
    /// fetch it from this target instead of the local directory
    #[argh(option)]
    pub from: Option<String>,
    /// replace an existing identity or config file (kept beside it as NAME.before-restore-TIME)
    #[argh(switch)]
    pub force: bool,
}

/// Create an age key pair for encrypted backups: writes the private key to a new file and prints the public key.
#[derive(FromArgs)]
#[argh(subcommand, name = "keygen")]
pub struct KeygenArgs {
    /// the new identity file (created mode 0600; never overwritten)
    #[argh(option)]
    pub out: PathBuf,
}

/// A file source: a path, and whether a missing file is an error (an
/// operator named it) or is skipped (one of the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    pub path: PathBuf,
    pub required: bool,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub name: String,
    pub dir: PathBuf,
    pub state_dir: PathBuf,
    pub databases: Vec<PathBuf>,
    pub files: Vec<FileSource>,
    pub relay_socket: Option<PathBuf>,
    /// Whether the relay's private key is in its snapshot.
    pub relay_identity: bool,
    /// `None`: no scheduled backups.
    pub interval: Option<Duration>,
    pub on_change: bool,
    pub change_delay: Duration,
    pub change_max_delay: Duration,
    pub retention: Rules,
    pub recipients: Vec<String>,
    pub identity: Option<PathBuf>,
    pub targets: Vec<TargetSpec>,
    pub metrics_bind: Option<SocketAddr>,
    pub compression: u32,
    pub log_level: LevelFilter,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    name: Option<String>,
    dir: Option<String>,
    state_dir: Option<String>,
    databases: Option<Vec<String>>,
    files: Option<Vec<String>>,
    relay: Option<RelayFile>,
    schedule: Option<ScheduleFile>,
    retention: Option<RetentionFile>,
    encryption: Option<EncryptionFile>,
    targets: Option<Vec<serde_json::Value>>,
    metrics: Option<MetricsFile>,
    compression: Option<u32>,
    log_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RelayFile {
    socket: Option<String>,
    identity: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScheduleFile {
    interval: Option<String>,
    on_change: Option<bool>,
    change_delay: Option<String>,
    change_max_delay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetentionFile {
    keep_last: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_within: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EncryptionFile {
    recipients: Option<Vec<String>>,
    identity_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetricsFile {
    bind: Option<String>,
}

/// `~/x` with `$HOME`; anything else as written.
pub fn expand(path: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    if path == "~" || path.starts_with("~/") {
        let home = env("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{path:?} starts with ~ and $HOME is not set"))?;
        Ok(PathBuf::from(home).join(path.trim_start_matches('~').trim_start_matches('/')))
    } else {
        Ok(PathBuf::from(path))
    }
}

fn home_dir(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".bsv-p2p"))
        .ok_or_else(|| {
            "$HOME is not set: give the paths (--dir, --state-dir, --db) or set HOME".to_string()
        })
}

/// "6h", "30m", "90s", "2d", "1h30m" (`cli::parse_duration`); a bare number
/// is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => bsv_p2p_proto::cli::parse_duration(text),
    }
}

fn parse_level(text: &str) -> Option<LevelFilter> {
    match text.trim().to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

impl BackupConfig {
    /// Flags first, then `env` (a lookup, so tests need not touch the
    /// process environment), then the config file, then defaults.
    pub fn resolve(args: &Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        // The config file: named (must exist) or the default (if it exists).
        let (file, file_name) = match (&args.config, env(ENV_CONFIG)) {
            (Some(p), _) => (Some(read_file(p)?), p.display().to_string()),
            (None, Some(p)) => {
                let p = PathBuf::from(p);
                (Some(read_file(&p)?), p.display().to_string())
            }
            (None, None) => match home_dir(&env) {
                Ok(home) if home.join("backup.json").is_file() => {
                    let p = home.join("backup.json");
                    (Some(read_file(&p)?), p.display().to_string())
                }
                _ => (None, String::new()),
            },
        };
        let file = file.unwrap_or_default();
        let key = |k: &str| format!("{file_name}: {k}");

        // A string value from flag, env or file, with its source for messages.
        let pick = |flag: &Option<String>,
                    flag_name: &str,
                    var: &str,
                    from_file: Option<String>,
                    file_key: &str|
         -> Option<(String, String)> {
            if let Some(v) = flag {
                return Some((v.clone(), flag_name.to_string()));
            }
            if let Some(v) = env(var) {
                return Some((v, var.to_string()));
            }
            from_file.map(|v| (v, key(file_key)))
        };

        let name = match pick(&args.name, "--name", ENV_NAME, file.name.clone(), "name") {
            Some((v, src)) => {
                let ok = !v.is_empty()
                    && v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
                    && !v.starts_with('.');
                if !ok {
                    return Err(format!(
                        "{src}: expected a name of 1 to 64 letters, digits, '.', '_' or '-' (not starting with '.'), got {v:?}"
                    ));
                }
                v
            }
            None => DEFAULT_NAME.to_string(),
        };

        let path_of = |flag: &Option<PathBuf>,
                       var: &str,
                       from_file: &Option<String>,
                       default: &str|
         -> Result<PathBuf, String> {
            if let Some(p) = flag {
                return Ok(p.clone());
            }
            if let Some(p) = env(var) {
                return expand(&p, &env).map_err(|e| format!("{var}: {e}"));
            }
            if let Some(p) = from_file {
                return expand(p, &env).map_err(|e| format!("{}: {e}", key(default)));
            }
            Ok(home_dir(&env)?.join(default))
        };
        let dir = path_of(&args.dir, ENV_DIR, &file.dir, "backups")?;
        let state_dir = path_of(
            &args.state_dir,
            ENV_STATE_DIR,
            &file.state_dir,
            "backup-state",
        )?;
        if dir == state_dir {
            return Err(format!(
                "the backup directory and the state directory are the same ({}); give them different paths",
                dir.display()
            ));
        }

        let list_of = |flag: &Vec<PathBuf>,
                       var: &str,
                       from_file: &Option<Vec<String>>,
                       file_key: &str|
         -> Result<Option<Vec<PathBuf>>, String> {
            if !flag.is_empty() {
                return Ok(Some(flag.clone()));
            }
            if let Some(v) = env(var) {
                return v
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(|p| expand(p, &env).map_err(|e| format!("{var}: {e}")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some);
            }
            if let Some(list) = from_file {
                return list
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        expand(p, &env)
                            .map_err(|e| format!("{}: {e}", key(&format!("{file_key}[{i}]"))))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some);
            }
            Ok(None)
        };
        let databases = match list_of(&args.db, ENV_DATABASES, &file.databases, "databases")? {
            Some(list) => list,
            None => vec![home_dir(&env)?.join("wallet.db")],
        };
        let files = match list_of(&args.file, ENV_FILES, &file.files, "files")? {
            Some(list) => list
                .into_iter()
                .map(|path| FileSource {
                    path,
                    required: true,
                })
                .collect(),
            None => match home_dir(&env) {
                Ok(home) => ["config.json", "relay-config.json"]
                    .iter()
                    .map(|f| FileSource {
                        path: home.join(f),
                        required: false,
                    })
                    .collect(),
                Err(_) => Vec::new(),
            },
        };
        let mut seen = BTreeSet::new();
        for p in databases.iter().chain(files.iter().map(|f| &f.path)) {
            if !seen.insert(p.clone()) {
                return Err(format!("{} is named twice among the sources", p.display()));
            }
        }
        let relay = file.relay.unwrap_or_default();
        let relay_socket = match (&args.relay_socket, env(ENV_RELAY_SOCKET), &relay.socket) {
            (Some(p), _, _) => Some(p.clone()),
            (None, Some(p), _) => Some(PathBuf::from(p)),
            (None, None, Some(p)) => {
                Some(expand(p, &env).map_err(|e| format!("{}: {e}", key("relay.socket")))?)
            }
            _ => None,
        };
        if databases.is_empty() && files.is_empty() && relay_socket.is_none() {
            return Err(
                "nothing to back up: give at least one --db, --file or --relay-socket (or their variables or config keys)".into(),
            );
        }

        let schedule = file.schedule.unwrap_or_default();
        let duration_of = |value: Option<(String, String)>,
                           default: Option<Duration>,
                           min: Duration,
                           max: Duration|
         -> Result<Option<Duration>, String> {
            match value {
                None => Ok(default),
                Some((text, src)) => {
                    let d = parse_duration(&text).map_err(|e| {
                        format!(
                            "{src}: expected a duration such as 6h, 30m or 90s, got {text:?} ({e})"
                        )
                    })?;
                    if d.is_zero() {
                        return Ok(None);
                    }
                    if d < min || d > max {
                        return Err(format!(
                            "{src}: expected a duration from {} to {}, got {text:?}",
                            humantime::format_duration(min),
                            humantime::format_duration(max)
                        ));
                    }
                    Ok(Some(d))
                }
            }
        };
        let interval = duration_of(
            pick(
                &args.interval,
                "--interval",
                ENV_INTERVAL,
                schedule.interval.clone(),
                "schedule.interval",
            ),
            Some(DEFAULT_INTERVAL),
            Duration::from_secs(10),
            Duration::from_secs(366 * 86400),
        )?;
        let on_change = if args.on_change {
            true
        } else if let Some(v) = env(ENV_ON_CHANGE) {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(format!(
                        "{ENV_ON_CHANGE}: expected 1 or 0 (true/false), got {v:?}"
                    ))
                }
            }
        } else {
            schedule.on_change.unwrap_or(false)
        };
        let change_delay = duration_of(
            pick(
                &args.change_delay,
                "--change-delay",
                ENV_CHANGE_DELAY,
                schedule.change_delay.clone(),
                "schedule.changeDelay",
            ),
            Some(DEFAULT_CHANGE_DELAY),
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )?
        .unwrap_or(Duration::from_millis(100));
        let change_max_delay = duration_of(
            schedule
                .change_max_delay
                .clone()
                .map(|v| (v, key("schedule.changeMaxDelay"))),
            Some(DEFAULT_CHANGE_MAX_DELAY),
            Duration::from_millis(100),
            Duration::from_secs(86400),
        )?
        .unwrap_or(DEFAULT_CHANGE_MAX_DELAY)
        .max(change_delay);
        if interval.is_none() && !on_change && matches!(args.command, Some(Command::Run(_))) {
            return Err("the schedule is off (interval 0) and on-change mode is off: `run` would never back up; set --interval or --on-change".into());
        }

        let retention_file = file.retention.unwrap_or_default();
        let count = |flag: &Option<String>,
                     var: &str,
                     from_file: Option<u32>,
                     file_key: &str|
         -> Result<Option<u32>, String> {
            match pick(
                flag,
                &format!("--{}", file_key_to_flag(file_key)),
                var,
                from_file.map(|n| n.to_string()),
                &format!("retention.{file_key}"),
            ) {
                None => Ok(None),
                Some((text, src)) => match text.trim().parse::<u32>() {
                    Ok(n) if n <= 100_000 => Ok(Some(n)),
                    _ => Err(format!(
                        "{src}: expected a count from 0 to 100000, got {text:?}"
                    )),
                },
            }
        };
        let keep_last = count(
            &args.keep_last,
            ENV_KEEP_LAST,
            retention_file.keep_last,
            "keepLast",
        )?;
        let keep_daily = count(
            &args.keep_daily,
            ENV_KEEP_DAILY,
            retention_file.keep_daily,
            "keepDaily",
        )?;
        let keep_weekly = count(
            &args.keep_weekly,
            ENV_KEEP_WEEKLY,
            retention_file.keep_weekly,
            "keepWeekly",
        )?;
        let keep_within = match pick(
            &args.keep_within,
            "--keep-within",
            ENV_KEEP_WITHIN,
            retention_file.keep_within.clone(),
            "retention.keepWithin",
        ) {
            None => None,
            Some((text, src)) => Some(parse_duration(&text).map_err(|e| {
                format!("{src}: expected a duration such as 30d or 12h, got {text:?} ({e})")
            })?),
        };
        let retention = if keep_last.is_none()
            && keep_daily.is_none()
            && keep_weekly.is_none()
            && keep_within.is_none()
        {
            Rules {
                keep_within: Some(DEFAULT_KEEP_WITHIN),
                ..Rules::default()
            }
        } else {
            Rules {
                keep_last,
                keep_daily,
                keep_weekly,
                keep_within,
            }
        };

        let encryption = file.encryption.unwrap_or_default();
        let recipients: Vec<String> = if !args.recipient.is_empty() {
            args.recipient.clone()
        } else if let Some(v) = env(ENV_RECIPIENTS) {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        } else {
            encryption.recipients.clone().unwrap_or_default()
        };
        for r in &recipients {
            r.parse::<age::x25519::Recipient>().map_err(|e| {
                format!("encryption recipient {r:?}: not an age X25519 public key (age1...): {e}")
            })?;
        }
        let identity = match (&args.identity, env(ENV_IDENTITY), &encryption.identity_file) {
            (Some(p), _, _) => Some(p.clone()),
            (None, Some(p), _) => Some(PathBuf::from(p)),
            (None, None, Some(p)) => Some(
                expand(p, &env).map_err(|e| format!("{}: {e}", key("encryption.identityFile")))?,
            ),
            _ => None,
        };

        // The file's targets are checked even when flags or the
        // environment replace them: a mistake in the file is found now,
        // not on the day the file is used alone.
        let mut from_file = Vec::new();
        for (i, t) in file.targets.iter().flatten().enumerate() {
            from_file.push(
                TargetSpec::from_json(t, &env)
                    .map_err(|e| format!("{}: {e}", key(&format!("targets[{i}]"))))?,
            );
        }
        let mut targets = Vec::new();
        if !args.target.is_empty() {
            for (i, t) in args.target.iter().enumerate() {
                targets.push(
                    TargetSpec::parse_url(t, &env)
                        .map_err(|e| format!("--target #{}: {e}", i + 1))?,
                );
            }
        } else if let Some(v) = env(ENV_TARGETS) {
            for t in v.split_whitespace() {
                targets.push(
                    TargetSpec::parse_url(t, &env)
                        .map_err(|e| format!("{ENV_TARGETS}: {t:?}: {e}"))?,
                );
            }
        } else {
            targets = from_file;
        }
        let mut names = BTreeSet::new();
        for t in &targets {
            if !names.insert(t.name.clone()) {
                return Err(format!(
                    "two targets are named {:?}; give one a \"name\"",
                    t.name
                ));
            }
        }

        let metrics_bind = match pick(
            &args.metrics_bind,
            "--metrics-bind",
            ENV_METRICS_BIND,
            file.metrics.and_then(|m| m.bind),
            "metrics.bind",
        ) {
            Some((v, _)) if v.trim().eq_ignore_ascii_case("off") => None,
            Some((v, src)) => Some(v.trim().parse().map_err(|_| {
                format!("{src}: expected an IP address and port like {DEFAULT_METRICS_BIND}, or off, got {v:?}")
            })?),
            None => Some(DEFAULT_METRICS_BIND.parse().expect("the default parses")),
        };
        let compression = match pick(
            &args.compression,
            "--compression",
            ENV_COMPRESSION,
            file.compression.map(|n| n.to_string()),
            "compression",
        ) {
            None => DEFAULT_COMPRESSION,
            Some((text, src)) => match text.trim().parse::<u32>() {
                Ok(n) if (1..=9).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "{src}: expected a gzip level from 1 to 9, got {text:?}"
                    ))
                }
            },
        };
        let log_level = match pick(
            &args.log_level,
            "--log-level",
            ENV_LOG_LEVEL,
            file.log_level.clone(),
            "logLevel",
        ) {
            None => LevelFilter::Info,
            Some((text, src)) => parse_level(&text).ok_or_else(|| {
                format!("{src}: expected off, error, warn, info, debug or trace, got {text:?}")
            })?,
        };

        Ok(BackupConfig {
            name,
            dir,
            state_dir,
            databases,
            files,
            relay_socket,
            relay_identity: relay.identity.unwrap_or(true),
            interval,
            on_change,
            change_delay,
            change_max_delay,
            retention,
            recipients,
            identity,
            targets,
            metrics_bind,
            compression,
            log_level,
        })
    }
}

fn file_key_to_flag(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads and parses the config file, naming the file and the key at fault.
fn read_file(path: &Path) -> Result<File, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{}: cannot read the config file: {e}", path.display()))?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err(format!(
            "{}: not a regular file of at most 1 MiB",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the config file: {e}", path.display()))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        if at.is_empty() || at == "." {
            format!("{}: {inner}", path.display())
        } else {
            format!("{}: {at}: {inner}", path.display())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn args(list: &[&str]) -> Args {
        Args::from_args(&["bsv-p2p-backup"], list).unwrap_or_else(|e| panic!("{}", e.output))
    }

    fn resolve(list: &[&str], vars: &[(&str, &str)]) -> Result<BackupConfig, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BackupConfig::resolve(&args(list), &move |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_guide() {
        let c = resolve(&["now"], &[("HOME", "/home/bot")]).unwrap();
        assert_eq!(c.name, "wallet");
        assert_eq!(c.dir, PathBuf::from("/home/bot/.bsv-p2p/backups"));
        assert_eq!(
            c.databases,
            vec![PathBuf::from("/home/bot/.bsv-p2p/wallet.db")]
        );
        assert_eq!(c.files.len(), 2);
        assert!(c.files.iter().all(|f| !f.required));
        assert_eq!(c.interval, Some(DEFAULT_INTERVAL));
        assert_eq!(c.retention.keep_within, Some(DEFAULT_KEEP_WITHIN));
        assert_eq!(c.metrics_bind, Some(DEFAULT_METRICS_BIND.parse().unwrap()));
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let dir =
            std::env::temp_dir().join(format!("bsv-p2p-backup-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("backup.json");
        std::fs::write(
            &file,
            r#"{"name":"fromfile","schedule":{"interval":"1h"},"retention":{"keepLast":3}}"#,
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = resolve(&["--config", f, "now"], &[("HOME", "/h")]).unwrap();
        assert_eq!(
            (c.name.as_str(), c.interval),
            ("fromfile", Some(Duration::from_secs(3600)))
        );
        assert_eq!(
            (c.retention.keep_last, c.retention.keep_within),
            (Some(3), None)
        );
        let c = resolve(
            &["--config", f, "now"],
            &[("HOME", "/h"), (ENV_NAME, "fromenv"), (ENV_INTERVAL, "2h")],
        )
        .unwrap();
        assert_eq!(
            (c.name.as_str(), c.interval),
            ("fromenv", Some(Duration::from_secs(7200)))
        );
        let c = resolve(
            &[
                "--config",
                f,
                "--name",
                "fromflag",
                "--interval",
                "0",
                "now",
            ],
            &[("HOME", "/h"), (ENV_NAME, "fromenv")],
        )
        .unwrap();
        assert_eq!((c.name.as_str(), c.interval), ("fromflag", None));
        std::fs::write(&file, r#"{"schedule":{"interval":"soon"}}"#).unwrap();
        let e = resolve(&["--config", f, "now"], &[("HOME", "/h")]).unwrap_err();
        assert!(e.contains("schedule.interval") && e.contains("soon"), "{e}");
        std::fs::write(&file, r#"{"retention":{"keepLast":"three"}}"#).unwrap();
        let e = resolve(&["--config", f, "now"], &[("HOME", "/h")]).unwrap_err();
        assert!(e.contains("retention.keepLast"), "{e}");
        std::fs::write(&file, r#"{"colour":"blue"}"#).unwrap();
        let e = resolve(&["--config", f, "now"], &[("HOME", "/h")]).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_relay_alone_is_something_to_back_up_wherever_its_socket_is_named() {
        let dir = std::env::temp_dir().join(format!("bsv-p2p-backup-relay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("backup.json");
        let f = file.to_str().unwrap();
        std::fs::write(&file, r#"{"databases":[],"files":[]}"#).unwrap();
        let e = resolve(&["--config", f, "now"], &[("HOME", "/h")]).unwrap_err();
        assert!(e.contains("nothing to back up"), "{e}");
        let c = resolve(
            &["--config", f, "now"],
            &[("HOME", "/h"), (ENV_RELAY_SOCKET, "/run/r.sock")],
        )
        .unwrap();
        assert_eq!(c.relay_socket, Some(PathBuf::from("/run/r.sock")));
        std::fs::write(
            &file,
            r#"{"databases":[],"files":[],"relay":{"socket":"/run/bsv-p2p/relay.sock"}}"#,
        )
        .unwrap();
        let c = resolve(&["--config", f, "now"], &[("HOME", "/h")]).unwrap();
        assert_eq!(
            c.relay_socket,
            Some(PathBuf::from("/run/bsv-p2p/relay.sock"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_name_their_source() {
        let home = [("HOME", "/h")];
        let e = resolve(&["--name", "../x", "now"], &home).unwrap_err();
        assert!(e.starts_with("--name:"), "{e}");
        let e = resolve(&["now"], &[("HOME", "/h"), (ENV_KEEP_LAST, "-1")]).unwrap_err();
        assert!(e.starts_with(ENV_KEEP_LAST), "{e}");
        let e = resolve(&["--interval", "5s", "now"], &home).unwrap_err();
        assert!(e.starts_with("--interval:"), "{e}");
        let e = resolve(&["--recipient", "age1nope", "now"], &home).unwrap_err();
        assert!(e.contains("age1nope"), "{e}");
        let e = resolve(&["--metrics-bind", "localhost", "now"], &home).unwrap_err();
        assert!(e.starts_with("--metrics-bind:"), "{e}");
        let e = resolve(&["--compression", "0", "now"], &home).unwrap_err();
        assert!(e.starts_with("--compression:"), "{e}");
        let e = resolve(&["--interval", "0", "run"], &home).unwrap_err();
        assert!(e.contains("never back up"), "{e}");
        let e = resolve(&["--dir", "/x", "--state-dir", "/x", "now"], &home).unwrap_err();
        assert!(e.contains("the same"), "{e}");
        let e = resolve(&["now"], &[]).unwrap_err();
        assert!(e.contains("HOME"), "{e}");
    }
}
