//! procmap: socket -> process attribution for new flows. Owns its threads, the
//! sock_diag socket, the inode -> pid index and the proc connector; never runs on the
//! capture path and never blocks a submitter (bounded queue, counted drops).
//!
//! How one query is answered (on the resolver thread):
//! 1. sock_diag exact lookup of the 5-tuple (no NLM_F_DUMP). If an AF_INET lookup
//!    misses, it is retried as AF_INET6 with v4-mapped addresses (a dual-stack `::`
//!    socket). A TCP reply with inode 0 in TIME_WAIT, or in a closing state after the
//!    owner closed it, is `SocketGone`. A TCP reply with inode 0 in SYN_RECV (request
//!    socket), ESTABLISHED or CLOSE_WAIT (handshake done, not yet `accept`ed) is an
//!    inbound new connection: we look up the listener (remote zeroed) and credit its
//!    owner, who is the one that will accept it. (The kernel's exact TCP lookup also
//!    falls back to the listener by itself when nothing more specific matches.)
//! 2. inode -> (pid, fd) in the index; a hit is confirmed with one readlink of
//!    `/proc/<pid>/fd/<fd>`. On a miss, all misses of the round share: a rescan of the
//!    pids the proc connector reported as forked/exec'd in the last `recent_window`, and
//!    of the pids of the last hits; then, at most once per `full_scan_interval`, a full
//!    /proc rescan. Without the connector only the hot pids and the rate-limited full
//!    rescans remain (logged once).
//! 3. `ProcessInfo` is read right then (the process may exit a moment later) and cached
//!    per (pid, start time); an exec event or a changed comm refreshes it.
//! 4. Misses are retried after `retry_delays` (1, 2, 4, 8, 16, 32, 40 ms by default,
//!    ~100 ms in all), then answered `NoSocket` (sock_diag never found it) or
//!    `SocketGone` (found, but no process holds the inode).
//!
//! 5. Other network namespaces: when a flow misses in the daemon's namespace on its
//!    first or last attempt, it is looked up through one sock_diag socket per namespace
//!    that some process lives in (enumerated at most once per `netns_scan_interval`,
//!    sockets created by a short-lived thread after setns). A socket found there is
//!    attributed through the same (global) inode index; found but unowned is
//!    `OtherNamespace`.
//!
//! 6. Priorities: lookups of flows a local socket started or that carry payload
//!    (`Priority::High`) are served first, as above. Inbound SYNs without payload
//!    (`Priority::Low`, what a SYN flood is made of) wait behind them in a bounded
//!    queue (a full queue drops and counts them). While that queue is short they are
//!    looked up one by one, a few at a time; once it is long the resolver switches to
//!    one sock_diag dump of TCP and UDP per namespace per `dump_interval` and joins
//!    the queued flows against it locally (`dumpjoin`), so the cost follows the number
//!    of sockets, not of flows. Answers are never waited on: past a bound, low
//!    answers are dropped and counted.
//!
//! Not done: sockets bound to a device with SO_BINDTODEVICE (the lookup uses interface
//! 0). `Forwarded` and `Pending` exist for the
//! engine, which decides them; the resolver never answers them.

mod connector;
pub mod container;
mod dumpjoin;
mod fdindex;
#[cfg(test)]
mod fuzz;
mod netns;
pub(crate) mod procinfo;
mod sockdiag;
mod tcpsample;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use connector::ProcEvent;
pub use dumpjoin::LookupMode;
pub use procinfo::{
    parse_btime, parse_cgroup, parse_cmdline, parse_stat, parse_status_uid, unit_from_cgroup, Stat,
    CMDLINE_MAX,
};
pub use sockdiag::{DiagAnswer, DiagReply};
pub use tcpsample::{TcpSample, TcpSampler};

use dumpjoin::{DumpIndex, ModeSwitch};
use fdindex::{FdIndex, Holder};
use netns::OtherNets;
use procinfo::InfoReader;
use sockdiag::{SockDiag, IPPROTO_TCP, IPPROTO_UDP};

/// Whether the process (pid, start time) still exists: a reused pid with
/// another start time is another process.
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    std::fs::read(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .is_some_and(|st| st.start_time == start_time)
}

/// The start time (clock ticks after boot) of the process `pid` now, if any.
pub fn start_time_of(pid: u32) -> Option<u64> {
    std::fs::read(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .map(|st| st.start_time)
}

/// The 5-tuple of a flow, seen from the local socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketQuery {
    /// 6 = TCP, 17 = UDP.
    pub proto: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Which lookups go first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Flows a local socket started (outgoing SYN, first packet sent by a local
    /// address) or that carry payload: their owner may close the socket any moment.
    High,
    /// Inbound SYNs without payload: nobody may ever answer them (a SYN flood), so
    /// they wait behind `High` in a bounded queue.
    Low,
}

/// Who owns a socket, read when attribution succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Clock ticks since boot (/proc/<pid>/stat field 22); with `pid`, the identity.
    pub start_time: u64,
    /// comm.
    pub name: String,
    pub exe: String,
    /// Arguments joined by spaces, at most `procinfo::CMDLINE_MAX` bytes.
    pub cmdline: String,
    /// `cmdline` was cut to the cap.
    pub cmdline_truncated: bool,
    pub uid: u32,
    pub user: String,
    /// systemd unit from the cgroup path, e.g. "nginx.service", or "".
    pub unit: String,
    pub cgroup: String,
    /// Container from the cgroup path (`docker:3f2e5d001387`, `lxc:db1`), or "".
    pub container: String,
    /// Inode of /proc/<pid>/ns/net.
    pub netns: u64,
    /// Start as wall clock, ms since the epoch.
    pub started_ms: i64,
}

