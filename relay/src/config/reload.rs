//! What `reload` compares: the top-level keys whose values differ between the
//! running configuration and the file read again, so that the answer can say
//! which changes need a restart.

use super::RelayConfig;

/// The top-level keys whose values differ between two configs.
pub fn differences(a: &RelayConfig, b: &RelayConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |key, differs: bool| {
        if differs {
            out.push(key);
        }
    };
    check("listen", a.listen != b.listen);
    check("announce", a.announce != b.announce);
    check("dataDir", a.data_dir != b.data_dir);
    check("identityFile", a.identity_file != b.identity_file);
    check("relay", a.relay != b.relay);
    check(
        "connectionManager",
        (
            a.max_connections,
            a.max_connections_per_peer,
            a.max_pending_incoming,
        ) != (
            b.max_connections,
            b.max_connections_per_peer,
            b.max_pending_incoming,
        ),
    );
    check("gossipSub", a.gossip != b.gossip);
    check("autonat", a.autonat != b.autonat);
    check("log.format", a.log_format != b.log_format);
    check("log.queueLines", a.log_queue_lines != b.log_queue_lines);
    check(
        "websocket.maxMessageSize",
        a.websocket_max_message_size != b.websocket_max_message_size,
    );
    check("log.level", a.log_level != b.log_level);
    check("shutdown.timeout", a.shutdown_timeout != b.shutdown_timeout);
    check(
        "control",
        (&a.control_socket, a.control_max_clients) != (&b.control_socket, b.control_max_clients)
            || a.control_idle_timeout != b.control_idle_timeout
            || (&a.control_admin_uids, &a.control_admin_gids)
                != (&b.control_admin_uids, &b.control_admin_gids),
    );
    check("federation", a.federation != b.federation);
    check("runtime.threads", a.runtime_threads != b.runtime_threads);
    check(
        "journal",
        (a.journal_max_events, a.journal_max_bytes) != (b.journal_max_events, b.journal_max_bytes),
    );
    out
}
