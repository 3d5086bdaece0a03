//! Writing: per-minute samples with their hourly and daily rollups (upserts in
//! one transaction), sessions, alerts; retention and VACUUM.
//! Runs only on the store thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use netmon_proto::v1;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::minute::{floor_to, Batch, ProcIdentity, ProcKey, Sample, DAY_MS, HOUR_MS, MINUTE_MS};
use super::SessionRecord;

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
    p: &ProcIdentity,
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

/// Adds a batch of minute samples to the minute, hour and day tables.
pub fn write_batch(
    tx: &Transaction<'_>,
    b: &Batch,
    ids: &Ids,
    staged: &mut Ids,
    now_ms: i64,
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
        for dim in ["process", "host", "iface"] {
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
               UNION SELECT proc_id FROM process_minute)",
            [],
        )? as u64;
        out.identities += tx.execute(
            "DELETE FROM hosts WHERE id NOT IN (
               SELECT host_id FROM host_day UNION SELECT host_id FROM host_hour
               UNION SELECT host_id FROM host_minute)",
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

    /// Writes ticks through the accumulator, as the store thread does.
    pub fn write_ticks(c: &mut Connection, ticks: &[super::super::TickRecord]) {
        let mut a = Accumulator::default();
        for t in ticks {
            a.record(t);
        }
        let tx = c.transaction().unwrap();
        let mut staged = Ids::default();
        write_batch(&tx, &a.take(), &Ids::default(), &mut staged, 0).unwrap();
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
