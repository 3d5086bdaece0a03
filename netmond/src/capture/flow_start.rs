//! The immediate-mode flow-start path: a tiny capture of TCP SYNs and UDP
//! that asks the resolver about each new flow within a millisecond, while
//! its socket still exists. It counts nothing; the bulk threads do.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netmon_wire::decode::{self, LinkType, PacketMeta};
use netmon_wire::flows::{FlowKey, LocalSet};
use tracing::debug;

use super::{wait_readable, Shared};
use crate::attribution::procmap::{Priority, ResolverHandle, SocketQuery};

/// BPF for the flow-start capture: TCP SYNs (v4, and v6 without extension
/// headers) and UDP. It only names new flows; it counts nothing.
pub(super) const START_FILTER: &str =
    "(tcp[tcpflags] & tcp-syn != 0) or (ip6 and ip6[6] == 6 and ip6[53] & 2 != 0) or udp \
     or (vlan and ((tcp[tcpflags] & tcp-syn != 0) or udp))";

/// The socket a flow belongs to, if it has a local end we can look up.
pub fn query_for(key: &FlowKey, local: &LocalSet) -> Option<SocketQuery> {
    if !matches!(key.proto, 6 | 17) || !local.is_local(&key.local) {
        return None;
    }
    Some(SocketQuery {
        proto: key.proto,
        local: SocketAddr::new(key.local, key.local_port),
        remote: SocketAddr::new(key.remote, key.remote_port),
    })
}

/// Which queue a flow's lookup joins, from its first packet: an inbound SYN
/// without payload (what a SYN flood is made of) waits behind flows a local
/// socket started and flows that carry payload.
pub fn lookup_priority(meta: &PacketMeta, local: &LocalSet) -> Priority {
    let bare_syn = meta.proto == 6
        && meta.tcp_flags & (decode::TCP_SYN | decode::TCP_ACK) == decode::TCP_SYN
        && meta.payload_len == 0;
    if bare_syn && !local.is_local(&meta.src) {
        Priority::Low
    } else {
        Priority::High
    }
}

/// Watches flow starts and asks the resolver about each new one at once.
pub(super) fn flow_start_loop(
    mut cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    shared: Arc<Shared>,
    resolver: ResolverHandle,
    stop: Arc<AtomicBool>,
    iface: &str,
) {
    let mut latency = crate::latency::LowLatency::start("flow-start");
    let mut local = shared.local();
    let mut local_gen = shared.local_gen.load(Ordering::Acquire);
    // Recently submitted flows: a UDP flow's later packets need no new lookup.
    let mut seen: HashSet<FlowKey> = HashSet::with_capacity(4096);
    let mut cleared = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        latency.check();
        wait_readable(cap.as_fd(), 100);
        let res = cap.dispatch(None, |p| {
            let Ok(meta) = decode::decode(link, p.data, p.header.len) else {
                return;
            };
            let Some(key) = orient(&meta, &local) else {
                return;
            };
            if seen.len() < 65_536 && !seen.insert(key) {
                return;
            }
            if let Some(q) = query_for(&key, &local) {
                resolver.submit(q, lookup_priority(&meta, &local));
            }
        });
        if let Err(e) = res {
            if !matches!(e, pcap::Error::TimeoutExpired) {
                debug!(%iface, error = %e, "flow-start capture ended");
                return;
            }
        }
        if cleared.elapsed() > Duration::from_secs(2) {
            seen.clear();
            cleared = Instant::now();
        }
        let g = shared.local_gen.load(Ordering::Acquire);
        if g != local_gen {
            local = shared.local();
            local_gen = g;
        }
    }
}

/// The flow key of a packet as seen from the local end.
fn orient(meta: &PacketMeta, local: &LocalSet) -> Option<FlowKey> {
    let (l, lp, r, rp) = if local.is_local(&meta.src) {
        (meta.src, meta.src_port, meta.dst, meta.dst_port)
    } else if local.is_local(&meta.dst) {
        (meta.dst, meta.dst_port, meta.src, meta.src_port)
    } else {
        return None;
    };
    Some(FlowKey {
        proto: meta.proto,
        local: l,
        local_port: lp,
        remote: r,
        remote_port: rp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_bare_syns_wait_behind_local_starts_and_payload() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("address");
        let local = LocalSet::new(vec![ip("10.0.0.1")]);
        let meta = |src: &str, dst: &str, proto: u8, flags: u8, payload: u32| PacketMeta {
            src: ip(src),
            dst: ip(dst),
            proto,
            src_port: 1234,
            dst_port: 80,
            l3_len: 40 + payload,
            tcp_flags: flags,
            payload_len: payload,
            len_forged: false,
            fragment: decode::Fragment::None,
            frag_id: 0,
            dir_hint: decode::PktDir::Unknown,
            app: netmon_wire::classify::AppProto::Unknown,
        };
        let syn = decode::TCP_SYN;
        let synack = decode::TCP_SYN | decode::TCP_ACK;
        let p = |m: PacketMeta| lookup_priority(&m, &local);
        assert_eq!(p(meta("10.0.0.9", "10.0.0.1", 6, syn, 0)), Priority::Low);
        // Outgoing SYN, TCP Fast Open data, a SYN-ACK, UDP: first in line.
        assert_eq!(p(meta("10.0.0.1", "10.0.0.9", 6, syn, 0)), Priority::High);
        assert_eq!(p(meta("10.0.0.9", "10.0.0.1", 6, syn, 100)), Priority::High);
        assert_eq!(
            p(meta("10.0.0.9", "10.0.0.1", 6, synack, 0)),
            Priority::High
        );
        assert_eq!(p(meta("10.0.0.9", "10.0.0.1", 17, 0, 0)), Priority::High);
    }
}
