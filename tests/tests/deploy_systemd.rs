//! The systemd units in `deploy/systemd/`: `systemd-analyze verify` finds
//! nothing to say about them, `systemd-analyze security` scores each under
//! [`MAX_EXPOSURE`], the sysusers.d and tmpfiles.d snippets make the group and
//! the config directory, and the units' command lines work. systemd is not
//! PID 1 where these tests run, so one test starts each unit's `ExecStart`
//! itself, the way systemd would: the unit's `Environment=` then its
//! `EnvironmentFile=` (the examples beside the units), `$VAR` expanded,
//! `UMask=`, `/` as working directory, a `HOME` that does not exist,
//! `StateDirectory=` and `RuntimeDirectory=` created with their modes. Paths
//! under /usr/local/bin, /etc/bsv-p2p, /run and /var/lib, and the ports, are
//! moved into a scratch root; nothing else is changed. What only systemd
//! enforces (users, the sandbox) is measured by `security`, not run.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bsv_p2p_tests::child::{wait_exit, ChildOutput};
use bsv_p2p_tests::health::{eventually, http};
use bsv_p2p_tests::prometheus::free_port;
use bsv_p2p_tests::relay::{release_bin, workspace_dir};
use bsv_p2p_tests::{ctl, ScratchDir};
use serde_json::Value;

const UNITS: [&str; 4] = [
    "bsv-p2p-relay.service",
    "bsv-p2p-health.service",
    "bsv-p2p-logship.service",
    "bsv-p2p-backup.service",
];

/// Highest `systemd-analyze security` exposure accepted (0 best, 10 worst;
/// systemd calls up to 2.0 "OK"). The units measured 1.3–1.5.
const MAX_EXPOSURE: f64 = 2.0;

fn units_dir() -> PathBuf {
    workspace_dir().join("deploy/systemd")
}

/// Where the units' /usr/local/bin is in this build.
fn release_dir() -> PathBuf {
    release_bin("bsv-p2p-relay")
        .parent()
        .expect("target/release")
        .to_path_buf()
}

/// `systemd-analyze ARGS`, as (exit code, stdout + stderr).
fn systemd_analyze(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): install the Debian package `systemd`")
        });
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The units with `/usr/local/bin/` pointing at the release build, so that
/// `verify` finds the programs they run.
fn units_for_this_build() -> ScratchDir {
    let dir = ScratchDir::new("systemd-units");
    let bin = format!("{}/", release_dir().display());
    for unit in UNITS {
        let text = std::fs::read_to_string(units_dir().join(unit)).expect("read the unit");
        assert!(
            release_bin(unit.trim_end_matches(".service")).is_file(),
            "{} is missing: run `cargo build --release --workspace --bins` first",
            release_bin(unit.trim_end_matches(".service")).display()
        );
        std::fs::write(dir.join(unit), text.replace("/usr/local/bin/", &bin)).expect("write");
    }
    dir
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = units_for_this_build();
    let mut args = vec!["verify", "--man=no"];
    let paths: Vec<String> = UNITS.iter().map(|u| format!("./{u}")).collect();
    args.extend(paths.iter().map(String::as_str));
    let (code, text) = systemd_analyze(&args, dir.path());
    assert_eq!(code, Some(0), "systemd-analyze verify failed:\n{text}");
    assert!(
        text.trim().is_empty(),
        "systemd-analyze verify has something to say:\n{text}"
    );
}

#[test]
fn units_expose_little_by_systemd_analyze_security() {
    let dir = units_for_this_build();
    let mut worst = Vec::new();
    for unit in UNITS {
        let path = format!("./{unit}");
        let (code, text) = systemd_analyze(
            &["security", "--offline=true", "--no-pager", &path],
            dir.path(),
        );
        assert_eq!(code, Some(0), "systemd-analyze security {unit}:\n{text}");
        let score: f64 = text
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")
            })
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no overall exposure level for {unit}:\n{text}"));
        println!("systemd-analyze security {unit}: {score:.1}");
        if score > MAX_EXPOSURE {
            worst.push(format!("{unit}: {score:.1}\n{text}"));
        }
    }
    assert!(
        worst.is_empty(),
        "exposure above {MAX_EXPOSURE}:\n{}",
        worst.join("\n")
    );
}

