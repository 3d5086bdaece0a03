//! History: `alerts`, `sessions`, `report` and the streamed `export`.
//! Export never holds more than one row: rows go to the output as they arrive.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use netmon_proto::v1;

use super::Client;
use crate::cli::{Every, ExportFormat, ReportBy};
use crate::error::{CtlError, Result};
use crate::json::{
    share, AlertJson, AlertsJson, ExportRowJson, ReportJson, ReportPeriodJson, ReportRowJson,
    ReportTotalsJson, SessionJson, SessionsJson,
};
use crate::output::{write_csv_record, write_json, Align, Table};
use crate::units::{format_bytes, format_rate};
use crate::when::{day_range, human_time, rfc3339_ms, When};
use netmon_proto::zone::{offset_text, Date, Zone};

/// One pid, or how many a program alert saw (the message lists them).
pub fn pid_cell(a: &AlertJson) -> String {
    match (a.pid, a.pids.as_slice(), a.pids_seen) {
        (Some(pid), _, _) => pid.to_string(),
        (None, [one], 1) => one.to_string(),
        (None, _, 0) => "-".to_owned(),
        (None, _, n) => format!("{n} pids"),
    }
}

pub async fn alerts(
    mut client: Client,
    since: Option<When>,
    limit: u32,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let since = since.unwrap_or(When::Ago(std::time::Duration::from_secs(86_400)));
    let req = v1::ListAlertsRequest {
        since_ms: since.to_ms(crate::when::now_ms(), crate::when::zone()),
        limit,
    };
    let list = client.list_alerts(req).await?.into_inner();
    if json {
        return write_json(
            out,
            &AlertsJson {
                alerts: list.alerts.iter().map(AlertJson::from).collect(),
            },
        );
    }
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("STARTED", Align::Left),
        ("ENDED", Align::Left),
        ("STATE", Align::Left),
        ("KIND", Align::Left),
        ("PID", Align::Right),
        ("PROCESS", Align::Left),
        ("LIMIT", Align::Right),
        ("PEAK", Align::Right),
        ("MESSAGE", Align::Left),
    ]);
    for a in &list.alerts {
        let j = AlertJson::from(a);
        let amount = |v: u64| {
            if j.kind == "quota" {
                format_bytes(v)
            } else {
                format_rate(v)
            }
        };
        t.row(vec![
            a.id.to_string(),
            human_time(a.started_ms),
            human_time(a.ended_ms),
            j.state.to_owned(),
            j.kind.to_owned(),
            pid_cell(&j),
            j.name.clone().unwrap_or_else(|| "-".to_owned()),
            amount(a.threshold),
            amount(a.peak),
            a.message.clone(),
        ]);
    }
    t.write_to(out)?;
    Ok(())
}

pub async fn sessions(
    mut client: Client,
    since: Option<When>,
    limit: u32,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let since_ms = since.map_or(0, |w| w.to_ms(crate::when::now_ms(), crate::when::zone()));
    let list = client
        .list_sessions(v1::ListSessionsRequest { since_ms, limit })
        .await?
        .into_inner();
    if json {
        return write_json(
            out,
            &SessionsJson {
                sessions: list.sessions.iter().map(SessionJson::from).collect(),
            },
        );
    }
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("STARTED", Align::Left),
        ("ENDED", Align::Left),
        ("UP", Align::Right),
        ("DOWN", Align::Right),
        ("INTERFACES", Align::Left),
    ]);
    for s in &list.sessions {
        t.row(vec![
            s.id.to_string(),
            human_time(s.started_ms),
            if s.active {
                "running".to_owned()
            } else {
                human_time(s.ended_ms)
            },
            format_bytes(s.up_bytes),
            format_bytes(s.down_bytes),
            s.interfaces.join(", "),
        ]);
    }
    t.write_to(out)?;
    Ok(())
}

fn group_by(by: ReportBy) -> v1::GroupBy {
    match by {
        ReportBy::Process => v1::GroupBy::Process,
        ReportBy::Host => v1::GroupBy::Host,
        ReportBy::Protocol => v1::GroupBy::Protocol,
        ReportBy::Interface => v1::GroupBy::Interface,
        ReportBy::User => v1::GroupBy::User,
        ReportBy::Category => v1::GroupBy::Category,
        ReportBy::Container => v1::GroupBy::Container,
    }
}

