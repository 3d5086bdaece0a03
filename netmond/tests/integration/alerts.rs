//! Thresholds and alerts end to end: paced senders in the lab against
//! per-process and per-program rules (one alert per event, peak, pid override,
//! a program of short-lived processes, daily quota), the hook, and rules that
//! survive a daemon restart.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::harness::*;

/// UDP sender paced every 10 ms: `rate` payload bytes/s of `size`-byte
/// datagrams for `secs` seconds after `delay`. It never bursts to catch up,
/// so no one-second window carries more than the nominal rate. Prints the
/// datagrams sent.
const PACED_UDP: &str = r#"
import socket, sys, time
host, port, rate, secs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
time.sleep(float(sys.argv[6]) if len(sys.argv) > 6 else 0)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); data = b"p" * size
step = 0.01; per_step = max(1, round(rate * step / size)); sent = 0; k = 0
t0 = time.monotonic()
while True:
    now = time.monotonic()
    if now - t0 >= secs: break
    target = t0 + k * step
    if target > now: time.sleep(target - now)
    elif now - target > 0.05: k = int((now - t0) / step)
    for _ in range(per_step): s.sendto(data, (host, port))
    sent += per_step; k += 1
print(sent, flush=True)
"#;

/// Prefix for a generator script: the process renames itself (comm) to its
/// first argument, so its program is its own, apart from every other python3.
const RENAME: &str =
    "import sys\nwith open('/proc/self/comm', 'w') as f: f.write(sys.argv.pop(1))\n";

/// A program name unique to this test run (comm holds 15 bytes).
fn program_name(tag: &str) -> String {
    format!("nm{tag}{}", std::process::id() % 100_000)
}

const SIZE: u64 = 1000;
/// IPv4 + UDP headers: the layer-3 bytes of a datagram are payload + 28.
const HEADERS: u64 = 28;

/// The layer-3 rate the paced sender produces for a payload rate.
fn l3_rate(payload_rate: u64) -> u64 {
    let per_step = (payload_rate / 100 / SIZE).max(1);
    per_step * 100 * (SIZE + HEADERS)
}

/// The paced sender as program `name`.
fn paced(
    lab: &Lab,
    name: &str,
    port: &str,
    payload_rate: u64,
    secs: f64,
    delay: f64,
) -> std::process::Child {
    Lab::spawn_in(
        &lab.host,
        "python3",
        &[
            "-c",
            &format!("{RENAME}{PACED_UDP}"),
            name,
            &lab.peer_ip,
            port,
            &payload_rate.to_string(),
            &secs.to_string(),
            &SIZE.to_string(),
            &delay.to_string(),
        ],
    )
}

