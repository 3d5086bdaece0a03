//! The Prometheus endpoint in the lab: scraped over HTTP from inside the
//! daemon's namespace, parsed strictly, compared with `netmonctl top --json`;
//! bounded series under thousands of short-lived processes; off by default.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netmon_testkit::openmetrics as parse;

use crate::harness::*;

const PORT: u16 = 9559;

fn metrics_opts(extra: &str) -> DaemonOpts {
    DaemonOpts {
        config_extra: format!("[metrics]\nlisten = \"127.0.0.1:{PORT}\"\n{extra}"),
        ..Default::default()
    }
}

/// GET /metrics from inside the lab's host namespace, parsed strictly.
fn scrape(lab: &Lab, d: &Daemon) -> Vec<parse::Sample> {
    let out = lab.host.exec(&format!(
        "curl -sS --max-time 10 http://127.0.0.1:{PORT}/metrics"
    ));
    assert!(
        out.status.success(),
        "scrape failed: {}\n--- daemon log ---\n{}",
        stderr(&out),
        d.log_text()
    );
    let text = stdout(&out);
    parse::exposition(&text).unwrap_or_else(|e| panic!("bad exposition: {e}\n{text}"))
}

/// Sum of `netmon_process_bytes_total` for `process` per direction (up, down).
fn process_bytes(samples: &[parse::Sample], process: &str) -> (u64, u64) {
    let mut out = (0, 0);
    for (name, labels, v) in samples {
        if name == "netmon_process_bytes_total" && labels["process"] == process {
            match labels["direction"].as_str() {
                "up" => out.0 += *v as u64,
                "down" => out.1 += *v as u64,
                other => panic!("unexpected direction {other}"),
            }
        }
    }
    out
}

/// Sum over `top --json` rows named `name`: (up_bytes, down_bytes, up_bps, down_bps).
fn top_bytes(top: &serde_json::Value, name: &str) -> (u64, u64, u64, u64) {
    top["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter(|p| p["name"] == name)
        .fold((0, 0, 0, 0), |a, p| {
            (
                a.0 + u(p, "up_bytes"),
                a.1 + u(p, "down_bytes"),
                a.2 + u(p, "up_bps"),
                a.3 + u(p, "down_bps"),
            )
        })
}

/// Every `_total` counter of a scrape, keyed by name and sorted labels.
fn counters(samples: &[parse::Sample]) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|(name, _, _)| name.ends_with("_total"))
        .map(|(name, labels, v)| {
            let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            l.sort();
            (format!("{name}{{{}}}", l.join(",")), *v)
        })
        .collect()
}

