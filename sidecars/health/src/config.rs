//! What the sidecar runs with: the command line, then the environment, then
//! the defaults, resolved and checked in one place. A systemd unit or a
//! container sets the environment; a person at a shell passes flags; either
//! way a bad value is refused before anything binds, with a message naming
//! the flag or variable, what was expected and what was found.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;
use log::LevelFilter;

use crate::guard::Limits;

/// The guide's local admin port: its health-check script asks
/// `http://localhost:4003/status`.
pub const DEFAULT_BIND: &str = "127.0.0.1:4003";
pub const DEFAULT_MAX_AGE_MS: u64 = 250;
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// Prometheus keeps one connection per scrape, a load balancer a few, the
/// guide's script one per run: 256 leaves room for a fleet of them, and
/// with [`FD_RESERVE`] stays far below 1,024, the smallest open-file limit
/// in common use (containers, systemd's default).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// A client sends its request head in one packet; 5 s allows a slow link.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5000;
/// Longer than the usual 15 s scrape interval, so Prometheus keeps its
/// connection between scrapes.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30000;
/// The largest answer, `/metrics`, is tens of kilobytes.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5000;
/// Descriptors the sidecar keeps for itself beside its HTTP connections:
/// standard streams, the reactor's, the listener, the control socket, the
/// `/proc` reads for `/metrics` (about a dozen in all), and a connection closed
/// to make room whose socket is still being dropped.
pub const FD_RESERVE: u64 = 64;
/// The HTTP codec closes a connection that waits longer for a request head.
const MAX_HTTP_TIMEOUT_MS: u64 = 60_000;
/// The most relays a relay federates with (its `federation.peers`), so the
/// largest quorum that can ever be met.
pub const MAX_FEDERATED_RELAYS: usize = 64;

pub const ENV_BIND: &str = "BSV_P2P_HEALTH_BIND";
pub const ENV_SOCKET: &str = "BSV_P2P_HEALTH_SOCKET";
pub const ENV_DATA_DIR: &str = "BSV_P2P_HEALTH_DATA_DIR";
pub const ENV_MAX_AGE: &str = "BSV_P2P_HEALTH_MAX_AGE_MS";
pub const ENV_TIMEOUT: &str = "BSV_P2P_HEALTH_TIMEOUT_MS";
pub const ENV_LOG_LEVEL: &str = "BSV_P2P_HEALTH_LOG_LEVEL";
pub const ENV_MAX_CONNECTIONS: &str = "BSV_P2P_HEALTH_MAX_CONNECTIONS";
pub const ENV_REQUEST_TIMEOUT: &str = "BSV_P2P_HEALTH_REQUEST_TIMEOUT_MS";
pub const ENV_IDLE_TIMEOUT: &str = "BSV_P2P_HEALTH_IDLE_TIMEOUT_MS";
pub const ENV_WRITE_TIMEOUT: &str = "BSV_P2P_HEALTH_WRITE_TIMEOUT_MS";
pub const ENV_FEDERATION_QUORUM: &str = "BSV_P2P_HEALTH_FEDERATION_QUORUM";

