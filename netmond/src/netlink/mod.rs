//! The one netlink socket type of netmond (rtnetlink, sock_diag, proc
//! connector): open, bind, send to the kernel, receive only from the kernel,
//! and run single requests and multipart dumps with sequence checks. Framing
//! lives in `msg`; each caller owns its protocol's messages.

pub mod msg;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};

pub use msg::ParseError;

/// Datagrams from other senders skipped per receive before giving up: a local
/// process flooding our port id cannot keep a reader spinning.
const MAX_STRAY: usize = 256;

/// Buffer that holds any one datagram the kernel sends us: it sizes dump
/// datagrams from our `recv` length but caps them at about 32 KiB.
pub const RECV_BUF: usize = 64 * 1024;

/// The netlink families netmond speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `NETLINK_ROUTE`: links and addresses.
    Route,
    /// `NETLINK_SOCK_DIAG`: socket lookups, dumps and destroy notifications.
    SockDiag,
    /// `NETLINK_CONNECTOR`: the proc connector's process events.
    Connector,
}

impl Protocol {
    fn number(self) -> isize {
        match self {
            Protocol::Route => netlink_sys::protocols::NETLINK_ROUTE,
            Protocol::SockDiag => netlink_sys::protocols::NETLINK_SOCK_DIAG,
            Protocol::Connector => netlink_sys::protocols::NETLINK_CONNECTOR,
        }
    }
}

/// A netlink socket bound to a port id the kernel picks. A netlink socket
/// stays in the network namespace of the thread that created it.
#[derive(Debug)]
pub struct Socket {
    sock: netlink_sys::Socket,
}

impl Socket {
    /// Opens a socket of `protocol` bound to the multicast `groups` (a bit
    /// mask; 0: only replies to our own requests).
    pub fn open(protocol: Protocol, groups: u32) -> io::Result<Socket> {
        let mut sock = netlink_sys::Socket::new(protocol.number())?;
        sock.bind(&netlink_sys::SocketAddr::new(0, groups))?;
        Ok(Socket { sock })
    }

