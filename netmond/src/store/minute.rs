//! The per-tick feed and its in-memory rollup into per-minute samples:
//! cumulative totals become deltas, deltas are summed per minute. Pure: no
//! SQL, no I/O, no clock.

use std::collections::{BTreeSet, HashMap};

use netmon_proto::v1;

use crate::attribution::ProcessInfo;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Baselines kept per kind before the least recently seen half is dropped.
const MAX_BASELINES: usize = 200_000;

/// One process in a tick: cumulative totals (since start or reset) and rates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcTick {
    pub identity: ProcessInfo,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_bps: u64,
    pub down_bps: u64,
    pub protocols: Vec<String>,
}

/// One remote host in a tick (cumulative totals and rates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostTick {
    pub address: String,
    pub name: String,
    pub category: String,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_bps: u64,
    pub down_bps: u64,
}

/// Bytes one process exchanged with one remote host in one tick (a delta,
/// not a total). `address` "" stands for the process's other hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcHostTick {
    pub process: ProcKey,
    pub address: String,
    pub up_bytes: u64,
    pub down_bytes: u64,
}

/// One captured interface in a tick (layer-3 bytes netmond counted on it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceTick {
    pub name: String,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_bps: u64,
    pub down_bps: u64,
}

/// What the engine hands the store once per tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickRecord {
    pub time_ms: i64,
    /// Changes whenever live totals restart from zero (monitoring started,
    /// `reset`): baselines from another epoch are not subtracted.
    pub epoch: u64,
    pub processes: Vec<ProcTick>,
    pub hosts: Vec<HostTick>,
    pub interfaces: Vec<IfaceTick>,
    /// Who talked to whom this tick (bounded per process by the aggregator).
    pub proc_hosts: Vec<ProcHostTick>,
    /// Processes whose rows are gone for good (folded into program rows):
    /// their baselines are dropped.
    pub gone: Vec<ProcKey>,
}

impl TickRecord {
    /// Builds the record from a tick's rows. With `only_moving`, rows with no
    /// rate in the last tick are left out: they had no new bytes, and the
    /// next delta of a row is taken against its last baseline anyway.
    pub fn from_rows(
        time_ms: i64,
        epoch: u64,
        processes: &[v1::ProcessRow],
        hosts: &[v1::HostRow],
        interfaces: &[v1::InterfaceRow],
        only_moving: bool,
    ) -> TickRecord {
        let moving = |t: &v1::Traffic| !only_moving || t.up_bps != 0 || t.down_bps != 0;
        TickRecord {
            time_ms,
            epoch,
            gone: Vec::new(),
            proc_hosts: Vec::new(),
            processes: processes
                .iter()
                // A program row holds exited processes whose bytes were
                // recorded under their own pids already.
                .filter(|p| p.folded_processes == 0)
                .filter_map(|p| {
                    let t = p.traffic.unwrap_or_default();
                    let id = p.process.as_ref()?;
                    moving(&t).then(|| ProcTick {
                        identity: ProcessInfo::from(id),
                        up_bytes: t.up_bytes,
                        down_bytes: t.down_bytes,
                        up_bps: t.up_bps,
                        down_bps: t.down_bps,
                        protocols: p.protocols.clone(),
                    })
                })
                .collect(),
            hosts: hosts
                .iter()
                .filter_map(|h| {
                    let t = h.traffic.unwrap_or_default();
                    moving(&t).then(|| HostTick {
                        address: h.address.clone(),
                        name: h.name.clone(),
                        category: h.category.clone(),
                        up_bytes: t.up_bytes,
                        down_bytes: t.down_bytes,
                        up_bps: t.up_bps,
                        down_bps: t.down_bps,
                    })
                })
                .collect(),
            interfaces: interfaces
                .iter()
                .filter_map(|i| {
                    let t = i.counted?;
                    moving(&t).then(|| IfaceTick {
                        name: i.name.clone(),
                        up_bytes: t.up_bytes,
                        down_bytes: t.down_bytes,
                        up_bps: t.up_bps,
                        down_bps: t.down_bps,
                    })
                })
                .collect(),
        }
    }
}

/// Bytes and peak one-second rates over a span (a minute, hour or day).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub peak_up_bps: u64,
    pub peak_down_bps: u64,
}

