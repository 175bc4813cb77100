//! Attacks on the memory bounds.
