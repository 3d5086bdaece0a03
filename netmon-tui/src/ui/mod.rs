//! Rendering: a pure function of [`App`] into a ratatui buffer. Widgets are
//! `impl Widget for &X`; nothing here changes state or does I/O.

pub mod help;
mod packets;
mod processes;
pub mod style;
mod views;

use netmon_proto::text::terminal_safe;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Padding, Paragraph, Tabs, Widget, Wrap};

use crate::app::{App, ConnStatus, Problem, PromptKind, View};
use crate::units::{clock_with_zone, format_rate_as};
use style::{palette, Palette};

/// The whole screen.
pub struct Screen<'a> {
    pub app: &'a App,
}

impl Widget for &Screen<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let p = palette(app.color);
        if let ConnStatus::Disconnected {
            problem,
            attempts,
            retry_at_ms,
        } = &app.conn
        {
            (&Notice {
                app,
                problem,
                attempts: *attempts,
                retry_at_ms: *retry_at_ms,
            })
                .render(area, buf);
            return;
        }
        let [tabs, body, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        (&TabBar { app }).render(tabs, buf);
        match (app.view, &app.detail) {
            (View::Processes, Some(d)) => {
                (&processes::DetailView { app, detail: d }).render(body, buf);
            }
            (View::Processes, None) => (&processes::ProcessesView { app }).render(body, buf),
            (View::Connections, _) => (&views::ConnectionsView { app }).render(body, buf),
            (View::Hosts, _) => (&views::HostsView { app }).render(body, buf),
            (View::Packets, _) => (&packets::PacketsView { app }).render(body, buf),
            (View::Interfaces, _) => (&views::InterfacesView { app }).render(body, buf),
            (View::History, _) => (&views::HistoryView { app }).render(body, buf),
        }
        (&StatusBar { app, p }).render(status, buf);
        if app.help {
            (&help::HelpPopup { p }).render(area, buf);
        }
    }
}

struct TabBar<'a> {
    app: &'a App,
}

impl Widget for &TabBar<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let p = palette(self.app.color);
        let [brand, tabs] =
            Layout::horizontal([Constraint::Length(8), Constraint::Min(0)]).areas(area);
        Line::from(Span::styled(" netmon ", p.brand)).render(brand, buf);
        let selected = View::ALL.iter().position(|v| *v == self.app.view);
        Tabs::new(View::ALL.iter().map(|v| v.title()))
            .select(selected)
            .style(p.tab)
            .highlight_style(p.tab_active)
            .divider("│")
            .render(tabs, buf);
    }
}

struct StatusBar<'a> {
    app: &'a App,
    p: &'a Palette,
}

impl Widget for &StatusBar<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        buf.set_style(area, self.p.status);
        if let Some(prompt) = &app.prompt {
            (&PromptLine { prompt, p: self.p }).render(area, buf);
            return;
        }
        let threshold = app
            .threshold_bps
            .map_or_else(|| "none".to_owned(), |v| rate(app, v));
        let mut left = if app.paused {
            " ‖ PAUSED │".to_owned()
        } else {
            String::new()
        };
        left.push_str(&format!(" threshold {threshold} (t)"));
        if let Some((name, v)) = app.selected_program_threshold() {
            left.push_str(&format!(
                " │ {}: {} (e x)",
                terminal_safe(&name),
                rate(app, v)
            ));
        }
        if app.filtering || !app.filter.is_empty() {
            let cursor = if app.filtering { "_" } else { "" };
            left.push_str(&format!(" │ filter: {}{cursor}", app.filter));
        }
        if let Some((msg, _)) = &app.message {
            left.push_str(" │ ");
            // Messages from the daemon may quote a process name.
            left.push_str(&terminal_safe(msg));
        }
        let right = format!("{} │ h help │ q quit ", clock_with_zone(app.now_ms));
        let right_w = u16::try_from(right.chars().count()).unwrap_or(0);
        let [l, r] =
            Layout::horizontal([Constraint::Min(0), Constraint::Length(right_w)]).areas(area);
        let left_style = match &app.message {
            Some((_, true)) => self.p.status.patch(self.p.error),
            _ => self.p.status,
        };
        Paragraph::new(Line::from(Span::styled(left, left_style))).render(l, buf);
        Paragraph::new(right)
            .alignment(Alignment::Right)
            .render(r, buf);
    }
}

