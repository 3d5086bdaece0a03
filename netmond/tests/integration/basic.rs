//! Basic (capture-free) mode end to end: a TCP upload credited to its sender
//! from the kernel's tcp_info, `status` naming the mode and why, the automatic
//! fallback; plus `stats` and the privacy switches in capture mode. Needs root.

use std::time::{Duration, Instant};

use crate::harness::*;

/// Uploads `n` payload bytes in 20 paced chunks (so the socket lives across
/// several ticks), then closes and lingers.
const PACED_UPLOAD: &str = r#"
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
c = socket.socket(fam, socket.SOCK_STREAM); c.connect((host, port))
step = n // 20
for i in range(20):
    c.sendall(b"u" * (step if i < 19 else n - 19 * step)); time.sleep(0.1)
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
time.sleep(4)
print("done", flush=True)
"#;

fn wait_status(d: &Daemon, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = d.ctl_json(&["status"]);
        if pred(&st) || Instant::now() > deadline {
            return st;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn daemon_in(lab: &Lab, extra: &str) -> Daemon {
    Daemon::start(DaemonOpts {
        config_extra: extra.to_owned(),
        netns: Some(lab.host.name.clone()),
        autostart: true,
        exclude_netns: vec![lab.peer.name.clone()],
        ..DaemonOpts::default()
    })
}

#[test]
fn basic_mode_credits_a_tcp_upload_to_its_sender_from_tcp_info() {
    let lab = Lab::new();
    let d = daemon_in(&lab, "[capture]\nmode = \"basic\"\n");
    let st = wait_status(&d, |s| s["monitoring"] == true);
    assert_eq!(st["mode"], "basic", "{st}");
    let reason = st["mode_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("config") && reason.contains("payload"),
        "{st}"
    );

    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5401"]);
    const N: u64 = 8 * 1024 * 1024;
    let n = N.to_string();
    let up = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", PACED_UPLOAD, &lab.peer_ip, "5401", &n],
    );
    let pid = up.id();
    let top = wait_top(&d, 20, |t| {
        proc_by_pid(t, pid).is_some_and(|p| u(&p, "up_bytes") >= N)
    });
    let p = proc_by_pid(&top, pid).unwrap_or_else(|| panic!("uploader {pid} missing: {top}"));
    assert_eq!(p["name"], "python3", "{p}");
    let up_bytes = u(&p, "up_bytes");
    // tcp_info counts payload bytes (plus the SYN and FIN sequence numbers).
    assert!(
        (N..=N + N / 50).contains(&up_bytes),
        "credited {up_bytes}, generator payload {N}: {p}"
    );
    assert!(u(&p, "down_bytes") < 1024, "{p}");
    wait_output(up, 30);
    // Interface counters are the kernel's, as in /proc/net/dev (read right after).
    let ifs = d.ctl_json(&["interfaces"]);
    let dev = stdout(&lab.host.exec("cat /proc/net/dev"));
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{}:", lab.host_if)))
        .unwrap_or_else(|| panic!("{} not in /proc/net/dev: {dev}", lab.host_if));
    let cols: Vec<u64> = line
        .split_once(':')
        .map(|(_, r)| {
            r.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let row = ifs["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == lab.host_if.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("{} missing: {ifs}", lab.host_if));
    let (rx, tx) = (u(&row, "rx_bytes"), u(&row, "tx_bytes"));
    assert!(tx >= N, "{row}");
    assert!(
        cols[0].abs_diff(rx) < 4096 && cols[8].abs_diff(tx) < 4096,
        "netmond rx {rx} tx {tx}, /proc/net/dev {line}"
    );
}

#[test]
fn capture_that_cannot_start_falls_back_to_basic_mode() {
    let lab = Lab::new();
    let d = daemon_in(&lab, "[capture]\ninterfaces = [\"nmnosuch0\"]\n");
    let st = wait_status(&d, |s| s["monitoring"] == true);
    assert_eq!(st["mode"], "basic", "{st}");
    let reason = st["mode_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("capture") && reason.contains("nmnosuch0"),
        "{st}"
    );
}

#[test]
fn stats_in_capture_mode_show_packets_per_protocol_after_traffic() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5402"]);
    let up = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", PACED_UPLOAD, &lab.peer_ip, "5402", "4000000"],
    );
    // Poll: the first tick with the upload's packets may come late on a busy machine.
    let has_tcp = |s: &serde_json::Value| {
        s["protocols"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["protocol"].as_str() == Some("tcp")))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = d.ctl_json(&["stats"]);
    while !has_tcp(&s) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        s = d.ctl_json(&["stats"]);
    }
    assert_eq!(s["available"], true, "{s}");
    let tcp = s["protocols"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["protocol"].as_str() == Some("tcp")))
        .cloned()
        .unwrap_or_else(|| panic!("no tcp in {s}"));
    assert!(
        u(&tcp, "packets") > 0 && u(&tcp, "packets_per_sec") > 0,
        "{s}"
    );
    assert!(u(&s, "packets_per_sec") > 0, "{s}");
    let sized: u64 = s["sizes"]
        .as_array()
        .map(|a| a.iter().map(|b| u(b, "packets")).sum())
        .unwrap_or(0);
    assert_eq!(sized, u(&s, "packets"), "{s}");
    assert!(
        s["top_talkers"].to_string().contains(&lab.peer_ip),
        "peer among the top talkers: {s}"
    );
    let text = stdout(&d.ctl(&["stats"]));
    assert!(
        text.contains("PROTOCOL") && text.contains("TOP TALKER"),
        "{text}"
    );
    wait_output(up, 30);
}

