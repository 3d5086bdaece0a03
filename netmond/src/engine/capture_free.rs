//! The capture-free mode (`mode = "basic"`): per-process TCP payload bytes from the kernel's
//! per-socket counters (sock_diag `tcp_info`), sampled every tick, plus the kernel's
//! interface counters. No pcap, no packet statistics, no UDP.
//!
//! Counting rules (the delta logic is [`SocketDeltas`], pure and unit-tested):
//! - Each TCP socket is known by its kernel cookie; a tick credits its owner with
//!   the growth of `tcpi_bytes_acked` (upload) and `tcpi_bytes_received` (download)
//!   since the previous tick. These are payload bytes: IP and TCP headers are not in
//!   them, so totals run a few % below capture mode's layer-3 bytes.
//! - Sockets open when monitoring starts are a baseline: only what they move after
//!   the start counts. A socket first seen later counts from zero (its whole life
//!   falls after the start).
//! - A socket that disappears keeps what it was credited. Its bytes since the last
//!   tick are still counted when the kernel's TCP destroy notification (any
//!   user may subscribe) delivers its final counters, credited to the owner it had
//!   when last seen open; a socket born and closed within one tick has no known owner and
//!   is counted as unattributed (`socket_gone`).
//! - Counters that go down (a cookie reused) restart the socket from zero.
//! - Only the daemon's network namespace is dumped; loopback peers are skipped
//!   unless `capture.include_loopback` is set (as in capture mode).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use netmon_proto::v1;

use crate::aggregate::programs::{liveness_due, Exited};
use crate::aggregate::rows::{host_row, most_bytes_first, process_row};
use crate::aggregate::{Counts, ExitedRetention, Programs, TableCounts};
use crate::attribution::procmap::{TcpSample, TcpSampler};
use crate::attribution::ProcessInfo;
use crate::config::Config;
use crate::engine::snapshot::{KernelCounters, MonitorStatus, Snapshot};
use crate::memory::shrink_map;
use crate::netif;
use crate::sync::lock;

/// One socket's counters as read in one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub cookie: u64,
    pub acked: u64,
    pub received: u64,
    /// Final counters of a socket that is gone.
    pub closed: bool,
}

#[derive(Clone, Copy, Debug)]
struct SockState {
    acked: u64,
    received: u64,
    generation: u64,
}

/// Cumulative per-socket counters -> per-sample deltas.
#[derive(Debug, Default)]
pub struct SocketDeltas {
    socks: HashMap<u64, SockState>,
    generation: u64,
    primed: bool,
}

impl SocketDeltas {
    /// Deltas (up, down) for each reading, in order. The first call only records a
    /// baseline (all deltas 0). Sockets absent from a sample are forgotten.
    pub fn step(&mut self, readings: &[Reading]) -> Vec<(u64, u64)> {
        self.generation += 1;
        let mut out = Vec::with_capacity(readings.len());
        for r in readings {
            let d = match self.socks.get(&r.cookie) {
                Some(p) if r.acked >= p.acked && r.received >= p.received => {
                    (r.acked - p.acked, r.received - p.received)
                }
                // Counters went down: another socket under the same cookie.
                Some(_) => (r.acked, r.received),
                None if self.primed => (r.acked, r.received),
                None => (0, 0),
            };
            out.push(d);
            if r.closed {
                self.socks.remove(&r.cookie);
            } else {
                self.socks.insert(
                    r.cookie,
                    SockState {
                        acked: r.acked,
                        received: r.received,
                        generation: self.generation,
                    },
                );
            }
        }
        let g = self.generation;
        self.socks.retain(|_, s| s.generation == g);
        self.primed = true;
        out
    }

