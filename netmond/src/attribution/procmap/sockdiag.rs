//! sock_diag exact lookups (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY without NLM_F_DUMP):
//! request building and reply parsing are pure functions over bytes; the only I/O is
//! one send and one recv per lookup. Knows nothing of processes or /proc.
//! Also the TCP dumps of basic mode (NLM_F_DUMP with `INET_DIAG_INFO`) and the
//! TCP destroy notifications, parsed by the same pure functions.

use std::io;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::netlink::msg::{
    attributes, messages, parse_error, put, u32_at, u64_at, NlMsgHdr, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST,
};
use crate::netlink::{self, DumpError, Protocol, Socket};

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// `struct inet_diag_sockid` (include/uapi/linux/inet_diag.h). Ports and
/// addresses are in network byte order; an IPv4 address fills the first 4
/// bytes of its 16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct InetDiagSockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}
const _: () = assert!(size_of::<InetDiagSockId>() == 48);

/// `INET_DIAG_NOCOOKIE`: match whatever cookie the socket has.
const NO_COOKIE: [u32; 2] = [u32::MAX; 2];

impl InetDiagSockId {
    fn write(&self, out: &mut [u8]) {
        put(out, offset_of!(Self, sport), &self.sport);
        put(out, offset_of!(Self, dport), &self.dport);
        put(out, offset_of!(Self, src), &self.src);
        put(out, offset_of!(Self, dst), &self.dst);
        put(
            out,
            offset_of!(Self, interface),
            &self.interface.to_ne_bytes(),
        );
        let cookie = offset_of!(Self, cookie);
        put(out, cookie, &self.cookie[0].to_ne_bytes());
        put(
            out,
            cookie + size_of::<u32>(),
            &self.cookie[1].to_ne_bytes(),
        );
    }

    fn read(b: &[u8]) -> Option<InetDiagSockId> {
        let cookie = offset_of!(Self, cookie);
        Some(InetDiagSockId {
            sport: array_at(b, offset_of!(Self, sport))?,
            dport: array_at(b, offset_of!(Self, dport))?,
            src: array_at(b, offset_of!(Self, src))?,
            dst: array_at(b, offset_of!(Self, dst))?,
            interface: u32_at(b, offset_of!(Self, interface))?,
            cookie: [u32_at(b, cookie)?, u32_at(b, cookie + size_of::<u32>())?],
        })
    }
}

fn array_at<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// `struct inet_diag_req_v2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    /// A bit per `INET_DIAG_*` attribute wanted in the answer.
    ext: u8,
    pad: u8,
    /// A bit per TCP state to match.
    states: u32,
    id: InetDiagSockId,
}
const REQ_V2_LEN: usize = size_of::<InetDiagReqV2>();
const _: () = assert!(REQ_V2_LEN == 56);
/// A whole request: netlink header and `inet_diag_req_v2`.
const REQUEST_LEN: usize = NLMSG_HDRLEN + REQ_V2_LEN;

impl InetDiagReqV2 {
    /// The complete netlink message carrying this request.
    fn message(&self, seq: u32, flags: u16) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        NlMsgHdr::request(SOCK_DIAG_BY_FAMILY, flags, seq, REQ_V2_LEN).write(&mut b);
        let r = &mut b[NLMSG_HDRLEN..];
        r[offset_of!(Self, family)] = self.family;
        r[offset_of!(Self, protocol)] = self.protocol;
        r[offset_of!(Self, ext)] = self.ext;
        put(r, offset_of!(Self, states), &self.states.to_ne_bytes());
        self.id.write(&mut r[offset_of!(Self, id)..]);
        b
    }
}

/// `struct inet_diag_msg`: the head of every answer; attributes follow it.
#[repr(C)]
#[allow(dead_code, reason = "a layout: fields are read by offset_of!")]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}
const DIAG_MSG_LEN: usize = size_of::<InetDiagMsg>();
const _: () = assert!(DIAG_MSG_LEN == 72);

/// TCP states as reported by inet_diag (`include/net/tcp_states.h`).
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_CLOSE_WAIT: u8 = 8;
pub const TCP_LISTEN: u8 = 10;

