//! Attacks on the datadir bounds.
