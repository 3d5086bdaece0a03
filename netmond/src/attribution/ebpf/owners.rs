//! Owners recorded by the kernel (tgid, comm, uid, when) turned into process
//! identities: /proc is read once per process, a reused pid is told apart by
//! its start time, and a process gone before it was read keeps the name the
//! kernel recorded.
//!
//! Where the kernel recorded the owner's start time (`start_ns`), (tgid,
//! start) is the identity, exact even for a process gone before /proc was
//! read. Otherwise a cached process answers for a record only if it was seen
//! alive after the record was made: pids are unique among live processes, so a process that
//! started before the record and was still there later held the pid then.
//! A record newer than that check costs one re-read of `stat` (at most once
//! per process per tick in practice); without it a reused pid (they wrap at
//! `pid_max`, 32,768 by default) was credited to the cached, older process.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::rec::RawOwner;
use crate::attribution::procmap::procinfo::{started_ms, InfoReader, ProcDir};
use crate::attribution::procmap::ProcessInfo;

/// Processes remembered; past this the least recently used half is dropped.
const MAX_OWNERS: usize = 16_384;
/// A process none of whose sockets was seen for this many ticks is forgotten
/// (read again if it comes back): thousands of short-lived processes must
/// not stay in memory until the bound.
const IDLE_TICKS: u64 = 30;

struct Entry {
    /// Process start, CLOCK_BOOTTIME ns (floor of /proc's clock ticks).
    start_ns: u64,
    /// CLOCK_BOOTTIME ns taken right before /proc showed this process alive.
    alive_ns: u64,
    info: Arc<ProcessInfo>,
    used: u64,
    /// Built from the kernel's record alone (the process was already gone).
    recorded_only: bool,
}

pub struct OwnerCache {
    reader: InfoReader,
    by_tgid: HashMap<u32, Entry>,
    tick: u64,
}

impl Default for OwnerCache {
    fn default() -> Self {
        Self::new()
    }
}

impl OwnerCache {
    pub fn new() -> OwnerCache {
        OwnerCache {
            reader: InfoReader::new(Path::new("/proc")),
            by_tgid: HashMap::new(),
            tick: 0,
        }
    }

    fn ns_per_tick(&self) -> u64 {
        1_000_000_000 / self.reader.clk_tck.max(1)
    }

    /// The process that owned the socket when the kernel recorded it.
    pub fn resolve(&mut self, o: &RawOwner) -> Arc<ProcessInfo> {
        if o.start_ns != 0 {
            return self.resolve_started(o);
        }
        let tick = self.tick;
        if let Some(e) = self.by_tgid.get_mut(&o.tgid) {
            // Started before the record and alive after it: it is the owner.
            if !e.recorded_only && e.start_ns <= o.recorded_ns && o.recorded_ns <= e.alive_ns {
                e.used = tick;
                return e.info.clone();
            }
        }
        // Before the read: the process the read finds was alive at this time.
        let checked_ns = boottime_ns();
        let dir = ProcDir::open(Path::new("/proc"), o.tgid);
        let stat = dir.as_ref().and_then(ProcDir::stat).zip(dir);
        let per_tick = self.ns_per_tick();
        let info = match stat {
            Some((st, dir)) if st.start_time.saturating_mul(per_tick) <= o.recorded_ns => {
                let start_ns = st.start_time.saturating_mul(per_tick);
                if let Some(e) = self.by_tgid.get_mut(&o.tgid) {
                    // The same process, seen alive again: no need to read the rest.
                    if !e.recorded_only && e.start_ns == start_ns {
                        e.alive_ns = e.alive_ns.max(checked_ns);
                        e.used = tick;
                        return e.info.clone();
                    }
                }
                let info = Arc::new(self.reader.read_rest(o.tgid, &dir, st));
                self.remember(o.tgid, start_ns, checked_ns, info.clone(), false);
                info
            }
            // Gone, or the pid now belongs to a younger process: what the kernel recorded.
            _ => {
                if let Some(e) = self.by_tgid.get_mut(&o.tgid) {
                    if e.recorded_only && e.info.name == o.comm() {
                        e.used = tick;
                        return e.info.clone();
                    }
                }
                let info = Arc::new(self.recorded_only(o));
                self.remember(o.tgid, o.recorded_ns, 0, info.clone(), true);
                info
            }
        };
        info
    }

