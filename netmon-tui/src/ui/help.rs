//! The help screen: every key, from one table that the tests check against
//! the key map.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use super::style::Palette;

/// (keys, what they do), in the order shown.
pub const KEYS: &[(&str, &str)] = &[
    ("s", "start / stop monitoring"),
    ("r", "reset live totals"),
    ("t", "next threshold preset (default per-process rate)"),
    (
        "T",
        "type the default threshold: 500KB/s, 20Mbit/s (empty clears)",
    ),
    (
        "e x",
        "set (typed) / clear the selected program's threshold",
    ),
    ("R", "reload netmond's configuration file"),
    ("p Space", "pause / resume the display (data still read)"),
    ("o", "sort by up, down, total rate or name"),
    ("u", "rates in bytes/s or bits/s"),
    ("↑ ↓  k j", "select; PgUp PgDn Home End (g G) jump"),
    ("← →", "History: the day before / after"),
    ("d", "History: one day by hour, 7 or 30 days by day"),
    ("/", "filter processes by name (Enter keeps, Esc clears)"),
    ("1-9", "sort by PID NAME USER UP DOWN TOT↑ TOT↓ PROTO CONN"),
    ("", "(the same key again reverses the order)"),
    ("Enter", "process detail; in History: chart that process"),
    ("Esc", "back / clear the filter"),
    (
        "Tab ⇧Tab",
        "Processes Connections Hosts Packets Interfaces History",
    ),
    ("h ?", "this help (any key closes it)"),
    ("q Ctrl-C", "quit"),
];

pub struct HelpPopup<'a> {
    pub p: &'a Palette,
}

impl Widget for &HelpPopup<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let mut lines: Vec<Line> = KEYS
            .iter()
            .map(|(k, what)| {
                Line::from(vec![
                    Span::styled(format!(" {k:<10}"), self.p.key),
                    Span::raw(*what),
                ])
            })
            .collect();
        lines.push(Line::default());
        lines.push(Line::from(
            " Red rows: above their rate threshold. Local times (--utc: UTC).",
        ));
        let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
        let popup = super::centered(area, 68, height);
        Clear.render(popup, buf);
        Paragraph::new(lines)
            .block(Block::new().borders(Borders::ALL).title(" keys "))
            .render(popup, buf);
    }
}
