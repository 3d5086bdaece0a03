//! Evaluator tests: hysteresis, peaks, rule precedence, host rate, daily
//! quotas, new-process notices, with injected time and hand-built rows.

use super::*;

const T0: i64 = 1_763_700_000_000; // 2025-11-21T04:40:00Z
const SEC: i64 = 1000;

fn row(pid: u32, name: &str, up_bps: u64, down_bps: u64) -> v1::ProcessRow {
    v1::ProcessRow {
        process: Some(v1::ProcessIdentity {
            pid,
            start_time: u64::from(pid) * 10,
            name: name.into(),
            exe: format!("/usr/bin/{name}"),
            ..Default::default()
        }),
        traffic: Some(v1::Traffic {
            up_bps,
            down_bps,
            ..Default::default()
        }),
        alive: true,
        ..Default::default()
    }
}

fn with_totals(mut r: v1::ProcessRow, up_bytes: u64, down_bytes: u64) -> v1::ProcessRow {
    let t = r.traffic.get_or_insert_with(Default::default);
    t.up_bytes = up_bytes;
    t.down_bytes = down_bytes;
    r
}

fn eval() -> Evaluator {
    Evaluator::new(Settings::default(), &ConfigRules::default(), T0)
}

fn set(e: &mut Evaluator, kind: ThresholdKind, d: Direction, value: u64, name: &str, pid: u32) {
    e.set(
        v1::SetThresholdRequest {
            kind: kind as i32,
            direction: d as i32,
            value,
            process_name: name.into(),
            pid,
        },
        u64::from(pid) * 10,
        T0,
    )
    .expect("valid rule");
}

/// Runs `rates` (one up rate per tick) for one process, collecting alerts.
fn run(e: &mut Evaluator, rates: &[u64], start: i64) -> Vec<v1::Alert> {
    let mut all = Vec::new();
    for (i, &r) in rates.iter().enumerate() {
        let mut rows = vec![row(100, "curl", r, 0)];
        let out = e.evaluate(&mut rows, &v1::Traffic::default(), start + i as i64 * SEC);
        all.extend(out.alerts);
    }
    all
}

fn state(a: &v1::Alert) -> v1::AlertState {
    v1::AlertState::try_from(a.state).unwrap()
}

#[test]
fn sustained_spike_opens_exactly_one_alert_and_closes_after_the_quiet_ticks() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "",
        0,
    );
    let alerts = run(
        &mut e,
        &[0, 2000, 5000, 3000, 4000, 2500, 10, 10, 10, 10],
        T0,
    );
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    let (open, closed) = (&alerts[0], &alerts[1]);
    assert_eq!(state(open), v1::AlertState::Open);
    assert_eq!(open.started_ms, T0 + SEC, "starts when the run above began");
    assert_eq!(open.value, 3000, "the value of the tick that opened it");
    assert_eq!(open.peak, 5000);
    assert_eq!(state(closed), v1::AlertState::Closed);
    assert_eq!(closed.id, open.id);
    assert_eq!(closed.peak, 5000);
    assert_eq!(closed.ended_ms, T0 + 8 * SEC, "third tick below");
    // The default rule judges the program: named, pid-less, its pids listed.
    let p = closed.process.as_ref().unwrap();
    assert_eq!((p.pid, p.name.as_str()), (0, "curl"));
    assert_eq!(closed.pids, [100]);
    assert_eq!(closed.pids_seen, 1);
    assert_eq!(closed.threshold, 1000);
    assert!(e.open_alerts().is_empty());
}

#[test]
fn peak_is_tracked_while_open() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "",
        0,
    );
    let alerts = run(&mut e, &[2000, 2000, 2000, 9000, 2000, 0, 0, 0], T0);
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].peak, 2000);
    assert_eq!(alerts[1].peak, 9000);
}

#[test]
fn blip_shorter_than_open_after_ticks_raises_nothing() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "",
        0,
    );
    let alerts = run(&mut e, &[5000, 5000, 0, 5000, 0, 5000, 5000, 0, 0], T0);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn a_dip_shorter_than_close_after_ticks_keeps_the_alert_open() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "",
        0,
    );
    let alerts = run(&mut e, &[5000, 5000, 5000, 0, 0, 5000, 0, 0, 5000], T0);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(e.open_alerts().len(), 1);
}

