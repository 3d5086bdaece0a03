//! The daemon's state machine: monitoring on/off, sessions, thresholds, the
//! per-tick snapshot and its broadcast to subscribers. The service calls in;
//! the capture hot path never takes these locks.

pub mod capture_free;
pub mod run;
pub mod snapshot;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netmon_proto::text::terminal_safe;
use netmon_proto::v1;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::alerts::hook::HookRunner;
use crate::alerts::state::{JsonFile, ThresholdStore};
use crate::alerts::{self, Evaluator};
use crate::clock::now_ms;
use crate::config::Config;
use crate::engine::run::Monitor;
use crate::engine::snapshot::Snapshot;
use crate::store::{SessionRecord, Store, TickRecord};

/// Frames buffered per subscriber before it is considered behind and skipped.
const SUBSCRIBER_BUFFER: usize = 8;

/// Alerts kept in memory for `ListAlerts` (open ones and the latest closed).
pub const RECENT_ALERTS: usize = 1000;

/// Preset cycle offered to interactive clients (bytes/s).
pub const THRESHOLD_PRESETS: [u64; 5] = [512 * 1024, 1 << 20, 2 << 20, 5 << 20, 10 << 20];

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("cannot start monitoring: {0}")]
    Start(String),
    #[error("history is unavailable: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("configuration not reloaded, the old one is kept: {0}")]
    Reload(String),
}

/// Result of a control call.
#[derive(Debug, Clone)]
pub struct ControlOutcome {
    pub changed: bool,
    pub monitoring: bool,
    pub session: Option<SessionRecord>,
    pub message: String,
}

struct State {
    monitoring: bool,
    session: Option<SessionRecord>,
    monitor: Option<Arc<Monitor>>,
    /// Threshold rules and the alert evaluator.
    alerts: Evaluator,
    /// Open and recently closed alerts, oldest first, at most `RECENT_ALERTS`.
    recent: VecDeque<v1::Alert>,
    /// Bumped whenever the persisted rule state changes.
    rules_gen: u64,
    last_frame: Arc<v1::Frame>,
    seq: u64,
    /// Bumped whenever live totals restart from zero (start, reset), so the
    /// store never subtracts totals of another run.
    epoch: u64,
    /// Final figures of the last run, shown (without rates) while stopped.
    stopped: Option<Snapshot>,
}

pub struct Engine {
    cfg: Config,
    started: Instant,
    started_ms: i64,
    store: Store,
    state: Mutex<State>,
    /// Held by start and stop only: they open and close captures and BPF
    /// programs (slow) without holding `state`, which every tick and reader
    /// needs.
    control: Mutex<()>,
    frames: broadcast::Sender<Arc<v1::Frame>>,
    hook: HookRunner,
    /// Where API rules persist, and the generation last written there.
    rules_store: Mutex<(Box<dyn ThresholdStore>, u64)>,
    pub(crate) resyncs: AtomicU64,
    subscribers: AtomicU64,
    /// Where to read the config again on reload, and the last config applied.
    reload: Mutex<(Option<crate::reload::Source>, Config)>,
    log_level_hook: Mutex<Option<crate::reload::LogLevelHook>>,
}

impl Engine {
    pub fn new(cfg: Config, store: Store) -> Arc<Engine> {
        let file = JsonFile::beside_db(&cfg.store.path);
        let loaded = file.load_or_quarantine(now_ms());
        Self::with_rules_store(cfg, store, Box::new(file), loaded)
    }

