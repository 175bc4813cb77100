//! Speaking circuit relay v2 byte for byte, for the hop conformance tests: a
//! bare peer ([`RawPeer`]) with TCP, noise, yamux and generic streams only, so
//! that every hop and stop message it sends or answers is written by the test
//! itself with the relay's own wire types (`bsv_p2p_wire`), and
//! the circuit it gets is the raw stream, where every byte sent is a byte the
//! relay counts.

use std::time::Duration;

use async_std::sync::Mutex;
use futures::channel::{mpsc, oneshot};
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, Swarm};

pub use bsv_p2p_wire::{
    self as wire, encode_frame as frame, hop_type, stop_type, HopMessage, Limit, Status,
    StopMessage,
};

use crate::client::{chain, peer_of, timed, STEP_TIMEOUT};

pub const HOP: StreamProtocol = StreamProtocol::new(wire::HOP_PROTOCOL);
pub const STOP: StreamProtocol = StreamProtocol::new(wire::STOP_PROTOCOL);

/// What a [`RawPeer`] runs.
#[derive(Debug, Clone, Copy)]
pub struct RawOptions {
    /// Accept `/libp2p/circuit/relay/0.2.0/stop` streams (see
    /// [`RawPeer::next_stop`]). Without it the peer does not support the stop
    /// protocol at all, and the relay cannot open a circuit to it.
    pub accept_stop: bool,
}

enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<ConnectionId, String>>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
}

/// A peer that speaks nothing on its own: the test drives every stream.
pub struct RawPeer {
    peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    control: libp2p_stream::Control,
    stops: Option<Mutex<libp2p_stream::IncomingStreams>>,
}

impl RawPeer {
    /// A peer with a fresh identity.
    pub fn start(options: RawOptions) -> Result<RawPeer, String> {
        RawPeer::with_key(Keypair::generate_ed25519(), options)
    }