/// One unit file's `[Service]` settings, in order (a key may repeat).
struct Service(Vec<(String, String)>);

impl Service {
    fn load(unit: &str) -> Service {
        let text = std::fs::read_to_string(units_dir().join(unit)).expect("read the unit");
        let mut section = String::new();
        let mut settings = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                section = name.trim_end_matches(']').to_string();
                continue;
            }
            assert!(
                !line.ends_with('\\'),
                "{unit}: continued lines are not parsed here"
            );
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{unit}: not key=value: {line}"));
            if section == "Service" {
                settings.push((key.to_string(), value.to_string()));
            }
        }
        Service(settings)
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, key: &str) -> Option<&str> {
        let all = self.all(key);
        assert!(all.len() <= 1, "{key} set {} times", all.len());
        all.first().copied()
    }
}

/// Where the units' absolute paths and ports land in this test.
struct Root {
    dir: ScratchDir,
    ports: Vec<(String, String)>,
}

impl Root {
    fn new() -> Root {
        let dir = ScratchDir::new("systemd-root");
        let mut ports = Vec::new();
        for (from, prefix) in [
            ("tcp/4001", "tcp/"),
            ("tcp/4002", "tcp/"),
            (":4003", ":"),
            (":4005", ":"),
            (":4006", ":"),
        ] {
            let port = free_port().expect("a free port");
            ports.push((from.to_string(), format!("{prefix}{port}")));
        }
        let root = Root { dir, ports };
        // /etc/bsv-p2p as the operations guide installs it, from the examples.
        let etc = root.path("/etc/bsv-p2p");
        std::fs::create_dir_all(&etc).expect("etc");
        for file in ["relay-config.json", "backup.json"] {
            let text = std::fs::read_to_string(units_dir().join(file)).expect("read an example");
            std::fs::write(etc.join(file), root.rewrite(&text)).expect("write");
        }
        root
    }

    /// `path` (absolute, as a unit names it) inside the scratch root.
    fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(self.rewrite(path))
    }

    fn rewrite(&self, text: &str) -> String {
        let root = self.dir.path().display().to_string();
        let mut text = text
            .replace("/usr/local/bin/", &format!("{}/", release_dir().display()))
            .replace("/etc/bsv-p2p", &format!("{root}/etc/bsv-p2p"))
            .replace("/run/", &format!("{root}/run/"))
            .replace("/var/lib/", &format!("{root}/var/lib/"));
        for (from, to) in &self.ports {
            text = text.replace(from, to);
        }
        text
    }

    fn port(&self, of: &str) -> u16 {
        let (_, to) = self
            .ports
            .iter()
            .find(|(f, _)| f == of)
            .expect("a mapped port");
        to.trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .expect("a port")
    }
}

/// A process started from a unit; killed if the test ends without stopping it.
struct UnitProcess {
    unit: &'static str,
    child: Child,
    output: ChildOutput,
}

