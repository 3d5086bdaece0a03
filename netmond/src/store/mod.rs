//! SQLite history on its own thread: schema and migrations, batched writes,
//! queries. Nothing else in netmond touches SQL; callers never wait on a write.

mod minute;
mod query;
mod schema;
mod write;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netmon_proto::v1;
use netmon_proto::zone::Zone;
use rusqlite::{params, Connection, OpenFlags};
use tracing::{debug, error, info, warn};

use minute::{Accumulator, Batch};
pub use minute::{HostTick, IfaceTick, ProcHostTick, ProcTick, TickRecord};
use schema::MIGRATIONS;
use write::Ids;
pub use write::Retention;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database '{}'", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database query failed")]
    Query(#[from] rusqlite::Error),
    #[error("cannot move corrupt database '{}' aside", path.display())]
    MoveAside {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store thread is gone")]
    Gone,
    #[error("the store is busy; try again")]
    Busy,
    #[error("database '{}' is unavailable (see status)", path.display())]
    Unavailable { path: PathBuf },
    #[error("empty range: since {since_ms} is not before until {until_ms}")]
    BadRange { since_ms: i64, until_ms: i64 },
    #[error("the report would have {periods} periods; at most {max} (use a shorter range or a longer period)")]
    TooManyPeriods { periods: i64, max: i64 },
    #[error("a report of one program's traffic goes by host or by category")]
    ProcessNeedsHosts,
}

/// One monitoring session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRecord {
    pub id: u64,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub interfaces: Vec<String>,
    pub up_bytes: u64,
    pub down_bytes: u64,
}

/// What `status` reports about the database.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub path: PathBuf,
    /// "ok", "degraded" (writes are being retried) or "failed".
    pub state: &'static str,
    pub error: String,
    pub size_bytes: u64,
    /// Flush batches waiting to be written.
    pub pending: u64,
    pub last_flush_ms: i64,
    pub dropped_batches: u64,
    pub dropped_ticks: u64,
    /// Times the store thread failed (a panic) and was started again.
    pub restarts: u32,
    /// What the last failure said.
    pub last_failure: String,
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, StoreError>>;

enum Cmd {
    Tick(Box<TickRecord>),
    Session(SessionRecord),
    Alert(Box<v1::Alert>),
    ListSessions {
        since_ms: i64,
        limit: u32,
        reply: Reply<Vec<SessionRecord>>,
    },
    ListAlerts {
        since_ms: i64,
        limit: u32,
        reply: Reply<Vec<v1::Alert>>,
    },
    Report {
        req: v1::ReportRequest,
        zone: Zone,
        reply: Reply<v1::ReportReply>,
    },
    Flush(tokio::sync::oneshot::Sender<()>),
    /// A worker failure, for the test of the restart.
    #[cfg(test)]
    Fail,
}

/// How the store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Time between batched writes.
    pub flush_interval: Duration,
    pub retention: Retention,
    /// `privacy.history_hosts`: false = no remote addresses or host names are
    /// written (only per-process and per-interface samples).
    pub history_hosts: bool,
    /// Remote hosts kept per process per minute; the rest go to one
    /// "other hosts" row (`[store] process_hosts_per_minute`).
    pub process_hosts_per_minute: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            flush_interval: Duration::from_secs(10),
            retention: Retention::default(),
            history_hosts: true,
            process_hosts_per_minute: 20,
        }
    }
}

/// Handle to the store thread. Dropping it (or `shutdown`) flushes and joins.
pub struct Store {
    tx: Option<SyncSender<Cmd>>,
    path: PathBuf,
    health: Arc<Mutex<Health>>,
    /// Tick records dropped because the store's queue was full.
    dropped_ticks: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    history_hosts: bool,
}

const QUEUE: usize = 4096;
/// Flush batches kept while the database cannot be written; the oldest
/// goes (counted) beyond this. At the default 10 s that is about 3 hours.
const MAX_PENDING_BATCHES: usize = 1024;
/// Rows per export query.
const EXPORT_CHUNK: u32 = 1000;
/// Export rows buffered between the reader and the client.
const EXPORT_BUFFER: usize = 256;
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
const VACUUM_EVERY: Duration = Duration::from_secs(86_400);

impl Store {
    /// Starts the store thread. A database that cannot be opened does not stop
    /// the daemon: the store reports `failed` and keeps retrying.
    pub fn start(path: &Path, opts: StoreOptions) -> Store {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let health = Arc::new(Mutex::new(Health {
            path: path.to_path_buf(),
            state: "ok",
            ..Health::default()
        }));
        let h = health.clone();
        let p = path.to_path_buf();
        let history_hosts = opts.history_hosts;
        let thread = std::thread::Builder::new()
            .name("netmond-store".into())
            .spawn(move || supervise(&p, &h, opts, &rx))
            .map_err(|e| error!(%e, "cannot start the store thread"))
            .ok();
        Store {
            tx: Some(tx),
            path: path.to_path_buf(),
            health,
            dropped_ticks: Arc::new(AtomicU64::new(0)),
            thread,
            history_hosts,
        }
    }

