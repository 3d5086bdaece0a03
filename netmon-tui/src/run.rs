//! The event loop: one `tokio::select!` over input, the frame stream, RPC
//! results and a tick, then a draw. All RPCs run in spawned tasks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyEventKind};
use netmon_proto::v1;
use netmon_proto::v1::netmon_client::NetmonClient;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::app::{App, Effect, Problem};
use crate::conn::{problem_of, problem_of_status, Conn};
use crate::input::{action_for, filter_action_for, prompt_action_for};
use crate::term::TerminalGuard;
use crate::ui::Screen;
use crate::units::format_rate;

type Client = NetmonClient<Channel>;

const TICK: Duration = Duration::from_millis(250);
/// Polled data (connections, history) is refreshed this often while shown.
const REFRESH: Duration = Duration::from_secs(2);
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const MESSAGE_FOR: Duration = Duration::from_secs(6);

struct Connected {
    client: Client,
    stream: Streaming<v1::Frame>,
    thresholds: Option<v1::ThresholdList>,
}

enum Msg {
    Connected(Box<Connected>),
    ConnectFailed(Problem),
    /// Feedback of a control RPC: (text, is_error).
    Feedback(String, bool),
    Thresholds(v1::ThresholdList),
    /// New thresholds and the feedback of the change that made them.
    Both(v1::ThresholdList, String),
    Connections {
        pid: Option<u32>,
        result: Result<Vec<v1::Connection>, String>,
    },
    History(Box<crate::app::History>),
    ProcessHosts {
        name: String,
        result: Result<v1::ReportReply, String>,
    },
}

/// Rows of the detail's "hosts today" list.
const DETAIL_HISTORY_HOSTS: u32 = 8;

pub async fn run(socket: PathBuf, color: bool) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // Ctrl-C is a key in raw mode; this is for `kill -INT`.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut guard = TerminalGuard::new()?;
    let mut app = App::new(socket.clone(), color);
    app.now_ms = now_ms();
    let (tx, mut rx) = mpsc::channel::<Msg>(64);
    let mut conn: Conn<Client> = Conn::disconnected();
    let mut stream: Option<Streaming<v1::Frame>> = None;
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut retry_at = Instant::now();
    let mut last_refresh = Instant::now();
    let mut message_at = Instant::now();

    loop {
        guard
            .terminal
            .draw(|f| f.render_widget(&Screen { app: &app }, f.area()))?;
        tokio::select! {
            biased;
            ev = events.next() => match ev {
                Some(Ok(Event::Key(key))) if key.kind == KeyEventKind::Press => {
                    let action = if app.prompt.is_some() {
                        prompt_action_for(&key)
                    } else if app.filtering {
                        filter_action_for(&key)
                    } else {
                        action_for(&key)
                    };
                    if let Some(action) = action {
                        let effects = app.apply(action);
                        perform(effects, &conn, &tx);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            _ = sigint.recv() => break,
            item = next_frame(&mut stream) => match item {
                Some(Ok(frame)) => app.on_frame(frame),
                Some(Err(status)) => {
                    tracing::warn!(%status, "stream failed");
                    stream = None;
                    let problem = match problem_of_status(&status) {
                        Problem::Other(m) => Problem::Lost(m),
                        p => p,
                    };
                    retry_at = disconnect(&mut conn, &mut app, problem, true);
                }
                None => {
                    tracing::warn!("stream ended");
                    stream = None;
                    let problem = Problem::Lost("netmond closed the stream".to_owned());
                    retry_at = disconnect(&mut conn, &mut app, problem, true);
                }
            },
            Some(msg) = rx.recv() => match msg {
                Msg::Connected(c) => {
                    let Connected { client, stream: s, thresholds } = *c;
                    tracing::info!(socket = %socket.display(), "connected");
                    if let Some(t) = thresholds {
                        app.on_thresholds(&t);
                    }
                    conn = Conn::Connected(client);
                    stream = Some(s);
                    // The first frame flips the app to Connected.
                    perform(app.refresh_effects(), &conn, &tx);
                }
                Msg::ConnectFailed(problem) => {
                    tracing::info!(?problem, "cannot connect");
                    retry_at = disconnect(&mut conn, &mut app, problem, false);
                }
                Msg::Feedback(text, is_error) => {
                    app.message = Some((text, is_error));
                    message_at = Instant::now();
                }
                Msg::Thresholds(list) => app.on_thresholds(&list),
                Msg::Both(list, text) => {
                    app.on_thresholds(&list);
                    app.message = Some((text, false));
                    message_at = Instant::now();
                }
                Msg::Connections { pid, result } => app.on_connections(pid, result),
                // A reply for a day the user has since left is dropped.
                Msg::History(h) if h.query == app.history.query => app.history = *h,
                Msg::History(_) => {}
                Msg::ProcessHosts { name, result } => app.on_process_hosts(&name, result),
            },
            _ = tick.tick() => {
                app.now_ms = now_ms();
                if let Conn::Disconnected { dialing, .. } = &mut conn {
                    if !*dialing && Instant::now() >= retry_at {
                        *dialing = true;
                        dial(socket.clone(), tx.clone());
                    }
                } else if last_refresh.elapsed() >= REFRESH {
                    last_refresh = Instant::now();
                    perform(app.periodic_effects(), &conn, &tx);
                }
                if app.message.is_some() && message_at.elapsed() >= MESSAGE_FOR {
                    app.message = None;
                }
            }
        }
        if app.quit {
            break;
        }
    }
    drop(guard);
    Ok(())
}

/// Moves to Disconnected and schedules the next attempt; a connection that
/// was up starts over from the shortest delay.
fn disconnect(conn: &mut Conn<Client>, app: &mut App, problem: Problem, was_up: bool) -> Instant {
    if was_up || matches!(conn, Conn::Connected(_)) {
        *conn = Conn::disconnected();
    }
    let Conn::Disconnected { backoff, dialing } = conn else {
        return Instant::now();
    };
    *dialing = false;
    let delay = backoff.next_delay();
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    app.on_disconnected(
        problem,
        backoff.attempts(),
        now_ms().saturating_add(delay_ms),
    );
    Instant::now() + delay
}

async fn next_frame(
    stream: &mut Option<Streaming<v1::Frame>>,
) -> Option<Result<v1::Frame, tonic::Status>> {
    match stream {
        Some(s) => s.message().await.transpose(),
        None => std::future::pending().await,
    }
}

/// Connects, subscribes and reads the thresholds in a task of its own.
fn dial(socket: PathBuf, tx: mpsc::Sender<Msg>) {
    tokio::spawn(async move {
        let msg = match tokio::time::timeout(RPC_TIMEOUT, connect(&socket)).await {
            Ok(Ok(m)) => m,
            Ok(Err(problem)) => Msg::ConnectFailed(problem),
            Err(_) => Msg::ConnectFailed(Problem::Other(format!(
                "no answer from '{}' within {}s",
                socket.display(),
                RPC_TIMEOUT.as_secs()
            ))),
        };
        let _ = tx.send(msg).await;
    });
}

async fn connect(socket: &Path) -> Result<Msg, Problem> {
    let mut client = netmon_proto::connect(socket)
        .await
        .map_err(|e| problem_of(&e))?;
    let stream = client
        .subscribe(v1::SubscribeRequest { every_ticks: 1 })
        .await
        .map_err(|s| problem_of_status(&s))?
        .into_inner();
    let thresholds = client
        .list_thresholds(v1::ListThresholdsRequest {})
        .await
        .ok()
        .map(tonic::Response::into_inner);
    Ok(Msg::Connected(Box::new(Connected {
        client,
        stream,
        thresholds,
    })))
}

fn perform(effects: Vec<Effect>, conn: &Conn<Client>, tx: &mpsc::Sender<Msg>) {
    let Some(client) = conn.client() else {
        return;
    };
    for effect in effects {
        let client = client.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Ok(msg) = tokio::time::timeout(RPC_TIMEOUT, execute(effect, client)).await {
                let _ = tx.send(msg).await;
            }
        });
    }
}

