//! Socket -> process attribution: the eBPF socket accounting (`ebpf`, the
//! primary path) and the sock_diag + /proc resolver (`procmap`) beside it,
//! which answers for sockets older than netmond and for capture without eBPF.
//! Both name owners as one [`ProcessInfo`], the process identity the rest of
//! the daemon (rows, store) uses too.

pub mod ebpf;
pub mod procmap;

use netmon_proto::v1;

/// Who a process is: the owner of a socket, read when attribution succeeded,
/// and the identity the store keeps with its samples (which reads back only
/// what its tables have columns for).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Clock ticks since boot (/proc/<pid>/stat field 22); with `pid`, the identity.
    pub start_time: u64,
    /// comm.
    pub name: String,
    pub exe: String,
    /// Arguments joined by spaces, at most `procmap::CMDLINE_MAX` bytes.
    pub cmdline: String,
    /// `cmdline` was cut to the cap.
    pub cmdline_truncated: bool,
    pub uid: u32,
    pub user: String,
    /// systemd unit from the cgroup path, e.g. "nginx.service", or "".
    pub unit: String,
    pub cgroup: String,
    /// Container from the cgroup path (`docker:3f2e5d001387`, `lxc:db1`), or "".
    pub container: String,
    /// Inode of /proc/<pid>/ns/net.
    pub netns: u64,
    /// Start as wall clock, ms since the epoch.
    pub started_ms: i64,
}

impl From<&ProcessInfo> for v1::ProcessIdentity {
    fn from(p: &ProcessInfo) -> v1::ProcessIdentity {
        v1::ProcessIdentity {
            pid: p.pid,
            start_time: p.start_time,
            name: p.name.clone(),
            exe: p.exe.clone(),
            cmdline: p.cmdline.clone(),
            cmdline_truncated: p.cmdline_truncated,
            uid: p.uid,
            user: p.user.clone(),
            unit: p.unit.clone(),
            cgroup: p.cgroup.clone(),
            netns: p.netns,
            started_ms: p.started_ms,
            container: p.container.clone(),
        }
    }
}

impl From<&v1::ProcessIdentity> for ProcessInfo {
    fn from(p: &v1::ProcessIdentity) -> ProcessInfo {
        ProcessInfo {
            pid: p.pid,
            start_time: p.start_time,
            name: p.name.clone(),
            exe: p.exe.clone(),
            cmdline: p.cmdline.clone(),
            cmdline_truncated: p.cmdline_truncated,
            uid: p.uid,
            user: p.user.clone(),
            unit: p.unit.clone(),
            cgroup: p.cgroup.clone(),
            container: p.container.clone(),
            netns: p.netns,
            started_ms: p.started_ms,
        }
    }
}
