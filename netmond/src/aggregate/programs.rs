//! Program rows: exited processes whose own rows are past their retention
//! fold into one row per program (name + exe + user + unit + container) with
//! exact totals, and a flood of random names into one catch-all row. Shared
//! by the capture rollup and the capture-free mode, so both bound the process
//! table the same way.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use netmon_proto::v1;

use super::rows::process_row;
use super::{Counts, ExitedRetention, Meter, ProcKey};
use crate::attribution::ProcessInfo;

/// Program rows kept; exited processes of further programs fold into one
/// catch-all row (a flood of random names must not grow the table).
const MAX_PROGRAMS: usize = 10_000;
/// An exited process folds only after this many ticks without a byte (the
/// last packets of its closed sockets come a moment after it exits).
pub(crate) const MIN_QUIET_TICKS: u32 = 3;
/// A process folded at most this many ticks ago whose identity shows up
/// again (its closed sockets' last packets: a peer's late FIN is answered up
/// to the 60 s FIN-WAIT-2 timeout) adds bytes to its program, not a process.
const REFOLD_TICKS: u64 = 120;
/// Folded identities remembered for that at most.
const MAX_RECENTLY_FOLDED: usize = 65_536;
// Memory they hold is given back once they have expired.
const _: () = assert!(crate::memory::SETTLED_TICKS as u64 > REFOLD_TICKS);
/// A process with no open connection is checked for exit every this many ticks.
const LIVENESS_EVERY: u64 = 5;
/// Name of the catch-all program row.
const OTHER_PROGRAMS: &str = "(other programs)";

/// Whether tick `tick` checks processes without connections for exit
/// (a /proc read each: not every tick).
pub(crate) fn liveness_due(tick: u64) -> bool {
    tick % LIVENESS_EVERY == 1
}

/// What makes processes one program: their exited rows fold into its row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProgramKey {
    name: String,
    exe: String,
    uid: u32,
    unit: String,
    container: String,
}

impl ProgramKey {
    fn of(p: &ProcessInfo) -> ProgramKey {
        ProgramKey {
            name: p.name.clone(),
            exe: p.exe.clone(),
            uid: p.uid,
            unit: p.unit.clone(),
            container: p.container.clone(),
        }
    }

    fn other() -> ProgramKey {
        ProgramKey {
            name: OTHER_PROGRAMS.to_owned(),
            exe: String::new(),
            uid: 0,
            unit: String::new(),
            container: String::new(),
        }
    }
}

/// The exact totals of a program's exited processes, folded into one row.
#[derive(Debug)]
struct ProgramRec {
    /// The last process folded in (its pid and start time are not shown).
    info: Arc<ProcessInfo>,
    meter: Meter,
    protocols: BTreeSet<&'static str>,
    folded: u32,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

/// An exited process's row as it folds into its program.
pub(crate) struct Exited {
    info: Arc<ProcessInfo>,
    /// Its totals, and what it counted in the tick being accumulated.
    total: Counts,
    tick: Counts,
    protocols: BTreeSet<&'static str>,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

impl Exited {
    /// `meter`: totals and the tick being accumulated; `seen`: first and last.
    pub(crate) fn new(
        info: Arc<ProcessInfo>,
        (total, tick): (Counts, Counts),
        protocols: BTreeSet<&'static str>,
        (first_seen_ms, last_seen_ms): (i64, i64),
    ) -> Exited {
        Exited {
            info,
            total,
            tick,
            protocols,
            first_seen_ms,
            last_seen_ms,
        }
    }
}

/// An exited process's own row, as a candidate for folding.
struct ExitedRow {
    /// The tick its exit was noticed.
    exited_tick: u64,
    last_seen_ms: i64,
    /// Ticks in a row without a byte.
    quiet_ticks: u32,
    key: ProcKey,
}

/// The program rows and what folding them needs to remember.
#[derive(Debug, Default)]
pub(crate) struct Programs {
    programs: HashMap<ProgramKey, ProgramRec>,
    /// The program a name first folded into with its exe known:
    /// where processes gone before /proc could be read (name only) go.
    program_of_name: HashMap<String, ProgramKey>,
    /// Folded since last taken (see `Rollup::folded`).
    folded_keys: Vec<ProcKey>,
    /// Exact identities (known start time) folded lately, with the tick.
    recently_folded: HashMap<ProcKey, u64>,
    retention: ExitedRetention,
}

impl Programs {
    /// How long, and how many, exited processes keep their own rows.
    pub(crate) fn set_retention(&mut self, r: ExitedRetention) {
        self.retention = r;
    }