/// Health, readiness and Prometheus metrics for a bsv-p2p relay, read through its control socket.
#[derive(FromArgs)]
pub struct Args {
    /// address to serve HTTP on (default 127.0.0.1:4003; env BSV_P2P_HEALTH_BIND)
    #[argh(option)]
    pub bind: Option<String>,
    /// the relay's control socket (default <data dir>/relay.sock; env BSV_P2P_HEALTH_SOCKET)
    #[argh(option, short = 's')]
    pub socket: Option<PathBuf>,
    /// the relay's data directory, to find its socket (default ~/.bsv-p2p/relay; env BSV_P2P_HEALTH_DATA_DIR)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// oldest relay reading served, in milliseconds; 0 asks the relay for every request not already waiting on an answer (default 250; env BSV_P2P_HEALTH_MAX_AGE_MS)
    #[argh(option)]
    pub max_age: Option<String>,
    /// how long the relay gets to answer, in milliseconds (default 2000; env BSV_P2P_HEALTH_TIMEOUT_MS)
    #[argh(option)]
    pub timeout: Option<String>,
    /// HTTP connections open at once; at the cap, the one waiting longest for a complete request is closed to make room (default 256; env BSV_P2P_HEALTH_MAX_CONNECTIONS)
    #[argh(option)]
    pub max_connections: Option<String>,
    /// how long a client gets to send a request head, in milliseconds (default 5000; env BSV_P2P_HEALTH_REQUEST_TIMEOUT_MS)
    #[argh(option)]
    pub request_timeout: Option<String>,
    /// how long a kept-alive connection may wait for its next request, in milliseconds (default 30000; env BSV_P2P_HEALTH_IDLE_TIMEOUT_MS)
    #[argh(option)]
    pub idle_timeout: Option<String>,
    /// how long a client gets to take an answer, in milliseconds (default 5000; env BSV_P2P_HEALTH_WRITE_TIMEOUT_MS)
    #[argh(option)]
    pub write_timeout: Option<String>,
    /// federated relays (federation.peers) that must be connected for /readyz to answer 200, 0 to 64; 0: not required (default 0; env BSV_P2P_HEALTH_FEDERATION_QUORUM)
    #[argh(option)]
    pub federation_quorum: Option<String>,
    /// log level: off, error, warn, info, debug or trace (default info; env BSV_P2P_HEALTH_LOG_LEVEL)
    #[argh(option)]
    pub log_level: Option<String>,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub bind: SocketAddr,
    pub socket: PathBuf,
    /// How old a relay reading may be when it is served.
    pub max_age: Duration,
    /// Connect and request timeout on the control socket.
    pub timeout: Duration,
    /// The bounds on HTTP connections.
    pub limits: Limits,
    /// Federated relays that must be connected for `/readyz`; 0: none.
    pub federation_quorum: usize,
    pub log_level: LevelFilter,
}

