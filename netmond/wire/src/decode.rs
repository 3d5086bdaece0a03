//! Frame -> `PacketMeta`: link, IP and transport headers by the link type pcap reports.
//! Pure hot path: no allocation, no logging, no I/O, never panics on any input.
//! Bytes come from IP header lengths (design.md §2), never from the captured length,
//! and never exceed what the frame really carried (a header may lie).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::classify::{self, AppProto, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    RawIp,
    Null,
    Loop,
}

impl LinkType {
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        match dlt {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            // 12 is DLT_RAW on most platforms, 101 is LINKTYPE_RAW in files;
            // 228/229 are raw IPv4/IPv6, which the version nibble tells apart.
            12 | 101 | 228 | 229 => Some(LinkType::RawIp),
            0 => Some(LinkType::Null),
            108 => Some(LinkType::Loop),
            _ => None,
        }
    }
}

/// Direction the kernel recorded for the packet (cooked captures only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PktDir {
    Unknown,
    Incoming,
    Outgoing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    None,
    /// Offset 0 with more fragments to come: carries the ports.
    First,
    /// Offset > 0: no transport header, ports are 0.
    Later,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number of the transport (after IPv6 extension headers).
    pub proto: u8,
    /// 0 when the protocol has none; the ICMP echo identifier for echo messages.
    pub src_port: u16,
    pub dst_port: u16,
    /// Layer-3 bytes per design.md §2.
    pub l3_len: u32,
    pub tcp_flags: u8,
    /// TCP or UDP payload bytes as the headers declare them (not what the capture
    /// kept); 0 for other protocols and headers cut by snaplen.
    pub payload_len: u32,
    pub fragment: Fragment,
    /// IPv4 identification or IPv6 fragment identification; 0 when not fragmented.
    pub frag_id: u32,
    pub dir_hint: PktDir,
    pub app: AppProto,
    /// The IP header claimed more bytes than the frame carried on the wire;
    /// `l3_len` was cut to the frame. Counted as malformed by the capture.
    pub len_forged: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame ends before the link or IP header does.
    Truncated,
    /// A valid frame that does not carry IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp,
    /// An IP header that cannot be right (bad version, header length).
    BadHeader,
    /// A link header we do not decode (unknown address family, ...).
    Unsupported,
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ_OLD: u16 = 0x9100;
const ETH_P_PPPOE_SESS: u16 = 0x8864;

/// Which IP version the link layer announced.
#[derive(Clone, Copy)]
enum Net {
    V4,
    V6,
}

/// Decodes one captured frame. `orig_len` is the length on the wire: it bounds
/// the IP length field (a forged 65,535 in a 60-byte frame counts 46 bytes) and
/// replaces it when unusable (0 on GSO/TSO super-packets).
pub fn decode(link: LinkType, frame: &[u8], orig_len: u32) -> Result<PacketMeta, DecodeError> {
    let (net, off, dir) = link_header(link, frame)?;
    let ip = frame.get(off..).ok_or(DecodeError::Truncated)?;
    let fallback_len = orig_len.saturating_sub(off as u32);
    let mut meta = match net {
        Net::V4 => ipv4(ip, fallback_len)?,
        Net::V6 => ipv6(ip, fallback_len)?,
    };
    meta.dir_hint = dir;
    Ok(meta)
}

fn be16(b: &[u8], at: usize) -> Result<u16, DecodeError> {
    match b.get(at..at + 2) {
        Some(&[x, y]) => Ok(u16::from_be_bytes([x, y])),
        _ => Err(DecodeError::Truncated),
    }
}

fn byte(b: &[u8], at: usize) -> Result<u8, DecodeError> {
    b.get(at).copied().ok_or(DecodeError::Truncated)
}

