//! A relay stand-in for tests (feature `testing`): a real server
//! ([`Listener`]) on a real socket in a fresh directory, with an in-memory
//! journal ([`MemoryJournal`]) and a task that answers every command with
//! fixed results ([`samples`]), or whatever the test's own task answers.
//! Raw line access for the tests that must send what no typed client
//! would. This crate's tests and every sidecar's test against this one
//! stand-in, so they all meet the same server.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::*;
use async_std::io::BufReader;
use async_std::os::unix::net::UnixStream;
use async_std::prelude::*;
use async_std::task::JoinHandle;
use serde_json::Value;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bsvp-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stand-in relay: the server and whatever answers its commands.
pub struct Relay {
    pub path: PathBuf,
    pub feed: Feed,
    trigger: Trigger,
    server: JoinHandle<()>,
}

impl Relay {
    /// A server at `path` whose relay answers every command at once.
    pub async fn start(config: ServerConfig, feed: Feed) -> Self {
        Self::start_with(config, feed, |commands| {
            async_std::task::spawn(answer(commands));
        })
        .await
    }

    /// A server whose commands go wherever `relay` sends them.
    pub async fn start_with(
        config: ServerConfig,
        feed: Feed,
        relay: impl FnOnce(Commands),
    ) -> Self {
        let path = config.path.clone();
        let (listener, commands) = Listener::bind(config, feed.clone()).await.unwrap();
        relay(commands);
        let (trigger, shutdown) = Shutdown::new();
        let server = async_std::task::spawn(listener.run(shutdown));
        Self {
            path,
            feed,
            trigger,
            server,
        }
    }

    pub async fn stop(self) {
        self.trigger.fire();
        async_std::future::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("the server stops within its write timeout");
    }
}

/// The server's defaults, with a short write timeout.
pub fn config(path: &Path) -> ServerConfig {
    let mut config = ServerConfig::new(path, "test-relay/1.0.0");
    config.write_timeout = Duration::from_secs(2);
    config
}

/// A feed over an in-memory journal of `capacity` events.
pub fn feed(capacity: usize) -> Feed {
    Feed::new(Arc::new(MemoryJournal::new(capacity)))
}

/// The relay's side: every command answered with [`samples`].
pub async fn answer(commands: Commands) {
    while let Ok(command) = commands.recv().await {
        match command {
            Command::Status(r) => r.ok(samples::status()),
            Command::Stats(r) => r.ok(samples::stats()),
            Command::Peers(r) => r.ok(samples::peers()),
            Command::Reservations(r) => r.ok(samples::reservations()),
            Command::Circuits(r) => r.ok(samples::circuits()),
            Command::Snapshot(p, r) => r.ok(samples::snapshot(&p.path)),
            Command::Reload(r) => r.ok(samples::reload()),
            Command::Shutdown(p, r) => r.ok(ShutdownResult {
                draining: p.drain,
                timeout_ms: p.timeout_ms.unwrap_or(10_000),
            }),
            Command::AclList(r) => r.ok(samples::acl_list()),
            Command::AclAdd(p, r) => r.ok(AclAddResult {
                added: true,
                entry: AclEntry {
                    peer_id: p.peer_id,
                    cidr: p.cidr,
                    list: p.list,
                    note: p.note,
                    added_at: Timestamp::from_unix_millis(1_738_324_800_000),
                    expires_at: p
                        .for_ms
                        .map(|ms| Timestamp::from_unix_millis(1_738_324_800_000 + ms)),
                    origin: AclOrigin::Control,
                },
                disconnected: 0,
            }),
            Command::AclRemove(_, r) => r.ok(AclRemoveResult { removed: true }),
        }
    }
}

/// Fixed results, one per method.
pub mod samples {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    pub fn status() -> StatusResult {
        StatusResult {
            peer_id: "12D3KooWRelay".into(),
            version: "0.1.0".into(),
            uptime_secs: 42,
            started_at: at(1_738_324_800_000),
            listen_addrs: vec!["/ip4/0.0.0.0/tcp/4001".into()],
            announce_addrs: vec!["/ip4/203.0.113.7/tcp/4001".into()],
            relay_addrs: vec!["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWRelay".into()],
            counts: Counts {
                connections: 3,
                peers: 2,
                reservations: 2,
                circuits: 1,
            },
            federation: Vec::new(),
        }
    }

