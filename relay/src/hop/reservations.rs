//! The reservation table: which peer holds a slot on which connection, until
//! when. One entry per (peer, connection); a renewal moves that entry's
//! deadline, so a peer renewing in a loop never grows the table or its
//! deadline index. The counts the caps are checked against are kept here, in
//! one place, so they cannot drift from the entries.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::PeerId;

/// One reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub conn: ConnectionId,
    /// When it ends, for the sweep.
    pub expires_at: Instant,
    /// When it ends, in unix seconds, as the voucher says.
    pub expires: u64,
    /// When it was made, in unix seconds.
    pub created: u64,
    pub renewals: u32,
}

/// What [`Reservations::grant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Created,
    Renewed,
}

#[derive(Default)]
pub struct Reservations {
    by_peer: HashMap<PeerId, Vec<Slot>>,
    len: usize,
    /// Every slot's deadline, exactly once.
    deadlines: BTreeSet<(Instant, PeerId, ConnectionId)>,
}

impl Reservations {
    /// Reservations held now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Reservations `peer` holds, one per connection.
    pub fn held_by(&self, peer: &PeerId) -> usize {
        self.by_peer.get(peer).map_or(0, Vec::len)
    }

    /// Whether `peer` holds a reservation on `conn` (a new request renews it).
    pub fn holds(&self, peer: &PeerId, conn: ConnectionId) -> bool {
        self.by_peer
            .get(peer)
            .is_some_and(|slots| slots.iter().any(|s| s.conn == conn))
    }

    /// The reservation of `peer` that lasts longest: where circuits to it go.
    pub fn latest(&self, peer: &PeerId) -> Option<&Slot> {
        self.by_peer
            .get(peer)
            .and_then(|slots| slots.iter().max_by_key(|s| s.expires_at))
    }

    /// Creates the reservation of `peer` on `conn`, or renews it, for `ttl`
    /// from `now` (`unix_now` in unix seconds). The caps are the caller's
    /// to check first. Returns what happened and the new expiry.
    pub fn grant(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        ttl: Duration,
        now: Instant,
        unix_now: u64,
    ) -> (Grant, u64) {
        let expires = unix_now + ttl.as_secs();
        let expires_at = now + ttl;
        let slots = self.by_peer.entry(peer).or_default();
        let grant = match slots.iter_mut().find(|s| s.conn == conn) {
            Some(slot) => {
                self.deadlines.remove(&(slot.expires_at, peer, conn));
                slot.expires = expires;
                slot.expires_at = expires_at;
                slot.renewals += 1;
                Grant::Renewed
            }
            None => {
                slots.push(Slot {
                    conn,
                    expires_at,
                    expires,
                    created: unix_now,
                    renewals: 0,
                });
                self.len += 1;
                Grant::Created
            }
        };
        self.deadlines.insert((expires_at, peer, conn));
        (grant, expires)
    }

    /// When the next reservation ends, if any is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _, _)| *at)
    }

    /// Removes every reservation whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(PeerId, ConnectionId)> {
        let mut ended = Vec::new();
        while let Some(&(at, peer, conn)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if self.remove_slot(peer, conn) {
                ended.push((peer, conn));
            }
        }
        ended
    }

    /// Removes the reservation of `peer` on `conn`, whose connection closed;
    /// whether there was one.
    pub fn close(&mut self, peer: PeerId, conn: ConnectionId) -> bool {
        let Some(slot) = self
            .by_peer
            .get(&peer)
            .and_then(|slots| slots.iter().find(|s| s.conn == conn))
        else {
            return false;
        };
        self.deadlines.remove(&(slot.expires_at, peer, conn));
        self.remove_slot(peer, conn)
    }

    /// Every reservation, oldest first.
    pub fn all(&self) -> Vec<(PeerId, Slot)> {
        let mut out: Vec<(PeerId, Slot)> = self
            .by_peer
            .iter()
            .flat_map(|(peer, slots)| slots.iter().map(|s| (*peer, *s)))
            .collect();
        out.sort_by_key(|(_, s)| s.created);
        out
    }

    fn remove_slot(&mut self, peer: PeerId, conn: ConnectionId) -> bool {
        let Some(slots) = self.by_peer.get_mut(&peer) else {
            return false;
        };
        let Some(i) = slots.iter().position(|s| s.conn == conn) else {
            return false;
        };
        slots.swap_remove(i);
        if slots.is_empty() {
            self.by_peer.remove(&peer);
        }
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3600);

    fn conn(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    #[test]
    fn a_renewal_moves_the_one_entry_it_has() {
        let mut r = Reservations::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(
            r.grant(peer, conn(1), TTL, t0, 1000),
            (Grant::Created, 4600)
        );
        for i in 1..=1000u64 {
            let (grant, expires) =
                r.grant(peer, conn(1), TTL, t0 + Duration::from_secs(i), 1000 + i);
            assert_eq!((grant, expires), (Grant::Renewed, 4600 + i));
        }
        assert_eq!(r.len(), 1);
        assert_eq!(r.deadlines.len(), 1, "renewals leave no stale deadlines");
        let slot = r.latest(&peer).unwrap();
        assert_eq!(
            (slot.renewals, slot.created, slot.expires),
            (1000, 1000, 5600)
        );
        // The first deadline has passed; the renewed one has not.
        assert!(r.expire(t0 + TTL + Duration::from_secs(1)).is_empty());
        assert_eq!(
            r.expire(t0 + TTL + Duration::from_secs(1000)),
            [(peer, conn(1))]
        );
        assert!(r.len() == 0 && r.deadlines.is_empty());
    }

    #[test]
    fn each_connection_holds_its_own_reservation() {
        let mut r = Reservations::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        r.grant(peer, conn(1), TTL, t0, 0);
        r.grant(peer, conn(2), TTL, t0 + Duration::from_secs(5), 5);
        assert_eq!((r.len(), r.held_by(&peer)), (2, 2));
        assert!(r.holds(&peer, conn(1)) && r.holds(&peer, conn(2)));
        assert!(!r.holds(&peer, conn(3)));
        assert_eq!(r.latest(&peer).unwrap().conn, conn(2));

        assert!(r.close(peer, conn(2)));
        assert!(!r.close(peer, conn(2)), "closing twice removes nothing");
        assert_eq!(r.latest(&peer).unwrap().conn, conn(1));
        assert_eq!(
            r.deadlines.len(),
            1,
            "a closed reservation's deadline goes too"
        );
        assert!(r.close(peer, conn(1)));
        assert!(r.len() == 0 && r.deadlines.is_empty() && r.by_peer.is_empty());
    }

    #[test]
    fn expiry_takes_only_what_is_due_in_deadline_order() {
        let mut r = Reservations::default();
        let t0 = Instant::now();
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            r.grant(*p, conn(i), TTL, t0 + Duration::from_secs(i as u64 * 10), 0);
        }
        let ended = r.expire(t0 + TTL + Duration::from_secs(10));
        assert_eq!(ended, [(peers[0], conn(0)), (peers[1], conn(1))]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.all().len(), 1);
        assert_eq!(r.all()[0].0, peers[2]);
    }
}
