//! How each result reads for a person: aligned columns, units spelled out.

use std::fmt::Write;

use bsv_p2p_proto as proto;

/// Left-aligned columns separated by two spaces.
fn columns(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        let _ = writeln!(out, "{}", s.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h{m}m")
    } else if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn until(unix: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if unix > now {
        format!("in {}", duration(unix - now))
    } else {
        "expired".into()
    }
}

/// A vocabulary word as it goes on the wire (`inbound`, `reservations_full`, …).
fn word<K: serde::Serialize>(k: &K) -> String {
    match serde_json::to_value(k) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn map<K: serde::Serialize>(m: &std::collections::BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{}={v}", word(k)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn status(s: &proto::StatusResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "peer ID        {}", s.peer_id);
    let _ = writeln!(out, "version        {}", s.version);
    let _ = writeln!(
        out,
        "uptime         {} (since {})",
        duration(s.uptime_secs),
        s.started_at
    );
    let _ = writeln!(
        out,
        "connections    {} from {} peers",
        s.counts.connections, s.counts.peers
    );
    let _ = writeln!(out, "reservations   {}", s.counts.reservations);
    let _ = writeln!(out, "circuits       {}", s.counts.circuits);
    for a in &s.listen_addrs {
        let _ = writeln!(out, "listening      {a}");
    }
    for a in &s.relay_addrs {
        let _ = writeln!(out, "bots dial      {a}");
    }
    for f in &s.federation {
        let _ = writeln!(out, "federated      {}", federated(f));
    }
    out
}

/// One federated relay on a line: who, how it stands, since when, its round
/// trip and the gossip each way.
fn federated(f: &proto::FederationPeer) -> String {
    let mut line = format!("{} {} since {}", f.peer_id, f.state.as_str(), f.since);
    if let Some(rtt) = f.rtt_micros {
        let _ = write!(line, ", rtt {:.1} ms", rtt as f64 / 1000.0);
    }
    let _ = write!(line, ", gossip in {} out {}", f.messages_in, f.messages_out);
    if f.state != proto::FederationState::Connected {
        if let Some(at) = &f.next_dial_at {
            let _ = write!(line, ", next dial {at}");
        }
        if let Some(e) = &f.last_error {
            let _ = write!(line, " ({e})");
        }
    }
    line
}

pub fn stats(s: &proto::StatsResult) -> String {
    let c = &s.connections;
    let r = &s.reservations;
    let ci = &s.circuits;
    let p = &s.process;
    let mut out = String::new();
    let _ = writeln!(out, "uptime                 {}", duration(s.uptime_secs));
    let _ = writeln!(
        out,
        "connections            {} active ({}; {}), {} opened, {} closed",
        c.active,
        map(&c.by_direction),
        map(&c.by_transport),
        c.opened_total,
        c.closed_total
    );
    let _ = writeln!(
        out,
        "reservations           {} of {} active, {} created, {} renewed, {} expired, {} closed",
        r.active, r.max, r.created, r.renewed, r.expired, r.closed
    );
    let _ = writeln!(out, "reservations denied    {}", map(&r.denied));
    let _ = writeln!(
        out,
        "circuits               {} of {} active, {} opened, {} closed ({})",
        ci.active,
        ci.max,
        ci.opened,
        ci.closed,
        map(&ci.closed_by_reason)
    );
    let _ = writeln!(out, "circuits denied        {}", map(&ci.denied));
    let _ = writeln!(
        out,
        "relayed                {} src->dst, {} dst->src",
        bytes(s.bytes_relayed.src_to_dst),
        bytes(s.bytes_relayed.dst_to_src)
    );
    let _ = writeln!(out, "errors                 {}", map(&s.errors));
    let _ = writeln!(
        out,
        "process                {} RSS, {:.2} CPU s, {} fds, {} threads",
        bytes(p.rss_bytes),
        p.cpu_seconds,
        p.open_fds,
        p.threads
    );
    let _ = writeln!(
        out,
        "events                 last seq {}, {} in journal",
        s.events.last_seq, s.events.journal_len
    );
    for f in &s.federation {
        let _ = writeln!(out, "federated              {}", federated(f));
    }
    out
}

pub fn peers(p: &proto::PeersResult) -> String {
    let rows = p
        .peers
        .iter()
        .flat_map(|peer| {
            peer.connections.iter().map(move |c| {
                vec![
                    peer.peer_id.clone(),
                    if peer.reserved {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    word(&c.direction),
                    word(&c.transport),
                    c.remote_addr.clone(),
                    peer.agent_version.clone().unwrap_or_else(|| "-".into()),
                ]
            })
        })
        .collect();
    columns(
        &[
            "PEER",
            "RESERVED",
            "DIRECTION",
            "TRANSPORT",
            "REMOTE",
            "AGENT",
        ],
        rows,
    )
}

pub fn reservations(r: &proto::ReservationsResult) -> String {
    let rows = r
        .reservations
        .iter()
        .map(|r| {
            vec![
                r.peer_id.clone(),
                until(r.expires_at),
                r.renewals.to_string(),
                r.created_at.to_string(),
            ]
        })
        .collect();
    columns(&["PEER", "EXPIRES", "RENEWALS", "CREATED"], rows)
}

pub fn circuits(c: &proto::CircuitsResult) -> String {
    let rows = c
        .circuits
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.src.clone(),
                c.dst.clone(),
                bytes(c.bytes_src_to_dst),
                bytes(c.bytes_dst_to_src),
                duration(c.age_secs),
            ]
        })
        .collect();
    columns(&["ID", "SRC", "DST", "SRC->DST", "DST->SRC", "AGE"], rows)
}

