//! One monitoring run: the capture threads, the resolver, the interface
//! watcher and the aggregation state they feed, started and stopped as a
//! unit by the engine; or, without capture, the capture-free run instead.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use netmon_proto::v1;
use netmon_wire::flows::LocalSet;
use tracing::{info, warn};

use crate::aggregate::Aggregator;
use crate::attribution::ebpf::SockAcct;
use crate::attribution::procmap::{Resolver, ResolverConfig, ResolverHandle};
use crate::capture::{self, Batch, CaptureHandle, CaptureSettings, Shared};
use crate::config::{Attribution, CaptureMode, Config};
use crate::engine::capture_free::CaptureFreeMonitor;
use crate::engine::snapshot::{KernelCounters, MonitorStatus, Snapshot};
use crate::hostnames::{Names, NamesSettings};
use crate::netif;
use crate::sync::lock;

/// One monitoring run, with packet capture or without it (basic mode).
pub enum Monitor {
    Capture(Box<CaptureMonitor>),
    CaptureFree(Box<CaptureFreeMonitor>),
}

impl Monitor {
    /// Starts the run the config asks for. In `auto` mode a capture that cannot start
    /// at all (an error, or every interface failing to open) falls back to basic mode,
    /// and `status` says why; `stop` + `start` tries capture again.
    pub fn start(cfg: &Config, wanted: Vec<String>) -> anyhow::Result<Monitor> {
        let reason = match cfg.capture.mode {
            CaptureMode::Basic => "mode = \"basic\" in the config".to_owned(),
            CaptureMode::Capture => {
                return CaptureMonitor::start(cfg, wanted).map(|m| Monitor::Capture(Box::new(m)))
            }
            CaptureMode::Auto => match CaptureMonitor::start(cfg, wanted.clone()) {
                Ok(m) => match m.failed_everywhere() {
                    None => return Ok(Monitor::Capture(Box::new(m))),
                    Some(why) => {
                        drop(m);
                        format!("capture failed on every interface ({why})")
                    }
                },
                // Asked-for eBPF accounting is not replaced by basic mode.
                Err(e) if cfg.capture.attribution == Attribution::Ebpf => return Err(e),
                Err(e) => format!("capture could not start: {e:#}"),
            },
        };
        warn!(reason = %reason, "basic mode: kernel TCP counters, no packet capture");
        CaptureFreeMonitor::start(cfg, wanted, reason).map(|m| Monitor::CaptureFree(Box::new(m)))
    }

    pub fn tick(&self) -> Snapshot {
        match self {
            Monitor::Capture(m) => m.tick(),
            Monitor::CaptureFree(m) => m.tick(),
        }
    }

    pub fn stop(&self) -> Snapshot {
        match self {
            Monitor::Capture(m) => m.stop(),
            Monitor::CaptureFree(m) => m.stop(),
        }
    }

    pub fn reset(&self) {
        match self {
            Monitor::Capture(m) => m.reset(),
            Monitor::CaptureFree(m) => m.reset(),
        }
    }

    pub fn status(&self) -> MonitorStatus {
        match self {
            Monitor::Capture(m) => m.status(),
            Monitor::CaptureFree(m) => m.status(),
        }
    }

    pub fn connections(&self) -> Vec<v1::Connection> {
        match self {
            Monitor::Capture(m) => m.connections(),
            Monitor::CaptureFree(m) => m.connections(),
        }
    }

    pub fn interface_names(&self) -> Vec<String> {
        match self {
            Monitor::Capture(m) => m.interface_names(),
            Monitor::CaptureFree(m) => m.interface_names(),
        }
    }

    /// The shared name table, when names are on (capture mode only).
    pub fn names(&self) -> Option<&Arc<Names>> {
        match self {
            Monitor::Capture(m) => m.names(),
            Monitor::CaptureFree(_) => None,
        }
    }
}

/// The last tick's figures that `status` shows.
#[derive(Clone, Default)]
struct TickFigures {
    bytes_captured: u64,
    bytes_attributed: u64,
    table: crate::aggregate::TableCounts,
    attribution_p50_us: u64,
    attribution_p99_us: u64,
    flows_untracked: u64,
    sockets_tracked: u64,
    evicted_half_open: u64,
}