    pub fn health(&self) -> Health {
        let mut h = self.health.lock().map(|h| h.clone()).unwrap_or_default();
        h.dropped_ticks = self.dropped_ticks.load(Ordering::Relaxed);
        if h.dropped_ticks > 0 {
            let note = format!(
                "{} tick records dropped (store queue full)",
                h.dropped_ticks
            );
            h.error = if h.error.is_empty() {
                note
            } else {
                format!("{}; {note}", h.error)
            };
        }
        h
    }

    /// Hands one tick's figures to the store; never blocks. A full queue
    /// drops the record and counts it (shown in `status`).
    pub fn record_tick(&self, mut rec: TickRecord) {
        if !self.history_hosts {
            rec.hosts.clear();
            rec.proc_hosts.clear();
        }
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(Cmd::Tick(Box::new(rec))) {
                let n = self.dropped_ticks.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(1000) {
                    warn!(dropped = n + 1, "store queue full; tick records dropped");
                }
            }
        }
    }

    /// Records the current state of a session (idempotent upsert, batched).
    pub fn session(&self, s: SessionRecord) {
        self.send(Cmd::Session(s));
    }

    /// Records an alert, inserting it or updating the row with its id.
    pub fn record_alert(&self, a: v1::Alert) {
        self.send(Cmd::Alert(Box::new(a)));
    }

    fn send(&self, cmd: Cmd) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(cmd) {
                warn!("store queue full; a write was dropped");
            }
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let tx = self.tx.as_ref().ok_or(StoreError::Gone)?;
        tx.try_send(make(reply)).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy,
            TrySendError::Disconnected(_) => StoreError::Gone,
        })?;
        rx.await.map_err(|_| StoreError::Gone)?
    }

    pub async fn list_sessions(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.ask(|reply| Cmd::ListSessions {
            since_ms,
            limit,
            reply,
        })
        .await
    }

    /// Alerts open at or after `since_ms`, newest first (`limit` 0 = 1000).
    pub async fn list_alerts(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<v1::Alert>, StoreError> {
        self.ask(|reply| Cmd::ListAlerts {
            since_ms,
            limit,
            reply,
        })
        .await
    }

    /// Everything pending is written first, so the report covers up to now.
    /// Periods (`every`) are cut by `zone`.
    pub async fn report(
        &self,
        req: v1::ReportRequest,
        zone: Zone,
    ) -> Result<v1::ReportReply, StoreError> {
        self.ask(|reply| Cmd::Report { req, zone, reply }).await
    }

    /// Streams the per-minute process samples of [since, until) (until 0 =
    /// now), oldest first, from a read-only connection of its own. Dropping
    /// the receiver stops the export.
    pub async fn export(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> tokio::sync::mpsc::Receiver<Result<v1::ExportRow, StoreError>> {
        self.flush().await;
        let until = if until_ms == 0 {
            crate::clock::now_ms()
        } else {
            until_ms
        };
        let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_BUFFER);
        let path = self.path.clone();
        // Only the queries run on the blocking pool, one short chunk at a
        // time; rows are sent from here, so a client that stops reading holds
        // no thread (an unread export used to pin one until the pool ran dry).
        tokio::spawn(async move {
            let opened = tokio::task::spawn_blocking(move || {
                query::ExportReader::open(&path, since_ms, until, EXPORT_CHUNK)
            })
            .await;
            let mut reader = match opened {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return export_failed(&tx, e).await,
                Err(e) => return warn!(%e, "export task failed"),
            };
            let mut sent = 0u64;
            loop {
                let read = tokio::task::spawn_blocking(move || {
                    let rows = reader.next_chunk();
                    (reader, rows)
                })
                .await;
                let rows = match read {
                    Ok((r, Ok(rows))) => {
                        reader = r;
                        rows
                    }
                    Ok((_, Err(e))) => return export_failed(&tx, e).await,
                    Err(e) => return warn!(%e, "export task failed"),
                };
                if rows.is_empty() {
                    return debug!(rows = sent, "export finished");
                }
                for row in rows {
                    if tx.send(Ok(row)).await.is_err() {
                        return debug!(rows = sent, "export ended by the client");
                    }
                    sent += 1;
                }
            }
        });
        rx
    }

    /// Writes everything pending now.
    pub async fn flush(&self) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        if let Some(tx) = &self.tx {
            if tx.try_send(Cmd::Flush(reply)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
            }
        }
    }

    /// Flushes and joins the thread.
    pub fn shutdown(mut self) {
        self.close();
    }

    fn close(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Pause before a failed store worker starts again, doubling per failure in
/// a row up to the last entry.
const RESTART_BACKOFF: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// Runs the worker until the queue closes. A worker that fails (a bug: a
/// panic) loses only what it had not flushed yet; a new one reopens the
/// database and takes the queue over, and `status` says it happened.
fn supervise(path: &Path, health: &Arc<Mutex<Health>>, opts: StoreOptions, rx: &Receiver<Cmd>) {
    let mut failures_in_a_row = 0usize;
    loop {
        let started = Instant::now();
        let worker = Worker::new(path.to_path_buf(), health.clone(), opts);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run(rx)));
        let Err(panic) = run else { return };
        let msg = panic_message(panic.as_ref());
        if started.elapsed() > Duration::from_secs(600) {
            failures_in_a_row = 0;
        }
        let pause = RESTART_BACKOFF[failures_in_a_row.min(RESTART_BACKOFF.len() - 1)];
        failures_in_a_row += 1;
        let restarts = health.lock().map_or(0, |mut h| {
            h.restarts = h.restarts.saturating_add(1);
            h.last_failure = msg.clone();
            h.restarts
        });
        error!(
            error = %msg,
            restarts,
            "the store thread failed; writes not yet flushed are lost; starting it again in {pause:?}"
        );
        std::thread::sleep(pause);
    }
}