async fn execute(effect: Effect, mut c: Client) -> Msg {
    let control = |what: &str, r: Result<tonic::Response<v1::ControlReply>, tonic::Status>| match r
    {
        Ok(reply) => {
            let reply = reply.into_inner();
            let text = if reply.changed || reply.message.is_empty() {
                what.to_owned()
            } else {
                reply.message
            };
            Msg::Feedback(text, false)
        }
        Err(s) => Msg::Feedback(refusal(&s), true),
    };
    match effect {
        Effect::Start => control(
            "monitoring started",
            c.start_monitoring(v1::StartRequest::default()).await,
        ),
        Effect::Stop => control(
            "monitoring stopped",
            c.stop_monitoring(v1::StopRequest {}).await,
        ),
        Effect::Reset => control("live totals reset", c.reset(v1::ResetRequest {}).await),
        Effect::SetThreshold(value) => {
            let req = v1::SetThresholdRequest {
                kind: v1::ThresholdKind::ProcessRate as i32,
                direction: v1::Direction::Total as i32,
                value,
                process_name: String::new(),
                pid: 0,
            };
            match c.set_threshold(req).await {
                Ok(_) => match c.list_thresholds(v1::ListThresholdsRequest {}).await {
                    Ok(list) => Msg::Thresholds(list.into_inner()),
                    Err(_) => {
                        Msg::Feedback(format!("threshold set to {}", format_rate(value)), false)
                    }
                },
                Err(s) => Msg::Feedback(refusal(&s), true),
            }
        }
        Effect::ClearThreshold => {
            let req = v1::ClearThresholdsRequest {
                default_rule: true,
                kind: v1::ThresholdKind::ProcessRate as i32,
                ..Default::default()
            };
            cleared(&mut c, req, "default threshold cleared".to_owned()).await
        }
        Effect::SetProcessThreshold { name, value } => {
            let req = v1::SetThresholdRequest {
                kind: v1::ThresholdKind::ProcessRate as i32,
                direction: v1::Direction::Total as i32,
                value,
                process_name: name.clone(),
                pid: 0,
            };
            match c.set_threshold(req).await {
                Ok(_) => {
                    refreshed(
                        &mut c,
                        format!("threshold of '{name}' set to {}", format_rate(value)),
                    )
                    .await
                }
                Err(s) => Msg::Feedback(refusal(&s), true),
            }
        }
        Effect::ClearProcessThreshold(name) => {
            let req = v1::ClearThresholdsRequest {
                process_name: name.clone(),
                kind: v1::ThresholdKind::ProcessRate as i32,
                ..Default::default()
            };
            cleared(&mut c, req, format!("threshold of '{name}' cleared")).await
        }
        Effect::Reload => match c.reload(v1::ReloadRequest {}).await {
            Ok(r) => {
                let r = r.into_inner();
                let text = if r.message.is_empty() {
                    "configuration reloaded".to_owned()
                } else {
                    format!("reloaded: {}", r.message)
                };
                Msg::Feedback(text, false)
            }
            Err(s) => Msg::Feedback(refusal(&s), true),
        },
        Effect::FetchThresholds => match c.list_thresholds(v1::ListThresholdsRequest {}).await {
            Ok(list) => Msg::Thresholds(list.into_inner()),
            Err(s) => Msg::Feedback(format!("cannot read thresholds: {}", s.message()), true),
        },
        Effect::FetchConnections(pid) => {
            let req = v1::ListConnectionsRequest {
                limit: 500,
                pid: pid.unwrap_or(0),
            };
            let result = c
                .list_connections(req)
                .await
                .map(|r| r.into_inner().connections)
                .map_err(|s| s.message().to_owned());
            Msg::Connections { pid, result }
        }
        Effect::FetchProcessHosts(name) => {
            let now = now_ms();
            let result = c
                .report(v1::ReportRequest {
                    since_ms: now - now.rem_euclid(86_400_000),
                    group_by: v1::GroupBy::Host as i32,
                    limit: DETAIL_HISTORY_HOSTS,
                    process: name.clone(),
                    ..Default::default()
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| s.message().to_owned());
            Msg::ProcessHosts { name, result }
        }
        Effect::FetchHistory(query) => {
            let zone = crate::units::zone();
            let now = now_ms();
            let (_, _, until) = zone.day_at(now, query.day_offset);
            let (_, since, _) = zone.day_at(now, query.day_offset - query.span.days() + 1);
            let every = match query.span {
                crate::app::HistorySpan::Day => v1::ReportEvery::Hour,
                _ => v1::ReportEvery::Day,
            };
            let request =
                |group_by: v1::GroupBy, limit: u32, every: v1::ReportEvery| v1::ReportRequest {
                    since_ms: since,
                    until_ms: until,
                    group_by: group_by as i32,
                    limit,
                    every: every as i32,
                    time_zone: zone.name().to_owned(),
                    ..Default::default()
                };
            let ask = |req: v1::ReportRequest| {
                let mut c = c.clone();
                async move {
                    c.report(req)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| s.message().to_owned())
                }
            };
            let report = ask(request(
                v1::GroupBy::Process,
                50,
                v1::ReportEvery::Unspecified,
            ))
            .await;
            let hosts = ask(request(v1::GroupBy::Host, 20, v1::ReportEvery::Unspecified)).await;
            // Only the periods' totals are drawn: one row a period is enough.
            // One program's periods come from its host history.
            let hourly = match &query.program {
                None => ask(request(v1::GroupBy::Process, 1, every)).await,
                Some(name) => {
                    let mut req = request(v1::GroupBy::Host, 1, every);
                    req.process = name.clone();
                    ask(req).await
                }
            };
            let alerts = c
                .list_alerts(v1::ListAlertsRequest {
                    since_ms: since,
                    limit: 100,
                })
                .await
                .map(|r| {
                    let mut alerts = r.into_inner().alerts;
                    alerts.retain(|a| a.started_ms < until);
                    alerts
                })
                .map_err(|s| s.message().to_owned());
            Msg::History(Box::new(crate::app::History {
                query,
                report: Some(report),
                hosts: Some(hosts),
                hourly: Some(hourly),
                alerts: Some(alerts),
            }))
        }
    }
}

/// Clears rules, then re-reads them so the status bar shows what is in force.
async fn cleared(c: &mut Client, req: v1::ClearThresholdsRequest, done: String) -> Msg {
    match c.clear_thresholds(req).await {
        Ok(r) if r.get_ref().removed == 0 => Msg::Feedback("no such threshold".to_owned(), false),
        Ok(_) => refreshed(c, done).await,
        Err(s) => Msg::Feedback(refusal(&s), true),
    }
}

/// After a change: the new rule list (the feedback is the list itself).
async fn refreshed(c: &mut Client, done: String) -> Msg {
    match c.list_thresholds(v1::ListThresholdsRequest {}).await {
        Ok(list) => Msg::Both(list.into_inner(), done),
        Err(_) => Msg::Feedback(done, false),
    }
}

fn refusal(s: &tonic::Status) -> String {
    match s.code() {
        tonic::Code::PermissionDenied => format!("not allowed: {}", s.message()),
        _ => format!("netmond refused: {}", s.message()),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
