//! What a monitoring run hands the engine, whichever mode it runs in: the
//! per-tick snapshot, the status counters and the kernel's interface rows.

use std::collections::HashMap;
use std::time::Instant;

use netmon_proto::v1;

use crate::netif;

/// What one tick hands the engine.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub processes: Vec<v1::ProcessRow>,
    pub totals: v1::Traffic,
    pub unattributed: v1::Unattributed,
    pub interfaces: Vec<v1::InterfaceRow>,
    pub hosts: Vec<v1::HostRow>,
    pub packet_stats: Option<v1::PacketStats>,
    pub packets_dropped: u64,
    pub flows_active: u64,
    pub handoff_dropped: u64,
    pub lookup_queue: u64,
    pub lookup_dropped: u64,
    pub lookup_mode: &'static str,
    /// Processes (pid, start time) whose rows folded into program rows.
    pub folded: Vec<(u32, u64)>,
    /// Who talked to whom since the last snapshot (see `Rollup::proc_hosts`).
    pub proc_hosts: Vec<crate::store::ProcHostTick>,
}

/// Counters for `status`.
#[derive(Debug, Clone, Default)]
pub struct MonitorStatus {
    /// "capture" or "basic".
    pub mode: &'static str,
    pub mode_reason: String,
    pub interfaces: Vec<v1::InterfaceStatus>,
    pub packets_seen: u64,
    pub packets_dropped: u64,
    pub packets_malformed: u64,
    pub flows_active: u64,
    pub flows_evicted: u64,
    pub bytes_captured: u64,
    pub bytes_attributed: u64,
    pub handoff_dropped: u64,
    pub attribution_p50_us: u64,
    pub attribution_p99_us: u64,
    pub resolver_dropped: u64,
    pub flows_untracked: u64,
    /// "ebpf" or "socket-lookup" ("" in basic mode).
    pub attribution: &'static str,
    pub attribution_reason: String,
    pub sockets_tracked: u64,
    pub lookup_queue: u64,
    pub lookup_dropped: u64,
    /// "per-flow" or "dump"; "" without a resolver.
    pub lookup_mode: &'static str,
    pub flows_evicted_half_open: u64,
    /// Rows of the per-process table.
    pub table: crate::aggregate::TableCounts,
}

/// The kernel's per-interface counters of the previous tick, for rates.
#[derive(Default)]
pub(crate) struct KernelCounters {
    last: HashMap<String, netif::Counters>,
    last_at: Option<Instant>,
}

impl KernelCounters {
    /// One row per interface in `list`; `extra` gives what netmond counted on it
    /// and its capture statistics (None for both when not captured).
    pub(crate) fn rows(
        &mut self,
        list: &[netif::Interface],
        extra: impl Fn(&str) -> (Option<v1::Traffic>, Option<v1::CaptureStats>),
    ) -> Vec<v1::InterfaceRow> {
        let kernel = netif::counters().unwrap_or_default();
        let elapsed_ms = self
            .last_at
            .map(|t| t.elapsed().as_millis() as u64)
            .unwrap_or(0);
        let mut rows = Vec::with_capacity(list.len());
        for i in list {
            let k = kernel
                .iter()
                .find(|(n, _)| n == &i.name)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            let prev = self.last.get(&i.name).copied();
            let rate = |now: u64, before: Option<u64>| match before {
                Some(b) if elapsed_ms > 0 => {
                    now.saturating_sub(b).saturating_mul(1000) / elapsed_ms
                }
                _ => 0,
            };
            let (counted, capture) = extra(&i.name);
            rows.push(v1::InterfaceRow {
                name: i.name.clone(),
                index: i.index,
                up: i.up,
                addresses: i.addresses.iter().map(ToString::to_string).collect(),
                captured: capture.is_some(),
                rx_bytes: k.rx_bytes,
                tx_bytes: k.tx_bytes,
                rx_packets: k.rx_packets,
                tx_packets: k.tx_packets,
                rx_errors: k.rx_errors,
                tx_errors: k.tx_errors,
                rx_dropped: k.rx_dropped,
                tx_dropped: k.tx_dropped,
                rx_bps: rate(k.rx_bytes, prev.map(|p| p.rx_bytes)),
                tx_bps: rate(k.tx_bytes, prev.map(|p| p.tx_bytes)),
                counted,
                capture,
            });
        }
        self.last = kernel.into_iter().collect();
        self.last_at = Some(Instant::now());
        rows
    }
}
