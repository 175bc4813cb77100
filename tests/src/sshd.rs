//! A real OpenSSH server (Debian package `openssh-server`) as the remote
//! end of the backup sidecar's rsync-over-ssh tests: `sshd -D -e` with a
//! config of its own in a scratch directory (the system's sshd config and
//! `~/.ssh` are never read or written), listening only on a free
//! 127.0.0.1 port, public-key authentication only, with an ed25519 host key
//! and an ed25519 client key generated for it by `ssh-keygen`.
//!
//! [`Sshd::ssh_command`] is a complete `ssh` command line for rsync's `-e`
//! (or `RSYNC_RSH`): the client key only, no prompt, no config file, the
//! host key pinned in a known_hosts file of the fixture.
//!
//! What rsync 3.x over OpenSSH 9.2 does when the transfer fails (as the
//! tests in `tests/tests/sshd_server.rs` check):
//! - server down (connection refused): exit code 255, stderr holds
//!   `ssh: connect to host 127.0.0.1 port N: Connection refused`;
//! - key not authorized: exit code 255 as well, stderr holds
//!   `user@127.0.0.1: Permission denied (publickey).`;
//! - host key not the pinned one: exit code 255, stderr holds
//!   `Host key verification failed.`.
//!
//! Each time rsync then adds `rsync: connection unexpectedly closed (0 bytes
//! received so far) [sender]` and `rsync error: unexplained error (code
//! 255) at io.c(...)`. The exit code does not tell them apart; ssh's
//! message does.
//!
//! With `UsePAM no` sshd refuses a user whose shadow password starts with
//! `!` (a locked account; Debian's root has `*`, which is not locked): its
//! log then says "not allowed because account is locked".

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::scratch::ScratchDir;

/// How long sshd gets to greet a probe connection with its banner.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long sshd gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `$BSV_P2P_SSHD`, else Debian's `/usr/sbin/sshd`. sshd must be started
/// by an absolute path (it re-executes itself).
pub fn sshd_bin() -> PathBuf {
    std::env::var_os("BSV_P2P_SSHD").map_or_else(|| PathBuf::from("/usr/sbin/sshd"), PathBuf::from)
}

/// The name of the user the tests run as (the user sshd lets in).
pub fn current_user() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; the
    // name is copied out at once (the tests do not call getpw* elsewhere
    // concurrently in a way that matters for a name lookup).
    let name = unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr((*pw).pw_name)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    name.or_else(|| std::env::var("USER").ok())
        .expect("the current user has no name (no passwd entry, no $USER)")
}

/// Generates an ed25519 key pair without passphrase at `path` (+ `.pub`).
pub fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run ssh-keygen ({e}); it is the Debian package openssh-client")
        });
    assert!(
        out.status.success(),
        "ssh-keygen -f {} failed with {}: {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `sshd -D -e`, stopped by PID when dropped.
pub struct Sshd {
    child: Option<Child>,
    port: u16,
    user: String,
    dir: ScratchDir,
}

impl Sshd {
    /// Generates the keys, writes the config and starts sshd on a free
    /// loopback port; returns once sshd sends its banner there.
    pub fn start() -> Sshd {
        let dir = ScratchDir::new("sshd");
        std::fs::create_dir(dir.join("remote")).expect("create the remote directory");
        keygen(&dir.join("host_key"), "bsv-p2p-test-sshd-host");
        keygen(&dir.join("client_key"), "bsv-p2p-test-sshd-client");
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("write authorized_keys");
        let port = crate::prometheus::free_port().unwrap_or_else(|e| panic!("{e}"));
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).expect("host_key.pub");
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (fields.next(), fields.next());
        let (Some(kind), Some(key)) = (kind, key) else {
            panic!("unexpected host_key.pub: {host_pub:?}");
        };
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .expect("write known_hosts");
        let user = current_user();
        std::fs::write(dir.join("sshd_config"), config(&dir, port, &user)).expect("sshd_config");
        let mut sshd = Sshd {
            child: None,
            port,
            user,
            dir,
        };
        sshd.start_again();
        sshd
    }

    /// Starts sshd again after [`Sshd::stop`], on the same port with the
    /// same keys (the backup server back after an outage). Does nothing if
    /// it is running.
    pub fn start_again(&mut self) {
        if self.child.is_some() {
            return;
        }
        // As root sshd needs its privilege separation directory; Debian's
        // package creates it only when the system service starts.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 && !Path::new("/run/sshd").is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create("/run/sshd")
                .expect("create /run/sshd (sshd's privilege separation directory)");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))
            .expect("open sshd.log");
        let child = Command::new(sshd_bin())
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("sshd.log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); it is the Debian package openssh-server, \
                     which scripts/test installs",
                    sshd_bin().display()
                )
            });
        self.child = Some(child);
        self.await_banner();
    }

    /// Connects until sshd answers with its `SSH-2.0-` banner.
    fn await_banner(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!("sshd exited with {status}: {}", self.log());
            }
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut banner = [0u8; 8];
                if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0-" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not greet on {addr} within {START_TIMEOUT:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops sshd (SIGTERM, SIGKILL after a while): connections to the
    /// port are refused until [`Sshd::start_again`]. Sessions already open
    /// keep running in their own processes until their clients finish.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).expect("a PID fits pid_t");
        // SAFETY: kill on the PID of our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether sshd is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The user to log in as: the one the tests run as.
    pub fn user(&self) -> String {
        self.user.clone()
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `user@127.0.0.1`, the remote part of an rsync destination.
    pub fn user_at_host(&self) -> String {
        format!("{}@{}", self.user, self.host())
    }

    /// The client's private key (its public key is the only authorized one).
    pub fn identity_file(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// A known_hosts file holding the server's host key for
    /// `[127.0.0.1]:port`.
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The authorized_keys file sshd reads (one line: the client key).
    pub fn authorized_keys_file(&self) -> PathBuf {
        self.dir.join("authorized_keys")
    }

    /// A directory on the "server" for the tests to ship backups into.
    pub fn remote_dir(&self) -> PathBuf {
        self.dir.join("remote")
    }

    /// The ssh command for rsync's `-e` / `RSYNC_RSH` with the fixture's
    /// client key.
    pub fn ssh_command(&self) -> String {
        self.ssh_command_with_key(&self.identity_file())
    }

    /// The same command with another private key (for example one that is
    /// not authorized).
    pub fn ssh_command_with_key(&self, key: &Path) -> String {
        format!(
            "ssh -F none -p {port} -i {key} -o IdentitiesOnly=yes -o BatchMode=yes \
             -o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=yes -o ConnectTimeout=10",
            port = self.port,
            key = key.display(),
            known_hosts = self.known_hosts_file().display(),
        )
    }

    /// What sshd has logged (it logs to stderr with `-e`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The fixture's scratch directory (config, keys, log, remote/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// sshd's PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The config: loopback only, public keys only, everything under `dir`.
/// StrictModes is off because the scratch directory lives under the
/// world-writable temp dir, which sshd's path check would refuse.
fn config(dir: &ScratchDir, port: u16, user: &str) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    format!(
        "# Written by the tests' sshd fixture (tests/src/sshd.rs).
ListenAddress 127.0.0.1:{port}
AddressFamily inet
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
AuthorizedPrincipalsFile none
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
GSSAPIAuthentication no
PermitEmptyPasswords no
PermitRootLogin prohibit-password
AllowUsers {user}
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
PermitTunnel no
LogLevel VERBOSE
Subsystem sftp internal-sftp
",
        host_key = path("host_key"),
        pid_file = path("sshd.pid"),
        authorized_keys = path("authorized_keys"),
    )
}
