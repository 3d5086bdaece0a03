//! The database schema: migrations applied in order (`PRAGMA user_version`
//! records the last), including the compatibility views. README documents it.

/// Schema versions, applied in order; `PRAGMA user_version` records the last.
pub const MIGRATIONS: &[&str] = &[
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
    // 2: history samples, rollups, alerts, thresholds, compatibility views.
    "CREATE TABLE processes (
        id            INTEGER PRIMARY KEY,
        pid           INTEGER NOT NULL,
        start_time    INTEGER NOT NULL,   -- clock ticks since boot
        name          TEXT NOT NULL,
        exe           TEXT NOT NULL,
        cmdline       TEXT NOT NULL,
        uid           INTEGER NOT NULL,
        user          TEXT NOT NULL,
        unit          TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        UNIQUE (pid, start_time)
    );
    CREATE TABLE hosts (
        id        INTEGER PRIMARY KEY,
        address   TEXT NOT NULL UNIQUE,
        name      TEXT NOT NULL DEFAULT '',
        category  TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE protocol_names (
        bit   INTEGER PRIMARY KEY,        -- bit in the protocols masks
        name  TEXT NOT NULL UNIQUE
    );
    CREATE TABLE process_minute (
        ts_ms INTEGER NOT NULL, proc_id INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        peak_up_bps INTEGER NOT NULL, peak_down_bps INTEGER NOT NULL,
        protocols INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (ts_ms, proc_id)) WITHOUT ROWID;
    CREATE TABLE process_hour (
        ts_ms INTEGER NOT NULL, proc_id INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        peak_up_bps INTEGER NOT NULL, peak_down_bps INTEGER NOT NULL,
        protocols INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (ts_ms, proc_id)) WITHOUT ROWID;
    CREATE TABLE process_day (
        ts_ms INTEGER NOT NULL, proc_id INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        peak_up_bps INTEGER NOT NULL, peak_down_bps INTEGER NOT NULL,
        protocols INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (ts_ms, proc_id)) WITHOUT ROWID;
    CREATE TABLE host_minute (
        ts_ms INTEGER NOT NULL, host_id INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        peak_up_bps INTEGER NOT NULL, peak_down_bps INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, host_id)) WITHOUT ROWID;
    CREATE TABLE host_hour (
        ts_ms INTEGER NOT NULL, host_id INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        peak_up_bps INTEGER NOT NULL, peak_down_bps INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, host_id)) WITHOUT ROWID;
    CREATE TABLE host_day (
        ts_ms INTEGER NOT NULL, host_id INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        peak_up_bps INTEGER NOT NULL, peak_down_bps INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, host_id)) WITHOUT ROWID;
    CREATE TABLE iface_minute (
        ts_ms INTEGER NOT NULL, interface TEXT NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        peak_up_bps INTEGER NOT NULL, peak_down_bps INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, interface)) WITHOUT ROWID;
    CREATE TABLE iface_hour (
        ts_ms INTEGER NOT NULL, interface TEXT NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        peak_up_bps INTEGER NOT NULL, peak_down_bps INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, interface)) WITHOUT ROWID;
    CREATE TABLE iface_day (
        ts_ms INTEGER NOT NULL, interface TEXT NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        peak_up_bps INTEGER NOT NULL, peak_down_bps INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, interface)) WITHOUT ROWID;
    CREATE TABLE alerts (
        id           INTEGER PRIMARY KEY,
        kind         INTEGER NOT NULL,    -- netmon.v1.ThresholdKind
        state        INTEGER NOT NULL,    -- 1 open, 2 closed
        direction    INTEGER NOT NULL,    -- 1 up, 2 down, 3 total
        pid          INTEGER NOT NULL DEFAULT 0,
        start_time   INTEGER NOT NULL DEFAULT 0,
        process_name TEXT NOT NULL DEFAULT '',
        exe          TEXT NOT NULL DEFAULT '',
        uid          INTEGER NOT NULL DEFAULT 0,
        user         TEXT NOT NULL DEFAULT '',
        threshold    INTEGER NOT NULL,
        value        INTEGER NOT NULL,
        peak         INTEGER NOT NULL,
        started_ms   INTEGER NOT NULL,
        ended_ms     INTEGER NOT NULL DEFAULT 0,
        message      TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alerts_started ON alerts(started_ms);
    CREATE TABLE thresholds (
        id           INTEGER PRIMARY KEY,
        kind         INTEGER NOT NULL,
        direction    INTEGER NOT NULL,
        value        INTEGER NOT NULL,
        process_name TEXT NOT NULL DEFAULT '',
        pid          INTEGER NOT NULL DEFAULT 0,
        source       TEXT NOT NULL,       -- 'config' or 'api'
        created_ms   INTEGER NOT NULL
    );
    CREATE VIEW traffic_log AS
      SELECT strftime('%Y-%m-%d %H:%M:%S', m.ts_ms / 1000, 'unixepoch') AS timestamp,
             m.ts_ms AS timestamp_ms, p.pid AS pid, p.name AS process_name, p.exe AS exe,
             p.user AS user, m.up_bytes AS up_bytes, m.down_bytes AS down_bytes,
             m.up_bytes / 60 AS up_rate, m.down_bytes / 60 AS down_rate,
             m.peak_up_bps AS peak_up_rate, m.peak_down_bps AS peak_down_rate,
             (SELECT group_concat(name, ',') FROM
                (SELECT name FROM protocol_names WHERE (m.protocols >> bit) & 1 ORDER BY name)
             ) AS protocols
      FROM process_minute m JOIN processes p ON p.id = m.proc_id;
    CREATE VIEW session_totals AS
      SELECT id,
             strftime('%Y-%m-%d %H:%M:%S', started_ms / 1000, 'unixepoch') AS start_time,
             CASE WHEN ended_ms = 0 THEN NULL
                  ELSE strftime('%Y-%m-%d %H:%M:%S', ended_ms / 1000, 'unixepoch') END AS end_time,
             ((CASE WHEN ended_ms = 0 THEN updated_ms ELSE ended_ms END) - started_ms) / 1000 AS duration_secs,
             interfaces, up_bytes, down_bytes, up_bytes + down_bytes AS total_bytes
      FROM sessions;
    CREATE VIEW alert_log AS
      SELECT id,
             strftime('%Y-%m-%d %H:%M:%S', started_ms / 1000, 'unixepoch') AS timestamp,
             CASE kind WHEN 1 THEN 'process_rate' WHEN 2 THEN 'host_rate'
                       WHEN 3 THEN 'daily_quota' WHEN 4 THEN 'new_process' ELSE 'unknown' END AS type,
             CASE state WHEN 1 THEN 'open' WHEN 2 THEN 'closed' ELSE '' END AS state,
             CASE direction WHEN 1 THEN 'up' WHEN 2 THEN 'down' WHEN 3 THEN 'total' ELSE '' END AS direction,
             pid, process_name, value, threshold, peak, started_ms, ended_ms, message
      FROM alerts;",
    // 3: command lines are capped (4 KiB) and marked when cut; rows written
    // before the cap are cut here too.
    "ALTER TABLE processes ADD COLUMN cmdline_truncated INTEGER NOT NULL DEFAULT 0;
    UPDATE processes SET cmdline = substr(cmdline, 1, 4096), cmdline_truncated = 1
      WHERE length(CAST(cmdline AS BLOB)) > 4096;",
    // 4: the container a process ran in (from its cgroup path), for reports.
    "ALTER TABLE processes ADD COLUMN container TEXT NOT NULL DEFAULT '';",
];
