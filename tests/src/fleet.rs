//! A fleet of federated relays on loopback: each its own process, data
//! directory and identity, every one listing all of them (itself included,
//! as one fleet file would) in `federation.peers`. The identities are made
//! here and the TCP ports chosen before any relay starts, so each config can
//! name the others, and a relay killed and started again comes back at the
//! address the others redial.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde_json::{json, Value};

use crate::relay::{field, Relay, RelayOptions, Signal};
use crate::ScratchDir;

struct Member {
    peer_id: PeerId,
    port: u16,
    relay: Option<Relay>,
    /// The directory of a relay that is down, kept for its restart.
    dir: Option<ScratchDir>,
}

pub struct Fleet {
    members: Vec<Member>,
    config: Value,
}

impl Fleet {
    /// Starts `n` relays federated in a full mesh; `federation` is merged
    /// into each config's `federation` section (e.g. `pingInterval`).
    pub fn start(n: usize, federation: Value) -> Fleet {
        Fleet::start_at("/ip4/127.0.0.1", n, federation)
    }

    /// As [`Fleet::start`], the relays naming each other at `host`
    /// (`/dns4/localhost`: through the system resolver).
    pub fn start_at(host: &str, n: usize, federation: Value) -> Fleet {
        let mut members = Vec::new();
        for _ in 0..n {
            let key = Keypair::generate_ed25519();
            let dir = ScratchDir::new("fleet");
            let data = dir.join("data");
            std::fs::create_dir(&data).expect("data dir");
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750))
                .expect("data dir mode");
            let identity = data.join("identity.key");
            std::fs::write(&identity, key.to_protobuf_encoding().expect("encodes"))
                .expect("identity");
            std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600))
                .expect("identity mode");
            members.push(Member {
                peer_id: key.public().to_peer_id(),
                port: crate::prometheus::free_port().expect("a free port"),
                relay: None,
                dir: Some(dir),
            });
        }
        let peers: Vec<String> = members
            .iter()
            .map(|m| format!("{host}/tcp/{}/p2p/{}", m.port, m.peer_id))
            .collect();
        let mut section = json!({ "peers": peers });
        if let (Some(s), Some(extra)) = (section.as_object_mut(), federation.as_object()) {
            s.extend(extra.clone());
        }
        let mut fleet = Fleet {
            members,
            config: json!({ "mode": "relay", "federation": section }),
        };
        for i in 0..n {
            fleet.restart(i);
        }
        fleet
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn peer_id(&self, i: usize) -> PeerId {
        self.members[i].peer_id
    }

    /// The running relay `i`.
    pub fn relay(&self, i: usize) -> &Relay {
        self.members[i]
            .relay
            .as_ref()
            .unwrap_or_else(|| panic!("relay {i} is down"))
    }

    /// Relay `i`'s TCP address with its peer id, as the others dial it.
    pub fn addr(&self, i: usize) -> Multiaddr {
        format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            self.members[i].port, self.members[i].peer_id
        )
        .parse()
        .expect("a multiaddr")
    }

    /// Kills relay `i` with SIGKILL (a crash), keeping its directory.
    pub fn kill(&mut self, i: usize) {
        let mut relay = self.members[i].relay.take().expect("running");
        relay
            .stop(Signal::Kill, Duration::from_secs(10))
            .expect("the relay dies on SIGKILL");
        self.members[i].dir = Some(relay.into_dir());
    }

    /// Starts relay `i` (again) on its directory, identity and port.
    pub fn restart(&mut self, i: usize) {
        let dir = self.members[i].dir.take().expect("relay is down");
        let mut options = RelayOptions::new(self.config.clone()).dir(dir);
        options.listen = vec![
            format!("/ip4/127.0.0.1/tcp/{}", self.members[i].port),
            "/ip4/127.0.0.1/tcp/0/ws".into(),
        ];
        let relay = Relay::start_with(options);
        assert_eq!(relay.peer_id(), self.members[i].peer_id, "identity kept");
        self.members[i].relay = Some(relay);
    }

    /// Waits until relay `i` has logged `federation_peer_up` for every other
    /// running relay since it started.
    pub fn wait_meshed(&self, i: usize, timeout: Duration) {
        for j in 0..self.len() {
            if j != i && self.members[j].relay.is_some() {
                self.wait_up(i, j, 0, timeout);
            }
        }
    }

    /// Waits until relay `i` has logged `federation_peer_up` for relay `j`
    /// after its log line `mark`.
    pub fn wait_up(&self, i: usize, j: usize, mark: usize, timeout: Duration) {
        let peer = self.peer_id(j).to_string();
        self.relay(i)
            .wait_for_event_after(
                mark,
                "federation_peer_up",
                |e| field(e, "peerId") == peer,
                timeout,
            )
            .unwrap_or_else(|e| panic!("relay {i} never reported relay {j} up: {e}"));
    }

    /// Relay `i`'s `federation` list (`bsv-p2p-ctl status`), by peer id.
    pub fn federation(&self, i: usize) -> Vec<Value> {
        let status = self.relay(i).ctl(&["status"]);
        status["federation"].as_array().cloned().unwrap_or_default()
    }

    /// Relay `i`'s view of relay `j`.
    pub fn view(&self, i: usize, j: usize) -> Value {
        let peer = self.peer_id(j).to_string();
        self.federation(i)
            .into_iter()
            .find(|p| p["peerId"] == peer.as_str())
            .unwrap_or_else(|| panic!("relay {i} does not list relay {j}"))
    }
}
