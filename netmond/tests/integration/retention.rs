//! Retention end to end: each `[store] *_retention_days` key limits its own
//! tables (processes, hosts, interfaces, process-host rows), closed alerts go
//! after the daily retention, unreferenced processes and hosts are swept, the
//! file is VACUUMed when a prune leaves it mostly free, and a bad value is a
//! config error. The rows are the test's own, at known ages; the daemon prunes
//! them at start. Needs root.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use crate::harness::*;

const DAY_MS: i64 = 86_400_000;
/// Row ages in days: the minute key (1) keeps the first, the hourly key (3)
/// the first two, the daily key (5) the first three; none keeps the last.
const AGES: [f64; 4] = [0.5, 2.0, 4.0, 6.0];
const RETENTION: &str =
    "[store]\nminute_retention_days = 1\nhourly_retention_days = 3\ndaily_retention_days = 5\n";
/// Rows past every retention (2.1 to 3.9 days old, between the fixture's
/// ages), enough to leave most of the file free.
const BULK: i64 = 150_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The fixture: one process and one host with rows at every age in every
/// sample table, an orphan process and host, three alerts, and BULK old
/// process minutes.
fn fill(c: &Connection, now: i64) {
    c.execute_batch(
        "INSERT INTO processes (id, pid, start_time, name, exe, cmdline, uid, user, unit, first_seen_ms)
           VALUES (9001, 4242, 1, 'kept', '/usr/bin/kept', 'kept', 0, 'root', '', 0),
                  (9002, 4243, 1, 'orphan', '/usr/bin/orphan', 'orphan', 0, 'root', '', 0);
         INSERT INTO hosts (id, address) VALUES (9001, '192.0.2.1'), (9002, '192.0.2.99');",
    )
    .expect("identities");
    for res in ["minute", "hour", "day"] {
        for age in AGES {
            let ts = now - (age * DAY_MS as f64) as i64;
            c.execute(
                &format!("INSERT INTO process_{res} VALUES (?1, 9001, 1, 1, 1, 1, 0)"),
                [ts],
            )
            .expect("process row");
            c.execute(
                &format!("INSERT INTO host_{res} VALUES (?1, 9001, 1, 1, 1, 1)"),
                [ts],
            )
            .expect("host row");
            c.execute(
                &format!("INSERT INTO iface_{res} VALUES (?1, 'nmret0', 1, 1, 1, 1)"),
                [ts],
            )
            .expect("interface row");
            c.execute(
                &format!("INSERT INTO proc_host_{res} VALUES (?1, 9001, 9001, 1, 1)"),
                [ts],
            )
            .expect("process-host row");
        }
    }
    // Closed 6 days ago (goes), closed 4 days ago (stays), open since 6 days (stays).
    for (id, state, age) in [(9001, 2, 6), (9002, 2, 4), (9003, 1, 6)] {
        let started = now - age * DAY_MS;
        let ended = if state == 2 { started + 60_000 } else { 0 };
        c.execute(
            "INSERT INTO alert_events (id, kind, state, direction, threshold, value, peak, started_ms, ended_ms)
             VALUES (?1, 1, ?2, 3, 1000, 2000, 3000, ?3, ?4)",
            params![id, state, started, ended],
        )
        .expect("alert row");
    }
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO process_minute SELECT ?2 - i * 1000, 9001, i, i, i, i, 0 FROM n",
        params![BULK, now - 21 * DAY_MS / 10],
    )
    .expect("bulk rows");
}

/// Rows of `table` older than an hour (the fixture's; a fresh daemon writes none).
fn aged(c: &Connection, table: &str, now: i64) -> i64 {
    c.query_row(
        &format!("SELECT count(*) FROM {table} WHERE ts_ms < ?1"),
        [now - 3_600_000],
        |r| r.get(0),
    )
    .unwrap_or_else(|e| panic!("{table}: {e}"))
}

