//! Differential tests of `decode` against etherparse, a widely used decoder:
//! on generated Ethernet / VLAN / IPv4 / IPv6 / TCP / UDP / ICMP frames, whole,
//! truncated and corrupted, both agree on addresses, ports, protocol, IP
//! lengths and "malformed or not". Where netmon deliberately differs (it counts
//! snaplen-cut frames, clamps forged lengths, reads ports from first fragments)
//! the rule is written out next to the check.

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, NetSlice, SlicedPacket, TransportSlice};
use netmon_testkit::fuzz::cases;
use netmon_wire::decode::{decode, Fragment, LinkType, PacketMeta};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        opt_words: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP (v4 or v6 by the IP version); `echo` picks an echo request.
    Icmp {
        echo: bool,
        id: u16,
    },
}

#[derive(Clone, Debug)]
struct Spec {
    vlan: Option<u16>,
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    l4: L4,
    payload: Vec<u8>,
}

struct Built {
    frame: Vec<u8>,
    /// Offset of the IP header.
    ip_at: usize,
    /// Offset of the transport header.
    l4_at: usize,
}

fn build(s: &Spec) -> Built {
    let mut l4 = Vec::new();
    let proto = match &s.l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
            opt_words,
        } => {
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
            l4.push((5 + opt_words) << 4);
            l4.push(*flags);
            l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            // NOP options.
            l4.extend(std::iter::repeat_n(1u8, usize::from(*opt_words) * 4));
            6
        }
        L4::Udp { sport, dport } => {
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&((8 + s.payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            17
        }
        L4::Icmp { echo, id } => {
            let ty = match (s.v6, echo) {
                (false, true) => 8,
                (false, false) => 3,
                (true, true) => 128,
                (true, false) => 1,
            };
            l4.extend_from_slice(&[ty, 0, 0, 0]);
            l4.extend_from_slice(&id.to_be_bytes());
            l4.extend_from_slice(&[0, 1]);
            if s.v6 {
                58
            } else {
                1
            }
        }
    };
    l4.extend_from_slice(&s.payload);
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    if let Some(tci) = s.vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(tci & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(if s.v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let ip_at = f.len();
    if s.v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&s.src);
        f.extend_from_slice(&s.dst);
    } else {
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 7, 0x40, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&s.src[..4]);
        f.extend_from_slice(&s.dst[..4]);
    }
    let l4_at = f.len();
    f.extend_from_slice(&l4);
    Built {
        frame: f,
        ip_at,
        l4_at,
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    let l4 = prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u8>(), 0u8..4).prop_map(
            |(sport, dport, flags, opt_words)| L4::Tcp {
                sport,
                dport,
                flags,
                opt_words
            }
        ),
        (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| L4::Udp { sport, dport }),
        (any::<bool>(), any::<u16>()).prop_map(|(echo, id)| L4::Icmp { echo, id }),
    ];
    (
        proptest::option::of(any::<u16>()),
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        l4,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(vlan, v6, src, dst, l4, payload)| Spec {
            vlan,
            v6,
            src,
            dst,
            l4,
            payload,
        })
}

fn ep_addrs(net: &NetSlice) -> (IpAddr, IpAddr) {
    match net {
        NetSlice::Ipv4(s) => (s.header().source().into(), s.header().destination().into()),
        NetSlice::Ipv6(s) => (s.header().source().into(), s.header().destination().into()),
    }
}

/// IP length as etherparse reads the header: IPv4 total length, IPv6 40 + payload length.
fn ep_ip_len(net: &NetSlice) -> u32 {
    match net {
        NetSlice::Ipv4(s) => u32::from(s.header().total_len()),
        NetSlice::Ipv6(s) => 40 + u32::from(s.header().payload_length()),
    }
}

fn ep_proto(net: &NetSlice) -> u8 {
    match net {
        NetSlice::Ipv4(s) => s.payload().ip_number.0,
        NetSlice::Ipv6(s) => s.payload().ip_number.0,
    }
}

/// Ports as netmon defines them: TCP/UDP ports, the echo identifier on both sides for ICMP echo.
fn ep_ports(t: &TransportSlice) -> Option<(u16, u16)> {
    match t {
        TransportSlice::Tcp(t) => Some((t.source_port(), t.destination_port())),
        TransportSlice::Udp(u) => Some((u.source_port(), u.destination_port())),
        TransportSlice::Icmpv4(i) => {
            let h = i.slice();
            matches!(h[0], 0 | 8).then(|| {
                let id = u16::from_be_bytes([h[4], h[5]]);
                (id, id)
            })
        }
        TransportSlice::Icmpv6(i) => {
            let h = i.slice();
            matches!(h[0], 128 | 129).then(|| {
                let id = u16::from_be_bytes([h[4], h[5]]);
                (id, id)
            })
        }
    }
}