/// Why a flow has no owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unattributed {
    /// sock_diag never found a socket for the flow.
    NoSocket,
    /// A socket was found but no process holds its inode any more, or its inode is 0
    /// (TIME_WAIT, or closed by its owner).
    SocketGone,
    /// The socket lives in another network namespace.
    OtherNamespace,
    /// Traffic routed through this host, not to or from a local socket.
    Forwarded,
    /// Not answered yet.
    Pending,
    /// The kernel counted the socket's bytes but its owner could not be named
    /// (a socket older than netmond that no lookup could tie to a process).
    NoOwner,
}

impl Unattributed {
    pub fn as_str(self) -> &'static str {
        match self {
            Unattributed::NoSocket => "no_socket",
            Unattributed::SocketGone => "socket_gone",
            Unattributed::OtherNamespace => "other_namespace",
            Unattributed::Forwarded => "forwarded",
            Unattributed::Pending => "pending",
            Unattributed::NoOwner => "no_owner",
        }
    }
}

/// The answer to one `submit`.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub query: SocketQuery,
    pub owner: Result<Arc<ProcessInfo>, Unattributed>,
    /// Socket inode (0 when none was found or the socket is in TIME_WAIT).
    pub inode: u64,
    /// Socket uid from sock_diag, when a live socket was found.
    pub uid: Option<u32>,
    /// From `submit` to the answer being sent.
    pub latency: Duration,
    /// Lookup rounds used (1 = answered on the first try).
    pub attempts: u32,
}

/// Settings of the resolver.
#[derive(Clone, Debug)]
pub struct ResolverConfig {
    /// Capacity of the submit queue; a full queue drops (and counts) the query.
    pub queue_capacity: usize,
    /// Waits between lookup rounds of a query still unresolved; when exhausted the
    /// query is answered unattributed.
    pub retry_delays: Vec<Duration>,
    /// Minimum time between two full /proc rescans.
    pub full_scan_interval: Duration,
    /// How long a pid stays "recent" after a fork/exec event.
    pub recent_window: Duration,
    /// Subscribe to the kernel proc connector (needs root).
    pub use_connector: bool,
    /// When a flow misses in the daemon's own network namespace (first and last
    /// attempt only), look it up in the namespaces other processes live in.
    pub other_netns: bool,
    /// Minimum time between two enumerations of the namespaces in use.
    pub netns_scan_interval: Duration,
    /// Where procfs is mounted.
    pub proc_root: PathBuf,
    /// Capacity of the queue of low-priority lookups; a full queue drops (and
    /// counts) the query.
    pub low_capacity: usize,
    /// Queued low-priority lookups at which the resolver switches to dumps.
    pub dump_above: usize,
    /// Time between two dumps in dump mode (the daemon's tick).
    pub dump_interval: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            queue_capacity: 4096,
            retry_delays: [1, 2, 4, 8, 16, 32, 40]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            full_scan_interval: Duration::from_millis(100),
            recent_window: Duration::from_secs(2),
            use_connector: true,
            other_netns: true,
            netns_scan_interval: Duration::from_secs(1),
            proc_root: PathBuf::from("/proc"),
            low_capacity: 32 * 1024,
            dump_above: 256,
            dump_interval: Duration::from_secs(1),
        }
    }
}

/// Errors starting the resolver.
#[derive(Debug, thiserror::Error)]
pub enum ProcmapError {
    #[error("cannot open sock_diag netlink socket")]
    SockDiag {
        #[source]
        source: io::Error,
    },
    #[error("cannot start procmap thread '{name}'")]
    Thread {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("invalid resolver config: {reason}")]
    Config { reason: &'static str },
}

/// Counters of the resolver, cheap to read at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolverStats {
    pub submitted: u64,
    pub dropped: u64,
    pub attributed: u64,
    pub no_socket: u64,
    pub socket_gone: u64,
    /// Answers inferred from the listening socket (inbound connection not yet accepted).
    pub via_listener: u64,
    /// Sockets found in another network namespace.
    pub other_netns: u64,
    pub full_scans: u64,
    pub pid_scans: u64,
    pub diag_errors: u64,
    pub connector_events: u64,
    pub connector_lost: u64,
    pub connector_active: bool,
    /// Low-priority lookups waiting (queued or in flight).
    pub low_queued: u64,
    /// Low-priority lookups dropped: queue full, or answer not deliverable.
    pub low_dropped: u64,
    /// Dumps taken in dump mode (one per namespace, protocol and family).
    pub dumps: u64,
    pub mode: LookupMode,
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    dropped: AtomicU64,
    attributed: AtomicU64,
    no_socket: AtomicU64,
    socket_gone: AtomicU64,
    via_listener: AtomicU64,
    other_netns: AtomicU64,
    full_scans: AtomicU64,
    pid_scans: AtomicU64,
    diag_errors: AtomicU64,
    connector_active: AtomicBool,
    low_queued: AtomicU64,
    low_dropped: AtomicU64,
    dumps: AtomicU64,
    dump_mode: AtomicBool,
    /// A wake for low queries is on its way or not wanted (see `submit`).
    low_wake: AtomicBool,
}

