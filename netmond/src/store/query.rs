//! Reading history: reports over the finest tables that cover a range,
//! alerts, and the chunked export reader (own connection).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use netmon_proto::v1;
use netmon_proto::zone::{Period, Zone};
use rusqlite::{params, Connection, OpenFlags};

use super::minute::{floor_to, DAY_MS, HOUR_MS};
use super::write::Retention;
use super::StoreError;

/// Rows folded into `others` beyond this when the request says 0.
pub const DEFAULT_LIMIT: u32 = 10;

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn ceil_to(ms: i64, unit: i64) -> i64 {
    let f = floor_to(ms, unit);
    if f == ms {
        ms
    } else {
        f + unit
    }
}

/// A part of a report's range read from one resolution's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub res: &'static str,
    pub from: i64,
    pub to: i64,
}

/// Splits [since, until) into whole days (day tables), whole hours (hour
/// tables) and the minute edges. Where finer rows are past their retention
/// the edge is widened to the coarser bucket; the returned range says so.
pub fn plan(since: i64, until: i64, now: i64, r: &Retention) -> (i64, i64, Vec<Segment>) {
    let minute_floor = now - i64::from(r.minute_days) * DAY_MS;
    let hour_floor = now - i64::from(r.hour_days) * DAY_MS;
    let widen = |t: i64, round: fn(i64, i64) -> i64| {
        if t < hour_floor {
            round(t, DAY_MS)
        } else if t < minute_floor {
            round(t, HOUR_MS)
        } else {
            t
        }
    };
    let s = widen(since, floor_to);
    let e = widen(until, ceil_to);
    let mut segs = Vec::new();
    let mut push = |res, from: i64, to: i64| {
        if from < to {
            segs.push(Segment { res, from, to });
        }
    };
    let sub_day = |push: &mut dyn FnMut(&'static str, i64, i64), a: i64, b: i64| {
        let (h0, h1) = (ceil_to(a, HOUR_MS), floor_to(b, HOUR_MS));
        if h0 < h1 {
            push("minute", a, h0);
            push("hour", h0, h1);
            push("minute", h1, b);
        } else {
            push("minute", a, b);
        }
    };
    let (d0, d1) = (ceil_to(s, DAY_MS), floor_to(e, DAY_MS));
    if d0 < d1 {
        sub_day(&mut push, s, d0);
        push("day", d0, d1);
        sub_day(&mut push, d1, e);
    } else {
        sub_day(&mut push, s, e);
    }
    (s, e, segs)
}

#[derive(Debug, Default)]
struct Group {
    label: Option<String>,
    labels_differ: bool,
    up: u64,
    down: u64,
    peak_up: u64,
    peak_down: u64,
    procs: HashSet<i64>,
}

impl Group {
    fn add(&mut self, label: &str, up: u64, down: u64, pu: u64, pd: u64, proc_id: Option<i64>) {
        match &self.label {
            None => self.label = Some(label.to_owned()),
            Some(l) if l != label => self.labels_differ = true,
            Some(_) => {}
        }
        self.up = self.up.saturating_add(up);
        self.down = self.down.saturating_add(down);
        self.peak_up = self.peak_up.max(pu);
        self.peak_down = self.peak_down.max(pd);
        if let Some(id) = proc_id {
            self.procs.insert(id);
        }
    }
}

/// Protocol bit -> name.
fn protocol_names(conn: &Connection) -> rusqlite::Result<HashMap<u32, String>> {
    let mut stmt = conn.prepare_cached("SELECT bit, name FROM protocol_names")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?;
    rows.collect()
}

fn mask_names(mask: i64, names: &HashMap<u32, String>) -> Vec<String> {
    let mut out: Vec<String> = (0..64u32)
        .filter(|b| (mask as u64) >> b & 1 == 1)
        .map(|b| names.get(&b).cloned().unwrap_or_else(|| format!("#{b}")))
        .collect();
    out.sort();
    out
}

/// Most periods one report may be split into (over a year of hours).
pub const MAX_PERIODS: i64 = 10_000;

/// The report for `req` as of `now`; with `every`, also per period of
/// `zone` (the request's zone, resolved by the caller).
pub fn report(
    conn: &Connection,
    req: &v1::ReportRequest,
    zone: &Zone,
    now: i64,
    r: &Retention,
) -> Result<v1::ReportReply, StoreError> {
    let every = v1::ReportEvery::try_from(req.every).unwrap_or(v1::ReportEvery::Unspecified);
    if every != v1::ReportEvery::Unspecified {
        let until = if req.until_ms == 0 { now } else { req.until_ms };
        let step = match every {
            v1::ReportEvery::Hour => HOUR_MS,
            v1::ReportEvery::Month => 28 * DAY_MS,
            _ => DAY_MS,
        };
        // Counted before any work: a month is at least 28 days.
        let periods = (until - req.since_ms) / step + 1;
        if periods > MAX_PERIODS {
            return Err(StoreError::TooManyPeriods {
                periods,
                max: MAX_PERIODS,
            });
        }
    }
    let mut whole = report_range(conn, req, now, r)?;
    let Some(every) = period(every) else {
        return Ok(whole);
    };
    whole.time_zone = zone.name().to_owned();
    let mut start = whole.since_ms;
    while start < whole.until_ms {
        let end = zone.next_period(start, every).min(whole.until_ms);
        let part = report_range(
            conn,
            &v1::ReportRequest {
                since_ms: start,
                until_ms: end,
                group_by: req.group_by,
                limit: req.limit,
                process: req.process.clone(),
                ..Default::default()
            },
            now,
            r,
        )?;
        // A period past its finer rows' retention was widened to the
        // coarser bucket: the next one starts after it, so none overlap.
        start = end.max(part.until_ms);
        whole.periods.push(v1::ReportPeriod {
            since_ms: part.since_ms,
            until_ms: part.until_ms,
            totals: part.totals,
            rows: part.rows,
            others: part.others,
            utc_offset_s: zone.offset_secs(part.since_ms),
        });
    }
    Ok(whole)
}

/// The calendar period of `every`; `None` for no split.
fn period(every: v1::ReportEvery) -> Option<Period> {
    match every {
        v1::ReportEvery::Unspecified => None,
        v1::ReportEvery::Hour => Some(Period::Hour),
        v1::ReportEvery::Day => Some(Period::Day),
        v1::ReportEvery::Month => Some(Period::Month),
    }
}

