//! Application-protocol classification from ports and the first payload bytes.
//! Pure and allocation-free: runs on the capture hot path, so no I/O, no logging.
//! Names the wire protocol we can see ("tls", "quic"), never a guess above it.

/// What a user would expect to see in a "protocol" column.
///
/// TLS is reported as `tls` whatever the port: on 443 it is almost always HTTPS,
/// but the bytes only prove TLS, and mail/LDAP/IMAP over TLS look the same.
/// QUIC is reported as `quic` for the same reason (it is usually HTTP/3).
/// Cleartext HTTP/2 (the prior-knowledge preface) counts as `http`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum AppProto {
    #[default]
    Unknown,
    Dns,
    Mdns,
    Llmnr,
    Http,
    Tls,
    Quic,
    Ssh,
    Telnet,
    Ntp,
    Dhcp,
    Dhcpv6,
    Smtp,
    Imap,
    Pop3,
    Ftp,
    Rdp,
    Vnc,
    Smb,
    Netbios,
    Ldap,
    Kerberos,
    Snmp,
    Syslog,
    Ssdp,
    Sip,
    Stun,
    WireGuard,
    OpenVpn,
    Ipsec,
    Bittorrent,
    Mqtt,
    Postgres,
    Mysql,
    Redis,
    Mongodb,
    Git,
    Rsync,
    Nfs,
}

impl AppProto {
    /// Every variant, in declaration order (for tests and UIs listing choices).
    pub const ALL: [AppProto; 39] = [
        AppProto::Unknown,
        AppProto::Dns,
        AppProto::Mdns,
        AppProto::Llmnr,
        AppProto::Http,
        AppProto::Tls,
        AppProto::Quic,
        AppProto::Ssh,
        AppProto::Telnet,
        AppProto::Ntp,
        AppProto::Dhcp,
        AppProto::Dhcpv6,
        AppProto::Smtp,
        AppProto::Imap,
        AppProto::Pop3,
        AppProto::Ftp,
        AppProto::Rdp,
        AppProto::Vnc,
        AppProto::Smb,
        AppProto::Netbios,
        AppProto::Ldap,
        AppProto::Kerberos,
        AppProto::Snmp,
        AppProto::Syslog,
        AppProto::Ssdp,
        AppProto::Sip,
        AppProto::Stun,
        AppProto::WireGuard,
        AppProto::OpenVpn,
        AppProto::Ipsec,
        AppProto::Bittorrent,
        AppProto::Mqtt,
        AppProto::Postgres,
        AppProto::Mysql,
        AppProto::Redis,
        AppProto::Mongodb,
        AppProto::Git,
        AppProto::Rsync,
        AppProto::Nfs,
    ];

    /// Stable lowercase name, used in JSON and the UI.
    pub fn name(self) -> &'static str {
        match self {
            AppProto::Unknown => "unknown",
            AppProto::Dns => "dns",
            AppProto::Mdns => "mdns",
            AppProto::Llmnr => "llmnr",
            AppProto::Http => "http",
            AppProto::Tls => "tls",
            AppProto::Quic => "quic",
            AppProto::Ssh => "ssh",
            AppProto::Telnet => "telnet",
            AppProto::Ntp => "ntp",
            AppProto::Dhcp => "dhcp",
            AppProto::Dhcpv6 => "dhcpv6",
            AppProto::Smtp => "smtp",
            AppProto::Imap => "imap",
            AppProto::Pop3 => "pop3",
            AppProto::Ftp => "ftp",
            AppProto::Rdp => "rdp",
            AppProto::Vnc => "vnc",
            AppProto::Smb => "smb",
            AppProto::Netbios => "netbios",
            AppProto::Ldap => "ldap",
            AppProto::Kerberos => "kerberos",
            AppProto::Snmp => "snmp",
            AppProto::Syslog => "syslog",
            AppProto::Ssdp => "ssdp",
            AppProto::Sip => "sip",
            AppProto::Stun => "stun",
            AppProto::WireGuard => "wireguard",
            AppProto::OpenVpn => "openvpn",
            AppProto::Ipsec => "ipsec",
            AppProto::Bittorrent => "bittorrent",
            AppProto::Mqtt => "mqtt",
            AppProto::Postgres => "postgres",
            AppProto::Mysql => "mysql",
            AppProto::Redis => "redis",
            AppProto::Mongodb => "mongodb",
            AppProto::Git => "git",
            AppProto::Rsync => "rsync",
            AppProto::Nfs => "nfs",
        }
    }
}

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

