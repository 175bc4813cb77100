//! `acl list|allow|deny|remove`, `ban`, `unban`: who may use the relay,
//! changed while it runs. A subject, a duration or a note that cannot be
//! used is refused while the command line is read (exit 2), before the
//! relay is asked; whether a peer id is valid is the relay's to say.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;

use argh::FromArgs;
use bsv_p2p_proto as proto;
use proto::{AccessList, AclAddParams, AclAddResult, AclEntry, AclRemoveParams};

use crate::{fail, show, table, EXIT_FAILED, EXIT_USAGE};

/// the relay's allow and deny lists: list, allow, deny, remove
#[derive(FromArgs)]
#[argh(subcommand, name = "acl")]
pub struct Acl {
    #[argh(subcommand)]
    command: AclCommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum AclCommand {
    List(List),
    Allow(Allow),
    Deny(Deny),
    Remove(Remove),
}

/// every entry of both lists, and whether the relay is private
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct List {}

/// put a peer or network on the allowlist; while it has any entry the relay is private: only the allowlist may reserve and open circuits
#[derive(FromArgs)]
#[argh(subcommand, name = "allow")]
struct Allow {
    /// a peer id (12D3KooW...), an address (203.0.113.7) or a network (203.0.113.0/24)
    #[argh(positional, arg_name = "PEER|CIDR", from_str_fn(subject))]
    subject: Subject,
    /// why, kept with the entry (at most 256 bytes)
    #[argh(option, from_str_fn(note))]
    note: Option<String>,
}

/// put a peer or network on the deny list: its connections are closed and it is refused, until removed or for a while
#[derive(FromArgs)]
#[argh(subcommand, name = "deny")]
struct Deny {
    /// a peer id (12D3KooW...), an address (203.0.113.7) or a network (203.0.113.0/24)
    #[argh(positional, arg_name = "PEER|CIDR", from_str_fn(subject))]
    subject: Subject,
    /// why, kept with the entry (at most 256 bytes)
    #[argh(option, from_str_fn(note))]
    note: Option<String>,
    /// how long, e.g. 90s, 10m, 2h, 1d, 1h30m, 600000ms (default: until removed)
    #[argh(option, long = "for", arg_name = "DURATION", from_str_fn(millis))]
    for_ms: Option<u64>,
}

/// take a peer or network off a list (by default the one list that holds it)
#[derive(FromArgs)]
#[argh(subcommand, name = "remove")]
struct Remove {
    /// the peer id or network as listed
    #[argh(positional, arg_name = "PEER|CIDR", from_str_fn(subject))]
    subject: Subject,
    /// allow or deny; needed when the subject is on both
    #[argh(option, from_str_fn(list))]
    list: Option<AccessList>,
}

/// deny a peer or network (acl deny): close its connections and refuse it, until unbanned or for a while
#[derive(FromArgs)]
#[argh(subcommand, name = "ban")]
pub struct Ban {
    /// a peer id (12D3KooW...), an address (203.0.113.7) or a network (203.0.113.0/24)
    #[argh(positional, arg_name = "PEER|CIDR", from_str_fn(subject))]
    subject: Subject,
    /// how long, e.g. 90s, 10m, 2h, 1d, 1h30m, 600000ms (default: until unbanned)
    #[argh(option, long = "for", arg_name = "DURATION", from_str_fn(millis))]
    for_ms: Option<u64>,
    /// why, kept with the entry (at most 256 bytes; default: ban)
    #[argh(option, from_str_fn(note), default = "String::from(\"ban\")")]
    note: String,
}

/// take a peer or network off the deny list (acl remove --list deny)
#[derive(FromArgs)]
#[argh(subcommand, name = "unban")]
pub struct Unban {
    /// the peer id or network as banned
    #[argh(positional, arg_name = "PEER|CIDR", from_str_fn(subject))]
    subject: Subject,
}

impl Acl {
    pub async fn run(self, client: &proto::Client, json: bool) -> ExitCode {
        match self.command {
            AclCommand::List(_) => match client.acl_list().await {
                Ok(r) => {
                    show(json, &r, table::acl_list);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            },
            AclCommand::Allow(a) => {
                add(
                    client,
                    json,
                    "allowed",
                    &a.subject,
                    AccessList::Allow,
                    a.note,
                    None,
                )
                .await
            }
            AclCommand::Deny(d) => {
                add(
                    client,
                    json,
                    "denied",
                    &d.subject,
                    AccessList::Deny,
                    d.note,
                    d.for_ms,
                )
                .await
            }
            AclCommand::Remove(r) => remove(client, json, &r.subject, r.list).await,
        }
    }
}

impl Ban {
    pub async fn run(self, client: &proto::Client, json: bool) -> ExitCode {
        let note = Some(self.note);
        add(
            client,
            json,
            "banned",
            &self.subject,
            AccessList::Deny,
            note,
            self.for_ms,
        )
        .await
    }
}

impl Unban {
    pub async fn run(self, client: &proto::Client, json: bool) -> ExitCode {
        remove(client, json, &self.subject, Some(AccessList::Deny)).await
    }
}

async fn add(
    client: &proto::Client,
    json: bool,
    verb: &str,
    subject: &Subject,
    list: AccessList,
    note: Option<String>,
    for_ms: Option<u64>,
) -> ExitCode {
    let (peer_id, cidr) = subject.params();
    let params = AclAddParams {
        peer_id,
        cidr,
        list,
        note,
        for_ms,
    };
    match client.acl_add(params).await {
        Ok(r) => {
            show(json, &r, |r| added(verb, r));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Without `list`, the one list that holds the subject: asked of the relay,
/// since removing from the wrong list would silently do nothing.
async fn remove(
    client: &proto::Client,
    json: bool,
    subject: &Subject,
    list: Option<AccessList>,
) -> ExitCode {
    let list = match list {
        Some(list) => list,
        None => {
            let entries = match client.acl_list().await {
                Ok(r) => r.entries,
                Err(e) => return fail(&e),
            };
            match holding_list(subject, &entries) {
                Ok(list) => list,
                Err((code, message)) => {
                    eprintln!("error: {message}");
                    return ExitCode::from(code);
                }
            }
        }
    };
    let (peer_id, cidr) = subject.params();
    let params = AclRemoveParams {
        peer_id,
        cidr,
        list,
    };
    match client.acl_remove(params).await {
        Ok(r) => {
            show(json, &r, |r| {
                if r.removed {
                    format!("removed {subject} from the {} list\n", list.as_str())
                } else {
                    format!(
                        "{subject} was not on the {} list (an entry from the config file is removed by editing the file, then reload)\n",
                        list.as_str()
                    )
                }
            });
            if r.removed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(e) => fail(&e),
    }
}

/// The list whose entries name `subject`, or the exit code and why not.
fn holding_list(subject: &Subject, entries: &[AclEntry]) -> Result<AccessList, (u8, String)> {
    let lists: BTreeSet<AccessList> = entries
        .iter()
        .filter(|e| subject.names(e))
        .map(|e| e.list)
        .collect();
    let mut lists = lists.into_iter();
    match (lists.next(), lists.next()) {
        (Some(list), None) => Ok(list),
        (None, _) => Err((EXIT_FAILED, format!("{subject} is on neither list"))),
        (Some(_), Some(_)) => Err((
            EXIT_USAGE,
            format!("{subject} is on both lists; say which with --list allow or --list deny"),
        )),
    }
}

/// `banned 203.0.113.0/24 until 2026-11-30T05:10:00.000Z; closed 3 connections`
fn added(verb: &str, r: &AclAddResult) -> String {
    let entry = &r.entry;
    let mut line = format!("{verb} {}", entry.subject());
    match (entry.list, entry.expires_at) {
        (AccessList::Deny, Some(until)) => line.push_str(&format!(" until {until}")),
        (AccessList::Deny, None) => line.push_str(" until removed"),
        (AccessList::Allow, _) => {}
    }
    if !r.added {
        line.push_str(&format!(
            " (was on the {} list already: note and expiry updated)",
            entry.list.as_str()
        ));
    }
    if entry.list == AccessList::Deny || r.disconnected > 0 {
        let s = if r.disconnected == 1 { "" } else { "s" };
        line.push_str(&format!("; closed {} connection{s}", r.disconnected));
    }
    if entry.list == AccessList::Allow {
        line.push_str("; the relay is private: only its allowlist may reserve and open circuits");
    }
    line.push('\n');
    line
}

/// What an entry names: a peer id, sent as written for the relay to check,
/// or a network, checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    Peer(String),
    Network(IpAddr, u8),
}

impl Subject {
    /// `peerId` and `cidr` of the params: one of them.
    fn params(&self) -> (Option<String>, Option<String>) {
        match self {
            Subject::Peer(peer) => (Some(peer.clone()), None),
            Subject::Network(..) => (None, Some(self.to_string())),
        }
    }

    /// Whether `entry` names this subject; networks compare by value, as
    /// the relay may write an address differently (`2001:DB8::/32`).
    fn names(&self, entry: &AclEntry) -> bool {
        match self {
            Subject::Peer(peer) => entry.peer_id.as_deref() == Some(peer),
            Subject::Network(..) => entry
                .cidr
                .as_deref()
                .is_some_and(|cidr| subject(cidr).as_ref() == Ok(self)),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Peer(peer) => f.write_str(peer),
            Subject::Network(ip, len) => write!(f, "{ip}/{len}"),
        }
    }
}

/// An address or `address/length` is a network (a bare address is /32 or
/// /128); anything else is a peer id.
fn subject(text: &str) -> Result<Subject, String> {
    const EXPECTED: &str =
        "expected a peer id (12D3KooW...), an address (203.0.113.7) or a network (203.0.113.0/24)";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{EXPECTED}, got nothing"));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Subject::Network(ip, max_len(ip)));
    }
    let Some((address, len)) = text.split_once('/') else {
        if text.contains(char::is_whitespace) {
            return Err(format!("{EXPECTED}; a peer id has no spaces"));
        }
        return Ok(Subject::Peer(text.to_string()));
    };
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{EXPECTED}; {address:?} is not an IP address"))?;
    let max = max_len(ip);
    let len = len
        .parse::<u8>()
        .ok()
        .filter(|len| *len <= max)
        .ok_or_else(|| {
            format!("the prefix length of an {ip} network is 0 to {max}, got {len:?}")
        })?;
    let network = network_of(ip, len);
    if network != ip {
        return Err(format!(
            "{text} has bits set past its /{len} prefix: the network is {network}/{len}"
        ));
    }
    Ok(Subject::Network(ip, len))
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The first address of `ip`'s network of prefix length `len`.
fn network_of(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// `--for`: a duration of at least a millisecond, in milliseconds.
fn millis(text: &str) -> Result<u64, String> {
    let duration = proto::cli::parse_duration(text)?;
    match u64::try_from(duration.as_millis()) {
        Ok(0) => Err("expected at least 1 ms".into()),
        Ok(ms) => Ok(ms),
        Err(_) => Err("too long to count in milliseconds".into()),
    }
}

fn note(text: &str) -> Result<String, String> {
    if text.len() > proto::MAX_NOTE {
        return Err(format!(
            "at most {} bytes, got {}",
            proto::MAX_NOTE,
            text.len()
        ));
    }
    Ok(text.to_string())
}

fn list(text: &str) -> Result<AccessList, String> {
    match text {
        "allow" => Ok(AccessList::Allow),
        "deny" => Ok(AccessList::Deny),
        _ => Err("expected allow or deny".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{AclOrigin, Timestamp};

    fn network(text: &str, len: u8) -> Subject {
        Subject::Network(text.parse().unwrap(), len)
    }

    #[test]
    fn an_address_or_a_network_is_a_cidr_and_anything_else_a_peer_id() {
        assert_eq!(subject("203.0.113.7"), Ok(network("203.0.113.7", 32)));
        assert_eq!(subject("203.0.113.0/24"), Ok(network("203.0.113.0", 24)));
        assert_eq!(subject("2001:db8::1"), Ok(network("2001:db8::1", 128)));
        assert_eq!(subject("2001:DB8::/48"), Ok(network("2001:db8::", 48)));
        assert_eq!(subject("0.0.0.0/0"), Ok(network("0.0.0.0", 0)));
        assert_eq!(
            subject(" 12D3KooWBad "),
            Ok(Subject::Peer("12D3KooWBad".into()))
        );
        assert_eq!(
            network("2001:db8::", 48).params(),
            (None, Some("2001:db8::/48".into()))
        );
        assert_eq!(network("203.0.113.7", 32).to_string(), "203.0.113.7/32");
    }

    #[test]
    fn a_network_that_cannot_be_used_is_refused_with_what_to_write() {
        let e = subject("203.0.113.7/24").unwrap_err();
        assert!(e.contains("the network is 203.0.113.0/24"), "{e}");
        let e = subject("10.0.0.0/33").unwrap_err();
        assert!(e.contains("0 to 32, got \"33\""), "{e}");
        let e = subject("2001:db8::/129").unwrap_err();
        assert!(e.contains("0 to 128"), "{e}");
        let e = subject("10.0.0.0/x").unwrap_err();
        assert!(e.contains("got \"x\""), "{e}");
        let e = subject("/ip4/203.0.113.7").unwrap_err();
        assert!(e.contains("\"\" is not an IP address"), "{e}");
        let e = subject("999.0.0.1/8").unwrap_err();
        assert!(e.contains("\"999.0.0.1\" is not an IP address"), "{e}");
        assert!(subject("  ").unwrap_err().contains("got nothing"));
        assert!(subject("12D3 KooW").unwrap_err().contains("no spaces"));
    }

    #[test]
    fn for_is_a_duration_in_milliseconds() {
        assert_eq!(millis("90s"), Ok(90_000));
        assert_eq!(millis("1h30m"), Ok(5_400_000));
        assert_eq!(millis("1d"), Ok(86_400_000));
        assert_eq!(millis("600000ms"), Ok(600_000));
        assert!(millis("600000").unwrap_err().contains("unit"));
        assert!(millis("0s").unwrap_err().contains("at least 1 ms"));
        assert!(millis("10 parsecs").is_err());
    }

    #[test]
    fn notes_and_lists_are_checked_before_the_relay_is_asked() {
        assert_eq!(note("spam"), Ok("spam".into()));
        let e = note(&"x".repeat(proto::MAX_NOTE + 1)).unwrap_err();
        assert_eq!(e, "at most 256 bytes, got 257");
        assert_eq!(list("deny"), Ok(AccessList::Deny));
        assert!(list("block").is_err());
    }

    #[test]
    fn the_command_line_names_the_argument_at_fault() {
        let parse = |args: &[&str]| match crate::Args::from_args(&["bsv-p2p-ctl"], args) {
            Ok(_) => String::new(),
            Err(early) => early.output,
        };
        let e = parse(&["ban", "203.0.113.7/24"]);
        assert!(e.contains("positional argument 'subject'"), "{e}");
        assert!(e.contains("203.0.113.0/24"), "{e}");
        let e = parse(&["acl", "deny", "10.0.0.1", "--for", "soon"]);
        assert!(e.contains("--for"), "{e}");
        let e = parse(&["acl", "remove", "10.0.0.1", "--list", "block"]);
        assert!(e.contains("--list") && e.contains("allow or deny"), "{e}");
        assert_eq!(parse(&["ban", "10.0.0.1", "--for", "10m"]), "");
        assert_eq!(parse(&["acl", "allow", "12D3KooWBot", "--note", "lab"]), "");
    }

    fn entry(peer_id: Option<&str>, cidr: Option<&str>, list: AccessList) -> AclEntry {
        AclEntry {
            peer_id: peer_id.map(Into::into),
            cidr: cidr.map(Into::into),
            list,
            note: None,
            added_at: Timestamp::from_unix_millis(0),
            expires_at: None,
            origin: AclOrigin::Control,
        }
    }

    #[test]
    fn remove_finds_the_one_list_that_holds_the_subject() {
        let entries = [
            entry(Some("12D3KooWBad"), None, AccessList::Deny),
            entry(None, Some("2001:DB8::/48"), AccessList::Allow),
            entry(None, Some("10.0.0.0/8"), AccessList::Allow),
            entry(None, Some("10.0.0.0/8"), AccessList::Deny),
        ];
        let find = |text: &str| holding_list(&subject(text).unwrap(), &entries);
        assert_eq!(find("12D3KooWBad"), Ok(AccessList::Deny));
        assert_eq!(find("2001:db8::/48"), Ok(AccessList::Allow));
        let (code, message) = find("10.0.0.0/8").unwrap_err();
        assert_eq!(code, EXIT_USAGE);
        assert!(message.contains("on both lists"), "{message}");
        let (code, message) = find("10.0.0.1").unwrap_err();
        assert_eq!(code, EXIT_FAILED);
        assert!(message.contains("neither"), "{message}");
    }

    #[test]
    fn a_change_is_confirmed_in_one_line() {
        let mut r = AclAddResult {
            added: true,
            entry: entry(None, Some("203.0.113.0/24"), AccessList::Deny),
            disconnected: 3,
        };
        r.entry.expires_at = Some(Timestamp::from_unix_millis(1_796_015_400_000));
        assert_eq!(
            added("banned", &r),
            "banned 203.0.113.0/24 until 2026-11-30T05:10:00.000Z; closed 3 connections\n"
        );
        r.entry.expires_at = None;
        r.added = false;
        r.disconnected = 1;
        assert_eq!(
            added("denied", &r),
            "denied 203.0.113.0/24 until removed (was on the deny list already: note and expiry updated); closed 1 connection\n"
        );
        let r = AclAddResult {
            added: true,
            entry: entry(Some("12D3KooWBot"), None, AccessList::Allow),
            disconnected: 0,
        };
        assert_eq!(
            added("allowed", &r),
            "allowed 12D3KooWBot; the relay is private: only its allowlist may reserve and open circuits\n"
        );
    }
}
