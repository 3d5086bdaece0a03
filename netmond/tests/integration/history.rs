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

/// `sql` through the `sqlite3` shell on the daemon's live database, as a
/// user's dashboard reads it, with `TZ` set: rows of '|'-separated cells
/// (NULL is an empty cell), the header first when `header`.
fn sqlite3(db: &std::path::Path, tz: &str, header: bool, sql: &str) -> Vec<Vec<String>> {
    let out = command("sqlite3")
        .env("TZ", tz)
        .arg("-batch")
        .arg(if header { "-header" } else { "-noheader" })
        .arg(db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(out.status.success(), "sqlite3 '{sql}': {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

/// `ms` as the views write local time in a zone 3 hours east of UTC.
fn utc_plus_3(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000) + 3 * 3600)
        .expect("a time in range");
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .expect("format")
}

fn int(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| panic!("'{s}' is not an unsigned integer"))
}

#[test]
fn the_sql_of_older_tools_reads_real_traffic_from_the_daemon_database() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n[alerts]\nopen_after_ticks = 1\n".into(),
        ..Default::default()
    });
    let set = d.ctl(&["threshold", "set", "100KB/s", "--process", "python3"]);
    assert!(set.status.success(), "{}", stderr(&set));
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5403"]);
    const N: u64 = 8 * 1024 * 1024;
    let pid = upload(&lab, "5403", N);
    settled_top(&d, pid, N);
    // Stopping closes the session with its totals; `report` writes the rest.
    let stop = d.ctl(&["stop"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    d.ctl_json(&["report"]);
    // The other direction carries the ACKs: one 52-byte header per segment
    // of at most 1448 bytes is under 4% of the payload.
    let both_hi = tcp_credit_hi(N) + N * 4 / 100;
    const TZ: &str = "XYZ-3";

    // The dashboard's two queries, exactly.
    let apps = sqlite3(
        &d.db,
        TZ,
        false,
        "SELECT app_name, SUM(packet_size) AS total FROM connections GROUP BY app_name",
    );
    let py = apps
        .iter()
        .find(|r| r[0] == "python3")
        .unwrap_or_else(|| panic!("no python3 in connections: {apps:?}"));
    assert_between(int(&py[1]), N, both_hi, "python3 in connections");
    let cats = sqlite3(
        &d.db,
        TZ,
        false,
        "SELECT category, COUNT(*) FROM connections GROUP BY category",
    );
    let minutes = sqlite3(&d.db, TZ, false, "SELECT count(*) FROM traffic_log");
    assert_eq!(cats.len(), 1, "{cats:?}");
    assert_eq!(cats[0][0], "uncategorized");
    assert_eq!(
        cats[0][1], minutes[0][0],
        "one connections row per traffic_log row"
    );
    assert!(int(&cats[0][1]) >= 1);

    // traffic_log: SELECT * carries the older columns; python3's rows add up
    // to the generator's upload; times are local.
    let all = sqlite3(&d.db, TZ, true, "SELECT * FROM traffic_log");
    let head = &all[0];
    let col = |name: &str| {
        head.iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("traffic_log has no column {name}: {head:?}"))
    };
    let (ts, ts_ms, pid_c, name_c) = (
        col("timestamp"),
        col("timestamp_ms"),
        col("pid"),
        col("process_name"),
    );
    let (ub, db_, ur, dr) = (
        col("upload_bytes"),
        col("download_bytes"),
        col("upload_rate"),
        col("download_rate"),
    );
    let mut up = 0;
    let mut down = 0;
    for r in all[1..].iter().filter(|r| r[pid_c] == pid.to_string()) {
        assert_eq!(r[name_c], "python3", "{r:?}");
        assert_eq!(
            r[ts],
            utc_plus_3(int(&r[ts_ms]) as i64),
            "local time: {r:?}"
        );
        assert_eq!(int(&r[ur]), int(&r[ub]) / 60, "{r:?}");
        assert_eq!(int(&r[dr]), int(&r[db_]) / 60, "{r:?}");
        up += int(&r[ub]);
        down += int(&r[db_]);
    }
    assert_between(
        up,
        N,
        tcp_credit_hi(N),
        "python3 upload_bytes in traffic_log",
    );
    assert_between(
        up + down,
        N,
        both_hi,
        "python3 upload + download in traffic_log",
    );

    // sessions: the stopped session with its totals.
    let sessions = sqlite3(
        &d.db,
        TZ,
        false,
        "SELECT start_time, end_time, total_upload, total_download, started_ms, ended_ms FROM sessions",
    );
    let s = sessions
        .iter()
        .find(|r| !r[1].is_empty())
        .unwrap_or_else(|| panic!("no ended session: {sessions:?}"));
    assert_eq!(s[0], utc_plus_3(int(&s[4]) as i64), "{s:?}");
    assert_eq!(s[1], utc_plus_3(int(&s[5]) as i64), "{s:?}");
    // Everything the lab interface carried: the upload and little else.
    assert_between(
        int(&s[2]),
        N,
        tcp_credit_hi(N) + 64 * 1024,
        "session total_upload",
    );

    // alerts: python3 crossed 100 KB/s.
    let alerts = sqlite3(
        &d.db,
        TZ,
        false,
        "SELECT timestamp, pid, process_name, alert_type, bandwidth_value, threshold, started_ms FROM alerts",
    );
    // The rule names no pid, so it judges the program: the alert's pid is
    // 0 and its name the program's.
    let a = alerts
        .iter()
        .find(|r| r[2] == "python3" && r[3] == "process_rate")
        .unwrap_or_else(|| panic!("no alert for python3 ({pid}): {alerts:?}"));
    assert_eq!(a[1], "0", "a program's alert: {a:?}");
    assert_eq!(int(&a[5]), 100_000, "{a:?}");
    // A rate over one tick, above the threshold: at most all it sent, over
    // a tick that may run somewhat short of its second (the real tick is used).
    assert_between(
        int(&a[4]),
        100_001,
        both_hi * 3 / 2,
        "alert bandwidth_value",
    );
    assert_eq!(a[0], utc_plus_3(int(&a[6]) as i64), "{a:?}");
}

