//! Per-tick rollup of flow deltas and owner answers into processes, remote
//! hosts, interfaces, protocols and the unattributed buckets. No I/O but the
//! cheap liveness check of known pids; nothing here runs per packet.

pub(crate) mod programs;
pub mod rows;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use netmon_proto::v1;
use netmon_wire::classify::{transport_name, AppProto};
use netmon_wire::flows::{FlowDelta, FlowKey, Placement, TcpState};

use crate::attribution::procmap::{Priority, Resolution, SocketQuery, Unattributed};
use crate::attribution::{ebpf, ProcessInfo};
use crate::capture::SIZE_BOUNDS;
use programs::Exited;
pub(crate) use programs::Programs;
#[cfg(test)]
use programs::MIN_QUIET_TICKS;
use rows::{host_row, most_bytes_first, process_row};

/// Remote hosts kept; beyond this the smallest go.
const MAX_HOSTS: usize = 20_000;
/// Remote hosts per process in one tick's who-talked-to-whom rows; the rest
/// are summed in one row (the store keeps fewer per minute).
const PROC_HOSTS_PER_TICK: usize = 64;
/// Owner answers that arrived before the flow's first delta, kept this long.
const EARLY_TTL_MS: i64 = 10_000;
/// A flow still unresolved after this long is asked about again, once.
const RESUBMIT_AFTER_MS: i64 = 1_500;
/// ... and given up on after this long.
const GIVE_UP_AFTER_MS: i64 = 6_000;
/// Early owner answers kept at most (a flood of new flows must not grow it).
const MAX_EARLY: usize = 65_536;
/// Attribution latency samples kept for percentiles.
const LATENCY_SAMPLES: usize = 4096;
/// With socket accounting: how long a captured flow may wait for a socket
/// record with its addresses before it is judged to have no local socket.
const SOCKET_MATCH_GRACE_MS: i64 = 2_500;
/// A socket's addresses stay matchable this long after its last byte.
const SOCKET_INDEX_TTL_MS: i64 = 30_000;
/// Sockets remembered for matching at most (a flood of sockets must not grow it).
const MAX_SOCKET_INDEX: usize = 262_144;

type ProcKey = (u32, u64);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) up_bytes: u64,
    pub(crate) down_bytes: u64,
    pub(crate) up_packets: u64,
    pub(crate) down_packets: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, o: &Counts) {
        self.up_bytes += o.up_bytes;
        self.down_bytes += o.down_bytes;
        self.up_packets += o.up_packets;
        self.down_packets += o.down_packets;
    }
    fn of_socket(c: &ebpf::Counts) -> Counts {
        Counts {
            up_bytes: c.up_bytes,
            down_bytes: c.down_bytes,
            up_packets: c.up_packets,
            down_packets: c.down_packets,
        }
    }
    fn swapped(self) -> Counts {
        Counts {
            up_bytes: self.down_bytes,
            down_bytes: self.up_bytes,
            up_packets: self.down_packets,
            down_packets: self.up_packets,
        }
    }
    fn up_only(self) -> Counts {
        Counts {
            up_bytes: self.up_bytes,
            up_packets: self.up_packets,
            ..Counts::default()
        }
    }
    fn down_only(self) -> Counts {
        Counts {
            down_bytes: self.down_bytes,
            down_packets: self.down_packets,
            ..Counts::default()
        }
    }
    fn of(d: &FlowDelta) -> Counts {
        Counts {
            up_bytes: d.up_bytes,
            down_bytes: d.down_bytes,
            up_packets: d.up_packets,
            down_packets: d.down_packets,
        }
    }
}

/// Cumulative counts, the tick being accumulated, and the last full tick
/// (which rates are computed from, so they hold between ticks).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meter {
    total: Counts,
    tick: Counts,
    last: Counts,
}

