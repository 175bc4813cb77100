//! Attacks on the logging bounds.
