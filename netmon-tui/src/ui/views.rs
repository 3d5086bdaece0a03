//! The other tabs: Connections, Hosts, Interfaces and History. Pure
//! rendering of [`App`]; data missing or refused is said in the view.

use netmon_proto::text::terminal_safe;
use netmon_proto::v1;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Borders, Cell, Paragraph, Row, StatefulWidget, Table,
    TableState, Widget,
};

use super::processes::{alert_line, RateChart, WIDE};
use super::rate;
use super::style::{palette, Palette};
use crate::app::RateUnit;
use crate::app::{App, HistorySpan};
use crate::series::SERIES_SAMPLES;
use crate::units::{format_bytes, format_rate_as};

/// `name:port` when the name is known, else `addr:port` (`[v6]:port`).
pub fn endpoint(addr: &str, name: &str, port: u32) -> String {
    let host = if !name.is_empty() {
        terminal_safe(name).into_owned()
    } else if addr.contains(':') && port != 0 {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    };
    if port == 0 {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// A table of connections with a selected row, as used by the Connections
/// view (with the owning process) and the process detail (without).
pub struct ConnectionTable<'a> {
    list: &'a [v1::Connection],
    with_process: bool,
    selected: usize,
    wide: bool,
    units: RateUnit,
    p: &'a Palette,
}

pub fn connection_table<'a>(
    list: &'a [v1::Connection],
    with_process: bool,
    selected: usize,
    wide: bool,
    units: RateUnit,
    p: &'a Palette,
) -> ConnectionTable<'a> {
    ConnectionTable {
        list,
        with_process,
        selected,
        wide,
        units,
        p,
    }
}

impl ConnectionTable<'_> {
    pub fn render_in(&self, area: Rect, buf: &mut Buffer) {
        let mut header = vec!["PROTO"];
        let mut widths = vec![Constraint::Length(5)];
        if self.wide {
            header.extend(["APP", "LOCAL"]);
            widths.extend([Constraint::Length(6), Constraint::Length(22)]);
        }
        header.push("REMOTE");
        widths.push(Constraint::Min(16));
        if self.wide {
            header.push("STATE");
            widths.push(Constraint::Length(11));
        }
        if self.with_process {
            header.push("PROCESS");
            widths.push(Constraint::Length(16));
        }
        header.extend(["UP", "DOWN"]);
        widths.extend([Constraint::Length(12), Constraint::Length(12)]);
        let rows = self.list.iter().map(|c| {
            let t = c.traffic.unwrap_or_default();
            let mut cells = vec![c.protocol.clone()];
            if self.wide {
                cells.push(c.app_protocol.clone());
                cells.push(endpoint(&c.local_addr, "", c.local_port));
            }
            cells.push(endpoint(&c.remote_addr, &c.remote_name, c.remote_port));
            if self.wide {
                cells.push(c.state.clone());
            }
            if self.with_process {
                cells.push(match &c.process {
                    Some(id) if id.pid != 0 => {
                        format!("{} ({})", terminal_safe(&id.name), id.pid)
                    }
                    _ => format!("({})", c.unattributed_reason),
                });
            }
            cells.push(format!("{:>12}", format_rate_as(t.up_bps, self.units)));
            cells.push(format!("{:>12}", format_rate_as(t.down_bps, self.units)));
            Row::new(cells.into_iter().map(Cell::from))
        });
        let table = Table::new(rows, widths)
            .header(Row::new(header).style(self.p.table_header))
            .column_spacing(1)
            .row_highlight_style(self.p.selected);
        let sel = (!self.list.is_empty()).then_some(self.selected);
        let mut state = TableState::default().with_selected(sel);
        StatefulWidget::render(table, area, buf, &mut state);
        if self.list.is_empty() && area.height > 1 {
            let line = Rect {
                y: area.y + 1,
                height: 1,
                ..area
            };
            Paragraph::new(Span::styled(" no live connections", self.p.label)).render(line, buf);
        }
    }
}

pub struct ConnectionsView<'a> {
    pub app: &'a App,
}

impl Widget for &ConnectionsView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let p = palette(self.app.color);
        match &self.app.connections {
            None => Paragraph::new(" loading connections…").render(area, buf),
            Some(Err(e)) => {
                Paragraph::new(Span::styled(
                    format!(" connections unavailable: {e}"),
                    p.error,
                ))
                .render(area, buf);
            }
            Some(Ok(list)) => {
                connection_table(
                    list,
                    true,
                    self.app.cursor,
                    area.width >= WIDE,
                    self.app.units,
                    p,
                )
                .render_in(area, buf);
            }
        }
    }
}

