//! eBPF socket accounting, the primary attribution path: loads the programs
//! of bpf/sockacct.bpf.c onto the cgroup v2 root through bpf_link (so nothing
//! stays attached when netmond exits, however it exits), reads every socket's
//! counters once per tick and hands out per-socket deltas with their owners.
//! Owners recorded in the kernel are named here from /proc; sockets older
//! than netmond are asked about through the socket-lookup resolver.

mod owners;
pub mod rec;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, SkStorage};
use aya::programs::links::CgroupAttachMode;
use aya::programs::{CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader};
use tracing::{debug, info, warn};

use crate::attribution::procmap::{ProcessInfo, Resolution, SocketQuery, Unattributed};
pub use owners::OwnerCache;
pub use rec::Counts;
use rec::{RawOwner, RawRec, Tracker};

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sockacct.bpf.o"));

/// Ticks without a byte after which an open socket's kernel record is
/// dropped (its next packet makes a new one; nothing is lost).
const IDLE_TICKS: u32 = 60;
/// Ticks an owner-less socket's bytes wait for a lookup before they are
/// handed out as unattributed.
const OWNER_WAIT_TICKS: u32 = 3;
/// Owners of closed sockets are remembered this many ticks: a TCP socket's
/// time-wait state (60 s) still sends and receives under the same cookie.
const RECENT_TICKS: u64 = 75;
/// ... for at most this many sockets.
const MAX_RECENT: usize = 131_072;
// Memory they hold is given back once they have expired.
const _: () = assert!(crate::memory::SETTLED_TICKS as u64 > RECENT_TICKS);

/// Why eBPF accounting could not start; the text goes to `status`.
#[derive(Debug, thiserror::Error)]
pub enum SockAcctError {
    #[error("no cgroup v2 hierarchy is mounted (cgroup_skb needs one)")]
    NoCgroup2,
    #[error("cannot open the cgroup v2 root '{path}'")]
    OpenCgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the eBPF object: {0}")]
    Load(String),
    #[error("cannot load or attach eBPF program '{program}': {message}")]
    Program {
        program: &'static str,
        message: String,
    },
    #[error("the eBPF object lacks map '{0}'")]
    Map(&'static str),
    #[error("the socket hooks do not see new sockets ({0}); a cgroup v1 net_cls/net_prio controller in use disables them")]
    SelfTest(String),
}

/// One socket's bytes this tick, with its owner or why it has none.
#[derive(Debug, Clone)]
pub struct SockDelta {
    pub owner: Result<Arc<ProcessInfo>, Unattributed>,
    /// 6 TCP, 17 UDP, 1 ICMP, ...
    pub proto: u8,
    /// (local, remote) as capture sees them; remote is unspecified for an
    /// unconnected socket.
    pub endpoints: Option<(SocketAddr, SocketAddr)>,
    pub counts: Counts,
    /// The socket lives in another network namespace than netmond's: it is
    /// this host's only if its traffic crosses a captured interface.
    pub foreign: bool,
}

/// What one tick read from the kernel.
#[derive(Debug, Default)]
pub struct Poll {
    pub sockets: Vec<SockDelta>,
    /// Bytes the kernel side could not give a socket record (map full).
    pub lost: Counts,
    /// Records in the kernel map after this tick.
    pub tracked: usize,
}

/// An owner-less socket waiting for a lookup.
#[derive(Debug)]
struct Waiting {
    ticks: u32,
    query: Option<SocketQuery>,
    answer: Option<Result<Arc<ProcessInfo>, Unattributed>>,
}

/// The loaded and attached programs and the user-space state over them.
pub struct SockAcct {
    socks: BpfHashMap<MapData, u64, RawRec>,
    lost: PerCpuArray<MapData, [u64; 4]>,
    tracker: Tracker,
    owners: OwnerCache,
    waiting: HashMap<u64, Waiting>,
    by_query: HashMap<SocketQuery, u64>,
    excluded: HashSet<u64>,
    /// Owners of recently closed sockets by cookie, with the tick they expire.
    recent: HashMap<u64, (Arc<ProcessInfo>, u64)>,
    ticks: u64,
    /// netmond's own network namespace.
    own_netns: u64,
    lost_seen: [u64; 4],
    /// Keeps the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
}

const PROGRAMS_SKB: [(&str, CgroupSkbAttachType); 2] = [
    ("skb_egress", CgroupSkbAttachType::Egress),
    ("skb_ingress", CgroupSkbAttachType::Ingress),
];
const PROGRAMS_SOCK: [&str; 2] = ["sock_create", "sock_release"];
const PROGRAMS_ADDR: [&str; 4] = ["connect4", "connect6", "sendmsg4", "sendmsg6"];

impl SockAcct {
    /// Loads and attaches everything, then checks that a new socket of this
    /// process is seen. `exclude_netns` are netns cookies whose sockets are
    /// not this host's.
    pub fn start(
        include_loopback: bool,
        exclude_netns: HashSet<u64>,
    ) -> Result<SockAcct, SockAcctError> {
        let (root, cgroup) = open_cgroup2_root()?;
        // Owners' start times make their identity exact; a kernel that does
        // not let cgroup programs read the task still counts every byte.
        let (ebpf, own_netns) = match Self::attach(&cgroup, include_loopback, true) {
            Ok(attached) => attached,
            Err(e) => {
                warn!(
                    error = %e,
                    "eBPF socket accounting without owners' start times: a process gone \
                     before /proc is read is known by pid and name only"
                );
                Self::attach(&cgroup, include_loopback, false)?
            }
        };
        Self::with(ebpf, own_netns, &root, exclude_netns)
    }