    /// Makes `recv` return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        self.sock.set_non_blocking(true)
    }

    /// Asks for a receive buffer of `bytes` (capped by `rmem_max`).
    pub fn set_recv_buffer(&self, bytes: usize) -> io::Result<()> {
        setsockopt(&self.sock, sockopt::RcvBuf, &bytes).map_err(io::Error::from)
    }

    /// Sets a receive buffer of `bytes` beyond `rmem_max` (needs CAP_NET_ADMIN).
    pub fn force_recv_buffer(&self, bytes: usize) -> io::Result<()> {
        setsockopt(&self.sock, sockopt::RcvBufForce, &bytes).map_err(io::Error::from)
    }

    /// Bounds how long a blocking `recv` waits (then `WouldBlock`).
    pub fn set_recv_timeout(&self, timeout: Duration) -> io::Result<()> {
        let tv = nix::sys::time::TimeVal::new(
            timeout.as_secs().try_into().unwrap_or(i64::MAX),
            timeout.subsec_micros().into(),
        );
        setsockopt(&self.sock, sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)
    }

    /// The port id the kernel bound this socket to.
    pub fn port_id(&self) -> io::Result<u32> {
        let mut addr = netlink_sys::SocketAddr::new(0, 0);
        self.sock.get_address(&mut addr)?;
        Ok(addr.port_number())
    }

    /// Sends one whole request to the kernel (port id 0), retrying on EINTR.
    pub fn send(&self, req: &[u8]) -> io::Result<()> {
        self.send_to(req, 0)
    }

    /// Sends one datagram to port id `port` (0: the kernel).
    pub fn send_to(&self, req: &[u8], port: u32) -> io::Result<()> {
        let to = netlink_sys::SocketAddr::new(port, 0);
        loop {
            match self.sock.send_to(req, &to, 0) {
                Ok(n) if n == req.len() => return Ok(()),
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "short netlink send",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives one datagram sent by the kernel (port id 0) into `buf` and
    /// returns its length. Any local process may unicast to our port id: what
    /// it sends is dropped, and after `MAX_STRAY` such datagrams in a row this
    /// gives up with an error of kind `Other`. Retries on EINTR. A datagram
    /// larger than `buf` is an `InvalidData` error (its tail is lost).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut stray = 0;
        loop {
            let capacity = buf.len();
            let mut into: &mut [u8] = buf;
            let (n, from) = match self.sock.recv_from(&mut into, libc::MSG_TRUNC) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if from.port_number() != 0 {
                stray += 1;
                if stray >= MAX_STRAY {
                    return Err(io::Error::other(
                        "netlink socket flooded by a process other than the kernel",
                    ));
                }
                continue;
            }
            if n > capacity {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("netlink datagram of {n} bytes truncated to {capacity}"),
                ));
            }
            return Ok(n);
        }
    }

    /// Sends one request that `req`'s header numbers and receives into `buf`
    /// the first datagram that answers it (a late answer to an earlier
    /// request that timed out is skipped, at most `MAX_STRAY` in a row).
    /// Returns the answer's length. One send and, normally, one receive.
    pub fn request(&self, req: &[u8], buf: &mut [u8]) -> io::Result<usize> {
        let seq = request_seq(req)?;
        self.send(req)?;
        for _ in 0..MAX_STRAY {
            let n = self.recv(buf)?;
            if msg::NlMsgHdr::read(&buf[..n]).map(|h| h.seq) == Some(seq) {
                return Ok(n);
            }
        }
        Err(io::Error::other(
            "no netlink reply with our sequence number",
        ))
    }

    /// Sends the dump request `req` and hands each message of its multipart
    /// answer to `on_msg`, until `NLMSG_DONE` (or an ACK). Messages of other
    /// sequence numbers (the tail of an abandoned dump) are skipped, at most
    /// `MAX_STRAY` datagrams in a row. `NLMSG_ERROR` is a `Kernel` error,
    /// `NLMSG_OVERRUN` a `Recv` error of ENOBUFS (as a socket overrun is);
    /// `NLMSG_NOOP` is skipped. Returns whether the kernel flagged the dump
    /// inconsistent (`NLM_F_DUMP_INTR`: changed while it was taken).
    pub fn dump<E>(
        &self,
        req: &[u8],
        buf: &mut [u8],
        mut on_msg: impl FnMut(&msg::NlMsg<'_>) -> Result<(), E>,
    ) -> Result<bool, DumpError<E>> {
        let seq = request_seq(req).map_err(DumpError::Send)?;
        self.send(req).map_err(DumpError::Send)?;
        let mut interrupted = false;
        let mut stray = 0;
        loop {
            let n = self.recv(buf).map_err(DumpError::Recv)?;
            let mut ours = false;
            for m in msg::messages(&buf[..n]) {
                let m = m.map_err(DumpError::Parse)?;
                if m.seq != seq {
                    continue;
                }
                ours = true;
                interrupted |= m.flags & msg::NLM_F_DUMP_INTR != 0;
                match m.ty {
                    msg::NLMSG_DONE => return Ok(interrupted),
                    msg::NLMSG_ERROR => {
                        match msg::parse_error(m.payload).map_err(DumpError::Parse)? {
                            // An ACK: a dump is not acked, but it ends the reply anyway.
                            0 => return Ok(interrupted),
                            errno => {
                                return Err(DumpError::Kernel(io::Error::from_raw_os_error(errno)))
                            }
                        }
                    }
                    msg::NLMSG_OVERRUN => {
                        return Err(DumpError::Recv(io::Error::from_raw_os_error(libc::ENOBUFS)))
                    }
                    msg::NLMSG_NOOP => {}
                    _ => on_msg(&m).map_err(DumpError::Message)?,
                }
            }
            if ours {
                stray = 0;
            } else {
                stray += 1;
                if stray >= MAX_STRAY {
                    return Err(DumpError::Recv(io::Error::other(
                        "netlink dump: only replies of other sequence numbers",
                    )));
                }
            }
        }
    }
}

/// The sequence number in a request's header.
fn request_seq(req: &[u8]) -> io::Result<u32> {
    msg::NlMsgHdr::read(req).map(|h| h.seq).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "netlink request without a header",
        )
    })
}