impl Sample {
    fn add(&mut self, (up, down): (u64, u64), up_bps: u64, down_bps: u64) {
        self.up_bytes = self.up_bytes.saturating_add(up);
        self.down_bytes = self.down_bytes.saturating_add(down);
        self.peak_up_bps = self.peak_up_bps.max(up_bps);
        self.peak_down_bps = self.peak_down_bps.max(down_bps);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcMinute {
    pub identity: ProcessInfo,
    pub sample: Sample,
    pub protocols: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMinute {
    pub name: String,
    pub category: String,
    pub sample: Sample,
}

pub type ProcKey = (u32, u64);

/// Samples gathered over one flush interval, keyed by minute start (ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub procs: HashMap<(i64, ProcKey), ProcMinute>,
    pub hosts: HashMap<(i64, String), HostMinute>,
    pub ifaces: HashMap<(i64, String), Sample>,
    /// Per minute and process: (up, down) bytes per remote address ("" =
    /// other hosts). Trimmed to the top hosts when written.
    pub proc_hosts: HashMap<(i64, ProcKey), HashMap<String, (u64, u64)>>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
            && self.hosts.is_empty()
            && self.ifaces.is_empty()
            && self.proc_hosts.is_empty()
    }
}

/// Last cumulative totals seen per key, and the tick they were seen in.
#[derive(Debug, Default)]
struct Baselines<K> {
    map: HashMap<K, (u64, u64, u64)>,
}

impl<K: std::hash::Hash + Eq + Clone> Baselines<K> {
    /// The new bytes since the last total. A total that went down means the
    /// counters restarted (a reset, or a row the aggregator forgot and saw
    /// again): the new total is all new.
    fn delta(&mut self, key: &K, total: (u64, u64), tick: u64) -> (u64, u64) {
        let d = match self.map.get(key) {
            Some(&(up, down, _)) if total.0 >= up && total.1 >= down => {
                (total.0 - up, total.1 - down)
            }
            _ => total,
        };
        if self.map.len() >= MAX_BASELINES && !self.map.contains_key(key) {
            self.evict();
        }
        self.map.insert(key.clone(), (total.0, total.1, tick));
        d
    }

    /// Drops the least recently seen half.
    fn evict(&mut self) {
        let mut seen: Vec<u64> = self.map.values().map(|v| v.2).collect();
        let mid = seen.len() / 2;
        let (_, cut, _) = seen.select_nth_unstable(mid);
        let cut = *cut;
        self.map.retain(|_, v| v.2 > cut);
    }

    fn clear(&mut self) {
        self.map.clear();
    }
}

/// Turns tick records into per-minute samples.
#[derive(Debug, Default)]
pub struct Accumulator {
    epoch: Option<u64>,
    ticks: u64,
    procs: Baselines<ProcKey>,
    hosts: Baselines<String>,
    ifaces: Baselines<String>,
    /// Samples not yet handed to the writer.
    pub batch: Batch,
}

pub fn floor_to(ms: i64, unit: i64) -> i64 {
    ms - ms.rem_euclid(unit)
}

impl Accumulator {
    pub fn record(&mut self, rec: &TickRecord) {
        if self.epoch != Some(rec.epoch) {
            self.procs.clear();
            self.hosts.clear();
            self.ifaces.clear();
            self.epoch = Some(rec.epoch);
        }
        self.ticks += 1;
        let tick = self.ticks;
        for k in &rec.gone {
            self.procs.map.remove(k);
        }
        let minute = floor_to(rec.time_ms, MINUTE_MS);
        for p in &rec.processes {
            let key = (p.identity.pid, p.identity.start_time);
            let d = self.procs.delta(&key, (p.up_bytes, p.down_bytes), tick);
            if d == (0, 0) && p.up_bps == 0 && p.down_bps == 0 {
                continue;
            }
            let m = self.batch.procs.entry((minute, key)).or_default();
            m.identity.clone_from(&p.identity);
            m.sample.add(d, p.up_bps, p.down_bps);
            m.protocols.extend(p.protocols.iter().cloned());
        }
        for h in &rec.hosts {
            let d = self
                .hosts
                .delta(&h.address, (h.up_bytes, h.down_bytes), tick);
            if d == (0, 0) && h.up_bps == 0 && h.down_bps == 0 {
                continue;
            }
            let m = self
                .batch
                .hosts
                .entry((minute, h.address.clone()))
                .or_default();
            if !h.name.is_empty() {
                m.name.clone_from(&h.name);
            }
            if !h.category.is_empty() {
                m.category.clone_from(&h.category);
            }
            m.sample.add(d, h.up_bps, h.down_bps);
        }
        for i in &rec.interfaces {
            let d = self.ifaces.delta(&i.name, (i.up_bytes, i.down_bytes), tick);
            if d == (0, 0) && i.up_bps == 0 && i.down_bps == 0 {
                continue;
            }
            self.batch
                .ifaces
                .entry((minute, i.name.clone()))
                .or_default()
                .add(d, i.up_bps, i.down_bps);
        }
        self.record_proc_hosts(minute, &rec.proc_hosts);
    }

