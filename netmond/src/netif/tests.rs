//! netif against the running kernel. Root tests create a uniquely named veth
//! pair with an address from a private /24 (no traffic is ever sent on it)
//! and remove it in a Drop guard, also on failure.

use super::*;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Serialises the tests that change links, so one's watcher does not see
/// another's changes.
static LINK_CHANGES: Mutex<()> = Mutex::new(());
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn root_lock() -> MutexGuard<'static, ()> {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    LINK_CHANGES.lock().unwrap_or_else(|e| e.into_inner())
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair that is deleted on drop.
struct Veth {
    name: String,
    peer: String,
    /// 10.231.x.1, x unique per pid and test.
    addr: Ipv4Addr,
    deleted: bool,
}

impl Veth {
    fn create() -> Veth {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let veth = Veth {
            name: format!("nmt{pid}{n}a"),
            peer: format!("nmt{pid}{n}b"),
            addr: Ipv4Addr::new(10, 231, ((pid as usize + n * 7) % 250) as u8, 1),
            deleted: false,
        };
        assert!(veth.peer.len() <= 15, "name too long: {}", veth.peer);
        ip(&[
            "link", "add", &veth.name, "type", "veth", "peer", "name", &veth.peer,
        ]);
        veth
    }

    fn add_address(&self) {
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.addr),
            "dev",
            &self.name,
        ]);
    }

    fn set_up(&self) {
        ip(&["link", "set", &self.name, "up"]);
        ip(&["link", "set", &self.peer, "up"]);
    }

    fn delete(&mut self) {
        ip(&["link", "del", &self.name]);
        self.deleted = true;
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = Command::new("ip")
                .args(["link", "del", &self.name])
                .status();
        }
    }
}

fn find<'a>(ifaces: &'a [Interface], name: &str) -> Option<&'a Interface> {
    ifaces.iter().find(|i| i.name == name)
}

#[test]
fn list_contains_loopback_with_its_address() {
    let ifaces = list().unwrap();
    let lo = find(&ifaces, "lo").expect("lo listed");
    assert!(lo.loopback && lo.admin_up && lo.up, "{lo:?}");
    assert_eq!(lo.kind, "loopback");
    assert_eq!(lo.mac, None);
    assert!(
        lo.addresses.contains(&IpAddr::from([127, 0, 0, 1])),
        "{lo:?}"
    );
    assert!(local_addresses(&ifaces).contains(&IpAddr::from([127, 0, 0, 1])));
    assert!(ifaces.windows(2).all(|w| w[0].index < w[1].index));
}

#[test]
fn local_addresses_are_deduplicated_across_interfaces() {
    let a: IpAddr = [10, 0, 0, 1].into();
    let b: IpAddr = "fe80::1".parse().unwrap();
    let iface = |index, addresses| Interface {
        index,
        name: format!("if{index}"),
        up: true,
        admin_up: true,
        loopback: false,
        addresses,
        mac: None,
        kind: String::new(),
    };
    let ifaces = [iface(1, vec![a, b]), iface(2, vec![b]), iface(3, vec![])];
    assert_eq!(local_addresses(&ifaces), vec![a, b]);
}

#[test]
fn join_attaches_addresses_by_index_and_drops_orphans() {
    let mut p = parse::tests::ifinfomsg(1, 5, 0x1);
    parse::tests::attr(&mut p, 3, b"x0\0");
    let link = parse::parse_link(&p).unwrap();
    let addr = |index, a: [u8; 4]| AddrMsg {
        index,
        prefix_len: 24,
        addr: a.into(),
    };
    let ifaces = join(
        vec![link],
        &[
            addr(5, [10, 0, 0, 1]),
            addr(5, [10, 0, 0, 1]),
            addr(6, [10, 0, 0, 2]),
        ],
    );
    assert_eq!(ifaces.len(), 1);
    assert_eq!(ifaces[0].addresses, vec![IpAddr::from([10, 0, 0, 1])]);
    assert!(ifaces[0].admin_up && !ifaces[0].up);
}

#[test]
fn loopback_counters_grow_and_agree_with_proc_net_dev() {
    let lo = |rows: Vec<(String, Counters)>| {
        rows.into_iter()
            .find(|(n, _)| n == "lo")
            .map(|(_, c)| c)
            .expect("lo counted")
    };
    let before = lo(counters().unwrap());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"netif", sock.local_addr().unwrap()).unwrap();
    let proc_now = lo(parse_proc_net_dev(
        &std::fs::read_to_string("/proc/net/dev").unwrap(),
    ));
    let after = lo(counters().unwrap());
    assert!(
        after.tx_packets > before.tx_packets,
        "{before:?} -> {after:?}"
    );
    assert!(after.rx_bytes >= before.rx_bytes + 5);
    assert!(before.rx_bytes <= proc_now.rx_bytes && proc_now.rx_bytes <= after.rx_bytes);
}

