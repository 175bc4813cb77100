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

/// The guide's local admin port: its health-check script asks
/// `http://localhost:4003/status`.
pub const DEFAULT_BIND: &str = "127.0.0.1:4003";
pub const DEFAULT_MAX_AGE_MS: u64 = 250;
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;

pub const ENV_BIND: &str = "BSV_P2P_HEALTH_BIND";
pub const ENV_SOCKET: &str = "BSV_P2P_HEALTH_SOCKET";
pub const ENV_DATA_DIR: &str = "BSV_P2P_HEALTH_DATA_DIR";
pub const ENV_MAX_AGE: &str = "BSV_P2P_HEALTH_MAX_AGE_MS";
pub const ENV_TIMEOUT: &str = "BSV_P2P_HEALTH_TIMEOUT_MS";
pub const ENV_LOG_LEVEL: &str = "BSV_P2P_HEALTH_LOG_LEVEL";

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
    /// log level: off, error, warn, info, debug or trace (default info; env BSV_P2P_HEALTH_LOG_LEVEL)
    #[argh(option)]
    pub log_level: Option<String>,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub socket: PathBuf,
    /// How old a relay reading may be when it is served.
    pub max_age: Duration,
    /// Connect and request timeout on the control socket.
    pub timeout: Duration,
    pub log_level: LevelFilter,
}

impl Config {
    /// Flags first, then `env` (a lookup, so tests need not touch the
    /// process environment), then defaults.
    pub fn resolve(args: &Args, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
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
                dir.join("relay.sock")
            }
        };

        let millis = |value: Option<(String, &'static str)>, default: u64, min: u64| match value {
            None => Ok(Duration::from_millis(default)),
            Some((text, source)) => match text.trim().parse::<u64>() {
                Ok(ms) if ms >= min && ms <= 3_600_000 => Ok(Duration::from_millis(ms)),
                _ => Err(format!(
                    "{source}: expected milliseconds from {min} to 3600000, got {text:?}"
                )),
            },
        };
        let max_age = millis(
            pick(&args.max_age, "--max-age", ENV_MAX_AGE),
            DEFAULT_MAX_AGE_MS,
            0,
        )?;
        let timeout = millis(
            pick(&args.timeout, "--timeout", ENV_TIMEOUT),
            DEFAULT_TIMEOUT_MS,
            100,
        )?;

        let log_level = match pick(&args.log_level, "--log-level", ENV_LOG_LEVEL) {
            None => LevelFilter::Info,
            Some((text, source)) => text.trim().parse().map_err(|_| {
                format!("{source}: expected off, error, warn, info, debug or trace, got {text:?}")
            })?,
        };

        Ok(Config {
            bind,
            socket,
            max_age,
            timeout,
            log_level,
        })
    }
}

/// The relay's own default, `~/.bsv-p2p/relay`.
fn default_data_dir(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".bsv-p2p").join("relay"))
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
        let c = Config::resolve(&args(&[]), env_of(&[("HOME", "/home/op")])).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:4003");
        assert_eq!(
            c.socket,
            PathBuf::from("/home/op/.bsv-p2p/relay/relay.sock")
        );
        assert_eq!(c.max_age, Duration::from_millis(250));
        assert_eq!(c.timeout, Duration::from_millis(2000));
        assert_eq!(c.log_level, LevelFilter::Info);
    }

    #[test]
    fn flags_win_over_the_environment() {
        let env = env_of(&[
            ("HOME", "/home/op"),
            (ENV_BIND, "0.0.0.0:9000"),
            (ENV_SOCKET, "/env/relay.sock"),
            (ENV_MAX_AGE, "1000"),
        ]);
        let c = Config::resolve(
            &args(&["--bind", "127.0.0.1:4100", "--socket", "/flag/relay.sock"]),
            &env,
        )
        .unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:4100");
        assert_eq!(c.socket, PathBuf::from("/flag/relay.sock"));
        assert_eq!(c.max_age, Duration::from_millis(1000));
        let c = Config::resolve(&args(&[]), &env).unwrap();
        assert_eq!(c.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(c.socket, PathBuf::from("/env/relay.sock"));
    }

    #[test]
    fn a_data_dir_locates_the_socket() {
        let c = Config::resolve(&args(&["--data-dir", "/var/lib/bsv-p2p"]), env_of(&[])).unwrap();
        assert_eq!(c.socket, PathBuf::from("/var/lib/bsv-p2p/relay.sock"));
        let c = Config::resolve(&args(&[]), env_of(&[(ENV_DATA_DIR, "/srv/relay")])).unwrap();
        assert_eq!(c.socket, PathBuf::from("/srv/relay/relay.sock"));
    }

    #[test]
    fn bad_values_name_their_source_and_what_was_expected() {
        let e = Config::resolve(&args(&["--bind", "localhost"]), env_of(&[("HOME", "/h")]))
            .unwrap_err();
        assert_eq!(
            e,
            "--bind: expected an IP address and port like 127.0.0.1:4003, got \"localhost\""
        );
        let e = Config::resolve(&args(&[]), env_of(&[("HOME", "/h"), (ENV_MAX_AGE, "1s")]))
            .unwrap_err();
        assert_eq!(
            e,
            "BSV_P2P_HEALTH_MAX_AGE_MS: expected milliseconds from 0 to 3600000, got \"1s\""
        );
        let e = Config::resolve(&args(&["--timeout", "5"]), env_of(&[("HOME", "/h")])).unwrap_err();
        assert!(
            e.starts_with("--timeout: expected milliseconds from 100"),
            "{e}"
        );
        let e = Config::resolve(&args(&[]), env_of(&[])).unwrap_err();
        assert!(e.contains("--socket or --data-dir"), "{e}");
    }
}
