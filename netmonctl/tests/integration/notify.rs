//! `alerts --notify` on a private session bus (dbus-daemon) with a fake
//! notification server that records every `Notify`: a program of downloaders
//! in the lab opens and closes an alert against a real netmond; a server that
//! goes away is a warning, not the end. And the errors without a bus.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::zvariant::OwnedValue;

use crate::commands::command;
use crate::follow::{all_closed, burst, events, lines_of, read_until, wait_subscribed};
use crate::harness::{bin, gen, start_server, ChildGuard, DaemonOpts, Lab};

/// A dbus-daemon of our own, on a socket in a temporary directory, with the
/// policy of Debian's session.conf (everything allowed).
struct Bus {
    address: String,
    _daemon: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Bus {
    fn start() -> Bus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("session.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().join("bus").display()
            ),
        )
        .expect("write the bus config");
        let mut child = command("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--print-address", "--nofork"])
            .stdout(Stdio::piped())
            // It warns that root's fd limit cannot be raised: noise here.
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        let stdout = child.stdout.take().expect("stdout");
        let daemon = ChildGuard(child);
        // The address is printed once the bus listens.
        let mut address = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut address)
            .expect("dbus-daemon prints its address");
        let address = address.trim().to_owned();
        assert!(address.starts_with("unix:"), "address '{address}'");
        Bus {
            address,
            _daemon: daemon,
            _dir: dir,
        }
    }
}

/// One `Notify` call as the server got it.
#[derive(Debug, Clone)]
struct Call {
    replaces_id: u32,
    summary: String,
    body: String,
    urgency: Option<u8>,
    /// The id the server answered.
    id: u32,
}

struct Server {
    calls: Arc<Mutex<Vec<Call>>>,
    next_id: u32,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    #[allow(clippy::too_many_arguments, reason = "the spec's signature")]
    fn notify(
        &mut self,
        _app_name: String,
        replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let id = if replaces_id != 0 {
            replaces_id
        } else {
            self.next_id += 1;
            self.next_id
        };
        let urgency = hints.get("urgency").and_then(|v| u8::try_from(v).ok());
        self.calls.lock().expect("lock").push(Call {
            replaces_id,
            summary,
            body,
            urgency,
            id,
        });
        id
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".to_owned()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "fake".into(),
            "netmon tests".into(),
            "0".into(),
            "1.2".into(),
        )
    }
}

