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
    // 5: the tables older tools' SQL reads (`traffic_log`, `connections`,
    // `sessions`, `alerts`), as views over netmon's tables. netmon's own
    // `sessions` and `alerts` tables are renamed to make room for views of
    // those names; the views keep every column the tables had, so SQL
    // written against them still works. Text times are local time
    // ('YYYY-MM-DD HH:MM:SS', the reader's time zone, as those tools wrote
    // `datetime.now()`); the `*_ms` columns stay exact UTC milliseconds.
    "DROP VIEW traffic_log;
    DROP VIEW session_totals;
    DROP VIEW alert_log;
    ALTER TABLE sessions RENAME TO monitoring_sessions;
    ALTER TABLE alerts RENAME TO alert_events;
    CREATE VIEW traffic_log AS
      SELECT strftime('%Y-%m-%d %H:%M:%S', m.ts_ms / 1000, 'unixepoch', 'localtime') AS timestamp,
             m.ts_ms AS timestamp_ms, p.pid AS pid, p.name AS process_name, p.exe AS exe,
             p.user AS user,
             m.up_bytes AS upload_bytes, m.down_bytes AS download_bytes,
             m.up_bytes / 60 AS upload_rate, m.down_bytes / 60 AS download_rate,
             m.up_bytes AS up_bytes, m.down_bytes AS down_bytes,
             m.up_bytes / 60 AS up_rate, m.down_bytes / 60 AS down_rate,
             m.peak_up_bps AS peak_up_rate, m.peak_down_bps AS peak_down_rate,
             (SELECT group_concat(name, ',') FROM
                (SELECT name FROM protocol_names WHERE (m.protocols >> bit) & 1 ORDER BY name)
             ) AS protocols
      FROM process_minute m JOIN processes p ON p.id = m.proc_id;
    CREATE VIEW connections AS
      SELECT strftime('%Y-%m-%d %H:%M:%S', m.ts_ms / 1000, 'unixepoch', 'localtime') AS timestamp,
             m.ts_ms AS timestamp_ms, p.pid AS pid, p.name AS app_name, p.exe AS exe,
             p.user AS user,
             m.up_bytes + m.down_bytes AS packet_size,
             m.up_bytes AS upload_bytes, m.down_bytes AS download_bytes,
             (SELECT group_concat(name, ',') FROM
                (SELECT name FROM protocol_names WHERE (m.protocols >> bit) & 1 ORDER BY name)
             ) AS protocols,
             'uncategorized' AS category
      FROM process_minute m JOIN processes p ON p.id = m.proc_id;
    CREATE VIEW sessions AS
      SELECT id, started_ms, ended_ms, updated_ms, interfaces, up_bytes, down_bytes,
             strftime('%Y-%m-%d %H:%M:%S', started_ms / 1000, 'unixepoch', 'localtime') AS start_time,
             CASE WHEN ended_ms = 0 THEN NULL
                  ELSE strftime('%Y-%m-%d %H:%M:%S', ended_ms / 1000, 'unixepoch', 'localtime')
             END AS end_time,
             up_bytes AS total_upload, down_bytes AS total_download
      FROM monitoring_sessions;
    CREATE VIEW alerts AS
      SELECT id, kind, state, direction, pid, start_time, process_name, exe, uid, user,
             threshold, value, peak, started_ms, ended_ms, message,
             strftime('%Y-%m-%d %H:%M:%S', started_ms / 1000, 'unixepoch', 'localtime') AS timestamp,
             CASE kind WHEN 1 THEN 'process_rate' WHEN 2 THEN 'host_rate'
                       WHEN 3 THEN 'daily_quota' WHEN 4 THEN 'new_process' ELSE 'unknown' END AS alert_type,
             value AS bandwidth_value
      FROM alert_events;
    CREATE VIEW session_totals AS
      SELECT id,
             strftime('%Y-%m-%d %H:%M:%S', started_ms / 1000, 'unixepoch', 'localtime') AS start_time,
             CASE WHEN ended_ms = 0 THEN NULL
                  ELSE strftime('%Y-%m-%d %H:%M:%S', ended_ms / 1000, 'unixepoch', 'localtime') END AS end_time,
             ((CASE WHEN ended_ms = 0 THEN updated_ms ELSE ended_ms END) - started_ms) / 1000 AS duration_secs,
             interfaces, up_bytes, down_bytes, up_bytes + down_bytes AS total_bytes
      FROM monitoring_sessions;
    CREATE VIEW alert_log AS
      SELECT id,
             strftime('%Y-%m-%d %H:%M:%S', started_ms / 1000, 'unixepoch', 'localtime') AS timestamp,
             CASE kind WHEN 1 THEN 'process_rate' WHEN 2 THEN 'host_rate'
                       WHEN 3 THEN 'daily_quota' WHEN 4 THEN 'new_process' ELSE 'unknown' END AS type,
             CASE state WHEN 1 THEN 'open' WHEN 2 THEN 'closed' ELSE '' END AS state,
             CASE direction WHEN 1 THEN 'up' WHEN 2 THEN 'down' WHEN 3 THEN 'total' ELSE '' END AS direction,
             pid, process_name, value, threshold, peak, started_ms, ended_ms, message
      FROM alert_events;",
    // 6: threshold rules live in one place, `thresholds.json` beside the
    // database (with the seen-executables set); this table was never written.
    "DROP TABLE thresholds;",
    // 7: which remote hosts each process talked to (host_id 0: the hosts
    // past the per-minute top, summed), so reports can answer "which hosts
    // did firefox use". `connections.category` becomes the category of the
    // busiest named host of the process in that minute.
    "CREATE TABLE proc_host_minute (
        ts_ms INTEGER NOT NULL, proc_id INTEGER NOT NULL, host_id INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, proc_id, host_id)) WITHOUT ROWID;
    CREATE TABLE proc_host_hour (
        ts_ms INTEGER NOT NULL, proc_id INTEGER NOT NULL, host_id INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, proc_id, host_id)) WITHOUT ROWID;
    CREATE TABLE proc_host_day (
        ts_ms INTEGER NOT NULL, proc_id INTEGER NOT NULL, host_id INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, proc_id, host_id)) WITHOUT ROWID;
    DROP VIEW connections;
    CREATE VIEW connections AS
      SELECT strftime('%Y-%m-%d %H:%M:%S', m.ts_ms / 1000, 'unixepoch', 'localtime') AS timestamp,
             m.ts_ms AS timestamp_ms, p.pid AS pid, p.name AS app_name, p.exe AS exe,
             p.user AS user,
             m.up_bytes + m.down_bytes AS packet_size,
             m.up_bytes AS upload_bytes, m.down_bytes AS download_bytes,
             (SELECT group_concat(name, ',') FROM
                (SELECT name FROM protocol_names WHERE (m.protocols >> bit) & 1 ORDER BY name)
             ) AS protocols,
             coalesce(nullif((SELECT h.category FROM proc_host_minute x JOIN hosts h ON h.id = x.host_id
                              WHERE x.ts_ms = m.ts_ms AND x.proc_id = m.proc_id
                              ORDER BY x.up_bytes + x.down_bytes DESC, x.host_id LIMIT 1), ''),
                      'uncategorized') AS category
      FROM process_minute m JOIN processes p ON p.id = m.proc_id;",
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use netmon_proto::v1;
    use rusqlite::Connection;

    use super::super::minute::tests::{proc_tick, tick};
    use super::super::minute::{DAY_MS, MINUTE_MS};
    use super::super::write::tests::{db, write_ticks};
    use super::super::write::{write_alerts, write_sessions};
    use super::super::SessionRecord;
    use super::MIGRATIONS;

    const T0: i64 = 20_000 * DAY_MS + 10 * MINUTE_MS;

    fn rows(c: &Connection, sql: &str) -> Vec<Vec<String>> {
        let mut stmt = c.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Real(v) => v.to_string(),
                        v => v.as_str().unwrap().to_owned(),
                    })
                })
                .collect()
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// Two minutes of python3 and curl, one finished session, one alert.
    fn filled() -> (tempfile::TempDir, Connection) {
        let (d, mut c) = db();
        write_ticks(
            &mut c,
            &[
                tick(
                    T0 + 1_000,
                    1,
                    vec![
                        proc_tick(7, "python3", 6_000, 600, "tcp"),
                        proc_tick(8, "curl", 100, 1_000, "https"),
                    ],
                ),
                tick(
                    T0 + MINUTE_MS + 1_000,
                    1,
                    vec![proc_tick(7, "python3", 9_000, 900, "tcp")],
                ),
            ],
        );
        let tx = c.transaction().unwrap();
        let mut s = BTreeMap::new();
        s.insert(
            5,
            SessionRecord {
                id: 5,
                started_ms: T0,
                ended_ms: T0 + 2 * MINUTE_MS,
                interfaces: vec!["eth0".into()],
                up_bytes: 9_100,
                down_bytes: 1_900,
            },
        );
        write_sessions(&tx, &s, T0 + 2 * MINUTE_MS).unwrap();
        let mut a = BTreeMap::new();
        a.insert(
            3,
            v1::Alert {
                id: 3,
                kind: 1,
                state: 2,
                direction: 3,
                process: Some(v1::ProcessIdentity {
                    pid: 7,
                    name: "python3".into(),
                    ..Default::default()
                }),
                threshold: 50,
                value: 100,
                peak: 150,
                started_ms: T0 + 1_000,
                ended_ms: T0 + 5_000,
                ..Default::default()
            },
        );
        write_alerts(&tx, &a).unwrap();
        tx.commit().unwrap();
        (d, c)
    }

    #[test]
    fn the_dashboard_queries_of_older_tools_answer_from_connections() {
        let (_d, c) = filled();
        assert_eq!(
            rows(
                &c,
                "SELECT app_name, SUM(packet_size) AS total FROM connections GROUP BY app_name"
            ),
            [["curl", "1100"], ["python3", "9900"]]
        );
        assert_eq!(
            rows(
                &c,
                "SELECT category, COUNT(*) FROM connections GROUP BY category"
            ),
            [["uncategorized", "3"]]
        );
    }

    #[test]
    fn connections_take_the_category_of_the_busiest_host_of_the_minute() {
        use super::super::minute::tests::proc_host;
        use super::super::minute::HostTick;
        let (_d, mut c) = db();
        let host = |a: &str, cat: &str| HostTick {
            address: a.into(),
            category: cat.into(),
            up_bytes: 1,
            ..Default::default()
        };
        let mut t1 = tick(
            T0 + 1_000,
            1,
            vec![
                proc_tick(7, "firefox", 100, 100, "https"),
                proc_tick(8, "curl", 10, 10, "https"),
            ],
        );
        t1.hosts = vec![host("10.0.0.1", "video"), host("10.0.0.2", "news")];
        t1.proc_hosts = vec![
            proc_host(7, "10.0.0.1", 90, 90),
            proc_host(7, "10.0.0.2", 10, 10),
        ];
        let t2 = tick(
            T0 + MINUTE_MS + 1_000,
            1,
            vec![proc_tick(7, "firefox", 200, 200, "https")],
        );
        write_ticks(&mut c, &[t1, t2]);
        assert_eq!(
            rows(
                &c,
                "SELECT app_name, category, packet_size FROM connections ORDER BY timestamp_ms, app_name"
            ),
            [
                ["curl", "uncategorized", "20"],
                ["firefox", "video", "200"],
                ["firefox", "uncategorized", "200"],
            ]
        );
    }

    #[test]
    fn older_tools_columns_read_from_traffic_log_sessions_and_alerts() {
        let (_d, c) = filled();
        assert_eq!(
            rows(
                &c,
                "SELECT pid, process_name, upload_bytes, download_bytes, upload_rate, download_rate
                 FROM traffic_log ORDER BY timestamp, pid"
            ),
            [
                ["7", "python3", "6000", "600", "100", "10"],
                ["8", "curl", "100", "1000", "1", "16"],
                ["7", "python3", "3000", "300", "50", "5"],
            ]
        );
        assert_eq!(
            rows(
                &c,
                "SELECT total_upload, total_download, end_time IS NOT NULL FROM sessions"
            ),
            [["9100", "1900", "1"]]
        );
        assert_eq!(
            rows(
                &c,
                "SELECT pid, process_name, alert_type, bandwidth_value, threshold FROM alerts"
            ),
            [["7", "python3", "process_rate", "100", "50"]]
        );
        // Every text time is local time that reads back as the exact UTC second.
        for sql in [
            "SELECT timestamp, timestamp_ms FROM traffic_log",
            "SELECT timestamp, timestamp_ms FROM connections",
            "SELECT start_time, started_ms FROM sessions",
            "SELECT end_time, ended_ms FROM sessions",
            "SELECT timestamp, started_ms FROM alerts",
        ] {
            for r in rows(&c, sql) {
                let back: i64 = c
                    .query_row(
                        "SELECT CAST(strftime('%s', ?1, 'utc') AS INTEGER)",
                        [&r[0]],
                        |x| x.get(0),
                    )
                    .unwrap();
                let ms: i64 = r[1].parse().unwrap();
                assert_eq!(back, ms.div_euclid(1000), "{sql}: {r:?}");
                assert_eq!(r[0].len(), "2024-01-01 00:00:00".len(), "{sql}: {r:?}");
            }
        }
        // SELECT * carries netmon's columns and the older ones.
        let cols = |view: &str| -> Vec<String> {
            c.prepare(&format!("SELECT * FROM {view}"))
                .unwrap()
                .column_names()
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        for (view, want) in [
            (
                "traffic_log",
                &[
                    "timestamp",
                    "pid",
                    "process_name",
                    "upload_bytes",
                    "download_bytes",
                    "upload_rate",
                    "download_rate",
                    "up_bytes",
                ][..],
            ),
            (
                "sessions",
                &[
                    "id",
                    "started_ms",
                    "start_time",
                    "end_time",
                    "total_upload",
                    "total_download",
                ],
            ),
            (
                "alerts",
                &[
                    "id",
                    "kind",
                    "timestamp",
                    "pid",
                    "process_name",
                    "alert_type",
                    "bandwidth_value",
                    "threshold",
                ],
            ),
            (
                "connections",
                &["timestamp", "pid", "app_name", "packet_size", "category"],
            ),
        ] {
            let got = cols(view);
            for w in want {
                assert!(got.iter().any(|g| g == w), "{view} lacks {w}: {got:?}");
            }
        }
    }

    #[test]
    fn sessions_and_alerts_written_before_the_views_survive_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        {
            let c = Connection::open(&p).unwrap();
            for sql in &MIGRATIONS[..4] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 4).unwrap();
            c.execute_batch(
                "INSERT INTO sessions (id, started_ms, ended_ms, updated_ms, up_bytes, down_bytes)
                   VALUES (1, 1000, 2000, 2000, 10, 20);
                 INSERT INTO alerts (id, kind, state, direction, threshold, value, peak, started_ms)
                   VALUES (2, 3, 1, 3, 5, 6, 7, 1000);",
            )
            .unwrap();
        }
        let c = super::super::open(&p).unwrap();
        assert_eq!(
            rows(&c, "SELECT id, total_upload, total_download FROM sessions"),
            [["1", "10", "20"]]
        );
        assert_eq!(
            rows(&c, "SELECT id, alert_type, bandwidth_value FROM alerts"),
            [["2", "daily_quota", "6"]]
        );
        assert_eq!(
            rows(&c, "SELECT id, duration_secs FROM session_totals"),
            [["1", "1"]]
        );
        let tables = rows(
            &c,
            "SELECT name FROM sqlite_master WHERE type = 'table'
               AND name IN ('sessions', 'alerts', 'thresholds')",
        );
        assert!(tables.is_empty(), "{tables:?}");
    }
}
