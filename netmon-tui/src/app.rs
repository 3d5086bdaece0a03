//! Dashboard state, updated from daemon frames and user actions, and the
//! effects (RPCs) that actions ask for. Knows nothing of the terminal or ratatui.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;

use netmon_proto::v1;

use crate::series::{protocol_rates, Series};

/// Samples of total up/down rates kept for the main chart (one per frame).
pub const CHART_SAMPLES: usize = 300;
/// Samples kept per process for the detail chart.
pub const PROCESS_SAMPLES: usize = 120;
/// Alerts kept for the alert panel.
pub const ALERTS_KEPT: usize = 50;
/// Presets used until the daemon tells its own (`ListThresholds.presets`).
pub const DEFAULT_PRESETS: [u64; 5] = [512 * 1024, 1 << 20, 2 << 20, 5 << 20, 10 << 20];
/// Frames held while the display is paused, replayed on resume.
pub const HELD_FRAMES: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Processes,
    Connections,
    Hosts,
    Packets,
    Interfaces,
    History,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Processes,
        View::Connections,
        View::Hosts,
        View::Packets,
        View::Interfaces,
        View::History,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Processes => "Processes",
            View::Connections => "Connections",
            View::Hosts => "Hosts",
            View::Packets => "Packets",
            View::Interfaces => "Interfaces",
            View::History => "History",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    fn next(self) -> View {
        Self::ALL[(self.index() + 1) % Self::ALL.len()]
    }

    fn prev(self) -> View {
        Self::ALL[(self.index() + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// Columns of the process table, in display order; the number keys 1–9 pick them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Pid,
    Name,
    User,
    Up,
    Down,
    TotalUp,
    TotalDown,
    Protocols,
    Connections,
    /// Up plus down rate; no column of its own (the `o` key picks it).
    Total,
}

impl SortColumn {
    pub const ALL: [SortColumn; 9] = [
        SortColumn::Pid,
        SortColumn::Name,
        SortColumn::User,
        SortColumn::Up,
        SortColumn::Down,
        SortColumn::TotalUp,
        SortColumn::TotalDown,
        SortColumn::Protocols,
        SortColumn::Connections,
    ];

    /// The orders the `o` key cycles through, as netmonctl's `--sort`.
    pub const CYCLE: [SortColumn; 4] = [
        SortColumn::Up,
        SortColumn::Down,
        SortColumn::Total,
        SortColumn::Name,
    ];

    /// Name as netmonctl's `--sort` spells it, else the column header.
    pub fn label(self) -> &'static str {
        match self {
            SortColumn::Pid => "pid",
            SortColumn::Name => "name",
            SortColumn::User => "user",
            SortColumn::Up => "up",
            SortColumn::Down => "down",
            SortColumn::TotalUp => "total up bytes",
            SortColumn::TotalDown => "total down bytes",
            SortColumn::Protocols => "protocols",
            SortColumn::Connections => "connections",
            SortColumn::Total => "total",
        }
    }

    /// Text columns sort A→Z first; numbers biggest first.
    fn default_descending(self) -> bool {
        !matches!(
            self,
            SortColumn::Pid | SortColumn::Name | SortColumn::User | SortColumn::Protocols
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    ToggleMonitoring,
    Reset,
    ToggleHelp,
    CycleThreshold,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterDone,
    FilterCancel,
    SortBy(SortColumn),
    Open,
    Back,
    NextView,
    PrevView,
    /// `T`: type an exact default threshold.
    EnterThreshold,
    /// Set the selected program's threshold (typed).
    EnterProcessThreshold,
    /// Clear the selected program's threshold.
    ClearProcessThreshold,
    PromptChar(char),
    PromptBackspace,
    PromptDone,
    PromptCancel,
    TogglePause,
    /// Next of [`SortColumn::CYCLE`].
    CycleSort,
    ToggleUnits,
    /// Ask netmond to re-read its configuration.
    Reload,
    /// ←/→ in History: the day before or after.
    PrevDay,
    NextDay,
    /// `d` in History: day, 7 days, 30 days.
    CycleSpan,
}

/// How rates are shown: binary bytes (`1.5 MiB/s`) or decimal bits (`12.6 Mbit/s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateUnit {
    #[default]
    Bytes,
    Bits,
}

/// What the input line is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// The default per-process rate threshold.
    DefaultThreshold,
    /// The threshold of one program (its name).
    ProcessThreshold(String),
}

/// The input line at the bottom: a rate being typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub text: String,
    /// The last parse error, shown under the text until it is edited.
    pub error: Option<String>,
}