impl UnitProcess {
    /// Starts `unit` as systemd would, within `root`.
    fn start(unit: &'static str, root: &Root, home: &Path) -> UnitProcess {
        let service = Service::load(unit);
        let mut env = BTreeMap::new();
        for assignment in service.all("Environment") {
            let (k, v) = assignment.split_once('=').expect("Environment=KEY=VALUE");
            env.insert(k.to_string(), root.rewrite(v));
        }
        // EnvironmentFile= is read after Environment= and wins; the example
        // beside the unit stands for the installed file.
        for file in service.all("EnvironmentFile") {
            let name = Path::new(file.trim_start_matches('-'))
                .file_name()
                .expect("a file name");
            let text = std::fs::read_to_string(units_dir().join(name))
                .unwrap_or_else(|e| panic!("{unit}: example {name:?}: {e}"));
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (k, v) = line.split_once('=').expect("KEY=VALUE");
                env.insert(k.to_string(), root.rewrite(v));
            }
        }
        for (key, default_mode) in [("RuntimeDirectory", "0755"), ("StateDirectory", "0755")] {
            let base = if key == "RuntimeDirectory" {
                "/run/"
            } else {
                "/var/lib/"
            };
            let mode = service.one(&format!("{key}Mode")).unwrap_or(default_mode);
            for name in service.all(key).iter().flat_map(|v| v.split_whitespace()) {
                let dir = root.path(&format!("{base}{name}"));
                std::fs::create_dir_all(&dir).expect("create a unit directory");
                let mode = u32::from_str_radix(mode, 8).expect("an octal mode");
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
            }
        }
        let exec = service.one("ExecStart").expect("ExecStart");
        let mut argv = Vec::new();
        for word in exec.split_whitespace() {
            match word.strip_prefix('$') {
                // "$VAR" as a word of its own: the value split at spaces, zero or more words.
                Some(var) if !var.starts_with('{') => argv.extend(
                    env.get(var)
                        .map(String::as_str)
                        .unwrap_or("")
                        .split_whitespace()
                        .map(str::to_string),
                ),
                _ => argv.push(root.rewrite(word)),
            }
        }
        assert!(
            !argv.iter().any(|a| a.contains('$')),
            "{unit}: ${{VAR}} inside a word is not expanded here: {argv:?}"
        );
        let umask = service
            .one("UMask")
            .map(|m| libc::mode_t::from_str_radix(m, 8).expect("an octal umask"))
            .unwrap_or(0o022);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home)
            .envs(&env)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: umask(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{unit}: cannot start {argv:?}: {e}"));
        let output = ChildOutput::capture(&mut child);
        UnitProcess {
            unit,
            child,
            output,
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!(
                "{} exited with {status}: {}",
                self.unit,
                self.output.stderr()
            );
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// `systemctl stop`: SIGTERM, then the exit code within `TimeoutStopSec=`.
    fn stop(mut self) -> Option<i32> {
        let limit = Service::load(self.unit)
            .one("TimeoutStopSec")
            .map(|v| humantime::parse_duration(v).expect("TimeoutStopSec"))
            .unwrap_or(Duration::from_secs(90));
        self.signal(libc::SIGTERM);
        match wait_exit(&mut self.child, limit, Duration::from_millis(20)).expect("wait") {
            Some(status) => status.code(),
            None => panic!(
                "{} did not stop within TimeoutStopSec={limit:?}: {}",
                self.unit,
                self.output.stderr()
            ),
        }
    }
}

impl Drop for UnitProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn units_command_lines_run_the_relay_and_its_sidecars_over_the_runtime_socket() {
    let root = Root::new();
    let home = root.dir.join("no-home");
    let socket = root.path("/run/bsv-p2p/relay.sock");

    let mut relay = UnitProcess::start("bsv-p2p-relay.service", &root, &home);
    let status = eventually(
        "the relay answers on /run/bsv-p2p/relay.sock",
        Duration::from_secs(15),
        || {
            relay.assert_running();
            match ctl::run(&socket, &["--json", "status"], Duration::from_secs(5)) {
                Ok(done) if done.code == Some(0) => {
                    serde_json::from_str::<Value>(&done.stdout).map_err(|e| e.to_string())
                }
                Ok(done) => Err(done.stderr),
                Err(e) => Err(e),
            }
        },
    );
    let peer_id = status["peerId"].as_str().expect("peerId").to_string();
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "the control socket's mode");
    let run_mode = std::fs::metadata(socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        run_mode & 0o777,
        0o750,
        "RuntimeDirectoryMode= as the relay left it"
    );
    assert!(
        root.path("/var/lib/bsv-p2p/identity.key").is_file(),
        "the identity key is in the StateDirectory"
    );

    let mut health = UnitProcess::start("bsv-p2p-health.service", &root, &home);
    let port = root.port(":4003");
    eventually(
        "health: /health says healthy",
        Duration::from_secs(15),
        || {
            health.assert_running();
            let answer = http(port, "GET", "/health", &[])?;
            (answer.code == 200).then_some(()).ok_or(answer.body)
        },
    );
    let answer = http(port, "GET", "/status", &[]).expect("GET /status");
    assert_eq!(
        answer.json()["peerId"],
        peer_id.as_str(),
        "/status: {}",
        answer.body
    );

    let mut logship = UnitProcess::start("bsv-p2p-logship.service", &root, &home);
    eventually("logship: /health answers", Duration::from_secs(15), || {
        logship.assert_running();
        http(root.port(":4005"), "GET", "/health", &[]).map(|_| ())
    });
    // ExecReload=: SIGHUP to the main PID, and the reload reaches the shipper.
    let reload = Service::load("bsv-p2p-relay.service");
    assert_eq!(reload.one("ExecReload"), Some("/bin/kill -HUP $MAINPID"));
    relay.signal(libc::SIGHUP);
    eventually(
        "logship prints the relay's config_reloaded",
        Duration::from_secs(15),
        || {
            logship.assert_running();
            let lines = logship.output.events();
            lines
                .iter()
                .any(|l| l["event"] == "config_reloaded")
                .then_some(())
                .ok_or(format!("{lines:?}"))
        },
    );

    let mut backup = UnitProcess::start("bsv-p2p-backup.service", &root, &home);
    let backups = root.path("/var/lib/bsv-p2p-backup/backups");
    let manifest: Value = eventually(
        "the backup daemon writes its first backup",
        Duration::from_secs(20),
        || {
            backup.assert_running();
            let found = std::fs::read_dir(&backups)
                .map_err(|e| e.to_string())?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".manifest.json"))
                .ok_or("no manifest yet")?;
            let text = std::fs::read_to_string(found).map_err(|e| e.to_string())?;
            serde_json::from_str(&text).map_err(|e| e.to_string())
        },
    );
    let parts: Vec<&str> = manifest["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        parts.contains(&"relay-state.json") && parts.contains(&"relay-config.json"),
        "the relay's snapshot and config are backed up: {manifest}"
    );
    assert!(
        manifest["skipped"].as_array().is_none_or(|s| s.is_empty()),
        "nothing left out: {manifest}"
    );
    let answer = http(root.port(":4006"), "GET", "/health", &[]).expect("backup /health");
    assert_eq!(answer.code, 200, "backup /health: {}", answer.body);

    // systemctl stop of the relay: it drains and exits 0; the sidecars stay
    // and say it is down (a crash restart does not stop them either).
    assert_eq!(relay.stop(), Some(0), "the relay exits 0 on SIGTERM");
    eventually(
        "health: /health says unhealthy",
        Duration::from_secs(10),
        || {
            health.assert_running();
            let answer = http(port, "GET", "/health", &[])?;
            (answer.code == 503).then_some(()).ok_or(answer.body)
        },
    );
    for sidecar in [health, logship, backup] {
        let unit = sidecar.unit;
        assert_eq!(sidecar.stop(), Some(0), "{unit} exits 0 on SIGTERM");
    }
    assert!(
        !home.exists(),
        "no unit writes to its HOME ({})",
        home.display()
    );
}

