//! Thresholds and alerts: the rule set (config defaults + API rules) and the
//! per-tick evaluator (hysteresis, peaks, daily quotas, new-process notices).
//! Pure: time comes in as `now_ms`; the state file and the hook are the I/O edges.

pub mod hook;
pub mod state;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use netmon_proto::v1::{self, Direction, ThresholdKind};
use netmon_proto::zone::Zone;

/// One day of 24 hours in milliseconds (a local day may be 23 or 25).
pub const DAY_MS: i64 = 86_400_000;
/// Executables remembered for the new-process notice; the oldest are forgotten.
pub const MAX_SEEN_EXES: usize = 4096;
/// Process names whose bytes are counted toward daily quotas, per local day.
const MAX_DAY_NAMES: usize = 65_536;
/// Pids a program alert lists; `pids_seen` counts on.
pub const MAX_ALERT_PIDS: usize = 64;
/// Distinct pids remembered per program alert (what `pids_seen` counts to).
const MAX_TRACK_PIDS: usize = 1024;
/// First id given to an API rule; config rules are numbered 1.. below it.
const FIRST_API_ID: u64 = 100;
/// API rules kept at most; the API refuses more.
pub const MAX_API_RULES: usize = 1000;
/// Longest process name a rule may name, bytes.
pub const MAX_RULE_NAME: usize = 256;
const DIRECTIONS: [Direction; 3] = [Direction::Up, Direction::Down, Direction::Total];

/// Hysteresis: how many consecutive ticks above (below) open (close) an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub open_after_ticks: u32,
    pub close_after_ticks: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            open_after_ticks: 3,
            close_after_ticks: 3,
        }
    }
}

/// Rules from the config file. They show with source "config" and cannot be
/// cleared over the API; an API rule with the same selector overrides them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRules {
    /// Rate for every program (its processes summed), bytes/s, direction total.
    pub default_process_rate: Option<u64>,
    /// Rate of the whole host, bytes/s, direction total.
    pub host_rate: Option<u64>,
    /// Bytes per local day per process name, direction total.
    pub default_daily_quota: Option<u64>,
    pub new_process_notice: bool,
}

/// What survives a restart: the API rules and the executables already seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Persisted {
    pub thresholds: Vec<v1::Threshold>,
    pub next_id: u64,
    pub seen_exes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// What an alert is about: one process (pid rules), one program (name and
/// default rules), one process name (quotas), the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Process { pid: u32, start_time: u64 },
    Program { name: String, exe: String },
    Name(String),
    Host,
}

type Key = (Subject, ThresholdKind, Direction);

#[derive(Debug, Default)]
struct Track {
    /// Consecutive ticks above / below the threshold.
    above: u32,
    below: u32,
    /// When the current run above began, and its highest value.
    run_start_ms: i64,
    run_peak: u64,
    /// A program's pids that moved bytes in the run above and while open.
    pids: BTreeSet<u32>,
    open: Option<v1::Alert>,
}

/// One program in a tick: its rows (processes of one name and exe, exited
/// ones and folded program rows included) and their summed rates.
struct Program {
    name: String,
    exe: String,
    /// Who the alert names: the busiest process's identity without its pid.
    identity: v1::ProcessIdentity,
    up_bps: u64,
    down_bps: u64,
    rows: Vec<usize>,
}

/// Groups rows into programs by name and exe. A row whose exe is unknown
/// (the process was gone before /proc could be read) joins the program of
/// its name with the first exe in byte order: deterministic, and a guess only
/// when one name runs several exes.
fn programs_of(rows: &[v1::ProcessRow]) -> Vec<Program> {
    let mut exes: HashMap<&str, &str> = HashMap::new();
    for p in rows.iter().filter_map(|r| r.process.as_ref()) {
        if !p.exe.is_empty() {
            let e = exes.entry(p.name.as_str()).or_insert(p.exe.as_str());
            if p.exe.as_str() < *e {
                *e = p.exe.as_str();
            }
        }
    }
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut out: Vec<Program> = Vec::new();
    let mut busiest: Vec<u64> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let Some(p) = r.process.as_ref() else {
            continue;
        };
        let exe = if p.exe.is_empty() {
            exes.get(p.name.as_str()).copied().unwrap_or("")
        } else {
            p.exe.as_str()
        };
        let t = r.traffic.unwrap_or_default();
        let k = *index.entry((p.name.as_str(), exe)).or_insert_with(|| {
            out.push(Program {
                name: p.name.clone(),
                exe: exe.to_owned(),
                identity: program_identity(p),
                up_bps: 0,
                down_bps: 0,
                rows: Vec::new(),
            });
            busiest.push(0);
            out.len() - 1
        });
        let g = &mut out[k];
        g.up_bps = g.up_bps.saturating_add(t.up_bps);
        g.down_bps = g.down_bps.saturating_add(t.down_bps);
        g.rows.push(i);
        let rate = t.up_bps.saturating_add(t.down_bps);
        if rate > busiest[k] && !p.exe.is_empty() {
            busiest[k] = rate;
            g.identity = program_identity(p);
        }
    }
    out
}

