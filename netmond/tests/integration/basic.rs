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

/// `k` uploads of `n` bytes, each on its own connection that opens, sends and
/// closes within a few ms (far less than a tick), 0.3 s apart; then lingers.
const SHORT_UPLOADS: &str = r#"
import socket, sys, time
host, port, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(k):
    c = socket.create_connection((host, port)); c.sendall(b"s" * n)
    c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
    time.sleep(0.3)
time.sleep(3)
print("done", flush=True)
"#;

/// Uploads `n` bytes in 10 paced chunks, then keeps the socket open 3 s (every
/// byte is acknowledged while a tick can still see the socket), then closes.
const HELD_UPLOAD: &str = r#"
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection((host, port)); step = n // 10
for i in range(10):
    c.sendall(b"h" * (step if i < 9 else n - 9 * step)); time.sleep(0.1)
time.sleep(3)
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
print("done", flush=True)
"#;

/// Up bytes of the `reason` row of `top`'s unattributed traffic (0 when absent).
fn unattributed_up(top: &serde_json::Value, reason: &str) -> u64 {
    top["unattributed"]["reasons"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["reason"] == reason))
        .map_or(0, |r| u(r, "up_bytes"))
}

/// Up bytes credited to `pid` (0 when it has no row).
fn credited_up(top: &serde_json::Value, pid: u32) -> u64 {
    proc_by_pid(top, pid).map_or(0, |p| u(&p, "up_bytes"))
}

#[test]
fn capture_mode_refuses_to_start_monitoring_instead_of_falling_back() {
    let lab = Lab::new();
    let d = daemon_in(
        &lab,
        "[capture]\nmode = \"capture\"\ninterfaces = [\"nmnosuch1\"]\n",
    );
    // Autostart ran before the socket opened: it failed and the daemon serves.
    let st = d.ctl_json(&["status"]);
    assert_eq!(st["monitoring"], false, "{st}");
    assert_ne!(st["mode"], "basic", "{st}");
    let out = d.ctl(&["start"]);
    assert!(!out.status.success(), "start succeeded: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot start monitoring") && err.contains("nmnosuch1"),
        "{err}"
    );
    let st = d.ctl_json(&["status"]);
    assert_eq!(st["monitoring"], false, "{st}");
    let log = d.log_text();
    assert!(
        log.contains("monitoring did not start") && !log.contains("basic mode:"),
        "{log}"
    );
}

#[test]
fn stop_and_start_tries_capture_again_once_the_interface_exists() {
    let lab = Lab::new();
    let name = unique("nmlt");
    let d = daemon_in(&lab, &format!("[capture]\ninterfaces = [\"{name}\"]\n"));
    let st = wait_status(&d, |s| s["monitoring"] == true);
    assert_eq!(st["mode"], "basic", "{st}");
    let made = lab.host.exec(&format!(
        "ip link add {name} type veth peer name {name}p && ip link set {name}p up && ip link set {name} up"
    ));
    assert!(made.status.success(), "{}", stderr(&made));
    // Not retried on its own: three ticks later it is still basic mode.
    let until = Instant::now() + Duration::from_millis(3000);
    while Instant::now() < until {
        let st = d.ctl_json(&["status"]);
        assert_eq!(st["mode"], "basic", "retried on its own: {st}");
        std::thread::sleep(Duration::from_millis(250));
    }
    for cmd in ["stop", "start"] {
        let out = d.ctl(&[cmd]);
        assert!(out.status.success(), "{cmd}: {}", stderr(&out));
    }
    let st = wait_status(&d, |s| s["monitoring"] == true && s["mode"] == "capture");
    assert_eq!(st["mode"], "capture", "{st}");
    let capturing = st["interfaces"].as_array().is_some_and(|a| {
        a.iter()
            .any(|i| i["name"] == name.as_str() && i["capturing"] == true)
    });
    assert!(capturing, "{name} not captured: {st}");
}

