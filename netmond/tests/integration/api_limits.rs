//! The API under hostile or heavy clients: peer credentials taken at
//! connect(), HTTP/2 and request size limits, per-user caps with a clear
//! status, and design.md's client target (200 subscribers, 1,000
//! connections, 50 unread exports: ticking goes on, `status` < 200 ms).
//! Clients are Python (grpcio and raw HTTP/2 on the socket) run as
//! throw-away users.

use std::io::BufRead;
use std::time::{Duration, Instant};

use crate::grpc_clients::Client;
use crate::harness::*;

/// Helpers and modes; every mode prints one JSON document.
pub(crate) const DRIVER_PY: &str = r#"
import json, os, resource, socket, struct, sys, time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

def frame(t, f, sid, p):
    return struct.pack(">I", len(p))[1:] + bytes([t, f]) + struct.pack(">I", sid) + p

def lit(n, v):  # HPACK literal without indexing, new name, short strings
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v

def frames(s):
    buf = b""
    while True:
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            n = int.from_bytes(buf[:3], "big")
            yield buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff, buf[9:9 + n]
            buf = buf[9 + n:]
        d = s.recv(65536)
        if not d:
            return
        buf += d

def raw_call(s, method):
    """Sends one call with an empty request message on stream 1."""
    h = (lit(b":method", b"POST") + lit(b":scheme", b"http")
         + lit(b":path", b"/netmon.v1.Netmon/" + method) + lit(b":authority", b"localhost")
         + lit(b"content-type", b"application/grpc") + lit(b"te", b"trailers"))
    s.sendall(PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, h) + frame(0, 1, 1, b"\0" * 5))

def raw_get_status(s):
    """GetStatus by hand: 'ok' when a reply message comes, 'refused' for a
    trailers-only error, 'reset' when the stream or connection is reset."""
    raw_call(s, b"GetStatus")
    for t, f, sid, p in frames(s):
        if t == 4 and not f & 1:
            s.sendall(frame(4, 1, 0, b""))
        elif t == 0 and sid == 1 and len(p) > 5:
            return "ok"
        elif t == 1 and sid == 1 and f & 1:
            return "refused"
        elif t in (3, 7):
            return "reset"
    return "closed"

def connect(sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    return s

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def rpc_code(f):
    import grpc
    try:
        f()
        return {"code": "OK"}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}

