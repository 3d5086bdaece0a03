//! History end to end: a lab run, then `report --json` and `export --format
//! csv` against the live totals; SIGTERM and SIGKILL, then restart.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::*;

/// Live per-name (up, down) byte totals from `top --json`.
fn live_by_name(top: &serde_json::Value) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for p in top["processes"].as_array().into_iter().flatten() {
        let e = out
            .entry(p["name"].as_str().unwrap_or_default().to_owned())
            .or_insert((0, 0));
        e.0 += u(p, "up_bytes");
        e.1 += u(p, "down_bytes");
    }
    out
}

fn report_by_name(d: &Daemon) -> BTreeMap<String, (u64, u64)> {
    let rep = d.ctl_json(&["report", "--limit", "1000"]);
    assert!(rep["others"].is_null(), "{rep}");
    rep["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_owned(),
                (u(r, "up_bytes"), u(r, "down_bytes")),
            )
        })
        .collect()
}

/// Minimal RFC 4180 reader: quoted fields may hold commas, quotes, newlines.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

fn export_by_name(d: &Daemon) -> BTreeMap<String, (u64, u64)> {
    let out = d.ctl(&["export", "--format", "csv"]);
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    let rows = parse_csv(&stdout(&out));
    let header = &rows[0];
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let (name, up, down) = (col("name"), col("up_bytes"), col("down_bytes"));
    let mut sums = BTreeMap::new();
    for r in &rows[1..] {
        assert_eq!(r.len(), header.len(), "ragged CSV row {r:?}");
        let e = sums.entry(r[name].clone()).or_insert((0u64, 0u64));
        e.0 += r[up].parse::<u64>().expect("up_bytes is an integer");
        e.1 += r[down].parse::<u64>().expect("down_bytes is an integer");
    }
    sums
}

/// python3's upload in history against the generator: `uploads` runs of
/// `n` payload bytes each, plus at most the headers and handshake of each
/// run (`tcp_credit_hi`).
fn assert_uploaded(got: (u64, u64), uploads: u64, n: u64, what: &str) {
    let lo = uploads * n;
    let hi = uploads * tcp_credit_hi(n);
    assert!(
        (lo..=hi).contains(&got.0),
        "{what}: python3 up {}, generator sent {lo} (allowed ..={hi})",
        got.0
    );
}

fn assert_close(got: (u64, u64), want: (u64, u64), what: &str) {
    let near = |a: u64, b: u64| a.abs_diff(b) <= 4096 + b / 200;
    assert!(
        near(got.0, want.0) && near(got.1, want.1),
        "{what}: history has {got:?}, live totals {want:?}"
    );
}

/// Waits until the live totals stop moving (the last bytes reached a tick).
fn settled_top(d: &Daemon, pid: u32, n: u64) -> serde_json::Value {
    wait_top(d, 30, |t| {
        proc_by_pid(t, pid).is_some_and(|p| u(&p, "up_bytes") >= n)
    });
    let mut last = d.ctl_json(&["top", "--limit", "0"]);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(1500));
        let now = d.ctl_json(&["top", "--limit", "0"]);
        if live_by_name(&now) == live_by_name(&last) {
            return now;
        }
        last = now;
    }
    last
}

