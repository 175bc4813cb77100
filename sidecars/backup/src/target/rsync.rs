//! A directory on another host, through the system `rsync` over ssh, as the
//! guide ships its backups (`rsync -avz ~/.bsv-p2p/backups/
//! backup-server:/backups/bsv-p2p/`). rsync writes each file under a
//! temporary name and renames it when complete, so the remote side never
//! holds half a file under a backup's name. The ssh command is the
//! operator's (`ssh -p 2222 -i /etc/bsv-p2p/backup_key`), run without a
//! terminal (`BatchMode`), so a missing key or an unknown host key fails at
//! once instead of waiting for a password nobody types.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{parse_fields, query_pairs, Target, TargetError};

const DEFAULT_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq)]
pub struct RsyncSpec {
    /// `USER@HOST:/PATH` (or `HOST:/PATH`), without a trailing slash.
    pub destination: String,
    /// The ssh command and its options, split on spaces.
    pub ssh: Vec<String>,
    /// rsync's `--timeout`: seconds without progress before it gives up.
    pub timeout_secs: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fields {
    destination: String,
    #[serde(default)]
    ssh: Option<String>,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

impl RsyncSpec {
    pub fn default_name(&self) -> String {
        format!("rsync:{}", self.destination)
    }

    pub fn parse_url(text: &str) -> Result<Self, String> {
        let (destination, query) = text.split_once('?').unwrap_or((text, ""));
        let mut fields = Fields {
            destination: destination.to_string(),
            ssh: None,
            timeout_secs: None,
        };
        for (k, v) in query_pairs(query)? {
            match k.as_str() {
                "ssh" => fields.ssh = Some(v),
                "timeout" => {
                    fields.timeout_secs = Some(
                        v.parse()
                            .map_err(|_| format!("timeout: expected seconds, got {v:?}"))?,
                    )
                }
                other => return Err(format!("unknown parameter {other:?} (ssh, timeout)")),
            }
        }
        Self::from_fields(fields)
    }

    pub fn from_json(value: serde_json::Value) -> Result<Self, String> {
        Self::from_fields(parse_fields(value)?)
    }

    fn from_fields(f: Fields) -> Result<Self, String> {
        let valid = f.destination.split_once(':').is_some_and(|(host, path)| {
            !host.is_empty()
                && !host.contains('/')
                && !host.starts_with('-')
                && path.starts_with('/')
        });
        if !valid
            || f.destination
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "destination: expected USER@HOST:/PATH (an absolute path, no spaces), got {:?}",
                f.destination
            ));
        }
        let ssh: Vec<String> = f
            .ssh
            .as_deref()
            .unwrap_or("ssh")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if ssh.is_empty() {
            return Err("ssh: an empty command".into());
        }
        let timeout_secs = f.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if !(1..=3600).contains(&timeout_secs) {
            return Err(format!(
                "timeout: expected 1 to 3600 seconds, got {timeout_secs}"
            ));
        }
        let destination = match f.destination.trim_end_matches('/') {
            d if d.ends_with(':') => format!("{d}/"),
            d => d.to_string(),
        };
        Ok(RsyncSpec {
            destination,
            ssh,
            timeout_secs,
        })
    }
}

pub struct RsyncTarget {
    spec: RsyncSpec,
}

impl RsyncTarget {
    pub fn new(spec: RsyncSpec) -> Self {
        RsyncTarget { spec }
    }

    fn remote(&self, name: &str) -> String {
        format!("{}/{name}", self.spec.destination.trim_end_matches('/'))
    }

    /// The ssh command for rsync's `-e`, with BatchMode and a connect
    /// timeout added unless the operator set them.
    fn rsh(&self) -> String {
        let mut parts = self.spec.ssh.clone();
        let has = |opt: &str| {
            parts
                .iter()
                .any(|p| p.to_ascii_lowercase().contains(&opt.to_ascii_lowercase()))
        };
        let mut extra = Vec::new();
        if !has("BatchMode") {
            extra.push("-oBatchMode=yes".to_string());
        }
        if !has("ConnectTimeout") {
            extra.push(format!(
                "-oConnectTimeout={}",
                self.spec.timeout_secs.min(30)
            ));
        }
        parts.splice(1..1, extra);
        parts.join(" ")
    }

    /// Runs rsync with `args`, and a deadline of `limit`.
    fn rsync(&self, args: &[&str], what: &str, limit: Duration) -> Result<String, TargetError> {
        let mut cmd = Command::new("rsync");
        cmd.arg(format!("--timeout={}", self.spec.timeout_secs))
            .arg("-e")
            .arg(self.rsh())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TargetError::refused(format!(
                    "{}: rsync is not installed (apt-get install rsync)",
                    self.spec.destination
                ))
            } else {
                TargetError::failed(format!("{}: cannot run rsync: {e}", self.spec.destination))
            }
        })?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = (&mut stdout).take(64 << 20).read_to_end(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = (&mut stderr).take(1 << 20).read_to_end(&mut s);
            s
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    let _ = child.kill();
                    return Err(TargetError::failed(format!(
                        "{}: rsync: {e}",
                        self.spec.destination
                    )));
                }
            }
        };
        let out = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
        let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default())
            .trim()
            .to_string();
        let what = format!("{}: {what}", self.spec.destination);
        match status {
            None => Err(TargetError::unavailable(format!(
                "{what}: rsync did not finish within {}",
                humantime::format_duration(limit)
            ))),
            Some(s) if s.success() => Ok(out),
            Some(s) => Err(classify(s.code(), &err, &what)),
        }
    }
}

