//! The backbone: socket permissions, control round trips, access control,
//! lifecycle (second daemon, stale socket, SIGTERM), config and usage errors.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::harness::*;

#[test]
fn status_start_stop_reset_round_trip_in_both_forms() {
    let d = Daemon::start(DaemonOpts {
        autostart: true,
        ..Default::default()
    });
    let st = d.ctl_json(&["status"]);
    assert_eq!(st["monitoring"], true, "{st}");
    assert!(st["version"].as_str().is_some_and(|v| !v.is_empty()));
    let session = st["session"]["id"]
        .as_u64()
        .expect("running session has an id");

    let human = d.ctl(&["status"]);
    assert!(human.status.success(), "{}", stderr(&human));
    assert!(
        stdout(&human).to_lowercase().contains("monitoring"),
        "{}",
        stdout(&human)
    );

    let out = d.ctl_json(&["stop"]);
    assert_eq!(out["monitoring"], false, "{out}");
    assert_eq!(d.ctl_json(&["status"])["monitoring"], false);
    // Idempotent: stopping twice succeeds and says nothing changed.
    let again = d.ctl_json(&["stop"]);
    assert_eq!(again["changed"], false, "{again}");

    let human = d.ctl(&["start"]);
    assert!(human.status.success(), "{}", stderr(&human));
    let st = d.ctl_json(&["status"]);
    assert_eq!(st["monitoring"], true);
    assert_ne!(
        st["session"]["id"].as_u64(),
        Some(session),
        "a new start is a new session"
    );

    let r = d.ctl(&["reset"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let rj = d.ctl_json(&["reset"]);
    assert_eq!(rj["monitoring"], true);

    let sessions = d.ctl_json(&["sessions"]);
    let list = sessions["sessions"].as_array().expect("sessions[]");
    assert!(list.len() >= 2, "both sessions are listed: {sessions}");
    assert!(
        list.iter()
            .any(|s| s["id"].as_u64() == Some(session) && !s["ended"].is_null()),
        "{sessions}"
    );

    let top = d.ctl_json(&["top"]);
    assert!(
        top["processes"].is_array() && top["totals"].is_object() && top["unattributed"].is_object(),
        "{top}"
    );
}

#[test]
fn socket_is_root_group_0660_in_a_0750_directory() {
    let d = Daemon::start(DaemonOpts::default());
    let m = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!(m.uid(), 0);
    let gid = nix::unistd::Group::from_name(d.group.name())
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    assert_eq!(m.gid(), gid);
    let dm = std::fs::metadata(d.socket.parent().unwrap()).unwrap();
    assert_eq!(dm.permissions().mode() & 0o777, 0o750);
    assert_eq!(dm.gid(), gid);
}

#[test]
fn outsider_gets_exit_3_with_group_hint_and_member_gets_data() {
    let d = Daemon::start(DaemonOpts::default());
    let outsider = TempUser::new(&[]);
    let out = outsider
        .command(&bin("netmonctl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("netmon") && stderr(&out).contains("group"),
        "{}",
        stderr(&out)
    );

    let member = TempUser::new(&[d.group.name()]);
    let out = member
        .command(&bin("netmonctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--json", "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "member denied: {}\n{}",
        stderr(&out),
        d.log_text()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["version"].is_string());
}

#[test]
fn control_group_denies_every_control_call_to_a_reader() {
    let control = TempGroup::new();
    let d = Daemon::start(DaemonOpts {
        config_extra: format!("control_group = \"{}\"\n", control.name),
        autostart: true,
        ..Default::default()
    });
    let reader = TempUser::new(&[d.group.name()]);
    let admin = TempUser::new(&[d.group.name(), &control.name]);
    let run = |u: &TempUser, args: &[&str]| {
        u.command(&bin("netmonctl"))
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .output()
            .unwrap()
    };
    let refused = |args: &[&str]| {
        let out = run(&reader, args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} refused to a reader by the daemon: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).to_lowercase().contains("permission"),
            "{args:?}: {}",
            stderr(&out)
        );
    };
    let allowed = |args: &[&str]| {
        let out = run(&admin, args);
        assert!(
            out.status.success(),
            "{args:?} allowed to a control group member: {}",
            stderr(&out)
        );
    };
    let monitoring = || d.ctl_json(&["status"])["monitoring"].clone();
    let rules = || {
        d.ctl_json(&["threshold", "list"])["thresholds"]
            .as_array()
            .map(Vec::len)
    };
    let out = run(&reader, &["status"]);
    assert!(out.status.success(), "reads stay open: {}", stderr(&out));

    refused(&["stop"]);
    assert_eq!(monitoring(), true, "the refused stop changed nothing");
    refused(&["reset"]);
    refused(&["threshold", "set", "1MiB/s"]);
    assert_eq!(rules(), Some(0), "the refused set added nothing");
    allowed(&["threshold", "set", "1MiB/s"]);
    assert_eq!(rules(), Some(1));
    refused(&["threshold", "clear", "--all"]);
    assert_eq!(rules(), Some(1), "the refused clear removed nothing");
    allowed(&["stop"]);
    assert_eq!(monitoring(), false);
    refused(&["start"]);
    assert_eq!(monitoring(), false, "the refused start changed nothing");
    allowed(&["start"]);
    allowed(&["reset"]);
    allowed(&["threshold", "clear", "--all"]);
    assert_eq!(rules(), Some(0));

    let log = d.log_text();
    for rpc in ["start", "stop", "reset", "threshold set", "threshold clear"] {
        let field = format!("rpc=\"{rpc}\"");
        assert!(
            log.lines()
                .any(|l| l.contains("control call denied") && l.contains(&field)),
            "the refused {rpc} is logged: {log}"
        );
    }
    assert!(
        log.contains("control call") && log.contains("uid="),
        "control calls are logged with the caller: {log}"
    );
}

#[test]
fn second_daemon_on_the_same_socket_refuses() {
    let d = Daemon::start(DaemonOpts::default());
    let out = d.command().output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    // The first one is unharmed.
    assert!(d.ctl(&["status"]).status.success());
}

#[test]
fn stale_socket_is_replaced_and_sigterm_removes_the_socket() {
    let mut d = Daemon::start(DaemonOpts::default());
    // A crashed run leaves its socket behind.
    let child = d.child.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut child = child;
    child.wait().unwrap();
    assert!(d.socket.exists(), "SIGKILL leaves the socket file");
    d.spawn();
    d.wait_ready();
    assert!(d.ctl(&["status"]).status.success());

    let st = d.terminate();
    assert!(st.success(), "SIGTERM exits 0, got {st}: {}", d.log_text());
    assert!(!d.socket.exists(), "SIGTERM removes the socket");
}

#[test]
fn bad_config_key_exits_non_zero_naming_the_key() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[daemon]\nautostart = false\nsokcet = \"/tmp/x.sock\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin("netmond"))
        .arg("--config")
        .arg(&cfg)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("sokcet") && e.contains("line 3"), "{e}");
}