enum Msg {
    Query(SocketQuery, Instant),
    /// Low queries arrived while the resolver may be waiting for high ones.
    Wake,
    Stop,
}

/// The resolver: owns the resolver thread and, when available, the connector thread.
pub struct Resolver {
    stop: Arc<AtomicBool>,
    tx: SyncSender<Msg>,
    threads: Vec<JoinHandle<()>>,
}

/// Cheap, cloneable submit side; usable from any thread.
#[derive(Clone)]
pub struct ResolverHandle {
    tx: SyncSender<Msg>,
    low_tx: SyncSender<(SocketQuery, Instant)>,
    counters: Arc<Counters>,
    conn: Option<Arc<connector::ConnectorCounters>>,
}

/// The answers of the resolver. Unbounded as a channel, bounded by the resolver,
/// which stops sending low-priority answers while too many are unread.
pub struct Answers {
    rx: Receiver<Resolution>,
    unread: Arc<AtomicUsize>,
}

impl Answers {
    pub fn try_recv(&self) -> Result<Resolution, TryRecvError> {
        let r = self.rx.try_recv()?;
        self.unread.fetch_sub(1, Ordering::Relaxed);
        Ok(r)
    }

    pub fn recv_timeout(&self, wait: Duration) -> Result<Resolution, RecvTimeoutError> {
        let r = self.rx.recv_timeout(wait)?;
        self.unread.fetch_sub(1, Ordering::Relaxed);
        Ok(r)
    }
}

impl ResolverHandle {
    /// Queue a query without blocking; `false` when its queue is full (counted).
    pub fn submit(&self, q: SocketQuery, prio: Priority) -> bool {
        let c = &self.counters;
        c.submitted.fetch_add(1, Ordering::Relaxed);
        let ok = match prio {
            Priority::High => self.tx.try_send(Msg::Query(q, Instant::now())).is_ok(),
            Priority::Low => {
                let ok = self.low_tx.try_send((q, Instant::now())).is_ok();
                // One wake per batch: the flag stays set until the resolver takes
                // the low queue, and in dump mode until it leaves that mode.
                if ok && !c.low_wake.swap(true, Ordering::AcqRel) {
                    let _ = self.tx.try_send(Msg::Wake);
                }
                ok
            }
        };
        if !ok {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            if prio == Priority::Low {
                c.low_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        ok
    }

    /// Queries dropped because the queue was full (or the resolver stopped).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> ResolverStats {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ResolverStats {
            submitted: r(&c.submitted),
            dropped: r(&c.dropped),
            attributed: r(&c.attributed),
            no_socket: r(&c.no_socket),
            socket_gone: r(&c.socket_gone),
            via_listener: r(&c.via_listener),
            other_netns: r(&c.other_netns),
            full_scans: r(&c.full_scans),
            pid_scans: r(&c.pid_scans),
            diag_errors: r(&c.diag_errors),
            connector_events: self.conn.as_ref().map_or(0, |k| r(&k.events)),
            connector_lost: self.conn.as_ref().map_or(0, |k| r(&k.lost)),
            connector_active: c.connector_active.load(Ordering::Relaxed),
            low_queued: r(&c.low_queued),
            low_dropped: r(&c.low_dropped),
            dumps: r(&c.dumps),
            mode: if c.dump_mode.load(Ordering::Relaxed) {
                LookupMode::Dump
            } else {
                LookupMode::PerFlow
            },
        }
    }
}

