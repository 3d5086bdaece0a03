//! The per-capture-thread flow table: `PacketMeta` -> per-flow counters, drained each tick.
//! No I/O, no locks, no logging, and no allocation per packet once warmed up:
//! every buffer is sized from the capacity up front, and a full table evicts:
//! half-open flows (an inbound SYN that no local socket completed, what a SYN
//! flood leaves behind) first, then by a clock that spares active flows.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use crate::classify::{AppProto, IPPROTO_TCP};
use crate::decode::{Fragment, PacketMeta, PktDir, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// TCP flows that saw FIN from both sides or a RST leave after this long idle
/// (or the caller's idle limit, if shorter): late retransmits still land on them.
pub const CLOSED_LINGER_MS: i64 = 2_000;

/// Fragments of one datagram arrive within the reassembly timeout (30 s on Linux).
const FRAG_TTL_MS: i64 = 30_000;
const FRAG_SLOTS: usize = 1024;

/// The machine's local addresses. Small (a handful to a few hundred), so a
/// sorted Vec beats a hash set on the hot path.
#[derive(Clone, Debug, Default)]
pub struct LocalSet {
    addrs: Vec<IpAddr>,
}

impl LocalSet {
    pub fn new(mut addrs: Vec<IpAddr>) -> Self {
        addrs.sort_unstable();
        addrs.dedup();
        LocalSet { addrs }
    }

    pub fn is_local(&self, ip: &IpAddr) -> bool {
        self.addrs.binary_search(ip).is_ok()
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: u8,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
}

impl FlowKey {
    /// Key of the aggregate delta that carries packets which found no room in a
    /// full table (see [`FlowTable::ingest`]). No real flow has it: decode never
    /// yields an unspecified source and destination with protocol 0 and no ports.
    pub const OVERFLOW: FlowKey = FlowKey {
        proto: 0,
        local: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        local_port: 0,
        remote: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        remote_port: 0,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// One side is local: up is local -> remote.
    Local,
    /// Neither side is local: `local` is the first packet's source, up means
    /// source -> destination and down the reverse.
    Forwarded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// Not TCP.
    None,
    SynSent,
    SynReceived,
    Established,
    Closing,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowDelta {
    pub key: FlowKey,
    pub placement: Placement,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_packets: u64,
    pub down_packets: u64,
    /// When the flow entered this table (not the start of this delta).
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub tcp_state: TcpState,
    pub app: AppProto,
    /// First delta of this flow since it entered the table.
    pub is_new: bool,
    /// Expired or evicted: no more deltas will come for it from this table.
    pub ended: bool,
    /// Started by an inbound SYN without payload, and neither completed nor
    /// carrying payload since: no local socket may ever own it.
    pub half_open: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingest {
    /// The packet started a flow: the caller may look up its owner now.
    New(FlowKey),
    Existing,
    /// A half-open flow became real (handshake completed, or payload): worth a
    /// prompt lookup now.
    Promoted(FlowKey),
    /// No room even after eviction (too many flows ended since the last drain):
    /// the packet went to the [`FlowKey::OVERFLOW`] aggregate.
    Overflow,
}

/// Counters for `status` and the quality figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub flows: usize,
    pub capacity: usize,
    pub evicted: u64,
    /// Of `evicted`, half-open flows.
    pub evicted_half_open: u64,
    pub expired: u64,
    pub overflow_packets: u64,
    /// Later fragments whose first fragment we never saw (counted with ports 0).
    pub unmatched_fragments: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: FlowKey,
    placement: Placement,
    occupied: bool,
    /// Listed in `FlowTable::dirty`; survives reuse of the slot so an index is
    /// never listed twice.
    in_dirty: bool,
    /// Clock bit: set per packet, cleared by the eviction hand.
    referenced: bool,
    /// An `is_new` delta already went out.
    reported: bool,
    half_open: bool,
    fin_up: bool,
    fin_down: bool,
    tcp_state: TcpState,
    app: AppProto,
    up_bytes: u64,
    down_bytes: u64,
    up_packets: u64,
    down_packets: u64,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        key: FlowKey::OVERFLOW,
        placement: Placement::Forwarded,
        occupied: false,
        in_dirty: false,
        referenced: false,
        reported: false,
        half_open: false,
        fin_up: false,
        fin_down: false,
        tcp_state: TcpState::None,
        app: AppProto::Unknown,
        up_bytes: 0,
        down_bytes: 0,
        up_packets: 0,
        down_packets: 0,
        first_seen_ms: 0,
        last_seen_ms: 0,
    };

    fn delta(&self, ended: bool) -> FlowDelta {
        FlowDelta {
            key: self.key,
            placement: self.placement,
            up_bytes: self.up_bytes,
            down_bytes: self.down_bytes,
            up_packets: self.up_packets,
            down_packets: self.down_packets,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            tcp_state: self.tcp_state,
            app: self.app,
            is_new: !self.reported,
            ended,
            half_open: self.half_open,
        }
    }

    fn reset_counters(&mut self) {
        self.up_bytes = 0;
        self.down_bytes = 0;
        self.up_packets = 0;
        self.down_packets = 0;
    }

    fn count(&mut self, up: bool, bytes: u32, now_ms: i64) {
        if up {
            self.up_bytes += u64::from(bytes);
            self.up_packets += 1;
        } else {
            self.down_bytes += u64::from(bytes);
            self.down_packets += 1;
        }
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        self.referenced = true;
    }

    fn on_tcp(&mut self, flags: u8, up: bool) {
        let syn = flags & TCP_SYN != 0;
        let ack = flags & TCP_ACK != 0;
        self.tcp_state = if flags & TCP_RST != 0 {
            TcpState::Closed
        } else if syn && !ack {
            // A fresh SYN on a closed flow is the 5-tuple being reused.
            if matches!(self.tcp_state, TcpState::None | TcpState::Closed) {
                self.fin_up = false;
                self.fin_down = false;
                TcpState::SynSent
            } else {
                self.tcp_state
            }
        } else if syn {
            match self.tcp_state {
                TcpState::None | TcpState::SynSent => TcpState::SynReceived,
                s => s,
            }
        } else if flags & TCP_FIN != 0 {
            if up {
                self.fin_up = true;
            } else {
                self.fin_down = true;
            }
            if self.fin_up && self.fin_down {
                TcpState::Closed
            } else {
                TcpState::Closing
            }
        } else if ack {
            match self.tcp_state {
                // None: we joined mid-stream; SynSent: the SYN-ACK was missed.
                TcpState::None | TcpState::SynSent | TcpState::SynReceived => TcpState::Established,
                s => s,
            }
        } else {
            self.tcp_state
        };
    }
}

#[derive(Clone, Copy)]
struct FragEntry {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
    src_port: u16,
    dst_port: u16,
    seen_ms: i64,
}

/// Direct-mapped (src, dst, proto, id) -> ports for later fragments. A collision
/// overwrites: losing an old entry only costs those fragments their ports.
struct FragMap {
    slots: Box<[Option<FragEntry>]>,
}

impl FragMap {
    fn index(hasher: &RandomState, src: &IpAddr, dst: &IpAddr, proto: u8, id: u32) -> usize {
        (hasher.hash_one((src, dst, proto, id)) as usize) & (FRAG_SLOTS - 1)
    }
}

pub struct FlowTable {
    capacity: usize,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slot numbers by their flow's key, which lives in the slot: buckets of
    /// 4 bytes, not a copy of the 40-byte key. A hash spreads even a few
    /// thousand flows over every page of its buckets, so their size is what
    /// the table costs in resident memory, not the flows in it.
    index: HashTable<u32>,
    /// Slots with activity since the last drain (each listed once).
    dirty: Vec<u32>,
    /// Deltas of flows that left the table since the last drain.
    ended: Vec<FlowDelta>,
    frags: FragMap,
    hasher: RandomState,
    hand: usize,
    /// Slots that held a half-open flow when listed, oldest first; an entry is
    /// checked when taken (the flow may have completed or left since).
    half_open: std::collections::VecDeque<u32>,
    overflow: Slot,
    evicted: u64,
    evicted_half_open: u64,
    expired: u64,
    overflow_packets: u64,
    unmatched_fragments: u64,
}

impl FlowTable {
    /// A table that never holds more than `capacity` flows (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let hasher = RandomState::default();
        let mut overflow = Slot::EMPTY;
        overflow.occupied = true;
        FlowTable {
            capacity,
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            // Twice the capacity keeps hashbrown's tombstone cleanup an
            // in-place rehash, never a reallocation.
            index: HashTable::with_capacity(capacity * 2),
            dirty: Vec::with_capacity(capacity),
            // Evictions may fill `capacity` entries between drains, expiry as
            // many again; beyond that, packets go to the overflow aggregate.
            ended: Vec::with_capacity(capacity * 2),
            frags: FragMap {
                slots: vec![None; FRAG_SLOTS].into_boxed_slice(),
            },
            hasher,
            hand: 0,
            half_open: std::collections::VecDeque::with_capacity(capacity),
            overflow,
            evicted: 0,
            evicted_half_open: 0,
            expired: 0,
            overflow_packets: 0,
            unmatched_fragments: 0,
        }
    }

    /// Counts one packet. O(1) amortized; allocation-free once the table is warm.
    pub fn ingest(&mut self, meta: &PacketMeta, local: &LocalSet, now_ms: i64) -> Ingest {
        let (src_port, dst_port) = self.fragment_ports(meta, now_ms);
        let src_local = local.is_local(&meta.src);
        let dst_local = local.is_local(&meta.dst);
        // The kernel's packet type settles what addresses cannot (both or neither
        // local, e.g. while the local set lags an address change); with no hint
        // and no local side the packet is forwarded through us.
        let outgoing = match (src_local, dst_local, meta.dir_hint) {
            (true, true, PktDir::Incoming) | (false, false, PktDir::Incoming) => Some(false),
            (true, true, _) | (false, false, PktDir::Outgoing) => Some(true),
            (true, false, _) => Some(true),
            (false, true, _) => Some(false),
            (false, false, PktDir::Unknown) => None,
        };
        let forward = FlowKey {
            proto: meta.proto,
            local: meta.src,
            local_port: src_port,
            remote: meta.dst,
            remote_port: dst_port,
        };
        let reverse = FlowKey {
            proto: meta.proto,
            local: meta.dst,
            local_port: dst_port,
            remote: meta.src,
            remote_port: src_port,
        };
        let (key, up, placement) = match outgoing {
            Some(true) => (forward, true, Placement::Local),
            Some(false) => (reverse, false, Placement::Local),
            None => {
                if self.find(&forward).is_none() && self.find(&reverse).is_some() {
                    (reverse, false, Placement::Forwarded)
                } else {
                    (forward, true, Placement::Forwarded)
                }
            }
        };

        let hash = self.hasher.hash_one(key);
        if let Some(i) = find(&self.index, &self.slots, hash, &key) {
            let slot = &mut self.slots[i as usize];
            slot.count(up, meta.l3_len, now_ms);
            if meta.proto == IPPROTO_TCP {
                slot.on_tcp(meta.tcp_flags, up);
            }
            if slot.app == AppProto::Unknown {
                slot.app = meta.app;
            }
            if !slot.in_dirty {
                slot.in_dirty = true;
                self.dirty.push(i);
            }
            if slot.half_open && (meta.payload_len > 0 || slot.tcp_state == TcpState::Established) {
                slot.half_open = false;
                return Ingest::Promoted(key);
            }
            return Ingest::Existing;
        }

        let Some(i) = self.take_slot() else {
            if self.overflow.up_packets + self.overflow.down_packets == 0 {
                self.overflow.first_seen_ms = now_ms;
                self.overflow.last_seen_ms = now_ms;
            }
            self.overflow.count(up, meta.l3_len, now_ms);
            self.overflow_packets += 1;
            return Ingest::Overflow;
        };
        let slot = &mut self.slots[i as usize];
        let was_listed = slot.in_dirty;
        *slot = Slot {
            key,
            placement,
            occupied: true,
            in_dirty: true,
            app: meta.app,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            ..Slot::EMPTY
        };
        slot.count(up, meta.l3_len, now_ms);
        // A flow earns its clock bit from its second packet on, so one-packet
        // flows (scans, floods) are evicted before established ones.
        slot.referenced = false;
        if meta.proto == IPPROTO_TCP {
            slot.on_tcp(meta.tcp_flags, up);
            slot.half_open = is_bare_inbound_syn(meta, up, placement);
        }
        if !was_listed {
            self.dirty.push(i);
        }
        if slot.half_open {
            if self.half_open.len() == self.half_open.capacity() {
                // Only stale entries can fill it: drop the oldest.
                self.half_open.pop_front();
            }
            self.half_open.push_back(i);
        }
        let (hasher, slots) = (&self.hasher, &self.slots);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(slots[j as usize].key));
        Ingest::New(key)
    }

    /// Appends ended flows first (so a key that left and came back reads as
    /// "ended" then "new"), then every flow with activity since the last drain,
    /// then the overflow aggregate if it saw packets. Resets the deltas.
    pub fn drain(&mut self, out: &mut Vec<FlowDelta>) {
        out.append(&mut self.ended);
        for &i in &self.dirty {
            let slot = &mut self.slots[i as usize];
            slot.in_dirty = false;
            if slot.occupied && slot.up_packets + slot.down_packets > 0 {
                out.push(slot.delta(false));
                slot.reported = true;
                slot.reset_counters();
            }
        }
        self.dirty.clear();
        if self.overflow.up_packets + self.overflow.down_packets > 0 {
            let mut d = self.overflow.delta(true);
            d.is_new = true;
            out.push(d);
            self.overflow.reset_counters();
        }
    }

    /// Removes flows idle for more than `idle_ms` (closed TCP flows after
    /// [`CLOSED_LINGER_MS`]); the next drain reports them with `ended`.
    /// O(capacity): call it once per tick, followed by `drain`, so the buffer of
    /// ended flows stays within what `new` reserved.
    pub fn expire(&mut self, now_ms: i64, idle_ms: i64) {
        let closed_idle = idle_ms.min(CLOSED_LINGER_MS);
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            if !slot.occupied {
                continue;
            }
            let limit = if slot.tcp_state == TcpState::Closed {
                closed_idle
            } else {
                idle_ms
            };
            if now_ms - slot.last_seen_ms > limit {
                self.retire(i);
                self.free.push(i as u32);
                self.expired += 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn stats(&self) -> FlowStats {
        FlowStats {
            flows: self.len(),
            capacity: self.capacity,
            evicted: self.evicted,
            evicted_half_open: self.evicted_half_open,
            expired: self.expired,
            overflow_packets: self.overflow_packets,
            unmatched_fragments: self.unmatched_fragments,
        }
    }

    /// Ports for the packet: its own, or for a later fragment those its first
    /// fragment carried.
    fn fragment_ports(&mut self, meta: &PacketMeta, now_ms: i64) -> (u16, u16) {
        match meta.fragment {
            Fragment::None => (meta.src_port, meta.dst_port),
            Fragment::First => {
                let at =
                    FragMap::index(&self.hasher, &meta.src, &meta.dst, meta.proto, meta.frag_id);
                self.frags.slots[at] = Some(FragEntry {
                    src: meta.src,
                    dst: meta.dst,
                    id: meta.frag_id,
                    proto: meta.proto,
                    src_port: meta.src_port,
                    dst_port: meta.dst_port,
                    seen_ms: now_ms,
                });
                (meta.src_port, meta.dst_port)
            }
            Fragment::Later => {
                let at =
                    FragMap::index(&self.hasher, &meta.src, &meta.dst, meta.proto, meta.frag_id);
                match self.frags.slots[at] {
                    Some(e)
                        if e.src == meta.src
                            && e.dst == meta.dst
                            && e.proto == meta.proto
                            && e.id == meta.frag_id
                            && now_ms - e.seen_ms <= FRAG_TTL_MS =>
                    {
                        (e.src_port, e.dst_port)
                    }
                    _ => {
                        self.unmatched_fragments += 1;
                        (meta.src_port, meta.dst_port)
                    }
                }
            }
        }
    }

    /// A slot for a new flow: never-used, freed by expiry, or evicted.
    fn take_slot(&mut self) -> Option<u32> {
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if self.slots.len() < self.capacity {
            self.slots.push(Slot::EMPTY);
            return Some((self.slots.len() - 1) as u32);
        }
        if self.ended.len() >= self.capacity {
            return None;
        }
        while let Some(i) = self.half_open.pop_front() {
            let slot = &self.slots[i as usize];
            if slot.occupied && slot.half_open {
                self.retire(i as usize);
                self.evicted += 1;
                self.evicted_half_open += 1;
                return Some(i);
            }
        }
        // Clock (second chance): a slot seen since the hand last passed gets its
        // bit cleared and is spared once. Every step clears a bit some packet set,
        // so the sweep is amortized O(1); two rounds always find a victim.
        let n = self.slots.len();
        for _ in 0..=2 * n {
            let i = self.hand;
            self.hand = if i + 1 == n { 0 } else { i + 1 };
            let slot = &mut self.slots[i];
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            self.retire(i);
            self.evicted += 1;
            return Some(i as u32);
        }
        None
    }

    /// The slot holding `key`'s flow.
    fn find(&self, key: &FlowKey) -> Option<u32> {
        find(&self.index, &self.slots, self.hasher.hash_one(key), key)
    }

    /// Moves a flow out of the table, keeping its undrained counters for the next drain.
    fn retire(&mut self, i: usize) {
        let key = self.slots[i].key;
        let hash = self.hasher.hash_one(key);
        if let Ok(e) = self.index.find_entry(hash, |&j| j as usize == i) {
            e.remove();
        }
        let slot = &mut self.slots[i];
        self.ended.push(slot.delta(true));
        slot.occupied = false;
        slot.referenced = false;
        slot.half_open = false;
        slot.reset_counters();
    }
}

/// The slot of `index` whose flow has `key` (hashed to `hash`).
fn find(index: &HashTable<u32>, slots: &[Slot], hash: u64, key: &FlowKey) -> Option<u32> {
    index
        .find(hash, |&i| slots[i as usize].key == *key)
        .copied()
}

/// An inbound TCP SYN (no ACK) without payload to a local address: the start of
/// a flow that only a local socket's answer makes real.
pub fn is_bare_inbound_syn(meta: &PacketMeta, up: bool, placement: Placement) -> bool {
    meta.proto == IPPROTO_TCP
        && !up
        && placement == Placement::Local
        && meta.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        && meta.payload_len == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use crate::decode::TCP_PSH;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn local() -> LocalSet {
        LocalSet::new(vec![ip("10.0.0.1"), ip("fe80::1"), ip("10.0.0.1")])
    }

    fn pkt(src: &str, sp: u16, dst: &str, dp: u16, proto: u8, len: u32) -> PacketMeta {
        PacketMeta {
            src: ip(src),
            dst: ip(dst),
            proto,
            src_port: sp,
            dst_port: dp,
            l3_len: len,
            tcp_flags: 0,
            payload_len: 0,
            fragment: Fragment::None,
            frag_id: 0,
            dir_hint: PktDir::Unknown,
            app: AppProto::Unknown,
            len_forged: false,
        }
    }

    fn tcp(src: &str, sp: u16, dst: &str, dp: u16, flags: u8, len: u32) -> PacketMeta {
        PacketMeta {
            tcp_flags: flags,
            ..pkt(src, sp, dst, dp, 6, len)
        }
    }

    fn drain(t: &mut FlowTable) -> Vec<FlowDelta> {
        let mut out = Vec::new();
        t.drain(&mut out);
        out
    }

    #[test]
    fn local_set_dedups_and_answers_membership() {
        let l = local();
        assert_eq!(l.len(), 2);
        assert!(l.is_local(&ip("10.0.0.1")));
        assert!(l.is_local(&ip("fe80::1")));
        assert!(!l.is_local(&ip("10.0.0.2")));
    }

    #[test]
    fn upload_and_download_land_on_one_flow_keyed_by_the_local_side() {
        let mut t = FlowTable::new(16);
        let l = local();
        let r = t.ingest(&pkt("10.0.0.1", 40000, "1.1.1.1", 53, 17, 60), &l, 1);
        let key = FlowKey {
            proto: 17,
            local: ip("10.0.0.1"),
            local_port: 40000,
            remote: ip("1.1.1.1"),
            remote_port: 53,
        };
        assert_eq!(r, Ingest::New(key));
        assert_eq!(
            t.ingest(&pkt("1.1.1.1", 53, "10.0.0.1", 40000, 17, 200), &l, 2),
            Ingest::Existing
        );
        let d = drain(&mut t);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].key, key);
        assert_eq!(d[0].placement, Placement::Local);
        assert_eq!(
            (
                d[0].up_bytes,
                d[0].down_bytes,
                d[0].up_packets,
                d[0].down_packets
            ),
            (60, 200, 1, 1)
        );
        assert_eq!((d[0].first_seen_ms, d[0].last_seen_ms), (1, 2));
        assert!(d[0].is_new && !d[0].ended);
    }

    #[test]
    fn forwarded_traffic_keys_by_first_source_and_reply_counts_down() {
        let mut t = FlowTable::new(16);
        let l = local();
        t.ingest(&pkt("192.168.1.5", 1000, "8.8.8.8", 443, 6, 100), &l, 1);
        t.ingest(&pkt("8.8.8.8", 443, "192.168.1.5", 1000, 6, 1500), &l, 2);
        let d = drain(&mut t);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].placement, Placement::Forwarded);
        assert_eq!(d[0].key.local, ip("192.168.1.5"));
        assert_eq!((d[0].up_bytes, d[0].down_bytes), (100, 1500));
    }

    #[test]
    fn direction_hint_decides_when_both_or_neither_side_is_local() {
        let mut t = FlowTable::new(16);
        let l = local();
        let mut m = pkt("192.168.1.5", 1000, "8.8.8.8", 443, 6, 100);
        m.dir_hint = PktDir::Incoming;
        assert!(matches!(t.ingest(&m, &l, 1), Ingest::New(k) if k.local == ip("8.8.8.8")));
        let mut m = pkt("10.0.0.1", 1, "10.0.0.1", 2, 17, 10);
        m.dir_hint = PktDir::Incoming;
        assert!(matches!(t.ingest(&m, &l, 1), Ingest::New(k) if k.local_port == 2));
        let d = drain(&mut t);
        assert!(d
            .iter()
            .all(|d| d.placement == Placement::Local && d.down_bytes > 0 && d.up_bytes == 0));
    }

    #[test]
    fn later_fragment_goes_to_first_fragments_flow() {
        let mut t = FlowTable::new(16);
        let l = local();
        let mut first = pkt("1.1.1.1", 53, "10.0.0.1", 40000, 17, 1500);
        first.fragment = Fragment::First;
        first.frag_id = 99;
        let mut later = pkt("1.1.1.1", 0, "10.0.0.1", 0, 17, 700);
        later.fragment = Fragment::Later;
        later.frag_id = 99;
        t.ingest(&first, &l, 1);
        assert_eq!(t.ingest(&later, &l, 2), Ingest::Existing);
        let d = drain(&mut t);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].down_bytes, d[0].down_packets, d[0].key.remote_port),
            (2200, 2, 53)
        );
    }

    #[test]
    fn unmatched_later_fragment_still_counts_with_zero_ports() {
        let mut t = FlowTable::new(16);
        let mut later = pkt("1.1.1.1", 0, "10.0.0.1", 0, 17, 700);
        later.fragment = Fragment::Later;
        later.frag_id = 5;
        assert!(matches!(t.ingest(&later, &local(), 1), Ingest::New(k) if k.remote_port == 0));
        assert_eq!(t.stats().unmatched_fragments, 1);
        assert_eq!(drain(&mut t)[0].down_bytes, 700);
    }

    #[test]
    fn tcp_handshake_data_and_fin_walk_the_states() {
        let mut t = FlowTable::new(16);
        let l = local();
        let c = "10.0.0.1";
        let s = "2.2.2.2";
        let steps = [
            (tcp(c, 5000, s, 80, TCP_SYN, 60), TcpState::SynSent),
            (
                tcp(s, 80, c, 5000, TCP_SYN | TCP_ACK, 60),
                TcpState::SynReceived,
            ),
            (tcp(c, 5000, s, 80, TCP_ACK, 52), TcpState::Established),
            (
                tcp(c, 5000, s, 80, TCP_ACK | TCP_PSH, 300),
                TcpState::Established,
            ),
            (
                tcp(s, 80, c, 5000, TCP_FIN | TCP_ACK, 52),
                TcpState::Closing,
            ),
            (tcp(c, 5000, s, 80, TCP_ACK, 52), TcpState::Closing),
            (tcp(c, 5000, s, 80, TCP_FIN | TCP_ACK, 52), TcpState::Closed),
            (tcp(s, 80, c, 5000, TCP_ACK, 52), TcpState::Closed),
        ];
        for (i, (m, want)) in steps.iter().enumerate() {
            t.ingest(m, &l, i as i64);
            assert_eq!(drain(&mut t)[0].tcp_state, *want, "step {i}");
        }
    }

    #[test]
    fn rst_closes_and_midstream_ack_is_established() {
        let mut t = FlowTable::new(16);
        let l = local();
        t.ingest(&tcp("10.0.0.1", 1, "2.2.2.2", 2, TCP_ACK, 52), &l, 0);
        assert_eq!(drain(&mut t)[0].tcp_state, TcpState::Established);
        t.ingest(&tcp("2.2.2.2", 2, "10.0.0.1", 1, TCP_RST, 40), &l, 1);
        assert_eq!(drain(&mut t)[0].tcp_state, TcpState::Closed);
        t.ingest(&pkt("10.0.0.1", 1, "2.2.2.2", 2, 17, 40), &l, 1);
        assert_eq!(drain(&mut t)[0].tcp_state, TcpState::None);
    }

    #[test]
    fn drain_resets_deltas_keeps_flows_and_marks_only_the_first_new() {
        let mut t = FlowTable::new(16);
        let l = local();
        let m = pkt("10.0.0.1", 1, "2.2.2.2", 2, 17, 100);
        t.ingest(&m, &l, 0);
        assert!(drain(&mut t)[0].is_new);
        assert!(drain(&mut t).is_empty(), "no activity, no delta");
        t.ingest(&m, &l, 5);
        let d = drain(&mut t);
        assert_eq!(
            (d.len(), d[0].is_new, d[0].up_bytes, d[0].first_seen_ms),
            (1, false, 100, 0)
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn idle_flows_expire_and_report_their_last_activity_as_ended() {
        let mut t = FlowTable::new(16);
        let l = local();
        t.ingest(&pkt("10.0.0.1", 1, "2.2.2.2", 2, 17, 100), &l, 0);
        t.ingest(&pkt("10.0.0.1", 3, "2.2.2.2", 4, 17, 100), &l, 50_000);
        t.expire(60_000, 60_000);
        assert_eq!(t.len(), 2);
        t.expire(60_001 + 1, 60_000);
        assert_eq!(t.len(), 1);
        let d = drain(&mut t);
        assert_eq!(d.len(), 2);
        let ended = d.iter().find(|d| d.ended).unwrap();
        assert_eq!(
            (ended.key.local_port, ended.up_bytes, ended.is_new),
            (1, 100, true)
        );
        assert_eq!(t.stats().expired, 1);
    }

    #[test]
    fn closed_tcp_flows_expire_sooner() {
        let mut t = FlowTable::new(16);
        let l = local();
        t.ingest(&tcp("10.0.0.1", 1, "2.2.2.2", 2, TCP_RST, 40), &l, 0);
        t.ingest(&tcp("10.0.0.1", 3, "2.2.2.2", 4, TCP_ACK, 40), &l, 0);
        drain(&mut t);
        t.expire(CLOSED_LINGER_MS + 1, 60_000);
        assert_eq!(t.len(), 1);
        let d = drain(&mut t);
        assert_eq!(
            (d.len(), d[0].ended, d[0].up_bytes, d[0].key.local_port),
            (1, true, 0, 1)
        );
    }

    #[test]
    fn evicted_flow_reports_undrained_bytes_once_as_ended() {
        let mut t = FlowTable::new(2);
        let l = local();
        t.ingest(&pkt("10.0.0.1", 1, "2.2.2.2", 2, 17, 10), &l, 0);
        t.ingest(&pkt("10.0.0.1", 3, "2.2.2.2", 2, 17, 20), &l, 0);
        t.ingest(&pkt("10.0.0.1", 5, "2.2.2.2", 2, 17, 40), &l, 0);
        assert_eq!((t.len(), t.evicted()), (2, 1));
        let d = drain(&mut t);
        assert_eq!(d.iter().filter(|d| d.ended).count(), 1);
        assert_eq!(d.iter().map(|d| d.up_bytes).sum::<u64>(), 70);
        assert_eq!(d.len(), 3);
        assert!(d.iter().all(|d| d.is_new));
    }

    #[test]
    fn half_open_flows_are_evicted_before_real_ones_and_promoted_when_real() {
        let mut t = FlowTable::new(3);
        let l = local();
        let syn = |sp: u16| tcp("9.9.9.9", sp, "10.0.0.1", 80, TCP_SYN, 40);
        // A real, quiet download: one packet, so no clock bit to protect it.
        t.ingest(&tcp("10.0.0.1", 5000, "2.2.2.2", 443, TCP_SYN, 60), &l, 0);
        assert!(matches!(t.ingest(&syn(1), &l, 1), Ingest::New(_)));
        // The kernel's RST does not make it real.
        let rst = tcp("10.0.0.1", 80, "9.9.9.9", 1, TCP_RST | TCP_ACK, 40);
        assert_eq!(t.ingest(&rst, &l, 1), Ingest::Existing);
        t.ingest(&syn(2), &l, 2);
        // A third SYN and then a real flow: the oldest half-open flows go.
        t.ingest(&syn(3), &l, 3);
        t.ingest(&pkt("10.0.0.1", 6000, "2.2.2.2", 53, 17, 80), &l, 4);
        assert_eq!(t.stats().evicted_half_open, 2);
        let d = drain(&mut t);
        let ended: Vec<u16> = d
            .iter()
            .filter(|d| d.ended)
            .map(|d| d.key.remote_port)
            .collect();
        assert_eq!(ended, vec![1, 2]);
        assert!(d.iter().any(|d| d.key.local_port == 5000 && !d.ended));
        assert!(d.iter().all(|d| d.half_open == (d.key.local_port == 80)));
        // Payload on a half-open flow makes it real, once.
        let mut data = tcp("9.9.9.9", 3, "10.0.0.1", 80, TCP_ACK | TCP_PSH, 540);
        data.payload_len = 500;
        assert!(matches!(t.ingest(&data, &l, 5), Ingest::Promoted(k) if k.remote_port == 3));
        assert_eq!(t.ingest(&data, &l, 6), Ingest::Existing);
        assert!(drain(&mut t).iter().all(|d| !d.half_open));
    }

    #[test]
    fn a_completed_handshake_promotes_an_inbound_connection() {
        let mut t = FlowTable::new(8);
        let l = local();
        t.ingest(&tcp("9.9.9.9", 7, "10.0.0.1", 22, TCP_SYN, 60), &l, 0);
        let synack = tcp("10.0.0.1", 22, "9.9.9.9", 7, TCP_SYN | TCP_ACK, 60);
        assert_eq!(t.ingest(&synack, &l, 1), Ingest::Existing);
        let ack = tcp("9.9.9.9", 7, "10.0.0.1", 22, TCP_ACK, 52);
        assert!(matches!(t.ingest(&ack, &l, 2), Ingest::Promoted(_)));
    }

    #[test]
    fn recently_active_flows_survive_eviction() {
        let mut t = FlowTable::new(4);
        let l = local();
        let hot = pkt("10.0.0.1", 443, "2.2.2.2", 9, 6, 1500);
        for i in 0..1000u16 {
            t.ingest(&hot, &l, i64::from(i));
            t.ingest(
                &pkt("10.0.0.1", 10_000 + i, "3.3.3.3", 9, 17, 10),
                &l,
                i64::from(i),
            );
            if i % 3 == 0 {
                drain(&mut t);
            }
        }
        let d = drain(&mut t);
        let total_ended_hot = d
            .iter()
            .filter(|d| d.ended && d.key.local_port == 443)
            .count();
        assert_eq!(total_ended_hot, 0);
    }

    fn flood(capacity: usize, flows: u32, drain_every: u32) -> (u64, u64, FlowTable) {
        let mut t = FlowTable::new(capacity);
        let l = local();
        let mut ingested = 0u64;
        let mut drained = 0u64;
        let mut out = Vec::new();
        for i in 0..flows {
            let remote = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            for j in 0..2u32 {
                let len = 40 + (i % 1000) + j;
                let m = PacketMeta {
                    src: remote,
                    dst: ip("10.0.0.1"),
                    ..pkt("0.0.0.0", (i % 60000) as u16, "0.0.0.0", 443, 6, len)
                };
                t.ingest(&m, &l, i64::from(i));
                ingested += u64::from(len);
                assert!(t.len() <= capacity);
            }
            if drain_every > 0 && i % drain_every == 0 {
                out.clear();
                t.drain(&mut out);
                drained += out.iter().map(|d| d.up_bytes + d.down_bytes).sum::<u64>();
            }
        }
        out.clear();
        t.drain(&mut out);
        drained += out.iter().map(|d| d.up_bytes + d.down_bytes).sum::<u64>();
        (ingested, drained, t)
    }

    #[test]
    fn warm_table_never_reallocates_under_a_flood() {
        let mut t = FlowTable::new(1000);
        // The index's capacity() dips while deletions leave tombstones and recovers
        // on an in-place rehash; only a reallocation would take it above the start.
        let caps = |t: &FlowTable| {
            (
                t.slots.capacity(),
                t.free.capacity(),
                t.dirty.capacity(),
                t.ended.capacity(),
            )
        };
        let before = caps(&t);
        let index_before = t.index.capacity();
        let l = local();
        let mut out = Vec::with_capacity(4096);
        for i in 0..100_000u32 {
            let remote = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            let m = PacketMeta {
                src: remote,
                dst: ip("10.0.0.1"),
                ..pkt("0.0.0.0", 1, "0.0.0.0", 2, 17, 100)
            };
            t.ingest(&m, &l, i64::from(i));
            assert!(t.index.capacity() <= index_before);
            if i % 700 == 0 {
                t.expire(i64::from(i), 300);
                out.clear();
                t.drain(&mut out);
            }
        }
        assert_eq!(caps(&t), before);
    }

    #[test]
    fn table_stays_bounded_and_conserves_bytes_under_100k_distinct_flows() {
        let (ingested, drained, t) = flood(1000, 100_000, 500);
        assert_eq!(ingested, drained);
        assert_eq!(t.len(), 1000);
        assert!(t.evicted() >= 99_000);
        assert_eq!(t.stats().overflow_packets, 0);
    }

    #[test]
    fn flood_without_drains_overflows_into_the_aggregate_and_conserves_bytes() {
        let (ingested, drained, t) = flood(1000, 100_000, 0);
        assert_eq!(ingested, drained);
        assert!(t.len() <= 1000);
        assert!(t.stats().overflow_packets > 0);
        assert!(t.ended.capacity() <= 2000, "ended buffer must not grow");
    }

    #[test]
    fn overflow_aggregate_is_reported_with_the_sentinel_key() {
        let mut t = FlowTable::new(1);
        let l = local();
        t.ingest(&pkt("10.0.0.1", 1, "2.2.2.2", 2, 17, 10), &l, 0);
        // Evicts flow 1 (the ended buffer holds one), then no more room.
        let _ = t.ingest(&pkt("10.0.0.1", 3, "2.2.2.2", 2, 17, 10), &l, 0);
        let _ = t.ingest(&pkt("10.0.0.1", 3, "2.2.2.2", 2, 17, 10), &l, 0);
        assert_eq!(
            t.ingest(&pkt("10.0.0.1", 5, "2.2.2.2", 2, 17, 10), &l, 0),
            Ingest::Overflow
        );
        let d = drain(&mut t);
        let o = d.iter().find(|d| d.key == FlowKey::OVERFLOW).unwrap();
        assert_eq!((o.up_bytes, o.up_packets, o.ended), (10, 1, true));
        assert_eq!(d.iter().map(|d| d.up_bytes).sum::<u64>(), 40);
    }

    #[test]
    fn app_is_taken_from_the_first_classified_packet() {
        let mut t = FlowTable::new(4);
        let l = local();
        let mut m = pkt("10.0.0.1", 1, "2.2.2.2", 2, 6, 10);
        t.ingest(&m, &l, 0);
        m.app = AppProto::Tls;
        t.ingest(&m, &l, 0);
        m.app = AppProto::Http;
        t.ingest(&m, &l, 0);
        assert_eq!(drain(&mut t)[0].app, AppProto::Tls);
    }
}
