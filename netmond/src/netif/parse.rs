//! Pure rtnetlink message parsing: ifinfomsg/ifaddrmsg and their rtattrs,
//! from `&[u8]` to plain values (framing is `netlink::msg`). No I/O, no logging, no panics
//! on malformed input (a bad message is an error or is skipped, never a crash).

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Counters;
pub(crate) use crate::netlink::msg::{
    attributes, messages, NlMsg, NlMsgHdr, ParseError, NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST,
};
use crate::netlink::msg::{u16_at, u32_at, u64_at};

// Stable kernel ABI values (include/uapi/linux/{netlink,rtnetlink,if_link,if_addr,if}.h).
pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_DELADDR: u16 = 21;
pub(crate) const RTM_GETADDR: u16 = 22;

pub(crate) const RTMGRP_LINK: u32 = 0x1;
pub(crate) const RTMGRP_IPV4_IFADDR: u32 = 0x10;
pub(crate) const RTMGRP_IPV6_IFADDR: u32 = 0x100;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_WIRELESS: u16 = 11;
const IFLA_LINKINFO: u16 = 18;
const IFLA_STATS64: u16 = 23;
const IFLA_INFO_KIND: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_RUNNING: u32 = 0x40;
const IFF_LOWER_UP: u32 = 0x1_0000;

const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// `struct ifinfomsg` (include/uapi/linux/rtnetlink.h), the head of a link message.
#[repr(C)]
#[allow(dead_code, reason = "a layout: fields are read by offset_of!")]
struct IfInfoMsg {
    family: u8,
    pad: u8,
    link_type: u16,
    index: i32,
    flags: u32,
    change: u32,
}
pub(crate) const IFINFOMSG_LEN: usize = size_of::<IfInfoMsg>();
const _: () = assert!(IFINFOMSG_LEN == 16);

/// `struct ifaddrmsg` (include/uapi/linux/if_addr.h), the head of an address message.
#[repr(C)]
#[allow(dead_code, reason = "a layout: fields are read by offset_of!")]
struct IfAddrMsg {
    family: u8,
    prefix_len: u8,
    flags: u8,
    scope: u8,
    index: u32,
}
pub(crate) const IFADDRMSG_LEN: usize = size_of::<IfAddrMsg>();
const _: () = assert!(IFADDRMSG_LEN == 8);
/// Bytes of `struct rtnl_link_stats64` we read (its first eight `__u64`s).
const STATS64_MIN_LEN: usize = size_of::<[u64; 8]>();

/// A NUL-terminated (or not) attribute string.
fn attr_str(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// What an `RTM_NEWLINK` carries that we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LinkMsg {
    pub index: u32,
    pub link_type: u16,
    pub flags: u32,
    pub name: String,
    /// `IFLA_ADDRESS` when it is 6 bytes and not all zero.
    pub mac: Option<[u8; 6]>,
    /// `IFLA_LINKINFO/IFLA_INFO_KIND`, or one derived from the link type.
    pub kind: String,
    pub stats: Option<Counters>,
    /// Carries `IFLA_WIRELESS`: a wireless-extensions event, not a link change.
    pub wireless_event: bool,
}

impl LinkMsg {
    pub fn admin_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }
    /// Administratively up and the carrier/operational state says it can pass packets.
    pub fn up(&self) -> bool {
        self.admin_up() && self.flags & (IFF_RUNNING | IFF_LOWER_UP) != 0
    }
    pub fn loopback(&self) -> bool {
        self.flags & IFF_LOOPBACK != 0
    }
}

/// Parses the payload of an `RTM_NEWLINK` / `RTM_DELLINK` (ifinfomsg + rtattrs).
pub(crate) fn parse_link(payload: &[u8]) -> Result<LinkMsg, ParseError> {
    let short = ParseError::ShortPayload {
        what: "ifinfomsg",
        len: payload.len(),
    };
    let (Some(link_type), Some(index), Some(flags)) = (
        u16_at(payload, offset_of!(IfInfoMsg, link_type)),
        u32_at(payload, offset_of!(IfInfoMsg, index)),
        u32_at(payload, offset_of!(IfInfoMsg, flags)),
    ) else {
        return Err(short);
    };
    let Some(attrs) = payload.get(IFINFOMSG_LEN..) else {
        return Err(short);
    };
    let mut link = LinkMsg {
        index,
        link_type,
        flags,
        name: String::new(),
        mac: None,
        kind: String::new(),
        stats: None,
        wireless_event: false,
    };
    for (ty, value) in attributes(attrs) {
        match ty {
            IFLA_IFNAME => link.name = attr_str(value),
            IFLA_ADDRESS => {
                if let Ok(mac) = <[u8; 6]>::try_from(value) {
                    if mac != [0; 6] {
                        link.mac = Some(mac);
                    }
                }
            }
            IFLA_STATS64 => link.stats = parse_stats64(value),
            IFLA_LINKINFO => {
                if let Some((_, kind)) = attributes(value).find(|&(t, _)| t == IFLA_INFO_KIND) {
                    link.kind = attr_str(kind);
                }
            }
            IFLA_WIRELESS => link.wireless_event = true,
            _ => {}
        }
    }
    if link.kind.is_empty() {
        link.kind = match link_type {
            ARPHRD_LOOPBACK => "loopback",
            ARPHRD_ETHER => "ether",
            _ => "",
        }
        .to_owned();
    }
    Ok(link)
}

