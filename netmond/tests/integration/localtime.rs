//! Local days end to end: one upload, then `report --day` in a zone east and
//! one west of UTC whose dates differ now (UTC+14 and UTC-11 are always a
//! day apart); the daemon runs in a third zone, and clients' zones win.

use std::process::{Command, Output};
use std::time::Duration;

use netmon_proto::zone::Zone;

use netmond::clock::now_ms;

use crate::harness::*;

const EAST: &str = "Pacific/Kiritimati"; // UTC+14, no DST
const WEST: &str = "Pacific/Pago_Pago"; // UTC-11, no DST
const DAEMON_TZ: &str = "Asia/Tokyo";

fn ctl_in(d: &Daemon, tz: &str, args: &[&str]) -> Output {
    Command::new(bin("netmonctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .env("TZ", tz)
        .output()
        .expect("run netmonctl")
}

fn json_in(d: &Daemon, tz: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = ctl_in(d, tz, &a);
    assert!(out.status.success(), "TZ={tz} {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// python3's up bytes in a report, 0 when it has no row.
fn python_up(rep: &serde_json::Value) -> u64 {
    report_up(rep, "python3")
}

/// Milliseconds until the next local midnight of `zone`.
fn to_midnight(zone: &Zone, now: i64) -> i64 {
    zone.next_period(now, netmon_proto::zone::Period::Day) - now
}

#[test]
fn report_day_follows_the_clients_local_date_east_and_west() {
    let (east, west) = (Zone::named(EAST).unwrap(), Zone::named(WEST).unwrap());
    // Keep the upload away from either zone's midnight (at most 3 minutes).
    let margin = 3 * 60_000;
    let wait = [&east, &west]
        .iter()
        .map(|z| to_midnight(z, now_ms()))
        .filter(|&t| t < margin)
        .max();
    if let Some(t) = wait {
        std::thread::sleep(Duration::from_millis(u64::try_from(t + 5_000).unwrap()));
    }
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n".into(),
        env: vec![("TZ".into(), DAEMON_TZ.into())],
        ..Default::default()
    });
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5461"]);
    const N: u64 = 4 * 1024 * 1024;
    let pid = upload(&lab, "5461", N);
    wait_top(&d, 30, |t| {
        proc_by_pid(t, pid).is_some_and(|p| u(&p, "up_bytes") >= N)
    });
    let now = now_ms();
    let (east_day, west_day) = (east.date(now).to_string(), west.date(now).to_string());
    assert_ne!(
        east_day, west_day,
        "UTC+14 and UTC-11 are on different dates"
    );
    let (lo, hi) = (N, tcp_credit_hi(N));

    for (tz, today, other, offset) in [
        (EAST, &east_day, &west_day, "+14:00"),
        (WEST, &west_day, &east_day, "-11:00"),
    ] {
        // Today in the client's zone holds the upload, within the generator's bounds.
        let mut up = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            up = python_up(&json_in(
                &d,
                tz,
                &["report", "--day", today, "--limit", "100"],
            ));
            if up >= lo {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            (lo..=hi).contains(&up),
            "TZ={tz} --day {today}: python3 up {up}, generator sent {lo} (..={hi})\n{}",
            d.log_text()
        );
        // The default (today) is the same local day.
        let rep = json_in(&d, tz, &["report", "--limit", "100"]);
        assert!((lo..=hi).contains(&python_up(&rep)), "TZ={tz} today: {rep}");
        // The other zone's date is another local day here: none of it.
        let rep = json_in(&d, tz, &["report", "--day", other, "--limit", "100"]);
        assert_eq!(python_up(&rep), 0, "TZ={tz} --day {other}: {rep}");
        // JSON stays UTC; human output shows the local day with its offset.
        assert_eq!(
            rep["since"].as_str().map(|s| s.ends_with('Z')),
            Some(true),
            "{rep}"
        );
        let human = stdout(&ctl_in(&d, tz, &["report", "--day", today]));
        let want = format!("from {today}T00:00:00{offset}");
        assert!(human.contains(&want), "TZ={tz}: no '{want}' in\n{human}");
        assert!(
            human.contains(&format!("(time zone {tz}, {offset})")),
            "{human}"
        );
        // --every day: cut by the client's zone, not the daemon's (Tokyo).
        let rep = json_in(&d, tz, &["report", "--day", today, "--every", "day"]);
        assert_eq!(rep["time_zone"], tz, "{rep}");
        let periods = rep["periods"].as_array().expect("periods");
        assert_eq!(periods.len(), 1, "one local day: {rep}");
        let want_offset = if tz == EAST { 14 * 3600 } else { -11 * 3600 };
        assert_eq!(periods[0]["utc_offset_s"], want_offset, "{rep}");
        let p_up = python_up(&periods[0]);
        assert!((lo..=hi).contains(&p_up), "TZ={tz} period: {rep}");
    }

    // --utc: the UTC day, shown with Z, whatever TZ says.
    let utc_day = Zone::utc().date(now).to_string();
    let rep = json_in(
        &d,
        EAST,
        &["--utc", "report", "--day", &utc_day, "--limit", "100"],
    );
    assert!(
        (lo..=hi).contains(&python_up(&rep)),
        "--utc {utc_day}: {rep}"
    );
    let human = stdout(&ctl_in(&d, EAST, &["--utc", "report", "--day", &utc_day]));
    assert!(
        human.contains(&format!("from {utc_day}T00:00:00Z")),
        "{human}"
    );
    assert!(human.contains("(UTC)"), "{human}");
    // The daemon read its own zone at start and says so.
    assert!(
        d.log_text().contains(DAEMON_TZ),
        "daemon log lacks its zone:\n{}",
        d.log_text()
    );
}