    /// `new` with another home for the persisted rules (`loaded` is what it held).
    pub fn with_rules_store(
        cfg: Config,
        store: Store,
        rules_store: Box<dyn ThresholdStore>,
        loaded: Option<alerts::Persisted>,
    ) -> Arc<Engine> {
        let (frames, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let mut evaluator = Evaluator::new(cfg.alerts.settings, &cfg.alerts.rules, now_ms());
        evaluator.set_zone(crate::clock::zone().clone());
        if let Some(p) = loaded {
            info!(rules = p.thresholds.len(), "thresholds restored");
            for t in evaluator.restore(p, crate::attribution::procmap::is_alive) {
                info!(
                    id = t.id,
                    pid = t.pid,
                    "pid threshold dropped: its process is gone"
                );
            }
        }
        let hook = HookRunner::new(
            cfg.alerts.hook.clone(),
            cfg.alerts.hook_timeout,
            cfg.alerts.hook_user,
        );
        Arc::new(Engine {
            started: Instant::now(),
            started_ms: now_ms(),
            store,
            state: Mutex::new(State {
                monitoring: false,
                session: None,
                monitor: None,
                alerts: evaluator,
                recent: VecDeque::new(),
                rules_gen: 0,
                last_frame: Arc::new(v1::Frame {
                    complete: true,
                    ..Default::default()
                }),
                seq: 0,
                epoch: 0,
                stopped: None,
            }),
            control: Mutex::new(()),
            frames,
            hook,
            rules_store: Mutex::new((rules_store, 0)),
            resyncs: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            reload: Mutex::new((None, cfg.clone())),
            log_level_hook: Mutex::new(None),
            cfg,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Starts monitoring (idempotent). `interfaces` empty = the config's choice.
    pub fn start(&self, interfaces: Vec<String>) -> Result<ControlOutcome, EngineError> {
        check_interface_names(&interfaces).map_err(EngineError::InvalidArgument)?;
        let _control = crate::sync::lock(&self.control);
        {
            let st = self.lock();
            if st.monitoring {
                return Ok(ControlOutcome {
                    changed: false,
                    monitoring: true,
                    session: st.session.clone(),
                    message: "already monitoring".into(),
                });
            }
        }
        let wanted = if interfaces.is_empty() {
            self.cfg.capture.interfaces.clone()
        } else {
            interfaces
        };
        // Opening captures and loading BPF takes a while: ticks and readers
        // go on meanwhile (`control` keeps another start or stop out).
        let monitor =
            Monitor::start(&self.cfg, wanted).map_err(|e| EngineError::Start(format!("{e:#}")))?;
        let mut st = self.lock();
        let now = now_ms();
        let last_id = st.session.as_ref().map_or(0, |s| s.id);
        let session = SessionRecord {
            id: (now.max(0) as u64).max(last_id + 1),
            started_ms: now,
            ended_ms: 0,
            interfaces: monitor.interface_names(),
            up_bytes: 0,
            down_bytes: 0,
        };
        self.store.session(session.clone());
        info!(session = session.id, interfaces = ?session.interfaces, "monitoring started");
        st.monitor = Some(Arc::new(monitor));
        st.monitoring = true;
        st.epoch += 1;
        st.session = Some(session.clone());
        Ok(ControlOutcome {
            changed: true,
            monitoring: true,
            session: Some(session),
            message: "monitoring started".into(),
        })
    }

    /// Stops monitoring (idempotent); the session is closed and stored.
    pub fn stop(&self) -> ControlOutcome {
        let _control = crate::sync::lock(&self.control);
        let monitor = {
            let mut st = self.lock();
            if !st.monitoring {
                return ControlOutcome {
                    changed: false,
                    monitoring: false,
                    session: st.session.clone(),
                    message: "not monitoring".into(),
                };
            }
            st.monitoring = false;
            st.monitor.take()
        };
        // Joining the capture threads and detaching BPF outside `state`.
        let snapshot = monitor.map(|m| m.stop());
        let mut st = self.lock();
        if let Some(snap) = &snapshot {
            // The bytes since the last tick go to history too.
            self.store
                .record_tick(tick_record(snap, now_ms(), st.epoch, false));
        }
        st.stopped = snapshot.clone().map(without_rates);
        if let Some(s) = st.session.as_mut() {
            if let Some(snap) = &snapshot {
                s.up_bytes = snap.totals.up_bytes;
                s.down_bytes = snap.totals.down_bytes;
            }
            s.ended_ms = now_ms();
            self.store.session(s.clone());
            info!(
                session = s.id,
                up = s.up_bytes,
                down = s.down_bytes,
                "monitoring stopped"
            );
        }
        ControlOutcome {
            changed: true,
            monitoring: false,
            session: st.session.clone(),
            message: "monitoring stopped".into(),
        }
    }

    /// Zeroes live totals; history is untouched.
    pub fn reset(&self) -> ControlOutcome {
        let mut st = self.lock();
        if let Some(m) = &st.monitor {
            m.reset();
        }
        st.epoch += 1;
        st.stopped = None;
        ControlOutcome {
            changed: true,
            monitoring: st.monitoring,
            session: st.session.clone(),
            message: "live totals reset".into(),
        }
    }

    pub fn is_monitoring(&self) -> bool {
        self.lock().monitoring
    }

    /// One aggregation tick: pull the monitor's snapshot, publish a frame.
    pub fn tick(&self) {
        // The epoch of the totals about to be read: a reset racing with this
        // tick must not make the store take pre-reset totals as new bytes.
        let (monitor, epoch) = {
            let st = self.lock();
            (st.monitor.clone(), st.epoch)
        };
        // Draining the captures takes up to a few read timeouts: not under the lock.
        let snapshot = monitor.as_ref().map(|m| m.tick());
        let mut st = self.lock();
        let same = match (&st.monitor, &monitor) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let snapshot = if same { snapshot } else { None };
        if let Some(snap) = snapshot.as_ref().filter(|_| st.monitoring) {
            self.store
                .record_tick(tick_record(snap, now_ms(), epoch, true));
        }
        let snapshot = snapshot.or_else(|| st.stopped.clone());
        st.seq += 1;
        if let (Some(s), Some(snap)) = (st.session.as_mut(), &snapshot) {
            s.up_bytes = snap.totals.up_bytes;
            s.down_bytes = snap.totals.down_bytes;
        }
        let mut snap = snapshot.unwrap_or_default();
        let now = now_ms();
        let outcome = st.alerts.evaluate(&mut snap.processes, &snap.totals, now);
        for a in &outcome.alerts {
            remember_alert(&mut st.recent, a);
        }
        if outcome.persist {
            st.rules_gen += 1;
        }
        let persist = outcome
            .persist
            .then(|| (st.rules_gen, st.alerts.persisted()));
        let mut frame = self.build_frame(&st, Some(snap));
        frame.time_ms = now;
        frame.alerts = outcome.alerts;
        let frame = Arc::new(frame);
        // The latest frame is what a new subscriber starts from: alerts of
        // this tick are news only to those already watching.
        st.last_frame = if frame.alerts.is_empty() {
            frame.clone()
        } else {
            Arc::new(v1::Frame {
                alerts: Vec::new(),
                ..(*frame).clone()
            })
        };
        // Every tick: the store keeps only the newest state and writes it at
        // the next flush, so a crash loses at most one flush of the
        // session's totals, as it does of everything else.
        if let Some(s) = st.session.as_ref().filter(|_| st.monitoring) {
            self.store.session(s.clone());
        }
        drop(st);
        for a in &frame.alerts {
            log_alert(a);
            self.store.record_alert(a.clone());
            self.hook.fire(a);
        }
        if let Some((generation, p)) = persist {
            self.save_rules(generation, &p);
        }
        // No receivers is fine: nobody is watching.
        let _ = self.frames.send(frame);
    }

    /// Writes the persisted rule state unless a newer one was written already.
    fn save_rules(&self, generation: u64, p: &alerts::Persisted) {
        let mut guard = crate::sync::lock(&self.rules_store);
        if guard.1 >= generation {
            return;
        }
        match guard.0.save(p) {
            Ok(()) => guard.1 = generation,
            Err(e) => warn!(
                error = %e,
                source = ?std::error::Error::source(&e).map(ToString::to_string),
                "cannot save thresholds; they hold until the daemon stops"
            ),
        }
    }

    /// Open and recent alerts that started or ended at or after `since_ms`,
    /// newest first; `limit` 0 = all kept.
    pub fn alerts(&self, since_ms: i64, limit: u32) -> Vec<v1::Alert> {
        let st = self.lock();
        // Open alerts carry their peak so far from the evaluator.
        let open: std::collections::HashMap<u64, v1::Alert> = st
            .alerts
            .open_alerts()
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let mut out: Vec<v1::Alert> = st
            .recent
            .iter()
            .rev()
            .map(|a| open.get(&a.id).unwrap_or(a))
            .filter(|a| {
                a.started_ms >= since_ms
                    || a.ended_ms >= since_ms
                    || a.state == v1::AlertState::Open as i32
            })
            .cloned()
            .collect();
        if limit > 0 {
            out.truncate(limit as usize);
        }
        out
    }

    fn build_frame(&self, st: &State, snapshot: Option<Snapshot>) -> v1::Frame {
        let snap = snapshot.unwrap_or_default();
        v1::Frame {
            seq: st.seq,
            time_ms: now_ms(),
            complete: true,
            monitoring: st.monitoring,
            session: st.session.as_ref().map(session_to_proto),
            processes: snap.processes,
            totals: Some(snap.totals),
            unattributed: Some(snap.unattributed),
            interfaces: snap.interfaces,
            alerts: Vec::new(),
            hosts: snap.hosts,
            packet_stats: snap.packet_stats,
            tick_ms: self.cfg.daemon.tick_ms,
            packets_dropped: snap.packets_dropped,
            flows_active: snap.flows_active,
            handoff_dropped: snap.handoff_dropped,
            lookup_queue: snap.lookup_queue,
            lookup_dropped: snap.lookup_dropped,
            lookup_mode: snap.lookup_mode.to_owned(),
        }
    }

    /// The latest frame (complete) and a receiver for the next ones.
    pub fn subscribe(&self) -> (Arc<v1::Frame>, broadcast::Receiver<Arc<v1::Frame>>) {
        let st = self.lock();
        (st.last_frame.clone(), self.frames.subscribe())
    }

    pub fn subscriber_guard(self: &Arc<Self>) -> SubscriberGuard {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard(self.clone())
    }

    pub fn latest_frame(&self) -> Arc<v1::Frame> {
        self.lock().last_frame.clone()
    }

    pub fn connections(&self) -> Vec<v1::Connection> {
        // Building every connection's row takes a while on a busy host: not
        // under the state lock that ticks and other readers need.
        let monitor = self.lock().monitor.clone();
        monitor.map(|m| m.connections()).unwrap_or_default()
    }

    pub fn status(&self) -> v1::Status {
        let monitor = self.lock().monitor.clone();
        let mon = monitor.map(|m| m.status()).unwrap_or_default();
        let st = self.lock();
        let h = self.store.health();
        let coverage = if mon.bytes_captured == 0 {
            1.0
        } else {
            mon.bytes_attributed as f64 / mon.bytes_captured as f64
        };
        v1::Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            started_ms: self.started_ms,
            monitoring: st.monitoring,
            mode: if st.monitoring {
                mon.mode.into()
            } else {
                String::new()
            },
            mode_reason: mon.mode_reason.clone(),
            interfaces: mon.interfaces,
            session: st.session.as_ref().map(session_to_proto),
            packets_seen: mon.packets_seen,
            packets_dropped: mon.packets_dropped,
            packets_malformed: mon.packets_malformed,
            flows_active: mon.flows_active,
            flows_evicted: mon.flows_evicted,
            bytes_captured: mon.bytes_captured,
            bytes_attributed: mon.bytes_attributed,
            coverage,
            storage: Some(v1::StorageHealth {
                path: h.path.display().to_string(),
                state: h.state.to_owned(),
                error: h.error,
                size_bytes: h.size_bytes,
                pending_batches: h.pending,
                last_flush_ms: h.last_flush_ms,
                restarts: h.restarts,
                last_failure: h.last_failure,
            }),
            daemon_pid: std::process::id(),
            socket_path: self.cfg.daemon.socket.display().to_string(),
            config_path: self
                .cfg
                .config_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            subscriber_resyncs: self.resyncs.load(Ordering::Relaxed),
            subscribers: self.subscribers.load(Ordering::Relaxed) as u32,
            handoff_dropped: mon.handoff_dropped,
            resolver_dropped: mon.resolver_dropped,
            flows_untracked: mon.flows_untracked,
            lookup_queue: mon.lookup_queue,
            lookup_dropped: mon.lookup_dropped,
            lookup_mode: mon.lookup_mode.to_owned(),
            flows_evicted_half_open: mon.flows_evicted_half_open,
            attribution_p50_us: mon.attribution_p50_us,
            attribution_p99_us: mon.attribution_p99_us,
            tick_ms: self.cfg.daemon.tick_ms,
            include_loopback: self.cfg.capture.include_loopback,
            attribution: if st.monitoring {
                mon.attribution.into()
            } else {
                String::new()
            },
            attribution_reason: mon.attribution_reason,
            sockets_tracked: mon.sockets_tracked,
            live_processes: mon.table.live_processes,
            exited_processes: mon.table.exited_processes,
            folded_programs: mon.table.folded_programs,
            folded_processes: mon.table.folded_processes,
        }
    }

    pub async fn sessions(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<v1::Session>, EngineError> {
        let mut rows = self.store.list_sessions(since_ms, limit).await?;
        // The live session carries fresher totals than the store.
        if let Some(cur) = self.lock().session.clone() {
            match rows.iter_mut().find(|r| r.id == cur.id) {
                Some(r) => *r = cur,
                None => rows.insert(0, cur),
            }
        }
        let active = self.lock().monitoring;
        let cur_id = self.lock().session.as_ref().map(|s| s.id);
        Ok(rows
            .iter()
            .map(|r| {
                let mut s = session_to_proto(r);
                s.active = active && Some(r.id) == cur_id;
                s
            })
            .collect())
    }

    // ------------------------------------------------------------ thresholds

    /// Config rules (source "config") then API rules (source "api").
    pub fn thresholds(&self) -> Vec<v1::Threshold> {
        self.lock().alerts.thresholds()
    }

    /// Adds or replaces an API rule; it is saved before this returns.
    pub fn set_threshold(
        &self,
        req: v1::SetThresholdRequest,
    ) -> Result<v1::Threshold, EngineError> {
        // A pid rule is for the process running now, not for whatever
        // later process gets the pid.
        let start = match req.pid {
            0 => 0,
            pid => crate::attribution::procmap::start_time_of(pid).ok_or_else(|| {
                EngineError::InvalidArgument(format!("no process with pid {pid}"))
            })?,
        };
        let mut st = self.lock();
        let t = st
            .alerts
            .set(req, start, now_ms())
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        st.rules_gen += 1;
        let (generation, p) = (st.rules_gen, st.alerts.persisted());
        drop(st);
        self.save_rules(generation, &p);
        // The name comes from a client: a newline in it must not forge a log line.
        info!(id = t.id, kind = t.kind, value = t.value, name = %terminal_safe(&t.process_name), pid = t.pid, "threshold set");
        Ok(t)
    }

    /// Says where the config came from, so that `reload` can read it again,
    /// and how to change the log filter (the daemon owns the logger).
    pub fn set_reload_source(
        &self,
        source: crate::reload::Source,
        log_level: Option<crate::reload::LogLevelHook>,
    ) {
        self.reload_lock().0 = Some(source);
        *crate::sync::lock(&self.log_level_hook) = log_level;
    }

    /// Reads the config file again and applies what can change live (alert
    /// rules and hysteresis). A config that does not load is refused and the
    /// old one kept; both outcomes are logged. Blocking (file I/O).
    pub fn reload(&self) -> Result<crate::reload::Changes, EngineError> {
        let mut rl = self.reload_lock();
        let source = rl.0.clone().unwrap_or_else(|| crate::reload::Source {
            path: self.cfg.config_path.clone(),
            flags: crate::config::Overrides::default(),
        });
        let new = match source.load() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "configuration not reloaded; keeping the old one");
                return Err(EngineError::Reload(e.to_string()));
            }
        };
        let mut changes = crate::reload::diff(&rl.1, &self.cfg, &new);
        if rl.1.daemon.log_level != new.daemon.log_level {
            let hook = crate::sync::lock(&self.log_level_hook);
            match hook.as_ref().map(|set| set(&new.daemon.log_level)) {
                Some(Ok(())) => changes.applied.push("daemon.log_level".to_owned()),
                Some(Err(e)) => {
                    warn!(error = %e, "daemon.log_level not applied");
                    changes.needs_restart.push("daemon.log_level".to_owned());
                }
                None => changes.needs_restart.push("daemon.log_level".to_owned()),
            }
        }
        if !changes.applied.is_empty() {
            self.lock()
                .alerts
                .reconfigure(new.alerts.settings, &new.alerts.rules, now_ms());
        }
        rl.1 = new;
        drop(rl);
        info!(
            applied = ?changes.applied,
            needs_restart = ?changes.needs_restart,
            "configuration reloaded: {}",
            changes.summary()
        );
        Ok(changes)
    }

    fn reload_lock(&self) -> MutexGuard<'_, (Option<crate::reload::Source>, Config)> {
        crate::sync::lock(&self.reload)
    }

