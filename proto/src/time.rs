//! Wall-clock instants on the wire. Every "…At" field and every event's `ts`
//! is an RFC 3339 UTC string with milliseconds (`2025-01-31T12:00:00.250Z`):
//! readable in a log line, sortable as text, and parsed back into a
//! `SystemTime` so sidecars never handle date strings themselves.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    pub fn now() -> Self {
        Self(SystemTime::now())
    }

    /// From milliseconds since the Unix epoch, the unit the relay keeps.
    pub fn from_unix_millis(ms: u64) -> Self {
        Self(UNIX_EPOCH + Duration::from_millis(ms))
    }

    pub fn unix_millis(self) -> u64 {
        self.0
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

impl Default for Timestamp {
    /// The epoch: what a result from an older relay that lacks the field reads as.
    fn default() -> Self {
        Self(UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_rfc3339_millis(self.0).fmt(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map(Self).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected an RFC 3339 UTC time like 2025-01-31T12:00:00.000Z, got {text:?} ({e})"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_rfc3339_utc_with_millis() {
        let t = Timestamp::from_unix_millis(1_738_324_800_250);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2025-01-31T12:00:00.250Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn rejects_local_times_with_a_hint() {
        let err = serde_json::from_str::<Timestamp>("\"2025-01-31 12:00\"").unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }
}
