//! The dump mode of the resolver, pure: one sock_diag dump of a namespace's TCP and
//! UDP sockets, indexed once, answers any number of queued flows by a local join, so
//! a flood of flows costs one dump per round instead of lookups per flow. It answers
//! as an exact lookup would (including the kernel's fall back to the listener), and
//! the lookup-mode switch (per-flow / dump, with hysteresis) lives here too.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::sockdiag::{self, DiagReply, IPPROTO_TCP, IPPROTO_UDP};
use super::{Found, SocketQuery};

/// A v4-mapped v6 address (a dual-stack socket) compares equal to its v4 form.
fn canon(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn unconnected(a: SocketAddr) -> bool {
    a.port() == 0 && a.ip().is_unspecified()
}

/// The sockets of one dump, keyed for the join. Reused between dumps (cleared,
/// capacity kept).
#[derive(Default)]
pub struct DumpIndex {
    /// Connected sockets by (proto, local, remote).
    exact: HashMap<(u8, SocketAddr, SocketAddr), DiagReply>,
    /// TCP listeners and unconnected UDP sockets by (proto, local).
    bound: HashMap<(u8, SocketAddr), DiagReply>,
}

impl DumpIndex {
    pub fn clear(&mut self) {
        self.exact.clear();
        self.bound.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.exact.len() + self.bound.len()
    }

    pub fn insert(&mut self, proto: u8, rep: DiagReply) {
        let (l, r) = (canon(rep.local), canon(rep.remote));
        if unconnected(r) {
            if proto == IPPROTO_UDP || rep.state == sockdiag::TCP_LISTEN {
                self.bound.entry((proto, l)).or_insert(rep);
            }
            return;
        }
        // A 5-tuple reused while its old socket lingers: the owned one wins.
        let e = self.exact.entry((proto, l, r)).or_insert(rep);
        if e.inode == 0 && rep.inode != 0 {
            *e = rep;
        }
    }

    /// The socket bound to `local` (or to the wildcard address of its port) that
    /// takes flows to `local`: a TCP listener or an unconnected UDP socket.
    fn bound_to(&self, proto: u8, local: SocketAddr) -> Option<DiagReply> {
        let port = local.port();
        let any4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let mut keys = [Some(local), None, Some(any6)];
        if local.is_ipv4() {
            keys[1] = Some(any4);
        }
        keys.into_iter()
            .flatten()
            .find_map(|k| self.bound.get(&(proto, k)).copied())
            .filter(|rep| rep.inode != 0)
    }

    /// What an exact sock_diag lookup of `q` would have found, and whether the
    /// answer is the listener standing in for a connection not yet accepted.
    pub fn join(&self, q: &SocketQuery) -> (Found, bool) {
        let (l, r) = (canon(q.local), canon(q.remote));
        match self.exact.get(&(q.proto, l, r)) {
            Some(rep) if rep.inode != 0 => (Found::Socket(*rep), false),
            Some(rep) if q.proto == IPPROTO_TCP => {
                let inbound_new = matches!(
                    rep.state,
                    sockdiag::TCP_SYN_RECV | sockdiag::TCP_ESTABLISHED | sockdiag::TCP_CLOSE_WAIT
                );
                if !inbound_new {
                    return (Found::Gone(*rep), false);
                }
                match self.bound_to(IPPROTO_TCP, l) {
                    Some(lst) => (Found::Socket(lst), true),
                    None => (Found::Nothing, false),
                }
            }
            Some(_) => (Found::Nothing, false),
            // Like the kernel's exact lookup: nothing more specific, so the
            // socket bound to the local end (a listener's request sockets are
            // its own; a UDP socket receives from anyone).
            None => match self.bound_to(q.proto, l) {
                Some(rep) => (Found::Socket(rep), q.proto == IPPROTO_TCP),
                None => (Found::Nothing, false),
            },
        }
    }
}

/// How queued low-priority lookups are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LookupMode {
    /// One exact sock_diag query per flow (with retries): cheap when flows are few.
    #[default]
    PerFlow,
    /// One dump per namespace and round, joined locally: cost grows with sockets,
    /// not flows.
    Dump,
}

impl LookupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupMode::PerFlow => "per-flow",
            LookupMode::Dump => "dump",
        }
    }
}

/// Switches to dumps when the queue is long and back when a dump round had little
/// to answer; the gap between the two thresholds keeps it from flapping.
#[derive(Clone, Copy, Debug)]
pub struct ModeSwitch {
    pub mode: LookupMode,
    /// Queued lookups at which dumps start.
    pub enter: usize,
    /// Queries answered by one dump round below which per-flow lookups resume.
    pub leave: usize,
}

impl ModeSwitch {
    pub fn new(enter: usize, leave: usize) -> Self {
        ModeSwitch {
            mode: LookupMode::PerFlow,
            enter,
            leave: leave.min(enter),
        }
    }

    /// Called with the queue length before a round.
    pub fn on_queue(&mut self, queued: usize) -> LookupMode {
        if self.mode == LookupMode::PerFlow && queued >= self.enter {
            self.mode = LookupMode::Dump;
        }
        self.mode
    }

