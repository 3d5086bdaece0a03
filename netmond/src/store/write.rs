//! Writing: per-minute samples with their hourly and daily rollups (upserts in
//! one transaction), sessions, alerts; retention and VACUUM.
//! Runs only on the store thread.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use netmon_proto::v1;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::minute::{floor_to, Batch, ProcKey, Sample, DAY_MS, HOUR_MS, MINUTE_MS};
use super::SessionRecord;
use crate::attribution::ProcessInfo;

/// The three resolutions and the span of one row.
pub const RESOLUTIONS: [(&str, i64); 3] =
    [("minute", MINUTE_MS), ("hour", HOUR_MS), ("day", DAY_MS)];

/// Bit used for protocol names once 63 distinct names exist.
const OTHER_BIT: u32 = 63;

/// How long samples are kept, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub minute_days: u32,
    pub hour_days: u32,
    pub day_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            minute_days: 7,
            hour_days: 90,
            day_days: 365,
        }
    }
}

/// Row ids remembered per dimension table.
const MAX_IDS: usize = 50_000;

/// Row ids of the dimension tables already known to exist.
#[derive(Debug, Default)]
pub struct Ids {
    procs: HashMap<ProcKey, i64>,
    hosts: HashMap<String, i64>,
    protos: HashMap<String, u32>,
}

impl Ids {
    /// Ids learnt in a transaction become known once it committed.
    pub fn merge(&mut self, staged: Ids) {
        // A cache: past its bound it starts over (ids are looked up again).
        if self.procs.len() + staged.procs.len() > MAX_IDS {
            self.procs.clear();
        }
        if self.hosts.len() + staged.hosts.len() > MAX_IDS {
            self.hosts.clear();
        }
        self.procs.extend(staged.procs);
        self.hosts.extend(staged.hosts);
        self.protos.extend(staged.protos);
    }