fn by_name(by: ReportBy) -> &'static str {
    match by {
        ReportBy::Process => "process",
        ReportBy::Host => "host",
        ReportBy::Protocol => "protocol",
        ReportBy::Interface => "interface",
        ReportBy::User => "user",
        ReportBy::Category => "category",
        ReportBy::Container => "container",
    }
}

/// What `report` was asked for on the command line.
pub struct ReportArgs {
    pub day: Option<Date>,
    pub since: Option<std::time::Duration>,
    pub by: ReportBy,
    pub limit: u32,
    pub every: Option<Every>,
    pub process: Option<String>,
}

/// `--day` is that day of `zone`; `--since DUR` runs up to now; neither
/// means today so far. The request names `zone` so that the daemon cuts
/// `--every` periods as we show them.
pub fn report_request(args: ReportArgs, now_ms: i64, zone: &Zone) -> v1::ReportRequest {
    let ReportArgs {
        day,
        since,
        by,
        limit,
        every,
        process,
    } = args;
    let (since_ms, until_ms) = match (day, since) {
        (Some(date), _) => day_range(date, zone),
        (None, Some(d)) => (When::Ago(d).to_ms(now_ms, zone), 0),
        (None, None) => (zone.start_of_day(now_ms), 0),
    };
    let every = match every {
        None => v1::ReportEvery::Unspecified,
        Some(Every::Hour) => v1::ReportEvery::Hour,
        Some(Every::Day) => v1::ReportEvery::Day,
        Some(Every::Month) => v1::ReportEvery::Month,
    };
    v1::ReportRequest {
        since_ms,
        until_ms,
        group_by: group_by(by) as i32,
        limit,
        every: every as i32,
        process: process.unwrap_or_default(),
        time_zone: zone.name().to_owned(),
    }
}

/// The zone to show periods in: the one the daemon cut them by when it
/// names another than ours (it could not use ours), else ours.
fn period_zone(reply: &str) -> Zone {
    let ours = crate::when::zone();
    if reply.is_empty() || reply == ours.name() {
        return ours.clone();
    }
    Zone::named(reply).unwrap_or_else(|_| ours.clone())
}

/// `(UTC)` or `(time zone Asia/Tokyo, +09:00)`: what shown times mean.
fn zone_note(zone: &Zone, at_ms: i64) -> String {
    if zone.is_utc() {
        return "(UTC)".to_owned();
    }
    let offset = offset_text(zone.offset_secs(at_ms));
    match zone.name() {
        "" => format!("(local time, {offset})"),
        name => format!("(time zone {name}, {offset})"),
    }
}

/// (up, down) of a report or period: its totals, else the sum of its rows.
fn up_down(
    totals: Option<&v1::Traffic>,
    rows: &[v1::ReportRow],
    others: Option<&v1::ReportRow>,
) -> (u64, u64) {
    match totals {
        Some(t) => (t.up_bytes, t.down_bytes),
        None => rows.iter().chain(others).fold((0u64, 0u64), |(u, d), row| {
            (
                u.saturating_add(row.up_bytes),
                d.saturating_add(row.down_bytes),
            )
        }),
    }
}

/// The folded row, unless it is empty.
fn shown(others: Option<&v1::ReportRow>) -> Option<&v1::ReportRow> {
    others.filter(|o| o.up_bytes != 0 || o.down_bytes != 0 || o.processes != 0)
}

/// The API's time, or what was asked when the daemon left it 0.
fn or_asked(got: i64, asked: i64) -> i64 {
    if got == 0 {
        asked
    } else {
        got
    }
}

