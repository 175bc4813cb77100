//! What the relay does on the libp2p network, one field per job. Every
//! per-connection default here is a memory budget paid once per bot, so each
//! one is sized on purpose.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::{transport, upgrade, Transport};
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{autonat, gossipsub, identify, noise, tcp, websocket, yamux, PeerId};

use crate::config::RelayConfig;
use crate::{hop, ping};

/// Protocol version announced through identify, as go and js nodes do.
const IDENTIFY_PROTOCOL: &str = "/ipfs/0.1.0";

/// gossipsub's default per-peer send queue made an idle reserved bot cost
/// ~616 KiB of relay memory. Half of this is preallocated per connection for
/// forwarded messages; 16 (8 forwards queued per peer) is ample for
/// announcements sent every minute or more, and saves ~5 KiB per reserved
/// peer against 64 (bsv-p2p-bench reservation_ramp).
const GOSSIP_SEND_QUEUE: usize = 16;

/// Streams a peer may hold open on one connection: circuits (capped lower by
/// `relay.circuits.maxPerPeer`), pings, identify and gossip.
const MAX_STREAMS_PER_CONNECTION: usize = 512;

/// Per-stream yamux receive window, fixed. js-libp2p's yamux sends frames as
/// large as the whole window it was granted; yamux 0.13 (the libp2p default)
/// grows windows past 1 MiB and then rejects those frames, killing the
/// connection with every reservation and circuit on it. The 0.12 code path
/// keeps the window fixed, so js frames never exceed it.
const YAMUX_WINDOW: u32 = 256 * 1024;

/// Subscriptions one gossip RPC may carry. gossipsub keeps each peer's
/// subscriptions until it leaves; only the configured topics are kept at all
/// (a peer could otherwise name a megabyte of topics per RPC), and a bot
/// announces its few topics at once.
const MAX_SUBSCRIPTIONS_PER_RPC: usize = 64;

/// What a peer may subscribe to through the relay: the configured topics.
pub type TopicFilter =
    gossipsub::MaxCountSubscriptionFilter<gossipsub::WhitelistSubscriptionFilter>;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Caps and a rate per remote address, before any handshake work.
    pub admission: crate::admission::Admission,
    /// `connectionManager`: caps on connections in total and per peer
    /// (federated relays exempt).
    pub limits: crate::limits::Limits,
    /// Circuit relay v2 hop: reservations and circuits (our own server).
    pub hop: Toggle<hop::Behaviour>,
    /// Answers the bots' connection monitor at all times.
    pub ping: ping::Behaviour,
    pub identify: identify::Behaviour,
    /// AutoNAT v1 server: bots ask the relay to dial them back.
    pub autonat: Toggle<crate::autonat::Server>,
    /// Routes announcements between bots that only meet at the relay, on
    /// the configured topics only.
    pub gossipsub: Toggle<gossipsub::Behaviour<gossipsub::IdentityTransform, TopicFilter>>,
    /// Keeps the relays of `federation.peers` connected and watched.
    pub federation: crate::federation::Behaviour,
}

impl Behaviour {
    pub fn new(
        key: &Keypair,
        config: &RelayConfig,
        access: crate::access::Access,
    ) -> Result<Self, String> {
        let peer_id = key.public().to_peer_id();

        let federation = crate::federation::Behaviour::new(&config.federation, peer_id);
        let limits = crate::limits::Limits::new(
            crate::limits::Caps {
                max_established: config.max_connections,
                max_established_per_peer: config.max_connections_per_peer,
                max_pending_incoming: config.max_pending_incoming,
            },
            federation.peer_ids().copied(),
        );

        let hop = config.relay.enabled.then(|| {
            hop::Behaviour::new(key.clone(), config.relay.clone(), Box::new(access.clone()))
        });

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                .with_agent_version(format!("bsv-p2p-relay/{}", env!("CARGO_PKG_VERSION")))
                // Only the addresses the relay confirmed as external go to peers;
                // interface addresses (loopback, private ranges) would mislead bots.
                .with_hide_listen_addrs(true)
                .with_interval(Duration::from_secs(15 * 60))
                .with_cache_size(0),
        );

        let autonat = config.autonat.then(|| {
            crate::autonat::Server::new(
                peer_id,
                autonat::Config {
                    // The relay is a public host: it serves dial-backs but never
                    // needs to probe its own reachability.
                    boot_delay: Duration::from_secs(u64::from(u32::MAX)),
                    refresh_interval: Duration::from_secs(u64::from(u32::MAX)),
                    ..Default::default()
                },
            )
        });

        let gossipsub = match &config.gossip {
            Some(g) => {
                let gs_config = gossipsub::ConfigBuilder::default()
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .max_transmit_size(g.max_message_size)
                    .connection_handler_queue_len(GOSSIP_SEND_QUEUE)
                    .build()
                    .map_err(|e| format!("gossipSub: {e}"))?;
                let filter = TopicFilter {
                    filter: gossipsub::WhitelistSubscriptionFilter(
                        g.topics
                            .iter()
                            .map(|t| gossipsub::IdentTopic::new(t).hash())
                            .collect(),
                    ),
                    max_subscribed_topics: g.topics.len(),
                    max_subscriptions_per_request: MAX_SUBSCRIPTIONS_PER_RPC,
                };
                let mut gs = gossipsub::Behaviour::new_with_subscription_filter(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gs_config,
                    None,
                    filter,
                )
                .map_err(|e| format!("gossipSub: {e}"))?;
                for topic in &g.topics {
                    gs.subscribe(&gossipsub::IdentTopic::new(topic))
                        .map_err(|e| format!("gossipSub.topics: cannot join {topic:?}: {e}"))?;
                }
                // Federated relays are explicit peers: every new message on a
                // topic one subscribes to goes to it, outside the mesh, and
                // the seen-cache drops copies arriving by a second path.
                for peer in federation.peer_ids() {
                    gs.add_explicit_peer(peer);
                }
                Some(gs)
            }
            None => None,
        };

        Ok(Self {
            admission: crate::admission::Admission::new(
                crate::admission::AdmissionConfig::of(config, peer_id),
                access,
            ),
            limits,
            hop: hop.into(),
            ping: ping::Behaviour::new(ping::PingConfig::default()),
            identify,
            autonat: autonat.into(),
            gossipsub: gossipsub.into(),
            federation,
        })
    }
}

/// The WebSocket listener (and dialer, for AutoNAT dial-backs): TCP with
/// Nagle off like the plain TCP transport, noise and yamux, and a cap on the
/// message size the WebSocket codec will buffer (`websocket.maxMessageSize`):
/// the codec sizes its buffer from a frame header before any key is checked.
pub fn websocket_transport(
    key: &Keypair,
    max_message_size: usize,
) -> Result<transport::Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = tcp::async_io::Transport::new(tcp::Config::default().nodelay(true));
    let mut ws = websocket::Config::new(tcp);
    ws.set_max_data_size(max_message_size);
    Ok(ws
        .upgrade(upgrade::Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux_config())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

/// The muxer every connection uses (see [`YAMUX_WINDOW`]).
pub fn yamux_config() -> yamux::Config {
    let mut c = yamux::Config::default();
    // The deprecated setters are the only way to select yamux 0.12's fixed
    // window in libp2p 0.55; 0.13 breaks js-libp2p bulk transfers.
    #[allow(deprecated)]
    c.set_receive_window_size(YAMUX_WINDOW);
    c.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    c
}