    /// Folds the exited processes of `procs` that are due (see [`Programs::due`]):
    /// `exited` gives a process's row if it has exited, `into` what folds.
    pub(crate) fn fold_due<P>(
        &mut self,
        procs: &mut HashMap<ProcKey, P>,
        now: u64,
        tick_ms: u64,
        exited: impl Fn(&P) -> Option<(u64, i64, u32)>,
        into: impl Fn(P) -> Exited,
    ) {
        let rows: Vec<ExitedRow> = procs
            .iter()
            .filter_map(|(k, p)| {
                exited(p).map(|(exited_tick, last_seen_ms, quiet_ticks)| ExitedRow {
                    exited_tick,
                    last_seen_ms,
                    quiet_ticks,
                    key: *k,
                })
            })
            .collect();
        for k in self.due(now, tick_ms, rows) {
            if let Some(p) = procs.remove(&k) {
                self.fold(into(p), now);
            }
        }
    }

    /// Which exited rows fold at tick `now`: those gone longer than the
    /// retention, and the longest gone beyond its count, once quiet for
    /// `MIN_QUIET_TICKS`. `exited` holds every exited process's row.
    fn due(&mut self, now: u64, tick_ms: u64, exited: Vec<ExitedRow>) -> Vec<ProcKey> {
        if now.is_multiple_of(8) {
            self.recently_folded
                .retain(|_, t| now.saturating_sub(*t) <= REFOLD_TICKS);
        }
        let keep_ticks = self.retention.keep_ms.div_ceil(tick_ms.max(1));
        let count = exited.len();
        let mut quiet: Vec<(u64, i64, ProcKey)> = exited
            .into_iter()
            .filter(|e| e.quiet_ticks >= MIN_QUIET_TICKS)
            .map(|e| (e.exited_tick, e.last_seen_ms, e.key))
            .collect();
        quiet.sort_unstable();
        let over = count.saturating_sub(self.retention.keep_max);
        let mut out = Vec::new();
        for (i, (since, _, k)) in quiet.into_iter().enumerate() {
            if i >= over && now.saturating_sub(since) < keep_ticks {
                // Sorted by exit: the rest left later.
                break;
            }
            out.push(k);
        }
        out
    }

