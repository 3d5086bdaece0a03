//! The live views: `top` (one snapshot), `watch` (the Subscribe stream),
//! `connections`, `interfaces` and `hosts`.

use std::collections::HashMap;
use std::io::Write;

use netmon_proto::text::terminal_safe;
use netmon_proto::v1;
use tonic::Code;

use super::Client;
use crate::cli::SortKey;
use crate::error::{CtlError, Result};
use crate::json::{
    ConnectionsJson, FrameJson, HostJson, HostsJson, InterfaceJson, InterfacesJson, TopJson,
    TrafficJson,
};
use crate::output::{ellipsize, write_json, write_json_line, Align, Table};
use crate::units::{format_bytes, format_rate};
use crate::when::{human_clock, rfc3339_ms};

pub async fn top(
    mut client: Client,
    limit: u32,
    sort: SortKey,
    only_alive: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let req = v1::ListProcessesRequest {
        limit,
        sort: sort.as_str().to_owned(),
        only_alive,
    };
    let mut list = client.list_processes(req).await?.into_inner();
    // The daemon sorts and limits; the limit is enforced here too so that a
    // script asking for 5 rows never gets more.
    if limit > 0 {
        list.processes
            .truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    if json {
        return write_json(out, &TopJson::from(&list));
    }
    if !list.monitoring {
        writeln!(
            out,
            "monitoring is stopped (netmonctl start); totals are from the last session"
        )?;
    }
    let mut t = process_table();
    for row in &list.processes {
        t.row(process_cells(row));
    }
    let total = TrafficJson::from(list.totals.as_ref());
    let unattributed = list.unattributed.clone().unwrap_or_default();
    let un = TrafficJson::from(unattributed.traffic.as_ref());
    t.row(traffic_cells("(unattributed)", &un));
    t.row(traffic_cells("TOTAL", &total));
    t.write_to(out)?;
    let reasons: Vec<String> = unattributed
        .reasons
        .iter()
        .map(|r| {
            let tr = TrafficJson::from(r.traffic.as_ref());
            format!(
                "{} {}",
                r.reason,
                format_bytes(tr.up_bytes.saturating_add(tr.down_bytes))
            )
        })
        .collect();
    if !reasons.is_empty() {
        writeln!(out, "unattributed by reason: {}", reasons.join(", "))?;
    }
    Ok(())
}

fn process_table() -> Table {
    Table::new(&[
        ("PID", Align::Right),
        ("PROCESS", Align::Left),
        ("USER", Align::Left),
        ("UP", Align::Right),
        ("DOWN", Align::Right),
        ("TOTAL UP", Align::Right),
        ("TOTAL DOWN", Align::Right),
        ("PROTOCOLS", Align::Left),
        ("CONN", Align::Right),
    ])
}

/// Exited processes keep their totals and are marked `(exited)`; a program
/// row (exited processes folded together) shows `-` for its pid and how many
/// it holds; `!` marks a process over one of its thresholds.
fn process_cells(row: &v1::ProcessRow) -> Vec<String> {
    let p = row.process.clone().unwrap_or_default();
    let tr = TrafficJson::from(row.traffic.as_ref());
    let mut name = ellipsize(&p.name, 24);
    if row.folded_processes > 0 {
        name.push_str(&format!(" ({} exited)", row.folded_processes));
    } else if !row.alive {
        name.push_str(" (exited)");
    }
    if row.over_threshold {
        name.push_str(" !");
    }
    vec![
        if row.folded_processes > 0 {
            "-".to_owned()
        } else {
            p.pid.to_string()
        },
        name,
        if p.user.is_empty() {
            p.uid.to_string()
        } else {
            p.user
        },
        format_rate(tr.up_bps),
        format_rate(tr.down_bps),
        format_bytes(tr.up_bytes),
        format_bytes(tr.down_bytes),
        row.protocols.join(","),
        row.connections.to_string(),
    ]
}

fn traffic_cells(label: &str, tr: &TrafficJson) -> Vec<String> {
    vec![
        String::new(),
        label.to_owned(),
        String::new(),
        format_rate(tr.up_bps),
        format_rate(tr.down_bps),
        format_bytes(tr.up_bytes),
        format_bytes(tr.down_bytes),
        String::new(),
        String::new(),
    ]
}

/// The processes as last reported: a complete frame replaces everything, a
/// partial one updates the rows it carries.
#[derive(Default)]
struct WatchState {
    rows: HashMap<RowKey, v1::ProcessRow>,
}

/// A process is (pid, start time); a program row (pid 0) is its program.
type RowKey = (u32, u64, Option<(String, String, u32, String, String)>);

fn row_key(row: &v1::ProcessRow) -> RowKey {
    let p = row.process.clone().unwrap_or_default();
    let program = (row.folded_processes > 0).then_some((p.name, p.exe, p.uid, p.unit, p.container));
    (p.pid, p.start_time, program)
}

impl WatchState {
    fn apply(&mut self, frame: &mut v1::Frame) {
        if frame.complete {
            self.rows.clear();
        }
        for row in frame.processes.drain(..) {
            self.rows.insert(row_key(&row), row);
        }
        let mut rows: Vec<v1::ProcessRow> = self.rows.values().cloned().collect();
        rows.sort_by_cached_key(|r| {
            let tr = TrafficJson::from(r.traffic.as_ref());
            (
                std::cmp::Reverse(tr.up_bps.saturating_add(tr.down_bps)),
                row_key(r),
            )
        });
        frame.processes = rows;
    }
}

/// Whether a stream error means the daemon went away rather than refused.
pub(super) fn is_gone(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted
    )
}

