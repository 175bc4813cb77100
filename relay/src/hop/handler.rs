//! The per-connection half of the hop service: it hands inbound hop streams to
//! the behaviour and opens stop streams when the behaviour asks. All protocol
//! logic lives in the behaviour and the tasks it spawns; this handler keeps no
//! buffers, so an idle bot's connection costs only this struct.

use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::Duration;

use bsv_p2p_wire::{HOP_PROTOCOL, STOP_PROTOCOL};
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, SubstreamProtocol,
};

use super::CircuitId;

/// How long the destination gets to accept a stop stream.
const STOP_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum FromBehaviour {
    /// Open a stop stream to this connection's peer for a circuit.
    OpenStop(CircuitId),
    /// Whether the peer holds a reservation on this connection, which keeps
    /// the connection open while idle.
    Reserved(bool),
}

#[derive(Debug)]
pub enum ToBehaviour {
    HopStream(Stream),
    StopStream(CircuitId, Stream),
    StopFailed(CircuitId, String),
}

#[derive(Default)]
pub struct Handler {
    /// Stop streams the behaviour asked for, not yet requested from the muxer.
    requests: VecDeque<CircuitId>,
    events: VecDeque<ToBehaviour>,
    reserved: bool,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = FromBehaviour;
    type ToBehaviour = ToBehaviour;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = CircuitId;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(StreamProtocol::new(HOP_PROTOCOL)), ())
    }

    fn on_behaviour_event(&mut self, event: FromBehaviour) {
        match event {
            FromBehaviour::OpenStop(id) => self.requests.push_back(id),
            FromBehaviour::Reserved(r) => self.reserved = r,
        }
    }

    fn connection_keep_alive(&self) -> bool {
        self.reserved || !self.requests.is_empty()
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, CircuitId, Self::ToBehaviour>> {
        if let Some(e) = self.events.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(e));
        }
        if let Some(id) = self.requests.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(
                    ReadyUpgrade::new(StreamProtocol::new(STOP_PROTOCOL)),
                    id,
                )
                .with_timeout(STOP_OPEN_TIMEOUT),
            });
        }
        Poll::Pending
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol, (), CircuitId>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol, ..
            }) => self.events.push_back(ToBehaviour::HopStream(protocol)),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol,
                info,
            }) => self
                .events
                .push_back(ToBehaviour::StopStream(info, protocol)),
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info, error }) => self
                .events
                .push_back(ToBehaviour::StopFailed(info, error.to_string())),
            _ => {}
        }
    }
}
