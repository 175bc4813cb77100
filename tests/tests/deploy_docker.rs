//! The Docker deployment (`deploy/docker/`) run for real: Debian's dockerd
//! and docker-compose 1.29, the image built from the release binaries
//! compiled on this machine, on a base built by debootstrap (no registry).
//! `up` brings the relay to healthy with `/status` on the published health
//! port; js bots outside the containers reserve through the published ports
//! and reach each other through the relay; a crash of the relay is healed by
//! the restart policy with the same peer id while the sidecars reconnect by
//! themselves (logship losing nothing); `docker stop` drains; `down -v`
//! leaves nothing behind; and each site's choice of sidecars starts exactly
//! those services.
//!
//! `tests/docker/install.sh` (run here, idempotent) installs docker and
//! builds the base. When dockerd cannot run on this machine it exits 3 and
//! these tests print why and pass without running; any other failure fails.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use bsv_p2p_tests::health::{eventually, http};
use bsv_p2p_tests::relay::workspace_dir;
use bsv_p2p_tests::{Bot, BotOptions, ScratchDir};
use serde_json::{json, Value};

const IMAGE: &str = "bsv-p2p:docker-test";
const COLLECTOR_IMAGE: &str = "bsv-p2p/otel-collector:docker-test";
/// install.sh's exit code for "dockerd cannot run here".
const CANNOT_RUN: i32 = 3;
/// Bound on a container becoming healthy (healthchecks every 5 s).
const HEALTHY: Duration = Duration::from_secs(60);
/// The relay's `shutdown.timeout` in deploy/docker/config/relay-config.json.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
const MIB: u64 = 1024 * 1024;

fn docker_dir() -> PathBuf {
    workspace_dir().join("deploy/docker")
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// Debian's docker CLI (20.10) speaks BuildKit to the daemon without the
/// buildx plugin, which a newer CLI earlier on PATH may lack.
fn buildkit(args: &[&str], context: &std::path::Path) -> Duration {
    let cli = if std::path::Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    };
    let started = Instant::now();
    run(Command::new(cli)
        .current_dir(context)
        .env("DOCKER_BUILDKIT", "1")
        .arg("build")
        .args(args)
        .arg(context));
    started.elapsed()
}

/// `Ok`: images built; `Err`: why dockerd cannot run on this machine.
fn setup() -> &'static Result<(), String> {
    static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
    SETUP.get_or_init(|| {
        let root = workspace_dir();
        let started = Instant::now();
        let out = Command::new(root.join("tests/docker/install.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("tests/docker/install.sh runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {}
            Some(CANNOT_RUN) => return Err(stderr.trim().to_string()),
            _ => panic!("tests/docker/install.sh failed ({}):\n{stderr}", out.status),
        }
        eprintln!(
            "docker: install.sh {:.1} s",
            started.elapsed().as_secs_f64()
        );
        run(&mut Command::new(root.join("tests/docker/stage.sh")));
        let took = buildkit(
            &[
                "-q",
                "-f",
                "deploy/docker/Dockerfile",
                "--build-arg",
                "BINARIES=prebuilt",
                "-t",
                IMAGE,
            ],
            &root,
        );
        let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", IMAGE])
            .trim()
            .parse()
            .expect("docker image inspect prints the size");
        eprintln!(
            "docker: image {IMAGE} built in {:.1} s, {:.1} MB",
            took.as_secs_f64(),
            size as f64 / 1e6
        );
        Ok(())
    })
}

/// The example OTLP receiver's image: pip fetches rotel inside the build, so
/// the host's extra CAs (a TLS-intercepting proxy's) go into a copy of the
/// context.
fn collector_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let context = ScratchDir::new("collector-context");
        let source = docker_dir().join("collector");
        run(Command::new("cp")
            .arg("-r")
            .arg(source.join("Dockerfile"))
            .arg(source.join("extra-ca"))
            .arg(context.path()));
        if let Ok(entries) = std::fs::read_dir("/usr/local/share/ca-certificates") {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "crt") {
                    std::fs::copy(&path, context.join("extra-ca").join(entry.file_name()))
                        .expect("copy a CA certificate");
                }
            }
        }
        let took = buildkit(&["-q", "-t", COLLECTOR_IMAGE], context.path());
        eprintln!(
            "docker: image {COLLECTOR_IMAGE} built in {:.1} s",
            took.as_secs_f64()
        );
    });
}

