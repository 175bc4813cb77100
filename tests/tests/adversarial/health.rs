//! Attacks on the health bounds.
