//! Who may use the relay at all: the allow and deny lists (from the config
//! file and from `acl.add`, persisted by [`store`]), and the relay's own
//! temporary bans of addresses that keep going over its limits.
//!
//! - A deny entry (a peer id or a network) refuses the subject's new
//!   connections (a network before any handshake work) and every reserve
//!   and connect; the relay closes its existing connections when the entry
//!   is added. A deny entry may expire: a ban for a while.
//! - Any allow entry makes the relay private: reservations and circuits are
//!   refused (`PERMISSION_DENIED`) to everyone not on the allowlist. Others
//!   may still connect, identify, ping and gossip. Allowlisted peers and
//!   networks are trusted: the caps and rates per address do not apply to
//!   them.
//! - An address refused by a limit `autoBan.refusals` times within
//!   `autoBan.window` is banned for `autoBan.duration` (never a network in
//!   `relay.sources.exempt`, never an allowlisted one).
//!
//! One [`Access`] is shared by the admission behaviour and the hop gate; all
//! of them run on the swarm task, so the lock is never contended. Lookups
//! cost one read lock and hash lookups, once per connection or request,
//! never per byte. What the operator should hear about (bans the relay made,
//! rate limits hit) goes out as [`Notice`]s, at most one per source and kind
//! a minute.

pub mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bsv_p2p_proto as proto;
use futures::channel::mpsc;
use libp2p::{Multiaddr, PeerId};
use proto::{AccessList, AclOrigin};

use crate::hop::gate::{Gate, Refusal};
use crate::hop::sources::{ip_of, Cidr};

/// Entries `acl.add` may hold; past it, an add is refused.
pub const MAX_CONTROL_ENTRIES: usize = 10_000;
/// Addresses the relay bans by itself at once; past it, the ban that ends
/// soonest makes room.
pub const MAX_AUTO_BANS: usize = 4096;
/// Addresses whose refusals are counted at once; past it, new ones are not
/// counted until the window passes.
const MAX_STRIKE_KEYS: usize = 65_536;
/// Rate-limit notices: one per source and kind within this window.
const NOTICE_WINDOW: Duration = Duration::from_secs(60);
const MAX_NOTICE_KEYS: usize = 65_536;

/// What an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Peer(PeerId),
    Net(Cidr),
}

impl Subject {
    /// A network (`203.0.113.0/24`, or one address) or a peer id.
    pub fn parse(text: &str) -> Result<Subject, String> {
        let text = text.trim();
        if text.contains('/') || text.parse::<IpAddr>().is_ok() {
            return Cidr::parse(text).map(|c| Subject::Net(c.network()));
        }
        PeerId::from_str(text).map(Subject::Peer).map_err(|_| {
            format!(
                "expected a peer id (12D3KooW…) or an address or network such as 203.0.113.0/24, got {text:?}"
            )
        })
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Peer(p) => write!(f, "{p}"),
            Subject::Net(c) => write!(f, "{c}"),
        }
    }
}

/// One allow or deny entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub subject: Subject,
    pub list: AccessList,
    pub note: Option<String>,
    pub added_at: SystemTime,
    /// When a ban ends; `None`: until removed.
    pub expires_at: Option<SystemTime>,
    pub origin: AclOrigin,
}

impl Entry {
    pub fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    pub fn to_proto(&self) -> proto::AclEntry {
        let (peer_id, cidr) = match self.subject {
            Subject::Peer(p) => (Some(p.to_string()), None),
            Subject::Net(c) => (None, Some(c.to_string())),
        };
        proto::AclEntry {
            peer_id,
            cidr,
            list: self.list,
            note: self.note.clone(),
            added_at: proto::Timestamp(self.added_at),
            expires_at: self.expires_at.map(proto::Timestamp),
            origin: self.origin,
        }
    }

    pub fn from_proto(e: &proto::AclEntry) -> Result<Entry, String> {
        let subject = match (&e.peer_id, &e.cidr) {
            (Some(p), None) => PeerId::from_str(p)
                .map(Subject::Peer)
                .map_err(|err| format!("peerId {p:?}: {err}"))?,
            (None, Some(c)) => Subject::Net(Cidr::parse(c)?.network()),
            _ => return Err("an entry names exactly one of peerId and cidr".into()),
        };
        Ok(Entry {
            subject,
            list: e.list,
            note: e.note.clone(),
            added_at: e.added_at.0,
            expires_at: e.expires_at.map(|t| t.0),
            origin: e.origin,
        })
    }
}