impl Meter {
    fn add(&mut self, c: &Counts) {
        self.total.add(c);
        self.tick.add(c);
    }
    fn rotate(&mut self) {
        self.last = self.tick;
        self.tick = Counts::default();
    }
    fn traffic(&self, tick_ms: u64) -> v1::Traffic {
        let rate = |b: u64| b.saturating_mul(1000) / tick_ms.max(1);
        v1::Traffic {
            up_bytes: self.total.up_bytes,
            down_bytes: self.total.down_bytes,
            up_bps: rate(self.last.up_bytes),
            down_bps: rate(self.last.down_bytes),
            up_packets: self.total.up_packets,
            down_packets: self.total.down_packets,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Pending {
        resubmitted: bool,
    },
    Process(ProcKey),
    /// Socket accounting counts this flow's bytes for its process; capture adds
    /// them only to interfaces, hosts and packet statistics.
    Socket(Option<ProcKey>),
    Unattributed(&'static str),
}

#[derive(Debug)]
struct FlowRec {
    iface: u16,
    /// The interface whose packets count for each direction: a packet that
    /// crosses a bridge, its port and the uplink is counted once.
    up_iface: Option<u16>,
    down_iface: Option<u16>,
    forwarded: bool,
    first_seen_ms: i64,
    last_seen_ms: i64,
    tcp_state: TcpState,
    app: AppProto,
    meter: Meter,
    /// The part of `meter.total` already handed out in per-process host
    /// rows: bytes seen before the owner was known go out once it is.
    host_reported: Counts,
    owner: Owner,
    ended: bool,
    /// An inbound SYN nobody answered yet (see `FlowDelta::half_open`).
    half_open: bool,
}

#[derive(Debug)]
struct ProcRec {
    info: Arc<ProcessInfo>,
    meter: Meter,
    protocols: BTreeSet<&'static str>,
    live_flows: u32,
    alive: bool,
    /// The tick its exit was noticed (when `alive` is false).
    exited_tick: u64,
    /// Ticks in a row without a byte: the last packets of a process's closed
    /// sockets may come a tick or two after it exited.
    quiet_ticks: u32,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

impl ProcRec {
    /// A process first seen now, alive, with nothing counted yet.
    fn new(info: Arc<ProcessInfo>, first_seen_ms: i64, last_seen_ms: i64) -> ProcRec {
        ProcRec {
            info,
            meter: Meter::default(),
            protocols: BTreeSet::new(),
            live_flows: 0,
            alive: true,
            exited_tick: 0,
            quiet_ticks: 0,
            first_seen_ms,
            last_seen_ms,
        }
    }
}

/// How long, and how many, exited processes keep their own rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitedRetention {
    pub keep_ms: u64,
    pub keep_max: usize,
}

impl Default for ExitedRetention {
    fn default() -> Self {
        ExitedRetention {
            keep_ms: 600_000,
            keep_max: 1000,
        }
    }
}

#[derive(Debug, Default)]
struct HostRec {
    meter: Meter,
    processes: BTreeSet<String>,
    live_flows: u32,
    last_seen_ms: i64,
    /// The last name learned for the address; kept after the name table
    /// entry expires, since the traffic was to that name.
    name: Option<crate::hostnames::NameInfo>,
}

/// Everything the aggregator produced for one tick.
#[derive(Debug, Clone, Default)]
pub struct Rollup {
    pub processes: Vec<v1::ProcessRow>,
    pub totals: v1::Traffic,
    pub unattributed: v1::Unattributed,
    pub hosts: Vec<v1::HostRow>,
    pub packet_stats: v1::PacketStats,
    /// Per interface id: what was counted on it.
    pub per_iface: HashMap<u16, v1::Traffic>,
    pub bytes_captured: u64,
    pub bytes_attributed: u64,
    pub flows_tracked: u64,
    pub table: TableCounts,
    /// Processes (pid, start time) folded into program rows since the last
    /// rollup: their own rows are gone for good.
    pub folded: Vec<ProcKey>,
    /// Bytes each process exchanged with each remote host since the last
    /// rollup (captured flow bytes, once the flow's owner is known); at most
    /// `PROC_HOSTS_PER_TICK` hosts per process, the rest in a row with
    /// address "".
    pub proc_hosts: Vec<crate::store::ProcHostTick>,
}

/// Rows of the per-process table, for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    pub live_processes: u64,
    pub exited_processes: u64,
    pub folded_programs: u64,
    /// Exited processes held by the program rows.
    pub folded_processes: u64,
}

/// Queries the aggregator wants (re)sent to the resolver, with their priority.
pub type Resubmit = Vec<(SocketQuery, Priority)>;

#[derive(Default)]
pub struct Aggregator {
    /// Most flows tracked here; new flows beyond it are counted, not tracked.
    max_flows: usize,
    /// Flows that found the table full.
    untracked: u64,
    /// Boxed: the map's buckets are then 48 bytes, not 230. A flood fills
    /// it to `max_flows` and its tombstones make it double once more (to
    /// 2^18 buckets for 100k flows): 12 MB of buckets instead of 61, and
    /// 19 MB instead of 91 while both tables exist during that resize.
    flows: HashMap<FlowKey, Box<FlowRec>>,
    /// Flows that were half-open when they arrived, oldest first: the first to
    /// go when the table is full and a real flow comes (checked when taken).
    half_open: VecDeque<FlowKey>,
    /// Half-open flows dropped from the table to make room for real ones.
    evicted_half_open: u64,
    procs: HashMap<ProcKey, ProcRec>,
    /// Exited processes folded by program; see `ExitedRetention`.
    programs: Programs,
    unattributed: HashMap<&'static str, Meter>,
    hosts: HashMap<IpAddr, HostRec>,
    ifaces: HashMap<u16, Meter>,
    totals: Meter,
    early: HashMap<FlowKey, (i64, Resolution)>,
    packets_by_proto: HashMap<&'static str, u64>,
    size_hist: [u64; SIZE_BOUNDS.len()],
    latencies_us: Vec<u64>,
    latency_pos: usize,
    ticks: u64,
    /// Socket accounting (eBPF) owns process bytes; capture is matched to it.
    socket_mode: bool,
    /// Bytes of sockets credited to a process (socket mode).
    sock_credited: Meter,
    /// Every byte socket accounting saw, credited or not (socket mode).
    sock_seen: Meter,
    /// Recent sockets by their addresses, for matching captured flows.
    sock_index: HashMap<FlowKey, SockEntry>,
    /// Bytes of sockets in other network namespaces, held until a captured
    /// flow shows their traffic crosses this host (then credited) or dropped.
    foreign_wait: HashMap<FlowKey, Held>,
}

#[derive(Debug, Clone, Copy)]
struct SockEntry {
    owner: Option<ProcKey>,
    at_ms: i64,
    /// In another network namespace and not (yet) seen crossing this host.
    unconfirmed: bool,
}

#[derive(Debug, Clone)]
struct Held {
    owner: Option<Arc<ProcessInfo>>,
    reason: &'static str,
    proto: u8,
    counts: Counts,
    since_ms: i64,
}

fn key_of(q: &SocketQuery) -> FlowKey {
    FlowKey {
        proto: q.proto,
        local: q.local.ip(),
        local_port: q.local.port(),
        remote: q.remote.ip(),
        remote_port: q.remote.port(),
    }
}

fn protocol_label(key: &FlowKey, app: AppProto) -> &'static str {
    if app == AppProto::Unknown {
        transport_name(key.proto)
    } else {
        app.name()
    }
}

impl Aggregator {
    pub fn new() -> Self {
        Self::with_max_flows(usize::MAX)
    }

