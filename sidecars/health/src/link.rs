//! The sidecar's one connection to the relay's control socket, and the
//! readings taken through it.
//!
//! Health checks and scrapes arrive far more often than the relay's counts
//! change, and the relay answers control requests from its swarm loop, so
//! the sidecar must not turn every HTTP request into a control request. Each
//! reading (`status`, `stats`) is therefore shared: a request is answered
//! with the newest reading if that reading was *started* no more than
//! `max_age` before the request arrived, otherwise it takes the reading
//! itself while concurrent requests wait for that one answer. So nothing
//! served is older than `max_age`, and the relay sees at most one request
//! per reading in flight however many HTTP clients ask.
//!
//! The connection itself is kept by [`Keeper`]: it connects at start, and
//! whenever a request finds the relay gone it reconnects with backoff in the
//! background. While the relay is unreachable, requests are answered at once
//! from that state instead of each waiting on a connect timeout.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_std::channel::{self, Receiver, Sender};
use async_std::task;
use bsv_p2p_proto::exposition::{latency_histogram, Histogram};
use bsv_p2p_proto::jsonrpc::code;
use bsv_p2p_proto::{Backoff, Client, Error, Options, StatsResult, StatusResult};

/// Reconnect backoff: from this, doubling, jittered.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Reconnect backoff cap: also the longest a restarted relay waits to be seen.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why a reading could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What an operator reads in `/health`: what failed and what to check.
    pub reason: String,
    /// Whether the relay answered at all (it reported an error) or could
    /// not be reached.
    pub reachable: bool,
}

/// Counts and timings of the requests made to the relay for one method.
pub struct Calls {
    pub errors: AtomicU64,
    /// Round trips, in seconds.
    pub duration: Histogram,
}

impl Default for Calls {
    fn default() -> Self {
        Self {
            errors: AtomicU64::new(0),
            duration: latency_histogram(),
        }
    }
}

/// A request's outcome and when it was sent.
struct Taken<T> {
    sent: Instant,
    outcome: Result<Arc<T>, Problem>,
}

struct Reading<T> {
    /// The newest reading.
    slot: async_std::sync::Mutex<Option<Taken<T>>>,
    calls: Calls,
}

impl<T> Default for Reading<T> {
    fn default() -> Self {
        Self {
            slot: async_std::sync::Mutex::new(None),
            calls: Calls::default(),
        }
    }
}

pub struct Link {
    socket: PathBuf,
    options: Options,
    max_age: Duration,
    /// Set once the first connection succeeds; the client reopens its
    /// connection by itself after a relay restart.
    client: RwLock<Option<Arc<Client>>>,
    up: AtomicBool,
    /// Why the relay is unreachable, while it is.
    down_reason: Mutex<String>,
    outages: AtomicU64,
    wake: Sender<()>,
    status: Reading<StatusResult>,
    stats: Reading<StatsResult>,
}

/// Reconnects the [`Link`] whenever it is down; run it as a task.
pub struct Keeper {
    link: Arc<Link>,
    woken: Receiver<()>,
}

impl Link {
    pub fn new(socket: PathBuf, timeout: Duration, max_age: Duration) -> (Arc<Link>, Keeper) {
        let mut options = Options::new(concat!("bsv-p2p-health/", env!("CARGO_PKG_VERSION")));
        options.connect_timeout = timeout;
        options.request_timeout = timeout;
        let (wake, woken) = channel::bounded(1);
        let link = Arc::new(Link {
            down_reason: Mutex::new(format!(
                "connecting to the relay's control socket at {}",
                socket.display()
            )),
            socket,
            options,
            max_age,
            client: RwLock::new(None),
            up: AtomicBool::new(false),
            outages: AtomicU64::new(0),
            wake,
            status: Reading::default(),
            stats: Reading::default(),
        });
        let keeper = Keeper {
            link: link.clone(),
            woken,
        };
        (link, keeper)
    }