/// The first eight fields of `struct rtnl_link_stats64`.
fn parse_stats64(v: &[u8]) -> Option<Counters> {
    if v.len() < STATS64_MIN_LEN {
        return None;
    }
    let f = |i: usize| u64_at(v, i * size_of::<u64>()).unwrap_or(0);
    Some(Counters {
        rx_packets: f(0),
        tx_packets: f(1),
        rx_bytes: f(2),
        tx_bytes: f(3),
        rx_errors: f(4),
        tx_errors: f(5),
        rx_dropped: f(6),
        tx_dropped: f(7),
    })
}

/// What an `RTM_NEWADDR` carries that we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddrMsg {
    pub index: u32,
    pub prefix_len: u8,
    /// `IFA_LOCAL` when present (on point-to-point links `IFA_ADDRESS` is the
    /// peer), else `IFA_ADDRESS`.
    pub addr: IpAddr,
}

/// Parses the payload of an `RTM_NEWADDR`. `Ok(None)` for a family other than
/// IPv4/IPv6 or a message with no usable address.
pub(crate) fn parse_addr(payload: &[u8]) -> Result<Option<AddrMsg>, ParseError> {
    let (Some(&family), Some(&prefix_len), Some(index), Some(attrs)) = (
        payload.get(offset_of!(IfAddrMsg, family)),
        payload.get(offset_of!(IfAddrMsg, prefix_len)),
        u32_at(payload, offset_of!(IfAddrMsg, index)),
        payload.get(IFADDRMSG_LEN..),
    ) else {
        return Err(ParseError::ShortPayload {
            what: "ifaddrmsg",
            len: payload.len(),
        });
    };
    let ip = |v: &[u8]| -> Option<IpAddr> {
        match family {
            AF_INET => <[u8; 4]>::try_from(v)
                .ok()
                .map(|a| Ipv4Addr::from(a).into()),
            AF_INET6 => <[u8; 16]>::try_from(v)
                .ok()
                .map(|a| Ipv6Addr::from(a).into()),
            _ => None,
        }
    };
    let (mut local, mut address) = (None, None);
    for (ty, value) in attributes(attrs) {
        match ty {
            IFA_LOCAL => local = ip(value),
            IFA_ADDRESS => address = ip(value),
            _ => {}
        }
    }
    Ok(local.or(address).map(|addr| AddrMsg {
        index,
        prefix_len,
        addr,
    }))
}

/// Builds a dump request: nlmsghdr + a zeroed family header of `body_len` bytes
/// (`AF_UNSPEC`: all families).
pub(crate) fn dump_request(ty: u16, seq: u32, body_len: usize) -> Vec<u8> {
    let mut req = vec![0u8; NLMSG_HDRLEN + body_len];
    NlMsgHdr::request(ty, NLM_F_REQUEST | NLM_F_DUMP, seq, body_len).write(&mut req);
    req
}

/// Parses the text of `/proc/net/dev` into `(name, counters)` rows. Lines that
/// do not parse are skipped. Kept as a fallback and cross-check for the
/// netlink counters.
pub fn parse_proc_net_dev(text: &str) -> Vec<(String, Counters)> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if name.is_empty() || v.len() < 16 {
                return None;
            }
            // rx: bytes packets errs drop fifo frame compressed multicast
            // tx: bytes packets errs drop fifo colls carrier compressed
            Some((
                name.to_owned(),
                Counters {
                    rx_bytes: v[0],
                    rx_packets: v[1],
                    rx_errors: v[2],
                    rx_dropped: v[3],
                    tx_bytes: v[8],
                    tx_packets: v[9],
                    tx_errors: v[10],
                    tx_dropped: v[11],
                },
            ))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
pub(crate) mod tests {
    use super::*;
    use crate::netlink::msg::{align4, NLMSG_DONE, NLM_F_MULTI};

