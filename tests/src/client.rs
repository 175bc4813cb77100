//! A rust-libp2p client peer for the end-to-end tests: TCP and WebSocket
//! transports, noise, yamux, the circuit relay v2 client, identify, optional
//! ping, and the echo and sink probes.
//!
//! Each client's swarm runs in its own async-std task and is driven through a
//! command channel, so a test holds a plain handle and awaits one operation at
//! a time without ever polling a swarm itself. The task records what its swarm
//! reports as [`ClientEvent`]s in a numbered history that tests wait on.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, ping, relay, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder};

use crate::probes::{self, Transfer, ECHO, PING, SINK};

/// Bound on every single network step (dial, reservation, stream opening).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// What a client runs besides its transports and the relay client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Run rust-libp2p's ping behaviour (answers and sends pings). A bot-like
    /// peer without a ping service sets this to false.
    pub ping: bool,
    /// Serve the echo and sink probes to other peers.
    pub serve: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ping: true,
            serve: true,
        }
    }
}

/// The limit a relay attached to a reservation or circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitLimit {
    pub duration: Option<Duration>,
    pub data: Option<u64>,
}

/// What a client's swarm reported, in order.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    ConnectionEstablished {
        peer: PeerId,
        connection: ConnectionId,
        address: Multiaddr,
        relayed: bool,
    },
    ConnectionClosed {
        peer: PeerId,
        connection: ConnectionId,
        cause: Option<String>,
    },
    DialFailed {
        connection: ConnectionId,
        peer: Option<PeerId>,
        error: String,
    },
    NewListenAddr {
        listener: ListenerId,
        address: Multiaddr,
    },
    ListenerClosed {
        listener: ListenerId,
        error: Option<String>,
    },
    ReservationAccepted {
        relay: PeerId,
        renewal: bool,
        limit: Option<CircuitLimit>,
    },
    OutboundCircuit {
        relay: PeerId,
        limit: Option<CircuitLimit>,
    },
    InboundCircuit {
        src: PeerId,
        limit: Option<CircuitLimit>,
    },
    Identified {
        peer: PeerId,
        agent: String,
        protocols: Vec<String>,
    },
    /// rust-libp2p's ping behaviour got an answer from `peer`.
    Pinged {
        peer: PeerId,
    },
    PingFailed {
        peer: PeerId,
        error: String,
    },
}

/// A reservation the relay accepted.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub relay: PeerId,
    pub listener: ListenerId,
    /// The client's own address through the relay (`<relay>/p2p-circuit/p2p/<client>`).
    pub address: Multiaddr,
    /// The `Limit` sent with the reservation (rust-libp2p's client exposes
    /// neither the expiry nor the voucher; the relay logs the expiry).
    pub limit: Option<CircuitLimit>,
}

type Predicate = Box<dyn Fn(&ClientEvent) -> bool + Send>;
type DialReply = oneshot::Sender<Result<(PeerId, ConnectionId), String>>;

