//! From the file's shape to the relay's configuration: units resolved,
//! every value range-checked, cross-key rules applied, each mistake named by
//! its key path.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

use super::{
    defaults, file, CircuitLimits, GossipConfig, HopConfig, Invalid, LogFormat, Overrides,
    RelayConfig, RequestRate, SourceLimits,
};
use super::{FederatedRelay, FederationConfig};

/// Placeholders of the guide's sample config, with what to put in their place.
const PLACEHOLDERS: [(&str, &str); 3] = [
    ("YOUR_PUBLIC_IP", "this server's public IPv4 address"),
    (
        "relay.yourdomain.com",
        "a DNS name that resolves to this server",
    ),
    ("YOUR_IP", "this server's public IPv4 address"),
];

fn invalid(path: impl Into<String>, message: impl Into<String>) -> Invalid {
    (path.into(), message.into())
}

pub(super) fn validate(raw: file::ConfigFile) -> Result<RelayConfig, Invalid> {
    if let Some(mode) = &raw.mode {
        if mode != "relay" {
            return Err(invalid(
                "mode",
                format!("expected \"relay\" (this program only runs a relay), got {mode:?}"),
            ));
        }
    }

    let listen = match raw.listen {
        Some(list) => multiaddrs("listen", &list)?,
        None => defaults::LISTEN
            .iter()
            .map(|a| a.parse().expect("valid default"))
            .collect(),
    };
    if listen.is_empty() {
        return Err(invalid(
            "listen",
            "expected at least one address to listen on, got an empty list",
        ));
    }
    for (i, addr) in listen.iter().enumerate() {
        check_listen_addr(&format!("listen[{i}]"), addr)?;
    }
    let announce = multiaddrs("announce", &raw.announce.unwrap_or_default())?;
    for (i, addr) in announce.iter().enumerate() {
        check_announce_addr(&format!("announce[{i}]"), addr)?;
    }

    let data_dir = match raw.data_dir {
        Some(dir) if dir.trim().is_empty() => {
            return Err(invalid("dataDir", "expected a directory path, got an empty string"))
        }
        Some(dir) => expand_home(&dir).ok_or_else(|| {
            invalid("dataDir", format!("{dir:?} starts with ~ but $HOME is not set"))
        })?,
        None => defaults::data_dir().ok_or_else(|| {
            invalid(
                "dataDir",
                "not set and $HOME is not set: give a data directory with \"dataDir\" or --data-dir",
            )
        })?,
    };
    let identity_file = match raw.identity_file {
        Some(f) if f.trim().is_empty() => {
            return Err(invalid(
                "identityFile",
                "expected a file path, got an empty string",
            ))
        }
        Some(f) => expand_home(&f)
            .ok_or_else(|| invalid("identityFile", "starts with ~ but $HOME is not set"))?,
        None => data_dir.join(defaults::IDENTITY_FILE_NAME),
    };

    let mut raw_relay = raw.relay.unwrap_or_default();
    let lists = Lists {
        allow: raw_relay.allowlist.take(),
        deny: raw_relay.blocklist.take(),
        deny_old: raw_relay.block_trustedlist.take(),
        auto: raw_relay.auto_ban.take(),
    };
    let connections_per_minute = defaults::CONNECTIONS_PER_MINUTE.check(
        raw_relay
            .rate_limit
            .as_ref()
            .and_then(|r| r.connections_per_minute),
    )? as u32;
    let relay = hop_config(raw_relay)?;
    let mut warnings = Vec::new();
    let access = access_config(lists, &relay.sources.exempt, &mut warnings)?;

    let cm = raw.connection_manager.unwrap_or_default();
    let max_connections = defaults::MAX_CONNECTIONS.check(cm.max_connections)?;
    let min_connections = defaults::MIN_CONNECTIONS.check(cm.min_connections)?;
    // Only a minimum the operator wrote can be in the way: the default one
    // has no effect and never makes a small maxConnections invalid.
    if cm.min_connections.is_some() && min_connections > max_connections {
        return Err(invalid(
            "connectionManager.minConnections",
            format!("must not exceed maxConnections ({max_connections}), got {min_connections}"),
        ));
    }
    let max_connections_per_peer =
        defaults::MAX_CONNECTIONS_PER_PEER.check(cm.max_connections_per_peer)?;
    let max_pending_incoming = defaults::MAX_PENDING_INCOMING.check(cm.max_pending_incoming)?;
    let max_connections_per_ip =
        defaults::MAX_CONNECTIONS_PER_IP.check(cm.max_connections_per_ip)? as usize;
    let max_pending_incoming_per_ip =
        defaults::MAX_PENDING_INCOMING_PER_IP.check(cm.max_pending_incoming_per_ip)? as usize;

    let gs = raw.gossip_sub.unwrap_or_default();
    let gossip = if gs.enabled.unwrap_or(defaults::GOSSIP_ENABLED) {
        let topics = match gs.topics {
            Some(t) => t,
            None => defaults::TOPICS.iter().map(|t| t.to_string()).collect(),
        };
        if topics.len() > defaults::TOPICS_MAX {
            return Err(invalid(
                "gossipSub.topics",
                format!(
                    "at most {} topics are allowed, got {}",
                    defaults::TOPICS_MAX,
                    topics.len()
                ),
            ));
        }
        for (i, topic) in topics.iter().enumerate() {
            if topic.trim().is_empty() || topic.len() > defaults::TOPIC_MAX_LEN {
                return Err(invalid(
                    format!("gossipSub.topics[{i}]"),
                    format!(
                        "expected a topic name of 1 to {} characters, got {topic:?}",
                        defaults::TOPIC_MAX_LEN
                    ),
                ));
            }
            if topics[..i].contains(topic) {
                return Err(invalid(
                    format!("gossipSub.topics[{i}]"),
                    format!("topic {topic:?} is listed twice"),
                ));
            }
        }
        let max_message_size = defaults::GOSSIP_MAX_MESSAGE_SIZE.check(gs.max_message_size)?;
        Some(GossipConfig {
            topics,
            max_message_size: max_message_size as usize,
        })
    } else {
        None
    };

    let autonat = raw
        .autonat
        .unwrap_or_default()
        .enabled
        .unwrap_or(defaults::AUTONAT_ENABLED);

    let log = raw.log.unwrap_or_default();
    let log_format = match log.format.as_deref() {
        None => defaults::LOG_FORMAT,
        Some("auto") => LogFormat::Auto,
        Some("json") => LogFormat::Json,
        Some("pretty") => LogFormat::Pretty,
        Some(other) => {
            return Err(invalid(
                "log.format",
                format!("expected one of \"auto\", \"json\", \"pretty\", got {other:?}"),
            ))
        }
    };
    let log_level = match log.level.as_deref() {
        None => defaults::LOG_LEVEL,
        Some(l) => l.parse().map_err(|_| {
            invalid(
                "log.level",
                format!(
                    "expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\", got {l:?}"
                ),
            )
        })?,
    };

    let log_queue_lines = defaults::LOG_QUEUE_LINES.check(log.queue_lines)? as usize;

    let websocket_max_message_size = defaults::WEBSOCKET_MAX_MESSAGE_SIZE
        .check(raw.websocket.unwrap_or_default().max_message_size)?
        as usize;

    let shutdown = raw.shutdown.unwrap_or_default();
    let shutdown_timeout =
        Duration::from_millis(defaults::SHUTDOWN_TIMEOUT.check(shutdown.timeout)?);

    let control = raw.control.unwrap_or_default();
    let socket_given = control.socket.is_some();
    let control_socket = match control.socket {
        Some(p) if p.trim().is_empty() => {
            return Err(invalid(
                "control.socket",
                "expected a socket path, got an empty string",
            ))
        }
        Some(p) => expand_home(&p)
            .ok_or_else(|| invalid("control.socket", "starts with ~ but $HOME is not set"))?,
        None => data_dir.join(defaults::CONTROL_SOCKET_NAME),
    };
    if control_socket.as_os_str().len() > 100 {
        // Without control.socket the path comes from dataDir: blame that key.
        let (path, remedy) = if socket_given {
            ("control.socket", "choose a shorter path")
        } else {
            ("dataDir", "choose a shorter dataDir or set control.socket")
        };
        return Err(invalid(
            path,
            format!(
                "{} is longer than a Unix socket path may be (about 100 bytes): {remedy}",
                control_socket.display()
            ),
        ));
    }
    let control_max_clients = defaults::CONTROL_MAX_CLIENTS.check(control.max_clients)?;
    let control_idle_timeout =
        Duration::from_millis(defaults::CONTROL_IDLE_TIMEOUT.check(control.idle_timeout)?);
    let control_admin_uids = ids("control.adminUids", control.admin_uids)?;
    let control_admin_gids = ids("control.adminGids", control.admin_gids)?;
    let runtime_threads =
        defaults::RUNTIME_THREADS.check(raw.runtime.unwrap_or_default().threads)? as usize;
    let journal = raw.journal.unwrap_or_default();
    let journal_max_events = defaults::JOURNAL_MAX_EVENTS.check(journal.max_events)?;
    let journal_max_bytes = defaults::JOURNAL_MAX_BYTES.check(journal.max_bytes)?;
    let federation = federation_config(raw.federation.unwrap_or_default())?;

    Ok(RelayConfig {
        overrides: Overrides::default(),
        control_socket,
        control_max_clients: control_max_clients as usize,
        control_idle_timeout,
        control_admin_uids,
        control_admin_gids,
        runtime_threads,
        journal_max_events,
        journal_max_bytes,
        log_queue_lines,
        websocket_max_message_size,
        federation,
        source: String::new(),
        listen,
        announce,
        data_dir,
        identity_file,
        relay,
        access,
        warnings,
        max_connections: max_connections as u32,
        max_connections_per_peer: max_connections_per_peer as u32,
        max_pending_incoming: max_pending_incoming as u32,
        max_connections_per_ip,
        max_pending_incoming_per_ip,
        connections_per_minute,
        gossip,
        autonat,
        log_format,
        log_level,
        shutdown_timeout,
    })
}

