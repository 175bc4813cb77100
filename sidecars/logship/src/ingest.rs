//! Taking events in: one subscription to the relay's event stream, resumed
//! from the sequence number the store keeps, each event given its trace
//! context and appended to the buffer, then the destinations woken.
//!
//! The ingest never waits on a destination, and the relay never waits on
//! the ingest: the relay cuts off a subscriber that falls behind and the
//! subscription resumes from its journal. When the buffer holds more than
//! its bound, the oldest records are dropped for the destinations that
//! have not taken them (counted per destination, and each is sent a record
//! saying how many), so a dead destination costs disk up to the bound and
//! nothing else.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_std::channel::Sender;
use async_std::task;
use bsv_p2p_proto::{Backoff, Client, Event, EventKind, Options, Subscription};
use futures::{FutureExt, StreamExt};

use crate::record::Record;
use crate::shipper::Figures;
use crate::sink::{Relay, RelayIdentity};
use crate::store::Store;
use crate::tracker::{Change, Tracker};

/// Events appended to the buffer in one write at most.
const MAX_BATCH: usize = 1024;
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Where a sidecar with no stored position starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest event the relay's journal still holds.
    Oldest,
    /// Events from now on.
    Now,
}

/// The ingest's figures, read by `/metrics`.
#[derive(Default)]
pub struct IngestFigures {
    pub connected: AtomicBool,
    /// Events taken in since start.
    pub received: AtomicU64,
    /// Events the relay's journal lost before they were read (its `gap`s).
    pub relay_lost: AtomicU64,
    /// The relay sequence number of the newest event taken in.
    pub last_seq: AtomicU64,
    /// Records in the buffer.
    pub buffered: AtomicU64,
    /// The index the next record gets.
    pub next_index: AtomicU64,
    /// Failed writes to the buffer (each retried).
    pub store_errors: AtomicU64,
}

pub struct Ingest {
    pub socket: PathBuf,
    pub store: Arc<Store>,
    pub relay: RelayIdentity,
    pub destinations: Vec<(Arc<Figures>, Sender<()>)>,
    pub figures: Arc<IngestFigures>,
    /// Records the buffer holds at most.
    pub max_records: u64,
    pub start: Start,
    pub timeout: Duration,
}

fn options(timeout: Duration) -> Options {
    let mut options = Options::new(concat!("bsv-p2p-logship/", env!("CARGO_PKG_VERSION")));
    options.connect_timeout = timeout;
    options.request_timeout = timeout;
    options
}

impl Ingest {
    pub async fn run(self) {
        let store = self.store.clone();
        let restored = task::spawn_blocking(move || {
            Ok::<_, sled::Error>((
                store.open_spans()?,
                store.relay_last_seq()?,
                store.next_index()?,
                store.first_index()?,
            ))
        })
        .await;
        let (open, last_seq, mut next_index, mut first_index) = match restored {
            Ok(restored) => restored,
            Err(e) => {
                log::error!("cannot read the buffer: {e}");
                std::process::exit(1);
            }
        };
        let mut tracker = Tracker::restore(open, last_seq);
        self.figures.last_seq.store(last_seq, Ordering::Relaxed);
        self.figures.next_index.store(next_index, Ordering::Relaxed);
        self.figures
            .buffered
            .store(next_index - first_index, Ordering::Relaxed);
        let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
        let mut reported = false;
        loop {
            let mut subscription = match self.subscribe().await {
                Ok(subscription) => subscription,
                Err(e) => {
                    if !reported {
                        log::warn!("waiting for the relay: {e}");
                        reported = true;
                    }
                    task::sleep(backoff.next_wait()).await;
                    continue;
                }
            };
            backoff.reset();
            reported = false;
            self.figures.connected.store(true, Ordering::Relaxed);
            log::info!("reading the relay's events at {}", self.socket.display());
            let mut batch: Vec<Event> = Vec::with_capacity(MAX_BATCH);
            let mut ended = false;
            while !ended {
                let Some(item) = subscription.next().await else {
                    break;
                };
                match item {
                    Ok(event) => batch.push(event),
                    Err(e) => {
                        ended = self.on_error(e);
                        continue;
                    }
                }
                while batch.len() < MAX_BATCH {
                    match subscription.next().now_or_never() {
                        Some(Some(Ok(event))) => batch.push(event),
                        Some(Some(Err(e))) => {
                            ended = self.on_error(e);
                            break;
                        }
                        Some(None) => {
                            ended = true;
                            break;
                        }
                        None => break,
                    }
                }
                let was_down = !self.figures.connected.swap(true, Ordering::Relaxed);
                if was_down {
                    log::info!("the relay is back; reading its events again");
                    self.refresh_identity().await;
                }
                self.take(&mut batch, &mut tracker, &mut next_index, &mut first_index)
                    .await;
            }
            self.figures.connected.store(false, Ordering::Relaxed);
            task::sleep(backoff.next_wait()).await;
        }
    }

    /// Reports a subscription error; true if the subscription ended.
    fn on_error(&self, e: bsv_p2p_proto::Error) -> bool {
        self.figures.connected.store(false, Ordering::Relaxed);
        if e.is_fatal() {
            log::error!("the event stream ended: {e}; subscribing again");
            true
        } else {
            log::warn!("lost the relay ({e}); resuming when it is back");
            false
        }
    }

