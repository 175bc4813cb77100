//! The relay's side of the control socket, shaped like mini-redis's
//! server: a [`Listener`] that owns the socket and accepts, and one task per
//! client (`connection`) with its own bounded queue. The relay plugs in at
//! two points only: it answers [`Command`]s from its swarm loop, and it
//! publishes events into the [`Feed`]. Nothing here ever waits on the relay
//! without a timeout, and nothing the relay does ever waits on a client.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use bsv_p2p_proto::*;
//! # async fn relay() -> Result<(), Box<dyn std::error::Error>> {
//! let feed = Feed::new(Arc::new(MemoryJournal::new(10_000)));
//! let config = ServerConfig::new("/var/lib/bsv-p2p/relay.sock", "bsv-p2p-relay/0.1.0");
//! let (listener, commands) = Listener::bind(config, feed.clone()).await?;
//! let (trigger, shutdown) = Shutdown::new();
//! async_std::task::spawn(listener.run(shutdown));
//! while let Ok(command) = commands.recv().await {
//!     match command {
//!         Command::Reload(reply) => reply.ok(ReloadResult::default()),
//!         other => drop(other), // the client gets -32603
//!     }
//! }
//! # drop(trigger); Ok(()) }
//! ```

mod access;
mod command;
mod connection;
mod feed;
mod subscription;

pub use access::{Admins, Peer};
pub use command::{Command, Reply};
pub use feed::{Feed, DEFAULT_SUBSCRIBER_BUFFER};

use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_std::channel::{bounded, Receiver, Sender};
use async_std::future::timeout;
use async_std::os::unix::net::{UnixListener, UnixStream};
use futures::AsyncWriteExt;
use serde_json::Value;

use crate::jsonrpc::{self, code, Response, RpcError};
use crate::Shutdown;
use access::Caller;
use connection::Connection;

/// The commands the relay answers, in the order clients sent them.
pub type Commands = Receiver<Command>;

/// A minute: a sidecar that keeps its connection (the health server) asks
/// far more often, one that does not (a nightly backup) reconnects without
/// noticing (the client in this crate retries a call the server closed for
/// idleness), and a person typing at `socat` has time to think; a client
/// left open by mistake frees its slot within that minute.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Every size and deadline of the server, each a budget chosen on purpose.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The socket (`<dataDir>/relay.sock`).
    pub path: PathBuf,
    /// `name/version` in the greeting.
    pub server: String,
    /// Clients served at once; one more is told -32002 and closed.
    pub max_clients: usize,
    /// Lines waiting to be written to one client.
    pub queue_len: usize,
    /// Commands waiting for the relay before clients are told -32004.
    pub command_capacity: usize,
    /// How long a request may wait to be taken and answered by the relay.
    pub request_timeout: Duration,
    /// The same for `snapshot`, which writes a file.
    pub snapshot_timeout: Duration,
    /// How long one line may take to write before the client is dropped.
    pub write_timeout: Duration,
    /// How long a client that is not subscribed may go without sending a
    /// request before it is told -32007 and closed, so that clients left
    /// open and forgotten cannot hold every slot of `max_clients`.
    pub idle_timeout: Duration,
    /// Who gets the admin role; everyone else is read-only.
    pub admins: Admins,
}

impl ServerConfig {
    pub fn new(path: impl Into<PathBuf>, server: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            server: server.into(),
            max_clients: 32,
            queue_len: 256,
            command_capacity: 64,
            request_timeout: Duration::from_secs(10),
            snapshot_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(5),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            admins: Admins::owner(),
        }
    }
}

