//! The default view (header, total-rate chart, process table, alert panel)
//! and the process detail. Pure rendering of [`App`].

use std::collections::VecDeque;

use netmon_proto::text::terminal_safe;
use netmon_proto::v1;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Dataset, GraphType, Paragraph, Row, StatefulWidget, Table,
    TableState, Widget,
};

use super::rate;
use super::style::{palette, Palette};
use super::views::{connection_table, endpoint};
use crate::app::RateUnit;
use crate::app::{App, Detail, SortColumn, CHART_SAMPLES, PROCESS_SAMPLES};
use crate::units::{clock, format_bytes, format_duration, format_rate, format_rate_as};

/// Screens at least this wide show every column.
pub const WIDE: u16 = 110;
/// Screens at least this tall get a taller chart and alert panel.
pub const TALL: u16 = 40;

pub struct ProcessesView<'a> {
    pub app: &'a App,
}

impl Widget for &ProcessesView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let tall = area.height + 2 >= TALL;
        let (chart_h, alerts_h) = if tall { (12, 7) } else { (6, 4) };
        let [header, chart, table, alerts] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Length(chart_h),
            Constraint::Min(3),
            Constraint::Length(alerts_h),
        ])
        .areas(area);
        (&Header { app: self.app }).render(header, buf);
        let p = palette(self.app.color);
        (&RateChart {
            title: " total rate, last 5 min: ",
            samples: &self.app.chart,
            window: CHART_SAMPLES,
            units: self.app.units,
            p,
        })
            .render(chart, buf);
        (&ProcessTable { app: self.app }).render(table, buf);
        (&AlertPanel { app: self.app }).render(alerts, buf);
    }
}

struct Header<'a> {
    app: &'a App,
}

impl Widget for &Header<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let p = palette(app.color);
        let t = app.frame.totals.unwrap_or_default();
        let kv = |k: &str, v: String, s: Style| -> [Span<'static>; 2] {
            [Span::styled(format!("{k} "), p.label), Span::styled(v, s)]
        };
        let mut l1: Vec<Span> = vec![Span::styled(" Rate ", p.value)];
        l1.extend(kv("up", rate(app, t.up_bps), p.up.patch(p.value)));
        l1.push(Span::raw("  "));
        l1.extend(kv("down", rate(app, t.down_bps), p.down.patch(p.value)));
        l1.push(Span::styled("   Total ", p.value));
        l1.extend(kv("up", format_bytes(t.up_bytes), p.value));
        l1.push(Span::raw("  "));
        l1.extend(kv("down", format_bytes(t.down_bytes), p.value));
        let (state, style) = if app.frame.monitoring {
            ("ON", p.on)
        } else {
            ("STOPPED (s starts)", p.off)
        };
        let mut l2: Vec<Span> = vec![
            Span::styled(" Monitoring ", p.label),
            Span::styled(state, style),
        ];
        if let Some(secs) = app.session_secs() {
            l2.push(Span::raw("   "));
            l2.extend(kv("Session", format_duration(secs), p.value));
        }
        l2.push(Span::raw("   "));
        l2.extend(kv("Active", app.active_processes().to_string(), p.value));
        l2.push(Span::raw("   "));
        let drops = app.frame.packets_dropped + app.frame.handoff_dropped;
        l2.extend(kv(
            "Drops",
            drops.to_string(),
            if drops > 0 { p.error } else { p.value },
        ));
        // Only worth the room when lookups are under pressure (a SYN flood).
        let f = &app.frame;
        if f.lookup_mode == "dump" || f.lookup_dropped > 0 {
            l2.push(Span::raw("   "));
            l2.extend(kv(
                "Lookups",
                format!(
                    "{} ({} queued, {} dropped)",
                    f.lookup_mode, f.lookup_queue, f.lookup_dropped
                ),
                p.error,
            ));
        }
        Paragraph::new(vec![Line::from(l1), Line::from(l2)]).render(area, buf);
    }
}

/// Up and down rate over the last `window` samples (one per second).
pub struct RateChart<'a> {
    pub title: &'a str,
    pub samples: &'a VecDeque<(u64, u64)>,
    pub window: usize,
    pub units: RateUnit,
    pub p: &'a Palette,
}