    /// Whether the last contact with the relay succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Times the relay went from reachable to unreachable.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    pub fn status_calls(&self) -> &Calls {
        &self.status.calls
    }

    pub fn stats_calls(&self) -> &Calls {
        &self.stats.calls
    }

    /// The relay's `status`, no older than `max_age` at `arrival`.
    pub async fn status(&self, arrival: Instant) -> Result<Arc<StatusResult>, Problem> {
        self.read(&self.status, arrival, |c| async move { c.status().await })
            .await
    }

    /// The relay's `stats`, no older than `max_age` at `arrival`.
    pub async fn stats(&self, arrival: Instant) -> Result<Arc<StatsResult>, Problem> {
        self.read(&self.stats, arrival, |c| async move { c.stats().await })
            .await
    }

    async fn read<T, F, Fut>(
        &self,
        reading: &Reading<T>,
        arrival: Instant,
        request: F,
    ) -> Result<Arc<T>, Problem>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        if !self.is_up() {
            return Err(self.down());
        }
        let mut slot = reading.slot.lock().await;
        if let Some(taken) = slot.as_ref() {
            if arrival.saturating_duration_since(taken.sent) <= self.max_age {
                return taken.outcome.clone();
            }
        }
        // The relay may have gone while this request waited for the slot.
        let client = match self.client() {
            Some(client) if self.is_up() => client,
            _ => return Err(self.down()),
        };
        let sent = Instant::now();
        let outcome = request(client).await;
        reading.calls.duration.observe(sent.elapsed().as_secs_f64());
        let outcome = outcome.map(Arc::new).map_err(|e| {
            reading.calls.errors.fetch_add(1, Ordering::Relaxed);
            self.failed(&e)
        });
        // An unreachable relay is answered from the link's state, so that
        // the first request after the keeper reconnects asks again.
        *slot = match &outcome {
            Err(problem) if !problem.reachable => None,
            _ => Some(Taken {
                sent,
                outcome: outcome.clone(),
            }),
        };
        outcome
    }

    fn client(&self) -> Option<Arc<Client>> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn down(&self) -> Problem {
        Problem {
            reason: self
                .down_reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            reachable: false,
        }
    }

    /// Classifies a failed request: an error the relay sent while serving
    /// is its trouble; anything else means it cannot be reached, and the
    /// keeper takes over.
    fn failed(&self, e: &Error) -> Problem {
        let reason = e.to_string();
        let reachable = matches!(e, Error::Server { error, .. }
            if error.code != code::SHUTTING_DOWN && error.code != code::TOO_MANY_CLIENTS);
        if !reachable {
            self.mark_down(reason.clone());
        }
        Problem { reason, reachable }
    }

    fn mark_down(&self, reason: String) {
        let changed = {
            let mut held = self.down_reason.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *held != reason;
            *held = reason.clone();
            changed
        };
        let was_up = self.up.swap(false, Ordering::AcqRel);
        if was_up {
            self.outages.fetch_add(1, Ordering::Relaxed);
            let _ = self.wake.try_send(());
        }
        if was_up || changed {
            log::warn!("relay unreachable: {reason}");
        }
    }

    fn mark_up(&self, server: &str) {
        if !self.up.swap(true, Ordering::AcqRel) {
            log::info!("relay reachable at {} ({server})", self.socket.display());
        }
    }
}

