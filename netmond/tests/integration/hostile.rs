//! Hostile input in the lab: frames whose IP headers lie about their length,
//! processes with names that are not UTF-8, and command lines of a megabyte.
//! Ground truth comes from the generators (frame sizes, bytes sent).

use std::time::{Duration, Instant};

use crate::harness::*;

/// Sends `count` frames from the namespace's one non-loopback interface
/// through a raw AF_PACKET socket: UDP from `src` to `dst` whose IP header
/// claims 65,535 bytes. Prints the frame's real length.
const FORGED_FRAMES: &str = r#"
import socket, struct, sys, time
count, ver, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ifname = [n for _, n in socket.if_nameindex() if n != "lo"][0]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
eth = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01"
udp = struct.pack("!HHHH", 40000, 9, 18, 0) + b"x" * 10
if ver == "4":
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 65535, 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    frame = eth + b"\x08\x00" + ip + udp
else:
    ip = struct.pack("!IHBB16s16s", 0x60000000, 65535, 17, 64,
                     socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst))
    frame = eth + b"\x86\xdd" + ip + udp
frame = frame.ljust(60, b"\0")
for i in range(count):
    s.send(frame)
    if i % 200 == 0: time.sleep(0.002)
print(len(frame), flush=True)
"#;

/// The lab interface's capture counters from `status --json`.
fn capture_counters(d: &Daemon, iface: &str) -> (u64, u64, u64) {
    let st = d.ctl_json(&["status"]);
    let i = st["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == iface))
        .unwrap_or_else(|| panic!("{iface} missing: {st}"));
    let c = &i["capture"];
    (
        u(c, "packets_counted"),
        u(c, "bytes_counted"),
        u(c, "packets_malformed"),
    )
}

#[test]
fn forged_ip_lengths_count_the_frame_and_are_reported_malformed() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    const N: u64 = 2000;
    let (p0, b0, m0) = capture_counters(&d, &lab.host_if);
    let totals0 = d.ctl_json(&["top", "--limit", "0"])["totals"].clone();
    let mut real = 0u64;
    for (ver, src, dst, link) in [
        ("4", &lab.peer_ip, &lab.host_ip, 14),
        ("6", &lab.peer_ip6, &lab.host_ip6, 14),
    ] {
        let child = Lab::spawn_in(
            &lab.peer,
            "python3",
            &["-c", FORGED_FRAMES, &N.to_string(), ver, src, dst],
        );
        let out = wait_output(child, 30);
        assert!(out.status.success(), "sender: {}", stderr(&out));
        let frame_len: u64 = stdout(&out).trim().parse().expect("frame length");
        real += N * (frame_len - link);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let (p, b, m) = loop {
        let c = capture_counters(&d, &lab.host_if);
        if c.0 >= p0 + 2 * N || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(p >= p0 + 2 * N, "frames counted: {} of {}", p - p0, 2 * N);
    // Other lab traffic (neighbour discovery) is a few hundred bytes.
    let hi = real + 16 * 1024;
    assert!(
        (real..=hi).contains(&(b - b0)),
        "captured {} bytes for frames carrying {real} (allowed {real}..={hi}); \
         believing the headers would give {}",
        b - b0,
        2 * N * 65_535
    );
    assert!(
        (2 * N..=2 * N + 100).contains(&(m - m0)),
        "malformed grew by {}, want the {} lies",
        m - m0,
        2 * N
    );
    eprintln!(
        "forged frames: {} bytes counted for {real} carried, malformed +{}",
        b - b0,
        m - m0
    );
    let st = d.ctl_json(&["status"]);
    assert!(u(&st, "packets_malformed") >= 2 * N, "status: {st}");
    // The per-tick totals use the same bytes.
    let down0 = u(&totals0, "down_bytes");
    let top = wait_top(&d, 10, |t| u(&t["totals"], "down_bytes") >= down0 + real);
    let down = u(&top["totals"], "down_bytes") - down0;
    assert!(
        down <= hi,
        "totals grew by {down} for {real} real bytes: {}",
        top["totals"]
    );
}

/// Names itself `nmx\xff\xfe` through /proc/self/comm, then sends `n` bytes
/// over TCP and lingers so it is alive when checked.
const ODD_NAME_CLIENT: &str = r#"
import socket, sys, time
with open("/proc/self/comm", "wb") as f: f.write(b"nmx\xff\xfe")
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection((host, port)); chunk = b"u" * 65536; left = n
while left > 0: left -= c.send(chunk[:min(left, 65536)])
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
print("done", flush=True)
time.sleep(6)
"#;

#[test]
fn process_with_a_non_utf8_name_is_credited_and_named_lossily() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5301"]);
    const N: u64 = 4 * 1024 * 1024;
    let client = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", ODD_NAME_CLIENT, &lab.peer_ip, "5301", &N.to_string()],
    );
    let _guard = ChildGuard(client);
    let pid = _guard.0.id();
    let top = wait_top(&d, 20, |t| {
        proc_by_pid(t, pid).is_some_and(|p| u(&p, "up_bytes") >= N)
    });
    let p = proc_by_pid(&top, pid).unwrap_or_else(|| {
        panic!(
            "pid {pid} never credited: {top}\n{}",
            d.ctl_json(&["status"])
        )
    });
    let up = u(&p, "up_bytes");
    let hi = tcp_credit_hi(N);
    assert!((N..=hi).contains(&up), "credited {up} of {N}: {p}");
    eprintln!("odd name: credited {up} of {N} as {}", p["name"]);
    assert_eq!(p["name"], "nmx\u{fffd}\u{fffd}", "{p}");
}