    /// Under a flood of distinct flows memory stays bounded: past
    /// `max_flows` new flows go to the `flow_table_full` bucket.
    pub fn with_max_flows(max_flows: usize) -> Self {
        Aggregator {
            max_flows,
            ..Self::default()
        }
    }

    /// How long, and how many, exited processes keep their own rows.
    pub fn set_exited_retention(&mut self, r: ExitedRetention) {
        self.programs.set_retention(r);
    }

    /// Process bytes come from socket accounting: see [`Aggregator::apply_sockets`].
    pub fn set_socket_mode(&mut self, on: bool) {
        self.socket_mode = on;
    }

    /// Flows counted in the `flow_table_full` bucket since start.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Half-open flows dropped from the full table to make room for real ones.
    pub fn evicted_half_open(&self) -> u64 {
        self.evicted_half_open
    }

    /// Drops the oldest flow still half-open; its bytes stay where they were
    /// counted (a pending one's move to `flow_table_full`). False when none is.
    fn evict_half_open(&mut self) -> bool {
        while let Some(k) = self.half_open.pop_front() {
            if !self.flows.get(&k).is_some_and(|f| f.half_open) {
                continue;
            }
            let Some(f) = self.flows.remove(&k) else {
                continue;
            };
            if let Owner::Pending { .. } = f.owner {
                let b = self.unattributed.entry("flow_table_full").or_default();
                b.total.add(&f.meter.total);
                b.tick.add(&f.meter.tick);
            }
            self.evicted_half_open += 1;
            return true;
        }
        false
    }

    /// Folds one capture thread's deltas in.
    pub fn apply_deltas(&mut self, iface: u16, deltas: &[FlowDelta], size_hist: &[u64]) {
        for (acc, n) in self.size_hist.iter_mut().zip(size_hist) {
            *acc += n;
        }
        for d in deltas {
            self.apply_delta(iface, d);
        }
    }

    fn apply_delta(&mut self, iface: u16, d: &FlowDelta) {
        let raw = Counts::of(d);
        self.ifaces.entry(iface).or_default().add(&raw);
        let label = protocol_label(&d.key, d.app);
        *self.packets_by_proto.entry(label).or_default() += raw.up_packets + raw.down_packets;

        // Interfaces may see a forwarded flow from either end: one record per flow.
        let reversed = reverse(&d.key);
        let (key, c) = if !self.flows.contains_key(&d.key) && self.flows.contains_key(&reversed) {
            (reversed, raw.swapped())
        } else {
            (d.key, raw)
        };
        let is_new = !self.flows.contains_key(&key);
        if is_new && self.flows.len() >= self.max_flows && (d.half_open || !self.evict_half_open())
        {
            self.untracked += 1;
            if !self.socket_mode {
                self.totals.add(&c);
            }
            self.unattributed
                .entry("flow_table_full")
                .or_default()
                .add(&c);
            return;
        }
        let socket_mode = self.socket_mode;
        let rec = self.flows.entry(key).or_insert_with(|| {
            Box::new(FlowRec {
                iface,
                up_iface: None,
                down_iface: None,
                forwarded: d.placement == Placement::Forwarded,
                first_seen_ms: d.first_seen_ms,
                last_seen_ms: d.last_seen_ms,
                tcp_state: d.tcp_state,
                app: d.app,
                meter: Meter::default(),
                host_reported: Counts::default(),
                owner: match d.placement {
                    // Packets of flows that found a full table: counted, not tracked.
                    _ if d.key == FlowKey::OVERFLOW => Owner::Unattributed("flow_table_full"),
                    // Matched against socket records at the tick.
                    _ if socket_mode => Owner::Pending { resubmitted: true },
                    Placement::Forwarded => Owner::Unattributed(Unattributed::Forwarded.as_str()),
                    Placement::Local if matches!(d.key.proto, 6 | 17) => {
                        Owner::Pending { resubmitted: false }
                    }
                    Placement::Local => Owner::Unattributed("no_socket_lookup"),
                },
                ended: false,
                half_open: d.half_open,
            })
        });
        rec.half_open = d.half_open;
        // Each direction counts on the first interface that carried it.
        let mut c_once = Counts::default();
        if (c.up_packets > 0 || c.up_bytes > 0) && *rec.up_iface.get_or_insert(iface) == iface {
            c_once.add(&c.up_only());
        }
        if (c.down_packets > 0 || c.down_bytes > 0) && *rec.down_iface.get_or_insert(iface) == iface
        {
            c_once.add(&c.down_only());
        }
        let c = c_once;
        rec.meter.add(&c);
        rec.last_seen_ms = rec.last_seen_ms.max(d.last_seen_ms);
        rec.first_seen_ms = rec.first_seen_ms.min(d.first_seen_ms);
        rec.tcp_state = d.tcp_state;
        if d.app != AppProto::Unknown {
            rec.app = d.app;
        }
        rec.ended |= d.ended;
        let owner = rec.owner;
        let first_seen = rec.first_seen_ms;
        let app_label = protocol_label(&key, rec.app);
        if !socket_mode {
            self.totals.add(&c);
        }
        match owner {
            Owner::Process(k) => {
                if let Some(p) = self.procs.get_mut(&k) {
                    p.meter.add(&c);
                    p.last_seen_ms = p.last_seen_ms.max(d.last_seen_ms);
                    p.protocols.insert(app_label);
                }
            }
            Owner::Socket(Some(k)) => {
                if let Some(p) = self.procs.get_mut(&k) {
                    p.protocols.insert(app_label);
                }
            }
            Owner::Unattributed(r) => self.unattributed.entry(r).or_default().add(&c),
            Owner::Pending { .. } | Owner::Socket(None) => {}
        }
        if key != FlowKey::OVERFLOW {
            let host = self.hosts.entry(key.remote).or_default();
            host.meter.add(&c);
            host.last_seen_ms = host.last_seen_ms.max(d.last_seen_ms);
        }
        if is_new && d.half_open {
            if self.half_open.len() >= self.max_flows.min(1 << 20) {
                self.half_open.pop_front();
            }
            self.half_open.push_back(key);
        }
        if is_new && !socket_mode {
            if let Some((_, res)) = self.early.remove(&key) {
                self.settle(&key, &res, first_seen);
            }
        }
    }