pub fn reload(r: &proto::ReloadResult) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut out = format!(
        "applied           {}\nrestart required  {}\n",
        list(&r.applied),
        list(&r.restart_required)
    );
    for e in &r.errors {
        let _ = writeln!(out, "error             {e}");
    }
    out
}

pub fn snapshot(s: &proto::SnapshotResult) -> String {
    format!(
        "{} ({}, sha256 {}, journal seq {})\n",
        s.path.display(),
        bytes(s.bytes),
        s.sha256,
        s.seq
    )
}

pub fn shutdown(s: &proto::ShutdownResult) -> String {
    if s.draining {
        format!("relay stopping, draining for up to {} ms\n", s.timeout_ms)
    } else {
        "relay stopping now\n".into()
    }
}

pub fn acl_list(r: &proto::AclListResult) -> String {
    let rows = r
        .entries
        .iter()
        .map(|e| {
            vec![
                e.list.as_str().to_string(),
                e.subject().to_string(),
                word(&e.origin),
                e.expires_at
                    .map_or_else(|| "never".into(), |t| until(t.unix_millis() / 1000)),
                // A note is the operator's free text: keep it on its row.
                e.note
                    .as_deref()
                    .map_or_else(|| "-".into(), |n| n.replace(char::is_control, " ")),
            ]
        })
        .collect();
    let mut out = columns(&["LIST", "SUBJECT", "ORIGIN", "EXPIRES", "NOTE"], rows);
    out.push_str(if r.private {
        "private: only the allowlist may reserve and open circuits (others may still connect, identify and ping)\n"
    } else {
        "public: every peer not denied may reserve and open circuits\n"
    });
    out
}

/// One event on one line: sequence, time, kind, then its fields.
pub fn event(e: &proto::Event) -> String {
    let value = serde_json::to_value(e).unwrap_or_default();
    let mut fields = String::new();
    if let Some(obj) = value.as_object() {
        for (k, v) in obj {
            if matches!(k.as_str(), "seq" | "ts" | "kind") {
                continue;
            }
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(fields, " {k}={v}");
        }
    }
    format!("{:>8}  {}  {}{}", e.seq, e.ts, e.kind.name(), fields)
}