/// The text a panic carried, or a placeholder.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

struct Worker {
    path: PathBuf,
    health: Arc<Mutex<Health>>,
    opts: StoreOptions,
    conn: Option<Connection>,
    acc: Accumulator,
    /// Batches not yet written, oldest first (bounded: MAX_PENDING_BATCHES).
    pending: VecDeque<Batch>,
    dropped_batches: u64,
    /// Latest state of each session not yet written: upserts are idempotent,
    /// so a write that fails is simply retried with the newest state.
    pending_sessions: BTreeMap<u64, SessionRecord>,
    pending_alerts: BTreeMap<u64, v1::Alert>,
    ids: Ids,
    last_open_attempt: Option<Instant>,
    last_retention: Option<Instant>,
    last_sweep: Option<Instant>,
    last_vacuum: Option<Instant>,
    /// Time between retention passes: RETENTION_EVERY (a field so a test can
    /// run the schedule in seconds).
    retention_every: Duration,
}

impl Worker {
    fn new(path: PathBuf, health: Arc<Mutex<Health>>, opts: StoreOptions) -> Self {
        Worker {
            path,
            health,
            opts,
            conn: None,
            acc: Accumulator::default(),
            pending: VecDeque::new(),
            dropped_batches: 0,
            pending_sessions: BTreeMap::new(),
            pending_alerts: BTreeMap::new(),
            ids: Ids::default(),
            last_open_attempt: None,
            last_retention: None,
            last_sweep: None,
            last_vacuum: None,
            retention_every: RETENTION_EVERY,
        }
    }

    fn run(mut self, rx: &Receiver<Cmd>) {
        self.ensure_open();
        self.close_crashed_sessions();
        self.maintain(crate::clock::now_ms());
        let mut next_flush = Instant::now() + self.opts.flush_interval;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
            // Checked after every command too: a queue that never runs dry
            // must not postpone the flush.
            if Instant::now() >= next_flush {
                self.flush();
                self.maintain(crate::clock::now_ms());
                next_flush = Instant::now() + self.opts.flush_interval;
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Tick(rec) => {
                if crate::fault::fire("store", "") {
                    panic!("injected failure of the store (NETMOND_FAULT)");
                }
                self.acc.record(&rec);
            }
            Cmd::Session(s) => {
                self.pending_sessions.insert(s.id, s);
            }
            Cmd::Alert(a) => {
                self.pending_alerts.insert(a.id, *a);
            }
            Cmd::ListSessions {
                since_ms,
                limit,
                reply,
            } => {
                self.flush();
                let _ = reply.send(self.list_sessions(since_ms, limit));
            }
            Cmd::ListAlerts {
                since_ms,
                limit,
                reply,
            } => {
                self.flush();
                let _ = reply.send(
                    self.conn_ref()
                        .and_then(|c| query::list_alerts(c, since_ms, limit)),
                );
            }
            Cmd::Report { req, zone, reply } => {
                self.flush();
                let now = crate::clock::now_ms();
                let retention = self.opts.retention;
                let _ = reply.send(
                    self.conn_ref()
                        .and_then(|c| query::report(c, &req, &zone, now, &retention)),
                );
            }
            Cmd::Flush(reply) => {
                self.flush();
                let _ = reply.send(());
            }
            #[cfg(test)]
            Cmd::Fail => panic!("store worker failure for the test"),
        }
    }

    fn conn_ref(&self) -> Result<&Connection, StoreError> {
        self.conn.as_ref().ok_or_else(|| StoreError::Unavailable {
            path: self.path.clone(),
        })
    }

