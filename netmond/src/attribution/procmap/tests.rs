//! Root tests of the resolver against real sockets of this test process and of short
//! children. They need root (proc connector, other processes' fds) and say so.

use super::*;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;

fn need_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (proc connector, /proc/<pid>/fd of other processes); run it as root like CI does");
    }
}

fn start() -> (Resolver, ResolverHandle, Answers) {
    need_root();
    Resolver::start(ResolverConfig::default()).expect("resolver starts")
}

fn wait_for(rx: &Answers, q: SocketQuery) -> Resolution {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = rx.recv_timeout(left).expect("an answer within 5 s");
        if r.query == q {
            return r;
        }
    }
}

fn resolve(h: &ResolverHandle, rx: &Answers, q: SocketQuery) -> Resolution {
    // Another test of this binary may fork (to run bash, a hook, `ip`) while
    // our sockets are open: until the child execs, it holds copies of them
    // and is as much their owner as we are. Ask again once it has exec'd.
    let me = std::process::id();
    let my_exe = std::fs::read_link("/proc/self/exe").ok();
    for _ in 0..50 {
        assert!(h.submit(q, Priority::High), "queue accepted the query");
        let r = wait_for(rx, q);
        let forked_copy = r
            .owner
            .as_ref()
            .is_ok_and(|o| o.pid != me && my_exe.as_deref() == Some(std::path::Path::new(&o.exe)));
        if !forked_copy {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(h.submit(q, Priority::High), "queue accepted the query");
    wait_for(rx, q)
}

fn tcp(local: SocketAddr, remote: SocketAddr) -> SocketQuery {
    SocketQuery {
        proto: 6,
        local,
        remote,
    }
}
fn udp(local: SocketAddr, remote: SocketAddr) -> SocketQuery {
    SocketQuery {
        proto: 17,
        local,
        remote,
    }
}

fn my_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_string()
}

/// The socket inode behind one of our descriptors.
fn inode_of(fd: &impl AsRawFd) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    fdindex::parse_socket_link(link.as_os_str().as_encoded_bytes()).unwrap()
}

/// This process owns the flow, through exactly the socket `sock`.
#[track_caller]
fn assert_mine(r: &Resolution, sock: &impl AsRawFd) {
    assert_me(r);
    assert_eq!(
        r.inode,
        inode_of(sock),
        "the lookup found another socket: {r:?}"
    );
}

#[track_caller]
fn assert_me(r: &Resolution) {
    let info = r
        .owner
        .as_ref()
        .unwrap_or_else(|e| panic!("{:?} unattributed: {}", r.query, e.as_str()));
    assert_eq!(info.pid, std::process::id(), "{r:?}");
    assert_eq!(info.name, my_comm());
    assert_eq!(info.uid, 0);
    assert_eq!(info.user, "root");
    assert!(r.inode != 0);
    assert_eq!(r.uid, Some(0));
    assert!(info.exe.contains("netmond"), "{}", info.exe);
    assert!(info.started_ms > 1_600_000_000_000);
    assert!(info.netns != 0);
}

fn tcp_both_sides(bind: &str) {
    let (res, h, rx) = start();
    let l = TcpListener::bind(bind).unwrap();
    let la = l.local_addr().unwrap();
    let c = TcpStream::connect(la).unwrap();
    let (s, peer) = l.accept().unwrap();
    assert_mine(&resolve(&h, &rx, tcp(c.local_addr().unwrap(), la)), &c);
    assert_mine(&resolve(&h, &rx, tcp(s.local_addr().unwrap(), peer)), &s);
    // An inbound connection nobody accepted yet belongs to the listener's owner.
    let c2 = TcpStream::connect(la).unwrap();
    let r = resolve(&h, &rx, tcp(la, c2.local_addr().unwrap()));
    assert_mine(&r, &l);
    assert!(h.stats().via_listener >= 1, "{:?}", h.stats());
    res.stop();
}

#[test]
fn tcp_v4_client_server_and_unaccepted_are_this_process() {
    tcp_both_sides("127.0.0.1:0");
}

#[test]
fn tcp_v6_client_server_and_unaccepted_are_this_process() {
    tcp_both_sides("[::1]:0");
}

