//! The kernel proc connector (NETLINK_CONNECTOR, CN_IDX_PROC): a thread that turns
//! fork/exec/exit events into `ProcEvent`s for the resolver. Event parsing is pure;
//! this file never reads /proc and never blocks the sender of an event.

use std::io;
use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netlink::msg::{messages, put, u32_at, NlMsgHdr, NLMSG_DONE, NLMSG_HDRLEN};
use crate::netlink::{self, Protocol, Socket};

// Stable kernel ABI (include/uapi/linux/{connector,cn_proc}.h).
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// `struct cn_msg` (with its `struct cb_id`), without the data that follows.
#[repr(C)]
#[allow(dead_code, reason = "a layout: fields are read by offset_of!")]
struct CnMsg {
    idx: u32,
    val: u32,
    seq: u32,
    ack: u32,
    /// Length of the data after this header.
    len: u16,
    flags: u16,
}
const CN_MSG_LEN: usize = size_of::<CnMsg>();
const _: () = assert!(CN_MSG_LEN == 20);

/// The head of `struct proc_event`; `event_data` (a union) follows it.
#[repr(C)]
#[allow(dead_code, reason = "a layout: fields are read by offset_of!")]
struct ProcEventHead {
    what: u32,
    cpu: u32,
    timestamp_ns: u64,
}
const EVENT_DATA: usize = size_of::<ProcEventHead>();
const _: () = assert!(EVENT_DATA == 16);

/// `event_data.fork`.
#[repr(C)]
#[allow(dead_code, reason = "a layout: fields are read by offset_of!")]
struct ForkEvent {
    parent_pid: u32,
    parent_tgid: u32,
    child_pid: u32,
    child_tgid: u32,
}

/// `event_data.exec`.
#[repr(C)]
#[allow(dead_code, reason = "a layout: fields are read by offset_of!")]
struct ExecEvent {
    process_pid: u32,
    process_tgid: u32,
}

/// `event_data.exit` (the fields we read).
#[repr(C)]
#[allow(dead_code, reason = "a layout: fields are read by offset_of!")]
struct ExitEvent {
    process_pid: u32,
    process_tgid: u32,
    exit_code: u32,
    exit_signal: u32,
}

/// The subscribe message's length: nlmsghdr + cn_msg + the `u32` operation.
const LISTEN_LEN: usize = NLMSG_HDRLEN + CN_MSG_LEN + size_of::<u32>();

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

/// The subscribe message: nlmsghdr + cn_msg + `PROC_CN_MCAST_LISTEN`.
pub fn build_listen(pid: u32) -> [u8; LISTEN_LEN] {
    let mut b = [0u8; LISTEN_LEN];
    // The connector wants NLMSG_DONE as the type of a single-part message.
    let mut hdr = NlMsgHdr::request(NLMSG_DONE, 0, 0, LISTEN_LEN - NLMSG_HDRLEN);
    hdr.pid = pid;
    hdr.write(&mut b);
    let cn = &mut b[NLMSG_HDRLEN..];
    put(cn, offset_of!(CnMsg, idx), &CN_IDX_PROC.to_ne_bytes());
    put(cn, offset_of!(CnMsg, val), &CN_VAL_PROC.to_ne_bytes());
    let data_len = size_of::<u32>() as u16;
    put(cn, offset_of!(CnMsg, len), &data_len.to_ne_bytes());
    put(cn, CN_MSG_LEN, &PROC_CN_MCAST_LISTEN.to_ne_bytes());
    b
}

/// Parse every netlink message in one datagram from the connector; unknown or
/// thread-level events are skipped, and a malformed message ends the walk.
pub fn parse_events(buf: &[u8], out: &mut Vec<ProcEvent>) {
    for msg in messages(buf).map_while(Result::ok) {
        let p = msg.payload;
        let ours = u32_at(p, offset_of!(CnMsg, idx)) == Some(CN_IDX_PROC)
            && u32_at(p, offset_of!(CnMsg, val)) == Some(CN_VAL_PROC);
        if ours {
            if let Some(ev) = parse_proc_event(p.get(CN_MSG_LEN..).unwrap_or(&[])) {
                out.push(ev);
            }
        }
    }
}

/// Parse a `struct proc_event` (what, cpu, timestamp_ns, event_data).
pub fn parse_proc_event(p: &[u8]) -> Option<ProcEvent> {
    let what = u32_at(p, offset_of!(ProcEventHead, what))?;
    let data = |field: usize| u32_at(p, EVENT_DATA + field);
    match what {
        PROC_EVENT_FORK => {
            let child_pid = data(offset_of!(ForkEvent, child_pid))?;
            let child_tgid = data(offset_of!(ForkEvent, child_tgid))?;
            (child_pid == child_tgid).then_some(ProcEvent::Fork { pid: child_tgid })
        }
        PROC_EVENT_EXEC => Some(ProcEvent::Exec {
            pid: data(offset_of!(ExecEvent, process_tgid))?,
        }),
        PROC_EVENT_EXIT => {
            let pid = data(offset_of!(ExitEvent, process_pid))?;
            let tgid = data(offset_of!(ExitEvent, process_tgid))?;
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
pub fn open_in_init_netns() -> io::Result<Socket> {
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
        let r = crate::netns::run_in(&ns, "procmap-cn-ns", open);
        match r {
            Ok(fd) => return Ok(fd),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Open and subscribe; fails when not root or the connector is missing.
pub fn open() -> io::Result<Socket> {
    let sock = Socket::open(Protocol::Connector, CN_IDX_PROC)?;
    // A bigger receive buffer: fork storms arrive in bursts. Failure is
    // harmless (the default is kept and overruns are counted).
    let _ = sock.force_recv_buffer(4 << 20);
    // The timeout lets the thread notice a stop request.
    sock.set_recv_timeout(Duration::from_millis(100))?;
    sock.send(&build_listen(std::process::id()))?;
    Ok(sock)
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
    sock: Socket,
    tx: SyncSender<ProcEvent>,
    stop: Arc<AtomicBool>,
    counters: Arc<ConnectorCounters>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("procmap-connector".into())
        .spawn(move || {
            let mut buf = vec![0u8; netlink::RECV_BUF];
            let mut events = Vec::with_capacity(64);
            while !stop.load(Ordering::Relaxed) {
                // Only the kernel's events: a local process could unicast fakes.
                let n = match sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(err) => match err.raw_os_error() {
                        Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                        // An overrun, or a flood from a process other than the
                        // kernel, or a datagram too large for the buffer.
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
        let mut b = vec![0u8; NLMSG_HDRLEN];
        let len = (NLMSG_HDRLEN + cn.len() + ev.len()) as u32;
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
