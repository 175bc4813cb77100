//! The client every sidecar and `bsv-p2p-ctl` uses: typed calls over one
//! lazily (re)opened connection, and a resumable event stream. Sidecars
//! outlive relay restarts, so a call after the relay came back simply
//! reconnects, and the event stream reconnects on its own and resumes
//! where it stopped.
//!
//! ```no_run
//! # async fn sidecar() -> Result<(), bsv_p2p_proto::Error> {
//! use futures::StreamExt;
//! let relay = bsv_p2p_proto::Client::connect("/var/lib/bsv-p2p/relay.sock").await?;
//! println!("{} reservations", relay.status().await?.counts.reservations);
//! let mut events = relay.subscribe(Some(1), None).await?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         Ok(event) => println!("{} {}", event.seq, event.kind.name()),
//!         Err(e) => eprintln!("{e}"), // reported once per outage; the stream goes on
//!     }
//! }
//! # Ok(()) }
//! ```

mod connection;
mod error;
mod subscription;

pub use error::Error;
pub use subscription::Subscription;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_std::future::timeout;
use serde_json::Value;

use crate::jsonrpc::code;
use crate::methods::*;
use connection::{Conn, Exchange};

/// How a client identifies itself and how long it waits.
#[derive(Debug, Clone)]
pub struct Options {
    /// `name/version`, sent in `hello` for the relay's log.
    pub name: String,
    /// Connect, greeting and hello together.
    pub connect_timeout: Duration,
    /// One request. Longer than the server's own 10 s, so that a busy relay
    /// is reported by the server (-32004) rather than by a client timeout.
    pub request_timeout: Duration,
    /// `snapshot`, which writes a file.
    pub snapshot_timeout: Duration,
}

impl Options {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            snapshot_timeout: Duration::from_secs(310),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::new(concat!("bsv-p2p-proto/", env!("CARGO_PKG_VERSION")))
    }
}

/// Methods that are safe to send twice: a call that finds its reused
/// connection closed (the relay restarted since) is retried once on a new
/// one. Others are retried only when the server cannot have run them: the
/// request could not be written, or the server had closed the connection
/// for idleness (-32007) before reading it.
const RETRIED: &[&str] = &[
    Status::NAME,
    Stats::NAME,
    Peers::NAME,
    Reservations::NAME,
    Circuits::NAME,
    AclList::NAME,
];

/// A connection to the relay's control socket. Calls take `&self` and run
/// one at a time on one connection; use several clients for parallel calls.
pub struct Client {
    path: PathBuf,
    options: Options,
    conn: async_std::sync::Mutex<Option<Conn>>,
    greeting: Mutex<Greeting>,
}

impl Client {
    /// Connects with default [`Options`]: reads and checks the greeting
    /// (refusing an unknown major version) and says hello.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::connect_with(path, Options::default()).await
    }

    pub async fn connect_with(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let conn = Conn::open(&path, &options).await?;
        Ok(Self {
            greeting: Mutex::new(conn.greeting.clone()),
            path,
            options,
            conn: async_std::sync::Mutex::new(Some(conn)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The relay's greeting on the latest connection: protocol version and
    /// `name/version` of the relay.
    pub fn greeting(&self) -> Greeting {
        self.greeting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Any method by name, untyped: for tools that pass JSON through.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, Error> {
        let limit = match method {
            Snapshot::NAME => self.options.snapshot_timeout,
            _ => self.options.request_timeout,
        };
        let mut conn = self.conn.lock().await;
        let mut retried = false;
        loop {
            let reused = conn.is_some();
            if !reused {
                let fresh = Conn::open(&self.path, &self.options).await?;
                *self.greeting.lock().unwrap_or_else(|p| p.into_inner()) = fresh.greeting.clone();
                *conn = Some(fresh);
            }
            let exchange = conn
                .as_mut()
                .expect("opened above")
                .exchange(method, params.clone());
            let outcome = match timeout(limit, exchange).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Error::Timeout {
                    method: method.into(),
                    after: limit,
                }),
            };
            // Whether the server may have run the request before the
            // connection closed: then only calls safe to repeat are retried.
            let (closed, maybe_run) = match outcome {
                Ok(Exchange::Answer(answer)) => {
                    return answer.map_err(|error| Error::Server {
                        method: method.into(),
                        error,
                    })
                }
                Ok(Exchange::Unsent) => (None, false),
                Ok(Exchange::Closed(goodbye)) => {
                    let idle = goodbye
                        .as_ref()
                        .is_some_and(|e| e.code == code::IDLE_TIMEOUT);
                    (goodbye, !idle)
                }
                Err(e) => {
                    // Unknown state after a timeout or a garbled line.
                    *conn = None;
                    return Err(e);
                }
            };
            *conn = None;
            if reused && !retried && (!maybe_run || RETRIED.contains(&method)) {
                retried = true;
                continue;
            }
            return Err(match closed {
                Some(error) => Error::Server {
                    method: method.into(),
                    error,
                },
                None => Error::Disconnected(self.path.clone()),
            });
        }
    }

    /// Any method, typed by its [`Method`] marker.
    pub async fn request<M: Method>(&self, params: M::Params) -> Result<M::Result, Error> {
        let params = serde_json::to_value(params).expect("params always serialize");
        let result = self.call(M::NAME, params).await?;
        serde_json::from_value(result).map_err(|e| Error::Protocol {
            path: self.path.clone(),
            detail: format!("{}: malformed result: {e}", M::NAME),
        })
    }

    pub async fn status(&self) -> Result<StatusResult, Error> {
        self.request::<Status>(NoParams {}).await
    }

    pub async fn stats(&self) -> Result<StatsResult, Error> {
        self.request::<Stats>(NoParams {}).await
    }

    pub async fn peers(&self) -> Result<PeersResult, Error> {
        self.request::<Peers>(NoParams {}).await
    }

    pub async fn reservations(&self) -> Result<ReservationsResult, Error> {
        self.request::<Reservations>(NoParams {}).await
    }

    pub async fn circuits(&self) -> Result<CircuitsResult, Error> {
        self.request::<Circuits>(NoParams {}).await
    }

    /// `path` must be absolute: the relay resolves it, not the caller.
    pub async fn snapshot(&self, path: impl Into<PathBuf>) -> Result<SnapshotResult, Error> {
        self.request::<Snapshot>(SnapshotParams {
            path: path.into(),
            include_identity: None,
        })
        .await
    }

    pub async fn reload(&self) -> Result<ReloadResult, Error> {
        self.request::<Reload>(NoParams {}).await
    }

    pub async fn shutdown(&self, params: ShutdownParams) -> Result<ShutdownResult, Error> {
        self.request::<Shutdown>(params).await
    }

    pub async fn acl_list(&self) -> Result<AclListResult, Error> {
        self.request::<AclList>(NoParams {}).await
    }

    pub async fn acl_add(&self, params: AclAddParams) -> Result<AclAddResult, Error> {
        self.request::<AclAdd>(params).await
    }

    pub async fn acl_remove(&self, params: AclRemoveParams) -> Result<AclRemoveResult, Error> {
        self.request::<AclRemove>(params).await
    }

    /// Opens an event stream on its own connection, from `from_seq` (None:
    /// from now) and only of `kinds` (None: all). The first connection is
    /// made before this returns, so a missing relay is reported here; after
    /// that the stream reconnects by itself. See [`Subscription`].
    pub async fn subscribe(
        &self,
        from_seq: Option<u64>,
        kinds: Option<Vec<String>>,
    ) -> Result<Subscription, Error> {
        Subscription::open(self.path.clone(), self.options.clone(), from_seq, kinds).await
    }
}
