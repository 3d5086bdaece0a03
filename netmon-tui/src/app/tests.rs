//! State tests of the app: actions, frames, selection, history and thresholds.

use super::fixtures::*;
use super::*;

fn app() -> App {
    let mut a = App::new(PathBuf::from("/run/netmon/netmond.sock"), true);
    a.on_frame(frame(1));
    a
}

fn names(a: &App) -> Vec<String> {
    a.visible()
        .iter()
        .map(|p| p.process.clone().unwrap_or_default().name)
        .collect()
}

#[test]
fn sorts_by_upload_rate_by_default_then_by_any_column() {
    let mut a = app();
    assert_eq!(names(&a)[..3], ["python3", "firefox", "syncthing"]);
    a.apply(Action::SortBy(SortColumn::Name));
    assert_eq!(names(&a)[0], "curl");
    assert!(!a.descending);
    a.apply(Action::SortBy(SortColumn::Name));
    assert_eq!(names(&a)[0], "systemd-resolved");
    a.apply(Action::SortBy(SortColumn::TotalDown));
    assert_eq!(names(&a)[0], "firefox");
    a.apply(Action::SortBy(SortColumn::Pid));
    assert_eq!(names(&a)[0], "systemd-resolved");
}

#[test]
fn sort_order_survives_new_frames() {
    let mut a = app();
    a.apply(Action::SortBy(SortColumn::Down));
    a.on_frame(frame(2));
    assert_eq!(names(&a)[0], "firefox");
}

#[test]
fn filter_matches_names_case_insensitively() {
    let mut a = app();
    a.apply(Action::StartFilter);
    assert!(a.filtering);
    for c in "SY".chars() {
        a.apply(Action::FilterChar(c));
    }
    assert_eq!(names(&a), ["syncthing", "systemd-resolved"]);
    a.apply(Action::FilterBackspace);
    a.apply(Action::FilterChar('s'));
    a.apply(Action::FilterChar('h'));
    assert_eq!(names(&a), ["ssh"]);
    assert_eq!(
        a.selected_pid,
        Some(3310),
        "selection moves into the filtered set"
    );
    a.apply(Action::FilterDone);
    assert!(!a.filtering);
    assert_eq!(a.filter, "Ssh");
    a.apply(Action::Back);
    assert_eq!(a.visible().len(), 6);
}

#[test]
fn selection_follows_the_same_pid_across_updates() {
    let mut a = app();
    a.apply(Action::Down);
    a.apply(Action::Down);
    assert_eq!(a.selected_pid, Some(9001));
    // Next frame: syncthing becomes the busiest and moves to the top.
    let mut f = frame(2);
    for p in &mut f.processes {
        if pid_of(p) == 9001 {
            if let Some(t) = p.traffic.as_mut() {
                t.up_bps = 50_000_000;
            }
        }
    }
    a.on_frame(f);
    assert_eq!(a.selected_pid, Some(9001));
    assert_eq!(a.selected_index(), Some(0));
    // It disappears: the row at the same position is selected instead.
    let mut f = frame(3);
    f.processes.retain(|p| pid_of(p) != 9001);
    a.on_frame(f);
    assert_eq!(a.selected_index(), Some(0));
    assert_eq!(a.selected_pid, Some(877));
}

#[test]
fn selection_is_clamped_at_both_ends() {
    let mut a = app();
    a.apply(Action::Up);
    assert_eq!(a.selected_index(), Some(0));
    for _ in 0..20 {
        a.apply(Action::Down);
    }
    assert_eq!(a.selected_index(), Some(5));
    a.apply(Action::Top);
    assert_eq!(a.selected_index(), Some(0));
    a.apply(Action::Bottom);
    assert_eq!(a.selected_index(), Some(5));
}

#[test]
fn rows_over_threshold_are_marked_from_the_frame() {
    let a = app();
    let over: Vec<u32> = a
        .visible()
        .iter()
        .filter(|p| p.over_threshold)
        .map(|p| pid_of(p))
        .collect();
    assert_eq!(over, [877, 1201]);
}

