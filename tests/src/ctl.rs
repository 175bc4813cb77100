//! The real `bsv-p2p-ctl` binary, run against a test relay's control socket.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::relay::Finished;

/// Path of `bsv-p2p-ctl`: beside the relay binary the tests use.
pub fn ctl_bin() -> PathBuf {
    let bin = crate::relay::relay_bin().with_file_name("bsv-p2p-ctl");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release -p bsv-p2p-ctl` first",
        bin.display()
    );
    bin
}

/// Runs `bsv-p2p-ctl --socket SOCKET ARGS...` to its end; kills it and
/// fails after `timeout`.
pub fn run(socket: &Path, args: &[&str], timeout: Duration) -> Result<Finished, String> {
    let child = Command::new(ctl_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start bsv-p2p-ctl: {e}"))?;
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + timeout;
    while !waiter.is_finished() {
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on our own child, not yet reaped (the waiter
            // thread reaps it only after it exits).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            let _ = waiter.join();
            return Err(format!(
                "bsv-p2p-ctl {args:?} ran over {timeout:?}; killed it"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = waiter
        .join()
        .map_err(|_| "the waiter thread panicked".to_string())?
        .map_err(|e| format!("cannot wait for bsv-p2p-ctl: {e}"))?;
    Ok(Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `bsv-p2p-ctl --socket SOCKET --json ARGS...`, expects exit 0 and
/// returns the JSON it printed.
pub fn json(socket: &Path, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let done = run(socket, &full, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        done.code,
        Some(0),
        "bsv-p2p-ctl {full:?} failed: stdout {} stderr {}",
        done.stdout,
        done.stderr
    );
    serde_json::from_str(&done.stdout).unwrap_or_else(|e| {
        panic!(
            "bsv-p2p-ctl {full:?} printed no JSON ({e}): {}",
            done.stdout
        )
    })
}