pub async fn report(
    mut client: Client,
    req: v1::ReportRequest,
    by: Option<ReportBy>,
    every: Option<Every>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let (asked_since, asked_until) = (req.since_ms, req.until_ms);
    let process = (!req.process.is_empty()).then(|| req.process.clone());
    let r = client.report(req).await?.into_inner();
    let since_ms = or_asked(r.since_ms, asked_since);
    let until_ms = or_asked(r.until_ms, asked_until);
    let (up, down) = up_down(r.totals.as_ref(), &r.rows, r.others.as_ref());
    let grand = up.saturating_add(down);
    let others = shown(r.others.as_ref());
    let by_shown = by.unwrap_or(ReportBy::Process);
    if json {
        let doc = ReportJson {
            since: rfc3339_ms(since_ms),
            until: rfc3339_ms(until_ms),
            by: by_name(by_shown),
            every: every.map(Every::as_str),
            process,
            totals: ReportTotalsJson::new(up, down),
            rows: r
                .rows
                .iter()
                .map(|row| ReportRowJson::new(row, grand))
                .collect(),
            others: others.map(|o| ReportRowJson::new(o, grand)),
            periods: r
                .periods
                .iter()
                .map(|p| {
                    let (up, down) = up_down(p.totals.as_ref(), &p.rows, p.others.as_ref());
                    let total = up.saturating_add(down);
                    ReportPeriodJson {
                        since: rfc3339_ms(p.since_ms),
                        until: rfc3339_ms(p.until_ms),
                        utc_offset_s: p.utc_offset_s,
                        totals: ReportTotalsJson::new(up, down),
                        rows: p
                            .rows
                            .iter()
                            .map(|row| ReportRowJson::new(row, total))
                            .collect(),
                        others: shown(p.others.as_ref()).map(|o| ReportRowJson::new(o, total)),
                    }
                })
                .collect(),
            time_zone: Some(r.time_zone.clone()).filter(|z| every.is_some() && !z.is_empty()),
        };
        return write_json(out, &doc);
    }
    let zone = period_zone(&r.time_zone);
    let note = zone_note(&zone, since_ms);
    let until = if until_ms == 0 {
        "now".to_owned()
    } else {
        zone.human_time(until_ms)
    };
    match every {
        Some(e) => writeln!(
            out,
            "traffic every {}{} from {} to {} {note}",
            e.as_str(),
            by.map_or(String::new(), |b| format!(" by {}", by_name(b))),
            zone.human_time(since_ms),
            until
        )?,
        None => writeln!(
            out,
            "traffic by {} from {} to {} {note}",
            by_name(by_shown),
            zone.human_time(since_ms),
            until
        )?,
    }
    if let Some(p) = &process {
        writeln!(out, "program: {p}")?;
    }
    writeln!(
        out,
        "total: {} (up {}, down {})",
        format_bytes(grand),
        format_bytes(up),
        format_bytes(down)
    )?;
    writeln!(out)?;
    let Some(_) = every else {
        return write_rows(out, by_shown, &r.rows, others, grand);
    };
    match by {
        None => {
            let mut t = Table::new(&[
                ("PERIOD", Align::Left),
                ("UP", Align::Right),
                ("DOWN", Align::Right),
                ("TOTAL", Align::Right),
            ]);
            for p in &r.periods {
                let (up, down) = up_down(p.totals.as_ref(), &p.rows, p.others.as_ref());
                t.row(vec![
                    zone.human_time(p.since_ms),
                    format_bytes(up),
                    format_bytes(down),
                    format_bytes(up.saturating_add(down)),
                ]);
            }
            t.write_to(out)?;
        }
        Some(by) => {
            for (i, p) in r.periods.iter().enumerate() {
                let (up, down) = up_down(p.totals.as_ref(), &p.rows, p.others.as_ref());
                let total = up.saturating_add(down);
                if i > 0 {
                    writeln!(out)?;
                }
                writeln!(
                    out,
                    "{} to {}: {} (up {}, down {})",
                    zone.human_time(p.since_ms),
                    zone.human_time(p.until_ms),
                    format_bytes(total),
                    format_bytes(up),
                    format_bytes(down)
                )?;
                write_rows(out, by, &p.rows, shown(p.others.as_ref()), total)?;
            }
        }
    }
    Ok(())
}

/// The table of report rows, shares of `grand`.
fn write_rows(
    out: &mut dyn Write,
    by: ReportBy,
    rows: &[v1::ReportRow],
    others: Option<&v1::ReportRow>,
    grand: u64,
) -> Result<()> {
    let key_header = match by {
        ReportBy::Process => "PROCESS",
        ReportBy::Host => "HOST",
        ReportBy::Protocol => "PROTOCOL",
        ReportBy::Interface => "INTERFACE",
        ReportBy::User => "USER",
        ReportBy::Category => "CATEGORY",
        ReportBy::Container => "CONTAINER",
    };
    let mut t = Table::new(&[
        (key_header, Align::Left),
        ("UP", Align::Right),
        ("DOWN", Align::Right),
        ("TOTAL", Align::Right),
        ("SHARE", Align::Right),
        ("PEAK UP", Align::Right),
        ("PEAK DOWN", Align::Right),
        ("PROCS", Align::Right),
    ]);
    let cells = |label: String, row: &v1::ReportRow| {
        let total = row.up_bytes.saturating_add(row.down_bytes);
        vec![
            label,
            format_bytes(row.up_bytes),
            format_bytes(row.down_bytes),
            format_bytes(total),
            format!("{:.1}%", share(total, grand) * 100.0),
            format_rate(row.peak_up_bps),
            format_rate(row.peak_down_bps),
            row.processes.to_string(),
        ]
    };
    for row in rows {
        let label = if row.label.is_empty() {
            row.key.clone()
        } else {
            row.label.clone()
        };
        t.row(cells(label, row));
    }
    if let Some(o) = others {
        t.row(cells("(others)".to_owned(), o));
    }
    t.write_to(out)?;
    Ok(())
}

