//! Configuration reload on SIGHUP: a changed alert rule applies at once, a
//! setting that needs a restart is named in the log, and a broken file is
//! refused with the running configuration kept.

use std::time::{Duration, Instant};

use crate::harness::{command, serial, Daemon, DaemonOpts};

/// The config rule of `kind` in `threshold list --json`.
fn config_rule(d: &Daemon, kind: &str) -> Option<serde_json::Value> {
    let list = d.ctl_json(&["threshold", "list"]);
    list["thresholds"]
        .as_array()?
        .iter()
        .find(|t| t["source"] == "config" && t["kind"] == kind)
        .cloned()
}

fn hup(d: &Daemon) {
    let st = command("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}

/// Polls the daemon's log until it holds `needle` `count` times.
fn wait_log(d: &Daemon, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = d.log_text();
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no '{needle}' in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sighup_applies_a_changed_alert_rule_and_keeps_the_old_config_when_broken() {
    let _s = serial();
    let mut d = Daemon::start(DaemonOpts {
        config_extra: "[alerts]\nhost_rate = \"10MiB/s\"\n".into(),
        ..Default::default()
    });
    let rule = config_rule(&d, "host").expect("config rule at start");
    assert_eq!(rule["value"], 10 << 20, "{rule}");
    let original = std::fs::read_to_string(&d.config).expect("read config");

    // A changed rule and a changed tick: the rule applies, the tick waits.
    let changed = original
        .replace(
            "host_rate = \"10MiB/s\"",
            "host_rate = \"20MiB/s\"\nopen_after_ticks = 1",
        )
        .replace("tick_ms = 1000", "tick_ms = 500\nlog_level = \"debug\"");
    assert_ne!(changed, original);
    std::fs::write(&d.config, &changed).expect("write config");
    hup(&d);
    let log = wait_log(&d, "configuration reloaded", 1);
    let rule = config_rule(&d, "host").expect("config rule after reload");
    assert_eq!(rule["value"], 20 << 20, "{rule}\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap_or_default();
    assert!(line.contains("alerts.host_rate"), "{line}");
    assert!(line.contains("alerts.open_after_ticks"), "{line}");
    assert!(line.contains("needs a restart: daemon.tick_ms"), "{line}");
    // The harness runs netmond with RUST_LOG, which beats daemon.log_level.
    assert!(line.contains("daemon.log_level"), "{line}");
    assert!(
        log.contains("RUST_LOG is set and beats daemon.log_level"),
        "{log}"
    );
    assert_eq!(
        d.ctl_json(&["status"])["tick_ms"],
        1000,
        "the tick is not changed live"
    );

    // A broken file: refused, logged, the last good rule still in force.
    std::fs::write(&d.config, format!("{changed}\n[alerts.bogus]\n")).expect("write");
    hup(&d);
    wait_log(&d, "configuration not reloaded", 1);
    std::fs::write(&d.config, changed.replace("20MiB/s", "fast")).expect("write");
    hup(&d);
    let log = wait_log(&d, "configuration not reloaded", 2);
    assert!(log.contains("'fast'"), "the bad value is named:\n{log}");
    let rule = config_rule(&d, "host").expect("config rule kept");
    assert_eq!(rule["value"], 20 << 20, "{rule}");
    let status = d.ctl(&["status"]);
    assert!(status.status.success(), "the daemon keeps serving");
    assert!(
        d.child
            .as_mut()
            .expect("running")
            .try_wait()
            .expect("wait")
            .is_none(),
        "the daemon keeps running"
    );
    d.terminate();
}