    /// A peer with `key`: two peers started with one key are two connections
    /// of the same peer ID as the relay sees them.
    pub fn with_key(key: Keypair, options: RawOptions) -> Result<RawPeer, String> {
        let swarm = crate::swarm::tcp_swarm(
            key,
            |_| libp2p_stream::Behaviour::new(),
            // Connections live as long as the test wants them.
            Duration::from_secs(3600),
        )?;
        let peer_id = *swarm.local_peer_id();
        let mut control = swarm.behaviour().new_control();
        let stops = if options.accept_stop {
            Some(Mutex::new(control.accept(STOP).map_err(|e| e.to_string())?))
        } else {
            None
        };
        let (commands, rx) = mpsc::unbounded();
        async_std::task::spawn(drive(swarm, rx));
        Ok(RawPeer {
            peer_id,
            commands,
            control,
            stops,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Opens a new connection to `addr` (ending in `/p2p/<peer>`).
    pub async fn connect(&self, addr: &Multiaddr) -> Result<ConnectionId, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .unbounded_send(Command::Dial {
                addr: addr.clone(),
                reply,
            })
            .map_err(|_| "the raw peer's swarm task has stopped".to_string())?;
        timed(STEP_TIMEOUT, "the connection", rx)
            .await?
            .map_err(|_| "the raw peer's swarm task dropped the dial".to_string())?
    }

    /// Closes every connection to `peer` and waits until they are closed.
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .unbounded_send(Command::Disconnect { peer, reply })
            .map_err(|_| "the raw peer's swarm task has stopped".to_string())?;
        timed(STEP_TIMEOUT, "the disconnection", rx)
            .await?
            .map_err(|_| "the raw peer's swarm task dropped the request".to_string())
    }

    /// Opens a hop stream to the relay (already connected).
    pub async fn open_hop(&self, relay: PeerId) -> Result<Stream, String> {
        let mut control = self.control.clone();
        timed(
            STEP_TIMEOUT,
            "a hop stream",
            control.open_stream(relay, HOP),
        )
        .await?
        .map_err(|e| format!("cannot open a hop stream to {relay}: {e}"))
    }

    /// Writes `bytes` as they are on a new hop stream and reads the answer.
    pub async fn send_raw(&self, relay: PeerId, bytes: &[u8]) -> Result<HopMessage, String> {
        let mut stream = self.open_hop(relay).await?;
        timed(STEP_TIMEOUT, "writing the request", async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await?
        .map_err(|e| format!("cannot write the request: {e}"))?;
        read_hop(&mut stream).await
    }

    /// Sends `msg` on a new hop stream and reads the answer.
    pub async fn request(&self, relay: PeerId, msg: &HopMessage) -> Result<HopMessage, String> {
        let mut stream = self.open_hop(relay).await?;
        write_msg(&mut stream, &msg.encode()).await?;
        read_hop(&mut stream).await
    }

    /// RESERVE; the answer whatever its status.
    pub async fn reserve(&self, relay: PeerId) -> Result<HopMessage, String> {
        self.request(relay, &reserve_msg()).await
    }

    /// RESERVE that must be accepted.
    pub async fn reserve_ok(&self, relay: PeerId) -> Result<HopMessage, String> {
        let reply = self.reserve(relay).await?;
        match status_of(&reply) {
            Some(Status::Ok) => Ok(reply),
            other => Err(format!("reservation not accepted: {other:?} in {reply:?}")),
        }
    }

    /// CONNECT to `dst` through `relay`: the answer and, when it is OK, the
    /// stream that now carries the circuit.
    pub async fn connect_via(
        &self,
        relay: PeerId,
        dst: PeerId,
    ) -> Result<(HopMessage, Stream), String> {
        let mut stream = self.open_hop(relay).await?;
        write_msg(&mut stream, &connect_msg(dst).encode()).await?;
        let reply = read_hop(&mut stream).await?;
        Ok((reply, stream))
    }

    /// The next stop stream the relay opens to this peer.
    pub async fn next_stop(&self, timeout: Duration) -> Result<(PeerId, Stream), String> {
        let stops = self
            .stops
            .as_ref()
            .ok_or("this raw peer does not accept stop streams")?;
        let mut stops = stops.lock().await;
        timed(timeout, "a stop stream", stops.next())
            .await?
            .ok_or_else(|| "the stop stream listener ended".to_string())
    }

    /// Waits for the relay's stop stream, reads its CONNECT and answers it
    /// with `status`: the CONNECT and the stream.
    pub async fn answer_stop(&self, status: Status) -> Result<(StopMessage, Stream), String> {
        let (_, mut stream) = self.next_stop(STEP_TIMEOUT).await?;
        let connect = read_stop(&mut stream).await?;
        let reply = StopMessage {
            kind: Some(stop_type::STATUS),
            status: Some(status as u64),
            ..Default::default()
        };
        write_msg(&mut stream, &reply.encode()).await?;
        Ok((connect, stream))
    }
}

async fn drive(
    mut swarm: Swarm<libp2p_stream::Behaviour>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut dials: Vec<(ConnectionId, oneshot::Sender<Result<ConnectionId, String>>)> = Vec::new();
    let mut disconnects: Vec<(PeerId, oneshot::Sender<()>)> = Vec::new();
    loop {
        futures::select! {
            command = commands.next() => match command {
                Some(Command::Dial { addr, reply }) => {
                    let Some(peer) = peer_of(&addr) else {
                        let _ = reply.send(Err(format!("{addr} does not end in /p2p/<peer>")));
                        continue;
                    };
                    let opts = DialOpts::peer_id(peer)
                        .addresses(vec![addr])
                        .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                        .build();
                    let id = opts.connection_id();
                    match swarm.dial(opts) {
                        Ok(()) => dials.push((id, reply)),
                        Err(e) => {
                            let _ = reply.send(Err(format!("dial failed: {}", chain(&e))));
                        }
                    }
                }
                Some(Command::Disconnect { peer, reply }) => {
                    if swarm.disconnect_peer_id(peer).is_ok() && swarm.is_connected(&peer) {
                        disconnects.push((peer, reply));
                    } else {
                        let _ = reply.send(());
                    }
                }
                None => return,
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { connection_id, .. } => {
                    if let Some(i) = dials.iter().position(|(c, _)| *c == connection_id) {
                        let _ = dials.swap_remove(i).1.send(Ok(connection_id));
                    }
                }
                SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                    if let Some(i) = dials.iter().position(|(c, _)| *c == connection_id) {
                        let _ = dials
                            .swap_remove(i)
                            .1
                            .send(Err(format!("dial failed: {}", chain(&error))));
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    while let Some(i) = disconnects.iter().position(|(p, _)| *p == peer_id) {
                        let _ = disconnects.swap_remove(i).1.send(());
                    }
                }
                _ => {}
            },
        }
    }
}

/// A RESERVE request.
pub fn reserve_msg() -> HopMessage {
    HopMessage {
        kind: Some(hop_type::RESERVE),
        ..Default::default()
    }
}

/// A CONNECT request for `dst`.
pub fn connect_msg(dst: PeerId) -> HopMessage {
    HopMessage {
        kind: Some(hop_type::CONNECT),
        peer: Some(wire::Peer {
            id: dst.to_bytes(),
            addrs: Vec::new(),
        }),
        ..Default::default()
    }
}

/// The status of an answer, if it is one the spec knows.
pub fn status_of(msg: &HopMessage) -> Option<Status> {
    msg.status.and_then(Status::from_code)
}

pub async fn write_msg(stream: &mut Stream, msg: &[u8]) -> Result<(), String> {
    timed(
        STEP_TIMEOUT,
        "writing a message",
        wire::write_frame(stream, msg),
    )
    .await?
    .map_err(|e| format!("cannot write a message: {e}"))
}

/// Reads one hop message; an error if the stream ends first or it does not decode.
pub async fn read_hop(stream: &mut Stream) -> Result<HopMessage, String> {
    let bytes = timed(
        STEP_TIMEOUT,
        "the relay's hop answer",
        wire::read_frame(stream),
    )
    .await?
    .map_err(|e| format!("no hop answer: {e}"))?;
    HopMessage::decode(&bytes).map_err(|e| format!("the relay's hop answer does not decode: {e}"))
}

/// Reads one stop message.
pub async fn read_stop(stream: &mut Stream) -> Result<StopMessage, String> {
    let bytes = timed(
        STEP_TIMEOUT,
        "the relay's stop message",
        wire::read_frame(stream),
    )
    .await?
    .map_err(|e| format!("no stop message: {e}"))?;
    StopMessage::decode(&bytes)
        .map_err(|e| format!("the relay's stop message does not decode: {e}"))
}

/// Reads exactly `n` bytes; an error says how many came before the stream
/// ended or failed.
pub async fn read_exactly(
    stream: &mut Stream,
    n: usize,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    let read = async {
        while got < n {
            match stream.read(&mut buf[got..]).await {
                Ok(0) => return Err(format!("the stream ended after {got} of {n} bytes")),
                Ok(k) => got += k,
                Err(e) => return Err(format!("the stream failed after {got} of {n} bytes: {e}")),
            }
        }
        Ok(())
    };
    match timed(timeout, "the bytes", read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(format!("{e} ({got} of {n} bytes read)")),
    }
}

/// How a stream ended when the test expected it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Read returned 0 (the other side closed or the relay dropped it).
    Eof,
    /// Read failed (reset).
    Error(String),
}

/// Reads until the stream ends, counting what still came; fails if it is
/// still open after `timeout`.
pub async fn read_until_end(
    stream: &mut Stream,
    timeout: Duration,
) -> Result<(u64, Ended), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut extra = 0u64;
    let until_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ended::Eof,
                Ok(k) => extra += k as u64,
                Err(e) => return Ended::Error(e.to_string()),
            }
        }
    };
    let ended = async_std::future::timeout(timeout, until_end.fuse())
        .await
        .map_err(|_| format!("the stream was still open after {timeout:?} ({extra} bytes read)"))?;
    Ok((extra, ended))
}

/// A payload whose bytes depend on their position and on `seed`.
pub fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9) >> 7) as u8 ^ seed)
        .collect()
}

/// Waits until writing on `stream` fails, which tells a reset (yamux reports
/// a reset to a reader as the end of the stream, like a clean close, but a
/// reset stream also refuses writes). An error if it still takes writes after
/// `timeout`.
pub async fn wait_reset(stream: &mut Stream, timeout: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let wrote = async_std::future::timeout(Duration::from_millis(500), async {
            stream.write_all(&[0]).await?;
            stream.flush().await
        })
        .await;
        if let Ok(Err(_)) = wrote {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("the stream still takes writes after {timeout:?}"));
        }
        async_std::task::sleep(Duration::from_millis(20)).await;
    }
}
