//! The circuit table: every circuit from the moment a connect request is
//! accepted (waiting for the destination's stop stream, holding the source's
//! stream) until it ends. The counts the caps are checked against — circuits
//! in all, circuits per peer, circuits established — are kept here, updated
//! by the same calls that add and remove entries, so they cannot drift.
//!
//! Generic over the waiting source stream so that the bookkeeping can be
//! unit-tested without a network.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::channel::oneshot;
use libp2p::swarm::ConnectionId;
use libp2p::PeerId;

use super::circuit::{Counters, End};
use super::gate::Refusal;
use super::CircuitId;
use crate::config::CircuitLimits;

pub struct Circuit<S> {
    pub src: PeerId,
    pub dst: PeerId,
    pub src_conn: ConnectionId,
    pub dst_conn: ConnectionId,
    pub opened_at: Instant,
    /// When it was accepted, in unix seconds.
    pub opened: u64,
    pub counters: Arc<Counters>,
    /// The limits it runs under, from the config when it started.
    pub limits: CircuitLimits,
    established: bool,
    /// The source's stream, until the destination's stop stream arrives.
    waiting: Option<S>,
    /// Ends the running circuit when a side's connection closes: a dead
    /// connection does not always reach the circuit's streams as an error,
    /// and a half-open circuit would hold its slots for good.
    disconnect: Option<oneshot::Sender<End>>,
    /// Bytes both ways when last seen moving, and when.
    seen_bytes: u64,
    seen_at: Instant,
}

impl<S> Circuit<S> {
    /// Both sides are connected and bytes flow.
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// Bytes moved so far, source to destination and back.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.counters.src_to_dst.load(Ordering::Relaxed),
            self.counters.dst_to_src.load(Ordering::Relaxed),
        )
    }

    fn on(&self, conn: ConnectionId) -> bool {
        self.src_conn == conn || self.dst_conn == conn
    }
}

pub struct Circuits<S> {
    by_id: HashMap<CircuitId, Circuit<S>>,
    per_peer: HashMap<PeerId, usize>,
    established: usize,
    next_id: CircuitId,
}

impl<S> Default for Circuits<S> {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            per_peer: HashMap::new(),
            established: 0,
            next_id: 1,
        }
    }
}

impl<S> Circuits<S> {
    /// Circuits established or being set up: what `max` is checked against.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Circuits that carry bytes.
    pub fn established(&self) -> usize {
        self.established
    }

    /// Circuits `peer` takes part in, as source or destination.
    pub fn held_by(&self, peer: &PeerId) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    /// Whether one more circuit from `src` to `dst` fits under the caps.
    pub fn admit(
        &self,
        src: &PeerId,
        dst: &PeerId,
        max: usize,
        max_per_peer: usize,
    ) -> Result<(), Refusal> {
        if self.len() >= max {
            Err(Refusal::CircuitsFull)
        } else if self.held_by(src) >= max_per_peer || self.held_by(dst) >= max_per_peer {
            Err(Refusal::PeerCircuitsFull)
        } else {
            Ok(())
        }
    }

    /// Adds a circuit waiting for the destination, holding the source's
    /// stream. The caps are the caller's to check first, with `admit`.
    pub fn open(
        &mut self,
        (src, src_conn): (PeerId, ConnectionId),
        (dst, dst_conn): (PeerId, ConnectionId),
        waiting: S,
        unix_now: u64,
    ) -> CircuitId {
        let id = self.next_id;
        self.next_id += 1;
        *self.per_peer.entry(src).or_default() += 1;
        *self.per_peer.entry(dst).or_default() += 1;
        self.by_id.insert(
            id,
            Circuit {
                src,
                dst,
                src_conn,
                dst_conn,
                opened_at: Instant::now(),
                opened: unix_now,
                counters: Arc::new(Counters::default()),
                limits: CircuitLimits::default(),
                established: false,
                waiting: Some(waiting),
                disconnect: None,
                seen_bytes: 0,
                seen_at: Instant::now(),
            },
        );
        id
    }