fn link_header(link: LinkType, f: &[u8]) -> Result<(Net, usize, PktDir), DecodeError> {
    match link {
        LinkType::Ethernet => {
            let (net, off) = ethertype_chain(f, 12)?;
            Ok((net, off, PktDir::Unknown))
        }
        LinkType::LinuxSll => {
            let dir = sll_dir(be16(f, 0)?);
            let (net, off) = ethertype_chain(f, 14)?;
            Ok((net, off, dir))
        }
        LinkType::LinuxSll2 => {
            let hdr = f.get(..20).ok_or(DecodeError::Truncated)?;
            let dir = sll_dir(u16::from(hdr[10]));
            let (net, off) = match u16::from_be_bytes([hdr[0], hdr[1]]) {
                ETH_P_IP => (Net::V4, 20),
                ETH_P_IPV6 => (Net::V6, 20),
                // A VLAN tag left in the payload: TCI, then the inner ethertype.
                ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_OLD => ethertype_chain(f, 22)?,
                _ => return Err(DecodeError::NotIp),
            };
            Ok((net, off, dir))
        }
        LinkType::RawIp => {
            let net = match byte(f, 0)? >> 4 {
                4 => Net::V4,
                6 => Net::V6,
                _ => return Err(DecodeError::BadHeader),
            };
            Ok((net, 0, PktDir::Unknown))
        }
        LinkType::Null | LinkType::Loop => {
            let raw: [u8; 4] = f
                .get(0..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(DecodeError::Truncated)?;
            // NULL is in the capturing host's byte order, which a replayed file
            // need not share; address families are small, so one order fits.
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(raw)
            } else {
                let le = u32::from_le_bytes(raw);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes(raw)
                }
            };
            let net = match family {
                2 => Net::V4,
                // Linux, NetBSD/OpenBSD, FreeBSD, macOS values of AF_INET6.
                10 | 24 | 28 | 30 => Net::V6,
                _ => return Err(DecodeError::Unsupported),
            };
            Ok((net, 4, PktDir::Unknown))
        }
    }
}

fn sll_dir(pkttype: u16) -> PktDir {
    match pkttype {
        0..=3 => PktDir::Incoming,
        4 => PktDir::Outgoing,
        _ => PktDir::Unknown,
    }
}

/// Follows an ethertype at `at` through VLAN tags and PPPoE to an IP header.
fn ethertype_chain(f: &[u8], mut at: usize) -> Result<(Net, usize), DecodeError> {
    // Deeper stacks than this do not occur; the bound keeps junk cheap.
    for _ in 0..8 {
        match be16(f, at)? {
            ETH_P_IP => return Ok((Net::V4, at + 2)),
            ETH_P_IPV6 => return Ok((Net::V6, at + 2)),
            ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_OLD => at += 4,
            ETH_P_PPPOE_SESS => {
                // 6-byte PPPoE header, then the 2-byte PPP protocol.
                return match be16(f, at + 2 + 6)? {
                    0x0021 => Ok((Net::V4, at + 2 + 8)),
                    0x0057 => Ok((Net::V6, at + 2 + 8)),
                    _ => Err(DecodeError::NotIp),
                };
            }
            _ => return Err(DecodeError::NotIp),
        }
    }
    Err(DecodeError::NotIp)
}

/// The claimed IP length, unless it exceeds `wire` (the frame's original
/// length minus the link header): then `wire`, flagged as a lie.
fn bounded(claimed: u32, wire: u32) -> (u32, bool) {
    if claimed > wire {
        (wire, true)
    } else {
        (claimed, false)
    }
}

fn ipv4(ip: &[u8], fallback_len: u32) -> Result<PacketMeta, DecodeError> {
    let h: &[u8; 20] = ip
        .get(..20)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(DecodeError::BadHeader);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(DecodeError::BadHeader);
    }
    let total = u16::from_be_bytes([h[2], h[3]]);
    let (l3_len, len_forged) = if total == 0 {
        (fallback_len, false)
    } else if usize::from(total) < ihl {
        return Err(DecodeError::BadHeader);
    } else {
        bounded(u32::from(total), fallback_len)
    };
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let fragment = match (frag & 0x1fff != 0, frag & 0x2000 != 0) {
        (true, _) => Fragment::Later,
        (false, true) => Fragment::First,
        (false, false) => Fragment::None,
    };
    let frag_id = if fragment == Fragment::None {
        0
    } else {
        u32::from(u16::from_be_bytes([h[4], h[5]]))
    };
    let proto = h[9];
    let mut meta = PacketMeta {
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        proto,
        src_port: 0,
        dst_port: 0,
        l3_len,
        tcp_flags: 0,
        payload_len: 0,
        fragment,
        frag_id,
        dir_hint: PktDir::Unknown,
        app: AppProto::Unknown,
        len_forged,
    };
    if fragment != Fragment::Later {
        // Ethernet pads short frames: the IP length, not the capture, ends the payload.
        let end = if total == 0 {
            ip.len()
        } else {
            ip.len().min(usize::from(total))
        };
        let l4 = ip.get(ihl..end).unwrap_or(&[]);
        let l4_len = l3_len.saturating_sub(ihl as u32);
        transport(&mut meta, l4, l4_len);
    }
    Ok(meta)
}

