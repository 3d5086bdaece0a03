//! Deterministic synthetic Ethernet capture for benchmarks and tests.
//! Generation is pure (seeded, no clock, no randomness from the OS); the only
//! I/O is `write_pcap`, into a writer the caller owns.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bytes kept per frame, as the daemon's headers-only capture would.
pub const SNAPLEN: u32 = 128;

/// The synthetic host's own addresses: build a `LocalSet` from these.
pub fn local_addrs() -> Vec<IpAddr> {
    vec![IpAddr::V4(LOCAL_V4), IpAddr::V6(LOCAL_V6)]
}

const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const LOCAL_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x02];
/// Starts with 0x45 on purpose: decoders that guess raw IP from the first byte fail here.
const GATEWAY_MAC: [u8; 6] = [0x45, 0x00, 0x5e, 0x00, 0x00, 0x01];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    pub frames: usize,
    pub flows: usize,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            frames: 1_000_000,
            flows: 5_000,
            seed: 0x6e65_746d_6f6e,
        }
    }
}

/// One frame cut to [`SNAPLEN`] and its length on the wire.
pub type Frame = (Vec<u8>, u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    TcpBulk,
    TcpSmallHttp,
    TcpSmallTls,
    Ssh,
    Dns,
    Quic,
    Icmp,
    UdpFragmented,
}

#[derive(Clone, Copy, Debug)]
struct Flow {
    kind: Kind,
    v6: bool,
    vlan: Option<u16>,
    remote_v4: Ipv4Addr,
    remote_v6: Ipv6Addr,
    local_port: u16,
    remote_port: u16,
    /// Packets generated so far; drives the flow's little script.
    n: u32,
}

/// SplitMix64: tiny, fast, and fixed across platforms and crate versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A mixed capture seen from one host: a few bulk TCP transfers carry most of
/// the packets, thousands of small TCP (HTTP, TLS, SSH), DNS, QUIC, ICMP echo
/// and fragmented UDP flows the rest; a quarter IPv6, a tenth VLAN-tagged.
pub fn capture(cfg: &SynthConfig) -> Vec<Frame> {
    let mut rng = Rng(cfg.seed);
    let nflows = cfg.flows.max(1);
    let bulk = (nflows / 100).clamp(1, 50);
    let mut flows: Vec<Flow> = (0..nflows)
        .map(|i| {
            let kind = if i < bulk {
                Kind::TcpBulk
            } else {
                match rng.below(100) {
                    0..=24 => Kind::TcpSmallTls,
                    25..=39 => Kind::TcpSmallHttp,
                    40..=44 => Kind::Ssh,
                    45..=69 => Kind::Dns,
                    70..=84 => Kind::Quic,
                    85..=94 => Kind::Icmp,
                    _ => Kind::UdpFragmented,
                }
            };
            let remote_port = match kind {
                Kind::TcpBulk => [443, 80, 5201][i % 3],
                Kind::TcpSmallHttp => 80,
                Kind::TcpSmallTls | Kind::Quic => 443,
                Kind::Ssh => 22,
                Kind::Dns => 53,
                Kind::Icmp => 0,
                Kind::UdpFragmented => 4789,
            };
            let r = rng.next();
            Flow {
                kind,
                v6: rng.below(4) == 0,
                vlan: (rng.below(10) == 0).then_some(100 + (r % 8) as u16),
                remote_v4: Ipv4Addr::from(0xc612_0000 | (r as u32 & 0xffff)),
                remote_v6: Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0xff,
                    0,
                    0,
                    0,
                    (r >> 16) as u16,
                    (r >> 32) as u16,
                ),
                local_port: 32768 + (i % 28000) as u16,
                remote_port,
                n: 0,
            }
        })
        .collect();

    let mut frames = Vec::with_capacity(cfg.frames);
    while frames.len() < cfg.frames {
        // Heavy tail: bulk flows take most packets, the rest are spread thinly.
        let i = if rng.below(100) < 60 {
            rng.below(bulk as u64) as usize
        } else {
            rng.below(nflows as u64) as usize
        };
        let flow = &mut flows[i];
        for frame in next_packets(flow, &mut rng) {
            if frames.len() < cfg.frames {
                frames.push(frame);
            }
        }
        flow.n += 1;
    }
    frames
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const SYN_ACK: u8 = 0x12;

