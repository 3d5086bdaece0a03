//! Prometheus metrics (`[metrics]`): folds the engine's frames into counters
//! that never go down, with bounded label cardinality, and renders them as
//! OpenMetrics text; `endpoint` serves that text over HTTP. Reads engine data
//! only.

mod endpoint;

pub use endpoint::{start, Endpoint};

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use netmon_proto::v1;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Series label for everything outside the top N.
pub const OTHER: &str = "other";
/// Keys whose running totals are remembered; beyond it, the ones absent from
/// the latest frame and without their own series are forgotten.
const MAX_KEYS: usize = 10_000;
/// Interfaces, protocols and unattributed reasons each get at most this many series.
const MAX_SMALL_SET: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on '{addr}'")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode metrics")]
    Encode(#[source] std::fmt::Error),
}

/// Up and down bytes.
type Dir = [u64; 2];

fn add(a: &mut Dir, d: Dir) {
    a[0] = a[0].saturating_add(d[0]);
    a[1] = a[1].saturating_add(d[1]);
}

/// How much a cumulative value grew since `last`: a smaller value means its
/// source restarted from zero (reset, new monitoring run), so all of it is new.
fn growth(last: u64, cur: u64) -> u64 {
    if cur >= last {
        cur - last
    } else {
        cur
    }
}

fn growth2(last: Dir, cur: Dir) -> Dir {
    [growth(last[0], cur[0]), growth(last[1], cur[1])]
}

fn traffic(t: Option<&v1::Traffic>) -> Dir {
    t.map_or([0, 0], |t| [t.up_bytes, t.down_bytes])
}

#[derive(Debug, Default)]
struct KeyState {
    /// Lifetime bytes of the key, whichever series they went to (ranking).
    total: Dir,
    /// Value of its own series; `None` until it first made the top N.
    own: Option<Dir>,
    promoted: bool,
    /// Present in the latest frame.
    seen: bool,
}

/// Running counters for keys of which only the top `cap` by volume keep
/// their own series; the rest add up in one "other" series. Every exported
/// value only grows: a key entering the top N starts its series at its
/// lifetime total (a new series, which `rate()` takes as a baseline), a key
/// leaving it keeps its value aside, and "other" counts only bytes of keys
/// while they were outside the top N.
#[derive(Debug, Default)]
struct Fold<K: std::hash::Hash + Eq + Clone + Ord> {
    cap: usize,
    keys: HashMap<K, KeyState>,
    other: Dir,
}

impl<K: std::hash::Hash + Eq + Clone + Ord> Fold<K> {
    fn new(cap: usize) -> Self {
        Fold {
            cap,
            keys: HashMap::new(),
            other: [0, 0],
        }
    }

    /// Applies one frame's growth per key.
    fn apply(&mut self, deltas: HashMap<K, Dir>) {
        for s in self.keys.values_mut() {
            s.seen = false;
        }
        for (k, d) in &deltas {
            let s = self.keys.entry(k.clone()).or_default();
            add(&mut s.total, *d);
            s.seen = true;
        }
        let mut ranked: Vec<(&K, u64)> = self
            .keys
            .iter()
            .map(|(k, s)| (k, s.total[0].saturating_add(s.total[1])))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let top: std::collections::HashSet<K> = ranked
            .into_iter()
            .take(self.cap)
            .map(|(k, _)| k.clone())
            .collect();
        for (k, s) in self.keys.iter_mut() {
            s.promoted = top.contains(k);
            let d = deltas.get(k).copied().unwrap_or([0, 0]);
            match (&mut s.own, s.promoted) {
                (None, true) => s.own = Some(s.total),
                (Some(own), true) => add(own, d),
                (_, false) => add(&mut self.other, d),
            }
        }
        if self.keys.len() > MAX_KEYS + self.cap {
            self.keys.retain(|_, s| s.seen || s.promoted);
        }
    }