/// The config file's lists and the automatic bans' thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessConfig {
    /// `relay.allowlist`.
    pub allow: Vec<Subject>,
    /// `relay.blocklist` (or the guide's `relay.blockTrustedlist`).
    pub deny: Vec<Subject>,
    pub auto_ban: AutoBan,
    /// `relay.sources.exempt`: never banned by the relay itself.
    pub exempt: Vec<Cidr>,
}

/// `relay.autoBan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutoBan {
    pub enabled: bool,
    pub refusals: u32,
    pub window: Duration,
    pub duration: Duration,
}

/// Something the operator should hear about, for the swarm loop to log,
/// journal and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The relay banned an address by itself: close its connections.
    AutoBanned { entry: Entry, refusals: u32 },
    /// A peer or an address went over a rate limit.
    Limited(Limited),
    /// A ban from the control socket ended: delete it from the store.
    Expired(Entry),
}

/// Who went over which rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limited {
    Peer(PeerId, &'static str),
    Address(IpAddr, &'static str),
}

/// Shared handle; cheap to clone.
#[derive(Clone)]
pub struct Access {
    rules: Arc<RwLock<Rules>>,
    notices: mpsc::UnboundedSender<Notice>,
}

struct Rules {
    config: AccessConfig,
    /// Entries added over the control socket, by list and subject.
    control: BTreeMap<(AccessList, Subject), Entry>,
    /// The relay's own bans, by address.
    auto: HashMap<IpAddr, Entry>,
    /// Refusals per address in the current window.
    strikes: HashMap<IpAddr, (Instant, u32)>,
    /// When each source was last reported as rate limited.
    noticed: HashMap<Limited, Instant>,
    // Indexes of the entries in force, rebuilt on every change.
    allow_peers: HashSet<PeerId>,
    allow_nets: Vec<Cidr>,
    deny_peers: HashMap<PeerId, Option<SystemTime>>,
    deny_nets: Vec<(Cidr, Option<SystemTime>)>,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn live(until: &Option<SystemTime>, now: SystemTime) -> bool {
    until.is_none_or(|t| t > now)
}

impl Rules {
    fn reindex(&mut self) {
        self.allow_peers.clear();
        self.allow_nets.clear();
        self.deny_peers.clear();
        self.deny_nets.clear();
        let config = self
            .config
            .allow
            .iter()
            .map(|s| (AccessList::Allow, *s, None))
            .chain(
                self.config
                    .deny
                    .iter()
                    .map(|s| (AccessList::Deny, *s, None)),
            );
        // The relay's own bans are looked up by address, not scanned.
        let control = self
            .control
            .values()
            .map(|e| (e.list, e.subject, e.expires_at));
        for (list, subject, until) in config.chain(control) {
            match (list, subject) {
                (AccessList::Allow, Subject::Peer(p)) => {
                    self.allow_peers.insert(p);
                }
                (AccessList::Allow, Subject::Net(c)) => self.allow_nets.push(c),
                (AccessList::Deny, Subject::Peer(p)) => {
                    // A permanent entry wins over a ban that ends.
                    let e = self.deny_peers.entry(p).or_insert(until);
                    if until.is_none() {
                        *e = None;
                    } else if let (Some(a), Some(b)) = (*e, until) {
                        *e = Some(a.max(b));
                    }
                }
                (AccessList::Deny, Subject::Net(c)) => self.deny_nets.push((c, until)),
            }
        }
    }

    fn private(&self) -> bool {
        !self.allow_peers.is_empty() || !self.allow_nets.is_empty()
    }

    fn allowed(&self, peer: Option<&PeerId>, ip: Option<IpAddr>) -> bool {
        peer.is_some_and(|p| self.allow_peers.contains(p))
            || ip.is_some_and(|ip| self.allow_nets.iter().any(|c| c.contains(ip)))
    }

    fn address(&self, ip: IpAddr, now: SystemTime) -> Result<(), Refusal> {
        if self.deny_nets.is_empty() && self.auto.is_empty() {
            return Ok(());
        }
        let ip = canonical(ip);
        if self.auto.get(&ip).is_some_and(|e| live(&e.expires_at, now)) {
            return Err(Refusal::Banned);
        }
        if self
            .deny_nets
            .iter()
            .any(|(c, until)| live(until, now) && c.contains(ip))
        {
            return Err(Refusal::AccessDenied);
        }
        Ok(())
    }

    fn peer(&self, peer: &PeerId, ip: Option<IpAddr>, now: SystemTime) -> Result<(), Refusal> {
        if let Some(until) = self.deny_peers.get(peer) {
            if live(until, now) {
                return Err(Refusal::AccessDenied);
            }
        }
        match ip {
            Some(ip) => self.address(ip, now),
            None => Ok(()),
        }
    }
}

impl Access {
    /// The rules from the config and what the store held; the receiver gets
    /// the notices.
    pub fn new(
        config: AccessConfig,
        stored: Vec<Entry>,
    ) -> (Access, mpsc::UnboundedReceiver<Notice>) {
        let now = SystemTime::now();
        let mut rules = Rules {
            config,
            control: BTreeMap::new(),
            auto: HashMap::new(),
            strikes: HashMap::new(),
            noticed: HashMap::new(),
            allow_peers: HashSet::new(),
            allow_nets: Vec::new(),
            deny_peers: HashMap::new(),
            deny_nets: Vec::new(),
        };
        for e in stored.into_iter().filter(|e| e.live(now)) {
            if rules.control.len() < MAX_CONTROL_ENTRIES {
                rules.control.insert((e.list, e.subject), e);
            }
        }
        rules.reindex();
        let (tx, rx) = mpsc::unbounded();
        (
            Access {
                rules: Arc::new(RwLock::new(rules)),
                notices: tx,
            },
            rx,
        )
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Rules> {
        self.rules.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies reloaded lists and thresholds; entries from the control
    /// socket and bans in force stay.
    pub fn set_config(&self, config: AccessConfig) {
        let mut r = self.write();
        r.config = config;
        r.reindex();
    }

    /// Whether a connection from `ip` may be taken at all (before any
    /// handshake).
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.read().address(ip, SystemTime::now())
    }

    /// Whether `peer`, connected from `ip`, may stay connected.
    pub fn check_peer(&self, peer: &PeerId, ip: Option<IpAddr>) -> Result<(), Refusal> {
        self.read().peer(peer, ip, SystemTime::now())
    }

    /// Whether `peer` may reserve or open circuits.
    pub fn check_hop(&self, peer: &PeerId, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let r = self.read();
        r.peer(peer, ip, SystemTime::now())?;
        if r.private() && !r.allowed(Some(peer), ip) {
            return Err(Refusal::NotAllowlisted);
        }
        Ok(())
    }

    /// On the allowlist (by peer id or by address).
    pub fn allowed(&self, peer: Option<&PeerId>, ip: Option<IpAddr>) -> bool {
        let r = self.read();
        r.private() && r.allowed(peer, ip)
    }

    pub fn private(&self) -> bool {
        self.read().private()
    }

    /// Counts a refusal by a limit against `ip`; enough of them within the
    /// window ban the address for a while.
    pub fn strike(&self, ip: IpAddr) {
        let ip = canonical(ip);
        let now = Instant::now();
        let mut r = self.write();
        let ab = r.config.auto_ban;
        if !ab.enabled
            || r.config.exempt.iter().any(|c| c.contains(ip))
            || r.allowed(None, Some(ip))
            || r.auto.contains_key(&ip)
        {
            return;
        }
        if !r.strikes.contains_key(&ip) && r.strikes.len() >= MAX_STRIKE_KEYS {
            return;
        }
        let s = r.strikes.entry(ip).or_insert((now, 0));
        if now.duration_since(s.0) > ab.window {
            *s = (now, 0);
        }
        s.1 += 1;
        let count = s.1;
        if count < ab.refusals {
            return;
        }
        r.strikes.remove(&ip);
        let at = SystemTime::now();
        let entry = Entry {
            subject: Subject::Net(Cidr::host(ip)),
            list: AccessList::Deny,
            note: Some(format!(
                "{count} refusals by limits within {} s",
                ab.window.as_secs()
            )),
            added_at: at,
            expires_at: Some(at + ab.duration),
            origin: AclOrigin::Auto,
        };
        if r.auto.len() >= MAX_AUTO_BANS {
            if let Some(soonest) = r
                .auto
                .iter()
                .min_by_key(|(_, e)| e.expires_at)
                .map(|(ip, _)| *ip)
            {
                r.auto.remove(&soonest);
            }
        }
        r.auto.insert(ip, entry.clone());
        r.reindex();
        drop(r);
        let _ = self.notices.unbounded_send(Notice::AutoBanned {
            entry,
            refusals: count,
        });
    }

    /// Reports that a peer or address went over a rate limit, at most once
    /// per source and kind a minute.
    pub fn limited(&self, who: Limited) {
        let now = Instant::now();
        let mut r = self.write();
        if let Some(last) = r.noticed.get(&who) {
            if now.duration_since(*last) < NOTICE_WINDOW {
                return;
            }
        } else if r.noticed.len() >= MAX_NOTICE_KEYS {
            return;
        }
        r.noticed.insert(who, now);
        drop(r);
        let _ = self.notices.unbounded_send(Notice::Limited(who));
    }

    /// Adds or updates an entry from the control socket; `Ok(true)` when it
    /// is new.
    pub fn add(&self, entry: Entry) -> Result<bool, String> {
        let mut r = self.write();
        let key = (entry.list, entry.subject);
        if !r.control.contains_key(&key) && r.control.len() >= MAX_CONTROL_ENTRIES {
            return Err(format!(
                "the relay holds at most {MAX_CONTROL_ENTRIES} access entries from the control socket; remove some first"
            ));
        }
        let added = r.control.insert(key, entry).is_none();
        r.reindex();
        Ok(added)
    }

    /// Removes an entry added over the control socket, or ends a ban the
    /// relay made by itself; `true` when there was one.
    pub fn remove(&self, list: AccessList, subject: Subject) -> bool {
        let mut r = self.write();
        let mut removed = r.control.remove(&(list, subject)).is_some();
        if let (AccessList::Deny, Subject::Net(c)) = (list, subject) {
            if let Some(ip) = c.as_host() {
                removed |= r.auto.remove(&canonical(ip)).is_some();
            }
        }
        if removed {
            r.reindex();
        }
        removed
    }

    /// Every entry in force: config, control socket, automatic bans.
    pub fn entries(&self) -> Vec<Entry> {
        let r = self.read();
        let now = SystemTime::now();
        let config = |list, s: &Subject| Entry {
            subject: *s,
            list,
            note: None,
            added_at: now,
            expires_at: None,
            origin: AclOrigin::Config,
        };
        let mut out: Vec<Entry> = r
            .config
            .allow
            .iter()
            .map(|s| config(AccessList::Allow, s))
            .chain(r.config.deny.iter().map(|s| config(AccessList::Deny, s)))
            .collect();
        out.extend(r.control.values().filter(|e| e.live(now)).cloned());
        let mut auto: Vec<Entry> = r.auto.values().filter(|e| e.live(now)).cloned().collect();
        auto.sort_by_key(|e| e.added_at);
        out.extend(auto);
        out
    }

    /// Drops ended bans and old counts; each ended ban from the control
    /// socket goes out as [`Notice::Expired`], for the store to delete.
    pub fn sweep(&self) {
        let now = SystemTime::now();
        let instant = Instant::now();
        let mut r = self.write();
        let window = r.config.auto_ban.window;
        r.strikes
            .retain(|_, (start, _)| instant.duration_since(*start) <= window);
        r.noticed
            .retain(|_, at| instant.duration_since(*at) < NOTICE_WINDOW);
        let expired: Vec<Entry> = r
            .control
            .values()
            .filter(|e| !e.live(now))
            .cloned()
            .collect();
        let before = r.auto.len();
        r.auto.retain(|_, e| e.live(now));
        if !expired.is_empty() || r.auto.len() != before {
            for e in &expired {
                r.control.remove(&(e.list, e.subject));
            }
            r.reindex();
        }
        drop(r);
        for e in expired {
            let _ = self.notices.unbounded_send(Notice::Expired(e));
        }
    }

    /// Addresses counted and notices remembered: for the bound tests.
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize, usize) {
        let r = self.read();
        (r.strikes.len(), r.noticed.len(), r.auto.len())
    }
}

/// The hop service's gate: deny lists, the allowlist of a private relay,
/// and the trust that lifts the per-address caps.
impl Gate for Access {
    fn reserve(&mut self, peer: &PeerId, remote: &Multiaddr) -> Result<(), Refusal> {
        self.check_hop(peer, ip_of(remote))
    }

    fn connect(&mut self, src: &PeerId, src_remote: &Multiaddr, _: &PeerId) -> Result<(), Refusal> {
        // The destination holds a reservation, so it passed this gate; one
        // that no longer would has been disconnected.
        self.check_hop(src, ip_of(src_remote))
    }

    fn trusted(&self, peer: &PeerId, remote: &Multiaddr) -> bool {
        self.allowed(Some(peer), ip_of(remote))
    }

    fn refused(&mut self, peer: &PeerId, remote: &Multiaddr, refusal: Refusal) {
        let what = match refusal {
            Refusal::ReservationRate => Some("reservation"),
            Refusal::RateLimited => Some("request"),
            Refusal::SourceReservationsFull
            | Refusal::SourceCircuitsFull
            | Refusal::PeerReservationsFull
            | Refusal::PeerCircuitsFull => None,
            _ => return,
        };
        if let Some(what) = what {
            self.limited(Limited::Peer(*peer, what));
        }
        if let Some(ip) = ip_of(remote) {
            self.strike(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> Subject {
        Subject::parse(s).unwrap()
    }

    fn access(config: AccessConfig) -> (Access, mpsc::UnboundedReceiver<Notice>) {
        Access::new(config, Vec::new())
    }

    fn ban(subject: Subject, expires_at: Option<SystemTime>) -> Entry {
        Entry {
            subject,
            list: AccessList::Deny,
            note: None,
            added_at: SystemTime::now(),
            expires_at,
            origin: AclOrigin::Control,
        }
    }

    #[test]
    fn subjects_parse_as_networks_or_peer_ids() {
        let p = peer();
        assert_eq!(Subject::parse(&p.to_string()).unwrap(), Subject::Peer(p));
        assert_eq!(net("203.0.113.7").to_string(), "203.0.113.7/32");
        assert_eq!(net("203.0.113.7/24").to_string(), "203.0.113.0/24");
        assert_eq!(net("2001:db8::1/48").to_string(), "2001:db8::/48");
        let e = Subject::parse("not-a-peer!").unwrap_err();
        assert!(e.contains("expected a peer id"), "{e}");
        assert!(Subject::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn deny_entries_refuse_addresses_and_peers_until_they_expire() {
        let (a, mut rx) = access(AccessConfig {
            deny: vec![net("198.51.100.0/24")],
            ..Default::default()
        });
        assert_eq!(
            a.check_address(ip("198.51.100.9")),
            Err(Refusal::AccessDenied)
        );
        // A v4-mapped IPv6 address is the IPv4 address.
        assert_eq!(
            a.check_address(ip("::ffff:198.51.100.9")),
            Err(Refusal::AccessDenied)
        );
        assert_eq!(a.check_address(ip("198.51.101.9")), Ok(()));
        let bad = peer();
        assert!(a.add(ban(Subject::Peer(bad), None)).unwrap());
        assert_eq!(a.check_peer(&bad, None), Err(Refusal::AccessDenied));
        assert_eq!(a.check_hop(&peer(), Some(ip("192.0.2.1"))), Ok(()));
        // A ban that has ended no longer refuses, and the sweep forgets it.
        let past = SystemTime::now() - Duration::from_secs(1);
        let gone = peer();
        a.add(ban(Subject::Peer(gone), Some(past))).unwrap();
        assert_eq!(a.check_peer(&gone, None), Ok(()));
        a.sweep();
        match rx.try_recv().unwrap() {
            Notice::Expired(e) => assert_eq!(e.subject, Subject::Peer(gone)),
            other => panic!("{other:?}"),
        }
        assert!(!a.entries().iter().any(|e| e.subject == Subject::Peer(gone)));
        assert!(a.remove(AccessList::Deny, Subject::Peer(bad)));
        assert_eq!(a.check_peer(&bad, None), Ok(()));
    }

    #[test]
    fn an_allowlist_makes_the_relay_private_and_trusts_who_is_on_it() {
        let friend = peer();
        let (a, _rx) = access(AccessConfig {
            allow: vec![Subject::Peer(friend), net("192.0.2.0/24")],
            ..Default::default()
        });
        assert!(a.private());
        assert_eq!(a.check_hop(&friend, Some(ip("203.0.113.1"))), Ok(()));
        assert_eq!(a.check_hop(&peer(), Some(ip("192.0.2.77"))), Ok(()));
        assert_eq!(
            a.check_hop(&peer(), Some(ip("203.0.113.1"))),
            Err(Refusal::NotAllowlisted)
        );
        // Not on the list still connects.
        assert_eq!(a.check_peer(&peer(), Some(ip("203.0.113.1"))), Ok(()));
        assert!(a.allowed(Some(&friend), None));
        // Deny wins over allow.
        a.add(ban(Subject::Peer(friend), None)).unwrap();
        assert_eq!(a.check_hop(&friend, None), Err(Refusal::AccessDenied));
        // Without an allowlist nobody is "trusted".
        let (open, _rx) = access(AccessConfig::default());
        assert!(!open.allowed(Some(&friend), Some(ip("192.0.2.1"))));
    }

    #[test]
    fn an_address_over_its_limits_again_and_again_is_banned_once_with_one_notice() {
        let (a, mut rx) = access(AccessConfig {
            auto_ban: AutoBan {
                enabled: true,
                refusals: 5,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(600),
            },
            exempt: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            ..Default::default()
        });
        for _ in 0..4 {
            a.strike(ip("203.0.113.5"));
            a.strike(ip("127.0.0.1"));
        }
        assert_eq!(a.check_address(ip("203.0.113.5")), Ok(()));
        a.strike(ip("203.0.113.5"));
        assert_eq!(a.check_address(ip("203.0.113.5")), Err(Refusal::Banned));
        for _ in 0..20 {
            a.strike(ip("203.0.113.5"));
            a.strike(ip("127.0.0.1"));
        }
        assert_eq!(a.check_address(ip("127.0.0.1")), Ok(()), "exempt");
        match rx.try_recv().unwrap() {
            Notice::AutoBanned { entry, refusals } => {
                assert_eq!(refusals, 5);
                assert_eq!(entry.subject.to_string(), "203.0.113.5/32");
                assert_eq!(entry.origin, AclOrigin::Auto);
                assert!(entry.expires_at.unwrap() > SystemTime::now() + Duration::from_secs(590));
            }
            other => panic!("{other:?}"),
        }
        assert!(rx.try_recv().is_err(), "one notice per ban");
        assert_eq!(a.entries().len(), 1);
        // The operator lifts it like any deny entry.
        assert!(a.remove(AccessList::Deny, net("203.0.113.5")));
        assert_eq!(a.check_address(ip("203.0.113.5")), Ok(()));
    }

    #[test]
    fn counts_notices_and_bans_are_bounded() {
        let (a, mut rx) = access(AccessConfig {
            auto_ban: AutoBan {
                enabled: true,
                refusals: 1,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(600),
            },
            ..Default::default()
        });
        for i in 0..(MAX_AUTO_BANS as u32 + 100) {
            a.strike(IpAddr::V4((0x0a00_0000 + i).into()));
        }
        let (strikes, _, bans) = a.tracked();
        assert_eq!(bans, MAX_AUTO_BANS);
        assert_eq!(strikes, 0);
        let (quiet, _rx2) = access(AccessConfig {
            auto_ban: AutoBan {
                enabled: true,
                refusals: 1_000_000,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(1),
            },
            ..Default::default()
        });
        for i in 0..(MAX_STRIKE_KEYS as u32 + 1000) {
            let addr = IpAddr::V4((0x0b00_0000 + i).into());
            quiet.strike(addr);
            quiet.limited(Limited::Address(addr, "connection"));
        }
        let (strikes, noticed, _) = quiet.tracked();
        assert_eq!(strikes, MAX_STRIKE_KEYS);
        assert_eq!(noticed, MAX_NOTICE_KEYS);
        // The same source is reported once a minute.
        let p = peer();
        let before = std::iter::from_fn(|| rx.try_recv().ok()).count();
        assert!(before > 0);
        a.limited(Limited::Peer(p, "reservation"));
        a.limited(Limited::Peer(p, "reservation"));
        a.limited(Limited::Peer(p, "request"));
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 2);
    }

    #[test]
    fn control_entries_are_capped() {
        let (a, _rx) = access(AccessConfig::default());
        for _ in 0..MAX_CONTROL_ENTRIES {
            a.add(ban(Subject::Peer(peer()), None)).unwrap();
        }
        let e = a.add(ban(Subject::Peer(peer()), None)).unwrap_err();
        assert!(e.contains("at most 10000"), "{e}");
    }
}