#[test]
fn threshold_presets_cycle_and_wrap() {
    let p = DEFAULT_PRESETS;
    assert_eq!(next_preset(&p, None), Some(512 * 1024));
    assert_eq!(next_preset(&p, Some(512 * 1024)), Some(1 << 20));
    assert_eq!(next_preset(&p, Some(1 << 20)), Some(2 << 20));
    assert_eq!(next_preset(&p, Some(5 << 20)), Some(10 << 20));
    assert_eq!(next_preset(&p, Some(10 << 20)), Some(512 * 1024));
    assert_eq!(
        next_preset(&p, Some(3 << 20)),
        Some(5 << 20),
        "off-preset value"
    );
    assert_eq!(next_preset(&[], Some(1)), None);
    let mut a = app();
    a.on_thresholds(&v1::ThresholdList {
        thresholds: vec![v1::Threshold {
            kind: v1::ThresholdKind::ProcessRate as i32,
            value: 2 << 20,
            ..Default::default()
        }],
        presets: vec![100, 2 << 20, 3 << 20],
    });
    assert_eq!(a.threshold_bps, Some(2 << 20));
    assert_eq!(
        a.apply(Action::CycleThreshold),
        [Effect::SetThreshold(3 << 20)]
    );
}

#[test]
fn control_keys_ask_for_rpcs_only_when_connected() {
    let mut a = App::new(PathBuf::from("/x"), true);
    assert!(a.apply(Action::ToggleMonitoring).is_empty());
    assert!(a.message.is_some());
    let mut a = app();
    assert_eq!(a.apply(Action::ToggleMonitoring), [Effect::Stop]);
    a.frame.monitoring = false;
    assert_eq!(a.apply(Action::ToggleMonitoring), [Effect::Start]);
    assert_eq!(a.apply(Action::Reset), [Effect::Reset]);
}

#[test]
fn enter_opens_the_detail_of_the_selected_process() {
    let mut a = app();
    assert_eq!(
        a.apply(Action::Open),
        [
            Effect::FetchConnections(Some(877)),
            Effect::FetchProcessHosts("python3".into())
        ]
    );
    a.on_connections(Some(877), Ok(connections()));
    // A late answer for another program is not this detail's.
    a.on_process_hosts("curl", Ok(v1::ReportReply::default()));
    assert!(a.detail.as_ref().is_some_and(|d| d.hosts_history.is_none()));
    a.on_process_hosts("python3", Ok(v1::ReportReply::default()));
    assert!(a.detail.as_ref().is_some_and(|d| d.hosts_history.is_some()));
    let hosts = a.detail_hosts();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0].name, "example.com");
    assert_eq!(hosts[0].connections, 2);
    a.apply(Action::Back);
    assert!(a.detail.is_none());
}

#[test]
fn tab_cycles_views_and_asks_for_their_data() {
    let mut a = app();
    assert_eq!(a.apply(Action::NextView), [Effect::FetchConnections(None)]);
    assert!(a.apply(Action::NextView).is_empty());
    assert!(a.apply(Action::NextView).is_empty());
    assert_eq!(a.view, View::Packets);
    a.apply(Action::NextView);
    assert_eq!(
        a.apply(Action::NextView),
        [Effect::FetchHistory(HistoryQuery::default())]
    );
    a.apply(Action::NextView);
    assert_eq!(a.view, View::Processes);
    a.apply(Action::PrevView);
    assert_eq!(a.view, View::History);
    assert_eq!(
        a.periodic_effects(),
        [
            Effect::FetchHistory(HistoryQuery::default()),
            Effect::FetchThresholds
        ]
    );
}

#[test]
fn left_and_right_move_the_history_day_back_to_today_at_most() {
    let day = |day_offset| {
        vec![Effect::FetchHistory(HistoryQuery {
            day_offset,
            ..Default::default()
        })]
    };
    let mut a = app();
    assert!(a.apply(Action::PrevDay).is_empty(), "only in History");
    a.view = View::History;
    a.history.report = Some(Ok(v1::ReportReply::default()));
    assert_eq!(a.apply(Action::PrevDay), day(-1));
    assert_eq!(a.history.query.day_offset, -1);
    assert!(a.history.report.is_none(), "yesterday's is loading");
    assert_eq!(a.apply(Action::PrevDay), day(-2));
    assert_eq!(a.refresh_effects(), day(-2));
    assert_eq!(a.apply(Action::NextDay), day(-1));
    assert_eq!(a.apply(Action::NextDay), day(0));
    assert!(a.apply(Action::NextDay).is_empty(), "no day after today");
    a.history.query.day_offset = -HISTORY_MAX_DAYS_BACK;
    assert!(
        a.apply(Action::PrevDay).is_empty(),
        "no further back than a year"
    );
}