fn alerts(d: &Daemon) -> Vec<serde_json::Value> {
    d.ctl_json(&["alerts", "--since", "1h"])["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Alerts about `pid`: its own (a pid rule) or its program's.
fn alerts_for(all: &[serde_json::Value], pid: u32) -> Vec<serde_json::Value> {
    all.iter().filter(|a| about(a, pid)).cloned().collect()
}

fn about(a: &serde_json::Value, pid: u32) -> bool {
    a["pid"].as_u64() == Some(u64::from(pid)) || pids_of(a).contains(&pid)
}

fn pids_of(a: &serde_json::Value) -> Vec<u32> {
    a["pids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_u64().and_then(|p| u32::try_from(p).ok()))
        .collect()
}

fn set_ok(d: &Daemon, args: &[&str]) {
    let mut a = vec!["threshold", "set"];
    a.extend_from_slice(args);
    let out = d.ctl(&a);
    assert!(
        out.status.success(),
        "threshold set {args:?}: {}",
        stderr(&out)
    );
}

/// Polls `alerts` until `pred` holds or `secs` pass; returns the last list.
fn wait_alerts(
    d: &Daemon,
    secs: u64,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let all = alerts(d);
        if pred(&all) || std::time::Instant::now() > deadline {
            return all;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn sender_above_its_threshold_raises_one_alert_with_its_peak_and_runs_the_hook() {
    let lab = Lab::new();
    let hook_dir = tempfile::tempdir().expect("tempdir");
    // The hook runs as 'nobody': it must be able to write its log here.
    std::fs::set_permissions(hook_dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let hook_log = hook_dir.path().join("runs.txt");
    let script = hook_dir.path().join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ env | grep ^NETMON_ALERT_ | sort; echo --; }} >> '{}'\n",
            hook_log.display()
        ),
    )
    .expect("write hook");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let d = lab.daemon(DaemonOpts {
        config_extra: format!(
            "[alerts]\nhook = [\"{}\"]\nhook_timeout_secs = 5\n",
            script.display()
        ),
        ..Default::default()
    });
    let _sink = start_server(&lab.peer, gen::UDP_SINK, &[&lab.peer_ip, "5401"]);
    let threshold: u64 = 300 * 1024;
    set_ok(&d, &["300KiB/s", "--direction", "up"]);

    // A subscriber sees the alert open and close in the stream.
    let watch = std::process::Command::new(bin("netmonctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--json", "watch", "--interval", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("netmonctl watch");
    let mut watch = ChildGuard(watch);
    let frames = {
        let out = watch.0.stdout.take().expect("watch stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };

    // The default rule judges programs: each sender is its own.
    let (fast_name, slow_name) = (program_name("fast"), program_name("slow"));
    let fast_rate = 1_000_000;
    let fast = paced(&lab, &fast_name, "5401", fast_rate, 6.0, 0.0);
    let slow = paced(&lab, &slow_name, "5401", 100_000, 6.0, 0.0);
    let (fast_pid, slow_pid) = (fast.id(), slow.id());
    // While it runs, its row says it is over the threshold in force.
    let top = wait_top(&d, 8, |t| {
        proc_by_pid(t, fast_pid).is_some_and(|p| p["over_threshold"] == true)
    });
    let row =
        proc_by_pid(&top, fast_pid).unwrap_or_else(|| panic!("sender {fast_pid} missing: {top}"));
    assert_eq!(row["over_threshold"], true, "{row}");
    assert_eq!(u(&row, "threshold_bps"), threshold, "{row}");
    if let Some(p) = proc_by_pid(&top, slow_pid) {
        assert_eq!(p["over_threshold"], false, "{p}");
    }
    wait_output(fast, 30);
    wait_output(slow, 30);

    // Three ticks below close it.
    let all = wait_alerts(&d, 10, |a| {
        alerts_for(a, fast_pid)
            .iter()
            .any(|x| x["state"] == "closed")
    });
    let mine = alerts_for(&all, fast_pid);
    assert_eq!(
        mine.len(),
        1,
        "exactly one alert for the sustained sender: {all:#?}\n{}",
        d.log_text()
    );
    let a = &mine[0];
    assert_eq!(a["state"], "closed", "{a}");
    assert_eq!(a["kind"], "rate");
    assert_eq!(a["direction"], "up");
    assert_eq!(a["name"], fast_name.as_str());
    assert_eq!(a["pid"], serde_json::Value::Null, "a program alert: {a}");
    assert_eq!(pids_of(a), [fast_pid], "{a}");
    assert_eq!(u(a, "threshold"), threshold);
    let want = l3_rate(fast_rate);
    let peak = u(a, "peak");
    println!("peak {peak} B/s, generator {want} B/s");
    assert!(
        peak.abs_diff(want) * 20 <= want,
        "peak {peak} B/s is not within 5% of the generator's {want} B/s: {a}"
    );
    assert!(a["ended"].is_string() && a["started"].is_string(), "{a}");
    assert!(
        alerts_for(&all, slow_pid).is_empty(),
        "the slow sender stayed below: {all:#?}"
    );
    assert!(d.log_text().contains("alert opened"), "logged with warn");

    // The stream carried both events (the 2 s interval skips every other
    // tick: alerts of skipped ticks ride on the next frame).
    // Read until the close arrives, then one more frame (a duplicate
    // would ride on it), with a deadline.
    let mut streamed: Vec<(String, u64)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut after_close = 0;
    while after_close < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = frames.recv_timeout(left) else {
            break;
        };
        let Ok(f) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        streamed.extend(
            f["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| about(x, fast_pid))
                .map(|x| (x["state"].as_str().unwrap_or("").to_owned(), u(x, "id"))),
        );
        if streamed.iter().any(|(s, _)| s == "closed") {
            after_close += 1;
        }
    }
    drop(watch);
    let id = a["id"].as_u64().expect("id");
    assert_eq!(
        streamed,
        [("open".to_owned(), id), ("closed".to_owned(), id)],
        "alerts in the watch stream"
    );

    // The hook ran once on open and once on close, with the alert's variables.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let text = std::fs::read_to_string(&hook_log).unwrap_or_default();
        if text.matches("--\n").count() >= 2 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for state in ["open", "closed"] {
        let run = runs
            .split("--\n")
            .find(|r| r.contains(&format!("NETMON_ALERT_STATE={state}\n")))
            .unwrap_or_else(|| panic!("no hook run for {state}: {runs}"));
        for want in [
            format!("NETMON_ALERT_ID={id}\n"),
            "NETMON_ALERT_PID=\n".to_owned(),
            format!("NETMON_ALERT_PIDS={fast_pid}\n"),
            format!("NETMON_ALERT_PROCESS={fast_name}\n"),
            "NETMON_ALERT_KIND=rate\n".to_owned(),
            "NETMON_ALERT_DIRECTION=up\n".to_owned(),
            format!("NETMON_ALERT_THRESHOLD={threshold}\n"),
        ] {
            assert!(
                run.contains(&want),
                "hook run for {state} lacks {want:?}: {run}"
            );
        }
    }
}

#[test]
fn pid_override_beats_name_and_default_rules() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let _sink = start_server(&lab.peer, gen::UDP_SINK, &[&lab.peer_ip, "5402"]);
    let name = program_name("pair");
    set_ok(&d, &["100KiB/s", "--direction", "up"]);
    set_ok(&d, &["200KiB/s", "--direction", "up", "--process", &name]);
    // Both send 400 KB/s as one program; the first is allowed 1 MiB/s by
    // pid before it starts, which judges it alone.
    let a = paced(&lab, &name, "5402", 400_000, 6.0, 2.0);
    let b = paced(&lab, &name, "5402", 400_000, 6.0, 2.0);
    let (a_pid, b_pid) = (a.id(), b.id());
    set_ok(
        &d,
        &["1MiB/s", "--direction", "up", "--pid", &a_pid.to_string()],
    );
    let top = wait_top(&d, 10, |t| {
        proc_by_pid(t, a_pid).is_some_and(|p| u(&p, "up_bps") > 0)
            && proc_by_pid(t, b_pid).is_some_and(|p| u(&p, "up_bps") > 0)
    });
    let row = |pid| proc_by_pid(&top, pid).unwrap_or_else(|| panic!("{pid} missing: {top}"));
    assert_eq!(u(&row(a_pid), "threshold_bps"), 1 << 20);
    assert_eq!(u(&row(b_pid), "threshold_bps"), 200 * 1024);
    wait_output(a, 30);
    wait_output(b, 30);
    let all = wait_alerts(&d, 10, |x| {
        alerts_for(x, b_pid).iter().any(|a| a["state"] == "closed")
    });
    assert!(
        !all.iter()
            .any(|x| x["pid"].as_u64() == Some(u64::from(a_pid))),
        "the pid rule allows {a_pid}: {all:#?}"
    );
    let mine = alerts_for(&all, b_pid);
    assert_eq!(mine.len(), 1, "{all:#?}");
    assert_eq!(mine[0]["name"], name.as_str());
    assert_eq!(
        u(&mine[0], "threshold"),
        200 * 1024,
        "the name rule, not the default"
    );
    // The program is both processes, the one with its own pid rule too.
    let mut pids = pids_of(&mine[0]);
    pids.sort_unstable();
    let mut want = vec![a_pid, b_pid];
    want.sort_unstable();
    assert_eq!(pids, want, "{:#}", mine[0]);
}

/// The user's case: a program that downloads 8 MB every 0.2 s for 5 s from
/// short processes, each gone before three ticks, against a 1 MiB/s rule on
/// its name. The program is over; no one process is, long enough.
#[test]
fn program_of_short_lived_downloaders_raises_one_alert_listing_its_pids() {
    use std::io::Write;
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let _server = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5404"]);
    let name = program_name("burst");
    set_ok(&d, &["1MiB/s", "--process", &name, "--direction", "down"]);
    let n: u64 = 8_000_000;
    let mut prog = spawn_bursts(&lab, &name, "5404", n, 0.2, 5.0, true);
    // The first process waits: give it a pid rule of the same 1 MiB/s first.
    let first: u32 = {
        let mut line = String::new();
        let stdout = prog.stdout.as_mut().expect("stdout");
        let mut r = std::io::BufReader::new(stdout);
        std::io::BufRead::read_line(&mut r, &mut line).expect("first pid");
        line.trim()
            .strip_prefix("pid ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a pid line: {line:?}"))
    };
    set_ok(
        &d,
        &["1MiB/s", "--pid", &first.to_string(), "--direction", "down"],
    );
    let mut stdin = prog.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("go");
    drop(stdin);
    let out = wait_output(prog, 60);
    let text = format!("pid {first}\n{}", stdout(&out));
    let run = Bursts::parse(&text);
    assert_eq!(
        run.bytes,
        25 * n,
        "every download completed: {text}\n{}",
        stderr(&out)
    );
    let rate = run.bytes as f64 / run.elapsed;
    println!(
        "{} processes, {} B in {:.3} s: {rate:.0} B/s",
        run.pids.len(),
        run.bytes,
        run.elapsed
    );

    let mine = |all: &[serde_json::Value]| -> Vec<serde_json::Value> {
        all.iter()
            .filter(|a| a["name"] == name.as_str() && a["kind"] == "rate")
            .cloned()
            .collect()
    };
    let all = wait_alerts(&d, 15, |a| mine(a).iter().any(|x| x["state"] == "closed"));
    let program = mine(&all);
    assert_eq!(
        program.len(),
        1,
        "one alert for the program: {all:#?}\n{}",
        d.log_text()
    );
    let a = &program[0];
    assert_eq!(a["state"], "closed", "{a}");
    assert_eq!(a["direction"], "down");
    assert_eq!(a["pid"], serde_json::Value::Null, "{a}");
    assert_eq!(u(a, "threshold"), 1 << 20);
    let pids = pids_of(a);
    assert!(pids.len() >= 2, "several processes listed: {a}");
    assert!(
        pids.iter().all(|p| run.pids.contains(p)),
        "only the program's processes: {pids:?} vs {:?}",
        run.pids
    );
    assert!(u(a, "pids_seen") >= pids.len() as u64, "{a}");
    assert!(a["message"].as_str().unwrap_or("").contains(&name), "{a}");
    // One tick's rate against the generator's mean: ticks hold 4 to 6 of
    // the 5-a-second downloads when the schedule holds; TCP/IP headers add
    // up to 6% (tcp_credit_hi) to the payload.
    let (value, peak) = (u(a, "value"), u(a, "peak"));
    let lo = (rate * 0.5) as u64;
    let hi = tcp_credit_hi((rate * 1.6) as u64);
    assert_between(value, lo, hi, "rate of the tick that opened the alert");
    assert_between(peak, value, hi, "peak while open");
    // The pid rule judged that one process alone: it never lasted 3 ticks.
    assert!(
        !all.iter()
            .any(|x| x["pid"].as_u64() == Some(u64::from(first))),
        "no alert for pid {first} on its own: {all:#?}"
    );
}

#[test]
fn daily_quota_fires_once_when_crossed() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let _sink = start_server(&lab.peer, gen::UDP_SINK, &[&lab.peer_ip, "5403"]);
    set_ok(
        &d,
        &[
            "1MiB",
            "--kind",
            "quota",
            "--process",
            "python3",
            "--direction",
            "up",
        ],
    );
    // About 3 MB in 3 s: crosses 1 MiB after one second, then keeps going.
    let tx = paced(&lab, "python3", "5403", 1_000_000, 3.0, 0.0);
    let pid = tx.id();
    let out = wait_output(tx, 30);
    let sent: u64 = stdout(&out).trim().parse().expect("datagram count");
    let sent_l3 = sent * (SIZE + HEADERS);
    // The peak is the day's bytes so far: everything the sender sent, once.
    let quota_peak = |all: &[serde_json::Value]| {
        all.iter()
            .find(|a| a["kind"] == "quota")
            .map_or(0, |a| u(a, "peak"))
    };
    let peak = settle(15, sent_l3 * 99 / 100, || quota_peak(&alerts(&d)));
    let all = alerts(&d);
    let quota: Vec<_> = all.iter().filter(|a| a["kind"] == "quota").collect();
    assert_eq!(quota.len(), 1, "{all:#?}");
    let a = quota[0];
    assert_eq!(a["state"], "open", "open until midnight UTC: {a}");
    assert_eq!(a["pid"].as_u64(), Some(u64::from(pid)), "{a}");
    assert_eq!(u(a, "threshold"), 1 << 20);
    assert!(
        (sent_l3 * 99 / 100..=sent_l3 + sent_l3 / 100).contains(&peak),
        "quota peak {peak}, sent {sent_l3} L3 bytes: {a}"
    );
}

#[test]
fn api_thresholds_survive_a_restart_and_config_ones_cannot_be_cleared() {
    let mut d = Daemon::start(DaemonOpts {
        config_extra: "[alerts]\nhost_rate = \"10MiB/s\"\n".into(),
        ..Default::default()
    });
    set_ok(
        &d,
        &["1MiB/s", "--process", "firefox", "--direction", "down"],
    );
    set_ok(&d, &["2GiB", "--kind", "quota"]);
    let before = d.ctl_json(&["threshold", "list"]);
    let list = before["thresholds"].as_array().expect("list").clone();
    assert_eq!(list.len(), 3, "{before}");
    assert_eq!(list[0]["source"], "config");
    assert_eq!(list[0]["kind"], "host");
    assert_eq!(u(&list[0], "value"), 10 << 20);
    let state_file = d.db.parent().expect("db dir").join("thresholds.json");
    assert!(state_file.exists(), "rules are saved next to the database");

    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
    d.spawn();
    d.wait_ready();
    let after = d.ctl_json(&["threshold", "list"]);
    // Config rules are re-read (created = daemon start); API rules come back as they were.
    let api = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["thresholds"]
            .as_array()
            .expect("list")
            .iter()
            .filter(|t| t["source"] == "api")
            .cloned()
            .collect()
    };
    assert_eq!(api(&after).len(), 2, "{after}\n{}", d.log_text());
    assert_eq!(api(&after), api(&before));
    assert_eq!(after["thresholds"][0]["id"], before["thresholds"][0]["id"]);

    let out = d.ctl(&["--json", "threshold", "clear", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left = d.ctl_json(&["threshold", "list"]);
    let left = left["thresholds"].as_array().expect("list");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["source"], "config");
    let id = u(&left[0], "id").to_string();
    let out = d.ctl(&["threshold", "clear", "--id", &id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a config rule is refused: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("config file"), "{}", stderr(&out));

    // Cleared stays cleared across a restart too.
    d.terminate();
    d.spawn();
    d.wait_ready();
    assert_eq!(
        d.ctl_json(&["threshold", "list"])["thresholds"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_the_daemon_starts() {
    let mut d = Daemon::start(DaemonOpts::default());
    set_ok(&d, &["1MiB/s"]);
    d.terminate();
    let dir = d.db.parent().expect("db dir").to_path_buf();
    std::fs::write(dir.join("thresholds.json"), "{ torn").expect("corrupt");
    d.spawn();
    d.wait_ready();
    let list = d.ctl_json(&["threshold", "list"]);
    assert_eq!(
        list["thresholds"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
    let aside = std::fs::read_dir(&dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("thresholds.json.bad-")
        });
    assert!(aside, "the bad file is kept for inspection");
    assert!(d.log_text().contains("moved aside"), "{}", d.log_text());
}

/// Whether `pid` is a live process (a zombie is not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_the_processes_it_started() {
    let lab = Lab::new();
    let hook_dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(hook_dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let pids = hook_dir.path().join("pids");
    let script = hook_dir.path().join("hook.sh");
    // Starts a child that would outlive it, records both, then hangs.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 120 &\necho \"$$ $! $(id -u)\" >> '{}'\nsleep 120\n",
            pids.display()
        ),
    )
    .expect("write hook");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let d = lab.daemon(DaemonOpts {
        config_extra: format!(
            "[alerts]\nhook = [\"{}\"]\nhook_timeout_secs = 1\n",
            script.display()
        ),
        ..Default::default()
    });
    let _sink = start_server(&lab.peer, gen::UDP_SINK, &[&lab.peer_ip, "5402"]);
    set_ok(&d, &["300KiB/s", "--direction", "up"]);
    let name = program_name("hook");
    let sender = ChildGuard(paced(&lab, &name, "5402", 1_000_000, 5.0, 0.0));
    // The first run, as soon as the alert opens.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        let text = std::fs::read_to_string(&pids).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the hook never ran: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let seen = Instant::now();
    let f: Vec<u32> = first
        .split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect();
    let (hook, child, uid) = (f[0], f[1], f[2]);
    assert_ne!(uid, 0, "the hook must not run as root");
    // Killed with its process group one second after it started; allow
    // the daemon's check interval and a loaded machine.
    while (running(hook) || running(child)) && seen.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "hook {hook} and its child {child} gone after {:?}",
        seen.elapsed()
    );
    assert!(!running(hook), "the hook outlived its timeout");
    assert!(
        !running(child),
        "the hook's child outlived the hook's timeout"
    );
    drop(sender);
}