    /// Folds one tick of socket accounting in (socket mode): process bytes,
    /// unattributed sockets, and the addresses captured flows are matched to.
    pub fn apply_sockets(&mut self, poll: &ebpf::Poll, now_ms: i64) {
        for s in &poll.sockets {
            let c = Counts::of_socket(&s.counts);
            let (info, reason) = match &s.owner {
                Ok(info) => (Some(info.clone()), ""),
                Err(reason) => (None, reason.as_str()),
            };
            let owner = info.as_ref().map(|i| (i.pid, i.start_time));
            let key = s
                .endpoints
                .map(|(local, remote)| socket_key(s.proto, local, remote));
            // Another namespace's socket counts once a captured flow carries it.
            let unconfirmed = s.foreign
                && key.is_none_or(|k| {
                    self.sock_index.get(&k).is_none_or(|e| e.unconfirmed)
                        && !self.flows.contains_key(&k)
                        && !self.flows.contains_key(&reverse(&k))
                });
            if let Some(k) = key {
                if self.sock_index.len() < MAX_SOCKET_INDEX || self.sock_index.contains_key(&k) {
                    self.sock_index.insert(
                        k,
                        SockEntry {
                            owner,
                            at_ms: now_ms,
                            unconfirmed,
                        },
                    );
                }
            }
            if unconfirmed {
                if let Some(k) = key {
                    let h = self.foreign_wait.entry(k).or_insert_with(|| Held {
                        owner: info.clone(),
                        reason,
                        proto: s.proto,
                        counts: Counts::default(),
                        since_ms: now_ms,
                    });
                    h.counts.add(&c);
                }
                continue;
            }
            self.credit_socket(info, reason, s.proto, &c, now_ms);
        }
        if !poll.lost.is_zero() {
            let c = Counts::of_socket(&poll.lost);
            self.sock_seen.add(&c);
            self.unattributed
                .entry("socket_table_full")
                .or_default()
                .add(&c);
        }
        self.sock_index
            .retain(|_, e| now_ms - e.at_ms < SOCKET_INDEX_TTL_MS);
        self.match_sockets(now_ms);
        // Never seen crossing this host: another machine's or namespace's business.
        self.foreign_wait
            .retain(|_, h| now_ms - h.since_ms < SOCKET_MATCH_GRACE_MS * 2);
    }

    fn credit_socket(
        &mut self,
        owner: Option<Arc<ProcessInfo>>,
        reason: &'static str,
        proto: u8,
        c: &Counts,
        now_ms: i64,
    ) {
        self.sock_seen.add(c);
        match owner {
            Some(info) => {
                let p = self
                    .procs
                    .entry((info.pid, info.start_time))
                    .or_insert_with(|| ProcRec::new(info, now_ms, now_ms));
                p.meter.add(c);
                p.last_seen_ms = now_ms;
                p.protocols.insert(transport_name(proto));
                self.sock_credited.add(c);
            }
            None => {
                let reason = if reason.is_empty() {
                    Unattributed::NoOwner.as_str()
                } else {
                    reason
                };
                self.unattributed.entry(reason).or_default().add(c);
            }
        }
    }

