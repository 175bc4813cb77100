//! The local control protocol between the relay and its sidecars.
//!
//! The relay does no HTTP, no backups and no log shipping: the health server,
//! the log shipper, the backup tool and `bsv-p2p-ctl` are separate programs
//! that reach it only through one Unix socket. This crate is the one thing
//! they all share, so the wire format lives in exactly one place and both
//! ends compile against the same types: a server cannot send a malformed
//! result and a client gets typed values.
//!
//! - [`methods`]: every method's params and result, one file per method.
//! - [`event`]: the events a subscriber receives, numbered by the journal.
//! - [`jsonrpc`]: the JSON-RPC 2.0 envelope and the error codes.
//! - [`server`]: what the relay runs: the socket, one task per client, the
//!   command channel its swarm loop answers, and the event feed.
//! - [`client`]: what every sidecar runs: typed calls and a resumable
//!   event stream.
//! - [`journal`]: the trait the relay's on-disk journal implements so that
//!   subscribers can resume.
//! - [`process`]: a process's figures from `/proc` (CPU, memory, threads,
//!   descriptors), for the relay's `stats`, the sidecars' `process_*`
//!   metrics and the tests.
//! - [`backoff`]: the reconnect backoff every client of the socket uses.
//! - [`cli`]: the command line, read one way by every program (help, usage
//!   errors, exit code 2).
//! - `exposition` (feature `exposition`): figures written in the Prometheus
//!   exposition formats through the `prometheus-client` crate, the same way
//!   for every sidecar.
//! - `testing` (feature `testing`): a stand-in relay for tests, built from
//!   this crate's own [`Listener`] and [`MemoryJournal`].
//!
//! The crate root re-exports everything a relay or sidecar names, including
//! the method markers (`methods::Status`, …). One name is taken twice:
//! [`Shutdown`] at the root is the server's stop signal; the `shutdown`
//! method's marker is `methods::Shutdown`.
//!
//! No libp2p and no HTTP here: peer ids and multiaddrs travel as strings.
//! `README.md` beside this crate documents the wire protocol itself.

pub mod backoff;
pub mod cli;
pub mod client;
pub mod event;
#[cfg(feature = "exposition")]
pub mod exposition;
mod framing;
pub mod journal;
pub mod jsonrpc;
pub mod methods;
pub mod process;
pub mod server;
pub mod shutdown;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod vocabulary;

pub use backoff::Backoff;
pub use client::{Client, Error, Options, Subscription};
pub use event::{Event, EventKind};
pub use journal::{Journal, MemoryJournal, Read};
pub use jsonrpc::RpcError;
pub use methods::*;
pub use server::{BindError, Command, Commands, Feed, Listener, Reply, ServerConfig};
pub use shutdown::{Shutdown, Trigger};
pub use time::Timestamp;
pub use vocabulary::{CircuitEnd, DenialReason, Direction, Role, Transport};

/// The name in the greeting: a client that reads anything else is not
/// talking to a relay's control socket.
pub const PROTOCOL: &str = "bsv-p2p-control";

/// `major.minor`. Minor versions only add (fields, methods, event kinds) and
/// every reader tolerates what it does not know; a new major may change
/// anything, and both ends refuse a major they do not speak.
pub const PROTOCOL_VERSION: &str = "1.5";

/// The longest line the server reads, newline excluded. A longer request is
/// discarded without being buffered and answered with -32600.
pub const MAX_LINE: usize = 1 << 20;

/// The control socket's file name in the relay's data directory: the relay
/// listens at `<dataDir>/relay.sock` unless `control.socket` says otherwise,
/// and every client (sidecars, `bsv-p2p-ctl`) looks there by default.
pub const SOCKET_FILE: &str = "relay.sock";

/// The relay's default data directory, relative to `$HOME`.
pub const DATA_DIR_IN_HOME: &str = ".bsv-p2p/relay";

/// The default control socket under `home`: `<home>/.bsv-p2p/relay/relay.sock`.
pub fn default_socket(home: impl AsRef<std::path::Path>) -> std::path::PathBuf {
    home.as_ref().join(DATA_DIR_IN_HOME).join(SOCKET_FILE)
}