pub struct HostsView<'a> {
    pub app: &'a App,
}

impl Widget for &HostsView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let p = palette(app.color);
        let wide = area.width >= WIDE;
        let mut header = vec!["HOST", "CATEGORY", "UP", "DOWN", "TOTAL", "CONN"];
        let mut widths = vec![
            Constraint::Min(20),
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(5),
        ];
        if wide {
            header.push("PROCESSES");
            widths.push(Constraint::Length(30));
        }
        let rows = app.frame.hosts.iter().map(|h| {
            let t = h.traffic.unwrap_or_default();
            let host = if h.name.is_empty() {
                h.address.clone()
            } else {
                format!("{} ({})", terminal_safe(&h.name), h.address)
            };
            let mut cells = vec![
                host,
                h.category.clone(),
                format!("{:>12}", rate(app, t.up_bps)),
                format!("{:>12}", rate(app, t.down_bps)),
                format!("{:>10}", format_bytes(t.up_bytes + t.down_bytes)),
                format!("{:>5}", h.connections),
            ];
            if wide {
                cells.push(h.processes.join(","));
            }
            Row::new(cells.into_iter().map(Cell::from))
        });
        let table = Table::new(rows, widths)
            .header(Row::new(header).style(p.table_header))
            .column_spacing(1)
            .row_highlight_style(p.selected);
        let sel = (!app.frame.hosts.is_empty()).then_some(app.cursor);
        StatefulWidget::render(
            table,
            area,
            buf,
            &mut TableState::default().with_selected(sel),
        );
        if app.frame.hosts.is_empty() {
            empty_line(area, buf, " no remote hosts yet", p);
        }
    }
}

pub struct InterfacesView<'a> {
    pub app: &'a App,
}

impl Widget for &InterfacesView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let p = palette(app.color);
        let wide = area.width >= WIDE;
        let mut header = vec!["NAME", "LINK", "CAPT", "RX/s", "TX/s", "RX", "TX", "DROPS"];
        let mut widths = vec![
            Constraint::Min(8),
            Constraint::Length(4),
            Constraint::Length(4),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(6),
        ];
        if wide {
            header.push("ADDRESSES");
            widths.push(Constraint::Length(40));
        }
        let rows = app.frame.interfaces.iter().map(|i| {
            let drops =
                i.rx_dropped + i.tx_dropped + i.capture.as_ref().map_or(0, |c| c.packets_dropped);
            let mut cells = vec![
                terminal_safe(&i.name).into_owned(),
                if i.up { "up" } else { "down" }.to_owned(),
                if i.captured { "yes" } else { "no" }.to_owned(),
                format!("{:>12}", rate(app, i.rx_bps)),
                format!("{:>12}", rate(app, i.tx_bps)),
                format!("{:>10}", format_bytes(i.rx_bytes)),
                format!("{:>10}", format_bytes(i.tx_bytes)),
                format!("{drops:>6}"),
            ];
            if wide {
                cells.push(i.addresses.join(" "));
            }
            Row::new(cells.into_iter().map(Cell::from))
        });
        let table = Table::new(rows, widths)
            .header(Row::new(header).style(p.table_header))
            .column_spacing(1)
            .row_highlight_style(p.selected);
        let sel = (!app.frame.interfaces.is_empty()).then_some(app.cursor);
        // The table above, the selected interface's rates over time below.
        let rows_h = u16::try_from(app.frame.interfaces.len() + 1).unwrap_or(u16::MAX);
        let [table_area, chart] = Layout::vertical([
            Constraint::Length(rows_h.min(area.height / 2)),
            Constraint::Min(0),
        ])
        .areas(area);
        StatefulWidget::render(
            table,
            table_area,
            buf,
            &mut TableState::default().with_selected(sel),
        );
        if app.frame.interfaces.is_empty() {
            empty_line(area, buf, " no interfaces reported", p);
            return;
        }
        let Some(iface) = app.frame.interfaces.get(app.cursor) else {
            return;
        };
        let samples = app.interface_samples(&iface.name);
        let title = format!(
            " {}, last 5 min (↑↓ picks the interface): ",
            terminal_safe(&iface.name)
        );
        (&RateChart {
            title: &title,
            samples: &samples,
            window: SERIES_SAMPLES,
            units: app.units,
            p,
        })
            .render(chart, buf);
    }
}