    /// Loads and attaches every program; the links live as long as the `Ebpf`.
    fn attach(
        cgroup: &std::fs::File,
        include_loopback: bool,
        task_start: bool,
    ) -> Result<(Ebpf, u64), SockAcctError> {
        let loopback = u32::from(include_loopback);
        let task_start_flag = u32::from(task_start);
        let mut ebpf = EbpfLoader::new()
            .override_global("include_loopback", &loopback, true)
            .override_global("read_task_start", &task_start_flag, true)
            .load(OBJECT)
            .map_err(|e| SockAcctError::Load(chain(&e)))?;
        // bpf_link attachments take no flags (a link always coexists with other
        // programs on the cgroup), so the mode passed is the flag-less one.
        for (name, kind) in PROGRAMS_SKB {
            let prog: &mut CgroupSkb = program(&mut ebpf, name)?;
            prog.load().map_err(|e| prog_err(name, &e))?;
            prog.attach(cgroup.as_fd(), kind, CgroupAttachMode::Single)
                .map_err(|e| prog_err(name, &e))?;
        }
        for name in PROGRAMS_SOCK {
            let prog: &mut CgroupSock = program(&mut ebpf, name)?;
            prog.load().map_err(|e| prog_err(name, &e))?;
            prog.attach(cgroup.as_fd(), CgroupAttachMode::Single)
                .map_err(|e| prog_err(name, &e))?;
        }
        for name in PROGRAMS_ADDR {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            prog.load().map_err(|e| prog_err(name, &e))?;
            prog.attach(cgroup.as_fd(), CgroupAttachMode::Single)
                .map_err(|e| prog_err(name, &e))?;
        }
        let own_netns = self_test(&mut ebpf, task_start)?;
        Ok((ebpf, own_netns))
    }

    fn with(
        mut ebpf: Ebpf,
        own_netns: u64,
        root: &str,
        exclude_netns: HashSet<u64>,
    ) -> Result<SockAcct, SockAcctError> {
        let socks = ebpf
            .take_map("socks")
            .ok_or(SockAcctError::Map("socks"))
            .and_then(|m| BpfHashMap::try_from(m).map_err(|_| SockAcctError::Map("socks")))?;
        let lost = ebpf
            .take_map("lost")
            .ok_or(SockAcctError::Map("lost"))
            .and_then(|m| PerCpuArray::try_from(m).map_err(|_| SockAcctError::Map("lost")))?;
        info!(cgroup = %root, "eBPF socket accounting attached");
        Ok(SockAcct {
            socks,
            lost,
            tracker: Tracker::new(IDLE_TICKS),
            owners: OwnerCache::new(),
            waiting: HashMap::new(),
            by_query: HashMap::new(),
            excluded: exclude_netns,
            recent: HashMap::new(),
            ticks: 0,
            own_netns,
            lost_seen: [0; 4],
            _ebpf: ebpf,
        })
    }