#[test]
fn sockets_that_live_less_than_a_tick_count_as_socket_gone() {
    let lab = Lab::new();
    let d = daemon_in(&lab, "[capture]\nmode = \"basic\"\n");
    wait_status(&d, |s| s["monitoring"] == true);
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5404"]);
    const N: u64 = 256 * 1024;
    const K: u64 = 5;
    let up = Lab::spawn_in(
        &lab.host,
        "python3",
        &[
            "-c",
            SHORT_UPLOADS,
            &lab.peer_ip,
            "5404",
            &N.to_string(),
            &K.to_string(),
        ],
    );
    let pid = up.id();
    let out = wait_output(up, 30);
    assert!(stdout(&out).contains("done"), "{}", stderr(&out));
    let mut top = serde_json::Value::Null;
    let sum = settle(10, N * K, || {
        top = d.ctl_json(&["top", "--limit", "0"]);
        unattributed_up(&top, "socket_gone") + credited_up(&top, pid)
    });
    // tcp_info counts payload (plus the SYN and FIN): each byte once, wherever it went.
    assert_between(
        sum,
        N * K,
        N * K + N * K / 50,
        "short uploads, gone + credited",
    );
    // A tick may catch one of them open (it is then its owner's); not most of them.
    let gone = unattributed_up(&top, "socket_gone");
    assert!(
        gone >= N * (K - 1),
        "socket_gone {gone} of {} uploaded: {top}",
        N * K
    );
}

#[test]
fn loopback_and_udp_are_not_counted_in_basic_mode() {
    let lab = Lab::new();
    let d = daemon_in(&lab, "[capture]\nmode = \"basic\"\n");
    wait_status(&d, |s| s["monitoring"] == true);
    let _lo_srv = start_server(&lab.host, gen::TCP_SERVER, &["127.0.0.1", "5405"]);
    let _udp_sink = start_server(&lab.peer, gen::UDP_SINK, &[&lab.peer_ip, "5406"]);
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5407"]);
    const N: u64 = 2 * 1024 * 1024;
    let n = N.to_string();
    let lo = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", HELD_UPLOAD, "127.0.0.1", "5405", &n],
    );
    let udp = Lab::spawn_in(
        &lab.host,
        "python3",
        &[
            "-c",
            gen::UDP_SENDER,
            &lab.peer_ip,
            "5406",
            "2000",
            "1000",
            "3",
        ],
    );
    let remote = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", HELD_UPLOAD, &lab.peer_ip, "5407", &n],
    );
    let pids = [lo.id(), udp.id(), remote.id()];
    let mut top = serde_json::Value::Null;
    let got = settle(15, N, || {
        top = d.ctl_json(&["top", "--limit", "0"]);
        credited_up(&top, pids[2])
    });
    assert_between(got, N, N + N / 50, "remote TCP upload (control)");
    for (what, pid) in [("loopback TCP", pids[0]), ("UDP", pids[1])] {
        let p = proc_by_pid(&top, pid);
        assert!(
            p.as_ref()
                .is_none_or(|p| u(p, "up_bytes") + u(p, "down_bytes") == 0),
            "{what} sender {pid} credited: {p:?}"
        );
    }
    // Nothing else counted either (the loopback server's download included).
    let totals = &top["totals"];
    assert_between(
        u(totals, "up_bytes") + u(totals, "down_bytes"),
        N,
        N + N / 50 + 16 * 1024,
        "basic-mode totals",
    );
    for child in [lo, udp, remote] {
        let out = wait_output(child, 30);
        assert!(stdout(&out).contains("done"), "{}", stderr(&out));
    }
}

/// A preload library that refuses the multicast groups of NETLINK_SOCK_DIAG
/// (EPERM), as a kernel does where listening for TCP destroy notifications
/// needs CAP_NET_ADMIN (this one lets anyone listen, so dropping the
/// capability would not show it). Built with the system C compiler.
const NO_DESTROY_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>
#include <linux/netlink.h>
int bind(int fd, const struct sockaddr *a, socklen_t l) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (a && a->sa_family == AF_NETLINK && ((const struct sockaddr_nl *)a)->nl_groups) {
        int proto = 0; socklen_t pl = sizeof proto;
        if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) == 0 && proto == NETLINK_SOCK_DIAG) {
            errno = EPERM;
            return -1;
        }
    }
    return real(fd, a, l);
}
"#;