/// A process's identity as the program's: what one process alone has (pid,
/// start, cmdline) is left out.
fn program_identity(p: &v1::ProcessIdentity) -> v1::ProcessIdentity {
    v1::ProcessIdentity {
        pid: 0,
        start_time: 0,
        cmdline: String::new(),
        cmdline_truncated: false,
        netns: 0,
        started_ms: 0,
        ..p.clone()
    }
}

/// The pids an alert lists, and how many were seen.
fn listed(pids: &BTreeSet<u32>) -> (Vec<u32>, u32) {
    (
        pids.iter().copied().take(MAX_ALERT_PIDS).collect(),
        pids.len() as u32,
    )
}

/// `curl (pids 10, 11 and 3 more)`: a program alert's subject in messages.
fn who_program(name: &str, pids: &[u32], seen: u32) -> String {
    if pids.is_empty() {
        return name.to_owned();
    }
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let more = (seen as usize).saturating_sub(pids.len());
    let word = if seen == 1 { "pid" } else { "pids" };
    if more > 0 {
        format!("{name} ({word} {list} and {more} more)")
    } else {
        format!("{name} ({word} {list})")
    }
}

/// Result of one tick.
#[derive(Debug, Default)]
pub struct TickOutcome {
    /// Alerts opened or closed this tick (notices arrive already closed).
    pub alerts: Vec<v1::Alert>,
    /// The persisted part changed (new executable seen): save it.
    pub persist: bool,
}

pub struct Evaluator {
    settings: Settings,
    config_rules: Vec<v1::Threshold>,
    api_rules: Vec<v1::Threshold>,
    next_id: u64,
    next_alert_id: u64,
    tracks: HashMap<Key, Track>,
    /// Start (ms) of the local day of the quota counters.
    day: Option<i64>,
    /// The zone whose midnight resets quotas (UTC until `set_zone`).
    zone: Zone,
    /// Last cumulative (up, down) per process (pid, start time).
    last_totals: HashMap<(u32, u64), (u64, u64)>,
    /// Bytes (up, down) moved today per process name.
    day_bytes: HashMap<String, (u64, u64)>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
}

fn dir_of(raw: i32) -> Direction {
    Direction::try_from(raw).unwrap_or(Direction::Unspecified)
}

fn kind_of(raw: i32) -> ThresholdKind {
    ThresholdKind::try_from(raw).unwrap_or(ThresholdKind::Unspecified)
}

/// CLI spelling of a kind (`--kind` values), used in messages and the hook.
pub fn kind_name(kind: ThresholdKind) -> &'static str {
    match kind {
        ThresholdKind::ProcessRate => "rate",
        ThresholdKind::HostRate => "host",
        ThresholdKind::DailyQuota => "quota",
        ThresholdKind::NewProcess => "new-process",
        ThresholdKind::Unspecified => "unspecified",
    }
}

pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Up => "up",
        Direction::Down => "down",
        Direction::Total => "total",
        Direction::Unspecified => "",
    }
}

/// `1.5 MiB` with binary units, for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn pick(traffic: &v1::Traffic, d: Direction) -> u64 {
    match d {
        Direction::Up => traffic.up_bps,
        Direction::Down => traffic.down_bps,
        _ => traffic.up_bps.saturating_add(traffic.down_bps),
    }
}

fn pick_pair((up, down): (u64, u64), d: Direction) -> u64 {
    match d {
        Direction::Up => up,
        Direction::Down => down,
        _ => up.saturating_add(down),
    }
}