/// A rate in the unit the user picked (`u`).
pub fn rate(app: &App, bps: u64) -> String {
    format_rate_as(bps, app.units)
}

/// The input line that replaces the status bar while a rate is typed.
struct PromptLine<'a> {
    prompt: &'a crate::app::Prompt,
    p: &'a Palette,
}

impl Widget for &PromptLine<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        buf.set_style(area, self.p.status);
        let what = match &self.prompt.kind {
            PromptKind::DefaultThreshold => "default threshold".to_owned(),
            PromptKind::ProcessThreshold(name) => format!("threshold of '{}'", terminal_safe(name)),
        };
        let hint = if self.prompt.error.is_some() {
            ""
        } else {
            " (e.g. 500KB/s, 20Mbit/s; empty clears)"
        };
        let mut spans = vec![
            Span::raw(format!(" {what}{hint}: ")),
            Span::styled(format!("{}_", self.prompt.text), self.p.value),
        ];
        if let Some(e) = &self.prompt.error {
            spans.push(Span::styled(
                format!("  {e}"),
                self.p.status.patch(self.p.error),
            ));
        } else {
            spans.push(Span::raw("  Enter sets · Esc cancels"));
        }
        Paragraph::new(Line::from(spans)).render(area, buf);
    }
}

/// The full screen shown while there is no daemon to talk to: what is wrong
/// and what the user can do about it.
struct Notice<'a> {
    app: &'a App,
    problem: &'a Problem,
    attempts: u32,
    retry_at_ms: i64,
}

impl Widget for &Notice<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let p = palette(self.app.color);
        let socket = self.app.socket.display().to_string();
        let (title, lines): (&str, Vec<String>) = match self.problem {
            Problem::Connecting => (
                "Connecting to netmond",
                vec![format!("Opening '{socket}'…")],
            ),
            Problem::NotRunning => (
                "netmond is not running",
                vec![
                    format!("Nothing is listening on '{socket}'."),
                    String::new(),
                    "Start the daemon:   sudo systemctl start netmond".to_owned(),
                    "(or run netmond as root), or point netmon-tui at another".to_owned(),
                    "socket with --socket PATH or NETMON_SOCKET.".to_owned(),
                ],
            ),
            Problem::PermissionDenied { group } => {
                let group = group.as_deref().unwrap_or("netmon");
                (
                    "Permission denied",
                    vec![
                        format!("'{socket}' refuses your user: only root and"),
                        format!("members of the '{group}' group may use it."),
                        String::new(),
                        format!("Join the group:   sudo usermod -aG {group} $USER"),
                        format!("then log in again (or start a shell with: newgrp {group})."),
                    ],
                )
            }
            Problem::Lost(msg) => (
                "Connection to netmond lost",
                vec![
                    "The daemon stopped or restarted; reconnecting by itself.".to_owned(),
                    format!("Socket '{socket}'."),
                    String::new(),
                    terminal_safe(msg).into_owned(),
                ],
            ),
            Problem::Other(msg) => (
                "Cannot reach netmond",
                vec![
                    format!("Socket '{socket}'."),
                    String::new(),
                    terminal_safe(msg).into_owned(),
                ],
            ),
        };
        let mut text: Vec<Line> = vec![
            Line::from(Span::styled(title, p.notice_title)),
            Line::default(),
        ];
        text.extend(lines.into_iter().map(Line::from));
        text.push(Line::default());
        let wait = (self.retry_at_ms - self.app.now_ms).max(0);
        let retry = if self.attempts == 0 && *self.problem == Problem::Connecting {
            "q quits".to_owned()
        } else {
            format!(
                "Retrying in {}s (attempt {}) · q quits",
                (wait + 999) / 1000,
                self.attempts + 1
            )
        };
        text.push(Line::from(Span::styled(retry, p.label)));
        let height = u16::try_from(text.len())
            .unwrap_or(u16::MAX)
            .saturating_add(2);
        let width = area.width.min(74);
        let popup = centered(area, width, height);
        Clear.render(area, buf);
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(
                Block::new()
                    .borders(Borders::ALL)
                    .padding(Padding::horizontal(1))
                    .title(Span::styled(" netmon ", p.brand)),
            )
            .render(popup, buf);
    }
}

/// A `width`×`height` rectangle centred in `area` (clamped to it).
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
mod tests;