#[test]
fn tcp_v4_flow_on_dual_stack_listener_is_this_process() {
    let (res, h, rx) = start();
    let l = TcpListener::bind("[::]:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let la: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = TcpStream::connect(la).unwrap();
    let (s, peer) = l.accept().unwrap();
    // The capture sees plain IPv4 on both sides.
    let peer4 = match peer {
        SocketAddr::V6(v6) => {
            SocketAddr::new(IpAddr::V4(v6.ip().to_ipv4_mapped().unwrap()), v6.port())
        }
        v4 => v4,
    };
    assert_mine(&resolve(&h, &rx, tcp(la, peer4)), &s);
    assert_mine(&resolve(&h, &rx, tcp(c.local_addr().unwrap(), la)), &c);
    res.stop();
}

fn udp_cases(any: &str, lo: &str) {
    let (res, h, rx) = start();
    let a = UdpSocket::bind(format!("{lo}:0")).unwrap();
    let b = UdpSocket::bind(format!("{lo}:0")).unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    a.send(b"x").unwrap();
    // Connected socket.
    assert_mine(
        &resolve(
            &h,
            &rx,
            udp(a.local_addr().unwrap(), b.local_addr().unwrap()),
        ),
        &a,
    );
    // Unconnected receiver: its remote end is a wildcard.
    assert_mine(
        &resolve(
            &h,
            &rx,
            udp(b.local_addr().unwrap(), a.local_addr().unwrap()),
        ),
        &b,
    );
    // Unconnected sender bound to the wildcard address, using sendto.
    let w = UdpSocket::bind(format!("{any}:0")).unwrap();
    w.send_to(b"y", b.local_addr().unwrap()).unwrap();
    let wport = w.local_addr().unwrap().port();
    let wl: SocketAddr = SocketAddr::new(b.local_addr().unwrap().ip(), wport);
    assert_mine(&resolve(&h, &rx, udp(wl, b.local_addr().unwrap())), &w);
    res.stop();
}

#[test]
fn udp_v4_connected_and_unconnected_sendto_are_this_process() {
    udp_cases("0.0.0.0", "127.0.0.1");
}

#[test]
fn udp_v6_connected_and_unconnected_sendto_are_this_process() {
    udp_cases("[::]", "[::1]");
}

#[test]
fn udp_v4_flow_on_dual_stack_socket_is_this_process() {
    let (res, h, rx) = start();
    let d = UdpSocket::bind("[::]:0").unwrap();
    let port = d.local_addr().unwrap().port();
    let dl: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.send_to(b"z", dl).unwrap();
    assert_mine(&resolve(&h, &rx, udp(dl, c.local_addr().unwrap())), &d);
    assert_mine(&resolve(&h, &rx, udp(c.local_addr().unwrap(), dl)), &c);
    res.stop();
}

#[test]
fn time_wait_is_socket_gone_and_unknown_is_no_socket() {
    let (res, h, rx) = start();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let la = l.local_addr().unwrap();
    let c = TcpStream::connect(la).unwrap();
    let cl = c.local_addr().unwrap();
    let (mut s, _) = l.accept().unwrap();
    drop(c); // the client closes first: its end goes FIN_WAIT2 then TIME_WAIT
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    drop(s);
    std::thread::sleep(Duration::from_millis(20));
    let r = resolve(&h, &rx, tcp(cl, la));
    assert_eq!(r.owner, Err(Unattributed::SocketGone), "{r:?}");
    assert_eq!(r.inode, 0);
    assert_eq!(r.attempts, 1);

    // Nothing listens on port 1 of 127.0.0.3.
    let q = tcp(
        "127.0.0.3:1".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    );
    let r = resolve(&h, &rx, q);
    assert_eq!(r.owner, Err(Unattributed::NoSocket), "{r:?}");
    assert_eq!(
        r.attempts as usize,
        ResolverConfig::default().retry_delays.len() + 1
    );
    assert!(r.latency >= Duration::from_millis(100), "{r:?}");
    res.stop();
}

#[test]
fn short_lived_children_are_credited() {
    let (res, h, rx) = start();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let la = l.local_addr().unwrap();
    let mut lat = Vec::new();
    let runs = 20;
    for _ in 0..runs {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{}; echo hi >&3; sleep 0.05",
            la.port()
        );
        let mut child = Command::new("bash").arg("-c").arg(&script).spawn().unwrap();
        let (mut s, peer) = l.accept().unwrap();
        let q = tcp(peer, la);
        assert!(h.submit(q, Priority::High));
        let r = wait_for(&rx, q);
        let info = r
            .owner
            .as_ref()
            .unwrap_or_else(|e| panic!("child flow unattributed: {}", e.as_str()));
        assert_eq!(info.pid, child.id(), "{r:?}");
        // bash may run its last command in its own pid (exec): same process, new image.
        assert!(info.name == "bash" || info.name == "sleep", "{r:?}");
        assert!(
            info.name == "sleep" || info.cmdline.contains("/dev/tcp/127.0.0.1"),
            "{}",
            info.cmdline
        );
        lat.push(r.latency);
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).unwrap();
        assert!(child.wait().unwrap().success());
    }
    lat.sort();
    println!(
        "short-lived children: {runs}/{runs} credited, latency p50 {:?} max {:?}; {:?}",
        lat[lat.len() / 2],
        lat[lat.len() - 1],
        h.stats()
    );
    res.stop();
}