fn who(p: Option<&v1::ProcessIdentity>) -> String {
    match p {
        Some(p) if p.pid != 0 => format!("{} (pid {})", p.name, p.pid),
        Some(p) => p.name.clone(),
        None => "host".to_owned(),
    }
}

fn clamp(settings: Settings) -> Settings {
    Settings {
        open_after_ticks: settings.open_after_ticks.max(1),
        close_after_ticks: settings.close_after_ticks.max(1),
    }
}

/// The config file's rules, numbered from 1.
fn config_rules(config: &ConfigRules, now_ms: i64) -> Vec<v1::Threshold> {
    let mut config_rules = Vec::new();
    let mut add = |kind: ThresholdKind, direction: Direction, value: u64| {
        config_rules.push(v1::Threshold {
            id: config_rules.len() as u64 + 1,
            kind: kind as i32,
            direction: direction as i32,
            value,
            process_name: String::new(),
            pid: 0,
            source: "config".into(),
            created_ms: now_ms,
            pid_start_time: 0,
        });
    };
    if let Some(v) = config.default_process_rate {
        add(ThresholdKind::ProcessRate, Direction::Total, v);
    }
    if let Some(v) = config.host_rate {
        add(ThresholdKind::HostRate, Direction::Total, v);
    }
    if let Some(v) = config.default_daily_quota {
        add(ThresholdKind::DailyQuota, Direction::Total, v);
    }
    if config.new_process_notice {
        add(ThresholdKind::NewProcess, Direction::Unspecified, 0);
    }
    config_rules
}

