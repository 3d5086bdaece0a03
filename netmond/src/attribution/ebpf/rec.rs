//! The records the eBPF programs share with user space (layouts mirror
//! bpf/sockacct.bpf.c), and the pure step from cumulative per-socket counters
//! to per-tick deltas. No I/O.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `struct owner`: recorded in the task that created or connected the socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawOwner {
    pub tgid: u32,
    pub uid: u32,
    pub cgroup_id: u64,
    /// CLOCK_BOOTTIME ns when recorded: a process started later is a reused pid.
    pub recorded_ns: u64,
    /// CLOCK_BOOTTIME ns the process started (0: not read): with `tgid`, its
    /// identity, exact even for a process gone before /proc was read.
    pub start_ns: u64,
    pub comm: [u8; 16],
    pub released: u32,
    pub pad: u32,
}

/// `struct sock_rec`: one socket's cumulative counters, keyed by socket cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawRec {
    pub owner: RawOwner,
    pub netns_cookie: u64,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    /// Network byte order, as the kernel keeps them (IPv4 in word 0).
    pub local_ip: [u32; 4],
    pub remote_ip: [u32; 4],
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u8,
    pub protocol: u8,
    pub flags: u8,
    pub pad: u8,
}

const _: () = assert!(std::mem::size_of::<RawOwner>() == 56);
const _: () = assert!(std::mem::size_of::<RawRec>() == 136);

// SAFETY: both are #[repr(C)] structs of integers and byte arrays with no
// padding the compiler could add (sizes asserted above): every bit pattern
// is a valid value, which is what aya's Pod requires.
unsafe impl aya::Pod for RawOwner {}
// SAFETY: as above.
unsafe impl aya::Pod for RawRec {}

/// The owner came from the creating (or connecting) task.
pub const REC_OWNER_KNOWN: u8 = 1;
/// The socket was released: read it once more, then drop it.
pub const REC_CLOSED: u8 = 2;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

impl RawOwner {
    /// The task name, lossily: a name that is not UTF-8 still names the process.
    pub fn comm(&self) -> String {
        let end = self
            .comm
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

impl RawRec {
    pub fn owner_known(&self) -> bool {
        self.flags & REC_OWNER_KNOWN != 0 && self.owner.tgid != 0
    }

    pub fn closed(&self) -> bool {
        self.flags & REC_CLOSED != 0
    }

    /// (local, remote) as capture sees them: IPv4-mapped IPv6 becomes IPv4.
    pub fn endpoints(&self) -> Option<(SocketAddr, SocketAddr)> {
        let ip = |w: &[u32; 4]| -> Option<IpAddr> {
            match self.family {
                AF_INET => Some(IpAddr::V4(Ipv4Addr::from(w[0].to_ne_bytes()))),
                AF_INET6 => {
                    let mut b = [0u8; 16];
                    for (i, word) in w.iter().enumerate() {
                        b[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
                    }
                    let v6 = Ipv6Addr::from(b);
                    Some(match v6.to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(v6),
                    })
                }
                _ => None,
            }
        };
        Some((
            SocketAddr::new(ip(&self.local_ip)?, self.local_port),
            SocketAddr::new(ip(&self.remote_ip)?, self.remote_port),
        ))
    }
}

/// Bytes and packets, per direction as the socket sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_packets: u64,
    pub down_packets: u64,
}

impl Counts {
    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    fn of(r: &RawRec) -> Counts {
        Counts {
            up_bytes: r.tx_bytes,
            down_bytes: r.rx_bytes,
            up_packets: r.tx_packets,
            down_packets: r.rx_packets,
        }
    }

    fn minus(self, o: Counts) -> Option<Counts> {
        Some(Counts {
            up_bytes: self.up_bytes.checked_sub(o.up_bytes)?,
            down_bytes: self.down_bytes.checked_sub(o.down_bytes)?,
            up_packets: self.up_packets.checked_sub(o.up_packets)?,
            down_packets: self.down_packets.checked_sub(o.down_packets)?,
        })
    }
}

/// What the tracker decided about one record this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// New bytes since the counts last handed out for this cookie.
    pub delta: Counts,
    /// Drop the record from the kernel map now (closed, or idle long enough).
    pub remove: bool,
}

/// Per cookie: the counts already handed out, and how long nothing moved.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<u64, (Counts, u32)>,
    /// Ticks without a byte after which an open socket's record is dropped;
    /// its next packet creates a fresh record, so nothing is lost.
    idle_ticks: u32,
}

impl Tracker {
    pub fn new(idle_ticks: u32) -> Tracker {
        Tracker {
            seen: HashMap::new(),
            idle_ticks: idle_ticks.max(1),
        }
    }

