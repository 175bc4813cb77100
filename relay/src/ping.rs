//! `/ipfs/ping/1.0.0`, answered at all times.
//!
//! Bots keep their relay connection only while the relay answers their
//! connection monitor's pings (every 10 s), and they run no ping service of
//! their own. rust-libp2p's ping handler stops answering inbound pings once its
//! own outbound ping is refused as unsupported, so a bot would drop the relay
//! (and its reservation) every few seconds. This handler answers every inbound
//! ping no matter what, and pings the peer itself only to find dead
//! connections: a peer without a ping service is simply not pinged, and a peer
//! that stops answering after supporting ping gets its connection closed so its
//! reservation and circuit slots are freed.
//!
//! Whether a peer serves ping is learnt from identify (the protocols it
//! lists), never by trying: a trial stream on every connection 15 s after it
//! opened, refused by every bot, cost the relay ~0.25 ms of CPU per
//! connection (perf, 10,000 reserved peers: 0.07 cores for the 15 s after a
//! ramp, the whole idle cost) and a timer per connection. A peer that does
//! not identify is not pinged either; its dead connection is still found
//! when a write to it fails.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use futures_timer::Delay;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
    ProtocolsChange,
};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    FromSwarm, NetworkBehaviour, Stream, StreamProtocol, StreamUpgradeError, SubstreamProtocol,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::PeerId;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
const PING_SIZE: usize = 32;
/// Inbound ping streams kept per connection. A pinger that opens a new
/// stream has moved on from its older ones (js-libp2p's connection monitor
/// opens one per ping and never reuses it), so past this the oldest is
/// dropped to make room, never the new one.
const MAX_INBOUND: usize = 4;
/// An inbound ping stream idle this long is closed (the pinger reopens one).
const INBOUND_IDLE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct PingConfig {
    /// Time between the relay's own liveness pings.
    pub interval: Duration,
    /// How long one ping may take before it counts as failed.
    pub timeout: Duration,
    /// Consecutive failures after which the connection is closed.
    pub max_failures: u32,
}

impl Default for PingConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(20),
            max_failures: 3,
        }
    }
}

/// A connection whose peer stopped answering pings; it is being closed.
#[derive(Debug)]
pub struct Unresponsive {
    pub peer: PeerId,
}

pub struct Behaviour {
    config: PingConfig,
    queue: VecDeque<ToSwarm<Unresponsive, Infallible>>,
}

