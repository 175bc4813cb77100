//! One task per destination: read the records after its cursor, hand them
//! to its [`Sink`], and move the cursor only once the destination took
//! them. The same loop serves every destination, so retries, backoff,
//! splitting and the figures behave the same everywhere.
//!
//! - A destination that is down or throttling gets the same batch again,
//!   after its `Retry-After` if it gave one, otherwise after a backoff from
//!   [`RETRY_FIRST`] doubling to [`RETRY_MAX`], jittered.
//! - A rejected batch (HTTP 400) is counted and skipped, never sent again.
//! - A batch too large (HTTP 413) is sent again in halves, down to single
//!   records; a single record still too large is rejected.
//! - While it waits, the buffer may drop its oldest records (the buffer is
//!   full): the shipper then starts again from its moved cursor and first
//!   sends a record saying how many were dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_std::channel::Receiver;
use async_std::task;
use bsv_p2p_proto::Backoff;
use futures::future::BoxFuture;
use futures::FutureExt;

use crate::record::{self, Record};
use crate::sink::{Outcome, Sink};
use crate::store::Store;

pub const RETRY_FIRST: Duration = Duration::from_millis(250);
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// The longest `Retry-After` obeyed: a destination asking for more is
/// asked again after this.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);
/// Encoded bytes read per batch at most, whatever the record count.
pub const BATCH_BYTES: usize = 4 << 20;
/// How often an idle shipper looks for records without being woken.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The least time between two log lines about one destination's failures.
const COMPLAIN_EVERY: Duration = Duration::from_secs(30);

/// One destination's figures, read by `/metrics`.
#[derive(Default)]
pub struct Figures {
    pub name: String,
    /// The index of the next record not yet accepted.
    pub cursor: AtomicU64,
    /// Records accepted (including those a partial success refused).
    pub delivered: AtomicU64,
    /// Attempts that will be made again.
    pub retried: AtomicU64,
    /// Records rejected by the destination (400, 413 for a single record,
    /// a partial success's refusals) and not sent again.
    pub rejected: AtomicU64,
    /// Records dropped unsent because the buffer was full.
    pub dropped: AtomicU64,
    /// Dropped and not yet reported to the destination.
    pub dropped_unreported: AtomicU64,
    /// Unix milliseconds of the last accepted batch; 0: none yet.
    pub last_success_ms: AtomicU64,
    /// The relay sequence number of the newest record accepted.
    pub last_seq: AtomicU64,
    /// Whether the last attempt was accepted.
    pub up: AtomicBool,
}

impl Figures {
    pub fn new(name: String, cursor: u64) -> Self {
        let figures = Self {
            name,
            ..Self::default()
        };
        figures.cursor.store(cursor, Ordering::SeqCst);
        figures.up.store(true, Ordering::Relaxed);
        figures
    }

    /// Moves the cursor to at least `to` because the records below it were
    /// dropped; counts what this destination lost.
    pub fn drop_below(&self, to: u64) {
        let before = self.cursor.fetch_max(to, Ordering::SeqCst);
        if before < to {
            self.dropped.fetch_add(to - before, Ordering::Relaxed);
            self.dropped_unreported
                .fetch_add(to - before, Ordering::Relaxed);
        }
    }
}

pub struct Shipper {
    pub sink: Box<dyn Sink>,
    pub store: Arc<Store>,
    pub figures: Arc<Figures>,
    pub batch: usize,
    pub wake: Receiver<()>,
}

/// How delivering a batch ended.
enum Delivered {
    /// Accepted or rejected for good: the cursor moves past it.
    Done,
    /// The buffer dropped part of the batch meanwhile: read again.
    Moved,
}