    /// Called after a dump round with how many queries it answered.
    pub fn after_dump(&mut self, answered: usize) {
        if answered < self.leave {
            self.mode = LookupMode::PerFlow;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rep(family: i32, state: u8, local: &str, remote: &str, inode: u64) -> DiagReply {
        DiagReply {
            family: family as u8,
            state,
            local: sa(local),
            remote: sa(remote),
            uid: 1000,
            inode,
        }
    }

    fn q(proto: u8, local: &str, remote: &str) -> SocketQuery {
        SocketQuery {
            proto,
            local: sa(local),
            remote: sa(remote),
        }
    }

    const V4: i32 = libc::AF_INET;
    const V6: i32 = libc::AF_INET6;
    const CLOSE: u8 = 7;
    const TIME_WAIT: u8 = 6;

    fn index() -> DumpIndex {
        let mut ix = DumpIndex::default();
        // An outgoing connection, a v4 listener, a dual-stack listener.
        ix.insert(
            IPPROTO_TCP,
            rep(
                V4,
                sockdiag::TCP_ESTABLISHED,
                "10.0.0.1:40000",
                "10.0.0.2:80",
                11,
            ),
        );
        ix.insert(
            IPPROTO_TCP,
            rep(V4, sockdiag::TCP_LISTEN, "0.0.0.0:22", "0.0.0.0:0", 12),
        );
        ix.insert(
            IPPROTO_TCP,
            rep(V6, sockdiag::TCP_LISTEN, "[::]:8080", "[::]:0", 13),
        );
        // A request socket of the :22 listener (inode 0) and a TIME_WAIT leftover.
        ix.insert(
            IPPROTO_TCP,
            rep(
                V4,
                sockdiag::TCP_SYN_RECV,
                "10.0.0.1:22",
                "10.0.0.9:5555",
                0,
            ),
        );
        ix.insert(
            IPPROTO_TCP,
            rep(V4, TIME_WAIT, "10.0.0.1:40001", "10.0.0.2:80", 0),
        );
        // UDP: a connected socket over v4-mapped v6, an unconnected one.
        ix.insert(
            IPPROTO_UDP,
            rep(
                V6,
                sockdiag::TCP_ESTABLISHED,
                "[::ffff:10.0.0.1]:5000",
                "[::ffff:10.0.0.3]:53",
                14,
            ),
        );
        ix.insert(
            IPPROTO_UDP,
            rep(V4, CLOSE, "10.0.0.1:6000", "0.0.0.0:0", 15),
        );
        ix
    }

    fn inode(f: Found) -> Option<u64> {
        match f {
            Found::Socket(r) => Some(r.inode),
            _ => None,
        }
    }

    #[test]
    fn connected_sockets_join_exactly_listeners_stand_in_for_inbound() {
        let ix = index();
        assert_eq!(ix.len(), 7);
        let (f, via) = ix.join(&q(6, "10.0.0.1:40000", "10.0.0.2:80"));
        assert_eq!((inode(f), via), (Some(11), false));
        // A request socket not yet accepted: its listener's owner.
        let (f, via) = ix.join(&q(6, "10.0.0.1:22", "10.0.0.9:5555"));
        assert_eq!((inode(f), via), (Some(12), true));
        // A SYN to a listening port with no request socket (cookies): the listener.
        let (f, via) = ix.join(&q(6, "10.0.0.1:22", "10.0.0.77:1234"));
        assert_eq!((inode(f), via), (Some(12), true));
        // A v4 flow to a dual-stack listener.
        let (f, _) = ix.join(&q(6, "10.0.0.1:8080", "10.0.0.77:1234"));
        assert_eq!(inode(f), Some(13));
    }

    #[test]
    fn flood_flows_to_closed_ports_find_nothing_and_time_wait_is_gone() {
        let ix = index();
        let (f, via) = ix.join(&q(6, "10.0.0.1:31337", "10.0.0.77:1234"));
        assert!(matches!(f, Found::Nothing) && !via);
        let (f, _) = ix.join(&q(6, "10.0.0.1:40001", "10.0.0.2:80"));
        assert!(matches!(f, Found::Gone(r) if r.inode == 0));
        // UDP ports are not TCP ports.
        let (f, _) = ix.join(&q(17, "10.0.0.1:22", "10.0.0.77:1234"));
        assert!(matches!(f, Found::Nothing));
    }

    #[test]
    fn udp_joins_connected_then_unconnected_sockets_across_families() {
        let ix = index();
        let (f, via) = ix.join(&q(17, "10.0.0.1:5000", "10.0.0.3:53"));
        assert_eq!((inode(f), via), (Some(14), false));
        let (f, via) = ix.join(&q(17, "10.0.0.1:6000", "10.0.0.200:9"));
        assert_eq!((inode(f), via), (Some(15), false));
    }

    #[test]
    fn an_owned_socket_beats_a_lingering_one_of_the_same_tuple() {
        let mut ix = DumpIndex::default();
        ix.insert(6, rep(V4, TIME_WAIT, "10.0.0.1:1", "10.0.0.2:2", 0));
        ix.insert(
            6,
            rep(V4, sockdiag::TCP_ESTABLISHED, "10.0.0.1:1", "10.0.0.2:2", 9),
        );
        assert_eq!(inode(ix.join(&q(6, "10.0.0.1:1", "10.0.0.2:2")).0), Some(9));
        ix.clear();
        assert_eq!(ix.len(), 0);
    }

    #[test]
    fn mode_switches_on_a_long_queue_and_back_after_a_quiet_dump() {
        let mut m = ModeSwitch::new(256, 32);
        assert_eq!(m.on_queue(255), LookupMode::PerFlow);
        assert_eq!(m.on_queue(256), LookupMode::Dump);
        // A busy dump keeps dumping even if the queue was just emptied.
        m.after_dump(1000);
        assert_eq!(m.on_queue(0), LookupMode::Dump);
        m.after_dump(31);
        assert_eq!(m.on_queue(0), LookupMode::PerFlow);
        assert_eq!(LookupMode::Dump.as_str(), "dump");
    }
}