#[test]
fn sysusers_and_tmpfiles_snippets_make_the_group_and_the_config_directory() {
    let root = ScratchDir::new("systemd-sysusers");
    std::fs::create_dir(root.join("etc")).expect("etc");
    let root_arg = format!("--root={}", root.path().display());
    for (program, args) in [
        ("systemd-sysusers", vec![root_arg.as_str()]),
        ("systemd-tmpfiles", vec![root_arg.as_str(), "--create"]),
    ] {
        let file = if program == "systemd-sysusers" {
            "bsv-p2p.sysusers.conf"
        } else {
            "bsv-p2p.tmpfiles.conf"
        };
        let out = Command::new(program)
            .args(&args)
            .arg(units_dir().join(file))
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}): install the Debian package `systemd`")
            });
        assert!(
            out.status.success(),
            "{program} {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let group = std::fs::read_to_string(root.join("etc/group")).expect("etc/group");
    let gid: u32 = group
        .lines()
        .find_map(|l| l.strip_prefix("bsv-p2p:x:"))
        .and_then(|rest| rest.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no group bsv-p2p in {group}"));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("bsv-p2p:x:{gid}:{gid}:"))
                && l.ends_with(":/var/lib/bsv-p2p:/usr/sbin/nologin")),
        "user bsv-p2p in group bsv-p2p: {passwd}"
    );
    let etc = std::fs::metadata(root.join("etc/bsv-p2p")).expect("etc/bsv-p2p");
    assert_eq!(etc.mode() & 0o7777, 0o750, "/etc/bsv-p2p mode");
    assert_eq!(
        (etc.uid(), etc.gid()),
        (0, gid),
        "/etc/bsv-p2p owner root:bsv-p2p"
    );
}