    /// Appends one rtattr (padded to 4 bytes).
    pub(crate) fn attr(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
        let len = 4 + value.len();
        buf.extend_from_slice(&(len as u16).to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(value);
        buf.resize(align4(buf.len()), 0);
    }

    /// Wraps a payload in an nlmsghdr (padded to 4 bytes).
    pub(crate) fn msg(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, payload: &[u8]) {
        let len = NLMSG_HDRLEN + payload.len();
        buf.extend_from_slice(&(len as u32).to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(payload);
        buf.resize(align4(buf.len()), 0);
    }

    pub(crate) fn ifinfomsg(link_type: u16, index: u32, flags: u32) -> Vec<u8> {
        let mut b = vec![0u8, 0];
        b.extend_from_slice(&link_type.to_ne_bytes());
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&0xffff_ffffu32.to_ne_bytes());
        b
    }

    pub(crate) fn ifaddrmsg(family: u8, prefix: u8, index: u32) -> Vec<u8> {
        let mut b = vec![family, prefix, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        b
    }

    fn stats64(vals: [u64; 8]) -> Vec<u8> {
        // The real struct is longer (24+ fields); the tail must be ignored.
        let mut b: Vec<u8> = vals.iter().flat_map(|v| v.to_ne_bytes()).collect();
        b.resize(24 * 8, 0xee);
        b
    }

    fn veth_link() -> Vec<u8> {
        let mut p = ifinfomsg(ARPHRD_ETHER, 7, IFF_UP | IFF_RUNNING | IFF_LOWER_UP);
        attr(&mut p, IFLA_IFNAME, b"veth0\0");
        attr(&mut p, IFLA_ADDRESS, &[0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        attr(&mut p, IFLA_STATS64, &stats64([1, 2, 3, 4, 5, 6, 7, 8]));
        let mut info = Vec::new();
        attr(&mut info, IFLA_INFO_KIND, b"veth\0");
        attr(&mut info, 2, &[0; 8]); // IFLA_INFO_DATA, ignored
        attr(&mut p, IFLA_LINKINFO | 0x8000, &info); // with NLA_F_NESTED set
        p
    }

    #[test]
    fn link_message_yields_name_mac_kind_flags_and_stats() {
        let link = parse_link(&veth_link()).unwrap();
        assert_eq!(link.index, 7);
        assert_eq!(link.name, "veth0");
        assert_eq!(link.mac, Some([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]));
        assert_eq!(link.kind, "veth");
        assert!(link.up() && link.admin_up() && !link.loopback());
        assert!(!link.wireless_event);
        assert_eq!(
            link.stats,
            Some(Counters {
                rx_packets: 1,
                tx_packets: 2,
                rx_bytes: 3,
                tx_bytes: 4,
                rx_errors: 5,
                tx_errors: 6,
                rx_dropped: 7,
                tx_dropped: 8,
            })
        );
    }

    #[test]
    fn loopback_has_no_mac_and_a_derived_kind() {
        let mut p = ifinfomsg(ARPHRD_LOOPBACK, 1, IFF_UP | IFF_LOOPBACK | IFF_RUNNING);
        attr(&mut p, IFLA_IFNAME, b"lo\0");
        attr(&mut p, IFLA_ADDRESS, &[0; 6]);
        let link = parse_link(&p).unwrap();
        assert_eq!((link.name.as_str(), link.kind.as_str()), ("lo", "loopback"));
        assert_eq!(link.mac, None);
        assert!(link.loopback() && link.up());
        assert_eq!(link.stats, None);
    }

    #[test]
    fn admin_up_without_carrier_is_not_up() {
        let link = parse_link(&ifinfomsg(ARPHRD_ETHER, 3, IFF_UP)).unwrap();
        assert!(link.admin_up() && !link.up());
        let link = parse_link(&ifinfomsg(ARPHRD_ETHER, 3, IFF_UP | IFF_LOWER_UP)).unwrap();
        assert!(link.up());
        let link = parse_link(&ifinfomsg(ARPHRD_ETHER, 3, IFF_RUNNING)).unwrap();
        assert!(!link.admin_up() && !link.up());
    }

    #[test]
    fn tun_without_hardware_address_has_no_mac() {
        let mut p = ifinfomsg(65534, 9, IFF_UP);
        attr(&mut p, IFLA_IFNAME, b"wg0\0");
        let mut info = Vec::new();
        attr(&mut info, IFLA_INFO_KIND, b"wireguard\0");
        attr(&mut p, IFLA_LINKINFO, &info);
        let link = parse_link(&p).unwrap();
        assert_eq!((link.mac, link.kind.as_str()), (None, "wireguard"));
    }

    #[test]
    fn short_or_odd_stats_are_ignored() {
        let mut p = ifinfomsg(ARPHRD_ETHER, 2, 0);
        attr(&mut p, IFLA_STATS64, &[0; 16]);
        assert_eq!(parse_link(&p).unwrap().stats, None);
    }

    #[test]
    fn short_ifinfomsg_is_an_error() {
        assert!(matches!(
            parse_link(&[0; 10]),
            Err(ParseError::ShortPayload { .. })
        ));
    }

    #[test]
    fn wireless_event_is_flagged() {
        let mut p = ifinfomsg(ARPHRD_ETHER, 2, IFF_UP);
        attr(&mut p, IFLA_WIRELESS, &[0; 8]);
        assert!(parse_link(&p).unwrap().wireless_event);
    }

    #[test]
    fn address_prefers_ifa_local_on_point_to_point() {
        let mut p = ifaddrmsg(AF_INET, 32, 5);
        attr(&mut p, IFA_ADDRESS, &[10, 0, 0, 2]); // the peer
        attr(&mut p, IFA_LOCAL, &[10, 0, 0, 1]);
        let a = parse_addr(&p).unwrap().unwrap();
        assert_eq!(a.addr, IpAddr::from([10, 0, 0, 1]));
        assert_eq!((a.index, a.prefix_len), (5, 32));
    }

    #[test]
    fn ipv6_address_without_local_uses_ifa_address() {
        let mut p = ifaddrmsg(AF_INET6, 64, 3);
        let v6: Ipv6Addr = "fe80::1".parse().unwrap();
        attr(&mut p, IFA_ADDRESS, &v6.octets());
        attr(&mut p, 8, &[0; 4]); // IFA_FLAGS, ignored
        let a = parse_addr(&p).unwrap().unwrap();
        assert_eq!(a.addr, IpAddr::V6(v6));
    }

    #[test]
    fn address_of_unknown_family_or_wrong_size_is_skipped() {
        let mut p = ifaddrmsg(17, 0, 3);
        attr(&mut p, IFA_ADDRESS, &[1, 2, 3, 4]);
        assert_eq!(parse_addr(&p).unwrap(), None);
        let mut p = ifaddrmsg(AF_INET, 24, 3);
        attr(&mut p, IFA_ADDRESS, &[1, 2, 3]);
        assert_eq!(parse_addr(&p).unwrap(), None);
        assert!(parse_addr(&[2, 24, 0]).is_err());
    }

    #[test]
    fn multipart_datagram_walks_every_message_then_done() {
        let mut buf = Vec::new();
        msg(&mut buf, RTM_NEWLINK, NLM_F_MULTI, 9, &veth_link());
        let mut odd = ifinfomsg(ARPHRD_ETHER, 8, 0);
        attr(&mut odd, IFLA_IFNAME, b"e\0"); // 6-byte attr: exercises padding
        msg(&mut buf, RTM_NEWLINK, NLM_F_MULTI, 9, &odd);
        msg(&mut buf, NLMSG_DONE, NLM_F_MULTI, 9, &0u32.to_ne_bytes());
        let msgs: Vec<_> = messages(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].ty, RTM_NEWLINK);
        assert_eq!(msgs[0].seq, 9);
        assert_eq!(parse_link(msgs[1].payload).unwrap().name, "e");
        assert_eq!(msgs[2].ty, NLMSG_DONE);
    }

    #[test]
    fn dump_request_layout() {
        let r = dump_request(RTM_GETADDR, 42, IFADDRMSG_LEN);
        assert_eq!(r.len(), 24);
        let m = messages(&r).next().unwrap().unwrap();
        assert_eq!((m.ty, m.seq, m.payload), (RTM_GETADDR, 42, &[0u8; 8][..]));
        assert_eq!(m.flags, NLM_F_REQUEST | NLM_F_DUMP);
    }

    #[test]
    fn proc_net_dev_rows_are_parsed() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1234      10    0    0    0     0          0         0     1234      10    0    0    0     0       0          0
  eth0:99 5 1 2 0 0 0 0 77 6 3 4 0 0 0 0
garbage line
  bad0: 1 2 3
";
        let rows = parse_proc_net_dev(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "lo");
        assert_eq!(rows[0].1.rx_bytes, 1234);
        assert_eq!(
            rows[1],
            (
                "eth0".to_owned(),
                Counters {
                    rx_bytes: 99,
                    rx_packets: 5,
                    rx_errors: 1,
                    rx_dropped: 2,
                    tx_bytes: 77,
                    tx_packets: 6,
                    tx_errors: 3,
                    tx_dropped: 4,
                }
            )
        );
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;
    use crate::netlink::msg::parse_error;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            for m in messages(&buf).flatten() {
                let _ = parse_link(m.payload);
                let _ = parse_addr(m.payload);
                let _ = parse_error(m.payload);
            }
            let _ = parse_link(&buf);
            let _ = parse_addr(&buf);
            let _ = attributes(&buf).count();
            let _ = super::super::watch::is_change(&buf);
            let _ = parse_proc_net_dev(&String::from_utf8_lossy(&buf));
        }
    }
}
