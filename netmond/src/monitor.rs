//! One monitoring run: the capture threads, the resolver and the aggregation
//! state they feed, started and stopped as a unit by the engine.

use netmon_proto::v1;

use crate::config::Config;

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
}

/// Counters for `status`.
#[derive(Debug, Clone, Default)]
pub struct MonitorStatus {
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
}

pub struct Monitor {
    interfaces: Vec<String>,
}

impl Monitor {
    pub fn start(_cfg: &Config, wanted: Vec<String>) -> anyhow::Result<Monitor> {
        Ok(Monitor { interfaces: wanted })
    }
    pub fn interface_names(&self) -> Vec<String> {
        self.interfaces.clone()
    }
    pub fn stop(self) -> Snapshot {
        Snapshot::default()
    }
    pub fn reset(&self) {}
    pub fn tick(&self) -> Snapshot {
        Snapshot::default()
    }
    pub fn connections(&self) -> Vec<v1::Connection> {
        Vec::new()
    }
    pub fn status(&self) -> MonitorStatus {
        MonitorStatus::default()
    }
}