    /// Tables that grew for a burst of sockets give their room back.
    pub fn shrink_idle(&mut self) {
        self.tracker.shrink_idle();
        self.owners.shrink_idle();
        crate::memory::shrink_map(&mut self.recent);
        crate::memory::shrink_map(&mut self.waiting);
        crate::memory::shrink_map(&mut self.by_query);
    }

    /// Reads every socket record once; `ask` sends a lookup for a socket whose
    /// owner the kernel did not record (it was created before netmond).
    pub fn poll(&mut self, mut ask: impl FnMut(SocketQuery)) -> Poll {
        let mut out = Poll::default();
        let mut remove = Vec::new();
        let mut present = HashSet::new();
        // Collect first: deleting while iterating would restart the walk.
        let recs: Vec<(u64, RawRec)> = self.socks.iter().filter_map(Result::ok).collect();
        for (cookie, r) in recs {
            present.insert(cookie);
            if self.excluded.contains(&r.netns_cookie) {
                // Not this host's socket; still observed so its record is trimmed.
                if self.tracker.observe(cookie, &r, false).remove {
                    remove.push(cookie);
                }
                continue;
            }
            let endpoints = r.endpoints();
            let owner = if r.owner_known() {
                Some(Ok(self.owners.resolve(&r.owner)))
            } else if let Some((info, _)) = self.recent.get(&cookie) {
                Some(Ok(info.clone()))
            } else {
                self.owner_by_lookup(cookie, &r, endpoints, &mut ask)
            };
            let hold = owner.is_none();
            // A closed socket's record goes now: read it again right before
            // deleting it, so bytes that arrived since the walk (its last ACKs,
            // on a busy tick many ms later) are not deleted unread.
            let mut deleted = false;
            let r = if r.closed() && !hold {
                let latest = self.socks.get(&cookie, 0).unwrap_or(r);
                let _ = self.socks.remove(&cookie);
                deleted = true;
                latest
            } else {
                r
            };
            let seen = self.tracker.observe(cookie, &r, hold);
            if seen.remove && !deleted {
                remove.push(cookie);
            }
            if deleted {
                present.remove(&cookie);
            }
            let Some(owner) = owner else { continue };
            if seen.remove && r.closed() {
                if let Ok(info) = &owner {
                    if self.recent.len() < MAX_RECENT {
                        self.recent
                            .insert(cookie, (info.clone(), self.ticks + RECENT_TICKS));
                    }
                }
            }
            if !seen.delta.is_zero() {
                out.sockets.push(SockDelta {
                    owner,
                    proto: r.protocol,
                    endpoints,
                    counts: seen.delta,
                    foreign: r.netns_cookie != self.own_netns,
                });
            }
            if seen.remove {
                self.forget_waiting(cookie);
            }
        }
        for cookie in remove {
            // Already gone (a concurrent close) is fine.
            let _ = self.socks.remove(&cookie);
            present.remove(&cookie);
        }
        self.tracker.retain(|c| present.contains(&c));
        let gone: Vec<u64> = self
            .waiting
            .keys()
            .filter(|c| !present.contains(c))
            .copied()
            .collect();
        for c in gone {
            self.forget_waiting(c);
        }
        self.owners.end_tick();
        self.ticks += 1;
        let now = self.ticks;
        self.recent.retain(|_, (_, until)| *until > now);
        out.lost = self.lost_delta();
        out.tracked = self.tracker.len();
        out
    }

    /// Takes a lookup answer; false when it was not about a waiting socket.
    pub fn apply_resolution(&mut self, res: &Resolution) -> bool {
        let Some(cookie) = self.by_query.get(&res.query).copied() else {
            return false;
        };
        if let Some(w) = self.waiting.get_mut(&cookie) {
            w.answer = Some(res.owner.clone());
        }
        true
    }