    /// Captured flows waiting for a socket record get one, or, after a grace
    /// period, are judged forwarded or socket-less.
    fn match_sockets(&mut self, now_ms: i64) {
        let mut settled: Vec<(&'static str, Meter)> = Vec::new();
        let mut confirmed: Vec<FlowKey> = Vec::new();
        for (k, f) in self.flows.iter_mut() {
            if !matches!(f.owner, Owner::Pending { .. }) {
                continue;
            }
            if let Some((sk, e)) = find_socket(&self.sock_index, k, f.forwarded) {
                f.owner = Owner::Socket(e.owner);
                if let Some(p) = e.owner.and_then(|o| self.procs.get_mut(&o)) {
                    p.protocols.insert(protocol_label(k, f.app));
                }
                if e.unconfirmed {
                    confirmed.push(sk);
                }
                continue;
            }
            if now_ms - f.first_seen_ms < SOCKET_MATCH_GRACE_MS {
                continue;
            }
            let reason = if f.forwarded {
                Unattributed::Forwarded.as_str()
            } else if matches!(k.proto, 6 | 17) {
                Unattributed::NoSocket.as_str()
            } else {
                "no_socket_lookup"
            };
            f.owner = Owner::Unattributed(reason);
            settled.push((reason, f.meter));
        }
        for (reason, m) in settled {
            let b = self.unattributed.entry(reason).or_default();
            b.total.add(&m.total);
            b.tick.add(&m.tick);
        }
        // Another namespace's socket whose traffic crosses this host is this host's.
        for sk in confirmed {
            if let Some(e) = self.sock_index.get_mut(&sk) {
                e.unconfirmed = false;
            }
            if let Some(h) = self.foreign_wait.remove(&sk) {
                self.credit_socket(h.owner, h.reason, h.proto, &h.counts, now_ms);
            }
        }
    }

    /// Takes an owner answer from the resolver.
    pub fn apply_resolution(&mut self, res: Resolution, now_ms: i64) {
        let key = key_of(&res.query);
        match self.flows.get(&key).map(|r| r.first_seen_ms) {
            Some(first) => self.settle(&key, &res, first),
            None => {
                // The flow-start capture is faster than the bulk hand-off:
                // keep the answer until the flow's first delta arrives.
                if self.early.len() < MAX_EARLY {
                    self.early.insert(key, (now_ms, res));
                }
            }
        }
    }

    fn settle(&mut self, key: &FlowKey, res: &Resolution, first_seen_ms: i64) {
        let Some(rec) = self.flows.get_mut(key) else {
            return;
        };
        let upgrade = matches!(rec.owner, Owner::Pending { .. })
            || (matches!(rec.owner, Owner::Unattributed(r) if r == Unattributed::NoSocket.as_str() || r == Unattributed::SocketGone.as_str())
                && res.owner.is_ok());
        if !upgrade {
            return;
        }
        let moved = rec.meter;
        if let Owner::Unattributed(r) = rec.owner {
            if let Some(b) = self.unattributed.get_mut(r) {
                b.total = sub(b.total, moved.total);
                b.tick = sub(b.tick, moved.tick);
            }
        }
        let label = protocol_label(key, rec.app);
        match &res.owner {
            Ok(info) => {
                let k = (info.pid, info.start_time);
                rec.owner = Owner::Process(k);
                let p = self
                    .procs
                    .entry(k)
                    .or_insert_with(|| ProcRec::new(info.clone(), first_seen_ms, rec.last_seen_ms));
                p.meter.total.add(&moved.total);
                p.meter.tick.add(&moved.tick);
                p.protocols.insert(label);
                p.first_seen_ms = p.first_seen_ms.min(first_seen_ms);
                p.last_seen_ms = p.last_seen_ms.max(rec.last_seen_ms);
                let latency_us = u64::try_from(res.latency.as_micros()).unwrap_or(u64::MAX);
                self.record_latency(latency_us);
            }
            Err(reason) => {
                rec.owner = Owner::Unattributed(reason.as_str());
                let b = self.unattributed.entry(reason.as_str()).or_default();
                b.total.add(&moved.total);
                b.tick.add(&moved.tick);
            }
        }
    }

    fn record_latency(&mut self, us: u64) {
        if self.latencies_us.len() < LATENCY_SAMPLES {
            self.latencies_us.push(us);
        } else {
            self.latencies_us[self.latency_pos] = us;
        }
        self.latency_pos = (self.latency_pos + 1) % LATENCY_SAMPLES;
    }

    /// (p50, p99) of recent attribution latencies, microseconds.
    pub fn latency_percentiles(&self) -> (u64, u64) {
        if self.latencies_us.is_empty() {
            return (0, 0);
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.50), at(0.99))
    }

    /// Tables that grew for a burst and are mostly empty now give their
    /// room back (see `memory::shrink_map`); called now and then, not per tick.
    pub fn shrink_idle(&mut self) {
        use crate::memory::shrink_map;
        shrink_map(&mut self.flows);
        shrink_map(&mut self.procs);
        shrink_map(&mut self.hosts);
        shrink_map(&mut self.early);
        shrink_map(&mut self.sock_index);
        shrink_map(&mut self.foreign_wait);
        self.programs.shrink_idle();
        if self.half_open.capacity() > 4 * self.half_open.len().max(256) {
            self.half_open.shrink_to(2 * self.half_open.len());
        }
    }

    /// Flows that need asking again, and flows given up on.
    pub fn maintenance(&mut self, now_ms: i64) -> Resubmit {
        if self.socket_mode {
            // Captured flows wait for socket records instead (match_sockets).
            return Vec::new();
        }
        let mut again = Vec::new();
        let mut give_up = Vec::new();
        for (k, r) in self.flows.iter_mut() {
            if let Owner::Pending { resubmitted } = r.owner {
                let age = now_ms - r.first_seen_ms;
                if age > GIVE_UP_AFTER_MS {
                    give_up.push(*k);
                } else if age > RESUBMIT_AFTER_MS && !resubmitted {
                    r.owner = Owner::Pending { resubmitted: true };
                    let q = SocketQuery {
                        proto: k.proto,
                        local: std::net::SocketAddr::new(k.local, k.local_port),
                        remote: std::net::SocketAddr::new(k.remote, k.remote_port),
                    };
                    let prio = if r.half_open {
                        Priority::Low
                    } else {
                        Priority::High
                    };
                    again.push((q, prio));
                }
            }
        }
        for k in give_up {
            if let Some(r) = self.flows.get_mut(&k) {
                let m = r.meter;
                r.owner = Owner::Unattributed(Unattributed::NoSocket.as_str());
                let b = self
                    .unattributed
                    .entry(Unattributed::NoSocket.as_str())
                    .or_default();
                b.total.add(&m.total);
                b.tick.add(&m.tick);
            }
        }
        self.early.retain(|_, (t, _)| now_ms - *t < EARLY_TTL_MS);
        again
    }