    /// Cookies tracked (sockets alive in the map as of the last tick).
    /// Gives back the room of a burst of sockets (see `memory::shrink_map`).
    pub fn shrink_idle(&mut self) {
        crate::memory::shrink_map(&mut self.seen);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Takes a record read this tick. `hold` keeps its new bytes unhanded (the
    /// owner is not known yet): they are handed out with a later observation.
    pub fn observe(&mut self, cookie: u64, rec: &RawRec, hold: bool) -> Observed {
        let now = Counts::of(rec);
        let (before, idle) = self.seen.get(&cookie).copied().unwrap_or_default();
        // Counters only grow; smaller ones mean the kernel record was dropped
        // and made anew since, so all of it is new.
        let delta = now.minus(before).unwrap_or(now);
        if hold {
            return Observed {
                delta: Counts::default(),
                remove: false,
            };
        }
        let idle = if delta.is_zero() { idle + 1 } else { 0 };
        let remove = rec.closed() || idle >= self.idle_ticks;
        if remove {
            self.seen.remove(&cookie);
        } else {
            self.seen.insert(cookie, (now, idle));
        }
        Observed { delta, remove }
    }

    /// Forgets cookies that were not in the map this tick (removed elsewhere).
    pub fn retain(&mut self, present: impl Fn(u64) -> bool) {
        self.seen.retain(|c, _| present(*c));
    }
}

/// The mount point of the cgroup v2 hierarchy's root, from /proc/self/mountinfo:
/// `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on hybrid ones.
pub fn cgroup2_root(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut fs = right.split_whitespace();
        if fs.next()? != "cgroup2" {
            return None;
        }
        let mut f = left.split_whitespace();
        let root = f.nth(3)?;
        let mount_point = f.next()?;
        (root == "/").then(|| unescape_mount(mount_point))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    fn rec(tx: u64, rx: u64, flags: u8) -> RawRec {
        RawRec {
            tx_bytes: tx,
            rx_bytes: rx,
            tx_packets: tx / 100,
            rx_packets: rx / 100,
            flags,
            ..RawRec::default()
        }
    }

    #[test]
    fn deltas_are_new_bytes_since_the_last_tick() {
        let mut t = Tracker::new(60);
        assert_eq!(t.observe(7, &rec(1000, 500, 1), false).delta.up_bytes, 1000);
        let o = t.observe(7, &rec(1500, 800, 1), false);
        assert_eq!((o.delta.up_bytes, o.delta.down_bytes), (500, 300));
        assert!(!o.remove);
    }

    #[test]
    fn a_closed_socket_hands_out_its_last_bytes_then_is_dropped() {
        let mut t = Tracker::new(60);
        t.observe(7, &rec(1000, 0, 1), false);
        let o = t.observe(7, &rec(1200, 0, 1 | REC_CLOSED), false);
        assert_eq!(o.delta.up_bytes, 200);
        assert!(o.remove);
        assert!(t.is_empty());
        // Late packets after close make a fresh record: counted from zero.
        assert_eq!(
            t.observe(7, &rec(52, 0, REC_CLOSED), false).delta.up_bytes,
            52
        );
    }

    #[test]
    fn a_record_made_anew_counts_from_zero() {
        let mut t = Tracker::new(60);
        t.observe(9, &rec(10_000, 10_000, 1), false);
        let o = t.observe(9, &rec(300, 0, 1), false);
        assert_eq!((o.delta.up_bytes, o.delta.down_bytes), (300, 0));
    }

    #[test]
    fn held_bytes_are_handed_out_later_in_full() {
        let mut t = Tracker::new(60);
        assert!(t.observe(3, &rec(400, 0, 0), true).delta.is_zero());
        assert!(t.observe(3, &rec(900, 0, 0), true).delta.is_zero());
        assert_eq!(t.observe(3, &rec(1000, 0, 0), false).delta.up_bytes, 1000);
    }

    #[test]
    fn idle_records_are_dropped_after_the_idle_limit() {
        let mut t = Tracker::new(2);
        t.observe(5, &rec(10, 0, 1), false);
        assert!(!t.observe(5, &rec(10, 0, 1), false).remove);
        assert!(t.observe(5, &rec(10, 0, 1), false).remove);
    }

    #[test]
    fn endpoints_decode_v4_v6_and_v4_mapped() {
        let mut r = RawRec {
            family: AF_INET,
            local_port: 40000,
            remote_port: 443,
            ..RawRec::default()
        };
        r.local_ip[0] = u32::from_ne_bytes([10, 0, 0, 2]);
        r.remote_ip[0] = u32::from_ne_bytes([10, 0, 0, 1]);
        let (l, rm) = r.endpoints().unwrap();
        assert_eq!(l, "10.0.0.2:40000".parse().unwrap());
        assert_eq!(rm, "10.0.0.1:443".parse().unwrap());

        r.family = AF_INET6;
        let mapped: Ipv6Addr = "::ffff:192.0.2.7".parse().unwrap();
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        for (dst, src) in [(&mut r.local_ip, mapped), (&mut r.remote_ip, v6)] {
            for (i, c) in src.octets().chunks(4).enumerate() {
                dst[i] = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        let (l, rm) = r.endpoints().unwrap();
        assert_eq!(l.ip(), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(rm.ip(), "fd00::1".parse::<IpAddr>().unwrap());
        r.family = 1;
        assert!(r.endpoints().is_none());
    }

    #[test]
    fn comm_is_read_lossily() {
        let mut o = RawOwner::default();
        o.comm[..5].copy_from_slice(b"nm\xff\xfex");
        assert_eq!(o.comm(), "nm\u{fffd}\u{fffd}x");
    }

    #[test]
    fn cgroup2_root_on_unified_and_hybrid_hosts() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n\
                      36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n\
                      37 35 0:32 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd\n";
        assert_eq!(
            cgroup2_root(hybrid).as_deref(),
            Some("/sys/fs/cgroup/unified")
        );
        let unified =
            "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_root(unified).as_deref(), Some("/sys/fs/cgroup"));
        // A container's view (root is not the hierarchy's root) is not used.
        let nested = "30 24 0:26 /system.slice/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(nested), None);
        assert_eq!(cgroup2_root("garbage\n"), None);
        let escaped = "30 24 0:26 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(escaped).as_deref(), Some("/mnt/cg two"));
    }
}
