//! Owners recorded by the kernel (tgid, comm, uid, when) turned into process
//! identities: /proc is read once per process, a reused pid is told apart by
//! its start time, and a process gone before it was read keeps the name the
//! kernel recorded.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::rec::RawOwner;
use crate::procmap::procinfo::{InfoReader, ProcDir};
use crate::procmap::ProcessInfo;

/// Processes remembered; past this the least recently used half is dropped.
const MAX_OWNERS: usize = 16_384;
/// A process none of whose sockets was seen for this many ticks is forgotten
/// (read again if it comes back): thousands of short-lived processes must
/// not stay in memory until the bound.
const IDLE_TICKS: u64 = 30;

struct Entry {
    /// Process start, CLOCK_BOOTTIME ns (floor of /proc's clock ticks).
    start_ns: u64,
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
        let tick = self.tick;
        if let Some(e) = self.by_tgid.get_mut(&o.tgid) {
            // The cached process started before the record was made: it is the owner.
            if !e.recorded_only && e.start_ns <= o.recorded_ns {
                e.used = tick;
                return e.info.clone();
            }
        }
        let dir = ProcDir::open(Path::new("/proc"), o.tgid);
        let stat = dir.as_ref().and_then(ProcDir::stat).zip(dir);
        let per_tick = self.ns_per_tick();
        let info = match stat {
            Some((st, dir)) if st.start_time.saturating_mul(per_tick) <= o.recorded_ns => {
                let start_ns = st.start_time.saturating_mul(per_tick);
                let info = Arc::new(self.reader.read_rest(o.tgid, &dir, st));
                self.remember(o.tgid, start_ns, info.clone(), false);
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
                self.remember(o.tgid, o.recorded_ns, info.clone(), true);
                info
            }
        };
        info
    }

    fn recorded_only(&mut self, o: &RawOwner) -> ProcessInfo {
        ProcessInfo {
            pid: o.tgid,
            // Unknown: (pid, 0) is the identity of an exited, unread process.
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

    fn remember(&mut self, tgid: u32, start_ns: u64, info: Arc<ProcessInfo>, recorded_only: bool) {
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
            if self.by_tgid.capacity() > 4 * self.by_tgid.len().max(256) {
                self.by_tgid.shrink_to_fit();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_tgid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tgid.is_empty()
    }
}
