//! The real netmon-tui in tmux as a non-root group member: it shows the
//! sending process with a rate, `s` stops monitoring, `q` restores the terminal.

use std::process::Command;
use std::time::{Duration, Instant};

use netmon_testkit::lab::{
    bin, command, gen, require_root, start_server, unique, ChildGuard, Daemon, DaemonOpts, Lab,
    TempGroup, TempUser,
};

/// TCP client that sends ~3 MiB/s for at most `secs` seconds, then exits.
const TCP_TRICKLE: &str = r#"
import socket, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = socket.socket(); c.connect((host, port))
chunk = b"u" * 32768; end = time.time() + secs
while time.time() < end:
    c.sendall(chunk); time.sleep(0.01)
c.close()
"#;

/// A daemon of the lab's host namespace whose socket `group` may use.
fn daemon(lab: &Lab, group: &TempGroup) -> Daemon {
    lab.daemon(DaemonOpts {
        group: Some(group.name.clone()),
        ..DaemonOpts::default()
    })
}

/// A tmux server of its own (`-L`), killed on drop.
struct Tmux {
    server: String,
    session: String,
}

impl Tmux {
    fn start(cols: u16, rows: u16, pane_command: &str) -> Tmux {
        let t = Tmux {
            server: unique("nmtui"),
            session: "tui".to_owned(),
        };
        // CI has no terminal of its own: give tmux a TERM to go by.
        let out = command("tmux")
            .env("TERM", "xterm-256color")
            .args(["-L", &t.server, "-f", "/dev/null", "new-session", "-d"])
            .args([
                "-s",
                &t.session,
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string(),
            ])
            .arg(pane_command)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = command("tmux")
            .args(["-L", &self.server])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.session])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", &self.session, keys]);
    }

    /// Polls the screen until `pred` holds; panics with the last screen after `secs`.
    fn wait_screen(&self, secs: u64, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut screen = String::new();
        for _ in 0..(secs * 10) {
            screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not seen within {secs} s; screen:\n{screen}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .output();
    }
}

/// A screen line showing a python3 row whose upload rate is not zero.
fn python_sending(screen: &str) -> bool {
    screen
        .lines()
        .any(|l| l.contains("python3") && (l.contains("KiB/s") || l.contains("MiB/s")))
}