    pub fn live(&self) -> usize {
        self.socks.len()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Meter {
    up: u64,
    down: u64,
    last_up: u64,
    last_down: u64,
}

impl Meter {
    fn add(&mut self, up: u64, down: u64) {
        self.up += up;
        self.down += down;
        self.last_up += up;
        self.last_down += down;
    }
    fn traffic(&self, tick_ms: u64) -> v1::Traffic {
        let rate = |b: u64| b.saturating_mul(1000) / tick_ms.max(1);
        v1::Traffic {
            up_bytes: self.up,
            down_bytes: self.down,
            up_bps: rate(self.last_up),
            down_bps: rate(self.last_down),
            up_packets: 0,
            down_packets: 0,
        }
    }
}

struct ProcEntry {
    info: Arc<ProcessInfo>,
    meter: Meter,
    connections: u32,
    alive: bool,
    /// The tick its exit was noticed (when `alive` is false).
    exited_tick: u64,
    /// Ticks in a row without a byte (its closed sockets' final counters may
    /// come a tick after it exited).
    quiet_ticks: u32,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

struct Conn {
    sample: TcpSample,
    meter: Meter,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

struct HostEntry {
    meter: Meter,
    processes: HashSet<String>,
    connections: u32,
}

/// Most remote hosts remembered; beyond it idle ones are dropped.
const MAX_HOSTS: usize = 10_000;

/// What the samples add up to: processes (exited ones kept a while, then
/// folded into program rows as in capture mode), connections, hosts.
#[derive(Default)]
struct Table {
    deltas: SocketDeltas,
    procs: HashMap<(u32, u64), ProcEntry>,
    /// Exited processes folded by program; see `ExitedRetention`.
    programs: Programs,
    conns: HashMap<u64, Conn>,
    hosts: HashMap<IpAddr, HostEntry>,
    unattributed: Meter,
    ticks: u64,
}

struct Inner {
    sampler: TcpSampler,
    table: Table,
    kernel: KernelCounters,
    trim: crate::memory::TrimClock,
    error: String,
}

/// A capture-free (`mode = "basic"`) monitoring run, with the same surface as the capture one.
pub struct CaptureFreeMonitor {
    tick_ms: u64,
    include_loopback: bool,
    wanted: Vec<String>,
    reason: String,
    inner: Mutex<Inner>,
}

fn is_loopback(a: &SocketAddr) -> bool {
    match a.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Table {
    fn with_retention(r: ExitedRetention) -> Table {
        let mut t = Table::default();
        t.programs.set_retention(r);
        t
    }

    /// One sample in. `is_alive(pid, start_time)` is asked only about
    /// processes without an open connection, and not every tick.
    fn apply(
        &mut self,
        samples: Vec<TcpSample>,
        now: i64,
        tick_ms: u64,
        is_alive: impl Fn(u32, u64) -> bool,
    ) {
        self.ticks += 1;
        self.programs.rotate();
        let readings: Vec<Reading> = samples
            .iter()
            .map(|s| Reading {
                cookie: s.cookie,
                acked: s.bytes_acked,
                received: s.bytes_received,
                closed: s.closed,
            })
            .collect();
        let deltas = self.deltas.step(&readings);
        for m in self.procs.values_mut() {
            m.meter.last_up = 0;
            m.meter.last_down = 0;
            m.connections = 0;
        }
        for h in self.hosts.values_mut() {
            h.meter.last_up = 0;
            h.meter.last_down = 0;
            h.connections = 0;
        }
        self.unattributed.last_up = 0;
        self.unattributed.last_down = 0;
        let mut open = HashSet::new();
        for (s, (up, down)) in samples.into_iter().zip(deltas) {
            let moved = up + down > 0;
            match &s.owner {
                Some(info) => {
                    let e = self
                        .procs
                        .entry((info.pid, info.start_time))
                        .or_insert_with(|| ProcEntry {
                            info: info.clone(),
                            meter: Meter::default(),
                            connections: 0,
                            alive: true,
                            exited_tick: 0,
                            quiet_ticks: 0,
                            first_seen_ms: now,
                            last_seen_ms: now,
                        });
                    e.meter.add(up, down);
                    if !s.closed {
                        e.connections += 1;
                    }
                    if moved {
                        e.last_seen_ms = now;
                    }
                }
                None => self.unattributed.add(up, down),
            }
            let remote = plain_ip(s.remote.ip());
            if moved || self.hosts.contains_key(&remote) {
                let h = self.hosts.entry(remote).or_insert_with(|| HostEntry {
                    meter: Meter::default(),
                    processes: HashSet::new(),
                    connections: 0,
                });
                h.meter.add(up, down);
                if !s.closed {
                    h.connections += 1;
                }
                if let Some(o) = &s.owner {
                    if h.processes.len() < 64 {
                        h.processes.insert(o.name.clone());
                    }
                }
            }
            if s.closed {
                self.conns.remove(&s.cookie);
                continue;
            }
            open.insert(s.cookie);
            let c = self.conns.entry(s.cookie).or_insert_with(|| Conn {
                sample: s.clone(),
                meter: Meter::default(),
                first_seen_ms: now,
                last_seen_ms: now,
            });
            c.meter.last_up = 0;
            c.meter.last_down = 0;
            c.meter.add(up, down);
            if moved {
                c.last_seen_ms = now;
            }
            c.sample = s;
        }
        self.conns.retain(|c, _| open.contains(c));
        if self.hosts.len() > MAX_HOSTS {
            self.hosts
                .retain(|_, h| h.connections > 0 || h.meter.last_up + h.meter.last_down > 0);
        }
        let tick = self.ticks;
        let check = liveness_due(tick);
        for p in self.procs.values_mut() {
            p.quiet_ticks = if p.meter.last_up + p.meter.last_down == 0 {
                p.quiet_ticks.saturating_add(1)
            } else {
                0
            };
            // A process holding an open socket is alive: no /proc read.
            if check && p.alive && p.connections == 0 {
                p.alive = is_alive(p.info.pid, p.info.start_time);
                if !p.alive {
                    p.exited_tick = tick;
                }
            }
        }
        self.fold_exited(tick_ms);
    }

    /// Exited processes past their retention fold into their programs' rows
    /// (see `aggregate::Programs`): totals stay exact.
    fn fold_exited(&mut self, tick_ms: u64) {
        let bytes = |up, down| Counts {
            up_bytes: up,
            down_bytes: down,
            ..Counts::default()
        };
        self.programs.fold_due(
            &mut self.procs,
            self.ticks,
            tick_ms,
            |p| (!p.alive).then_some((p.exited_tick, p.last_seen_ms, p.quiet_ticks)),
            |p| {
                let m = p.meter;
                let meter = (bytes(m.up, m.down), bytes(m.last_up, m.last_down));
                let seen = (p.first_seen_ms, p.last_seen_ms);
                Exited::new(p.info, meter, BTreeSet::from(["tcp"]), seen)
            },
        );
    }

    /// Rows of the process table, for `status`.
    fn counts(&self) -> TableCounts {
        let live = self.procs.values().filter(|p| p.alive).count() as u64;
        let (folded_programs, folded_processes) = self.programs.counts();
        TableCounts {
            live_processes: live,
            exited_processes: self.procs.len() as u64 - live,
            folded_programs,
            folded_processes,
        }
    }

    /// Process rows (program rows included), most bytes first.
    fn process_rows(&self, tick_ms: u64) -> Vec<v1::ProcessRow> {
        let mut rows: Vec<v1::ProcessRow> = self
            .procs
            .values()
            .map(|p| {
                process_row(
                    &p.info,
                    p.meter.traffic(tick_ms),
                    vec!["tcp".to_owned()],
                    p.connections,
                    p.alive,
                    (p.first_seen_ms, p.last_seen_ms),
                )
            })
            .chain(self.programs.rows(tick_ms))
            .collect();
        most_bytes_first(&mut rows, |r| r.traffic);
        rows
    }

    /// Bytes credited to processes, exited and folded ones included.
    fn attributed(&self) -> Meter {
        let (total, last) = self.programs.sum();
        let mut all = Meter {
            up: total.up_bytes,
            down: total.down_bytes,
            last_up: last.up_bytes,
            last_down: last.down_bytes,
        };
        for p in self.procs.values() {
            all.up += p.meter.up;
            all.down += p.meter.down;
            all.last_up += p.meter.last_up;
            all.last_down += p.meter.last_down;
        }
        all
    }

    /// See `memory::shrink_map`.
    fn shrink_idle(&mut self) {
        shrink_map(&mut self.procs);
        shrink_map(&mut self.conns);
        shrink_map(&mut self.hosts);
        self.programs.shrink_idle();
    }
}

impl CaptureFreeMonitor {
    /// `reason` says why basic mode runs (config, or why capture failed).
    pub fn start(cfg: &Config, wanted: Vec<String>, reason: String) -> anyhow::Result<Self> {
        let sampler = TcpSampler::open().context("cannot open a sock_diag socket")?;
        let m = CaptureFreeMonitor {
            tick_ms: cfg.daemon.tick_ms,
            include_loopback: cfg.capture.include_loopback,
            wanted,
            reason,
            inner: Mutex::new(Inner {
                sampler,
                table: Table::with_retention(ExitedRetention {
                    keep_ms: cfg.daemon.exited_keep_secs.saturating_mul(1000),
                    keep_max: cfg.daemon.exited_keep_max,
                }),
                kernel: KernelCounters::default(),
                trim: crate::memory::TrimClock::default(),
                error: String::new(),
            }),
        };
        // The baseline: what open sockets moved before the start is not counted.
        let mut inner = lock(&m.inner);
        let samples = inner
            .sampler
            .sample()
            .context("cannot dump TCP sockets (sock_diag)")?;
        m.apply(&mut inner, samples);
        drop(inner);
        Ok(m)
    }

    fn apply(&self, inner: &mut Inner, samples: Vec<TcpSample>) {
        let samples: Vec<TcpSample> = samples
            .into_iter()
            .filter(|s| self.include_loopback || !is_loopback(&s.remote))
            .collect();
        inner.table.apply(
            samples,
            crate::clock::now_ms(),
            self.tick_ms,
            crate::attribution::procmap::is_alive,
        );
    }

    pub fn tick(&self) -> Snapshot {
        let list = netif::list();
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        match inner.sampler.sample() {
            Ok(samples) => {
                inner.error.clear();
                self.apply(inner, samples);
            }
            Err(e) => {
                let msg = format!("cannot dump TCP sockets: {e}");
                if inner.error != msg {
                    tracing::warn!(error = %e, "basic mode: cannot dump TCP sockets");
                }
                inner.error = msg;
            }
        }
        self.snapshot(inner, list)
    }

    fn snapshot(
        &self,
        inner: &mut Inner,
        list: Result<Vec<netif::Interface>, netif::NetifError>,
    ) -> Snapshot {
        let tick_ms = self.tick_ms;
        let folded = inner.table.programs.take_folded();
        if inner.trim.due(folded.len()) {
            inner.table.shrink_idle();
            crate::memory::give_back();
        }
        let t = &inner.table;
        let processes = t.process_rows(tick_ms);
        let mut all = t.attributed();
        all.up += t.unattributed.up;
        all.down += t.unattributed.down;
        all.last_up += t.unattributed.last_up;
        all.last_down += t.unattributed.last_down;
        let un = t.unattributed.traffic(tick_ms);
        let flows_active = t.deltas.live() as u64;
        let mut hosts: Vec<v1::HostRow> = t
            .hosts
            .iter()
            .map(|(ip, h)| {
                let mut procs: Vec<String> = h.processes.iter().cloned().collect();
                procs.sort();
                host_row(*ip, None, h.meter.traffic(tick_ms), procs, h.connections)
            })
            .collect();
        most_bytes_first(&mut hosts, |h| h.traffic);
        let interfaces = match &list {
            Ok(l) => inner.kernel.rows(l, |_| (None, None)),
            Err(_) => Vec::new(),
        };
        Snapshot {
            processes,
            totals: all.traffic(tick_ms),
            unattributed: v1::Unattributed {
                traffic: Some(un),
                reasons: if un.up_bytes + un.down_bytes > 0 {
                    vec![v1::UnattributedReason {
                        reason: "socket_gone".to_owned(),
                        traffic: Some(un),
                    }]
                } else {
                    Vec::new()
                },
            },
            interfaces,
            hosts,
            packet_stats: None,
            packets_dropped: 0,
            flows_active,
            handoff_dropped: 0,
            lookup_queue: 0,
            lookup_dropped: 0,
            lookup_mode: "",
            folded,
            proc_hosts: Vec::new(),
        }
    }

    /// The last figures (one more sample, so the final bytes count).
    pub fn stop(&self) -> Snapshot {
        self.tick()
    }

    pub fn reset(&self) {
        let mut inner = lock(&self.inner);
        inner.table.procs.clear();
        inner.table.programs.clear();
        inner.table.hosts.clear();
        inner.table.unattributed = Meter::default();
        for c in inner.table.conns.values_mut() {
            c.meter = Meter::default();
        }
    }

    pub fn interface_names(&self) -> Vec<String> {
        self.wanted.clone()
    }

    pub fn connections(&self) -> Vec<v1::Connection> {
        let inner = lock(&self.inner);
        let mut out: Vec<v1::Connection> = inner
            .table
            .conns
            .values()
            .map(|c| v1::Connection {
                protocol: "tcp".to_owned(),
                app_protocol: String::new(),
                local_addr: plain_ip(c.sample.local.ip()).to_string(),
                local_port: u32::from(c.sample.local.port()),
                remote_addr: plain_ip(c.sample.remote.ip()).to_string(),
                remote_port: u32::from(c.sample.remote.port()),
                remote_name: String::new(),
                state: "active".to_owned(),
                process: c.sample.owner.as_deref().map(v1::ProcessIdentity::from),
                unattributed_reason: if c.sample.owner.is_some() {
                    String::new()
                } else {
                    "socket_gone".to_owned()
                },
                traffic: Some(c.meter.traffic(self.tick_ms)),
                first_seen_ms: c.first_seen_ms,
                last_seen_ms: c.last_seen_ms,
                interface: String::new(),
            })
            .collect();
        out.sort_by_key(|c| {
            let t = c.traffic.unwrap_or_default();
            std::cmp::Reverse(t.up_bytes + t.down_bytes)
        });
        out
    }

    pub fn status(&self) -> MonitorStatus {
        let inner = lock(&self.inner);
        let mut reason = format!(
            "{}; per-process bytes are TCP payload bytes from the kernel's tcp_info \
             (no IP/TCP headers, no UDP)",
            self.reason
        );
        if !inner.sampler.destroy_events {
            reason.push_str("; no TCP destroy notifications: a socket's last tick is lost");
        }
        if !inner.error.is_empty() {
            reason.push_str("; ");
            reason.push_str(&inner.error);
        }
        let all = inner.table.attributed();
        let attributed = all.up + all.down;
        let un = inner.table.unattributed.up + inner.table.unattributed.down;
        MonitorStatus {
            mode: "basic",
            mode_reason: reason,
            interfaces: Vec::new(),
            packets_malformed: inner.sampler.malformed,
            flows_active: inner.table.deltas.live() as u64,
            bytes_captured: attributed + un,
            bytes_attributed: attributed,
            table: inner.table.counts(),
            ..MonitorStatus::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    fn r(cookie: u64, acked: u64, received: u64) -> Reading {
        Reading {
            cookie,
            acked,
            received,
            closed: false,
        }
    }

    #[test]
    fn sockets_open_at_start_count_only_what_follows() {
        let mut d = SocketDeltas::default();
        assert_eq!(d.step(&[r(1, 1000, 500)]), vec![(0, 0)]);
        assert_eq!(d.step(&[r(1, 1500, 700)]), vec![(500, 200)]);
        assert_eq!(d.step(&[r(1, 1500, 700)]), vec![(0, 0)]);
    }

    #[test]
    fn a_socket_first_seen_after_start_counts_from_zero() {
        let mut d = SocketDeltas::default();
        d.step(&[]);
        assert_eq!(d.step(&[r(7, 3000, 10)]), vec![(3000, 10)]);
        assert_eq!(d.step(&[r(7, 3100, 10)]), vec![(100, 0)]);
    }

    #[test]
    fn a_vanished_socket_is_forgotten_and_its_final_counters_still_count() {
        let mut d = SocketDeltas::default();
        d.step(&[]);
        d.step(&[r(1, 100, 0), r(2, 50, 0)]);
        // Socket 2 vanished without a destroy notification: nothing more, forgotten.
        assert_eq!(d.step(&[r(1, 150, 0)]), vec![(50, 0)]);
        assert_eq!(d.live(), 1);
        // Socket 1 closes: its final counters arrive as a destroy notification.
        let closed = Reading {
            closed: true,
            ..r(1, 400, 9)
        };
        assert_eq!(d.step(&[closed]), vec![(250, 9)]);
        assert_eq!(d.live(), 0);
        // Seen open and destroyed in the same sample: counted once.
        d.step(&[r(3, 10, 0)]);
        let closed3 = Reading {
            closed: true,
            ..r(3, 30, 0)
        };
        assert_eq!(d.step(&[r(3, 20, 0), closed3]), vec![(10, 0), (10, 0)]);
    }

    #[test]
    fn counters_going_down_restart_the_socket() {
        let mut d = SocketDeltas::default();
        d.step(&[]);
        d.step(&[r(1, 1000, 1000)]);
        assert_eq!(d.step(&[r(1, 40, 2000)]), vec![(40, 2000)]);
        assert_eq!(d.step(&[r(1, 50, 2000)]), vec![(10, 0)]);
    }

    fn proc_info(pid: u32, name: &str) -> Arc<ProcessInfo> {
        Arc::new(ProcessInfo {
            pid,
            start_time: 1000 + u64::from(pid),
            name: name.to_owned(),
            exe: format!("/usr/bin/{name}"),
            uid: 1000,
            user: "u".into(),
            ..ProcessInfo::default()
        })
    }

    fn sample(owner: &Arc<ProcessInfo>, acked: u64, received: u64, closed: bool) -> TcpSample {
        TcpSample {
            cookie: u64::from(owner.pid),
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: "10.0.0.2:5401".parse().unwrap(),
            bytes_acked: acked,
            bytes_received: received,
            owner: Some(owner.clone()),
            closed,
        }
    }

    #[test]
    fn exited_processes_fold_into_program_rows_and_connected_ones_are_not_read() {
        let mut t = Table::with_retention(ExitedRetention {
            keep_ms: 3000,
            keep_max: 1000,
        });
        let asked = std::cell::Cell::new(0u32);
        // Short-lived processes are gone; the long-lived one (pid 5) always has
        // an open socket, so /proc is never read for it.
        let alive = |pid: u32, _| {
            assert_ne!(pid, 5, "read /proc for a process with an open connection");
            asked.set(asked.get() + 1);
            false
        };
        let daemon = proc_info(5, "daemon");
        let short: Vec<Arc<ProcessInfo>> = (100..120)
            .map(|pid| proc_info(pid, if pid % 2 == 0 { "alpha" } else { "beta" }))
            .collect();
        let payload = |p: &ProcessInfo| (u64::from(p.pid) * 1000, u64::from(p.pid) * 10);
        let mut want = HashMap::<&str, (u64, u64)>::new();
        for p in &short {
            let (up, down) = payload(p);
            let w = want
                .entry(if p.pid % 2 == 0 { "alpha" } else { "beta" })
                .or_default();
            // The final counters come with the destroy notification: +5, +7.
            w.0 += up + 5;
            w.1 += down + 7;
        }
        // Baseline, then the short ones' sockets open, then they close.
        t.apply(vec![sample(&daemon, 0, 0, false)], 0, 1000, alive);
        let mut open = vec![sample(&daemon, 100, 1, false)];
        open.extend(short.iter().map(|p| {
            let (up, down) = payload(p);
            sample(p, up, down, false)
        }));
        t.apply(open, 1, 1000, alive);
        let mut closed = vec![sample(&daemon, 200, 2, false)];
        closed.extend(short.iter().map(|p| {
            let (up, down) = payload(p);
            sample(p, up + 5, down + 7, true)
        }));
        t.apply(closed, 2, 1000, alive);
        assert_eq!(t.conns.len(), 1, "closed sockets' connections go");
        let mut daemon_bytes = 200;
        let mut tick = 3;
        let mut step = |t: &mut Table| {
            daemon_bytes += 100;
            t.apply(
                vec![sample(&daemon, daemon_bytes, 2, false)],
                tick,
                1000,
                alive,
            );
            tick += 1;
        };
        // Exit noticed at tick 6 (the liveness check runs every 5th tick).
        for _ in 3..7 {
            step(&mut t);
        }
        let c = t.counts();
        assert_eq!((c.live_processes, c.exited_processes), (1, 20), "{c:?}");
        assert!(
            t.programs.take_folded().is_empty(),
            "kept for the keep time"
        );
        assert_eq!(asked.get(), 20, "asked once each, at the check tick");
        for _ in 7..12 {
            step(&mut t);
        }
        assert_eq!(
            t.counts(),
            TableCounts {
                live_processes: 1,
                exited_processes: 0,
                folded_programs: 2,
                folded_processes: 20,
            }
        );
        let mut folded = t.programs.take_folded();
        folded.sort_unstable();
        let mut ids: Vec<(u32, u64)> = short.iter().map(|p| (p.pid, p.start_time)).collect();
        ids.sort_unstable();
        assert_eq!(folded, ids, "folded pids are reported for the store");
        assert_eq!(asked.get(), 20, "exited processes are not read again");
        let rows = t.process_rows(1000);
        assert_eq!(rows.len(), 3, "{rows:?}");
        for name in ["alpha", "beta"] {
            let r = rows
                .iter()
                .find(|r| r.process.as_ref().unwrap().name == name)
                .unwrap();
            let id = r.process.as_ref().unwrap();
            let tr = r.traffic.unwrap();
            assert_eq!((tr.up_bytes, tr.down_bytes), want[name], "{r:?}");
            assert_eq!((id.pid, r.alive, r.folded_processes), (0, false, 10));
        }
        let d = rows
            .iter()
            .find(|r| r.process.as_ref().unwrap().pid == 5)
            .unwrap();
        assert!(d.alive && d.folded_processes == 0, "{d:?}");
        assert_eq!(d.traffic.unwrap().up_bytes, daemon_bytes, "{d:?}");
        assert_eq!(d.connections, 1);
        let all = t.attributed();
        let sum = want["alpha"].0 + want["beta"].0 + daemon_bytes;
        assert_eq!(all.up, sum, "totals stay exact");
    }
}