    /// Deltas already: no baselines.
    fn record_proc_hosts(&mut self, minute: i64, rows: &[ProcHostTick]) {
        for r in rows {
            if r.up_bytes == 0 && r.down_bytes == 0 {
                continue;
            }
            let hosts = self
                .batch
                .proc_hosts
                .entry((minute, r.process))
                .or_default();
            let e = match hosts.get_mut(r.address.as_str()) {
                Some(e) => e,
                None => hosts.entry(r.address.clone()).or_default(),
            };
            e.0 = e.0.saturating_add(r.up_bytes);
            e.1 = e.1.saturating_add(r.down_bytes);
        }
    }

    /// Hands over everything gathered since the last call.
    pub fn take(&mut self) -> Batch {
        std::mem::take(&mut self.batch)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn proc_tick(pid: u32, name: &str, up: u64, down: u64, proto: &str) -> ProcTick {
        ProcTick {
            identity: ProcessInfo {
                pid,
                start_time: u64::from(pid) * 10,
                name: name.into(),
                exe: format!("/usr/bin/{name}"),
                uid: 1000,
                user: "alice".into(),
                ..Default::default()
            },
            up_bytes: up,
            down_bytes: down,
            up_bps: 1,
            down_bps: 1,
            protocols: vec![proto.into()],
        }
    }

    /// A tick's bytes between the process of `proc_tick(pid, ..)` and `address`.
    pub fn proc_host(pid: u32, address: &str, up: u64, down: u64) -> ProcHostTick {
        ProcHostTick {
            process: (pid, u64::from(pid) * 10),
            address: address.into(),
            up_bytes: up,
            down_bytes: down,
        }
    }

    pub fn tick(time_ms: i64, epoch: u64, procs: Vec<ProcTick>) -> TickRecord {
        TickRecord {
            time_ms,
            epoch,
            processes: procs,
            ..Default::default()
        }
    }

    #[test]
    fn baselines_of_processes_folded_into_program_rows_are_dropped() {
        let mut a = Accumulator::default();
        let procs = (1..=50)
            .map(|pid| proc_tick(pid, "job", 10, 10, "tcp"))
            .collect();
        a.record(&tick(1_000, 1, procs));
        assert_eq!(a.procs.map.len(), 50);
        let gone = (1..=40).map(|pid| (pid, u64::from(pid) * 10)).collect();
        a.record(&TickRecord {
            gone,
            ..tick(2_000, 1, Vec::new())
        });
        assert_eq!(a.procs.map.len(), 10);
    }

    #[test]
    fn cumulative_totals_become_per_minute_deltas() {
        let mut a = Accumulator::default();
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE_MS;
        a.record(&tick(
            t0 + 1_000,
            1,
            vec![proc_tick(7, "curl", 100, 1000, "tcp")],
        ));
        a.record(&tick(
            t0 + 2_000,
            1,
            vec![proc_tick(7, "curl", 150, 3000, "https")],
        ));
        a.record(&tick(
            t0 + 61_000,
            1,
            vec![proc_tick(7, "curl", 160, 3500, "https")],
        ));
        let b = a.take();
        let first = &b.procs[&(t0, (7, 70))];
        assert_eq!(
            (first.sample.up_bytes, first.sample.down_bytes),
            (150, 3000)
        );
        assert_eq!(
            first.protocols.iter().cloned().collect::<Vec<_>>(),
            vec!["https".to_owned(), "tcp".to_owned()]
        );
        let second = &b.procs[&(t0 + MINUTE_MS, (7, 70))];
        assert_eq!(
            (second.sample.up_bytes, second.sample.down_bytes),
            (10, 500)
        );
        assert!(a.take().is_empty());
    }

    #[test]
    fn a_total_that_goes_down_is_a_reset_and_counts_whole() {
        let mut a = Accumulator::default();
        a.record(&tick(0, 1, vec![proc_tick(7, "curl", 100, 100, "tcp")]));
        a.record(&tick(1_000, 1, vec![proc_tick(7, "curl", 30, 40, "tcp")]));
        let s = a.take().procs[&(0, (7, 70))].sample;
        assert_eq!((s.up_bytes, s.down_bytes), (130, 140));
    }

    #[test]
    fn a_new_epoch_forgets_baselines() {
        let mut a = Accumulator::default();
        a.record(&tick(0, 1, vec![proc_tick(7, "curl", 100, 100, "tcp")]));
        // Reset then more traffic than before: still counted as new.
        a.record(&tick(1_000, 2, vec![proc_tick(7, "curl", 300, 300, "tcp")]));
        let s = a.take().procs[&(0, (7, 70))].sample;
        assert_eq!((s.up_bytes, s.down_bytes), (400, 400));
    }

    #[test]
    fn a_reused_pid_is_another_process() {
        let mut a = Accumulator::default();
        let mut other = proc_tick(7, "wget", 5, 5, "tcp");
        other.identity.start_time = 999;
        a.record(&tick(
            0,
            1,
            vec![proc_tick(7, "curl", 100, 100, "tcp"), other],
        ));
        assert_eq!(a.take().procs.len(), 2);
    }

    #[test]
    fn hosts_and_interfaces_are_sampled_with_peaks() {
        let mut a = Accumulator::default();
        let mut r = TickRecord {
            time_ms: 5_000,
            epoch: 1,
            hosts: vec![HostTick {
                address: "10.0.0.1".into(),
                up_bytes: 10,
                down_bytes: 20,
                up_bps: 10,
                down_bps: 20,
                ..Default::default()
            }],
            interfaces: vec![IfaceTick {
                name: "eth0".into(),
                up_bytes: 10,
                down_bytes: 20,
                up_bps: 10,
                down_bps: 20,
            }],
            ..Default::default()
        };
        a.record(&r);
        r.time_ms = 6_000;
        r.hosts[0].up_bytes = 110;
        r.hosts[0].up_bps = 100;
        r.interfaces[0].down_bytes = 25;
        r.interfaces[0].down_bps = 5;
        a.record(&r);
        let b = a.take();
        let h = b.hosts[&(0, "10.0.0.1".to_owned())].sample;
        assert_eq!((h.up_bytes, h.down_bytes, h.peak_up_bps), (110, 20, 100));
        let i = b.ifaces[&(0, "eth0".to_owned())];
        assert_eq!((i.up_bytes, i.down_bytes, i.peak_down_bps), (10, 25, 20));
    }

    #[test]
    fn process_host_deltas_add_up_per_minute() {
        let mut a = Accumulator::default();
        let mut r = tick(1_000, 1, Vec::new());
        r.proc_hosts = vec![proc_host(7, "10.0.0.1", 10, 20), proc_host(7, "", 1, 1)];
        a.record(&r);
        r.time_ms = 2_000;
        a.record(&r);
        r.time_ms = 61_000;
        a.record(&r);
        let b = a.take();
        assert_eq!(b.proc_hosts[&(0, (7, 70))]["10.0.0.1"], (20, 40));
        assert_eq!(b.proc_hosts[&(0, (7, 70))][""], (2, 2));
        assert_eq!(b.proc_hosts[&(MINUTE_MS, (7, 70))]["10.0.0.1"], (10, 20));
    }

    #[test]
    fn baselines_stay_bounded() {
        let mut b = Baselines::<u64>::default();
        for k in 0..(MAX_BASELINES as u64 + 10) {
            b.delta(&k, (1, 1), k);
        }
        assert!(b.map.len() <= MAX_BASELINES);
        assert!(b.map.contains_key(&(MAX_BASELINES as u64 + 9)));
    }
}