/// rsync's exit code and messages as an error of the right kind.
pub fn classify(code: Option<i32>, stderr: &str, what: &str) -> TargetError {
    let last = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .collect::<Vec<_>>()
        .join("; ");
    let message = format!(
        "{what}: rsync exit {}: {last}",
        code.map_or("by signal".to_string(), |c| c.to_string())
    );
    let says = |s: &str| stderr.contains(s);
    if says("Permission denied (")
        || says("Host key verification failed")
        || says("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || says("Could not resolve hostname")
        || says("No such file or directory")
        || says("Permission denied")
        || says("Read-only file system")
        || says("command not found")
    {
        return TargetError::refused(message);
    }
    match code {
        // ssh could not connect, the stream broke, I/O timeout.
        Some(255 | 12 | 10 | 30 | 35) | None => TargetError::unavailable(message),
        _ => TargetError::failed(message),
    }
}

impl Target for RsyncTarget {
    fn put(&self, local: &Path, name: &str) -> Result<(), TargetError> {
        let len = std::fs::metadata(local).map(|m| m.len()).unwrap_or(0);
        let local = local
            .to_str()
            .ok_or_else(|| TargetError::failed("a path that is not UTF-8"))?;
        let remote = self.remote(name);
        let limit = Duration::from_secs(120 + len / (256 * 1024));
        self.rsync(
            &["--chmod=F600", "--", local, &remote],
            &format!("cannot upload {name}"),
            limit,
        )
        .map(|_| ())
    }

    fn list(&self) -> Result<Vec<(String, u64)>, TargetError> {
        let dir = format!("{}/", self.spec.destination.trim_end_matches('/'));
        let out = self.rsync(
            &["--list-only", "--", &dir],
            "cannot list",
            Duration::from_secs(120),
        )?;
        Ok(parse_listing(&out))
    }

    fn get(&self, name: &str, local: &Path) -> Result<(), TargetError> {
        if local.exists() {
            return Err(TargetError::failed(format!("{}: exists", local.display())));
        }
        let dest = local
            .to_str()
            .ok_or_else(|| TargetError::failed("a path that is not UTF-8"))?;
        self.rsync(
            &["--", &self.remote(name), dest],
            &format!("cannot fetch {name}"),
            Duration::from_secs(3600),
        )?;
        std::fs::File::open(local)
            .and_then(|f| f.sync_all())
            .map_err(|e| TargetError::failed(format!("{}: {e}", local.display())))
    }

    fn delete(&self, name: &str) -> Result<(), TargetError> {
        // rsync deletes through --delete: an empty directory synced over
        // the target with only this one name included.
        let empty =
            crate::archive::tempdir_in(&std::env::temp_dir()).map_err(TargetError::failed)?;
        let src = format!("{}/", empty.path.display());
        let dir = format!("{}/", self.spec.destination.trim_end_matches('/'));
        let include = format!("--include=/{name}");
        self.rsync(
            &["-r", "--delete", &include, "--exclude=*", "--", &src, &dir],
            &format!("cannot delete {name}"),
            Duration::from_secs(120),
        )
        .map(|_| ())
    }
}

/// `--list-only` lines: `-rw------- 1,234,567 2026/11/30 01:02:03 NAME`.
fn parse_listing(out: &str) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    for line in out.lines() {
        let mut fields = line.splitn(5, ' ').filter(|f| !f.is_empty());
        let _ = (|| {
            let mode = fields.next()?;
            let rest = line[mode.len()..].trim_start();
            let (size, rest) = rest.split_once(' ')?;
            let rest = rest.trim_start();
            let (_date, rest) = rest.split_once(' ')?;
            let (_time, name) = rest.split_once(' ')?;
            if !mode.starts_with('-') || name.starts_with('.') || name.contains('/') {
                return None;
            }
            let size: u64 = size.replace([',', '.'], "").parse().ok()?;
            files.push((name.to_string(), size));
            Some(())
        })();
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::ErrorKind;

    #[test]
    fn listings_are_read_with_their_sizes() {
        let out = "drwx------          4,096 2026/11/30 01:02:03 .\n-rw-------      1,234,567 2026/11/30 01:02:03 wallet-20261130-010203.tar.gz\n-rw-------            912 2026/11/30 01:02:04 wallet-20261130-010203.manifest.json\n-rw-------            912 2026/11/30 01:02:04 .wallet-x.tmp\n";
        assert_eq!(
            parse_listing(out),
            vec![
                ("wallet-20261130-010203.tar.gz".to_string(), 1_234_567),
                ("wallet-20261130-010203.manifest.json".to_string(), 912)
            ]
        );
    }

    #[test]
    fn outages_are_retried_and_refusals_are_not() {
        let e = classify(Some(255), "ssh: connect to host 127.0.0.1 port 2222: Connection refused\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]", "w");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        let e = classify(Some(255), "backup@127.0.0.1: Permission denied (publickey).\nrsync: connection unexpectedly closed", "w");
        assert_eq!(e.kind, ErrorKind::Refused);
        let e = classify(Some(255), "Host key verification failed.", "w");
        assert_eq!(e.kind, ErrorKind::Refused);
        let e = classify(
            Some(3),
            "rsync: [Receiver] change_dir#3 \"/nope\" failed: No such file or directory (2)",
            "w",
        );
        assert_eq!(e.kind, ErrorKind::Refused);
        assert_eq!(
            classify(Some(30), "timeout", "w").kind,
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn the_ssh_command_runs_without_a_terminal() {
        let spec = RsyncSpec::parse_url("u@h:/b?ssh=ssh -p 2222 -i /k").unwrap();
        let t = RsyncTarget::new(spec);
        assert_eq!(
            t.rsh(),
            "ssh -oBatchMode=yes -oConnectTimeout=30 -p 2222 -i /k"
        );
        assert_eq!(t.remote("x"), "u@h:/b/x");
    }
}