#[test]
fn rows_show_the_threshold_in_force_and_whether_they_are_over() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Total,
        1000,
        "",
        0,
    );
    let mut rows = vec![row(1, "a", 600, 600), row(2, "b", 10, 10)];
    e.evaluate(&mut rows, &v1::Traffic::default(), T0);
    assert!(rows[0].over_threshold && rows[0].threshold_bps == 1000);
    assert!(!rows[1].over_threshold && rows[1].threshold_bps == 1000);
}

#[test]
fn pid_override_beats_name_beats_default() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Total,
        1000,
        "",
        0,
    );
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Total,
        5000,
        "curl",
        0,
    );
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Total,
        20_000,
        "",
        7,
    );
    let mut all = Vec::new();
    for i in 0..5 {
        // 3000: over the default only; 8000: over default and name; pid 7 under its own.
        let mut rows = vec![
            row(5, "wget", 3000, 0),
            row(6, "curl", 3000, 0),
            row(8, "curl", 8000, 0),
            row(7, "curl", 15_000, 0),
        ];
        all.extend(
            e.evaluate(&mut rows, &v1::Traffic::default(), T0 + i * SEC)
                .alerts,
        );
        assert_eq!(
            rows.iter().map(|r| r.threshold_bps).collect::<Vec<_>>(),
            [1000, 5000, 5000, 20_000]
        );
    }
    // Two program alerts: wget by the default, curl by its name rule over
    // the sum of its processes (pid 7's rule judges pid 7 alone, and it
    // stays under it); no alert for pid 7 itself.
    assert_eq!(all.len(), 2, "{all:#?}");
    let by_name = |n: &str| {
        all.iter()
            .find(|a| a.process.as_ref().unwrap().name == n)
            .unwrap_or_else(|| panic!("no alert for {n}: {all:#?}"))
    };
    let wget = by_name("wget");
    assert_eq!((wget.threshold, wget.value), (1000, 3000));
    assert_eq!(wget.pids, [5]);
    let curl = by_name("curl");
    assert_eq!((curl.threshold, curl.value), (5000, 26_000));
    assert_eq!(curl.pids, [6, 7, 8]);
    assert!(all.iter().all(|a| a.process.as_ref().unwrap().pid == 0));
}

#[test]
fn api_rule_overrides_the_config_default_with_the_same_selector() {
    let cfg = ConfigRules {
        default_process_rate: Some(1000),
        ..Default::default()
    };
    let mut e = Evaluator::new(Settings::default(), &cfg, T0);
    assert_eq!(e.thresholds()[0].source, "config");
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Total,
        50_000,
        "",
        0,
    );
    let alerts = run(&mut e, &[10_000; 5], T0);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn config_rules_cannot_be_cleared_over_the_api() {
    let cfg = ConfigRules {
        host_rate: Some(1000),
        ..Default::default()
    };
    let mut e = Evaluator::new(Settings::default(), &cfg, T0);
    set(&mut e, ThresholdKind::ProcessRate, Direction::Up, 5, "x", 0);
    let all = v1::ClearThresholdsRequest {
        all: true,
        ..Default::default()
    };
    assert_eq!(e.clear(&all).unwrap(), 1);
    assert_eq!(e.thresholds().len(), 1);
    let by_id = v1::ClearThresholdsRequest {
        id: e.thresholds()[0].id,
        ..Default::default()
    };
    assert!(e.clear(&by_id).is_err());
}

#[test]
fn host_rate_alert_uses_the_totals() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::HostRate,
        Direction::Down,
        10_000,
        "",
        0,
    );
    let mut alerts = Vec::new();
    for (i, down) in [20_000, 30_000, 25_000, 0, 0, 0].into_iter().enumerate() {
        let totals = v1::Traffic {
            down_bps: down,
            up_bps: 99_999,
            ..Default::default()
        };
        alerts.extend(e.evaluate(&mut [], &totals, T0 + i as i64 * SEC).alerts);
    }
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(alerts[0].kind, ThresholdKind::HostRate as i32);
    assert!(alerts[0].process.is_none());
    assert_eq!(alerts[1].peak, 30_000);
}

