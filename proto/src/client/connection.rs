//! One connection to the control socket, from the client's side: connect,
//! check the greeting, say hello, then exchange one request at a time.
//! Shared by [`Client`](super::Client) calls and by the subscription stream,
//! which opens its own.

use std::path::{Path, PathBuf};

use async_std::future::timeout;
use async_std::os::unix::net::UnixStream;
use futures::AsyncWriteExt;
use serde_json::{json, Value};

use super::{Error, Options};
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{self, code, Incoming, Request, RpcError};
use crate::methods::{supports, Greeting, Hello, HelloParams, Method};
use crate::{PROTOCOL, PROTOCOL_VERSION};

/// The longest line a client reads: results such as `peers` on a busy relay
/// may exceed the 1 MiB the server accepts.
const MAX_RESULT_LINE: usize = 64 << 20;

pub(crate) struct Conn {
    path: PathBuf,
    pub(crate) lines: LineReader<UnixStream>,
    writer: UnixStream,
    pub(crate) greeting: Greeting,
    next_id: u64,
}

/// How a request ended on this connection.
pub(crate) enum Exchange {
    Answer(Result<Value, RpcError>),
    /// The connection was closed before the request could be written: the
    /// server never read it, so any method may be sent again.
    Unsent,
    /// The connection closed first, after a goodbye error if there was one.
    Closed(Option<RpcError>),
}

impl Conn {
    /// Connects, checks the greeting and says hello, within
    /// `options.connect_timeout`.
    pub(crate) async fn open(path: &Path, options: &Options) -> Result<Self, Error> {
        timeout(options.connect_timeout, Self::handshake(path, options))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    method: "connect".into(),
                    after: options.connect_timeout,
                })
            })
    }

    async fn handshake(path: &Path, options: &Options) -> Result<Self, Error> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        let mut lines = LineReader::new(stream.clone(), MAX_RESULT_LINE);
        let not_a_relay = |detail: String| Error::NotARelay {
            path: path.to_path_buf(),
            detail,
        };
        let first = match lines.next().await.map_err(|e| Error::io(path, e))? {
            Frame::Line(line) => line,
            Frame::TooLong { .. } => return Err(not_a_relay("its first line is huge".into())),
            Frame::Eof => return Err(Error::Disconnected(path.to_path_buf())),
        };
        let greeting = match Incoming::parse(&first).map_err(not_a_relay)? {
            Incoming::Notification { method, params } if method == Hello::NAME => {
                serde_json::from_value::<Greeting>(params)
                    .map_err(|e| not_a_relay(format!("malformed greeting: {e}")))?
            }
            Incoming::Response(response) if response.error.is_some() => {
                return Err(Error::Server {
                    method: "connect".into(),
                    error: response.error.unwrap_or_else(|| RpcError::internal("?")),
                })
            }
            _ => return Err(not_a_relay("it did not greet with hello".into())),
        };
        if greeting.protocol != PROTOCOL {
            return Err(not_a_relay(format!("it speaks {:?}", greeting.protocol)));
        }
        if !supports(&greeting.version) {
            return Err(Error::VersionMismatch {
                server: greeting.version,
            });
        }
        let mut conn = Self {
            path: path.to_path_buf(),
            lines,
            writer: stream,
            greeting,
            next_id: 0,
        };
        let hello = HelloParams {
            version: PROTOCOL_VERSION.into(),
            client: Some(options.name.clone()),
        };
        match conn.exchange(Hello::NAME, json!(hello)).await? {
            Exchange::Answer(Ok(_)) => Ok(conn),
            Exchange::Answer(Err(error)) if error.code == code::UNSUPPORTED_VERSION => {
                Err(Error::VersionMismatch {
                    server: conn.greeting.version,
                })
            }
            Exchange::Answer(Err(error)) | Exchange::Closed(Some(error)) => Err(Error::Server {
                method: Hello::NAME.into(),
                error,
            }),
            Exchange::Unsent | Exchange::Closed(None) => Err(Error::Disconnected(conn.path)),
        }
    }

    /// Sends one request and reads until its response, skipping
    /// notifications and late answers to earlier, timed-out requests.
    pub(crate) async fn exchange(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Exchange, Error> {
        self.next_id += 1;
        let id = Value::from(self.next_id);
        let request = Request::new(Some(id.clone()), method, Some(params));
        if let Err(e) = self.writer.write_all(&jsonrpc::line(&request)).await {
            return match Error::io(&self.path, e) {
                Error::Disconnected(_) => Ok(Exchange::Unsent),
                other => Err(other),
            };
        }
        loop {
            let line = match self.lines.next().await {
                Ok(Frame::Line(line)) => line,
                Ok(Frame::TooLong { len }) => {
                    return Err(self.protocol(format!("a {len}-byte line, over the client's limit")))
                }
                Ok(Frame::Eof) => return Ok(Exchange::Closed(None)),
                Err(e) => {
                    return match Error::io(&self.path, e) {
                        Error::Disconnected(_) => Ok(Exchange::Closed(None)),
                        other => Err(other),
                    }
                }
            };
            match Incoming::parse(&line).map_err(|e| self.protocol(e))? {
                Incoming::Response(response) if response.id == id => {
                    return Ok(Exchange::Answer(match response.error {
                        Some(error) => Err(error),
                        None => Ok(response.result.unwrap_or(Value::Null)),
                    }))
                }
                // A goodbye (shutting down, cut off): the connection ends.
                Incoming::Response(response) if response.id.is_null() => {
                    return Ok(Exchange::Closed(response.error));
                }
                _ => continue,
            }
        }
    }

    pub(crate) fn protocol(&self, detail: impl Into<String>) -> Error {
        Error::Protocol {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }
}