    /// Connects, reads the relay's identity and subscribes from where the
    /// store says.
    async fn subscribe(&self) -> Result<Subscription, String> {
        let client = Client::connect_with(&self.socket, options(self.timeout))
            .await
            .map_err(|e| e.to_string())?;
        let status = client.status().await.map_err(|e| e.to_string())?;
        self.set_identity(status.peer_id, status.version).await;
        let store = self.store.clone();
        let stored = task::spawn_blocking(move || store.relay_next_seq())
            .await
            .map_err(|e| format!("cannot read the buffer: {e}"))?;
        let from = match (stored, self.start) {
            (Some(next), _) => Some(next),
            (None, Start::Oldest) => Some(1),
            (None, Start::Now) => None,
        };
        client
            .subscribe(from, None)
            .await
            .map_err(|e| e.to_string())
    }

    async fn refresh_identity(&self) {
        if let Ok(client) = Client::connect_with(&self.socket, options(self.timeout)).await {
            if let Ok(status) = client.status().await {
                self.set_identity(status.peer_id, status.version).await;
            }
        }
    }

    async fn set_identity(&self, peer_id: String, version: String) {
        let relay = Relay { peer_id, version };
        if let Ok(mut slot) = self.relay.write() {
            if slot.as_ref() == Some(&relay) {
                return;
            }
            *slot = Some(relay.clone());
        }
        let store = self.store.clone();
        let _ =
            task::spawn_blocking(move || store.set_relay_identity(&relay.peer_id, &relay.version))
                .await;
    }

    /// Appends `batch` to the buffer (retrying until it can), trims it, and
    /// wakes the destinations.
    async fn take(
        &self,
        batch: &mut Vec<Event>,
        tracker: &mut Tracker,
        next_index: &mut u64,
        first_index: &mut u64,
    ) {
        if batch.is_empty() {
            return;
        }
        let mut changes = Vec::new();
        let mut encoded = Vec::with_capacity(batch.len());
        let mut decoded = Vec::with_capacity(batch.len());
        let last_seq = batch.last().map_or(0, |e| e.seq);
        for event in batch.drain(..) {
            if let EventKind::Gap { lost, from, to } = event.kind {
                log::warn!(
                    "the relay's journal lost events {from} to {to} ({lost}) before they were read"
                );
                self.figures.relay_lost.fetch_add(lost, Ordering::Relaxed);
            }
            let mut record = Record { event, ctx: None };
            tracker.enrich(&mut record, &mut changes);
            let bytes = serde_json::to_vec(&record).expect("a record serializes");
            decoded.push((Arc::new(record), bytes.len()));
            encoded.push(bytes);
        }
        let n = encoded.len() as u64;
        // Only the last change to each open span matters.
        let mut last_change = std::collections::HashMap::new();
        for (i, change) in changes.iter().enumerate() {
            let key = match change {
                Change::Put(key, _) | Change::Remove(key) => key.clone(),
            };
            last_change.insert(key, i);
        }
        let changes: Vec<Change> = changes
            .into_iter()
            .enumerate()
            .filter(|(i, change)| {
                let key = match change {
                    Change::Put(key, _) | Change::Remove(key) => key,
                };
                last_change.get(key) == Some(i)
            })
            .map(|(_, change)| change)
            .collect();
        let (encoded, changes) = (Arc::new(encoded), Arc::new(changes));
        let mut backoff = Backoff::new(RECONNECT_FIRST, Duration::from_secs(10));
        loop {
            let (store, first, encoded, changes) = (
                self.store.clone(),
                *next_index,
                encoded.clone(),
                changes.clone(),
            );
            let written =
                task::spawn_blocking(move || store.append(first, &encoded, &changes, last_seq))
                    .await;
            match written {
                Ok(()) => break,
                Err(e) => {
                    self.figures.store_errors.fetch_add(1, Ordering::Relaxed);
                    log::error!("cannot write to the buffer ({e}); trying again");
                    task::sleep(backoff.next_wait()).await;
                }
            }
        }
        self.store.remember(*next_index, &decoded);
        *next_index += n;
        self.figures.received.fetch_add(n, Ordering::Relaxed);
        self.figures.last_seq.store(last_seq, Ordering::Relaxed);
        self.figures
            .next_index
            .store(*next_index, Ordering::Relaxed);

        // Full: the oldest records go, for whoever has not taken them.
        if *next_index - *first_index > self.max_records {
            let keep_from = *next_index - self.max_records;
            for (figures, _) in &self.destinations {
                figures.drop_below(keep_from);
            }
        }
        let done_below = self
            .destinations
            .iter()
            .map(|(f, _)| f.cursor.load(Ordering::SeqCst))
            .min()
            .unwrap_or(*next_index);
        if done_below > *first_index {
            let store = self.store.clone();
            match task::spawn_blocking(move || store.trim_below(done_below)).await {
                Ok(first) => *first_index = first,
                Err(e) => log::error!("cannot trim the buffer: {e}"),
            }
        }
        self.figures
            .buffered
            .store(*next_index - *first_index, Ordering::Relaxed);
        for (_, wake) in &self.destinations {
            let _ = wake.try_send(());
        }
    }
}
