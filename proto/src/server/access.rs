//! Who may do what on the control socket. The socket's mode (0660) keeps out
//! everyone but the relay's user and group; within those, a sidecar that only
//! reads (the health server, the log shipper) must not be able to stop the
//! relay, reload it, make it write files or edit its ACL, so that a bug or a
//! break-in there cannot either.
//!
//! The kernel records who called `connect` (SO_PEERCRED: uid, gid, pid),
//! which no client can forge. [`Admins`] turns that into a [`Role`] once per
//! connection, and each method's [`Method::ROLE`] says what it needs.

use std::io;
use std::os::unix::io::AsRawFd;

use serde_json::json;

use crate::jsonrpc::{code, RpcError};
use crate::methods::Method;
use crate::Role;

/// The connecting process as the kernel saw it at `connect` time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    /// The effective gid only: SO_PEERCRED does not carry supplementary
    /// groups.
    pub gid: u32,
    pub pid: i32,
}

impl Peer {
    /// Reads the credentials of the process at the other end of `stream`.
    pub fn of(stream: &impl AsRawFd) -> io::Result<Self> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: the descriptor belongs to `stream`, borrowed for the whole
        // call; `cred` and `len` are live and writable, and `len` says how
        // many bytes `cred` holds.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if len as usize != std::mem::size_of::<libc::ucred>() {
            return Err(io::Error::other(format!(
                "SO_PEERCRED returned {len} bytes, expected {}",
                std::mem::size_of::<libc::ucred>()
            )));
        }
        Ok(Self {
            uid: cred.uid,
            gid: cred.gid,
            pid: cred.pid,
        })
    }
}

/// Who gets the admin role; every other client that can open the socket
/// is read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admins {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl Admins {
    /// Root and this process's own effective uid: exactly who could stop
    /// the relay with a signal anyway, so the split takes nothing from them.
    pub fn owner() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        let mut uids = vec![0, euid];
        uids.dedup();
        Self {
            uids,
            gids: Vec::new(),
        }
    }

    /// The role of a client; one whose credentials could not be read only
    /// reads.
    pub fn role_of(&self, peer: Option<&Peer>) -> Role {
        match peer {
            Some(p) if self.uids.contains(&p.uid) || self.gids.contains(&p.gid) => Role::Admin,
            _ => Role::ReadOnly,
        }
    }
}

impl Default for Admins {
    fn default() -> Self {
        Self::owner()
    }
}

/// One connection's caller: its number in the logs, who it is, and the
/// role that earned it.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) client: u64,
    pub(crate) peer: Option<Peer>,
    pub(crate) role: Role,
}

impl Caller {
    /// Ok when this caller may call `M`; otherwise -32006, logged with who
    /// asked so that an operator can tell a misconfigured sidecar from an
    /// intruder.
    pub(crate) fn may_call<M: Method>(&self) -> Result<(), RpcError> {
        if self.role.may_call(&M::ROLE) {
            return Ok(());
        }
        let (uid, gid, pid) = match self.peer {
            Some(p) => (Some(p.uid), Some(p.gid), Some(p.pid)),
            None => (None, None, None),
        };
        log::warn!(
            event = "control_call_refused",
            client = self.client,
            method = M::NAME,
            role = self.role.as_str(),
            needs = M::ROLE.as_str(),
            uid = uid,
            gid = gid,
            pid = pid;
            "a control client called a method its role does not allow"
        );
        let who = match self.peer {
            Some(p) => format!("uid {}, gid {}", p.uid, p.gid),
            None => "credentials unknown".into(),
        };
        Err(RpcError::new(
            code::PERMISSION_DENIED,
            format!(
                "permission denied: {} needs the {} role and this connection is {} ({who}); \
                 the relay's control.adminUids and control.adminGids say who is admin",
                M::NAME,
                M::ROLE,
                self.role
            ),
        )
        .with_data(json!({
            "method": M::NAME,
            "role": self.role,
            "needs": M::ROLE,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::{Shutdown, Status};

    #[test]
    fn the_kernel_names_the_process_at_the_other_end() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = Peer::of(&a).unwrap();
        // SAFETY: no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        assert_eq!(peer.uid, uid);
        assert_eq!(peer.gid, gid);
        assert_eq!(peer.pid, std::process::id() as i32);
    }

    #[test]
    fn credentials_of_something_that_is_not_a_socket_are_an_error() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(Peer::of(&file).is_err());
    }

    #[test]
    fn root_and_our_own_uid_are_admin_by_default() {
        let admins = Admins::owner();
        let me = Peer {
            // SAFETY: no preconditions.
            uid: unsafe { libc::geteuid() },
            gid: 12345,
            pid: 1,
        };
        let root = Peer { uid: 0, ..me };
        let stranger = Peer {
            uid: 4_000_000,
            ..me
        };
        assert_eq!(admins.role_of(Some(&me)), Role::Admin);
        assert_eq!(admins.role_of(Some(&root)), Role::Admin);
        assert_eq!(admins.role_of(Some(&stranger)), Role::ReadOnly);
        assert_eq!(admins.role_of(None), Role::ReadOnly);
    }

    #[test]
    fn an_admin_gid_makes_any_uid_admin() {
        let admins = Admins {
            uids: vec![],
            gids: vec![990],
        };
        let backup = Peer {
            uid: 991,
            gid: 990,
            pid: 7,
        };
        assert_eq!(admins.role_of(Some(&backup)), Role::Admin);
        assert_eq!(
            admins.role_of(Some(&Peer { gid: 1, ..backup })),
            Role::ReadOnly
        );
    }

    #[test]
    fn a_refusal_names_the_method_both_roles_and_the_caller() {
        let caller = Caller {
            client: 3,
            peer: Some(Peer {
                uid: 1000,
                gid: 1000,
                pid: 42,
            }),
            role: Role::ReadOnly,
        };
        assert!(caller.may_call::<Status>().is_ok());
        let e = caller.may_call::<Shutdown>().unwrap_err();
        assert_eq!(e.code, code::PERMISSION_DENIED);
        assert_eq!(
            e.message,
            "permission denied: shutdown needs the admin role and this connection is read-only \
             (uid 1000, gid 1000); the relay's control.adminUids and control.adminGids say who is admin"
        );
        assert!(
            include_str!("../../README.md").contains(&e.message),
            "the README quotes the refusal as sent"
        );
        assert_eq!(
            e.data.as_deref(),
            Some(&json!({"method": "shutdown", "role": "read-only", "needs": "admin"}))
        );
    }
}
