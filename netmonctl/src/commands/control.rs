//! `status`, `start`, `stop`, `reset`: daemon state and the control RPCs.

use std::io::Write;

use netmon_proto::text::terminal_safe;
use netmon_proto::v1;

use super::Client;
use crate::error::Result;
use crate::json::{ControlJson, StatusJson};
use crate::output::{write_json, Align, Table};
use crate::units::format_bytes;
use crate::when::{human_duration, human_time};

pub async fn status(mut client: Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let s = client.get_status(v1::StatusRequest {}).await?.into_inner();
    if json {
        return write_json(out, &StatusJson::from(&s));
    }
    write_status(&s, out)?;
    Ok(())
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn micros(us: u64) -> String {
    if us >= 1000 {
        format!("{}.{} ms", us / 1000, us % 1000 / 100)
    } else {
        format!("{us} µs")
    }
}

fn write_status(s: &v1::Status, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "netmond {} (pid {}), up {} since {}",
        s.version,
        s.daemon_pid,
        human_duration(s.uptime_secs),
        human_time(s.started_ms)
    )?;
    let reason = if s.mode_reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", s.mode_reason)
    };
    writeln!(
        out,
        "monitoring:  {}, mode {}{reason}",
        on_off(s.monitoring),
        s.mode
    )?;
    match &s.session {
        Some(sess) if sess.id != 0 => writeln!(out, "session:     {}", session_line(sess))?,
        _ => writeln!(out, "session:     none")?,
    }
    writeln!(
        out,
        "packets:     {} seen, {} dropped, {} malformed, {} hand-offs deferred",
        s.packets_seen, s.packets_dropped, s.packets_malformed, s.handoff_dropped
    )?;
    writeln!(
        out,
        "flows:       {} active, {} evicted, {} untracked (table full), {} lookups dropped",
        s.flows_active, s.flows_evicted, s.flows_untracked, s.resolver_dropped
    )?;
    if !s.lookup_mode.is_empty() {
        writeln!(
            out,
            "lookups:     {} mode, {} inbound SYNs queued, {} dropped; {} half-open flows evicted",
            s.lookup_mode, s.lookup_queue, s.lookup_dropped, s.flows_evicted_half_open
        )?;
    }
    writeln!(
        out,
        "coverage:    {:.1}% ({} of {} attributed to a process)",
        s.coverage * 100.0,
        format_bytes(s.bytes_attributed),
        format_bytes(s.bytes_captured)
    )?;
    writeln!(
        out,
        "processes:   {} live, {} exited, {} program rows ({} exited processes folded in)",
        s.live_processes, s.exited_processes, s.folded_programs, s.folded_processes
    )?;
    if s.attribution == "ebpf" {
        writeln!(
            out,
            "attribution: ebpf, {} sockets tracked ({})",
            s.sockets_tracked, s.attribution_reason
        )?;
    } else {
        let why = if s.attribution_reason.is_empty() {
            String::new()
        } else {
            format!("; {}", s.attribution_reason)
        };
        writeln!(
            out,
            "attribution: {}, p50 {}, p99 {} (first packet to owner known{why})",
            if s.attribution.is_empty() {
                "-"
            } else {
                &s.attribution
            },
            micros(s.attribution_p50_us),
            micros(s.attribution_p99_us)
        )?;
    }
    match &s.storage {
        Some(st) => {
            let mut err = if st.error.is_empty() {
                String::new()
            } else {
                format!(", error: {}", st.error)
            };
            if st.restarts > 0 {
                err.push_str(&format!(
                    ", its thread failed and was restarted {}× (last: {})",
                    st.restarts, st.last_failure
                ));
            }
            writeln!(
                out,
                "storage:     {} '{}', {}, {} pending batches, last flush {}{err}",
                st.state,
                st.path,
                format_bytes(st.size_bytes),
                st.pending_batches,
                human_time(st.last_flush_ms)
            )?;
        }
        None => writeln!(out, "storage:     unknown")?,
    }
    writeln!(
        out,
        "subscribers: {} ({} resyncs)",
        s.subscribers, s.subscriber_resyncs
    )?;
    writeln!(
        out,
        "tick:        {} ms, loopback {}",
        s.tick_ms,
        if s.include_loopback {
            "included"
        } else {
            "excluded"
        }
    )?;
    if !s.socket_path.is_empty() {
        writeln!(out, "socket:      {}", s.socket_path)?;
    }
    if !s.config_path.is_empty() {
        writeln!(out, "config:      {}", s.config_path)?;
    }
    if s.interfaces.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut t = Table::new(&[
        ("INTERFACE", Align::Left),
        ("CAPTURE", Align::Left),
        ("LINK", Align::Left),
        ("RECEIVED", Align::Right),
        ("DROPPED", Align::Right),
        ("IF DROPPED", Align::Right),
        ("COUNTED", Align::Right),
        ("BYTES", Align::Right),
        ("MALFORMED", Align::Right),
        ("ERROR", Align::Left),
    ]);
    for i in &s.interfaces {
        let c = i.capture.unwrap_or_default();
        t.row(vec![
            i.name.clone(),
            on_off(i.capturing).to_owned(),
            i.link_type.clone(),
            c.packets_received.to_string(),
            c.packets_dropped.to_string(),
            c.packets_if_dropped.to_string(),
            c.packets_counted.to_string(),
            format_bytes(c.bytes_counted),
            c.packets_malformed.to_string(),
            if i.restarts > 0 {
                format!("{} (restarted {}×)", i.error, i.restarts)
                    .trim_start()
                    .to_owned()
            } else {
                i.error.clone()
            },
        ]);
    }
    t.write_to(out)
}

fn session_line(s: &v1::Session) -> String {
    let end = if s.ended_ms == 0 {
        "running".to_owned()
    } else {
        format!("ended {}", human_time(s.ended_ms))
    };
    format!(
        "#{} since {} ({end}) on {}; up {}, down {}",
        s.id,
        human_time(s.started_ms),
        if s.interfaces.is_empty() {
            "-".to_owned()
        } else {
            s.interfaces.join(", ")
        },
        format_bytes(s.up_bytes),
        format_bytes(s.down_bytes)
    )
}

fn write_control(what: &str, r: &v1::ControlReply, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        return write_json(out, &ControlJson::from(r));
    }
    let state = if r.changed {
        what.to_owned()
    } else {
        format!("{what} (nothing changed)")
    };
    writeln!(out, "{state}; monitoring {}", on_off(r.monitoring))?;
    if let Some(sess) = r.session.as_ref().filter(|s| s.id != 0) {
        writeln!(out, "session {}", session_line(sess))?;
    }
    if !r.message.is_empty() {
        writeln!(out, "{}", terminal_safe(&r.message))?;
    }
    Ok(())
}

pub async fn start(
    mut client: Client,
    interfaces: Vec<String>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let r = client
        .start_monitoring(v1::StartRequest { interfaces })
        .await?
        .into_inner();
    write_control("started", &r, json, out)
}

pub async fn stop(mut client: Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let r = client
        .stop_monitoring(v1::StopRequest {})
        .await?
        .into_inner();
    write_control("stopped", &r, json, out)
}

pub async fn reset(mut client: Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let r = client.reset(v1::ResetRequest {}).await?.into_inner();
    write_control("live totals reset", &r, json, out)
}