impl HealthConfig {
    /// Flags first, then `env` (a lookup, so tests need not touch the
    /// process environment), then defaults. `open_files` is the process's
    /// soft limit on open files (`ulimit -n`; `None`: unlimited), which the
    /// connection cap must fit under.
    pub fn resolve(
        args: &Args,
        env: impl Fn(&str) -> Option<String>,
        open_files: Option<u64>,
    ) -> Result<HealthConfig, String> {
        let pick = |flag: &Option<String>, flag_name: &'static str, var: &'static str| match flag {
            Some(v) => Some((v.clone(), flag_name)),
            None => env(var).map(|v| (v, var)),
        };

        let bind = match pick(&args.bind, "--bind", ENV_BIND) {
            Some((text, source)) => text.trim().parse().map_err(|_| {
                format!(
                    "{source}: expected an IP address and port like {DEFAULT_BIND}, got {text:?}"
                )
            })?,
            None => DEFAULT_BIND.parse().expect("the default parses"),
        };

        let socket = match (&args.socket, env(ENV_SOCKET)) {
            (Some(path), _) => path.clone(),
            (None, Some(path)) if !path.is_empty() => PathBuf::from(path),
            _ => {
                let dir = match (&args.data_dir, env(ENV_DATA_DIR)) {
                    (Some(dir), _) => dir.clone(),
                    (None, Some(dir)) if !dir.is_empty() => PathBuf::from(dir),
                    _ => default_data_dir(&env).ok_or(
                        "no control socket given and $HOME is not set: pass --socket or --data-dir",
                    )?,
                };
                dir.join(bsv_p2p_proto::SOCKET_FILE)
            }
        };

        let millis =
            |value: Option<(String, &'static str)>, default: u64, min: u64, max: u64| match value {
                None => Ok(Duration::from_millis(default)),
                Some((text, source)) => match text.trim().parse::<u64>() {
                    Ok(ms) if ms >= min && ms <= max => Ok(Duration::from_millis(ms)),
                    _ => Err(format!(
                        "{source}: expected milliseconds from {min} to {max}, got {text:?}"
                    )),
                },
            };
        let max_age = millis(
            pick(&args.max_age, "--max-age", ENV_MAX_AGE),
            DEFAULT_MAX_AGE_MS,
            0,
            3_600_000,
        )?;
        let timeout = millis(
            pick(&args.timeout, "--timeout", ENV_TIMEOUT),
            DEFAULT_TIMEOUT_MS,
            100,
            3_600_000,
        )?;
        let request_timeout = millis(
            pick(
                &args.request_timeout,
                "--request-timeout",
                ENV_REQUEST_TIMEOUT,
            ),
            DEFAULT_REQUEST_TIMEOUT_MS,
            100,
            MAX_HTTP_TIMEOUT_MS,
        )?;
        let idle_timeout = millis(
            pick(&args.idle_timeout, "--idle-timeout", ENV_IDLE_TIMEOUT),
            DEFAULT_IDLE_TIMEOUT_MS,
            100,
            MAX_HTTP_TIMEOUT_MS,
        )?;
        let write_timeout = millis(
            pick(&args.write_timeout, "--write-timeout", ENV_WRITE_TIMEOUT),
            DEFAULT_WRITE_TIMEOUT_MS,
            100,
            MAX_HTTP_TIMEOUT_MS,
        )?;

        let max_connections = match pick(
            &args.max_connections,
            "--max-connections",
            ENV_MAX_CONNECTIONS,
        ) {
            None => DEFAULT_MAX_CONNECTIONS,
            Some((text, source)) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=65_536).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "{source}: expected a number of connections from 1 to 65536, got {text:?}"
                    ))
                }
            },
        };
        if let Some(open_files) = open_files {
            let room = open_files.saturating_sub(FD_RESERVE);
            if max_connections as u64 > room {
                let source = match (&args.max_connections, env(ENV_MAX_CONNECTIONS)) {
                    (Some(_), _) => "--max-connections".to_string(),
                    (None, Some(_)) => ENV_MAX_CONNECTIONS.to_string(),
                    (None, None) => {
                        format!("the default --max-connections (set it or {ENV_MAX_CONNECTIONS})")
                    }
                };
                return Err(format!(
                    "{source}: {max_connections} connections and the sidecar's own {FD_RESERVE} \
                     descriptors do not fit the open-file limit of {open_files} (ulimit -n): \
                     allow at most {room} connections or raise the limit"
                ));
            }
        }

        let federation_quorum = match pick(
            &args.federation_quorum,
            "--federation-quorum",
            ENV_FEDERATION_QUORUM,
        ) {
            None => 0,
            Some((text, source)) => match text.trim().parse::<usize>() {
                Ok(n) if n <= MAX_FEDERATED_RELAYS => n,
                _ => {
                    return Err(format!(
                        "{source}: expected a number of federated relays from 0 to \
                         {MAX_FEDERATED_RELAYS}, got {text:?}"
                    ))
                }
            },
        };

        let log_level = match pick(&args.log_level, "--log-level", ENV_LOG_LEVEL) {
            None => LevelFilter::Info,
            Some((text, source)) => text.trim().parse().map_err(|_| {
                format!("{source}: expected off, error, warn, info, debug or trace, got {text:?}")
            })?,
        };

        Ok(HealthConfig {
            bind,
            socket,
            max_age,
            timeout,
            limits: Limits {
                max_connections,
                request_timeout,
                idle_timeout,
                write_timeout,
            },
            federation_quorum,
            log_level,
        })
    }
}

