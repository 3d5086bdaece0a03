//! `alerts --follow`: one line per alert opened or closed, as they happen,
//! from the Subscribe stream; rides over daemon restarts (retry with backoff,
//! catch-up from ListAlerts) without printing an event twice. With
//! `--notify` each event is also a desktop notification (`crate::notify`).

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use netmon_proto::text::terminal_safe;
use netmon_proto::v1;
use netmon_proto::ConnectError;

use super::history::pid_cell;
use super::live::is_gone;
use super::Client;
use crate::error::{CtlError, Result};
use crate::json::AlertJson;
use crate::notify::Notifier;
use crate::output::write_json_line;
use crate::when::human_time;

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Events remembered to drop repeats after a reconnect.
const REMEMBERED: usize = 10_000;

/// An alert event: its id and whether it opened (false) or closed (true).
type Event = (u64, bool);

/// Events already printed, oldest forgotten first.
#[derive(Default)]
struct Printed {
    set: HashSet<Event>,
    order: VecDeque<Event>,
}

impl Printed {
    /// True when `e` is new (and now remembered).
    fn insert(&mut self, e: Event) -> bool {
        if !self.set.insert(e) {
            return false;
        }
        if self.order.len() >= REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(e);
        true
    }
}

fn event_of(a: &v1::Alert) -> Event {
    (a.id, a.state == v1::AlertState::Closed as i32)
}

/// When the event happened: the start of an open alert, the end of a closed one.
fn event_ms(a: &v1::Alert) -> i64 {
    if a.state == v1::AlertState::Closed as i32 {
        a.ended_ms
    } else {
        a.started_ms
    }
}

fn write_event(a: &v1::Alert, json: bool, out: &mut dyn Write) -> Result<()> {
    let j = AlertJson::from(a);
    if json {
        return write_json_line(out, &j);
    }
    // The message names a process: any bytes its owner chose.
    writeln!(
        out,
        "{}  {:<6}  #{}  {}  {}  {}",
        human_time(event_ms(a)),
        j.state,
        a.id,
        j.kind,
        pid_cell(&j),
        terminal_safe(&a.message)
    )?;
    out.flush()?;
    Ok(())
}

/// Prints the event and, with --notify, sends its notification. A failed
/// notification is a warning: the line is printed and following goes on.
async fn emit(
    a: &v1::Alert,
    json: bool,
    notifier: &mut Option<Notifier>,
    out: &mut dyn Write,
) -> Result<()> {
    write_event(a, json, out)?;
    if let Some(n) = notifier {
        if let Err(e) = n.send(a).await {
            eprintln!(
                "netmonctl: warning: cannot show the notification of alert #{}: {e}",
                a.id
            );
        }
    }
    Ok(())
}

async fn connect(socket: &Path) -> std::result::Result<Client, ConnectError> {
    netmon_proto::connect(socket).await
}

/// Follows until Ctrl-C. The first connection must succeed (exit 3 as for any
/// command); after that, a daemon that goes away is waited for. With
/// `notify`, the session bus is checked first (exit 4 without one).
pub async fn follow(
    socket: Option<&Path>,
    json: bool,
    notify: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut notifier = if notify {
        Some(Notifier::connect().await?)
    } else {
        None
    };
    let path = netmon_proto::resolve_socket(socket);
    let mut client = connect(&path).await?;
    let mut printed = Printed::default();
    // Alerts open before we start are not news (their close is): listed
    // before subscribing, so one that opens in between is not taken for old.
    for a in list(&mut client, crate::when::now_ms())
        .await?
        .unwrap_or_default()
        .iter()
        .filter(|a| a.state == v1::AlertState::Open as i32)
    {
        printed.insert(event_of(a));
    }
    // Time of the last frame: after a reconnect, events from then on that the
    // stream could not carry are caught up from the alert list.
    let mut since_ms: Option<i64> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            biased;
            _ = &mut ctrl_c => return Ok(()),
            r = follow_one(&mut client, &mut printed, &mut since_ms, json, &mut notifier, out) => r?,
        }
        eprintln!("netmonctl: netmond went away; reconnecting");
        let mut backoff = FIRST_BACKOFF;
        client = loop {
            tokio::select! {
                biased;
                _ = &mut ctrl_c => return Ok(()),
                () = tokio::time::sleep(backoff) => {}
            }
            match connect(&path).await {
                Ok(c) => break c,
                Err(e @ ConnectError::PermissionDenied { .. }) => return Err(e.into()),
                Err(_) => backoff = (backoff * 2).min(MAX_BACKOFF),
            }
        };
        eprintln!("netmonctl: reconnected to netmond, following alerts");
    }
}

