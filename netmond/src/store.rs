//! SQLite history on its own thread: schema and migrations, batched writes,
//! queries. Nothing else in netmond touches SQL; callers never wait on a write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};
use tracing::{error, info, warn};

/// Schema versions, applied in order; `PRAGMA user_version` records the last.
const MIGRATIONS: &[&str] = &[
    // 1: sessions.
    "CREATE TABLE sessions (
        id          INTEGER PRIMARY KEY,   -- start time in ms, unique per daemon
        started_ms  INTEGER NOT NULL,
        ended_ms    INTEGER NOT NULL DEFAULT 0,
        updated_ms  INTEGER NOT NULL,
        interfaces  TEXT NOT NULL DEFAULT '',
        up_bytes    INTEGER NOT NULL DEFAULT 0,
        down_bytes  INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_started ON sessions(started_ms);",
];

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
    pub pending: u64,
    pub last_flush_ms: i64,
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, StoreError>>;

enum Cmd {
    Session(SessionRecord),
    ListSessions {
        since_ms: i64,
        limit: u32,
        reply: Reply<Vec<SessionRecord>>,
    },
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the store thread. Dropping it (or `shutdown`) flushes and joins.
pub struct Store {
    tx: Option<SyncSender<Cmd>>,
    health: Arc<Mutex<Health>>,
    thread: Option<JoinHandle<()>>,
}

const QUEUE: usize = 4096;

impl Store {
    /// Starts the store thread. A database that cannot be opened does not stop
    /// the daemon: the store reports `failed` and keeps retrying.
    pub fn start(path: &Path, flush_interval: Duration) -> Store {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let health = Arc::new(Mutex::new(Health {
            path: path.to_path_buf(),
            state: "ok",
            ..Health::default()
        }));
        let h = health.clone();
        let p = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("netmond-store".into())
            .spawn(move || Worker::new(p, h, flush_interval).run(rx))
            .map_err(|e| error!(%e, "cannot start the store thread"))
            .ok();
        Store {
            tx: Some(tx),
            health,
            thread,
        }
    }

    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Records the current state of a session (idempotent upsert, batched).
    pub fn session(&self, s: SessionRecord) {
        self.send(Cmd::Session(s));
    }