#[test]
fn scraped_process_counters_match_top_json() {
    let lab = Lab::new();
    let mut d = lab.daemon(metrics_opts(""));
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5401"]);
    const N: u64 = 8 * 1024 * 1024;
    let n = N.to_string();
    let up = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", gen::TCP_CLIENT, &lab.peer_ip, "5401", "up", &n],
    );
    let down = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", gen::TCP_CLIENT, &lab.peer_ip, "5401", "down", &n],
    );
    wait_output(up, 30);
    wait_output(down, 30);
    wait_top(&d, 20, |t| {
        let (u, dn, _, _) = top_bytes(t, "python3");
        u >= N && dn >= N
    });
    // Scrape, top, scrape: top must lie within the two scrapes, widened by
    // one tick's worth of traffic on either side.
    let before = process_bytes(&scrape(&lab, &d), "python3");
    let top = d.ctl_json(&["top", "--limit", "0"]);
    let samples = scrape(&lab, &d);
    let after = process_bytes(&samples, "python3");
    let (tu, td, ubps, dbps) = top_bytes(&top, "python3");
    assert!(tu >= N && td >= N, "top saw the transfer: {top}");
    let tick = |bps: u64| bps + 64 * 1024;
    assert!(
        before.0.saturating_sub(tick(ubps)) <= tu && tu <= after.0 + tick(ubps),
        "python3 up: metrics {before:?}..{after:?}, top {tu}"
    );
    assert!(
        before.1.saturating_sub(tick(dbps)) <= td && td <= after.1 + tick(dbps),
        "python3 down: metrics {before:?}..{after:?}, top {td}"
    );
    // Once traffic has stopped, the two agree exactly (polled: the
    // collector sees each tick's frame a little after `top` does).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (now, tu, td) = loop {
        let top = d.ctl_json(&["top", "--limit", "0"]);
        let (tu, td, _, _) = top_bytes(&top, "python3");
        let now = process_bytes(&scrape(&lab, &d), "python3");
        if now == (tu, td) || Instant::now() > deadline {
            break (now, tu, td);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(now, (tu, td), "metrics vs top --json for python3");
    // And both agree with the generators: N bytes each way, plus the other
    // side's request line and ACKs.
    let hi = tcp_credit_hi(N);
    assert_between(now.0, N, hi, "scraped python3 up bytes");
    assert_between(now.1, N, hi, "scraped python3 down bytes");

    let one = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
    };
    assert_eq!(one("netmon_up", &[]), Some(1.0));
    assert_eq!(one("netmon_monitoring", &[]), Some(1.0));
    assert_eq!(one("netmon_store_healthy", &[]), Some(1.0));
    let iface = lab.host_if.as_str();
    assert!(
        one(
            "netmon_interface_bytes_total",
            &[("interface", iface), ("direction", "up")]
        )
        .is_some_and(|v| v >= N as f64),
        "kernel tx counter of the lab interface"
    );
    assert!(one("netmon_capture_packets_total", &[("interface", iface)]).is_some_and(|v| v > 0.0));
    assert_eq!(
        one("netmon_capture_dropped_total", &[("interface", iface)]),
        Some(0.0)
    );
    assert!(one("netmon_protocol_packets_total", &[("protocol", "tcp")]).is_some_and(|v| v > 0.0));
    assert!(one("netmon_attribution_coverage_ratio", &[]).is_some_and(|v| (0.0..=1.0).contains(&v)));
    // Privacy default: no remote address anywhere in the exposition.
    let text = stdout(
        &lab.host
            .exec(&format!("curl -s http://127.0.0.1:{PORT}/metrics")),
    );
    assert!(
        !text.contains(&lab.peer_ip),
        "remote address leaked:\n{text}"
    );
    assert!(!text.contains("netmon_host_bytes"), "{text}");

    // HTTP details: content type, HEAD without a body, 404 elsewhere.
    let head = stdout(
        &lab.host
            .exec(&format!("curl -sS -I http://127.0.0.1:{PORT}/metrics")),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let code = stdout(&lab.host.exec(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{PORT}/nope"
    )));
    assert_eq!(code, "404");

    // Counters never go down: not across `reset`, not across stop/start
    // (a new session), though netmond's own totals restart from zero.
    let first = scrape(&lab, &d);
    let python3 = process_bytes(&first, "python3");
    let mut high = counters(&first);
    let mut last = first;
    for step in [&["reset"][..], &["stop"], &["start"]] {
        let out = d.ctl(step);
        assert!(out.status.success(), "{step:?}: {}", stderr(&out));
        // Four ticks of scrapes after each step, each compared with the last.
        let until = Instant::now() + Duration::from_millis(4000);
        while Instant::now() < until {
            last = scrape(&lab, &d);
            // A series may pause (an interface's, while stopped), but never
            // comes back below the highest value it ever had.
            for (k, n) in counters(&last) {
                let v = high.entry(k.clone()).or_insert(n);
                assert!(n >= *v, "after {step:?}: {k} went from {v} down to {n}");
                *v = n;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let st = d.ctl_json(&["top", "--limit", "0"]);
    assert!(
        top_bytes(&st, "python3").0 < N,
        "netmond's own totals did restart: {st}"
    );
    assert_eq!(
        process_bytes(&last, "python3"),
        python3,
        "python3 sent nothing more"
    );

    // The endpoint ends with the daemon.
    let st = d.terminate();
    assert!(st.success(), "netmond exit: {st}\n{}", d.log_text());
    assert!(
        d.log_text().contains("metrics endpoint stopped"),
        "{}",
        d.log_text()
    );
}

#[test]
fn a_taken_metrics_port_is_a_start_error_naming_the_address() {
    let lab = Lab::new();
    let _d = lab.daemon(metrics_opts(""));
    // A second daemon in the same namespace cannot have the port.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("netmond.toml");
    std::fs::write(
        &cfg,
        format!("[daemon]\nautostart = false\n[metrics]\nlisten = \"127.0.0.1:{PORT}\"\n"),
    )
    .expect("config");
    let out = command("ip")
        .args(["netns", "exec", &lab.host.name])
        .arg(bin("netmond"))
        .arg("--config")
        .arg(&cfg)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--db")
        .arg(dir.path().join("db"))
        .arg("--group")
        .arg("root")
        .output()
        .expect("run netmond");
    assert!(!out.status.success(), "second daemon started");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot listen for metrics on '127.0.0.1:{PORT}'")),
        "{err}"
    );
}

#[test]
fn thousands_of_short_lived_processes_keep_series_under_the_cap() {
    const TOP: usize = 10;
    const PROCS: u32 = 5000;
    let lab = Lab::new();
    let d = lab.daemon(metrics_opts(&format!("top_processes = {TOP}\n")));
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5402"]);
    // Each subshell renames itself (a distinct process name, as thousands of
    // distinct programs would have), connects, sends a line and exits.
    let script = format!(
        "for i in $(seq {PROCS}); do (printf p%s $i > /proc/self/comm; exec 3<>/dev/tcp/{ip}/5402; echo x >&3); done 2>{err}",
        ip = lab.peer_ip,
        err = d.dir.path().join("gen.err").display()
    );
    let t0 = Instant::now();
    let mut gen = Lab::spawn_in(&lab.host, "timeout", &["300", "bash", "-c", &script]);
    // Scrape while the processes come and go, then once after.
    let mut max_series = 0;
    while t0.elapsed() < Duration::from_secs(300) {
        let s = scrape(&lab, &d);
        let n = s
            .iter()
            .filter(|x| x.0 == "netmon_process_bytes_total")
            .count();
        max_series = max_series.max(n);
        if gen.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = wait_output(gen, 60);
    assert!(out.status.success(), "generator failed: {}", stderr(&out));
    std::thread::sleep(Duration::from_millis(2500));
    let samples = scrape(&lab, &d);
    let series: Vec<&parse::Sample> = samples
        .iter()
        .filter(|x| x.0 == "netmon_process_bytes_total")
        .collect();
    max_series = max_series.max(series.len());
    let top = d.ctl_json(&["top", "--limit", "0"]);
    let names: std::collections::BTreeSet<&str> = top["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let errors = std::fs::read_to_string(d.dir.path().join("gen.err")).unwrap_or_default();
    eprintln!(
        "{PROCS} processes in {:?}: {} distinct names credited, at most {max_series} process series, {} generator errors; unattributed {}",
        t0.elapsed(),
        names.len(),
        errors.lines().count(),
        top["unattributed"]
    );
    assert!(
        names.len() > 10 * (TOP + 1),
        "the test needs many distinct names credited, got {}",
        names.len()
    );
    assert!(
        max_series <= 2 * (TOP + 1),
        "{max_series} process series with top_processes = {TOP}"
    );
    let other: BTreeMap<&str, f64> = series
        .iter()
        .filter(|x| x.1["process"] == "other")
        .map(|x| (x.1["direction"].as_str(), x.2))
        .collect();
    assert!(
        other.get("up").is_some_and(|v| *v > 0.0),
        "the long tail adds up in process=\"other\": {other:?}"
    );
}

#[test]
fn metrics_endpoint_is_off_by_default() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let out = lab.host.exec("ss -Hltn");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "",
        "nothing listens on TCP in the daemon's namespace"
    );
    assert!(!d.log_text().contains("metrics endpoint listening"));
}

/// Holds 16 connections with half a request, tries a 17th, times how long
/// the 16 are kept, then sends an oversized head and a POST; prints JSON.
const HTTP_BOUNDS_CLIENT: &str = r#"
import json, socket, sys, time
port = int(sys.argv[1]); out = {}
def conn():
    return socket.create_connection(("127.0.0.1", port), timeout=15)
def status(s):
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk: break
        data += chunk
    return data.split(b"\r\n")[0].decode(errors="replace"), data
slow = [conn() for _ in range(16)]
for s in slow: s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
time.sleep(0.5)
extra = conn(); t = time.time()
try: out["extra"] = extra.recv(4096).decode(errors="replace")
except OSError as e: out["extra"] = "error: %s" % e
out["extra_secs"] = time.time() - t
t = time.time(); closed = 0
for s in slow:
    try:
        while s.recv(4096): pass
    except OSError: pass
    closed += 1
out["slow_closed"] = closed; out["slow_secs"] = time.time() - t + 0.5
s = conn(); s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n")
out["oversized"] = status(s)[0]
s = conn(); s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
line, raw = status(s); out["post"] = line; out["post_allow"] = b"allow: get, head" in raw.lower()
s = conn(); s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
out["after"] = status(s)[0]
print(json.dumps(out), flush=True)
"#;

#[test]
fn the_endpoint_bounds_slow_oversized_and_excess_clients() {
    let lab = Lab::new();
    let d = lab.daemon(metrics_opts(""));
    wait_top(&d, 10, |_| {
        lab.host
            .exec(&format!(
                "curl -s -o /dev/null http://127.0.0.1:{PORT}/metrics"
            ))
            .status
            .success()
    });
    let out = wait_output(
        Lab::spawn_in(
            &lab.host,
            "python3",
            &["-c", HTTP_BOUNDS_CLIENT, &PORT.to_string()],
        ),
        60,
    );
    assert!(out.status.success(), "client: {}", stderr(&out));
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    println!("metrics endpoint bounds: {r}");
    // The 17th connection is closed at once, unanswered.
    assert_eq!(r["extra"], "", "{r}");
    assert!(r["extra_secs"].as_f64().is_some_and(|s| s < 2.0), "{r}");
    // Half a request is given up after the 5 s head timeout, not kept.
    assert_eq!(r["slow_closed"], 16, "{r}");
    assert!(
        r["slow_secs"]
            .as_f64()
            .is_some_and(|s| (4.0..9.0).contains(&s)),
        "{r}"
    );
    assert!(
        r["oversized"]
            .as_str()
            .is_some_and(|l| l.starts_with("HTTP/1.1 431")),
        "{r}"
    );
    assert!(
        r["post"]
            .as_str()
            .is_some_and(|l| l.starts_with("HTTP/1.1 405")),
        "{r}"
    );
    assert_eq!(r["post_allow"], true, "{r}");
    // The slots are free again.
    assert!(
        r["after"]
            .as_str()
            .is_some_and(|l| l.starts_with("HTTP/1.1 200")),
        "{r}"
    );
}