/// Lowercase name of an IP transport protocol; "ip" for anything we do not name.
pub fn transport_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_ICMP => "icmp",
        2 => "igmp",
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_GRE => "gre",
        IPPROTO_ESP => "esp",
        IPPROTO_AH => "ah",
        IPPROTO_ICMPV6 => "icmpv6",
        IPPROTO_SCTP => "sctp",
        _ => "ip",
    }
}

/// Classifies one packet. Payload signatures win where the bytes are present
/// (they are cheap prefix checks); otherwise the well-known port of either side
/// decides, the lower port first since the higher one is usually ephemeral.
/// A port whose protocol has a cheap sanity check (DNS, NTP) is not trusted
/// when payload is present and fails it, so tunnels on port 53 stay unknown.
pub fn classify(proto: u8, src_port: u16, dst_port: u16, payload: &[u8]) -> AppProto {
    match proto {
        IPPROTO_TCP => {
            if let Some(app) = tcp_signature(payload) {
                return app;
            }
        }
        IPPROTO_UDP => {
            if let Some(app) = udp_signature(src_port, dst_port, payload) {
                return app;
            }
        }
        IPPROTO_ESP | IPPROTO_AH => return AppProto::Ipsec,
        _ => return AppProto::Unknown,
    }
    let (lo, hi) = if src_port <= dst_port {
        (src_port, dst_port)
    } else {
        (dst_port, src_port)
    };
    for port in [lo, hi] {
        if port == 0 {
            continue;
        }
        let app = port_app(proto, port);
        if app != AppProto::Unknown && payload_agrees(proto, app, payload) {
            return app;
        }
    }
    AppProto::Unknown
}

fn tcp_signature(p: &[u8]) -> Option<AppProto> {
    if p.len() < 3 {
        return None;
    }
    // TLS record: content type 20..=23 (handshake is 22), version major 3, minor <= 4.
    if (0x14..=0x17).contains(&p[0]) && p[1] == 0x03 && p[2] <= 0x04 && p.len() >= 5 {
        return Some(AppProto::Tls);
    }
    if p.starts_with(b"SSH-") {
        return Some(AppProto::Ssh);
    }
    if is_http_start(p) {
        return Some(AppProto::Http);
    }
    if p.starts_with(b"\x13BitTorrent protocol") {
        return Some(AppProto::Bittorrent);
    }
    // SMB1/2/3 behind the 4-byte NetBIOS session header.
    if p.len() >= 8 && p[0] == 0 && (p[4] == 0xff || p[4] == 0xfe) && &p[5..8] == b"SMB" {
        return Some(AppProto::Smb);
    }
    None
}

fn is_http_start(p: &[u8]) -> bool {
    const STARTS: [&[u8]; 10] = [
        b"GET ",
        b"POST ",
        b"HEAD ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"HTTP/1.",
        b"PRI * HTTP/2",
    ];
    STARTS.iter().any(|s| p.starts_with(s))
}

fn udp_signature(src_port: u16, dst_port: u16, p: &[u8]) -> Option<AppProto> {
    if p.len() < 8 {
        return None;
    }
    // QUIC long header: form bit and fixed bit set, then a known version.
    if p[0] & 0xc0 == 0xc0 && p.len() >= 7 {
        let version = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
        if version == 1 || version == 0x6b33_43cf || version & 0xffff_ff00 == 0xff00_0000 {
            return Some(AppProto::Quic);
        }
    }
    // STUN (and TURN): top two bits zero, fixed magic cookie.
    if p[0] & 0xc0 == 0 && p.len() >= 20 && p[4..8] == [0x21, 0x12, 0xa4, 0x42] {
        return Some(AppProto::Stun);
    }
    // WireGuard handshake messages have fixed sizes; data messages only
    // count on the usual port (their size is arbitrary and snaplen cuts it).
    if (1..=4).contains(&p[0]) && p[1..4] == [0, 0, 0] {
        let fixed = matches!((p[0], p.len()), (1, 148) | (2, 92) | (3, 64));
        if fixed || src_port == 51820 || dst_port == 51820 {
            return Some(AppProto::WireGuard);
        }
    }
    None
}

/// Cheap checks for ports that are often reused by something else.
fn payload_agrees(proto: u8, app: AppProto, p: &[u8]) -> bool {
    if p.is_empty() {
        return true;
    }
    match app {
        AppProto::Dns | AppProto::Mdns | AppProto::Llmnr => {
            // DNS over TCP carries a 2-byte length before the header.
            let hdr = if proto == IPPROTO_TCP {
                p.get(2..)
            } else {
                Some(p)
            };
            hdr.is_some_and(dns_header_sane)
        }
        AppProto::Ntp => {
            let version = (p[0] >> 3) & 0x7;
            let mode = p[0] & 0x7;
            (1..=4).contains(&version) && mode != 0
        }
        _ => true,
    }
}