mode, sock = sys.argv[1], sys.argv[2]
out = {}
if mode == "pid-gone":
    # A child connects and exits, and is reaped, before the first request is
    # sent (by its own child, on the inherited socket): the request must be
    # judged by the credentials of connect() time, the pid being gone.
    r, w = os.pipe()
    p1 = os.fork()
    if p1 == 0:
        s = connect(sock)
        me = os.getpid()
        if os.fork() == 0:
            deadline = time.time() + 5
            while os.path.exists("/proc/%d" % me) and time.time() < deadline:
                time.sleep(0.01)
            gone = not os.path.exists("/proc/%d" % me)
            os.write(w, json.dumps({"result": raw_get_status(s), "connector_gone": gone}).encode())
            os._exit(0)
        os._exit(0)
    os.waitpid(p1, 0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    out = json.loads(data)
elif mode == "settings":
    s = connect(sock)
    s.sendall(PREFACE + frame(4, 0, 0, b""))
    for t, f, sid, p in frames(s):
        if t == 4 and not f & 1:
            out = {str(int.from_bytes(p[i:i + 2], "big")): int.from_bytes(p[i + 2:i + 6], "big")
                   for i in range(0, len(p), 6)}
            break
elif mode == "big-request":
    import grpc
    ch = grpc.insecure_channel("unix://" + sock)
    call = ch.unary_unary("/netmon.v1.Netmon/GetStatus",
                          request_serializer=lambda b: b, response_deserializer=lambda b: b)
    # A valid StatusRequest: one unknown 1 MiB bytes field (15), ignored by decoders.
    big = b"\x7a\x80\x80\x40" + b"x" * (1 << 20)
    out = rpc_code(lambda: call(big, timeout=10))
elif mode == "conn-cap":
    import grpc
    raise_nofile()
    held = [connect(sock) for _ in range(int(sys.argv[3]))]
    ch = grpc.insecure_channel("unix://" + sock)
    from netmon.v1 import netmon_pb2 as pb, netmon_pb2_grpc as rpc
    out = rpc_code(lambda: rpc.NetmonStub(ch).GetStatus(pb.StatusRequest(), timeout=10))
    out["held"] = len(held)
elif mode == "sub-cap":
    import grpc
    from netmon.v1 import netmon_pb2 as pb, netmon_pb2_grpc as rpc
    n = int(sys.argv[3])
    stubs = [rpc.NetmonStub(grpc.insecure_channel("unix://" + sock,
             options=[("grpc.use_local_subchannel_pool", 1)])) for _ in range(n // 30 + 2)]
    streams = []
    for i in range(n):
        st = stubs[i // 30].Subscribe(pb.SubscribeRequest(every_ticks=1000))
        next(st)  # the first frame comes at once: the stream is established
        streams.append(st)
    extra = stubs[-1].Subscribe(pb.SubscribeRequest(every_ticks=1000))
    out = rpc_code(lambda: next(extra))
    out["held"] = len(streams)
elif mode == "load":
    # argv: total connections, subscribers, unread exports (one connection each).
    import grpc
    from netmon.v1 import netmon_pb2 as pb, netmon_pb2_grpc as rpc
    raise_nofile()
    total, subs, exports = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    channels = subs // 30 + 1
    held = [connect(sock) for _ in range(total - channels - exports)]
    stubs = [rpc.NetmonStub(grpc.insecure_channel("unix://" + sock,
             options=[("grpc.use_local_subchannel_pool", 1)])) for _ in range(channels)]
    streams = []
    for i in range(subs):
        st = stubs[i // 30].Subscribe(pb.SubscribeRequest(every_ticks=1), timeout=600)
        next(st)
        streams.append(st)  # never read again: slow subscribers
    for i in range(exports):
        # Raw HTTP/2, so nothing reads on our behalf: after the first rows
        # neither the socket is read nor a WINDOW_UPDATE sent, ever.
        s = connect(sock)
        s.settimeout(20)
        raw_call(s, b"Export")
        for t, f, sid, p in frames(s):
            if t == 0 and sid == 1:
                break
            if sid == 1 and f & 1:
                sys.exit("export %d ended without rows" % i)
        held.append(s)
        streams.append(s)
    print(json.dumps({"ready": True, "connections": len(held) + channels, "streams": len(streams)}), flush=True)
    sys.stdin.read()  # hold everything until the test closes stdin
    sys.exit(0)
print(json.dumps(out))
"#;

pub(crate) fn client_with_member(d: &Daemon) -> (Client, TempUser) {
    (Client::new(), TempUser::new(&[d.group.name()]))
}

pub(crate) fn sock(d: &Daemon) -> String {
    d.socket.display().to_string()
}

#[test]
fn group_membership_is_taken_when_the_connection_is_accepted() {
    // Fails with /proc/<pid>/status read at request time: the connecting
    // process is gone by then (and its pid could be anyone's).
    let d = Daemon::start(DaemonOpts::default());
    let (client, member) = client_with_member(&d);
    // The group is only a supplementary one of the user (its primary group
    // is its own), the case SO_PEERCRED alone cannot see.
    let v = client.run_script(&member, DRIVER_PY, &["pid-gone", &sock(&d)], 30);
    assert_eq!(v["connector_gone"], true, "{v}");
    assert_eq!(v["result"], "ok", "{v}\n{}", d.log_text());
}

#[test]
fn http2_stream_cap_is_advertised() {
    // Fails without an explicit cap: tonic sends no SETTINGS_MAX_CONCURRENT_STREAMS.
    let d = Daemon::start(DaemonOpts::default());
    let (client, member) = client_with_member(&d);
    let v = client.run_script(&member, DRIVER_PY, &["settings", &sock(&d)], 30);
    let max_streams = v["3"].as_u64();
    assert!(
        max_streams.is_some_and(|n| (1..=64).contains(&n)),
        "SETTINGS_MAX_CONCURRENT_STREAMS: {v}"
    );
}

#[test]
fn large_request_is_refused_before_it_is_decoded() {
    // Fails with the old 64 MiB decode limit: the 1 MiB request is served.
    let d = Daemon::start(DaemonOpts::default());
    let (client, member) = client_with_member(&d);
    let v = client.run_script(&member, DRIVER_PY, &["big-request", &sock(&d)], 30);
    // tonic's code for an oversized message; the text names the limit.
    assert_eq!(v["code"], "OUT_OF_RANGE", "{v}");
    assert!(
        v["details"]
            .as_str()
            .unwrap_or_default()
            .contains("the limit is: 65536 bytes"),
        "{v}"
    );
    assert_eq!(
        d.ctl_json(&["status"])["version"],
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn per_user_connection_cap_gives_a_clear_status_and_root_still_gets_in() {
    // Fails without a cap: the call after 1,024 held connections is served.
    let d = Daemon::start(DaemonOpts::default());
    let (client, member) = client_with_member(&d);
    let v = client.run_script(&member, DRIVER_PY, &["conn-cap", &sock(&d), "1024"], 60);
    assert_eq!(v["held"], 1024);
    assert_eq!(v["code"], "RESOURCE_EXHAUSTED", "{v}");
    let details = v["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("too many connections from uid") && details.contains("limit 1024"),
        "{details}"
    );
    assert_eq!(
        d.ctl_json(&["status"])["version"],
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn per_user_subscriber_cap_gives_a_clear_status() {
    // Fails without a cap: the 257th Subscribe stream is served.
    let d = Daemon::start(DaemonOpts {
        tick_ms: Some(200),
        ..Default::default()
    });
    let (client, member) = client_with_member(&d);
    let v = client.run_script(&member, DRIVER_PY, &["sub-cap", &sock(&d), "256"], 90);
    assert_eq!(v["held"], 256);
    assert_eq!(v["code"], "RESOURCE_EXHAUSTED", "{v}");
    assert!(
        v["details"]
            .as_str()
            .unwrap_or_default()
            .contains("too many Subscribe streams from uid"),
        "{v}"
    );
    assert_eq!(d.ctl_json(&["status"])["subscribers"], 256);
}

/// `rows` per-minute samples for 10 processes in the daemon's history.
pub(crate) fn fill_history(db: &std::path::Path, minutes: i64) {
    // The store creates its schema on its own thread: wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let conn = loop {
        let ready =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
                .ok()
                .filter(|c| {
                    c.query_row("SELECT count(*) FROM process_minute", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .is_ok()
                });
        if let Some(c) = ready {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "netmond created no history DB at '{}'",
            db.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    conn.busy_timeout(Duration::from_secs(10))
        .expect("history fixture");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("history fixture")
        .as_millis() as i64;
    let start = (now - minutes * 60_000) / 60_000 * 60_000;
    conn.execute_batch("BEGIN").expect("history fixture");
    for p in 0..10i64 {
        conn.execute(
            "INSERT INTO processes (id, pid, start_time, name, exe, cmdline, uid, user, unit, first_seen_ms)
             VALUES (?1, ?2, 1, ?3, '/usr/bin/x', 'x', 0, 'root', '', ?4)",
            rusqlite::params![1_000_000 + p, 40_000 + p, format!("hist{p}"), start],
        )
        .expect("history fixture");
        for m in 0..minutes {
            conn.execute(
                "INSERT INTO process_minute (ts_ms, proc_id, up_bytes, down_bytes, peak_up_bps, peak_down_bps)
                 VALUES (?1, ?2, 6000, 6000, 100, 100)",
                rusqlite::params![start + m * 60_000, 1_000_000 + p],
            )
            .expect("history fixture");
        }
    }
    conn.execute_batch("COMMIT").expect("history fixture");
}

/// User + system CPU time of `pid` in ms.
fn cpu_ms(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10
}

fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("netmond status");
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn threads_of(pid: u32) -> u64 {
    status_field(pid, "Threads:")
        .parse()
        .expect("Threads: is a number")
}

#[test]
fn client_load_target_ticking_goes_on_and_status_stays_fast() {
    // design.md: 200 subscribers, 1,000 connections and 50 unread exports at
    // once. Fails before the export rework on the thread count (each unread
    // export pinned a blocking thread; ~512 of them stopped the tick).
    let d = Daemon::start(DaemonOpts {
        tick_ms: None,
        ..Default::default()
    });
    fill_history(&d.db, 1000);
    let idle = status_latencies(&d, 10);
    let (client, member) = client_with_member(&d);
    std::fs::write(client.dir.path().join("script.py"), DRIVER_PY).unwrap();
    let mut load = member
        .command(&client.python)
        .current_dir(client.dir.path())
        .args(["script.py", "load", &sock(&d), "1000", "200", "50"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the load");
    let load_pid = load.id();
    let load_out = load.stdout.take().expect("load stdout");
    let _load = ChildGuard(load);
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(load_out).lines();
        let _ = tx.send(lines.next());
    });
    let ready = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(Ok(l))) => l,
        other => panic!("the load did not get ready: {other:?}\n{}", d.log_text()),
    };
    let set_up = started.elapsed();
    let v: serde_json::Value = serde_json::from_str(&ready)
        .unwrap_or_else(|e| panic!("load: {e}: {ready}\n{}", d.log_text()));
    assert_eq!(v["connections"], 1000, "{v}");
    assert_eq!(v["streams"], 250, "{v}");

    let threads = threads_of(d.pid());
    let rss = status_field(d.pid(), "VmRSS:");
    let cpu0 = (cpu_ms(d.pid()), cpu_ms(load_pid));
    let window = Instant::now();
    let under_load = status_latencies(&d, 20);
    let cpu = (
        cpu_ms(d.pid()) - cpu0.0,
        cpu_ms(load_pid) - cpu0.1,
        window.elapsed().as_millis(),
    );
    // Ticking goes on: a fresh subscriber sees frames with rising seq.
    let mut watch = std::process::Command::new(bin("netmonctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--json", "watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    let watch_out = watch.stdout.take().expect("watch stdout");
    let _watch = ChildGuard(watch);
    let mut wl = std::io::BufReader::new(watch_out).lines();
    let t = Instant::now();
    let mut seqs = Vec::new();
    while seqs.len() < 4 && t.elapsed() < Duration::from_secs(20) {
        let Some(Ok(l)) = wl.next() else { break };
        let f: serde_json::Value = serde_json::from_str(&l).expect("watch JSON");
        seqs.push(f["seq"].as_u64().expect("seq"));
    }
    eprintln!(
        "load: set up in {set_up:?}; netmond threads {threads}, RSS {rss}; status (connect + GetStatus, ms) idle {idle:?}, under load {under_load:?}; CPU ms netmond/load client/wall {cpu:?}; fresh subscriber seqs {seqs:?} in {:?}",
        t.elapsed()
    );
    assert_eq!(
        seqs.len(),
        4,
        "ticking stopped under load: {seqs:?}\n{}",
        d.log_text()
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let median = under_load[under_load.len() / 2];
    let worst = under_load[under_load.len() - 1];
    // The median is the target; the worst case allows for the two cores
    // this runs on being shared with other work.
    assert!(
        median < 200 && worst < 1000,
        "status under load: median {median} ms, worst {worst} ms (idle {idle:?})"
    );
    assert!(
        threads < 50,
        "{threads} threads: unread exports must not each hold one"
    );
}

/// Milliseconds for `n` fresh connections each making one GetStatus call
/// (what `netmonctl status` does, without its process start), sorted.
pub(crate) fn status_latencies(d: &Daemon, n: usize) -> Vec<u128> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut v: Vec<u128> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let mut c = netmon_proto::connect(&d.socket).await.expect("connect");
            c.get_status(netmon_proto::v1::StatusRequest {})
                .await
                .expect("status");
            v.push(t.elapsed().as_millis());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        v
    });
    v.sort_unstable();
    v
}
