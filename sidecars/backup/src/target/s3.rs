//! S3 and S3-compatible storage (AWS, MinIO, SeaweedFS, Ceph, R2, …).
//! Requests are signed with AWS Signature Version 4 as presigned URLs
//! (rusty-s3 does the signing) and sent with surf; bodies stream from and to
//! files, never whole in memory.
//!
//! Credentials come from the target's `credentialsFile` (AWS shared
//! credentials format, `profile` or `$AWS_PROFILE` or `default`), else from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`),
//! else from `$AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`. Never
//! from a flag or the config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_std::task;
use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use serde::Deserialize;
use url::Url;

use super::{parse_fields, query_pairs, Target, TargetError};

/// How long a signed URL is valid: long enough for a slow upload to start.
const SIGNATURE_TTL: Duration = Duration::from_secs(15 * 60);
/// The most of an error answer read (S3's are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 << 10;
/// The most of one listing page read (1,000 keys are about 300 KB).
const MAX_LISTING_PAGE: usize = 16 << 20;

/// A response body, refused when it is longer than `limit`: a target's
/// answer is never taken into memory unbounded.
async fn read_limited(res: &mut surf::Response, limit: usize) -> Result<Vec<u8>, String> {
    use async_std::io::ReadExt;
    let mut out = Vec::new();
    res.take_body()
        .into_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("the answer is longer than {limit} bytes"));
    }
    Ok(out)
}

/// A listing longer than this is refused (a prefix shared with something else).
const MAX_LISTED: usize = 200_000;

#[derive(Debug, Clone, PartialEq)]
pub struct S3Spec {
    pub endpoint: Url,
    pub region: String,
    pub bucket: String,
    /// Empty, or ends with `/`.
    pub prefix: String,
    pub path_style: bool,
    pub credentials_file: Option<PathBuf>,
    pub profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fields {
    endpoint: String,
    #[serde(default)]
    region: Option<String>,
    bucket: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    path_style: Option<bool>,
    #[serde(default)]
    credentials_file: Option<String>,
    #[serde(default)]
    profile: Option<String>,
}

impl S3Spec {
    pub fn default_name(&self) -> String {
        format!("s3:{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_string()
    }

    pub fn parse_url(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let rest = text.strip_prefix("s3://").unwrap_or(text);
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        let mut fields = Fields {
            endpoint: String::new(),
            region: None,
            bucket: bucket.to_string(),
            prefix: Some(prefix.to_string()),
            path_style: None,
            credentials_file: None,
            profile: None,
        };
        for (k, v) in query_pairs(query)? {
            match k.as_str() {
                "endpoint" => fields.endpoint = v,
                "region" => fields.region = Some(v),
                "path-style" => {
                    fields.path_style = Some(match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("path-style: expected true or false, got {v:?}")),
                    })
                }
                "credentials" => fields.credentials_file = Some(v),
                "profile" => fields.profile = Some(v),
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (endpoint, region, path-style, credentials, profile)"
                    ))
                }
            }
        }
        Self::from_fields(fields, env)
    }

    pub fn from_json(
        value: serde_json::Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        Self::from_fields(parse_fields(value)?, env)
    }

    fn from_fields(f: Fields, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        if f.bucket.is_empty()
            || f.bucket.len() > 63
            || !f
                .bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(format!(
                "bucket: expected an S3 bucket name (3 to 63 of a-z, 0-9, '.', '-'), got {:?}",
                f.bucket
            ));
        }
        if f.endpoint.is_empty() {
            return Err("endpoint: required, such as https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:8333".into());
        }
        let endpoint =
            Url::parse(&f.endpoint).map_err(|e| format!("endpoint {:?}: {e}", f.endpoint))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(format!(
                "endpoint: expected an http or https URL, got {:?}",
                f.endpoint
            ));
        }
        let mut prefix = f.prefix.unwrap_or_default().trim_matches('/').to_string();
        if prefix.contains("//") || prefix.len() > 512 {
            return Err(format!("prefix: {prefix:?} is not a usable key prefix"));
        }
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let credentials_file = match f.credentials_file {
            Some(p) => Some(crate::config::expand(&p, env)?),
            None => None,
        };
        Ok(S3Spec {
            endpoint,
            region: f.region.unwrap_or_else(|| "us-east-1".to_string()),
            bucket: f.bucket,
            prefix,
            path_style: f.path_style.unwrap_or(true),
            credentials_file,
            profile: f.profile,
        })
    }
}