#[test]
fn each_retention_key_limits_its_tables_and_a_large_prune_is_vacuumed() {
    let mut d = Daemon::start(DaemonOpts {
        config_extra: RETENTION.to_owned(),
        ..DaemonOpts::default()
    });
    // Its schema is what the rows go into (SIGTERM once it serves).
    wait_storage(&d, "ok", 10);
    assert!(d.terminate().success(), "{}", d.log_text());
    let now = now_ms();
    let before = {
        let c = Connection::open(&d.db).expect("open the daemon's DB");
        fill(&c, now);
        for res in ["minute", "hour", "day"] {
            for dim in ["process", "host", "iface", "proc_host"] {
                let t = format!("{dim}_{res}");
                let extra = if t == "process_minute" { BULK } else { 0 };
                assert_eq!(aged(&c, &t, now), 4 + extra, "fixture {t}");
            }
        }
        c.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .expect("checkpoint");
        drop(c);
        std::fs::metadata(&d.db).expect("db size").len()
    };
    // Retention runs at start: the daemon prunes, sweeps and VACUUMs, then serves.
    d.spawn();
    d.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.log_text().contains("database vacuumed") {
        assert!(
            Instant::now() < deadline,
            "no VACUUM after the prune: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = d.log_text();
    assert!(log.contains("retention applied"), "{log}");
    assert!(d.terminate().success(), "{}", d.log_text());

    let c = Connection::open(&d.db).expect("open the daemon's DB");
    for (res, kept) in [("minute", 1), ("hour", 2), ("day", 3)] {
        for dim in ["process", "host", "iface", "proc_host"] {
            let t = format!("{dim}_{res}");
            assert_eq!(aged(&c, &t, now), kept, "{t}: rows of the fixture kept");
        }
    }
    let alerts: Vec<i64> = c
        .prepare("SELECT id FROM alert_events WHERE id >= 9001 ORDER BY id")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()
        })
        .expect("alerts");
    assert_eq!(alerts, vec![9002, 9003], "closed past 5 days go, open stay");
    assert_eq!(
        count(&c, "SELECT count(*) FROM processes WHERE id >= 9001"),
        1,
        "the orphan process is swept"
    );
    let hosts: String = c
        .query_row(
            "SELECT coalesce(group_concat(address), '') FROM hosts WHERE id >= 9001",
            [],
            |r| r.get(0),
        )
        .expect("hosts");
    assert_eq!(hosts, "192.0.2.1", "the orphan host is swept");
    let free = count(&c, "PRAGMA freelist_count");
    let after = std::fs::metadata(&d.db).expect("db size").len();
    println!("file {before} bytes before the prune, {after} after; {free} free pages");
    assert_eq!(free, 0, "VACUUMed");
    assert!(
        after * 4 < before,
        "the file did not shrink: {before} -> {after} bytes"
    );
}

#[test]
fn a_bad_retention_value_is_a_config_error_naming_the_key() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("netmond.toml");
    for (key, value) in [
        ("minute_retention_days", "0"),
        ("hourly_retention_days", "36501"),
        ("daily_retention_days", "-1"),
        ("daily_retention_days", "\"a year\""),
    ] {
        std::fs::write(
            &config,
            format!("[daemon]\nautostart = false\n[store]\n{key} = {value}\n"),
        )
        .expect("config");
        let child = std::process::Command::new(bin("netmond"))
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(dir.path().join("netmond.sock"))
            .arg("--db")
            .arg(dir.path().join("netmon.db"))
            .arg("--group")
            .arg("root")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn netmond");
        let out = wait_output(child, 20);
        let err = stderr(&out);
        assert!(!out.status.success(), "{key} = {value} accepted: {err}");
        // The key by its full name, and why (the range, or the type).
        assert!(
            err.contains(&format!("store.{key}")) || err.contains(&format!("{key} = {value}")),
            "{key} = {value}: {err}"
        );
        assert!(
            err.contains("must be between 1 and 36500 days") || err.contains("expected u32"),
            "{key} = {value}: {err}"
        );
        assert!(
            !dir.path().join("netmon.db").exists(),
            "a database was created"
        );
    }
}