/// The part of an `inet_diag_msg` reply that attribution needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagReply {
    pub family: u8,
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub uid: u32,
    /// 0 for TIME_WAIT, request (SYN_RECV) and orphaned sockets.
    pub inode: u64,
}

/// What one lookup answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagAnswer {
    Found(DiagReply),
    /// The kernel answered ENOENT: no socket matches.
    NotFound,
}

/// Address bytes as the kernel wants them in `idiag_src`/`idiag_dst` (4 x be32).
fn addr_words(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// Build a complete netlink message: `nlmsghdr` + `inet_diag_req_v2` for an exact lookup
/// of the socket whose local end is `local` and whose peer is `remote`. `family` is
/// `AF_INET` or `AF_INET6`; the addresses must already be in that family (v4-mapped
/// v6 addresses for a v4 flow looked up as AF_INET6).
///
/// UDP quirk: the kernel's `udp_dump_one` passes `idiag_src` as the lookup's *source*
/// (the remote end of an incoming datagram) and `idiag_dst` as the local end ("src and
/// dst are swapped for historical reasons" in `net/ipv4/udp_diag.c`), so for UDP the
/// two ends are written swapped. TCP uses `idiag_src` = local.
pub fn build_request(
    seq: u32,
    family: u8,
    proto: u8,
    local: SocketAddr,
    remote: SocketAddr,
) -> [u8; REQUEST_LEN] {
    let (src, dst) = if proto == IPPROTO_UDP {
        (remote, local)
    } else {
        (local, remote)
    };
    InetDiagReqV2 {
        family,
        protocol: proto,
        ext: 0,
        pad: 0,
        states: u32::MAX, // all
        id: InetDiagSockId {
            sport: src.port().to_be_bytes(),
            dport: dst.port().to_be_bytes(),
            src: addr_words(src.ip()),
            dst: addr_words(dst.ip()),
            interface: 0, // any
            cookie: NO_COOKIE,
        },
    }
    .message(seq, NLM_F_REQUEST)
}

/// `INET_DIAG_INFO`: the attribute carrying `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// `SKNLGRP_INET_TCP_DESTROY` (and its IPv6 twin): multicast groups of TCP socket
/// destruction, each message an `inet_diag_msg` with the socket's last `tcp_info`.
const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
/// Where `struct tcp_info` (linux/tcp.h) keeps `tcpi_bytes_acked` and
/// `tcpi_bytes_received` (both __u64, present since Linux 4.1).
const TCPI_BYTES_ACKED: usize = offset_of!(libc::tcp_info, tcpi_bytes_acked);
const TCPI_BYTES_RECEIVED: usize = offset_of!(libc::tcp_info, tcpi_bytes_received);
const _: () = assert!(TCPI_BYTES_ACKED == 120 && TCPI_BYTES_RECEIVED == 128);

/// One TCP socket of a dump (or destroy notification) with its payload byte counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSock {
    pub diag: DiagReply,
    /// `idiag_cookie`: the kernel's id of the socket for its whole life (also after
    /// its owner closed it and the inode became 0).
    pub cookie: u64,
    /// `tcpi_bytes_acked`: payload bytes sent and acknowledged by the peer.
    pub bytes_acked: u64,
    /// `tcpi_bytes_received`: payload bytes received in order.
    pub bytes_received: u64,
}

/// Build a dump request for the `proto` sockets of `family` in `states` (a bit per
/// TCP state), with the extensions `ext` (a bit per `INET_DIAG_*` attribute).
pub fn build_sock_dump_request(
    seq: u32,
    family: u8,
    proto: u8,
    ext: u8,
    states: u32,
) -> [u8; REQUEST_LEN] {
    InetDiagReqV2 {
        family,
        protocol: proto,
        ext,
        pad: 0,
        states,
        id: InetDiagSockId {
            cookie: NO_COOKIE,
            ..InetDiagSockId::default()
        },
    }
    .message(seq, NLM_F_REQUEST | NLM_F_DUMP)
}

