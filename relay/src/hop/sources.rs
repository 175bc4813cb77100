//! Reservations and circuits counted by where they come from: the remote IP
//! address of the connection, and its network prefix (IPv4 /24 and IPv6 /48
//! by default). Peer ids cost nothing to mint, so the per-peer caps alone
//! let one host take every slot with enough keys; these caps bound what one
//! address, and one network, can hold however many keys it uses.
//!
//! A circuit counts against the address of each of its two ends (once when
//! both ends share it), since a squatter holds both. Entries are removed
//! when their count returns to zero, so the maps hold only sources that hold
//! something, bounded by the reservation and circuit caps.

use std::collections::HashMap;
use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

use super::gate::Refusal;
use crate::config::SourceLimits;

/// A network: an address and a prefix length, as in `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// `a.b.c.d/len`, `x:y::/len`, or a bare address (one host).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip: IpAddr = addr.trim().parse().map_err(|_| {
            format!("expected an IP network such as 203.0.113.0/24 or 2001:db8::/32, got {text:?}")
        })?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net: ip, len })
    }

    /// One address.
    pub fn host(ip: IpAddr) -> Cidr {
        let ip = canonical(ip);
        Cidr {
            net: ip,
            len: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    /// The address, when the network is one host.
    pub fn as_host(&self) -> Option<IpAddr> {
        (self.len == if self.net.is_ipv4() { 32 } else { 128 }).then_some(self.net)
    }

    /// The same network with the host bits cleared (`10.1.2.3/8` is
    /// `10.0.0.0/8`), and an IPv4 address mapped into IPv6 as IPv4.
    pub fn network(&self) -> Cidr {
        let (net, len) = match self.net {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if self.len >= 96 => (IpAddr::V4(v4), self.len - 96),
                _ => (self.net, self.len),
            },
            v4 => (v4, self.len),
        };
        let net = match net {
            IpAddr::V4(a) => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Cidr { net, len }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.len)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.len)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// Whether the caps and rates per address leave `ip` alone.
pub fn exempt(ip: IpAddr, limits: &SourceLimits) -> bool {
    limits.exempt.iter().any(|c| c.contains(ip))
}

/// An address cut to its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix(IpAddr, u8);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub reservations: usize,
    pub circuits: usize,
}

#[derive(Default)]
pub struct Sources {
    by_ip: HashMap<IpAddr, Tally>,
    by_prefix: HashMap<Prefix, Tally>,
}

/// The IP address a connection came from, if its address has one (a
/// relayed connection's does not count here: it is refused anyway).
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })
}

