//! One control client, like mini-redis's per-connection `Handler`: greet,
//! then read a request, run it, reply, until the client leaves or the
//! server stops. Replies (and events, when subscribed) go through a bounded
//! queue to a writer task that gives each line a deadline: a client that
//! stops reading is dropped after `write_timeout` and costs the server
//! nothing but its queue meanwhile.
//!
//! Each request is checked against the connection's role before it runs, and
//! a client that is not subscribed and sends nothing for `idle_timeout` is
//! told so and closed, so that forgotten clients give their slot back.

use std::net::Shutdown as Both;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::channel::{bounded, Receiver, Sender};
use async_std::future::timeout;
use async_std::os::unix::net::UnixStream;
use futures::AsyncWriteExt;
use serde_json::{json, Value};

use super::access::Caller;
use super::command::Command;
use super::subscription::Subscription;
use super::{Feed, ServerConfig};
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{self, code, Request, Response, RpcError};
use crate::methods::{
    major_of, parse_params, supports, Greeting, Hello, Method, Snapshot, Subscribe, SubscribeResult,
};
use crate::{Shutdown, MAX_LINE, PROTOCOL_VERSION};

pub(super) struct Connection {
    pub(super) caller: Caller,
    pub(super) stream: UnixStream,
    pub(super) config: Arc<ServerConfig>,
    pub(super) commands: Sender<Command>,
    pub(super) feed: Feed,
    pub(super) shutdown: Shutdown,
}

/// What the request loop holds while it runs.
struct Session {
    conn: Connection,
    out: Sender<Vec<u8>>,
    /// Dropped when the request loop ends; the subscription watches it.
    alive: (Sender<()>, Receiver<()>),
    subscribed: bool,
}

impl Connection {
    /// Serves the client until it leaves, is dropped, or the server stops;
    /// returns once its socket is closed.
    pub(super) async fn serve(self) {
        let (out, lines) = bounded(self.config.queue_len.max(1));
        let writer = async_std::task::spawn(write_lines(
            self.stream.clone(),
            lines,
            self.config.write_timeout,
            self.caller.client,
        ));
        let greeting = jsonrpc::notification(
            Hello::NAME,
            &Greeting::new(&self.config.server, self.caller.role.clone()),
        );
        if out.send(greeting).await.is_ok() {
            let mut session = Session {
                conn: self,
                out,
                alive: bounded(1),
                subscribed: false,
            };
            session.read_requests().await;
        }
        writer.await;
    }
}