/// Work the event loop does for an action: RPCs to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Start,
    Stop,
    Reset,
    /// Default per-process rate threshold (kind PROCESS_RATE, direction TOTAL, no selector).
    SetThreshold(u64),
    /// Clear the default rate threshold.
    ClearThreshold,
    /// Rate threshold (direction TOTAL) of the program with this name.
    SetProcessThreshold {
        name: String,
        value: u64,
    },
    /// Clear the rate thresholds of the program with this name.
    ClearProcessThreshold(String),
    /// `Reload`: netmond re-reads its configuration file.
    Reload,
    /// Live connections; `Some(pid)` for a process detail.
    FetchConnections(Option<u32>),
    /// Today's remote hosts of the program of this name, from history.
    FetchProcessHosts(String),
    /// The report, hosts, series and alerts History shows.
    FetchHistory(HistoryQuery),
    /// The threshold rules (another client may change them).
    FetchThresholds,
}

/// Why there is no live connection to the daemon; drives the full-screen notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// First attempt still running.
    Connecting,
    NotRunning,
    /// The socket refuses this user; `group` is the group that may use it,
    /// when it could be read from the socket's directory.
    PermissionDenied {
        group: Option<String>,
    },
    /// The stream ended or failed: the daemon stopped or restarted.
    Lost(String),
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnStatus {
    Connected,
    Disconnected {
        problem: Problem,
        /// Attempts since the last good connection.
        attempts: u32,
        /// When the next attempt starts (ms since the epoch).
        retry_at_ms: i64,
    },
}

/// What the process detail shows: the process and its connections.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub pid: u32,
    pub connections: Option<Result<Vec<v1::Connection>, String>>,
    /// The process's program name ("" when unknown: no history asked).
    pub name: String,
    /// Today's hosts of that program, from history (`report --by host --process`).
    pub hosts_history: Option<Result<v1::ReportReply, String>>,
}

/// How much History shows: the chosen day by hour, or the week or 30 days
/// that end with it, by day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistorySpan {
    #[default]
    Day,
    Week,
    Month,
}

impl HistorySpan {
    /// Local days covered, the chosen one last.
    pub fn days(self) -> i32 {
        match self {
            HistorySpan::Day => 1,
            HistorySpan::Week => 7,
            HistorySpan::Month => 30,
        }
    }

    pub fn next(self) -> HistorySpan {
        match self {
            HistorySpan::Day => HistorySpan::Week,
            HistorySpan::Week => HistorySpan::Month,
            HistorySpan::Month => HistorySpan::Day,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            HistorySpan::Day => "by hour",
            HistorySpan::Week => "7 days by day",
            HistorySpan::Month => "30 days by day",
        }
    }
}

/// What History asks the daemon for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    /// Days back from today (0 = today) of the last day shown.
    pub day_offset: i32,
    pub span: HistorySpan,
    /// Chart one program (a process name) instead of the whole host.
    pub program: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    pub query: HistoryQuery,
    /// Top processes of the day.
    pub report: Option<Result<v1::ReportReply, String>>,
    /// Top remote hosts of the day.
    pub hosts: Option<Result<v1::ReportReply, String>>,
    /// The day by hour (`periods`), for the chart.
    pub hourly: Option<Result<v1::ReportReply, String>>,
    pub alerts: Option<Result<Vec<v1::Alert>, String>>,
}

/// How far back the History view goes: retention keeps days for a year.
pub const HISTORY_MAX_DAYS_BACK: i32 = 366;

/// What a process detail polls: its connections and its program's hosts.
fn detail_effects(d: &Detail) -> Vec<Effect> {
    let mut e = vec![Effect::FetchConnections(Some(d.pid))];
    if !d.name.is_empty() {
        e.push(Effect::FetchProcessHosts(d.name.clone()));
    }
    e
}