/// The next packet(s) of a flow: one, or a whole fragmented datagram.
fn next_packets(f: &Flow, rng: &mut Rng) -> Vec<Frame> {
    let n = f.n;
    match f.kind {
        Kind::TcpBulk | Kind::TcpSmallHttp | Kind::TcpSmallTls | Kind::Ssh => {
            let request: &[u8] = match f.kind {
                Kind::TcpSmallHttp => b"GET /index.html HTTP/1.1\r\nHost: example.test\r\n\r\n",
                Kind::Ssh => b"SSH-2.0-OpenSSH_9.6\r\n",
                _ => &[
                    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                ],
            };
            let (up, flags, payload_len, payload): (bool, u8, usize, &[u8]) = match n {
                0 => (true, SYN, 0, &[]),
                1 => (false, SYN_ACK, 0, &[]),
                2 => (true, ACK, 0, &[]),
                3 => (true, PSH_ACK, request.len(), request),
                _ if n.is_multiple_of(3) => (true, ACK, 0, &[]),
                _ => {
                    let len = if f.kind == Kind::TcpBulk {
                        1448
                    } else {
                        100 + rng.below(1300) as usize
                    };
                    (false, ACK, len, &[0x17, 0x03, 0x03])
                }
            };
            let l4 = tcp(f, up, flags, n, payload, payload_len);
            vec![ip_frame(f, up, 6, &l4.0, l4.1, None)]
        }
        Kind::Dns => {
            let up = n.is_multiple_of(2);
            let mut dns = vec![
                (n >> 8) as u8,
                n as u8,
                if up { 0x01 } else { 0x81 },
                0x00,
                0,
                1,
                0,
                u8::from(!up),
                0,
                0,
                0,
                0,
            ];
            dns.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
            let extra = if up { 0 } else { 16 };
            let l4 = udp(f, up, &dns, dns.len() + extra);
            vec![ip_frame(f, up, 17, &l4.0, l4.1, None)]
        }
        Kind::Quic => {
            let up = n.is_multiple_of(4);
            let head: &[u8] = if n == 0 {
                &[0xc3, 0x00, 0x00, 0x00, 0x01, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]
            } else {
                &[0x41, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0]
            };
            let len = if up {
                60 + rng.below(1200) as usize
            } else {
                1252
            };
            let l4 = udp(f, up, head, len.max(head.len()));
            vec![ip_frame(f, up, 17, &l4.0, l4.1, None)]
        }
        Kind::Icmp => {
            let up = n.is_multiple_of(2);
            let id = f.local_port;
            let ty = match (f.v6, up) {
                (false, true) => 8,
                (false, false) => 0,
                (true, true) => 128,
                (true, false) => 129,
            };
            let mut icmp = vec![ty, 0, 0, 0];
            icmp.extend_from_slice(&id.to_be_bytes());
            icmp.extend_from_slice(&((n / 2) as u16).to_be_bytes());
            let proto = if f.v6 { 58 } else { 1 };
            vec![ip_frame(f, up, proto, &icmp, icmp.len() + 56, None)]
        }
        Kind::UdpFragmented => {
            // A 3000-byte datagram in three pieces (1480 + 1480 + 48 of UDP data).
            let up = n.is_multiple_of(2);
            let id = n.wrapping_mul(2_654_435_761) | 1;
            let (l4, _) = udp(f, up, &[0x08, 0, 0, 0, 0, 0, 1, 0], 3000 - 8);
            let total = 3000usize;
            let mut out = Vec::with_capacity(3);
            let mut off = 0usize;
            while off < total {
                let piece = (total - off).min(1448);
                let more = off + piece < total;
                let data = if off == 0 { &l4[..] } else { &[][..] };
                out.push(ip_frame(f, up, 17, data, piece, Some((off, more, id))));
                off += piece;
            }
            out
        }
    }
}

/// A TCP header plus the start of its payload, and the full segment length.
fn tcp(
    f: &Flow,
    up: bool,
    flags: u8,
    n: u32,
    payload: &[u8],
    payload_len: usize,
) -> (Vec<u8>, usize) {
    let (sp, dp) = ports(f, up);
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sp.to_be_bytes());
    t.extend_from_slice(&dp.to_be_bytes());
    t.extend_from_slice(&n.wrapping_mul(1448).to_be_bytes());
    t.extend_from_slice(&n.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    (t, 20 + payload_len.max(payload.len()))
}