    /// The series: (key, value) for the top N, then "other" (`None`).
    fn series(&self) -> Vec<(Option<&K>, Dir)> {
        let mut out: Vec<(Option<&K>, Dir)> = self
            .keys
            .iter()
            .filter(|(_, s)| s.promoted)
            .map(|(k, s)| (Some(k), s.own.unwrap_or(s.total)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.push((None, self.other));
        out
    }
}

/// A process series key: name, user, unit, container (aggregated over pids).
type ProcKey = (String, String, String, String);

/// Counters folded from frames and status; one per daemon, shared by scrapes.
#[derive(Debug)]
pub struct Collector {
    include_hosts: bool,
    /// Last cumulative up/down of each process row, by (pid, start time).
    rows: HashMap<(u32, u64), Dir>,
    processes: Fold<ProcKey>,
    /// Last cumulative up/down per remote host label (only with include_hosts).
    host_rows: HashMap<String, Dir>,
    hosts: Fold<String>,
    unattributed_last: BTreeMap<String, Dir>,
    unattributed: BTreeMap<String, Dir>,
    /// Per interface: last capture figures (received, dropped, counted up, down) and their sums.
    capture_last: BTreeMap<String, [u64; 4]>,
    capture: BTreeMap<String, [u64; 4]>,
    protocols: BTreeMap<String, u64>,
    alerts_opened: u64,
    flows_evicted_last: u64,
    flows_evicted: u64,
    malformed_last: u64,
    malformed: u64,
    last_totals: Dir,
    last_session: u64,
    frames: u64,
}

impl Collector {
    pub fn new(top_processes: usize, include_hosts: bool) -> Collector {
        Collector {
            include_hosts,
            rows: HashMap::new(),
            processes: Fold::new(top_processes),
            host_rows: HashMap::new(),
            hosts: Fold::new(top_processes),
            unattributed_last: BTreeMap::new(),
            unattributed: BTreeMap::new(),
            capture_last: BTreeMap::new(),
            capture: BTreeMap::new(),
            protocols: BTreeMap::new(),
            alerts_opened: 0,
            flows_evicted_last: 0,
            flows_evicted: 0,
            malformed_last: 0,
            malformed: 0,
            last_totals: [0, 0],
            last_session: 0,
            frames: 0,
        }
    }

    /// Folds one frame in. Frames must come in order; a skipped one only
    /// loses its per-tick figures (protocol packets, alerts opened).
    pub fn observe(&mut self, f: &v1::Frame) {
        self.frames += 1;
        let totals = traffic(f.totals.as_ref());
        let session = f.session.as_ref().map_or(0, |s| s.id);
        // Totals that shrink, or a new session, mean every live figure restarted.
        if totals[0] < self.last_totals[0]
            || totals[1] < self.last_totals[1]
            || session != self.last_session
        {
            self.rows.clear();
            self.unattributed_last.clear();
            self.host_rows.clear();
        }
        self.last_totals = totals;
        self.last_session = session;

        let mut deltas: HashMap<ProcKey, Dir> = HashMap::new();
        let mut rows = HashMap::with_capacity(f.processes.len());
        // A program row's bytes were counted under its processes' pids
        // before they folded in: it adds nothing new.
        for r in f.processes.iter().filter(|r| r.folded_processes == 0) {
            let p = r.process.clone().unwrap_or_default();
            let cur = traffic(r.traffic.as_ref());
            let last = self
                .rows
                .get(&(p.pid, p.start_time))
                .copied()
                .unwrap_or([0, 0]);
            let key = (p.name, p.user, p.unit, p.container);
            add(deltas.entry(key).or_default(), growth2(last, cur));
            rows.insert((p.pid, p.start_time), cur);
        }
        self.rows = rows;
        self.processes.apply(deltas);

        if self.include_hosts {
            let mut deltas: HashMap<String, Dir> = HashMap::new();
            for h in &f.hosts {
                let label = if h.name.is_empty() {
                    h.address.clone()
                } else {
                    h.name.clone()
                };
                let cur = traffic(h.traffic.as_ref());
                let last = self.host_rows.insert(h.address.clone(), cur);
                add(
                    deltas.entry(label).or_default(),
                    growth2(last.unwrap_or([0, 0]), cur),
                );
            }
            if self.host_rows.len() > MAX_KEYS {
                self.host_rows.clear();
                for h in &f.hosts {
                    self.host_rows
                        .insert(h.address.clone(), traffic(h.traffic.as_ref()));
                }
            }
            self.hosts.apply(deltas);
        }

        if let Some(u) = &f.unattributed {
            for r in &u.reasons {
                let cur = traffic(r.traffic.as_ref());
                let last = self
                    .unattributed_last
                    .insert(r.reason.clone(), cur)
                    .unwrap_or([0, 0]);
                let reason = small_set_key(&self.unattributed, &r.reason);
                add(
                    self.unattributed.entry(reason).or_default(),
                    growth2(last, cur),
                );
            }
        }

        for i in &f.interfaces {
            let Some(c) = &i.capture else { continue };
            let counted = traffic(i.counted.as_ref());
            let cur = [
                c.packets_received,
                c.packets_dropped,
                counted[0],
                counted[1],
            ];
            let last = self
                .capture_last
                .insert(i.name.clone(), cur)
                .unwrap_or([0; 4]);
            let name = small_set_key(&self.capture, &i.name);
            let acc = self.capture.entry(name).or_default();
            for k in 0..4 {
                acc[k] = acc[k].saturating_add(growth(last[k], cur[k]));
            }
        }

        if let Some(p) = &f.packet_stats {
            for (proto, n) in &p.packets_by_protocol {
                let proto = small_set_key(&self.protocols, proto);
                let c = self.protocols.entry(proto).or_default();
                *c = c.saturating_add(*n);
            }
        }

        self.alerts_opened += f
            .alerts
            .iter()
            .filter(|a| a.state == v1::AlertState::Open as i32)
            .count() as u64;
    }

    /// Folds the status counters in (they restart with each monitoring run).
    fn observe_status(&mut self, s: &v1::Status) {
        self.flows_evicted += growth(self.flows_evicted_last, s.flows_evicted);
        self.flows_evicted_last = s.flows_evicted;
        self.malformed += growth(self.malformed_last, s.packets_malformed);
        self.malformed_last = s.packets_malformed;
    }

    /// The exposition (OpenMetrics text) of these counters, the latest
    /// frame's kernel interface counters, and `status`.
    pub fn render(
        &mut self,
        frame: &v1::Frame,
        status: &v1::Status,
    ) -> Result<String, MetricsError> {
        self.observe_status(status);
        let mut reg = Registry::default();
        let dirs = ["up", "down"];

        let procs = Family::<Labels, Counter>::default();
        for (k, v) in self.processes.series() {
            for (d, n) in dirs.iter().zip(v) {
                let l = match k {
                    Some((name, user, unit, container)) => Labels(vec![
                        ("direction", (*d).to_owned()),
                        ("process", name.clone()),
                        ("user", user.clone()),
                        ("unit", unit.clone()),
                        ("container", container.clone()),
                    ]),
                    None => Labels(vec![
                        ("direction", (*d).to_owned()),
                        ("process", OTHER.to_owned()),
                        ("user", String::new()),
                        ("unit", String::new()),
                        ("container", String::new()),
                    ]),
                };
                procs.get_or_create(&l).inc_by(n);
            }
        }
        reg.register(
            "netmon_process_bytes",
            "Layer-3 bytes per process name, user, unit and container; the top N by volume keep their own series, the rest add up in process=other",
            procs,
        );

        if self.include_hosts {
            let hosts = Family::<Labels, Counter>::default();
            for (k, v) in self.hosts.series() {
                let host = k.cloned().unwrap_or_else(|| OTHER.to_owned());
                for (d, n) in dirs.iter().zip(v) {
                    hosts
                        .get_or_create(&Labels(vec![
                            ("direction", (*d).to_owned()),
                            ("host", host.clone()),
                        ]))
                        .inc_by(n);
                }
            }
            reg.register(
                "netmon_host_bytes",
                "Layer-3 bytes per remote host (name when known, else address); top N by volume, the rest add up in host=other",
                hosts,
            );
        }

        let unattributed = Family::<Labels, Counter>::default();
        for (reason, v) in &self.unattributed {
            for (d, n) in dirs.iter().zip(v) {
                unattributed
                    .get_or_create(&Labels(vec![
                        ("reason", reason.clone()),
                        ("direction", (*d).to_owned()),
                    ]))
                    .inc_by(*n);
            }
        }
        reg.register(
            "netmon_unattributed_bytes",
            "Layer-3 bytes credited to no process, by reason",
            unattributed,
        );

        let if_bytes = Family::<Labels, Counter>::default();
        let if_packets = Family::<Labels, Counter>::default();
        let if_drops = Family::<Labels, Counter>::default();
        let mut interfaces: Vec<&v1::InterfaceRow> = frame.interfaces.iter().collect();
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        interfaces.dedup_by(|a, b| a.name == b.name);
        for i in interfaces.into_iter().take(MAX_SMALL_SET) {
            let l = |d: &str| {
                Labels(vec![
                    ("interface", i.name.clone()),
                    ("direction", d.to_owned()),
                ])
            };
            if_bytes.get_or_create(&l("up")).inc_by(i.tx_bytes);
            if_bytes.get_or_create(&l("down")).inc_by(i.rx_bytes);
            if_packets.get_or_create(&l("up")).inc_by(i.tx_packets);
            if_packets.get_or_create(&l("down")).inc_by(i.rx_packets);
            if_drops.get_or_create(&l("up")).inc_by(i.tx_dropped);
            if_drops.get_or_create(&l("down")).inc_by(i.rx_dropped);
        }
        reg.register(
            "netmon_interface_bytes",
            "Kernel interface counter: bytes sent (up) and received (down)",
            if_bytes,
        );
        reg.register(
            "netmon_interface_packets",
            "Kernel interface counter: packets sent (up) and received (down)",
            if_packets,
        );
        reg.register(
            "netmon_interface_drops",
            "Kernel interface counter: packets dropped on send (up) and receive (down)",
            if_drops,
        );

        let cap_packets = Family::<Labels, Counter>::default();
        let cap_dropped = Family::<Labels, Counter>::default();
        let cap_bytes = Family::<Labels, Counter>::default();
        for (name, v) in &self.capture {
            let l = Labels(vec![("interface", name.clone())]);
            cap_packets.get_or_create(&l).inc_by(v[0]);
            cap_dropped.get_or_create(&l).inc_by(v[1]);
            for (d, n) in dirs.iter().zip([v[2], v[3]]) {
                cap_bytes
                    .get_or_create(&Labels(vec![
                        ("interface", name.clone()),
                        ("direction", (*d).to_owned()),
                    ]))
                    .inc_by(n);
            }
        }
        reg.register(
            "netmon_capture_packets",
            "Packets the kernel handed to netmond's capture",
            cap_packets,
        );
        reg.register(
            "netmon_capture_dropped",
            "Packets the kernel dropped because netmond's capture buffer was full",
            cap_dropped,
        );
        reg.register(
            "netmon_capture_bytes",
            "Layer-3 bytes netmond counted per interface",
            cap_bytes,
        );

        let protocols = Family::<Labels, Counter>::default();
        for (p, n) in &self.protocols {
            protocols
                .get_or_create(&Labels(vec![("protocol", p.clone())]))
                .inc_by(*n);
        }
        reg.register(
            "netmon_protocol_packets",
            "Packets counted per protocol",
            protocols,
        );

        let counter = |v: u64| {
            let c = Counter::<u64>::default();
            c.inc_by(v);
            c
        };
        let gauge = |v: i64| {
            let g = Gauge::<i64>::default();
            g.set(v);
            g
        };
        reg.register(
            "netmon_alerts_opened",
            "Alerts opened since netmond started",
            counter(self.alerts_opened),
        );
        reg.register(
            "netmon_flows_evicted",
            "Flows evicted from the full flow table",
            counter(self.flows_evicted),
        );
        reg.register(
            "netmon_packets_malformed",
            "Captured frames that could not be decoded",
            counter(self.malformed),
        );
        reg.register(
            "netmon_flows_active",
            "Flows tracked now",
            gauge(i64::try_from(status.flows_active).unwrap_or(i64::MAX)),
        );
        let coverage = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        coverage.set(status.coverage);
        reg.register(
            "netmon_attribution_coverage_ratio",
            "Share of captured bytes credited to a process since monitoring started (0..1)",
            coverage,
        );
        let storage = status.storage.clone().unwrap_or_default();
        reg.register(
            "netmon_store_healthy",
            "1 when the history database is ok, 0 when degraded or failed",
            gauge(i64::from(storage.state == "ok")),
        );
        let states = Family::<Labels, Gauge>::default();
        for s in ["ok", "degraded", "failed"] {
            states
                .get_or_create(&Labels(vec![("state", s.to_owned())]))
                .set(i64::from(storage.state == s));
        }
        reg.register(
            "netmon_store_state",
            "State of the history database: 1 for the current state",
            states,
        );
        reg.register(
            "netmon_store_size_bytes",
            "Size of the history database file",
            gauge(i64::try_from(storage.size_bytes).unwrap_or(i64::MAX)),
        );
        reg.register(
            "netmon_monitoring",
            "1 while monitoring, 0 when stopped",
            gauge(i64::from(status.monitoring)),
        );
        reg.register("netmon_up", "1: netmond answers", gauge(1));
        let info = Family::<Labels, Gauge>::default();
        info.get_or_create(&Labels(vec![("version", status.version.clone())]))
            .set(1);
        reg.register("netmon_build_info", "netmond version", info);

        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).map_err(MetricsError::Encode)?;
        Ok(out)
    }
}

/// The key under which `name` goes into a small, capped set.
fn small_set_key<V>(set: &BTreeMap<String, V>, name: &str) -> String {
    if set.contains_key(name) || set.len() < MAX_SMALL_SET - 1 {
        name.to_owned()
    } else {
        OTHER.to_owned()
    }
}

/// A label set whose values are escaped as the text format requires
/// (prometheus-client writes label values verbatim).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Labels(Vec<(&'static str, String)>);

#[derive(Debug)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl EncodeLabelSet for Labels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let labels: Vec<(&str, Escaped)> = self.0.iter().map(|(k, v)| (*k, Escaped(v))).collect();
        labels.as_slice().encode(encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmon_testkit::openmetrics as parse;

    fn row(pid: u32, name: &str, user: &str, up: u64, down: u64) -> v1::ProcessRow {
        v1::ProcessRow {
            process: Some(v1::ProcessIdentity {
                pid,
                start_time: u64::from(pid) * 10,
                name: name.into(),
                user: user.into(),
                cmdline: format!("{name} --secret-url http://198.51.100.9/x"),
                ..Default::default()
            }),
            traffic: Some(v1::Traffic {
                up_bytes: up,
                down_bytes: down,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn frame(rows: Vec<v1::ProcessRow>) -> v1::Frame {
        let up = rows.iter().map(|r| traffic(r.traffic.as_ref())[0]).sum();
        let down = rows.iter().map(|r| traffic(r.traffic.as_ref())[1]).sum();
        v1::Frame {
            seq: 1,
            monitoring: true,
            session: Some(v1::Session {
                id: 7,
                ..Default::default()
            }),
            processes: rows,
            totals: Some(v1::Traffic {
                up_bytes: up,
                down_bytes: down,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn status() -> v1::Status {
        v1::Status {
            version: "0.1.0".into(),
            monitoring: true,
            coverage: 0.75,
            flows_active: 3,
            flows_evicted: 2,
            storage: Some(v1::StorageHealth {
                state: "ok".into(),
                size_bytes: 4096,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn fixed_frame() -> v1::Frame {
        let mut f = frame(vec![
            row(10, "curl", "alice", 100, 2000),
            row(11, "curl", "alice", 50, 0),
            row(12, "we\"ird\\na\nme", "bob", 5, 5),
        ]);
        f.unattributed = Some(v1::Unattributed {
            traffic: None,
            reasons: vec![v1::UnattributedReason {
                reason: "no_socket".into(),
                traffic: Some(v1::Traffic {
                    up_bytes: 1,
                    down_bytes: 9,
                    ..Default::default()
                }),
            }],
        });
        f.interfaces = vec![v1::InterfaceRow {
            name: "eth0".into(),
            rx_bytes: 1000,
            tx_bytes: 500,
            rx_packets: 10,
            tx_packets: 5,
            rx_dropped: 1,
            capture: Some(v1::CaptureStats {
                packets_received: 15,
                packets_dropped: 0,
                ..Default::default()
            }),
            counted: Some(v1::Traffic {
                up_bytes: 155,
                down_bytes: 2005,
                ..Default::default()
            }),
            ..Default::default()
        }];
        f.hosts = vec![v1::HostRow {
            address: "198.51.100.9".into(),
            name: "tracker.example".into(),
            traffic: Some(v1::Traffic {
                up_bytes: 155,
                down_bytes: 2005,
                ..Default::default()
            }),
            ..Default::default()
        }];
        f.packet_stats = Some(v1::PacketStats {
            packets_by_protocol: [("tcp".to_owned(), 12), ("udp".to_owned(), 3)].into(),
            ..Default::default()
        });
        f.alerts = vec![v1::Alert {
            id: 1,
            state: v1::AlertState::Open as i32,
            ..Default::default()
        }];
        f
    }

    fn value(samples: &[parse::Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
    }

    fn scrape(c: &mut Collector, f: &v1::Frame) -> Vec<parse::Sample> {
        let text = c.render(f, &status()).expect("encodes");
        parse::exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn fixed_frame_exposition_parses_strictly_with_expected_values() {
        let mut c = Collector::new(50, false);
        let f = fixed_frame();
        c.observe(&f);
        let s = scrape(&mut c, &f);
        let p = |d, name| {
            value(
                &s,
                "netmon_process_bytes_total",
                &[("direction", d), ("process", name)],
            )
        };
        assert_eq!(p("up", "curl"), Some(150.0), "pids of one name add up");
        assert_eq!(p("down", "curl"), Some(2000.0));
        assert_eq!(
            p("up", "we\"ird\\na\nme"),
            Some(5.0),
            "escaped label round-trips"
        );
        assert_eq!(p("up", OTHER), Some(0.0));
        let one = |name, labels: &[(&str, &str)]| value(&s, name, labels);
        assert_eq!(
            one(
                "netmon_unattributed_bytes_total",
                &[("reason", "no_socket"), ("direction", "down")]
            ),
            Some(9.0)
        );
        assert_eq!(
            one(
                "netmon_interface_bytes_total",
                &[("interface", "eth0"), ("direction", "down")]
            ),
            Some(1000.0)
        );
        assert_eq!(
            one(
                "netmon_interface_packets_total",
                &[("interface", "eth0"), ("direction", "up")]
            ),
            Some(5.0)
        );
        assert_eq!(
            one(
                "netmon_interface_drops_total",
                &[("interface", "eth0"), ("direction", "down")]
            ),
            Some(1.0)
        );
        assert_eq!(
            one("netmon_capture_packets_total", &[("interface", "eth0")]),
            Some(15.0)
        );
        assert_eq!(
            one("netmon_capture_dropped_total", &[("interface", "eth0")]),
            Some(0.0)
        );
        assert_eq!(
            one(
                "netmon_capture_bytes_total",
                &[("interface", "eth0"), ("direction", "up")]
            ),
            Some(155.0)
        );
        assert_eq!(
            one("netmon_protocol_packets_total", &[("protocol", "tcp")]),
            Some(12.0)
        );
        assert_eq!(one("netmon_alerts_opened_total", &[]), Some(1.0));
        assert_eq!(one("netmon_flows_evicted_total", &[]), Some(2.0));
        assert_eq!(one("netmon_flows_active", &[]), Some(3.0));
        assert_eq!(one("netmon_attribution_coverage_ratio", &[]), Some(0.75));
        assert_eq!(one("netmon_store_healthy", &[]), Some(1.0));
        assert_eq!(
            one("netmon_store_state", &[("state", "degraded")]),
            Some(0.0)
        );
        assert_eq!(one("netmon_store_size_bytes", &[]), Some(4096.0));
        assert_eq!(one("netmon_monitoring", &[]), Some(1.0));
        assert_eq!(one("netmon_up", &[]), Some(1.0));
        // The same frame again adds nothing; per-tick figures count once per frame.
        let s2 = scrape(&mut c, &f);
        assert_eq!(
            value(
                &s2,
                "netmon_process_bytes_total",
                &[("direction", "up"), ("process", "curl")]
            ),
            Some(150.0)
        );
    }

    #[test]
    fn strict_parser_rejects_malformed_lines() {
        for bad in [
            "foo 1\n",
            "foo{a=\"x} 1\n# EOF\n",
            "foo{a=x} 1\n# EOF\n",
            "foo{a=\"x\"}1\n# EOF\n",
            "foo{a=\"\\q\"} 1\n# EOF\n",
            "foo bar\n# EOF\n",
            "# random comment\n# EOF\n",
            "# HELP foo a \"quoted\" word\n# EOF\n",
        ] {
            assert!(parse::exposition(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse::exposition("# TYPE foo counter\nfoo_total{a=\"x\",b=\"\"} 1\n# EOF\n").is_ok()
        );
    }

    #[test]
    fn processes_beyond_top_n_fold_into_other() {
        let mut c = Collector::new(2, false);
        let f = frame(vec![
            row(1, "big", "u", 1000, 0),
            row(2, "mid", "u", 500, 0),
            row(3, "small", "u", 10, 0),
            row(4, "tiny", "u", 1, 1),
        ]);
        c.observe(&f);
        let s = scrape(&mut c, &f);
        let up = |n| {
            value(
                &s,
                "netmon_process_bytes_total",
                &[("direction", "up"), ("process", n)],
            )
        };
        assert_eq!(up("big"), Some(1000.0));
        assert_eq!(up("mid"), Some(500.0));
        assert_eq!(up("small"), None);
        assert_eq!(up(OTHER), Some(11.0));
        assert_eq!(
            value(
                &s,
                "netmon_process_bytes_total",
                &[("direction", "down"), ("process", OTHER)]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn counters_never_go_down_when_the_top_n_changes_or_totals_reset() {
        let mut c = Collector::new(1, false);
        let mut seen: HashMap<(String, String, String), f64> = HashMap::new();
        let mut check = |c: &mut Collector, f: &v1::Frame| {
            for (n, l, v) in scrape(c, f) {
                if !n.ends_with("_total") {
                    continue;
                }
                let key = (
                    n.clone(),
                    l.get("process").cloned().unwrap_or_default(),
                    l.get("direction").cloned().unwrap_or_default(),
                );
                let before = seen.insert(key.clone(), v).unwrap_or(0.0);
                assert!(v >= before, "{key:?} went down: {before} -> {v}");
            }
        };
        let frames = [
            frame(vec![row(1, "a", "u", 100, 0), row(2, "b", "u", 10, 0)]),
            // b overtakes a: b gets its own series, a's bytes from now go to other.
            frame(vec![row(1, "a", "u", 110, 0), row(2, "b", "u", 500, 0)]),
            frame(vec![row(1, "a", "u", 2000, 0), row(2, "b", "u", 510, 0)]),
            // `reset`: totals restart from zero.
            frame(vec![row(1, "a", "u", 5, 0), row(2, "b", "u", 3, 0)]),
            frame(vec![row(1, "a", "u", 50, 0), row(2, "b", "u", 30, 0)]),
        ];
        for f in &frames {
            c.observe(f);
            check(&mut c, f);
        }
        // Every byte is in exactly one series' growth: a's 110 + 1890 + 5 + 45
        // and b's 510 + 3 + 27, split between own series and other.
        let s = scrape(&mut c, &frames[4]);
        let other = value(
            &s,
            "netmon_process_bytes_total",
            &[("direction", "up"), ("process", OTHER)],
        )
        .unwrap_or(0.0);
        assert!(other > 0.0);
    }

    #[test]
    fn thousands_of_names_keep_series_under_the_cap() {
        let cap = 50;
        let mut c = Collector::new(cap, false);
        let mut rows = Vec::new();
        for i in 0..5000u32 {
            rows.push(row(i + 1, &format!("p{i}"), "u", u64::from(i) + 1, 1));
            if i % 500 == 499 {
                let f = frame(rows.clone());
                c.observe(&f);
            }
        }
        let f = frame(rows);
        let s = scrape(&mut c, &f);
        let series = s
            .iter()
            .filter(|x| x.0 == "netmon_process_bytes_total")
            .count();
        assert_eq!(
            series,
            2 * (cap + 1),
            "own series for the top {cap}, one other, two directions"
        );
        let other = value(
            &s,
            "netmon_process_bytes_total",
            &[("direction", "up"), ("process", OTHER)],
        );
        assert!(
            other.is_some_and(|v| v > 0.0),
            "the long tail adds up in other"
        );
    }

    #[test]
    fn hosts_stay_private_by_default() {
        let f = fixed_frame();
        let mut c = Collector::new(50, false);
        c.observe(&f);
        let text = c.render(&f, &status()).expect("encodes");
        for secret in [
            "198.51.100",
            "tracker.example",
            "netmon_host_bytes",
            "secret-url",
        ] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        let mut c = Collector::new(50, true);
        c.observe(&f);
        let s = scrape(&mut c, &f);
        assert_eq!(
            value(
                &s,
                "netmon_host_bytes_total",
                &[("host", "tracker.example"), ("direction", "down")]
            ),
            Some(2005.0)
        );
    }
}
