//! `alerts --notify`: alert events as desktop notifications, sent to
//! `org.freedesktop.Notifications` on the user's session D-Bus (the spec's
//! `Notify`). What a notification says is pure (`note_of`); when to send is
//! the follower's business, not this module's.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use netmon_proto::text::terminal_safe;
use netmon_proto::units::{format_bytes, format_rate};
use netmon_proto::v1;
use zbus::zvariant::Value;

const DESTINATION: &str = "org.freedesktop.Notifications";
const OBJECT: &str = "/org/freedesktop/Notifications";
const INTERFACE: &str = "org.freedesktop.Notifications";
const APP_NAME: &str = "netmon";
/// An icon of the freedesktop naming spec: every theme has it.
const ICON: &str = "network-transmit-receive";
/// A notification server that hangs must not stop the follower for long.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Open alerts whose notification a close replaces; older ones are forgotten
/// (their close then shows as a new notification).
const REMEMBERED: usize = 1_000;
/// What the user is told to do when there is no session bus.
const HINT: &str = "run it inside a desktop session, or as the user service \
(systemctl --user enable --now netmon-notify)";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("--notify needs the desktop session's D-Bus, but DBUS_SESSION_BUS_ADDRESS is not set (nor XDG_RUNTIME_DIR); {HINT}")]
    NoAddress,
    // zbus's errors repeat their source in their message: shown once, inline.
    #[error(
        "--notify cannot reach the session D-Bus at '{address}' (from {from}): {error}; {HINT}"
    )]
    Connect {
        address: String,
        from: &'static str,
        error: Box<zbus::Error>,
    },
    #[error("no desktop notification server answers on the session D-Bus at '{address}' (from {from}): {error}")]
    NoServer {
        address: String,
        from: &'static str,
        error: Box<zbus::Error>,
    },
}

/// Notification urgency of the spec's `urgency` hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Urgency {
    Normal = 1,
    Critical = 2,
}

/// One notification as the user reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub summary: String,
    pub body: String,
    pub urgency: Urgency,
}

fn direction_word(raw: i32) -> &'static str {
    match v1::Direction::try_from(raw) {
        Ok(v1::Direction::Up) => "up",
        Ok(v1::Direction::Down) => "down",
        _ => "total",
    }
}

/// `firefox`, `host`: who the alert is about, control characters escaped
/// (a process's owner chose its name).
fn subject(a: &v1::Alert) -> String {
    if a.kind == v1::ThresholdKind::HostRate as i32 {
        return "host".to_owned();
    }
    match a.process.as_ref().filter(|p| !p.name.is_empty()) {
        Some(p) => terminal_safe(&p.name).into_owned(),
        None => "?".to_owned(),
    }
}

/// `pid 7`, `pids 4, 5 and 3 more`; None for the host.
fn pids_line(a: &v1::Alert) -> Option<String> {
    if let Some(pid) = a.process.as_ref().map(|p| p.pid).filter(|&p| p != 0) {
        return Some(format!("pid {pid}"));
    }
    if a.pids.is_empty() {
        return None;
    }
    let list = a
        .pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let word = if a.pids.len() == 1 && a.pids_seen <= 1 {
        "pid"
    } else {
        "pids"
    };
    let more = (a.pids_seen as usize).saturating_sub(a.pids.len());
    Some(if more > 0 {
        format!("{word} {list} and {more} more")
    } else {
        format!("{word} {list}")
    })
}

