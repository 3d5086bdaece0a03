//! The kernel proc connector (NETLINK_CONNECTOR, CN_IDX_PROC): a thread that turns
//! fork/exec/exit events into `ProcEvent`s for the resolver. Event parsing is pure;
//! this file never reads /proc and never blocks the sender of an event.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

const NLMSG_HDR_LEN: usize = 16;
const NLMSG_DONE: u16 = 3;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const CN_MSG_LEN: usize = 20;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// A process-level event (thread events are filtered out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// A new process (not a thread) was forked.
    Fork { pid: u32 },
    /// A process called execve.
    Exec { pid: u32 },
    /// A whole process (its thread group leader) exited.
    Exit { pid: u32 },
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The subscribe message: nlmsghdr + cn_msg + `PROC_CN_MCAST_LISTEN`.
pub fn build_listen(pid: u32) -> [u8; NLMSG_HDR_LEN + CN_MSG_LEN + 4] {
    let mut b = [0u8; NLMSG_HDR_LEN + CN_MSG_LEN + 4];
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
    b[12..16].copy_from_slice(&pid.to_ne_bytes());
    let cn = &mut b[NLMSG_HDR_LEN..];
    cn[0..4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
    cn[4..8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
    cn[16..18].copy_from_slice(&4u16.to_ne_bytes());
    cn[20..24].copy_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    b
}

/// Parse every netlink message in one datagram from the connector; unknown or
/// thread-level events are skipped.
pub fn parse_events(buf: &[u8], out: &mut Vec<ProcEvent>) {
    let mut off = 0usize;
    while off + NLMSG_HDR_LEN <= buf.len() {
        let Some(len) = u32_at(buf, off).map(|l| l as usize) else {
            return;
        };
        if len < NLMSG_HDR_LEN || off + len > buf.len() {
            return;
        }
        let msg = &buf[off + NLMSG_HDR_LEN..off + len];
        if u32_at(msg, 0) == Some(CN_IDX_PROC) && u32_at(msg, 4) == Some(CN_VAL_PROC) {
            if let Some(ev) = parse_proc_event(msg.get(CN_MSG_LEN..).unwrap_or(&[])) {
                out.push(ev);
            }
        }
        off += (len + 3) & !3;
    }
}

/// Parse a `struct proc_event` (what, cpu, timestamp_ns, event_data).
pub fn parse_proc_event(p: &[u8]) -> Option<ProcEvent> {
    let what = u32_at(p, 0)?;
    match what {
        PROC_EVENT_FORK => {
            let child_pid = u32_at(p, 24)?;
            let child_tgid = u32_at(p, 28)?;
            (child_pid == child_tgid).then_some(ProcEvent::Fork { pid: child_tgid })
        }
        PROC_EVENT_EXEC => Some(ProcEvent::Exec {
            pid: u32_at(p, 20)?,
        }),
        PROC_EVENT_EXIT => {
            let pid = u32_at(p, 16)?;
            let tgid = u32_at(p, 20)?;
            (pid == tgid).then_some(ProcEvent::Exit { pid: tgid })
        }
        _ => None,
    }
}

/// The kernel serves process events only to sockets of the initial network
/// namespace. When netmond runs in another one (a container, the test lab)
/// the socket is created from a short-lived thread that joined the namespace
/// of some other process (a netlink socket stays where it was created); the
/// first namespace where subscribing works is the initial one.
pub fn open_in_init_netns() -> io::Result<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0);
    let mut tried = std::collections::HashSet::from([own]);
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let path = format!("/proc/{pid}/ns/net");
        let Ok(ino) = std::fs::metadata(&path).map(|m| m.ino()) else {
            continue;
        };
        if !tried.insert(ino) || tried.len() > 32 {
            continue;
        }
        let Ok(ns) = std::fs::File::open(&path) else {
            continue;
        };
        let r = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("procmap-cn-ns".into())
                .spawn_scoped(s, || {
                    // SAFETY: `ns` is an open namespace file for the duration of
                    // the call; setns only changes this short-lived thread.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    open()
                })?
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("setns thread panicked")))
        });
        match r {
            Ok(fd) => return Ok(fd),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Open and subscribe; fails when not root or the connector is missing.
pub fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); result checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_CONNECTOR,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh valid descriptor, owned only here.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_nl is plain old data; zeroed is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = CN_IDX_PROC;
    // SAFETY: `addr` is valid for its size during the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // A bigger receive buffer: fork storms arrive in bursts.
    let size: libc::c_int = 4 << 20;
    // SAFETY: `size` is a valid c_int for the call; failure is harmless (default kept).
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // The timeout lets the thread notice a stop request.
    nix::sys::socket::setsockopt(
        &fd,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 100_000),
    )
    .map_err(io::Error::from)?;
    let msg = build_listen(std::process::id());
    // SAFETY: sockaddr_nl zeroed is valid; kernel destination (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` and `kernel` valid for their lengths during the call.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Counters the connector thread keeps.