/// A remote host of one process, folded from its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHost {
    pub address: String,
    pub name: String,
    pub connections: u32,
    pub up_bps: u64,
    pub down_bps: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct App {
    pub socket: PathBuf,
    /// False when `NO_COLOR` is set.
    pub color: bool,
    pub conn: ConnStatus,
    pub now_ms: i64,
    pub view: View,
    pub help: bool,
    pub quit: bool,
    /// Last frame, processes excluded (kept in `processes`).
    pub frame: v1::Frame,
    /// Every process of the last frame, sorted, unfiltered.
    pub processes: Vec<v1::ProcessRow>,
    pub sort: SortColumn,
    pub descending: bool,
    pub filter: String,
    /// Typing into the filter.
    pub filtering: bool,
    /// Selected process, followed by pid across updates.
    pub selected_pid: Option<u32>,
    /// Selected row in the other views.
    pub cursor: usize,
    pub alerts: VecDeque<v1::Alert>,
    /// Total (up, down) bytes/s per frame, oldest first.
    pub chart: VecDeque<(u64, u64)>,
    pub process_chart: HashMap<u32, VecDeque<(u64, u64)>>,
    pub detail: Option<Detail>,
    pub connections: Option<Result<Vec<v1::Connection>, String>>,
    pub history: History,
    /// Default per-process rate threshold in force; None = none set.
    pub threshold_bps: Option<u64>,
    pub presets: Vec<u64>,
    /// One-line feedback in the status bar (text, is_error).
    pub message: Option<(String, bool)>,
    /// Packets/s per protocol, one sample per frame.
    pub protocol_series: Series,
    /// Receive and send rates per interface, one sample per frame.
    pub rx_series: Series,
    pub tx_series: Series,
    /// Display frozen: frames are read and held, not shown.
    pub paused: bool,
    /// Frames read while paused, oldest first, replayed on resume.
    pub held: VecDeque<v1::Frame>,
    pub units: RateUnit,
    /// The input line, while one is open.
    pub prompt: Option<Prompt>,
    /// Per-program rate thresholds in force (name -> bytes/s, direction total).
    pub process_thresholds: HashMap<String, u64>,
}

impl App {
    pub fn new(socket: PathBuf, color: bool) -> App {
        App {
            socket,
            color,
            conn: ConnStatus::Disconnected {
                problem: Problem::Connecting,
                attempts: 0,
                retry_at_ms: 0,
            },
            now_ms: 0,
            view: View::Processes,
            help: false,
            quit: false,
            frame: v1::Frame::default(),
            processes: Vec::new(),
            sort: SortColumn::Up,
            descending: true,
            filter: String::new(),
            filtering: false,
            selected_pid: None,
            cursor: 0,
            alerts: VecDeque::new(),
            chart: VecDeque::new(),
            process_chart: HashMap::new(),
            detail: None,
            connections: None,
            history: History::default(),
            threshold_bps: None,
            presets: DEFAULT_PRESETS.to_vec(),
            message: None,
            protocol_series: Series::default(),
            rx_series: Series::default(),
            tx_series: Series::default(),
            paused: false,
            held: VecDeque::new(),
            units: RateUnit::Bytes,
            prompt: None,
            process_thresholds: HashMap::new(),
        }
    }

    pub fn connected(&self) -> bool {
        self.conn == ConnStatus::Connected
    }

    // ------------------------------------------------------------ frames

    /// Takes in one frame. netmond sends complete frames, so each one replaces
    /// the live state; alerts and charts accumulate.
    pub fn on_frame(&mut self, frame: v1::Frame) {
        self.conn = ConnStatus::Connected;
        if self.paused {
            // Held, not dropped: on resume the charts and alerts catch up.
            push_capped(&mut self.held, frame, HELD_FRAMES);
            return;
        }
        self.show_frame(frame);
    }

