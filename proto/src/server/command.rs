//! What the server asks of the relay. The relay's swarm loop owns all the
//! state the methods report on, so rather than share it behind locks the
//! server sends each request to that loop as a [`Command`] over a bounded
//! channel and waits, with a timeout, for the [`Reply`] the loop (or a task
//! it hands the reply to) sends back. The loop is never awaited by the
//! server and a slow loop costs a client an error, never a stuck server.
//!
//! Each variant carries the method's params and a reply typed with the
//! method's result, so the relay cannot answer `status` with anything but a
//! [`StatusResult`].

use std::fmt;
use std::marker::PhantomData;

use futures::channel::oneshot;
use serde::Serialize;
use serde_json::Value;

use super::access::Caller;
use crate::jsonrpc::{code, RpcError};
use crate::methods::*;

/// One request for the relay to answer. `hello` and `subscribe` never get
/// here: the server answers those itself.
#[derive(Debug)]
pub enum Command {
    Status(Reply<StatusResult>),
    Stats(Reply<StatsResult>),
    Peers(Reply<PeersResult>),
    Reservations(Reply<ReservationsResult>),
    Circuits(Reply<CircuitsResult>),
    Snapshot(SnapshotParams, Reply<SnapshotResult>),
    Reload(Reply<ReloadResult>),
    Shutdown(ShutdownParams, Reply<ShutdownResult>),
    AclList(Reply<AclListResult>),
    AclAdd(AclAddParams, Reply<AclAddResult>),
    AclRemove(AclRemoveParams, Reply<AclRemoveResult>),
}

/// Where the answer goes. Dropping it unanswered gives the client -32603;
/// answering after the client's request timed out is harmless.
pub struct Reply<T> {
    tx: oneshot::Sender<Result<Value, RpcError>>,
    result: PhantomData<fn(T)>,
}

/// The server's end of a [`Reply`].
pub(crate) type Answer = oneshot::Receiver<Result<Value, RpcError>>;

impl<T: Serialize> Reply<T> {
    fn new() -> (Self, Answer) {
        let (tx, rx) = oneshot::channel();
        let reply = Self {
            tx,
            result: PhantomData,
        };
        (reply, rx)
    }

    pub fn send(self, result: Result<T, RpcError>) {
        let value = result.and_then(|v| serde_json::to_value(v).map_err(RpcError::internal));
        // Err: the client gave up waiting; nobody is left to tell.
        let _ = self.tx.send(value);
    }

    pub fn ok(self, result: T) {
        self.send(Ok(result));
    }

    pub fn err(self, error: RpcError) {
        self.send(Err(error));
    }

    /// True once the waiting client gave up (timed out or disconnected):
    /// the relay may skip expensive work nobody will read.
    pub fn is_canceled(&self) -> bool {
        self.tx.is_canceled()
    }
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

impl Command {
    /// The method this answers, for logs.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Status(_) => Status::NAME,
            Self::Stats(_) => Stats::NAME,
            Self::Peers(_) => Peers::NAME,
            Self::Reservations(_) => Reservations::NAME,
            Self::Circuits(_) => Circuits::NAME,
            Self::Snapshot(..) => Snapshot::NAME,
            Self::Reload(_) => Reload::NAME,
            Self::Shutdown(..) => Shutdown::NAME,
            Self::AclList(_) => AclList::NAME,
            Self::AclAdd(..) => AclAdd::NAME,
            Self::AclRemove(..) => AclRemove::NAME,
        }
    }

    /// Parses a request for the relay into a command and the receiver of
    /// its answer: -32601 for an unknown method, -32006 for a method the
    /// caller's role does not allow (before its params are looked at),
    /// -32602 for bad params.
    pub(crate) fn parse(
        method: &str,
        params: Option<Value>,
        caller: &Caller,
    ) -> Result<(Self, Answer), RpcError> {
        match method {
            Status::NAME => build::<Status>(params, caller, |_, r| Self::Status(r)),
            Stats::NAME => build::<Stats>(params, caller, |_, r| Self::Stats(r)),
            Peers::NAME => build::<Peers>(params, caller, |_, r| Self::Peers(r)),
            Reservations::NAME => {
                build::<Reservations>(params, caller, |_, r| Self::Reservations(r))
            }
            Circuits::NAME => build::<Circuits>(params, caller, |_, r| Self::Circuits(r)),
            Snapshot::NAME => build::<Snapshot>(params, caller, Self::Snapshot),
            Reload::NAME => build::<Reload>(params, caller, |_, r| Self::Reload(r)),
            Shutdown::NAME => build::<Shutdown>(params, caller, Self::Shutdown),
            AclList::NAME => build::<AclList>(params, caller, |_, r| Self::AclList(r)),
            AclAdd::NAME => build::<AclAdd>(params, caller, Self::AclAdd),
            AclRemove::NAME => build::<AclRemove>(params, caller, Self::AclRemove),
            other => Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("method not found: {other:?}; known: {}", NAMES.join(", ")),
            )),
        }
    }
}

