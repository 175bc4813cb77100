//! A real Prometheus server (Debian package `prometheus`) for the health
//! tests and benchmark: started on a free loopback port with a config of the
//! caller's, its data and log in a directory of the caller's.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A free loopback TCP port (free when asked; the caller binds it soon after).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Writes `config` to `dir/prometheus.yml` and starts Prometheus with it on
/// a free loopback port, storing under `dir/tsdb` and logging to
/// `dir/prometheus.log`. Returns the process and its port; the caller waits
/// for `/-/ready` and ends the process.
pub fn spawn(dir: &Path, config: &str) -> Result<(Child, u16), String> {
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let port = free_port()?;
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| {
            format!("cannot start prometheus ({e}); it is the Debian package prometheus, which scripts/test installs")
        })?;
    Ok((child, port))
}