#[test]
fn megabyte_command_line_is_capped_and_marked_cut() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5302"]);
    const N: u64 = 1024 * 1024;
    // One argument may be at most 128 KiB (MAX_ARG_STRLEN): ten of 100 KiB.
    let big = "A".repeat(100 * 1024);
    let n = N.to_string();
    let mut args = vec!["-c", gen::TCP_CLIENT, &lab.peer_ip, "5302", "up", &n, "6"];
    args.extend(std::iter::repeat_n(big.as_str(), 10));
    let _client = ChildGuard(Lab::spawn_in(&lab.host, "python3", &args));
    let pid = _client.0.id();
    // Empty while `ip netns exec` execs the program: poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    let argv_len = loop {
        let n = std::fs::read(format!("/proc/{pid}/cmdline")).map_or(0, |b| b.len());
        if n > 1_000_000 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(argv_len > 1_000_000, "argv is {argv_len} bytes");
    wait_top(&d, 20, |t| {
        proc_by_pid(t, pid).is_some_and(|p| u(&p, "up_bytes") >= N)
    });
    let out = d.ctl(&["--json", "top", "--limit", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reply = out.stdout.len();
    assert!(
        reply < 32 * 1024,
        "top --json is {reply} bytes for a {argv_len}-byte argv"
    );
    let top: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let p = proc_by_pid(&top, pid).unwrap_or_else(|| panic!("pid {pid} missing: {top}"));
    let cmdline = p["cmdline"].as_str().unwrap_or_default();
    // argv[0] may be a full path (a pyenv shim execs the real python).
    let head: String = cmdline.chars().take(80).collect();
    assert!(
        (1024..=4096).contains(&cmdline.len()) && head.contains("python") && head.contains(" -c "),
        "cmdline of {} bytes: {head:?}",
        cmdline.len()
    );
    assert_eq!(p["cmdline_truncated"], true, "{}", p["name"]);
    eprintln!(
        "megabyte argv: top --json {reply} bytes, cmdline {} bytes",
        cmdline.len()
    );
    // Every flow's row carries the process: the listing stays small too.
    let conns = d.ctl(&["--json", "connections"]);
    assert!(
        conns.stdout.len() < 64 * 1024,
        "connections --json is {} bytes",
        conns.stdout.len()
    );
}

#[test]
fn a_newline_in_a_client_supplied_name_cannot_forge_a_log_line() {
    let d = Daemon::start(DaemonOpts::default());
    let name = "evil\nFORGED netmond: all good\x1b[2J";
    // Refused outright: no process is called that, and a rule name reaches
    // the log, the hook and every client's table.
    let out = d.ctl(&["threshold", "set", "1MiB/s", "--process", name]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("control characters"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains('\x1b'), "{}", stderr(&out));
    // A name that is only odd is kept and logged as it is.
    let out = d.ctl(&["threshold", "set", "1MiB/s", "--process", "odd name (x)"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = d.log_text();
        if log.contains("threshold set") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(log.contains("odd name (x)"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")) && !log.contains('\x1b'),
        "{log}"
    );
}
