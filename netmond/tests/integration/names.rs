//! Passive host names in the lab: a DNS responder in the peer namespace
//! answers a name (through a CNAME), a client resolves it and connects, and a
//! TLS ClientHello carries an SNI; `hosts` and `connections` show the names.

use std::time::{Duration, Instant};

use crate::harness::*;

/// Answers A queries for `files.example.test` with a CNAME to
/// `edge.example.test` and the address in argv[2]; NXDOMAIN otherwise.
const DNS_RESPONDER: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53)); answer = socket.inet_aton(sys.argv[2])
def labels(n): return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    qid = q[:2]; end = q.index(b"\0", 12) + 5; question = q[12:end]
    name = []; i = 12
    while q[i]: name.append(q[i+1:i+1+q[i]].decode()); i += 1 + q[i]
    if ".".join(name).lower() != "files.example.test":
        s.sendto(qid + b"\x81\x83" + b"\0\x01\0\0\0\0\0\0" + question, peer); continue
    cname = labels("edge.example.test")
    rr1 = b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 30, len(cname)) + cname
    rr2 = labels("edge.example.test") + struct.pack(">HHIH", 1, 1, 30, 4) + answer
    s.sendto(qid + b"\x81\x80" + b"\0\x01\0\x02\0\0\0\0" + question + rr1 + rr2, peer)
"#;

/// Resolves argv[2] at the DNS server argv[1], connects to the answer on
/// port argv[3], says "connected" and holds the connection for argv[4] s.
const RESOLVE_AND_CONNECT: &str = r#"
import socket, struct, sys, time
server, name, port, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
q = b"\x12\x34\x01\x00\0\x01\0\0\0\0\0\0" + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\x01\0\x01"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(q, (server, 53)); r, _ = u.recvfrom(512)
assert r[3] & 0xf == 0, "lookup failed"
addr = socket.inet_ntoa(r[-4:])
c = socket.create_connection((addr, port), timeout=5)
print("connected", addr, flush=True)
time.sleep(hold); c.close()
"#;

/// Accepts connections and closes them after the first read.
const ACCEPT_AND_CLOSE: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.settimeout(2)
    try: c.recv(4096)
    except OSError: pass
    c.close()
"#;

/// Starts a TLS handshake with SNI argv[3] to argv[1]:argv[2]; the server
/// hangs up, which is fine: the ClientHello has been sent.
const TLS_HELLO: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
try: ctx.wrap_socket(raw, server_hostname=sys.argv[3])
except (ssl.SSLError, OSError): pass
print("done", flush=True)
"#;

/// Sends one HTTP/1.1 request with Host argv[3] to argv[1]:argv[2].
const HTTP_GET: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
c.sendall(b"GET / HTTP/1.1\r\nHost: %s:8080\r\nAccept: */*\r\n\r\n" % sys.argv[3].encode())
try: c.recv(100)
except OSError: pass
print("done", flush=True)
"#;

fn host_row(d: &Daemon, addr: &str) -> Option<serde_json::Value> {
    d.ctl_json(&["hosts"])["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["address"] == addr)
        .cloned()
}

/// Resolves `files.example.test` at the peer's responder from the host and
/// connects to the answer on port 5401, holding it `hold` seconds.
fn resolve_and_connect(lab: &Lab, hold: &str) -> std::process::Child {
    Lab::spawn_in(
        &lab.host,
        "python3",
        &[
            "-c",
            RESOLVE_AND_CONNECT,
            &lab.peer_ip,
            "files.example.test",
            "5401",
            hold,
        ],
    )
}

fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn dns_answer_names_host_and_connection_and_host_header_then_sni_name_another() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let _dns = start_server(&lab.peer, DNS_RESPONDER, &[&lab.peer_ip, &lab.peer_ip]);
    let _tcp = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5401"]);
    let _tls = start_server(&lab.peer, ACCEPT_AND_CLOSE, &[&lab.peer_ip6, "5443"]);

    let client = resolve_and_connect(&lab, "8");
    let named = wait_for(15, || {
        host_row(&d, &lab.peer_ip).filter(|h| h["name"] == "files.example.test")
    });
    assert!(
        named.is_some(),
        "host {} never named: {}\n{}",
        lab.peer_ip,
        d.ctl_json(&["hosts"]),
        d.log_text()
    );
    let conn = wait_for(5, || {
        d.ctl_json(&["connections"])["connections"]
            .as_array()?
            .iter()
            .find(|c| c["remote_addr"] == lab.peer_ip.as_str() && c["remote_port"] == 5401)
            .cloned()
    })
    .unwrap_or_else(|| {
        panic!(
            "connection to port 5401 missing: {}",
            d.ctl_json(&["connections"])
        )
    });
    assert_eq!(conn["remote_name"], "files.example.test", "{conn}");
    let out = wait_output(client, 30);
    assert!(stdout(&out).contains("connected"), "{}", stderr(&out));

    // An HTTP request's Host header names the v6 peer; a later ClientHello
    // to it renames it (the newest passive name wins).
    let get = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", HTTP_GET, &lab.peer_ip6, "5443", "http.example.test"],
    );
    let out = wait_output(get, 20);
    assert!(stdout(&out).contains("done"), "{}", stderr(&out));
    let named = wait_for(10, || {
        host_row(&d, &lab.peer_ip6).filter(|h| h["name"] == "http.example.test")
    });
    assert!(
        named.is_some(),
        "Host header never named {}: {}",
        lab.peer_ip6,
        d.ctl_json(&["hosts"])
    );

    let hello = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", TLS_HELLO, &lab.peer_ip6, "5443", "sni.example.test"],
    );
    let out = wait_output(hello, 20);
    assert!(stdout(&out).contains("done"), "{}", stderr(&out));
    let named = wait_for(10, || {
        host_row(&d, &lab.peer_ip6).filter(|h| h["name"] == "sni.example.test")
    });
    assert!(
        named.is_some(),
        "SNI never named {}: {}",
        lab.peer_ip6,
        d.ctl_json(&["hosts"])
    );
    // The DNS-learned name of the other address is untouched.
    let v4 = host_row(&d, &lab.peer_ip).expect("v4 host row");
    assert_eq!(v4["name"], "files.example.test", "{v4}");
}