/// The report for [since, until) of `req`, as one range.
fn report_range(
    conn: &Connection,
    req: &v1::ReportRequest,
    now: i64,
    r: &Retention,
) -> Result<v1::ReportReply, StoreError> {
    let by = v1::GroupBy::try_from(req.group_by).unwrap_or(v1::GroupBy::Unspecified);
    let by = if by == v1::GroupBy::Unspecified {
        v1::GroupBy::Process
    } else {
        by
    };
    let until = if req.until_ms == 0 { now } else { req.until_ms };
    if until <= req.since_ms {
        return Err(StoreError::BadRange {
            since_ms: req.since_ms,
            until_ms: until,
        });
    }
    let (since, until, segs) = plan(req.since_ms, until, now, r);
    if !req.process.is_empty() {
        return process_hosts_report(conn, req, by, since, until, &segs);
    }
    let names = if by == v1::GroupBy::Protocol {
        protocol_names(conn)?
    } else {
        HashMap::new()
    };
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut by_host: HashMap<i64, Group> = HashMap::new();
    for seg in &segs {
        let res = seg.res;
        match by {
            v1::GroupBy::Host => {
                // Scanned without a join or GROUP BY: folding by id here is
                // much cheaper than SQLite sorting tens of thousands of hosts.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT host_id, up_bytes, down_bytes, peak_up_bps, peak_down_bps
                     FROM host_{res} WHERE ts_ms >= ?1 AND ts_ms < ?2"
                ))?;
                let mut rows = stmt.query(params![seg.from, seg.to])?;
                while let Some(row) = rows.next()? {
                    by_host.entry(row.get(0)?).or_default().add(
                        "",
                        u(row.get(1)?),
                        u(row.get(2)?),
                        u(row.get(3)?),
                        u(row.get(4)?),
                        None,
                    );
                }
            }
            v1::GroupBy::Category => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT h.category, s.up_bytes, s.down_bytes, s.peak_up_bps, s.peak_down_bps
                     FROM host_{res} s JOIN hosts h ON h.id = s.host_id
                     WHERE s.ts_ms >= ?1 AND s.ts_ms < ?2"
                ))?;
                let mut rows = stmt.query(params![seg.from, seg.to])?;
                while let Some(row) = rows.next()? {
                    let cat = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                    let key = if cat.is_empty() { "uncategorized" } else { cat };
                    let g = match groups.get_mut(key) {
                        Some(g) => g,
                        None => groups.entry(key.to_owned()).or_default(),
                    };
                    g.add(
                        "",
                        u(row.get(1)?),
                        u(row.get(2)?),
                        u(row.get(3)?),
                        u(row.get(4)?),
                        None,
                    );
                }
            }
            v1::GroupBy::Interface => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT interface, sum(up_bytes), sum(down_bytes), max(peak_up_bps), max(peak_down_bps)
                     FROM iface_{res} WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY interface"
                ))?;
                let mut rows = stmt.query(params![seg.from, seg.to])?;
                while let Some(row) = rows.next()? {
                    groups.entry(row.get(0)?).or_default().add(
                        "",
                        u(row.get(1)?),
                        u(row.get(2)?),
                        u(row.get(3)?),
                        u(row.get(4)?),
                        None,
                    );
                }
            }
            _ => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT s.proc_id, p.name, p.exe, p.user, p.uid, s.protocols,
                            sum(s.up_bytes), sum(s.down_bytes), max(s.peak_up_bps), max(s.peak_down_bps),
                            p.container
                     FROM process_{res} s JOIN processes p ON p.id = s.proc_id
                     WHERE s.ts_ms >= ?1 AND s.ts_ms < ?2 GROUP BY s.proc_id, s.protocols"
                ))?;
                let mut rows = stmt.query(params![seg.from, seg.to])?;
                while let Some(row) = rows.next()? {
                    let id: i64 = row.get(0)?;
                    let (name, exe, user): (String, String, String) =
                        (row.get(1)?, row.get(2)?, row.get(3)?);
                    let (key, label) = match by {
                        v1::GroupBy::User if user.is_empty() => {
                            (format!("uid {}", row.get::<_, u32>(4)?), String::new())
                        }
                        v1::GroupBy::User => (user, String::new()),
                        v1::GroupBy::Container => {
                            let c: String = row.get(10)?;
                            let key = if c.is_empty() { "(host)".to_owned() } else { c };
                            (key, String::new())
                        }
                        v1::GroupBy::Protocol => {
                            let p = mask_names(row.get(5)?, &names);
                            let key = if p.is_empty() {
                                "unknown".to_owned()
                            } else {
                                p.join("+")
                            };
                            (key, String::new())
                        }
                        _ => {
                            let label = if exe.is_empty() {
                                String::new()
                            } else {
                                format!("{name} ({exe})")
                            };
                            (name, label)
                        }
                    };
                    groups.entry(key).or_default().add(
                        &label,
                        u(row.get(6)?),
                        u(row.get(7)?),
                        u(row.get(8)?),
                        u(row.get(9)?),
                        Some(id),
                    );
                }
            }
        }
    }
    let limit = if req.limit == 0 {
        DEFAULT_LIMIT
    } else {
        req.limit
    } as usize;
    let total = |g: &Group| g.up.saturating_add(g.down);
    let all = if by == v1::GroupBy::Host {
        // Only the rows shown need their address and name.
        let mut hosts: Vec<(i64, Group)> = by_host.into_iter().collect();
        hosts.sort_by(|(ia, a), (ib, b)| total(b).cmp(&total(a)).then_with(|| ia.cmp(ib)));
        let mut stmt = conn.prepare_cached("SELECT address, name FROM hosts WHERE id = ?1")?;
        let mut all = Vec::with_capacity(hosts.len());
        for (n, (id, mut g)) in hosts.into_iter().enumerate() {
            let key = if n < limit {
                let (addr, name): (String, String) =
                    stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                g.label = Some(name);
                addr
            } else {
                String::new()
            };
            all.push((key, g));
        }
        all
    } else {
        let mut all: Vec<(String, Group)> = groups.into_iter().collect();
        all.sort_by(|(ka, a), (kb, b)| total(b).cmp(&total(a)).then_with(|| ka.cmp(kb)));
        all
    };
    Ok(fold(all, limit, since, until, by))
}

