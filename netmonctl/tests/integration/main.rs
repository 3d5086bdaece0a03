//! Runs the built netmonctl binary: exit codes and messages with no daemon,
//! output against a canned one (`fake`), and `alerts --follow` against a real
//! netmond in the shared test lab (netmon-testkit) (`follow`, root), and `--notify` on a
//! private session bus (`notify`).

use std::path::PathBuf;
use std::process::{Command, Output};

mod follow;
mod notify;

use netmon_testkit::lab as harness;
use netmon_testkit::lab::commands;

fn missing_socket() -> PathBuf {
    std::env::temp_dir()
        .join(format!("netmonctl-it-{}", std::process::id()))
        .join("none.sock")
}

fn netmonctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netmonctl"))
        .args(args)
        .env("NETMON_SOCKET", missing_socket())
        .output()
        .expect("runs netmonctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn missing_socket_exits_3_saying_not_running() {
    let sock = missing_socket();
    for args in [
        vec!["status"],
        vec!["top", "--json"],
        vec!["threshold", "set", "1MiB/s"],
    ] {
        let mut all = vec!["--socket", sock.to_str().expect("utf8 path")];
        all.extend(args.iter().copied());
        let o = netmonctl(&all);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn env_socket_is_used_without_the_flag() {
    let o = netmonctl(&["status"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains(&missing_socket().display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_rate_exits_2_naming_the_accepted_forms() {
    let o = netmonctl(&["threshold", "set", "12 parsecs", "--process", "curl"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    for form in ["500KB/s", "1MiB/s", "20Mbit/s", "12 parsecs"] {
        assert!(err.contains(form), "stderr lacks {form}: {err}");
    }
}

#[test]
fn unknown_flag_exits_2() {
    let o = netmonctl(&["top", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn bad_when_exits_2() {
    let o = netmonctl(&["alerts", "--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("accepted forms"), "{}", stderr(&o));
}

#[test]
fn help_exits_0() {
    let o = netmonctl(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("threshold"));
}

mod fake;

use fake::FakeDaemon;
use serde_json::Value;

/// In UTC (`--utc`), so that expected times do not depend on the machine.
fn against(daemon: &FakeDaemon, args: &[&str]) -> Output {
    let mut all = vec![
        "--utc",
        "--socket",
        daemon.socket.to_str().expect("utf8 path"),
    ];
    all.extend_from_slice(args);
    netmonctl(&all)
}

/// In the local time zone `tz` (TZ), without `--utc`.
fn against_in(daemon: &FakeDaemon, tz: &str, args: &[&str]) -> Output {
    let mut all = vec!["--socket", daemon.socket.to_str().expect("utf8 path")];
    all.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_netmonctl"))
        .args(&all)
        .env("TZ", tz)
        .output()
        .expect("runs netmonctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_of(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("stdout is one JSON document")
}

#[test]
fn top_prints_a_table_with_totals_and_exited_marks() {
    let d = FakeDaemon::start();
    let o = against(&d, &["top", "--limit", "5"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let header = text.lines().next().expect("header");
    for col in [
        "PID",
        "PROCESS",
        "USER",
        "UP",
        "DOWN",
        "TOTAL UP",
        "TOTAL DOWN",
        "PROTOCOLS",
        "CONN",
    ] {
        assert!(header.contains(col), "{header}");
    }
    for want in [
        "(exited)",
        "1.5 MiB/s",
        "(unattributed)",
        "TOTAL",
        "forwarded",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
}

#[test]
fn top_json_is_flat() {
    let d = FakeDaemon::start();
    let v = json_of(&against(&d, &["--json", "top", "--limit", "3"]));
    let procs = v["processes"].as_array().expect("processes[]");
    assert_eq!(procs.len(), 3);
    let p = &procs[0];
    for key in [
        "pid",
        "name",
        "exe",
        "cmdline",
        "uid",
        "user",
        "up_bps",
        "down_bps",
        "up_bytes",
        "down_bytes",
        "protocols",
        "connections",
        "alive",
    ] {
        assert!(p.get(key).is_some(), "missing {key}: {p}");
    }
    assert_eq!(p["down_bps"], 1_572_864);
    assert_eq!(procs[2]["alive"], false);
    for key in ["up_bytes", "down_bytes", "up_bps", "down_bps"] {
        assert!(
            v["totals"][key].is_u64() && v["unattributed"][key].is_u64(),
            "{key}"
        );
    }
    assert_eq!(v["unattributed"]["reasons"][0]["reason"], "forwarded");
}

#[test]
fn closed_stdout_is_success() {
    let d = FakeDaemon::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_netmonctl"))
        .args([
            "--socket",
            d.socket.to_str().expect("utf8"),
            "top",
            "--limit",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("waits");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn status_reads_well_and_has_json_fields() {
    let d = FakeDaemon::start();
    let o = against(&d, &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "monitoring:  on",
        "1h 1m 1s",
        "97.5%",
        "eth0",
        "EN10MB",
        "#7",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    let v = json_of(&against(&d, &["status", "--json"]));
    assert_eq!(v["monitoring"], true);
    assert_eq!(v["version"], "0.1.0-fake");
    assert_eq!(v["uptime_secs"], 3661);
    assert_eq!(v["session"]["id"], 7);
    assert_eq!(v["interfaces"][0]["capture"]["packets_dropped"], 1);
    assert_eq!(v["storage"]["state"], "ok");
    assert_eq!(v["started"], "2026-01-01T00:00:00.000Z");
}

#[test]
fn refused_rpc_exits_1_with_the_reason() {
    let d = FakeDaemon::start();
    let o = against(&d, &["reset"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "netmonctl: permission denied: only root or members of 'netmon' may reset"
    );
}

#[test]
fn watch_prints_json_lines_and_reports_the_daemon_leaving() {
    let d = FakeDaemon::start();
    let o = against(&d, &["watch", "--json", "--interval", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("netmond went away"), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    for f in &lines {
        for key in ["time", "processes", "totals", "unattributed", "alerts"] {
            assert!(f.get(key).is_some(), "missing {key}: {f}");
        }
        assert_eq!(f["flows_active"], 3, "--interval 3 maps to every_ticks 3");
    }
    // The second frame is partial: the process of the first one is kept.
    assert_eq!(lines[1]["processes"].as_array().map(Vec::len), Some(2));
    let o = against(&d, &["watch"]);
    assert!(
        stdout(&o).contains("PROCESS") && stdout(&o).contains("00:00:01Z"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn export_streams_csv_and_json() {
    let d = FakeDaemon::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("out.csv");
    let o = against(
        &d,
        &[
            "export",
            "--format",
            "csv",
            "--output",
            file.to_str().expect("utf8"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let csv = std::fs::read_to_string(&file).expect("file written");
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 1001);
    assert!(lines[0].starts_with("time,pid,"));
    assert!(lines[1].contains(",\"a,b\","), "{}", lines[1]);
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "no temporary file left"
    );

    let v = json_of(&against(
        &d,
        &["export", "--format", "json", "--since", "7d"],
    ));
    assert_eq!(v.as_array().map(Vec::len), Some(1000));
    assert_eq!(v[0]["name"], "a,b");
}

#[test]
fn failed_export_leaves_no_file() {
    let d = FakeDaemon::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("out.json");
    let o = against(
        &d,
        &[
            "export",
            "--format",
            "json",
            "--since",
            "1970-01-01T00:00:00.001Z",
            "-o",
            file.to_str().expect("utf8"),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("database is locked"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[test]
fn report_shows_shares_and_others() {
    let d = FakeDaemon::start();
    let o = against(&d, &["report", "--day", "2026-01-01", "--by", "process"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "firefox",
        "60.0%",
        "(others)",
        "20.0%",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    let v = json_of(&against(&d, &["report", "--json", "--since", "2h"]));
    assert_eq!(v["by"], "process");
    assert_eq!(v["totals"]["total_bytes"], 1000);
    assert_eq!(v["rows"][0]["total_bytes"], 600);
    assert_eq!(v["rows"][0]["share"], 0.6);
    assert_eq!(v["others"]["total_bytes"], 200);
    assert_eq!(v["until"], Value::Null);
}

#[test]
fn report_days_and_shown_times_follow_the_local_zone_and_json_stays_utc() {
    let d = FakeDaemon::start();
    let args = ["report", "--day", "2026-01-01", "--by", "process"];
    let o = against_in(&d, "Asia/Tokyo", &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "from 2026-01-01T00:00:00+09:00 to 2026-01-02T00:00:00+09:00",
        "(time zone Asia/Tokyo, +09:00)",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    // The same day in Los Angeles, and in JSON: UTC instants of local midnights.
    let mut json = vec!["--json"];
    json.extend_from_slice(&args);
    let v = json_of(&against_in(&d, "America/Los_Angeles", &json));
    assert_eq!(v["since"], "2026-01-01T08:00:00.000Z");
    assert_eq!(v["until"], "2026-01-02T08:00:00.000Z");
    let v = json_of(&against_in(&d, "Asia/Tokyo", &json));
    assert_eq!(v["since"], "2025-12-31T15:00:00.000Z");
    // --utc beats TZ.
    let mut utc = vec!["--utc"];
    utc.extend_from_slice(&args);
    let text = stdout(&against_in(&d, "Asia/Tokyo", &utc));
    assert!(
        text.contains("from 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z (UTC)"),
        "{text}"
    );
    // --every sends the zone; the daemon's answer names it.
    let v = json_of(&against_in(
        &d,
        "Asia/Tokyo",
        &["report", "--json", "--since", "60d", "--every", "month"],
    ));
    assert_eq!(v["time_zone"], "Asia/Tokyo");
    assert_eq!(v["periods"][0]["utc_offset_s"], 32_400);
    let v = json_of(&against(
        &d,
        &["report", "--json", "--since", "60d", "--every", "month"],
    ));
    assert_eq!(v["time_zone"], "UTC");
    // Other shown times carry the offset too.
    let o = against_in(&d, "Asia/Tokyo", &["alerts", "--since", "2026-01-01"]);
    assert!(
        stdout(&o).contains("2026-01-01T00:00:00+09:00"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn report_every_month_gives_a_row_per_period() {
    let d = FakeDaemon::start();
    let v = json_of(&against(
        &d,
        &["report", "--json", "--since", "60d", "--every", "month"],
    ));
    assert_eq!(v["every"], "month");
    // The whole range is still there, as without --every.
    assert_eq!(v["totals"]["total_bytes"], 1000);
    let p = v["periods"].as_array().expect("periods[]");
    assert_eq!(p.len(), 2, "{v}");
    assert_eq!(p[0]["since"], "2026-01-01T00:00:00.000Z");
    assert_eq!(p[0]["until"], "2026-02-01T00:00:00.000Z");
    assert_eq!(p[1]["since"], "2026-02-01T00:00:00.000Z");
    assert_eq!(p[0]["totals"]["total_bytes"], 400);
    assert_eq!(p[1]["totals"]["total_bytes"], 600);
    assert_eq!(p[1]["rows"][0]["key"], "curl");
    assert_eq!(p[1]["rows"][0]["share"], 200.0 / 600.0);
    assert_eq!(p[1]["others"]["total_bytes"], 400);
    assert_eq!(p[0]["others"], Value::Null);
    // Without --every: no periods, every null.
    let v = json_of(&against(&d, &["report", "--json"]));
    assert_eq!(v["every"], Value::Null);
    assert_eq!(v["periods"], serde_json::json!([]));

    let o = against(&d, &["report", "--since", "60d", "--every", "month"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("PERIOD") && text.contains("(UTC)"), "{text}");
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row for {start}:\n{text}"))
            .to_owned()
    };
    assert!(line("2026-01-01T00:00:00Z").ends_with("400 B"), "{text}");
    assert!(line("2026-02-01T00:00:00Z").ends_with("600 B"), "{text}");
    assert!(!text.contains("firefox"), "no rows without --by:\n{text}");

    let o = against(
        &d,
        &[
            "report", "--since", "60d", "--every", "month", "--by", "process",
        ],
    );
    let text = stdout(&o);
    for want in [
        "2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z: 400 B",
        "2026-02-01T00:00:00Z to 2026-03-01T00:00:00Z: 600 B",
        "firefox",
        "curl",
        "33.3%",
        "(others)",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    let bad = against(&d, &["report", "--every", "week"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn when_is_sent_as_since_ms() {
    let d = FakeDaemon::start();
    let v = json_of(&against(&d, &["alerts", "--since", "2026-01-01", "--json"]));
    assert_eq!(v["alerts"][0]["started"], "2026-01-01T00:00:00.000Z");
    assert_eq!(v["alerts"][0]["state"], "open");
    assert_eq!(v["alerts"][0]["pid"], 9);
}

#[test]
fn threshold_set_sends_bytes_per_second() {
    let d = FakeDaemon::start();
    let v = json_of(&against(
        &d,
        &[
            "threshold",
            "set",
            "20Mbps",
            "--process",
            "curl",
            "--direction",
            "up",
            "--json",
        ],
    ));
    assert_eq!(v["value"], 2_500_000);
    assert_eq!(v["kind"], "rate");
    assert_eq!(v["direction"], "up");
    assert_eq!(v["process_name"], "curl");
    let o = against(&d, &["threshold", "list"]);
    assert!(
        stdout(&o).contains("1.0 MiB/s") && stdout(&o).contains("name curl"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn other_listings_render() {
    let d = FakeDaemon::start();
    let o = against(&d, &["connections"]);
    assert!(
        stdout(&o).contains("[::1]:5555") && stdout(&o).contains("10.0.0.2:443"),
        "{}",
        stdout(&o)
    );
    for cmd in ["interfaces", "hosts", "sessions", "start", "stop"] {
        let o = against(&d, &[cmd]);
        assert_eq!(o.status.code(), Some(0), "{cmd}: {}", stderr(&o));
        let v = json_of(&against(&d, &[cmd, "--json"]));
        assert!(v.is_object(), "{cmd}");
    }
}

#[test]
fn watch_ends_cleanly_on_ctrl_c() {
    use std::io::BufRead;
    let d = FakeDaemon::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_netmonctl"))
        .args([
            "--socket",
            d.socket.to_str().expect("utf8"),
            "--json",
            "watch",
            "--interval",
            "99",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut first = String::new();
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    reader.read_line(&mut first).expect("first frame");
    assert!(first.contains("\"seq\":1"), "{first}");
    let killed = commands::command("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let o = child.wait_with_output().expect("waits");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