#[test]
fn without_history_hosts_the_database_keeps_no_remote_address() {
    let lab = Lab::new();
    let mut d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n[privacy]\nhistory_hosts = false\nexport_addresses = \"hash\"\n"
            .to_owned(),
        ..DaemonOpts::default()
    });
    // An old config's export_addresses still starts the daemon, which says it does nothing.
    let log = d.log_text();
    assert!(
        log.contains("export_addresses = 'hash' has no effect"),
        "{log}"
    );
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5403"]);
    let up = Lab::spawn_in(
        &lab.host,
        "python3",
        &[
            "-c",
            gen::TCP_CLIENT,
            &lab.peer_ip,
            "5403",
            "up",
            "2000000",
            "1",
        ],
    );
    let pid = up.id();
    let top = wait_top(&d, 20, |t| {
        proc_by_pid(t, pid).is_some_and(|p| u(&p, "up_bytes") >= 2_000_000)
    });
    assert!(proc_by_pid(&top, pid).is_some(), "{top}");
    // Live views still show the peer; only history leaves it out.
    let hosts = d.ctl_json(&["hosts"]);
    assert!(hosts.to_string().contains(&lab.peer_ip), "{hosts}");
    wait_output(up, 30);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(d.terminate().success());
    let db = rusqlite::Connection::open(&d.db).expect("open the daemon's DB");
    let count = |sql: &str| -> i64 {
        db.query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    assert_eq!(count("SELECT count(*) FROM hosts"), 0);
    for t in ["host_minute", "host_hour", "host_day"] {
        assert_eq!(count(&format!("SELECT count(*) FROM {t}")), 0, "{t}");
    }
    assert!(count("SELECT count(*) FROM process_minute") > 0);
    // The generator has the address in its argv: command lines are process
    // identity and stay (README); nothing else in the file names the peer.
    let others: i64 = count(&format!(
        "SELECT count(*) FROM processes WHERE name LIKE '%{0}%' OR exe LIKE '%{0}%'",
        lab.peer_ip
    ));
    assert_eq!(others, 0);
    let argv: i64 = count(&format!(
        "SELECT count(*) FROM processes WHERE cmdline LIKE '%{}%'",
        lab.peer_ip
    ));
    assert!(argv > 0, "the generator's argv names the peer");
}