#[test]
fn lookup_latency_over_200_connections() {
    let (res, h, rx) = start();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let la = l.local_addr().unwrap();
    let mut lat = Vec::new();
    for _ in 0..200 {
        let mut c = TcpStream::connect(la).unwrap();
        let q = tcp(c.local_addr().unwrap(), la);
        assert!(h.submit(q, Priority::High));
        let (_s, _) = l.accept().unwrap();
        let r = wait_for(&rx, q);
        assert_mine(&r, &c);
        lat.push(r.latency);
        c.write_all(b"x").unwrap();
    }
    lat.sort();
    println!(
        "latency over {} connections: p50 {:?} p99 {:?} max {:?}; {:?}",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1],
        h.stats()
    );
    res.stop();
}

#[test]
fn submit_never_blocks_and_counts_drops() {
    need_root();
    let cfg = ResolverConfig {
        queue_capacity: 1,
        ..ResolverConfig::default()
    };
    let (res, h, _rx) = Resolver::start(cfg).unwrap();
    let q = udp(
        "127.0.0.3:1".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    );
    let t = Instant::now();
    let accepted = (0..10_000).filter(|_| h.submit(q, Priority::High)).count() as u64;
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(h.dropped(), 10_000 - accepted);
    assert!(h.dropped() > 0);
    res.stop();
}

#[test]
fn unattributed_names_are_stable() {
    assert_eq!(Unattributed::NoSocket.as_str(), "no_socket");
    assert_eq!(Unattributed::SocketGone.as_str(), "socket_gone");
    assert_eq!(Unattributed::OtherNamespace.as_str(), "other_namespace");
    assert_eq!(Unattributed::Forwarded.as_str(), "forwarded");
    assert_eq!(Unattributed::Pending.as_str(), "pending");
}

#[test]
fn zero_capacity_is_a_config_error() {
    let cfg = ResolverConfig {
        queue_capacity: 0,
        ..ResolverConfig::default()
    };
    assert!(matches!(
        Resolver::start(cfg),
        Err(ProcmapError::Config { .. })
    ));
}

#[test]
fn works_without_the_proc_connector() {
    need_root();
    let cfg = ResolverConfig {
        use_connector: false,
        ..ResolverConfig::default()
    };
    let (res, h, rx) = Resolver::start(cfg).unwrap();
    assert!(!h.stats().connector_active);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let la = l.local_addr().unwrap();
    let c = TcpStream::connect(la).unwrap();
    let (_s, _) = l.accept().unwrap();
    assert_mine(&resolve(&h, &rx, tcp(c.local_addr().unwrap(), la)), &c);
    // A child: found by the (rate-limited) full rescan instead of an exec event.
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{}; echo hi >&3; sleep 0.3",
        la.port()
    );
    let mut child = Command::new("bash").arg("-c").arg(&script).spawn().unwrap();
    let (_s2, peer) = l.accept().unwrap();
    let r = resolve(&h, &rx, tcp(peer, la));
    assert_eq!(r.owner.as_ref().map(|i| i.pid), Ok(child.id()), "{r:?}");
    assert!(child.wait().unwrap().success());
    res.stop();
}