    fn set_health(&self, state: &'static str, error: String) {
        let size = db_size(&self.path);
        if let Ok(mut h) = self.health.lock() {
            if h.state != state {
                match state {
                    "ok" => info!("database writes resumed"),
                    "degraded" => {
                        warn!(%error, "database is locked by another process; writes are kept and retried")
                    }
                    _ => error!(%error, "database cannot be written; monitoring continues"),
                }
            }
            h.state = state;
            h.error = error;
            if self.dropped_batches > 0 {
                let note = format!(
                    "{} batches dropped while the database could not be written",
                    self.dropped_batches
                );
                h.error = if h.error.is_empty() {
                    note
                } else {
                    format!("{}; {note}", h.error)
                };
            }
            h.size_bytes = size;
            h.pending = self.pending.len() as u64;
            h.dropped_batches = self.dropped_batches;
            if state == "ok" {
                h.last_flush_ms = crate::clock::now_ms();
            }
        }
    }

    fn ensure_open(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        if self
            .last_open_attempt
            .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return false;
        }
        self.last_open_attempt = Some(Instant::now());
        match open(&self.path) {
            Ok(c) => {
                self.conn = Some(c);
                self.ids.clear();
                self.set_health("ok", String::new());
                true
            }
            Err(e) => {
                self.set_health("failed", format_chain(&e));
                false
            }
        }
    }

    fn close_crashed_sessions(&mut self) {
        if let Some(c) = &self.conn {
            match c.execute(
                "UPDATE monitoring_sessions SET ended_ms = updated_ms WHERE ended_ms = 0",
                [],
            ) {
                Ok(n) if n > 0 => {
                    info!(sessions = n, "closed sessions left open by an earlier run")
                }
                Ok(_) => {}
                Err(e) if is_corruption(&e) => {
                    self.replace_corrupt(&e);
                }
                Err(e) => warn!(%e, "cannot close earlier sessions"),
            }
        }
    }

    /// A database that opened but whose pages turn out corrupt on use: the
    /// same as one found corrupt when opened. True when a new one is open.
    fn replace_corrupt(&mut self, e: &rusqlite::Error) -> bool {
        // Close it first, so no handle writes into the renamed file.
        self.conn = None;
        if let Err(err) = move_aside(&self.path, e) {
            self.set_health("failed", format_chain(&err));
            return false;
        }
        self.last_open_attempt = None;
        self.ensure_open()
    }

    /// Moves what was gathered into the pending queue and writes the queue.
    fn flush(&mut self) {
        let b = self.acc.take();
        if !b.is_empty() {
            self.pending.push_back(b);
        }
        while self.pending.len() > MAX_PENDING_BATCHES {
            self.pending.pop_front();
            self.dropped_batches += 1;
        }
        if !self.ensure_open() {
            let err = self
                .health
                .lock()
                .map(|h| h.error.clone())
                .unwrap_or_default();
            self.set_health("failed", err);
            return;
        }
        let mut written = self.write_pending();
        if let Err(e) = &written {
            if is_corruption(e) && self.replace_corrupt(e) {
                written = self.write_pending();
            }
        }
        match written {
            Ok(()) => self.set_health("ok", String::new()),
            Err(e) => {
                let busy = matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                );
                let msg = format!("database write failed: {e}");
                self.set_health(if busy { "degraded" } else { "failed" }, msg);
            }
        }
    }

    fn write_pending(&mut self) -> Result<(), rusqlite::Error> {
        if self.pending.is_empty()
            && self.pending_sessions.is_empty()
            && self.pending_alerts.is_empty()
        {
            return Ok(());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let now = crate::clock::now_ms();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut staged = Ids::default();
        write::write_sessions(&tx, &self.pending_sessions, now)?;
        write::write_alerts(&tx, &self.pending_alerts)?;
        for b in &self.pending {
            write::write_batch(
                &tx,
                b,
                &self.ids,
                &mut staged,
                now,
                self.opts.process_hosts_per_minute as usize,
            )?;
        }
        tx.commit()?;
        self.ids.merge(staged);
        self.pending.clear();
        self.pending_sessions.clear();
        self.pending_alerts.clear();
        Ok(())
    }

    /// Retention (hourly) and VACUUM (at most daily), only when all is written.
    fn maintain(&mut self, now_ms: i64) {
        if !self.pending.is_empty()
            || self
                .last_retention
                .is_some_and(|t| t.elapsed() < self.retention_every)
        {
            return;
        }
        let sweep = self.last_sweep.is_none_or(|t| t.elapsed() >= VACUUM_EVERY);
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        self.last_retention = Some(Instant::now());
        match write::apply_retention(conn, now_ms, &self.opts.retention, sweep) {
            Ok(p) => {
                if sweep {
                    self.last_sweep = Some(Instant::now());
                }
                if p.identities > 0 {
                    self.ids.clear();
                }
                if p != write::Pruned::default() {
                    info!(
                        samples = p.samples,
                        alerts = p.alerts,
                        identities = p.identities,
                        "retention applied"
                    );
                }
            }
            Err(e) => warn!(error = %e, "retention failed; will retry"),
        }
        if self.last_vacuum.is_none_or(|t| t.elapsed() >= VACUUM_EVERY) {
            self.last_vacuum = Some(Instant::now());
            match write::vacuum_if_sparse(conn) {
                Ok(true) => info!("database vacuumed"),
                Ok(false) => {}
                Err(e) => warn!(error = %e, "VACUUM failed"),
            }
        }
    }

    fn list_sessions(&self, since_ms: i64, limit: u32) -> Result<Vec<SessionRecord>, StoreError> {
        let conn = self.conn_ref()?;
        let limit = if limit == 0 { 1000 } else { limit };
        let mut stmt = conn.prepare_cached(
            "SELECT id, started_ms, ended_ms, interfaces, up_bytes, down_bytes FROM monitoring_sessions
             WHERE started_ms >= ?1 OR ended_ms = 0 OR ended_ms >= ?1 ORDER BY started_ms DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since_ms, limit], |r| {
            let ifaces: String = r.get(3)?;
            Ok(SessionRecord {
                id: r.get::<_, i64>(0)?.max(0) as u64,
                started_ms: r.get(1)?,
                ended_ms: r.get(2)?,
                interfaces: ifaces
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                up_bytes: r.get::<_, i64>(4)?.max(0) as u64,
                down_bytes: r.get::<_, i64>(5)?.max(0) as u64,
            })
        })?;
        let mut out: Vec<SessionRecord> = rows.collect::<Result<_, _>>()?;
        // Sessions not yet written are newer than anything on disk.
        for s in self.pending_sessions.values() {
            match out.iter_mut().find(|o| o.id == s.id) {
                Some(o) => *o = s.clone(),
                None => out.insert(0, s.clone()),
            }
        }
        Ok(out)
    }
}

