//! `stats`: the packet-level picture of one tick (packets/s per protocol, protocol
//! shares, size histogram, top talkers), from the second frame of a Subscribe stream
//! (the first one a subscriber gets may hold a partial tick).

use std::io::Write;

use netmon_proto::v1;
use serde::Serialize;

use super::Client;
use crate::error::{CtlError, Result};
use crate::json::{HostJson, TrafficJson};
use crate::output::{ellipsize, write_json, Align, Table};
use crate::units::{format_bytes, format_rate};
use crate::when::rfc3339_ms;

#[derive(Debug, Serialize, PartialEq)]
pub struct ProtocolJson {
    pub protocol: String,
    /// Packets in the tick.
    pub packets: u64,
    pub packets_per_sec: u64,
    /// Share of the tick's packets, 0-100.
    pub percent: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SizeBucketJson {
    /// Sizes (layer-3 bytes) above the previous bucket's `le` and up to this one;
    /// `null` for the last, open-ended bucket.
    pub le: Option<u32>,
    pub packets: u64,
    pub percent: f64,
}

#[derive(Debug, Serialize)]
pub struct StatsJson {
    pub time: Option<String>,
    pub tick_ms: u64,
    pub monitoring: bool,
    /// False when the daemon sends no packet statistics (basic mode).
    pub available: bool,
    pub packets_per_sec: u64,
    pub packets: u64,
    pub protocols: Vec<ProtocolJson>,
    pub sizes: Vec<SizeBucketJson>,
    /// Remote hosts by current rate, then by total bytes.
    pub top_talkers: Vec<HostJson>,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

impl StatsJson {
    pub fn from_frame(f: &v1::Frame, limit: usize) -> StatsJson {
        let tick_ms = if f.tick_ms == 0 { 1000 } else { f.tick_ms };
        let ps = f.packet_stats.clone().unwrap_or_default();
        let packets: u64 = ps.packets_by_protocol.values().sum();
        let mut protocols: Vec<ProtocolJson> = ps
            .packets_by_protocol
            .iter()
            .map(|(p, n)| ProtocolJson {
                protocol: p.clone(),
                packets: *n,
                packets_per_sec: n.saturating_mul(1000) / tick_ms,
                percent: percent(*n, packets),
            })
            .collect();
        protocols.sort_by(|a, b| {
            b.packets
                .cmp(&a.packets)
                .then_with(|| a.protocol.cmp(&b.protocol))
        });
        let sized: u64 = ps.size_counts.iter().sum();
        let sizes = ps
            .size_counts
            .iter()
            .enumerate()
            .map(|(i, n)| SizeBucketJson {
                le: ps.size_bounds.get(i).copied().filter(|b| *b != u32::MAX),
                packets: *n,
                percent: percent(*n, sized),
            })
            .collect();
        let mut hosts: Vec<&v1::HostRow> = f.hosts.iter().collect();
        hosts.sort_by_key(|h| {
            let t = TrafficJson::from(h.traffic.as_ref());
            std::cmp::Reverse((
                t.up_bps.saturating_add(t.down_bps),
                t.up_bytes.saturating_add(t.down_bytes),
            ))
        });
        if limit > 0 {
            hosts.truncate(limit);
        }
        StatsJson {
            time: rfc3339_ms(f.time_ms),
            tick_ms,
            monitoring: f.monitoring,
            available: f.packet_stats.is_some(),
            packets_per_sec: ps.packets_per_sec,
            packets,
            protocols,
            sizes,
            top_talkers: hosts.into_iter().map(HostJson::from).collect(),
        }
    }
}

/// Reads frames until the second one (the first full tick seen from its start).
pub async fn stats(mut client: Client, limit: u32, json: bool, out: &mut dyn Write) -> Result<()> {
    let mut stream = client
        .subscribe(v1::SubscribeRequest { every_ticks: 1 })
        .await?
        .into_inner();
    let mut frame = None;
    for _ in 0..2 {
        frame = match stream.message().await {
            Ok(Some(f)) => Some(f),
            Ok(None) => return Err(CtlError::Gone),
            Err(status) => return Err(status.into()),
        };
    }
    let frame = frame.ok_or(CtlError::Gone)?;
    let doc = StatsJson::from_frame(&frame, usize::try_from(limit).unwrap_or(usize::MAX));
    if json {
        return write_json(out, &doc);
    }
    write_human(&doc, out)
}

fn write_human(s: &StatsJson, out: &mut dyn Write) -> Result<()> {
    if !s.monitoring {
        writeln!(out, "monitoring is stopped")?;
    }
    if !s.available {
        writeln!(
            out,
            "no packet statistics: netmond runs without packet capture (basic mode)"
        )?;
    } else {
        writeln!(
            out,
            "{} packets/s ({} packets in the last {} ms tick)\n",
            s.packets_per_sec, s.packets, s.tick_ms
        )?;
        let mut t = Table::new(&[
            ("PROTOCOL", Align::Left),
            ("PACKETS/S", Align::Right),
            ("SHARE", Align::Right),
        ]);
        for p in &s.protocols {
            t.row(vec![
                p.protocol.clone(),
                p.packets_per_sec.to_string(),
                format!("{:.1}%", p.percent),
            ]);
        }
        t.write_to(out)?;
        writeln!(out)?;
        let mut t = Table::new(&[
            ("SIZE (BYTES)", Align::Left),
            ("PACKETS", Align::Right),
            ("SHARE", Align::Right),
            ("", Align::Left),
        ]);
        let mut lo = 0u32;
        for b in &s.sizes {
            let label = match b.le {
                Some(hi) => format!("{lo}-{hi}"),
                None => format!("> {}", lo.saturating_sub(1)),
            };
            lo = b.le.map_or(lo, |h| h.saturating_add(1));
            t.row(vec![
                label,
                b.packets.to_string(),
                format!("{:.1}%", b.percent),
                "#".repeat((b.percent / 2.5).round() as usize),
            ]);
        }
        t.write_to(out)?;
        writeln!(out)?;
    }
    let mut t = Table::new(&[
        ("TOP TALKER", Align::Left),
        ("NAME", Align::Left),
        ("UP", Align::Right),
        ("DOWN", Align::Right),
        ("TOTAL", Align::Right),
        ("PROCESSES", Align::Left),
    ]);
    for h in &s.top_talkers {
        t.row(vec![
            h.address.clone(),
            ellipsize(h.name.as_deref().unwrap_or(""), 40),
            format_rate(h.traffic.up_bps),
            format_rate(h.traffic.down_bps),
            format_bytes(h.traffic.up_bytes.saturating_add(h.traffic.down_bytes)),
            ellipsize(&h.processes.join(","), 40),
        ]);
    }
    t.write_to(out)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    fn frame() -> v1::Frame {
        v1::Frame {
            tick_ms: 500,
            monitoring: true,
            packet_stats: Some(v1::PacketStats {
                packets_by_protocol: [("tcp".to_owned(), 300), ("udp".to_owned(), 100)]
                    .into_iter()
                    .collect(),
                size_bounds: vec![64, 1500, u32::MAX],
                size_counts: vec![200, 150, 50],
                packets_per_sec: 800,
            }),
            hosts: vec![
                v1::HostRow {
                    address: "10.0.0.2".into(),
                    traffic: Some(v1::Traffic {
                        up_bps: 10,
                        up_bytes: 1_000_000,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                v1::HostRow {
                    address: "10.0.0.3".into(),
                    traffic: Some(v1::Traffic {
                        down_bps: 5000,
                        down_bytes: 10,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn protocols_get_rates_and_shares_and_talkers_sort_by_rate() {
        let s = StatsJson::from_frame(&frame(), 1);
        assert_eq!(s.packets, 400);
        assert_eq!(
            s.protocols[0],
            ProtocolJson {
                protocol: "tcp".into(),
                packets: 300,
                packets_per_sec: 600,
                percent: 75.0
            }
        );
        assert_eq!(s.protocols[1].percent, 25.0);
        assert_eq!(s.sizes[0].le, Some(64));
        assert_eq!(s.sizes[2].le, None);
        assert_eq!(s.sizes[1].percent, 37.5);
        assert_eq!(s.top_talkers.len(), 1);
        assert_eq!(s.top_talkers[0].address, "10.0.0.3");
        let mut out = Vec::new();
        write_human(&s, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("800 packets/s"), "{text}");
        assert!(text.contains("> 1500"), "{text}");
    }

    #[test]
    fn a_frame_without_packet_stats_says_so() {
        let mut f = frame();
        f.packet_stats = None;
        let s = StatsJson::from_frame(&f, 0);
        assert!(!s.available);
        let mut out = Vec::new();
        write_human(&s, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("basic mode"));
    }
}