#[test]
fn history_spans_cycle_and_enter_charts_the_selected_process() {
    let mut a = app();
    a.view = View::History;
    let q = |span, program: Option<&str>| {
        vec![Effect::FetchHistory(HistoryQuery {
            day_offset: 0,
            span,
            program: program.map(str::to_owned),
        })]
    };
    assert_eq!(a.apply(Action::CycleSpan), q(HistorySpan::Week, None));
    assert_eq!(a.apply(Action::CycleSpan), q(HistorySpan::Month, None));
    assert_eq!(a.apply(Action::CycleSpan), q(HistorySpan::Day, None));
    // Nothing listed yet: Enter has no process to chart.
    assert!(a.apply(Action::Open).is_empty());
    let row = |key: &str| v1::ReportRow {
        key: key.into(),
        ..Default::default()
    };
    a.history.report = Some(Ok(v1::ReportReply {
        rows: vec![row("firefox"), row("curl")],
        ..Default::default()
    }));
    a.apply(Action::Down);
    assert_eq!(a.apply(Action::Open), q(HistorySpan::Day, Some("curl")));
    assert!(a.history.report.is_some(), "the same day's tables stay");
    assert_eq!(a.cursor, 1);
    assert_eq!(a.apply(Action::Back), q(HistorySpan::Day, None));
    assert!(a.apply(Action::Back).is_empty());
}

#[test]
fn alerts_accumulate_and_update_by_id() {
    let mut a = app();
    assert_eq!(a.alerts.len(), 1);
    let mut f = frame(2);
    let mut closed = frame(1).alerts[0].clone();
    closed.state = v1::AlertState::Closed as i32;
    f.alerts = vec![closed];
    a.on_frame(f);
    assert_eq!(a.alerts.len(), 1);
    assert_eq!(a.alerts[0].state, v1::AlertState::Closed as i32);
}

#[test]
fn charts_are_bounded_rings() {
    let mut a = app();
    for s in 0..(CHART_SAMPLES as u64 + 50) {
        a.on_frame(frame(s));
    }
    assert_eq!(a.chart.len(), CHART_SAMPLES);
    assert_eq!(a.process_chart[&877].len(), PROCESS_SAMPLES);
}

#[test]
fn help_closes_on_any_key() {
    let mut a = app();
    a.apply(Action::ToggleHelp);
    assert!(a.help);
    assert!(a.apply(Action::ToggleMonitoring).is_empty());
    assert!(!a.help);
}

fn typed(a: &mut App, text: &str) -> Vec<Effect> {
    for c in text.chars() {
        a.apply(Action::PromptChar(c));
    }
    a.apply(Action::PromptDone)
}

#[test]
fn typed_threshold_accepts_netmonctl_rates_and_keeps_errors_open() {
    let mut a = app();
    a.apply(Action::EnterThreshold);
    assert!(a.prompt.is_some());
    assert_eq!(typed(&mut a, "20Mbit/s"), [Effect::SetThreshold(2_500_000)]);
    assert!(a.prompt.is_none());

    a.apply(Action::EnterThreshold);
    assert!(typed(&mut a, "fast").is_empty(), "bad rate: no RPC");
    let p = a.prompt.clone().expect("still open");
    assert!(
        p.error.as_deref().is_some_and(|e| e.contains("'fast'")),
        "{p:?}"
    );
    a.apply(Action::PromptBackspace);
    assert_eq!(a.prompt.as_ref().and_then(|p| p.error.clone()), None);
    a.apply(Action::PromptCancel);
    assert!(a.prompt.is_none());

    a.apply(Action::EnterThreshold);
    assert!(typed(&mut a, "0").is_empty(), "zero is refused");
    a.apply(Action::PromptCancel);
    a.apply(Action::EnterThreshold);
    assert_eq!(typed(&mut a, ""), [Effect::ClearThreshold]);
    a.apply(Action::EnterThreshold);
    assert_eq!(typed(&mut a, "500KB/s"), [Effect::SetThreshold(500_000)]);
}

