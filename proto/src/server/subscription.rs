//! One client's event stream: first what it missed, from the journal, then
//! live events from the [`Feed`](super::Feed). Runs as its own task beside
//! the client's request loop, writing into the same bounded outgoing queue,
//! and ends when the client goes, when the feed cuts it off for falling
//! behind (-32003, then the connection is closed), or when the journal
//! fails (-32603, likewise).

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_std::channel::{Receiver, Sender};
use async_std::os::unix::net::UnixStream;
use futures::future::{select, Either};
use serde_json::json;

use super::feed::Live;
use crate::jsonrpc::{self, code, Response, RpcError};
use crate::methods::EVENT;
use crate::{Event, EventKind, Journal, Read};

/// Events read from the journal at a time while catching up.
const BATCH: usize = 256;

pub(super) struct Subscription {
    pub(super) live: Live,
    /// The next sequence number this subscriber has not been sent.
    pub(super) cursor: u64,
    pub(super) kinds: Option<Vec<String>>,
    pub(super) journal: Arc<dyn Journal>,
    pub(super) out: Sender<Vec<u8>>,
    /// Closes when the client's request loop ends.
    pub(super) alive: Receiver<()>,
    pub(super) stream: UnixStream,
    pub(super) write_timeout: Duration,
    pub(super) client: u64,
}

enum End {
    /// The client is gone; there is nobody to tell.
    Gone,
    /// Tell the client, then close its connection.
    Error(RpcError),
}

impl Subscription {
    pub(super) async fn run(mut self) {
        let end = match self.catch_up().await {
            Ok(()) => self.follow().await,
            Err(end) => end,
        };
        if let End::Error(error) = end {
            log::warn!(event = "control_subscriber_dropped", client = self.client, code = error.code, reason = error.message.as_str(); "");
            let line = jsonrpc::line(&Response::new(serde_json::Value::Null, Err(error)));
            let _ = async_std::future::timeout(self.write_timeout, self.out.send(line)).await;
            // Ends the client's request loop, which closes the connection
            // once the queue is written.
            let _ = self.stream.shutdown(std::net::Shutdown::Read);
        }
    }

    /// Sends what the journal holds from the cursor up to where the live
    /// feed starts.
    async fn catch_up(&mut self) -> Result<(), End> {
        while self.cursor < self.live.from {
            if self.alive.is_closed() {
                return Err(End::Gone);
            }
            let read = self.journal.read_from(self.cursor, BATCH).map_err(|e| {
                End::Error(RpcError::internal(format!(
                    "event journal read failed: {e}"
                )))
            })?;
            match read {
                Read::Gap { from, to } => {
                    // Events pruned after this subscriber joined are in its
                    // live buffer: the gap stops short of them.
                    let to = to.min(self.live.from - 1);
                    self.send(&Event::gap(from, to)).await?;
                    self.cursor = to + 1;
                }
                // Fewer events than numbers: some appends failed.
                Read::Events(events) if events.is_empty() => return Ok(()),
                Read::Events(events) => {
                    for event in events {
                        if event.seq >= self.live.from {
                            return Ok(());
                        }
                        self.cursor = event.seq + 1;
                        self.deliver(&event).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn follow(&mut self) -> End {
        loop {
            let next = match select(pin!(self.live.events.recv()), pin!(self.alive.recv())).await {
                Either::Left((next, _)) => next,
                Either::Right(_) => return End::Gone,
            };
            let Ok(event) = next else {
                return if self.live.overflowed.load(Ordering::Acquire) {
                    let waiting = self.live.events.capacity().unwrap_or(0);
                    End::Error(
                        RpcError::new(
                            code::SUBSCRIBER_TOO_SLOW,
                            format!(
                                "subscriber too slow: more than {waiting} events were waiting; \
                                 resubscribe with fromSeq {}",
                                self.cursor
                            ),
                        )
                        .with_data(json!({ "resumeFrom": self.cursor })),
                    )
                } else {
                    End::Gone
                };
            };
            if event.seq < self.cursor {
                continue;
            }
            self.cursor = event.seq + 1;
            if let Err(end) = self.deliver(&event).await {
                return end;
            }
        }
    }

    /// Sends the event if the subscriber wants its kind; gaps always.
    async fn deliver(&self, event: &Event) -> Result<(), End> {
        let wanted = match (&self.kinds, &event.kind) {
            (None, _) | (_, EventKind::Gap { .. }) => true,
            (Some(kinds), kind) => kinds.iter().any(|k| k == kind.name()),
        };
        if wanted {
            self.send(event).await
        } else {
            Ok(())
        }
    }

    async fn send(&self, event: &Event) -> Result<(), End> {
        let line = jsonrpc::notification(EVENT, event);
        self.out.send(line).await.map_err(|_| End::Gone)
    }
}
