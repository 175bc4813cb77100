//! The real `bsv-p2p-health` binary as a test fixture: started on a free
//! loopback port against a relay's control socket, its log kept in a
//! scratch directory, killed when dropped; and the small HTTP/1.1 client
//! the tests ask it (and Prometheus) with.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::relay::release_bin;
use crate::scratch::ScratchDir;

/// The tests' `--max-age`: readings at most this old, so that changes show soon.
const TEST_MAX_AGE_MS: u64 = 100;

/// How long a started sidecar gets to answer `/livez`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of `bsv-p2p-health` in the workspace's release build.
pub fn health_bin() -> PathBuf {
    let bin = release_bin("bsv-p2p-health");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release -p bsv-p2p-health -p bsv-p2p-relay` first",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    crate::prometheus::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `check` every 100 ms until it returns Some, or panics after `limit`
/// with the last thing it saw.
pub fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {limit:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub headers: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request on its own connection, read to the end.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {raw:?}"))?;
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status:?}"))?;
    let mut answer = Answer {
        code,
        headers: headers.to_string(),
        body: body.to_string(),
    };
    if answer.header("transfer-encoding") == Some("chunked") {
        answer.body = dechunk(body)?;
    }
    Ok(answer)
}

/// The body of a chunked response (Prometheus's API answers so).
fn dechunk(mut raw: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, rest) = raw
            .split_once("\r\n")
            .ok_or_else(|| format!("no chunk size in {raw:?}"))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| format!("a {size}-byte chunk cut short"))?;
        body.push_str(chunk);
        raw = rest[size..].trim_start_matches("\r\n");
    }
}

pub fn get(port: u16, path: &str) -> Answer {
    http(port, "GET", path, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The samples of a Prometheus text page as `name{labels}` -> value;
/// panics on a line that is not `series value`.
pub fn samples(page: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// A running `bsv-p2p-health`, killed when dropped.
pub struct Health {
    child: Child,
    pub port: u16,
    dir: ScratchDir,
}

impl Health {
    pub fn start(socket: &Path) -> Health {
        Health::start_on(socket, free_port())
    }

    pub fn start_on(socket: &Path, port: u16) -> Health {
        Health::spawn(socket, port, None, Some(TEST_MAX_AGE_MS), &[])
    }

    /// Started with these further options (`--federation-quorum 2`, …).
    pub fn start_with_args(socket: &Path, args: &[&str]) -> Health {
        Health::spawn(socket, free_port(), None, Some(TEST_MAX_AGE_MS), args)
    }

    /// Started with `--max-age max_age` (None: the sidecar's own default),
    /// as the benchmark runs it.
    pub fn start_with_max_age(socket: &Path, max_age: Option<u64>) -> Health {
        Health::spawn(socket, free_port(), None, max_age, &[])
    }

    /// Started with its soft limit on open files (`ulimit -n`) set to
    /// `limit`, as a container might run it.
    pub fn start_with_open_files(socket: &Path, limit: u64) -> Health {
        Health::spawn(socket, free_port(), Some(limit), Some(TEST_MAX_AGE_MS), &[])
    }

    fn spawn(
        socket: &Path,
        port: u16,
        open_files: Option<u64>,
        max_age: Option<u64>,
        args: &[&str],
    ) -> Health {
        let dir = ScratchDir::new("health");
        let log = std::fs::File::create(dir.join("health.log")).expect("log file");
        let mut command = Command::new(health_bin());
        command
            .arg("--socket")
            .arg(socket)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        if let Some(ms) = max_age {
            command.args(["--max-age", &ms.to_string()]);
        }
        if let Some(limit) = open_files {
            // SAFETY: between fork and exec the child only calls getrlimit
            // and setrlimit, both async-signal-safe.
            unsafe {
                command.pre_exec(move || limit_open_files(limit));
            }
        }
        let child = command.spawn().expect("start bsv-p2p-health");
        let mut health = Health { child, port, dir };
        eventually("the sidecar answers /livez", START_TIMEOUT, || {
            if let Some(status) = health.child.try_wait().map_err(|e| e.to_string())? {
                panic!("bsv-p2p-health exited with {status}: {}", health.log());
            }
            match http(port, "GET", "/livez", &[]) {
                Ok(a) if a.code == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        health
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("health.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `/metrics` as name{labels} -> value.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let a = get(self.port, "/metrics");
        assert_eq!(a.code, 200, "{a:?}");
        samples(&a.body)
    }

    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .into_iter()
            .find(|(n, _)| n == series)
            .map(|(_, v)| v)
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lowers this process's soft limit on open files to `limit` (never above
/// the hard limit).
fn limit_open_files(limit: u64) -> std::io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let wanted = libc::rlimit {
            rlim_cur: limit.min(current.rlim_max),
            rlim_max: current.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
