//! The Packets tab: protocol shares, packets/s per protocol over the last
//! minutes, the packet-size histogram and the top talkers by direction. Pure
//! rendering of [`App`] (its series are kept by `app` from frames).

use netmon_proto::text::terminal_safe;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, Widget};

use super::rate;
use super::style::{palette, Palette};
use crate::app::App;
use crate::series::{protocol_rates, top_talkers, Talker};
use crate::units::format_bytes;

/// Talkers listed per direction.
const TALKERS: usize = 10;

pub struct PacketsView<'a> {
    pub app: &'a App,
}

impl Widget for &PacketsView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let p = palette(app.color);
        let Some(ps) = &app.frame.packet_stats else {
            Paragraph::new(Line::styled(
                " no packet statistics from netmond (it runs without capture)",
                p.label,
            ))
            .render(area, buf);
            return;
        };
        let mut protos = protocol_rates(&app.frame);
        protos.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let sizes = ps.size_counts.len().min(ps.size_bounds.len());
        let top_h = u16::try_from(protos.len().max(sizes) + 1).unwrap_or(u16::MAX);
        let series_h = u16::try_from(app.protocol_series.by_name.len().max(1) + 1).unwrap_or(1);
        let [top, series, talkers] = Layout::vertical([
            Constraint::Length(top_h.min(10)),
            Constraint::Length(series_h.min(8)),
            Constraint::Min(3),
        ])
        .areas(area);

        // Protocol shares and sizes side by side.
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
        let total: u64 = protos.iter().map(|(_, v)| v).sum();
        let block = Block::new()
            .borders(Borders::TOP)
            .title(format!(" protocols, {} packets/s ", ps.packets_per_sec));
        let inner = block.inner(left);
        block.render(left, buf);
        let bars: Vec<(String, u64, String)> = protos
            .iter()
            .map(|(name, v)| {
                (
                    terminal_safe(name).into_owned(),
                    *v,
                    format!("{v:>7}/s {:>5.1}%", percent(*v, total)),
                )
            })
            .collect();
        (&Bars {
            rows: &bars,
            style: p.up,
            p,
        })
            .render(inner, buf);

        let block = Block::new()
            .borders(Borders::TOP)
            .title(" packet sizes (layer 3), last tick ");
        let inner = block.inner(right);
        block.render(right, buf);
        let counts = &ps.size_counts[..sizes];
        let all: u64 = counts.iter().sum();
        let bars: Vec<(String, u64, String)> = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let label = match (ps.size_bounds[i], i.checked_sub(1)) {
                    (u32::MAX, Some(prev)) => format!(">{}", ps.size_bounds[prev]),
                    (b, _) => format!("≤{b}"),
                };
                (label, n, format!("{n:>7} {:>5.1}%", percent(n, all)))
            })
            .collect();
        (&Bars {
            rows: &bars,
            style: p.down,
            p,
        })
            .render(inner, buf);

        // Packets/s per protocol over time: one sparkline row each.
        let minutes = app.protocol_series.len().div_ceil(60);
        let block = Block::new().borders(Borders::TOP).title(format!(
            " packets/s per protocol, last {minutes} min (peak) "
        ));
        let inner = block.inner(series);
        block.render(series, buf);
        let mut names: Vec<(&String, u64)> = app
            .protocol_series
            .by_name
            .iter()
            .map(|(n, r)| (n, r.iter().copied().max().unwrap_or(0)))
            .collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        for (row, (name, peak)) in names.iter().enumerate() {
            let Ok(dy) = u16::try_from(row) else { break };
            if dy >= inner.height {
                break;
            }
            let line = Rect {
                y: inner.y + dy,
                height: 1,
                ..inner
            };
            let [label, spark] =
                Layout::horizontal([Constraint::Length(25), Constraint::Min(0)]).areas(line);
            let text = format!(
                " {:<8}{:>6}/s {:>6}",
                ellipsize(&terminal_safe(name), 8),
                app.protocol_series.last(name),
                format!("({peak})")
            );
            Paragraph::new(Line::styled(text, p.label)).render(label, buf);
            let data: Vec<u64> = app.protocol_series.by_name[*name].iter().copied().collect();
            // Right-aligned: the newest sample sits at the right edge ("now").
            let w = usize::from(spark.width.saturating_sub(1));
            let tail = &data[data.len().saturating_sub(w)..];
            let tail_w = u16::try_from(tail.len()).unwrap_or(0);
            let spark = Rect {
                x: spark.x + spark.width.saturating_sub(1).saturating_sub(tail_w),
                width: tail_w,
                ..spark
            };
            Sparkline::default()
                .data(tail)
                .max(*peak)
                .style(p.up)
                .render(spark, buf);
        }

        // Top talkers: who sends to us, whom we send to.
        let [src, dst] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(talkers);
        let sources = top_talkers(&app.frame, true, TALKERS);
        let dests = top_talkers(&app.frame, false, TALKERS);
        (&TalkerTable {
            app,
            title: " top sources (sending to us) ",
            list: &sources,
            style: p.down,
            p,
        })
            .render(src, buf);
        (&TalkerTable {
            app,
            title: " top destinations (we send to) ",
            list: &dests,
            style: p.up,
            p,
        })
            .render(dst, buf);
    }
}

