//! `alerts --follow` against a real netmond in the lab: a program of
//! short-lived downloaders raises an alert, the daemon restarts, the follower
//! reconnects and sees the next alert; every event printed once.

use std::io::BufRead;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Lines of a child's pipe, as they come.
pub(crate) fn lines_of(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects lines until `done` holds on them or `secs` pass.
pub(crate) fn read_until(
    rx: &Receiver<String>,
    got: &mut Vec<String>,
    secs: u64,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(got) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => got.push(line),
            Err(_) => return,
        }
    }
}

/// (id, state) of the follower's JSON lines about program `name`.
pub(crate) fn events(lines: &[String], name: &str) -> Vec<(u64, String)> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|a| a["name"] == name)
        .map(|a| (u(&a, "id"), a["state"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn closed_count(lines: &[String], name: &str) -> usize {
    events(lines, name)
        .iter()
        .filter(|(_, s)| s == "closed")
        .count()
}

/// At least `n` alerts closed and none open.
pub(crate) fn all_closed(lines: &[String], name: &str, n: usize) -> bool {
    let ev = events(lines, name);
    let closed = closed_count(lines, name);
    closed >= n && ev.len() == 2 * closed
}

/// Waits until the daemon has `n` subscribers (the follower is listening).
pub(crate) fn wait_subscribed(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while u(&d.ctl_json(&["status"]), "subscribers") == 0 {
        assert!(Instant::now() < deadline, "the follower never subscribed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 8 MB every 0.2 s for 3 s from short processes named `name`: the
/// program's 1 MiB/s rule opens, then closes once it stops. Returns the
/// generator's pids.
pub(crate) fn burst(lab: &Lab, name: &str) -> Vec<u32> {
    let out = wait_output(
        spawn_bursts(lab, name, "5410", 8_000_000, 0.2, 3.0, false),
        60,
    );
    let run = Bursts::parse(&stdout(&out));
    assert_eq!(run.bytes, 15 * 8_000_000, "{}", stderr(&out));
    run.pids
}

#[test]
fn follow_prints_each_alert_once_across_a_daemon_restart() {
    let lab = Lab::new();
    let mut d = lab.daemon(DaemonOpts::default());
    let _server = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5410"]);
    let name = format!("nmfollow{}", std::process::id() % 100_000);
    let out = d.ctl(&[
        "threshold",
        "set",
        "1MiB/s",
        "--process",
        &name,
        "--direction",
        "down",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut follower = std::process::Command::new(bin("netmonctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--json", "alerts", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("netmonctl alerts --follow");
    let out_rx = lines_of(follower.stdout.take().expect("stdout"));
    let err_rx = lines_of(follower.stderr.take().expect("stderr"));
    let follower = ChildGuard(follower);
    wait_subscribed(&d);

    let mut lines = Vec::new();
    burst(&lab, &name);
    read_until(&out_rx, &mut lines, 20, |l| all_closed(l, &name, 1));
    assert!(all_closed(&lines, &name, 1), "{lines:#?}\n{}", d.log_text());

    let before = events(&lines, &name).len();
    // Restart: the follower says so on stderr and keeps following.
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
    d.spawn();
    d.wait_ready();
    let mut errs = Vec::new();
    read_until(&err_rx, &mut errs, 30, |e| {
        e.iter().any(|l| l.contains("reconnected"))
    });
    assert!(
        errs.iter().any(|l| l.contains("went away"))
            && errs.iter().any(|l| l.contains("reconnected")),
        "{errs:#?}"
    );
    wait_subscribed(&d);
    // Monitoring is back once the lab interface is captured again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.ctl_json(&["status"])["interfaces"]
        .as_array()
        .is_some_and(|a| {
            a.iter()
                .any(|i| i["name"] == lab.host_if.as_str() && i["capturing"] == true)
        })
    {
        assert!(
            Instant::now() < deadline,
            "lab interface not captured after restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    burst(&lab, &name);
    let closed_before = closed_count(&lines, &name);
    read_until(&out_rx, &mut lines, 20, |l| {
        all_closed(l, &name, closed_before + 1)
    });
    // One more second: a repeat would come with the next frames.
    read_until(&out_rx, &mut lines, 2, |_| false);
    drop(follower);

    // Each alert opens once and closes once, in that order, and the
    // follower saw alerts on both sides of the restart. (A generator that
    // stalls on a loaded machine may split one burst into two alerts.)
    let ev = events(&lines, &name);
    let mut ids: Vec<u64> = ev.iter().map(|e| e.0).collect();
    ids.dedup();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        ids.len(),
        "an alert printed apart twice: {ev:?}"
    );
    assert!(
        ids.len() >= 2,
        "alerts before and after the restart: {ev:?}"
    );
    for id in &ids {
        let states: Vec<&str> = ev
            .iter()
            .filter(|e| e.0 == *id)
            .map(|e| e.1.as_str())
            .collect();
        assert_eq!(states, ["open", "closed"], "alert {id}: {ev:?}");
    }
    let after: Vec<u64> = ev[before..].iter().map(|e| e.0).collect();
    assert!(
        !after.is_empty()
            && after
                .iter()
                .all(|id| !ev[..before].iter().any(|e| e.0 == *id)),
        "after the restart only new alerts: {ev:?} (restart after {before} events)"
    );
    for l in &lines {
        let a: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        if a["name"] == name.as_str() {
            assert!(
                a["pids"].as_array().is_some_and(|p| !p.is_empty()),
                "the program's pids: {a}"
            );
        }
    }
}