/// Captures by interface name, plus interface ids that stay stable for a run.
struct Captures {
    running: HashMap<String, CaptureHandle>,
    ids: HashMap<String, u16>,
    names: HashMap<u16, String>,
    /// Last open error per interface, shown in status.
    errors: HashMap<String, String>,
    /// Interfaces whose capture ended while wanted (reaped, not stopped).
    ended: HashSet<String>,
    /// Captures started again after they ended, per interface.
    restarts: HashMap<String, u32>,
}

impl Captures {
    fn id_for(&mut self, name: &str) -> u16 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u16::try_from(self.ids.len()).unwrap_or(u16::MAX);
        self.ids.insert(name.to_owned(), id);
        self.names.insert(id, name.to_owned());
        id
    }
}

struct Inner {
    agg: Aggregator,
    batches: Receiver<Batch>,
    resolutions: crate::attribution::procmap::Answers,
    kernel: KernelCounters,
    last_rollup: crate::aggregate::Rollup,
    trim: crate::memory::TrimClock,
    /// eBPF socket accounting, when it owns attribution.
    sockacct: Option<SockAcct>,
    sockets_tracked: u64,
    /// When the last tick's counts were taken, and the real length of the
    /// tick being rolled: rates divide by it, not by the nominal tick.
    last_boundary: Option<Instant>,
    tick_ms: u64,
}