#[test]
fn missing_group_says_how_to_create_it() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin("netmond"))
        .args(["--group", "nmnosuchgroup"])
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--db")
        .arg(dir.path().join("d.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("groupadd --system nmnosuchgroup"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_rate_is_a_usage_error_naming_the_forms() {
    let d = Daemon::start(DaemonOpts::default());
    let out = d.ctl(&["threshold", "set", "12 parsecs"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("MiB/s"),
        "names the accepted forms: {}",
        stderr(&out)
    );
    let out = d.ctl(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn thresholds_set_list_clear() {
    let d = Daemon::start(DaemonOpts::default());
    let out = d.ctl(&[
        "threshold",
        "set",
        "1MiB/s",
        "--process",
        "firefox",
        "--direction",
        "down",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = d.ctl_json(&["threshold", "list"]);
    let t = &list["thresholds"][0];
    assert_eq!(t["value"], 1_048_576, "{list}");
    assert_eq!(t["process_name"], "firefox", "{list}");
    let out = d.ctl(&["threshold", "clear", "--process", "firefox"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = d.ctl_json(&["threshold", "list"]);
    assert_eq!(
        list["thresholds"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
}

#[test]
fn control_requests_with_impossible_values_are_refused_clearly() {
    let d = Daemon::start(DaemonOpts::default());
    let refused = |args: &[&str], want: &str| {
        let out = d.ctl(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    };
    // No such process (pids above pid_max never exist).
    refused(
        &["threshold", "set", "1MiB/s", "--pid", "4194305"],
        "no process with pid 4194305",
    );
    refused(
        &["start", "--interface", "../../etc"],
        "cannot be an interface name",
    );
    refused(
        &["threshold", "set", "1MiB/s", "--process", &"n".repeat(300)],
        "at most 256",
    );
    // A pid rule names the process running now, with its start time.
    let me = std::process::id().to_string();
    let out = d.ctl(&["threshold", "set", "1MiB/s", "--pid", &me]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = d.ctl_json(&["threshold", "list"]);
    assert!(list.to_string().contains(&me), "{list}");
}