#[derive(Default)]
pub struct ConnectorCounters {
    pub events: AtomicU64,
    /// Events we could not queue to the resolver, plus kernel overruns (ENOBUFS).
    pub lost: AtomicU64,
}

/// Run the reader thread until `stop` is set. Events go to the resolver through a
/// bounded channel of their own (never the query queue), with counted loss.
pub fn spawn(
    fd: OwnedFd,
    tx: SyncSender<ProcEvent>,
    stop: Arc<AtomicBool>,
    counters: Arc<ConnectorCounters>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("procmap-connector".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut events = Vec::with_capacity(64);
            while !stop.load(Ordering::Relaxed) {
                // Only the kernel's events: a local process could unicast fakes.
                let n = match super::sockdiag::recv_from_kernel(&fd, &mut buf) {
                    Ok(n) => n,
                    Err(err) => match err.raw_os_error() {
                        Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                        // An overrun, or a flood from a process other than the kernel.
                        Some(libc::ENOBUFS) | None => {
                            counters.lost.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        _ => {
                            tracing::warn!(%err, "proc connector read failed; falling back to /proc rescans");
                            return;
                        }
                    },
                };
                events.clear();
                parse_events(&buf[..n], &mut events);
                for ev in events.drain(..) {
                    counters.events.fetch_add(1, Ordering::Relaxed);
                    match tx.try_send(ev) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            counters.lost.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
            }
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    fn event_msg(what: u32, words: &[u32]) -> Vec<u8> {
        let mut ev = vec![0u8; 16 + 24];
        ev[0..4].copy_from_slice(&what.to_ne_bytes());
        for (i, w) in words.iter().enumerate() {
            ev[16 + 4 * i..20 + 4 * i].copy_from_slice(&w.to_ne_bytes());
        }
        let mut cn = vec![0u8; CN_MSG_LEN];
        cn[0..4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
        cn[4..8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
        cn[16..18].copy_from_slice(&(ev.len() as u16).to_ne_bytes());
        let mut b = vec![0u8; NLMSG_HDR_LEN];
        let len = (NLMSG_HDR_LEN + cn.len() + ev.len()) as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        b.extend_from_slice(&cn);
        b.extend_from_slice(&ev);
        b
    }

    #[test]
    fn listen_message_layout() {
        let b = build_listen(42);
        assert_eq!(u32_at(&b, 0), Some(40));
        assert_eq!(u32_at(&b, 12), Some(42));
        assert_eq!(u32_at(&b, 16), Some(CN_IDX_PROC));
        assert_eq!(u32_at(&b, 20), Some(CN_VAL_PROC));
        assert_eq!(u32_at(&b, 36), Some(PROC_CN_MCAST_LISTEN));
    }

    #[test]
    fn parses_fork_exec_exit_and_skips_threads() {
        let mut all = event_msg(PROC_EVENT_FORK, &[10, 10, 11, 11]);
        all.extend(event_msg(PROC_EVENT_FORK, &[10, 10, 12, 10])); // a thread
        all.extend(event_msg(PROC_EVENT_EXEC, &[11, 11]));
        all.extend(event_msg(PROC_EVENT_EXIT, &[12, 10, 0, 0])); // a thread exits
        all.extend(event_msg(PROC_EVENT_EXIT, &[11, 11, 0, 17]));
        all.extend(event_msg(0x200, &[11, 11])); // comm change: ignored
        let mut out = Vec::new();
        parse_events(&all, &mut out);
        assert_eq!(
            out,
            vec![
                ProcEvent::Fork { pid: 11 },
                ProcEvent::Exec { pid: 11 },
                ProcEvent::Exit { pid: 11 }
            ]
        );
    }

    #[test]
    fn truncated_datagrams_do_not_panic() {
        let b = event_msg(PROC_EVENT_EXEC, &[5, 5]);
        let mut out = Vec::new();
        for cut in 0..b.len() {
            parse_events(&b[..cut], &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(parse_proc_event(&[1, 0, 0]), None);
    }
}