fn dns_header_sane(h: &[u8]) -> bool {
    if h.len() < 12 {
        // Snaplen may cut the header; a short packet on the DNS port is still DNS.
        return true;
    }
    let opcode = (h[2] >> 3) & 0x0f;
    let qdcount = u16::from_be_bytes([h[4], h[5]]);
    let ancount = u16::from_be_bytes([h[6], h[7]]);
    // Z bit must be zero; queries carry at most a handful of questions.
    matches!(opcode, 0 | 1 | 2 | 4 | 5 | 6) && h[3] & 0x40 == 0 && qdcount <= 16 && ancount <= 512
}

fn port_app(proto: u8, port: u16) -> AppProto {
    let tcp = proto == IPPROTO_TCP;
    match port {
        20 | 21 | 990 if tcp => AppProto::Ftp,
        22 if tcp => AppProto::Ssh,
        23 if tcp => AppProto::Telnet,
        25 | 465 | 587 if tcp => AppProto::Smtp,
        53 => AppProto::Dns,
        67 | 68 if !tcp => AppProto::Dhcp,
        80 | 8080 | 8000 if tcp => AppProto::Http,
        88 => AppProto::Kerberos,
        110 | 995 if tcp => AppProto::Pop3,
        111 | 2049 => AppProto::Nfs,
        123 if !tcp => AppProto::Ntp,
        137..=139 => AppProto::Netbios,
        143 | 993 if tcp => AppProto::Imap,
        161 | 162 if !tcp => AppProto::Snmp,
        389 | 636 => AppProto::Ldap,
        443 | 8443 => {
            if tcp {
                AppProto::Tls
            } else {
                AppProto::Quic
            }
        }
        445 if tcp => AppProto::Smb,
        500 | 4500 if !tcp => AppProto::Ipsec,
        514 if !tcp => AppProto::Syslog,
        546 | 547 if !tcp => AppProto::Dhcpv6,
        873 if tcp => AppProto::Rsync,
        1194 => AppProto::OpenVpn,
        1883 | 8883 if tcp => AppProto::Mqtt,
        1900 if !tcp => AppProto::Ssdp,
        3306 if tcp => AppProto::Mysql,
        3389 => AppProto::Rdp,
        3478 | 5349 => AppProto::Stun,
        5060 | 5061 => AppProto::Sip,
        5353 if !tcp => AppProto::Mdns,
        5355 => AppProto::Llmnr,
        5432 if tcp => AppProto::Postgres,
        5900..=5903 if tcp => AppProto::Vnc,
        6379 if tcp => AppProto::Redis,
        6881..=6889 => AppProto::Bittorrent,
        9418 if tcp => AppProto::Git,
        27017 if tcp => AppProto::Mongodb,
        51820 if !tcp => AppProto::WireGuard,
        _ => AppProto::Unknown,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    const TCP: u8 = IPPROTO_TCP;
    const UDP: u8 = IPPROTO_UDP;

    fn dns_query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        q
    }

    fn quic_initial() -> Vec<u8> {
        let mut p = vec![0xc3, 0, 0, 0, 1, 8];
        p.resize(1200, 0xaa);
        p
    }

    /// (what, proto, src port, dst port, payload, expected)
    type Case<'a> = (&'a str, u8, u16, u16, &'a [u8], AppProto);

    #[test]
    fn classification_table() {
        let dns = dns_query();
        let mut dns_tcp = vec![0, dns.len() as u8];
        dns_tcp.extend_from_slice(&dns);
        let quic = quic_initial();
        let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        stun.resize(20, 7);
        let mut wg_init = vec![1, 0, 0, 0];
        wg_init.resize(148, 9);
        let ntp = {
            let mut p = vec![0x23];
            p.resize(48, 0);
            p
        };
        let cases: &[Case] = &[
            (
                "tls client hello on odd port",
                TCP,
                40000,
                9999,
                b"\x16\x03\x01\x02\x00\x01",
                AppProto::Tls,
            ),
            (
                "tls by port alone (SYN)",
                TCP,
                40000,
                443,
                b"",
                AppProto::Tls,
            ),
            (
                "tls reply from server port",
                TCP,
                443,
                40000,
                b"",
                AppProto::Tls,
            ),
            (
                "http request",
                TCP,
                40000,
                8888,
                b"GET / HTTP/1.1\r\n",
                AppProto::Http,
            ),
            (
                "http response",
                TCP,
                8888,
                40000,
                b"HTTP/1.1 200 OK\r\n",
                AppProto::Http,
            ),
            ("http by port", TCP, 40000, 80, b"", AppProto::Http),
            (
                "ssh banner on odd port",
                TCP,
                2222,
                40000,
                b"SSH-2.0-OpenSSH_9.6\r\n",
                AppProto::Ssh,
            ),
            (
                "ssh by port",
                TCP,
                40000,
                22,
                b"\x00\x01\x02\x03",
                AppProto::Ssh,
            ),
            ("dns query", UDP, 40000, 53, &dns, AppProto::Dns),
            ("dns over tcp", TCP, 40000, 53, &dns_tcp, AppProto::Dns),
            (
                "non-dns junk on 53 is unknown",
                UDP,
                40000,
                53,
                &[0xff; 40],
                AppProto::Unknown,
            ),
            ("mdns", UDP, 5353, 5353, &dns, AppProto::Mdns),
            ("llmnr", UDP, 40000, 5355, &dns, AppProto::Llmnr),
            (
                "quic initial on odd port",
                UDP,
                40000,
                4433,
                &quic,
                AppProto::Quic,
            ),
            (
                "quic short header by port",
                UDP,
                443,
                40000,
                &[0x40; 30],
                AppProto::Quic,
            ),
            ("stun", UDP, 40000, 19302, &stun, AppProto::Stun),
            (
                "wireguard handshake anywhere",
                UDP,
                40000,
                41000,
                &wg_init,
                AppProto::WireGuard,
            ),
            (
                "wireguard data on its port",
                UDP,
                40000,
                51820,
                &[4, 0, 0, 0, 1, 2, 3, 4, 5, 6],
                AppProto::WireGuard,
            ),
            ("ntp", UDP, 123, 123, &ntp, AppProto::Ntp),
            (
                "dhcp",
                UDP,
                68,
                67,
                &[1, 1, 6, 0, 0, 0, 0, 0],
                AppProto::Dhcp,
            ),
            ("dhcpv6", UDP, 546, 547, b"", AppProto::Dhcpv6),
            (
                "lower well-known port wins",
                TCP,
                443,
                3306,
                b"",
                AppProto::Tls,
            ),
            (
                "ephemeral plus well-known",
                TCP,
                55555,
                5432,
                b"",
                AppProto::Postgres,
            ),
            ("udp 80 is not http", UDP, 40000, 80, b"", AppProto::Unknown),
            (
                "ssdp",
                UDP,
                40000,
                1900,
                b"M-SEARCH * HTTP/1.1\r\n",
                AppProto::Ssdp,
            ),
            (
                "smb2",
                TCP,
                40000,
                4455,
                b"\x00\x00\x00\x40\xfeSMB",
                AppProto::Smb,
            ),
            (
                "bittorrent handshake",
                TCP,
                40000,
                50000,
                b"\x13BitTorrent protocol",
                AppProto::Bittorrent,
            ),
            ("esp is ipsec", IPPROTO_ESP, 0, 0, b"", AppProto::Ipsec),
            (
                "icmp has no app",
                IPPROTO_ICMP,
                7,
                7,
                b"abc",
                AppProto::Unknown,
            ),
            (
                "nothing known",
                TCP,
                40000,
                41000,
                b"hello",
                AppProto::Unknown,
            ),
        ];
        for (what, proto, sp, dp, payload, want) in cases {
            assert_eq!(classify(*proto, *sp, *dp, payload), *want, "{what}");
        }
    }

    #[test]
    fn names_are_unique_lowercase() {
        let mut seen = std::collections::HashSet::new();
        for app in AppProto::ALL {
            let n = app.name();
            assert_eq!(n, n.to_lowercase());
            assert!(seen.insert(n), "duplicate name {n}");
        }
        assert_eq!(AppProto::default(), AppProto::Unknown);
    }

    #[test]
    fn transport_names() {
        for (p, n) in [
            (1, "icmp"),
            (6, "tcp"),
            (17, "udp"),
            (58, "icmpv6"),
            (47, "gre"),
            (50, "esp"),
            (132, "sctp"),
            (250, "ip"),
        ] {
            assert_eq!(transport_name(p), n);
        }
    }

    #[test]
    fn classify_never_panics_on_short_payloads() {
        for len in 0..64 {
            let p = vec![0x16u8; len];
            for proto in [TCP, UDP] {
                for port in [0, 53, 123, 443, 5353, 51820] {
                    let _ = classify(proto, port, 40000, &p);
                }
            }
        }
    }
}