fn db_size(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(Path::new(&wal))
}

async fn export_failed(
    tx: &tokio::sync::mpsc::Sender<Result<v1::ExportRow, StoreError>>,
    e: StoreError,
) {
    warn!(error = %format_chain(&e), "export failed");
    let _ = tx.send(Err(e)).await;
}

fn format_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Opens (creating if needed) and migrates the database. A file that is not
/// a database or is corrupt is moved aside and replaced, loudly.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let _ = std::fs::create_dir_all(dir);
        }
    }
    match open_and_migrate(path) {
        Ok(c) => Ok(c),
        Err(e) if is_corruption(&e) => {
            move_aside(path, &e)?;
            open_and_migrate(path).map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(StoreError::Open {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Renames a corrupt database (and drops its WAL and index files) so that a
/// new one can take its place; the old file stays for inspection.
fn move_aside(path: &Path, e: &rusqlite::Error) -> Result<(), StoreError> {
    let aside = aside_name(path);
    error!(db = %path.display(), moved_to = %aside.display(), error = %e, "database is corrupt; moving it aside and starting a new one");
    std::fs::rename(path, &aside).map_err(|source| StoreError::MoveAside {
        path: path.to_path_buf(),
        source,
    })?;
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(Path::new(&p));
    }
    Ok(())
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

fn aside_name(path: &Path) -> PathBuf {
    let ts = time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "unknown".to_owned());
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".corrupt-{ts}"));
    PathBuf::from(p)
}

fn open_and_migrate(path: &Path) -> Result<Connection, rusqlite::Error> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_millis(500))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tx = conn.transaction()?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::minute::tests::{proc_tick, tick};
    use super::*;

    #[test]
    fn migrations_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        drop(open(&p).unwrap());
        let c = open(&p).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn cut_command_lines_are_stored_marked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let s = Store::start(&p, StoreOptions::default());
        let mut t = proc_tick(1, "a", 100, 50, "tcp");
        t.identity.cmdline = "a".repeat(crate::attribution::procmap::CMDLINE_MAX);
        t.identity.cmdline_truncated = true;
        s.record_tick(tick(crate::clock::now_ms(), 1, vec![t]));
        s.flush().await;
        s.shutdown();
        let conn = Connection::open(&p).unwrap();
        let (len, cut): (i64, bool) = conn
            .query_row(
                "SELECT length(cmdline), cmdline_truncated FROM processes",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (len, cut),
            (crate::attribution::procmap::CMDLINE_MAX as i64, true)
        );
    }

    #[test]
    fn command_lines_stored_before_the_cap_are_cut_by_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        {
            let c = Connection::open(&p).unwrap();
            for sql in &MIGRATIONS[..2] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 2).unwrap();
            c.execute(
                "INSERT INTO processes (pid, start_time, name, exe, cmdline, uid, user, unit, first_seen_ms)
                 VALUES (1, 1, 'a', '', ?1, 0, '', '', 0), (2, 2, 'b', '', 'short', 0, '', '', 0)",
                [String::from("x").repeat(1 << 20)],
            )
            .unwrap();
        }
        let c = open(&p).unwrap();
        let rows: Vec<(i64, bool)> = c
            .prepare("SELECT length(cmdline), cmdline_truncated FROM processes ORDER BY pid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows, [(4096, true), (5, false)]);
    }

    #[test]
    fn corrupt_database_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        std::fs::write(&p, vec![0x42u8; 8192]).unwrap();
        let c = open(&p).unwrap();
        drop(c);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("t.db.corrupt-")),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn sessions_round_trip_and_crashed_ones_close() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let s = Store::start(
            &p,
            StoreOptions {
                flush_interval: Duration::from_secs(60),
                ..Default::default()
            },
        );
        s.session(SessionRecord {
            id: 5,
            started_ms: 5,
            ended_ms: 0,
            interfaces: vec!["eth0".into()],
            up_bytes: 10,
            down_bytes: 20,
        });
        let got = s.list_sessions(0, 10).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].interfaces, vec!["eth0".to_owned()]);
        s.shutdown();
        let s = Store::start(
            &p,
            StoreOptions {
                flush_interval: Duration::from_secs(60),
                ..Default::default()
            },
        );
        let got = s.list_sessions(0, 10).await.unwrap();
        assert!(
            got[0].ended_ms > 0,
            "a session left open by a dead daemon is closed at start"
        );
    }
}

