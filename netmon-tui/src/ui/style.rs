//! Every style of the dashboard, as constants: one palette with colour and a
//! monochrome one for `NO_COLOR` (bold, reverse and markers instead of colour).

use ratatui::style::{Color, Modifier, Style};

pub struct Palette {
    pub brand: Style,
    pub tab: Style,
    pub tab_active: Style,
    pub label: Style,
    pub value: Style,
    pub on: Style,
    pub off: Style,
    pub table_header: Style,
    pub selected: Style,
    /// A process above its rate threshold.
    pub over: Style,
    pub exited: Style,
    pub up: Style,
    pub down: Style,
    pub alert_open: Style,
    pub alert_closed: Style,
    pub error: Style,
    pub status: Style,
    pub notice_title: Style,
    pub key: Style,
}

const PLAIN: Style = Style::new();
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

pub const COLOR: Palette = Palette {
    brand: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
    tab: PLAIN,
    tab_active: Style::new()
        .fg(Color::Yellow)
        .add_modifier(Modifier::BOLD.union(Modifier::UNDERLINED)),
    label: Style::new().fg(Color::DarkGray),
    value: BOLD,
    on: Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
    off: Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
    table_header: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
    selected: Style::new().add_modifier(Modifier::REVERSED),
    over: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    exited: Style::new().fg(Color::DarkGray),
    up: Style::new().fg(Color::Magenta),
    down: Style::new().fg(Color::Green),
    alert_open: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    alert_closed: Style::new().fg(Color::DarkGray),
    error: Style::new().fg(Color::Red),
    status: Style::new().bg(Color::DarkGray).fg(Color::White),
    notice_title: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    key: Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
};

pub const MONO: Palette = Palette {
    brand: BOLD,
    tab: PLAIN,
    tab_active: Style::new().add_modifier(Modifier::BOLD.union(Modifier::UNDERLINED)),
    label: PLAIN,
    value: BOLD,
    on: BOLD,
    off: BOLD,
    table_header: Style::new().add_modifier(Modifier::BOLD.union(Modifier::UNDERLINED)),
    selected: Style::new().add_modifier(Modifier::REVERSED),
    over: BOLD,
    exited: Style::new().add_modifier(Modifier::DIM),
    up: PLAIN,
    down: PLAIN,
    alert_open: BOLD,
    alert_closed: PLAIN,
    error: BOLD,
    status: Style::new().add_modifier(Modifier::REVERSED),
    notice_title: BOLD,
    key: BOLD,
};

pub fn palette(color: bool) -> &'static Palette {
    if color {
        &COLOR
    } else {
        &MONO
    }
}

/// True unless `NO_COLOR` is set to a non-empty value (no-color.org).
pub fn color_from_env() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