/// The key of the row summing a process's hosts past the per-minute top.
pub const OTHER_HOSTS: &str = "(other hosts)";

/// The hosts (or host categories) the processes named `req.process` talked
/// to over `segs`, from the per-process host tables.
fn process_hosts_report(
    conn: &Connection,
    req: &v1::ReportRequest,
    by: v1::GroupBy,
    since: i64,
    until: i64,
    segs: &[Segment],
) -> Result<v1::ReportReply, StoreError> {
    if !matches!(by, v1::GroupBy::Host | v1::GroupBy::Category) {
        return Err(StoreError::ProcessNeedsHosts);
    }
    let mut groups: HashMap<String, Group> = HashMap::new();
    for seg in segs {
        let res = seg.res;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT s.proc_id, h.address, h.name, h.category, sum(s.up_bytes), sum(s.down_bytes)
             FROM proc_host_{res} s JOIN processes p ON p.id = s.proc_id
               LEFT JOIN hosts h ON h.id = s.host_id
             WHERE s.ts_ms >= ?1 AND s.ts_ms < ?2 AND p.name = ?3
             GROUP BY s.proc_id, s.host_id"
        ))?;
        let mut rows = stmt.query(params![seg.from, seg.to, req.process])?;
        while let Some(row) = rows.next()? {
            let address: Option<String> = row.get(1)?;
            let (key, label) = match (address, by) {
                // No host row: the other-hosts row (or a host swept away).
                (None, _) => (OTHER_HOSTS.to_owned(), String::new()),
                (Some(a), v1::GroupBy::Host) => (a, row.get::<_, String>(2)?),
                (Some(_), _) => {
                    let c: String = row.get(3)?;
                    let key = if c.is_empty() {
                        "uncategorized".to_owned()
                    } else {
                        c
                    };
                    (key, String::new())
                }
            };
            groups.entry(key).or_default().add(
                &label,
                u(row.get(4)?),
                u(row.get(5)?),
                0,
                0,
                Some(row.get(0)?),
            );
        }
    }
    let limit = if req.limit == 0 {
        DEFAULT_LIMIT
    } else {
        req.limit
    } as usize;
    let total = |g: &Group| g.up.saturating_add(g.down);
    let mut all: Vec<(String, Group)> = groups.into_iter().collect();
    all.sort_by(|(ka, a), (kb, b)| total(b).cmp(&total(a)).then_with(|| ka.cmp(kb)));
    Ok(fold(all, limit, since, until, by))
}

/// Top `limit` rows of `all` (sorted, largest first), the rest folded.
fn fold(
    mut all: Vec<(String, Group)>,
    limit: usize,
    since: i64,
    until: i64,
    by: v1::GroupBy,
) -> v1::ReportReply {
    let mut totals = v1::Traffic::default();
    for (_, g) in &all {
        totals.up_bytes = totals.up_bytes.saturating_add(g.up);
        totals.down_bytes = totals.down_bytes.saturating_add(g.down);
    }
    let rest = if all.len() > limit {
        all.split_off(limit)
    } else {
        Vec::new()
    };
    let row = |key: String, g: &Group| v1::ReportRow {
        label: match &g.label {
            Some(l) if !g.labels_differ && !l.is_empty() => l.clone(),
            _ => key.clone(),
        },
        key,
        up_bytes: g.up,
        down_bytes: g.down,
        peak_up_bps: g.peak_up,
        peak_down_bps: g.peak_down,
        processes: u32::try_from(g.procs.len()).unwrap_or(u32::MAX),
    };
    let others = (!rest.is_empty()).then(|| {
        let mut o = Group::default();
        for (_, g) in &rest {
            o.up = o.up.saturating_add(g.up);
            o.down = o.down.saturating_add(g.down);
            o.peak_up = o.peak_up.max(g.peak_up);
            o.peak_down = o.peak_down.max(g.peak_down);
            o.procs.extend(g.procs.iter().copied());
        }
        let mut r = row(String::new(), &o);
        r.key = format!("{} others", rest.len());
        r.label = r.key.clone();
        r
    });
    v1::ReportReply {
        since_ms: since,
        until_ms: until,
        group_by: by as i32,
        rows: all.into_iter().map(|(k, g)| row(k, &g)).collect(),
        totals: Some(totals),
        others,
        periods: Vec::new(),
        time_zone: String::new(),
    }
}

