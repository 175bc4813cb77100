//! Where backups are shipped. Every target is a flat place of files with
//! four operations ([`Target`]): put a file, list the files, get one back,
//! delete one. Ordering (archive before manifest), retention and retries
//! are the shipper's, the same for every target; adding a target is one
//! file here plus a [`Kind`] variant.

mod dir;
mod rsync;
mod s3;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why an operation failed, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The target cannot be reached or is overloaded (connection refused,
    /// timeout, 5xx, 429): retried with backoff until it returns.
    Unavailable,
    /// The target refuses us: wrong credentials, a missing bucket or
    /// directory, no permission, an unknown host key. Retrying cannot help;
    /// the target is stopped with this error until the operator fixes it
    /// and restarts the sidecar.
    Refused,
    /// Anything else (a malformed answer, a local file problem): retried
    /// with backoff.
    Failed,
}

#[derive(Debug, Clone)]
pub struct TargetError {
    pub kind: ErrorKind,
    pub message: String,
}

impl TargetError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        TargetError {
            kind: ErrorKind::Unavailable,
            message: message.into(),
        }
    }
    pub fn refused(message: impl Into<String>) -> Self {
        TargetError {
            kind: ErrorKind::Refused,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        TargetError {
            kind: ErrorKind::Failed,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A place backups are shipped to. Blocking calls, run on the shipper's
/// own thread.
pub trait Target: Send + Sync {
    /// Stores the local file under `name`, replacing any file of that name
    /// only once the whole file is there (no reader sees half a file).
    fn put(&self, local: &Path, name: &str) -> Result<(), TargetError>;
    /// Every file: name and size.
    fn list(&self) -> Result<Vec<(String, u64)>, TargetError>;
    /// Fetches `name` into the new file `local`.
    fn get(&self, name: &str, local: &Path) -> Result<(), TargetError>;
    /// Deletes `name`; deleting a file that is not there is not an error.
    fn delete(&self, name: &str) -> Result<(), TargetError>;
}

/// A configured target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// How `list`, the metrics and the queue name it.
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Dir(PathBuf),
    S3(s3::S3Spec),
    Rsync(rsync::RsyncSpec),
}

impl TargetSpec {
    /// The command-line and environment form: `/path`, `dir:/path`,
    /// `s3://BUCKET/PREFIX?endpoint=URL&region=R&path-style=true&credentials=FILE&profile=P`,
    /// `rsync:USER@HOST:/PATH?ssh=COMMAND&timeout=SECS`.
    pub fn parse_url(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let text = text.trim();
        if let Some(path) = text
            .strip_prefix("dir:")
            .or_else(|| text.starts_with('/').then_some(text))
        {
            return Self::dir(None, path);
        }
        if text.starts_with("s3://") {
            let spec = s3::S3Spec::parse_url(text, env)?;
            return Ok(TargetSpec {
                name: spec.default_name(),
                kind: Kind::S3(spec),
            });
        }
        if let Some(rest) = text.strip_prefix("rsync:") {
            let spec = rsync::RsyncSpec::parse_url(rest)?;
            return Ok(TargetSpec {
                name: spec.default_name(),
                kind: Kind::Rsync(spec),
            });
        }
        Err(format!(
            "expected /PATH, dir:/PATH, s3://BUCKET/PREFIX?endpoint=URL or rsync:USER@HOST:/PATH, got {text:?}"
        ))
    }

    /// The config file form: `{"type": "dir"|"s3"|"rsync", "name"?: …, …}`.
    pub fn from_json(
        value: &serde_json::Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "type")]
            kind: String,
        }
        let head: Head = serde_json::from_value(value.clone()).map_err(|_| {
            "expected an object with \"type\": \"dir\", \"s3\" or \"rsync\"".to_string()
        })?;
        let mut fields = value.clone();
        let name = fields
            .as_object_mut()
            .and_then(|o| {
                o.remove("type");
                o.remove("name")
            })
            .map(|n| match n {
                serde_json::Value::String(s) if valid_name(&s) => Ok(s),
                other => Err(format!(
                    "name: expected 1 to 100 printable characters without spaces, got {other}"
                )),
            })
            .transpose()?;
        let mut spec = match head.kind.as_str() {
            "dir" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct D {
                    path: String,
                }
                let d: D = parse_fields(fields)?;
                let path = crate::config::expand(&d.path, env)?;
                Self::dir(None, &path.display().to_string())?
            }
            "s3" => {
                let spec = s3::S3Spec::from_json(fields, env)?;
                TargetSpec {
                    name: spec.default_name(),
                    kind: Kind::S3(spec),
                }
            }
            "rsync" => {
                let spec = rsync::RsyncSpec::from_json(fields)?;
                TargetSpec {
                    name: spec.default_name(),
                    kind: Kind::Rsync(spec),
                }
            }
            other => {
                return Err(format!(
                    "type: expected \"dir\", \"s3\" or \"rsync\", got {other:?}"
                ))
            }
        };
        if let Some(name) = name {
            spec.name = name;
        }
        Ok(spec)
    }

    fn dir(name: Option<String>, path: &str) -> Result<Self, String> {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(format!(
                "a directory target must be an absolute path, got {:?}",
                path.display()
            ));
        }
        Ok(TargetSpec {
            name: name.unwrap_or_else(|| format!("dir:{}", path.display())),
            kind: Kind::Dir(path),
        })
    }

    /// Makes the target: reads the credentials it needs. A target that
    /// cannot be built (no S3 credentials) is a configuration error.
    pub fn build(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Box<dyn Target>, String> {
        match &self.kind {
            Kind::Dir(path) => Ok(Box::new(dir::DirTarget::new(path.clone()))),
            Kind::S3(spec) => Ok(Box::new(
                s3::S3Target::new(spec, env).map_err(|e| format!("{}: {e}", self.name))?,
            )),
            Kind::Rsync(spec) => Ok(Box::new(rsync::RsyncTarget::new(spec.clone()))),
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.chars().all(|c| c.is_ascii_graphic())
}

fn parse_fields<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        if at.is_empty() || at == "." {
            e.into_inner().to_string()
        } else {
            format!("{at}: {}", e.into_inner())
        }
    })
}