pub struct HistoryView<'a> {
    pub app: &'a App,
}

impl Widget for &HistoryView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let p = palette(app.color);
        let h = &app.history;
        let zone = crate::units::zone();
        let q = &h.query;
        let (date, _, _) = zone.day_at(app.now_ms, q.day_offset);
        let which = match q.day_offset {
            0 => ", today",
            -1 => ", yesterday",
            _ => "",
        };
        let [chart, tables, alerts] = Layout::vertical([
            Constraint::Length(7),
            Constraint::Min(4),
            Constraint::Percentage(25),
        ])
        .areas(area);

        let span = match q.span {
            HistorySpan::Day => format!("{date}{which}"),
            s => {
                let (first, _, _) = zone.day_at(app.now_ms, q.day_offset - s.days() + 1);
                format!("{first} to {date}{which}")
            }
        };
        let whose = q
            .program
            .as_deref()
            .map(|p| format!(", {} (Esc: all)", terminal_safe(p)))
            .unwrap_or_default();
        let block = Block::new().borders(Borders::TOP).title(format!(
            " {span} ({}) {}{whose} · ←/→ day · d span ",
            crate::units::zone_label(app.now_ms),
            q.span.title()
        ));
        let inner = block.inner(chart);
        block.render(chart, buf);
        match &h.hourly {
            None => Paragraph::new(" loading…").render(inner, buf),
            Some(Err(e)) => unavailable(inner, buf, e, p),
            Some(Ok(r)) => PeriodChart {
                reply: r,
                daily: q.span != HistorySpan::Day,
                p,
            }
            .render(inner, buf),
        }

        // Processes, and beside them on a wide screen the hosts.
        let (procs, hosts) = if tables.width >= WIDE {
            let [a, b] =
                Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
                    .spacing(2)
                    .areas(tables);
            (a, Some(b))
        } else {
            (tables, None)
        };
        let block = Block::new().borders(Borders::TOP).title(" by process ");
        let inner = block.inner(procs);
        block.render(procs, buf);
        match &h.report {
            None => Paragraph::new(" loading…").render(inner, buf),
            Some(Err(e)) => unavailable(inner, buf, e, p),
            Some(Ok(r)) => {
                let mut rows: Vec<Row> = r
                    .rows
                    .iter()
                    .map(|row| {
                        Row::new(vec![
                            Cell::from(row_label(row)),
                            Cell::from(format!("{:>10}", format_bytes(row.up_bytes))),
                            Cell::from(format!("{:>10}", format_bytes(row.down_bytes))),
                            Cell::from(format!("{:>12}", rate(app, row.peak_up_bps))),
                            Cell::from(format!("{:>12}", rate(app, row.peak_down_bps))),
                        ])
                    })
                    .collect();
                if let Some(t) = &r.totals {
                    rows.push(
                        Row::new(vec![
                            Cell::from("TOTAL"),
                            Cell::from(format!("{:>10}", format_bytes(t.up_bytes))),
                            Cell::from(format!("{:>10}", format_bytes(t.down_bytes))),
                        ])
                        .style(p.value),
                    );
                }
                let n = r.rows.len();
                let table = Table::new(
                    rows,
                    [
                        Constraint::Min(16),
                        Constraint::Length(10),
                        Constraint::Length(10),
                        Constraint::Length(12),
                        Constraint::Length(12),
                    ],
                )
                .header(
                    Row::new(["PROCESS", "UP", "DOWN", "PEAK UP", "PEAK DOWN"])
                        .style(p.table_header),
                )
                .column_spacing(1)
                .row_highlight_style(p.selected);
                let sel = (n > 0).then_some(app.cursor);
                StatefulWidget::render(
                    table,
                    inner,
                    buf,
                    &mut TableState::default().with_selected(sel),
                );
            }
        }
        if let Some(area) = hosts {
            let block = Block::new().borders(Borders::TOP).title(" by remote host ");
            let inner = block.inner(area);
            block.render(area, buf);
            match &h.hosts {
                None => Paragraph::new(" loading…").render(inner, buf),
                Some(Err(e)) => unavailable(inner, buf, e, p),
                Some(Ok(r)) => {
                    let rows: Vec<Row> = r
                        .rows
                        .iter()
                        .map(|row| {
                            Row::new(vec![
                                Cell::from(row_label(row)),
                                Cell::from(format!("{:>10}", format_bytes(row.up_bytes))),
                                Cell::from(format!("{:>10}", format_bytes(row.down_bytes))),
                            ])
                        })
                        .collect();
                    let table = Table::new(
                        rows,
                        [
                            Constraint::Min(16),
                            Constraint::Length(10),
                            Constraint::Length(10),
                        ],
                    )
                    .header(Row::new(["HOST", "UP", "DOWN"]).style(p.table_header))
                    .column_spacing(1);
                    Widget::render(table, inner, buf);
                }
            }
        }

        let block = Block::new().borders(Borders::TOP).title(" alerts (store) ");
        let inner = block.inner(alerts);
        block.render(alerts, buf);
        match &h.alerts {
            None => Paragraph::new(" loading…").render(inner, buf),
            Some(Err(e)) => unavailable(inner, buf, e, p),
            Some(Ok(list)) if list.is_empty() => {
                Paragraph::new(Span::styled(" no alerts recorded", p.label)).render(inner, buf);
            }
            Some(Ok(list)) => {
                let lines: Vec<Line> = list.iter().map(|a| alert_line(a, p)).collect();
                Paragraph::new(lines).render(inner, buf);
            }
        }
    }
}