    /// Removes API rules (config rules stay: they belong to the file).
    pub fn clear_thresholds(&self, req: &v1::ClearThresholdsRequest) -> Result<u32, EngineError> {
        let mut st = self.lock();
        let removed = st
            .alerts
            .clear(req)
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        st.rules_gen += 1;
        let (generation, p) = (st.rules_gen, st.alerts.persisted());
        drop(st);
        self.save_rules(generation, &p);
        info!(removed, "thresholds cleared");
        Ok(removed)
    }

    /// Ends the session and stops capture: the daemon is going down.
    pub async fn shutdown(&self) {
        let outcome = self.stop();
        if outcome.changed {
            if let Some(s) = &outcome.session {
                // Mark the session ended by shutdown in the log for operators.
                info!(session = s.id, "session closed at shutdown");
            }
        }
        self.store.flush().await;
    }
}

/// Interfaces one start may name at most.
const MAX_START_INTERFACES: usize = 64;

/// Names a client asks to capture on must be names the kernel could give an
/// interface (its `dev_valid_name`: 1 to 15 bytes, not `.` or `..`, no `/`,
/// `:` or white space), and printable.
fn check_interface_names(names: &[String]) -> Result<(), String> {
    if names.len() > MAX_START_INTERFACES {
        return Err(format!(
            "{} interfaces named: at most {MAX_START_INTERFACES}",
            names.len()
        ));
    }
    for n in names {
        let bad = n.is_empty()
            || n.len() > 15
            || n == "."
            || n == ".."
            || n.chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if bad {
            return Err(format!(
                "'{}' cannot be an interface name (1 to 15 bytes, no '/', ':' or spaces)",
                terminal_safe(n)
            ));
        }
    }
    Ok(())
}

