//! What can go wrong talking to the relay, each worded so that the person
//! reading a sidecar's log knows what to check: the socket path, the
//! relay's state, permissions, versions.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::jsonrpc::{code, RpcError};
use crate::methods::major_of;
use crate::PROTOCOL_VERSION;

#[derive(Debug)]
pub enum Error {
    /// Nothing at the socket path.
    NoSocket(PathBuf),
    /// A socket file nobody listens on: the relay stopped or crashed.
    NotRunning(PathBuf),
    /// The socket is mode 0660 and this user is neither owner nor in its group.
    PermissionDenied(PathBuf),
    /// Whatever listens there does not greet as a relay control socket.
    NotARelay {
        path: PathBuf,
        detail: String,
    },
    /// The relay speaks a major version this client does not.
    VersionMismatch {
        server: String,
    },
    /// The relay did not answer in time.
    Timeout {
        method: String,
        after: Duration,
    },
    /// The relay answered with an error.
    Server {
        method: String,
        error: RpcError,
    },
    /// The connection closed before the answer came.
    Disconnected(PathBuf),
    /// The relay sent something this client cannot read.
    Protocol {
        path: PathBuf,
        detail: String,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

impl Error {
    /// The JSON-RPC code, for errors the relay sent.
    pub fn code(&self) -> Option<i32> {
        match self {
            Self::Server { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Errors that retrying cannot fix: the subscription stream ends after
    /// one of these instead of reconnecting.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::PermissionDenied(_) | Self::NotARelay { .. } | Self::VersionMismatch { .. } => {
                true
            }
            Self::Server { error, .. } => matches!(
                error.code,
                code::INVALID_REQUEST
                    | code::METHOD_NOT_FOUND
                    | code::INVALID_PARAMS
                    | code::UNSUPPORTED_VERSION
                    | code::PERMISSION_DENIED
            ),
            _ => false,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        match source.kind() {
            io::ErrorKind::NotFound => Self::NoSocket(path),
            io::ErrorKind::ConnectionRefused => Self::NotRunning(path),
            io::ErrorKind::PermissionDenied => Self::PermissionDenied(path),
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset => Self::Disconnected(path),
            _ => Self::Io { path, source },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSocket(path) => write!(
                f,
                "no relay control socket at {} (is the relay running? see dataDir)",
                path.display()
            ),
            Self::NotRunning(path) => write!(
                f,
                "no relay is listening on {} (the socket is left from a relay that stopped; is the relay running? see dataDir)",
                path.display()
            ),
            Self::PermissionDenied(path) => write!(
                f,
                "permission denied on {}: the control socket is mode 0660; run as the relay's user or a member of its group",
                path.display()
            ),
            Self::NotARelay { path, detail } => write!(
                f,
                "{} is not a relay control socket: {detail}",
                path.display()
            ),
            Self::VersionMismatch { server } => {
                let ours = major_of(PROTOCOL_VERSION).unwrap_or_default();
                let upgrade = if major_of(server).is_some_and(|theirs| theirs > ours) {
                    "upgrade this program to a release that speaks it"
                } else {
                    "upgrade the relay, or use a release of this program built for it"
                };
                write!(
                    f,
                    "relay speaks control protocol {server}, this client supports {ours}.x; {upgrade}"
                )
            }
            Self::Timeout { method, after } => write!(
                f,
                "{method}: no answer from the relay within {} ms",
                after.as_millis()
            ),
            Self::Server { method, error } => write!(f, "{method}: {error}"),
            Self::Disconnected(path) => write!(
                f,
                "the relay closed the control connection at {} before answering",
                path.display()
            ),
            Self::Protocol { path, detail } => write!(
                f,
                "{}: unreadable message from the relay: {detail}",
                path.display()
            ),
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Server { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_relay_says_to_upgrade_the_client() {
        let e = Error::VersionMismatch {
            server: "2.0".into(),
        };
        assert_eq!(
            e.to_string(),
            "relay speaks control protocol 2.0, this client supports 1.x; upgrade this program to a release that speaks it"
        );
        assert!(e.is_fatal());
    }

    #[test]
    fn a_missing_socket_points_at_the_relay_and_data_dir() {
        let e = Error::io(
            std::path::Path::new("/srv/relay.sock"),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(
            e.to_string(),
            "no relay control socket at /srv/relay.sock (is the relay running? see dataDir)"
        );
        assert!(!e.is_fatal());
    }

    #[test]
    fn permission_denied_names_the_socket_mode_and_is_fatal() {
        let e = Error::io(
            std::path::Path::new("/srv/relay.sock"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(e.to_string().contains("mode 0660"), "{e}");
        assert!(e.is_fatal());
    }
}
