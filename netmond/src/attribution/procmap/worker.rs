//! The resolver thread: takes queries off the channels, looks their sockets
//! up (per flow, or joined against a dump once the low queue is long),
//! finds the owning process through the inode index, retries misses on
//! their schedule and sends the answers. Everything here runs on that one
//! thread.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connector::ProcEvent;
use super::dumpjoin::{DumpIndex, LookupMode, ModeSwitch};
use super::fdindex::{FdIndex, Holder};
use super::netns::OtherNets;
use super::procinfo::{InfoReader, ProcDir};
use super::sockdiag::{self, DiagAnswer, DiagReply, SockDiag, IPPROTO_TCP, IPPROTO_UDP};
use super::{
    Counters, Msg, Priority, ProcessInfo, Resolution, ResolverConfig, SocketQuery, Unattributed,
};

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
pub(super) const LOW_CHANNEL: usize = 8 * 1024;
/// Low queries looked up one by one at once in per-flow mode.
const LOW_IN_FLIGHT: usize = 64;
/// Unread answers beyond which low-priority answers are dropped (counted).
const MAX_UNREAD: usize = 64 * 1024;

pub(super) struct Pending {
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

pub(super) struct Worker {
    pub(super) switch: ModeSwitch,
    /// Low-priority queries not yet looked up, oldest first.
    pub(super) low: VecDeque<(SocketQuery, Instant)>,
    pub(super) low_rx: Receiver<(SocketQuery, Instant)>,
    /// Low-priority queries in `pending`.
    pub(super) low_in_flight: usize,
    pub(super) next_dump: Instant,
    pub(super) dump_index: DumpIndex,
    pub(super) dump_buf: Vec<DiagReply>,
    pub(super) unread: Arc<AtomicUsize>,
    pub(super) cfg: ResolverConfig,
    pub(super) nets: Option<OtherNets>,
    pub(super) diag: SockDiag,
    pub(super) index: FdIndex,
    pub(super) info: InfoReader,
    pub(super) cache: HashMap<u32, Arc<ProcessInfo>>,
    pub(super) rx: Receiver<Msg>,
    pub(super) ev_rx: Option<Receiver<ProcEvent>>,
    pub(super) out: Sender<Resolution>,
    pub(super) recent: VecDeque<(u32, Instant)>,
    pub(super) hot: VecDeque<u32>,
    pub(super) last_full: Option<Instant>,
    pub(super) pending: Vec<Pending>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) counters: Arc<Counters>,
}

/// What one sock_diag round found for a query.
#[derive(Clone, Copy)]
pub(super) enum Found {
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
    pub(super) fn run(&mut self) {
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
        let dir = ProcDir::open(&self.cfg.proc_root, h.pid)?;
        let stat = dir.stat()?;
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
        let mut info = self.info.read_rest(h.pid, &dir, stat.clone());
        for _ in 0..3 {
            match dir.stat() {
                Some(again) if again != stat => {
                    stat = again;
                    info = self.info.read_rest(h.pid, &dir, stat.clone());
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