    fn show_frame(&mut self, mut frame: v1::Frame) {
        self.protocol_series.push(protocol_rates(&frame));
        self.rx_series
            .push(frame.interfaces.iter().map(|i| (i.name.as_str(), i.rx_bps)));
        self.tx_series
            .push(frame.interfaces.iter().map(|i| (i.name.as_str(), i.tx_bps)));
        if frame.time_ms > 0 {
            self.now_ms = frame.time_ms;
        }
        let totals = frame.totals.unwrap_or_default();
        push_capped(
            &mut self.chart,
            (totals.up_bps, totals.down_bps),
            CHART_SAMPLES,
        );
        let mut seen = HashSet::with_capacity(frame.processes.len());
        for row in &frame.processes {
            let pid = pid_of(row);
            let t = row.traffic.unwrap_or_default();
            let ring = self.process_chart.entry(pid).or_default();
            push_capped(ring, (t.up_bps, t.down_bps), PROCESS_SAMPLES);
            seen.insert(pid);
        }
        self.process_chart.retain(|pid, _| seen.contains(pid));
        for alert in std::mem::take(&mut frame.alerts) {
            if let Some(old) = self.alerts.iter_mut().find(|a| a.id == alert.id) {
                *old = alert;
            } else {
                self.alerts.push_front(alert);
            }
        }
        self.alerts.truncate(ALERTS_KEPT);
        self.processes = std::mem::take(&mut frame.processes);
        self.frame = frame;
        self.sort_processes();
        self.fix_selection(None);
    }

    pub fn on_thresholds(&mut self, list: &v1::ThresholdList) {
        if !list.presets.is_empty() {
            self.presets.clone_from(&list.presets);
        }
        self.threshold_bps = list
            .thresholds
            .iter()
            .find(|t| is_default_rate_rule(t))
            .map(|t| t.value);
        self.process_thresholds = list
            .thresholds
            .iter()
            .filter(|t| {
                t.kind == v1::ThresholdKind::ProcessRate as i32
                    && !t.process_name.is_empty()
                    && t.pid == 0
            })
            .map(|t| (t.process_name.clone(), t.value))
            .collect();
    }

    pub fn on_disconnected(&mut self, problem: Problem, attempts: u32, retry_at_ms: i64) {
        self.conn = ConnStatus::Disconnected {
            problem,
            attempts,
            retry_at_ms,
        };
    }

    // ------------------------------------------------------------ processes

    fn sort_processes(&mut self) {
        let (col, desc) = (self.sort, self.descending);
        self.processes.sort_by(|a, b| {
            let ord = compare(a, b, col);
            let ord = if desc { ord.reverse() } else { ord };
            ord.then_with(|| pid_of(a).cmp(&pid_of(b)))
        });
    }

    /// Processes shown: sorted, then filtered by name (case-insensitive substring).
    pub fn visible(&self) -> Vec<&v1::ProcessRow> {
        let needle = self.filter.to_lowercase();
        self.processes
            .iter()
            .filter(|p| {
                needle.is_empty()
                    || p.process
                        .as_ref()
                        .is_some_and(|id| id.name.to_lowercase().contains(&needle))
            })
            .collect()
    }

    /// Index of the selected process in [`App::visible`].
    pub fn selected_index(&self) -> Option<usize> {
        let pid = self.selected_pid?;
        self.visible().iter().position(|p| pid_of(p) == pid)
    }

    pub fn selected_process(&self) -> Option<&v1::ProcessRow> {
        let pid = self.selected_pid?;
        self.processes.iter().find(|p| pid_of(p) == pid)
    }

    pub fn process(&self, pid: u32) -> Option<&v1::ProcessRow> {
        self.processes.iter().find(|p| pid_of(p) == pid)
    }

    /// Keeps the selection on the same pid; if that process left the view,
    /// selects the row now at its old position (`old_index`), else the first.
    fn fix_selection(&mut self, old_index: Option<usize>) {
        let visible = self.visible();
        if visible.is_empty() {
            self.selected_pid = None;
            return;
        }
        if let Some(pid) = self.selected_pid {
            if visible.iter().any(|p| pid_of(p) == pid) {
                return;
            }
        }
        let i = old_index.unwrap_or(0).min(visible.len() - 1);
        self.selected_pid = Some(pid_of(visible[i]));
    }