    fn owner_by_lookup(
        &mut self,
        cookie: u64,
        r: &RawRec,
        endpoints: Option<(SocketAddr, SocketAddr)>,
        ask: &mut impl FnMut(SocketQuery),
    ) -> Option<Result<Arc<ProcessInfo>, Unattributed>> {
        let w = self.waiting.entry(cookie).or_insert_with(|| {
            let query = endpoints
                .filter(|(l, _)| matches!(r.protocol, 6 | 17) && l.port() != 0)
                .map(|(local, remote)| SocketQuery {
                    proto: r.protocol,
                    local,
                    remote,
                });
            Waiting {
                ticks: 0,
                query,
                answer: None,
            }
        });
        if w.ticks == 0 {
            if let Some(q) = w.query {
                self.by_query.insert(q, cookie);
                ask(q);
            }
        }
        w.ticks += 1;
        match &w.answer {
            Some(a) => Some(a.clone()),
            None if w.query.is_none() => Some(Err(Unattributed::NoOwner)),
            None if w.ticks > OWNER_WAIT_TICKS => Some(Err(Unattributed::SocketGone)),
            None => None,
        }
    }

    fn forget_waiting(&mut self, cookie: u64) {
        if let Some(w) = self.waiting.remove(&cookie) {
            if let Some(q) = w.query {
                self.by_query.remove(&q);
            }
        }
    }

    fn lost_delta(&mut self) -> Counts {
        let mut now = [0u64; 4];
        if let Ok(values) = self.lost.get(&0, 0) {
            for v in values.iter() {
                for (acc, x) in now.iter_mut().zip(v) {
                    *acc = acc.saturating_add(*x);
                }
            }
        }
        let d: Vec<u64> = now
            .iter()
            .zip(self.lost_seen)
            .map(|(n, s)| n.saturating_sub(s))
            .collect();
        self.lost_seen = now;
        Counts {
            up_bytes: d[0],
            down_bytes: d[1],
            up_packets: d[2],
            down_packets: d[3],
        }
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, SockAcctError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    let p = ebpf.program_mut(name).ok_or(SockAcctError::Program {
        program: name,
        message: "missing from the object".into(),
    })?;
    p.try_into().map_err(|_| SockAcctError::Program {
        program: name,
        message: "has the wrong program type".into(),
    })
}

fn prog_err(program: &'static str, e: &dyn std::error::Error) -> SockAcctError {
    SockAcctError::Program {
        program,
        message: chain(e),
    }
}

/// An error and its sources on one line (the verifier log is debug-logged).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    debug!(error = %format!("{e:?}"), "eBPF error detail");
    s
}

/// A socket this process creates must carry its owner: if it does not, the
/// hooks on the cgroup v2 root do not run for this host's sockets. Returns
/// the cookie of netmond's own network namespace.
fn self_test(ebpf: &mut Ebpf, task_start: bool) -> Result<u64, SockAcctError> {
    let map = ebpf.map_mut("owners").ok_or(SockAcctError::Map("owners"))?;
    let owners: SkStorage<&mut MapData, RawOwner> =
        SkStorage::try_from(map).map_err(|_| SockAcctError::Map("owners"))?;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")
        .map_err(|e| SockAcctError::SelfTest(format!("cannot open a test socket: {e}")))?;
    let me = std::process::id();
    match owners.get(&sock, 0) {
        Ok(o) if o.tgid == me => {
            if task_start {
                check_start(&o)?;
            }
            socket_netns_cookie(&sock).map_err(SockAcctError::SelfTest)
        }
        Ok(o) => Err(SockAcctError::SelfTest(format!(
            "test socket owned by pid {} instead of {me}",
            o.tgid
        ))),
        Err(e) => Err(SockAcctError::SelfTest(format!(
            "no owner recorded for a test socket: {}",
            chain(&e)
        ))),
    }
}

/// The start time read in the kernel must be the one /proc shows: a
/// relocation gone wrong would give every process a wrong identity.
fn check_start(o: &RawOwner) -> Result<(), SockAcctError> {
    let stat = crate::attribution::procmap::procinfo::ProcDir::open(
        std::path::Path::new("/proc"),
        std::process::id(),
    )
    .and_then(|d| d.stat())
    .ok_or_else(|| SockAcctError::SelfTest("cannot read /proc/self/stat".to_owned()))?;
    let ticks = owners::start_ticks(o.start_ns, owners::clock_ticks());
    if ticks == stat.start_time {
        Ok(())
    } else {
        Err(SockAcctError::SelfTest(format!(
            "the kernel's start time of this process ({} ns, {ticks} clock ticks) is not \
             /proc's ({} clock ticks)",
            o.start_ns, stat.start_time
        )))
    }
}

/// The cgroup v2 root as mounted in netmond's mount namespace, or else
/// mounted privately by a short-lived thread (`ip netns exec` and some
/// sandboxes give a /sys without cgroups); the open directory outlives it.
fn open_cgroup2_root() -> Result<(String, std::fs::File), SockAcctError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(path) = rec::cgroup2_root(&text) {
        let file = std::fs::File::open(&path).map_err(|source| SockAcctError::OpenCgroup {
            path: path.clone(),
            source,
        })?;
        // mountinfo also lists mounts that a later mount on a parent hides
        // (a non-recursive bind of a hybrid host's /sys/fs/cgroup): the
        // kernel would then refuse the plain directory with a bare EBADF.
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| SockAcctError::OpenCgroup {
            path: path.clone(),
            source: std::io::Error::from_raw_os_error(e as i32),
        })?;
        if fs.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            return Err(SockAcctError::OpenCgroup {
                path,
                source: std::io::Error::other(
                    "not a cgroup2 file system here (hidden by another mount)",
                ),
            });
        }
        return Ok((path, file));
    }
    let private = || -> Result<std::fs::File, SockAcctError> {
        use nix::mount::{mount, MsFlags};
        use nix::sched::{unshare, CloneFlags};
        let io = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
        let at = std::env::temp_dir();
        let fail = |source| SockAcctError::OpenCgroup {
            path: format!("cgroup2 mounted privately on '{}'", at.display()),
            source,
        };
        // Only this thread leaves the shared mount namespace.
        unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS).map_err(|e| fail(io(e)))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| fail(io(e)))?;
        mount(
            Some("cgroup2"),
            &at,
            Some("cgroup2"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| fail(io(e)))?;
        std::fs::File::open(&at).map_err(fail)
    };
    let file = std::thread::Builder::new()
        .name("cgroup2-mount".into())
        .spawn(private)
        .map_err(|source| SockAcctError::OpenCgroup {
            path: "cgroup2".into(),
            source,
        })?
        .join()
        .unwrap_or(Err(SockAcctError::NoCgroup2))?;
    Ok(("cgroup2 (mounted privately)".into(), file))
}