/// The fake notification server on `address`, in a thread of its own, until
/// dropped (then its name leaves the bus).
struct FakeServer {
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(address: &str) -> FakeServer {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (calls, stop, address) = (calls.clone(), stop.clone(), address.to_owned());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let server = Server { calls, next_id: 0 };
                    let conn = zbus::connection::Builder::address(address.as_str())
                        .expect("address")
                        .serve_at("/org/freedesktop/Notifications", server)
                        .expect("serve")
                        .name("org.freedesktop.Notifications")
                        .expect("name")
                        .build()
                        .await
                        .expect("the fake server connects");
                    ready_tx.send(()).expect("ready");
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    drop(conn);
                });
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the fake notification server is up");
        FakeServer {
            calls,
            stop,
            thread: Some(thread),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until `pred` holds on the server's calls or `secs` pass.
fn wait_calls(server: &FakeServer, secs: u64, pred: impl Fn(&[Call]) -> bool) -> Vec<Call> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let calls = server.calls();
        if pred(&calls) || Instant::now() >= deadline {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn notify_cmd(socket: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(bin("netmonctl"));
    c.arg("--socket")
        .arg(socket)
        .args(["--json", "alerts", "--notify"])
        .env_remove("XDG_RUNTIME_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn notify_shows_each_alert_opened_and_closed_on_the_session_bus() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts::default());
    let _server = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5410"]);
    let name = format!("nmnotify{}", std::process::id() % 100_000);
    let out = d.ctl(&[
        "threshold",
        "set",
        "1MiB/s",
        "--process",
        &name,
        "--direction",
        "down",
    ]);
    assert!(out.status.success(), "{}", crate::stderr(&out));

    let bus = Bus::start();
    let server = FakeServer::start(&bus.address);
    let mut follower = notify_cmd(&d.socket)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .spawn()
        .expect("netmonctl alerts --notify");
    let out_rx = lines_of(follower.stdout.take().expect("stdout"));
    let err_rx = lines_of(follower.stderr.take().expect("stderr"));
    let mut follower = ChildGuard(follower);
    wait_subscribed(&d);

    let pids = burst(&lab, &name);
    let mut lines = Vec::new();
    read_until(&out_rx, &mut lines, 20, |l| all_closed(l, &name, 1));
    assert!(all_closed(&lines, &name, 1), "{lines:#?}\n{}", d.log_text());
    let ev = events(&lines, &name);
    let prefix = format!("{name}: ");
    let ours = |c: &Call| c.summary.starts_with(&prefix);
    let calls = wait_calls(&server, 10, |c| {
        c.iter().filter(|c| ours(c)).count() >= ev.len()
    });
    let calls: Vec<Call> = calls.into_iter().filter(ours).collect();
    // One notification per event printed, in the same order (a generator
    // that stalls on a loaded machine may split the burst into two alerts).
    assert_eq!(calls.len(), ev.len(), "{calls:#?}\n{ev:?}");
    let mut opened: HashMap<u64, u32> = HashMap::new();
    for (call, (alert, state)) in calls.iter().zip(&ev) {
        assert!(call.body.ends_with(&format!("alert #{alert}")), "{call:?}");
        assert!(call.body.contains("threshold 1.0 MiB/s down"), "{call:?}");
        // The body names processes of the generator, and only those.
        let listed = call.body.lines().next().unwrap_or("");
        let listed: Vec<u32> = listed
            .trim_start_matches("pids ")
            .trim_start_matches("pid ")
            .split(" and ")
            .next()
            .unwrap_or("")
            .split(", ")
            .filter_map(|p| p.parse().ok())
            .collect();
        assert!(
            !listed.is_empty() && listed.iter().all(|p| pids.contains(p)),
            "{call:?} vs the generator's {pids:?}"
        );
        if state == "open" {
            // 1 MiB/s down over 1.0 MiB/s: the rate shown is the one that crossed.
            assert!(call.summary.contains(" down over 1.0 MiB/s"), "{call:?}");
            assert_eq!(call.urgency, Some(2), "critical: {call:?}");
            assert_eq!(call.replaces_id, 0, "{call:?}");
            opened.insert(*alert, call.id);
        } else {
            assert_eq!(
                call.summary,
                format!("{name}: down back under 1.0 MiB/s"),
                "{call:?}"
            );
            assert_eq!(call.urgency, Some(1), "normal: {call:?}");
            assert_eq!(
                Some(call.replaces_id),
                opened.get(alert).copied(),
                "the close replaces the open notification: {call:?}"
            );
        }
    }

    // The server leaves: the next alert is a warning on stderr, and the
    // follower goes on printing.
    drop(server);
    let before = lines.len();
    burst(&lab, &name);
    read_until(&out_rx, &mut lines, 20, |l| {
        events(&l[before..], &name).len() >= 2 && all_closed(&l[before..], &name, 1)
    });
    assert!(
        all_closed(&lines[before..], &name, 1),
        "{:#?}",
        &lines[before..]
    );
    let mut errs = Vec::new();
    read_until(&err_rx, &mut errs, 5, |e| {
        e.iter().any(|l| l.contains("cannot show the notification"))
    });
    assert!(
        errs.iter()
            .any(|l| l.contains("warning: cannot show the notification")),
        "{errs:#?}"
    );
    assert!(
        follower.0.try_wait().expect("try_wait").is_none(),
        "the follower goes on"
    );
}

#[test]
fn notify_without_a_session_bus_exits_4_naming_the_variable() {
    let missing = std::env::temp_dir().join(format!("netmonctl-nobus-{}", std::process::id()));
    // Unset, and no runtime directory to find one in.
    let o = notify_cmd(&missing.join("netmond.sock"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .expect("runs");
    let err = crate::stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("DBUS_SESSION_BUS_ADDRESS is not set"), "{err}");
    assert!(o.stdout.is_empty());

    // Set, but nothing listens there: checked before netmond is.
    let address = format!("unix:path={}", missing.join("bus").display());
    let o = notify_cmd(&missing.join("netmond.sock"))
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .output()
        .expect("runs");
    let err = crate::stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("DBUS_SESSION_BUS_ADDRESS") && err.contains(&address),
        "{err}"
    );

    // A bus with no notification server on it.
    let bus = Bus::start();
    let o = notify_cmd(&missing.join("netmond.sock"))
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .expect("runs");
    let err = crate::stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("no desktop notification server"), "{err}");
}