/// Streams frames until Ctrl-C (exit 0) or until the daemon goes away
/// ("netmond went away" on stderr, exit 1).
pub async fn watch(
    mut client: Client,
    interval: u32,
    limit: u32,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let tick_ms = client
        .get_status(v1::StatusRequest {})
        .await?
        .into_inner()
        .tick_ms;
    let tick_ms = if tick_ms == 0 { 1000 } else { tick_ms };
    let every_ticks = (u64::from(interval) * 1000).div_ceil(tick_ms).max(1);
    let req = v1::SubscribeRequest {
        every_ticks: u32::try_from(every_ticks).unwrap_or(u32::MAX),
    };
    let mut stream = client.subscribe(req).await?.into_inner();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut state = WatchState::default();
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut ctrl_c => return Ok(()),
            next = stream.message() => next,
        };
        let mut frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(CtlError::Gone),
            Err(status) if is_gone(&status) => return Err(CtlError::Gone),
            Err(status) => return Err(status.into()),
        };
        state.apply(&mut frame);
        if json {
            write_json_line(out, &FrameJson::from(&frame))?;
        } else {
            write_frame(&frame, limit, out)?;
        }
    }
}

fn write_frame(f: &v1::Frame, limit: u32, out: &mut dyn Write) -> Result<()> {
    let total = TrafficJson::from(f.totals.as_ref());
    let un = TrafficJson::from(f.unattributed.as_ref().and_then(|u| u.traffic.as_ref()));
    writeln!(
        out,
        "{}  up {}  down {}  unattributed {}  processes {}{}",
        human_clock(f.time_ms),
        format_rate(total.up_bps),
        format_rate(total.down_bps),
        format_rate(un.up_bps.saturating_add(un.down_bps)),
        f.processes.len(),
        if f.monitoring {
            ""
        } else {
            "  (monitoring stopped)"
        }
    )?;
    let mut t = process_table();
    let limit = if limit == 0 {
        usize::MAX
    } else {
        usize::try_from(limit).unwrap_or(usize::MAX)
    };
    for row in f.processes.iter().take(limit) {
        t.row(process_cells(row));
    }
    if !t.is_empty() {
        t.write_to(out)?;
    }
    for a in &f.alerts {
        // The message names a process: any bytes its owner chose.
        writeln!(out, "alert: {}", terminal_safe(&a.message))?;
    }
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn endpoint(addr: &str, port: u32) -> String {
    match (addr.contains(':'), port) {
        (_, 0) => addr.to_owned(),
        (true, _) => format!("[{addr}]:{port}"),
        (false, _) => format!("{addr}:{port}"),
    }
}

pub async fn connections(
    mut client: Client,
    pid: Option<u32>,
    limit: u32,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let req = v1::ListConnectionsRequest {
        limit,
        pid: pid.unwrap_or(0),
    };
    let list = client.list_connections(req).await?.into_inner();
    if json {
        let doc = ConnectionsJson {
            time: rfc3339_ms(list.time_ms),
            connections: list.connections.iter().map(Into::into).collect(),
        };
        return write_json(out, &doc);
    }
    let mut t = Table::new(&[
        ("PROTO", Align::Left),
        ("LOCAL", Align::Left),
        ("REMOTE", Align::Left),
        ("HOST", Align::Left),
        ("STATE", Align::Left),
        ("PID", Align::Right),
        ("PROCESS", Align::Left),
        ("UP", Align::Right),
        ("DOWN", Align::Right),
        ("TOTAL UP", Align::Right),
        ("TOTAL DOWN", Align::Right),
        ("IFACE", Align::Left),
    ]);
    for c in &list.connections {
        let tr = TrafficJson::from(c.traffic.as_ref());
        let owner = c.process.as_ref().filter(|p| p.pid != 0);
        let proto = if c.app_protocol.is_empty() {
            c.protocol.clone()
        } else {
            format!("{}/{}", c.protocol, c.app_protocol)
        };
        t.row(vec![
            proto,
            endpoint(&c.local_addr, c.local_port),
            endpoint(&c.remote_addr, c.remote_port),
            ellipsize(&c.remote_name, 32),
            c.state.clone(),
            owner.map_or_else(|| "-".to_owned(), |p| p.pid.to_string()),
            owner.map_or_else(
                || {
                    format!(
                        "({})",
                        if c.unattributed_reason.is_empty() {
                            "unknown"
                        } else {
                            &c.unattributed_reason
                        }
                    )
                },
                |p| p.name.clone(),
            ),
            format_rate(tr.up_bps),
            format_rate(tr.down_bps),
            format_bytes(tr.up_bytes),
            format_bytes(tr.down_bytes),
            c.interface.clone(),
        ]);
    }
    t.write_to(out)?;
    Ok(())
}

pub async fn interfaces(mut client: Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let list = client
        .list_interfaces(v1::ListInterfacesRequest {})
        .await?
        .into_inner();
    if json {
        let doc = InterfacesJson {
            interfaces: list.interfaces.iter().map(InterfaceJson::from).collect(),
        };
        return write_json(out, &doc);
    }
    let mut t = Table::new(&[
        ("INTERFACE", Align::Left),
        ("STATE", Align::Left),
        ("CAPTURE", Align::Left),
        ("RX", Align::Right),
        ("TX", Align::Right),
        ("RX BYTES", Align::Right),
        ("TX BYTES", Align::Right),
        ("COUNTED DOWN", Align::Right),
        ("COUNTED UP", Align::Right),
        ("KERNEL DROPS", Align::Right),
        ("CAPTURE DROPS", Align::Right),
        ("ADDRESSES", Align::Left),
    ]);
    for i in &list.interfaces {
        let counted = TrafficJson::from(i.counted.as_ref());
        let cap = i.capture.unwrap_or_default();
        t.row(vec![
            i.name.clone(),
            if i.up { "up" } else { "down" }.to_owned(),
            if i.captured { "yes" } else { "no" }.to_owned(),
            format_rate(i.rx_bps),
            format_rate(i.tx_bps),
            format_bytes(i.rx_bytes),
            format_bytes(i.tx_bytes),
            format_bytes(counted.down_bytes),
            format_bytes(counted.up_bytes),
            i.rx_dropped.saturating_add(i.tx_dropped).to_string(),
            cap.packets_dropped
                .saturating_add(cap.packets_if_dropped)
                .to_string(),
            i.addresses.join(", "),
        ]);
    }
    t.write_to(out)?;
    Ok(())
}

pub async fn hosts(mut client: Client, limit: u32, json: bool, out: &mut dyn Write) -> Result<()> {
    let mut list = client
        .list_hosts(v1::ListHostsRequest { limit })
        .await?
        .into_inner();
    if limit > 0 {
        list.hosts
            .truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    if json {
        let doc = HostsJson {
            time: rfc3339_ms(list.time_ms),
            hosts: list.hosts.iter().map(HostJson::from).collect(),
        };
        return write_json(out, &doc);
    }
    let mut t = Table::new(&[
        ("HOST", Align::Left),
        ("NAME", Align::Left),
        ("CATEGORY", Align::Left),
        ("UP", Align::Right),
        ("DOWN", Align::Right),
        ("TOTAL UP", Align::Right),
        ("TOTAL DOWN", Align::Right),
        ("CONN", Align::Right),
        ("PROCESSES", Align::Left),
    ]);
    for h in &list.hosts {
        let tr = TrafficJson::from(h.traffic.as_ref());
        t.row(vec![
            h.address.clone(),
            ellipsize(&h.name, 40),
            h.category.clone(),
            format_rate(tr.up_bps),
            format_rate(tr.down_bps),
            format_bytes(tr.up_bytes),
            format_bytes(tr.down_bytes),
            h.connections.to_string(),
            ellipsize(&h.processes.join(","), 40),
        ]);
    }
    t.write_to(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: u32, down_bps: u64) -> v1::ProcessRow {
        v1::ProcessRow {
            process: Some(v1::ProcessIdentity {
                pid,
                start_time: 1,
                ..Default::default()
            }),
            traffic: Some(v1::Traffic {
                down_bps,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn program(name: &str, folded: u32) -> v1::ProcessRow {
        v1::ProcessRow {
            process: Some(v1::ProcessIdentity {
                name: name.into(),
                ..Default::default()
            }),
            folded_processes: folded,
            ..Default::default()
        }
    }

    #[test]
    fn program_rows_show_no_pid_and_how_many_processes_they_hold() {
        let cells = process_cells(&program("make", 1200));
        assert_eq!(cells[0], "-");
        assert_eq!(cells[1], "make (1200 exited)");
    }

    #[test]
    fn program_rows_with_pid_zero_do_not_replace_each_other_in_watch() {
        let mut state = WatchState::default();
        let mut f = v1::Frame {
            complete: true,
            processes: vec![program("make", 3), program("cc", 9), row(5, 1)],
            ..Default::default()
        };
        state.apply(&mut f);
        assert_eq!(f.processes.len(), 3);
    }

    #[test]
    fn partial_frames_update_and_complete_frames_replace() {
        let mut state = WatchState::default();
        let mut f = v1::Frame {
            complete: true,
            processes: vec![row(1, 10), row(2, 20)],
            ..Default::default()
        };
        state.apply(&mut f);
        assert_eq!(
            f.processes
                .iter()
                .map(|r| r.process.as_ref().map(|p| p.pid))
                .collect::<Vec<_>>(),
            [Some(2), Some(1)]
        );
        let mut f = v1::Frame {
            complete: false,
            processes: vec![row(1, 30)],
            ..Default::default()
        };
        state.apply(&mut f);
        assert_eq!(f.processes.len(), 2);
        assert_eq!(f.processes[0].process.as_ref().map(|p| p.pid), Some(1));
        let mut f = v1::Frame {
            complete: true,
            processes: vec![row(3, 1)],
            ..Default::default()
        };
        state.apply(&mut f);
        assert_eq!(f.processes.len(), 1);
    }

    #[test]
    fn ipv6_endpoints_are_bracketed() {
        assert_eq!(endpoint("10.0.0.1", 443), "10.0.0.1:443");
        assert_eq!(endpoint("::1", 53), "[::1]:53");
        assert_eq!(endpoint("10.0.0.1", 0), "10.0.0.1");
    }
}
