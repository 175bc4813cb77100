//! The health sidecar (`bsv-p2p-health`) against the real relay, the real
//! `bsv-p2p-ctl`, the guide's `health-check.sh` and a real Prometheus
//! (Debian package `prometheus`), all on loopback: what Prometheus stores
//! is what the relay counts, the endpoints keep their promises while the
//! relay is down and come back by themselves when it restarts, and the
//! operator kit's alert rules load and fire.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_std::task::block_on;
use bsv_p2p_tests::health::{eventually, get, health_bin, http, Health};
use bsv_p2p_tests::relay::workspace_dir;
use bsv_p2p_tests::{Client, ClientOptions, Relay, RelayOptions, ScratchDir};
use serde_json::{json, Value};

/// Bound on anything the sidecar or Prometheus should show after a change.
const SETTLE: Duration = Duration::from_secs(20);
/// The port the guide's `health-check.sh` asks, fixed in the script.
const GUIDE_PORT: u16 = 4003;

fn relay_config() -> Value {
    json!({ "mode": "relay" })
}

/// `promtool check metrics` on `text`: Ok or promtool's complaint.
fn promtool_check_metrics(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed; scripts/test installs it");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Clients that each reserve a slot on the relay and hold it.
fn reserve(relay: &Relay, n: usize) -> Vec<Client> {
    block_on(async {
        let mut held = Vec::new();
        for _ in 0..n {
            let c = Client::start(ClientOptions::default())
                .await
                .expect("client starts");
            c.reserve(&relay.tcp_addr()).await.expect("reservation");
            held.push(c);
        }
        held
    })
}

/// A real Prometheus scraping the sidecar every second, with the kit's
/// alert rules loaded; killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: ScratchDir,
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let dir = ScratchDir::new("prometheus");
        let rules = workspace_dir().join("deploy/monitoring/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: bsv-p2p-health\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
            rules = rules.display()
        );
        let (child, port) =
            bsv_p2p_tests::prometheus::spawn(dir.path(), &config).unwrap_or_else(|e| panic!("{e}"));
        let mut prometheus = Prometheus { child, port, dir };
        eventually("Prometheus is ready", SETTLE, || {
            if let Some(status) = prometheus.child.try_wait().map_err(|e| e.to_string())? {
                panic!("prometheus exited with {status}: {}", prometheus.log());
            }
            match http(port, "GET", "/-/ready", &[]) {
                Ok(a) if a.code == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn api(&self, path: &str) -> Value {
        let a = get(self.port, path);
        assert_eq!(a.code, 200, "{path}: {a:?}");
        let v = a.json();
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    /// The value of an instant query that must return one series.
    fn value(&self, promql: &str) -> Result<f64, String> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(promql)));
        let result = data["result"].as_array().cloned().unwrap_or_default();
        match result.as_slice() {
            [one] => one["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{promql}: odd value {one}")),
            other => Err(format!("{promql}: {} series: {other:?}", other.len())),
        }
    }

    /// How many series an instant query returns; panics when Prometheus
    /// refuses the query.
    fn series(&self, promql: &str) -> usize {
        let data = self.api(&format!("/api/v1/query?query={}", encode(promql)));
        data["result"].as_array().map_or(0, Vec::len)
    }

    /// The scrape target's health as Prometheus sees it ("up", "down", "unknown").
    fn target_health(&self) -> String {
        let data = self.api("/api/v1/targets");
        data["activeTargets"][0]["health"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    }

    /// The state of `alert` ("pending", "firing"), if it is active.
    fn alert_state(&self, alert: &str) -> Option<String> {
        let data = self.api("/api/v1/alerts");
        data["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == alert)
            .and_then(|a| a["state"].as_str().map(str::to_string))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_stores_what_the_relay_counts_while_rust_clients_hold_reservations() {
    let relay = Relay::start(relay_config());
    let socket = relay.socket();
    let health = Health::start(&socket);
    let prometheus = Prometheus::start(health.port);

    eventually(
        "Prometheus reports the sidecar up",
        SETTLE,
        || match prometheus.target_health().as_str() {
            "up" => Ok(()),
            other => Err(other.to_string()),
        },
    );
    let rules = prometheus.api("/api/v1/rules");
    let loaded: Vec<&str> = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    for alert in [
        "BsvP2pRelayDown",
        "BsvP2pNoConnections",
        "BsvP2pErrorRate",
        "BsvP2pReservationsNearCap",
    ] {
        assert!(loaded.contains(&alert), "{alert} not loaded: {loaded:?}");
    }

    // Three clients reserve; a fourth only connects.
    let mut clients = reserve(&relay, 3);
    let watcher = block_on(Client::start(ClientOptions::default())).expect("client starts");
    block_on(watcher.connect(&relay.tcp_addr())).expect("connects");

    let matches = |reservations: u64, connections: u64| {
        eventually(
            &format!("Prometheus shows {reservations} reservations, {connections} connections as ctl does"),
            SETTLE,
            || {
                let stats = relay.ctl(&["stats"]);
                let ctl = (
                    stats["reservations"]["active"].as_u64().unwrap_or(u64::MAX),
                    stats["connections"]["active"].as_u64().unwrap_or(u64::MAX),
                );
                let stored = (
                    prometheus.value("bsv_p2p_reservations")?,
                    prometheus.value("bsv_p2p_connections")?,
                );
                if ctl == (reservations, connections)
                    && stored == (reservations as f64, connections as f64)
                {
                    Ok(())
                } else {
                    Err(format!("ctl {ctl:?}, Prometheus {stored:?}"))
                }
            },
        )
    };
    matches(3, 4);
    assert_eq!(prometheus.value("bsv_p2p_relay_up"), Ok(1.0));
    assert_eq!(
        prometheus.value("bsv_p2p_reservations_created_total"),
        Ok(3.0)
    );

    // A circuit to a peer without a reservation is refused; the refusal is
    // counted by reason, as ctl counts it.
    let nobody = libp2p::PeerId::random();
    assert!(block_on(watcher.dial_via(&relay.tcp_addr(), nobody)).is_err());
    eventually("Prometheus counts the refusal by reason", SETTLE, || {
        let ctl = relay.ctl(&["stats"])["circuits"]["denied"]["no_reservation"].as_u64();
        let stored =
            prometheus.value("bsv_p2p_circuits_denied_total{reason=\"no_reservation\"}")?;
        if ctl == Some(1) && stored == 1.0 {
            Ok(())
        } else {
            Err(format!("ctl {ctl:?}, Prometheus {stored}"))
        }
    });

    // Every query of the kit's dashboard is valid PromQL with data behind
    // it (the rates once two scrapes are in).
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_dir().join("deploy/monitoring/grafana-dashboard.json"))
            .expect("the kit's dashboard"),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("expr")
                .replace("$job", "bsv-p2p-health")
                .replace("$instance", ".*")
        })
        .collect();
    assert!(exprs.iter().any(|e| e.starts_with("bsv_p2p_reservations{")));
    assert!(exprs
        .iter()
        .any(|e| e.starts_with("rate(bsv_p2p_errors_total{")));
    for expr in &exprs {
        eventually(
            &format!("dashboard query {expr} has data"),
            SETTLE,
            || match prometheus.series(expr) {
                0 => Err("no series".to_string()),
                n => Ok(n),
            },
        );
    }

    // One reserved client leaves: both counts drop, everywhere.
    drop(clients.pop());
    matches(2, 3);

    // The relay dies: the scrape still succeeds, and says so.
    drop(relay);
    eventually("Prometheus stores bsv_p2p_relay_up 0", SETTLE, || {
        let v = prometheus.value("bsv_p2p_relay_up")?;
        if v == 0.0 {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    });
    assert_eq!(prometheus.target_health(), "up");
    assert_eq!(prometheus.value("up"), Ok(1.0));
    assert!(
        prometheus.value("bsv_p2p_reservations").is_err(),
        "no relay numbers are reported while the relay is down"
    );
    let state = eventually("the kit's BsvP2pRelayDown alert is active", SETTLE, || {
        prometheus
            .alert_state("BsvP2pRelayDown")
            .ok_or_else(|| "not active".to_string())
    });
    assert!(state == "pending" || state == "firing", "{state}");
}

#[test]
fn promtool_accepts_the_metrics_with_the_relay_up_and_down() {
    let relay = Relay::start(relay_config());
    let health = Health::start(&relay.socket());
    let _held = reserve(&relay, 2);
    let up = get(health.port, "/metrics");
    assert_eq!(up.code, 200);
    assert_eq!(
        up.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    if let Err(e) = promtool_check_metrics(&up.body) {
        panic!("promtool check metrics (relay up): {e}\n{}", up.body);
    }
    for series in [
        "bsv_p2p_reservations",
        "bsv_p2p_connections",
        "bsv_p2p_errors_total{kind=\"listener\"}",
        "bsv_p2p_relay_up",
        "bsv_p2p_health_scrape_errors_total",
        "process_resident_memory_bytes",
        // Without federation: none configured, none in any state.
        "bsv_p2p_federation_peers_configured",
        "bsv_p2p_federation_peers{state=\"connected\"}",
    ] {
        assert!(
            up.body
                .lines()
                .any(|l| l.starts_with(&format!("{series} "))),
            "{series} missing from\n{}",
            up.body
        );
    }
    // Every family has HELP and TYPE; counters, and only counters, end in _total.
    for line in up.body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split(' ').skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        assert!(
            up.body.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
    // Only a federated relay's peer id is ever a label value, and this
    // relay federates with none.
    assert!(
        !up.body.contains("12D3KooW"),
        "no peer id may appear in the metrics"
    );
    assert!(up
        .body
        .contains("\nbsv_p2p_federation_peers_configured 0\n"));

    drop(relay);
    let down = eventually("/metrics reports the relay down", SETTLE, || {
        let a = get(health.port, "/metrics");
        if a.code == 200 && a.body.contains("\nbsv_p2p_relay_up 0\n") {
            Ok(a)
        } else {
            Err(format!("{a:?}"))
        }
    });
    if let Err(e) = promtool_check_metrics(&down.body) {
        panic!("promtool check metrics (relay down): {e}\n{}", down.body);
    }
    assert!(
        !down.body.contains("bsv_p2p_reservations "),
        "{}",
        down.body
    );
    assert!(health.metric("bsv_p2p_health_scrape_errors_total").unwrap() >= 1.0);
}

/// The relay is killed and started again on the same data directory; the
/// same sidecar process reports it down and then, by itself, up again.
#[test]
fn the_sidecar_outlives_a_relay_restart_and_reconnects_by_itself() {
    let relay = Relay::start(relay_config());
    let socket = relay.socket();
    let peer_id = relay.peer_id().to_string();
    let mut health = Health::start(&socket);
    let pid = health.pid();

    let healthy = eventually("/health is healthy", SETTLE, || {
        let a = get(health.port, "/health");
        (a.code == 200).then(|| a.json()).ok_or(format!("{a:?}"))
    });
    assert_eq!(healthy["status"], "healthy");
    assert!(
        healthy["uptime"].is_u64() && healthy["peers"].is_u64(),
        "{healthy}"
    );
    assert_eq!(
        get(health.port, "/readyz").json(),
        json!({"status": "ready"})
    );

    let dir = relay.into_dir(); // SIGKILL: no goodbye on the socket
    let unhealthy = eventually("/health turns unhealthy", SETTLE, || {
        let a = get(health.port, "/health");
        (a.code == 503).then(|| a.json()).ok_or(format!("{a:?}"))
    });
    assert_eq!(unhealthy["status"], "unhealthy");
    assert!(
        unhealthy["reason"]
            .as_str()
            .is_some_and(|r| r.contains("relay.sock")),
        "the reason names the socket: {unhealthy}"
    );
    let live = get(health.port, "/livez");
    assert_eq!(live.code, 200, "/livez never depends on the relay");
    assert_eq!(live.json()["status"], "alive");
    let ready = get(health.port, "/readyz");
    assert_eq!(ready.code, 503);
    assert_eq!(ready.json()["status"], "not_ready");
    let status = get(health.port, "/status");
    assert_eq!((status.code, status.body.as_str()), (503, "DOWN\n"));
    let status = http(
        health.port,
        "GET",
        "/status",
        &[("Accept", "application/json")],
    )
    .unwrap();
    assert_eq!(status.code, 503);
    assert_eq!(status.json()["status"], "unhealthy");
    assert_eq!(health.metric("bsv_p2p_relay_up"), Some(0.0));

    // Down for a while: the sidecar keeps serving.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(get(health.port, "/livez").code, 200);
    assert_eq!(get(health.port, "/health").code, 503);

    let relay = Relay::start_with(RelayOptions::new(relay_config()).dir(dir));
    assert_eq!(
        relay.peer_id().to_string(),
        peer_id,
        "same data dir, same relay"
    );
    let back = eventually("/health is healthy again", SETTLE, || {
        let a = get(health.port, "/health");
        (a.code == 200).then(|| a.json()).ok_or(format!("{a:?}"))
    });
    assert_eq!(back["status"], "healthy");
    assert_eq!(get(health.port, "/status").json()["peerId"], peer_id);
    assert_eq!(health.metric("bsv_p2p_relay_up"), Some(1.0));
    assert!(
        health.metric("bsv_p2p_health_relay_outages_total") >= Some(1.0),
        "the outage is counted"
    );
    assert!(health.is_running(), "{}", health.log());
    assert_eq!(health.pid(), pid, "the same sidecar process throughout");
}

#[test]
fn status_has_the_guides_shape_and_unknown_routes_and_methods_get_json_errors() {
    let relay = Relay::start(relay_config());
    let health = Health::start(&relay.socket());
    let _held = reserve(&relay, 1);

    let status = eventually("/status shows the reservation", SETTLE, || {
        let a = get(health.port, "/status");
        let v = a.json();
        (a.code == 200 && v["reservations"] == 1)
            .then_some(v.clone())
            .ok_or(format!("{v}"))
    });
    assert_eq!(status["peerId"], relay.peer_id().to_string());
    assert_eq!(status["connections"], 1);
    assert!(status["uptime"].is_u64(), "{status}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let listen = status["listenAddrs"].as_array().expect("listenAddrs");
    assert!(!listen.is_empty(), "{status}");
    assert!(status["announceAddrs"].is_array(), "{status}");
    let relay_addrs = status["relayAddrs"].as_array().expect("relayAddrs");
    assert!(
        relay_addrs
            .iter()
            .all(|a| a.as_str().unwrap().ends_with(&relay.peer_id().to_string())),
        "{status}"
    );

    let missing = get(health.port, "/nope");
    assert_eq!(missing.code, 404);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    assert_eq!(
        missing.json(),
        json!({"error": "not found", "path": "/nope"})
    );

    for (method, path) in [
        ("POST", "/status"),
        ("DELETE", "/health"),
        ("PUT", "/metrics"),
    ] {
        let a = http(health.port, method, path, &[]).unwrap();
        assert_eq!(a.code, 405, "{method} {path}: {a:?}");
        assert_eq!(a.header("allow"), Some("GET, HEAD"));
        let v = a.json();
        assert_eq!(v["error"], "method not allowed");
        assert_eq!(v["method"], method);
    }
    let head = http(health.port, "HEAD", "/health", &[]).unwrap();
    assert_eq!(head.code, 200);
    assert_eq!(head.body, "", "HEAD has no body");
}

/// The guide's script, run as printed: it asks `localhost:4003`.
#[test]
fn the_guides_health_check_script_says_ok_warning_and_critical() {
    assert!(
        TcpListener::bind(("127.0.0.1", GUIDE_PORT)).is_ok(),
        "port {GUIDE_PORT} is taken by another program; the guide's health-check.sh asks \
         localhost:{GUIDE_PORT}, so this test needs it free"
    );
    let script = workspace_dir().join("scripts/health-check.sh");
    let run = || {
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/health-check.sh");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };

    let relay = Relay::start(relay_config());
    let health = Health::start_on(&relay.socket(), GUIDE_PORT);
    assert_eq!(
        run(),
        (Some(1), "WARNING: No connections".to_string()),
        "no peers"
    );

    let held = reserve(&relay, 2);
    let ok = eventually("the script says OK", SETTLE, || match run() {
        (Some(0), line) => Ok(line),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(ok, "OK: 2 connections, 2 reservations");

    drop(held);
    drop(relay);
    let critical = eventually("the script says CRITICAL", SETTLE, || match run() {
        (Some(2), line) => Ok(line),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(critical, "CRITICAL: Relay not responding");

    drop(health);
    assert_eq!(
        run(),
        (Some(2), "CRITICAL: Relay not responding".to_string()),
        "no sidecar either"
    );
}

#[test]
fn bad_settings_are_refused_with_exit_2_and_a_taken_port_with_exit_1() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(health_bin())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run bsv-p2p-health");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    assert_eq!(
        run(&["--bind", "localhost:4003"], &[]),
        (
            Some(2),
            "bsv-p2p-health: --bind: expected an IP address and port like 127.0.0.1:4003, \
             got \"localhost:4003\""
                .to_string()
        )
    );
    assert_eq!(
        run(
            &["--socket", "/x.sock"],
            &[("BSV_P2P_HEALTH_MAX_AGE_MS", "soon")]
        ),
        (
            Some(2),
            "bsv-p2p-health: BSV_P2P_HEALTH_MAX_AGE_MS: expected milliseconds from 0 to \
             3600000, got \"soon\""
                .to_string()
        )
    );
    assert_eq!(
        run(&["--socket", "/x.sock", "--federation-quorum", "65"], &[]),
        (
            Some(2),
            "bsv-p2p-health: --federation-quorum: expected a number of federated relays \
             from 0 to 64, got \"65\""
                .to_string()
        )
    );
    assert_eq!(
        run(
            &["--socket", "/x.sock"],
            &[("BSV_P2P_HEALTH_FEDERATION_QUORUM", "all")]
        ),
        (
            Some(2),
            "bsv-p2p-health: BSV_P2P_HEALTH_FEDERATION_QUORUM: expected a number of \
             federated relays from 0 to 64, got \"all\""
                .to_string()
        )
    );
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, stderr) = run(
        &["--socket", "/x.sock"],
        &[("BSV_P2P_HEALTH_BIND", &format!("127.0.0.1:{port}"))],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// `--federation-quorum` against a relay that federates with none: `/readyz`
/// says the quorum cannot be met, while `/health` and `/livez` keep their
/// meaning. (Quorums met and missed against federated relays are in
/// `tests/tests/federation.rs`.)
#[test]
fn a_federation_quorum_the_relay_cannot_meet_keeps_readyz_at_503() {
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let relay = Relay::start(relay_config());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _health = Killed(
        Command::new(health_bin())
            .arg("--socket")
            .arg(relay.socket())
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--federation-quorum", "1", "--max-age", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bsv-p2p-health"),
    );
    let ready = eventually(
        "/readyz gives the federation's reason",
        SETTLE,
        || match http(port, "GET", "/readyz", &[]) {
            Ok(a) if a.body.contains("federation:") => Ok(a),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(ready.code, 503);
    assert_eq!(
        ready.json(),
        json!({
            "status": "not_ready",
            "reason": "federation: quorum of 1 but the relay reports no federated relays \
                       (none in its federation.peers, or a relay older than control \
                       protocol 1.5)"
        })
    );
    assert_eq!(get(port, "/health").json()["status"], "healthy");
    assert_eq!(get(port, "/livez").code, 200);
    assert!(get(port, "/status").json().get("federation").is_none());
}