#[test]
fn daily_quota_fires_once_when_crossed_and_resets_the_next_day() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::DailyQuota,
        Direction::Total,
        1000,
        "",
        0,
    );
    // apt may move a lot: an override with a huge value.
    set(
        &mut e,
        ThresholdKind::DailyQuota,
        Direction::Total,
        u64::MAX / 4,
        "apt",
        0,
    );
    let day0 = T0 - T0.rem_euclid(DAY_MS);
    let tick = |e: &mut Evaluator, t: i64, rows: &mut Vec<v1::ProcessRow>| {
        e.evaluate(rows, &v1::Traffic::default(), t).alerts
    };
    // Two curl processes share the name's quota; totals are cumulative.
    let mut a = Vec::new();
    a.extend(tick(
        &mut e,
        day0 + 10 * SEC,
        &mut vec![
            with_totals(row(1, "curl", 0, 0), 300, 0),
            with_totals(row(9, "apt", 0, 0), 1 << 30, 0),
        ],
    ));
    assert!(a.is_empty());
    a.extend(tick(
        &mut e,
        day0 + 11 * SEC,
        &mut vec![
            with_totals(row(1, "curl", 0, 0), 600, 0),
            with_totals(row(2, "curl", 0, 0), 0, 300),
        ],
    ));
    assert!(a.is_empty(), "900 bytes is under 1000: {a:#?}");
    let mut rows = vec![
        with_totals(row(1, "curl", 0, 0), 700, 0),
        with_totals(row(2, "curl", 0, 0), 0, 400),
    ];
    a.extend(tick(&mut e, day0 + 12 * SEC, &mut rows));
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].kind, ThresholdKind::DailyQuota as i32);
    assert_eq!(a[0].value, 1100);
    assert_eq!(a[0].process.as_ref().unwrap().name, "curl");
    assert!(rows.iter().all(|r| r.over_threshold));
    // More bytes the same day: no second alert.
    for i in 13..20 {
        let n = 700 + i as u64 * 100;
        let got = tick(
            &mut e,
            day0 + i * SEC,
            &mut vec![with_totals(row(1, "curl", 0, 0), n, 0)],
        );
        assert!(got.is_empty(), "{got:#?}");
    }
    // Midnight UTC: the alert closes and the count starts again.
    let next = day0 + DAY_MS + SEC;
    let got = tick(
        &mut e,
        next,
        &mut vec![with_totals(row(1, "curl", 0, 0), 2700, 0)],
    );
    assert_eq!(got.len(), 1);
    assert_eq!(state(&got[0]), v1::AlertState::Closed);
    assert_eq!(got[0].ended_ms, day0 + DAY_MS);
    // 2700 - 2600 = 100 bytes today.
    let got = tick(
        &mut e,
        next + SEC,
        &mut vec![with_totals(row(1, "curl", 0, 0), 3500, 0)],
    );
    assert!(got.is_empty(), "{got:#?}");
    let got = tick(
        &mut e,
        next + 2 * SEC,
        &mut vec![with_totals(row(1, "curl", 0, 0), 3700, 0)],
    );
    assert_eq!(got.len(), 1, "crossed again on the new day: {got:#?}");
}

#[test]
fn daily_quota_resets_at_local_midnight_not_utc() {
    let tokyo = netmon_proto::zone::Zone::named("Asia/Tokyo").expect("tzdata");
    let mut e = eval();
    e.set_zone(tokyo.clone());
    set(
        &mut e,
        ThresholdKind::DailyQuota,
        Direction::Total,
        1000,
        "",
        0,
    );
    let tick = |e: &mut Evaluator, t: i64, total: u64| {
        let mut rows = vec![with_totals(row(1, "curl", 0, 0), total, 0)];
        e.evaluate(&mut rows, &v1::Traffic::default(), t).alerts
    };
    // Tokyo's midnight is 15:00 UTC.
    let midnight = tokyo.start_of_day(T0) + DAY_MS;
    assert_eq!(midnight.rem_euclid(DAY_MS), 15 * 3_600_000);
    let utc_midnight = T0 - T0.rem_euclid(DAY_MS) + DAY_MS;
    assert!(tick(&mut e, midnight - 10 * SEC, 0).is_empty());
    let got = tick(&mut e, midnight - 9 * SEC, 1500);
    assert_eq!(got.len(), 1, "{got:#?}");
    // Past midnight in Tokyo: closed at local midnight.
    let got = tick(&mut e, midnight + SEC, 1600);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(state(&got[0]), v1::AlertState::Closed);
    assert_eq!(got[0].ended_ms, midnight);
    assert!(got[0].message.contains("local time"), "{}", got[0].message);
    // UTC midnight nine hours later is not a new day in Tokyo: 100 + 1000
    // bytes since local midnight cross the quota again.
    assert!(tick(&mut e, utc_midnight - SEC, 1700).is_empty());
    let got = tick(&mut e, utc_midnight + SEC, 2700);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(state(&got[0]), v1::AlertState::Open);
}

