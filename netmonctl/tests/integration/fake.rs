//! A canned netmond on a temporary Unix socket, so the binary's output,
//! streaming and error paths can be checked without root or capture.

use std::path::PathBuf;
use std::pin::Pin;

use netmon_proto::v1::netmon_server::{Netmon, NetmonServer};
use netmon_proto::v1::*;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status as RpcStatus};

type Rpc<T> = Result<Response<T>, RpcStatus>;
type Rows<T> = Pin<Box<dyn Stream<Item = Result<T, RpcStatus>> + Send>>;

pub const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

pub struct FakeDaemon {
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeDaemon {
    /// Serves on a thread of its own so tests can block on the child process.
    pub fn start() -> FakeDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("netmond.sock");
        let path = socket.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).expect("bind");
                ready_tx.send(()).expect("ready");
                tonic::transport::Server::builder()
                    .add_service(NetmonServer::new(Fake))
                    .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                    .await
                    .expect("serve");
            });
        });
        ready_rx.recv().expect("fake daemon started");
        FakeDaemon { socket, _dir: dir }
    }
}

struct Fake;

fn process(pid: u32, name: &str, alive: bool) -> ProcessRow {
    ProcessRow {
        process: Some(ProcessIdentity {
            pid,
            start_time: 100 + u64::from(pid),
            name: name.into(),
            exe: format!("/usr/bin/{name}"),
            cmdline: format!("{name} --flag"),
            uid: 1000,
            user: "alice".into(),
            ..Default::default()
        }),
        traffic: Some(Traffic {
            up_bytes: 1024 * u64::from(pid),
            down_bytes: 1_572_864,
            up_bps: 512,
            down_bps: 1_572_864,
            ..Default::default()
        }),
        protocols: vec!["tcp".into(), "https".into()],
        connections: 2,
        alive,
        first_seen_ms: T0,
        last_seen_ms: T0 + 1000,
        ..Default::default()
    }
}

fn totals() -> Traffic {
    Traffic {
        up_bytes: 10_000,
        down_bytes: 20_000,
        up_bps: 1000,
        down_bps: 2000,
        ..Default::default()
    }
}

fn unattributed() -> Unattributed {
    let t = Traffic {
        up_bytes: 300,
        down_bytes: 400,
        ..Default::default()
    };
    Unattributed {
        traffic: Some(t),
        reasons: vec![UnattributedReason {
            reason: "forwarded".into(),
            traffic: Some(t),
        }],
    }
}

