//! sock_diag exact lookups (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY without NLM_F_DUMP):
//! request building and reply parsing are pure functions over bytes; the only I/O is
//! one send and one recv per lookup. Knows nothing of processes or /proc.
//! Also the TCP dumps of basic mode (NLM_F_DUMP with `INET_DIAG_INFO`) and the
//! TCP destroy notifications, parsed by the same pure functions.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::netlink::{self, Protocol, Socket};

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
/// `struct inet_diag_req_v2`: 8 bytes of header + 48 bytes of `inet_diag_sockid`.
const REQ_V2_LEN: usize = 56;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;

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
) -> [u8; NLMSG_HDR_LEN + REQ_V2_LEN] {
    let mut b = [0u8; NLMSG_HDR_LEN + REQ_V2_LEN];
    let len = (NLMSG_HDR_LEN + REQ_V2_LEN) as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel.
    let r = &mut b[NLMSG_HDR_LEN..];
    r[0] = family;
    r[1] = proto;
    r[2] = 0; // idiag_ext: nothing extra
    r[3] = 0;
    r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // idiag_states: all
    let (src, dst) = if proto == IPPROTO_UDP {
        (remote, local)
    } else {
        (local, remote)
    };
    // inet_diag_sockid at offset 8
    r[8..10].copy_from_slice(&src.port().to_be_bytes());
    r[10..12].copy_from_slice(&dst.port().to_be_bytes());
    r[12..28].copy_from_slice(&addr_words(src.ip()));
    r[28..44].copy_from_slice(&addr_words(dst.ip()));
    // idiag_if = 0 (any)
    r[48..56].copy_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    b
}

const NLM_F_DUMP: u16 = 0x300;
/// `INET_DIAG_INFO`: the attribute carrying `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// `SKNLGRP_INET_TCP_DESTROY` (and its IPv6 twin): multicast groups of TCP socket
/// destruction, each message an `inet_diag_msg` with the socket's last `tcp_info`.
const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
/// Offsets in `struct tcp_info` (linux/tcp.h) of `tcpi_bytes_acked` and
/// `tcpi_bytes_received` (both __u64, present since Linux 4.1).
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;

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
) -> [u8; NLMSG_HDR_LEN + REQ_V2_LEN] {
    let mut b = [0u8; NLMSG_HDR_LEN + REQ_V2_LEN];
    let len = (NLMSG_HDR_LEN + REQ_V2_LEN) as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    let r = &mut b[NLMSG_HDR_LEN..];
    r[0] = family;
    r[1] = proto;
    r[2] = ext;
    r[4..8].copy_from_slice(&states.to_ne_bytes());
    r[48..56].copy_from_slice(&[0xff; 8]);
    b
}

/// Build a dump request for every TCP socket of `family` (except TIME_WAIT and
/// request sockets, which carry no `tcp_info`), asking for `INET_DIAG_INFO`.
pub fn build_dump_request(seq: u32, family: u8) -> [u8; NLMSG_HDR_LEN + REQ_V2_LEN] {
    // TIME_WAIT (6), LISTEN (10) and NEW_SYN_RECV (12) carry no bytes.
    let states: u32 = !((1 << 6) | (1 << 10) | (1 << 12));
    build_sock_dump_request(seq, family, IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), states)
}

/// Read the byte counters from a `struct tcp_info` (the payload of `INET_DIAG_INFO`).
/// None when it is too short (a kernel older than 4.1).
pub fn parse_tcp_info(info: &[u8]) -> Option<(u64, u64)> {
    let at = |o: usize| -> Option<u64> {
        Some(u64::from_ne_bytes(info.get(o..o + 8)?.try_into().ok()?))
    };
    Some((at(TCPI_BYTES_ACKED)?, at(TCPI_BYTES_RECEIVED)?))
}

