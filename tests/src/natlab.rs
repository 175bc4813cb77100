//! A NAT lab made of network namespaces: a "public" segment holding the relay,
//! and two sites, each a private host behind its own NAT router (nftables
//! `masquerade`), so tests can prove what bots behind NAT can and cannot do.
//!
//! ```text
//!   a (10.0.1.2) ── lan│nat-a│wan (198.51.100.2) ─┐
//!                                                 ├─ br0 in pub: relay 198.51.100.1
//!   b (10.0.2.2) ── lan│nat-b│wan (198.51.100.3) ─┘
//! ```
//!
//! The routers behave like home routers: outbound connections are
//! masqueraded (Linux keeps the source port when it is free, so the mapping is
//! endpoint-independent in practice), inbound packets pass only when they
//! belong to a connection the site opened (address- and port-dependent
//! filtering), and unsolicited packets are dropped rather than answered with
//! a reset, as most routers do. Addresses come from the documentation ranges
//! and exist only inside these namespaces: nothing is routed to the host's
//! network. Everything is removed on drop, panics included.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::child::{ChildOutput, Wording};

/// The relay's address on the public segment.
pub const RELAY_IP: &str = "198.51.100.1";

/// One site behind a NAT.
#[derive(Debug, Clone)]
pub struct Site {
    /// Namespace of the private host.
    pub host: String,
    /// Namespace of its NAT router.
    pub router: String,
    /// The host's private address.
    pub private_ip: &'static str,
    /// The router's public address (what the relay observes).
    pub public_ip: &'static str,
}

/// The namespaces of one lab; removed when dropped.
pub struct NatLab {
    /// Namespace of the public segment (the relay runs here).
    pub public: String,
    pub a: Site,
    pub b: Site,
    made: Vec<String>,
}

/// Runs `ip ARGS`; the error names the command and what it printed.
pub fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args, None)
}

/// Runs `program ARGS` inside namespace `ns`.
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all, None)
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{program} {}: stdin: {e}", args.join(" ")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot wait for {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// Why namespaces cannot be made here (not root, no `ip`, no nft), or `None`.
pub fn unavailable() -> Option<String> {
    let probe = format!("bsvnat-probe-{}", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e}"));
    }
    let nft = in_ns(&probe, "nft", &["list", "ruleset"]);
    let _ = ip(&["netns", "del", &probe]);
    nft.err()
        .map(|e| format!("nftables does not run in a namespace (apt-get install nftables): {e}"))
}

/// The router's ruleset: masquerade what leaves on `wan`, let in only what
/// belongs to connections the site opened, drop the rest silently.
fn router_rules() -> &'static str {
    "table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" masquerade
  }
}
table ip filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" accept
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname \"wan\" ct state established,related accept
    iifname \"wan\" drop
  }
}
"
}