impl Keeper {
    /// Runs for the life of the sidecar.
    pub async fn run(self) {
        let link = &self.link;
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            while link.is_up() {
                if self.woken.recv().await.is_err() {
                    return;
                }
            }
            let attempt = match link.client() {
                Some(client) => client.status().await.map(|_| client),
                None => Client::connect_with(&link.socket, link.options.clone())
                    .await
                    .map(Arc::new),
            };
            match attempt {
                Ok(client) => {
                    let server = client.greeting().server;
                    *link.client.write().unwrap_or_else(|p| p.into_inner()) = Some(client);
                    link.mark_up(&server);
                    backoff.reset();
                }
                Err(e) => {
                    link.mark_down(e.to_string());
                    task::sleep(backoff.next_wait()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bsv_p2p_proto::testing::{config, feed, samples, Relay, TempDir};
    use bsv_p2p_proto::Command;
    use std::sync::atomic::AtomicUsize;

    /// proto's stand-in relay, answering `status` after `delay` and
    /// counting the requests it got.
    async fn stand_in(path: &std::path::Path, delay: Duration) -> (Relay, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let relay = Relay::start_with(config(path), feed(100), move |commands| {
            task::spawn(async move {
                while let Ok(command) = commands.recv().await {
                    if let Command::Status(reply) = command {
                        counter.fetch_add(1, Ordering::SeqCst);
                        task::sleep(delay).await;
                        reply.ok(samples::status());
                    }
                }
            });
        })
        .await;
        (relay, asked)
    }

    async fn until_up(link: &Link) {
        for _ in 0..100 {
            if link.is_up() {
                return;
            }
            task::sleep(Duration::from_millis(50)).await;
        }
        panic!("the link did not come up: {}", link.down().reason);
    }

    #[test]
    fn concurrent_requests_share_one_reading_and_none_is_older_than_max_age() {
        task::block_on(async {
            let dir = TempDir::new("health-share");
            let socket = dir.join("relay.sock");
            let (_relay, asked) = stand_in(&socket, Duration::from_millis(50)).await;
            let (link, keeper) =
                Link::new(socket, Duration::from_secs(2), Duration::from_millis(300));
            task::spawn(keeper.run());
            until_up(&link).await;

            let arrival = Instant::now();
            let reads = (0..50).map(|_| link.status(arrival));
            for outcome in futures::future::join_all(reads).await {
                assert_eq!(outcome.expect("read").peer_id, samples::status().peer_id);
            }
            assert_eq!(
                asked.load(Ordering::SeqCst),
                1,
                "fifty requests, one reading"
            );

            link.status(Instant::now()).await.unwrap();
            assert_eq!(asked.load(Ordering::SeqCst), 1, "still fresh");
            task::sleep(Duration::from_millis(350)).await;
            link.status(Instant::now()).await.unwrap();
            assert_eq!(
                asked.load(Ordering::SeqCst),
                2,
                "older than max_age: asked again"
            );
            assert_eq!(link.status_calls().errors.load(Ordering::Relaxed), 0);
        });
    }

    #[test]
    fn a_relay_that_stops_is_reported_at_once_and_found_again_when_it_returns() {
        task::block_on(async {
            let dir = TempDir::new("health-restart");
            let socket = dir.join("relay.sock");
            let (relay, _) = stand_in(&socket, Duration::ZERO).await;
            let (link, keeper) = Link::new(socket.clone(), Duration::from_secs(2), Duration::ZERO);
            task::spawn(keeper.run());
            until_up(&link).await;
            link.status(Instant::now()).await.unwrap();

            relay.stop().await;
            task::sleep(Duration::from_millis(200)).await;
            let problem = link.status(Instant::now()).await.unwrap_err();
            assert!(!problem.reachable, "{problem:?}");
            assert!(!link.is_up());
            assert_eq!(link.outages(), 1);
            // While down, requests are answered without waiting on the socket.
            let asked_at = Instant::now();
            let again = link.status(Instant::now()).await.unwrap_err();
            assert!(asked_at.elapsed() < Duration::from_millis(50));
            assert!(again.reason.contains("relay.sock"), "{again:?}");

            let (_relay, _) = stand_in(&socket, Duration::ZERO).await;
            until_up(&link).await;
            assert_eq!(
                link.status(Instant::now()).await.unwrap().peer_id,
                samples::status().peer_id
            );
        });
    }
}