fn session() -> Session {
    Session {
        id: 7,
        started_ms: T0,
        interfaces: vec!["eth0".into()],
        up_bytes: 1,
        down_bytes: 2,
        active: true,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Netmon for Fake {
    async fn get_status(&self, _: Request<StatusRequest>) -> Rpc<Status> {
        Ok(Response::new(Status {
            version: "0.1.0-fake".into(),
            uptime_secs: 3661,
            started_ms: T0,
            monitoring: true,
            mode: "capture".into(),
            interfaces: vec![InterfaceStatus {
                name: "eth0".into(),
                capturing: true,
                link_type: "EN10MB".into(),
                capture: Some(CaptureStats {
                    packets_received: 10,
                    packets_dropped: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            session: Some(session()),
            packets_seen: 10,
            packets_dropped: 1,
            coverage: 0.975,
            storage: Some(StorageHealth {
                path: "/tmp/x.db".into(),
                state: "ok".into(),
                ..Default::default()
            }),
            tick_ms: 1000,
            ..Default::default()
        }))
    }
    async fn start_monitoring(&self, r: Request<StartRequest>) -> Rpc<ControlReply> {
        let changed = r.into_inner().interfaces != ["already"];
        Ok(Response::new(ControlReply {
            monitoring: true,
            changed,
            session: Some(session()),
            message: String::new(),
        }))
    }
    async fn stop_monitoring(&self, _: Request<StopRequest>) -> Rpc<ControlReply> {
        Ok(Response::new(ControlReply {
            monitoring: false,
            changed: true,
            ..Default::default()
        }))
    }
    async fn reload(&self, _: Request<ReloadRequest>) -> Rpc<ReloadReply> {
        Err(RpcStatus::unimplemented("not in the fake"))
    }

    async fn reset(&self, _: Request<ResetRequest>) -> Rpc<ControlReply> {
        Err(RpcStatus::permission_denied(
            "only root or members of 'netmon' may reset",
        ))
    }
    async fn list_thresholds(&self, _: Request<ListThresholdsRequest>) -> Rpc<ThresholdList> {
        Ok(Response::new(ThresholdList {
            thresholds: vec![Threshold {
                id: 1,
                kind: ThresholdKind::ProcessRate as i32,
                direction: Direction::Total as i32,
                value: 1_048_576,
                process_name: "curl".into(),
                source: "api".into(),
                created_ms: T0,
                ..Default::default()
            }],
            presets: vec![1_048_576],
        }))
    }
    async fn set_threshold(&self, r: Request<SetThresholdRequest>) -> Rpc<Threshold> {
        let r = r.into_inner();
        Ok(Response::new(Threshold {
            id: 2,
            kind: r.kind,
            direction: r.direction,
            value: r.value,
            process_name: r.process_name,
            pid: r.pid,
            source: "api".into(),
            created_ms: T0,
            pid_start_time: 0,
        }))
    }
    async fn clear_thresholds(
        &self,
        _: Request<ClearThresholdsRequest>,
    ) -> Rpc<ClearThresholdsReply> {
        Ok(Response::new(ClearThresholdsReply { removed: 1 }))
    }

    type SubscribeStream = Rows<Frame>;
    async fn subscribe(&self, r: Request<SubscribeRequest>) -> Rpc<Self::SubscribeStream> {
        let every = r.into_inner().every_ticks;
        let frames = (1..=2u64).map(move |seq| {
            Ok(Frame {
                seq,
                time_ms: T0 + i64::try_from(seq).unwrap_or(0) * 1000,
                complete: seq == 1,
                monitoring: true,
                processes: vec![process(u32::try_from(seq).unwrap_or(0), "curl", true)],
                totals: Some(totals()),
                unattributed: Some(unattributed()),
                tick_ms: 1000,
                // Echo the request so a test can check --interval's mapping.
                flows_active: u64::from(every),
                ..Default::default()
            })
        });
        let frames = tokio_stream::iter(frames.collect::<Vec<_>>());
        if every == 99 {
            // A daemon that stays: only Ctrl-C ends the watch.
            return Ok(Response::new(Box::pin(
                frames.chain(tokio_stream::pending()),
            )));
        }
        Ok(Response::new(Box::pin(frames)))
    }
    async fn list_processes(&self, r: Request<ListProcessesRequest>) -> Rpc<ProcessList> {
        let limit = r.into_inner().limit;
        let n = if limit == 0 { 20_000 } else { 3 };
        let processes = (1..=n)
            .map(|pid| process(pid, if pid == 2 { "sh, \"x\"" } else { "curl" }, pid != 3))
            .collect();
        Ok(Response::new(ProcessList {
            time_ms: T0,
            processes,
            totals: Some(totals()),
            unattributed: Some(unattributed()),
            monitoring: true,
        }))
    }
    async fn list_connections(&self, _: Request<ListConnectionsRequest>) -> Rpc<ConnectionList> {
        Ok(Response::new(ConnectionList {
            time_ms: T0,
            connections: vec![Connection {
                protocol: "tcp".into(),
                local_addr: "::1".into(),
                local_port: 5555,
                remote_addr: "10.0.0.2".into(),
                remote_port: 443,
                state: "established".into(),
                process: process(9, "curl", true).process,
                traffic: Some(totals()),
                interface: "eth0".into(),
                ..Default::default()
            }],
        }))
    }
    async fn list_interfaces(&self, _: Request<ListInterfacesRequest>) -> Rpc<InterfaceList> {
        Ok(Response::new(InterfaceList {
            interfaces: vec![InterfaceRow {
                name: "eth0".into(),
                up: true,
                captured: true,
                rx_bytes: 5000,
                addresses: vec!["10.0.0.1/24".into()],
                counted: Some(totals()),
                ..Default::default()
            }],
        }))
    }
    async fn list_hosts(&self, _: Request<ListHostsRequest>) -> Rpc<HostList> {
        Ok(Response::new(HostList {
            time_ms: T0,
            hosts: vec![HostRow {
                address: "10.0.0.2".into(),
                name: "example.org".into(),
                traffic: Some(totals()),
                processes: vec!["curl".into()],
                connections: 1,
                ..Default::default()
            }],
        }))
    }
    async fn list_sessions(&self, _: Request<ListSessionsRequest>) -> Rpc<SessionList> {
        Ok(Response::new(SessionList {
            sessions: vec![session()],
        }))
    }
    async fn list_alerts(&self, r: Request<ListAlertsRequest>) -> Rpc<AlertList> {
        Ok(Response::new(AlertList {
            alerts: vec![Alert {
                id: 1,
                kind: ThresholdKind::ProcessRate as i32,
                state: AlertState::Open as i32,
                process: process(9, "curl", true).process,
                threshold: 1000,
                value: 2000,
                peak: 3000,
                // Echo the request so a test can check WHEN's mapping.
                started_ms: r.into_inner().since_ms,
                message: "curl above 1000 B/s".into(),
                ..Default::default()
            }],
        }))
    }
    async fn report(&self, r: Request<ReportRequest>) -> Rpc<ReportReply> {
        let r = r.into_inner();
        // Echo the zone asked for: Tokyo's offset, else UTC's.
        let offset = if r.time_zone == "Asia/Tokyo" {
            32_400
        } else {
            0
        };
        let row = |key: &str, up, down| ReportRow {
            key: key.into(),
            label: key.into(),
            up_bytes: up,
            down_bytes: down,
            processes: 1,
            ..Default::default()
        };
        Ok(Response::new(ReportReply {
            since_ms: r.since_ms,
            until_ms: r.until_ms,
            group_by: r.group_by,
            rows: vec![row("firefox", 100, 500), row("curl", 50, 150)],
            totals: Some(Traffic {
                up_bytes: 200,
                down_bytes: 800,
                ..Default::default()
            }),
            others: Some(row("", 50, 150)),
            // Two UTC months when asked for months.
            periods: if r.every == ReportEvery::Month as i32 {
                vec![
                    ReportPeriod {
                        since_ms: T0,
                        until_ms: T0 + 31 * 86_400_000,
                        totals: Some(Traffic {
                            up_bytes: 100,
                            down_bytes: 300,
                            ..Default::default()
                        }),
                        rows: vec![row("firefox", 100, 300)],
                        others: None,
                        utc_offset_s: offset,
                    },
                    ReportPeriod {
                        since_ms: T0 + 31 * 86_400_000,
                        until_ms: T0 + 59 * 86_400_000,
                        totals: Some(Traffic {
                            up_bytes: 100,
                            down_bytes: 500,
                            ..Default::default()
                        }),
                        rows: vec![row("curl", 50, 150)],
                        others: Some(row("", 50, 350)),
                        utc_offset_s: offset,
                    },
                ]
            } else {
                Vec::new()
            },
            time_zone: r.time_zone.clone(),
        }))
    }

    type ExportStream = Rows<ExportRow>;
    async fn export(&self, r: Request<ExportRequest>) -> Rpc<Self::ExportStream> {
        let fail = r.into_inner().since_ms == 1;
        let mut rows: Vec<Result<ExportRow, RpcStatus>> = (0..1000)
            .map(|i| {
                Ok(ExportRow {
                    time_ms: T0 + i * 60_000,
                    process: process(42, "a,b", true).process,
                    up_bytes: 1,
                    down_bytes: 2,
                    protocols: vec!["tcp".into()],
                    ..Default::default()
                })
            })
            .collect();
        if fail {
            rows.push(Err(RpcStatus::internal("database is locked")));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(rows))))
    }
}