/// The notification of one alert event: the summary says who and how much,
/// the body which processes, the limit and the alert's id.
pub fn note_of(a: &v1::Alert) -> Note {
    let closed = a.state == v1::AlertState::Closed as i32;
    let who = subject(a);
    let dir = direction_word(a.direction);
    let mut body: Vec<String> = pids_line(a).into_iter().collect();
    let kind = v1::ThresholdKind::try_from(a.kind).unwrap_or(v1::ThresholdKind::Unspecified);
    let summary = match kind {
        v1::ThresholdKind::ProcessRate | v1::ThresholdKind::HostRate => {
            let limit = format_rate(a.threshold);
            body.push(format!("threshold {limit} {dir}"));
            if closed {
                body.push(format!("peak {}", format_rate(a.peak)));
                format!("{who}: {dir} back under {limit}")
            } else {
                format!("{who}: {} {dir} over {limit}", format_rate(a.value))
            }
        }
        v1::ThresholdKind::DailyQuota => {
            let limit = format_bytes(a.threshold);
            body.push(format!("daily quota {limit} {dir}"));
            if closed {
                body.push(terminal_safe(&a.message).into_owned());
                format!("{who}: daily quota alert closed")
            } else {
                format!("{who}: {} {dir} today, over {limit}", format_bytes(a.value))
            }
        }
        v1::ThresholdKind::NewProcess => {
            let exe = a.process.as_ref().map_or("", |p| p.exe.as_str());
            if !exe.is_empty() {
                body.insert(0, terminal_safe(exe).into_owned());
            }
            format!("{who}: new on the network")
        }
        v1::ThresholdKind::Unspecified => terminal_safe(&a.message).into_owned(),
    };
    body.push(format!("alert #{}", a.id));
    Note {
        summary,
        body: body.join("\n"),
        // A notice (new process) arrives closed: news, not an emergency.
        urgency: if closed {
            Urgency::Normal
        } else {
            Urgency::Critical
        },
    }
}