/// One connection: subscribe, catch up (after a reconnect), print events.
/// Returns when the daemon goes away; errors are anything else.
async fn follow_one(
    client: &mut Client,
    printed: &mut Printed,
    since_ms: &mut Option<i64>,
    json: bool,
    notifier: &mut Option<Notifier>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut stream = match client
        .subscribe(v1::SubscribeRequest { every_ticks: 1 })
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) if is_gone(&s) => return Ok(()),
        Err(s) => return Err(s.into()),
    };
    // Subscribed first, listed second: an event in between is in both, and
    // printed once.
    if let Some(since) = *since_ms {
        if !catch_up(client, since, printed, json, notifier, out).await? {
            return Ok(());
        }
    }
    let mut last_seq: Option<u64> = None;
    loop {
        let frame = match stream.message().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(s) if is_gone(&s) => return Ok(()),
            Err(s) => return Err(CtlError::from(s)),
        };
        // A subscriber that fell behind skips frames, and their alerts with
        // them: the list has them.
        let skipped = last_seq.is_some_and(|l| frame.seq > l + 1);
        last_seq = Some(frame.seq);
        if let (true, Some(since)) = (skipped, *since_ms) {
            if !catch_up(client, since, printed, json, notifier, out).await? {
                return Ok(());
            }
        }
        if frame.time_ms > 0 {
            *since_ms = Some(frame.time_ms);
        }
        for a in &frame.alerts {
            if printed.insert(event_of(a)) {
                emit(a, json, notifier, out).await?;
            }
        }
    }
}

/// ListAlerts from `since_ms`; `None` when the daemon went away.
async fn list(client: &mut Client, since_ms: i64) -> Result<Option<Vec<v1::Alert>>> {
    match client
        .list_alerts(v1::ListAlertsRequest { since_ms, limit: 0 })
        .await
    {
        Ok(l) => Ok(Some(l.into_inner().alerts)),
        Err(s) if is_gone(&s) => Ok(None),
        Err(s) => Err(s.into()),
    }
}

/// Prints the events since `since_ms` not printed yet, oldest first: alerts
/// closed since then, and alerts open now (a rate alert's start is the start
/// of its run, before it opened). False when the daemon went away.
async fn catch_up(
    client: &mut Client,
    since_ms: i64,
    printed: &mut Printed,
    json: bool,
    notifier: &mut Option<Notifier>,
    out: &mut dyn Write,
) -> Result<bool> {
    let Some(all) = list(client, since_ms).await? else {
        return Ok(false);
    };
    let mut missed: Vec<&v1::Alert> = all
        .iter()
        .filter(|a| match v1::AlertState::try_from(a.state) {
            Ok(v1::AlertState::Open) => true,
            Ok(v1::AlertState::Closed) => a.ended_ms >= since_ms,
            _ => false,
        })
        .collect();
    missed.sort_by_key(|a| event_ms(a));
    for a in missed {
        if printed.insert(event_of(a)) {
            emit(a, json, notifier, out).await?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_prints_once_and_old_ones_are_forgotten() {
        let mut p = Printed::default();
        assert!(p.insert((1, false)));
        assert!(!p.insert((1, false)));
        assert!(p.insert((1, true)), "the close of the same alert is news");
        for id in 2..(REMEMBERED as u64 + 2) {
            p.insert((id, false));
        }
        assert_eq!(p.order.len(), REMEMBERED);
        assert!(
            p.insert((1, false)),
            "forgotten after {REMEMBERED} newer events"
        );
    }

    #[test]
    fn human_line_names_state_id_and_message() {
        let a = v1::Alert {
            id: 9,
            kind: v1::ThresholdKind::ProcessRate as i32,
            state: v1::AlertState::Closed as i32,
            started_ms: 1_700_000_000_000,
            ended_ms: 1_700_000_005_000,
            pids: vec![4, 5],
            pids_seen: 2,
            process: Some(v1::ProcessIdentity {
                name: "fetch".into(),
                ..Default::default()
            }),
            message: "fetch (pids 4, 5): down rate back under 1.0 MiB/s\x1b[2J".into(),
            ..Default::default()
        };
        let mut out = Vec::new();
        write_event(&a, false, &mut out).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.contains("  closed  #9  rate  2 pids  fetch (pids 4, 5)"),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "{line:?}");
        let mut out = Vec::new();
        write_event(&a, true, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["state"], "closed");
        assert_eq!(v["pids"], serde_json::json!([4, 5]));
        assert_eq!(v["pid"], serde_json::Value::Null);
    }
}