    /// Zeroes live totals; owners and live flows stay known.
    pub fn reset(&mut self) {
        self.procs.retain(|_, p| p.alive);
        self.programs.clear();
        for p in self.procs.values_mut() {
            p.meter = Meter::default();
            p.protocols.clear();
        }
        for f in self.flows.values_mut() {
            f.meter = Meter::default();
            f.host_reported = Counts::default();
        }
        self.unattributed.clear();
        self.hosts.clear();
        self.ifaces.clear();
        self.totals = Meter::default();
        self.sock_credited = Meter::default();
        self.sock_seen = Meter::default();
        self.packets_by_proto.clear();
    }

    /// Names remote hosts: `lookup` is asked about every host once per tick
    /// (before `roll`); a host keeps its last name when lookup has none.
    pub fn apply_names(&mut self, lookup: &dyn Fn(&IpAddr) -> Option<crate::hostnames::NameInfo>) {
        for (ip, h) in self.hosts.iter_mut() {
            if let Some(n) = lookup(ip) {
                if h.name.as_ref() != Some(&n) {
                    h.name = Some(n);
                }
            }
        }
    }

    /// Builds this tick's rollup and starts the next tick.
    /// `is_alive(pid, start_time)` is asked about processes with no live flow.
    pub fn roll(&mut self, tick_ms: u64, is_alive: impl Fn(u32, u64) -> bool) -> Rollup {
        self.ticks += 1;
        self.rotate();
        for p in self.procs.values_mut() {
            p.live_flows = 0;
        }
        for h in self.hosts.values_mut() {
            h.live_flows = 0;
        }
        let mut pending = Meter::default();
        let mut proc_hosts: HashMap<ProcKey, HashMap<IpAddr, Counts>> = HashMap::new();
        for (k, f) in self.flows.iter_mut() {
            if let Owner::Process(pk) | Owner::Socket(Some(pk)) = f.owner {
                let d = sub(f.meter.total, f.host_reported);
                f.host_reported = f.meter.total;
                if d.up_bytes != 0 || d.down_bytes != 0 {
                    proc_hosts
                        .entry(pk)
                        .or_default()
                        .entry(k.remote)
                        .or_default()
                        .add(&d);
                }
            }
            if !f.ended {
                if let Some(h) = self.hosts.get_mut(&k.remote) {
                    h.live_flows += 1;
                }
            }
            match f.owner {
                Owner::Process(pk) | Owner::Socket(Some(pk)) => {
                    if let Some(p) = self.procs.get_mut(&pk) {
                        if !f.ended {
                            p.live_flows += 1;
                        }
                        if let Some(h) = self.hosts.get_mut(&k.remote) {
                            if h.processes.len() < 32 && !h.processes.contains(&p.info.name) {
                                h.processes.insert(p.info.name.clone());
                            }
                        }
                    }
                }
                Owner::Pending { .. } => {
                    pending.total.add(&f.meter.total);
                    pending.last.add(&f.meter.last);
                }
                Owner::Unattributed(_) | Owner::Socket(None) => {}
            }
        }
        // A process with no live flow may have exited; check now and then.
        if programs::liveness_due(self.ticks) {
            let tick = self.ticks;
            for p in self.procs.values_mut() {
                if p.alive && p.live_flows == 0 {
                    p.alive = is_alive(p.info.pid, p.info.start_time);
                    if !p.alive {
                        p.exited_tick = tick;
                    }
                }
            }
        }
        let mut processes: Vec<v1::ProcessRow> = self
            .procs
            .values()
            .map(|p| {
                process_row(
                    &p.info,
                    p.meter.traffic(tick_ms),
                    p.protocols.iter().map(|s| (*s).to_owned()).collect(),
                    p.live_flows,
                    p.alive,
                    (p.first_seen_ms, p.last_seen_ms),
                )
            })
            .chain(self.programs.rows(tick_ms))
            .collect();
        most_bytes_first(&mut processes, |r| r.traffic);

        let mut reasons: Vec<v1::UnattributedReason> = self
            .unattributed
            .iter()
            .map(|(r, m)| v1::UnattributedReason {
                reason: (*r).to_owned(),
                traffic: Some(m.traffic(tick_ms)),
            })
            .collect();
        if pending.total != Counts::default() {
            reasons.push(v1::UnattributedReason {
                reason: Unattributed::Pending.as_str().to_owned(),
                traffic: Some(pending.traffic(tick_ms)),
            });
        }
        reasons.sort_by(|a, b| a.reason.cmp(&b.reason));
        let mut un = Meter::default();
        for m in self.unattributed.values() {
            un.total.add(&m.total);
            un.last.add(&m.last);
        }
        un.total.add(&pending.total);
        un.last.add(&pending.last);
        // With socket accounting every byte is a socket's (credited once) or
        // in an unattributed bucket; capture's copies of socket bytes are not added.
        let totals = if self.socket_mode {
            let mut t = self.sock_credited;
            t.total.add(&un.total);
            t.last.add(&un.last);
            t
        } else {
            self.totals
        };

        let mut hosts: Vec<v1::HostRow> = self
            .hosts
            .iter()
            .map(|(ip, h)| {
                host_row(
                    *ip,
                    h.name.as_ref(),
                    h.meter.traffic(tick_ms),
                    h.processes.iter().cloned().collect(),
                    h.live_flows,
                )
            })
            .collect();
        most_bytes_first(&mut hosts, |h| h.traffic);

        let attributed: u64 = self
            .procs
            .values()
            .map(|p| &p.meter)
            .chain(self.programs.meters())
            .map(|m| m.total.up_bytes + m.total.down_bytes)
            .sum();
        let live = self.procs.values().filter(|p| p.alive).count() as u64;
        let (folded_programs, folded_processes) = self.programs.counts();
        let table = TableCounts {
            live_processes: live,
            exited_processes: self.procs.len() as u64 - live,
            folded_programs,
            folded_processes,
        };
        let tick_packets: u64 = self.packets_by_proto.values().sum();
        // packets_by_proto and size_hist count the tick just ended.
        let rollup = Rollup {
            processes,
            totals: totals.traffic(tick_ms),
            unattributed: v1::Unattributed {
                traffic: Some(un.traffic(tick_ms)),
                reasons,
            },
            hosts,
            packet_stats: v1::PacketStats {
                packets_by_protocol: self
                    .packets_by_proto
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
                size_bounds: SIZE_BOUNDS.to_vec(),
                size_counts: self.size_hist.to_vec(),
                packets_per_sec: tick_packets.saturating_mul(1000) / tick_ms.max(1),
            },
            per_iface: self
                .ifaces
                .iter()
                .map(|(k, m)| (*k, m.traffic(tick_ms)))
                .collect(),
            bytes_captured: if self.socket_mode {
                // Coverage in socket mode: credited / every local socket byte.
                self.sock_seen.total.up_bytes + self.sock_seen.total.down_bytes
            } else {
                self.totals.total.up_bytes + self.totals.total.down_bytes
            },
            bytes_attributed: attributed,
            flows_tracked: self.flows.len() as u64,
            table,
            folded: self.programs.take_folded(),
            proc_hosts: proc_host_rows(proc_hosts),
        };
        self.end_tick(tick_ms);
        rollup
    }