/// Keeps `a` in the recent list: a closed alert replaces its open entry.
fn remember_alert(recent: &mut VecDeque<v1::Alert>, a: &v1::Alert) {
    if let Some(old) = recent.iter_mut().rev().find(|r| r.id == a.id) {
        *old = a.clone();
        return;
    }
    if recent.len() >= RECENT_ALERTS {
        // Drop the oldest closed alert; open ones stay while they are open.
        match recent
            .iter()
            .position(|r| r.state != v1::AlertState::Open as i32)
        {
            Some(i) => {
                recent.remove(i);
            }
            None => {
                recent.pop_front();
            }
        }
    }
    recent.push_back(a.clone());
}

fn log_alert(a: &v1::Alert) {
    let p = a.process.clone().unwrap_or_default();
    let kind = alerts::kind_name(v1::ThresholdKind::try_from(a.kind).unwrap_or_default());
    let direction =
        alerts::direction_name(v1::Direction::try_from(a.direction).unwrap_or_default());
    let state = if a.state == v1::AlertState::Open as i32 {
        "alert opened"
    } else {
        "alert closed"
    };
    warn!(
        id = a.id,
        pid = p.pid,
        name = %p.name,
        kind,
        direction,
        value = a.value,
        peak = a.peak,
        threshold = a.threshold,
        message = %a.message,
        "{state}"
    );
}