#[allow(
    clippy::cast_precision_loss,
    reason = "a percentage shown to one decimal"
)]
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Horizontal bars: `label ████░░ suffix`, scaled to the largest value.
struct Bars<'a> {
    rows: &'a [(String, u64, String)],
    style: Style,
    p: &'a Palette,
}

impl Widget for &Bars<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let max = self.rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
        let suffix_w = self
            .rows
            .iter()
            .map(|r| r.2.chars().count())
            .max()
            .unwrap_or(0);
        // A space on both sides of the label, so `icmpv6` never touches its bar.
        let label_w = 6;
        let bar_w = usize::from(area.width).saturating_sub(label_w + suffix_w + 4);
        let lines: Vec<Line> = self
            .rows
            .iter()
            .map(|(label, v, suffix)| {
                let filled =
                    usize::try_from((u128::from(*v) * bar_w as u128).div_ceil(u128::from(max)))
                        .unwrap_or(bar_w)
                        .min(bar_w);
                Line::from(vec![
                    Span::styled(
                        format!(" {:<w$} ", ellipsize(label, label_w), w = label_w),
                        self.p.label,
                    ),
                    Span::styled("█".repeat(filled), self.style),
                    Span::raw(" ".repeat(bar_w - filled)),
                    Span::raw(format!(" {suffix} ")),
                ])
            })
            .collect();
        Paragraph::new(lines).render(area, buf);
    }
}

struct TalkerTable<'a> {
    app: &'a App,
    title: &'a str,
    list: &'a [Talker],
    style: Style,
    p: &'a Palette,
}

impl Widget for &TalkerTable<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let block = Block::new().borders(Borders::TOP).title(self.title);
        let inner = block.inner(area);
        block.render(area, buf);
        if self.list.is_empty() {
            Paragraph::new(Line::styled(" none in this tick", self.p.label)).render(inner, buf);
            return;
        }
        // A margin on both sides: the two tables sit side by side.
        let inner = Rect {
            x: inner.x + 1,
            width: inner.width.saturating_sub(2),
            ..inner
        };
        let rows = self.list.iter().map(|t| {
            let host = if t.name.is_empty() {
                t.address.clone()
            } else {
                terminal_safe(&t.name).into_owned()
            };
            Row::new([
                Cell::from(host),
                Cell::from(format!("{:>12}", rate(self.app, t.bps))).style(self.style),
                Cell::from(format!("{:>10}", format_bytes(t.bytes))),
            ])
        });
        Table::new(
            rows,
            [
                Constraint::Min(10),
                Constraint::Length(12),
                Constraint::Length(10),
            ],
        )
        .header(Row::new(["HOST", "RATE", "TOTAL"]).style(self.p.table_header))
        .column_spacing(1)
        .render(inner, buf);
    }
}