/// Build a dump request for every TCP socket of `family` (except TIME_WAIT and
/// request sockets, which carry no `tcp_info`), asking for `INET_DIAG_INFO`.
pub fn build_dump_request(seq: u32, family: u8) -> [u8; REQUEST_LEN] {
    // TIME_WAIT (6), LISTEN (10) and NEW_SYN_RECV (12) carry no bytes.
    let states: u32 = !((1 << 6) | (1 << 10) | (1 << 12));
    build_sock_dump_request(seq, family, IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), states)
}

/// Read the byte counters from a `struct tcp_info` (the payload of `INET_DIAG_INFO`).
/// None when it is too short (a kernel older than 4.1).
pub fn parse_tcp_info(info: &[u8]) -> Option<(u64, u64)> {
    Some((
        u64_at(info, TCPI_BYTES_ACKED)?,
        u64_at(info, TCPI_BYTES_RECEIVED)?,
    ))
}

/// Parse one SOCK_DIAG_BY_FAMILY payload: `inet_diag_msg` then netlink attributes.
/// None when the message is malformed or has no usable `tcp_info`.
pub fn parse_tcp_sock(p: &[u8]) -> Option<TcpSock> {
    let diag = parse_diag_msg(p)?;
    let id = InetDiagSockId::read(p.get(offset_of!(InetDiagMsg, id)..)?)?;
    let cookie = u64::from(id.cookie[0]) | (u64::from(id.cookie[1]) << 32);
    let (_, info) = attributes(p.get(DIAG_MSG_LEN..)?).find(|&(ty, _)| ty == INET_DIAG_INFO)?;
    let (bytes_acked, bytes_received) = parse_tcp_info(info)?;
    Some(TcpSock {
        diag,
        cookie,
        bytes_acked,
        bytes_received,
    })
}

/// What one datagram of a dump held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpChunk {
    pub socks: Vec<TcpSock>,
    /// NLMSG_DONE was seen: the dump is complete.
    pub done: bool,
    /// Messages that could not be parsed (counted, skipped).
    pub malformed: u64,
}

/// Parse one datagram of a dump reply or of destroy notifications: any number of
/// netlink messages, each 4-byte aligned.
pub fn parse_dump_chunk(buf: &[u8], out: &mut DumpChunk) -> Result<(), ParseError> {
    let done = for_each_dump_msg(buf, |payload| match parse_tcp_sock(payload) {
        Some(s) => out.socks.push(s),
        None => out.malformed += 1,
    })?;
    out.done |= done;
    Ok(())
}

/// Hands each SOCK_DIAG_BY_FAMILY payload of one dump datagram to `on_msg`;
/// true when the datagram ends the dump (NLMSG_DONE).
pub fn for_each_dump_msg(buf: &[u8], mut on_msg: impl FnMut(&[u8])) -> Result<bool, ParseError> {
    for m in messages(buf) {
        let m = m.map_err(|_| ParseError::Truncated)?;
        match m.ty {
            SOCK_DIAG_BY_FAMILY => on_msg(m.payload),
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = parse_error(m.payload).map_err(|_| ParseError::Truncated)?;
                return Err(ParseError::Kernel(errno));
            }
            other => return Err(ParseError::UnexpectedType(other)),
        }
    }
    Ok(false)
}

/// Why a reply could not be understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    Truncated,
    UnexpectedType(u16),
    /// The kernel returned an error other than ENOENT (positive errno).
    Kernel(i32),
}

fn sockaddr_from(family: u8, port_be: [u8; 2], addr: &[u8; 16]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes(port_be);
    let ip: IpAddr = if i32::from(family) == libc::AF_INET {
        IpAddr::from(array_at::<4>(addr, 0)?)
    } else {
        IpAddr::from(Ipv6Addr::from(*addr))
    };
    Some(SocketAddr::new(ip, port))
}

/// Parse an `inet_diag_msg` payload (without the netlink header).
pub fn parse_diag_msg(p: &[u8]) -> Option<DiagReply> {
    if p.len() < DIAG_MSG_LEN {
        return None;
    }
    let family = p[offset_of!(InetDiagMsg, family)];
    let id = InetDiagSockId::read(&p[offset_of!(InetDiagMsg, id)..])?;
    Some(DiagReply {
        family,
        state: p[offset_of!(InetDiagMsg, state)],
        local: sockaddr_from(family, id.sport, &id.src)?,
        remote: sockaddr_from(family, id.dport, &id.dst)?,
        uid: u32_at(p, offset_of!(InetDiagMsg, uid))?,
        inode: u64::from(u32_at(p, offset_of!(InetDiagMsg, inode))?),
    })
}