fn ipv6(ip: &[u8], fallback_len: u32) -> Result<PacketMeta, DecodeError> {
    let h: &[u8; 40] = ip
        .get(..40)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(DecodeError::BadHeader);
    }
    let payload_len = u16::from_be_bytes([h[4], h[5]]);
    let (l3_len, len_forged) = if payload_len == 0 {
        // Jumbograms and BIG TCP super-packets leave the field at 0.
        (fallback_len, false)
    } else {
        bounded(40 + u32::from(payload_len), fallback_len)
    };
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&h[24..40]);
    let mut meta = PacketMeta {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        proto: h[6],
        src_port: 0,
        dst_port: 0,
        l3_len,
        tcp_flags: 0,
        payload_len: 0,
        fragment: Fragment::None,
        frag_id: 0,
        dir_hint: PktDir::Unknown,
        app: AppProto::Unknown,
        len_forged,
    };
    let end = if payload_len == 0 {
        ip.len()
    } else {
        ip.len().min(40 + usize::from(payload_len))
    };
    let mut rest = ip.get(40..end).unwrap_or(&[]);
    // Where `rest` starts within the IPv6 packet.
    let mut at = 40u32;
    // A bounded walk: real packets carry a few extension headers at most.
    for _ in 0..8 {
        let len = match meta.proto {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
            0 | 43 | 60 | 135 | 139 | 140 => match rest.get(1) {
                Some(&l) => (usize::from(l) + 1) * 8,
                None => return Ok(meta),
            },
            44 => {
                let Some(fh) = rest.get(..8) else {
                    return Ok(meta);
                };
                let off_flags = u16::from_be_bytes([fh[2], fh[3]]);
                meta.frag_id = u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]);
                meta.fragment = if off_flags & 0xfff8 != 0 {
                    Fragment::Later
                } else if off_flags & 1 != 0 {
                    Fragment::First
                } else {
                    // An atomic fragment: a whole packet in one piece.
                    Fragment::None
                };
                if meta.fragment == Fragment::Later {
                    meta.proto = fh[0];
                    return Ok(meta);
                }
                8
            }
            51 => match rest.get(1) {
                Some(&l) => (usize::from(l) + 2) * 4,
                None => return Ok(meta),
            },
            _ => {
                // Transport (or ESP / no-next-header, which have no ports).
                let l4_len = meta.l3_len.saturating_sub(at);
                transport(&mut meta, rest, l4_len);
                return Ok(meta);
            }
        };
        let Some(&next) = rest.first() else {
            return Ok(meta);
        };
        meta.proto = next;
        rest = rest.get(len..).unwrap_or(&[]);
        at = at.saturating_add(len as u32);
        if rest.is_empty() {
            // Truncated inside the chain: keep the bytes, ports stay unknown.
            return Ok(meta);
        }
    }
    Ok(meta)
}

/// Fills ports, flags, payload length and app from the transport header, whose
/// declared length (header included) is `l4_len`. A header cut by snaplen leaves
/// ports at 0 rather than failing: the bytes still count.
fn transport(meta: &mut PacketMeta, l4: &[u8], l4_len: u32) {
    let payload: &[u8] = match meta.proto {
        IPPROTO_TCP => {
            let Some(h) = l4.get(..14) else { return };
            meta.src_port = u16::from_be_bytes([h[0], h[1]]);
            meta.dst_port = u16::from_be_bytes([h[2], h[3]]);
            meta.tcp_flags = h[13];
            let data_off = usize::from(h[12] >> 4) * 4;
            if data_off < 20 {
                &[]
            } else {
                meta.payload_len = l4_len.saturating_sub(data_off as u32);
                l4.get(data_off..).unwrap_or(&[])
            }
        }
        IPPROTO_UDP => {
            let Some(h) = l4.get(..8) else { return };
            meta.src_port = u16::from_be_bytes([h[0], h[1]]);
            meta.dst_port = u16::from_be_bytes([h[2], h[3]]);
            meta.payload_len = l4_len.saturating_sub(8);
            &l4[8..]
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let Some(h) = l4.get(..8) else { return };
            let echo = if meta.proto == IPPROTO_ICMP {
                matches!(h[0], 0 | 8)
            } else {
                matches!(h[0], 128 | 129)
            };
            if echo {
                let id = u16::from_be_bytes([h[4], h[5]]);
                meta.src_port = id;
                meta.dst_port = id;
            }
            return;
        }
        _ => &[],
    };
    meta.app = classify::classify(meta.proto, meta.src_port, meta.dst_port, payload);
}