#[test]
fn quota_counts_after_a_reset_of_the_totals() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::DailyQuota,
        Direction::Up,
        1000,
        "curl",
        0,
    );
    let day0 = T0 - T0.rem_euclid(DAY_MS);
    let t = |e: &mut Evaluator, i: i64, up: u64| {
        e.evaluate(
            &mut [with_totals(row(1, "curl", 0, 0), up, 0)],
            &v1::Traffic::default(),
            day0 + i * SEC,
        )
        .alerts
    };
    assert!(t(&mut e, 1, 800).is_empty());
    // `reset` zeroed the totals: 300 new bytes, 1100 today.
    assert_eq!(t(&mut e, 2, 300).len(), 1);
}

#[test]
fn new_process_notice_once_per_exe_and_remembered() {
    let cfg = ConfigRules {
        new_process_notice: true,
        ..Default::default()
    };
    let mut e = Evaluator::new(Settings::default(), &cfg, T0);
    let mut rows = vec![
        with_totals(row(1, "curl", 0, 0), 10, 0),
        with_totals(row(2, "sshd", 0, 0), 0, 50),
    ];
    let out = e.evaluate(&mut rows, &v1::Traffic::default(), T0);
    assert!(out.persist);
    assert_eq!(
        out.alerts.len(),
        1,
        "only a sender counts: {:#?}",
        out.alerts
    );
    assert_eq!(out.alerts[0].kind, ThresholdKind::NewProcess as i32);
    assert_eq!(state(&out.alerts[0]), v1::AlertState::Closed);
    assert!(out.alerts[0].message.contains("/usr/bin/curl"));
    // Another curl process: same executable, no notice.
    let mut rows = vec![with_totals(row(3, "curl", 0, 0), 10, 0)];
    let out = e.evaluate(&mut rows, &v1::Traffic::default(), T0 + SEC);
    assert!(out.alerts.is_empty() && !out.persist);
    // After a restart the seen set comes back with the rules.
    let mut e2 = Evaluator::new(Settings::default(), &cfg, T0);
    e2.restore(e.persisted(), |_, _| true);
    let out = e2.evaluate(&mut rows, &v1::Traffic::default(), T0 + 2 * SEC);
    assert!(out.alerts.is_empty());
}

#[test]
fn seen_set_is_bounded() {
    let mut e = eval();
    for i in 0..MAX_SEEN_EXES + 10 {
        e.remember(format!("/bin/{i}"));
    }
    assert_eq!(e.persisted().seen_exes.len(), MAX_SEEN_EXES);
    assert!(!e.seen.contains("/bin/0"));
}

#[test]
fn a_process_that_disappears_closes_its_alert() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "",
        0,
    );
    let opened = run(&mut e, &[5000, 5000, 5000], T0);
    assert_eq!(opened.len(), 1);
    let mut closed = Vec::new();
    for i in 3..6 {
        closed.extend(
            e.evaluate(&mut [], &v1::Traffic::default(), T0 + i * SEC)
                .alerts,
        );
    }
    assert_eq!(closed.len(), 1);
    assert_eq!(state(&closed[0]), v1::AlertState::Closed);
    assert_eq!(closed[0].process.as_ref().unwrap().name, "curl");
    assert_eq!(closed[0].pids, [100]);
}

/// One tick of a program whose processes each live one tick: pid `new`
/// moves `rate` down, the earlier ones are exited rows with no rate.
fn churn_rows(pids: &[u32], rate: u64) -> Vec<v1::ProcessRow> {
    let last = pids.len().saturating_sub(1);
    pids.iter()
        .enumerate()
        .map(|(i, &pid)| {
            let mut r = row(pid, "fetcher", 0, if i == last { rate } else { 0 });
            r.alive = i == last;
            r
        })
        .collect()
}

