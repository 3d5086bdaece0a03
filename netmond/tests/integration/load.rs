//! Clients and traffic at once: design.md's client target (200 held
//! subscribers, 1,000 API connections, 50 unread exports) while a SYN flood
//! of 200k distinct flows crosses the lab and a known upload runs. The
//! daemon must keep ticking, credit the upload, answer `status` fast and keep
//! its memory bounded.

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::api_limits::{client_with_member, fill_history, sock, status_latencies, DRIVER_PY};
use crate::flood::{add_flood_sources, spawn_syn_flood};
use crate::harness::*;

const FLOOD_COUNT: u64 = 200_000;
const UPLOAD: u64 = 20 * 1024 * 1024;
/// Peak RSS allowed in a debug build, with margin (design.md's bound under a
/// flood of 1M flows is 150 MB for a release build).
const RSS_LIMIT_KB: u64 = 300 * 1024;

fn kb_field(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn credited(top: &serde_json::Value, pid: u32) -> u64 {
    proc_by_pid(top, pid).map_or(0, |p| u(&p, "down_bytes") + u(&p, "up_bytes"))
}

#[test]
fn clients_flood_and_upload_at_once_keep_the_daemon_ticking_and_counting() {
    let started = Instant::now();
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let daemon_pid = d.pid();
    // History for the exports to stream (they stall after their first rows).
    fill_history(&d.db, 1000);
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5201"]);
    let prefix = add_flood_sources(&lab);

    // The clients: one throw-away member of the daemon's group holds them all
    // (the default per-user caps allow it); the Python driver raises its own
    // RLIMIT_NOFILE to the hard limit for the 1,000 sockets.
    let (client, member) = client_with_member(&d);
    std::fs::write(client.dir.path().join("script.py"), DRIVER_PY).expect("driver");
    let mut load = member
        .command(&client.python)
        .current_dir(client.dir.path())
        .args(["script.py", "load", &sock(&d), "1000", "200", "50"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client load");
    let load_out = load.stdout.take().expect("load stdout");
    let mut load_err = load.stderr.take().expect("load stderr");
    let _load = ChildGuard(load);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(load_out).lines();
        let _ = tx.send(lines.next());
    });
    let ready = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(Ok(l))) => l,
        Ok(None) => {
            // The driver exited: its stderr says why.
            let mut e = String::new();
            let _ = std::io::Read::read_to_string(&mut load_err, &mut e);
            panic!("the client load exited: {e}\n{}", d.log_text())
        }
        other => panic!(
            "the client load did not get ready: {other:?}\n{}",
            d.log_text()
        ),
    };
    let clients_ready = started.elapsed();
    let v: serde_json::Value = serde_json::from_str(&ready).expect("load JSON");
    assert_eq!(v["connections"], 1000, "{v}");
    assert_eq!(v["streams"], 250, "{v}");

    // A fresh subscriber records when each frame arrives.
    let mut watch = std::process::Command::new(bin("netmonctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--json", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    let watch_out = watch.stdout.take().expect("watch stdout");
    let _watch = ChildGuard(watch);
    let (ftx, frames) = mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(watch_out).lines() {
            let Ok(l) = l else { break };
            let seq = serde_json::from_str::<serde_json::Value>(&l)
                .ok()
                .and_then(|f| f["seq"].as_u64());
            if ftx.send((Instant::now(), seq)).is_err() {
                break;
            }
        }
    });

    let mut flood = spawn_syn_flood(&lab, &prefix, FLOOD_COUNT, 25_000, 30);
    // Flood and upload are bounded in count and time by their own scripts.
    let flood_start = Instant::now();
    // The upload starts once the flood has filled the flow table for a while.
    let mut up: Option<std::process::Child> = None;
    let mut up_window: (Option<Duration>, Option<Duration>) = (None, None);

    // Sample `status` (connect + GetStatus) and RSS while the flood runs.
    let mut lat = Vec::new();
    // (ms into the flood, that sample's latencies): when the slow ones came.
    let mut timeline = Vec::new();
    let mut rss_kb = Vec::new();
    let flood_end = loop {
        let at = flood_start.elapsed().as_millis();
        let sample = status_latencies(&d, 3);
        timeline.push((at, sample.clone()));
        lat.extend(sample);
        rss_kb.push(kb_field(daemon_pid, "VmRSS:"));
        if up.is_none() && flood_start.elapsed() >= Duration::from_secs(3) {
            up = Some(spawn_upload(&lab, "5201", UPLOAD));
            up_window.0 = Some(flood_start.elapsed());
        }
        if let Some(u) = &mut up {
            if up_window.1.is_none() && u.try_wait().expect("upload status").is_some() {
                up_window.1 = Some(flood_start.elapsed());
            }
        }
        if flood.try_wait().expect("flood status").is_some() {
            break flood_start.elapsed();
        }
        assert!(
            flood_start.elapsed() < Duration::from_secs(40),
            "the flood overran its 30 s bound"
        );
    };
    let flood_out = wait_output(flood, 5);
    assert!(
        flood_out.status.success(),
        "flood failed: {}",
        stderr(&flood_out)
    );
    let report = stdout(&flood_out);
    let sent: u64 = report
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("flood report");
    let up = up.expect("the flood ended before the upload started");
    let up_pid = up.id();
    let up_out = wait_output(up, 30);
    assert!(
        up_out.status.success(),
        "upload failed: {}",
        stderr(&up_out)
    );

    let top = wait_top(&d, 15, |t| credited(t, up_pid) >= UPLOAD);
    let got = credited(&top, up_pid);
    let seen: Vec<(Instant, Option<u64>)> = frames.try_iter().collect();
    let during: Vec<(Duration, u64)> = seen
        .iter()
        .filter(|(t, _)| *t >= flood_start && t.duration_since(flood_start) <= flood_end)
        .map(|(t, s)| (t.duration_since(flood_start), s.expect("frame seq")))
        .collect();
    let peak_kb = kb_field(daemon_pid, "VmHWM:");
    lat.sort_unstable();
    let median = lat[lat.len() / 2];
    let worst = lat[lat.len() - 1];
    eprintln!(
        "load: clients ready in {clients_ready:?}; flood {report} (ran {flood_end:?}); \
         upload from/to {up_window:?} into the flood, credited {got} of {UPLOAD} payload; status ms over {} samples: median {median}, \
         worst {worst}, by time into the flood {timeline:?}; RSS kB during {rss_kb:?}, peak {peak_kb}; \
         frames during the flood (s, seq) {during:?}; total {:?}",
        lat.len(),
        started.elapsed()
    );

    assert!(sent >= FLOOD_COUNT * 9 / 10, "flood too short: {report}");
    assert_between(got, UPLOAD, tcp_credit_hi(UPLOAD), "upload credited");
    // Ticking goes on: one frame a second, seq rising, no long gap.
    let secs = flood_end.as_secs();
    assert!(
        during.len() as u64 + 2 >= secs,
        "{} frames in {flood_end:?} of flood: {during:?}",
        during.len()
    );
    assert!(during.windows(2).all(|w| w[0].1 < w[1].1), "{during:?}");
    assert!(
        during
            .windows(2)
            .all(|w| w[1].0 - w[0].0 < Duration::from_millis(2500)),
        "a tick was late by more than 1.5 s: {during:?}"
    );
    // design.md's target, for every call: status reads the last tick's
    // figures instead of waiting for the tick (before that, 0.6-1.9 s once
    // the flood's flows passed ~100k; now a worst of ~10 ms here).
    assert!(
        median < 200 && worst < 200,
        "status under load: median {median} ms, worst {worst} ms: {lat:?}"
    );
    assert!(
        peak_kb < RSS_LIMIT_KB,
        "peak RSS {peak_kb} kB over {RSS_LIMIT_KB} kB"
    );
}