    fn move_selection(&mut self, delta: isize) {
        if self.view != View::Processes || self.detail.is_some() {
            let len = self.rows_in_view();
            self.cursor = step(self.cursor, delta, len);
            return;
        }
        let visible = self.visible();
        if visible.is_empty() {
            return;
        }
        let i = self.selected_index().unwrap_or(0);
        let j = step(i, delta, visible.len());
        self.selected_pid = Some(pid_of(visible[j]));
    }

    fn rows_in_view(&self) -> usize {
        match (self.view, &self.detail) {
            (_, Some(d)) => d
                .connections
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .map_or(0, Vec::len),
            (View::Processes, None) => self.visible().len(),
            (View::Connections, None) => self
                .connections
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .map_or(0, Vec::len),
            (View::Hosts, None) => self.frame.hosts.len(),
            (View::Packets, None) => 0,
            (View::Interfaces, None) => self.frame.interfaces.len(),
            (View::History, None) => self
                .history
                .report
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .map_or(0, |r| r.rows.len()),
        }
    }

    // ------------------------------------------------------------ actions

    /// Applies one action and returns the RPCs it needs.
    pub fn apply(&mut self, action: Action) -> Vec<Effect> {
        if self.help && !matches!(action, Action::Quit) {
            // Any key closes the help screen.
            self.help = false;
            return Vec::new();
        }
        match action {
            Action::Quit => self.quit = true,
            Action::ToggleHelp => self.help = true,
            Action::ToggleMonitoring if self.connected() => {
                return vec![if self.frame.monitoring {
                    Effect::Stop
                } else {
                    Effect::Start
                }];
            }
            Action::Reset if self.connected() => return vec![Effect::Reset],
            Action::CycleThreshold if self.connected() => {
                if let Some(v) = next_preset(&self.presets, self.threshold_bps) {
                    return vec![Effect::SetThreshold(v)];
                }
            }
            Action::Reload if self.connected() => return vec![Effect::Reload],
            Action::EnterThreshold if self.connected() => {
                self.prompt = Some(Prompt {
                    kind: PromptKind::DefaultThreshold,
                    text: String::new(),
                    error: None,
                });
            }
            Action::EnterProcessThreshold | Action::ClearProcessThreshold if self.connected() => {
                let Some(name) = self.selected_program() else {
                    self.message = Some(("select a process first".to_owned(), true));
                    return Vec::new();
                };
                if action == Action::ClearProcessThreshold {
                    return vec![Effect::ClearProcessThreshold(name)];
                }
                self.prompt = Some(Prompt {
                    kind: PromptKind::ProcessThreshold(name),
                    text: String::new(),
                    error: None,
                });
            }
            Action::ToggleMonitoring
            | Action::Reset
            | Action::CycleThreshold
            | Action::Reload
            | Action::EnterThreshold
            | Action::EnterProcessThreshold
            | Action::ClearProcessThreshold => {
                self.message = Some(("not connected to netmond".to_owned(), true));
            }
            Action::PromptChar(c) => {
                if let Some(p) = &mut self.prompt {
                    if p.text.chars().count() < 32 {
                        p.text.push(c);
                    }
                    p.error = None;
                }
            }
            Action::PromptBackspace => {
                if let Some(p) = &mut self.prompt {
                    p.text.pop();
                    p.error = None;
                }
            }
            Action::PromptCancel => self.prompt = None,
            Action::PromptDone => return self.submit_prompt(),
            Action::TogglePause => {
                self.paused = !self.paused;
                if !self.paused {
                    for f in std::mem::take(&mut self.held) {
                        self.show_frame(f);
                    }
                }
            }
            Action::CycleSort => {
                let i = SortColumn::CYCLE.iter().position(|c| *c == self.sort);
                let next = i.map_or(0, |i| (i + 1) % SortColumn::CYCLE.len());
                self.sort = SortColumn::CYCLE[next];
                self.descending = self.sort.default_descending();
                self.sort_processes();
                self.message = Some((format!("sort: {}", self.sort.label()), false));
            }
            Action::PrevDay | Action::NextDay | Action::CycleSpan => {
                if self.view != View::History || self.detail.is_some() {
                    return Vec::new();
                }
                let mut q = self.history.query.clone();
                match action {
                    Action::PrevDay => q.day_offset -= 1,
                    Action::NextDay => q.day_offset += 1,
                    _ => q.span = q.span.next(),
                }
                q.day_offset = q.day_offset.clamp(-HISTORY_MAX_DAYS_BACK, 0);
                return self.query_history(q);
            }
            Action::ToggleUnits => {
                self.units = match self.units {
                    RateUnit::Bytes => RateUnit::Bits,
                    RateUnit::Bits => RateUnit::Bytes,
                };
            }
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::PageUp => self.move_selection(-10),
            Action::PageDown => self.move_selection(10),
            Action::Top => self.move_selection(isize::MIN / 2),
            Action::Bottom => self.move_selection(isize::MAX / 2),
            Action::StartFilter => {
                if self.view == View::Processes && self.detail.is_none() {
                    self.filtering = true;
                }
            }
            Action::FilterChar(c) => {
                let old = self.selected_index();
                self.filter.push(c);
                self.fix_selection(old);
            }
            Action::FilterBackspace => {
                let old = self.selected_index();
                self.filter.pop();
                self.fix_selection(old);
            }
            Action::FilterDone => self.filtering = false,
            Action::FilterCancel => {
                self.filtering = false;
                self.filter.clear();
                self.fix_selection(None);
            }
            Action::SortBy(col) => {
                if self.sort == col {
                    self.descending = !self.descending;
                } else {
                    self.sort = col;
                    self.descending = col.default_descending();
                }
                self.sort_processes();
            }
            Action::Open if self.view == View::History && self.detail.is_none() => {
                // The selected process row becomes the chart's program.
                let name = self
                    .history
                    .report
                    .as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .and_then(|r| r.rows.get(self.cursor))
                    .map(|row| row.key.clone());
                if let Some(name) = name {
                    let mut q = self.history.query.clone();
                    q.program = Some(name);
                    return self.query_history(q);
                }
            }
            Action::Back if self.view == View::History && self.history.query.program.is_some() => {
                let mut q = self.history.query.clone();
                q.program = None;
                return self.query_history(q);
            }
            Action::Open => {
                if self.view == View::Processes && self.detail.is_none() {
                    // A program row (pid 0) has no connections to show.
                    if let Some(pid) = self.selected_pid.filter(|&pid| pid != 0) {
                        let name = self
                            .process(pid)
                            .and_then(|r| r.process.as_ref())
                            .map(|id| id.name.clone())
                            .unwrap_or_default();
                        let detail = Detail {
                            pid,
                            connections: None,
                            name,
                            hosts_history: None,
                        };
                        let effects = detail_effects(&detail);
                        self.detail = Some(detail);
                        self.cursor = 0;
                        return effects;
                    }
                } else if self.detail.is_some() {
                    self.detail = None;
                }
            }
            Action::Back => {
                if self.detail.take().is_none() && !self.filter.is_empty() {
                    self.filter.clear();
                    self.fix_selection(None);
                }
            }
            Action::NextView | Action::PrevView => {
                self.view = if action == Action::NextView {
                    self.view.next()
                } else {
                    self.view.prev()
                };
                self.detail = None;
                self.cursor = 0;
                return self.refresh_effects();
            }
        }
        Vec::new()
    }