/// `ip` cut to the configured prefix length of its family. An IPv4 address
/// mapped into IPv6 (`::ffff:a.b.c.d`) counts as the IPv4 address.
pub fn prefix_of(ip: IpAddr, limits: &SourceLimits) -> Prefix {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(a) => {
            let bits = limits.ipv4_prefix.min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            Prefix(IpAddr::V4((u32::from(a) & mask).into()), bits)
        }
        IpAddr::V6(a) => {
            let bits = limits.ipv6_prefix.min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            Prefix(IpAddr::V6((u128::from(a) & mask).into()), bits)
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Sources {
    pub fn ip(&self, ip: IpAddr) -> Tally {
        self.by_ip.get(&canonical(ip)).copied().unwrap_or_default()
    }

    pub fn prefix(&self, ip: IpAddr, limits: &SourceLimits) -> Tally {
        self.by_prefix
            .get(&prefix_of(ip, limits))
            .copied()
            .unwrap_or_default()
    }

    /// Sources holding anything: what the maps hold.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        (self.by_ip.len(), self.by_prefix.len())
    }

    /// Whether one more reservation from `ip` fits.
    pub fn admit_reservation(&self, ip: IpAddr, limits: &SourceLimits) -> Result<(), Refusal> {
        if exempt(ip, limits) {
            return Ok(());
        }
        if self.ip(ip).reservations >= limits.reservations_per_ip
            || self.prefix(ip, limits).reservations >= limits.reservations_per_prefix
        {
            Err(Refusal::SourceReservationsFull)
        } else {
            Ok(())
        }
    }

    /// Whether one more circuit between `a` and `b` fits: each end's address
    /// takes one more, and its prefix one more per end inside it.
    pub fn admit_circuit(
        &self,
        a: Option<IpAddr>,
        b: Option<IpAddr>,
        limits: &SourceLimits,
    ) -> Result<(), Refusal> {
        let ends = ends(a, b, limits);
        for ip in ends.iter().filter(|ip| !exempt(**ip, limits)) {
            let p = prefix_of(*ip, limits);
            let in_prefix = ends.iter().filter(|e| prefix_of(**e, limits) == p).count();
            if self.ip(*ip).circuits >= limits.circuits_per_ip
                || self.prefix(*ip, limits).circuits + in_prefix > limits.circuits_per_prefix
            {
                return Err(Refusal::SourceCircuitsFull);
            }
        }
        Ok(())
    }

    pub fn add_reservation(&mut self, ip: IpAddr, limits: &SourceLimits) {
        self.change(ip, limits, |t| t.reservations += 1);
    }

    pub fn remove_reservation(&mut self, ip: IpAddr, limits: &SourceLimits) {
        self.change(ip, limits, |t| {
            t.reservations = t.reservations.saturating_sub(1)
        });
    }

    pub fn add_circuit(&mut self, a: Option<IpAddr>, b: Option<IpAddr>, limits: &SourceLimits) {
        for ip in ends(a, b, limits) {
            self.change(ip, limits, |t| t.circuits += 1);
        }
    }

    pub fn remove_circuit(&mut self, a: Option<IpAddr>, b: Option<IpAddr>, limits: &SourceLimits) {
        for ip in ends(a, b, limits) {
            self.change(ip, limits, |t| t.circuits = t.circuits.saturating_sub(1));
        }
    }

    fn change(&mut self, ip: IpAddr, limits: &SourceLimits, f: impl Fn(&mut Tally)) {
        let ip = canonical(ip);
        let t = self.by_ip.entry(ip).or_default();
        f(t);
        if *t == Tally::default() {
            self.by_ip.remove(&ip);
        }
        let p = prefix_of(ip, limits);
        let t = self.by_prefix.entry(p).or_default();
        f(t);
        if *t == Tally::default() {
            self.by_prefix.remove(&p);
        }
    }
}

/// The distinct addresses of a circuit's ends. Two ends in one prefix but
/// on different addresses count twice against the prefix: the prefix holds
/// both ends.
fn ends(a: Option<IpAddr>, b: Option<IpAddr>, _limits: &SourceLimits) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = [a, b].into_iter().flatten().map(canonical).collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SourceLimits {
        SourceLimits {
            exempt: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            reservations_per_ip: 2,
            reservations_per_prefix: 3,
            circuits_per_ip: 2,
            circuits_per_prefix: 3,
            ipv4_prefix: 24,
            ipv6_prefix: 48,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reservations_are_capped_per_address_and_per_prefix() {
        let l = limits();
        let mut s = Sources::default();
        s.add_reservation(ip("203.0.113.7"), &l);
        s.add_reservation(ip("203.0.113.7"), &l);
        assert_eq!(
            s.admit_reservation(ip("203.0.113.7"), &l),
            Err(Refusal::SourceReservationsFull)
        );
        // Same /24, another address: the prefix has room for one more.
        assert_eq!(s.admit_reservation(ip("203.0.113.8"), &l), Ok(()));
        s.add_reservation(ip("203.0.113.8"), &l);
        assert_eq!(
            s.admit_reservation(ip("203.0.113.9"), &l),
            Err(Refusal::SourceReservationsFull)
        );
        // Another /24 is not touched; the v4-mapped form is the same address.
        assert_eq!(s.admit_reservation(ip("203.0.114.1"), &l), Ok(()));
        assert_eq!(
            s.admit_reservation(ip("::ffff:203.0.113.7"), &l),
            Err(Refusal::SourceReservationsFull)
        );
        s.remove_reservation(ip("203.0.113.7"), &l);
        s.remove_reservation(ip("203.0.113.7"), &l);
        s.remove_reservation(ip("203.0.113.8"), &l);
        assert_eq!(s.len(), (0, 0), "nothing held, nothing kept");
    }

    #[test]
    fn a_circuit_counts_against_both_ends_and_ipv6_by_its_48() {
        let l = limits();
        let mut s = Sources::default();
        let (a, b) = (Some(ip("2001:db8:1:2::1")), Some(ip("2001:db8:1:3::9")));
        s.add_circuit(a, b, &l);
        assert_eq!(s.prefix(ip("2001:db8:1:ffff::1"), &l).circuits, 2);
        assert_eq!(s.admit_circuit(a, b, &l), Err(Refusal::SourceCircuitsFull));
        // A circuit within one host counts once for it.
        let c = Some(ip("198.51.100.1"));
        s.add_circuit(c, c, &l);
        assert_eq!(s.ip(ip("198.51.100.1")).circuits, 1);
        s.remove_circuit(a, b, &l);
        s.remove_circuit(c, c, &l);
        assert_eq!(s.len(), (0, 0));
    }

    #[test]
    fn exempt_networks_are_not_capped() {
        let l = limits();
        let mut s = Sources::default();
        for _ in 0..10 {
            assert_eq!(s.admit_reservation(ip("127.0.0.5"), &l), Ok(()));
            s.add_reservation(ip("127.0.0.5"), &l);
        }
        assert_eq!(
            s.admit_circuit(Some(ip("127.0.0.5")), Some(ip("127.0.0.6")), &l),
            Ok(())
        );
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains(ip("2001:db8:ffff::1")) && !c.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("10.0.0.0/8")
            .unwrap()
            .contains(ip("::ffff:10.1.2.3")));
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("ten").is_err());
        assert_eq!(
            Cidr::parse("192.0.2.1").unwrap().to_string(),
            "192.0.2.1/32"
        );
    }

    #[test]
    fn prefixes_cut_where_configured() {
        let mut l = limits();
        assert_eq!(
            prefix_of(ip("10.1.2.3"), &l),
            prefix_of(ip("10.1.2.200"), &l)
        );
        assert_ne!(prefix_of(ip("10.1.2.3"), &l), prefix_of(ip("10.1.3.3"), &l));
        l.ipv4_prefix = 32;
        assert_ne!(
            prefix_of(ip("127.0.0.1"), &l),
            prefix_of(ip("127.0.0.2"), &l)
        );
        l.ipv4_prefix = 0;
        assert_eq!(prefix_of(ip("1.2.3.4"), &l), prefix_of(ip("200.2.3.4"), &l));
        assert_eq!(
            ip_of(&"/ip4/1.2.3.4/tcp/1".parse().unwrap()),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(ip_of(&"/dns4/x/tcp/1".parse().unwrap()), None);
    }
}