impl Shipper {
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        let mut complained: Option<Instant> = None;
        loop {
            let from = self.figures.cursor.load(Ordering::SeqCst);
            let (store, batch) = (self.store.clone(), self.batch);
            let read = task::spawn_blocking(move || store.read(from, batch, BATCH_BYTES)).await;
            let read = match read {
                Ok(read) => read,
                Err(e) => {
                    log::error!("{}: cannot read the buffer: {e}", self.figures.name);
                    task::sleep(RETRY_MAX).await;
                    continue;
                }
            };
            if read.undecodable > 0 {
                self.figures
                    .rejected
                    .fetch_add(read.undecodable, Ordering::Relaxed);
            }
            if read.records.is_empty() && read.next == from {
                let _ = async_std::future::timeout(IDLE_POLL, self.wake.recv()).await;
                continue;
            }
            let mut records: Vec<Arc<Record>> = Vec::with_capacity(read.records.len() + 1);
            let unreported = self.figures.dropped_unreported.swap(0, Ordering::Relaxed);
            if unreported > 0 {
                let next_seq = read.records.first().map_or(0, |(_, r)| r.event.seq);
                records.push(Arc::new(record::dropped(unreported, next_seq)));
            }
            let last_seq = read.records.last().map(|(_, r)| r.event.seq);
            records.extend(read.records.into_iter().map(|(_, r)| r));
            // Nothing readable (every record skipped as undecodable): move on
            // without sending an empty batch.
            let outcome = if records.is_empty() {
                Delivered::Done
            } else {
                self.deliver(&records, from, &mut backoff, &mut complained)
                    .await
            };
            match outcome {
                Delivered::Moved => {
                    // The drop record was not sent: count it again.
                    if unreported > 0 {
                        self.figures
                            .dropped_unreported
                            .fetch_add(unreported, Ordering::Relaxed);
                    }
                    continue;
                }
                Delivered::Done => {}
            }
            if self
                .figures
                .cursor
                .compare_exchange(from, read.next, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // Dropped meanwhile: the cursor is already past what was sent.
                continue;
            }
            if let Some(seq) = last_seq {
                self.figures.last_seq.store(seq, Ordering::Relaxed);
            }
            let seq = self.figures.last_seq.load(Ordering::Relaxed);
            let (store, name, next) = (self.store.clone(), self.figures.name.clone(), read.next);
            if let Err(e) = task::spawn_blocking(move || store.set_cursor(&name, next, seq)).await {
                log::error!(
                    "{}: cannot store the cursor ({e}); what was sent may be sent again after a restart",
                    self.figures.name
                );
            }
        }
    }

    /// Sends `records` until accepted or rejected for good. `from` is the
    /// cursor they were read at: if the buffer moves it meanwhile, gives up
    /// on them.
    fn deliver<'a>(
        &'a mut self,
        records: &'a [Arc<Record>],
        from: u64,
        backoff: &'a mut Backoff,
        complained: &'a mut Option<Instant>,
    ) -> BoxFuture<'a, Delivered> {
        async move {
            loop {
                if self.figures.cursor.load(Ordering::SeqCst) != from {
                    return Delivered::Moved;
                }
                let outcome = self.sink.send(records).await;
                let name = &self.figures.name;
                match outcome {
                    Outcome::Accepted { refused } => {
                        let n = records.len() as u64;
                        self.figures.delivered.fetch_add(n, Ordering::Relaxed);
                        if refused > 0 {
                            self.figures.rejected.fetch_add(refused, Ordering::Relaxed);
                            log::warn!("{name}: the destination refused {refused} of {n} records");
                        }
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        self.figures.last_success_ms.store(now, Ordering::Relaxed);
                        if !self.figures.up.swap(true, Ordering::Relaxed) {
                            log::info!("{name}: delivering again");
                        }
                        backoff.reset();
                        return Delivered::Done;
                    }
                    Outcome::Rejected { why } => {
                        self.figures
                            .rejected
                            .fetch_add(records.len() as u64, Ordering::Relaxed);
                        log::error!(
                            "{name}: {} records rejected and not sent again: {why}",
                            records.len()
                        );
                        return Delivered::Done;
                    }
                    Outcome::TooLarge { why } => {
                        if records.len() == 1 {
                            self.figures.rejected.fetch_add(1, Ordering::Relaxed);
                            log::error!(
                                "{name}: a single record is too large and is not sent again: {why}"
                            );
                            return Delivered::Done;
                        }
                        let (left, right) = records.split_at(records.len() / 2);
                        log::warn!(
                            "{name}: {} records too large at once, sending {} and {}: {why}",
                            records.len(),
                            left.len(),
                            right.len()
                        );
                        if let Delivered::Moved =
                            self.deliver(left, from, backoff, complained).await
                        {
                            return Delivered::Moved;
                        }
                        return self.deliver(right, from, backoff, complained).await;
                    }
                    Outcome::Retry { after, why } => {
                        self.figures.retried.fetch_add(1, Ordering::Relaxed);
                        let wait = backoff.next_wait();
                        // Never sooner than the destination asked.
                        let wait = match after {
                            Some(after) => after.min(RETRY_AFTER_MAX).max(wait),
                            None => wait,
                        };
                        let was_up = self.figures.up.swap(false, Ordering::Relaxed);
                        if was_up || complained.is_none_or(|t| t.elapsed() >= COMPLAIN_EVERY) {
                            log::warn!(
                                "{name}: not delivered, trying again in {} ms: {why}",
                                wait.as_millis()
                            );
                            *complained = Some(Instant::now());
                        }
                        task::sleep(wait).await;
                    }
                }
            }
        }
        .boxed()
    }
}
