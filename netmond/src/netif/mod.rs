//! The machine's network interfaces, their local addresses and kernel counters,
//! read from rtnetlink, plus a watcher for link/address changes. Owns no
//! capture and no per-packet work; never reads /proc on a hot path.
//!
//! Choices worth knowing:
//! - `Interface::up` is `IFF_UP && (IFF_RUNNING || IFF_LOWER_UP)`: admin up
//!   *and* the carrier/operational state lets packets through.
//! - `Interface::mac` is `None` when the link has no 6-byte hardware address
//!   (tun, wireguard) or it is all zero (loopback).
//! - `Interface::kind` is the driver kind (`IFLA_INFO_KIND`: "veth", "tun",
//!   "wireguard", "bridge", ...); when there is none it is "loopback" or
//!   "ether" from the link type, else "".
//! - An address is `IFA_LOCAL` when present (on point-to-point links
//!   `IFA_ADDRESS` is the peer's), else `IFA_ADDRESS`.
//! - A dump interrupted by concurrent changes (`NLM_F_DUMP_INTR`) is retried a
//!   few times, then the last result is used: the watcher fires for the change
//!   that interrupted it anyway.

#[cfg(test)]
mod fuzz;
pub mod others;
mod parse;
mod wait;
mod watch;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

pub use crate::netlink::ParseError;
pub use parse::parse_proc_net_dev;
pub use watch::Watcher;

use crate::netlink::{self, DumpError, Socket};
use parse::{AddrMsg, LinkMsg, NlMsg};

/// One network interface as the kernel sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Kernel ifindex.
    pub index: u32,
    pub name: String,
    /// Admin up and able to pass packets: `IFF_UP && (IFF_RUNNING || IFF_LOWER_UP)`.
    pub up: bool,
    /// `IFF_UP`: set up by the administrator, whatever the carrier.
    pub admin_up: bool,
    pub loopback: bool,
    /// Local addresses in kernel order (primary first), without duplicates.
    pub addresses: Vec<IpAddr>,
    /// Hardware address; `None` when there is no 6-byte one or it is all zero.
    pub mac: Option<[u8; 6]>,
    /// "veth", "tun", "wireguard", "bridge", "ether", "loopback", ... or "".
    pub kind: String,
}

/// The kernel's own counters of one interface (`rtnl_link_stats64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// What a `Watcher` reports.
#[derive(Clone, Debug)]
pub enum NetifEvent {
    /// Links or addresses changed: call `list()` again.
    Changed,
}