/// The relay's own default, `~/.bsv-p2p/relay`.
fn default_data_dir(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(bsv_p2p_proto::DATA_DIR_IN_HOME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::from_args(&["bsv-p2p-health"], argv).expect("valid command line")
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_are_the_guides_port_and_the_relays_socket() {
        let c = HealthConfig::resolve(&args(&[]), env_of(&[("HOME", "/home/op")]), None).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:4003");
        assert_eq!(
            c.socket,
            PathBuf::from("/home/op/.bsv-p2p/relay/relay.sock")
        );
        assert_eq!(c.max_age, Duration::from_millis(250));
        assert_eq!(c.timeout, Duration::from_millis(2000));
        assert_eq!(
            c.limits,
            Limits {
                max_connections: 256,
                request_timeout: Duration::from_millis(5000),
                idle_timeout: Duration::from_millis(30000),
                write_timeout: Duration::from_millis(5000),
            }
        );
        assert_eq!(c.federation_quorum, 0, "no quorum unless asked for");
        assert_eq!(c.log_level, LevelFilter::Info);
    }

    #[test]
    fn the_federation_quorum_comes_from_the_flag_then_the_environment() {
        let env = env_of(&[("HOME", "/h"), (ENV_FEDERATION_QUORUM, "2")]);
        let c = HealthConfig::resolve(&args(&[]), &env, None).unwrap();
        assert_eq!(c.federation_quorum, 2);
        let c = HealthConfig::resolve(&args(&["--federation-quorum", " 64 "]), &env, None).unwrap();
        assert_eq!(c.federation_quorum, 64);
        let c = HealthConfig::resolve(&args(&["--federation-quorum", "0"]), &env, None).unwrap();
        assert_eq!(
            c.federation_quorum, 0,
            "the flag turns the environment's off"
        );
    }

    #[test]
    fn a_bad_federation_quorum_is_refused_naming_its_source() {
        let home = env_of(&[("HOME", "/h")]);
        for (given, shown) in [("65", "\"65\""), ("-1", "\"-1\""), ("two", "\"two\"")] {
            let e = HealthConfig::resolve(&args(&["--federation-quorum", given]), &home, None)
                .unwrap_err();
            assert_eq!(
                e,
                format!(
                    "--federation-quorum: expected a number of federated relays from 0 to 64, \
                     got {shown}"
                )
            );
        }
        let e = HealthConfig::resolve(
            &args(&[]),
            env_of(&[("HOME", "/h"), (ENV_FEDERATION_QUORUM, "")]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "BSV_P2P_HEALTH_FEDERATION_QUORUM: expected a number of federated relays from 0 to \
             64, got \"\""
        );
    }

    #[test]
    fn http_bounds_come_from_flags_then_the_environment() {
        let env = env_of(&[
            ("HOME", "/h"),
            (ENV_MAX_CONNECTIONS, "64"),
            (ENV_REQUEST_TIMEOUT, "1500"),
            (ENV_IDLE_TIMEOUT, "9000"),
            (ENV_WRITE_TIMEOUT, "2500"),
        ]);
        let c = HealthConfig::resolve(&args(&[]), &env, Some(1024)).unwrap();
        assert_eq!(
            c.limits,
            Limits {
                max_connections: 64,
                request_timeout: Duration::from_millis(1500),
                idle_timeout: Duration::from_millis(9000),
                write_timeout: Duration::from_millis(2500),
            }
        );
        let c = HealthConfig::resolve(
            &args(&["--max-connections", "900", "--request-timeout", "200"]),
            &env,
            Some(1024),
        )
        .unwrap();
        assert_eq!(c.limits.max_connections, 900);
        assert_eq!(c.limits.request_timeout, Duration::from_millis(200));
        assert_eq!(c.limits.idle_timeout, Duration::from_millis(9000));
    }

    #[test]
    fn the_connection_cap_must_fit_the_open_file_limit() {
        let home = env_of(&[("HOME", "/h")]);
        let e = HealthConfig::resolve(&args(&["--max-connections", "1000"]), &home, Some(1024))
            .unwrap_err();
        assert_eq!(
            e,
            "--max-connections: 1000 connections and the sidecar's own 64 descriptors do not \
             fit the open-file limit of 1024 (ulimit -n): allow at most 960 connections or \
             raise the limit"
        );
        let e = HealthConfig::resolve(
            &args(&[]),
            env_of(&[("HOME", "/h"), (ENV_MAX_CONNECTIONS, "2000")]),
            Some(1024),
        )
        .unwrap_err();
        assert!(
            e.starts_with("BSV_P2P_HEALTH_MAX_CONNECTIONS: 2000 connections"),
            "{e}"
        );
        let e = HealthConfig::resolve(&args(&[]), &home, Some(256)).unwrap_err();
        assert!(
            e.starts_with(
                "the default --max-connections (set it or BSV_P2P_HEALTH_MAX_CONNECTIONS): 256"
            ),
            "{e}"
        );
        assert!(
            HealthConfig::resolve(&args(&["--max-connections", "960"]), &home, Some(1024)).is_ok()
        );
        assert!(HealthConfig::resolve(&args(&["--max-connections", "60000"]), &home, None).is_ok());
    }

    #[test]
    fn flags_win_over_the_environment() {
        let env = env_of(&[
            ("HOME", "/home/op"),
            (ENV_BIND, "0.0.0.0:9000"),
            (ENV_SOCKET, "/env/relay.sock"),
            (ENV_MAX_AGE, "1000"),
        ]);
        let c = HealthConfig::resolve(
            &args(&["--bind", "127.0.0.1:4100", "--socket", "/flag/relay.sock"]),
            &env,
            None,
        )
        .unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:4100");
        assert_eq!(c.socket, PathBuf::from("/flag/relay.sock"));
        assert_eq!(c.max_age, Duration::from_millis(1000));
        let c = HealthConfig::resolve(&args(&[]), &env, None).unwrap();
        assert_eq!(c.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(c.socket, PathBuf::from("/env/relay.sock"));
    }

    #[test]
    fn a_data_dir_locates_the_socket() {
        let c = HealthConfig::resolve(
            &args(&["--data-dir", "/var/lib/bsv-p2p"]),
            env_of(&[]),
            None,
        )
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/var/lib/bsv-p2p/relay.sock"));
        let c = HealthConfig::resolve(&args(&[]), env_of(&[(ENV_DATA_DIR, "/srv/relay")]), None)
            .unwrap();
        assert_eq!(c.socket, PathBuf::from("/srv/relay/relay.sock"));
    }

    #[test]
    fn bad_values_name_their_source_and_what_was_expected() {
        let e = HealthConfig::resolve(
            &args(&["--bind", "localhost"]),
            env_of(&[("HOME", "/h")]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "--bind: expected an IP address and port like 127.0.0.1:4003, got \"localhost\""
        );
        let e = HealthConfig::resolve(
            &args(&[]),
            env_of(&[("HOME", "/h"), (ENV_MAX_AGE, "1s")]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "BSV_P2P_HEALTH_MAX_AGE_MS: expected milliseconds from 0 to 3600000, got \"1s\""
        );
        let e = HealthConfig::resolve(&args(&["--timeout", "5"]), env_of(&[("HOME", "/h")]), None)
            .unwrap_err();
        assert!(
            e.starts_with("--timeout: expected milliseconds from 100"),
            "{e}"
        );
        let e = HealthConfig::resolve(
            &args(&["--max-connections", "0"]),
            env_of(&[("HOME", "/h")]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "--max-connections: expected a number of connections from 1 to 65536, got \"0\""
        );
        let e = HealthConfig::resolve(
            &args(&[]),
            env_of(&[("HOME", "/h"), (ENV_IDLE_TIMEOUT, "120000")]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "BSV_P2P_HEALTH_IDLE_TIMEOUT_MS: expected milliseconds from 100 to 60000, got \"120000\""
        );
        let e = HealthConfig::resolve(&args(&[]), env_of(&[]), None).unwrap_err();
        assert!(e.contains("--socket or --data-dir"), "{e}");
    }
}