pub struct CaptureMonitor {
    cfg: Config,
    /// Explicit interface list; empty = every up, non-loopback interface.
    wanted: Vec<String>,
    settings: CaptureSettings,
    shared: Arc<Shared>,
    batch_tx: mpsc::SyncSender<Batch>,
    resolver: Mutex<Option<Resolver>>,
    handle: ResolverHandle,
    captures: Mutex<Captures>,
    inner: Mutex<Inner>,
    /// What `status` reports of the last tick, copied out at its end: the
    /// tick holds `inner` through every flow (long under a flood), and a
    /// status call must not wait for it.
    figures: Mutex<TickFigures>,
    ifaces_dirty: Arc<AtomicBool>,
    watcher: Mutex<Option<netif::Watcher>>,
    /// Host names and categories (None when `[names]` turns both sources off).
    names: Option<Arc<Names>>,
    /// "ebpf" or "socket-lookup", and why.
    attribution: (&'static str, String),
    /// With socket lookups: addresses of the host's other namespaces, local too.
    others: Mutex<OtherAddrs>,
}

/// Addresses of other network namespaces (containers), re-read now and then.
struct OtherAddrs {
    enabled: bool,
    exclude: std::collections::HashSet<u64>,
    addrs: Vec<std::net::IpAddr>,
    at: Option<Instant>,
}

/// How often other namespaces' addresses are re-read (socket-lookup mode).
const OTHER_NETNS_EVERY: Duration = Duration::from_secs(5);

impl CaptureMonitor {
    pub fn start(cfg: &Config, wanted: Vec<String>) -> anyhow::Result<CaptureMonitor> {
        let ifaces = netif::list().context("cannot list network interfaces")?;
        let shared = Arc::new(Shared::new(LocalSet::new(netif::local_addresses(&ifaces))));
        let resolver_cfg = ResolverConfig {
            dump_interval: Duration::from_millis(cfg.daemon.tick_ms.max(1)),
            ..ResolverConfig::default()
        };
        let (resolver, handle, resolutions) =
            Resolver::start(resolver_cfg).context("cannot start the socket resolver")?;
        let (sockacct, attribution) = start_sockacct(cfg)?;
        // One batch per interface per tick: a few ticks of slack, not more
        // (a batch under a flood is large; a late one merges into the next).
        let (batch_tx, batches) = mpsc::sync_channel(8);
        let settings = CaptureSettings {
            snaplen: i32::try_from(cfg.capture.snaplen).unwrap_or(192),
            buffer_bytes: i32::try_from(u64::from(cfg.capture.buffer_mib) << 20)
                .unwrap_or(i32::MAX),
            timeout_ms: 50,
            max_flows: cfg.capture.max_flows,
            idle_ms: i64::try_from(cfg.capture.flow_idle_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            lookups: sockacct.is_none(),
        };
        let mut agg = Aggregator::with_max_flows(cfg.capture.max_flows);
        agg.set_socket_mode(sockacct.is_some());
        agg.set_exited_retention(crate::aggregate::ExitedRetention {
            keep_ms: cfg.daemon.exited_keep_secs.saturating_mul(1000),
            keep_max: cfg.daemon.exited_keep_max,
        });
        let others = OtherAddrs {
            // Socket accounting sees every namespace's sockets itself.
            enabled: sockacct.is_none(),
            exclude: netif::others::named_inodes(&cfg.capture.exclude_netns),
            addrs: Vec::new(),
            at: None,
        };
        let dirty = Arc::new(AtomicBool::new(true));
        let d = dirty.clone();
        let watcher = match netif::Watcher::start(move || d.store(true, Ordering::Release)) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch interfaces; new interfaces are found by polling");
                None
            }
        };
        let m = CaptureMonitor {
            cfg: cfg.clone(),
            wanted,
            settings,
            shared,
            batch_tx,
            resolver: Mutex::new(Some(resolver)),
            handle,
            captures: Mutex::new(Captures {
                running: HashMap::new(),
                ids: HashMap::new(),
                names: HashMap::new(),
                errors: HashMap::new(),
                ended: HashSet::new(),
                restarts: HashMap::new(),
            }),
            figures: Mutex::new(TickFigures::default()),
            inner: Mutex::new(Inner {
                agg,
                batches,
                resolutions,
                kernel: KernelCounters::default(),
                last_rollup: Default::default(),
                trim: crate::memory::TrimClock::default(),
                sockacct,
                sockets_tracked: 0,
                last_boundary: None,
                tick_ms: cfg.daemon.tick_ms,
            }),
            ifaces_dirty: dirty,
            watcher: Mutex::new(watcher),
            names: names_for(cfg),
            attribution,
            others: Mutex::new(others),
        };
        m.sync_interfaces(&ifaces);
        let caps = lock(&m.captures);
        if !m.wanted.is_empty() && caps.running.is_empty() {
            let mut errs: Vec<String> = caps
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            errs.extend(
                m.wanted
                    .iter()
                    .filter(|w| !caps.errors.contains_key(*w))
                    .map(|w| format!("{w}: no such interface")),
            );
            errs.sort();
            drop(caps);
            m.shutdown_threads();
            anyhow::bail!(
                "no requested interface could be captured ({})",
                errs.join("; ")
            );
        }
        drop(caps);
        Ok(m)
    }

    /// Starts captures for interfaces that should be captured and are not,
    /// forgets those that are gone.
    fn sync_interfaces(&self, ifaces: &[netif::Interface]) {
        self.refresh_local(ifaces, true);
        let mut caps = lock(&self.captures);
        let wanted: Vec<&netif::Interface> = ifaces
            .iter()
            .filter(|i| {
                if self.wanted.is_empty() {
                    i.up && (!i.loopback || self.cfg.capture.include_loopback)
                } else {
                    self.wanted.iter().any(|w| w == &i.name)
                }
            })
            .collect();
        // Captures whose thread ended (interface gone or broken) are reaped.
        let ended: Vec<String> = caps
            .running
            .iter()
            .filter(|(_, h)| !h.is_running())
            .map(|(n, _)| n.clone())
            .collect();
        for name in ended {
            if let Some(h) = caps.running.remove(&name) {
                let err = h.stats.error.lock().map(|e| e.clone()).unwrap_or_default();
                info!(iface = %name, error = %err, "capture ended");
                // Still there (down, or its handle broke): a capture started
                // on it again is a restart; a deleted interface is not.
                if ifaces.iter().any(|i| i.name == name) {
                    caps.ended.insert(name.clone());
                }
                caps.errors.insert(
                    name,
                    if err.is_empty() {
                        "capture ended".into()
                    } else {
                        err
                    },
                );
                h.join();
            }
        }
        for i in wanted {
            if caps.running.contains_key(&i.name) {
                continue;
            }
            let id = caps.id_for(&i.name);
            match capture::start(
                &i.name,
                id,
                &self.settings,
                self.shared.clone(),
                self.batch_tx.clone(),
                self.handle.clone(),
            ) {
                Ok(mut h) => {
                    info!(iface = %i.name, "capturing");
                    self.start_name_capture(&mut h);
                    caps.errors.remove(&i.name);
                    if caps.ended.remove(&i.name) {
                        *caps.restarts.entry(i.name.clone()).or_default() += 1;
                    }
                    caps.running.insert(i.name.clone(), h);
                }
                Err(e) => {
                    let msg = format!("{:#}", anyhow::Error::from(e));
                    if caps.errors.get(&i.name) != Some(&msg) {
                        warn!(iface = %i.name, error = %msg, "cannot capture");
                    }
                    caps.errors.insert(i.name.clone(), msg);
                }
            }
        }
    }