/// Parse the kernel's answer to one non-dump request: either one SOCK_DIAG_BY_FAMILY
/// message, or NLMSG_ERROR (ENOENT = not found). Only the first message counts.
pub fn parse_reply(buf: &[u8]) -> Result<DiagAnswer, ParseError> {
    let m = messages(buf)
        .next()
        .ok_or(ParseError::Truncated)?
        .map_err(|_| ParseError::Truncated)?;
    match m.ty {
        SOCK_DIAG_BY_FAMILY => parse_diag_msg(m.payload)
            .map(DiagAnswer::Found)
            .ok_or(ParseError::Truncated),
        NLMSG_ERROR => match parse_error(m.payload).map_err(|_| ParseError::Truncated)? {
            libc::ENOENT => Ok(DiagAnswer::NotFound),
            errno => Err(ParseError::Kernel(errno)),
        },
        NLMSG_DONE => Ok(DiagAnswer::NotFound),
        other => Err(ParseError::UnexpectedType(other)),
    }
}

/// Map a v4 socket address to its v4-mapped v6 form.
pub fn mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

/// Subscription to the kernel's TCP destroy notifications (open to any user;
/// refused only where a seccomp or LSM policy says so):
/// the final counters of sockets that went away between two dumps.
pub struct DestroyListener {
    sock: Socket,
    buf: Vec<u8>,
}

impl DestroyListener {
    pub fn open() -> io::Result<DestroyListener> {
        let groups = (1 << (SKNLGRP_INET_TCP_DESTROY - 1)) | (1 << (SKNLGRP_INET6_TCP_DESTROY - 1));
        let sock = Socket::open(Protocol::SockDiag, groups)?;
        sock.set_nonblocking()?;
        Ok(DestroyListener {
            sock,
            buf: vec![0u8; netlink::RECV_BUF],
        })
    }

    /// Everything queued since the last drain; never blocks. An overrun of the
    /// socket buffer (ENOBUFS) loses notifications: counted in `malformed`.
    pub fn drain(&mut self) -> DumpChunk {
        let mut out = DumpChunk::default();
        loop {
            match self.sock.recv(&mut self.buf) {
                Ok(n) => {
                    if parse_dump_chunk(&self.buf[..n], &mut out).is_err() {
                        out.malformed += 1;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.malformed += 1,
                Err(_) => break,
            }
        }
        out
    }
}

/// A NETLINK_SOCK_DIAG socket doing one synchronous exact lookup at a time.
pub struct SockDiag {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        let sock = Socket::open(Protocol::SockDiag, 0)?;
        // A receive timeout so a lost reply can never wedge the resolver thread.
        sock.set_recv_timeout(Duration::from_millis(200))?;
        Ok(SockDiag {
            sock,
            seq: 0,
            buf: vec![0u8; 8192],
        })
    }

    /// Dump every TCP socket of `family` with its `tcp_info` byte counters.
    pub fn dump_tcp(&mut self, family: u8, out: &mut DumpChunk) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let req = build_dump_request(self.seq, family);
        self.dump(&req, |p| match parse_tcp_sock(p) {
            Some(s) => out.socks.push(s),
            None => out.malformed += 1,
        })
    }

    /// Dump every `proto` socket of `family`, in any state: the parts attribution
    /// needs, appended to `out` (malformed messages are skipped).
    pub fn dump_sockets(
        &mut self,
        family: u8,
        proto: u8,
        out: &mut Vec<DiagReply>,
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let req = build_sock_dump_request(self.seq, family, proto, 0, u32::MAX);
        self.dump(&req, |p| out.extend(parse_diag_msg(p)))
    }