#[test]
fn program_threshold_comes_from_the_selected_row() {
    let mut a = app();
    a.apply(Action::Down);
    let name = a
        .selected_process()
        .and_then(|p| p.process.clone())
        .map(|p| p.name)
        .expect("selected");
    a.apply(Action::EnterProcessThreshold);
    assert_eq!(
        typed(&mut a, "1MiB/s"),
        [Effect::SetProcessThreshold {
            name: name.clone(),
            value: 1 << 20
        }]
    );
    assert_eq!(
        a.apply(Action::ClearProcessThreshold),
        [Effect::ClearProcessThreshold(name)]
    );
    // Outside the process list there is no row to take a name from.
    a.apply(Action::NextView);
    assert!(a.apply(Action::EnterProcessThreshold).is_empty());
    assert!(a.prompt.is_none());
}

#[test]
fn control_needs_a_connection() {
    let mut a = App::new(PathBuf::from("/x"), false);
    assert!(a.apply(Action::Reload).is_empty());
    assert!(a.apply(Action::EnterThreshold).is_empty());
    assert!(a.prompt.is_none());
    assert!(a.message.as_ref().is_some_and(|m| m.1));
    let mut a = app();
    assert_eq!(a.apply(Action::Reload), [Effect::Reload]);
}

#[test]
fn pause_freezes_the_display_and_replays_held_frames() {
    let mut a = app();
    let chart = a.chart.len();
    a.apply(Action::TogglePause);
    let mut f = frame(2);
    f.processes.retain(|p| pid_of(p) == 877);
    a.on_frame(f);
    a.on_frame(frame(3));
    assert_eq!(a.frame.seq, 1, "display frozen");
    assert_eq!(a.processes.len(), 6);
    assert_eq!(a.chart.len(), chart);
    assert_eq!(a.held.len(), 2, "frames still read");
    a.apply(Action::TogglePause);
    assert_eq!(a.frame.seq, 3);
    assert_eq!(a.chart.len(), chart + 2, "no gap in the charts");
    assert!(a.held.is_empty());
    a.apply(Action::TogglePause);
    for s in 0..(HELD_FRAMES as u64 + 10) {
        a.on_frame(frame(s));
    }
    assert_eq!(a.held.len(), HELD_FRAMES, "held frames are bounded");
}

#[test]
fn o_cycles_the_sort_like_netmonctl() {
    let mut a = app();
    assert_eq!(a.sort, SortColumn::Up);
    let mut seen = Vec::new();
    for _ in 0..4 {
        a.apply(Action::CycleSort);
        seen.push(a.sort);
    }
    assert_eq!(
        seen,
        [
            SortColumn::Down,
            SortColumn::Total,
            SortColumn::Name,
            SortColumn::Up
        ]
    );
    a.apply(Action::CycleSort);
    a.apply(Action::CycleSort);
    // firefox: 300 kB/s up + 2.5 MB/s down is the largest sum.
    assert_eq!(names(&a)[0], "firefox");
}

#[test]
fn packet_and_interface_series_follow_frames() {
    let mut a = app();
    a.on_frame(frame(2));
    assert_eq!(a.protocol_series.len(), 2);
    assert_eq!(a.protocol_series.last("tcp"), 2_400 + 2 * 150);
    let s = a.interface_samples("eth0");
    assert_eq!(s.len(), 2);
    assert_eq!(s[1], (1_800_000, 2_600_000));
    assert!(a.interface_samples("wlan0").iter().all(|&v| v == (0, 0)));
}

#[test]
fn program_thresholds_are_read_from_the_rule_list() {
    let mut a = app();
    let rule = |name: &str, value| v1::Threshold {
        kind: v1::ThresholdKind::ProcessRate as i32,
        process_name: name.to_owned(),
        value,
        ..Default::default()
    };
    a.on_thresholds(&v1::ThresholdList {
        thresholds: vec![rule("", 1000), rule("curl", 2000)],
        presets: Vec::new(),
    });
    assert_eq!(a.threshold_bps, Some(1000));
    assert_eq!(a.process_thresholds.get("curl"), Some(&2000));
    assert_eq!(a.selected_program_threshold(), None);
    while a
        .selected_process()
        .and_then(|p| p.process.clone())
        .map(|p| p.name)
        != Some("curl".to_owned())
    {
        a.apply(Action::Down);
    }
    assert_eq!(
        a.selected_program_threshold(),
        Some(("curl".to_owned(), 2000))
    );
}