    /// The destination's stop stream arrived: hands back the source's stream
    /// to run the circuit with, and keeps `disconnect` to end it when a
    /// side's connection closes. `None` if the circuit is gone or already
    /// started.
    pub fn start(
        &mut self,
        id: CircuitId,
        disconnect: oneshot::Sender<End>,
        limits: CircuitLimits,
    ) -> Option<(S, &Circuit<S>)> {
        let c = self.by_id.get_mut(&id)?;
        let stream = c.waiting.take()?;
        c.disconnect = Some(disconnect);
        c.seen_at = Instant::now();
        c.limits = limits;
        Some((stream, c))
    }

    /// The destination accepted: the circuit carries bytes. Returns its
    /// ends and limits the first time only.
    pub fn establish(&mut self, id: CircuitId) -> Option<(PeerId, PeerId, CircuitLimits)> {
        let c = self.by_id.get_mut(&id)?;
        if c.established {
            return None;
        }
        c.established = true;
        self.established += 1;
        Some((c.src, c.dst, c.limits.clone()))
    }

    /// Removes a circuit, giving back its slots; the entry is returned with
    /// the source stream it still held, if it never started.
    pub fn release(&mut self, id: CircuitId) -> Option<(Circuit<S>, Option<S>)> {
        let mut c = self.by_id.remove(&id)?;
        for p in [c.src, c.dst] {
            if let Some(n) = self.per_peer.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.per_peer.remove(&p);
                }
            }
        }
        if c.established {
            self.established -= 1;
        }
        let waiting = c.waiting.take();
        Some((c, waiting))
    }

    /// Circuits still waiting for a destination, with a side on `conn`.
    pub fn waiting_on(&self, conn: ConnectionId) -> Vec<CircuitId> {
        self.by_id
            .iter()
            .filter(|(_, c)| c.waiting.is_some() && c.on(conn))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Tells every running circuit with a side on `conn` to end.
    pub fn disconnect(&mut self, conn: ConnectionId) {
        for c in self.by_id.values_mut().filter(|c| c.on(conn)) {
            if let Some(tx) = c.disconnect.take() {
                let _ = tx.send(End::Disconnected);
            }
        }
    }

    /// Running circuits that moved no byte for `timeout` up to `now`; each
    /// is told to end (with [`End::Idle`]) and returned. Reads the byte
    /// counters only: nothing on the data path.
    pub fn end_idle(&mut self, now: Instant, timeout: std::time::Duration) -> Vec<CircuitId> {
        let mut ended = Vec::new();
        for (id, c) in self.by_id.iter_mut() {
            if c.disconnect.is_none() {
                continue; // waiting for its destination, or already told
            }
            let (up, down) = c.bytes();
            let total = up.wrapping_add(down);
            if total != c.seen_bytes {
                c.seen_bytes = total;
                c.seen_at = now;
            } else if now.saturating_duration_since(c.seen_at) >= timeout {
                if let Some(tx) = c.disconnect.take() {
                    let _ = tx.send(End::Idle);
                }
                ended.push(*id);
            }
        }
        ended
    }

    pub fn iter(&self) -> impl Iterator<Item = (CircuitId, &Circuit<S>)> {
        self.by_id.iter().map(|(id, c)| (*id, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    #[test]
    fn caps_count_every_circuit_and_each_side() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut t = Circuits::<u8>::default();
        assert_eq!(t.admit(&a, &b, 2, 1), Ok(()));
        t.open((a, conn(1)), (b, conn(2)), 0, 0);
        assert_eq!((t.held_by(&a), t.held_by(&b)), (1, 1));
        assert_eq!(t.admit(&a, &c, 2, 1), Err(Refusal::PeerCircuitsFull));
        assert_eq!(t.admit(&c, &b, 2, 1), Err(Refusal::PeerCircuitsFull));
        t.open((c, conn(3)), (a, conn(1)), 0, 0);
        assert_eq!(t.admit(&c, &b, 2, 5), Err(Refusal::CircuitsFull));
    }

    #[test]
    fn release_gives_back_every_slot_and_the_waiting_stream() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut t = Circuits::<&str>::default();
        let first = t.open((a, conn(1)), (b, conn(2)), "src stream", 0);
        let second = t.open((a, conn(1)), (b, conn(2)), "other", 0);
        assert_ne!(first, second);
        let (c, waiting) = t.release(first).unwrap();
        assert_eq!((c.src, c.dst, waiting), (a, b, Some("src stream")));
        assert_eq!((t.len(), t.held_by(&a), t.held_by(&b)), (1, 1, 1));
        assert!(t.release(first).is_none(), "a second release is a no-op");
        t.release(second).unwrap();
        assert_eq!(t.len(), 0);
        assert!(t.per_peer.is_empty(), "no zero counts are kept");
    }

    #[test]
    fn a_circuit_is_established_once_and_counted_until_released() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut t = Circuits::<()>::default();
        let id = t.open((a, conn(1)), (b, conn(2)), (), 0);
        assert_eq!(t.established(), 0);
        let (tx, _rx) = oneshot::channel();
        assert!(t.start(id, tx, CircuitLimits::default()).is_some());
        let (tx, _rx) = oneshot::channel();
        assert!(
            t.start(id, tx, CircuitLimits::default()).is_none(),
            "the source stream is handed out once"
        );
        assert_eq!(t.establish(id), Some((a, b, CircuitLimits::default())));
        assert_eq!(t.establish(id), None);
        assert_eq!(t.established(), 1);
        let (c, waiting) = t.release(id).unwrap();
        assert!(c.is_established() && waiting.is_none());
        assert_eq!(t.established(), 0);
    }

    #[test]
    fn a_closed_connection_fails_waiting_circuits_and_ends_running_ones() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut t = Circuits::<()>::default();
        let waiting = t.open((a, conn(1)), (b, conn(2)), (), 0);
        let running = t.open((c, conn(3)), (b, conn(2)), (), 0);
        let elsewhere = t.open((c, conn(3)), (a, conn(1)), (), 0);
        let (tx, mut rx) = oneshot::channel();
        t.start(running, tx, CircuitLimits::default()).unwrap();
        let (tx, mut other) = oneshot::channel();
        t.start(elsewhere, tx, CircuitLimits::default()).unwrap();
        assert_eq!(t.waiting_on(conn(2)), vec![waiting]);
        t.disconnect(conn(2));
        assert_eq!(rx.try_recv(), Ok(Some(End::Disconnected)));
        assert_eq!(
            other.try_recv(),
            Ok(None),
            "a circuit on other connections runs on"
        );
    }

    #[test]
    fn circuits_that_move_no_bytes_end_after_the_idle_timeout() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut t = Circuits::<()>::default();
        let quiet = t.open((a, conn(1)), (b, conn(2)), (), 0);
        let busy = t.open((b, conn(2)), (a, conn(1)), (), 0);
        let waiting = t.open((a, conn(1)), (b, conn(2)), (), 0);
        let (tx, mut quiet_rx) = oneshot::channel();
        t.start(quiet, tx, CircuitLimits::default()).unwrap();
        let (tx, mut busy_rx) = oneshot::channel();
        t.start(busy, tx, CircuitLimits::default()).unwrap();
        let start = Instant::now();
        let idle = std::time::Duration::from_secs(60);
        assert!(t.end_idle(start + idle / 2, idle).is_empty());
        t.by_id[&busy]
            .counters
            .src_to_dst
            .fetch_add(10, Ordering::Relaxed);
        assert!(t.end_idle(start + idle / 2 + idle / 4, idle).is_empty());
        assert_eq!(t.end_idle(start + idle + idle / 8, idle), vec![quiet]);
        assert_eq!(quiet_rx.try_recv(), Ok(Some(End::Idle)));
        assert_eq!(busy_rx.try_recv(), Ok(None), "it moved bytes a quarter ago");
        assert!(t.end_idle(start + idle * 3, idle).contains(&busy));
        assert!(
            t.by_id.contains_key(&waiting),
            "a circuit waiting for its destination has its own timeout"
        );
        assert!(t.end_idle(start + idle * 4, idle).is_empty(), "told once");
    }
}
