//! The `--json` shapes: explicit, flat, snake_case structs built from the
//! generated API types (which stay free of serde). Bytes and rates are integers
//! (bytes, bytes/s); times are RFC 3339 UTC strings, `null` when the API says 0.

use netmon_proto::v1;
use serde::Serialize;

use crate::when::rfc3339_ms;

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Byte and rate counters, embedded flat wherever traffic is reported.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TrafficJson {
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_bps: u64,
    pub down_bps: u64,
    pub up_packets: u64,
    pub down_packets: u64,
}

impl From<Option<&v1::Traffic>> for TrafficJson {
    fn from(t: Option<&v1::Traffic>) -> Self {
        let t = t.copied().unwrap_or_default();
        TrafficJson {
            up_bytes: t.up_bytes,
            down_bytes: t.down_bytes,
            up_bps: t.up_bps,
            down_bps: t.down_bps,
            up_packets: t.up_packets,
            down_packets: t.down_packets,
        }
    }
}

/// One process row of `top`, `watch` frames: identity and traffic side by side.
#[derive(Debug, Serialize)]
pub struct ProcessJson {
    pub pid: u32,
    /// Clock ticks since boot (/proc/<pid>/stat); with `pid` it names the process.
    pub start_time: u64,
    pub name: String,
    pub exe: String,
    pub cmdline: String,
    /// `cmdline` was longer than the daemon keeps (4 KiB) and was cut.
    pub cmdline_truncated: bool,
    pub uid: u32,
    pub user: String,
    pub unit: Option<String>,
    pub cgroup: Option<String>,
    pub container: Option<String>,
    pub netns: u64,
    pub started: Option<String>,
    #[serde(flatten)]
    pub traffic: TrafficJson,
    pub protocols: Vec<String>,
    /// Live flows owned by the process.
    pub connections: u32,
    /// False once the process has exited; its totals still count.
    pub alive: bool,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub over_threshold: bool,
    /// Rate threshold in force for it, bytes/s; `null` when none.
    pub threshold_bps: Option<u64>,
    /// 0 for a process. A program row (`pid` 0, `alive` false) holds the
    /// exact totals of this many exited processes of one name, exe, user,
    /// unit and container.
    pub folded_processes: u32,
}