    /// Sends a dump request and hands each SOCK_DIAG_BY_FAMILY payload of the
    /// answer to `on_msg`; any other message type is an error.
    fn dump(&mut self, req: &[u8], mut on_msg: impl FnMut(&[u8])) -> io::Result<()> {
        if self.buf.len() < netlink::RECV_BUF {
            self.buf.resize(netlink::RECV_BUF, 0);
        }
        self.sock
            .dump(req, &mut self.buf, |m| match m.ty {
                SOCK_DIAG_BY_FAMILY => {
                    on_msg(m.payload);
                    Ok(())
                }
                other => Err(ParseError::UnexpectedType(other)),
            })
            .map(|_interrupted| ())
            .map_err(|e| match e {
                DumpError::Send(e) | DumpError::Recv(e) => e,
                DumpError::Kernel(e) => {
                    io::Error::new(e.kind(), format!("sock_diag dump refused: {e}"))
                }
                DumpError::Parse(e) => io::Error::other(format!("sock_diag dump: {e}")),
                DumpError::Message(e) => io::Error::other(format!("sock_diag dump: {e:?}")),
            })
    }

    /// One exact lookup. `family` is libc::AF_INET or AF_INET6 (as u8).
    pub fn lookup(
        &mut self,
        family: u8,
        proto: u8,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<DiagAnswer> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = build_request(seq, family, proto, local, remote);
        let n = self.sock.request(&req, &mut self.buf)?;
        parse_reply(&self.buf[..n]).map_err(|e| io::Error::other(format!("{e:?}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
pub(crate) mod tests {
    use super::*;

    const TCP_TIME_WAIT: u8 = 6;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    pub(crate) fn reply_bytes(
        family: u8,
        state: u8,
        l: SocketAddr,
        r: SocketAddr,
        uid: u32,
        ino: u32,
    ) -> Vec<u8> {
        let mut b = vec![0u8; NLMSG_HDRLEN + DIAG_MSG_LEN];
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b[8..12].copy_from_slice(&7u32.to_ne_bytes());
        let p = &mut b[NLMSG_HDRLEN..];
        p[0] = family;
        p[1] = state;
        p[4..6].copy_from_slice(&l.port().to_be_bytes());
        p[6..8].copy_from_slice(&r.port().to_be_bytes());
        p[8..24].copy_from_slice(&addr_words(l.ip()));
        p[24..40].copy_from_slice(&addr_words(r.ip()));
        p[64..68].copy_from_slice(&uid.to_ne_bytes());
        p[68..72].copy_from_slice(&ino.to_ne_bytes());
        b
    }

    #[test]
    fn a_reply_forged_by_another_process_is_not_believed() {
        let mut diag = SockDiag::open().unwrap();
        // Nobody listens here: the kernel answers ENOENT.
        let (l, r) = (sa("127.0.0.1:9"), sa("127.0.0.1:10"));
        let family = libc::AF_INET as u8;
        assert_eq!(diag.lookup(family, 6, l, r).unwrap(), DiagAnswer::NotFound);
        // Any local process may unicast to our port id: it queues a "found"
        // reply with the next sequence number before our request goes out.
        let mut forged = reply_bytes(family, 1, l, r, 0, 4242);
        forged[8..12].copy_from_slice(&(diag.seq + 1).to_ne_bytes());
        let attacker = Socket::open(Protocol::SockDiag, 0).unwrap();
        attacker
            .send_to(&forged, diag.sock.port_id().unwrap())
            .unwrap();
        assert_eq!(diag.lookup(family, 6, l, r).unwrap(), DiagAnswer::NotFound);
    }

    #[test]
    fn request_tcp_v4_has_local_as_src_and_no_dump_flag() {
        let b = build_request(
            9,
            libc::AF_INET as u8,
            IPPROTO_TCP,
            sa("10.0.0.1:443"),
            sa("10.0.0.2:50000"),
        );
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 20);
        assert_eq!(
            u16::from_ne_bytes(b[6..8].try_into().unwrap()),
            NLM_F_REQUEST
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 9);
        let r = &b[16..];
        assert_eq!(r[0], libc::AF_INET as u8);
        assert_eq!(r[1], 6);
        assert_eq!(&r[8..10], &443u16.to_be_bytes());
        assert_eq!(&r[10..12], &50000u16.to_be_bytes());
        assert_eq!(&r[12..16], &[10, 0, 0, 1]);
        assert_eq!(&r[28..32], &[10, 0, 0, 2]);
        assert_eq!(&r[48..56], &[0xff; 8]);
    }

    #[test]
    fn request_udp_swaps_ends() {
        let b = build_request(
            1,
            libc::AF_INET as u8,
            IPPROTO_UDP,
            sa("10.0.0.1:53"),
            sa("10.0.0.2:4000"),
        );
        let r = &b[16..];
        assert_eq!(&r[8..10], &4000u16.to_be_bytes());
        assert_eq!(&r[12..16], &[10, 0, 0, 2]);
        assert_eq!(&r[10..12], &53u16.to_be_bytes());
        assert_eq!(&r[28..32], &[10, 0, 0, 1]);
    }

    #[test]
    fn request_v6_writes_all_words() {
        let b = build_request(
            1,
            libc::AF_INET6 as u8,
            IPPROTO_TCP,
            sa("[::1]:80"),
            mapped(sa("1.2.3.4:5")),
        );
        let r = &b[16..];
        assert_eq!(r[0], libc::AF_INET6 as u8);
        assert_eq!(r[27], 1);
        assert_eq!(
            &r[28..44],
            &"::ffff:1.2.3.4".parse::<Ipv6Addr>().unwrap().octets()
        );
    }

    #[test]
    fn parses_found_reply_v4() {
        let b = reply_bytes(
            libc::AF_INET as u8,
            1,
            sa("127.0.0.1:80"),
            sa("127.0.0.1:4242"),
            1000,
            12345,
        );
        let a = parse_reply(&b).unwrap();
        assert_eq!(
            a,
            DiagAnswer::Found(DiagReply {
                family: libc::AF_INET as u8,
                state: 1,
                local: sa("127.0.0.1:80"),
                remote: sa("127.0.0.1:4242"),
                uid: 1000,
                inode: 12345
            })
        );
    }

    #[test]
    fn parses_found_reply_v6_time_wait() {
        let b = reply_bytes(
            libc::AF_INET6 as u8,
            TCP_TIME_WAIT,
            sa("[::1]:80"),
            sa("[::1]:4242"),
            0,
            0,
        );
        match parse_reply(&b).unwrap() {
            DiagAnswer::Found(r) => {
                assert_eq!(r.inode, 0);
                assert_eq!(r.state, TCP_TIME_WAIT);
                assert_eq!(r.remote, sa("[::1]:4242"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_enoent_as_not_found_and_other_errors_as_errors() {
        let mut b = vec![0u8; 36];
        b[0..4].copy_from_slice(&36u32.to_ne_bytes());
        b[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse_reply(&b), Ok(DiagAnswer::NotFound));
        b[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(parse_reply(&b), Err(ParseError::Kernel(libc::EPERM)));
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        assert_eq!(parse_reply(&[]), Err(ParseError::Truncated));
        assert_eq!(parse_reply(&[0xff; 10]), Err(ParseError::Truncated));
        let mut b = reply_bytes(2, 1, sa("1.1.1.1:1"), sa("2.2.2.2:2"), 0, 1);
        b.truncate(40);
        assert_eq!(parse_reply(&b), Err(ParseError::Truncated));
        let mut c = vec![0u8; 16];
        c[0..4].copy_from_slice(&16u32.to_ne_bytes());
        c[4..6].copy_from_slice(&99u16.to_ne_bytes());
        assert_eq!(parse_reply(&c), Err(ParseError::UnexpectedType(99)));
    }

    #[test]
    fn mapped_turns_v4_into_v4_mapped_v6() {
        assert_eq!(mapped(sa("1.2.3.4:80")), sa("[::ffff:1.2.3.4]:80"));
        assert_eq!(mapped(sa("[::1]:80")), sa("[::1]:80"));
    }

    /// One SOCK_DIAG_BY_FAMILY message with a cookie and an INET_DIAG_INFO attribute
    /// holding a `tcp_info` of `info_len` bytes (preceded by another attribute).
    pub(crate) fn tcp_msg(
        ino: u32,
        cookie: u64,
        acked: u64,
        received: u64,
        info_len: usize,
    ) -> Vec<u8> {
        let mut b = reply_bytes(
            libc::AF_INET as u8,
            1,
            sa("10.0.0.1:40000"),
            sa("10.0.0.2:80"),
            1000,
            ino,
        );
        b[16 + 44..16 + 48].copy_from_slice(&(cookie as u32).to_ne_bytes());
        b[16 + 48..16 + 52].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        // INET_DIAG_SHUTDOWN (8), 1 byte of payload, padded to 8.
        b.extend_from_slice(&5u16.to_ne_bytes());
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&[1, 0, 0, 0]);
        let mut info = vec![0u8; info_len];
        if info_len >= 136 {
            info[120..128].copy_from_slice(&acked.to_ne_bytes());
            info[128..136].copy_from_slice(&received.to_ne_bytes());
        }
        b.extend_from_slice(&((4 + info_len) as u16).to_ne_bytes());
        b.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        b.extend_from_slice(&info);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b
    }

    pub(crate) fn done_msg() -> Vec<u8> {
        let mut b = vec![0u8; 20];
        b[0..4].copy_from_slice(&20u32.to_ne_bytes());
        b[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        b
    }

    #[test]
    fn dump_request_asks_for_tcp_info_with_dump_flag() {
        let b = build_dump_request(3, libc::AF_INET6 as u8);
        assert_eq!(
            u16::from_ne_bytes(b[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        let r = &b[16..];
        assert_eq!(r[0], libc::AF_INET6 as u8);
        assert_eq!(r[1], IPPROTO_TCP);
        assert_eq!(r[2], 2, "1 << (INET_DIAG_INFO - 1)");
        let states = u32::from_ne_bytes(r[4..8].try_into().unwrap());
        assert_eq!(states & (1 << 1), 1 << 1, "ESTABLISHED");
        assert_eq!(states & (1 << 6), 0, "no TIME_WAIT");
    }

    #[test]
    fn parses_tcp_info_counters_from_a_multi_message_dump() {
        let mut buf = tcp_msg(77, 0x1122_3344_5566_7788, 1_000_000, 4242, 232);
        buf.extend(tcp_msg(0, 9, 5, 6, 136));
        buf.extend(done_msg());
        let mut out = DumpChunk::default();
        parse_dump_chunk(&buf, &mut out).unwrap();
        assert!(out.done);
        assert_eq!(out.malformed, 0);
        assert_eq!(out.socks.len(), 2);
        let a = out.socks[0];
        assert_eq!(a.diag.inode, 77);
        assert_eq!(a.diag.local, sa("10.0.0.1:40000"));
        assert_eq!(a.cookie, 0x1122_3344_5566_7788);
        assert_eq!((a.bytes_acked, a.bytes_received), (1_000_000, 4242));
        assert_eq!(out.socks[1].diag.inode, 0);
        assert_eq!(
            (out.socks[1].bytes_acked, out.socks[1].bytes_received),
            (5, 6)
        );
    }

    #[test]
    fn short_or_missing_tcp_info_is_counted_not_trusted() {
        // A tcp_info from a kernel before 4.1 (no byte counters).
        let mut buf = tcp_msg(1, 1, 0, 0, 104);
        // A message cut inside its attributes.
        let mut cut = tcp_msg(2, 2, 1, 1, 232);
        cut.truncate(16 + 72 + 10);
        let len = cut.len() as u32;
        cut[0..4].copy_from_slice(&len.to_ne_bytes());
        while !cut.len().is_multiple_of(4) {
            cut.push(0);
        }
        buf.extend(cut);
        let mut out = DumpChunk::default();
        parse_dump_chunk(&buf, &mut out).unwrap();
        assert!(out.socks.is_empty());
        assert_eq!(out.malformed, 2);
        assert!(!out.done);
        assert_eq!(parse_tcp_info(&[0u8; 135]), None);
        // A length running past the datagram is an error, not a panic.
        let mut bad = tcp_msg(3, 3, 1, 1, 232);
        bad[0..4].copy_from_slice(&9999u32.to_ne_bytes());
        assert_eq!(
            parse_dump_chunk(&bad, &mut DumpChunk::default()),
            Err(ParseError::Truncated)
        );
        for n in 0..bad.len() {
            let _ = parse_dump_chunk(&bad[..n], &mut DumpChunk::default());
            let _ = parse_tcp_sock(&bad[16..n.max(16)]);
        }
    }
}