#[derive(Debug, thiserror::Error)]
pub enum NetifError {
    #[error("cannot open rtnetlink socket")]
    Socket {
        #[source]
        source: io::Error,
    },
    #[error("cannot send rtnetlink '{request}' request")]
    Send {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot read rtnetlink '{request}' reply")]
    Recv {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("kernel refused rtnetlink '{request}' request")]
    Kernel {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("malformed rtnetlink '{request}' reply")]
    Parse {
        request: &'static str,
        #[source]
        source: ParseError,
    },
    #[error("cannot start the interface watcher thread")]
    Thread {
        #[source]
        source: io::Error,
    },
}

/// How often an interrupted (`NLM_F_DUMP_INTR`) or overrun dump is retried.
const DUMP_ATTEMPTS: usize = 4;

static SEQ: AtomicU32 = AtomicU32::new(1);

/// All interfaces with their addresses, ordered by index: one `RTM_GETLINK`
/// and one `RTM_GETADDR` dump.
pub fn list() -> Result<Vec<Interface>, NetifError> {
    let mut sock = open()?;
    let links = dump_links(&mut sock)?;
    let addrs = dump(&mut sock, Request::Addr, |m| {
        parse::parse_addr(m.payload).map(|a| a.into_iter().collect())
    })?;
    Ok(join(links, &addrs))
}

/// The kernel's counters for every interface (`IFLA_STATS64` of a link dump),
/// ordered by index. A link that reports no stats gets zeros.
pub fn counters() -> Result<Vec<(String, Counters)>, NetifError> {
    let mut links = dump_links(&mut open()?)?;
    links.sort_by_key(|l| l.index);
    Ok(links
        .into_iter()
        .map(|l| (l.name, l.stats.unwrap_or_default()))
        .collect())
}

/// Every address of every interface (loopback's included), deduplicated, in
/// interface then kernel order.
pub fn local_addresses(ifaces: &[Interface]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in ifaces.iter().flat_map(|i| &i.addresses) {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

/// Builds interfaces from a link dump and an address dump. Addresses of a
/// link missing from the link dump (created in between) are dropped.
fn join(links: Vec<LinkMsg>, addrs: &[AddrMsg]) -> Vec<Interface> {
    let mut by_index: HashMap<u32, Vec<IpAddr>> = HashMap::new();
    for a in addrs {
        let v = by_index.entry(a.index).or_default();
        if !v.contains(&a.addr) {
            v.push(a.addr);
        }
    }
    let mut out: Vec<Interface> = links
        .into_iter()
        .map(|l| Interface {
            index: l.index,
            up: l.up(),
            admin_up: l.admin_up(),
            loopback: l.loopback(),
            addresses: by_index.remove(&l.index).unwrap_or_default(),
            mac: l.mac,
            kind: l.kind,
            name: l.name,
        })
        .collect();
    out.sort_by_key(|i| i.index);
    out
}

#[derive(Clone, Copy, Debug)]
enum Request {
    Link,
    Addr,
}

impl Request {
    fn name(self) -> &'static str {
        match self {
            Request::Link => "getlink",
            Request::Addr => "getaddr",
        }
    }
}

fn open() -> Result<Socket, NetifError> {
    Socket::open(netlink::Protocol::Route, 0).map_err(|source| NetifError::Socket { source })
}

fn dump_links(sock: &mut Socket) -> Result<Vec<LinkMsg>, NetifError> {
    dump(sock, Request::Link, |m| {
        parse::parse_link(m.payload).map(|l| vec![l])
    })
}

/// Runs one dump, retrying when the kernel flags it inconsistent or the reply
/// overran our socket buffer (then on a fresh socket: the old one may still
/// hold the rest of the abandoned dump).
fn dump<T>(
    sock: &mut Socket,
    req: Request,
    mut each: impl FnMut(&NlMsg<'_>) -> Result<Vec<T>, ParseError>,
) -> Result<Vec<T>, NetifError> {
    let mut attempt = 1;
    loop {
        match dump_once(sock, req, &mut each) {
            Ok((items, false)) => return Ok(items),
            Ok((items, true)) if attempt >= DUMP_ATTEMPTS => {
                tracing::debug!(
                    request = req.name(),
                    "rtnetlink dump still inconsistent; using it"
                );
                return Ok(items);
            }
            Err(NetifError::Recv { source, .. })
                if attempt < DUMP_ATTEMPTS && source.raw_os_error() == Some(libc::ENOBUFS) =>
            {
                *sock = open()?;
            }
            Ok((_, true)) => {}
            Err(e) => return Err(e),
        }
        attempt += 1;
    }
}

/// One dump: returns the items and whether the kernel marked it interrupted.
fn dump_once<T>(
    sock: &Socket,
    req: Request,
    each: &mut impl FnMut(&NlMsg<'_>) -> Result<Vec<T>, ParseError>,
) -> Result<(Vec<T>, bool), NetifError> {
    let request = req.name();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let (ty, body, reply) = match req {
        Request::Link => (parse::RTM_GETLINK, parse::IFINFOMSG_LEN, parse::RTM_NEWLINK),
        Request::Addr => (parse::RTM_GETADDR, parse::IFADDRMSG_LEN, parse::RTM_NEWADDR),
    };
    let mut buf = vec![0u8; netlink::RECV_BUF];
    let mut items = Vec::new();
    let interrupted = sock
        .dump(&parse::dump_request(ty, seq, body), &mut buf, |m| {
            // Anything but the reply type (none is expected) is skipped.
            if m.ty == reply {
                items.extend(each(m)?);
            }
            Ok(())
        })
        .map_err(|e| match e {
            DumpError::Send(source) => NetifError::Send { request, source },
            DumpError::Recv(source) => NetifError::Recv { request, source },
            DumpError::Kernel(source) => NetifError::Kernel { request, source },
            DumpError::Parse(source) | DumpError::Message(source) => {
                NetifError::Parse { request, source }
            }
        })?;
    Ok((items, interrupted))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests;