pub struct S3Target {
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    client: surf::Client,
}

/// Finds the credentials, in the documented order.
fn credentials(spec: &S3Spec, env: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, String> {
    let profile = spec
        .profile
        .clone()
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_string());
    if let Some(file) = &spec.credentials_file {
        return from_file(file, &profile);
    }
    if let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(match env("AWS_SESSION_TOKEN") {
            Some(token) => Credentials::new_with_token(key, secret, token),
            None => Credentials::new(key, secret),
        });
    }
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")));
    match file {
        Some(file) if file.exists() => from_file(&file, &profile),
        _ => Err("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the target a credentialsFile".into()),
    }
}

/// The `[profile]` section of an AWS shared credentials file.
fn from_file(path: &Path, profile: &str) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut key, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == profile;
            continue;
        }
        if !inside {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "{}:{}: expected key = value",
                path.display(),
                n + 1
            ));
        };
        let v = v.trim().to_string();
        match k.trim() {
            "aws_access_key_id" => key = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    match (key, secret) {
        (Some(k), Some(s)) => Ok(match token {
            Some(t) => Credentials::new_with_token(k, s, t),
            None => Credentials::new(k, s),
        }),
        _ => Err(format!(
            "{}: no aws_access_key_id and aws_secret_access_key in profile [{profile}]",
            path.display()
        )),
    }
}