/// `&`, `<` and `>` as entities, for servers that read the body as markup.
fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The session bus address and where it came from: DBUS_SESSION_BUS_ADDRESS,
/// else `$XDG_RUNTIME_DIR/bus` (where systemd's user manager puts it).
fn session_address() -> Result<(String, &'static str), NotifyError> {
    if let Some(a) = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").filter(|a| !a.is_empty()) {
        return Ok((a.to_string_lossy().into_owned(), "DBUS_SESSION_BUS_ADDRESS"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Ok((
            format!(
                "unix:path={}",
                std::path::Path::new(&dir).join("bus").display()
            ),
            "XDG_RUNTIME_DIR, DBUS_SESSION_BUS_ADDRESS being unset",
        )),
        None => Err(NotifyError::NoAddress),
    }
}

/// A connection to the session bus's notification server.
pub struct Notifier {
    conn: zbus::Connection,
    /// The server reads bodies as markup (capability `body-markup`).
    markup: bool,
    /// Notification id of each open alert's "opened" notification.
    shown: HashMap<u64, u32>,
    order: VecDeque<u64>,
}

impl Notifier {
    /// Connects and asks the server for its capabilities, so that a missing
    /// bus or server is an error at start rather than silence later.
    pub async fn connect() -> Result<Notifier, NotifyError> {
        let (address, from) = session_address()?;
        let connect_err = |error| NotifyError::Connect {
            address: address.clone(),
            from,
            error: Box::new(error),
        };
        let conn = zbus::connection::Builder::address(address.as_str())
            .map_err(connect_err)?
            .method_timeout(CALL_TIMEOUT)
            .build()
            .await
            .map_err(connect_err)?;
        let caps: Vec<String> = conn
            .call_method(
                Some(DESTINATION),
                OBJECT,
                Some(INTERFACE),
                "GetCapabilities",
                &(),
            )
            .await
            .and_then(|reply| reply.body().deserialize())
            .map_err(|error| NotifyError::NoServer {
                address: address.clone(),
                from,
                error: Box::new(error),
            })?;
        Ok(Notifier {
            conn,
            markup: caps.iter().any(|c| c == "body-markup"),
            shown: HashMap::new(),
            order: VecDeque::new(),
        })
    }

    /// Sends the notification of one alert event. A close replaces the
    /// "opened" notification of the same alert (`replaces_id`; a server that
    /// no longer shows it shows a new one).
    pub async fn send(&mut self, a: &v1::Alert) -> zbus::Result<()> {
        let note = note_of(a);
        let closed = a.state == v1::AlertState::Closed as i32;
        // `u32` is the spec's type: anything else is another D-Bus signature.
        let replaces: u32 = if closed {
            self.shown.remove(&a.id).unwrap_or(0)
        } else {
            0
        };
        let body = if self.markup {
            escape_markup(&note.body)
        } else {
            note.body
        };
        let hints = HashMap::from([("urgency", Value::U8(note.urgency as u8))]);
        let actions: Vec<&str> = Vec::new();
        let reply = self
            .conn
            .call_method(
                Some(DESTINATION),
                OBJECT,
                Some(INTERFACE),
                "Notify",
                &(
                    APP_NAME,
                    replaces,
                    ICON,
                    note.summary.as_str(),
                    body.as_str(),
                    actions,
                    hints,
                    -1_i32,
                ),
            )
            .await?;
        let id: u32 = reply.body().deserialize()?;
        if !closed {
            self.remember(a.id, id);
        }
        Ok(())
    }

    fn remember(&mut self, alert: u64, notification: u32) {
        if self.shown.insert(alert, notification).is_none() {
            self.order.push_back(alert);
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.shown.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_alert(state: v1::AlertState) -> v1::Alert {
        v1::Alert {
            id: 9,
            kind: v1::ThresholdKind::ProcessRate as i32,
            state: state as i32,
            direction: v1::Direction::Down as i32,
            process: Some(v1::ProcessIdentity {
                name: "firefox".into(),
                ..Default::default()
            }),
            threshold: 10 * 1024 * 1024,
            value: 12_897_485,
            peak: 20 * 1024 * 1024,
            pids: vec![4, 5],
            pids_seen: 3,
            ..Default::default()
        }
    }

    #[test]
    fn an_opened_rate_alert_is_critical_and_says_how_much() {
        let n = note_of(&rate_alert(v1::AlertState::Open));
        assert_eq!(n.summary, "firefox: 12.3 MiB/s down over 10.0 MiB/s");
        assert_eq!(
            n.body,
            "pids 4, 5 and 1 more\nthreshold 10.0 MiB/s down\nalert #9"
        );
        assert_eq!(n.urgency, Urgency::Critical);
    }

    #[test]
    fn a_closed_rate_alert_is_normal_and_gives_the_peak() {
        let n = note_of(&rate_alert(v1::AlertState::Closed));
        assert_eq!(n.summary, "firefox: down back under 10.0 MiB/s");
        assert!(n.body.contains("peak 20.0 MiB/s"), "{}", n.body);
        assert_eq!(n.urgency, Urgency::Normal);
    }

    #[test]
    fn host_pid_and_notice_alerts_name_their_subject() {
        let mut a = rate_alert(v1::AlertState::Open);
        a.kind = v1::ThresholdKind::HostRate as i32;
        a.direction = v1::Direction::Total as i32;
        a.process = None;
        a.pids.clear();
        a.pids_seen = 0;
        let n = note_of(&a);
        assert_eq!(n.summary, "host: 12.3 MiB/s total over 10.0 MiB/s");
        assert_eq!(n.body, "threshold 10.0 MiB/s total\nalert #9");

        let mut a = rate_alert(v1::AlertState::Open);
        a.process = Some(v1::ProcessIdentity {
            name: "evil\x1b[2J".into(),
            pid: 77,
            ..Default::default()
        });
        let n = note_of(&a);
        assert!(n.summary.starts_with("evil\\u{1b}[2J: "), "{}", n.summary);
        assert!(n.body.starts_with("pid 77\n"), "{}", n.body);

        let a = v1::Alert {
            id: 3,
            kind: v1::ThresholdKind::NewProcess as i32,
            state: v1::AlertState::Closed as i32,
            process: Some(v1::ProcessIdentity {
                name: "curl".into(),
                exe: "/usr/bin/curl".into(),
                pid: 12,
                ..Default::default()
            }),
            ..Default::default()
        };
        let n = note_of(&a);
        assert_eq!(n.summary, "curl: new on the network");
        assert_eq!(n.body, "/usr/bin/curl\npid 12\nalert #3");
        assert_eq!(n.urgency, Urgency::Normal);
    }

    #[test]
    fn a_quota_alert_counts_bytes() {
        let mut a = rate_alert(v1::AlertState::Open);
        a.kind = v1::ThresholdKind::DailyQuota as i32;
        a.threshold = 2 << 30;
        a.value = 3 << 30;
        let n = note_of(&a);
        assert_eq!(n.summary, "firefox: 3.0 GiB down today, over 2.0 GiB");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape_markup("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