    pub fn clear(&mut self) {
        *self = Ids::default();
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn proc_id(
    tx: &Transaction<'_>,
    ids: &Ids,
    staged: &mut Ids,
    key: ProcKey,
    p: &ProcessInfo,
    now_ms: i64,
) -> rusqlite::Result<i64> {
    if let Some(id) = ids.procs.get(&key).or_else(|| staged.procs.get(&key)) {
        return Ok(*id);
    }
    let id = tx
        .prepare_cached(
            "INSERT INTO processes (pid, start_time, name, exe, cmdline, uid, user, unit, first_seen_ms,
                                    cmdline_truncated, container)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(pid, start_time) DO UPDATE SET name = excluded.name, exe = excluded.exe,
               cmdline = excluded.cmdline, uid = excluded.uid, user = excluded.user, unit = excluded.unit,
               cmdline_truncated = excluded.cmdline_truncated, container = excluded.container
             RETURNING id",
        )?
        .query_row(
            params![
                p.pid,
                i(p.start_time),
                p.name,
                p.exe,
                p.cmdline,
                p.uid,
                p.user,
                p.unit,
                now_ms,
                p.cmdline_truncated,
                p.container
            ],
            |r| r.get(0),
        )?;
    staged.procs.insert(key, id);
    Ok(id)
}

fn host_id(
    tx: &Transaction<'_>,
    ids: &Ids,
    staged: &mut Ids,
    address: &str,
    name: &str,
    category: &str,
) -> rusqlite::Result<i64> {
    if let Some(id) = ids.hosts.get(address).or_else(|| staged.hosts.get(address)) {
        return Ok(*id);
    }
    let id = tx
        .prepare_cached(
            "INSERT INTO hosts (address, name, category) VALUES (?1, ?2, ?3)
             ON CONFLICT(address) DO UPDATE SET
               name = CASE WHEN excluded.name = '' THEN name ELSE excluded.name END,
               category = CASE WHEN excluded.category = '' THEN category ELSE excluded.category END
             RETURNING id",
        )?
        .query_row(params![address, name, category], |r| r.get(0))?;
    staged.hosts.insert(address.to_owned(), id);
    Ok(id)
}

/// The id of a host row that already exists, without creating one.
fn known_host_id(
    tx: &Transaction<'_>,
    ids: &Ids,
    staged: &Ids,
    address: &str,
) -> rusqlite::Result<Option<i64>> {
    if let Some(id) = ids.hosts.get(address).or_else(|| staged.hosts.get(address)) {
        return Ok(Some(*id));
    }
    tx.prepare_cached("SELECT id FROM hosts WHERE address = ?1")?
        .query_row([address], |r| r.get(0))
        .optional()
}

/// The id of a process row written before (its samples come first in a
/// batch); None for a process never recorded.
fn known_proc_id(
    tx: &Transaction<'_>,
    ids: &Ids,
    staged: &Ids,
    key: ProcKey,
) -> rusqlite::Result<Option<i64>> {
    if let Some(id) = ids.procs.get(&key).or_else(|| staged.procs.get(&key)) {
        return Ok(Some(*id));
    }
    tx.prepare_cached("SELECT id FROM processes WHERE pid = ?1 AND start_time = ?2")?
        .query_row(params![key.0, i(key.1)], |r| r.get(0))
        .optional()
}

/// Host id of the row that sums a process's hosts past the top.
pub const OTHER_HOSTS_ID: i64 = 0;

/// Adds one minute of a process's per-host bytes. At most `top` hosts get
/// rows of their own per process and minute (counting rows written by
/// earlier batches of that minute, which keep receiving bytes); the rest go
/// to the `OTHER_HOSTS_ID` row, so the process's sum stays exact.
#[allow(clippy::too_many_arguments, reason = "one call site, all needed")]
fn write_proc_hosts(
    tx: &Transaction<'_>,
    ids: &Ids,
    staged: &mut Ids,
    minute: i64,
    proc_id: i64,
    hosts: &HashMap<String, (u64, u64)>,
    top: usize,
) -> rusqlite::Result<()> {
    let mut kept: HashSet<i64> = tx
        .prepare_cached(
            "SELECT host_id FROM proc_host_minute WHERE ts_ms = ?1 AND proc_id = ?2 AND host_id != ?3",
        )?
        .query_map(params![minute, proc_id, OTHER_HOSTS_ID], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut sorted: Vec<(&str, (u64, u64))> = hosts
        .iter()
        .filter(|(a, _)| !a.is_empty())
        .map(|(a, c)| (a.as_str(), *c))
        .collect();
    let bytes = |c: &(u64, u64)| c.0.saturating_add(c.1);
    sorted.sort_unstable_by(|(aa, a), (ab, b)| bytes(b).cmp(&bytes(a)).then_with(|| aa.cmp(ab)));
    let mut other = hosts.get("").copied().unwrap_or_default();
    let mut rows: Vec<(i64, (u64, u64))> = Vec::new();
    for (address, c) in sorted {
        let id = match known_host_id(tx, ids, staged, address)? {
            Some(id) if kept.contains(&id) => Some(id),
            _ if kept.len() < top => Some(host_id(tx, ids, staged, address, "", "")?),
            _ => None,
        };
        match id {
            Some(id) => {
                kept.insert(id);
                rows.push((id, c));
            }
            None => {
                other.0 = other.0.saturating_add(c.0);
                other.1 = other.1.saturating_add(c.1);
            }
        }
    }
    if other != (0, 0) {
        rows.push((OTHER_HOSTS_ID, other));
    }
    for (host, (up, down)) in rows {
        for (res, unit) in RESOLUTIONS {
            tx.prepare_cached(&format!(
                "INSERT INTO proc_host_{res} (ts_ms, proc_id, host_id, up_bytes, down_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(ts_ms, proc_id, host_id) DO UPDATE SET
                   up_bytes = up_bytes + excluded.up_bytes, down_bytes = down_bytes + excluded.down_bytes"
            ))?
            .execute(params![floor_to(minute, unit), proc_id, host, i(up), i(down)])?;
        }
    }
    Ok(())
}

fn protocol_mask(
    tx: &Transaction<'_>,
    ids: &Ids,
    staged: &mut Ids,
    names: &BTreeSet<String>,
) -> rusqlite::Result<i64> {
    let mut mask = 0u64;
    for name in names {
        let bit = match ids.protos.get(name).or_else(|| staged.protos.get(name)) {
            Some(b) => *b,
            None => {
                let found: Option<u32> = tx
                    .prepare_cached("SELECT bit FROM protocol_names WHERE name = ?1")?
                    .query_row([name], |r| r.get(0))
                    .optional()?;
                let bit = match found {
                    Some(b) => b,
                    None => {
                        let next: u32 = tx.query_row(
                            "SELECT coalesce(max(bit) + 1, 0) FROM protocol_names WHERE bit < ?1",
                            [OTHER_BIT],
                            |r| r.get(0),
                        )?;
                        if next < OTHER_BIT {
                            tx.execute(
                                "INSERT INTO protocol_names (bit, name) VALUES (?1, ?2)",
                                params![next, name],
                            )?;
                            next
                        } else {
                            tx.execute(
                                "INSERT OR IGNORE INTO protocol_names (bit, name) VALUES (?1, 'other')",
                                [OTHER_BIT],
                            )?;
                            OTHER_BIT
                        }
                    }
                };
                staged.protos.insert(name.clone(), bit);
                bit
            }
        };
        mask |= 1 << bit;
    }
    // The mask is stored as a signed 64-bit integer; bit 63 makes it negative.
    Ok(mask as i64)
}

fn sample_params(s: &Sample) -> [i64; 4] {
    [
        i(s.up_bytes),
        i(s.down_bytes),
        i(s.peak_up_bps),
        i(s.peak_down_bps),
    ]
}

/// Adds a batch of minute samples to the minute, hour and day tables;
/// `top_hosts` remote hosts per process and minute keep rows of their own.
pub fn write_batch(
    tx: &Transaction<'_>,
    b: &Batch,
    ids: &Ids,
    staged: &mut Ids,
    now_ms: i64,
    top_hosts: usize,
) -> rusqlite::Result<()> {
    const ADD: &str = "up_bytes = up_bytes + excluded.up_bytes, down_bytes = down_bytes + excluded.down_bytes,
        peak_up_bps = max(peak_up_bps, excluded.peak_up_bps), peak_down_bps = max(peak_down_bps, excluded.peak_down_bps)";
    for ((minute, key), m) in &b.procs {
        let id = proc_id(tx, ids, staged, *key, &m.identity, now_ms)?;
        let mask = protocol_mask(tx, ids, staged, &m.protocols)?;
        let [up, down, pu, pd] = sample_params(&m.sample);
        for (res, unit) in RESOLUTIONS {
            tx.prepare_cached(&format!(
                "INSERT INTO process_{res} (ts_ms, proc_id, up_bytes, down_bytes, peak_up_bps, peak_down_bps, protocols)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(ts_ms, proc_id) DO UPDATE SET {ADD}, protocols = protocols | excluded.protocols"
            ))?
            .execute(params![floor_to(*minute, unit), id, up, down, pu, pd, mask])?;
        }
    }
    for ((minute, address), h) in &b.hosts {
        let id = host_id(tx, ids, staged, address, &h.name, &h.category)?;
        let [up, down, pu, pd] = sample_params(&h.sample);
        for (res, unit) in RESOLUTIONS {
            tx.prepare_cached(&format!(
                "INSERT INTO host_{res} (ts_ms, host_id, up_bytes, down_bytes, peak_up_bps, peak_down_bps)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(ts_ms, host_id) DO UPDATE SET {ADD}"
            ))?
            .execute(params![floor_to(*minute, unit), id, up, down, pu, pd])?;
        }
    }
    for ((minute, name), s) in &b.ifaces {
        let [up, down, pu, pd] = sample_params(s);
        for (res, unit) in RESOLUTIONS {
            tx.prepare_cached(&format!(
                "INSERT INTO iface_{res} (ts_ms, interface, up_bytes, down_bytes, peak_up_bps, peak_down_bps)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(ts_ms, interface) DO UPDATE SET {ADD}"
            ))?
            .execute(params![floor_to(*minute, unit), name, up, down, pu, pd])?;
        }
    }
    // After the processes and hosts: their rows (with names and
    // categories) exist by now.
    for ((minute, key), hosts) in &b.proc_hosts {
        if let Some(proc_id) = known_proc_id(tx, ids, staged, *key)? {
            write_proc_hosts(tx, ids, staged, *minute, proc_id, hosts, top_hosts)?;
        }
    }
    Ok(())
}

pub fn write_sessions(
    tx: &Transaction<'_>,
    sessions: &BTreeMap<u64, SessionRecord>,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO monitoring_sessions (id, started_ms, ended_ms, updated_ms, interfaces, up_bytes, down_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET ended_ms = excluded.ended_ms, updated_ms = excluded.updated_ms,
           interfaces = excluded.interfaces, up_bytes = excluded.up_bytes, down_bytes = excluded.down_bytes",
    )?;
    for s in sessions.values() {
        stmt.execute(params![
            i(s.id),
            s.started_ms,
            s.ended_ms,
            now_ms,
            s.interfaces.join(","),
            i(s.up_bytes),
            i(s.down_bytes)
        ])?;
    }
    Ok(())
}

/// Inserts or updates alerts by id.
pub fn write_alerts(
    tx: &Transaction<'_>,
    alerts: &BTreeMap<u64, v1::Alert>,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO alert_events (id, kind, state, direction, pid, start_time, process_name, exe,
           uid, user, threshold, value, peak, started_ms, ended_ms, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?;
    for a in alerts.values() {
        let p = a.process.clone().unwrap_or_default();
        stmt.execute(params![
            i(a.id),
            a.kind,
            a.state,
            a.direction,
            p.pid,
            i(p.start_time),
            p.name,
            p.exe,
            p.uid,
            p.user,
            i(a.threshold),
            i(a.value),
            i(a.peak),
            a.started_ms,
            a.ended_ms,
            a.message
        ])?;
    }
    Ok(())
}

/// Rows removed by one retention pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub samples: u64,
    pub alerts: u64,
    pub identities: u64,
}

/// Deletes samples older than their retention as of `now_ms` (rows whose
/// span starts before the cut), closed alerts older than the daily
/// retention, and, with `sweep`, processes and hosts no sample refers to.
pub fn apply_retention(
    conn: &mut Connection,
    now_ms: i64,
    r: &Retention,
    sweep: bool,
) -> rusqlite::Result<Pruned> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut out = Pruned::default();
    for ((res, _), days) in RESOLUTIONS
        .iter()
        .zip([r.minute_days, r.hour_days, r.day_days])
    {
        let cut = now_ms - i64::from(days) * DAY_MS;
        for dim in ["process", "host", "iface", "proc_host"] {
            out.samples +=
                tx.execute(&format!("DELETE FROM {dim}_{res} WHERE ts_ms < ?1"), [cut])? as u64;
        }
    }
    let cut = now_ms - i64::from(r.day_days) * DAY_MS;
    out.alerts = tx.execute(
        "DELETE FROM alert_events WHERE state != 1 AND started_ms < ?1",
        [cut],
    )? as u64;
    if sweep {
        out.identities += tx.execute(
            "DELETE FROM processes WHERE id NOT IN (
               SELECT proc_id FROM process_day UNION SELECT proc_id FROM process_hour
               UNION SELECT proc_id FROM process_minute UNION SELECT proc_id FROM proc_host_day
               UNION SELECT proc_id FROM proc_host_hour UNION SELECT proc_id FROM proc_host_minute)",
            [],
        )? as u64;
        out.identities += tx.execute(
            "DELETE FROM hosts WHERE id NOT IN (
               SELECT host_id FROM host_day UNION SELECT host_id FROM host_hour
               UNION SELECT host_id FROM host_minute UNION SELECT host_id FROM proc_host_day
               UNION SELECT host_id FROM proc_host_hour UNION SELECT host_id FROM proc_host_minute)",
            [],
        )? as u64;
    }
    tx.commit()?;
    Ok(out)
}