    /// Local addresses: this namespace's, plus (with socket lookups) those of
    /// the host's other namespaces, re-read every few seconds or when `force`d.
    fn refresh_local(&self, ifaces: &[netif::Interface], force: bool) {
        let mut o = lock(&self.others);
        let due = o.at.is_none_or(|t| t.elapsed() >= OTHER_NETNS_EVERY);
        if !(force || o.enabled && due) {
            return;
        }
        if o.enabled && (due || force) {
            let fresh = netif::others::other_namespace_addresses(&o.exclude);
            o.at = Some(Instant::now());
            if fresh == o.addrs && !force {
                return;
            }
            o.addrs = fresh;
        }
        let mut local = netif::local_addresses(ifaces);
        for a in &o.addrs {
            if !local.contains(a) {
                local.push(*a);
            }
        }
        drop(o);
        self.shared.set_local(LocalSet::new(local));
    }

    /// The name capture is optional: without it hosts have no names.
    fn start_name_capture(&self, h: &mut CaptureHandle) {
        let Some(names) = self.names.as_ref().filter(|n| n.passive()) else {
            return;
        };
        let snaplen = i32::try_from(self.cfg.names.snaplen).unwrap_or(1500);
        if let Err(e) = h.start_names(names.clone(), snaplen) {
            let error = format!("{:#}", anyhow::Error::from(e));
            warn!(iface = %h.name, %error, "name capture unavailable; hosts stay unnamed");
        }
    }

    /// Some(errors) when interfaces were tried and none of them could be captured.
    fn failed_everywhere(&self) -> Option<String> {
        let caps = lock(&self.captures);
        if !caps.running.is_empty() || caps.errors.is_empty() {
            return None;
        }
        let mut errs: Vec<String> = caps
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        errs.sort();
        Some(errs.join("; "))
    }

    /// The shared name table, when names are on.
    pub fn names(&self) -> Option<&Arc<Names>> {
        self.names.as_ref()
    }

    pub fn interface_names(&self) -> Vec<String> {
        let caps = lock(&self.captures);
        let mut v: Vec<String> = caps.running.keys().cloned().collect();
        v.sort();
        if v.is_empty() && !self.wanted.is_empty() {
            return self.wanted.clone();
        }
        v
    }

    fn shutdown_threads(&self) {
        if let Some(w) = lock(&self.watcher).take() {
            w.stop();
        }
        let handles: Vec<CaptureHandle> = lock(&self.captures)
            .running
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in &handles {
            h.signal_stop();
        }
        for h in handles {
            h.join();
        }
        if let Some(r) = lock(&self.resolver).take() {
            r.stop();
        }
    }

    /// Stops every thread and returns the final figures.
    pub fn stop(&self) -> Snapshot {
        self.shutdown_threads();
        // The capture threads handed over their last bytes when they ended.
        self.collect(Duration::ZERO);
        self.tick_inner(false)
    }

    pub fn reset(&self) {
        lock(&self.inner).agg.reset();
    }