#[test]
fn report_and_export_match_live_totals_and_history_survives_restarts() {
    let lab = Lab::new();
    let mut d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n".into(),
        ..Default::default()
    });
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5401"]);
    const N: u64 = 8 * 1024 * 1024;
    let pid = upload(&lab, "5401", N);
    let top = settled_top(&d, pid, N);
    let live = live_by_name(&top);
    let py = live.get("python3").copied().expect("python3 is in top");
    assert_uploaded(py, 1, N, "live top");

    let report = report_by_name(&d);
    for (name, want) in &live {
        let got = report.get(name).copied().unwrap_or_default();
        assert_close(got, *want, &format!("report for '{name}'"));
    }
    assert_uploaded(
        report.get("python3").copied().unwrap_or_default(),
        1,
        N,
        "report",
    );
    let export = export_by_name(&d);
    for (name, want) in &live {
        let got = export.get(name).copied().unwrap_or_default();
        assert_close(got, *want, &format!("export for '{name}'"));
    }
    assert_uploaded(
        export.get("python3").copied().unwrap_or_default(),
        1,
        N,
        "export",
    );

    // SIGTERM: the session is closed and stored with its totals.
    let session = d.ctl_json(&["status"])["session"].clone();
    assert!(d.terminate().success(), "{}", d.log_text());
    d.spawn();
    d.wait_ready();
    let sessions = d.ctl_json(&["sessions"]);
    let old = sessions["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == session["id"])
        .unwrap_or_else(|| panic!("session {session} missing after restart: {sessions}"))
        .clone();
    assert!(!old["ended"].is_null() && old["active"] == false, "{old}");
    // The session's totals are the host's: the upload, its ACKs' replies
    // and a little neighbour discovery, nothing counted twice.
    assert_between(
        u(&old, "up_bytes"),
        py.0,
        tcp_credit_hi(N) + 64 * 1024,
        "SIGTERM session up",
    );
    let after = report_by_name(&d)
        .get("python3")
        .copied()
        .unwrap_or_default();
    assert_close(after, py, "report after SIGTERM and restart");
    assert_uploaded(after, 1, N, "report after SIGTERM and restart");

    // SIGKILL after more than a flush interval: nothing of it is lost.
    wait_top(&d, 10, |_| {
        d.ctl_json(&["status"])["interfaces"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|i| i["name"] == lab.host_if.as_str() && i["capturing"] == true)
            })
    });
    let pid2 = upload(&lab, "5401", N);
    let top2 = settled_top(&d, pid2, N);
    let second = proc_by_pid(&top2, pid2).expect("second uploader in top");
    std::thread::sleep(Duration::from_millis(2500));
    let killed = d.ctl_json(&["status"])["session"]["id"].clone();
    let mut child = d.child.take().expect("running");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    d.spawn();
    d.wait_ready();
    let got = report_by_name(&d)
        .get("python3")
        .copied()
        .unwrap_or_default();
    let want = (
        py.0 + u(&second, "up_bytes"),
        py.1 + u(&second, "down_bytes"),
    );
    assert_close(got, want, "report after SIGKILL and restart");
    assert_uploaded(got, 2, N, "report after SIGKILL and restart");
    // The session the kill left open is closed with its last stored totals,
    // which a flush taken after the upload settled holds entirely.
    let sessions = d.ctl_json(&["sessions"]);
    let old = sessions["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == killed)
        .unwrap_or_else(|| panic!("session {killed} missing after SIGKILL: {sessions}"))
        .clone();
    assert!(!old["ended"].is_null() && old["active"] == false, "{old}");
    assert_between(
        u(&old, "up_bytes"),
        N,
        tcp_credit_hi(N) + 64 * 1024,
        "SIGKILLed session up",
    );
}

#[test]
fn a_locked_database_degrades_then_catches_up_and_a_broken_one_keeps_live_data() {
    let lab = Lab::new();
    let mut d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n".into(),
        ..Default::default()
    });
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5402"]);
    wait_storage(&d, "ok", 10);
    // Another process holds the write lock, as a sqlite3 shell in a transaction would.
    let locker = rusqlite::Connection::open(&d.db).expect("open the daemon's DB");
    locker
        .busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    locker
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO hosts (address) VALUES ('lock-test');")
        .expect("take the write lock");
    const N: u64 = 4 * 1024 * 1024;
    let pid = upload(&lab, "5402", N);
    let top = settled_top(&d, pid, N);
    wait_storage(&d, "degraded", 15);
    // The uploader's samples wait in the pending buffer meanwhile.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let storage = d.ctl_json(&["status"])["storage"].clone();
        assert_eq!(storage["state"], "degraded", "{storage}");
        if u(&storage, "pending_batches") > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no batch pending while locked: {storage}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    locker.execute_batch("ROLLBACK").expect("release the lock");
    drop(locker);
    wait_storage(&d, "ok", 15);
    let live = live_by_name(&top);
    let report = report_by_name(&d);
    for (name, want) in &live {
        let got = report.get(name).copied().unwrap_or_default();
        assert_close(
            got,
            *want,
            &format!("report for '{name}' after the lock went"),
        );
    }

    // A database that cannot be opened: live data is still served.
    assert!(d.terminate().success(), "{}", d.log_text());
    d.db = std::path::PathBuf::from("/dev/null/netmon.db");
    d.spawn();
    d.wait_ready();
    let storage = wait_storage(&d, "failed", 10);
    assert!(
        storage["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot open database"),
        "{storage}"
    );
    wait_top(&d, 10, |_| {
        d.ctl_json(&["status"])["interfaces"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|i| i["name"] == lab.host_if.as_str() && i["capturing"] == true)
            })
    });
    let pid = upload(&lab, "5402", N);
    let top = wait_top(&d, 20, |t| {
        proc_by_pid(t, pid).is_some_and(|p| u(&p, "up_bytes") >= N)
    });
    assert!(
        proc_by_pid(&top, pid).is_some(),
        "live data without a database: {top}"
    );
    let out = d.ctl(&["report"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "report without a database is a daemon error: {}",
        stderr(&out)
    );
}