impl Widget for &RateChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        #[allow(clippy::cast_precision_loss, reason = "chart coordinates")]
        let point = |i: usize, v: u64| -> (f64, f64) {
            let age = self.samples.len() - 1 - i;
            (-(age as f64), v as f64)
        };
        let up: Vec<(f64, f64)> = self
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| point(i, s.0))
            .collect();
        let down: Vec<(f64, f64)> = self
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| point(i, s.1))
            .collect();
        let max = self
            .samples
            .iter()
            .map(|s| s.0.max(s.1))
            .max()
            .unwrap_or(0)
            .max(1024);
        #[allow(clippy::cast_precision_loss, reason = "chart coordinates")]
        let (xmin, ymax) = (-((self.window - 1) as f64), max as f64 * 1.1);
        let mono = std::ptr::eq(self.p, &super::style::MONO);
        let datasets = vec![
            Dataset::default()
                .name("up")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(self.p.up)
                .data(&up),
            Dataset::default()
                .name("down")
                .marker(if mono { Marker::Dot } else { Marker::Braille })
                .graph_type(GraphType::Line)
                .style(self.p.down)
                .data(&down),
        ];
        let minutes = self.window / 60;
        Chart::new(datasets)
            .block(Block::new().borders(Borders::TOP).title(Line::from(vec![
                Span::raw(self.title),
                Span::styled("up", self.p.up),
                Span::raw(" / "),
                Span::styled(if mono { "down (dots)" } else { "down" }, self.p.down),
                Span::raw(" "),
            ])))
            .x_axis(
                Axis::default()
                    .bounds([xmin, 0.0])
                    .labels([format!("-{minutes}m"), "now".to_owned()]),
            )
            .y_axis(
                Axis::default()
                    .bounds([0.0, ymax])
                    .labels(["0".to_owned(), format_rate_as(max, self.units)]),
            )
            .legend_position(None)
            .render(area, buf);
    }
}

struct ProcessTable<'a> {
    app: &'a App,
}

impl Widget for &ProcessTable<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let p = palette(app.color);
        let wide = area.width >= WIDE;
        let cols: Vec<(SortColumn, &str, Constraint)> = SortColumn::ALL
            .iter()
            .filter(|c| wide || !matches!(c, SortColumn::User | SortColumn::Protocols))
            .map(|c| column(*c, wide))
            .collect();
        let header = Row::new(cols.iter().map(|(c, title, _)| {
            let sorted = *c == app.sort
                || (app.sort == SortColumn::Total
                    && matches!(c, SortColumn::Up | SortColumn::Down));
            let mark = match (sorted, app.descending) {
                (false, _) => "",
                (true, true) => "▼",
                (true, false) => "▲",
            };
            Cell::from(format!("{title}{mark}"))
        }))
        .style(p.table_header);
        let visible = app.visible();
        // Only the rows that fit are built: the window is a pure function of
        // the selection, so a 500-process frame costs what a screenful does.
        let fit = usize::from(area.height.saturating_sub(1)).max(1);
        let selected = app.selected_index();
        let offset = selected.map_or(0, |i| (i + 1).saturating_sub(fit));
        let rows = visible.iter().skip(offset).take(fit).map(|row| {
            let style = if row.over_threshold {
                p.over
            } else if !row.alive {
                p.exited
            } else {
                Style::new()
            };
            Row::new(
                cols.iter()
                    .map(|(c, _, _)| process_cell(row, *c, wide, app.units)),
            )
            .style(style)
        });
        let widths: Vec<Constraint> = cols.iter().map(|(_, _, w)| *w).collect();
        let empty = visible.is_empty();
        let table = Table::new(rows, widths)
            .header(header)
            .column_spacing(1)
            .row_highlight_style(p.selected);
        let mut state = TableState::default().with_selected(selected.map(|i| i - offset));
        StatefulWidget::render(table, area, buf, &mut state);
        if empty && area.height > 2 {
            let msg = if app.filter.is_empty() {
                " no traffic seen yet".to_owned()
            } else {
                format!(" no process matches '{}'", app.filter)
            };
            let line = Rect {
                y: area.y + 1,
                height: 1,
                ..area
            };
            Paragraph::new(Span::styled(msg, p.label)).render(line, buf);
        }
    }
}

fn column(c: SortColumn, wide: bool) -> (SortColumn, &'static str, Constraint) {
    let (title, w) = match c {
        SortColumn::Pid => ("PID", Constraint::Length(7)),
        SortColumn::Name if wide => ("PROCESS", Constraint::Length(28)),
        SortColumn::Name => ("PROCESS", Constraint::Min(14)),
        SortColumn::User => ("USER", Constraint::Length(10)),
        SortColumn::Up => ("UP", Constraint::Length(12)),
        SortColumn::Down => ("DOWN", Constraint::Length(12)),
        SortColumn::TotalUp => ("TOT UP", Constraint::Length(10)),
        SortColumn::TotalDown => ("TOT DOWN", Constraint::Length(10)),
        SortColumn::Protocols => ("PROTOCOLS", Constraint::Min(14)),
        SortColumn::Connections => ("CONN", Constraint::Length(5)),
        // Never a column: the `o` key's up+down order marks UP and DOWN.
        SortColumn::Total => ("TOTAL", Constraint::Length(12)),
    };
    (c, title, w)
}