impl Evaluator {
    pub fn new(settings: Settings, config: &ConfigRules, now_ms: i64) -> Evaluator {
        Evaluator {
            settings: clamp(settings),
            config_rules: config_rules(config, now_ms),
            api_rules: Vec::new(),
            next_id: FIRST_API_ID,
            // Unique across restarts without a counter on disk.
            next_alert_id: u64::try_from(now_ms).unwrap_or(1).max(1),
            tracks: HashMap::new(),
            day: None,
            zone: Zone::utc(),
            last_totals: HashMap::new(),
            day_bytes: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// A reloaded config: new hysteresis and config rules; API rules, open
    /// alerts and counters stay. An alert whose rule went closes on the next
    /// tick, as when an API rule is cleared.
    pub fn reconfigure(&mut self, settings: Settings, config: &ConfigRules, now_ms: i64) {
        self.settings = clamp(settings);
        let mut rules = config_rules(config, now_ms);
        // Rules that did not change keep their creation time.
        for r in &mut rules {
            if let Some(old) = self
                .config_rules
                .iter()
                .find(|o| o.kind == r.kind && o.direction == r.direction && o.value == r.value)
            {
                r.created_ms = old.created_ms;
            }
        }
        self.config_rules = rules;
    }

    /// Daily quotas reset at midnight of `zone` (the daemon's local zone).
    pub fn set_zone(&mut self, zone: Zone) {
        self.zone = zone;
    }

    // ------------------------------------------------------------ rules

    /// Config rules first, then API rules.
    pub fn thresholds(&self) -> Vec<v1::Threshold> {
        self.config_rules
            .iter()
            .chain(&self.api_rules)
            .cloned()
            .collect()
    }

    pub fn persisted(&self) -> Persisted {
        Persisted {
            thresholds: self.api_rules.clone(),
            next_id: self.next_id,
            seen_exes: self.seen_order.iter().cloned().collect(),
        }
    }

    /// Restores what a previous run saved (API rules keep their ids).
    /// Takes saved rules back. A pid rule whose process is gone (`alive`
    /// says no for its pid and start time) is dropped: its pid may belong to
    /// another process by now. Returns the rules dropped.
    pub fn restore(
        &mut self,
        p: Persisted,
        alive: impl Fn(u32, u64) -> bool,
    ) -> Vec<v1::Threshold> {
        let max_id = p.thresholds.iter().map(|t| t.id).max().unwrap_or(0);
        self.next_id = p.next_id.max(max_id + 1).max(FIRST_API_ID);
        let (keep, dropped): (Vec<_>, Vec<_>) = p
            .thresholds
            .into_iter()
            .map(|mut t| {
                t.source = "api".into();
                t
            })
            .partition(|t| t.pid == 0 || (t.pid_start_time != 0 && alive(t.pid, t.pid_start_time)));
        self.api_rules = keep;
        self.seen.clear();
        self.seen_order.clear();
        for exe in p.seen_exes {
            self.remember(exe);
        }
        dropped
    }

    /// Adds or replaces (same kind, direction and selector) an API rule.
    /// `pid_start_time` is the start time of the process `req.pid` names
    /// (ignored for other rules).
    pub fn set(
        &mut self,
        req: v1::SetThresholdRequest,
        pid_start_time: u64,
        now_ms: i64,
    ) -> Result<v1::Threshold, RuleError> {
        let bad = |m: &str| Err(RuleError(m.to_owned()));
        if req.process_name.len() > MAX_RULE_NAME {
            return Err(RuleError(format!(
                "process name of {} bytes: at most {MAX_RULE_NAME}",
                req.process_name.len()
            )));
        }
        if req.process_name.chars().any(char::is_control) {
            return bad("process name with control characters");
        }
        let kind = match kind_of(req.kind) {
            ThresholdKind::Unspecified => ThresholdKind::ProcessRate,
            k => k,
        };
        let direction = match (kind, dir_of(req.direction)) {
            (ThresholdKind::NewProcess, _) => Direction::Unspecified,
            (_, Direction::Unspecified) => Direction::Total,
            (_, d) => d,
        };
        let selector = !req.process_name.is_empty() || req.pid != 0;
        if kind != ThresholdKind::NewProcess && req.value == 0 {
            return bad("threshold value must be greater than 0");
        }
        if !req.process_name.is_empty() && req.pid != 0 {
            return bad("give a process name or a pid, not both");
        }
        match kind {
            ThresholdKind::HostRate if selector => {
                return bad("a host threshold takes no process selector")
            }
            ThresholdKind::NewProcess if selector => {
                return bad("the new-process notice takes no process selector")
            }
            ThresholdKind::DailyQuota if req.pid != 0 => {
                return bad("a daily quota counts per process name: use --process, not --pid")
            }
            _ => {}
        }
        self.api_rules.retain(|t| {
            !(t.kind == kind as i32
                && t.direction == direction as i32
                && t.process_name == req.process_name
                && t.pid == req.pid)
        });
        if self.api_rules.len() >= MAX_API_RULES {
            return Err(RuleError(format!(
                "{MAX_API_RULES} threshold rules already: clear some first"
            )));
        }
        let t = v1::Threshold {
            id: self.next_id,
            kind: kind as i32,
            direction: direction as i32,
            value: if kind == ThresholdKind::NewProcess {
                0
            } else {
                req.value
            },
            process_name: req.process_name,
            pid: req.pid,
            source: "api".into(),
            created_ms: now_ms,
            pid_start_time: if req.pid != 0 { pid_start_time } else { 0 },
        };
        self.next_id += 1;
        self.api_rules.push(t.clone());
        Ok(t)
    }

    /// Removes API rules; config rules are never removed (they come back
    /// with the file anyway). Returns how many went.
    pub fn clear(&mut self, req: &v1::ClearThresholdsRequest) -> Result<u32, RuleError> {
        let selective = req.id != 0
            || !req.process_name.is_empty()
            || req.pid != 0
            || req.kind != 0
            || req.default_rule;
        if !req.all && !selective {
            return Err(RuleError(
                "say what to clear: --all, --id, --process, --pid or --default".into(),
            ));
        }
        if req.id != 0 && self.config_rules.iter().any(|t| t.id == req.id) {
            return Err(RuleError(format!(
                "threshold {} comes from the config file: change it there, or override it with `threshold set`",
                req.id
            )));
        }
        let before = self.api_rules.len();
        self.api_rules.retain(|t| {
            let kind_ok = req.kind == 0 || t.kind == req.kind;
            let hit = if req.all {
                kind_ok
            } else if req.id != 0 {
                t.id == req.id
            } else if !req.process_name.is_empty() {
                t.process_name == req.process_name && kind_ok
            } else if req.pid != 0 {
                t.pid == req.pid && kind_ok
            } else if req.default_rule {
                t.process_name.is_empty() && t.pid == 0 && kind_ok
            } else {
                kind_ok
            };
            !hit
        });
        Ok((before - self.api_rules.len()) as u32)
    }

    /// The rule in force: pid beats name beats default; API beats config.
    /// `pid` 0 asks for a program's rule (name or default) only.
    fn rule(
        &self,
        kind: ThresholdKind,
        direction: Direction,
        process: (u32, u64),
        name: &str,
    ) -> Option<&v1::Threshold> {
        let (pid, start) = process;
        let rank = |t: &v1::Threshold| -> Option<u8> {
            if t.kind != kind as i32 || t.direction != direction as i32 {
                None
            } else if t.pid != 0 {
                (pid != 0 && same_process(t, pid, start)).then_some(3)
            } else if !t.process_name.is_empty() {
                (t.process_name == name).then_some(2)
            } else {
                Some(1)
            }
        };
        self.api_rules
            .iter()
            .map(|t| (t, 1u8))
            .chain(self.config_rules.iter().map(|t| (t, 0u8)))
            .filter_map(|(t, api)| rank(t).map(|r| ((r, api), t)))
            .max_by_key(|(r, _)| *r)
            .map(|(_, t)| t)
    }

    /// The pid rule for one process (pid, start time), if there is one.
    fn pid_rule(
        &self,
        kind: ThresholdKind,
        direction: Direction,
        process: (u32, u64),
    ) -> Option<u64> {
        self.rule(kind, direction, process, "")
            .filter(|t| process.0 != 0 && same_process(t, process.0, process.1))
            .map(|t| t.value)
    }

    fn notices_enabled(&self) -> bool {
        self.config_rules
            .iter()
            .chain(&self.api_rules)
            .any(|t| t.kind == ThresholdKind::NewProcess as i32)
    }

    /// Adds an executable to the bounded seen set; true if it was new.
    fn remember(&mut self, exe: String) -> bool {
        if self.seen.contains(&exe) {
            return false;
        }
        if self.seen_order.len() >= MAX_SEEN_EXES {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(exe.clone());
        self.seen_order.push_back(exe);
        true
    }

    /// Alerts currently open.
    pub fn open_alerts(&self) -> Vec<v1::Alert> {
        self.tracks
            .values()
            .filter_map(|t| t.open.clone())
            .collect()
    }

    // ------------------------------------------------------------ evaluation

    fn alert_id(&mut self) -> u64 {
        let id = self.next_alert_id;
        self.next_alert_id += 1;
        id
    }

    /// One hysteresis step for a rate; returns an alert that opened or closed.
    /// `pids` is given for a program: the processes that moved bytes this tick.
    fn step_rate(
        &mut self,
        key: Key,
        value: u64,
        threshold: u64,
        process: Option<&v1::ProcessIdentity>,
        pids: Option<&[u32]>,
        now_ms: i64,
    ) -> Option<v1::Alert> {
        let (open_after, close_after) = (
            self.settings.open_after_ticks,
            self.settings.close_after_ticks,
        );
        let id = self.next_alert_id;
        let (kind, direction) = (key.1, key.2);
        let program = match &key.0 {
            Subject::Program { name, .. } => Some(name.clone()),
            _ => None,
        };
        let t = self.tracks.entry(key).or_default();
        if value > threshold {
            if t.above == 0 && t.open.is_none() {
                t.pids.clear();
            }
            if t.above == 0 {
                t.run_start_ms = now_ms;
                t.run_peak = 0;
            }
            t.above = t.above.saturating_add(1);
            t.below = 0;
            t.run_peak = t.run_peak.max(value);
        } else if t.open.is_none() {
            t.above = 0;
            t.run_peak = 0;
            t.pids.clear();
            return None;
        }
        let mut grew = false;
        for &pid in pids.unwrap_or_default() {
            if t.pids.len() < MAX_TRACK_PIDS && t.pids.insert(pid) {
                grew = true;
            }
        }
        if value > threshold {
            if let Some(a) = t.open.as_mut() {
                a.peak = a.peak.max(value);
                if grew {
                    (a.pids, a.pids_seen) = listed(&t.pids);
                }
                return None;
            }
            if t.above < open_after {
                return None;
            }
            let (pids, pids_seen) = if program.is_some() {
                listed(&t.pids)
            } else {
                (Vec::new(), 0)
            };
            let what = match &program {
                Some(name) => who_program(name, &pids[..pids.len().min(8)], pids_seen),
                None => who(process),
            };
            let dir = direction_name(direction);
            let a = v1::Alert {
                id,
                kind: kind as i32,
                state: v1::AlertState::Open as i32,
                direction: direction as i32,
                process: process.cloned(),
                threshold,
                value,
                peak: t.run_peak,
                started_ms: t.run_start_ms,
                ended_ms: 0,
                message: format!(
                    "{what}: {dir} rate {}/s above the threshold of {}/s",
                    human_bytes(value),
                    human_bytes(threshold)
                ),
                pids,
                pids_seen,
            };
            t.open = Some(a.clone());
            self.next_alert_id += 1;
            Some(a)
        } else {
            t.above = 0;
            t.run_peak = 0;
            if grew {
                if let Some(a) = t.open.as_mut() {
                    (a.pids, a.pids_seen) = listed(&t.pids);
                }
            }
            t.below = t.below.saturating_add(1);
            if t.below < close_after {
                return None;
            }
            let mut a = t.open.take()?;
            t.below = 0;
            t.pids.clear();
            a.state = v1::AlertState::Closed as i32;
            a.ended_ms = now_ms;
            let what = match &program {
                Some(name) => who_program(name, &a.pids[..a.pids.len().min(8)], a.pids_seen),
                None => who(a.process.as_ref()),
            };
            a.message = format!(
                "{what}: {} rate back under {}/s (peak {}/s)",
                direction_name(direction),
                human_bytes(threshold),
                human_bytes(a.peak)
            );
            Some(a)
        }
    }

    /// Evaluates one tick: `rows` get `over_threshold` / `threshold_bps` set.
    pub fn evaluate(
        &mut self,
        rows: &mut [v1::ProcessRow],
        totals: &v1::Traffic,
        now_ms: i64,
    ) -> TickOutcome {
        let mut out = TickOutcome::default();
        let mut visited: HashSet<Key> = HashSet::new();

        // Quotas: a new local day closes every quota alert and zeroes the counters.
        let today = self.zone.start_of_day(now_ms);
        if self.day.is_some_and(|d| d != today) {
            self.day_bytes.clear();
            let keys: Vec<Key> = self
                .tracks
                .keys()
                .filter(|k| k.1 == ThresholdKind::DailyQuota)
                .cloned()
                .collect();
            for k in keys {
                if let Some(mut a) = self.tracks.remove(&k).and_then(|t| t.open) {
                    a.state = v1::AlertState::Closed as i32;
                    a.ended_ms = today;
                    a.message = format!(
                        "{}: daily quota reset at midnight {}",
                        who(a.process.as_ref()),
                        if self.zone.is_utc() {
                            "UTC"
                        } else {
                            "(local time)"
                        }
                    );
                    out.alerts.push(a);
                }
            }
        }
        self.day = Some(today);

        // Per-day bytes from deltas of cumulative totals; a total that went
        // down (reset, new run) starts over from zero.
        let mut last = HashMap::with_capacity(rows.len());
        // Process that moved the most bytes this tick, per name: named in quota alerts.
        let mut mover: HashMap<String, (u64, usize)> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            // A program row's bytes were counted under its processes' pids.
            if r.folded_processes > 0 {
                continue;
            }
            // A flood of new names a day must not grow the counters without end.
            if self.day_bytes.len() >= MAX_DAY_NAMES
                && !r
                    .process
                    .as_ref()
                    .is_some_and(|p| self.day_bytes.contains_key(&p.name))
            {
                continue;
            }
            let (Some(p), Some(t)) = (r.process.as_ref(), r.traffic.as_ref()) else {
                continue;
            };
            let cur = (t.up_bytes, t.down_bytes);
            let prev = self
                .last_totals
                .get(&(p.pid, p.start_time))
                .copied()
                .unwrap_or((0, 0));
            let d = |c: u64, p: u64| if c >= p { c - p } else { c };
            let delta = (d(cur.0, prev.0), d(cur.1, prev.1));
            let e = self.day_bytes.entry(p.name.clone()).or_default();
            e.0 = e.0.saturating_add(delta.0);
            e.1 = e.1.saturating_add(delta.1);
            let m = mover.entry(p.name.clone()).or_insert((0, i));
            if delta.0 + delta.1 > m.0 {
                *m = (delta.0 + delta.1, i);
            }
            last.insert((p.pid, p.start_time), cur);
        }
        self.last_totals = last;

        // Rates. A pid rule judges its one process; a name or default rule
        // judges the program: its processes summed, exited ones included
        // (their rows keep the rate of their last tick), so a program whose
        // processes each live less than the hysteresis is still judged.
        // A row shows the rule that judges it and whether that is over.
        let mut row_rule: Vec<(bool, Option<u64>)> = vec![(false, None); rows.len()];
        let in_force = |prev: Option<u64>, d: Direction, th: u64| match (d, prev) {
            (Direction::Total, _) | (_, None) => th,
            (_, Some(prev)) => prev.min(th),
        };
        for (i, r) in rows.iter().enumerate() {
            if r.folded_processes > 0 {
                continue;
            }
            let Some(p) = r.process.as_ref() else {
                continue;
            };
            let traffic = r.traffic.unwrap_or_default();
            for d in DIRECTIONS {
                let Some(th) = self.pid_rule(ThresholdKind::ProcessRate, d, (p.pid, p.start_time))
                else {
                    continue;
                };
                let value = pick(&traffic, d);
                let key = (
                    Subject::Process {
                        pid: p.pid,
                        start_time: p.start_time,
                    },
                    ThresholdKind::ProcessRate,
                    d,
                );
                visited.insert(key.clone());
                if let Some(a) = self.step_rate(key.clone(), value, th, Some(p), None, now_ms) {
                    out.alerts.push(a);
                }
                let open = self.tracks.get(&key).is_some_and(|t| t.open.is_some());
                let (over, rule) = &mut row_rule[i];
                *over |= value > th || open;
                *rule = Some(in_force(*rule, d, th));
            }
        }
        for g in programs_of(rows) {
            for d in DIRECTIONS {
                let Some(th) = self
                    .rule(ThresholdKind::ProcessRate, d, (0, 0), &g.name)
                    .map(|t| t.value)
                else {
                    continue;
                };
                let value = match d {
                    Direction::Up => g.up_bps,
                    Direction::Down => g.down_bps,
                    _ => g.up_bps.saturating_add(g.down_bps),
                };
                let pids: Vec<u32> = g
                    .rows
                    .iter()
                    .filter_map(|&i| rows.get(i))
                    .filter(|r| pick(&r.traffic.unwrap_or_default(), d) > 0)
                    .filter_map(|r| r.process.as_ref().map(|p| p.pid))
                    .filter(|&pid| pid != 0)
                    .collect();
                let key = (
                    Subject::Program {
                        name: g.name.clone(),
                        exe: g.exe.clone(),
                    },
                    ThresholdKind::ProcessRate,
                    d,
                );
                visited.insert(key.clone());
                if let Some(a) = self.step_rate(
                    key.clone(),
                    value,
                    th,
                    Some(&g.identity),
                    Some(&pids),
                    now_ms,
                ) {
                    out.alerts.push(a);
                }
                let open = self.tracks.get(&key).is_some_and(|t| t.open.is_some());
                for &i in &g.rows {
                    let process = rows[i]
                        .process
                        .as_ref()
                        .map_or((0, 0), |p| (p.pid, p.start_time));
                    if self
                        .pid_rule(ThresholdKind::ProcessRate, d, process)
                        .is_some()
                    {
                        continue;
                    }
                    let (over, rule) = &mut row_rule[i];
                    *over |= value > th || open;
                    *rule = Some(in_force(*rule, d, th));
                }
            }
        }
        for (r, (over, rule)) in rows.iter_mut().zip(row_rule) {
            r.over_threshold = over;
            r.threshold_bps = rule.unwrap_or(0);
        }

        // Daily quotas per process name.
        let mut over_quota: HashSet<String> = HashSet::new();
        let names: Vec<(String, (u64, u64))> = self
            .day_bytes
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (name, bytes) in names {
            for d in DIRECTIONS {
                let Some(th) = self
                    .rule(ThresholdKind::DailyQuota, d, (0, 0), &name)
                    .map(|t| t.value)
                else {
                    continue;
                };
                let value = pick_pair(bytes, d);
                let key = (Subject::Name(name.clone()), ThresholdKind::DailyQuota, d);
                visited.insert(key.clone());
                let process = mover
                    .get(&name)
                    .and_then(|(_, i)| rows.get(*i))
                    .and_then(|r| r.process.clone())
                    .unwrap_or_else(|| v1::ProcessIdentity {
                        name: name.clone(),
                        ..Default::default()
                    });
                let id = self.next_alert_id;
                let t = self.tracks.entry(key).or_default();
                if value > th {
                    over_quota.insert(name.clone());
                    if let Some(a) = t.open.as_mut() {
                        a.peak = a.peak.max(value);
                        continue;
                    }
                    let a = v1::Alert {
                        id,
                        kind: ThresholdKind::DailyQuota as i32,
                        state: v1::AlertState::Open as i32,
                        direction: d as i32,
                        message: format!(
                            "{}: {} {} today, over the daily quota of {}",
                            process.name,
                            human_bytes(value),
                            direction_name(d),
                            human_bytes(th)
                        ),
                        process: Some(process),
                        threshold: th,
                        value,
                        peak: value,
                        started_ms: now_ms,
                        ended_ms: 0,
                        pids: Vec::new(),
                        pids_seen: 0,
                    };
                    t.open = Some(a.clone());
                    self.next_alert_id += 1;
                    out.alerts.push(a);
                } else if let Some(mut a) = t.open.take() {
                    // Only a raised quota gets here: the day's bytes never shrink.
                    a.state = v1::AlertState::Closed as i32;
                    a.ended_ms = now_ms;
                    a.message = format!("{}: daily quota raised to {}", name, human_bytes(th));
                    out.alerts.push(a);
                }
            }
        }
        for r in rows.iter_mut() {
            if r.process
                .as_ref()
                .is_some_and(|p| over_quota.contains(&p.name))
            {
                r.over_threshold = true;
            }
        }

        // Whole host.
        for d in DIRECTIONS {
            let Some(th) = self
                .rule(ThresholdKind::HostRate, d, (0, 0), "")
                .map(|t| t.value)
            else {
                continue;
            };
            let key = (Subject::Host, ThresholdKind::HostRate, d);
            visited.insert(key.clone());
            if let Some(a) = self.step_rate(key, pick(totals, d), th, None, None, now_ms) {
                out.alerts.push(a);
            }
        }

        // Subjects no longer evaluated (process gone, rule removed): a rate
        // counts as below; a quota whose rule went closes now.
        let stale: Vec<Key> = self
            .tracks
            .keys()
            .filter(|k| !visited.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            if key.1 == ThresholdKind::DailyQuota {
                if let Some(mut a) = self.tracks.remove(&key).and_then(|t| t.open) {
                    a.state = v1::AlertState::Closed as i32;
                    a.ended_ms = now_ms;
                    a.message = format!("{}: daily quota removed", who(a.process.as_ref()));
                    out.alerts.push(a);
                }
                continue;
            }
            let threshold = self
                .tracks
                .get(&key)
                .and_then(|t| t.open.as_ref())
                .map_or(0, |a| a.threshold);
            if threshold == 0 {
                self.tracks.remove(&key);
                continue;
            }
            if let Some(a) = self.step_rate(key.clone(), 0, threshold, None, None, now_ms) {
                out.alerts.push(a);
            }
        }
        // Forget idle tracks so memory follows the live set.
        self.tracks.retain(|_, t| t.open.is_some() || t.above > 0);

        // New executables sending for the first time.
        if self.notices_enabled() {
            for r in rows.iter() {
                let (Some(p), Some(t)) = (r.process.as_ref(), r.traffic.as_ref()) else {
                    continue;
                };
                if t.up_bytes == 0 {
                    continue;
                }
                let exe = if p.exe.is_empty() {
                    p.name.clone()
                } else {
                    p.exe.clone()
                };
                if exe.is_empty() || !self.remember(exe.clone()) {
                    continue;
                }
                out.persist = true;
                let id = self.alert_id();
                out.alerts.push(v1::Alert {
                    id,
                    kind: ThresholdKind::NewProcess as i32,
                    state: v1::AlertState::Closed as i32,
                    direction: Direction::Up as i32,
                    process: Some(p.clone()),
                    threshold: 0,
                    value: t.up_bytes,
                    peak: t.up_bytes,
                    started_ms: now_ms,
                    ended_ms: now_ms,
                    message: format!("new on the network: {exe} ({})", who(Some(p))),
                    pids: Vec::new(),
                    pids_seen: 0,
                });
            }
        }
        out
    }
}

/// Whether pid rule `t` is about the process (`pid`, `start`). A rule of a
/// config file names a pid only (no start time): it follows the pid.
fn same_process(t: &v1::Threshold, pid: u32, start: u64) -> bool {
    t.pid == pid && (t.pid_start_time == 0 || t.pid_start_time == start)
}

#[cfg(test)]
mod tests;