/// Checks the host row of `ip` at every read for 2.5 s (two ticks and
/// more), not once at the end: a name that comes and goes is caught too.
fn hold_for(d: &Daemon, ip: &str, check: impl Fn(&serde_json::Value)) {
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        if let Some(row) = host_row(d, ip) {
            check(&row);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn names_can_be_turned_off() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts {
        config_extra: "[names]\nenabled = false\n".into(),
        ..Default::default()
    });
    let _tls = start_server(&lab.peer, ACCEPT_AND_CLOSE, &[&lab.peer_ip, "5443"]);
    let hello = Lab::spawn_in(
        &lab.host,
        "python3",
        &["-c", TLS_HELLO, &lab.peer_ip, "5443", "sni.example.test"],
    );
    wait_output(hello, 20);
    wait_for(10, || host_row(&d, &lab.peer_ip)).expect("host row");
    hold_for(&d, &lab.peer_ip, |row| {
        assert!(row["name"].is_null(), "{row}");
    });
}

/// Sends `count` unsolicited DNS answers from port 53 to argv[1] (ports
/// 40000 + i, ids i): "bank.example.test is at argv[2]".
const FORGED_ANSWERS: &str = r#"
import socket, struct, sys
dst, addr, count = sys.argv[1], socket.inet_aton(sys.argv[2]), int(sys.argv[3])
name = b"".join(bytes([len(l)]) + l.encode() for l in "bank.example.test".split(".")) + b"\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[4], 53))
for i in range(count):
    m = struct.pack(">HHHHHH", i, 0x8180, 1, 1, 0, 0) + name + b"\0\x01\0\x01"
    m += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 3600, 4) + addr
    s.sendto(m, (dst, 40000 + i))
print("done", flush=True)
"#;

#[test]
fn forged_dns_answers_do_not_name_hosts() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let forged = Lab::spawn_in(
        &lab.peer,
        "python3",
        &[
            "-c",
            FORGED_ANSWERS,
            &lab.host_ip,
            &lab.peer_ip,
            "50",
            &lab.peer_ip,
        ],
    );
    let out = wait_output(forged, 20);
    assert!(stdout(&out).contains("done"), "{}", stderr(&out));
    // Traffic to the address the forgeries named, without any lookup.
    let _tcp = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5401"]);
    let client = Lab::spawn_in(
        &lab.host,
        "python3",
        &[
            "-c",
            gen::TCP_CLIENT,
            &lab.peer_ip,
            "5401",
            "up",
            "1000",
            "3",
        ],
    );
    wait_for(10, || host_row(&d, &lab.peer_ip)).expect("host row");
    hold_for(&d, &lab.peer_ip, |row| {
        assert_ne!(row["name"], "bank.example.test", "{row}");
    });
    wait_output(client, 20);
    // The name capture was listening all along: a lookup this host makes is believed.
    let _dns = start_server(&lab.peer, DNS_RESPONDER, &[&lab.peer_ip, &lab.peer_ip]);
    let client = resolve_and_connect(&lab, "3");
    let named = wait_for(15, || {
        host_row(&d, &lab.peer_ip).filter(|h| h["name"] == "files.example.test")
    });
    assert!(named.is_some(), "{}", d.ctl_json(&["hosts"]));
    wait_output(client, 20);
}
