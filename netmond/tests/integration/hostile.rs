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
