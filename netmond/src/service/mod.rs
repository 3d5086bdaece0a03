//! The gRPC service on the Unix socket: access checks from the peer's
//! credentials, RPC handlers, streams. The only place that builds a `Status`.

pub mod accept;
pub mod authority;
pub mod hpack;
pub mod limits;
pub mod peer;
pub mod socket;

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use netmon_proto::v1::{self, netmon_server::Netmon, netmon_server::NetmonServer};
use netmon_proto::zone::Zone;
use netmon_proto::MAX_MESSAGE_BYTES;
use tokio::sync::{broadcast, mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::{info, instrument, warn};

use crate::engine::{Engine, EngineError, THRESHOLD_PRESETS};
use accept::ConnInfo;
use limits::{Limits, Slots};
use peer::Peer;

/// Read calls that need blocking work (socket tables) at once; more wait
/// their turn without holding a thread.
const BLOCKING_READS: usize = 4;

/// Groups that gate access, resolved at start.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    /// May read (socket group).
    pub read_gid: u32,
    /// May control; `None` = same as readers.
    pub control_gid: Option<u32>,
}

pub struct Service {
    engine: Arc<Engine>,
    access: Access,
    shutdown: watch::Receiver<bool>,
    subscribers: Arc<Slots>,
    exports: Arc<Slots>,
    blocking_reads: Semaphore,
}

type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Service {
    pub fn new(
        engine: Arc<Engine>,
        access: Access,
        limits: &Limits,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Service {
            engine,
            access,
            shutdown,
            subscribers: Slots::new("Subscribe streams", limits.subscribers, 0),
            exports: Slots::new("Export streams", limits.exports, 0),
            blocking_reads: Semaphore::new(BLOCKING_READS),
        }
    }

    /// The caller as the kernel described it at connect(); a connection
    /// over its cap gets the reason instead.
    fn peer<T>(req: &Request<T>) -> Result<Arc<Peer>, Status> {
        let info = req
            .extensions()
            .get::<ConnInfo>()
            .ok_or_else(|| Status::permission_denied("peer credentials unavailable"))?;
        if let Some(why) = &info.refused {
            return Err(Status::resource_exhausted(why.to_string()));
        }
        Ok(info.peer.clone())
    }

    fn check_read<T>(&self, req: &Request<T>) -> Result<Arc<Peer>, Status> {
        let p = Self::peer(req)?;
        if p.in_group(self.access.read_gid) {
            Ok(p)
        } else {
            Err(Status::permission_denied(
                "not a member of the netmon group",
            ))
        }
    }

    fn check_control<T>(&self, req: &Request<T>, what: &str) -> Result<Arc<Peer>, Status> {
        let p = self.check_read(req)?;
        if let Some(gid) = self.access.control_gid {
            if !p.in_group(gid) {
                warn!(
                    uid = p.uid,
                    pid = p.pid,
                    rpc = what,
                    "control call denied: caller is not in control_group"
                );
                return Err(Status::permission_denied(format!(
                    "{what} needs membership of the control group (gid {gid}); read-only access is allowed"
                )));
            }
        }
        info!(uid = p.uid, pid = p.pid, rpc = what, "control call");
        Ok(p)
    }
}

fn to_status(e: EngineError) -> Status {
    match e {
        EngineError::InvalidArgument(m) => Status::invalid_argument(m),
        EngineError::NotFound(m) => Status::not_found(m),
        EngineError::Start(_) | EngineError::Reload(_) => {
            Status::failed_precondition(e.to_string())
        }
        EngineError::Store(e) => store_status(e),
    }
}

fn store_status(e: crate::store::StoreError) -> Status {
    use crate::store::StoreError;
    match e {
        StoreError::BadRange { .. }
        | StoreError::TooManyPeriods { .. }
        | StoreError::ProcessNeedsHosts => Status::invalid_argument(e.to_string()),
        StoreError::Busy => Status::resource_exhausted(e.to_string()),
        // Not `unavailable`: clients take that as "the daemon cannot be reached".
        e => Status::failed_precondition(format!(
            "history is unavailable: {:#}",
            anyhow::Error::from(e)
        )),
    }
}