/// On wide screens a process in a container shows it after its name.
fn process_cell(row: &v1::ProcessRow, c: SortColumn, wide: bool, units: RateUnit) -> Cell<'static> {
    let t = row.traffic.unwrap_or_default();
    let (pid, name, user, uid) = row.process.as_ref().map_or((0, "", "", 0), |p| {
        (p.pid, p.name.as_str(), p.user.as_str(), p.uid)
    });
    let container = row.process.as_ref().map_or("", |p| p.container.as_str());
    let text = match c {
        SortColumn::Pid if row.folded_processes > 0 => format!("{:>7}", "-"),
        SortColumn::Pid => format!("{pid:>7}"),
        SortColumn::Name => {
            let mark = if row.over_threshold { "! " } else { "" };
            let exited = match (row.alive, row.folded_processes) {
                (true, _) => String::new(),
                (false, 0) => " (exited)".to_owned(),
                (false, n) => format!(" ({n} exited)"),
            };
            let inside = if wide && !container.is_empty() {
                format!(" [{}]", terminal_safe(container))
            } else {
                String::new()
            };
            format!("{mark}{}{inside}{exited}", terminal_safe(name))
        }
        SortColumn::User if user.is_empty() => uid.to_string(),
        SortColumn::User => terminal_safe(user).into_owned(),
        SortColumn::Up => format!("{:>12}", format_rate_as(t.up_bps, units)),
        SortColumn::Down => format!("{:>12}", format_rate_as(t.down_bps, units)),
        SortColumn::Total => format!(
            "{:>12}",
            format_rate_as(t.up_bps.saturating_add(t.down_bps), units)
        ),
        SortColumn::TotalUp => format!("{:>10}", format_bytes(t.up_bytes)),
        SortColumn::TotalDown => format!("{:>10}", format_bytes(t.down_bytes)),
        SortColumn::Protocols => row.protocols.join(","),
        SortColumn::Connections => format!("{:>5}", row.connections),
    };
    Cell::from(text)
}

struct AlertPanel<'a> {
    app: &'a App,
}

impl Widget for &AlertPanel<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let p = palette(self.app.color);
        let lines: Vec<Line> = if self.app.alerts.is_empty() {
            vec![Line::from(Span::styled(" no alerts", p.label))]
        } else {
            self.app.alerts.iter().map(|a| alert_line(a, p)).collect()
        };
        Paragraph::new(lines)
            .block(Block::new().borders(Borders::TOP).title(" alerts "))
            .render(area, buf);
    }
}

pub fn alert_line(a: &v1::Alert, p: &Palette) -> Line<'static> {
    let open = a.state == v1::AlertState::Open as i32;
    let (mark, style) = if open {
        ("● open  ", p.alert_open)
    } else {
        ("○ closed", p.alert_closed)
    };
    let who = a
        .process
        .as_ref()
        .map(|id| match (id.pid, a.pids.as_slice()) {
            // A program alert: its processes, not one pid.
            (0, []) => terminal_safe(&id.name).into_owned(),
            (0, pids) => format!(
                "{} (pids {})",
                terminal_safe(&id.name),
                pids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (pid, _) => format!("{} ({pid})", terminal_safe(&id.name)),
        })
        .unwrap_or_else(|| "host".to_owned());
    let text = if a.message.is_empty() {
        format!(
            "{who}: {} over {}",
            format_rate(a.value),
            format_rate(a.threshold)
        )
    } else {
        terminal_safe(&a.message).into_owned()
    };
    Line::from(vec![
        Span::styled(format!(" {mark} "), style),
        Span::raw(format!("{} ", clock(a.started_ms))),
        Span::raw(text),
        Span::styled(format!("  peak {}", format_rate(a.peak)), p.label),
    ])
}

pub struct DetailView<'a> {
    pub app: &'a App,
    pub detail: &'a Detail,
}