/// Parse one SOCK_DIAG_BY_FAMILY payload: `inet_diag_msg` then netlink attributes.
/// None when the message is malformed or has no usable `tcp_info`.
pub fn parse_tcp_sock(p: &[u8]) -> Option<TcpSock> {
    let diag = parse_diag_msg(p)?;
    let cookie = u64::from(u32_at(p, 44)?) | (u64::from(u32_at(p, 48)?) << 32);
    let mut at = DIAG_MSG_LEN;
    while at + 4 <= p.len() {
        let len = usize::from(u16_at(p, at)?);
        let ty = u16_at(p, at + 2)?;
        if len < 4 || at + len > p.len() {
            return None;
        }
        if ty & 0x3fff == INET_DIAG_INFO {
            let (bytes_acked, bytes_received) = parse_tcp_info(&p[at + 4..at + len])?;
            return Some(TcpSock {
                diag,
                cookie,
                bytes_acked,
                bytes_received,
            });
        }
        at += (len + 3) & !3;
    }
    None
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
    let mut at = 0;
    while at + NLMSG_HDR_LEN <= buf.len() {
        let len = u32_at(buf, at).ok_or(ParseError::Truncated)? as usize;
        let ty = u16_at(buf, at + 4).ok_or(ParseError::Truncated)?;
        if len < NLMSG_HDR_LEN || at + len > buf.len() {
            return Err(ParseError::Truncated);
        }
        let payload = &buf[at + NLMSG_HDR_LEN..at + len];
        match ty {
            SOCK_DIAG_BY_FAMILY => on_msg(payload),
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let err = u32_at(payload, 0).ok_or(ParseError::Truncated)? as i32;
                return Err(ParseError::Kernel(-err));
            }
            other => return Err(ParseError::UnexpectedType(other)),
        }
        at += (len + 3) & !3;
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

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn sockaddr_from(family: u8, port_be: &[u8], addr: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes(port_be.try_into().ok()?);
    let ip: IpAddr = if i32::from(family) == libc::AF_INET {
        let a: [u8; 4] = addr.get(..4)?.try_into().ok()?;
        IpAddr::from(a)
    } else {
        let a: [u8; 16] = addr.get(..16)?.try_into().ok()?;
        IpAddr::from(Ipv6Addr::from(a))
    };
    Some(SocketAddr::new(ip, port))
}

/// Parse an `inet_diag_msg` payload (without the netlink header).
pub fn parse_diag_msg(p: &[u8]) -> Option<DiagReply> {
    if p.len() < DIAG_MSG_LEN {
        return None;
    }
    let family = p[0];
    let state = p[1];
    let id = &p[4..52];
    let local = sockaddr_from(family, &id[0..2], &id[4..20])?;
    let remote = sockaddr_from(family, &id[2..4], &id[20..36])?;
    let uid = u32_at(p, 64)?;
    let inode = u64::from(u32_at(p, 68)?);
    Some(DiagReply {
        family,
        state,
        local,
        remote,
        uid,
        inode,
    })
}

/// Parse the kernel's answer to one non-dump request: either one SOCK_DIAG_BY_FAMILY
/// message, or NLMSG_ERROR (ENOENT = not found). Only the first message counts.
pub fn parse_reply(buf: &[u8]) -> Result<DiagAnswer, ParseError> {
    let len = u32_at(buf, 0).ok_or(ParseError::Truncated)? as usize;
    let ty = u16_at(buf, 4).ok_or(ParseError::Truncated)?;
    if len < NLMSG_HDR_LEN || len > buf.len() {
        return Err(ParseError::Truncated);
    }
    let payload = &buf[NLMSG_HDR_LEN..len];
    match ty {
        SOCK_DIAG_BY_FAMILY => parse_diag_msg(payload)
            .map(DiagAnswer::Found)
            .ok_or(ParseError::Truncated),
        NLMSG_ERROR => {
            let err = u32_at(payload, 0).ok_or(ParseError::Truncated)? as i32;
            if err == -libc::ENOENT {
                Ok(DiagAnswer::NotFound)
            } else {
                Err(ParseError::Kernel(-err))
            }
        }
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

/// Replies of another sequence (a dump or lookup abandoned after a timeout)
/// skipped before giving up.
const MAX_STRAY: usize = 256;

/// Subscription to the kernel's TCP destroy notifications (needs CAP_NET_ADMIN):
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
        self.dump(&req, |chunk| {
            parse_dump_chunk(chunk, out)?;
            Ok(std::mem::take(&mut out.done))
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
        self.dump(&req, |chunk| {
            for_each_dump_msg(chunk, |p| out.extend(parse_diag_msg(p)))
        })
    }

    /// Sends a dump request and feeds each datagram of the answer to `on_chunk`
    /// until it says the dump is done.
    fn dump(
        &mut self,
        req: &[u8],
        mut on_chunk: impl FnMut(&[u8]) -> Result<bool, ParseError>,
    ) -> io::Result<()> {
        let seq = self.seq;
        self.send(req)?;
        if self.buf.len() < netlink::RECV_BUF {
            self.buf.resize(netlink::RECV_BUF, 0);
        }
        let mut stray = 0;
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            let got = &self.buf[..n];
            if u32_at(got, 8) != Some(seq) {
                stray += 1;
                if stray > MAX_STRAY {
                    return Err(io::Error::other(
                        "sock_diag dump: replies of another sequence",
                    ));
                }
                continue;
            }
            let done =
                on_chunk(got).map_err(|e| io::Error::other(format!("sock_diag dump: {e:?}")))?;
            if done {
                return Ok(());
            }
        }
    }

    fn send(&self, req: &[u8]) -> io::Result<()> {
        self.sock.send(req)
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
        self.send(&req)?;
        // Stale replies of an earlier lookup that timed out are skipped, boundedly.
        for _ in 0..MAX_STRAY {
            let n = self.sock.recv(&mut self.buf)?;
            let got = &self.buf[..n];
            if u32_at(got, 8) != Some(seq) {
                continue;
            }
            return parse_reply(got).map_err(|e| io::Error::other(format!("{e:?}")));
        }
        Err(io::Error::other(
            "no sock_diag reply with our sequence number",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    const TCP_TIME_WAIT: u8 = 6;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn reply_bytes(
        family: u8,
        state: u8,
        l: SocketAddr,
        r: SocketAddr,
        uid: u32,
        ino: u32,
    ) -> Vec<u8> {
        let mut b = vec![0u8; NLMSG_HDR_LEN + DIAG_MSG_LEN];
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b[8..12].copy_from_slice(&7u32.to_ne_bytes());
        let p = &mut b[NLMSG_HDR_LEN..];
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
    fn tcp_msg(ino: u32, cookie: u64, acked: u64, received: u64, info_len: usize) -> Vec<u8> {
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

    fn done_msg() -> Vec<u8> {
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
