//! procmap: socket -> process attribution for new flows. Owns its threads, the
//! sock_diag socket, the inode -> pid index and the proc connector; never runs on the
//! capture path and never blocks a submitter (bounded queue, counted drops).
//!
//! How one query is answered (on the resolver thread, `worker`):
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
mod worker;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::attribution::ProcessInfo;
pub use connector::ProcEvent;
pub use dumpjoin::LookupMode;
pub use procinfo::{
    parse_btime, parse_cgroup, parse_cmdline, parse_status_uid, unit_from_cgroup, Stat, CMDLINE_MAX,
};
pub use sockdiag::{DiagAnswer, DiagReply};
pub use tcpsample::{TcpSample, TcpSampler};

use dumpjoin::{DumpIndex, ModeSwitch};
use fdindex::FdIndex;
use netns::OtherNets;
use procinfo::{InfoReader, ProcDir};
use sockdiag::SockDiag;
use worker::{Found, Worker, LOW_CHANNEL};

/// Whether the process (pid, start time) still exists: a reused pid with
/// another start time is another process.
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    start_time_of(pid) == Some(start_time)
}

/// The start time (clock ticks after boot) of the process `pid` now, if any.
pub fn start_time_of(pid: u32) -> Option<u64> {
    ProcDir::open(std::path::Path::new("/proc"), pid)?
        .stat()
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

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests;
