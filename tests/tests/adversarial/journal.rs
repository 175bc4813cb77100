//! Attacks on the journal bounds.