/// Query parameters of a target URL, each at most once.
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("{k} is given twice"));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn urls_and_objects_name_the_same_targets() {
        let t = TargetSpec::parse_url("/srv/backups", &no_env).unwrap();
        assert_eq!(
            (t.name.as_str(), &t.kind),
            ("dir:/srv/backups", &Kind::Dir("/srv/backups".into()))
        );
        let t = TargetSpec::parse_url(
            "s3://bucket/bsv-p2p-backups?endpoint=http://127.0.0.1:8333&region=eu-west-1",
            &no_env,
        )
        .unwrap();
        assert_eq!(t.name, "s3:bucket/bsv-p2p-backups");
        let j = TargetSpec::from_json(
            &serde_json::json!({"type":"s3","bucket":"bucket","prefix":"bsv-p2p-backups","endpoint":"http://127.0.0.1:8333","region":"eu-west-1"}),
            &no_env,
        )
        .unwrap();
        assert_eq!(t, j);
        let t = TargetSpec::parse_url("rsync:backup@10.0.0.2:/backups/bsv-p2p", &no_env).unwrap();
        assert_eq!(t.name, "rsync:backup@10.0.0.2:/backups/bsv-p2p");
        let t = TargetSpec::from_json(
            &serde_json::json!({"type":"dir","path":"/x","name":"nas"}),
            &no_env,
        )
        .unwrap();
        assert_eq!(t.name, "nas");
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        for (text, needle) in [
            ("ftp://x", "expected"),
            ("relative/dir", "expected"),
            ("dir:relative", "absolute"),
            ("s3://", "bucket"),
            ("s3://b?region=x", "endpoint"),
            ("s3://b?endpoint=ftp://x", "http"),
            ("s3://b?endpoint=http://x&colour=red", "colour"),
            ("s3://b?endpoint=http://x&endpoint=http://y", "twice"),
            ("rsync:host-without-path", "USER@HOST:/PATH"),
            ("rsync:u@h:/p?timeout=abc", "timeout"),
        ] {
            let e = TargetSpec::parse_url(text, &no_env).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        for (value, needle) in [
            (serde_json::json!({"type":"tape"}), "tape"),
            (serde_json::json!({"path":"/x"}), "type"),
            (
                serde_json::json!({"type":"dir","path":"/x","extra":1}),
                "extra",
            ),
            (
                serde_json::json!({"type":"s3","bucket":"b","endpoint":"http://x","secretKey":"s"}),
                "secretKey",
            ),
            (
                serde_json::json!({"type":"dir","path":"/x","name":"has space"}),
                "name",
            ),
        ] {
            let e = TargetSpec::from_json(&value, &no_env).unwrap_err();
            assert!(e.contains(needle), "{value}: {e}");
        }
    }
}
