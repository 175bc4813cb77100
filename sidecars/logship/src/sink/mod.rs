//! Destinations. Each is one file with one type implementing [`Sink`]: it
//! turns a batch of records into its own format and hands it over, and says
//! what became of it in [`Outcome`]'s terms. Everything else (the cursor,
//! retries and their backoff, splitting a batch that was too large, the
//! figures) is the [`shipper`](crate::shipper)'s, the same for all.
//!
//! To add a destination: a file here with its settings and its `Sink`, a
//! variant in [`Settings`] and its flags in `config.rs`.

pub mod otlp;
pub mod stdout;
pub mod syslog;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::record::Record;

/// What a destination did with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken. `refused` of them were refused one by one (an OTLP
    /// `partial_success`): counted, not sent again.
    Accepted { refused: u64 },
    /// Not taken for now (down, overloaded, throttled): send it again after
    /// `after` if the destination said when (`Retry-After`), otherwise
    /// after the shipper's backoff.
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// Never takes it (malformed for it, HTTP 400): counted as rejected and
    /// not sent again.
    Rejected { why: String },
    /// Too large (HTTP 413): sent again in halves; a single record too large
    /// is rejected.
    TooLarge { why: String },
}

pub trait Sink: Send {
    /// Delivers `batch`, in order.
    fn send<'a>(&'a mut self, batch: &'a [Arc<Record>]) -> BoxFuture<'a, Outcome>;
}

/// The relay a record came from, as read from it: the OTLP resource's
/// `service.instance.id` and `service.version`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relay {
    pub peer_id: String,
    pub version: String,
}

/// Shared by the ingest, which reads it from the relay, and the
/// destinations that name the relay.
pub type RelayIdentity = Arc<RwLock<Option<Relay>>>;

/// One destination's settings, as resolved from flags and environment.
#[derive(Debug, Clone, PartialEq)]
pub enum Settings {
    Stdout,
    Otlp(otlp::Settings),
    Syslog(syslog::Settings),
}

impl Settings {
    /// The destination's name: its label in the figures and the key of its
    /// cursor, so it must stay the same across restarts.
    pub fn name(&self) -> String {
        match self {
            Settings::Stdout => "stdout".into(),
            Settings::Otlp(s) => format!("otlp-{}", s.signal.as_str()),
            Settings::Syslog(s) => format!("syslog {}", s.target),
        }
    }

    pub fn build(&self, relay: RelayIdentity) -> Result<Box<dyn Sink>, String> {
        Ok(match self {
            Settings::Stdout => Box::new(stdout::Stdout::new()),
            Settings::Otlp(s) => Box::new(otlp::Otlp::new(s.clone(), relay)?),
            Settings::Syslog(s) => Box::new(syslog::Syslog::new(s.clone())),
        })
    }

    /// Records per batch at most.
    pub fn batch(&self) -> usize {
        match self {
            Settings::Stdout => 1024,
            Settings::Otlp(s) => s.batch,
            Settings::Syslog(_) => 512,
        }
    }
}
