//! Attacks on the snapshot bounds.
