//! Every attack of the threat model, run on loopback against the real
//! binaries, each bounded in count and time and stopping by itself. One
//! module per part attacked; each test names the bound it proves.

mod adversarial {
    mod access;
    mod control;
    mod datadir;
    mod gossip;
    mod health;
    mod journal;
    mod logging;
    mod memory;
    mod snapshot;
    mod squatting;
    mod storm;
    mod websocket;
}