impl NatLab {
    /// Builds the lab: namespaces, links, addresses, routes and NAT rules.
    pub fn new() -> Result<NatLab, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "bsvnat{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let site = |name: &str, private_ip, public_ip| Site {
            host: format!("{tag}-{name}"),
            router: format!("{tag}-nat-{name}"),
            private_ip,
            public_ip,
        };
        let mut lab = NatLab {
            public: format!("{tag}-pub"),
            a: site("a", "10.0.1.2", "198.51.100.2"),
            b: site("b", "10.0.2.2", "198.51.100.3"),
            made: Vec::new(),
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), String> {
        let public = self.public.clone();
        self.add_ns(&public)?;
        in_ns(&public, "ip", &["link", "set", "lo", "up"])?;
        in_ns(&public, "ip", &["link", "add", "br0", "type", "bridge"])?;
        in_ns(
            &public,
            "ip",
            &["addr", "add", &format!("{RELAY_IP}/24"), "dev", "br0"],
        )?;
        in_ns(&public, "ip", &["link", "set", "br0", "up"])?;
        for (n, site) in [self.a.clone(), self.b.clone()].iter().enumerate() {
            let subnet = n + 1;
            self.add_ns(&site.router)?;
            self.add_ns(&site.host)?;
            for ns in [&site.router, &site.host] {
                in_ns(ns, "ip", &["link", "set", "lo", "up"])?;
            }
            // router wan <-> a port of the public bridge
            let port = format!("port{subnet}");
            ip(&[
                "link",
                "add",
                "wan",
                "netns",
                &site.router,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &public,
            ])?;
            in_ns(&public, "ip", &["link", "set", &port, "master", "br0"])?;
            in_ns(&public, "ip", &["link", "set", &port, "up"])?;
            in_ns(
                &site.router,
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/24", site.public_ip),
                    "dev",
                    "wan",
                ],
            )?;
            in_ns(&site.router, "ip", &["link", "set", "wan", "up"])?;
            // router lan <-> host eth0
            ip(&[
                "link",
                "add",
                "lan",
                "netns",
                &site.router,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &site.host,
            ])?;
            let gateway = format!("10.0.{subnet}.1");
            in_ns(
                &site.router,
                "ip",
                &["addr", "add", &format!("{gateway}/24"), "dev", "lan"],
            )?;
            in_ns(&site.router, "ip", &["link", "set", "lan", "up"])?;
            in_ns(
                &site.host,
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/24", site.private_ip),
                    "dev",
                    "eth0",
                ],
            )?;
            in_ns(&site.host, "ip", &["link", "set", "eth0", "up"])?;
            in_ns(
                &site.host,
                "ip",
                &["route", "add", "default", "via", &gateway],
            )?;
            in_ns(&site.router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
            run(
                "ip",
                &["netns", "exec", &site.router, "nft", "-f", "-"],
                Some(router_rules()),
            )?;
        }
        Ok(())
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_string());
        Ok(())
    }

    /// `/ip4/<relay ip>/tcp/<port>`: what the relay listens on and announces.
    pub fn relay_addr(port: u16) -> String {
        format!("/ip4/{RELAY_IP}/tcp/{port}")
    }

    /// Whether a TCP connection from namespace `ns` to `ip:port` opens within
    /// `secs` seconds (bash's /dev/tcp, so no extra tool is needed).
    pub fn tcp_connects(ns: &str, ip: &str, port: u16, secs: u32) -> bool {
        let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
        in_ns(ns, "timeout", &[&secs.to_string(), "bash", "-c", &script]).is_ok()
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            // Only processes this lab's tests started live in these
            // namespaces; a fixture that already stopped its process leaves
            // nothing here.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: kill(2) has no memory effects.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("natlab: {e}");
            }
        }
    }
}

/// A `bsv-p2p-nat-peer` process (the rust-libp2p hole-punching peer) running
/// in a namespace; killed on drop.
pub struct NatPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    output: ChildOutput,
    peer_id: String,
}

impl NatPeer {
    /// Starts `bin ARGS` inside `ns` and waits for its `started` event.
    pub fn start(bin: &Path, ns: &str, args: &[String]) -> Result<NatPeer, String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} in {ns}: {e}", bin.display()))?;
        let stdin = child.stdin.take();
        let output = ChildOutput::capture(&mut child);
        let mut peer = NatPeer {
            child,
            stdin,
            output,
            peer_id: String::new(),
        };
        let started = peer.wait_for("started", Duration::from_secs(10))?;
        peer.peer_id = started["peerId"].as_str().unwrap_or_default().to_string();
        Ok(peer)
    }

    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Waits for the next event of `kind` (seen at any time).
    pub fn wait_for(&self, kind: &str, timeout: Duration) -> Result<Value, String> {
        let wording = Wording {
            ended: "the nat peer exited",
            prefix: "nat peer: ",
        };
        self.output
            .wait_for_event(0, kind, |_| true, timeout, wording)
            .map_err(|e| format!("{e}; stderr: {}", self.output.stderr()))
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.output.events()
    }
}

impl Drop for NatPeer {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.output.join();
    }
}
