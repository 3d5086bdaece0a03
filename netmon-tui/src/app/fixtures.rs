//! Hand-built frames for state and rendering tests.

use netmon_proto::v1;

pub const T0: i64 = 1_763_769_600_000; // 2025-11-22 00:00:00 UTC

#[allow(clippy::too_many_arguments, reason = "test helper mirrors the row")]
pub fn row(
    pid: u32,
    name: &str,
    user: &str,
    up_bps: u64,
    down_bps: u64,
    up_bytes: u64,
    down_bytes: u64,
    over: bool,
) -> v1::ProcessRow {
    v1::ProcessRow {
        process: Some(v1::ProcessIdentity {
            pid,
            name: name.to_owned(),
            exe: format!("/usr/bin/{name}"),
            cmdline: format!("{name} --flag"),
            uid: 1000,
            user: user.to_owned(),
            ..Default::default()
        }),
        traffic: Some(v1::Traffic {
            up_bytes,
            down_bytes,
            up_bps,
            down_bps,
            ..Default::default()
        }),
        protocols: vec!["tcp".to_owned(), "https".to_owned()],
        connections: pid % 7,
        alive: pid != 4242,
        over_threshold: over,
        threshold_bps: 1 << 20,
        ..Default::default()
    }
}

pub fn processes() -> Vec<v1::ProcessRow> {
    vec![
        row(
            1201,
            "firefox",
            "alice",
            300_000,
            2_500_000,
            90_000_000,
            1_200_000_000,
            true,
        ),
        row(
            877, "python3", "alice", 1_400_000, 12_000, 40_000_000, 300_000, true,
        ),
        row(
            3310, "ssh", "bob", 2_048, 4_096, 1_000_000, 3_000_000, false,
        ),
        row(
            55,
            "systemd-resolved",
            "systemd-resolve",
            300,
            900,
            50_000,
            120_000,
            false,
        ),
        row(4242, "curl", "root", 0, 0, 10_000, 5_000_000, false),
        row(
            9001,
            "syncthing",
            "bob",
            90_000,
            70_000,
            800_000_000,
            900_000_000,
            false,
        ),
    ]
}

pub fn frame(seq: u64) -> v1::Frame {
    let t = |up, down| v1::Traffic {
        up_bps: up,
        down_bps: down,
        up_bytes: up * 100,
        down_bytes: down * 100,
        ..Default::default()
    };
    v1::Frame {
        seq,
        time_ms: T0 + i64::try_from(seq).unwrap_or(0) * 1000,
        complete: true,
        monitoring: true,
        session: Some(v1::Session {
            id: 1,
            started_ms: T0 - 3_723_000,
            active: true,
            interfaces: vec!["eth0".to_owned()],
            ..Default::default()
        }),
        processes: processes(),
        totals: Some(v1::Traffic {
            up_bytes: 931_860_000,
            down_bytes: 2_108_425_000,
            up_bps: 1_792_348 + (seq % 5) * 100_000,
            down_bps: 2_587_996 - (seq % 3) * 300_000,
            ..Default::default()
        }),
        unattributed: Some(v1::Unattributed {
            traffic: Some(t(100, 200)),
            reasons: Vec::new(),
        }),
        interfaces: vec![
            v1::InterfaceRow {
                name: "eth0".to_owned(),
                index: 2,
                up: true,
                addresses: vec!["192.168.1.20/24".to_owned(), "fe80::1/64".to_owned()],
                captured: true,
                rx_bytes: 2_200_000_000,
                tx_bytes: 950_000_000,
                rx_bps: 2_600_000,
                tx_bps: 1_800_000,
                rx_dropped: 3,
                counted: Some(t(1_790_000, 2_580_000)),
                capture: Some(v1::CaptureStats {
                    packets_dropped: 12,
                    ..Default::default()
                }),
                ..Default::default()
            },
            v1::InterfaceRow {
                name: "wlan0".to_owned(),
                index: 3,
                up: false,
                ..Default::default()
            },
        ],
        alerts: if seq == 1 {
            vec![v1::Alert {
                id: 7,
                kind: v1::ThresholdKind::ProcessRate as i32,
                state: v1::AlertState::Open as i32,
                direction: v1::Direction::Total as i32,
                process: processes()[0].process.clone(),
                threshold: 1 << 20,
                value: 2_800_000,
                peak: 3_100_000,
                started_ms: T0 - 65_000,
                message: "firefox above 1.0 MiB/s".to_owned(),
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        hosts: vec![
            v1::HostRow {
                address: "93.184.216.34".to_owned(),
                name: "example.com".to_owned(),
                category: "web".to_owned(),
                traffic: Some(t(250_000, 2_400_000)),
                processes: vec!["firefox".to_owned()],
                connections: 4,
            },
            v1::HostRow {
                address: "10.0.0.5".to_owned(),
                name: String::new(),
                category: "lan".to_owned(),
                traffic: Some(t(1_400_000, 12_000)),
                processes: vec!["python3".to_owned(), "ssh".to_owned()],
                connections: 2,
            },
        ],
        tick_ms: 1000,
        packets_dropped: 12,
        flows_active: 31,
        handoff_dropped: 0,
        packet_stats: Some(v1::PacketStats {
            packets_by_protocol: [
                ("tcp".to_owned(), 2_400 + (seq % 7) * 150),
                ("udp".to_owned(), 600 + (seq % 4) * 90),
                ("icmp".to_owned(), seq % 3),
                ("other".to_owned(), 12),
            ]
            .into_iter()
            .collect(),
            size_bounds: vec![64, 128, 256, 512, 1024, 1500, 9000, u32::MAX],
            size_counts: vec![1_300, 420, 90, 160, 240, 800, 2, 0],
            packets_per_sec: 3_000 + (seq % 7) * 150 + (seq % 4) * 90 + seq % 3 + 12,
        }),
        lookup_queue: 0,
        lookup_dropped: 0,
        lookup_mode: String::new(),
    }
}

pub fn connections() -> Vec<v1::Connection> {
    let c = |proto: &str, app: &str, rport, raddr: &str, rname: &str, up, down| v1::Connection {
        protocol: proto.to_owned(),
        app_protocol: app.to_owned(),
        local_addr: "192.168.1.20".to_owned(),
        local_port: 40_000 + rport % 1000,
        remote_addr: raddr.to_owned(),
        remote_port: rport,
        remote_name: rname.to_owned(),
        state: "established".to_owned(),
        process: processes()[0].process.clone(),
        traffic: Some(v1::Traffic {
            up_bps: up,
            down_bps: down,
            up_bytes: up * 60,
            down_bytes: down * 60,
            ..Default::default()
        }),
        interface: "eth0".to_owned(),
        ..Default::default()
    };
    vec![
        c(
            "tcp",
            "https",
            443,
            "93.184.216.34",
            "example.com",
            200_000,
            2_000_000,
        ),
        c(
            "udp",
            "quic",
            443,
            "142.250.0.1",
            "google.com",
            90_000,
            480_000,
        ),
        c(
            "tcp",
            "https",
            8443,
            "93.184.216.34",
            "example.com",
            10_000,
            20_000,
        ),
    ]
}