fn udp(f: &Flow, up: bool, payload: &[u8], payload_len: usize) -> (Vec<u8>, usize) {
    let (sp, dp) = ports(f, up);
    let total = 8 + payload_len.max(payload.len());
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sp.to_be_bytes());
    u.extend_from_slice(&dp.to_be_bytes());
    u.extend_from_slice(&(total as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    (u, total)
}

fn ports(f: &Flow, up: bool) -> (u16, u16) {
    if up {
        (f.local_port, f.remote_port)
    } else {
        (f.remote_port, f.local_port)
    }
}

/// Wraps `l4` (the captured start of `l4_len` bytes) in IP and Ethernet, cut to
/// the snaplen. `frag` is (byte offset, more fragments, id) for IP fragments.
fn ip_frame(
    f: &Flow,
    up: bool,
    proto: u8,
    l4: &[u8],
    l4_len: usize,
    frag: Option<(usize, bool, u32)>,
) -> Frame {
    let mut fr = Vec::with_capacity(SNAPLEN as usize);
    let (dst_mac, src_mac) = if up {
        (GATEWAY_MAC, LOCAL_MAC)
    } else {
        (LOCAL_MAC, GATEWAY_MAC)
    };
    fr.extend_from_slice(&dst_mac);
    fr.extend_from_slice(&src_mac);
    if let Some(vid) = f.vlan {
        fr.extend_from_slice(&[0x81, 0x00]);
        fr.extend_from_slice(&vid.to_be_bytes());
    }
    if f.v6 {
        fr.extend_from_slice(&[0x86, 0xdd]);
        let ext = if frag.is_some() { 8 } else { 0 };
        let next = if frag.is_some() { 44 } else { proto };
        fr.extend_from_slice(&[0x60, 0, 0, 0]);
        fr.extend_from_slice(&((l4_len + ext) as u16).to_be_bytes());
        fr.extend_from_slice(&[next, 64]);
        let (s, d) = if up {
            (LOCAL_V6, f.remote_v6)
        } else {
            (f.remote_v6, LOCAL_V6)
        };
        fr.extend_from_slice(&s.octets());
        fr.extend_from_slice(&d.octets());
        if let Some((off, more, id)) = frag {
            fr.extend_from_slice(&[proto, 0]);
            fr.extend_from_slice(&((off as u16) | u16::from(more)).to_be_bytes());
            fr.extend_from_slice(&id.to_be_bytes());
        }
    } else {
        fr.extend_from_slice(&[0x08, 0x00]);
        fr.extend_from_slice(&[0x45, 0]);
        fr.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        let (id, frag_field) = match frag {
            Some((off, more, id)) => (
                id as u16,
                ((off / 8) as u16) | if more { 0x2000 } else { 0 },
            ),
            None => (0, 0x4000),
        };
        fr.extend_from_slice(&id.to_be_bytes());
        fr.extend_from_slice(&frag_field.to_be_bytes());
        fr.extend_from_slice(&[64, proto, 0, 0]);
        let (s, d) = if up {
            (LOCAL_V4, f.remote_v4)
        } else {
            (f.remote_v4, LOCAL_V4)
        };
        fr.extend_from_slice(&s.octets());
        fr.extend_from_slice(&d.octets());
    }
    let orig_len = fr.len() + l4_len;
    fr.extend_from_slice(l4);
    // Pad the captured part with filler the way the real payload would continue.
    fr.resize(orig_len.min(SNAPLEN as usize), 0xa5);
    fr.truncate(SNAPLEN as usize);
    (fr, orig_len as u32)
}

/// Writes frames as a classic little-endian pcap file (microsecond timestamps,
/// LINKTYPE_ETHERNET), 10 µs apart from a fixed start so replays are repeatable.
pub fn write_pcap<W: Write>(mut out: W, frames: &[Frame]) -> io::Result<()> {
    const START_SECS: u64 = 1_700_000_000;
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&SNAPLEN.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())?;
    for (i, (data, orig_len)) in frames.iter().enumerate() {
        let micros = i as u64 * 10;
        let secs = START_SECS + micros / 1_000_000;
        out.write_all(&(secs as u32).to_le_bytes())?;
        out.write_all(&((micros % 1_000_000) as u32).to_le_bytes())?;
        out.write_all(&(data.len() as u32).to_le_bytes())?;
        out.write_all(&orig_len.to_le_bytes())?;
        out.write_all(data)?;
    }
    out.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use netmon_wire::classify::AppProto;
    use netmon_wire::decode::{decode, Fragment, LinkType};
    use netmon_wire::flows::{FlowTable, LocalSet};

    fn small() -> SynthConfig {
        SynthConfig {
            frames: 50_000,
            flows: 500,
            seed: 7,
        }
    }

    #[test]
    fn capture_is_deterministic_and_sized() {
        let a = capture(&small());
        let b = capture(&small());
        assert_eq!(a.len(), 50_000);
        assert_eq!(a, b);
        assert!(a
            .iter()
            .all(|(f, orig)| f.len() <= SNAPLEN as usize && f.len() as u32 <= *orig));
    }

    #[test]
    fn every_synthetic_frame_decodes_and_the_mix_is_varied() {
        let frames = capture(&small());
        let mut v6 = 0;
        let mut later = 0;
        let mut apps = std::collections::HashSet::new();
        let mut protos = std::collections::HashSet::new();
        for (f, orig) in &frames {
            let m = decode(LinkType::Ethernet, f, *orig).unwrap();
            let link = if f[12] == 0x81 { 18 } else { 14 };
            assert_eq!(m.l3_len, orig - link);
            v6 += usize::from(m.src.is_ipv6());
            later += usize::from(m.fragment == Fragment::Later);
            apps.insert(m.app);
            protos.insert(m.proto);
        }
        assert!(v6 > frames.len() / 20, "v6 {v6}");
        assert!(later > 0);
        for app in [
            AppProto::Tls,
            AppProto::Http,
            AppProto::Dns,
            AppProto::Quic,
            AppProto::Ssh,
        ] {
            assert!(apps.contains(&app), "{app:?} missing");
        }
        for p in [1, 6, 17, 58] {
            assert!(protos.contains(&p), "proto {p} missing");
        }
    }

    #[test]
    fn synthetic_bytes_are_conserved_through_the_flow_table() {
        let frames = capture(&small());
        let local = LocalSet::new(local_addrs());
        let mut t = FlowTable::new(4096);
        let mut total = 0u64;
        for (f, orig) in &frames {
            let m = decode(LinkType::Ethernet, f, *orig).unwrap();
            total += u64::from(m.l3_len);
            t.ingest(&m, &local, 0);
        }
        let mut out = Vec::new();
        t.drain(&mut out);
        assert_eq!(
            out.iter().map(|d| d.up_bytes + d.down_bytes).sum::<u64>(),
            total
        );
        assert!(out
            .iter()
            .all(|d| d.placement == netmon_wire::flows::Placement::Local));
        assert_eq!(t.stats().unmatched_fragments, 0);
        assert!(t.len() > 300 && t.len() <= 500, "flows {}", t.len());
    }

    #[test]
    fn pcap_file_has_header_and_records() {
        let frames = capture(&SynthConfig {
            frames: 10,
            flows: 3,
            seed: 1,
        });
        let mut buf = Vec::new();
        write_pcap(&mut buf, &frames).unwrap();
        assert_eq!(&buf[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(buf[20..24].try_into().unwrap()), 1);
        let body: usize = frames.iter().map(|(f, _)| 16 + f.len()).sum();
        assert_eq!(buf.len(), 24 + body);
        let incl = u32::from_le_bytes(buf[32..36].try_into().unwrap()) as usize;
        assert_eq!(incl, frames[0].0.len());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn libpcap_reads_back_the_written_file() {
        let frames = capture(&SynthConfig {
            frames: 200,
            flows: 20,
            seed: 3,
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        write_pcap(std::io::BufWriter::new(file.as_file()), &frames).unwrap();
        let mut cap = pcap::Capture::from_file(file.path()).unwrap();
        assert_eq!(cap.get_datalink(), pcap::Linktype::ETHERNET);
        for (data, orig) in &frames {
            let p = cap.next_packet().unwrap();
            assert_eq!((p.data, p.header.len), (&data[..], *orig));
        }
        assert!(cap.next_packet().is_err());
    }
}