/// VACUUMs when more than a quarter of the file is free pages. The caller
/// limits this to once a day.
pub fn vacuum_if_sparse(conn: &Connection) -> rusqlite::Result<bool> {
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    if pages > 0 && free * 4 > pages {
        conn.execute_batch("VACUUM")?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::minute::tests::{proc_tick, tick};
    use super::super::minute::Accumulator;
    use super::*;

    pub fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let c = super::super::open(&dir.path().join("t.db")).unwrap();
        (dir, c)
    }

    /// Hosts per process and minute in the tests.
    pub const TOP_HOSTS: usize = 3;

    /// Writes ticks through the accumulator, as the store thread does.
    pub fn write_ticks(c: &mut Connection, ticks: &[super::super::TickRecord]) {
        let mut a = Accumulator::default();
        for t in ticks {
            a.record(t);
        }
        let tx = c.transaction().unwrap();
        let mut staged = Ids::default();
        write_batch(&tx, &a.take(), &Ids::default(), &mut staged, 0, TOP_HOSTS).unwrap();
        tx.commit().unwrap();
    }

    fn sum(c: &Connection, table: &str) -> (i64, i64, i64) {
        c.query_row(
            &format!("SELECT count(*), coalesce(sum(up_bytes), 0), coalesce(sum(down_bytes), 0) FROM {table}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    #[test]
    fn minutes_roll_up_into_hours_and_days() {
        let (_d, mut c) = db();
        let day = 20_000 * DAY_MS;
        let mut p1 = proc_tick(1, "curl", 100, 10, "tcp");
        p1.up_bps = 100;
        let mut p2 = proc_tick(1, "curl", 300, 30, "https");
        p2.up_bps = 200;
        write_ticks(
            &mut c,
            &[
                tick(day + 1_000, 1, vec![p1]),
                tick(day + 61_000, 1, vec![p2]),
                tick(
                    day + HOUR_MS + 5_000,
                    1,
                    vec![proc_tick(1, "curl", 301, 31, "tcp")],
                ),
            ],
        );
        assert_eq!(sum(&c, "process_minute"), (3, 301, 31));
        assert_eq!(sum(&c, "process_hour"), (2, 301, 31));
        assert_eq!(sum(&c, "process_day"), (1, 301, 31));
        let (peak, protos): (i64, String) = c
            .query_row(
                "SELECT d.peak_up_bps, (SELECT group_concat(name) FROM (SELECT name FROM protocol_names
                   WHERE (d.protocols >> bit) & 1 ORDER BY name)) FROM process_day d",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((peak, protos.as_str()), (200, "https,tcp"));
        // A second flush of the same minute adds to the same rows.
        write_ticks(
            &mut c,
            &[tick(
                day + 2_000,
                1,
                vec![proc_tick(1, "curl", 5, 5, "tcp")],
            )],
        );
        assert_eq!(sum(&c, "process_minute"), (3, 306, 36));
        assert_eq!(sum(&c, "process_day"), (1, 306, 36));
        let log: (String, String, i64) = c
            .query_row(
                "SELECT process_name, protocols, up_bytes FROM traffic_log ORDER BY timestamp_ms LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(log, ("curl".to_owned(), "tcp".to_owned(), 105));
    }

    #[test]
    fn retention_deletes_exactly_the_rows_past_their_age() {
        let (_d, mut c) = db();
        let now = 20_000 * DAY_MS + 12 * HOUR_MS;
        let r = Retention {
            minute_days: 1,
            hour_days: 2,
            day_days: 3,
        };
        // One sample per hour over five days before now.
        let ticks: Vec<_> = (0..(5 * 24))
            .map(|h| {
                tick(
                    now - h * HOUR_MS,
                    1,
                    vec![proc_tick(1, "curl", 1000 - h as u64, 0, "tcp")],
                )
            })
            .rev()
            .collect();
        write_ticks(&mut c, &ticks);
        let count = |c: &Connection, t: &str, cut: i64| -> (i64, i64) {
            c.query_row(
                &format!("SELECT (SELECT count(*) FROM {t} WHERE ts_ms >= ?1), (SELECT count(*) FROM {t})"),
                [cut],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        let keep_min = count(&c, "process_minute", now - DAY_MS).0;
        let keep_hour = count(&c, "process_hour", now - 2 * DAY_MS).0;
        let keep_day = count(&c, "process_day", now - 3 * DAY_MS).0;
        let p = apply_retention(&mut c, now, &r, true).unwrap();
        assert_eq!(
            count(&c, "process_minute", now - DAY_MS),
            (keep_min, keep_min)
        );
        assert_eq!(
            count(&c, "process_hour", now - 2 * DAY_MS),
            (keep_hour, keep_hour)
        );
        assert_eq!(
            count(&c, "process_day", now - 3 * DAY_MS),
            (keep_day, keep_day)
        );
        assert_eq!(keep_min, 25, "the row exactly at the cut stays");
        assert_eq!(p.samples as i64, (120 - 25) + (120 - 49) + (6 - 3));
        assert_eq!(p.identities, 0, "the process still has samples");
        // Far in the future everything goes, identities too.
        let p = apply_retention(&mut c, now + 10 * DAY_MS, &r, true).unwrap();
        assert_eq!(p.identities, 1);
        assert_eq!(sum(&c, "process_day").0, 0);
    }

    /// (host address or "" for the other-hosts row, up, down) of `res`, by address.
    fn proc_host_rows(c: &Connection, res: &str) -> Vec<(String, i64, i64)> {
        let mut stmt = c
            .prepare(&format!(
                "SELECT coalesce(h.address, ''), sum(s.up_bytes), sum(s.down_bytes)
                 FROM proc_host_{res} s LEFT JOIN hosts h ON h.id = s.host_id
                 GROUP BY s.host_id ORDER BY 1"
            ))
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn with_hosts(
        mut t: super::super::TickRecord,
        hosts: &[(&str, u64)],
    ) -> super::super::TickRecord {
        use super::super::minute::tests::proc_host;
        t.proc_hosts = hosts
            .iter()
            .map(|(a, b)| proc_host(1, a, *b, *b * 10))
            .collect();
        t
    }

    #[test]
    fn hosts_past_the_top_of_a_minute_sum_into_one_row_and_totals_stay_exact() {
        let (_d, mut c) = db();
        let day = 20_000 * DAY_MS;
        let p = || vec![proc_tick(1, "firefox", 1, 1, "tcp")];
        // Five hosts, three kept (TOP_HOSTS): the two smallest go to other,
        // with the aggregator's own other row.
        write_ticks(
            &mut c,
            &[with_hosts(
                tick(day + 1_000, 1, p()),
                &[
                    ("10.0.0.1", 500),
                    ("10.0.0.2", 400),
                    ("10.0.0.3", 300),
                    ("10.0.0.4", 20),
                    ("10.0.0.5", 10),
                    ("", 7),
                ],
            )],
        );
        let want = vec![
            (String::new(), 37, 370),
            ("10.0.0.1".to_owned(), 500, 5000),
            ("10.0.0.2".to_owned(), 400, 4000),
            ("10.0.0.3".to_owned(), 300, 3000),
        ];
        assert_eq!(proc_host_rows(&c, "minute"), want);
        // A later batch of the same minute: a kept host keeps adding, a new
        // one (even a big one) finds the minute full; the next minute is free.
        write_ticks(
            &mut c,
            &[
                with_hosts(
                    tick(day + 30_000, 1, p()),
                    &[("10.0.0.3", 1), ("10.0.0.9", 1000)],
                ),
                with_hosts(tick(day + 61_000, 1, p()), &[("10.0.0.9", 2)]),
            ],
        );
        let minute = proc_host_rows(&c, "minute");
        assert_eq!(
            minute,
            vec![
                (String::new(), 1037, 10370),
                ("10.0.0.1".to_owned(), 500, 5000),
                ("10.0.0.2".to_owned(), 400, 4000),
                ("10.0.0.3".to_owned(), 301, 3010),
                ("10.0.0.9".to_owned(), 2, 20),
            ]
        );
        let sum_up = |rows: &[(String, i64, i64)]| rows.iter().map(|r| r.1).sum::<i64>();
        assert_eq!(sum_up(&minute), 37 + 1200 + 1 + 1000 + 2);
        // Hours and days add up the same rows.
        assert_eq!(proc_host_rows(&c, "hour"), minute);
        assert_eq!(proc_host_rows(&c, "day"), minute);
        let rows: i64 = c
            .query_row("SELECT count(*) FROM proc_host_minute", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 4 + 1, "three hosts and other, then one host");
    }

    #[test]
    fn retention_prunes_process_host_rows_and_keeps_their_hosts_until_then() {
        let (_d, mut c) = db();
        let now = 20_000 * DAY_MS;
        write_ticks(
            &mut c,
            &[
                with_hosts(
                    tick(
                        now - 2 * DAY_MS,
                        1,
                        vec![proc_tick(1, "firefox", 5, 5, "tcp")],
                    ),
                    &[("10.0.0.1", 5)],
                ),
                with_hosts(
                    tick(now - 1_000, 1, vec![proc_tick(1, "firefox", 9, 9, "tcp")]),
                    &[("10.0.0.2", 4)],
                ),
            ],
        );
        let r = Retention {
            minute_days: 1,
            hour_days: 1,
            day_days: 3,
        };
        apply_retention(&mut c, now, &r, true).unwrap();
        let addrs = |c: &Connection| -> Vec<String> {
            let mut s = c
                .prepare("SELECT address FROM hosts ORDER BY address")
                .unwrap();
            s.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(
            proc_host_rows(&c, "minute"),
            vec![("10.0.0.2".to_owned(), 4, 40)]
        );
        assert_eq!(
            proc_host_rows(&c, "hour"),
            vec![("10.0.0.2".to_owned(), 4, 40)]
        );
        assert_eq!(
            proc_host_rows(&c, "day").len(),
            2,
            "day rows are kept 3 days"
        );
        // Only the process-host tables refer to these hosts: kept while they do.
        assert_eq!(addrs(&c), ["10.0.0.1", "10.0.0.2"]);
        apply_retention(&mut c, now + 10 * DAY_MS, &r, true).unwrap();
        assert!(proc_host_rows(&c, "day").is_empty());
        assert!(addrs(&c).is_empty());
    }

    #[test]
    fn alerts_are_upserted_by_id() {
        let (_d, mut c) = db();
        let tx = c.transaction().unwrap();
        let mut a = BTreeMap::new();
        a.insert(
            7,
            v1::Alert {
                id: 7,
                kind: 1,
                state: 1,
                value: 10,
                started_ms: 5,
                ..Default::default()
            },
        );
        write_alerts(&tx, &a).unwrap();
        a.get_mut(&7).unwrap().state = 2;
        a.get_mut(&7).unwrap().peak = 50;
        write_alerts(&tx, &a).unwrap();
        tx.commit().unwrap();
        let (state, peak, ty): (String, i64, String) = c
            .query_row("SELECT state, peak, type FROM alert_log", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(
            (state.as_str(), peak, ty.as_str()),
            ("closed", 50, "process_rate")
        );
    }
}