pub fn export_request(
    since: Option<When>,
    until: Option<When>,
    now_ms: i64,
    zone: &Zone,
) -> Result<v1::ExportRequest> {
    let since_ms = since.map_or(0, |w| w.to_ms(now_ms, zone));
    let until_ms = until.map_or(0, |w| w.to_ms(now_ms, zone));
    if until_ms != 0 && since_ms >= until_ms {
        return Err(CtlError::Usage(format!(
            "--since ({}) must be before --until ({})",
            human_time(since_ms),
            human_time(until_ms)
        )));
    }
    Ok(v1::ExportRequest { since_ms, until_ms })
}

pub const CSV_HEADER: [&str; 17] = [
    "time",
    "pid",
    "start_time",
    "name",
    "exe",
    "cmdline",
    "uid",
    "user",
    "up_bytes",
    "down_bytes",
    "up_bps",
    "down_bps",
    "protocols",
    "interface",
    "remote_addr",
    "remote_name",
    // Last, so scripts reading the columns above by position keep working.
    "cmdline_truncated",
];

/// Writes export rows in one format, one at a time.
struct RowWriter<W: Write> {
    out: W,
    format: ExportFormat,
    rows: u64,
}

impl<W: Write> RowWriter<W> {
    fn begin(mut out: W, format: ExportFormat) -> Result<Self> {
        match format {
            ExportFormat::Csv => write_csv_record(&mut out, CSV_HEADER)?,
            ExportFormat::Json => out.write_all(b"[")?,
        }
        Ok(RowWriter {
            out,
            format,
            rows: 0,
        })
    }

