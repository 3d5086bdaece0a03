//! Client-side time series kept from frames for the Packets and Interfaces
//! views: packets/s per protocol and each interface's rates, one sample per
//! frame, bounded in length and in the number of series. No rendering here.

use std::collections::{BTreeMap, VecDeque};

use netmon_proto::v1;

/// Samples kept per series: five minutes at the daemon's 1 s tick.
pub const SERIES_SAMPLES: usize = 300;
/// Series kept at most; past this, the quietest new names are not tracked
/// (a flood of interface or protocol names must not grow the client).
pub const MAX_SERIES: usize = 32;

/// Named series of equal length, oldest sample first. A series that appears
/// later is padded with zeros so all of them share one time axis; one that
/// stayed at zero for the whole window is dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    samples: usize,
    pub by_name: BTreeMap<String, VecDeque<u64>>,
}

impl Series {
    /// Adds one sample for every name (0 for names absent from `values`).
    pub fn push<'a>(&mut self, values: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut values: Vec<(&str, u64)> = values.into_iter().collect();
        // Busiest first, so the cap keeps the names that matter.
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        for (name, _) in &values {
            if self.by_name.len() >= MAX_SERIES {
                break;
            }
            if !self.by_name.contains_key(*name) {
                let zeros = VecDeque::from(vec![0; self.samples]);
                self.by_name.insert((*name).to_owned(), zeros);
            }
        }
        for (name, ring) in &mut self.by_name {
            let v = values
                .iter()
                .find(|(n, _)| *n == name.as_str())
                .map_or(0, |(_, v)| *v);
            if ring.len() >= SERIES_SAMPLES {
                ring.pop_front();
            }
            ring.push_back(v);
        }
        self.samples = (self.samples + 1).min(SERIES_SAMPLES);
        self.by_name.retain(|_, ring| ring.iter().any(|&v| v > 0));
    }

    /// The newest sample of `name`.
    pub fn last(&self, name: &str) -> u64 {
        self.by_name
            .get(name)
            .and_then(|r| r.back().copied())
            .unwrap_or(0)
    }

    /// Samples taken so far (the width of the time axis), at most [`SERIES_SAMPLES`].
    pub fn len(&self) -> usize {
        self.samples
    }
}

/// Packets/s per protocol of one frame; empty without packet statistics.
pub fn protocol_rates(f: &v1::Frame) -> Vec<(&str, u64)> {
    let Some(ps) = &f.packet_stats else {
        return Vec::new();
    };
    let tick_ms = f.tick_ms.max(1);
    ps.packets_by_protocol
        .iter()
        .map(|(k, v)| (k.as_str(), v.saturating_mul(1000) / tick_ms))
        .collect()
}

/// A remote host as a top talker: its address (or name) and one direction's rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Talker {
    pub address: String,
    pub name: String,
    pub bps: u64,
    pub bytes: u64,
}

/// The frame's remote hosts ranked as sources (they send to us: our download)
/// or destinations (we send to them: our upload), by rate then total, top `n`.
pub fn top_talkers(f: &v1::Frame, sources: bool, n: usize) -> Vec<Talker> {
    let mut v: Vec<Talker> = f
        .hosts
        .iter()
        .map(|h| {
            let t = h.traffic.unwrap_or_default();
            let (bps, bytes) = if sources {
                (t.down_bps, t.down_bytes)
            } else {
                (t.up_bps, t.up_bytes)
            };
            Talker {
                address: h.address.clone(),
                name: h.name.clone(),
                bps,
                bytes,
            }
        })
        .filter(|t| t.bytes > 0 || t.bps > 0)
        .collect();
    v.sort_by(|a, b| {
        b.bps
            .cmp(&a.bps)
            .then_with(|| b.bytes.cmp(&a.bytes))
            .then_with(|| a.address.cmp(&b.address))
    });
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_share_one_axis_and_drop_silent_names() {
        let mut s = Series::default();
        s.push([("tcp", 10)]);
        s.push([("tcp", 20), ("udp", 5)]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.by_name["udp"], [0, 5], "late name padded with zeros");
        assert_eq!(s.by_name["tcp"], [10, 20]);
        assert_eq!(s.last("udp"), 5);
        assert_eq!(s.last("icmp"), 0);
        for _ in 0..SERIES_SAMPLES {
            s.push([("tcp", 1)]);
        }
        assert_eq!(s.len(), SERIES_SAMPLES);
        assert_eq!(s.by_name["tcp"].len(), SERIES_SAMPLES);
        assert!(
            !s.by_name.contains_key("udp"),
            "silent for the whole window"
        );
    }

    #[test]
    fn series_count_is_capped_keeping_the_busiest() {
        let mut s = Series::default();
        let names: Vec<String> = (0..MAX_SERIES + 10).map(|i| format!("p{i}")).collect();
        s.push(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i as u64 + 1)),
        );
        assert_eq!(s.by_name.len(), MAX_SERIES);
        assert!(s.by_name.contains_key(&format!("p{}", MAX_SERIES + 9)));
        assert!(!s.by_name.contains_key("p0"));
    }

    #[test]
    fn talkers_split_by_direction() {
        let t = |up_bps, down_bps| v1::Traffic {
            up_bps,
            down_bps,
            up_bytes: up_bps * 10,
            down_bytes: down_bps * 10,
            ..Default::default()
        };
        let f = v1::Frame {
            hosts: vec![
                v1::HostRow {
                    address: "10.0.0.1".to_owned(),
                    traffic: Some(t(100, 9000)),
                    ..Default::default()
                },
                v1::HostRow {
                    address: "10.0.0.2".to_owned(),
                    traffic: Some(t(5000, 0)),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let src = top_talkers(&f, true, 5);
        assert_eq!(src.len(), 1, "a host that sent nothing is no source");
        assert_eq!(src[0].address, "10.0.0.1");
        let dst = top_talkers(&f, false, 1);
        assert_eq!(dst[0].address, "10.0.0.2");
        assert_eq!(dst[0].bps, 5000);
    }

    #[test]
    fn protocol_rates_scale_by_tick() {
        let mut f = v1::Frame {
            tick_ms: 500,
            ..Default::default()
        };
        assert!(protocol_rates(&f).is_empty());
        f.packet_stats = Some(v1::PacketStats {
            packets_by_protocol: [("tcp".to_owned(), 50)].into_iter().collect(),
            ..Default::default()
        });
        assert_eq!(protocol_rates(&f), [("tcp", 100)]);
    }
}