enum Command {
    Dial {
        opts: DialOpts,
        peer: Option<PeerId>,
        reply: DialReply,
    },
    Listen {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(ListenerId, usize), String>>,
    },
    Disconnect(PeerId),
    IsConnected {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Seq(oneshot::Sender<usize>),
    Wait {
        from: usize,
        pred: Predicate,
        reply: oneshot::Sender<(usize, ClientEvent)>,
    },
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: relay::client::Behaviour,
    identify: identify::Behaviour,
    ping: Toggle<ping::Behaviour>,
    streams: libp2p_stream::Behaviour,
}

/// Handle on a client peer; its swarm stops when the handle is dropped.
pub struct Client {
    peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    control: libp2p_stream::Control,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

impl Client {
    pub async fn start(options: ClientOptions) -> Result<Client, String> {
        let swarm = crate::with_tcp_noise_yamux!(SwarmBuilder::with_new_identity())?
            .with_websocket(noise::Config::new, yamux::Config::default)
            .await
            .map_err(|e| format!("websocket transport: {e}"))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| format!("relay client transport: {e}"))?
            .with_behaviour(|key, relay| Behaviour {
                relay,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/ipfs/0.1.0".into(),
                    key.public(),
                )),
                ping: options.ping.then(ping::Behaviour::default).into(),
                streams: libp2p_stream::Behaviour::new(),
            })
            .map_err(|e| format!("behaviour: {e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();

        let peer_id = *swarm.local_peer_id();
        let mut control = swarm.behaviour().streams.new_control();
        if options.serve {
            let echo = control.accept(ECHO).map_err(|e| e.to_string())?;
            let sink = control.accept(SINK).map_err(|e| e.to_string())?;
            async_std::task::spawn(probes::serve_echo(echo));
            async_std::task::spawn(probes::serve_sink(sink));
        }
        let (commands, rx) = mpsc::unbounded();
        async_std::task::spawn(Driver::new(swarm).run(rx));
        Ok(Client {
            peer_id,
            commands,
            control,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .unbounded_send(make(tx))
            .map_err(|_| "the client's swarm task has stopped".to_string())?;
        timed(STEP_TIMEOUT, "a reply from the swarm task", rx)
            .await?
            .map_err(|_| "the client's swarm task dropped the request".to_string())
    }

    /// Connects to `addr` (ending in `/p2p/<peer>`); Ok at once if already connected.
    pub async fn connect(&self, addr: &Multiaddr) -> Result<PeerId, String> {
        let peer = peer_of(addr).ok_or_else(|| format!("{addr} does not end in /p2p/<peer>"))?;
        let opts = DialOpts::peer_id(peer)
            .addresses(vec![addr.clone()])
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        self.dial(opts, Some(peer)).await.map(|(p, _)| p)
    }

    /// Opens a connection to `peer` through the relay at `relay`.
    pub async fn dial_via(&self, relay: &Multiaddr, peer: PeerId) -> Result<ConnectionId, String> {
        let addr = relay
            .clone()
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(peer));
        let opts = DialOpts::peer_id(peer)
            .addresses(vec![addr])
            .condition(PeerCondition::Always)
            .build();
        self.dial(opts, None).await.map(|(_, c)| c)
    }

    async fn dial(
        &self,
        opts: DialOpts,
        peer: Option<PeerId>,
    ) -> Result<(PeerId, ConnectionId), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .unbounded_send(Command::Dial {
                opts,
                peer,
                reply: tx,
            })
            .map_err(|_| "the client's swarm task has stopped".to_string())?;
        timed(STEP_TIMEOUT, "the connection", rx)
            .await?
            .map_err(|_| "the client's swarm task dropped the dial".to_string())?
    }

    /// Connects to the relay and reserves a slot on it; fails if refused.
    pub async fn reserve(&self, relay: &Multiaddr) -> Result<Reservation, String> {
        let relay_peer = self.connect(relay).await?;
        let (listener, from) = self
            .call(|reply| Command::Listen {
                addr: relay.clone().with(Protocol::P2pCircuit),
                reply,
            })
            .await??;
        let (seq, outcome) = self
            .wait_event(from, STEP_TIMEOUT, move |e| match e {
                ClientEvent::NewListenAddr { listener: l, .. }
                | ClientEvent::ListenerClosed { listener: l, .. } => *l == listener,
                _ => false,
            })
            .await?;
        let address = match outcome {
            ClientEvent::NewListenAddr { address, .. } => address,
            ClientEvent::ListenerClosed { error, .. } => {
                return Err(format!(
                    "reservation refused: {}",
                    error.unwrap_or_else(|| "listener closed".into())
                ))
            }
            _ => unreachable!("filtered above"),
        };
        // The listener reports its address right after the behaviour reports
        // acceptance; the acceptance carries the limit.
        let (_, accepted) = self
            .wait_event(from, STEP_TIMEOUT, move |e| {
                matches!(e, ClientEvent::ReservationAccepted { relay, renewal: false, .. } if *relay == relay_peer)
            })
            .await
            .map_err(|e| format!("listener got {address} (event {seq}) but {e}"))?;
        let ClientEvent::ReservationAccepted { limit, .. } = accepted else {
            unreachable!("filtered above")
        };
        Ok(Reservation {
            relay: relay_peer,
            listener,
            address,
            limit,
        })
    }

    /// Asks for a reservation that the relay must refuse; returns the refusal.
    pub async fn reserve_expect_denied(&self, relay: &Multiaddr) -> Result<String, String> {
        match self.reserve(relay).await {
            Ok(r) => Err(format!("the relay accepted the reservation: {r:?}")),
            Err(e) if e.starts_with("reservation refused: ") => Ok(e),
            Err(e) => Err(e),
        }
    }

    /// Closes every connection to `peer`.
    pub fn disconnect(&self, peer: PeerId) {
        let _ = self.commands.unbounded_send(Command::Disconnect(peer));
    }

    pub async fn is_connected(&self, peer: PeerId) -> Result<bool, String> {
        self.call(|reply| Command::IsConnected { peer, reply })
            .await
    }

    /// Number of events recorded so far: wait from here for what comes next.
    pub async fn seq(&self) -> Result<usize, String> {
        self.call(Command::Seq).await
    }

    /// Events recorded so far (from index `from`).
    pub async fn events_since(&self, from: usize) -> Result<Vec<ClientEvent>, String> {
        let mut out = Vec::new();
        let mut next = from;
        let end = self.seq().await?;
        while next < end {
            let (seq, e) = self.wait_event(next, STEP_TIMEOUT, |_| true).await?;
            out.push(e);
            next = seq + 1;
        }
        Ok(out)
    }

    /// Waits for the first event at index `from` or later that satisfies `pred`.
    pub async fn wait_event(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&ClientEvent) -> bool + Send + 'static,
    ) -> Result<(usize, ClientEvent), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .unbounded_send(Command::Wait {
                from,
                pred: Box::new(pred),
                reply: tx,
            })
            .map_err(|_| "the client's swarm task has stopped".to_string())?;
        timed(timeout, "the awaited client event", rx)
            .await?
            .map_err(|_| "the client's swarm task stopped".to_string())
    }

    /// Opens a stream for `protocol` on an existing connection to `peer`.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: libp2p::StreamProtocol,
    ) -> Result<libp2p::Stream, String> {
        let mut control = self.control.clone();
        let name = protocol.to_string();
        timed(
            STEP_TIMEOUT,
            &format!("a {name} stream"),
            control.open_stream(peer, protocol),
        )
        .await?
        .map_err(|e| format!("cannot open a {name} stream to {peer}: {e}"))
    }

    /// Echoes `bytes` through `peer`'s echo service, verified; bounded by `timeout`.
    pub async fn echo(
        &self,
        peer: PeerId,
        bytes: u64,
        timeout: Duration,
    ) -> Result<Transfer, String> {
        let stream = self.open_stream(peer, ECHO).await?;
        timed(timeout, "the echo", probes::echo(stream, bytes)).await?
    }

    /// Sends `bytes` one way to `peer`'s sink; bounded by `timeout`.
    pub async fn sink(
        &self,
        peer: PeerId,
        bytes: u64,
        timeout: Duration,
    ) -> Result<Transfer, String> {
        let stream = self.open_stream(peer, SINK).await?;
        timed(timeout, "the sink transfer", probes::sink(stream, bytes)).await?
    }

    /// `rounds` pings to `peer` on one new stream; the stream is closed after.
    pub async fn ping(&self, peer: PeerId, rounds: usize) -> Result<Vec<Duration>, String> {
        let mut stream = self.open_stream(peer, PING).await?;
        let limit = STEP_TIMEOUT + Duration::from_millis(10 * rounds as u64);
        let rtts = timed(limit, "the pings", probes::ping(&mut stream, rounds)).await??;
        let _ = futures::AsyncWriteExt::close(&mut stream).await;
        Ok(rtts)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Closing the channel ends the driver, which drops the swarm.
        self.commands.close_channel();
    }
}