impl S3Target {
    pub fn new(spec: &S3Spec, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let style = if spec.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            spec.endpoint.clone(),
            style,
            spec.bucket.clone(),
            spec.region.clone(),
        )
        .map_err(|e| format!("bucket: {e}"))?;
        let client: surf::Client = surf::Config::new()
            .set_timeout(None)
            .try_into()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(S3Target {
            bucket,
            credentials: credentials(spec, env)?,
            prefix: spec.prefix.clone(),
            client,
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn where_(&self) -> String {
        format!("s3://{}/{}", self.bucket.name(), self.prefix)
    }

    /// Sends a request with a deadline; a non-2xx answer becomes an error.
    fn send(
        &self,
        req: surf::RequestBuilder,
        what: &str,
        limit: Duration,
    ) -> Result<surf::Response, TargetError> {
        let client = self.client.clone();
        task::block_on(async {
            match async_std::future::timeout(limit, client.send(req)).await {
                Err(_) => Err(TargetError::unavailable(format!(
                    "{}: {what}: no answer within {}",
                    self.where_(),
                    humantime::format_duration(limit)
                ))),
                Ok(Err(e)) => Err(TargetError::unavailable(format!(
                    "{}: {what}: {e}",
                    self.where_()
                ))),
                Ok(Ok(mut res)) if !res.status().is_success() => {
                    let status = res.status() as u16;
                    let body = async_std::future::timeout(
                        Duration::from_secs(10),
                        read_limited(&mut res, MAX_ERROR_BODY),
                    )
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default();
                    Err(classify(
                        status,
                        &body,
                        &format!("{}: {what}", self.where_()),
                    ))
                }
                Ok(Ok(res)) => Ok(res),
            }
        })
    }
}

/// An S3 error answer as an error of the right kind.
pub fn classify(status: u16, body: &[u8], what: &str) -> TargetError {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let tag = |name: &str| -> Option<String> {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    let code = tag("Code").unwrap_or_default();
    let message = tag("Message").unwrap_or_default();
    let detail = match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("HTTP {status}"),
        (false, true) => format!("HTTP {status} {code}"),
        (false, false) => format!("HTTP {status} {code}: {message}"),
    };
    let hint = match code.as_str() {
        "SignatureDoesNotMatch" => " (the secret key is wrong)",
        "InvalidAccessKeyId" => " (the access key is unknown)",
        "NoSuchBucket" => " (create the bucket, or fix the bucket name)",
        "AccessDenied" => " (these credentials may not do this)",
        "AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError" => {
            " (check the region)"
        }
        _ => "",
    };
    let message = format!("{what}: {detail}{hint}");
    match (status, code.as_str()) {
        (429 | 500 | 502 | 503 | 504, _)
        | (_, "SlowDown" | "ServiceUnavailable" | "InternalError") => {
            TargetError::unavailable(message)
        }
        (401 | 403, _)
        | (_, "NoSuchBucket" | "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied")
        | (
            301 | 400,
            "AuthorizationHeaderMalformed"
            | "AuthorizationQueryParametersError"
            | "PermanentRedirect",
        ) => TargetError::refused(message),
        _ => TargetError::failed(message),
    }
}

impl Target for S3Target {
    fn put(&self, local: &Path, name: &str) -> Result<(), TargetError> {
        let len = std::fs::metadata(local)
            .map_err(|e| TargetError::failed(format!("{}: {e}", local.display())))?
            .len();
        let url = self
            .bucket
            .put_object(Some(&self.credentials), &self.key(name))
            .sign(SIGNATURE_TTL);
        let file = task::block_on(async_std::fs::File::open(local))
            .map_err(|e| TargetError::failed(format!("{}: {e}", local.display())))?;
        let body = surf::Body::from_reader(
            async_std::io::BufReader::with_capacity(1 << 20, file),
            Some(len as usize),
        );
        let req = surf::put(url)
            .body(body)
            .header("Content-Type", "application/octet-stream");
        // Two minutes, plus the time the file takes at 256 KiB/s.
        let limit = Duration::from_secs(120 + len / (256 * 1024));
        self.send(req, &format!("cannot upload {name}"), limit)
            .map(|_| ())
    }

    fn list(&self) -> Result<Vec<(String, u64)>, TargetError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            if !self.prefix.is_empty() {
                action.with_prefix(self.prefix.as_str());
            }
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let url = action.sign(SIGNATURE_TTL);
            let mut res = self.send(surf::get(url), "cannot list", Duration::from_secs(60))?;
            let body = task::block_on(async_std::future::timeout(
                Duration::from_secs(60),
                read_limited(&mut res, MAX_LISTING_PAGE),
            ))
            .map_err(|_| {
                TargetError::unavailable(format!("{}: the listing did not arrive", self.where_()))
            })?
            .map_err(|e| {
                TargetError::unavailable(format!("{}: cannot list: {e}", self.where_()))
            })?;
            let parsed = ListObjectsV2::parse_response(&body).map_err(|e| {
                TargetError::failed(format!(
                    "{}: the listing is not S3's XML: {e}",
                    self.where_()
                ))
            })?;
            for item in parsed.contents {
                if let Some(name) = item.key.strip_prefix(&self.prefix) {
                    if !name.is_empty() && !name.contains('/') {
                        out.push((name.to_string(), item.size));
                    }
                }
            }
            if out.len() > MAX_LISTED {
                return Err(TargetError::refused(format!(
                    "{}: more than {MAX_LISTED} objects under the prefix; give the target a prefix of its own",
                    self.where_()
                )));
            }
            match parsed.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    fn get(&self, name: &str, local: &Path) -> Result<(), TargetError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &self.key(name))
            .sign(SIGNATURE_TTL);
        let mut res = self.send(
            surf::get(url),
            &format!("cannot fetch {name}"),
            Duration::from_secs(60),
        )?;
        let out = crate::archive::create_new(local)
            .map_err(|e| TargetError::failed(format!("{}: {e}", local.display())))?;
        let len = res.len().unwrap_or(0) as u64;
        let limit = Duration::from_secs(120 + len / (256 * 1024));
        task::block_on(async {
            let mut out = async_std::fs::File::from(out);
            let body = res.take_body().into_reader();
            match async_std::future::timeout(limit, async_std::io::copy(body, &mut out)).await {
                Err(_) => Err(TargetError::unavailable(format!(
                    "{}: {name} did not arrive in time",
                    self.where_()
                ))),
                Ok(Err(e)) => Err(TargetError::unavailable(format!(
                    "{}: cannot fetch {name}: {e}",
                    self.where_()
                ))),
                Ok(Ok(_)) => out
                    .sync_all()
                    .await
                    .map_err(|e| TargetError::failed(format!("{}: {e}", local.display()))),
            }
        })
    }