#[test]
fn socket_in_another_network_namespace_is_credited() {
    use std::io::BufRead;
    let (res, h, rx) = start();
    // A child in a fresh network namespace holds a loopback connection there.
    let py = "import socket,time\n\
              l=socket.socket(); l.bind(('127.0.0.1',0)); l.listen()\n\
              c=socket.create_connection(l.getsockname())\n\
              print(c.getsockname()[1], l.getsockname()[1], flush=True)\n\
              time.sleep(3)\n";
    let mut child = Command::new("unshare")
        .args([
            "-n",
            "bash",
            "-c",
            "ip link set lo up && exec python3 -c \"$0\"",
        ])
        .arg(py)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ports: Vec<u16> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let q = tcp(
        format!("127.0.0.1:{}", ports[0]).parse().unwrap(),
        format!("127.0.0.1:{}", ports[1]).parse().unwrap(),
    );
    let r = resolve(&h, &rx, q);
    let _ = child.kill();
    let _ = child.wait();
    let info = r
        .owner
        .as_ref()
        .unwrap_or_else(|e| panic!("{r:?}: {}", e.as_str()));
    assert_eq!(info.pid, child.id(), "{r:?}");
    assert!(info.name.starts_with("python"), "{r:?}");
    let own = std::fs::metadata("/proc/self/ns/net").unwrap();
    assert_ne!(info.netns, std::os::unix::fs::MetadataExt::ino(&own));
    assert!(h.stats().other_netns >= 1);
    res.stop();
}

#[test]
fn a_long_low_queue_is_answered_by_dumps_and_high_lookups_go_first() {
    need_root();
    let cfg = ResolverConfig {
        dump_above: 32,
        dump_interval: Duration::from_millis(50),
        ..ResolverConfig::default()
    };
    let (res, h, rx) = Resolver::start(cfg).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let la = l.local_addr().unwrap();
    let c = TcpStream::connect(la).unwrap();
    let (s, peer) = l.accept().unwrap();
    // A flood of inbound SYNs to a closed port, with one real connection among them.
    let fake = |i: u16| {
        tcp(
            "127.0.0.1:9".parse().unwrap(),
            SocketAddr::new([127, 0, 0, 7].into(), 1000 + i),
        )
    };
    for i in 0..500 {
        assert!(h.submit(fake(i), Priority::Low));
    }
    let real = tcp(s.local_addr().unwrap(), peer);
    assert!(h.submit(real, Priority::Low));
    // An outgoing connection's lookup does not wait for the flood's.
    let t = Instant::now();
    let out = tcp(c.local_addr().unwrap(), la);
    assert!(h.submit(out, Priority::High));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut no_socket, mut got_real, mut got_out) = (0, None, None);
    while (no_socket < 500 || got_real.is_none() || got_out.is_none()) && Instant::now() < deadline
    {
        let Ok(r) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if r.query == real {
            got_real = Some(r);
        } else if r.query == out {
            got_out = Some((r, t.elapsed()));
        } else if r.owner.as_ref().err() == Some(&Unattributed::NoSocket) {
            no_socket += 1;
        }
    }
    let st = h.stats();
    assert_eq!(no_socket, 500, "{st:?}");
    assert_mine(&got_real.expect("the real connection is answered"), &s);
    let (r, took) = got_out.expect("the outgoing connection is answered");
    assert_mine(&r, &c);
    assert!(took < Duration::from_secs(1), "high lookup waited {took:?}");
    assert!(st.dumps >= 4, "answered from dumps: {st:?}");
    assert_eq!(st.low_dropped, 0);
    res.stop();
}

#[test]
fn a_full_low_queue_drops_and_counts() {
    need_root();
    let cfg = ResolverConfig {
        low_capacity: 100,
        ..ResolverConfig::default()
    };
    let (res, h, _rx) = Resolver::start(cfg).unwrap();
    let q = |i: u16| {
        tcp(
            "127.0.0.1:9".parse().unwrap(),
            SocketAddr::new([127, 0, 0, 8].into(), i),
        )
    };
    for i in 0..1000 {
        h.submit(q(i), Priority::Low);
    }
    // A burst far faster than lookups: whether refused by the channel or by the
    // queue behind it, all but the queue's 100 are dropped and counted.
    std::thread::sleep(Duration::from_millis(50));
    let st = h.stats();
    assert!((850..=900).contains(&st.low_dropped), "{st:?}");
    assert_eq!(h.dropped(), st.low_dropped);
    res.stop();
}

#[test]
fn a_lone_inbound_connection_is_looked_up_at_once() {
    let (res, h, rx) = start();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, peer) = l.accept().unwrap();
    // Let the resolver fall into its idle wait (IDLE_WAIT is 100 ms).
    std::thread::sleep(Duration::from_millis(150));
    let t = Instant::now();
    let q = tcp(s.local_addr().unwrap(), peer);
    assert!(h.submit(q, Priority::Low));
    assert_mine(&wait_for(&rx, q), &s);
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(40),
        "a low lookup waited {took:?}"
    );
    res.stop();
}
