//! Attacks on the websocket bounds.