impl Widget for &DetailView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let p = palette(app.color);
        let pid = self.detail.pid;
        let row = app.process(pid);
        let tall = area.height + 2 >= TALL;
        let [info, chart, conns, hosts] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Length(if tall { 12 } else { 6 }),
            Constraint::Fill(3),
            Constraint::Fill(2),
        ])
        .areas(area);
        // The program's hosts from history: beside the live hosts when wide,
        // else under the connections.
        let (conns, hosts, past) = if area.width >= WIDE {
            let [live, past] =
                Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(hosts);
            (conns, live, past)
        } else {
            let [c, past] =
                Layout::vertical([Constraint::Fill(1), Constraint::Length(5)]).areas(conns);
            (c, hosts, past)
        };
        let (l1, l2) = match row {
            Some(r) => {
                let id = r.process.clone().unwrap_or_default();
                let t = r.traffic.unwrap_or_default();
                let style = if r.over_threshold { p.over } else { p.value };
                let cmd = if id.cmdline.is_empty() {
                    terminal_safe(&id.exe).into_owned()
                } else if id.cmdline_truncated {
                    format!("{}…", terminal_safe(&id.cmdline))
                } else {
                    terminal_safe(&id.cmdline).into_owned()
                };
                (
                    Line::from(vec![
                        Span::styled(format!(" {} ", terminal_safe(&id.name)), style),
                        Span::styled(
                            format!("pid {} user {} ", id.pid, terminal_safe(&id.user)),
                            p.label,
                        ),
                        Span::styled(
                            if id.container.is_empty() {
                                String::new()
                            } else {
                                format!("in {} ", terminal_safe(&id.container))
                            },
                            p.label,
                        ),
                        Span::raw(cmd),
                    ]),
                    Line::from(vec![
                        Span::styled(" up ", p.label),
                        Span::styled(rate(app, t.up_bps), p.up),
                        Span::styled("  down ", p.label),
                        Span::styled(rate(app, t.down_bps), p.down),
                        Span::styled("  total up ", p.label),
                        Span::raw(format_bytes(t.up_bytes)),
                        Span::styled(" down ", p.label),
                        Span::raw(format_bytes(t.down_bytes)),
                        Span::styled(if r.alive { "" } else { "  (exited)" }, p.exited),
                        Span::styled("  Esc back", p.label),
                    ]),
                )
            }
            None => (
                Line::from(format!(" pid {pid}: no longer in the live table")),
                Line::from(Span::styled(" Esc back", p.label)),
            ),
        };
        Paragraph::new(vec![l1, l2]).render(info, buf);
        let empty = VecDeque::new();
        (&RateChart {
            title: " process rate, last 2 min: ",
            samples: app.process_chart.get(&pid).unwrap_or(&empty),
            window: PROCESS_SAMPLES,
            units: app.units,
            p,
        })
            .render(chart, buf);
        match &self.detail.connections {
            None => Paragraph::new(" loading connections…").render(conns, buf),
            Some(Err(e)) => Paragraph::new(Span::styled(
                format!(" connections unavailable: {e}"),
                p.error,
            ))
            .render(conns, buf),
            Some(Ok(list)) => {
                connection_table(list, false, app.cursor, conns.width >= WIDE, app.units, p)
                    .render_in(conns, buf)
            }
        }
        let hosts_list = app.detail_hosts();
        let rows = hosts_list.iter().map(|h| {
            let name = endpoint(&h.address, &h.name, 0);
            Row::new(vec![
                Cell::from(name),
                Cell::from(format!("{:>5}", h.connections)),
                Cell::from(format!("{:>12}", rate(app, h.up_bps))),
                Cell::from(format!("{:>12}", rate(app, h.down_bps))),
                Cell::from(format!("{:>10}", format_bytes(h.bytes))),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Min(20),
                Constraint::Length(5),
                Constraint::Length(12),
                Constraint::Length(12),
                Constraint::Length(10),
            ],
        )
        .header(Row::new(["REMOTE HOST", "CONN", "UP", "DOWN", "TOTAL"]).style(p.table_header))
        .block(Block::new().borders(Borders::TOP).title(" remote hosts "));
        Widget::render(table, hosts, buf);
        Widget::render(history_hosts(self.detail, p), past, buf);
    }
}

/// The program's hosts today, from history: address (or name) and bytes.
fn history_hosts<'a>(d: &'a Detail, p: &Palette) -> Table<'a> {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(" hosts (history, today UTC) ");
    let rows: Vec<Row> = match &d.hosts_history {
        None => vec![Row::new([Cell::from(" loading…")])],
        Some(Err(e)) => vec![Row::new([Cell::from(Span::styled(
            format!(" unavailable: {e}"),
            p.error,
        ))])],
        Some(Ok(r)) if r.rows.is_empty() => vec![Row::new([Cell::from(" none recorded")])],
        Some(Ok(r)) => r
            .rows
            .iter()
            .chain(r.others.iter().filter(|o| o.up_bytes + o.down_bytes > 0))
            .map(|h| {
                Row::new(vec![
                    Cell::from(format!(" {}", terminal_safe(&h.label))),
                    Cell::from(format!(
                        "{:>10}",
                        format_bytes(h.up_bytes.saturating_add(h.down_bytes))
                    )),
                ])
            })
            .collect(),
    };
    Table::new(rows, [Constraint::Min(12), Constraint::Length(10)])
        .header(Row::new([" HOST", "TOTAL"]).style(p.table_header))
        .block(block)
}