impl From<&v1::ProcessRow> for ProcessJson {
    fn from(r: &v1::ProcessRow) -> Self {
        let p = r.process.clone().unwrap_or_default();
        ProcessJson {
            pid: p.pid,
            start_time: p.start_time,
            name: p.name,
            exe: p.exe,
            cmdline: p.cmdline,
            cmdline_truncated: p.cmdline_truncated,
            uid: p.uid,
            user: p.user,
            unit: non_empty(&p.unit),
            cgroup: non_empty(&p.cgroup),
            container: non_empty(&p.container),
            netns: p.netns,
            started: rfc3339_ms(p.started_ms),
            traffic: TrafficJson::from(r.traffic.as_ref()),
            protocols: r.protocols.clone(),
            connections: r.connections,
            alive: r.alive,
            first_seen: rfc3339_ms(r.first_seen_ms),
            last_seen: rfc3339_ms(r.last_seen_ms),
            over_threshold: r.over_threshold,
            threshold_bps: (r.threshold_bps != 0).then_some(r.threshold_bps),
            folded_processes: r.folded_processes,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ReasonJson {
    /// "no_socket", "forwarded", "other_namespace", "socket_gone", "pending", ...
    pub reason: String,
    #[serde(flatten)]
    pub traffic: TrafficJson,
}

#[derive(Debug, Serialize)]
pub struct UnattributedJson {
    #[serde(flatten)]
    pub traffic: TrafficJson,
    pub reasons: Vec<ReasonJson>,
}

impl From<Option<&v1::Unattributed>> for UnattributedJson {
    fn from(u: Option<&v1::Unattributed>) -> Self {
        let Some(u) = u else {
            return UnattributedJson {
                traffic: TrafficJson::default(),
                reasons: Vec::new(),
            };
        };
        UnattributedJson {
            traffic: TrafficJson::from(u.traffic.as_ref()),
            reasons: u
                .reasons
                .iter()
                .map(|r| ReasonJson {
                    reason: r.reason.clone(),
                    traffic: TrafficJson::from(r.traffic.as_ref()),
                })
                .collect(),
        }
    }
}

/// `top --json`.
#[derive(Debug, Serialize)]
pub struct TopJson {
    pub time: Option<String>,
    pub monitoring: bool,
    pub processes: Vec<ProcessJson>,
    pub totals: TrafficJson,
    pub unattributed: UnattributedJson,
}

impl From<&v1::ProcessList> for TopJson {
    fn from(l: &v1::ProcessList) -> Self {
        TopJson {
            time: rfc3339_ms(l.time_ms),
            monitoring: l.monitoring,
            processes: l.processes.iter().map(ProcessJson::from).collect(),
            totals: TrafficJson::from(l.totals.as_ref()),
            unattributed: UnattributedJson::from(l.unattributed.as_ref()),
        }
    }
}

/// One line of `watch --json`.
#[derive(Debug, Serialize)]
pub struct FrameJson {
    pub seq: u64,
    pub time: Option<String>,
    /// True when this frame replaces all earlier state (first frame, resync).
    pub complete: bool,
    pub monitoring: bool,
    pub session: Option<SessionJson>,
    pub processes: Vec<ProcessJson>,
    pub totals: TrafficJson,
    pub unattributed: UnattributedJson,
    /// Alerts opened or closed since the previous frame.
    pub alerts: Vec<AlertJson>,
    pub interfaces: Vec<InterfaceJson>,
    pub hosts: Vec<HostJson>,
    pub packets_per_sec: u64,
    pub packets_dropped: u64,
    pub flows_active: u64,
    pub handoff_dropped: u64,
}

impl From<&v1::Frame> for FrameJson {
    fn from(f: &v1::Frame) -> Self {
        FrameJson {
            seq: f.seq,
            time: rfc3339_ms(f.time_ms),
            complete: f.complete,
            monitoring: f.monitoring,
            session: f.session.as_ref().map(SessionJson::from),
            processes: f.processes.iter().map(ProcessJson::from).collect(),
            totals: TrafficJson::from(f.totals.as_ref()),
            unattributed: UnattributedJson::from(f.unattributed.as_ref()),
            alerts: f.alerts.iter().map(AlertJson::from).collect(),
            interfaces: f.interfaces.iter().map(InterfaceJson::from).collect(),
            hosts: f.hosts.iter().map(HostJson::from).collect(),
            packets_per_sec: f.packet_stats.as_ref().map_or(0, |p| p.packets_per_sec),
            packets_dropped: f.packets_dropped,
            flows_active: f.flows_active,
            handoff_dropped: f.handoff_dropped,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SessionJson {
    pub id: u64,
    pub started: Option<String>,
    /// `null` while running.
    pub ended: Option<String>,
    pub interfaces: Vec<String>,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub active: bool,
}

impl From<&v1::Session> for SessionJson {
    fn from(s: &v1::Session) -> Self {
        SessionJson {
            id: s.id,
            started: rfc3339_ms(s.started_ms),
            ended: rfc3339_ms(s.ended_ms),
            interfaces: s.interfaces.clone(),
            up_bytes: s.up_bytes,
            down_bytes: s.down_bytes,
            active: s.active,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SessionsJson {
    pub sessions: Vec<SessionJson>,
}

/// Capture counters of one interface (pcap's view).
#[derive(Debug, Serialize)]
pub struct CaptureJson {
    pub packets_received: u64,
    /// Dropped by the kernel: netmond's buffer was full.
    pub packets_dropped: u64,
    /// Dropped by the interface or driver.
    pub packets_if_dropped: u64,
    pub packets_counted: u64,
    pub bytes_counted: u64,
    pub packets_malformed: u64,
}

impl From<&v1::CaptureStats> for CaptureJson {
    fn from(c: &v1::CaptureStats) -> Self {
        CaptureJson {
            packets_received: c.packets_received,
            packets_dropped: c.packets_dropped,
            packets_if_dropped: c.packets_if_dropped,
            packets_counted: c.packets_counted,
            bytes_counted: c.bytes_counted,
            packets_malformed: c.packets_malformed,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct InterfaceStatusJson {
    pub name: String,
    pub capturing: bool,
    pub error: Option<String>,
    pub link_type: String,
    pub capture: Option<CaptureJson>,
    /// Times its capture ended unexpectedly and was started again.
    pub restarts: u32,
}

#[derive(Debug, Serialize)]
pub struct StorageJson {
    pub path: String,
    /// "ok", "degraded" or "failed".
    pub state: String,
    pub error: Option<String>,
    pub size_bytes: u64,
    pub pending_batches: u64,
    pub last_flush: Option<String>,
    /// Times the store's thread failed and was started again.
    pub restarts: u32,
    pub last_failure: Option<String>,
}

/// `status --json`.
#[derive(Debug, Serialize)]
pub struct StatusJson {
    pub monitoring: bool,
    pub version: String,
    pub uptime_secs: u64,
    pub started: Option<String>,
    /// "capture" or "basic".
    pub mode: String,
    pub mode_reason: Option<String>,
    pub daemon_pid: u32,
    pub socket_path: String,
    pub config_path: Option<String>,
    pub session: Option<SessionJson>,
    pub interfaces: Vec<InterfaceStatusJson>,
    pub packets_seen: u64,
    pub packets_dropped: u64,
    pub packets_malformed: u64,
    pub flows_active: u64,
    pub flows_evicted: u64,
    pub bytes_captured: u64,
    pub bytes_attributed: u64,
    /// bytes_attributed / bytes_captured, 0..1.
    pub coverage: f64,
    pub storage: Option<StorageJson>,
    pub subscribers: u32,
    pub subscriber_resyncs: u64,
    pub handoff_dropped: u64,
    pub resolver_dropped: u64,
    pub flows_untracked: u64,
    /// Low-priority (inbound SYN) lookups waiting.
    pub lookup_queue: u64,
    /// Low-priority lookups dropped because their queue was full.
    pub lookup_dropped: u64,
    /// "per-flow" or "dump"; null without socket lookups (basic mode).
    pub lookup_mode: Option<String>,
    pub flows_evicted_half_open: u64,
    pub attribution_p50_us: u64,
    pub attribution_p99_us: u64,
    pub tick_ms: u64,
    pub include_loopback: bool,
    /// "ebpf" or "socket-lookup" (null while stopped or in basic mode).
    pub attribution: Option<String>,
    pub attribution_reason: Option<String>,
    pub sockets_tracked: u64,
    /// Rows of the live per-process table: running processes, exited
    /// processes with their own row, program rows and the exited processes
    /// folded into them.
    pub live_processes: u64,
    pub exited_processes: u64,
    pub folded_programs: u64,
    pub folded_processes: u64,
}

impl From<&v1::Status> for StatusJson {
    fn from(s: &v1::Status) -> Self {
        StatusJson {
            monitoring: s.monitoring,
            version: s.version.clone(),
            uptime_secs: s.uptime_secs,
            started: rfc3339_ms(s.started_ms),
            mode: s.mode.clone(),
            mode_reason: non_empty(&s.mode_reason),
            daemon_pid: s.daemon_pid,
            socket_path: s.socket_path.clone(),
            config_path: non_empty(&s.config_path),
            session: s.session.as_ref().map(SessionJson::from),
            interfaces: s
                .interfaces
                .iter()
                .map(|i| InterfaceStatusJson {
                    name: i.name.clone(),
                    capturing: i.capturing,
                    error: non_empty(&i.error),
                    link_type: i.link_type.clone(),
                    capture: i.capture.as_ref().map(CaptureJson::from),
                    restarts: i.restarts,
                })
                .collect(),
            packets_seen: s.packets_seen,
            packets_dropped: s.packets_dropped,
            packets_malformed: s.packets_malformed,
            flows_active: s.flows_active,
            flows_evicted: s.flows_evicted,
            bytes_captured: s.bytes_captured,
            bytes_attributed: s.bytes_attributed,
            coverage: s.coverage,
            storage: s.storage.as_ref().map(|st| StorageJson {
                path: st.path.clone(),
                state: st.state.clone(),
                error: non_empty(&st.error),
                size_bytes: st.size_bytes,
                pending_batches: st.pending_batches,
                last_flush: rfc3339_ms(st.last_flush_ms),
                restarts: st.restarts,
                last_failure: non_empty(&st.last_failure),
            }),
            subscribers: s.subscribers,
            subscriber_resyncs: s.subscriber_resyncs,
            handoff_dropped: s.handoff_dropped,
            resolver_dropped: s.resolver_dropped,
            flows_untracked: s.flows_untracked,
            lookup_queue: s.lookup_queue,
            lookup_dropped: s.lookup_dropped,
            lookup_mode: non_empty(&s.lookup_mode),
            flows_evicted_half_open: s.flows_evicted_half_open,
            attribution_p50_us: s.attribution_p50_us,
            attribution_p99_us: s.attribution_p99_us,
            tick_ms: s.tick_ms,
            include_loopback: s.include_loopback,
            attribution: non_empty(&s.attribution),
            attribution_reason: non_empty(&s.attribution_reason),
            sockets_tracked: s.sockets_tracked,
            live_processes: s.live_processes,
            exited_processes: s.exited_processes,
            folded_programs: s.folded_programs,
            folded_processes: s.folded_processes,
        }
    }
}

/// `start`, `stop`, `reset`.
#[derive(Debug, Serialize)]
pub struct ControlJson {
    pub monitoring: bool,
    /// False when the call changed nothing (already started / stopped).
    pub changed: bool,
    pub session: Option<SessionJson>,
    pub message: Option<String>,
}

impl From<&v1::ControlReply> for ControlJson {
    fn from(c: &v1::ControlReply) -> Self {
        ControlJson {
            monitoring: c.monitoring,
            changed: c.changed,
            session: c.session.as_ref().map(SessionJson::from),
            message: non_empty(&c.message),
        }
    }
}

/// CLI spelling of a threshold kind, so scripts can feed it back to `--kind`.
pub fn kind_name(kind: i32) -> &'static str {
    match v1::ThresholdKind::try_from(kind) {
        Ok(v1::ThresholdKind::ProcessRate) => "rate",
        Ok(v1::ThresholdKind::HostRate) => "host",
        Ok(v1::ThresholdKind::DailyQuota) => "quota",
        Ok(v1::ThresholdKind::NewProcess) => "new-process",
        Ok(v1::ThresholdKind::Unspecified) | Err(_) => "unspecified",
    }
}

pub fn direction_name(direction: i32) -> Option<&'static str> {
    match v1::Direction::try_from(direction) {
        Ok(v1::Direction::Up) => Some("up"),
        Ok(v1::Direction::Down) => Some("down"),
        Ok(v1::Direction::Total) => Some("total"),
        Ok(v1::Direction::Unspecified) | Err(_) => None,
    }
}

#[derive(Debug, Serialize)]
pub struct ThresholdJson {
    pub id: u64,
    /// "rate", "host", "quota" or "new-process" (the `--kind` values).
    pub kind: &'static str,
    /// "up", "down", "total"; `null` when the kind has none.
    pub direction: Option<&'static str>,
    /// Bytes/s for rate kinds, bytes per day for "quota".
    pub value: u64,
    /// `null` with `pid` null: the default rule for every process.
    pub process_name: Option<String>,
    pub pid: Option<u32>,
    /// "config" or "api".
    pub source: String,
    pub created: Option<String>,
}

impl From<&v1::Threshold> for ThresholdJson {
    fn from(t: &v1::Threshold) -> Self {
        ThresholdJson {
            id: t.id,
            kind: kind_name(t.kind),
            direction: direction_name(t.direction),
            value: t.value,
            process_name: non_empty(&t.process_name),
            pid: (t.pid != 0).then_some(t.pid),
            source: t.source.clone(),
            created: rfc3339_ms(t.created_ms),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ThresholdListJson {
    pub thresholds: Vec<ThresholdJson>,
    /// Preset cycle for interactive clients, bytes/s.
    pub presets: Vec<u64>,
}

#[derive(Debug, Serialize)]
pub struct ClearJson {
    pub removed: u32,
}

/// One live flow; the owner's identity is flat (`pid` null when unattributed).
#[derive(Debug, Serialize)]
pub struct ConnectionJson {
    pub protocol: String,
    pub app_protocol: Option<String>,
    pub local_addr: String,
    pub local_port: u32,
    pub remote_addr: String,
    pub remote_port: u32,
    pub remote_name: Option<String>,
    pub state: String,
    pub interface: String,
    pub pid: Option<u32>,
    pub name: Option<String>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub unattributed_reason: Option<String>,
    #[serde(flatten)]
    pub traffic: TrafficJson,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

impl From<&v1::Connection> for ConnectionJson {
    fn from(c: &v1::Connection) -> Self {
        let p = c.process.as_ref().filter(|p| p.pid != 0);
        ConnectionJson {
            protocol: c.protocol.clone(),
            app_protocol: non_empty(&c.app_protocol),
            local_addr: c.local_addr.clone(),
            local_port: c.local_port,
            remote_addr: c.remote_addr.clone(),
            remote_port: c.remote_port,
            remote_name: non_empty(&c.remote_name),
            state: c.state.clone(),
            interface: c.interface.clone(),
            pid: p.map(|p| p.pid),
            name: p.map(|p| p.name.clone()),
            uid: p.map(|p| p.uid),
            user: p.map(|p| p.user.clone()),
            unattributed_reason: non_empty(&c.unattributed_reason),
            traffic: TrafficJson::from(c.traffic.as_ref()),
            first_seen: rfc3339_ms(c.first_seen_ms),
            last_seen: rfc3339_ms(c.last_seen_ms),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ConnectionsJson {
    pub time: Option<String>,
    pub connections: Vec<ConnectionJson>,
}

/// One interface: the kernel's counters (`rx_*`/`tx_*`) beside what netmond
/// counted (`counted_*`, layer-3 bytes).
#[derive(Debug, Serialize)]
pub struct InterfaceJson {
    pub name: String,
    pub index: u32,
    pub up: bool,
    pub addresses: Vec<String>,
    pub captured: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_bps: u64,
    pub tx_bps: u64,
    pub counted_up_bytes: u64,
    pub counted_down_bytes: u64,
    pub counted_up_bps: u64,
    pub counted_down_bps: u64,
    pub capture: Option<CaptureJson>,
}

impl From<&v1::InterfaceRow> for InterfaceJson {
    fn from(i: &v1::InterfaceRow) -> Self {
        let counted = TrafficJson::from(i.counted.as_ref());
        InterfaceJson {
            name: i.name.clone(),
            index: i.index,
            up: i.up,
            addresses: i.addresses.clone(),
            captured: i.captured,
            rx_bytes: i.rx_bytes,
            tx_bytes: i.tx_bytes,
            rx_packets: i.rx_packets,
            tx_packets: i.tx_packets,
            rx_errors: i.rx_errors,
            tx_errors: i.tx_errors,
            rx_dropped: i.rx_dropped,
            tx_dropped: i.tx_dropped,
            rx_bps: i.rx_bps,
            tx_bps: i.tx_bps,
            counted_up_bytes: counted.up_bytes,
            counted_down_bytes: counted.down_bytes,
            counted_up_bps: counted.up_bps,
            counted_down_bps: counted.down_bps,
            capture: i.capture.as_ref().map(CaptureJson::from),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct InterfacesJson {
    pub interfaces: Vec<InterfaceJson>,
}

#[derive(Debug, Serialize)]
pub struct HostJson {
    pub address: String,
    pub name: Option<String>,
    pub category: Option<String>,
    #[serde(flatten)]
    pub traffic: TrafficJson,
    /// Names of the processes talking to it.
    pub processes: Vec<String>,
    pub connections: u32,
}

impl From<&v1::HostRow> for HostJson {
    fn from(h: &v1::HostRow) -> Self {
        HostJson {
            address: h.address.clone(),
            name: non_empty(&h.name),
            category: non_empty(&h.category),
            traffic: TrafficJson::from(h.traffic.as_ref()),
            processes: h.processes.clone(),
            connections: h.connections,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct HostsJson {
    pub time: Option<String>,
    pub hosts: Vec<HostJson>,
}

#[derive(Debug, Serialize)]
pub struct AlertJson {
    pub id: u64,
    pub kind: &'static str,
    /// "open" or "closed".
    pub state: &'static str,
    pub direction: Option<&'static str>,
    /// `null` for a program alert (a name or default rate rule).
    pub pid: Option<u32>,
    pub name: Option<String>,
    pub exe: Option<String>,
    /// A program alert's processes that moved bytes while it was above
    /// (ascending, at most 64); empty otherwise.
    pub pids: Vec<u32>,
    /// Distinct pids seen (counted up to 1024).
    pub pids_seen: u32,
    /// The limit, and the value that crossed it / the peak while open
    /// (bytes/s, or bytes for "quota").
    pub threshold: u64,
    pub value: u64,
    pub peak: u64,
    pub started: Option<String>,
    /// `null` while open.
    pub ended: Option<String>,
    pub message: String,
}

impl From<&v1::Alert> for AlertJson {
    fn from(a: &v1::Alert) -> Self {
        let p = a
            .process
            .as_ref()
            .filter(|p| p.pid != 0 || !p.name.is_empty());
        AlertJson {
            id: a.id,
            kind: kind_name(a.kind),
            state: match v1::AlertState::try_from(a.state) {
                Ok(v1::AlertState::Open) => "open",
                Ok(v1::AlertState::Closed) => "closed",
                _ => "unspecified",
            },
            direction: direction_name(a.direction),
            pid: p.map(|p| p.pid).filter(|&pid| pid != 0),
            name: p.and_then(|p| non_empty(&p.name)),
            exe: p.and_then(|p| non_empty(&p.exe)),
            pids: a.pids.clone(),
            pids_seen: a.pids_seen,
            threshold: a.threshold,
            value: a.value,
            peak: a.peak,
            started: rfc3339_ms(a.started_ms),
            ended: rfc3339_ms(a.ended_ms),
            message: a.message.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AlertsJson {
    pub alerts: Vec<AlertJson>,
}

#[derive(Debug, Serialize)]
pub struct ReportRowJson {
    pub key: String,
    pub label: String,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub total_bytes: u64,
    /// Share of the range's total bytes, 0..1.
    pub share: f64,
    /// Peak per-minute rates in the range.
    pub peak_up_bps: u64,
    pub peak_down_bps: u64,
    /// Distinct processes behind the row.
    pub processes: u32,
}

impl ReportRowJson {
    pub fn new(r: &v1::ReportRow, grand_total: u64) -> Self {
        let total = r.up_bytes.saturating_add(r.down_bytes);
        ReportRowJson {
            key: r.key.clone(),
            label: r.label.clone(),
            up_bytes: r.up_bytes,
            down_bytes: r.down_bytes,
            total_bytes: total,
            share: share(total, grand_total),
            peak_up_bps: r.peak_up_bps,
            peak_down_bps: r.peak_down_bps,
            processes: r.processes,
        }
    }
}

#[allow(clippy::cast_precision_loss, reason = "a share is a display figure")]
pub fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `report --json`.
#[derive(Debug, Serialize)]
pub struct ReportJson {
    pub since: Option<String>,
    /// `null`: up to now.
    pub until: Option<String>,
    /// The `--by` value.
    pub by: &'static str,
    /// The `--every` value; `null` without it.
    pub every: Option<&'static str>,
    /// The `--process` value: rows are that program's hosts or categories
    /// (key "(other hosts)": its hosts past the per-minute top); `null`
    /// without it.
    pub process: Option<String>,
    pub totals: ReportTotalsJson,
    pub rows: Vec<ReportRowJson>,
    /// Rows beyond `--limit`, folded; `null` when nothing was folded.
    pub others: Option<ReportRowJson>,
    /// With `--every`: one per period of `time_zone`, oldest first; `[]` without it.
    pub periods: Vec<ReportPeriodJson>,
    /// With `--every`: the zone the periods were cut by (an IANA name, a
    /// POSIX TZ string or `UTC`); `null` without `--every` or when unnamed.
    pub time_zone: Option<String>,
}

/// One period of `report --every`: grouped and limited like the whole range,
/// shares of the period's total.
#[derive(Debug, Serialize)]
pub struct ReportPeriodJson {
    pub since: Option<String>,
    pub until: Option<String>,
    /// The zone's UTC offset at `since`, in seconds (32400 for +09:00).
    pub utc_offset_s: i32,
    pub totals: ReportTotalsJson,
    pub rows: Vec<ReportRowJson>,
    pub others: Option<ReportRowJson>,
}

#[derive(Debug, Serialize)]
pub struct ReportTotalsJson {
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub total_bytes: u64,
}

impl ReportTotalsJson {
    pub fn new(up_bytes: u64, down_bytes: u64) -> Self {
        ReportTotalsJson {
            up_bytes,
            down_bytes,
            total_bytes: up_bytes.saturating_add(down_bytes),
        }
    }
}

/// One per-minute sample of one process, as a JSON export element.
#[derive(Debug, Serialize)]
pub struct ExportRowJson {
    pub time: Option<String>,
    pub pid: u32,
    pub start_time: u64,
    pub name: String,
    pub exe: String,
    pub cmdline: String,
    /// `cmdline` was longer than the daemon keeps (4 KiB) and was cut.
    pub cmdline_truncated: bool,
    pub uid: u32,
    pub user: String,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_bps: u64,
    pub down_bps: u64,
    pub protocols: Vec<String>,
    pub interface: String,
    pub remote_addr: String,
    pub remote_name: String,
}

impl From<&v1::ExportRow> for ExportRowJson {
    fn from(r: &v1::ExportRow) -> Self {
        let p = r.process.clone().unwrap_or_default();
        ExportRowJson {
            time: rfc3339_ms(r.time_ms),
            pid: p.pid,
            start_time: p.start_time,
            name: p.name,
            exe: p.exe,
            cmdline: p.cmdline,
            cmdline_truncated: p.cmdline_truncated,
            uid: p.uid,
            user: p.user,
            up_bytes: r.up_bytes,
            down_bytes: r.down_bytes,
            up_bps: r.up_bps,
            down_bps: r.down_bps,
            protocols: r.protocols.clone(),
            interface: r.interface.clone(),
            remote_addr: r.remote_addr.clone(),
            remote_name: r.remote_name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn sample_list() -> v1::ProcessList {
        v1::ProcessList {
            time_ms: 1_767_225_600_000,
            monitoring: true,
            processes: vec![v1::ProcessRow {
                process: Some(v1::ProcessIdentity {
                    pid: 4242,
                    start_time: 99,
                    name: "curl".into(),
                    exe: "/usr/bin/curl".into(),
                    cmdline: "curl https://example.org".into(),
                    uid: 1000,
                    user: "alice".into(),
                    ..Default::default()
                }),
                traffic: Some(v1::Traffic {
                    up_bytes: 1000,
                    down_bytes: 5_000_000,
                    up_bps: 10,
                    down_bps: 1_572_864,
                    ..Default::default()
                }),
                protocols: vec!["tcp".into(), "https".into()],
                connections: 2,
                alive: false,
                ..Default::default()
            }],
            totals: Some(v1::Traffic {
                up_bytes: 1100,
                down_bytes: 5_000_100,
                ..Default::default()
            }),
            unattributed: Some(v1::Unattributed {
                traffic: Some(v1::Traffic {
                    up_bytes: 100,
                    down_bytes: 100,
                    ..Default::default()
                }),
                reasons: vec![v1::UnattributedReason {
                    reason: "forwarded".into(),
                    traffic: Some(v1::Traffic {
                        up_bytes: 100,
                        down_bytes: 100,
                        ..Default::default()
                    }),
                }],
            }),
        }
    }

    #[test]
    fn top_json_is_flat_with_integer_counters() {
        let v = serde_json::to_value(TopJson::from(&sample_list())).expect("serializes");
        let p = &v["processes"][0];
        for key in [
            "pid",
            "uid",
            "up_bps",
            "down_bps",
            "up_bytes",
            "down_bytes",
            "connections",
            "folded_processes",
        ] {
            assert!(p[key].is_u64(), "{key} must be an integer: {}", p[key]);
        }
        for key in ["name", "exe", "cmdline", "user"] {
            assert!(p[key].is_string(), "{key}");
        }
        assert_eq!(p["pid"], 4242);
        assert_eq!(p["down_bps"], 1_572_864);
        assert_eq!(p["alive"], Value::Bool(false));
        assert_eq!(p["protocols"], serde_json::json!(["tcp", "https"]));
        assert!(
            p.get("process").is_none() && p.get("traffic").is_none(),
            "must not nest: {p}"
        );
        assert_eq!(p["first_seen"], Value::Null);
        assert_eq!(p["threshold_bps"], Value::Null);
        for obj in ["totals", "unattributed"] {
            for key in ["up_bytes", "down_bytes", "up_bps", "down_bps"] {
                assert!(v[obj][key].is_u64(), "{obj}.{key}");
            }
        }
        assert_eq!(v["unattributed"]["reasons"][0]["reason"], "forwarded");
        assert_eq!(v["unattributed"]["reasons"][0]["up_bytes"], 100);
        assert_eq!(v["time"], "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn missing_messages_become_zero_or_null() {
        let v =
            serde_json::to_value(TopJson::from(&v1::ProcessList::default())).expect("serializes");
        assert_eq!(v["time"], Value::Null);
        assert_eq!(v["totals"]["up_bytes"], 0);
        assert_eq!(v["unattributed"]["reasons"], serde_json::json!([]));
    }

    #[test]
    fn status_json_has_the_contract_fields() {
        let s = v1::Status {
            version: "0.1.0".into(),
            uptime_secs: 61,
            monitoring: true,
            coverage: 0.5,
            session: Some(v1::Session {
                id: 7,
                started_ms: 1,
                active: true,
                ..Default::default()
            }),
            storage: Some(v1::StorageHealth {
                state: "ok".into(),
                ..Default::default()
            }),
            interfaces: vec![v1::InterfaceStatus {
                name: "eth0".into(),
                capturing: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = serde_json::to_value(StatusJson::from(&s)).expect("serializes");
        assert_eq!(v["monitoring"], true);
        assert_eq!(v["version"], "0.1.0");
        assert_eq!(v["uptime_secs"], 61);
        assert_eq!(v["session"]["id"], 7);
        assert_eq!(v["session"]["ended"], Value::Null);
        assert_eq!(v["interfaces"][0]["name"], "eth0");
        assert_eq!(v["interfaces"][0]["error"], Value::Null);
        assert_eq!(v["coverage"], 0.5);
        assert_eq!(v["storage"]["state"], "ok");
        assert!(v["packets_dropped"].is_u64());
    }

    #[test]
    fn threshold_uses_cli_spellings() {
        let t = v1::Threshold {
            id: 3,
            kind: v1::ThresholdKind::DailyQuota as i32,
            direction: v1::Direction::Down as i32,
            value: 2_147_483_648,
            ..Default::default()
        };
        let v = serde_json::to_value(ThresholdJson::from(&t)).expect("serializes");
        assert_eq!(v["kind"], "quota");
        assert_eq!(v["direction"], "down");
        assert_eq!(v["pid"], Value::Null);
        assert_eq!(v["value"], 2_147_483_648_u64);
    }
}
