//! The resumable event stream. It remembers the next sequence number it
//! wants; when the connection drops (relay restart, cut off for being slow)
//! it reconnects with exponential backoff and jitter and subscribes again
//! from that number, so nothing the journal still holds is lost, and
//! anything it no longer holds arrives as one `gap` event. Events are
//! deduplicated by sequence number.
//!
//! `Err` items are reports, not the end: a disconnect is reported once per
//! outage and the stream goes on. Only a fatal error (see
//! [`Error::is_fatal`]) ends it, right after it is yielded.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_std::future::timeout;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::connection::{Conn, Exchange};
use super::{Error, Options};
use crate::framing::Frame;
use crate::jsonrpc::Incoming;
use crate::methods::{Method, Subscribe, SubscribeParams, SubscribeResult, EVENT};
use crate::{Backoff, Event};

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

pub struct Subscription {
    events: BoxStream<'static, Result<Event, Error>>,
}

impl Subscription {
    pub(super) async fn open(
        path: PathBuf,
        options: Options,
        from_seq: Option<u64>,
        kinds: Option<Vec<String>>,
    ) -> Result<Self, Error> {
        let mut cursor = Cursor {
            path,
            options,
            kinds,
            next: from_seq,
            conn: None,
            retry: Backoff::new(FIRST_RETRY, LAST_RETRY),
            reported: false,
            ended: false,
        };
        cursor.resubscribe().await?;
        let events = stream::unfold(cursor, |mut cursor| async move {
            let item = cursor.next_event().await?;
            Some((item, cursor))
        });
        Ok(Self {
            events: events.boxed(),
        })
    }
}

impl Stream for Subscription {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

struct Cursor {
    path: PathBuf,
    options: Options,
    kinds: Option<Vec<String>>,
    /// The next sequence number wanted; None until the relay first says.
    next: Option<u64>,
    conn: Option<Conn>,
    /// The waits between reconnect attempts.
    retry: Backoff,
    /// An outage was already reported.
    reported: bool,
    ended: bool,
}

impl Cursor {
    async fn next_event(&mut self) -> Option<Result<Event, Error>> {
        while !self.ended {
            let Some(conn) = self.conn.as_mut() else {
                async_std::task::sleep(self.retry.next_wait()).await;
                if let Err(e) = self.resubscribe().await {
                    if let Some(report) = self.report(e) {
                        return Some(Err(report));
                    }
                }
                continue;
            };
            let line = match conn.lines.next().await {
                Ok(Frame::Line(line)) => line,
                Ok(Frame::TooLong { .. }) => continue,
                Ok(Frame::Eof) | Err(_) => {
                    self.conn = None;
                    let gone = Error::Disconnected(self.path.clone());
                    if let Some(report) = self.report(gone) {
                        return Some(Err(report));
                    }
                    continue;
                }
            };
            match Incoming::parse(&line) {
                Ok(Incoming::Notification { method, params }) if method == EVENT => {
                    match self.accept(params) {
                        Ok(Some(event)) => return Some(Ok(event)),
                        Ok(None) => continue,
                        Err(e) => return Some(Err(e)),
                    }
                }
                // The relay's goodbye: shutting down, or cut off as too slow.
                Ok(Incoming::Response(response)) if response.id.is_null() => {
                    self.conn = None;
                    if let Some(error) = response.error {
                        let error = Error::Server {
                            method: Subscribe::NAME.into(),
                            error,
                        };
                        if let Some(report) = self.report(error) {
                            return Some(Err(report));
                        }
                    }
                }
                Ok(_) => continue,
                Err(detail) => return Some(Err(conn.protocol(detail))),
            }
        }
        None
    }

    /// An event to yield, or None for a duplicate.
    fn accept(&mut self, params: Value) -> Result<Option<Event>, Error> {
        let event: Event = serde_json::from_value(params).map_err(|e| Error::Protocol {
            path: self.path.clone(),
            detail: format!("malformed event: {e}"),
        })?;
        if self.next.is_some_and(|next| event.seq < next) {
            return Ok(None);
        }
        self.next = Some(event.seq + 1);
        Ok(Some(event))
    }

    /// Connects and subscribes from `next`.
    async fn resubscribe(&mut self) -> Result<(), Error> {
        let mut conn = Conn::open(&self.path, &self.options).await?;
        let params = SubscribeParams {
            from_seq: self.next,
            kinds: self.kinds.clone(),
        };
        let params = serde_json::to_value(params).expect("params always serialize");
        let limit = self.options.request_timeout;
        let answer = match timeout(limit, conn.exchange(Subscribe::NAME, params)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    method: Subscribe::NAME.into(),
                    after: limit,
                })
            }
            Ok(exchange) => exchange?,
        };
        let result = match answer {
            Exchange::Answer(Ok(result)) => result,
            Exchange::Answer(Err(error)) | Exchange::Closed(Some(error)) => {
                return Err(Error::Server {
                    method: Subscribe::NAME.into(),
                    error,
                })
            }
            Exchange::Unsent | Exchange::Closed(None) => {
                return Err(Error::Disconnected(self.path.clone()))
            }
        };
        let result: SubscribeResult = serde_json::from_value(result)
            .map_err(|e| conn.protocol(format!("subscribe: malformed result: {e}")))?;
        // Lower than asked only when the relay's journal started over: the
        // numbers seen before mean nothing now.
        self.next = Some(result.next_seq);
        self.conn = Some(conn);
        self.retry.reset();
        self.reported = false;
        Ok(())
    }

    /// What to yield for a failure: fatal ones end the stream; transient
    /// ones are reported once per outage.
    fn report(&mut self, error: Error) -> Option<Error> {
        if error.is_fatal() {
            self.ended = true;
            return Some(error);
        }
        if self.reported {
            return None;
        }
        self.reported = true;
        Some(error)
    }
}