/// Netns cookies of named namespaces (/run/netns/NAME), for `exclude_netns`.
pub fn netns_cookies(names: &[String]) -> Result<HashSet<u64>, String> {
    names.iter().map(|n| netns_cookie(n)).collect()
}

fn netns_cookie(name: &str) -> Result<u64, String> {
    let path = std::path::Path::new("/run/netns").join(name);
    let ns = std::fs::File::open(&path)
        .map_err(|e| format!("cannot open network namespace '{}': {e}", path.display()))?;
    // A socket opened inside the namespace carries the namespace's cookie.
    let cookie = crate::netns::run_in(&ns, "netns-cookie", || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot open a socket in the namespace: {e}"),
            )
        })?;
        socket_netns_cookie(&sock).map_err(std::io::Error::other)
    });
    cookie.map_err(|e| format!("'{name}': {e}"))
}

/// SO_NETNS_COOKIE of a socket (Linux 5.14+).
fn socket_netns_cookie(sock: &impl std::os::fd::AsRawFd) -> Result<u64, String> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the fd is a live socket borrowed for the call; `cookie` and
    // `len` are valid for writes of the size passed. nix has no wrapper for
    // this option.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(format!(
            "SO_NETNS_COOKIE: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(cookie)
}

/// An error with its causes, for `status` and the log.
pub fn describe(e: &SockAcctError) -> String {
    chain(e)
}