#[cfg(test)]
mod fault_tests {
    use super::minute::tests::{proc_tick, tick};
    use super::*;

    fn worker(path: &Path) -> Worker {
        let health = Arc::new(Mutex::new(Health::default()));
        let mut w = Worker::new(path.to_path_buf(), health, StoreOptions::default());
        assert!(w.ensure_open());
        w
    }

    fn stored_up(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT coalesce(sum(up_bytes), 0) FROM process_minute",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn state(w: &Worker) -> (&'static str, u64) {
        let h = w.health.lock().unwrap();
        (h.state, h.pending)
    }

    #[test]
    fn pages_found_corrupt_on_write_move_the_file_aside_and_keep_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let mut w = worker(&p);
        w.handle(Cmd::Tick(Box::new(tick(
            0,
            1,
            vec![proc_tick(1, "a", 100, 0, "tcp")],
        ))));
        w.flush();
        assert_eq!(state(&w), ("ok", 0));
        // Close, overwrite the root page of every table and index, open
        // again: the schema is intact, so SQLite opens it and fails on use.
        w.conn = None;
        let roots: Vec<i64> = {
            let c = Connection::open(&p).unwrap();
            let mut st = c
                .prepare("SELECT rootpage FROM sqlite_master WHERE rootpage > 1")
                .unwrap();
            let roots = st.query_map([], |r| r.get(0)).unwrap();
            roots.map(Result::unwrap).collect()
        };
        let mut bytes = std::fs::read(&p).unwrap();
        for page in roots {
            let at = (page as usize - 1) * 4096;
            for (i, b) in bytes[at..at + 4096].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(37) ^ 0x5a;
            }
        }
        std::fs::write(&p, &bytes).unwrap();
        w.last_open_attempt = None;
        assert!(w.ensure_open(), "the schema alone opens");
        w.handle(Cmd::Tick(Box::new(tick(
            60_000,
            1,
            vec![proc_tick(1, "a", 150, 0, "tcp")],
        ))));
        w.flush();
        assert_eq!(state(&w), ("ok", 0));
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("t.db.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        // The new file holds the batch that met the corruption.
        assert_eq!(stored_up(&p), 50);
    }

    #[test]
    fn a_locked_database_degrades_then_everything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let mut w = worker(&p);
        w.handle(Cmd::Tick(Box::new(tick(
            0,
            1,
            vec![proc_tick(1, "a", 100, 0, "tcp")],
        ))));
        let locker = Connection::open(&p).unwrap();
        locker
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO hosts (address) VALUES ('x');")
            .unwrap();
        w.flush();
        assert_eq!(state(&w), ("degraded", 1));
        w.handle(Cmd::Tick(Box::new(tick(
            60_000,
            1,
            vec![proc_tick(1, "a", 150, 0, "tcp")],
        ))));
        w.flush();
        assert_eq!(state(&w), ("degraded", 2));
        locker.execute_batch("COMMIT").unwrap();
        w.flush();
        assert_eq!(state(&w), ("ok", 0));
        assert_eq!(stored_up(&p), 150);
    }

    /// Flushes once while another connection holds the write lock for
    /// `hold`; returns how long the flush took and the state after it.
    fn flush_under_lock(hold: Duration) -> (Duration, &'static str, i64) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let mut w = worker(&p);
        w.handle(Cmd::Tick(Box::new(tick(
            0,
            1,
            vec![proc_tick(1, "a", 100, 0, "tcp")],
        ))));
        let (locked_tx, locked_rx) = mpsc::channel();
        let lp = p.clone();
        let locker = std::thread::spawn(move || {
            let c = Connection::open(&lp).unwrap();
            c.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(hold);
            c.execute_batch("ROLLBACK").unwrap();
        });
        locked_rx.recv().unwrap();
        let t = Instant::now();
        w.flush();
        let took = t.elapsed();
        locker.join().unwrap();
        (took, state(&w).0, stored_up(&p))
    }

    #[test]
    fn a_flush_waits_half_a_second_for_the_write_lock() {
        // Held 0.3 s: the flush waits it out and writes.
        let (took, st, up) = flush_under_lock(Duration::from_millis(300));
        println!("lock held 300 ms: the flush took {} ms", took.as_millis());
        assert_eq!((st, up), ("ok", 100));
        assert!(took >= Duration::from_millis(250), "{took:?}");
        // Held 2 s: the flush gives up after 0.5 s and keeps its batch.
        let (took, st, up) = flush_under_lock(Duration::from_secs(2));
        println!(
            "lock held 2 s: the flush gave up after {} ms",
            took.as_millis()
        );
        assert_eq!((st, up), ("degraded", 0));
        assert!(
            (Duration::from_millis(450)..Duration::from_millis(1200)).contains(&took),
            "{took:?}"
        );
    }

    #[test]
    fn retention_runs_again_on_its_schedule_without_a_restart() {
        let aged = |p: &Path, ts: i64| {
            let c = Connection::open(p).unwrap();
            c.busy_timeout(Duration::from_secs(5)).unwrap();
            c.execute(
                "INSERT INTO process_minute VALUES (?1, 1, 1, 1, 1, 1, 0)",
                [ts],
            )
            .unwrap();
        };
        let rows = |p: &Path, ts: i64| -> i64 {
            Connection::open(p)
                .unwrap()
                .query_row(
                    "SELECT count(*) FROM process_minute WHERE ts_ms = ?1",
                    [ts],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let old = crate::clock::now_ms() - 2 * 86_400_000;
        // With the hourly schedule a row aged after the start stays; with the
        // schedule at 0.2 s it goes within a second, the thread still running.
        for (every, gone) in [(RETENTION_EVERY, false), (Duration::from_millis(200), true)] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("t.db");
            drop(open(&p).unwrap());
            aged(&p, old);
            let opts = StoreOptions {
                flush_interval: Duration::from_millis(50),
                retention: write::Retention {
                    minute_days: 1,
                    hour_days: 1,
                    day_days: 1,
                },
                ..StoreOptions::default()
            };
            let mut w = Worker::new(p.clone(), Arc::new(Mutex::new(Health::default())), opts);
            w.retention_every = every;
            let (tx, rx) = mpsc::sync_channel(16);
            let thread = std::thread::spawn(move || w.run(&rx));
            // The pass at start removes the first row.
            let deadline = Instant::now() + Duration::from_secs(5);
            while rows(&p, old) > 0 {
                assert!(Instant::now() < deadline, "no retention at start");
                std::thread::sleep(Duration::from_millis(20));
            }
            aged(&p, old + 1);
            std::thread::sleep(Duration::from_millis(1000));
            assert_eq!(rows(&p, old + 1) == 0, gone, "schedule {every:?}");
            drop(tx);
            thread.join().unwrap();
        }
    }

    #[test]
    fn pending_batches_are_bounded_and_drops_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let mut w = worker(&p);
        w.conn
            .as_ref()
            .unwrap()
            .pragma_update(None, "query_only", true)
            .unwrap();
        for i in 0..(MAX_PENDING_BATCHES as u64 + 3) {
            w.acc
                .record(&tick(0, 1, vec![proc_tick(1, "a", i + 1, 0, "tcp")]));
            let b = w.acc.take();
            w.pending.push_back(b);
        }
        w.flush();
        let h = w.health.lock().unwrap().clone();
        assert_eq!(h.state, "failed");
        assert_eq!(h.pending, MAX_PENDING_BATCHES as u64);
        assert_eq!(h.dropped_batches, 3);
        assert!(h.error.contains("3 batches dropped"), "{}", h.error);
    }

    #[test]
    fn a_read_only_database_fails_loudly_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let mut w = worker(&p);
        let conn = w.conn.as_ref().unwrap();
        conn.pragma_update(None, "query_only", true).unwrap();
        w.handle(Cmd::Tick(Box::new(tick(
            0,
            1,
            vec![proc_tick(1, "a", 100, 0, "tcp")],
        ))));
        w.handle(Cmd::Session(SessionRecord {
            id: 1,
            started_ms: 1,
            ..Default::default()
        }));
        w.flush();
        let h = w.health.lock().unwrap().clone();
        assert_eq!(h.state, "failed");
        assert!(h.error.contains("database write failed"), "{}", h.error);
        w.conn
            .as_ref()
            .unwrap()
            .pragma_update(None, "query_only", false)
            .unwrap();
        w.flush();
        assert_eq!(state(&w), ("ok", 0));
        assert_eq!(stored_up(&p), 100);
    }

    #[tokio::test]
    async fn an_unopenable_database_leaves_the_store_serving_errors() {
        let s = Store::start(
            Path::new("/proc/netmon-no-such-dir/t.db"),
            StoreOptions::default(),
        );
        s.record_tick(tick(0, 1, vec![proc_tick(1, "a", 100, 0, "tcp")]));
        s.flush().await;
        let h = s.health();
        assert_eq!(h.state, "failed");
        assert!(h.error.contains("cannot open database"), "{}", h.error);
        let err = s
            .report(v1::ReportRequest::default(), Zone::utc())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
        s.shutdown();
    }

    #[tokio::test]
    async fn a_failed_store_worker_is_started_again_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let s = Store::start(&p, StoreOptions::default());
        // Both samples in the past: a report covers up to the time it is asked.
        let now = crate::clock::now_ms();
        s.record_tick(tick(
            now - 1000,
            1,
            vec![proc_tick(1, "before", 100, 50, "tcp")],
        ));
        s.flush().await;
        s.send(Cmd::Fail);
        // Written after the failure: the new worker must take it.
        s.record_tick(tick(now, 1, vec![proc_tick(2, "after", 7, 3, "tcp")]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.health().restarts == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let h = s.health();
        assert_eq!(h.restarts, 1, "{h:?}");
        assert!(h.last_failure.contains("for the test"), "{h:?}");
        let rep = s
            .report(
                v1::ReportRequest {
                    since_ms: now - 60_000,
                    ..Default::default()
                },
                Zone::utc(),
            )
            .await
            .unwrap();
        let mut got: Vec<(u64, u64)> = rep
            .rows
            .iter()
            .map(|r| (r.up_bytes, r.down_bytes))
            .collect();
        got.sort_unstable();
        assert_eq!(got, vec![(7, 3), (100, 50)], "{:?}", rep.rows);
        assert_eq!(s.health().state, "ok");
        s.shutdown();
    }

    #[tokio::test]
    async fn ticks_and_alerts_round_trip_through_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let s = Store::start(&p, StoreOptions::default());
        let now = crate::clock::now_ms();
        s.record_tick(tick(now, 1, vec![proc_tick(1, "a", 100, 50, "tcp")]));
        s.record_alert(v1::Alert {
            id: 3,
            kind: 1,
            state: 1,
            started_ms: now,
            ..Default::default()
        });
        let rep = s
            .report(
                v1::ReportRequest {
                    since_ms: now - 60_000,
                    ..Default::default()
                },
                Zone::utc(),
            )
            .await
            .unwrap();
        assert_eq!(rep.rows.len(), 1);
        assert_eq!((rep.rows[0].up_bytes, rep.rows[0].down_bytes), (100, 50));
        assert_eq!(s.list_alerts(now - 1, 0).await.unwrap()[0].id, 3);
        let mut rx = s.export(0, 0).await;
        let row = rx.recv().await.unwrap().unwrap();
        assert_eq!(row.up_bytes, 100);
        assert!(rx.recv().await.is_none());
        s.shutdown();
    }

    #[tokio::test]
    async fn without_history_hosts_no_address_or_name_reaches_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let s = Store::start(
            &p,
            StoreOptions {
                history_hosts: false,
                ..StoreOptions::default()
            },
        );
        let now = crate::clock::now_ms();
        let mut rec = tick(now, 1, vec![proc_tick(1, "a", 100, 50, "tcp")]);
        rec.hosts.push(super::minute::HostTick {
            address: "192.0.2.77".into(),
            name: "secret.example".into(),
            category: "work".into(),
            up_bytes: 100,
            down_bytes: 50,
            up_bps: 100,
            down_bps: 50,
        });
        rec.proc_hosts
            .push(super::minute::tests::proc_host(1, "192.0.2.77", 100, 50));
        rec.proc_hosts
            .push(super::minute::tests::proc_host(1, "198.51.100.9", 1, 1));
        s.record_tick(rec);
        s.flush().await;
        s.shutdown();
        let conn = Connection::open(&p).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM hosts"), 0);
        assert_eq!(count("SELECT count(*) FROM host_minute"), 0);
        for res in ["minute", "hour", "day"] {
            assert_eq!(count(&format!("SELECT count(*) FROM proc_host_{res}")), 0);
        }
        assert!(count("SELECT count(*) FROM process_minute") > 0);
        let bytes = std::fs::read(&p).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["192.0.2.77", "secret.example", "198.51.100.9"] {
            assert!(!text.contains(secret), "{secret} stored");
        }
    }
}