#[test]
fn report_every_hour_splits_real_traffic_at_utc_hours() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n".into(),
        ..Default::default()
    });
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5404"]);
    const N: u64 = 4 * 1024 * 1024;
    let pid = upload(&lab, "5404", N);
    settled_top(&d, pid, N);
    let rep = d.ctl_json(&[
        "--utc", "report", "--since", "3h", "--every", "hour", "--by", "process", "--limit", "1000",
    ]);
    assert_eq!(rep["every"], "hour", "{rep}");
    let periods = rep["periods"].as_array().expect("periods[]");
    // 3 hours from a time inside an hour: 3 whole hours and 2 cut ones at most.
    assert!((3..=4).contains(&periods.len()), "{rep}");
    let ms = |v: &serde_json::Value| -> i64 {
        let s = v.as_str().expect("an RFC 3339 time");
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
            .unix_timestamp()
            * 1000
    };
    assert_eq!(periods[0]["since"], rep["since"]);
    let (mut up, mut total) = (0, 0);
    for (i, p) in periods.iter().enumerate() {
        if i > 0 {
            assert_eq!(p["since"], periods[i - 1]["until"], "contiguous: {rep}");
            assert_eq!(ms(&p["since"]) % 3_600_000, 0, "starts on an hour: {p}");
        }
        total += u(&p["totals"], "total_bytes");
        for r in p["rows"].as_array().into_iter().flatten() {
            if r["key"] == "python3" {
                up += u(r, "up_bytes");
            }
        }
    }
    assert_eq!(
        total,
        u(&rep["totals"], "total_bytes"),
        "periods add up: {rep}"
    );
    assert_between(up, N, tcp_credit_hi(N), "python3 upload over the hours");
}
