//! Attacks on the control bounds.