fn ep_payload_len(t: &TransportSlice) -> Option<usize> {
    match t {
        TransportSlice::Tcp(t) => Some(t.payload().len()),
        TransportSlice::Udp(u) => Some(u.payload().len()),
        _ => None,
    }
}

/// Everything both decoders define must match on a well-formed packet.
fn assert_agree(m: &PacketMeta, ep: &SlicedPacket, frame: &[u8]) {
    let net = ep.net.as_ref().expect("etherparse found an IP header");
    let (src, dst) = ep_addrs(net);
    assert_eq!((m.src, m.dst), (src, dst), "{frame:02x?}");
    assert_eq!(m.proto, ep_proto(net), "{frame:02x?}");
    assert_eq!(m.l3_len, ep_ip_len(net), "{frame:02x?}");
    if let Some(t) = &ep.transport {
        let (sp, dp) = ep_ports(t).unwrap_or((0, 0));
        assert_eq!((m.src_port, m.dst_port), (sp, dp), "{frame:02x?}");
        if let Some(n) = ep_payload_len(t) {
            assert_eq!(m.payload_len as usize, n, "{frame:02x?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 2, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn whole_frames_agree(s in spec()) {
        let b = build(&s);
        let f = &b.frame;
        let m = decode(LinkType::Ethernet, f, f.len() as u32).expect("netmon decodes a valid frame");
        let ep = SlicedPacket::from_ethernet(f).expect("etherparse decodes a valid frame");
        prop_assert!(ep.transport.is_some());
        assert_agree(&m, &ep, f);
        prop_assert!(!m.len_forged);
        prop_assert_eq!(m.fragment, Fragment::None);
    }

    /// A frame cut by snaplen (the wire still carried all of it).
    #[test]
    fn truncated_frames_agree_where_both_decode(s in spec(), cut in any::<prop::sample::Index>()) {
        let b = build(&s);
        let full = b.frame.len();
        let n = cut.index(full);
        let f = &b.frame[..n];
        let m = decode(LinkType::Ethernet, f, full as u32);
        let lax = LaxSlicedPacket::from_ethernet(f);
        let ip_hdr = if s.v6 { 40 } else { 20 };
        // Rule: netmon decodes as soon as the fixed IP header is there (the
        // bytes still count); etherparse's lax mode agrees on that point.
        let lax_net = lax.as_ref().ok().and_then(|p| p.net.as_ref());
        prop_assert_eq!(m.is_ok(), n >= b.ip_at + ip_hdr, "cut at {}", n);
        prop_assert_eq!(m.is_ok(), lax_net.is_some(), "cut at {}", n);
        // Rule: etherparse's strict mode rejects any cut inside the IP packet;
        // netmon counts it by its header (design.md §2).
        prop_assert!(SlicedPacket::from_ethernet(f).is_err());
        if let (Ok(m), Some(net)) = (m, lax_net) {
            let (src, dst, ip_len) = match net {
                LaxNetSlice::Ipv4(v) => (IpAddr::from(v.header().source()), IpAddr::from(v.header().destination()), u32::from(v.header().total_len())),
                LaxNetSlice::Ipv6(v) => (IpAddr::from(v.header().source()), IpAddr::from(v.header().destination()), 40 + u32::from(v.header().payload_length())),
            };
            prop_assert_eq!((m.src, m.dst), (src, dst));
            // The header's length, not the captured one.
            prop_assert_eq!(m.l3_len, ip_len);
            let t = lax.as_ref().ok().and_then(|p| p.transport.as_ref());
            if let Some(t) = t {
                if let Some((sp, dp)) = ep_ports(t) {
                    prop_assert_eq!((m.src_port, m.dst_port), (sp, dp));
                }
                // Rule: netmon's payload length is what the headers declare;
                // etherparse's lax slice is what was captured, so never more.
                if let Some(got) = ep_payload_len(t) {
                    prop_assert!(got <= m.payload_len as usize);
                }
            }
            // netmon reads ports from the first 14 (TCP) or 8 (UDP, ICMP) bytes.
            let need = match s.l4 { L4::Tcp { .. } => 14, _ => 8 };
            if n < b.l4_at + need {
                prop_assert_eq!((m.src_port, m.dst_port), (0, 0));
            }
        }
    }

    /// A lying IP length field (IPv4 total length, IPv6 payload length).
    #[test]
    fn forged_ip_lengths_are_clamped(s in spec(), claimed in any::<u16>()) {
        let b = build(&s);
        let mut f = b.frame.clone();
        let at = b.ip_at + if s.v6 { 4 } else { 2 };
        f[at..at + 2].copy_from_slice(&claimed.to_be_bytes());
        let wire = (f.len() - b.ip_at) as u32;
        let claimed_ip = if s.v6 { 40 + u32::from(claimed) } else { u32::from(claimed) };
        let m = decode(LinkType::Ethernet, &f, f.len() as u32);
        let ep = SlicedPacket::from_ethernet(&f);
        if claimed == 0 {
            // Rule: 0 is a GSO/TSO super-packet or a jumbogram: netmon takes the
            // wire length; etherparse has its own view of it, not compared.
            let m = m.expect("length 0 decodes");
            prop_assert_eq!(m.l3_len, wire);
            prop_assert!(!m.len_forged);
        } else if !s.v6 && claimed < 20 {
            // Shorter than its own header: malformed for both.
            prop_assert!(m.is_err());
            prop_assert!(ep.is_err());
        } else if claimed_ip > wire {
            // Rule: netmon clamps to what the wire carried and flags the lie;
            // etherparse refuses the packet.
            let m = m.expect("a forged length still decodes");
            prop_assert_eq!(m.l3_len, wire);
            prop_assert!(m.len_forged);
            prop_assert!(ep.is_err());
        } else {
            // Shorter than the frame, like Ethernet padding: the header wins.
            let m = m.expect("a short length decodes");
            prop_assert_eq!(m.l3_len, claimed_ip);
            prop_assert!(!m.len_forged);
            // etherparse also checks that the transport header fits in it.
            if let Ok(ep) = ep {
                assert_agree(&m, &ep, &f);
            }
        }
    }

    /// Any single corrupted byte: whatever both call well-formed, they read alike.
    #[test]
    fn corrupted_frames_agree_where_both_decode(s in spec(), pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        let b = build(&s);
        let mut f = b.frame.clone();
        let i = pos.index(f.len());
        f[i] = val;
        let m = decode(LinkType::Ethernet, &f, f.len() as u32);
        let ep = SlicedPacket::from_ethernet(&f);
        if i == b.ip_at && val >> 4 != if s.v6 { 6 } else { 4 } {
            // A version that contradicts the ethertype: malformed for both.
            prop_assert!(m.is_err());
            prop_assert!(ep.is_err());
        }
        if !s.v6 && i == b.ip_at && val >> 4 == 4 && val & 0x0f < 5 {
            // IPv4 header length below 20 bytes: malformed for both.
            prop_assert!(m.is_err());
            prop_assert!(ep.is_err());
        }
        if let Ok(ep) = &ep {
            let Some(net) = &ep.net else {
                // Not IP for etherparse (e.g. the ethertype was hit): nor for netmon.
                prop_assert!(m.is_err());
                return Ok(());
            };
            // Rule: whatever etherparse accepts as IP, netmon decodes too.
            let m = m.as_ref().expect("netmon decodes what etherparse does");
            let (src, dst) = ep_addrs(net);
            prop_assert_eq!((m.src, m.dst), (src, dst));
            let frag = match net { NetSlice::Ipv4(v) => v.payload().fragmented, NetSlice::Ipv6(v) => v.payload().fragmented };
            let zero_len = match net {
                NetSlice::Ipv4(v) => v.header().total_len() == 0,
                NetSlice::Ipv6(v) => v.header().payload_length() == 0,
            };
            if zero_len {
                // Rule (as in `forged_ip_lengths_are_clamped`): a length field of 0
                // is a GSO super-packet or jumbogram to netmon: the wire length counts.
                prop_assert_eq!(m.l3_len, (f.len() - b.ip_at) as u32);
            } else if !frag && m.fragment == Fragment::None {
                prop_assert_eq!(m.l3_len, ep_ip_len(net));
            }
            // Rule: an IPv4 first fragment (MF set) keeps its ports in netmon;
            // etherparse stops at the IP layer for every fragment.
            if let (Some(t), false) = (&ep.transport, frag) {
                if m.proto == ep_proto(net) {
                    let (sp, dp) = ep_ports(t).unwrap_or((0, 0));
                    prop_assert_eq!((m.src_port, m.dst_port), (sp, dp));
                }
            }
        }
    }
}