    fn delete(&self, name: &str) -> Result<(), TargetError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), &self.key(name))
            .sign(SIGNATURE_TTL);
        match self.send(
            surf::delete(url),
            &format!("cannot delete {name}"),
            Duration::from_secs(60),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.message.contains("NoSuchKey") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::ErrorKind;

    #[test]
    fn s3_errors_are_sorted_into_retry_or_stop() {
        let xml = |code: &str| {
            format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>")
        };
        let e = classify(
            403,
            xml("SignatureDoesNotMatch").as_bytes(),
            "s3://b/: cannot upload x",
        );
        assert_eq!(e.kind, ErrorKind::Refused);
        assert!(
            e.message.contains("SignatureDoesNotMatch")
                && e.message.contains("secret key is wrong"),
            "{}",
            e.message
        );
        assert_eq!(
            classify(404, xml("NoSuchBucket").as_bytes(), "w").kind,
            ErrorKind::Refused
        );
        assert_eq!(
            classify(503, xml("SlowDown").as_bytes(), "w").kind,
            ErrorKind::Unavailable
        );
        assert_eq!(classify(500, b"", "w").kind, ErrorKind::Unavailable);
        assert_eq!(
            classify(404, xml("NoSuchKey").as_bytes(), "w").kind,
            ErrorKind::Failed
        );
        assert_eq!(
            classify(400, xml("AuthorizationHeaderMalformed").as_bytes(), "w").kind,
            ErrorKind::Refused
        );
    }

    #[test]
    fn credentials_come_from_the_file_or_the_environment() {
        let dir = std::env::temp_dir().join(format!("bsv-p2p-backup-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials");
        std::fs::write(&file, "[default]\naws_access_key_id = AK1\naws_secret_access_key = S1\n\n[other]\naws_access_key_id=AK2\naws_secret_access_key=S2\n").unwrap();
        let spec = |profile: Option<&str>, file: Option<&Path>| S3Spec {
            endpoint: Url::parse("http://127.0.0.1:1").unwrap(),
            region: "us-east-1".into(),
            bucket: "b".into(),
            prefix: String::new(),
            path_style: true,
            credentials_file: file.map(Path::to_path_buf),
            profile: profile.map(str::to_string),
        };
        let none = |_: &str| None;
        let c = credentials(&spec(None, Some(&file)), &none).unwrap();
        assert_eq!((c.key(), c.secret()), ("AK1", "S1"));
        let c = credentials(&spec(Some("other"), Some(&file)), &none).unwrap();
        assert_eq!((c.key(), c.secret()), ("AK2", "S2"));
        let e = credentials(&spec(Some("absent"), Some(&file)), &none)
            .err()
            .unwrap();
        assert!(e.contains("[absent]"), "{e}");
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AK3".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("S3".to_string()),
            _ => None,
        };
        let c = credentials(&spec(None, None), &env).unwrap();
        assert_eq!((c.key(), c.secret()), ("AK3", "S3"));
        let e = credentials(&spec(None, None), &|k: &str| {
            (k == "HOME").then(|| "/nonexistent".to_string())
        })
        .err()
        .unwrap();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