#[test]
fn a_program_of_short_lived_processes_is_judged_as_one_across_pid_churn() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Down,
        1000,
        "fetcher",
        0,
    );
    // A pid rule on one of the short processes judges that process alone.
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Down,
        1000,
        "",
        202,
    );
    let mut pids = Vec::new();
    let mut all = Vec::new();
    // Five ticks, a new process each (2000 B/s for its one tick), then quiet.
    for i in 0..9u32 {
        let rate = if i < 5 {
            pids.push(201 + i);
            2000
        } else {
            0
        };
        let mut rows = if rate > 0 {
            churn_rows(&pids, rate)
        } else {
            churn_rows(&pids, 0)
                .into_iter()
                .map(|mut r| {
                    r.alive = false;
                    r
                })
                .collect()
        };
        let out = e.evaluate(&mut rows, &v1::Traffic::default(), T0 + i64::from(i) * SEC);
        if i == 2 {
            let row = rows.iter().find(|r| r.alive).unwrap();
            assert!(row.over_threshold, "the live process's program is over");
            assert_eq!(row.threshold_bps, 1000);
        }
        all.extend(out.alerts);
    }
    assert_eq!(all.len(), 2, "one open, one close: {all:#?}");
    let (open, closed) = (&all[0], &all[1]);
    assert_eq!(state(open), v1::AlertState::Open);
    assert_eq!(open.started_ms, T0, "the run began with the first process");
    assert_eq!(open.pids, [201, 202, 203], "the pids of the run so far");
    assert_eq!(open.value, 2000);
    assert!(
        open.message.contains("fetcher (pids 201, 202, 203)"),
        "{}",
        open.message
    );
    assert_eq!(state(closed), v1::AlertState::Closed);
    assert_eq!(closed.id, open.id);
    assert_eq!(closed.pids, [201, 202, 203, 204, 205]);
    assert_eq!(closed.pids_seen, 5);
    assert_eq!(closed.ended_ms, T0 + 7 * SEC, "third quiet tick");
    assert!(
        all.iter().all(|a| a.process.as_ref().unwrap().pid == 0),
        "pid 202 never had 3 ticks above its own rule: {all:#?}"
    );
    assert!(e.open_alerts().is_empty());
}

#[test]
fn a_program_sums_its_processes_of_one_name_and_exe() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "",
        0,
    );
    let mut all = Vec::new();
    for i in 0..3 {
        let mut other_exe = row(3, "curl", 900, 0);
        other_exe.process.as_mut().unwrap().exe = "/usr/local/bin/curl".into();
        // Gone before /proc could be read: joins the program of its name.
        let mut no_exe = row(4, "curl", 100, 0);
        no_exe.process.as_mut().unwrap().exe.clear();
        let mut rows = vec![
            row(1, "curl", 600, 0),
            row(2, "curl", 600, 0),
            other_exe,
            no_exe,
            row(5, "wget", 900, 0),
        ];
        all.extend(
            e.evaluate(&mut rows, &v1::Traffic::default(), T0 + i * SEC)
                .alerts,
        );
        assert_eq!(
            rows.iter().map(|r| r.over_threshold).collect::<Vec<_>>(),
            [true, true, false, true, false]
        );
    }
    assert_eq!(all.len(), 1, "{all:#?}");
    let a = &all[0];
    assert_eq!(a.value, 1300);
    assert_eq!(a.pids, [1, 2, 4]);
    let p = a.process.as_ref().unwrap();
    assert_eq!((p.name.as_str(), p.exe.as_str()), ("curl", "/usr/bin/curl"));
}

#[test]
fn daily_quota_counts_the_exited_processes_of_the_program() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::DailyQuota,
        Direction::Down,
        10_000,
        "fetcher",
        0,
    );
    // Each process moves 3000 bytes in its one tick and stays as an exited row.
    let mut pids = Vec::new();
    let mut all = Vec::new();
    for i in 0..4u32 {
        pids.push(301 + i);
        let mut rows: Vec<v1::ProcessRow> = churn_rows(&pids, 3000)
            .into_iter()
            .map(|r| with_totals(r, 0, 3000))
            .collect();
        all.extend(
            e.evaluate(&mut rows, &v1::Traffic::default(), T0 + i64::from(i) * SEC)
                .alerts,
        );
    }
    assert_eq!(all.len(), 1, "crossed with the fourth process: {all:#?}");
    assert_eq!(all[0].value, 12_000);
}

#[test]
fn rule_validation() {
    let mut e = eval();
    let bad = [
        (ThresholdKind::ProcessRate, 0, "", 0),
        (ThresholdKind::ProcessRate, 5, "a", 3),
        (ThresholdKind::HostRate, 5, "a", 0),
        (ThresholdKind::DailyQuota, 5, "", 3),
        (ThresholdKind::NewProcess, 0, "a", 0),
    ];
    for (kind, value, name, pid) in bad {
        let req = v1::SetThresholdRequest {
            kind: kind as i32,
            direction: 0,
            value,
            process_name: name.into(),
            pid,
        };
        assert!(e.set(req, 0, T0).is_err(), "{kind:?} {value} {name} {pid}");
    }
    // Setting the same selector again replaces the rule.
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Down,
        5,
        "a",
        0,
    );
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Down,
        6,
        "a",
        0,
    );
    assert_eq!(e.thresholds().len(), 1);
    assert_eq!(e.thresholds()[0].value, 6);
}