    /// The selected row's program name (the Processes view or its detail).
    fn selected_program(&self) -> Option<String> {
        if self.view != View::Processes {
            return None;
        }
        let pid = self.detail.as_ref().map(|d| d.pid).or(self.selected_pid)?;
        let name = self.processes.iter().find(|p| pid_of(p) == pid)?;
        let name = name.process.as_ref()?.name.clone();
        (!name.is_empty()).then_some(name)
    }

    /// The selected program and its own rate threshold, when it has one.
    pub fn selected_program_threshold(&self) -> Option<(String, u64)> {
        let name = self.selected_program()?;
        let v = *self.process_thresholds.get(&name)?;
        Some((name, v))
    }

    /// Enter on the input line: a valid rate becomes an RPC and closes the
    /// line; `none`/`off`/empty clears; anything else stays open with the error.
    fn submit_prompt(&mut self) -> Vec<Effect> {
        let Some(prompt) = self.prompt.as_mut() else {
            return Vec::new();
        };
        let text = prompt.text.trim();
        let clear = text.is_empty() || text.eq_ignore_ascii_case("none") || text == "off";
        let value = if clear {
            None
        } else {
            match netmon_proto::units::parse_amount(text) {
                Ok(a) if a.bytes == 0 => {
                    prompt.error = Some("a threshold must be above 0 (empty clears)".to_owned());
                    return Vec::new();
                }
                Ok(a) => Some(a.bytes),
                Err(e) => {
                    prompt.error = Some(e.to_string());
                    return Vec::new();
                }
            }
        };
        let effect = match (prompt.kind.clone(), value) {
            (PromptKind::DefaultThreshold, Some(v)) => Effect::SetThreshold(v),
            (PromptKind::DefaultThreshold, None) => Effect::ClearThreshold,
            (PromptKind::ProcessThreshold(name), Some(value)) => {
                Effect::SetProcessThreshold { name, value }
            }
            (PromptKind::ProcessThreshold(name), None) => Effect::ClearProcessThreshold(name),
        };
        self.prompt = None;
        vec![effect]
    }