/// The swarm task.
struct Driver {
    swarm: Swarm<Behaviour>,
    history: Vec<ClientEvent>,
    waiters: Vec<(Predicate, oneshot::Sender<(usize, ClientEvent)>)>,
    dials: Vec<(ConnectionId, DialReply)>,
}

impl Driver {
    fn new(swarm: Swarm<Behaviour>) -> Driver {
        Driver {
            swarm,
            history: Vec::new(),
            waiters: Vec::new(),
            dials: Vec::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            futures::select! {
                command = commands.next() => match command {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { opts, peer, reply } => {
                let connection = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => self.dials.push((connection, reply)),
                    Err(DialError::DialPeerConditionFalse(_))
                        if peer.is_some_and(|p| self.swarm.is_connected(&p)) =>
                    {
                        let _ = reply.send(Ok((peer.expect("checked"), connection)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("dial failed: {}", chain(&e))));
                    }
                }
            }
            Command::Listen { addr, reply } => {
                let from = self.history.len();
                let _ = reply.send(
                    self.swarm
                        .listen_on(addr.clone())
                        .map(|id| (id, from))
                        .map_err(|e| format!("cannot listen on {addr}: {}", chain(&e))),
                );
            }
            Command::Disconnect(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(self.swarm.is_connected(&peer));
            }
            Command::Seq(reply) => {
                let _ = reply.send(self.history.len());
            }
            Command::Wait { from, pred, reply } => {
                let found = self
                    .history
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, e)| pred(e));
                match found {
                    Some((seq, e)) => {
                        let _ = reply.send((seq, e.clone()));
                    }
                    None => self.waiters.push((pred, reply)),
                }
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let Some(event) = self.record(event) else {
            return;
        };
        let seq = self.history.len();
        self.history.push(event.clone());
        self.waiters.retain(|(_, reply)| !reply.is_canceled());
        let mut i = 0;
        while i < self.waiters.len() {
            if (self.waiters[i].0)(&event) {
                let (_, reply) = self.waiters.swap_remove(i);
                let _ = reply.send((seq, event.clone()));
            } else {
                i += 1;
            }
        }
    }

    /// Turns a swarm event into a history entry, answering pending dials.
    fn record(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<ClientEvent> {
        Some(match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.finish_dial(connection_id, Ok((peer_id, connection_id)));
                // An inbound relayed connection's remote address is only
                // `/p2p/<src>`; its local address names the circuit.
                let relayed = [endpoint.get_remote_address(), local_or_dialed(&endpoint)]
                    .iter()
                    .any(|a| a.iter().any(|p| p == Protocol::P2pCircuit));
                ClientEvent::ConnectionEstablished {
                    peer: peer_id,
                    connection: connection_id,
                    address: endpoint.get_remote_address().clone(),
                    relayed,
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } => ClientEvent::ConnectionClosed {
                peer: peer_id,
                connection: connection_id,
                cause: cause.map(|c| chain(&c)),
            },
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let error = chain(&error);
                self.finish_dial(connection_id, Err(format!("dial failed: {error}")));
                ClientEvent::DialFailed {
                    connection: connection_id,
                    peer: peer_id,
                    error,
                }
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => ClientEvent::NewListenAddr {
                listener: listener_id,
                address,
            },
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => ClientEvent::ListenerClosed {
                listener: listener_id,
                error: reason.err().map(|e| chain(&e)),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => match e {
                relay::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    renewal,
                    limit,
                } => ClientEvent::ReservationAccepted {
                    relay: relay_peer_id,
                    renewal,
                    limit: limit.map(|l| CircuitLimit {
                        duration: l.duration(),
                        data: l.data_in_bytes(),
                    }),
                },
                relay::client::Event::OutboundCircuitEstablished {
                    relay_peer_id,
                    limit,
                } => ClientEvent::OutboundCircuit {
                    relay: relay_peer_id,
                    limit: limit.map(|l| CircuitLimit {
                        duration: l.duration(),
                        data: l.data_in_bytes(),
                    }),
                },
                relay::client::Event::InboundCircuitEstablished { src_peer_id, limit } => {
                    ClientEvent::InboundCircuit {
                        src: src_peer_id,
                        limit: limit.map(|l| CircuitLimit {
                            duration: l.duration(),
                            data: l.data_in_bytes(),
                        }),
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => ClientEvent::Identified {
                peer: peer_id,
                agent: info.agent_version,
                protocols: info.protocols.iter().map(|p| p.to_string()).collect(),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(_),
                ..
            })) => ClientEvent::Pinged { peer },
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Err(e),
                ..
            })) => ClientEvent::PingFailed {
                peer,
                error: chain(&e),
            },
            _ => return None,
        })
    }

    fn finish_dial(
        &mut self,
        connection: ConnectionId,
        result: Result<(PeerId, ConnectionId), String>,
    ) {
        if let Some(i) = self.dials.iter().position(|(c, _)| *c == connection) {
            let (_, reply) = self.dials.swap_remove(i);
            let _ = reply.send(result);
        }
    }
}

fn local_or_dialed(endpoint: &libp2p::core::ConnectedPoint) -> &Multiaddr {
    match endpoint {
        libp2p::core::ConnectedPoint::Dialer { address, .. } => address,
        libp2p::core::ConnectedPoint::Listener { local_addr, .. } => local_addr,
    }
}

/// The peer ID an address ends with.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// An error with its sources, one after the other.
pub fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    // Source chains are short; the bound only guards against a cycle.
    for _ in 0..16 {
        let Some(s) = source else { break };
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `fut` bounded by `limit`; the error names what did not come.
pub async fn timed<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    async_std::future::timeout(limit, fut.fuse())
        .await
        .map_err(|_| format!("timed out after {limit:?} waiting for {what}"))
}