impl Behaviour {
    pub fn new(config: PingConfig) -> Self {
        Self {
            config,
            queue: VecDeque::new(),
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Unresponsive;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(self.config.clone()))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(self.config.clone()))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        _: THandlerOutEvent<Self>,
    ) {
        self.queue.push_back(ToSwarm::CloseConnection {
            peer_id: peer,
            connection: CloseConnection::One(connection),
        });
        self.queue
            .push_back(ToSwarm::GenerateEvent(Unresponsive { peer }));
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.queue.pop_front() {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}

enum Outbound {
    /// Identify has not listed ping among the peer's protocols (yet): no
    /// timer, nothing to do.
    Unknown,
    /// Waiting for the next ping; keeps the stream of the last one for reuse.
    Idle {
        timer: Delay,
        stream: Option<Stream>,
    },
    Opening,
    Pinging(BoxFuture<'static, io::Result<Stream>>),
    /// The peer has no ping service: never ping it (but keep answering).
    Unsupported,
}

pub struct Handler {
    config: PingConfig,
    /// Oldest first.
    inbound: VecDeque<BoxFuture<'static, ()>>,
    outbound: Outbound,
    failures: u32,
    reported: bool,
}

impl Handler {
    fn new(config: PingConfig) -> Self {
        Self {
            outbound: Outbound::Unknown,
            config,
            inbound: VecDeque::with_capacity(MAX_INBOUND),
            failures: 0,
            reported: false,
        }
    }

    fn failed(&mut self) {
        self.failures += 1;
        self.outbound = Outbound::Idle {
            timer: Delay::new(self.config.interval),
            stream: None,
        };
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = ();
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn connection_keep_alive(&self) -> bool {
        false
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        self.inbound
            .retain_mut(|answer| answer.poll_unpin(cx).is_pending());

        if self.failures >= self.config.max_failures && !self.reported {
            self.reported = true;
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(()));
        }

        loop {
            match std::mem::replace(&mut self.outbound, Outbound::Opening) {
                Outbound::Idle { mut timer, stream } => {
                    if timer.poll_unpin(cx).is_pending() {
                        self.outbound = Outbound::Idle { timer, stream };
                        return Poll::Pending;
                    }
                    match stream {
                        Some(stream) => {
                            self.outbound =
                                Outbound::Pinging(ping(stream, self.config.timeout).boxed())
                        }
                        None => {
                            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                                protocol: SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
                                    .with_timeout(self.config.timeout),
                            })
                        }
                    }
                }
                Outbound::Opening => return Poll::Pending,
                Outbound::Pinging(mut fut) => match fut.poll_unpin(cx) {
                    Poll::Pending => {
                        self.outbound = Outbound::Pinging(fut);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(stream)) => {
                        self.failures = 0;
                        self.outbound = Outbound::Idle {
                            timer: Delay::new(self.config.interval),
                            stream: Some(stream),
                        };
                    }
                    Poll::Ready(Err(_)) => {
                        self.failed();
                        if self.failures >= self.config.max_failures && !self.reported {
                            self.reported = true;
                            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(()));
                        }
                    }
                },
                Outbound::Unsupported => {
                    self.outbound = Outbound::Unsupported;
                    return Poll::Pending;
                }
                Outbound::Unknown => {
                    self.outbound = Outbound::Unknown;
                    return Poll::Pending;
                }
            }
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                if self.inbound.len() >= MAX_INBOUND {
                    self.inbound.pop_front();
                }
                self.inbound.push_back(answer(stream).boxed());
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                self.outbound = Outbound::Pinging(ping(stream, self.config.timeout).boxed());
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => match error {
                StreamUpgradeError::NegotiationFailed => self.outbound = Outbound::Unsupported,
                _ => self.failed(),
            },
            // The connection polls the handler again right after this, which
            // starts the timer.
            ConnectionEvent::RemoteProtocolsChange(ProtocolsChange::Added(added))
                if matches!(self.outbound, Outbound::Unknown)
                    && added.clone().any(|p| *p == PROTOCOL) =>
            {
                self.outbound = Outbound::Idle {
                    timer: Delay::new(self.config.interval),
                    stream: None,
                };
            }
            _ => {}
        }
    }
}

/// Echoes 32-byte pings until the stream ends, errors or idles out.
async fn answer(mut stream: Stream) {
    let mut buf = [0u8; PING_SIZE];
    loop {
        let read = async_std::future::timeout(INBOUND_IDLE, stream.read_exact(&mut buf)).await;
        if !matches!(read, Ok(Ok(()))) {
            return;
        }
        if stream.write_all(&buf).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// One ping on `stream`: 32 random bytes out, the same 32 back within `timeout`.
async fn ping(mut stream: Stream, timeout: Duration) -> io::Result<Stream> {
    let payload: [u8; PING_SIZE] = rand::random();
    let started = Instant::now();
    let exchange = async {
        stream.write_all(&payload).await?;
        stream.flush().await?;
        let mut back = [0u8; PING_SIZE];
        stream.read_exact(&mut back).await?;
        if back != payload {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "ping payload mismatch",
            ));
        }
        Ok(())
    };
    async_std::future::timeout(timeout, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "ping timed out"))??;
    log::trace!(event = "ping_ok", rtt_us = started.elapsed().as_micros() as u64; "");
    Ok(stream)
}