/// The role is checked here, where the method is known by type, so that no
/// method can reach the relay without its [`Method::ROLE`] being checked.
fn build<M: Method>(
    params: Option<Value>,
    caller: &Caller,
    make: impl FnOnce(M::Params, Reply<M::Result>) -> Command,
) -> Result<(Command, Answer), RpcError> {
    caller.may_call::<M>()?;
    let params = parse_params::<M>(params)?;
    let (reply, answer) = Reply::new();
    Ok((make(params, reply), answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use serde_json::json;

    fn caller(role: Role) -> Caller {
        Caller {
            client: 1,
            peer: None,
            role,
        }
    }

    fn params_of(name: &str) -> Value {
        match name {
            "snapshot" => json!({"path": "/tmp/s.json"}),
            "acl.add" | "acl.remove" => json!({"peerId": "p", "list": "deny"}),
            _ => json!({}),
        }
    }

    #[test]
    fn every_relay_method_parses_to_its_command() {
        for &name in NAMES {
            if name == Hello::NAME || name == Subscribe::NAME {
                continue;
            }
            let admin = caller(Role::Admin);
            let (command, _) = Command::parse(name, Some(params_of(name)), &admin).unwrap();
            assert_eq!(command.method(), name);
        }
    }

    #[test]
    fn a_read_only_caller_reaches_only_the_reading_methods() {
        let read_only = caller(Role::ReadOnly);
        let mut refused = Vec::new();
        for &name in NAMES {
            if name == Hello::NAME || name == Subscribe::NAME {
                continue;
            }
            if let Err(e) = Command::parse(name, Some(params_of(name)), &read_only) {
                assert_eq!(e.code, code::PERMISSION_DENIED, "{name}: {e}");
                refused.push(name);
            }
        }
        assert_eq!(
            refused,
            ["snapshot", "reload", "shutdown", "acl.add", "acl.remove"]
        );
    }

    #[test]
    fn permission_is_checked_before_params() {
        let e = Command::parse(
            "snapshot",
            Some(json!({"path": 5})),
            &caller(Role::ReadOnly),
        )
        .unwrap_err();
        assert_eq!(e.code, code::PERMISSION_DENIED);
    }

    #[test]
    fn an_unknown_method_lists_the_known_ones() {
        let e = Command::parse("staus", None, &caller(Role::ReadOnly)).unwrap_err();
        assert_eq!(e.code, code::METHOD_NOT_FOUND);
        assert!(
            e.message.contains("\"staus\"") && e.message.contains("status"),
            "{e}"
        );
    }

    #[async_std::test]
    async fn a_reply_arrives_as_json_and_a_dropped_one_as_canceled() {
        let (command, answer) = Command::parse("reload", None, &caller(Role::Admin)).unwrap();
        let Command::Reload(reply) = command else {
            panic!()
        };
        reply.ok(ReloadResult::default());
        assert_eq!(
            answer.await.unwrap().unwrap(),
            json!({"applied": [], "restartRequired": [], "errors": []})
        );
        let (command, answer) = Command::parse("status", None, &caller(Role::Admin)).unwrap();
        drop(command);
        assert!(answer.await.is_err());
    }
}