#[test]
fn veth_with_an_address_is_listed_with_counters() {
    let _lock = root_lock();
    let veth = Veth::create();
    let ifaces = list().unwrap();
    let a = find(&ifaces, &veth.name).expect("veth listed");
    assert!(!a.admin_up && !a.up && !a.loopback, "{a:?}");
    assert_eq!(a.kind, "veth");
    assert!(a.mac.is_some());
    assert!(find(&ifaces, &veth.peer).is_some());

    veth.add_address();
    veth.set_up();
    let ifaces = list().unwrap();
    let a = find(&ifaces, &veth.name).expect("veth listed");
    assert!(a.admin_up && a.up, "{a:?}");
    assert!(a.addresses.contains(&IpAddr::V4(veth.addr)), "{a:?}");
    assert!(local_addresses(&ifaces).contains(&IpAddr::V4(veth.addr)));

    // Point-to-point form: IFA_ADDRESS is the peer, IFA_LOCAL ours.
    let [a0, a1, a2, _] = veth.addr.octets();
    let (local, peer) = (Ipv4Addr::new(a0, a1, a2, 5), Ipv4Addr::new(a0, a1, a2, 6));
    ip(&[
        "addr",
        "add",
        &local.to_string(),
        "peer",
        &peer.to_string(),
        "dev",
        &veth.name,
    ]);
    let ifaces = list().unwrap();
    let a = find(&ifaces, &veth.name).expect("veth listed");
    assert!(a.addresses.contains(&IpAddr::V4(local)), "{a:?}");
    assert!(!a.addresses.contains(&IpAddr::V4(peer)), "{a:?}");

    let counted = counters().unwrap();
    assert!(counted.iter().any(|(n, _)| *n == veth.name));
    assert!(counted.iter().any(|(n, _)| *n == veth.peer));
}

/// Waits until the watcher has been quiet for a while (earlier changes settled).
/// How long a test waits for an event: a deadline, not a measurement (the
/// debounce timing is tested with synthetic clocks in `watch`).
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

/// `stop` returns: an idle watcher blocks in poll with no timeout, so only
/// the stop signal can end it; the deadline is generous, not a measurement.
fn stops(watcher: Watcher) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        watcher.stop();
        let _ = tx.send(());
    });
    rx.recv_timeout(EVENT_DEADLINE)
        .expect("the watcher never stopped: the stop signal is not heard");
}

fn settle(rx: &mpsc::Receiver<()>) {
    while rx.recv_timeout(Duration::from_millis(300)).is_ok() {}
}

#[test]
fn watcher_fires_on_new_address_and_deleted_link() {
    let _lock = root_lock();
    let (tx, rx) = mpsc::channel();
    let watcher = Watcher::start(move || {
        let _ = tx.send(());
    })
    .unwrap();
    let mut veth = Veth::create();
    settle(&rx);

    veth.add_address();
    rx.recv_timeout(EVENT_DEADLINE)
        .expect("fired after address added");
    assert!(list()
        .unwrap()
        .iter()
        .any(|i| i.addresses.contains(&IpAddr::V4(veth.addr))));
    settle(&rx);

    veth.delete();
    rx.recv_timeout(EVENT_DEADLINE)
        .expect("fired after link deleted");
    assert!(find(&list().unwrap(), &veth.name).is_none());

    stops(watcher);
}

#[test]
fn watcher_debounces_a_burst_into_few_calls() {
    let _lock = root_lock();
    let (tx, rx) = mpsc::channel();
    let watcher = Watcher::start(move || {
        let _ = tx.send(Instant::now());
    })
    .unwrap();
    let veth = Veth::create();
    let first = Instant::now();
    veth.add_address();
    veth.set_up();
    let fired = rx.recv_timeout(EVENT_DEADLINE).expect("fired");
    // Three `ip` runs and their events: far fewer calls than events.
    let mut calls = 1;
    while rx.recv_timeout(Duration::from_millis(300)).is_ok() {
        calls += 1;
    }
    assert!(calls <= 6, "{calls} calls");
    assert!(fired >= first);
    stops(watcher);
}

#[test]
fn watcher_stops_on_its_signal_when_idle() {
    let watcher = Watcher::start(|| {}).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    stops(watcher);
}