fn reply(o: crate::engine::ControlOutcome) -> Response<v1::ControlReply> {
    Response::new(v1::ControlReply {
        monitoring: o.monitoring,
        changed: o.changed,
        session: o.session.as_ref().map(crate::engine::session_to_proto),
        message: o.message,
    })
}

fn sort_rows(rows: &mut [v1::ProcessRow], sort: &str) -> Result<(), Status> {
    let t = |r: &v1::ProcessRow| r.traffic.unwrap_or_default();
    match sort {
        "" | "total" => rows.sort_by_key(|r| std::cmp::Reverse(t(r).up_bytes + t(r).down_bytes)),
        "up" => rows.sort_by_key(|r| std::cmp::Reverse((t(r).up_bps, t(r).up_bytes))),
        "down" => rows.sort_by_key(|r| std::cmp::Reverse((t(r).down_bps, t(r).down_bytes))),
        "name" => rows.sort_by(|a, b| {
            let n = |r: &v1::ProcessRow| {
                r.process
                    .as_ref()
                    .map(|p| p.name.to_lowercase())
                    .unwrap_or_default()
            };
            n(a).cmp(&n(b))
        }),
        other => {
            return Err(Status::invalid_argument(format!(
                "unknown sort '{other}': use up, down, total or name"
            )))
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Netmon for Service {
    #[instrument(skip_all)]
    async fn get_status(
        &self,
        req: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::Status>, Status> {
        self.check_read(&req)?;
        Ok(Response::new(self.engine.status()))
    }

    #[instrument(skip_all)]
    async fn start_monitoring(
        &self,
        req: Request<v1::StartRequest>,
    ) -> Result<Response<v1::ControlReply>, Status> {
        self.check_control(&req, "start")?;
        let engine = self.engine.clone();
        let ifaces = req.into_inner().interfaces;
        let out = tokio::task::spawn_blocking(move || engine.start(ifaces))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(to_status)?;
        Ok(reply(out))
    }

    #[instrument(skip_all)]
    async fn stop_monitoring(
        &self,
        req: Request<v1::StopRequest>,
    ) -> Result<Response<v1::ControlReply>, Status> {
        self.check_control(&req, "stop")?;
        let engine = self.engine.clone();
        let out = tokio::task::spawn_blocking(move || engine.stop())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(reply(out))
    }

    #[instrument(skip_all)]
    async fn reset(
        &self,
        req: Request<v1::ResetRequest>,
    ) -> Result<Response<v1::ControlReply>, Status> {
        self.check_control(&req, "reset")?;
        Ok(reply(self.engine.reset()))
    }

    #[instrument(skip_all)]
    async fn reload(
        &self,
        req: Request<v1::ReloadRequest>,
    ) -> Result<Response<v1::ReloadReply>, Status> {
        self.check_control(&req, "reload")?;
        let engine = self.engine.clone();
        let changes = tokio::task::spawn_blocking(move || engine.reload())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(to_status)?;
        Ok(Response::new(v1::ReloadReply {
            message: changes.summary(),
            applied: changes.applied,
            needs_restart: changes.needs_restart,
        }))
    }

    #[instrument(skip_all)]
    async fn list_thresholds(
        &self,
        req: Request<v1::ListThresholdsRequest>,
    ) -> Result<Response<v1::ThresholdList>, Status> {
        self.check_read(&req)?;
        Ok(Response::new(v1::ThresholdList {
            thresholds: self.engine.thresholds(),
            presets: THRESHOLD_PRESETS.to_vec(),
        }))
    }

    #[instrument(skip_all)]
    async fn set_threshold(
        &self,
        req: Request<v1::SetThresholdRequest>,
    ) -> Result<Response<v1::Threshold>, Status> {
        self.check_control(&req, "threshold set")?;
        self.engine
            .set_threshold(req.into_inner())
            .map(Response::new)
            .map_err(to_status)
    }

    #[instrument(skip_all)]
    async fn clear_thresholds(
        &self,
        req: Request<v1::ClearThresholdsRequest>,
    ) -> Result<Response<v1::ClearThresholdsReply>, Status> {
        self.check_control(&req, "threshold clear")?;
        let removed = self
            .engine
            .clear_thresholds(req.get_ref())
            .map_err(to_status)?;
        Ok(Response::new(v1::ClearThresholdsReply { removed }))
    }

    type SubscribeStream = RpcStream<v1::Frame>;

    #[instrument(skip_all)]
    async fn subscribe(
        &self,
        req: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let peer = self.check_read(&req)?;
        let slot = self
            .subscribers
            .try_take(peer.uid)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let every = u64::from(req.get_ref().every_ticks.max(1));
        let (first, mut rx) = self.engine.subscribe();
        let guard = self.engine.subscriber_guard();
        let engine = self.engine.clone();
        let mut shutdown = self.shutdown.clone();
        // A small queue per client: a client that stops reading only stalls
        // its own task, never the tick or other clients.
        let (tx, out) = mpsc::channel::<Result<v1::Frame, Status>>(2);
        tokio::spawn(async move {
            let _guard = (guard, slot);
            if tx.send(Ok((*first).clone())).await.is_err() {
                return;
            }
            // Alerts of skipped ticks ride on the next frame sent ("since the
            // previous frame" is per subscriber). Bounded like the recent list.
            let mut held: Vec<v1::Alert> = Vec::new();
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    r = rx.recv() => match r {
                        Ok(frame) => {
                            if frame.seq % every != 0 {
                                if held.len() < crate::engine::RECENT_ALERTS {
                                    held.extend(frame.alerts.iter().cloned());
                                }
                                continue;
                            }
                            let mut out = (*frame).clone();
                            if !held.is_empty() {
                                held.append(&mut out.alerts);
                                out.alerts = std::mem::take(&mut held);
                            }
                            if tx.send(Ok(out)).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Every frame is complete, so skipping to the next resyncs the client.
                            engine.resyncs.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    #[instrument(skip_all)]
    async fn list_processes(
        &self,
        req: Request<v1::ListProcessesRequest>,
    ) -> Result<Response<v1::ProcessList>, Status> {
        self.check_read(&req)?;
        let r = req.into_inner();
        let f = self.engine.latest_frame();
        let mut rows: Vec<v1::ProcessRow> = f
            .processes
            .iter()
            .filter(|p| !r.only_alive || p.alive)
            .cloned()
            .collect();
        sort_rows(&mut rows, &r.sort)?;
        if r.limit > 0 {
            rows.truncate(r.limit as usize);
        }
        Ok(Response::new(v1::ProcessList {
            time_ms: f.time_ms,
            processes: rows,
            totals: f.totals,
            unattributed: f.unattributed.clone(),
            monitoring: f.monitoring,
        }))
    }

    #[instrument(skip_all)]
    async fn list_connections(
        &self,
        req: Request<v1::ListConnectionsRequest>,
    ) -> Result<Response<v1::ConnectionList>, Status> {
        self.check_read(&req)?;
        let r = req.into_inner();
        let engine = self.engine.clone();
        let _turn = self
            .blocking_reads
            .acquire()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut conns = tokio::task::spawn_blocking(move || engine.connections())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        if r.pid != 0 {
            conns.retain(|c| c.process.as_ref().is_some_and(|p| p.pid == r.pid));
        }
        conns.sort_by_key(|c| {
            let t = c.traffic.unwrap_or_default();
            std::cmp::Reverse(t.up_bytes + t.down_bytes)
        });
        if r.limit > 0 {
            conns.truncate(r.limit as usize);
        }
        Ok(Response::new(v1::ConnectionList {
            time_ms: crate::clock::now_ms(),
            connections: conns,
        }))
    }

    #[instrument(skip_all)]
    async fn list_interfaces(
        &self,
        req: Request<v1::ListInterfacesRequest>,
    ) -> Result<Response<v1::InterfaceList>, Status> {
        self.check_read(&req)?;
        Ok(Response::new(v1::InterfaceList {
            interfaces: self.engine.latest_frame().interfaces.clone(),
        }))
    }

    #[instrument(skip_all)]
    async fn list_hosts(
        &self,
        req: Request<v1::ListHostsRequest>,
    ) -> Result<Response<v1::HostList>, Status> {
        self.check_read(&req)?;
        let limit = req.get_ref().limit;
        let f = self.engine.latest_frame();
        let mut hosts = f.hosts.clone();
        if limit > 0 {
            hosts.truncate(limit as usize);
        }
        Ok(Response::new(v1::HostList {
            time_ms: f.time_ms,
            hosts,
        }))
    }

    #[instrument(skip_all)]
    async fn list_sessions(
        &self,
        req: Request<v1::ListSessionsRequest>,
    ) -> Result<Response<v1::SessionList>, Status> {
        self.check_read(&req)?;
        let r = req.into_inner();
        let sessions = self
            .engine
            .sessions(r.since_ms, r.limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::SessionList { sessions }))
    }

    #[instrument(skip_all)]
    async fn list_alerts(
        &self,
        req: Request<v1::ListAlertsRequest>,
    ) -> Result<Response<v1::AlertList>, Status> {
        self.check_read(&req)?;
        let r = req.into_inner();
        let mut alerts = self
            .engine
            .store()
            .list_alerts(r.since_ms, r.limit)
            .await
            .map_err(store_status)?;
        // The engine's own list is fresher (open alerts' peaks move every tick).
        for live in self.engine.alerts(r.since_ms, r.limit) {
            match alerts.iter_mut().find(|a| a.id == live.id) {
                Some(a) => *a = live,
                None => alerts.push(live),
            }
        }
        alerts.sort_by_key(|a| std::cmp::Reverse(a.started_ms));
        if r.limit > 0 {
            alerts.truncate(r.limit as usize);
        }
        Ok(Response::new(v1::AlertList { alerts }))
    }

    #[instrument(skip_all)]
    async fn report(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::ReportReply>, Status> {
        self.check_read(&req)?;
        let r = req.into_inner();
        if r.until_ms != 0 && r.until_ms <= r.since_ms {
            return Err(Status::invalid_argument("since_ms must be before until_ms"));
        }
        // The client's zone if it names one, so its periods match its display.
        let zone = if r.time_zone.is_empty() {
            crate::clock::zone().clone()
        } else {
            Zone::named(&r.time_zone).map_err(|e| Status::invalid_argument(e.to_string()))?
        };
        self.engine
            .store()
            .report(r, zone)
            .await
            .map(Response::new)
            .map_err(store_status)
    }

    type ExportStream = RpcStream<v1::ExportRow>;

    #[instrument(skip_all)]
    async fn export(
        &self,
        req: Request<v1::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let peer = self.check_read(&req)?;
        let r = req.into_inner();
        if r.until_ms != 0 && r.until_ms <= r.since_ms {
            return Err(Status::invalid_argument("since_ms must be before until_ms"));
        }
        let slot = self
            .exports
            .try_take(peer.uid)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let rows = self.engine.store().export(r.since_ms, r.until_ms).await;
        // The reader stops when this stream (and so its receiver) is dropped;
        // the slot goes with it.
        let stream = ReceiverStream::new(rows).map(move |r| {
            let _held = &slot;
            r.map_err(store_status)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Serves the API on `listener` until `shutdown` flips to true.
pub async fn serve(
    engine: Arc<Engine>,
    listener: std::os::unix::net::UnixListener,
    access: Access,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener));
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%e, "cannot register the socket with the runtime");
            return Ok(());
        }
    };
    info!(?limits, "API limits");
    let svc = NetmonServer::new(Service::new(engine, access, &limits, shutdown.clone()))
        .max_decoding_message_size(limits::MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(netmon_proto::FILE_DESCRIPTOR_SET)
    };
    // grpcurl asks v1 first; grpcio-reflection's client and older tools v1alpha.
    let (reflection_v1, reflection_v1alpha) = match (
        reflection().build_v1(),
        reflection().build_v1alpha(),
    ) {
        (Ok(a), Ok(b)) => (Some(a), Some(b)),
        (Err(e), _) | (_, Err(e)) => {
            warn!(error = %e, "gRPC reflection is off: the embedded descriptor set is unusable");
            (None, None)
        }
    };
    let gate = Arc::new(accept::Gate::new(&limits));
    let incoming = accept::incoming(listener, gate, shutdown.clone());
    let mut stop = shutdown;
    // tonic leaves h2's stream cap off unless asked; windows bound what a
    // client can make us buffer before a handler (and its checks) runs.
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits::STREAMS_PER_CONNECTION)
        .initial_stream_window_size(limits::STREAM_WINDOW)
        .initial_connection_window_size(limits::CONNECTION_WINDOW)
        .http2_max_header_list_size(authority::MAX_HEADER_LIST as u32)
        .add_service(svc)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}