#[test]
fn tui_shows_the_sender_stops_monitoring_and_restores_the_terminal() {
    require_root();
    let lab = Lab::new();
    let group = TempGroup::new();
    let daemon = daemon(&lab, &group);
    let user = TempUser::new(&[&group.name]);
    let _server = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5301"]);

    let tmux = Tmux::start(120, 40, &tui_command(&user, &daemon));
    tmux.wait_screen(15, "the connected dashboard", |s| {
        s.contains("Monitoring ON") && s.contains("PROCESS")
    });

    // Traffic from a known process in the daemon's namespace, bounded in time.
    let client = ChildGuard(Lab::spawn_in(
        &lab.host,
        "python3",
        &["-u", "-c", TCP_TRICKLE, &lab.peer_ip, "5301", "20"],
    ));
    let screen = tmux.wait_screen(15, "python3 with a non-zero rate", python_sending);
    eprintln!("--- dashboard with traffic ---\n{screen}");
    assert!(screen.contains("netmon"), "{screen}");
    drop(client);

    // `t` sets the first preset as the default per-process rate threshold.
    tmux.keys("t");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = daemon.ctl_json(&["threshold", "list"]);
        let default_rule = list["thresholds"].as_array().and_then(|a| {
            a.iter()
                .find(|t| t["kind"] == "rate" && t["process_name"].is_null() && t["pid"].is_null())
                .cloned()
        });
        if let Some(rule) = default_rule {
            assert_eq!(rule["value"], 512 * 1024, "{list}");
            assert_eq!(rule["direction"], "total", "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "t set no threshold: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.wait_screen(5, "the threshold in the status bar", |s| {
        s.contains("threshold 512.0 KiB/s")
    });

    tmux.keys("s");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if daemon.ctl_json(&["status"])["monitoring"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "s did not stop monitoring; screen:\n{}\n--- daemon log ---\n{}",
            tmux.screen(),
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.wait_screen(5, "the stopped state in the header", |s| {
        s.contains("STOPPED")
    });

    tmux.keys("q");
    let screen = tmux.wait_screen(10, "netmon-tui exiting", |s| s.contains("tui exited"));
    eprintln!("--- after q ---\n{screen}");
    assert!(screen.contains("tui exited 0"), "{screen}");
    assert!(
        !screen.contains("Monitoring"),
        "dashboard left on screen:\n{screen}"
    );
    assert_restored(&tmux, &user);
}

/// The default per-process rate rule in `threshold list --json`, if any.
fn default_rule(list: &serde_json::Value) -> Option<serde_json::Value> {
    list["thresholds"].as_array().and_then(|a| {
        a.iter()
            .find(|t| t["kind"] == "rate" && t["process_name"].is_null() && t["pid"].is_null())
            .cloned()
    })
}

#[test]
fn tui_shows_packets_sets_a_typed_threshold_pauses_and_reloads() {
    require_root();
    let lab = Lab::new();
    let group = TempGroup::new();
    let daemon = daemon(&lab, &group);
    let user = TempUser::new(&[&group.name]);
    let _server = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5302"]);

    let tmux = Tmux::start(120, 40, &tui_command(&user, &daemon));
    tmux.wait_screen(15, "the connected dashboard", |s| {
        s.contains("Monitoring ON") && s.contains("PROCESS")
    });
    let client = ChildGuard(Lab::spawn_in(
        &lab.host,
        "python3",
        &["-u", "-c", TCP_TRICKLE, &lab.peer_ip, "5302", "20"],
    ));

    // Tab three times: Connections, Hosts, Packets.
    tmux.keys("Tab");
    tmux.keys("Tab");
    tmux.keys("Tab");
    let screen = tmux.wait_screen(15, "the Packets view with TCP packets", |s| {
        s.contains("packets/s per protocol")
            && s.contains("packet sizes")
            && s.contains("top destinations")
            && s.lines()
                .any(|l| l.trim_start().starts_with("tcp") && l.contains("/s"))
            && s.contains(&lab.peer_ip)
    });
    eprintln!("--- packets view ---\n{screen}");
    drop(client);

    // `T` with a bad rate: the error shows, the daemon gets nothing.
    tmux.keys("T");
    tmux.wait_screen(5, "the threshold input line", |s| {
        s.contains("default threshold")
    });
    tmux.tmux(&["send-keys", "-t", "tui", "-l", "fast"]);
    tmux.keys("Enter");
    let screen = tmux.wait_screen(5, "the parse error", |s| s.contains("invalid value 'fast'"));
    eprintln!("--- bad threshold ---\n{screen}");
    assert_eq!(default_rule(&daemon.ctl_json(&["threshold", "list"])), None);

    // Corrected to 20Mbit/s: netmond holds 2,500,000 bytes/s.
    for _ in 0.."fast".len() {
        tmux.keys("BSpace");
    }
    tmux.tmux(&["send-keys", "-t", "tui", "-l", "20Mbit/s"]);
    tmux.keys("Enter");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = daemon.ctl_json(&["threshold", "list"]);
        if let Some(rule) = default_rule(&list) {
            assert_eq!(rule["value"], 2_500_000, "{list}");
            assert_eq!(rule["direction"], "total", "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "T set no threshold: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.wait_screen(5, "the typed threshold in the status bar", |s| {
        s.contains("threshold 2.4 MiB/s")
    });

    // Pause: the marker shows; `u` switches the status bar to bits.
    tmux.keys("p");
    tmux.wait_screen(5, "the paused marker", |s| s.contains("PAUSED"));
    tmux.keys("u");
    tmux.wait_screen(5, "the threshold in bits", |s| {
        s.contains("threshold 20.0 Mbit/s")
    });
    tmux.keys("Space");
    tmux.wait_screen(5, "the marker gone", |s| !s.contains("PAUSED"));

    // `R`: netmond reads its changed config and says what it applied.
    let config = std::fs::read_to_string(&daemon.config).expect("read config");
    std::fs::write(
        &daemon.config,
        format!("{config}\n[alerts]\nopen_after_ticks = 1\n"),
    )
    .expect("write config");
    tmux.keys("R");
    let screen = tmux.wait_screen(10, "the reload feedback", |s| {
        s.contains("reloaded: applied alerts.open_after_ticks")
    });
    eprintln!("--- after R ---\n{screen}");
    assert!(
        daemon.log_text().contains("configuration reloaded"),
        "{}",
        daemon.log_text()
    );

    // History (two tabs on from Packets): today by hour, with the lab's
    // traffic in it; ← goes to yesterday (nothing recorded), → back.
    tmux.keys("Tab");
    tmux.keys("Tab");
    let screen = tmux.wait_screen(15, "today's history with traffic", |s| {
        s.contains("today (")
            && s.contains("by hour")
            && s.contains("in all")
            && s.contains("python3")
    });
    eprintln!("--- history, today ---\n{screen}");
    tmux.keys("Left");
    let screen = tmux.wait_screen(10, "yesterday's history", |s| {
        s.contains("yesterday (") && !s.contains("python3")
    });
    eprintln!("--- history, yesterday ---\n{screen}");
    tmux.keys("Right");
    tmux.wait_screen(10, "today again", |s| {
        s.contains("today (") && s.contains("python3")
    });

    tmux.keys("q");
    let screen = tmux.wait_screen(10, "netmon-tui exiting", |s| s.contains("tui exited"));
    assert!(screen.contains("tui exited 0"), "{screen}");
    assert_restored(&tmux, &user);
}

/// The pane's command: netmon-tui as `user`, then a line with its exit code.
fn tui_command(user: &TempUser, daemon: &Daemon) -> String {
    let tui = env!("CARGO_BIN_EXE_netmon-tui");
    format!(
        "setpriv --reuid {u} --regid {u} --init-groups -- env TERM=xterm-256color {tui} --socket {sock}; \
         echo \"tui exited $?\"; exec sleep 120",
        u = user.name,
        sock = daemon.socket.display()
    )
}

/// The pid of `user`'s netmon-tui, if one runs.
fn tui_pid(user: &TempUser) -> Option<u32> {
    let out = command("pgrep")
        .args(["-u", &user.name, "-x", "netmon-tui"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
}

/// netmon-tui is gone and the pane is back to the normal screen.
fn assert_restored(tmux: &Tmux, user: &TempUser) {
    let alternate = tmux.tmux(&["display-message", "-p", "-t", "tui", "#{alternate_on}"]);
    assert_eq!(alternate.trim(), "0", "still in the alternate screen");
    assert_eq!(tui_pid(user), None, "netmon-tui still running");
}

fn signal_tui(user: &TempUser, signal: &str) {
    let pid = tui_pid(user).expect("netmon-tui runs");
    let st = command("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}

#[test]
fn tui_explains_refusal_and_reconnects_after_a_daemon_restart() {
    require_root();
    let lab = Lab::new();
    let group = TempGroup::new();
    let mut daemon = daemon(&lab, &group);
    let _ = bin("netmonctl");

    // Not in the group: the socket refuses, and the screen says how to fix it.
    let outsider = TempUser::new(&[]);
    let refused = Tmux::start(80, 24, &tui_command(&outsider, &daemon));
    let screen = refused.wait_screen(15, "the permission notice", |s| {
        s.contains("Permission denied") && s.contains(&format!("usermod -aG {} ", group.name))
    });
    assert!(screen.contains("Retrying in"), "{screen}");
    signal_tui(&outsider, "TERM");
    let screen = refused.wait_screen(10, "exit on SIGTERM", |s| s.contains("tui exited"));
    assert!(screen.contains("tui exited 0"), "{screen}");
    assert_restored(&refused, &outsider);

    // A member sees the dashboard, a notice while the daemon is gone, and the
    // dashboard again once it is back, without doing anything.
    let member = TempUser::new(&[&group.name]);
    let tmux = Tmux::start(80, 24, &tui_command(&member, &daemon));
    tmux.wait_screen(15, "the dashboard", |s| s.contains("Monitoring ON"));
    daemon.terminate();
    tmux.wait_screen(10, "the daemon-gone notice", |s| {
        s.contains("netmond is not running") || s.contains("Connection to netmond lost")
    });
    daemon.spawn();
    daemon.wait_ready();
    tmux.wait_screen(20, "the dashboard after the restart", |s| {
        s.contains("Monitoring ON")
    });
    signal_tui(&member, "HUP");
    let screen = tmux.wait_screen(10, "exit on SIGHUP", |s| s.contains("tui exited"));
    assert!(screen.contains("tui exited 0"), "{screen}");
    assert_restored(&tmux, &member);
}