/// Why the socket could not be bound. Each message says what to do.
#[derive(Debug)]
pub enum BindError {
    /// Something that is not a socket is in the way; it is never replaced.
    NotASocket(PathBuf),
    /// A live relay answers on the socket.
    InUse(PathBuf),
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotASocket(path) => write!(
                f,
                "{}: exists and is not a socket; refusing to replace it (move it away or use another dataDir)",
                path.display()
            ),
            Self::InUse(path) => write!(
                f,
                "{}: another relay is already listening here; stop it first or give this one another dataDir",
                path.display()
            ),
            Self::Io {
                path,
                action,
                source,
            } => write!(f, "{}: cannot {action}: {source}", path.display()),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The bound socket, ready to accept.
pub struct Listener {
    listener: UnixListener,
    config: Arc<ServerConfig>,
    commands: Sender<Command>,
    feed: Feed,
    /// Device and inode of the socket file we created, so that stopping
    /// removes our socket and never a newer relay's.
    inode: (u64, u64),
}

impl Listener {
    /// Binds the socket: creates its directory (mode 0750) if missing,
    /// replaces a stale socket left by a crash, refuses a path that is not a
    /// socket or that a live relay answers on, and sets mode 0660.
    pub async fn bind(config: ServerConfig, feed: Feed) -> Result<(Self, Commands), BindError> {
        let path = config.path.clone();
        let io_error = |action| {
            let path = path.clone();
            move |source| BindError::Io {
                path,
                action,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(dir)
                    .map_err(io_error("create the socket's directory"))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
                    .map_err(io_error("set the socket directory's mode"))?;
            }
        }
        remove_stale(&path).await?;
        let listener = UnixListener::bind(&path)
            .await
            .map_err(io_error("bind the control socket"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .map_err(io_error("set the control socket's mode"))?;
        let meta = std::fs::metadata(&path).map_err(io_error("stat the control socket"))?;
        let (commands, commands_rx) = bounded(config.command_capacity.max(1));
        let listener = Self {
            listener,
            config: Arc::new(config),
            commands,
            feed,
            inode: (meta.dev(), meta.ino()),
        };
        Ok((listener, commands_rx))
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Accepts clients until `shutdown` fires, then tells every client
    /// (-32001), closes them, removes the socket file, and returns once
    /// they are closed (or after `write_timeout`).
    pub async fn run(self, shutdown: Shutdown) {
        let Self {
            listener,
            config,
            commands,
            feed,
            inode,
        } = self;
        let ids = |ids: &[u32]| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        log::info!(event = "control_access", adminUids = ids(&config.admins.uids).as_str(), adminGids = ids(&config.admins.gids).as_str(), idleTimeoutMs = config.idle_timeout.as_millis() as u64; "control clients of these uids and gids are admin, all others read-only");
        let active = Arc::new(AtomicUsize::new(0));
        let numbers = AtomicU64::new(0);
        // Every client task holds a clone; `recv` fails once all are gone.
        let (done, all_done) = bounded::<()>(1);
        while let Some(accepted) = shutdown.race(listener.accept()).await {
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    log::warn!(event = "error", kind = "control_accept", error = e.to_string().as_str(); "");
                    async_std::task::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let client = numbers.fetch_add(1, Ordering::Relaxed) + 1;
            if active.load(Ordering::Acquire) >= config.max_clients {
                log::warn!(event = "control_client_refused", client = client, max = config.max_clients as u64; "too many control clients");
                async_std::task::spawn(refuse(stream, config.max_clients));
                continue;
            }
            let peer = match Peer::of(&stream) {
                Ok(peer) => Some(peer),
                Err(e) => {
                    log::warn!(event = "control_peer_unknown", client = client, error = e.to_string().as_str(); "cannot read the control client's credentials; it gets the read-only role");
                    None
                }
            };
            let role = config.admins.role_of(peer.as_ref());
            log::debug!(event = "control_client_accepted", client = client, role = role.as_str(), uid = peer.map(|p| p.uid), gid = peer.map(|p| p.gid), pid = peer.map(|p| p.pid); "");
            active.fetch_add(1, Ordering::AcqRel);
            let connection = Connection {
                caller: Caller { client, peer, role },
                stream,
                config: config.clone(),
                commands: commands.clone(),
                feed: feed.clone(),
                shutdown: shutdown.clone(),
            };
            let (active, done) = (active.clone(), done.clone());
            async_std::task::spawn(async move {
                connection.serve().await;
                active.fetch_sub(1, Ordering::AcqRel);
                drop(done);
            });
        }
        drop(listener);
        let ours =
            std::fs::symlink_metadata(&config.path).is_ok_and(|m| (m.dev(), m.ino()) == inode);
        if ours {
            let _ = std::fs::remove_file(&config.path);
        }
        drop(done);
        let _ = timeout(config.write_timeout, all_done.recv()).await;
    }
}

/// Removes a socket nobody answers on (a crashed relay's); refuses anything
/// else in the way.
async fn remove_stale(path: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(BindError::Io {
                path: path.into(),
                action: "inspect the socket path",
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket(path.into()));
    }
    match timeout(Duration::from_secs(2), UnixStream::connect(path)).await {
        // Connected, or a listener too busy to accept: someone is there.
        Ok(Ok(_)) | Err(_) => Err(BindError::InUse(path.into())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::warn!(event = "control_socket_stale", path = path.display().to_string().as_str(); "replacing a stale control socket left by an earlier relay");
            std::fs::remove_file(path).map_err(|source| BindError::Io {
                path: path.into(),
                action: "remove the stale control socket",
                source,
            })
        }
        Ok(Err(source)) => Err(BindError::Io {
            path: path.into(),
            action: "check whether the existing socket is live",
            source,
        }),
    }
}

/// Tells a client over the cap why it is turned away, then closes.
async fn refuse(mut stream: UnixStream, max: usize) {
    let error = RpcError::new(
        code::TOO_MANY_CLIENTS,
        format!(
            "too many control clients: the relay serves at most {max} at once; close one and retry"
        ),
    );
    let line = jsonrpc::line(&Response::new(Value::Null, Err(error)));
    let _ = timeout(Duration::from_secs(1), stream.write_all(&line)).await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