    /// Adds an exited process's totals to its program's row, at tick `now`.
    pub(crate) fn fold(&mut self, p: Exited, now: u64) {
        let id = (p.info.pid, p.info.start_time);
        self.folded_keys.push(id);
        // Start time 0 is "never read": such a pid may be a different process.
        let again = id.1 != 0 && self.recently_folded.contains_key(&id);
        if id.1 != 0 {
            if self.recently_folded.len() >= MAX_RECENTLY_FOLDED {
                let mut at: Vec<u64> = self.recently_folded.values().copied().collect();
                at.sort_unstable();
                let cut = at[at.len() / 2];
                self.recently_folded.retain(|_, t| *t > cut);
            }
            self.recently_folded.insert(id, now);
        }
        let mut key = ProgramKey::of(&p.info);
        let by_name = key.name.clone();
        if key.exe.is_empty() {
            // Gone (or a zombie) before /proc could be read: its name is all
            // that is sure (the uid may be unreadable), so it joins the first
            // program of that name.
            key.uid = u32::MAX;
            key.unit.clear();
            key.container.clear();
            if let Some(k) = self.program_of_name.get(&by_name) {
                key = k.clone();
            }
        } else if !self.program_of_name.contains_key(&by_name)
            && self.program_of_name.len() < MAX_PROGRAMS
        {
            let partial = ProgramKey {
                exe: String::new(),
                uid: u32::MAX,
                unit: String::new(),
                container: String::new(),
                ..key.clone()
            };
            // Name-only processes folded before one was read: they join it.
            if let Some(g) = self.programs.remove(&partial) {
                self.programs.insert(key.clone(), g);
            }
            self.program_of_name.insert(by_name, key.clone());
        }
        let overflow = !self.programs.contains_key(&key) && self.programs.len() >= MAX_PROGRAMS;
        if overflow {
            key = ProgramKey::other();
        }
        let info = if overflow {
            Arc::new(ProcessInfo {
                pid: 0,
                start_time: 0,
                name: OTHER_PROGRAMS.to_owned(),
                exe: String::new(),
                cmdline: String::new(),
                cmdline_truncated: false,
                uid: 0,
                user: String::new(),
                unit: String::new(),
                cgroup: String::new(),
                container: String::new(),
                netns: 0,
                started_ms: 0,
            })
        } else {
            p.info.clone()
        };
        let g = self.programs.entry(key).or_insert_with(|| ProgramRec {
            info: info.clone(),
            meter: Meter::default(),
            protocols: BTreeSet::new(),
            folded: 0,
            first_seen_ms: p.first_seen_ms,
            last_seen_ms: p.last_seen_ms,
        });
        // The row shows the last process folded in, unless it is name-only.
        if !info.exe.is_empty() || g.info.exe.is_empty() {
            g.info = info;
        }
        g.meter.total.add(&p.total);
        g.meter.tick.add(&p.tick);
        g.protocols.extend(p.protocols);
        if !again {
            g.folded = g.folded.saturating_add(1);
        }
        g.first_seen_ms = g.first_seen_ms.min(p.first_seen_ms);
        g.last_seen_ms = g.last_seen_ms.max(p.last_seen_ms);
    }

    /// One row per program: pid 0, not alive, `folded_processes` set.
    pub(crate) fn rows(&self, tick_ms: u64) -> impl Iterator<Item = v1::ProcessRow> + '_ {
        self.programs.values().map(move |g| {
            let mut row = process_row(
                &g.info,
                g.meter.traffic(tick_ms),
                g.protocols.iter().map(|s| (*s).to_owned()).collect(),
                0,
                false,
                (g.first_seen_ms, g.last_seen_ms),
            );
            // The folded processes' own identities are not shown.
            if let Some(id) = row.process.as_mut() {
                id.pid = 0;
                id.start_time = 0;
                id.netns = 0;
                id.started_ms = 0;
            }
            row.folded_processes = g.folded;
            row
        })
    }

    /// The program rows' meters (for totals).
    pub(crate) fn meters(&self) -> impl Iterator<Item = &Meter> + '_ {
        self.programs.values().map(|g| &g.meter)
    }

    /// All program rows' bytes: totals, and the last full tick's.
    pub(crate) fn sum(&self) -> (Counts, Counts) {
        let mut total = Counts::default();
        let mut last = Counts::default();
        for g in self.programs.values() {
            total.add(&g.meter.total);
            last.add(&g.meter.last);
        }
        (total, last)
    }

    /// Program rows, and the exited processes they hold.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.programs.len() as u64,
            self.programs.values().map(|g| u64::from(g.folded)).sum(),
        )
    }

    /// Processes folded since the last call.
    pub(crate) fn take_folded(&mut self) -> Vec<ProcKey> {
        std::mem::take(&mut self.folded_keys)
    }

    /// Starts the next tick (rates come from the last full one).
    pub(crate) fn rotate(&mut self) {
        self.programs.values_mut().for_each(|g| g.meter.rotate());
    }

    /// Forgets the program rows (totals reset).
    pub(crate) fn clear(&mut self) {
        self.programs.clear();
        self.program_of_name.clear();
    }

    /// See `memory::shrink_map`.
    pub(crate) fn shrink_idle(&mut self) {
        crate::memory::shrink_map(&mut self.recently_folded);
    }
}