impl Session {
    async fn read_requests(&mut self) {
        let mut lines = LineReader::new(self.conn.stream.clone(), MAX_LINE);
        let idle_timeout = self.conn.config.idle_timeout;
        // Counted from the greeting and from each reply, not from each read:
        // blank lines are not requests and do not keep a client alive.
        let mut idle_since = Instant::now();
        loop {
            // A subscriber legitimately sits silent while events flow to it.
            let idle_left =
                (!self.subscribed).then(|| idle_timeout.saturating_sub(idle_since.elapsed()));
            let next = async {
                match idle_left {
                    Some(left) => timeout(left, lines.next()).await.ok(),
                    None => Some(lines.next().await),
                }
            };
            let Some(read) = self.conn.shutdown.race(next).await else {
                self.goodbye(RpcError::new(
                    code::SHUTTING_DOWN,
                    "the relay is shutting down",
                ));
                return;
            };
            let Some(frame) = read else {
                let ms = idle_timeout.as_millis() as u64;
                log::debug!(event = "control_client_idle", client = self.conn.caller.client, idleTimeoutMs = ms; "");
                self.goodbye(
                    RpcError::new(
                        code::IDLE_TIMEOUT,
                        format!(
                            "closing this control connection: no request within the idle timeout of {ms} ms; reconnect to send one"
                        ),
                    )
                    .with_data(json!({ "idleTimeoutMs": ms })),
                );
                return;
            };
            let replied = match frame {
                Ok(Frame::Line(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Frame::Line(line)) => self.handle(&line).await,
                Ok(Frame::TooLong { len }) => {
                    let error = RpcError::new(
                        code::INVALID_REQUEST,
                        format!("line exceeds {MAX_LINE} bytes"),
                    )
                    .with_data(json!({ "bytes": len }));
                    self.reply(Value::Null, Err(error)).await
                }
                Ok(Frame::Eof) => return,
                Err(e) => {
                    log::debug!(event = "control_client_read_failed", client = self.conn.caller.client, error = e.to_string().as_str(); "");
                    return;
                }
            };
            if !replied {
                return;
            }
            idle_since = Instant::now();
        }
    }

    /// The last line before the server closes the connection. Not waited
    /// for: a client that does not read is not worth holding the close.
    fn goodbye(&self, error: RpcError) {
        let _ = self
            .out
            .try_send(jsonrpc::line(&Response::new(Value::Null, Err(error))));
    }

    /// Runs one request; false once the client can no longer be written to.
    async fn handle(&mut self, line: &[u8]) -> bool {
        let request = match Request::parse(line) {
            Ok(request) => request,
            Err((id, error)) => return self.reply(id, Err(error)).await,
        };
        let Request {
            id, method, params, ..
        } = request;
        let outcome = match method.as_str() {
            Hello::NAME => self
                .conn
                .caller
                .may_call::<Hello>()
                .and_then(|()| self.hello(params)),
            Subscribe::NAME => return self.subscribe(id, params).await,
            _ => self.ask_relay(&method, params).await,
        };
        match id {
            Some(id) => self.reply(id, outcome).await,
            // A notification gets no reply, even an error.
            None => true,
        }
    }

    async fn reply(&self, id: Value, outcome: Result<Value, RpcError>) -> bool {
        let line = jsonrpc::line(&Response::new(id, outcome));
        self.out.send(line).await.is_ok()
    }

    fn hello(&self, params: Option<Value>) -> Result<Value, RpcError> {
        let params = parse_params::<Hello>(params)?;
        if !supports(&params.version) {
            let hint = if major_of(&params.version) > major_of(PROTOCOL_VERSION) {
                "upgrade the relay, or use a client built for this version"
            } else {
                "upgrade the client"
            };
            return Err(RpcError::new(
                code::UNSUPPORTED_VERSION,
                format!(
                    "this relay speaks control protocol {PROTOCOL_VERSION}, the client speaks {}; {hint}",
                    params.version
                ),
            )
            .with_data(json!({ "serverVersion": PROTOCOL_VERSION })));
        }
        log::debug!(event = "control_client_hello", client = self.conn.caller.client, name = params.client.as_deref().unwrap_or("?"), version = params.version.as_str(); "");
        let greeting = Greeting::new(&self.conn.config.server, self.conn.caller.role.clone());
        Ok(serde_json::to_value(greeting).expect("a greeting serializes"))
    }

    /// Answers, then starts the event stream on this connection.
    async fn subscribe(&mut self, id: Option<Value>, params: Option<Value>) -> bool {
        let params = if let Err(refused) = self.conn.caller.may_call::<Subscribe>() {
            Err(refused)
        } else if self.subscribed {
            Err(RpcError::new(
                code::ALREADY_SUBSCRIBED,
                "this connection is already subscribed; open another connection for a second stream",
            ))
        } else {
            parse_params::<Subscribe>(params)
        };
        let params = match params {
            Ok(params) => params,
            Err(error) => {
                return match id {
                    Some(id) => self.reply(id, Err(error)).await,
                    None => true,
                }
            }
        };
        let live = self.conn.feed.subscribe();
        let start = match params.from_seq {
            None => live.from,
            // Numbers this journal never issued: it was reset. Replay it all.
            Some(seq) if seq > live.from => 1,
            Some(seq) => seq.max(1),
        };
        if let Some(id) = id {
            let result = serde_json::to_value(SubscribeResult { next_seq: start })
                .expect("a subscribe result serializes");
            if !self.reply(id, Ok(result)).await {
                return false;
            }
        }
        self.subscribed = true;
        async_std::task::spawn(
            Subscription {
                live,
                cursor: start,
                kinds: params.kinds,
                journal: self.conn.feed.journal().clone(),
                out: self.out.clone(),
                alive: self.alive.1.clone(),
                stream: self.conn.stream.clone(),
                write_timeout: self.conn.config.write_timeout,
                client: self.conn.caller.client,
            }
            .run(),
        );
        true
    }

    /// Hands the request to the relay and waits, within the request timeout,
    /// for it to be taken and answered.
    async fn ask_relay(&self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        let (command, answer) = Command::parse(method, params, &self.conn.caller)?;
        let limit = match method {
            Snapshot::NAME => self.conn.config.snapshot_timeout,
            _ => self.conn.config.request_timeout,
        };
        let started = Instant::now();
        let busy = |what: &str| {
            RpcError::new(
                code::RELAY_BUSY,
                format!(
                    "the relay did not {what} {method} within {} ms",
                    limit.as_millis()
                ),
            )
        };
        match timeout(limit, self.conn.commands.send(command)).await {
            Err(_) => return Err(busy("take")),
            Ok(Err(_)) => return Err(shutting_down()),
            Ok(Ok(())) => {}
        }
        match timeout(limit.saturating_sub(started.elapsed()), answer).await {
            Err(_) => Err(busy("answer")),
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) if self.conn.commands.is_closed() => Err(shutting_down()),
            Ok(Err(_)) => Err(RpcError::internal(format!(
                "the relay dropped the {method} request without answering"
            ))),
        }
    }
}

fn shutting_down() -> RpcError {
    RpcError::new(code::SHUTTING_DOWN, "the relay is shutting down")
}

/// Bytes of queued lines gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Writes queued lines until every sender is gone, then closes the socket.
/// A line that cannot be written within `limit` means the client stopped
/// reading: it is dropped rather than let the queue behind it grow.
async fn write_lines(
    mut stream: UnixStream,
    lines: Receiver<Vec<u8>>,
    limit: Duration,
    client: u64,
) {
    // Lines already queued go out in one write: a subscriber catching up
    // on the journal gets thousands of events without a syscall each.
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Ok(line) = lines.recv().await {
        batch.clear();
        batch.extend_from_slice(&line);
        while batch.len() < WRITE_BATCH {
            match lines.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        match timeout(limit, stream.write_all(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                log::warn!(event = "control_client_dropped", client = client, reason = "not reading", timeoutMs = limit.as_millis() as u64; "");
                break;
            }
        }
    }
    let _ = stream.shutdown(Both::Both);
}
