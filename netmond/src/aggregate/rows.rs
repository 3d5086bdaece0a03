//! The snapshot's process and host rows, built the same way by the capture
//! rollup and the capture-free mode: a process's row, a remote host's row,
//! and their order (most bytes first).

use std::net::IpAddr;

use netmon_proto::v1;

use crate::attribution::ProcessInfo;
use crate::hostnames::NameInfo;

/// One process's row; the engine fills in its threshold.
pub(crate) fn process_row(
    info: &ProcessInfo,
    traffic: v1::Traffic,
    protocols: Vec<String>,
    connections: u32,
    alive: bool,
    (first_seen_ms, last_seen_ms): (i64, i64),
) -> v1::ProcessRow {
    v1::ProcessRow {
        process: Some(v1::ProcessIdentity::from(info)),
        traffic: Some(traffic),
        protocols,
        connections,
        alive,
        first_seen_ms,
        last_seen_ms,
        over_threshold: false,
        threshold_bps: 0,
        folded_processes: 0,
    }
}

/// One remote host's row, with the name learned for it if any.
pub(crate) fn host_row(
    address: IpAddr,
    name: Option<&NameInfo>,
    traffic: v1::Traffic,
    processes: Vec<String>,
    connections: u32,
) -> v1::HostRow {
    v1::HostRow {
        address: address.to_string(),
        name: name.map(|n| n.name.to_string()).unwrap_or_default(),
        category: name
            .and_then(|n| n.category.as_deref())
            .unwrap_or_default()
            .to_owned(),
        traffic: Some(traffic),
        processes,
        connections,
    }
}

/// Rows with the most bytes (both ways) first; ties keep their order.
pub(crate) fn most_bytes_first<T>(rows: &mut [T], traffic: impl Fn(&T) -> Option<v1::Traffic>) {
    rows.sort_by_key(|r| {
        let t = traffic(r).unwrap_or_default();
        std::cmp::Reverse(t.up_bytes + t.down_bytes)
    });
}