/// The transport payload of a TCP or UDP packet (what the capture holds of
/// it), for the name sniffers. Not used on the bulk hot path. IPv6 extension
/// headers are not walked here: such packets yield `None`.
pub fn l4_payload(link: LinkType, frame: &[u8]) -> Option<&[u8]> {
    let (net, off, _) = link_header(link, frame).ok()?;
    let ip = frame.get(off..)?;
    let (proto, l4) = match net {
        Net::V4 => {
            let ihl = usize::from(*ip.first()? & 0x0f) * 4;
            let total = usize::from(be16(ip, 2).ok()?);
            let frag = be16(ip, 6).ok()?;
            if ihl < 20 || frag & 0x1fff != 0 {
                return None;
            }
            let end = if total == 0 {
                ip.len()
            } else {
                ip.len().min(total)
            };
            (*ip.get(9)?, ip.get(ihl..end)?)
        }
        Net::V6 => {
            let plen = usize::from(be16(ip, 4).ok()?);
            let end = if plen == 0 {
                ip.len()
            } else {
                ip.len().min(40 + plen)
            };
            (*ip.get(6)?, ip.get(40..end)?)
        }
    };
    match proto {
        IPPROTO_TCP => {
            let data_off = usize::from(*l4.get(12)? >> 4) * 4;
            if data_off < 20 {
                return None;
            }
            l4.get(data_off..)
        }
        IPPROTO_UDP => l4.get(8..),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];

    fn ipv4_header(
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        l4_len: usize,
        options: &[u8],
        frag: u16,
        id: u16,
    ) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let ihl = 20 + options.len();
        let total = (ihl + l4_len) as u16;
        let mut h = vec![0x40 | (ihl / 4) as u8, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(options);
        h
    }

    fn tcp_header(sp: u16, dp: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sp.to_be_bytes());
        t.extend_from_slice(&dp.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend_from_slice(payload);
        t
    }

    fn udp_header(sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sp.to_be_bytes());
        u.extend_from_slice(&dp.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn eth(dst_mac: [u8; 6], vlans: &[u16], ethertype: u16, body: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&MAC_B);
        for tpid in vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&[0x00, 0x64]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn build_tcp_v4(
        src: [u8; 4],
        sp: u16,
        dst: [u8; 4],
        dp: u16,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let tcp = tcp_header(sp, dp, flags, payload);
        let mut ip = ipv4_header(src, dst, 6, tcp.len(), &[], 0, 0);
        ip.extend_from_slice(&tcp);
        ip
    }

    fn build_udp_v4(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, payload: &[u8]) -> Vec<u8> {
        let udp = udp_header(sp, dp, payload);
        let mut ip = ipv4_header(src, dst, 17, udp.len(), &[], 0, 0);
        ip.extend_from_slice(&udp);
        ip
    }

    fn ipv6_header(next: u8, payload_len: u16) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&payload_len.to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        h
    }

    /// IPv6 packet with the given extension headers (each `(type, body)`, body
    /// padded to the header's unit) and a final transport of `proto`.
    fn build_v6(exts: &[(u8, Vec<u8>)], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut chain = Vec::new();
        for (i, (_, body)) in exts.iter().enumerate() {
            let next = exts.get(i + 1).map_or(proto, |e| e.0);
            chain.push(next);
            chain.extend_from_slice(body);
        }
        chain.extend_from_slice(l4);
        let first = exts.first().map_or(proto, |e| e.0);
        let mut p = ipv6_header(first, chain.len() as u16);
        p.extend_from_slice(&chain);
        p
    }

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    #[test]
    fn from_dlt_maps_known_link_types() {
        assert_eq!(LinkType::from_dlt(1), Some(LinkType::Ethernet));
        assert_eq!(LinkType::from_dlt(113), Some(LinkType::LinuxSll));
        assert_eq!(LinkType::from_dlt(276), Some(LinkType::LinuxSll2));
        for raw in [12, 101, 228, 229] {
            assert_eq!(LinkType::from_dlt(raw), Some(LinkType::RawIp));
        }
        assert_eq!(LinkType::from_dlt(0), Some(LinkType::Null));
        assert_eq!(LinkType::from_dlt(108), Some(LinkType::Loop));
        assert_eq!(LinkType::from_dlt(105), None);
    }

    #[test]
    fn ethernet_tcp_v4_yields_ports_flags_and_ip_length() {
        let ip = build_tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 443, TCP_SYN, b"");
        let f = eth(MAC_A, &[], 0x0800, &ip);
        let m = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!(m.src, v4([10, 0, 0, 1]));
        assert_eq!(m.dst, v4([10, 0, 0, 2]));
        assert_eq!((m.proto, m.src_port, m.dst_port), (6, 40000, 443));
        assert_eq!(m.l3_len, 40);
        assert_eq!(m.payload_len, 0);
        assert_eq!(m.tcp_flags, TCP_SYN);
        assert_eq!(m.fragment, Fragment::None);
        assert_eq!(m.dir_hint, PktDir::Unknown);
        assert_eq!(m.app, AppProto::Tls);
    }

    #[test]
    fn destination_mac_starting_with_ip_version_nibble_is_still_ethernet() {
        // bandwhich guesses raw IP from a first byte of 0x45 and loses this frame.
        let ip = build_udp_v4([10, 0, 0, 1], 5000, [10, 0, 0, 2], 6000, b"hello");
        for first in [0x45, 0x60] {
            let f = eth([first, 0, 0x5e, 0, 0, 1], &[], 0x0800, &ip);
            let m = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
            assert_eq!((m.src_port, m.dst_port, m.l3_len), (5000, 6000, 33));
        }
    }

    #[test]
    fn vlan_and_qinq_tags_are_skipped() {
        let ip = build_tcp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, TCP_ACK, b"");
        for tags in [&[0x8100][..], &[0x88a8, 0x8100], &[0x9100, 0x8100, 0x8100]] {
            let f = eth(MAC_A, tags, 0x0800, &ip);
            let m = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
            assert_eq!((m.src_port, m.dst_port), (1, 2), "tags {tags:x?}");
        }
    }

    #[test]
    fn non_ip_ethertype_is_not_ip() {
        let f = eth(MAC_A, &[], 0x0806, &[0u8; 28]);
        assert_eq!(decode(LinkType::Ethernet, &f, 42), Err(DecodeError::NotIp));
    }

    #[test]
    fn ethernet_padding_is_not_counted_or_classified() {
        let ip = build_tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 5555, TCP_ACK, b"");
        let mut f = eth(MAC_A, &[], 0x0800, &ip);
        f.extend_from_slice(b"GET "); // padding that looks like HTTP
        f.resize(60, 0);
        let m = decode(LinkType::Ethernet, &f, 60).unwrap();
        assert_eq!(m.l3_len, 40);
        assert_eq!(m.app, AppProto::Unknown);
    }

    #[test]
    fn bytes_come_from_ip_header_when_snaplen_truncates() {
        let ip = build_tcp_v4(
            [10, 0, 0, 1],
            40000,
            [10, 0, 0, 2],
            5201,
            TCP_ACK,
            &[0u8; 1448],
        );
        let f = eth(MAC_A, &[], 0x0800, &ip);
        let m = decode(LinkType::Ethernet, &f[..128], f.len() as u32).unwrap();
        assert_eq!(m.l3_len, 1488);
        assert_eq!((m.src_port, m.dst_port), (40000, 5201));
    }

    #[test]
    fn zero_total_length_falls_back_to_orig_len_minus_link_header() {
        let mut ip = build_tcp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, TCP_ACK, &[0u8; 100]);
        ip[2] = 0;
        ip[3] = 0;
        let f = eth(MAC_A, &[0x8100], 0x0800, &ip);
        let m = decode(LinkType::Ethernet, &f[..80], 100_018).unwrap();
        assert_eq!(m.l3_len, 100_000);
        assert_eq!((m.src_port, m.dst_port), (1, 2));
    }

    #[test]
    fn forged_ipv4_total_length_is_cut_to_the_frame_and_flagged() {
        // 60-byte Ethernet frame whose IPv4 header claims 65,535 bytes.
        let mut ip = build_udp_v4([10, 0, 0, 1], 5000, [10, 0, 0, 2], 6000, b"x");
        ip[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
        let mut f = eth(MAC_A, &[], 0x0800, &ip);
        f.resize(60, 0);
        let m = decode(LinkType::Ethernet, &f, 60).unwrap();
        assert_eq!(m.l3_len, 46);
        assert!(m.len_forged);
        assert_eq!((m.src_port, m.dst_port), (5000, 6000));
        // Behind a VLAN tag the link header is 18 bytes.
        let f = eth(MAC_A, &[0x8100], 0x0800, &ip);
        let m = decode(LinkType::Ethernet, &f, 64).unwrap();
        assert_eq!((m.l3_len, m.len_forged), (46, true));
    }

    #[test]
    fn forged_ipv6_payload_length_is_cut_to_the_frame_and_flagged() {
        let mut ip = build_v6(&[], IPPROTO_UDP, &udp_header(1, 2, b"hi"));
        ip[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
        let f = eth(MAC_A, &[], 0x86dd, &ip);
        let m = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!(m.l3_len, 40 + 10);
        assert!(m.len_forged);
        assert_eq!((m.src_port, m.dst_port), (1, 2));
    }

    #[test]
    fn honest_lengths_are_not_flagged() {
        // Padding (claim below the frame) and snaplen cuts (claim above the
        // capture, not above the wire) are honest.
        let ip = build_tcp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, TCP_ACK, &[0u8; 1448]);
        let f = eth(MAC_A, &[], 0x0800, &ip);
        let m = decode(LinkType::Ethernet, &f[..128], f.len() as u32).unwrap();
        assert_eq!((m.l3_len, m.len_forged), (1488, false));
        let small = build_tcp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, TCP_ACK, b"");
        let mut f = eth(MAC_A, &[], 0x0800, &small);
        f.resize(60, 0);
        let m = decode(LinkType::Ethernet, &f, 60).unwrap();
        assert_eq!((m.l3_len, m.len_forged), (40, false));
        let v6 = build_v6(&[], IPPROTO_UDP, &udp_header(1, 2, b"hi"));
        let f = eth(MAC_A, &[], 0x86dd, &v6);
        let m = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!((m.l3_len, m.len_forged), (50, false));
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let tcp = tcp_header(1234, 80, TCP_ACK | TCP_PSH, b"GET / HTTP/1.1\r\n");
        let mut ip = ipv4_header(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            6,
            tcp.len(),
            &[1, 1, 1, 0, 0x94, 4, 0, 0],
            0,
            0,
        );
        ip.extend_from_slice(&tcp);
        let m = decode(LinkType::RawIp, &ip, ip.len() as u32).unwrap();
        assert_eq!((m.src_port, m.dst_port), (1234, 80));
        assert_eq!(m.l3_len, 28 + 36);
        assert_eq!(m.app, AppProto::Http);
    }

    #[test]
    fn ipv4_fragments_first_has_ports_later_has_none() {
        let udp = udp_header(5000, 53, &[0u8; 64]);
        let mut first = ipv4_header(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            17,
            udp.len(),
            &[],
            0x2000,
            777,
        );
        first.extend_from_slice(&udp);
        let m = decode(LinkType::RawIp, &first, first.len() as u32).unwrap();
        assert_eq!(
            (m.fragment, m.frag_id, m.src_port, m.dst_port),
            (Fragment::First, 777, 5000, 53)
        );

        let mut later = ipv4_header([10, 0, 0, 1], [10, 0, 0, 2], 17, 100, &[], 9, 777);
        later.extend_from_slice(&[0xaa; 100]);
        let m = decode(LinkType::RawIp, &later, later.len() as u32).unwrap();
        assert_eq!(
            (m.fragment, m.frag_id, m.src_port, m.dst_port),
            (Fragment::Later, 777, 0, 0)
        );
        assert_eq!(m.l3_len, 120);
        assert_eq!(m.proto, 17);
    }

    #[test]
    fn sll_gives_direction_hint() {
        let ip = build_udp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, b"x");
        for (pkttype, want) in [
            (0u16, PktDir::Incoming),
            (1, PktDir::Incoming),
            (3, PktDir::Incoming),
            (4, PktDir::Outgoing),
        ] {
            let mut f = Vec::new();
            f.extend_from_slice(&pkttype.to_be_bytes());
            f.extend_from_slice(&[0, 1, 0, 6]);
            f.extend_from_slice(&[2, 0, 0, 0, 0, 0xaa, 0, 0]);
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&ip);
            let m = decode(LinkType::LinuxSll, &f, f.len() as u32).unwrap();
            assert_eq!(m.dir_hint, want);
            assert_eq!((m.src_port, m.dst_port, m.l3_len), (1, 2, 29));
        }
    }

    #[test]
    fn sll2_gives_direction_hint_and_ip() {
        let ip = build_tcp_v4(
            [10, 0, 0, 1],
            40000,
            [10, 0, 0, 2],
            22,
            TCP_ACK,
            b"SSH-2.0-x\r\n",
        );
        let mut f = Vec::new();
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 4, 6]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 0xaa, 0, 0]);
        assert_eq!(f.len(), 20);
        f.extend_from_slice(&ip);
        let m = decode(LinkType::LinuxSll2, &f, f.len() as u32).unwrap();
        assert_eq!(m.dir_hint, PktDir::Outgoing);
        assert_eq!((m.src_port, m.dst_port), (40000, 22));
        assert_eq!(m.app, AppProto::Ssh);
        assert_eq!(
            decode(LinkType::LinuxSll2, &f[..19], 200),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn raw_ip_uses_version_nibble() {
        let ip = build_udp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, b"");
        assert!(decode(LinkType::RawIp, &ip, 28).is_ok());
        let v6 = build_v6(&[], 17, &udp_header(1, 2, b""));
        let m = decode(LinkType::RawIp, &v6, 48).unwrap();
        assert_eq!(m.l3_len, 48);
        let mut bad = ip.clone();
        bad[0] = 0x55;
        assert_eq!(
            decode(LinkType::RawIp, &bad, 28),
            Err(DecodeError::BadHeader)
        );
    }

    #[test]
    fn null_and_loop_read_the_address_family_in_their_byte_order() {
        let ip = build_udp_v4([127, 0, 0, 1], 1, [127, 0, 0, 1], 2, b"");
        let v6 = build_v6(&[], 17, &udp_header(3, 4, b""));
        let cases: [(LinkType, [u8; 4], &[u8], u16); 5] = [
            (LinkType::Null, 2u32.to_le_bytes(), &ip, 2),
            (LinkType::Null, 2u32.to_be_bytes(), &ip, 2),
            (LinkType::Null, 30u32.to_le_bytes(), &v6, 4),
            (LinkType::Loop, 2u32.to_be_bytes(), &ip, 2),
            (LinkType::Loop, 24u32.to_be_bytes(), &v6, 4),
        ];
        for (link, af, body, dport) in cases {
            let mut f = af.to_vec();
            f.extend_from_slice(body);
            let m = decode(link, &f, f.len() as u32).unwrap();
            assert_eq!(m.dst_port, dport, "{link:?} {af:?}");
        }
        let mut f = 99u32.to_be_bytes().to_vec();
        f.extend_from_slice(&ip);
        assert_eq!(
            decode(LinkType::Loop, &f, 40),
            Err(DecodeError::Unsupported)
        );
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_transport() {
        let tcp = tcp_header(40000, 443, TCP_SYN, b"");
        let hbh = vec![0u8, 1, 4, 0, 0, 0, 0]; // len 0 -> 8 bytes with next header
        let routing = {
            let mut r = vec![2u8, 0, 1, 0, 0, 0, 0]; // len 2 -> 24 bytes
            r.resize(23, 0);
            r
        };
        let dstopt = vec![0u8, 1, 4, 0, 0, 0, 0];
        let ah = {
            let mut a = vec![4u8, 0, 0, 0, 0, 0, 0]; // len 4 -> (4+2)*4 = 24 bytes
            a.resize(23, 0);
            a
        };
        let p = build_v6(&[(0, hbh), (43, routing), (60, dstopt), (51, ah)], 6, &tcp);
        let f = eth(MAC_A, &[], 0x86dd, &p);
        let m = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!((m.proto, m.src_port, m.dst_port), (6, 40000, 443));
        assert_eq!(m.l3_len, p.len() as u32);
        assert_eq!(m.src, "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_fragments_carry_id_and_ports_only_in_first() {
        let udp = udp_header(7000, 7001, &[1; 32]);
        let first = build_v6(
            &[(44, vec![0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef])],
            17,
            &udp,
        );
        let m = decode(LinkType::RawIp, &first, first.len() as u32).unwrap();
        assert_eq!(
            (m.fragment, m.frag_id, m.proto, m.src_port),
            (Fragment::First, 0xdeadbeef, 17, 7000)
        );

        let later = build_v6(
            &[(44, vec![0, 0x00, 0xb8, 0xde, 0xad, 0xbe, 0xef])],
            17,
            &[9; 64],
        );
        let m = decode(LinkType::RawIp, &later, later.len() as u32).unwrap();
        assert_eq!(
            (m.fragment, m.frag_id, m.proto, m.src_port, m.dst_port),
            (Fragment::Later, 0xdeadbeef, 17, 0, 0)
        );
        assert_eq!(m.l3_len, 40 + 8 + 64);
    }

    #[test]
    fn ipv6_esp_and_no_next_header_stop_the_walk() {
        let p = build_v6(&[], 50, &[0xaa; 40]);
        let m = decode(LinkType::RawIp, &p, p.len() as u32).unwrap();
        assert_eq!((m.proto, m.src_port, m.app), (50, 0, AppProto::Ipsec));
        let p = build_v6(&[(60, vec![0, 1, 4, 0, 0, 0, 0])], 59, &[]);
        let m = decode(LinkType::RawIp, &p, p.len() as u32).unwrap();
        assert_eq!((m.proto, m.src_port), (59, 0));
    }

    #[test]
    fn icmp_echo_uses_identifier_as_both_ports() {
        let icmp = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let mut ip = ipv4_header([10, 0, 0, 1], [10, 0, 0, 2], 1, icmp.len(), &[], 0, 0);
        ip.extend_from_slice(&icmp);
        let m = decode(LinkType::RawIp, &ip, 28).unwrap();
        assert_eq!((m.proto, m.src_port, m.dst_port), (1, 0x1234, 0x1234));

        let unreachable = [3u8, 1, 0, 0, 0x12, 0x34, 0, 1];
        let mut ip = ipv4_header([10, 0, 0, 1], [10, 0, 0, 2], 1, 8, &[], 0, 0);
        ip.extend_from_slice(&unreachable);
        let m = decode(LinkType::RawIp, &ip, 28).unwrap();
        assert_eq!((m.src_port, m.dst_port), (0, 0));

        let p = build_v6(&[], 58, &[129, 0, 0, 0, 0xbe, 0xef, 0, 9]);
        let m = decode(LinkType::RawIp, &p, p.len() as u32).unwrap();
        assert_eq!((m.proto, m.src_port, m.dst_port), (58, 0xbeef, 0xbeef));
    }

    #[test]
    fn transport_cut_by_snaplen_keeps_bytes_with_zero_ports() {
        let ip = build_tcp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, TCP_ACK, &[0; 500]);
        let m = decode(LinkType::RawIp, &ip[..22], 540).unwrap();
        assert_eq!((m.l3_len, m.src_port, m.dst_port), (540, 0, 0));
    }

    #[test]
    fn payload_length_comes_from_the_headers_not_the_capture() {
        let ip = build_tcp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, TCP_ACK, &[0; 500]);
        // Cut by snaplen after the TCP header: the header still declares 500.
        let m = decode(LinkType::RawIp, &ip[..60], 540).unwrap();
        assert_eq!((m.l3_len, m.payload_len), (540, 500));
        let ip = build_udp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, b"hello");
        let m = decode(LinkType::RawIp, &ip, ip.len() as u32).unwrap();
        assert_eq!(m.payload_len, 5);
    }

    #[test]
    fn short_frames_are_truncated_errors() {
        let ip = build_tcp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, TCP_ACK, b"");
        let f = eth(MAC_A, &[0x8100], 0x0800, &ip);
        for cut in [0, 5, 13, 17, 20, 37] {
            assert_eq!(
                decode(LinkType::Ethernet, &f[..cut], 100),
                Err(DecodeError::Truncated),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn pppoe_session_carries_ip() {
        let ip = build_udp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, b"");
        let mut body = vec![0x11, 0, 0, 1];
        body.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
        body.extend_from_slice(&[0x00, 0x21]);
        body.extend_from_slice(&ip);
        let f = eth(MAC_A, &[], 0x8864, &body);
        let m = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!((m.src_port, m.dst_port, m.l3_len), (1, 2, 28));
    }

    const LINKS: [LinkType; 6] = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
        LinkType::Null,
        LinkType::Loop,
    ];

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256), orig in any::<u32>()) {
            for link in LINKS {
                if let Ok(m) = decode(link, &bytes, orig) {
                    // Whatever the headers claim, never more than the wire carried.
                    prop_assert!(m.l3_len <= orig, "{} > {orig}", m.l3_len);
                }
            }
        }

        #[test]
        fn decode_never_panics_on_mutated_real_frames(pos in 0usize..120, val in any::<u8>(), cut in 0usize..140, orig in any::<u32>()) {
            // Arbitrary bytes rarely get past the link header; mutating a real frame does.
            let v6 = build_v6(&[(0, vec![0, 1, 4, 0, 0, 0, 0]), (44, vec![0, 0, 1, 1, 2, 3, 4])], 6, &tcp_header(1, 2, TCP_SYN, b"GET / HTTP/1.1\r\n"));
            let v4 = build_tcp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 443, TCP_ACK, &[0x16, 3, 1, 0, 5]);
            for ip in [v4, v6] {
                let mut f = eth(MAC_A, &[0x8100], if ip[0] >> 4 == 4 { 0x0800 } else { 0x86dd }, &ip);
                if pos < f.len() {
                    f[pos] = val;
                }
                f.truncate(cut);
                for link in LINKS {
                    let _ = decode(link, &f, orig);
                }
            }
        }
    }

    #[test]
    fn l4_payload_finds_tcp_and_udp_payloads_within_the_ip_length() {
        let v4 = build_tcp_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 443, TCP_ACK, b"hello");
        let mut f = eth(MAC_A, &[0x8100], 0x0800, &v4);
        f.extend_from_slice(&[0; 6]); // Ethernet padding is not payload
        assert_eq!(l4_payload(LinkType::Ethernet, &f), Some(&b"hello"[..]));
        let v4 = build_udp_v4([10, 0, 0, 1], 53, [10, 0, 0, 2], 9, b"dns");
        assert_eq!(l4_payload(LinkType::RawIp, &v4), Some(&b"dns"[..]));
        let v6 = build_v6(&[], 17, &udp_header(53, 9, b"six"));
        assert_eq!(l4_payload(LinkType::RawIp, &v6), Some(&b"six"[..]));
        let icmp = build_v6(&[], 58, &[128, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(l4_payload(LinkType::RawIp, &icmp), None);
    }

    proptest! {
        #[test]
        fn l4_payload_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for link in LINKS {
                let _ = l4_payload(link, &bytes);
            }
        }
    }
}