    /// The owner's start is known: the cached or /proc's process is it only
    /// if it started then.
    fn resolve_started(&mut self, o: &RawOwner) -> Arc<ProcessInfo> {
        let tick = self.tick;
        let start = start_ticks(o.start_ns, self.reader.clk_tck);
        if let Some(e) = self.by_tgid.get_mut(&o.tgid) {
            if e.info.start_time == start {
                e.used = tick;
                return e.info.clone();
            }
        }
        let start_ns = start.saturating_mul(self.ns_per_tick());
        let dir = ProcDir::open(Path::new("/proc"), o.tgid);
        let stat = dir.as_ref().and_then(ProcDir::stat).zip(dir);
        let (info, recorded_only) = match stat {
            Some((st, dir)) if st.start_time == start => {
                (self.reader.read_rest(o.tgid, &dir, st), false)
            }
            // Gone, or the pid already belongs to another process.
            _ => {
                let mut info = self.recorded_only(o);
                info.start_time = start;
                info.started_ms = started_ms(self.reader.btime_s, start, self.reader.clk_tck);
                (info, true)
            }
        };
        let info = Arc::new(info);
        self.remember(o.tgid, start_ns, u64::MAX, info.clone(), recorded_only);
        info
    }

    fn recorded_only(&mut self, o: &RawOwner) -> ProcessInfo {
        ProcessInfo {
            pid: o.tgid,
            // Unknown here: (pid, 0) is the identity of an exited, unread
            // process unless the kernel recorded its start (then set by the caller).
            start_time: 0,
            name: o.comm(),
            exe: String::new(),
            cmdline: String::new(),
            cmdline_truncated: false,
            uid: o.uid,
            user: self.reader.user_name(o.uid),
            unit: String::new(),
            cgroup: String::new(),
            container: String::new(),
            netns: 0,
            started_ms: 0,
        }
    }

    fn remember(
        &mut self,
        tgid: u32,
        start_ns: u64,
        alive_ns: u64,
        info: Arc<ProcessInfo>,
        recorded_only: bool,
    ) {
        if self.by_tgid.len() >= MAX_OWNERS {
            let mut used: Vec<u64> = self.by_tgid.values().map(|e| e.used).collect();
            used.sort_unstable();
            let cut = used[used.len() / 2];
            self.by_tgid.retain(|_, e| e.used > cut);
        }
        self.by_tgid.insert(
            tgid,
            Entry {
                start_ns,
                alive_ns,
                info,
                used: self.tick,
                recorded_only,
            },
        );
    }

    pub fn end_tick(&mut self) {
        self.tick += 1;
        if self.tick.is_multiple_of(8) {
            let now = self.tick;
            self.by_tgid.retain(|_, e| now - e.used <= IDLE_TICKS);
        }
    }

    /// Gives back the room of a burst of processes.
    pub fn shrink_idle(&mut self) {
        crate::memory::shrink_map(&mut self.by_tgid);
    }

    pub fn len(&self) -> usize {
        self.by_tgid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tgid.is_empty()
    }
}

/// /proc's start time (clock ticks since boot) of a CLOCK_BOOTTIME start in
/// ns, rounded as the kernel rounds it (down).
pub fn start_ticks(start_ns: u64, clk_tck: u64) -> u64 {
    start_ns / (1_000_000_000 / clk_tck.clamp(1, 1_000_000_000))
}

/// The kernel's USER_HZ, as /proc counts.
pub fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// CLOCK_BOOTTIME now, ns: the clock the kernel's records use.
fn boottime_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        u64::try_from(t.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_of_self() -> RawOwner {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"self");
        RawOwner {
            tgid: std::process::id(),
            uid: 0,
            cgroup_id: 0,
            recorded_ns: boottime_ns(),
            start_ns: 0,
            comm,
            released: 0,
            pad: 0,
        }
    }

    #[test]
    fn a_reused_pid_is_not_credited_to_the_cached_older_process() {
        let mut cache = OwnerCache::new();
        let me = cache.resolve(&record_of_self());
        assert_eq!(me.pid, std::process::id());
        // Pretend an older process held this pid and was last seen alive
        // before the next record: its entry must not answer for it.
        let older = ProcessInfo {
            name: "older".to_owned(),
            start_time: 1,
            ..(*me).clone()
        };
        let seen = boottime_ns();
        cache.remember(std::process::id(), 1, seen, Arc::new(older), false);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let got = cache.resolve(&record_of_self());
        assert_eq!(got.name, me.name);
        assert_eq!(got.start_time, me.start_time);
        // A record made before that sighting is still the older process's.
        let mut early = record_of_self();
        early.recorded_ns = seen.saturating_sub(1);
        cache.remember(
            std::process::id(),
            1,
            seen,
            Arc::new(ProcessInfo {
                name: "older".to_owned(),
                ..(*me).clone()
            }),
            false,
        );
        assert_eq!(cache.resolve(&early).name, "older");
    }

    #[test]
    fn a_record_newer_than_the_last_sighting_keeps_the_same_process() {
        let mut cache = OwnerCache::new();
        let first = cache.resolve(&record_of_self());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let again = cache.resolve(&record_of_self());
        // Same process: the cached identity, not a new read of everything.
        assert!(Arc::ptr_eq(&first, &again));
    }
}