/// Prints why the test does not run, or `None` when it does.
macro_rules! require_docker {
    () => {
        if let Err(reason) = setup() {
            eprintln!("SKIPPED: dockerd cannot run on this machine: {reason}");
            return;
        }
    };
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One Compose project: its own name, ports, config directory and env file,
/// taken down with its volumes when dropped.
struct Project {
    name: String,
    files: Vec<&'static str>,
    env_file: PathBuf,
    tcp_port: u16,
    ws_port: u16,
    health_port: u16,
    _config: ScratchDir,
}

impl Project {
    /// `profiles` as in .env's COMPOSE_PROFILES; `files` after compose.yml;
    /// `env` added to the env file.
    fn new(label: &str, profiles: &str, files: &[&'static str], env: &[(&str, &str)]) -> Project {
        let config = ScratchDir::new(&format!("docker-{label}"));
        let (tcp_port, ws_port, health_port) = (free_port(), free_port(), free_port());
        let relay_config = json!({
            "mode": "relay",
            "listen": ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/tcp/4002/ws"],
            "announce": [format!("/ip4/127.0.0.1/tcp/{tcp_port}"), format!("/ip4/127.0.0.1/tcp/{ws_port}/ws")],
            "dataDir": "/var/lib/bsv-p2p",
            "control": { "socket": "/run/bsv-p2p/relay.sock", "adminUids": [0, 10001] },
            "log": { "format": "json" },
            "shutdown": { "timeout": SHUTDOWN_TIMEOUT.as_millis() as u64 }
        });
        std::fs::write(config.join("relay-config.json"), relay_config.to_string())
            .expect("write the relay config");
        std::fs::copy(
            docker_dir().join("config/backup.json"),
            config.join("backup.json"),
        )
        .expect("copy backup.json");
        // The scratch directory is the test user's; the containers' users read it.
        run(Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(config.path()));
        let mut vars = vec![
            format!("COMPOSE_PROFILES={profiles}"),
            format!("BSV_P2P_IMAGE={IMAGE}"),
            format!("BSV_P2P_COLLECTOR_IMAGE={COLLECTOR_IMAGE}"),
            "BSV_P2P_BINARIES=prebuilt".to_string(),
            format!("BSV_P2P_TCP_PORT={tcp_port}"),
            format!("BSV_P2P_WS_PORT={ws_port}"),
            format!("BSV_P2P_HEALTH_PORT={health_port}"),
            format!("BSV_P2P_CONFIG_DIR={}", config.path().display()),
        ];
        vars.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        let env_file = config.join("test.env");
        std::fs::write(&env_file, vars.join("\n") + "\n").expect("write the env file");
        let name = format!("bsvp2ptest{}{}", label.replace('-', ""), std::process::id());
        let mut all = vec!["compose.yml"];
        all.extend_from_slice(files);
        Project {
            name,
            files: all,
            env_file,
            tcp_port,
            ws_port,
            health_port,
            _config: config,
        }
    }

    fn compose_output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(docker_dir())
            .arg("--env-file")
            .arg(&self.env_file)
            .args(["-p", &self.name]);
        for f in &self.files {
            cmd.args(["-f", f]);
        }
        // The env file decides, not the caller's environment.
        cmd.env_remove("COMPOSE_PROFILES")
            .env_remove("COMPOSE_FILE");
        cmd.args(args).output().expect("docker-compose runs")
    }

    fn compose(&self, args: &[&str]) -> String {
        let out = self.compose_output(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?} ({}) failed:\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `up -d`, which returns once the relay is healthy (the sidecars'
    /// `depends_on` condition): how long that took.
    fn up(&self) -> Duration {
        let started = Instant::now();
        self.compose(&["up", "-d", "--no-build"]);
        started.elapsed()
    }

    fn container(&self, service: &str) -> String {
        let id = self.compose(&["ps", "-q", service]).trim().to_string();
        assert!(!id.is_empty(), "{}: no container for {service}", self.name);
        id
    }

    fn running_services(&self) -> BTreeSet<String> {
        self.compose(&["ps", "--services", "--filter", "status=running"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn wait_healthy(&self, service: &str) -> Duration {
        let started = Instant::now();
        let id = self.container(service);
        eventually(&format!("{service} healthy"), HEALTHY, || {
            let state = docker(&["inspect", "-f", "{{.State.Health.Status}}", &id]);
            if state.trim() == "healthy" {
                Ok(())
            } else {
                Err(state.trim().to_string())
            }
        });
        started.elapsed()
    }

    fn relay_addr(&self, peer: &str, ws: bool) -> String {
        if ws {
            format!("/ip4/127.0.0.1/tcp/{}/ws/p2p/{peer}", self.ws_port)
        } else {
            format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", self.tcp_port)
        }
    }

    fn status(&self) -> Result<Value, String> {
        let answer = http(self.health_port, "GET", "/status", &[])?;
        if answer.code != 200 {
            return Err(format!("{} {}", answer.code, answer.body));
        }
        serde_json::from_str(&answer.body).map_err(|e| e.to_string())
    }

    /// Containers, networks and volumes still labelled with this project.
    fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.name);
        let mut left = Vec::new();
        for kind in [["ps", "-aq"], ["network", "ls -q"], ["volume", "ls -q"]] {
            let mut args: Vec<&str> = vec![kind[0]];
            args.extend(kind[1].split(' '));
            args.extend(["--filter", &label]);
            left.extend(docker(&args).lines().map(|l| format!("{} {l}", kind[0])));
        }
        left
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose_output(&["down", "-v", "--remove-orphans", "-t", "5"]);
    }
}

/// The sequence numbers of the JSON event lines in `text`, gaps left out.
fn event_seqs(text: &str) -> BTreeSet<u64> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.get(l.find('{')?..)?).ok())
        .filter(|e| e["kind"] != "gap" && e["event"] != "gap")
        .filter_map(|e| e["seq"].as_u64())
        .collect()
}

/// The relay process inside the relay container (docker's init is PID 1).
fn relay_host_pid(container: &str) -> i32 {
    let init = docker(&["inspect", "-f", "{{.State.Pid}}", container]);
    let init = init.trim();
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .expect("the init's children");
    children
        .split_whitespace()
        .next()
        .expect("docker's init runs the relay")
        .parse()
        .expect("a pid")
}

#[test]
fn compose_up_serves_bots_survives_a_crash_drains_on_stop_and_leaves_nothing() {
    require_docker!();
    let started = Instant::now();
    let project = Project::new("full", "health,logship,backup", &[], &[]);
    let up = project.up();
    let relay = project.container("relay");
    let all_healthy = ["relay", "health", "logship", "backup"]
        .iter()
        .map(|s| project.wait_healthy(s))
        .max()
        .unwrap_or_default();
    eprintln!(
        "docker: up -> relay healthy {:.1} s, every service healthy {:.1} s",
        up.as_secs_f64(),
        (up + all_healthy).as_secs_f64()
    );
    assert_eq!(
        project.running_services(),
        ["backup", "health", "logship", "relay"]
            .map(String::from)
            .into(),
    );

    // /status through the port published on 127.0.0.1.
    let status = eventually("/status answers", HEALTHY, || project.status());
    let peer = status["peerId"].as_str().expect("peerId").to_string();

    // A TCP bot reserves through 4001; a WebSocket bot through 4002 reaches
    // it over the relay.
    let a = Bot::start(BotOptions::new(
        project.relay_addr(&peer, false).parse().expect("multiaddr"),
    ));
    a.wait_reserved(Duration::from_secs(30));
    let mut b = Bot::start(BotOptions::new(
        project.relay_addr(&peer, true).parse().expect("multiaddr"),
    ));
    let via = format!(
        "{}/p2p-circuit/p2p/{}",
        project.relay_addr(&peer, false),
        a.peer_id()
    );
    let echo = b.ok(
        json!({ "cmd": "echo", "addr": via, "bytes": MIB, "seed": 1 }),
        Duration::from_secs(60),
    );
    assert_eq!(echo["sent"], json!(MIB), "{echo}");
    assert_eq!(echo["received"], json!(MIB), "{echo}");
    let status = project.status().expect("/status");
    assert!(status["reservations"].as_u64() >= Some(1), "{status}");
    let _ = a.stop(Duration::from_secs(10));
    let _ = b.stop(Duration::from_secs(10));

    // The backup sidecar's first backup holds the relay's snapshot (it is
    // admin through control.adminUids).
    let manifests = eventually("a backup with the relay's state", HEALTHY, || {
        let listing = project.compose(&[
            "exec",
            "-T",
            "backup",
            "ls",
            "/var/lib/bsv-p2p-backup/backups",
        ]);
        if listing.contains(".manifest.json") {
            Ok(listing)
        } else {
            Err(listing)
        }
    });
    assert!(manifests.contains("wallet-"), "{manifests}");

    // A crash (SIGKILL to the relay process; `docker kill` counts as a
    // manual stop, to which restart policies do not apply): restarted, with
    // the same peer id.
    let journal_before = project.compose(&[
        "exec",
        "-T",
        "relay",
        "bsv-p2p-ctl",
        "--socket",
        "/run/bsv-p2p/relay.sock",
        "--json",
        "events",
    ]);
    assert!(
        !event_seqs(&journal_before).is_empty(),
        "the bots left events in the journal"
    );
    let pid = relay_host_pid(&relay);
    // SAFETY: kill(2) with a pid this test read from the relay container.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGKILL) },
        0,
        "kill the relay {pid}"
    );
    let crashed = Instant::now();
    eventually("the relay restarted", HEALTHY, || {
        let restarts = docker(&["inspect", "-f", "{{.RestartCount}}", &relay]);
        if restarts.trim() != "0" {
            Ok(())
        } else {
            Err(restarts)
        }
    });
    project.wait_healthy("relay");
    let after = eventually("/status answers after the crash", HEALTHY, || {
        project.status().and_then(|s| {
            if s["uptime"].as_u64() < Some(crashed.elapsed().as_secs() + 1) {
                Ok(s)
            } else {
                Err(format!("still the old reading: {s}"))
            }
        })
    });
    eprintln!(
        "docker: crash -> /status again {:.1} s",
        crashed.elapsed().as_secs_f64()
    );
    assert_eq!(
        after["peerId"],
        json!(peer),
        "the same peer id after the crash"
    );

    // logship reconnected by itself and shipped every event the journal holds.
    let journal = project.compose(&[
        "exec",
        "-T",
        "relay",
        "bsv-p2p-ctl",
        "--socket",
        "/run/bsv-p2p/relay.sock",
        "--json",
        "events",
    ]);
    let journal = event_seqs(&journal);
    let logship = project.container("logship");
    eventually("logship shipped every journal event", HEALTHY, || {
        let shipped = event_seqs(&docker(&["logs", &logship]));
        let missing: Vec<_> = journal.difference(&shipped).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}"))
        }
    });
    for sidecar in ["health", "logship", "backup"] {
        let restarts = docker(&[
            "inspect",
            "-f",
            "{{.RestartCount}}",
            &project.container(sidecar),
        ]);
        assert_eq!(
            restarts.trim(),
            "0",
            "{sidecar} reconnected without being restarted"
        );
    }

    // docker stop drains: the relay exits 0 within its shutdown timeout.
    let stopping = Instant::now();
    docker(&["stop", "-t", "15", &relay]);
    let took = stopping.elapsed();
    eprintln!("docker: stop drained in {:.2} s", took.as_secs_f64());
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.ExitCode}}", &relay]).trim(),
        "0"
    );
    assert!(
        took < SHUTDOWN_TIMEOUT + Duration::from_secs(2),
        "docker stop took {took:?}"
    );
    let logs = docker(&["logs", "--tail", "20", &relay]);
    assert!(logs.contains("relay_stopped"), "{logs}");

    project.compose(&["down", "-v"]);
    assert_eq!(
        project.leftovers(),
        Vec::<String>::new(),
        "down -v left these behind"
    );
    eprintln!(
        "docker: full-stack test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn each_site_variant_starts_exactly_its_services() {
    require_docker!();
    let started = Instant::now();
    type Variant = (
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );
    let variants: [Variant; 6] = [
        ("relay", "", &[], &[], &["relay"]),
        ("health", "health", &[], &[], &["relay", "health"]),
        ("stdout", "logship", &[], &[], &["relay", "logship"]),
        (
            "otlp",
            "logship,otlp",
            &["compose.otlp.yml"],
            &[],
            &["relay", "logship", "collector"],
        ),
        (
            "syslog",
            "logship",
            &["compose.syslog.yml"],
            &[("BSV_P2P_SYSLOG", "udp://127.0.0.1:514")],
            &["relay", "logship"],
        ),
        (
            "s3",
            "backup",
            &["compose.s3.yml"],
            &[
                (
                    "BSV_P2P_BACKUP_S3",
                    "s3://bsv-p2p/backups?endpoint=http://127.0.0.1:9&region=us-east-1",
                ),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
            &["relay", "backup"],
        ),
    ];
    collector_image();
    let runs: Vec<_> = variants
        .into_iter()
        .map(|(label, profiles, files, env, expected)| {
            thread::spawn(move || {
                let project = Project::new(label, profiles, files, env);
                let up = project.up();
                let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
                let running = project.running_services();
                assert_eq!(running, want, "{label}: services running");
                if label == "otlp" {
                    // Healthy means its destination accepts: the receiver took the events.
                    project.wait_healthy("logship");
                }
                if label == "syslog" {
                    let logship = project.container("logship");
                    eventually("logship ships to syslog", HEALTHY, || {
                        let out = Command::new("docker")
                            .args(["logs", &logship])
                            .output()
                            .map_err(|e| e.to_string())?;
                        let logs = String::from_utf8_lossy(&out.stdout).into_owned()
                            + &String::from_utf8_lossy(&out.stderr);
                        if logs.contains("syslog") {
                            Ok(())
                        } else {
                            Err(logs)
                        }
                    });
                }
                let up = up + project.wait_healthy("relay");
                project.compose(&["down", "-v"]);
                assert_eq!(
                    project.leftovers(),
                    Vec::<String>::new(),
                    "{label}: down -v left these"
                );
                (label, up)
            })
        })
        .collect();
    for run in runs {
        let (label, up) = run.join().expect("a variant passed");
        eprintln!(
            "docker: variant {label}: up -> relay healthy {:.1} s",
            up.as_secs_f64()
        );
    }
    eprintln!(
        "docker: variants test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