#[test]
fn a_pid_rule_stays_with_its_process_not_the_pid() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "",
        100,
    );
    // The same pid, another process (another start time): not judged.
    let mut all = Vec::new();
    for i in 0..6 {
        let mut r = row(100, "curl", 50_000, 0);
        if let Some(p) = r.process.as_mut() {
            p.start_time = 7;
        }
        all.extend(
            e.evaluate(&mut [r], &v1::Traffic::default(), T0 + i * SEC)
                .alerts,
        );
    }
    assert!(all.is_empty(), "{all:#?}");
    // The process the rule was set for is.
    let all = run(&mut e, &[50_000; 6], T0 + 10 * SEC);
    assert!(!all.is_empty(), "the rule's own process is judged");
}

#[test]
fn restore_drops_pid_rules_whose_process_is_gone() {
    let mut e = eval();
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "",
        100,
    );
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "",
        200,
    );
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        1000,
        "curl",
        0,
    );
    let mut saved = e.persisted();
    // A rule saved before start times were kept cannot be matched safely.
    saved.thresholds[1].pid_start_time = 0;
    let mut e2 = eval();
    let dropped = e2.restore(saved, |pid, start| pid == 100 && start == 1000);
    assert_eq!(
        dropped.iter().map(|t| t.pid).collect::<Vec<_>>(),
        [200],
        "{dropped:?}"
    );
    let kept = e2.thresholds();
    assert!(kept
        .iter()
        .any(|t| t.pid == 100 && t.pid_start_time == 1000));
    assert!(kept.iter().any(|t| t.process_name == "curl"));
}

#[test]
fn rules_are_bounded_in_count_and_name() {
    let mut e = eval();
    let req = |name: String| v1::SetThresholdRequest {
        kind: ThresholdKind::ProcessRate as i32,
        direction: Direction::Up as i32,
        value: 5,
        process_name: name,
        pid: 0,
    };
    assert!(e.set(req("x".repeat(MAX_RULE_NAME + 1)), 0, T0).is_err());
    assert!(e.set(req("bad\nname".into()), 0, T0).is_err());
    for i in 0..MAX_API_RULES {
        e.set(req(format!("p{i}")), 0, T0).expect("under the cap");
    }
    let err = e.set(req("one-more".into()), 0, T0).unwrap_err();
    assert!(err.to_string().contains("clear some"), "{err}");
    // Replacing an existing rule is not one more.
    e.set(req("p7".into()), 0, T0).expect("a replacement");
}

#[test]
fn reconfigure_swaps_config_rules_and_hysteresis_and_keeps_api_rules() {
    let config = ConfigRules {
        default_process_rate: Some(1000),
        host_rate: Some(5000),
        ..Default::default()
    };
    let mut e = Evaluator::new(Settings::default(), &config, T0);
    set(
        &mut e,
        ThresholdKind::ProcessRate,
        Direction::Up,
        700,
        "ssh",
        0,
    );
    // The default rule opens an alert for curl after the 3 ticks of hysteresis.
    let alerts = run(&mut e, &[2000, 2000, 2000], T0);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");

    let changed = ConfigRules {
        host_rate: Some(5000),
        default_daily_quota: Some(1 << 30),
        ..Default::default()
    };
    let quick = Settings {
        open_after_ticks: 1,
        close_after_ticks: 1,
    };
    e.reconfigure(quick, &changed, T0 + 60 * SEC);
    let rules = e.thresholds();
    let kinds: Vec<(i32, String)> = rules.iter().map(|t| (t.kind, t.source.clone())).collect();
    assert_eq!(
        kinds,
        [
            (ThresholdKind::HostRate as i32, "config".to_owned()),
            (ThresholdKind::DailyQuota as i32, "config".to_owned()),
            (ThresholdKind::ProcessRate as i32, "api".to_owned()),
        ]
    );
    assert_eq!(rules[0].created_ms, T0, "an unchanged rule keeps its time");
    assert_eq!(rules[1].created_ms, T0 + 60 * SEC);
    // The default rate rule went: its alert closes on the next tick (one
    // tick below now that close_after_ticks is 1), not three.
    let alerts = run(&mut e, &[2000], T0 + 61 * SEC);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(state(&alerts[0]), v1::AlertState::Closed);
    assert!(e.open_alerts().is_empty());
}