/// The `relay` section's lists and automatic bans, as the file has them.
struct Lists {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    /// `blockTrustedlist`, the guide's name of `blocklist`.
    deny_old: Option<Vec<String>>,
    auto: Option<file::AutoBan>,
}

/// The allow and deny lists and the automatic bans, from the `relay`
/// section.
fn access_config(
    Lists {
        allow,
        deny,
        deny_old,
        auto,
    }: Lists,
    exempt: &[crate::hop::sources::Cidr],
    warnings: &mut Vec<String>,
) -> Result<crate::access::AccessConfig, Invalid> {
    let deny = match (deny, deny_old) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "relay.blockTrustedlist",
                "is the old name of relay.blocklist, and both are set: move its entries to relay.blocklist",
            ))
        }
        (Some(d), None) => ("relay.blocklist", d),
        (None, Some(d)) => {
            warnings.push(
                "relay.blockTrustedlist is deprecated: rename it to relay.blocklist (it is read the same way for now)"
                    .into(),
            );
            ("relay.blockTrustedlist", d)
        }
        (None, None) => ("relay.blocklist", Vec::new()),
    };
    let subjects = |key: &str, list: Vec<String>| {
        if list.len() > defaults::MAX_LIST_ENTRIES {
            return Err(invalid(
                key,
                format!(
                    "at most {} entries, got {}",
                    defaults::MAX_LIST_ENTRIES,
                    list.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(list.len());
        let mut out: Vec<crate::access::Subject> = Vec::with_capacity(list.len());
        for (i, text) in list.iter().enumerate() {
            let s = crate::access::Subject::parse(text)
                .map_err(|e| invalid(format!("{key}[{i}]"), e))?;
            if seen.insert(s) {
                out.push(s);
            }
        }
        Ok(out)
    };
    let allow = subjects("relay.allowlist", allow.unwrap_or_default())?;
    let deny = subjects(deny.0, deny.1)?;
    let auto = auto.unwrap_or_default();
    Ok(crate::access::AccessConfig {
        allow,
        deny,
        auto_ban: crate::access::AutoBan {
            enabled: auto.enabled.unwrap_or(defaults::AUTO_BAN_ENABLED),
            refusals: defaults::AUTO_BAN_REFUSALS.check(auto.refusals)? as u32,
            window: Duration::from_millis(defaults::AUTO_BAN_WINDOW.check(auto.window)?),
            duration: Duration::from_millis(defaults::AUTO_BAN_DURATION.check(auto.duration)?),
        },
        exempt: exempt.to_vec(),
    })
}

/// The `relay` section: the hop service and its limits.
fn hop_config(raw: file::Relay) -> Result<HopConfig, Invalid> {
    let enabled = raw.enabled.unwrap_or(defaults::RELAY_ENABLED);
    let hop = raw.hop.unwrap_or_default();
    let hop_enabled = hop.enabled.unwrap_or(defaults::HOP_ENABLED);
    if let Some(adv) = raw.advertise {
        defaults::ADVERTISE_TTL.check(adv.ttl)?;
    }

    let res = raw.reservations.unwrap_or_default();
    let max_reservations = defaults::MAX_RESERVATIONS.check(res.max)?;
    let max_reservations_per_peer = defaults::MAX_RESERVATIONS_PER_PEER.check(res.max_per_peer)?;
    let ttl_ms = defaults::RESERVATION_TTL.check(res.ttl)?;

    let circ = raw.circuits.unwrap_or_default();
    let max_circuits = defaults::MAX_CIRCUITS.check(circ.max)?;
    let max_circuits_per_peer = defaults::MAX_CIRCUITS_PER_PEER.check(circ.max_per_peer)?;
    if max_circuits_per_peer > max_circuits {
        // Blame the key in the file: left at its default, maxPerPeer is not
        // what the operator wrote, a small circuits.max is.
        return Err(match circ.max_per_peer {
            Some(_) => invalid(
                "relay.circuits.maxPerPeer",
                format!(
                    "must not exceed relay.circuits.max ({max_circuits}), got {max_circuits_per_peer}"
                ),
            ),
            None => invalid(
                "relay.circuits.max",
                format!(
                    "must be at least relay.circuits.maxPerPeer ({max_circuits_per_peer} by default), got {max_circuits}: raise it or set maxPerPeer too"
                ),
            ),
        });
    }
    let pace = defaults::CIRCUIT_BYTES_PER_SECOND.check(circ.max_bytes_per_second)?;
    if pace != 0 && pace < defaults::CIRCUIT_BYTES_PER_SECOND_MIN_NONZERO {
        return Err(invalid(
            defaults::CIRCUIT_BYTES_PER_SECOND.key,
            format!(
                "expected 0 (no cap) or at least {} bytes per second, got {pace}",
                defaults::CIRCUIT_BYTES_PER_SECOND_MIN_NONZERO
            ),
        ));
    }
    let bytes_per_second = (pace != 0).then_some(pace);
    let circuit_limits = if circ.unlimited.unwrap_or(defaults::CIRCUITS_UNLIMITED) {
        for (key, set) in [
            ("duration", circ.duration.is_some()),
            ("data", circ.data.is_some()),
        ] {
            if set {
                return Err(invalid(
                    format!("relay.circuits.{key}"),
                    "cannot be set while relay.circuits.unlimited is true: remove one of them",
                ));
            }
        }
        CircuitLimits {
            duration: None,
            data: None,
            bytes_per_second,
        }
    } else {
        let duration_ms = defaults::CIRCUIT_DURATION.check(circ.duration)?;
        if duration_ms != 0 && duration_ms < defaults::CIRCUIT_DURATION_MIN_NONZERO {
            return Err(invalid(
                defaults::CIRCUIT_DURATION.key,
                format!(
                    "expected 0 (no time limit) or at least {} milliseconds, got {duration_ms}",
                    defaults::CIRCUIT_DURATION_MIN_NONZERO
                ),
            ));
        }
        let data = defaults::CIRCUIT_DATA.check(circ.data)?;
        if data != 0 && data < defaults::CIRCUIT_DATA_MIN_NONZERO {
            return Err(invalid(
                defaults::CIRCUIT_DATA.key,
                format!(
                    "expected 0 (no data limit) or at least {} bytes (bots send messages of up to 1 MiB), got {data}",
                    defaults::CIRCUIT_DATA_MIN_NONZERO
                ),
            ));
        }
        CircuitLimits {
            duration: (duration_ms != 0).then(|| Duration::from_millis(duration_ms)),
            data: (data != 0).then_some(data),
            bytes_per_second,
        }
    };

    let requests = raw.requests.unwrap_or_default();
    let per_second = defaults::REQUESTS_PER_SECOND.check(requests.per_second)?;
    let burst = defaults::REQUEST_BURST.check(requests.burst)?;

    let idle_ms = defaults::CIRCUIT_IDLE_TIMEOUT.check(circ.idle_timeout)?;
    if idle_ms != 0 && idle_ms < defaults::CIRCUIT_IDLE_TIMEOUT_MIN_NONZERO {
        return Err(invalid(
            defaults::CIRCUIT_IDLE_TIMEOUT.key,
            format!(
                "expected 0 (no idle timeout) or at least {} milliseconds, got {idle_ms}",
                defaults::CIRCUIT_IDLE_TIMEOUT_MIN_NONZERO
            ),
        ));
    }
    let reservations_per_hour = defaults::RESERVATIONS_PER_HOUR.check(
        raw.rate_limit
            .as_ref()
            .and_then(|r| r.reservations_per_hour),
    )? as u32;
    let src = raw.sources.unwrap_or_default();
    let exempt = match &src.exempt {
        None => defaults::SOURCE_EXEMPT
            .iter()
            .map(|c| crate::hop::sources::Cidr::parse(c).expect("the defaults parse"))
            .collect(),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, c)| {
                crate::hop::sources::Cidr::parse(c)
                    .map_err(|e| invalid(format!("relay.sources.exempt[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let sources = SourceLimits {
        exempt,
        reservations_per_ip: defaults::MAX_RESERVATIONS_PER_IP.check(res.max_per_ip)? as usize,
        reservations_per_prefix: defaults::MAX_RESERVATIONS_PER_PREFIX.check(res.max_per_prefix)?
            as usize,
        circuits_per_ip: defaults::MAX_CIRCUITS_PER_IP.check(circ.max_per_ip)? as usize,
        circuits_per_prefix: defaults::MAX_CIRCUITS_PER_PREFIX.check(circ.max_per_prefix)? as usize,
        ipv4_prefix: defaults::SOURCE_IPV4_PREFIX.check(src.ipv4_prefix)? as u8,
        ipv6_prefix: defaults::SOURCE_IPV6_PREFIX.check(src.ipv6_prefix)? as u8,
    };

    Ok(HopConfig {
        request_rate: RequestRate {
            per_second: per_second as u32,
            burst: burst as u32,
        },
        enabled: enabled && hop_enabled,
        max_reservations: max_reservations as usize,
        max_reservations_per_peer: max_reservations_per_peer as usize,
        reservation_ttl: Duration::from_millis(ttl_ms),
        max_circuits: max_circuits as usize,
        max_circuits_per_peer: max_circuits_per_peer as usize,
        circuit_limits,
        sources,
        circuit_idle_timeout: (idle_ms != 0).then(|| Duration::from_millis(idle_ms)),
        reservations_per_hour,
    })
}

/// Uids or gids; (uid_t)-1 is "nobody at all" to the kernel, never a caller.
fn ids(key: &str, list: Option<Vec<file::Id>>) -> Result<Option<Vec<u32>>, Invalid> {
    let Some(list) = list else { return Ok(None) };
    list.iter()
        .enumerate()
        .map(|(i, id)| {
            let id = defaults::ADMIN_ID.check_at(&format!("{key}[{i}]"), id.0)?;
            Ok(id as u32)
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn multiaddrs(key: &str, list: &[String]) -> Result<Vec<Multiaddr>, Invalid> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let path = format!("{key}[{i}]");
            for (placeholder, what) in PLACEHOLDERS {
                if s.contains(placeholder) {
                    return Err(invalid(
                        path,
                        format!(
                            "{s:?} still holds the placeholder {placeholder}: replace it with {what}"
                        ),
                    ));
                }
            }
            s.parse::<Multiaddr>().map_err(|e| {
                invalid(
                    path,
                    format!("expected a multiaddr such as \"/ip4/203.0.113.7/tcp/4001\", got {s:?} ({e})"),
                )
            })
        })
        .collect()
}

/// Listen addresses must be something this relay can bind: TCP, optionally
/// with `/ws`, on an IP address.
fn check_listen_addr(path: &str, addr: &Multiaddr) -> Result<(), Invalid> {
    let parts: Vec<Protocol> = addr.iter().collect();
    let ok = matches!(
        parts.as_slice(),
        [Protocol::Ip4(_) | Protocol::Ip6(_), Protocol::Tcp(_)]
            | [
                Protocol::Ip4(_) | Protocol::Ip6(_),
                Protocol::Tcp(_),
                Protocol::Ws(_)
            ]
    );
    if ok {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("expected /ip4|ip6/<address>/tcp/<port> or .../tcp/<port>/ws, got \"{addr}\""),
        ))
    }
}

/// Announce addresses are handed to bots inside reservations: they must name a
/// transport bots can dial and must not carry a peer ID of their own.
fn check_announce_addr(path: &str, addr: &Multiaddr) -> Result<(), Invalid> {
    let mut iter = addr.iter();
    let host_ok = matches!(
        iter.next(),
        Some(
            Protocol::Ip4(_)
                | Protocol::Ip6(_)
                | Protocol::Dns(_)
                | Protocol::Dns4(_)
                | Protocol::Dns6(_)
        )
    );
    let tcp_ok = matches!(iter.next(), Some(Protocol::Tcp(_)));
    let rest: Vec<Protocol> = iter.collect();
    let rest_ok = matches!(
        rest.as_slice(),
        [] | [Protocol::Ws(_)] | [Protocol::Wss(_)] | [Protocol::Tls, Protocol::Ws(_)]
    );
    if host_ok && tcp_ok && rest_ok {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!(
                "expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port> optionally followed by /ws or /wss, without /p2p, got \"{addr}\""
            ),
        ))
    }
}

/// `federation`: each peer a full address of another relay, ending in its
/// peer id; several addresses of one relay become one entry.
fn federation_config(raw: file::Federation) -> Result<FederationConfig, Invalid> {
    let listed = multiaddrs("federation.peers", &raw.peers.unwrap_or_default())?;
    let mut peers: Vec<FederatedRelay> = Vec::new();
    for (i, addr) in listed.into_iter().enumerate() {
        let path = format!("federation.peers[{i}]");
        let (transport, peer_id) = split_peer(&path, addr)?;
        let full = peers.len() == defaults::FEDERATION_PEERS_MAX;
        match peers.iter_mut().find(|p| p.peer_id == peer_id) {
            Some(p) if p.addrs.contains(&transport) => {}
            Some(p) => p.addrs.push(transport),
            None if full => {
                return Err(invalid(
                    path,
                    format!(
                        "at most {} relays may be federated (a larger fleet peers through hubs: see README), got more",
                        defaults::FEDERATION_PEERS_MAX
                    ),
                ))
            }
            None => peers.push(FederatedRelay {
                peer_id,
                addrs: vec![transport],
            }),
        }
    }
    let redial_min = defaults::FEDERATION_REDIAL_MIN.check(raw.redial_min)?;
    let redial_max = defaults::FEDERATION_REDIAL_MAX.check(raw.redial_max)?;
    if redial_max < redial_min {
        return Err(invalid(
            "federation.redialMax",
            format!("must not be less than redialMin ({redial_min}), got {redial_max}"),
        ));
    }
    let ping_interval = defaults::FEDERATION_PING_INTERVAL.check(raw.ping_interval)?;
    Ok(FederationConfig {
        peers,
        redial_min: Duration::from_millis(redial_min),
        redial_max: Duration::from_millis(redial_max),
        ping_interval: Duration::from_millis(ping_interval),
    })
}

/// A federated relay's address: a dialable transport address, then
/// `/p2p/<peer id>`; returned apart.
fn split_peer(path: &str, mut addr: Multiaddr) -> Result<(Multiaddr, libp2p::PeerId), Invalid> {
    let shown = addr.to_string();
    let Some(Protocol::P2p(peer_id)) = addr.pop() else {
        return Err(invalid(
            path,
            format!(
                "expected the relay's full address ending in /p2p/<its peer id>, got \"{shown}\""
            ),
        ));
    };
    check_announce_addr(path, &addr).map_err(|_| {
        invalid(
            path,
            format!(
                "expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/ws]/p2p/<peer id>, got \"{shown}\""
            ),
        )
    })?;
    if addr
        .iter()
        .any(|p| matches!(p, Protocol::Wss(_) | Protocol::Tls))
    {
        return Err(invalid(
            path,
            format!("this relay dials plain TCP or /ws only (no TLS), got \"{shown}\""),
        ));
    }
    Ok((addr, peer_id))
}

fn expand_home(path: &str) -> Option<PathBuf> {
    if path == "~" || path.starts_with("~/") {
        let home = std::env::var_os("HOME")?;
        Some(PathBuf::from(home).join(path.trim_start_matches('~').trim_start_matches('/')))
    } else {
        Some(PathBuf::from(path))
    }
}