    fn rotate(&mut self) {
        self.procs.values_mut().for_each(|p| {
            p.quiet_ticks = if p.meter.tick == Counts::default() {
                p.quiet_ticks.saturating_add(1)
            } else {
                0
            };
            p.meter.rotate();
        });
        self.programs.rotate();
        self.unattributed.values_mut().for_each(Meter::rotate);
        self.hosts.values_mut().for_each(|h| h.meter.rotate());
        self.ifaces.values_mut().for_each(Meter::rotate);
        self.flows.values_mut().for_each(|f| f.meter.rotate());
        self.totals.rotate();
        self.sock_credited.rotate();
        self.sock_seen.rotate();
    }

    fn end_tick(&mut self, tick_ms: u64) {
        self.packets_by_proto.clear();
        self.size_hist = [0; SIZE_BOUNDS.len()];
        // Ended flows whose owner is settled are done; their bytes live on
        // in the process, host and bucket totals.
        self.flows
            .retain(|_, f| !f.ended || matches!(f.owner, Owner::Pending { .. }));
        // Entries of flows that left or completed: keep the list no longer than
        // the table after a flood.
        if self.half_open.len() > self.flows.len() {
            let flows = &self.flows;
            self.half_open
                .retain(|k| flows.get(k).is_some_and(|f| f.half_open));
            self.half_open.shrink_to(self.flows.len());
        }
        self.fold_exited(tick_ms);
        if self.hosts.len() > MAX_HOSTS {
            let mut small: Vec<(u64, i64, IpAddr)> = self
                .hosts
                .iter()
                .filter(|(_, h)| h.live_flows == 0)
                .map(|(ip, h)| {
                    (
                        h.meter.total.up_bytes + h.meter.total.down_bytes,
                        h.last_seen_ms,
                        *ip,
                    )
                })
                .collect();
            small.sort_unstable();
            let excess = self.hosts.len() - MAX_HOSTS;
            for (_, _, ip) in small.into_iter().take(excess) {
                self.hosts.remove(&ip);
            }
        }
    }

    /// Exited processes gone longer than the retention, and the longest gone
    /// beyond its count, fold into their programs' rows: totals stay exact,
    /// only the per-pid split of old exited processes goes (history keeps it).
    fn fold_exited(&mut self, tick_ms: u64) {
        self.programs.fold_due(
            &mut self.procs,
            self.ticks,
            tick_ms,
            |p| (!p.alive).then_some((p.exited_tick, p.last_seen_ms, p.quiet_ticks)),
            |p| {
                let seen = (p.first_seen_ms, p.last_seen_ms);
                Exited::new(p.info, (p.meter.total, p.meter.tick), p.protocols, seen)
            },
        );
    }