/// Bytes (up + down) by period: one bar an hour of local time, labelled
/// with the hour the clock showed (a DST change repeats or skips one), or
/// one bar a day labelled with its day of the month; scaled to the busiest.
struct PeriodChart<'a> {
    reply: &'a v1::ReportReply,
    daily: bool,
    p: &'a Palette,
}

impl Widget for PeriodChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let periods = &self.reply.periods;
        let total = |t: Option<&v1::Traffic>| t.map_or(0, |t| t.up_bytes + t.down_bytes);
        let peak = periods
            .iter()
            .map(|x| total(x.totals.as_ref()))
            .max()
            .unwrap_or(0);
        if area.height < 3 || periods.is_empty() {
            Paragraph::new(Span::styled(" no traffic recorded", self.p.label)).render(area, buf);
            return;
        }
        let sum: u64 = periods.iter().map(|x| total(x.totals.as_ref())).sum();
        Paragraph::new(Span::styled(
            format!(
                " {} in all, busiest {} {}",
                format_bytes(sum),
                if self.daily { "day" } else { "hour" },
                format_bytes(peak)
            ),
            self.p.label,
        ))
        .render(Rect { height: 1, ..area }, buf);
        let bars: Vec<Bar> = periods
            .iter()
            .map(|x| {
                let local_ms = x.since_ms + i64::from(x.utc_offset_s) * 1000;
                let label = if self.daily {
                    i64::from(crate::units::zone().date(x.since_ms).day())
                } else {
                    local_ms.rem_euclid(86_400_000) / 3_600_000
                };
                Bar::default()
                    .value(total(x.totals.as_ref()))
                    .label(Line::from(format!("{label:02}")))
                    .text_value(String::new())
            })
            .collect();
        // Two-digit labels want bars of two columns and a gap where it fits.
        let n = u16::try_from(periods.len()).unwrap_or(u16::MAX).max(1);
        let (bar_width, gap) = match area.width.saturating_sub(1) / n {
            0 | 1 => (1, 0),
            2 => (2, 0),
            per => (per.min(5) - 1, 1),
        };
        BarChart::default()
            .data(BarGroup::default().bars(&bars))
            .bar_width(bar_width)
            .bar_gap(gap)
            .bar_style(self.p.value)
            .render(
                Rect {
                    y: area.y + 1,
                    height: area.height - 1,
                    ..area
                },
                buf,
            );
    }
}

/// A report row's label (its key when it has none), safe for the terminal.
fn row_label(row: &v1::ReportRow) -> String {
    let label = if row.label.is_empty() {
        &row.key
    } else {
        &row.label
    };
    terminal_safe(label).into_owned()
}

fn unavailable(area: Rect, buf: &mut Buffer, msg: &str, p: &Palette) {
    Paragraph::new(Span::styled(
        format!(" history unavailable: {msg}"),
        p.error,
    ))
    .wrap(ratatui::widgets::Wrap { trim: true })
    .render(area, buf);
}

fn empty_line(area: Rect, buf: &mut Buffer, msg: &str, p: &Palette) {
    if area.height > 1 {
        let line = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        Paragraph::new(Span::styled(msg.to_owned(), p.label)).render(line, buf);
    }
}