pub fn list_alerts(
    conn: &Connection,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<v1::Alert>, StoreError> {
    let limit = if limit == 0 { 1000 } else { limit };
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, state, direction, pid, start_time, process_name, exe, uid, user,
                threshold, value, peak, started_ms, ended_ms, message
         FROM alert_events WHERE started_ms >= ?1 OR ended_ms = 0 OR ended_ms >= ?1
         ORDER BY started_ms DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since_ms, limit], |r| {
        Ok(v1::Alert {
            id: u(r.get(0)?),
            kind: r.get(1)?,
            state: r.get(2)?,
            direction: r.get(3)?,
            process: Some(v1::ProcessIdentity {
                pid: r.get(4)?,
                start_time: u(r.get(5)?),
                name: r.get(6)?,
                exe: r.get(7)?,
                uid: r.get(8)?,
                user: r.get(9)?,
                ..Default::default()
            }),
            threshold: u(r.get(10)?),
            value: u(r.get(11)?),
            peak: u(r.get(12)?),
            started_ms: r.get(13)?,
            ended_ms: r.get(14)?,
            message: r.get(15)?,
            // Not stored: the message names the pids of a program alert.
            pids: Vec::new(),
            pids_seen: 0,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Reads the per-minute process samples of [since, until) `chunk` rows per
/// query on a read-only connection of its own, so no read transaction stays
/// open and memory stays flat. Each call to [`ExportReader::next_chunk`] is
/// short blocking work; the caller sends the rows without holding a thread,
/// so a client that stops reading costs one chunk of memory, not a thread.
pub struct ExportReader {
    conn: Connection,
    names: HashMap<u32, String>,
    last_ts: i64,
    last_id: i64,
    until: i64,
    chunk: u32,
    done: bool,
}

impl ExportReader {
    pub fn open(path: &Path, since: i64, until: i64, chunk: u32) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(2))?;
        let names = protocol_names(&conn)?;
        Ok(ExportReader {
            conn,
            names,
            last_ts: since.saturating_sub(1),
            last_id: i64::MAX,
            until,
            chunk,
            done: false,
        })
    }

    /// The next rows in (time, process) order; empty once everything is read.
    pub fn next_chunk(&mut self) -> Result<Vec<v1::ExportRow>, StoreError> {
        if self.done {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.ts_ms, s.proc_id, p.pid, p.start_time, p.name, p.exe, p.cmdline, p.uid, p.user, p.unit,
                s.up_bytes, s.down_bytes, s.protocols, p.cmdline_truncated, p.container
         FROM process_minute s JOIN processes p ON p.id = s.proc_id
         WHERE (s.ts_ms > ?1 OR (s.ts_ms = ?1 AND s.proc_id > ?2)) AND s.ts_ms < ?3
         ORDER BY s.ts_ms, s.proc_id LIMIT ?4",
        )?;
        let mut batch = Vec::with_capacity(self.chunk as usize);
        let mut rows = stmt.query(params![self.last_ts, self.last_id, self.until, self.chunk])?;
        while let Some(r) = rows.next()? {
            self.last_ts = r.get(0)?;
            self.last_id = r.get(1)?;
            let (up, down) = (u(r.get(10)?), u(r.get(11)?));
            batch.push(v1::ExportRow {
                time_ms: self.last_ts,
                process: Some(v1::ProcessIdentity {
                    pid: r.get(2)?,
                    start_time: u(r.get(3)?),
                    name: r.get(4)?,
                    exe: r.get(5)?,
                    cmdline: r.get(6)?,
                    cmdline_truncated: r.get(13)?,
                    uid: r.get(7)?,
                    user: r.get(8)?,
                    unit: r.get(9)?,
                    container: r.get(14)?,
                    ..Default::default()
                }),
                up_bytes: up,
                down_bytes: down,
                up_bps: up / 60,
                down_bps: down / 60,
                protocols: mask_names(r.get(12)?, &self.names),
                ..Default::default()
            });
        }
        if batch.len() < self.chunk as usize {
            self.done = true;
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::minute::tests::{proc_tick, tick};
    use super::super::minute::{HostTick, IfaceTick, MINUTE_MS};
    use super::super::write::tests::{db, write_ticks};
    use super::*;

    const NOW: i64 = 20_000 * DAY_MS + 10 * HOUR_MS + 30 * MINUTE_MS;

    #[test]
    fn plan_uses_days_hours_and_minute_edges() {
        let r = Retention::default();
        let since = NOW - 3 * DAY_MS;
        let (s, e, segs) = plan(since, NOW, NOW, &r);
        assert_eq!((s, e), (since, NOW));
        let res: Vec<_> = segs.iter().map(|g| g.res).collect();
        assert_eq!(res, vec!["minute", "hour", "day", "hour", "minute"]);
        // Contiguous and covering the range.
        assert_eq!(segs[0].from, since);
        assert_eq!(segs.last().unwrap().to, NOW);
        for w in segs.windows(2) {
            assert_eq!(w[0].to, w[1].from);
        }
        // Beyond the minute and hour retention the edges widen.
        let (s, _, segs) = plan(NOW - 30 * DAY_MS, NOW, NOW, &r);
        assert_eq!(s, floor_to(NOW - 30 * DAY_MS, HOUR_MS));
        assert!(segs
            .iter()
            .all(|g| g.res != "minute" || g.from >= NOW - DAY_MS));
        let (s, _, _) = plan(NOW - 200 * DAY_MS, NOW, NOW, &r);
        assert_eq!(s, floor_to(NOW - 200 * DAY_MS, DAY_MS));
    }

    fn filled() -> (tempfile::TempDir, Connection) {
        let (d, mut c) = db();
        let mut ticks = Vec::new();
        // Two days of traffic for five processes; "big" dominates.
        for m in 0..(2 * 24 * 60) {
            let t = NOW - 2 * DAY_MS + m * MINUTE_MS;
            let n = (m + 1) as u64;
            let mut procs = vec![
                proc_tick(1, "big", 1000 * n, 1000 * n, "https"),
                proc_tick(2, "mid", 100 * n, 0, "dns"),
                proc_tick(3, "small", 10 * n, 0, "tcp"),
                proc_tick(4, "tiny", n, 0, "tcp"),
            ];
            let mut other_user = proc_tick(5, "mid", 0, 100 * n, "dns");
            other_user.identity.user = "bob".into();
            other_user.identity.container = "docker:3f2e5d001387".into();
            procs.push(other_user);
            let mut r = tick(t, 1, procs);
            r.hosts = vec![HostTick {
                address: "10.0.0.1".into(),
                up_bytes: 7 * n,
                down_bytes: 0,
                ..Default::default()
            }];
            r.interfaces = vec![IfaceTick {
                name: "eth0".into(),
                up_bytes: 0,
                down_bytes: 3 * n,
                ..Default::default()
            }];
            ticks.push(r);
        }
        write_ticks(&mut c, &ticks);
        (d, c)
    }

    fn req(since: i64, by: v1::GroupBy, limit: u32) -> v1::ReportRequest {
        v1::ReportRequest {
            since_ms: since,
            until_ms: 0,
            group_by: by as i32,
            limit,
            ..Default::default()
        }
    }

    #[test]
    fn report_groups_by_process_name_with_top_n_and_others() {
        let (_d, c) = filled();
        let r = Retention::default();
        let n = 2 * 24 * 60;
        let rep = report(
            &c,
            &req(0, v1::GroupBy::Process, 2),
            &Zone::utc(),
            NOW + 1,
            &r,
        )
        .unwrap();
        let keys: Vec<_> = rep.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec!["big", "mid"]);
        assert_eq!(rep.rows[0].up_bytes, 1000 * n);
        assert_eq!(rep.rows[0].label, "big (/usr/bin/big)");
        assert_eq!(rep.rows[1].processes, 2, "two mid processes");
        assert_eq!(
            (rep.rows[1].up_bytes, rep.rows[1].down_bytes),
            (100 * n, 100 * n)
        );
        let o = rep.others.unwrap();
        assert_eq!((o.up_bytes, o.processes), (11 * n, 2));
        let t = rep.totals.unwrap();
        assert_eq!((t.up_bytes, t.down_bytes), (1111 * n, 1100 * n));
    }

    #[test]
    fn a_range_selects_only_its_samples_at_every_resolution() {
        let (_d, c) = filled();
        let r = Retention::default();
        // The last 90 minutes: one byte per minute from "tiny" -> 90 minutes.
        let rep = report(
            &c,
            &v1::ReportRequest {
                since_ms: NOW - 90 * MINUTE_MS,
                until_ms: NOW,
                group_by: v1::GroupBy::Process as i32,
                limit: 10,
                ..Default::default()
            },
            &Zone::utc(),
            NOW + 1,
            &r,
        )
        .unwrap();
        let tiny = rep.rows.iter().find(|r| r.key == "tiny").unwrap();
        assert_eq!(tiny.up_bytes, 90);
        // One whole day and a half through days, hours and minutes.
        let rep = report(
            &c,
            &req(NOW - 36 * HOUR_MS, v1::GroupBy::Process, 10),
            &Zone::utc(),
            NOW + MINUTE_MS,
            &r,
        )
        .unwrap();
        let tiny = rep.rows.iter().find(|r| r.key == "tiny").unwrap();
        assert_eq!(tiny.up_bytes, 36 * 60);
    }

    #[test]
    fn report_by_user_protocol_host_and_interface() {
        let (_d, c) = filled();
        let r = Retention::default();
        let n = 2 * 24 * 60;
        let keys = |by| {
            report(&c, &req(0, by, 10), &Zone::utc(), NOW + 1, &r)
                .unwrap()
                .rows
                .into_iter()
                .map(|r| (r.key, r.up_bytes + r.down_bytes))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(v1::GroupBy::User),
            vec![("alice".to_owned(), 2111 * n), ("bob".to_owned(), 100 * n)]
        );
        assert_eq!(
            keys(v1::GroupBy::Protocol),
            vec![
                ("https".to_owned(), 2000 * n),
                ("dns".to_owned(), 200 * n),
                ("tcp".to_owned(), 11 * n)
            ]
        );
        assert_eq!(
            keys(v1::GroupBy::Host),
            vec![("10.0.0.1".to_owned(), 7 * n)]
        );
        assert_eq!(
            keys(v1::GroupBy::Category),
            vec![("uncategorized".to_owned(), 7 * n)]
        );
        assert_eq!(
            keys(v1::GroupBy::Interface),
            vec![("eth0".to_owned(), 3 * n)]
        );
        assert_eq!(
            keys(v1::GroupBy::Container),
            vec![
                ("(host)".to_owned(), 2111 * n),
                ("docker:3f2e5d001387".to_owned(), 100 * n)
            ]
        );
    }

    /// firefox (two processes) and curl, each with its own hosts.
    fn programs_and_hosts() -> (tempfile::TempDir, Connection) {
        use super::super::minute::tests::proc_host;
        let (d, mut c) = db();
        let host = |a: &str, name: &str, cat: &str| HostTick {
            address: a.into(),
            name: name.into(),
            category: cat.into(),
            up_bytes: 1,
            down_bytes: 1,
            ..Default::default()
        };
        let mut ticks = Vec::new();
        for (k, t) in [NOW - 2 * HOUR_MS, NOW - 30 * MINUTE_MS]
            .into_iter()
            .enumerate()
        {
            let k = k as u64 + 1;
            let mut r = tick(
                t,
                1,
                vec![
                    proc_tick(1, "firefox", 10 * k, 10 * k, "https"),
                    proc_tick(6, "firefox", 10 * k, 10 * k, "https"),
                    proc_tick(2, "curl", 10 * k, 10 * k, "https"),
                ],
            );
            r.hosts = vec![
                host("10.0.0.1", "news.example", "news"),
                host("10.0.0.2", "", "cdn"),
                host("10.0.0.3", "", ""),
                host("10.0.0.9", "", "work"),
            ];
            r.proc_hosts = vec![
                proc_host(1, "10.0.0.1", 100, 1000),
                proc_host(6, "10.0.0.1", 1, 2),
                proc_host(6, "10.0.0.2", 50, 50),
                proc_host(6, "10.0.0.3", 5, 5),
                proc_host(6, "", 3, 3),
                proc_host(2, "10.0.0.9", 7000, 7000),
            ];
            ticks.push(r);
        }
        write_ticks(&mut c, &ticks);
        (d, c)
    }

    fn of_program(by: v1::GroupBy, name: &str, since: i64) -> v1::ReportRequest {
        v1::ReportRequest {
            process: name.into(),
            ..req(since, by, 10)
        }
    }

    #[test]
    fn a_programs_hosts_and_categories_come_from_its_own_rows() {
        let (_d, c) = programs_and_hosts();
        let r = Retention::default();
        let rep = report(
            &c,
            &of_program(v1::GroupBy::Host, "firefox", 0),
            &Zone::utc(),
            NOW + 1,
            &r,
        )
        .unwrap();
        let rows: Vec<_> = rep
            .rows
            .iter()
            .map(|r| {
                (
                    r.key.as_str(),
                    r.label.as_str(),
                    r.up_bytes,
                    r.down_bytes,
                    r.processes,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("10.0.0.1", "news.example", 202, 2004, 2),
                ("10.0.0.2", "10.0.0.2", 100, 100, 1),
                ("10.0.0.3", "10.0.0.3", 10, 10, 1),
                (OTHER_HOSTS, OTHER_HOSTS, 6, 6, 1),
            ]
        );
        let t = rep.totals.unwrap();
        assert_eq!((t.up_bytes, t.down_bytes), (318, 2120));
        assert_eq!(rep.group_by, v1::GroupBy::Host as i32);
        let cats = report(
            &c,
            &of_program(v1::GroupBy::Category, "firefox", 0),
            &Zone::utc(),
            NOW + 1,
            &r,
        )
        .unwrap();
        let keys: Vec<_> = cats
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.up_bytes + r.down_bytes))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("news", 2206),
                ("cdn", 200),
                ("uncategorized", 20),
                (OTHER_HOSTS, 12)
            ]
        );
        // curl's host is curl's alone; a range holds only its minutes.
        let curl = report(
            &c,
            &of_program(v1::GroupBy::Host, "curl", NOW - HOUR_MS),
            &Zone::utc(),
            NOW + 1,
            &r,
        )
        .unwrap();
        let keys: Vec<_> = curl
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.up_bytes))
            .collect();
        assert_eq!(keys, vec![("10.0.0.9", 7000)]);
        let none = report(
            &c,
            &of_program(v1::GroupBy::Host, "wget", 0),
            &Zone::utc(),
            NOW + 1,
            &r,
        )
        .unwrap();
        assert!(none.rows.is_empty() && none.others.is_none());
        let err = report(
            &c,
            &of_program(v1::GroupBy::Process, "curl", 0),
            &Zone::utc(),
            NOW + 1,
            &r,
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::ProcessNeedsHosts), "{err}");
    }

    #[test]
    fn a_programs_hosts_split_into_periods() {
        let (_d, c) = programs_and_hosts();
        let r = Retention::default();
        let rep = report(
            &c,
            &v1::ReportRequest {
                every: v1::ReportEvery::Hour as i32,
                ..of_program(v1::GroupBy::Host, "curl", NOW - 3 * HOUR_MS)
            },
            &Zone::utc(),
            NOW + 1,
            &r,
        )
        .unwrap();
        let per: Vec<u64> = rep
            .periods
            .iter()
            .map(|p| p.rows.iter().map(|r| r.up_bytes).sum())
            .collect();
        assert_eq!(per.iter().sum::<u64>(), 14_000);
        assert_eq!(per.iter().filter(|b| **b == 7000).count(), 2, "{per:?}");
    }

    fn utc(t: time::OffsetDateTime) -> i64 {
        t.unix_timestamp() * 1000
    }

    #[test]
    fn periods_end_at_utc_hours_days_and_month_ends() {
        use time::macros::datetime;
        let next = |t, e| Zone::utc().next_period(utc(t), e);
        let (h, d, m) = (Period::Hour, Period::Day, Period::Month);
        assert_eq!(
            next(datetime!(2026-01-31 23:59:59.999 UTC), h),
            utc(datetime!(2026-02-01 00:00 UTC))
        );
        assert_eq!(
            next(datetime!(2026-01-31 10:00 UTC), h),
            utc(datetime!(2026-01-31 11:00 UTC))
        );
        assert_eq!(
            next(datetime!(2026-01-31 10:00 UTC), d),
            utc(datetime!(2026-02-01 00:00 UTC))
        );
        assert_eq!(
            next(datetime!(2026-01-31 23:59 UTC), m),
            utc(datetime!(2026-02-01 00:00 UTC))
        );
        assert_eq!(
            next(datetime!(2026-02-01 00:00 UTC), m),
            utc(datetime!(2026-03-01 00:00 UTC))
        );
        assert_eq!(
            next(datetime!(2024-02-29 12:00 UTC), m),
            utc(datetime!(2024-03-01 00:00 UTC))
        );
        assert_eq!(
            next(datetime!(2026-12-31 23:00 UTC), m),
            utc(datetime!(2027-01-01 00:00 UTC))
        );
        assert_eq!(next(datetime!(1969-12-31 12:00 UTC), m), 0);
    }

    fn every(since: i64, until: i64, e: v1::ReportEvery) -> v1::ReportRequest {
        v1::ReportRequest {
            since_ms: since,
            until_ms: until,
            group_by: v1::GroupBy::Process as i32,
            limit: 1,
            every: e as i32,
            ..Default::default()
        }
    }

    /// (since, until, up bytes, top row's key) of each period.
    fn periods(rep: &v1::ReportReply) -> Vec<(i64, i64, u64, String)> {
        rep.periods
            .iter()
            .map(|p| {
                (
                    p.since_ms,
                    p.until_ms,
                    p.totals.unwrap_or_default().up_bytes,
                    p.rows.first().map(|r| r.key.clone()).unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn a_report_splits_into_hours_days_and_months_across_a_month_end() {
        use time::macros::datetime;
        let (_d, mut c) = db();
        // One byte a minute from 2026-01-31 22:30 to 2026-02-01 01:30 (UTC),
        // "jan" before midnight and "feb" after; "big" 1000 in the first minute.
        let start = utc(datetime!(2026-01-31 22:30 UTC));
        let midnight = utc(datetime!(2026-02-01 00:00 UTC));
        let mut ticks = Vec::new();
        for m in 0..180 {
            let t = start + m * MINUTE_MS;
            let mut procs = vec![if t < midnight {
                proc_tick(1, "jan", (m + 1) as u64, 0, "tcp")
            } else {
                proc_tick(2, "feb", (m + 1 - 90) as u64, 0, "tcp")
            }];
            if m == 0 {
                procs.push(proc_tick(3, "big", 1000, 0, "tcp"));
            }
            ticks.push(tick(t + 1_000, 1, procs));
        }
        write_ticks(&mut c, &ticks);
        let now = start + 200 * MINUTE_MS;
        let r = Retention::default();
        let (from, to) = (
            utc(datetime!(2026-01-31 22:00 UTC)),
            utc(datetime!(2026-02-01 02:00 UTC)),
        );
        let hour = |h: i64| from + h * HOUR_MS;
        let rep = report(
            &c,
            &every(from, to, v1::ReportEvery::Hour),
            &Zone::utc(),
            now,
            &r,
        )
        .unwrap();
        assert_eq!(
            periods(&rep),
            vec![
                (hour(0), hour(1), 1030, "big".to_owned()),
                (hour(1), hour(2), 60, "jan".to_owned()),
                (hour(2), hour(3), 60, "feb".to_owned()),
                (hour(3), hour(4), 30, "feb".to_owned()),
            ]
        );
        // The whole range is still answered as before.
        assert_eq!(rep.totals.unwrap().up_bytes, 1180);
        assert_eq!((rep.since_ms, rep.until_ms), (from, to));
        for e in [v1::ReportEvery::Day, v1::ReportEvery::Month] {
            let rep = report(&c, &every(from, to, e), &Zone::utc(), now, &r).unwrap();
            assert_eq!(
                periods(&rep),
                vec![
                    (from, midnight, 1090, "big".to_owned()),
                    (midnight, to, 90, "feb".to_owned()),
                ],
                "{e:?}"
            );
        }
        // No split without `every`.
        let rep = report(
            &c,
            &every(from, to, v1::ReportEvery::Unspecified),
            &Zone::utc(),
            now,
            &r,
        )
        .unwrap();
        assert!(rep.periods.is_empty());
    }

    #[test]
    fn periods_follow_the_requested_zone_half_hour_offset_included() {
        use time::macros::datetime;
        let (_d, mut c) = db();
        // One byte a minute from 2026-01-31 22:30 UTC for three hours, 1000
        // more in the first minute.
        let start = utc(datetime!(2026-01-31 22:30 UTC));
        let ticks: Vec<_> = (0..180)
            .map(|m| {
                let mut procs = vec![proc_tick(1, "one", (m + 1) as u64, 0, "tcp")];
                if m == 0 {
                    procs.push(proc_tick(3, "big", 1000, 0, "tcp"));
                }
                tick(start + m * MINUTE_MS + 1_000, 1, procs)
            })
            .collect();
        write_ticks(&mut c, &ticks);
        let now = start + 200 * MINUTE_MS;
        let (from, to) = (
            utc(datetime!(2026-01-31 22:00 UTC)),
            utc(datetime!(2026-02-01 02:00 UTC)),
        );
        // India is UTC+05:30: its hours turn at half past UTC hours.
        let kolkata = Zone::named("Asia/Kolkata").expect("tzdata");
        let req = every(from, to, v1::ReportEvery::Hour);
        let rep = report(&c, &req, &kolkata, now, &Retention::default()).unwrap();
        let got: Vec<(i64, i64, u64)> =
            periods(&rep).into_iter().map(|p| (p.0, p.1, p.2)).collect();
        let half = |k: i64| from + k * HOUR_MS / 2;
        assert_eq!(
            got,
            vec![
                (half(0), half(1), 0),
                (half(1), half(3), 1060),
                (half(3), half(5), 60),
                (half(5), half(7), 60),
                (half(7), half(8), 0),
            ]
        );
        assert!(rep.periods.iter().all(|p| p.utc_offset_s == 19_800));
        assert_eq!(rep.time_zone, "Asia/Kolkata");
        // Los Angeles (UTC-8 in winter): the whole range is one local day.
        let la = Zone::named("America/Los_Angeles").expect("tzdata");
        let req = every(from, to, v1::ReportEvery::Day);
        let rep = report(&c, &req, &la, now, &Retention::default()).unwrap();
        assert_eq!(periods(&rep).len(), 1);
        assert_eq!(rep.periods[0].utc_offset_s, -8 * 3600);
    }

    #[test]
    fn hourly_periods_past_the_hour_retention_widen_to_days_without_overlap() {
        let (_d, c) = filled();
        let r = Retention {
            minute_days: 1,
            hour_days: 1,
            day_days: 365,
        };
        let since = floor_to(NOW, DAY_MS) - 2 * DAY_MS + 5 * HOUR_MS;
        let until = floor_to(NOW, DAY_MS) - DAY_MS + 3 * HOUR_MS;
        let rep = report(
            &c,
            &every(since, until, v1::ReportEvery::Hour),
            &Zone::utc(),
            NOW,
            &r,
        )
        .unwrap();
        let p = periods(&rep);
        let day0 = floor_to(NOW, DAY_MS) - 2 * DAY_MS;
        assert_eq!(
            p.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
            vec![(day0, day0 + DAY_MS), (day0 + DAY_MS, day0 + 2 * DAY_MS)]
        );
        let sum: u64 = p.iter().map(|p| p.2).sum();
        assert_eq!(sum, rep.totals.unwrap().up_bytes);
    }

    #[test]
    fn too_many_periods_are_refused_before_any_work() {
        let (_d, c) = db();
        let r = Retention::default();
        let err = report(
            &c,
            &every(NOW - 2 * 365 * DAY_MS, NOW, v1::ReportEvery::Hour),
            &Zone::utc(),
            NOW,
            &r,
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::TooManyPeriods { .. }), "{err}");
        let ok = report(
            &c,
            &every(NOW - 2 * 365 * DAY_MS, NOW, v1::ReportEvery::Month),
            &Zone::utc(),
            NOW,
            &r,
        )
        .unwrap();
        assert!(
            (24..=26).contains(&ok.periods.len()),
            "{}",
            ok.periods.len()
        );
    }

    /// Drains an [`ExportReader`] into `tx` as the service does, blocking.
    fn export_rows(
        path: &Path,
        since: i64,
        until: i64,
        chunk: u32,
        tx: &tokio::sync::mpsc::Sender<Result<v1::ExportRow, StoreError>>,
    ) -> Result<u64, StoreError> {
        let mut reader = ExportReader::open(path, since, until, chunk)?;
        let mut sent = 0;
        loop {
            let rows = reader.next_chunk()?;
            if rows.is_empty() {
                return Ok(sent);
            }
            for row in rows {
                if tx.blocking_send(Ok(row)).is_err() {
                    return Ok(sent);
                }
                sent += 1;
            }
        }
    }

    #[test]
    fn export_streams_in_chunks_in_order_and_stops_when_the_client_goes() {
        let (d, c) = filled();
        drop(c);
        let path = d.path().join("t.db");
        let since = NOW - 10 * MINUTE_MS;
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let p = path.clone();
        let reader = std::thread::spawn(move || export_rows(&p, since, NOW, 3, &tx).unwrap());
        let mut rows = Vec::new();
        while let Some(r) = rx.blocking_recv() {
            rows.push(r.unwrap());
        }
        assert_eq!(reader.join().unwrap(), 50, "10 minutes x 5 processes");
        assert_eq!(rows.len(), 50);
        assert!(rows.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
        assert!(rows.iter().all(|r| (since..NOW).contains(&r.time_ms)));
        let big: u64 = rows
            .iter()
            .filter(|r| r.process.as_ref().unwrap().name == "big")
            .map(|r| r.up_bytes)
            .sum();
        assert_eq!(big, 10_000);
        let first_big = rows
            .iter()
            .find(|r| r.process.as_ref().unwrap().name == "big")
            .unwrap();
        assert_eq!(first_big.protocols, vec!["https".to_owned()]);
        // A client that reads two rows and goes away ends the export.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let reader = std::thread::spawn(move || export_rows(&path, 0, NOW, 3, &tx).unwrap());
        rx.blocking_recv().unwrap().unwrap();
        rx.blocking_recv().unwrap().unwrap();
        drop(rx);
        assert!(reader.join().unwrap() < 10);
    }
}

#[cfg(test)]
mod bench {
    //! Scripted measurement, not a timed test: run with
    //! `cargo test --release -p netmond --lib store::query::bench -- --ignored --nocapture`.
    use std::collections::BTreeSet;
    use std::time::Instant;

    use super::super::minute::{Batch, HostMinute, ProcMinute, Sample, MINUTE_MS};
    use super::super::write::{apply_retention, write_batch, Ids};
    use super::*;
    use crate::attribution::ProcessInfo;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    /// One busy day: 100 processes (80 that live all month, 20 new each day),
    /// each active in a quarter of the minutes; 5,000 hosts each seen in three
    /// minutes; two interfaces every minute.
    fn day(d: i64, rng: &mut Lcg) -> Batch {
        let start = d * DAY_MS;
        let protos = ["https", "dns", "quic", "tcp", "udp", "ssh"];
        let mut b = Batch::default();
        for p in 0..100u32 {
            let pid = if p < 80 {
                1000 + p
            } else {
                100_000 + d as u32 * 100 + p
            };
            let name = format!("proc{}", p % 60);
            let identity = ProcessInfo {
                pid,
                start_time: u64::from(pid) * 7,
                name: name.clone(),
                exe: format!("/usr/bin/{name}"),
                cmdline: format!("/usr/bin/{name} --flag"),
                cmdline_truncated: false,
                uid: 1000 + p % 3,
                user: format!("user{}", p % 3),
                unit: String::new(),
                container: String::new(),
                ..ProcessInfo::default()
            };
            for m in 0..1440 {
                if rng.next(4) != 0 {
                    continue;
                }
                let up = rng.next(5_000_000);
                let down = rng.next(50_000_000);
                let mut set = BTreeSet::new();
                set.insert(protos[(p % 6) as usize].to_owned());
                if rng.next(3) == 0 {
                    set.insert("dns".to_owned());
                }
                b.procs.insert(
                    (start + m * MINUTE_MS, (pid, identity.start_time)),
                    ProcMinute {
                        identity: identity.clone(),
                        sample: Sample {
                            up_bytes: up,
                            down_bytes: down,
                            peak_up_bps: up / 20,
                            peak_down_bps: down / 20,
                        },
                        protocols: set,
                    },
                );
            }
        }
        for h in 0..5000u64 {
            // Half the hosts recur every day, half are new.
            let id = if h < 2500 { h } else { (d as u64) * 10_000 + h };
            let address = format!("10.{}.{}.{}", id >> 16 & 255, id >> 8 & 255, id & 255);
            for _ in 0..3 {
                let m = rng.next(1440) as i64;
                b.hosts.insert(
                    (start + m * MINUTE_MS, address.clone()),
                    HostMinute {
                        name: format!("host{id}.example"),
                        category: ["cdn", "cloud", "ads", ""][(h % 4) as usize].to_owned(),
                        sample: Sample {
                            up_bytes: rng.next(100_000),
                            down_bytes: rng.next(1_000_000),
                            peak_up_bps: 1000,
                            peak_down_bps: 1000,
                        },
                    },
                );
            }
        }
        for m in 0..1440 {
            for i in ["eth0", "wlan0"] {
                b.ifaces.insert(
                    (start + m * MINUTE_MS, i.to_owned()),
                    Sample {
                        up_bytes: rng.next(10_000_000),
                        down_bytes: rng.next(100_000_000),
                        peak_up_bps: 1,
                        peak_down_bps: 1,
                    },
                );
            }
        }
        b
    }

    #[test]
    #[ignore = "measurement: run explicitly with --release --ignored --nocapture"]
    fn thirty_days_of_busy_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.db");
        let mut c = super::super::open(&path).unwrap();
        let first = 20_000i64;
        let mut rng = Lcg(42);
        let mut ids = Ids::default();
        let t = Instant::now();
        for d in first..first + 30 {
            let b = day(d, &mut rng);
            let tx = c.transaction().unwrap();
            let mut staged = Ids::default();
            write_batch(&tx, &b, &ids, &mut staged, d * DAY_MS, 20).unwrap();
            tx.commit().unwrap();
            ids.merge(staged);
            if d == first {
                c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
                let size = std::fs::metadata(&path).unwrap().len();
                println!(
                    "one busy day: {:.2} MB (all three resolutions)",
                    size as f64 / 1e6
                );
            }
        }
        println!("30 days written in {:.1} s", t.elapsed().as_secs_f64());
        let now = (first + 30) * DAY_MS - 1;
        let r = Retention::default();
        let p = apply_retention(&mut c, now, &r, true).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM")
            .unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "after retention ({} samples pruned): {:.1} MB for 30 days (7 days of minutes)",
            p.samples,
            size as f64 / 1e6
        );
        for by in [
            v1::GroupBy::Process,
            v1::GroupBy::Host,
            v1::GroupBy::User,
            v1::GroupBy::Protocol,
            v1::GroupBy::Category,
            v1::GroupBy::Interface,
        ] {
            for (what, since) in [
                ("30 days (--since 30d)", now - 30 * DAY_MS),
                ("today", floor_to(now, DAY_MS)),
            ] {
                let req = v1::ReportRequest {
                    since_ms: since,
                    until_ms: 0,
                    group_by: by as i32,
                    limit: 10,
                    ..Default::default()
                };
                let t = Instant::now();
                let rep = report(&c, &req, &Zone::utc(), now, &r).unwrap();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                println!(
                    "report {what:>22} by {:<9}: {ms:7.1} ms ({} rows + others)",
                    by.as_str_name(),
                    rep.rows.len()
                );
            }
        }
    }
}