    /// Shows History for `q` (loading until the answer comes) and asks for it.
    fn query_history(&mut self, q: HistoryQuery) -> Vec<Effect> {
        if q == self.history.query {
            return Vec::new();
        }
        let keep_cursor =
            q.day_offset == self.history.query.day_offset && q.span == self.history.query.span;
        let (report, hosts, alerts) = if keep_cursor {
            (
                self.history.report.take(),
                self.history.hosts.take(),
                self.history.alerts.take(),
            )
        } else {
            (None, None, None)
        };
        self.history = History {
            query: q.clone(),
            report,
            hosts,
            hourly: None,
            alerts,
        };
        if !keep_cursor {
            self.cursor = 0;
        }
        if self.connected() {
            vec![Effect::FetchHistory(q)]
        } else {
            Vec::new()
        }
    }

    /// The polled data the current screen needs (connections, history); the
    /// event loop calls this on entering a view and every few seconds.
    pub fn refresh_effects(&self) -> Vec<Effect> {
        if !self.connected() {
            return Vec::new();
        }
        match (&self.detail, self.view) {
            (Some(d), _) => detail_effects(d),
            (None, View::Connections) => vec![Effect::FetchConnections(None)],
            (None, View::History) => vec![Effect::FetchHistory(self.history.query.clone())],
            _ => Vec::new(),
        }
    }

    /// What the event loop refreshes every few seconds: the current screen's
    /// data and the thresholds.
    pub fn periodic_effects(&self) -> Vec<Effect> {
        let mut e = self.refresh_effects();
        if self.connected() {
            e.push(Effect::FetchThresholds);
        }
        e
    }

    /// Today's hosts of the program `name`, if its detail is still open.
    pub fn on_process_hosts(&mut self, name: &str, result: Result<v1::ReportReply, String>) {
        if let Some(d) = self.detail.as_mut().filter(|d| d.name == name) {
            d.hosts_history = Some(result);
        }
    }

    pub fn on_connections(
        &mut self,
        pid: Option<u32>,
        result: Result<Vec<v1::Connection>, String>,
    ) {
        match (pid, &mut self.detail) {
            (Some(p), Some(d)) if d.pid == p => d.connections = Some(result),
            (Some(_), _) => {}
            (None, _) => self.connections = Some(result),
        }
        self.cursor = self.cursor.min(self.rows_in_view().saturating_sub(1));
    }