impl Resolver {
    /// Open the sockets and start the threads.
    pub fn start(cfg: ResolverConfig) -> Result<(Resolver, ResolverHandle, Answers), ProcmapError> {
        if cfg.queue_capacity == 0 || cfg.low_capacity == 0 {
            return Err(ProcmapError::Config {
                reason: "queue_capacity and low_capacity must be at least 1",
            });
        }
        let diag = SockDiag::open().map_err(|source| ProcmapError::SockDiag { source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::sync_channel(cfg.queue_capacity);
        // The resolver moves low queries into its own bounded queue at every
        // round (at least every IDLE_WAIT): this channel only buffers between.
        let (low_tx, low_rx) = mpsc::sync_channel(cfg.low_capacity.min(LOW_CHANNEL));
        let (out_tx, out_rx) = mpsc::channel();
        let unread = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();

        let mut ev_rx = None;
        let mut conn = None;
        if cfg.use_connector {
            match connector::open().or_else(|_| connector::open_in_init_netns()) {
                Ok(fd) => {
                    let (etx, erx) = mpsc::sync_channel(16 * 1024);
                    let k = Arc::new(connector::ConnectorCounters::default());
                    let h =
                        connector::spawn(fd, etx, stop.clone(), k.clone()).map_err(|source| {
                            ProcmapError::Thread {
                                name: "procmap-connector",
                                source,
                            }
                        })?;
                    threads.push(h);
                    ev_rx = Some(erx);
                    conn = Some(k);
                    counters.connector_active.store(true, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::warn!(%error, "proc connector unavailable; new processes are found by rate-limited /proc rescans");
                }
            }
        }

        let nets = cfg
            .other_netns
            .then(|| OtherNets::new(&cfg.proc_root, cfg.netns_scan_interval));
        let mut worker = Worker {
            switch: ModeSwitch::new(cfg.dump_above, cfg.dump_above / 8),
            low: VecDeque::new(),
            low_rx,
            low_in_flight: 0,
            next_dump: Instant::now(),
            dump_index: DumpIndex::default(),
            dump_buf: Vec::new(),
            unread: unread.clone(),
            nets,
            index: FdIndex::new(&cfg.proc_root),
            info: InfoReader::new(&cfg.proc_root),
            cfg,
            diag,
            cache: HashMap::new(),
            rx,
            ev_rx,
            out: out_tx,
            recent: VecDeque::new(),
            hot: VecDeque::new(),
            last_full: None,
            pending: Vec::new(),
            stop: stop.clone(),
            counters: counters.clone(),
        };
        let h = std::thread::Builder::new()
            .name("procmap-resolver".into())
            .spawn(move || worker.run())
            .map_err(|source| ProcmapError::Thread {
                name: "procmap-resolver",
                source,
            })?;
        threads.push(h);
        let handle = ResolverHandle {
            tx: tx.clone(),
            low_tx,
            counters,
            conn,
        };
        let answers = Answers { rx: out_rx, unread };
        Ok((Resolver { stop, tx, threads }, handle, answers))
    }

    /// Stop and join the threads; queries still pending are abandoned.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.tx.try_send(Msg::Stop);
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a procmap thread panicked");
            }
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Pids remembered as "hot" (owners of the last hits).
const HOT_PIDS: usize = 8;
/// At most this many recent (forked/exec'd) pids are rescanned per miss round.
const RECENT_SCAN_MAX: usize = 64;
/// Bound on remembered recent events.
const RECENT_MAX: usize = 4096;
/// Bound on cached `ProcessInfo`s (cleared wholesale beyond it; exits prune it).
const CACHE_MAX: usize = 16 * 1024;
/// Most queries in retry at once; beyond it the resolver stops taking new ones.
const MAX_PENDING: usize = 16 * 1024;
/// Most queries taken off the queue per round.
const BATCH_MAX: usize = 1024;
/// Longest sleep of the resolver when idle (also how often it notices `stop`).
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Capacity of the channel of low queries between two rounds of the resolver.
const LOW_CHANNEL: usize = 8 * 1024;
/// Low queries looked up one by one at once in per-flow mode.
const LOW_IN_FLIGHT: usize = 64;
/// Unread answers beyond which low-priority answers are dropped (counted).
const MAX_UNREAD: usize = 64 * 1024;

struct Pending {
    query: SocketQuery,
    submitted: Instant,
    attempts: u32,
    due: Instant,
    /// The socket found in the latest round, if any.
    diag: Option<DiagReply>,
    /// Some round found a live socket (so a final miss is `SocketGone`).
    seen_socket: bool,
    /// The foreign network namespace (its inode) the socket was found in.
    ns: Option<u64>,
    done: bool,
    prio: Priority,
    /// Set by a dump round: its answer stands in for this query's first lookup.
    joined: Option<Found>,
}

struct Worker {
    switch: ModeSwitch,
    /// Low-priority queries not yet looked up, oldest first.
    low: VecDeque<(SocketQuery, Instant)>,
    low_rx: Receiver<(SocketQuery, Instant)>,
    /// Low-priority queries in `pending`.
    low_in_flight: usize,
    next_dump: Instant,
    dump_index: DumpIndex,
    dump_buf: Vec<DiagReply>,
    unread: Arc<AtomicUsize>,
    cfg: ResolverConfig,
    nets: Option<OtherNets>,
    diag: SockDiag,
    index: FdIndex,
    info: InfoReader,
    cache: HashMap<u32, Arc<ProcessInfo>>,
    rx: Receiver<Msg>,
    ev_rx: Option<Receiver<ProcEvent>>,
    out: Sender<Resolution>,
    recent: VecDeque<(u32, Instant)>,
    hot: VecDeque<u32>,
    last_full: Option<Instant>,
    pending: Vec<Pending>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

/// What one sock_diag round found for a query.
#[derive(Clone, Copy)]
enum Found {
    Socket(DiagReply),
    /// Inode 0 and nobody will own it: TIME_WAIT or closed by its owner.
    Gone(DiagReply),
    Nothing,
}

fn unspecified(family: u8) -> SocketAddr {
    if i32::from(family) == libc::AF_INET {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    }
}

/// One sock_diag round for a query, through `diag` (of some network namespace).
fn lookup_in(diag: &mut SockDiag, q: SocketQuery, counters: &Counters) -> io::Result<Found> {
    let v4 = q.local.is_ipv4() && q.remote.is_ipv4();
    let (mut fam, mut l, mut r) = if v4 {
        (libc::AF_INET as u8, q.local, q.remote)
    } else {
        (
            libc::AF_INET6 as u8,
            sockdiag::mapped(q.local),
            sockdiag::mapped(q.remote),
        )
    };
    let mut ans = diag.lookup(fam, q.proto, l, r)?;
    if ans == DiagAnswer::NotFound && v4 {
        fam = libc::AF_INET6 as u8;
        l = sockdiag::mapped(l);
        r = sockdiag::mapped(r);
        ans = diag.lookup(fam, q.proto, l, r)?;
    }
    let DiagAnswer::Found(rep) = ans else {
        return Ok(Found::Nothing);
    };
    if rep.inode != 0 {
        return Ok(Found::Socket(rep));
    }
    let inbound_new = q.proto == IPPROTO_TCP
        && matches!(
            rep.state,
            sockdiag::TCP_SYN_RECV | sockdiag::TCP_ESTABLISHED | sockdiag::TCP_CLOSE_WAIT
        );
    if inbound_new {
        if let DiagAnswer::Found(lst) = diag.lookup(fam, q.proto, l, unspecified(fam))? {
            if lst.inode != 0 && lst.state == sockdiag::TCP_LISTEN {
                counters.via_listener.fetch_add(1, Ordering::Relaxed);
                return Ok(Found::Socket(lst));
            }
        }
        // Not accepted yet and no listener seen: try again later.
        return Ok(Found::Nothing);
    }
    Ok(Found::Gone(rep))
}

impl Worker {
    fn run(&mut self) {
        let mut latency = crate::latency::LowLatency::start("procmap-resolver");
        loop {
            latency.check();
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            let mut wait = self
                .pending
                .iter()
                .map(|p| p.due.saturating_duration_since(now))
                .min()
                .unwrap_or(IDLE_WAIT)
                .min(IDLE_WAIT);
            if !self.low.is_empty() && self.switch.mode == LookupMode::Dump {
                wait = wait.min(self.next_dump.saturating_duration_since(now));
            }
            if self.pending.len() >= MAX_PENDING {
                // Saturated: leave new queries in the bounded queue (submitters then see
                // counted drops) until retries drain.
                std::thread::sleep(wait);
            } else {
                match self.rx.recv_timeout(wait) {
                    Ok(Msg::Query(q, t)) => {
                        self.push(q, t, Priority::High, None);
                        for _ in 1..BATCH_MAX {
                            match self.rx.try_recv() {
                                Ok(Msg::Query(q, t)) => self.push(q, t, Priority::High, None),
                                Ok(Msg::Wake) => {}
                                Ok(Msg::Stop) => return,
                                Err(_) => break,
                            }
                        }
                    }
                    Ok(Msg::Wake) | Err(RecvTimeoutError::Timeout) => {}
                    Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            self.drain_events();
            self.take_low();
            self.serve_low();
            self.round();
            self.counters.low_queued.store(
                (self.low.len() + self.low_in_flight) as u64,
                Ordering::Relaxed,
            );
        }
    }

    fn push(
        &mut self,
        query: SocketQuery,
        submitted: Instant,
        prio: Priority,
        joined: Option<Found>,
    ) {
        if prio == Priority::Low {
            self.low_in_flight += 1;
        }
        self.pending.push(Pending {
            query,
            submitted,
            attempts: 0,
            due: submitted,
            diag: None,
            seen_socket: false,
            ns: None,
            done: false,
            prio,
            joined,
        });
    }

    /// Moves low queries from the channel into the bounded queue; beyond its
    /// capacity they are dropped (counted).
    fn take_low(&mut self) {
        // Per-flow mode serves low queries at once, so the next one may wake us;
        // in dump mode they wait for the next dump anyway.
        if self.switch.mode == LookupMode::PerFlow {
            self.counters.low_wake.store(false, Ordering::Release);
        }
        let cap = self.cfg.low_capacity;
        let mut dropped = 0u64;
        while let Ok(item) = self.low_rx.try_recv() {
            if self.low.len() + self.low_in_flight < cap {
                self.low.push_back(item);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
            self.counters
                .low_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Serves the low queue: a few per-flow lookups at a time while it is short,
    /// one dump round per `dump_interval` while it is long.
    fn serve_low(&mut self) {
        let mode = self.switch.on_queue(self.low.len());
        self.counters
            .dump_mode
            .store(mode == LookupMode::Dump, Ordering::Relaxed);
        match mode {
            LookupMode::PerFlow => {
                while self.low_in_flight < LOW_IN_FLIGHT {
                    let Some((q, t)) = self.low.pop_front() else {
                        break;
                    };
                    self.push(q, t, Priority::Low, None);
                }
                if self.low.is_empty() && self.low.capacity() > LOW_CHANNEL {
                    self.low.shrink_to_fit();
                }
            }
            LookupMode::Dump => {
                let now = Instant::now();
                if now >= self.next_dump {
                    let answered = self.dump_round();
                    self.next_dump = now + self.cfg.dump_interval;
                    self.switch.after_dump(answered);
                    self.counters
                        .dump_mode
                        .store(self.switch.mode == LookupMode::Dump, Ordering::Relaxed);
                }
            }
        }
    }

    /// Dumps the sockets of `ns` (None: our own namespace) into the dump index.
    fn dump_ns(&mut self, ns: Option<u64>) -> io::Result<()> {
        self.dump_index.clear();
        let diag = match ns {
            None => &mut self.diag,
            Some(ino) => match self.nets.as_mut().and_then(|n| n.get_mut(ino)) {
                Some(d) => d,
                None => return Ok(()),
            },
        };
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
                self.dump_buf.clear();
                diag.dump_sockets(family, proto, &mut self.dump_buf)?;
                self.counters.dumps.fetch_add(1, Ordering::Relaxed);
                for rep in &self.dump_buf {
                    self.dump_index.insert(proto, *rep);
                }
            }
        }
        Ok(())
    }

    /// Answers every queued low query from one dump per namespace: found sockets go
    /// on to owner lookup, the rest are answered at once. Returns how many queries
    /// it took.
    fn dump_round(&mut self) -> usize {
        let mut queue = std::mem::take(&mut self.low);
        let taken = queue.len();
        if self.dump_ns(None).is_err() {
            self.counters.diag_errors.fetch_add(1, Ordering::Relaxed);
            // Keep the queue for the next round.
            self.low = queue;
            return taken;
        }
        let mut missed: VecDeque<(SocketQuery, Instant)> = VecDeque::new();
        for (q, t) in queue.drain(..) {
            match self.dump_index.join(&q) {
                (Found::Nothing, _) => missed.push_back((q, t)),
                (found, via) => {
                    if via {
                        self.counters.via_listener.fetch_add(1, Ordering::Relaxed);
                    }
                    self.push(q, t, Priority::Low, Some(found));
                }
            }
        }
        // Flows missing here may belong to sockets of other namespaces.
        if !missed.is_empty() && self.nets.is_some() {
            let inodes = self.nets.as_mut().map_or_else(Vec::new, |n| {
                n.refresh();
                n.inodes()
            });
            for ino in inodes {
                if missed.is_empty() {
                    break;
                }
                if self.dump_ns(Some(ino)).is_err() {
                    self.counters.diag_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let mut still = VecDeque::with_capacity(missed.len());
                for (q, t) in missed.drain(..) {
                    match self.dump_index.join(&q) {
                        (Found::Nothing, _) => still.push_back((q, t)),
                        (found, _) => {
                            self.counters.other_netns.fetch_add(1, Ordering::Relaxed);
                            self.push(q, t, Priority::Low, Some(found));
                            if let Some(p) = self.pending.last_mut() {
                                p.ns = Some(ino);
                            }
                        }
                    }
                }
                missed = still;
            }
        }
        // A complete dump did not have them: no retries.
        for (q, t) in missed {
            self.counters.no_socket.fetch_add(1, Ordering::Relaxed);
            let res = Resolution {
                query: q,
                owner: Err(Unattributed::NoSocket),
                inode: 0,
                uid: None,
                latency: t.elapsed(),
                attempts: 1,
            };
            self.send(res, Priority::Low);
        }
        // Reuse the queue's buffer.
        self.low = queue;
        self.dump_index.clear();
        taken
    }

    /// Hands an answer over without ever waiting for the reader; low answers are
    /// dropped (counted) while too many are unread.
    fn send(&mut self, res: Resolution, prio: Priority) {
        if prio == Priority::Low && self.unread.load(Ordering::Relaxed) >= MAX_UNREAD {
            self.counters.low_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Counted before the send, so the reader never takes it below zero.
        self.unread.fetch_add(1, Ordering::Relaxed);
        if self.out.send(res).is_err() {
            self.unread.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn drain_events(&mut self) {
        let Some(rx) = &self.ev_rx else {
            return;
        };
        let now = Instant::now();
        loop {
            match rx.try_recv() {
                Ok(ProcEvent::Fork { pid }) => self.recent.push_back((pid, now)),
                Ok(ProcEvent::Exec { pid }) => {
                    self.cache.remove(&pid);
                    self.recent.push_back((pid, now));
                }
                Ok(ProcEvent::Exit { pid }) => {
                    self.cache.remove(&pid);
                    self.index.remove_pid(pid);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    tracing::warn!(
                        "proc connector stopped; falling back to rate-limited /proc rescans"
                    );
                    self.counters
                        .connector_active
                        .store(false, Ordering::Relaxed);
                    self.ev_rx = None;
                    break;
                }
            }
        }
        while self.recent.len() > RECENT_MAX {
            self.recent.pop_front();
        }
        let window = self.cfg.recent_window;
        while self
            .recent
            .front()
            .is_some_and(|(_, t)| now.saturating_duration_since(*t) > window)
        {
            self.recent.pop_front();
        }
    }

    /// Rescans only the last owners (a few small fd tables) for `inode`, at
    /// once: a busy client's next socket is found before other queries'
    /// costlier scans run, while its connection may still be open.
    fn owner_among_hot(&mut self, inode: u64) -> Option<Arc<ProcessInfo>> {
        let hot: Vec<u32> = self.hot.iter().copied().collect();
        for pid in hot {
            self.index.scan_pid(pid);
            self.counters.pid_scans.fetch_add(1, Ordering::Relaxed);
            if let Some(h) = self.index.get(inode) {
                return self.attribute(inode, h, true);
            }
        }
        None
    }

    /// The owner of `inode` if the index knows it and it still holds it.
    fn owner(&mut self, inode: u64) -> Option<Arc<ProcessInfo>> {
        let h = self.index.get(inode)?;
        match self.attribute(inode, h, false) {
            Some(info) => Some(info),
            None => {
                // Stale entry: that pid no longer holds the socket.
                self.index.scan_pid(h.pid);
                None
            }
        }
    }

    /// `fresh`: the index entry was read a moment ago by a scan, so it is
    /// trusted even if the process has closed the socket since (short-lived
    /// clients do within milliseconds); older entries are verified.
    fn attribute(&mut self, inode: u64, h: Holder, fresh: bool) -> Option<Arc<ProcessInfo>> {
        let proc_pid = self.cfg.proc_root.join(h.pid.to_string());
        let stat = InfoReader::read_stat(&proc_pid)?;
        // The stat read above belongs to the holder only if it still holds the fd now.
        if !fresh && !self.index.verify(inode, h) {
            return None;
        }
        if let Some(c) = self.cache.get(&h.pid) {
            if c.start_time == stat.start_time && c.name == stat.comm {
                let c = c.clone();
                self.touch_hot(h.pid);
                return Some(c);
            }
        }
        // The process may exec while we read its files: read stat again afterwards and
        // start over (a few times at most) so name, exe and cmdline are of one image.
        let mut stat = stat;
        let mut info = self.info.read_rest(h.pid, &proc_pid, stat.clone());
        for _ in 0..3 {
            match InfoReader::read_stat(&proc_pid) {
                Some(again) if again != stat => {
                    stat = again;
                    info = self.info.read_rest(h.pid, &proc_pid, stat.clone());
                }
                _ => break,
            }
        }
        let info = Arc::new(info);
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(h.pid, info.clone());
        self.touch_hot(h.pid);
        Some(info)
    }

    fn touch_hot(&mut self, pid: u32) {
        if self.hot.front() == Some(&pid) {
            return;
        }
        self.hot.retain(|&p| p != pid);
        self.hot.push_front(pid);
        self.hot.truncate(HOT_PIDS);
    }

    fn finish(&mut self, i: usize, owner: Result<Arc<ProcessInfo>, Unattributed>) {
        let p = &mut self.pending[i];
        p.done = true;
        let prio = p.prio;
        if prio == Priority::Low {
            self.low_in_flight = self.low_in_flight.saturating_sub(1);
        }
        let (inode, uid) = match p.diag {
            Some(d) => (d.inode, (d.inode != 0).then_some(d.uid)),
            None => (0, None),
        };
        let c = &self.counters;
        match &owner {
            Ok(_) => c.attributed.fetch_add(1, Ordering::Relaxed),
            Err(Unattributed::NoSocket) => c.no_socket.fetch_add(1, Ordering::Relaxed),
            Err(Unattributed::SocketGone) => c.socket_gone.fetch_add(1, Ordering::Relaxed),
            Err(_) => 0,
        };
        let res = Resolution {
            query: p.query,
            owner,
            inode,
            uid,
            latency: p.submitted.elapsed(),
            attempts: p.attempts,
        };
        self.send(res, prio);
    }

    /// Schedule another round for a query, or answer it when out of retries.
    fn retry_or(&mut self, i: usize, now: Instant) {
        let p = &mut self.pending[i];
        let k = p.attempts as usize;
        if let Some(d) = self.cfg.retry_delays.get(k.saturating_sub(1)) {
            p.due = now + *d;
            return;
        }
        let why = if p.seen_socket && p.ns.is_some() {
            Unattributed::OtherNamespace
        } else if p.seen_socket {
            Unattributed::SocketGone
        } else {
            Unattributed::NoSocket
        };
        self.finish(i, Err(why));
    }

    fn round(&mut self) {
        let now = Instant::now();
        let mut misses = Vec::new();
        for i in 0..self.pending.len() {
            if self.pending[i].due > now {
                continue;
            }
            self.pending[i].attempts += 1;
            let q = self.pending[i].query;
            let attempts = self.pending[i].attempts as usize;
            let edge = attempts == 1 || attempts > self.cfg.retry_delays.len();
            let ns = self.pending[i].ns;
            let joined = self.pending[i].joined.take();
            let mut res = match (joined, ns.and_then(|ino| self.nets.as_mut()?.get_mut(ino))) {
                (Some(found), _) => Ok(found),
                (None, Some(sd)) => lookup_in(sd, q, &self.counters),
                (None, None) => lookup_in(&mut self.diag, q, &self.counters),
            };
            if joined.is_none() && ns.is_none() && edge && matches!(res, Ok(Found::Nothing)) {
                if let Some((ino, found)) = self.lookup_other(q) {
                    self.pending[i].ns = Some(ino);
                    res = Ok(found);
                }
            }
            match res {
                Ok(Found::Socket(rep)) => {
                    self.pending[i].diag = Some(rep);
                    self.pending[i].seen_socket = true;
                    let owner = self
                        .owner(rep.inode)
                        .or_else(|| self.owner_among_hot(rep.inode));
                    match owner {
                        Some(info) => self.finish(i, Ok(info)),
                        None => misses.push(i),
                    }
                }
                Ok(Found::Gone(rep)) => {
                    self.pending[i].diag = Some(rep);
                    self.finish(i, Err(Unattributed::SocketGone));
                }
                Ok(Found::Nothing) => {
                    self.pending[i].diag = None;
                    self.retry_or(i, now);
                }
                Err(_) => {
                    self.counters.diag_errors.fetch_add(1, Ordering::Relaxed);
                    self.retry_or(i, now);
                }
            }
        }
        if !misses.is_empty() {
            // Cheap first: pids born or exec'd a moment ago, and the owners of recent hits.
            let mut seen = HashSet::new();
            let cand: Vec<u32> = self
                .hot
                .iter()
                .copied()
                .chain(self.recent.iter().rev().map(|(p, _)| *p))
                .filter(|p| seen.insert(*p))
                .take(RECENT_SCAN_MAX + HOT_PIDS)
                .collect();
            // Last owners first (a busy client opens many sockets; a dead one
            // costs one failed open), then the newest processes, stopping as
            // soon as every missing inode is known: the owner of a new socket
            // is usually one of these, and
            // a short-lived one may close its socket within milliseconds.
            let want: Vec<u64> = misses
                .iter()
                .filter_map(|&i| self.pending[i].diag.map(|d| d.inode))
                .collect();
            let mut scanned = 0u64;
            for pid in &cand {
                self.index.scan_pid(*pid);
                scanned += 1;
                if want.iter().all(|ino| self.index.get(*ino).is_some()) {
                    break;
                }
            }
            self.counters
                .pid_scans
                .fetch_add(scanned, Ordering::Relaxed);
            misses = self.resolve_misses(misses);
            let full_ok = self
                .last_full
                .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.full_scan_interval);
            if !misses.is_empty() && full_ok {
                self.index.full_scan();
                self.last_full = Some(Instant::now());
                self.counters.full_scans.fetch_add(1, Ordering::Relaxed);
                misses = self.resolve_misses(misses);
            }
            let now = Instant::now();
            for i in misses {
                self.retry_or(i, now);
            }
        }
        self.pending.retain(|p| !p.done);
    }

    /// Look a flow up in every other network namespace in use.
    fn lookup_other(&mut self, q: SocketQuery) -> Option<(u64, Found)> {
        let nets = self.nets.as_mut()?;
        nets.refresh();
        for ino in nets.inodes() {
            let Some(sd) = nets.get_mut(ino) else {
                continue;
            };
            if let Ok(f @ (Found::Socket(_) | Found::Gone(_))) = lookup_in(sd, q, &self.counters) {
                self.counters.other_netns.fetch_add(1, Ordering::Relaxed);
                return Some((ino, f));
            }
        }
        None
    }

    /// Try the index again for each miss; returns those still unresolved.
    fn resolve_misses(&mut self, misses: Vec<usize>) -> Vec<usize> {
        let mut left = Vec::new();
        for i in misses {
            let Some(rep) = self.pending[i].diag else {
                continue;
            };
            let fresh = self
                .index
                .get(rep.inode)
                .and_then(|h| self.attribute(rep.inode, h, true));
            match fresh {
                Some(info) => self.finish(i, Ok(info)),
                None => left.push(i),
            }
        }
        left
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests;