/// Why a dump failed. `E` is what the caller's message handler returned.
#[derive(Debug, thiserror::Error)]
pub enum DumpError<E> {
    #[error("cannot send the netlink request")]
    Send(#[source] io::Error),
    #[error("cannot read the netlink reply")]
    Recv(#[source] io::Error),
    #[error("malformed netlink reply")]
    Parse(#[source] ParseError),
    #[error("the kernel refused the netlink request")]
    Kernel(#[source] io::Error),
    #[error("unusable message in the netlink reply: {0:?}")]
    Message(E),
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    /// A netlink header of type NLMSG_NOOP, as another process could forge one.
    fn forged() -> [u8; msg::NLMSG_HDRLEN] {
        let mut b = [0u8; msg::NLMSG_HDRLEN];
        msg::NlMsgHdr::request(msg::NLMSG_NOOP, 0, 1, 0).write(&mut b);
        b
    }

    #[test]
    fn datagrams_from_other_processes_are_dropped() {
        let ours = Socket::open(Protocol::SockDiag, 0).unwrap();
        ours.set_nonblocking().unwrap();
        let attacker = Socket::open(Protocol::SockDiag, 0).unwrap();
        attacker
            .send_to(&forged(), ours.port_id().unwrap())
            .unwrap();
        let mut buf = [0u8; 256];
        let e = ours.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
    }

    #[test]
    fn a_flood_from_another_process_ends_the_receive_with_an_error() {
        let ours = Socket::open(Protocol::SockDiag, 0).unwrap();
        // Room for the whole flood (needs CAP_NET_ADMIN, like netmond).
        ours.force_recv_buffer(4 << 20).unwrap();
        let attacker = Socket::open(Protocol::SockDiag, 0).unwrap();
        let port = ours.port_id().unwrap();
        for _ in 0..MAX_STRAY + 10 {
            attacker.send_to(&forged(), port).unwrap();
        }
        let mut buf = [0u8; 256];
        let e = ours.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Other, "{e}");
    }

    #[test]
    fn replies_come_from_the_kernel_and_fit_the_buffer() {
        // An rtnetlink dump of links: the loopback link at least.
        let sock = Socket::open(Protocol::Route, 0).unwrap();
        let mut req = vec![0u8; msg::NLMSG_HDRLEN + 16];
        let flags = msg::NLM_F_REQUEST | msg::NLM_F_DUMP;
        msg::NlMsgHdr::request(18, flags, 5, 16).write(&mut req); // RTM_GETLINK
        sock.send(&req).unwrap();
        let mut buf = vec![0u8; RECV_BUF];
        let n = sock.recv(&mut buf).unwrap();
        let first = msg::messages(&buf[..n]).next().unwrap().unwrap();
        assert_eq!(first.seq, 5);
        // Too small a buffer is an error, not a silently cut datagram.
        sock.send(&req).unwrap();
        let e = sock.recv(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }

    /// `RTM_GETLINK` for the loopback link (ifindex 1), or a dump of all links.
    fn getlink(seq: u32, dump: bool) -> Vec<u8> {
        const RTM_GETLINK: u16 = 18;
        const IFINFOMSG_LEN: usize = 16;
        let mut req = vec![0u8; msg::NLMSG_HDRLEN + IFINFOMSG_LEN];
        let flags = msg::NLM_F_REQUEST | if dump { msg::NLM_F_DUMP } else { 0 };
        msg::NlMsgHdr::request(RTM_GETLINK, flags, seq, IFINFOMSG_LEN).write(&mut req);
        if !dump {
            req[msg::NLMSG_HDRLEN + 4..msg::NLMSG_HDRLEN + 8].copy_from_slice(&1i32.to_ne_bytes());
        }
        req
    }

    #[test]
    fn a_request_skips_the_late_answer_to_an_earlier_one() {
        let sock = Socket::open(Protocol::Route, 0).unwrap();
        sock.send(&getlink(1, false)).unwrap(); // never read: a "timed out" request
        let mut buf = vec![0u8; RECV_BUF];
        let n = sock.request(&getlink(2, false), &mut buf).unwrap();
        let answer = msg::messages(&buf[..n]).next().unwrap().unwrap();
        assert_eq!((answer.ty, answer.seq), (16, 2), "RTM_NEWLINK of request 2");
    }

    #[test]
    fn a_dump_hands_over_every_message_until_done() {
        let sock = Socket::open(Protocol::Route, 0).unwrap();
        let mut buf = vec![0u8; RECV_BUF];
        let mut links = 0;
        let dump = sock.dump(&getlink(3, true), &mut buf, |m| {
            assert_eq!((m.ty, m.seq), (16, 3));
            links += 1;
            Ok::<(), ()>(())
        });
        assert!(dump.is_ok(), "{dump:?}");
        assert!(links >= 1, "at least the loopback link");
        // A refused request is a Kernel error carrying the errno.
        let mut bad = getlink(4, true);
        bad[4..6].copy_from_slice(&99u16.to_ne_bytes()); // no such message type
        match sock.dump(&bad, &mut buf, |_| Ok::<(), ()>(())) {
            Err(DumpError::Kernel(e)) => assert!(e.raw_os_error().is_some(), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