    /// Live flows as API rows, with their owners.
    pub fn connections(
        &self,
        tick_ms: u64,
        iface_name: impl Fn(u16) -> String,
    ) -> Vec<v1::Connection> {
        self.flows
            .iter()
            .filter(|(_, f)| !f.ended)
            .map(|(k, f)| {
                let (process, reason) = match f.owner {
                    Owner::Process(pk) | Owner::Socket(Some(pk)) => (
                        self.procs
                            .get(&pk)
                            .map(|p| v1::ProcessIdentity::from(&*p.info)),
                        String::new(),
                    ),
                    Owner::Socket(None) => (None, String::new()),
                    Owner::Pending { .. } => (None, Unattributed::Pending.as_str().to_owned()),
                    Owner::Unattributed(r) => (None, r.to_owned()),
                };
                v1::Connection {
                    protocol: transport_name(k.proto).to_owned(),
                    app_protocol: if f.app == AppProto::Unknown {
                        String::new()
                    } else {
                        f.app.name().to_owned()
                    },
                    local_addr: k.local.to_string(),
                    local_port: u32::from(k.local_port),
                    remote_addr: k.remote.to_string(),
                    remote_port: u32::from(k.remote_port),
                    remote_name: self
                        .hosts
                        .get(&k.remote)
                        .and_then(|h| h.name.as_ref())
                        .map(|n| n.name.to_string())
                        .unwrap_or_default(),
                    state: tcp_state_name(k.proto, f.tcp_state).to_owned(),
                    process,
                    unattributed_reason: reason,
                    traffic: Some(f.meter.traffic(tick_ms)),
                    first_seen_ms: f.first_seen_ms,
                    last_seen_ms: f.last_seen_ms,
                    interface: iface_name(f.iface),
                }
            })
            .collect()
    }
}

fn reverse(k: &FlowKey) -> FlowKey {
    FlowKey {
        proto: k.proto,
        local: k.remote,
        local_port: k.remote_port,
        remote: k.local,
        remote_port: k.local_port,
    }
}

/// A socket record's addresses as a flow key; ports are kept for TCP and UDP only
/// (an ICMP or raw socket's "port" is not what capture puts in a flow key).
fn socket_key(proto: u8, local: std::net::SocketAddr, remote: std::net::SocketAddr) -> FlowKey {
    let ports = matches!(proto, 6 | 17);
    FlowKey {
        proto,
        local: local.ip(),
        local_port: if ports { local.port() } else { 0 },
        remote: remote.ip(),
        remote_port: if ports { remote.port() } else { 0 },
    }
}

fn unspecified_like(ip: &IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// The socket a captured flow belongs to, from either end: exact addresses
/// first, then an unconnected socket on the local address or on any address.
/// A socket bound to any address matches only flows that reached a local
/// address: a forwarded flow to some port is not that local listener's.
fn find_socket(
    index: &HashMap<FlowKey, SockEntry>,
    k: &FlowKey,
    forwarded: bool,
) -> Option<(FlowKey, SockEntry)> {
    let ports = matches!(k.proto, 6 | 17);
    for f in [*k, reverse(k)] {
        let f = FlowKey {
            local_port: if ports { f.local_port } else { 0 },
            remote_port: if ports { f.remote_port } else { 0 },
            ..f
        };
        let any_remote = FlowKey {
            remote: unspecified_like(&f.remote),
            remote_port: 0,
            ..f
        };
        let any_local = FlowKey {
            local: unspecified_like(&f.local),
            ..any_remote
        };
        let any_local = (!forwarded).then_some(any_local);
        for cand in [Some(f), Some(any_remote), any_local].into_iter().flatten() {
            if let Some(e) = index.get(&cand) {
                return Some((cand, *e));
            }
        }
    }
    None
}

/// One tick's per-process host bytes as store rows: each process's busiest
/// `PROC_HOSTS_PER_TICK` hosts, the rest summed under address "".
fn proc_host_rows(
    by_proc: HashMap<ProcKey, HashMap<IpAddr, Counts>>,
) -> Vec<crate::store::ProcHostTick> {
    let mut out = Vec::new();
    for (pk, hosts) in by_proc {
        let mut hosts: Vec<(IpAddr, Counts)> = hosts.into_iter().collect();
        hosts.sort_unstable_by_key(|(ip, c)| (std::cmp::Reverse(c.up_bytes + c.down_bytes), *ip));
        let mut rest = Counts::default();
        for (n, (ip, c)) in hosts.into_iter().enumerate() {
            if n < PROC_HOSTS_PER_TICK {
                out.push(crate::store::ProcHostTick {
                    process: pk,
                    address: ip.to_string(),
                    up_bytes: c.up_bytes,
                    down_bytes: c.down_bytes,
                });
            } else {
                rest.add(&c);
            }
        }
        if rest != Counts::default() {
            out.push(crate::store::ProcHostTick {
                process: pk,
                address: String::new(),
                up_bytes: rest.up_bytes,
                down_bytes: rest.down_bytes,
            });
        }
    }
    out
}

fn sub(a: Counts, b: Counts) -> Counts {
    Counts {
        up_bytes: a.up_bytes.saturating_sub(b.up_bytes),
        down_bytes: a.down_bytes.saturating_sub(b.down_bytes),
        up_packets: a.up_packets.saturating_sub(b.up_packets),
        down_packets: a.down_packets.saturating_sub(b.down_packets),
    }
}

fn tcp_state_name(proto: u8, s: TcpState) -> &'static str {
    if proto != 6 {
        return "active";
    }
    match s {
        TcpState::None => "unknown",
        TcpState::SynSent => "syn_sent",
        TcpState::SynReceived => "syn_received",
        TcpState::Established => "established",
        TcpState::Closing => "closing",
        TcpState::Closed => "closed",
    }
}

#[cfg(test)]
mod tests;