#[test]
fn without_destroy_notifications_status_warns_and_sub_tick_sockets_are_lost() {
    let shim_dir = tempfile::tempdir().expect("tempdir");
    let src = shim_dir.path().join("nodestroy.c");
    let so = shim_dir.path().join("nodestroy.so");
    std::fs::write(&src, NO_DESTROY_SHIM).expect("write the shim");
    let cc = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("run cc");
    assert!(cc.status.success(), "cc: {}", stderr(&cc));
    let lab = Lab::new();
    let d = Daemon::start(DaemonOpts {
        config_extra: "[capture]\nmode = \"basic\"\n".to_owned(),
        netns: Some(lab.host.name.clone()),
        autostart: true,
        exclude_netns: vec![lab.peer.name.clone()],
        env: vec![("LD_PRELOAD".to_owned(), so.display().to_string())],
        ..DaemonOpts::default()
    });
    let st = wait_status(&d, |s| s["monitoring"] == true);
    assert_eq!(st["mode"], "basic", "{st}");
    let reason = st["mode_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no TCP destroy notifications: a socket's last tick is lost"),
        "{st}"
    );
    let log = d.log_text();
    assert!(
        log.contains("WARN") && log.contains("no TCP destroy notifications"),
        "{log}"
    );

    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5408"]);
    const N: u64 = 1024 * 1024;
    let n = N.to_string();
    let held = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", HELD_UPLOAD, &lab.peer_ip, "5408", &n],
    );
    let short = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", SHORT_UPLOADS, &lab.peer_ip, "5408", "262144", "5"],
    );
    let held_pid = held.id();
    for child in [held, short] {
        let out = wait_output(child, 30);
        assert!(stdout(&out).contains("done"), "{}", stderr(&out));
    }
    let mut top = serde_json::Value::Null;
    let got = settle(10, N, || {
        top = d.ctl_json(&["top", "--limit", "0"]);
        credited_up(&top, held_pid)
    });
    // Sockets seen open across ticks still count ...
    assert_between(
        got,
        N,
        N + N / 50,
        "held upload without destroy notifications",
    );
    // ... those born and gone between two ticks leave no trace (at most one
    // of the five caught open by a tick).
    let totals = u(&top["totals"], "up_bytes");
    assert_between(totals, N, N + N / 50 + 262_144 + 4096, "totals up");
    assert_eq!(unattributed_up(&top, "socket_gone"), 0, "{top}");
}

#[test]
fn exited_processes_fold_into_program_rows_in_basic_mode() {
    const TOTAL: u64 = 200;
    let lab = Lab::new();
    let d = Daemon::start(DaemonOpts {
        config_extra: "exited_keep_secs = 2\nexited_keep_max = 1000\n\
                       [capture]\nmode = \"basic\"\n"
            .to_owned(),
        netns: Some(lab.host.name.clone()),
        autostart: true,
        tick_ms: Some(250),
        exclude_netns: vec![lab.peer.name.clone()],
        ..DaemonOpts::default()
    });
    wait_status(&d, |s| s["monitoring"] == true);
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5406"]);
    // Each child holds its socket across a few ticks: a socket that lives
    // less than a tick has no known owner in basic mode.
    named_children(&lab, "5406", TOTAL, 2, 50, ("nmcfree", 1000, 2000), 0.7, 60);
    let rows = |t: &serde_json::Value| -> Vec<serde_json::Value> {
        t["processes"].as_array().map_or_else(Vec::new, |a| {
            a.iter()
                .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("nmcfree")))
                .cloned()
                .collect()
        })
    };
    // Past the keep time (2 s) every child is in its program's row.
    let top = wait_top(&d, 30, |t| {
        let r = rows(t);
        r.iter().all(|p| u(p, "folded_processes") > 0)
            && r.iter().map(|p| u(p, "folded_processes")).sum::<u64>() >= TOTAL
    });
    let r = rows(&top);
    assert_eq!(r.len(), 2, "one row per program: {r:#?}");
    for k in 0..2u64 {
        let name = format!("nmcfree{k:02}");
        let row = r
            .iter()
            .find(|p| p["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no row for {name}: {r:#?}"));
        assert_eq!(row["pid"], 0, "{row}");
        assert_eq!(row["alive"], false, "{row}");
        let n = TOTAL / 2;
        assert_eq!(u(row, "folded_processes"), n, "{row}");
        // tcp_info counts payload plus the SYN and FIN sequence numbers.
        let payload = n * (1000 + 2000 * k);
        assert_between(
            u(row, "up_bytes"),
            payload,
            payload + 2 * n,
            &format!("{name} program row"),
        );
    }
    let st = d.ctl_json(&["status"]);
    assert_eq!(u(&st, "folded_programs"), 2, "{st}");
    assert_eq!(u(&st, "folded_processes"), TOTAL, "{st}");
    assert_eq!(u(&st, "exited_processes"), 0, "{st}");
}