    fn send(&self, cmd: Cmd) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(cmd) {
                warn!("store queue full; a write was dropped");
            }
        }
    }

    pub async fn list_sessions(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let tx = self.tx.as_ref().ok_or(StoreError::Gone)?;
        tx.try_send(Cmd::ListSessions {
            since_ms,
            limit,
            reply,
        })
        .map_err(|_| StoreError::Gone)?;
        rx.await.map_err(|_| StoreError::Gone)?
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

struct Worker {
    path: PathBuf,
    health: Arc<Mutex<Health>>,
    flush_interval: Duration,
    conn: Option<Connection>,
    /// Latest state of each session not yet written: upserts are idempotent,
    /// so a write that fails is simply retried with the newest state.
    pending_sessions: BTreeMap<u64, SessionRecord>,
    last_open_attempt: Option<Instant>,
}

impl Worker {
    fn new(path: PathBuf, health: Arc<Mutex<Health>>, flush_interval: Duration) -> Self {
        Worker {
            path,
            health,
            flush_interval,
            conn: None,
            pending_sessions: BTreeMap::new(),
            last_open_attempt: None,
        }
    }

    fn run(mut self, rx: Receiver<Cmd>) {
        self.ensure_open();
        self.close_crashed_sessions();
        let mut next_flush = Instant::now() + self.flush_interval;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Cmd::Session(s)) => {
                    self.pending_sessions.insert(s.id, s);
                }
                Ok(Cmd::ListSessions {
                    since_ms,
                    limit,
                    reply,
                }) => {
                    self.flush();
                    let _ = reply.send(self.list_sessions(since_ms, limit));
                }
                Ok(Cmd::Flush(reply)) => {
                    self.flush();
                    let _ = reply.send(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.flush();
                    next_flush = Instant::now() + self.flush_interval;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
        }
    }

    fn set_health(&self, state: &'static str, error: String) {
        let size = db_size(&self.path);
        if let Ok(mut h) = self.health.lock() {
            h.state = state;
            h.error = error;
            h.size_bytes = size;
            h.pending = self.pending_sessions.len() as u64;
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
                self.set_health("ok", String::new());
                true
            }
            Err(e) => {
                error!(error = %format_chain(&e), "database unavailable; monitoring continues without history");
                self.set_health("failed", format_chain(&e));
                false
            }
        }
    }

    fn close_crashed_sessions(&mut self) {
        if let Some(c) = &self.conn {
            match c.execute(
                "UPDATE sessions SET ended_ms = updated_ms WHERE ended_ms = 0",
                [],
            ) {
                Ok(n) if n > 0 => {
                    info!(sessions = n, "closed sessions left open by an earlier run")
                }
                Ok(_) => {}
                Err(e) => warn!(%e, "cannot close earlier sessions"),
            }
        }
    }

    fn flush(&mut self) {
        if !self.ensure_open() {
            self.set_health(
                "failed",
                self.health
                    .lock()
                    .map(|h| h.error.clone())
                    .unwrap_or_default(),
            );
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let result = write_sessions(conn, &self.pending_sessions);
        match result {
            Ok(()) => {
                self.pending_sessions.clear();
                self.set_health("ok", String::new());
            }
            Err(e) => {
                warn!(error = %e, "database write failed; will retry");
                self.set_health("degraded", e.to_string());
            }
        }
    }

    fn list_sessions(&self, since_ms: i64, limit: u32) -> Result<Vec<SessionRecord>, StoreError> {
        let conn = self.conn.as_ref().ok_or(StoreError::Gone)?;
        let limit = if limit == 0 { 1000 } else { limit };
        let mut stmt = conn.prepare_cached(
            "SELECT id, started_ms, ended_ms, interfaces, up_bytes, down_bytes FROM sessions
             WHERE started_ms >= ?1 OR ended_ms = 0 OR ended_ms >= ?1 ORDER BY started_ms DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since_ms, limit], |r| {
            let ifaces: String = r.get(3)?;
            Ok(SessionRecord {
                id: r.get::<_, i64>(0)? as u64,
                started_ms: r.get(1)?,
                ended_ms: r.get(2)?,
                interfaces: ifaces
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                up_bytes: r.get::<_, i64>(4)? as u64,
                down_bytes: r.get::<_, i64>(5)? as u64,
            })
        })?;
        let mut out: Vec<SessionRecord> = rows.collect::<Result<_, _>>()?;
        // Sessions not yet flushed are newer than anything on disk.
        for s in self.pending_sessions.values() {
            match out.iter_mut().find(|o| o.id == s.id) {
                Some(o) => *o = s.clone(),
                None => out.insert(0, s.clone()),
            }
        }
        Ok(out)
    }
}

fn write_sessions(
    conn: &mut Connection,
    sessions: &BTreeMap<u64, SessionRecord>,
) -> Result<(), rusqlite::Error> {
    if sessions.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO sessions (id, started_ms, ended_ms, updated_ms, interfaces, up_bytes, down_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET ended_ms = excluded.ended_ms, updated_ms = excluded.updated_ms,
               interfaces = excluded.interfaces, up_bytes = excluded.up_bytes, down_bytes = excluded.down_bytes",
        )?;
        let now = crate::clock::now_ms();
        for s in sessions.values() {
            stmt.execute(params![
                s.id as i64,
                s.started_ms,
                s.ended_ms,
                now,
                s.interfaces.join(","),
                s.up_bytes as i64,
                s.down_bytes as i64
            ])?;
        }
    }
    tx.commit()
}

fn db_size(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(Path::new(&wal))
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
        let s = Store::start(&p, Duration::from_secs(60));
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
        let s = Store::start(&p, Duration::from_secs(60));
        let got = s.list_sessions(0, 10).await.unwrap();
        assert!(
            got[0].ended_ms > 0,
            "a session left open by a dead daemon is closed at start"
        );
    }
}