    pub fn stats() -> StatsResult {
        StatsResult {
            uptime_secs: 42,
            connections: ConnectionStats {
                active: 3,
                by_direction: [(Direction::Inbound, 3)].into(),
                by_transport: [(Transport::Tcp, 1), (Transport::Websocket, 2)].into(),
                opened_total: 9,
                closed_total: 6,

                denied: Default::default(),
            },
            reservations: ReservationStats {
                active: 2,
                max: 128,
                created: 4,
                renewed: 1,
                denied: [(DenialReason::ReservationsFull, 2)].into(),
                expired: 1,
                closed: 1,
            },
            circuits: CircuitStats {
                active: 1,
                max: 16,
                opened: 3,
                closed: 2,
                closed_by_reason: [(CircuitEnd::Done, 2)].into(),
                denied: [(DenialReason::NoReservation, 1)].into(),
            },
            bytes_relayed: BytesRelayed {
                src_to_dst: 10,
                dst_to_src: 20,
            },
            denials: [
                (DenialReason::ReservationsFull, 2),
                (DenialReason::NoReservation, 1),
            ]
            .into(),
            errors: [("listener".to_string(), 1)].into(),
            process: ProcessStats {
                rss_bytes: 1 << 24,
                cpu_seconds: 0.25,
                open_fds: 17,
                threads: 4,
                start_time_secs: 1_738_324_800,
            },
            events: EventStats {
                last_seq: 7,
                journal_len: 7,
            },
            log: LogStats { lines_dropped: 0 },
            federation: Vec::new(),
        }
    }

    pub fn peers() -> PeersResult {
        PeersResult {
            peers: vec![Peer {
                peer_id: "12D3KooWBot".into(),
                connections: vec![PeerConnection {
                    direction: Direction::Inbound,
                    transport: Transport::Websocket,
                    remote_addr: "/ip4/198.51.100.4/tcp/51234/ws".into(),
                    opened_at: at(1_738_324_801_000),
                }],
                reserved: true,
                agent_version: Some("bsv-p2p/1.2.0".into()),
            }],
        }
    }

    pub fn reservations() -> ReservationsResult {
        ReservationsResult {
            reservations: vec![Reservation {
                peer_id: "12D3KooWBot".into(),
                addrs: vec!["/ip4/203.0.113.7/tcp/4001".into()],
                expires_at: 1_738_328_400,
                created_at: at(1_738_324_801_500),
                renewals: 0,
            }],
        }
    }

    pub fn circuits() -> CircuitsResult {
        CircuitsResult {
            circuits: vec![Circuit {
                id: 1,
                src: "12D3KooWA".into(),
                dst: "12D3KooWBot".into(),
                bytes_src_to_dst: 10,
                bytes_dst_to_src: 20,
                opened_at: at(1_738_324_802_000),
                age_secs: 5,
                limit: CircuitLimit::default(),
            }],
        }
    }

    pub fn snapshot(path: &Path) -> SnapshotResult {
        SnapshotResult {
            path: path.into(),
            bytes: 100,
            sha256: "00".repeat(32),
            seq: 7,
            taken_at: at(1_738_324_803_000),
        }
    }

    pub fn reload() -> ReloadResult {
        ReloadResult {
            applied: vec!["relay.reservations.max".into()],
            restart_required: vec!["listen".into()],
            errors: vec![],
        }
    }

    pub fn acl_list() -> AclListResult {
        AclListResult {
            entries: vec![AclEntry {
                peer_id: Some("12D3KooWBad".into()),
                cidr: None,
                list: AccessList::Deny,
                note: None,
                added_at: at(1_738_324_800_000),
                expires_at: None,
                origin: AclOrigin::Control,
            }],
            private: false,
        }
    }
}

/// A connection speaking raw lines.
pub struct Raw {
    pub stream: UnixStream,
    lines: async_std::io::Lines<BufReader<UnixStream>>,
}

impl Raw {
    /// Connects and returns the first line (the greeting, normally).
    pub async fn connect(path: &Path) -> (Self, Value) {
        let stream = UnixStream::connect(path).await.unwrap();
        let mut raw = Self {
            lines: BufReader::new(stream.clone()).lines(),
            stream,
        };
        let first = raw.recv().await.expect("a first line");
        (raw, first)
    }

    pub async fn send(&mut self, line: &str) {
        self.stream.write_all(line.as_bytes()).await.unwrap();
        self.stream.write_all(b"\n").await.unwrap();
    }

    /// The next line as JSON; None at EOF. Fails the test after 10 s.
    pub async fn recv(&mut self) -> Option<Value> {
        let line = async_std::future::timeout(Duration::from_secs(10), self.lines.next())
            .await
            .expect("a line within 10 s")?
            .ok()?;
        Some(serde_json::from_str(&line).unwrap())
    }

    pub async fn call(&mut self, line: &str) -> Value {
        self.send(line).await;
        self.recv().await.expect("a reply")
    }
}

/// An event for tests: its message is its number.
pub fn numbered(n: u64) -> EventKind {
    EventKind::Error {
        error_kind: "test".into(),
        message: n.to_string(),
    }
}