    /// Remote hosts of the process in the detail, busiest first.
    pub fn detail_hosts(&self) -> Vec<RemoteHost> {
        let Some(Some(Ok(conns))) = self.detail.as_ref().map(|d| &d.connections) else {
            return Vec::new();
        };
        let mut hosts: Vec<RemoteHost> = Vec::new();
        for c in conns {
            let t = c.traffic.unwrap_or_default();
            let i = match hosts.iter().position(|h| h.address == c.remote_addr) {
                Some(i) => i,
                None => {
                    hosts.push(RemoteHost {
                        address: c.remote_addr.clone(),
                        name: c.remote_name.clone(),
                        connections: 0,
                        up_bps: 0,
                        down_bps: 0,
                        bytes: 0,
                    });
                    hosts.len() - 1
                }
            };
            let h = &mut hosts[i];
            h.connections += 1;
            h.up_bps += t.up_bps;
            h.down_bps += t.down_bps;
            h.bytes += t.up_bytes + t.down_bytes;
            if h.name.is_empty() {
                h.name.clone_from(&c.remote_name);
            }
        }
        hosts.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then_with(|| a.address.cmp(&b.address))
        });
        hosts
    }

    /// An interface's (tx, rx) bytes/s per frame, oldest first: as the
    /// rate chart takes them (up = sent, down = received).
    pub fn interface_samples(&self, name: &str) -> VecDeque<(u64, u64)> {
        let n = self.rx_series.len().max(self.tx_series.len());
        let get = |s: &Series, i: usize| {
            s.by_name
                .get(name)
                .and_then(|r| r.get(i + r.len() - n.min(r.len())))
                .copied()
                .unwrap_or(0)
        };
        (0..n)
            .map(|i| (get(&self.tx_series, i), get(&self.rx_series, i)))
            .collect()
    }

    /// Live processes in the last frame.
    pub fn active_processes(&self) -> usize {
        self.processes.iter().filter(|p| p.alive).count()
    }

    /// Length of the running session in seconds, if one runs.
    pub fn session_secs(&self) -> Option<u64> {
        let s = self.frame.session.as_ref()?;
        if !self.frame.monitoring || s.started_ms <= 0 {
            return None;
        }
        u64::try_from(self.now_ms.saturating_sub(s.started_ms) / 1000).ok()
    }
}

pub fn pid_of(row: &v1::ProcessRow) -> u32 {
    row.process.as_ref().map_or(0, |p| p.pid)
}

fn is_default_rate_rule(t: &v1::Threshold) -> bool {
    t.kind == v1::ThresholdKind::ProcessRate as i32 && t.process_name.is_empty() && t.pid == 0
}

/// The preset after `current`; the first preset when none is set or when
/// `current` is at or past the last one.
pub fn next_preset(presets: &[u64], current: Option<u64>) -> Option<u64> {
    let first = *presets.first()?;
    Some(match current {
        None => first,
        Some(c) => presets.iter().copied().find(|&p| p > c).unwrap_or(first),
    })
}

fn step(i: usize, delta: isize, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let j = i.saturating_add_signed(delta);
    j.min(len - 1)
}

fn push_capped<T>(ring: &mut VecDeque<T>, v: T, cap: usize) {
    while ring.len() >= cap {
        ring.pop_front();
    }
    ring.push_back(v);
}

fn name_of(r: &v1::ProcessRow) -> &str {
    r.process.as_ref().map_or("", |p| p.name.as_str())
}

fn user_of(r: &v1::ProcessRow) -> &str {
    r.process.as_ref().map_or("", |p| p.user.as_str())
}

fn compare(a: &v1::ProcessRow, b: &v1::ProcessRow, col: SortColumn) -> std::cmp::Ordering {
    let (ta, tb) = (a.traffic.unwrap_or_default(), b.traffic.unwrap_or_default());
    match col {
        SortColumn::Pid => pid_of(a).cmp(&pid_of(b)),
        SortColumn::Name => {
            let (x, y) = (name_of(a), name_of(b));
            x.bytes()
                .map(|c| c.to_ascii_lowercase())
                .cmp(y.bytes().map(|c| c.to_ascii_lowercase()))
        }
        SortColumn::User => user_of(a).cmp(user_of(b)),
        SortColumn::Up => ta.up_bps.cmp(&tb.up_bps),
        SortColumn::Down => ta.down_bps.cmp(&tb.down_bps),
        SortColumn::TotalUp => ta.up_bytes.cmp(&tb.up_bytes),
        SortColumn::TotalDown => ta.down_bytes.cmp(&tb.down_bytes),
        SortColumn::Protocols => a.protocols.cmp(&b.protocols),
        SortColumn::Connections => a.connections.cmp(&b.connections),
        SortColumn::Total => (ta.up_bps + ta.down_bps).cmp(&(tb.up_bps + tb.down_bps)),
    }
}

#[cfg(test)]
pub mod fixtures;

#[cfg(test)]
mod tests;