    fn row(&mut self, r: &v1::ExportRow) -> Result<()> {
        let j = ExportRowJson::from(r);
        match self.format {
            ExportFormat::Csv => {
                let nums = [
                    j.pid.to_string(),
                    j.start_time.to_string(),
                    j.uid.to_string(),
                    j.up_bytes.to_string(),
                    j.down_bytes.to_string(),
                    j.up_bps.to_string(),
                    j.down_bps.to_string(),
                ];
                let protocols = j.protocols.join(";");
                let cut = if j.cmdline_truncated { "true" } else { "false" };
                write_csv_record(
                    &mut self.out,
                    [
                        j.time.as_deref().unwrap_or(""),
                        &nums[0],
                        &nums[1],
                        &j.name,
                        &j.exe,
                        &j.cmdline,
                        &nums[2],
                        &j.user,
                        &nums[3],
                        &nums[4],
                        &nums[5],
                        &nums[6],
                        &protocols,
                        &j.interface,
                        &j.remote_addr,
                        &j.remote_name,
                        cut,
                    ],
                )?;
            }
            ExportFormat::Json => {
                self.out
                    .write_all(if self.rows == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.out, &j)?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<W> {
        if self.format == ExportFormat::Json {
            self.out.write_all(b"\n]\n")?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

async fn stream_rows<W: Write>(
    client: &mut Client,
    req: v1::ExportRequest,
    format: ExportFormat,
    out: W,
) -> Result<W> {
    let mut stream = client.export(req).await?.into_inner();
    let mut w = RowWriter::begin(out, format)?;
    while let Some(row) = stream.message().await? {
        w.row(&row)?;
    }
    w.finish()
}

/// A file is written beside its target and renamed into place only when the
/// export completed, so a failed export never leaves a truncated file behind.
pub async fn export(
    mut client: Client,
    req: v1::ExportRequest,
    format: ExportFormat,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    let Some(path) = output else {
        stream_rows(&mut client, req, format, BufWriter::new(out)).await?;
        return Ok(());
    };
    let tmp = temp_path(path);
    let write_err = |source| CtlError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(&tmp).map_err(write_err)?;
    let result = async {
        let w = stream_rows(&mut client, req, format, BufWriter::new(file)).await?;
        let file = w.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| match e {
        CtlError::Io(source) => write_err(source),
        CtlError::Json(e) if e.is_io() => write_err(e.into()),
        other => other,
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.netmonctl-{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(
        day: Option<Date>,
        since: Option<std::time::Duration>,
        by: ReportBy,
        every: Option<Every>,
        process: Option<String>,
    ) -> ReportArgs {
        ReportArgs {
            day,
            since,
            by,
            limit: 5,
            every,
            process,
        }
    }

    fn sample_row() -> v1::ExportRow {
        v1::ExportRow {
            time_ms: 1_767_225_600_000,
            process: Some(v1::ProcessIdentity {
                pid: 7,
                name: "sh".into(),
                cmdline: "sh -c \"echo a,b\"".into(),
                ..Default::default()
            }),
            up_bytes: 10,
            protocols: vec!["tcp".into(), "dns".into()],
            ..Default::default()
        }
    }

    #[test]
    fn csv_export_has_a_header_and_quotes() {
        let mut w = RowWriter::begin(Vec::new(), ExportFormat::Csv).expect("begin");
        w.row(&sample_row()).expect("row");
        let text = String::from_utf8(w.finish().expect("finish")).expect("utf8");
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next(), Some(CSV_HEADER.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some(
                "2026-01-01T00:00:00.000Z,7,0,sh,,\"sh -c \"\"echo a,b\"\"\",0,,10,0,0,0,tcp;dns,,,,false"
            )
        );
    }

    #[test]
    fn json_export_is_one_valid_array() {
        for n in [0, 1, 3] {
            let mut w = RowWriter::begin(Vec::new(), ExportFormat::Json).expect("begin");
            for _ in 0..n {
                w.row(&sample_row()).expect("row");
            }
            let bytes = w.finish().expect("finish");
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
            let rows = v.as_array().expect("array");
            assert_eq!(rows.len(), n);
            if n > 0 {
                assert_eq!(rows[0]["pid"], 7);
                assert_eq!(rows[0]["up_bytes"], 10);
                assert_eq!(rows[0]["protocols"], serde_json::json!(["tcp", "dns"]));
            }
        }
    }

    #[test]
    fn report_defaults_to_today_in_the_zone() {
        let utc = Zone::utc();
        let now = 1_767_225_600_000 + 3_600_000;
        let req = report_request(args(None, None, ReportBy::Host, None, None), now, &utc);
        assert_eq!((req.since_ms, req.until_ms), (1_767_225_600_000, 0));
        assert_eq!(req.time_zone, "UTC");
        // 01:00 UTC is still yesterday in Los Angeles, since 08:00 UTC.
        let la = Zone::named("America/Los_Angeles").unwrap();
        let req = report_request(args(None, None, ReportBy::Host, None, None), now, &la);
        assert_eq!(req.since_ms, 1_767_225_600_000 - 16 * 3_600_000);
        assert_eq!(req.time_zone, "America/Los_Angeles");
        let day = crate::when::parse_day("2026-01-01").unwrap();
        let req = report_request(args(Some(day), None, ReportBy::Host, None, None), now, &la);
        assert_eq!(
            (req.since_ms, req.until_ms),
            (
                1_767_225_600_000 + 8 * 3_600_000,
                1_767_225_600_000 + 32 * 3_600_000
            )
        );
        assert_eq!(req.group_by, v1::GroupBy::Host as i32);
        assert_eq!(req.every, v1::ReportEvery::Unspecified as i32);
        let req = report_request(
            args(
                None,
                Some(std::time::Duration::from_secs(60)),
                ReportBy::Process,
                Some(Every::Month),
                Some("firefox".into()),
            ),
            now,
            &utc,
        );
        assert_eq!(req.process, "firefox");
        assert_eq!(req.since_ms, now - 60_000);
        assert_eq!(req.every, v1::ReportEvery::Month as i32);
    }

    #[test]
    fn export_range_must_be_ordered() {
        let err = export_request(Some(When::At(10)), Some(When::At(5)), 100, &Zone::utc())
            .expect_err("reversed");
        assert_eq!(err.exit_code(), 2);
    }
}
