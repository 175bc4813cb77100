//! Where the relay publishes events. Publishing stores the event in the
//! journal (which numbers it) and offers it to every live subscriber's
//! bounded buffer without ever waiting: a subscriber whose buffer is full
//! is cut off and told so (-32003), and resumes from the journal. The
//! swarm loop that publishes can therefore never be slowed by a sidecar.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_std::channel::{bounded, Receiver, Sender, TrySendError};

use crate::{Event, EventKind, Journal};

/// Events each subscriber may have waiting before it is cut off.
pub const DEFAULT_SUBSCRIBER_BUFFER: usize = 1024;

/// The relay's handle for publishing events; cheap to clone.
#[derive(Clone)]
pub struct Feed(Arc<Inner>);

struct Inner {
    journal: Arc<dyn Journal>,
    buffer: usize,
    /// Held while appending and fanning out, so that a new subscriber gets
    /// every event either from the journal or live, never both or neither.
    subscribers: Mutex<Vec<Subscriber>>,
}

struct Subscriber {
    tx: Sender<Event>,
    overflowed: Arc<AtomicBool>,
}

/// A subscriber's end: events from `from` on, until the buffer overflows
/// (then `overflowed` is set and the channel closes).
pub(crate) struct Live {
    pub(crate) from: u64,
    pub(crate) events: Receiver<Event>,
    pub(crate) overflowed: Arc<AtomicBool>,
}

impl Feed {
    pub fn new(journal: Arc<dyn Journal>) -> Self {
        Self::with_buffer(journal, DEFAULT_SUBSCRIBER_BUFFER)
    }

    /// `buffer`: events a subscriber may have waiting before it is cut off.
    pub fn with_buffer(journal: Arc<dyn Journal>, buffer: usize) -> Self {
        Self(Arc::new(Inner {
            journal,
            buffer: buffer.max(1),
            subscribers: Mutex::new(Vec::new()),
        }))
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.0.journal
    }

    /// Journals the event and offers it to every subscriber. Never waits on
    /// a subscriber. On a journal failure nothing is published (an event
    /// without a sequence number could not be resumed past).
    pub fn publish(&self, kind: EventKind) -> Result<Event, String> {
        let mut subscribers = self.lock();
        let event = self.0.journal.append(kind)?;
        subscribers.retain(|s| match s.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                s.overflowed.store(true, Ordering::Release);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        });
        Ok(event)
    }

    /// Live subscribers right now.
    pub fn subscribers(&self) -> usize {
        let mut subscribers = self.lock();
        subscribers.retain(|s| !s.tx.is_closed());
        subscribers.len()
    }

    pub(crate) fn subscribe(&self) -> Live {
        let mut subscribers = self.lock();
        let (tx, events) = bounded(self.0.buffer);
        let overflowed = Arc::new(AtomicBool::new(false));
        subscribers.push(Subscriber {
            tx,
            overflowed: overflowed.clone(),
        });
        Live {
            from: self.0.journal.next_seq(),
            events,
            overflowed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        // `retain` and `push` leave the list consistent even mid-panic.
        self.0.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryJournal;

    fn error() -> EventKind {
        EventKind::Error {
            error_kind: "test".into(),
            message: String::new(),
        }
    }

    #[test]
    fn a_subscriber_gets_what_is_published_after_it_joined() {
        let feed = Feed::new(Arc::new(MemoryJournal::new(10)));
        feed.publish(error()).unwrap();
        let live = feed.subscribe();
        assert_eq!(live.from, 2);
        feed.publish(error()).unwrap();
        assert_eq!(live.events.try_recv().unwrap().seq, 2);
    }

    #[test]
    fn a_full_subscriber_is_cut_off_and_publishing_goes_on() {
        let feed = Feed::with_buffer(Arc::new(MemoryJournal::new(100)), 2);
        let slow = feed.subscribe();
        for _ in 0..10 {
            feed.publish(error()).unwrap();
        }
        assert!(slow.overflowed.load(Ordering::Acquire));
        assert_eq!(feed.subscribers(), 0);
        assert_eq!(slow.events.try_recv().unwrap().seq, 1);
        assert_eq!(slow.events.try_recv().unwrap().seq, 2);
        assert!(slow.events.try_recv().is_err());
        assert!(slow.events.is_closed());
    }
}