/// The store's per-tick feed from a snapshot (see `TickRecord::from_rows`).
fn tick_record(s: &Snapshot, time_ms: i64, epoch: u64, only_moving: bool) -> TickRecord {
    TickRecord {
        gone: s.folded.clone(),
        proc_hosts: s.proc_hosts.clone(),
        ..TickRecord::from_rows(
            time_ms,
            epoch,
            &s.processes,
            &s.hosts,
            &s.interfaces,
            only_moving,
        )
    }
}

/// A stopped run's figures: totals stay, nothing is moving.
fn without_rates(mut s: Snapshot) -> Snapshot {
    let zero = |t: &mut v1::Traffic| {
        t.up_bps = 0;
        t.down_bps = 0;
    };
    s.processes
        .iter_mut()
        .filter_map(|p| p.traffic.as_mut())
        .for_each(zero);
    s.hosts
        .iter_mut()
        .filter_map(|h| h.traffic.as_mut())
        .for_each(zero);
    zero(&mut s.totals);
    if let Some(t) = s.unattributed.traffic.as_mut() {
        zero(t);
    }
    s.unattributed
        .reasons
        .iter_mut()
        .filter_map(|r| r.traffic.as_mut())
        .for_each(zero);
    s.interfaces.clear();
    s.packet_stats = None;
    s
}