    /// Pulls batches until every running capture has reported the current
    /// epoch or `wait` has passed.
    fn collect(&self, wait: Duration) {
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let mut expected: Vec<u16> = lock(&self.captures)
            .running
            .values()
            .filter(|h| h.is_running())
            .map(|h| h.id)
            .collect();
        let deadline = Instant::now() + wait;
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        loop {
            let got = match inner.batches.try_recv() {
                Ok(b) => Some(b),
                Err(_) if expected.is_empty() || Instant::now() >= deadline => None,
                Err(_) => match inner
                    .batches
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(b) => Some(b),
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some(b) = got else { break };
            self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            if b.epoch >= epoch {
                expected.retain(|id| *id != b.iface);
            }
            inner.agg.apply_deltas(b.iface, &b.deltas, &b.size_hist);
        }
        // The tick's counts end here: captures handed over at the epoch
        // bump, eBPF counters are read just below.
        inner.tick_ms = real_tick_ms(self.cfg.daemon.tick_ms, &mut inner.last_boundary);
        let now = crate::clock::now_ms();
        while let Ok(r) = inner.resolutions.try_recv() {
            match inner.sockacct.as_mut() {
                Some(sa) => {
                    sa.apply_resolution(&r);
                }
                None => inner.agg.apply_resolution(r, now),
            }
        }
        if let Some(sa) = inner.sockacct.as_mut() {
            let handle = &self.handle;
            let poll = sa.poll(|q| {
                handle.submit(q, crate::attribution::procmap::Priority::High);
            });
            inner.sockets_tracked = poll.tracked as u64;
            inner.agg.apply_sockets(&poll, now);
        }
        for (q, prio) in inner.agg.maintenance(now) {
            self.handle.submit(q, prio);
        }
    }

    /// One tick: drain the captures, fold in owners, roll up.
    pub fn tick(&self) -> Snapshot {
        tracing::debug!(resolver = ?self.handle.stats(), "tick");
        self.shared.epoch.fetch_add(1, Ordering::AcqRel);
        // The bulk read timeout bounds how long a thread takes to notice.
        self.collect(Duration::from_millis(
            u64::try_from(self.settings.timeout_ms).unwrap_or(50) * 3,
        ));
        self.tick_inner(true)
    }

    fn tick_inner(&self, maintain: bool) -> Snapshot {
        let list = netif::list();
        if maintain && self.ifaces_dirty.swap(false, Ordering::AcqRel) {
            if let Ok(l) = &list {
                self.sync_interfaces(l);
            }
        } else if maintain {
            // Reap captures of interfaces that went away without an event.
            let any_ended = lock(&self.captures)
                .running
                .values()
                .any(|h| !h.is_running());
            if any_ended {
                if let Ok(l) = &list {
                    self.sync_interfaces(l);
                }
            }
        }
        if maintain {
            if let Ok(l) = &list {
                self.refresh_local(l, false);
            }
        }
        let mut inner = lock(&self.inner);
        if let Some(n) = &self.names {
            n.with_lookup(|look| inner.agg.apply_names(look));
        }
        let tick_ms = inner.tick_ms;
        let mut rollup = inner
            .agg
            .roll(tick_ms, crate::attribution::procmap::is_alive);
        if inner.trim.due(rollup.folded.len()) {
            inner.agg.shrink_idle();
            if let Some(sa) = inner.sockacct.as_mut() {
                sa.shrink_idle();
            }
            crate::memory::give_back();
        }
        let caps = lock(&self.captures);
        let rows = match &list {
            Ok(list) => inner.kernel.rows(list, |name| {
                let id = caps.ids.get(name).copied();
                let handle = caps.running.get(name);
                (
                    id.and_then(|id| rollup.per_iface.get(&id).copied()),
                    handle.map(|h| capture_stats(&h.stats)),
                )
            }),
            Err(_) => Vec::new(),
        };
        let dropped: u64 = caps
            .running
            .values()
            .map(|h| h.stats.dropped.load(Ordering::Relaxed))
            .sum();
        let handoff: u64 = caps
            .running
            .values()
            .map(|h| h.stats.handoff_dropped.load(Ordering::Relaxed))
            .sum();
        drop(caps);
        let lookups = self.handle.stats();
        let snap = Snapshot {
            processes: rollup.processes.clone(),
            totals: rollup.totals,
            unattributed: rollup.unattributed.clone(),
            interfaces: rows,
            hosts: rollup.hosts.clone(),
            packet_stats: Some(rollup.packet_stats.clone()),
            packets_dropped: dropped,
            flows_active: rollup.flows_tracked,
            handoff_dropped: handoff,
            lookup_queue: lookups.low_queued,
            lookup_dropped: lookups.low_dropped,
            lookup_mode: lookups.mode.as_str(),
            folded: std::mem::take(&mut rollup.folded),
            proc_hosts: std::mem::take(&mut rollup.proc_hosts),
        };
        let (p50, p99) = inner.agg.latency_percentiles();
        *lock(&self.figures) = TickFigures {
            bytes_captured: rollup.bytes_captured,
            bytes_attributed: rollup.bytes_attributed,
            table: rollup.table,
            attribution_p50_us: p50,
            attribution_p99_us: p99,
            flows_untracked: inner.agg.untracked(),
            sockets_tracked: inner.sockets_tracked,
            evicted_half_open: inner.agg.evicted_half_open(),
        };
        inner.last_rollup = rollup;
        snap
    }

    pub fn connections(&self) -> Vec<v1::Connection> {
        let names = lock(&self.captures).names.clone();
        let inner = lock(&self.inner);
        inner.agg.connections(self.cfg.daemon.tick_ms, |id| {
            names.get(&id).cloned().unwrap_or_default()
        })
    }

    pub fn status(&self) -> MonitorStatus {
        let caps = lock(&self.captures);
        let mut st = MonitorStatus {
            mode: "capture",
            ..MonitorStatus::default()
        };
        let mut names: Vec<&String> = caps.running.keys().chain(caps.errors.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let h = caps.running.get(name);
            let stats = h.map(|h| capture_stats(&h.stats));
            if let Some(s) = &stats {
                st.packets_seen += s.packets_received;
                st.packets_dropped += s.packets_dropped;
                st.packets_malformed += s.packets_malformed;
            }
            if let Some(h) = h {
                st.flows_active += h.stats.flows.load(Ordering::Relaxed);
                st.flows_evicted += h.stats.evicted.load(Ordering::Relaxed);
                st.flows_evicted_half_open += h.stats.evicted_half_open.load(Ordering::Relaxed);
                st.handoff_dropped += h.stats.handoff_dropped.load(Ordering::Relaxed);
            }
            st.interfaces.push(v1::InterfaceStatus {
                name: name.clone(),
                capturing: h.is_some_and(CaptureHandle::is_running),
                error: caps.errors.get(name).cloned().unwrap_or_default(),
                capture: stats,
                link_type: h
                    .and_then(|h| h.stats.link_type.lock().ok().map(|l| l.clone()))
                    .unwrap_or_default(),
                restarts: caps.restarts.get(name).copied().unwrap_or(0),
            });
        }
        drop(caps);
        let f = lock(&self.figures).clone();
        st.bytes_captured = f.bytes_captured;
        st.bytes_attributed = f.bytes_attributed;
        st.table = f.table;
        st.attribution_p50_us = f.attribution_p50_us;
        st.attribution_p99_us = f.attribution_p99_us;
        st.resolver_dropped = self.handle.dropped();
        st.flows_untracked = f.flows_untracked;
        st.attribution = self.attribution.0;
        st.attribution_reason = self.attribution.1.clone();
        st.sockets_tracked = f.sockets_tracked;
        let rs = self.handle.stats();
        st.lookup_queue = rs.low_queued;
        st.lookup_dropped = rs.low_dropped;
        st.lookup_mode = rs.mode.as_str();
        st.flows_evicted_half_open += f.evicted_half_open;
        st
    }
}

impl Drop for CaptureMonitor {
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}

/// Socket accounting as the config asks: on where the kernel allows it in
/// `auto`, required in `ebpf`, off in `socket-lookup`; with the reason for status.
fn start_sockacct(cfg: &Config) -> anyhow::Result<(Option<SockAcct>, (&'static str, String))> {
    let lookup = "socket-lookup";
    if cfg.capture.attribution == Attribution::SocketLookup {
        return Ok((
            None,
            (
                lookup,
                "attribution = \"socket-lookup\" in the config".into(),
            ),
        ));
    }
    let excluded = match crate::attribution::ebpf::netns_cookies(&cfg.capture.exclude_netns) {
        Ok(c) => c,
        Err(e) if cfg.capture.attribution == Attribution::Ebpf => {
            anyhow::bail!("capture.exclude_netns: {e}")
        }
        Err(e) => {
            warn!(error = %e, "capture.exclude_netns: namespace skipped");
            Default::default()
        }
    };
    match SockAcct::start(cfg.capture.include_loopback, excluded) {
        Ok(sa) => Ok((
            Some(sa),
            (
                "ebpf",
                "eBPF socket accounting on the cgroup v2 root".into(),
            ),
        )),
        Err(e) if cfg.capture.attribution == Attribution::Ebpf => {
            Err(anyhow::Error::from(e).context("attribution = \"ebpf\" cannot start"))
        }
        Err(e) => {
            let why = format!(
                "eBPF unavailable: {}",
                crate::attribution::ebpf::describe(&e)
            );
            warn!(reason = %why, "attribution falls back to socket lookups");
            Ok((None, (lookup, why)))
        }
    }
}

/// The length of the tick ending now, and `last` moved to now: a tick that
/// runs late (a busy machine, a debug build) holds more than the nominal
/// tick's traffic, and dividing that by the nominal length would overstate
/// every rate. Kept within half to four times the nominal tick; the first
/// tick of a run is nominal.
fn real_tick_ms(nominal: u64, last: &mut Option<Instant>) -> u64 {
    let now = Instant::now();
    let ms = tick_length_ms(nominal, *last, now);
    *last = Some(now);
    ms
}

fn tick_length_ms(nominal: u64, last: Option<Instant>, now: Instant) -> u64 {
    let real = last.map_or(nominal, |t| {
        u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
    });
    real.clamp(nominal / 2, nominal.saturating_mul(4)).max(1)
}

fn names_for(cfg: &Config) -> Option<Arc<Names>> {
    info!(
        passive = cfg.names.enabled,
        reverse_dns = cfg.names.reverse_dns,
        category_rules = cfg.categories.len(),
        "host names"
    );
    (cfg.names.enabled || cfg.names.reverse_dns).then(|| {
        Arc::new(Names::new(NamesSettings {
            passive: cfg.names.enabled,
            reverse_dns: cfg.names.reverse_dns,
            max_entries: cfg.names.max_entries,
            categories: cfg.categories.clone(),
        }))
    })
}

fn capture_stats(s: &capture::IfaceStats) -> v1::CaptureStats {
    v1::CaptureStats {
        packets_received: s.received.load(Ordering::Relaxed),
        packets_dropped: s.dropped.load(Ordering::Relaxed),
        packets_if_dropped: s.if_dropped.load(Ordering::Relaxed),
        packets_counted: s.counted_packets.load(Ordering::Relaxed),
        bytes_counted: s.counted_bytes.load(Ordering::Relaxed),
        packets_malformed: s.malformed.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tick_tests {
    use super::tick_length_ms;
    use std::time::{Duration, Instant};

    #[test]
    fn a_late_tick_is_measured_at_its_real_length() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(tick_length_ms(1000, None, at(5000)), 1000, "first tick");
        assert_eq!(tick_length_ms(1000, Some(t0), at(1000)), 1000);
        assert_eq!(tick_length_ms(1000, Some(t0), at(1180)), 1180, "late");
        assert_eq!(tick_length_ms(1000, Some(t0), at(100)), 500, "burst");
        assert_eq!(tick_length_ms(1000, Some(t0), at(60_000)), 4000, "stall");
    }
}