pub struct SubscriberGuard(Arc<Engine>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn session_to_proto(s: &SessionRecord) -> v1::Session {
    v1::Session {
        id: s.id,
        started_ms: s.started_ms,
        ended_ms: s.ended_ms,
        interfaces: s.interfaces.clone(),
        up_bytes: s.up_bytes,
        down_bytes: s.down_bytes,
        active: s.ended_ms == 0,
    }
}

/// Runs `tick` every `tick_ms` until the engine is dropped by everyone else.
pub fn spawn_ticker(engine: &Arc<Engine>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(engine);
    let period = Duration::from_millis(engine.cfg.daemon.tick_ms);
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(period);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            iv.tick().await;
            let Some(engine) = weak.upgrade() else { return };
            // Aggregation takes a few ms at most; keep it off the async workers.
            let res = tokio::task::spawn_blocking(move || engine.tick()).await;
            if let Err(e) = res {
                warn!(%e, "tick failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: u64, state: v1::AlertState) -> v1::Alert {
        v1::Alert {
            id,
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn interface_names_are_checked_like_the_kernel_does() {
        let ok = |v: &[&str]| {
            check_interface_names(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert!(ok(&["eth0", "br-1a2b3c4d5e6f", "any", "veth0@if2"]).is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "eth0:1",
            "a b",
            "sixteen-bytes-xx",
            "x\u{1b}[2J",
        ] {
            let err = ok(&[bad]).unwrap_err();
            assert!(err.contains("cannot be an interface name"), "{bad}: {err}");
            assert!(!err.contains('\u{1b}'), "escaped: {err}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("e{i}")).collect();
        assert!(check_interface_names(&many).is_err());
    }

    #[test]
    fn recent_alerts_are_bounded_and_keep_open_ones() {
        let mut recent = VecDeque::new();
        remember_alert(&mut recent, &alert(1, v1::AlertState::Open));
        for id in 2..=(RECENT_ALERTS as u64 + 10) {
            remember_alert(&mut recent, &alert(id, v1::AlertState::Closed));
        }
        assert_eq!(recent.len(), RECENT_ALERTS);
        assert_eq!(recent[0].id, 1, "the open alert stays");
        assert_eq!(recent[1].id, 12, "the oldest closed ones went");
        // Closing replaces the open entry in place.
        remember_alert(&mut recent, &alert(1, v1::AlertState::Closed));
        assert_eq!(recent.len(), RECENT_ALERTS);
        assert_eq!(recent[0].state, v1::AlertState::Closed as i32);
    }
}
