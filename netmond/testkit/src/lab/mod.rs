//! Test lab of every crate's end-to-end tests: the built netmond on a
//! temporary socket and database, network namespaces and veth pairs with
//! unique names, throw-away users and groups, all removed on drop; traffic
//! generators with known byte counts. Needs root; runs the workspace's
//! binaries from target/debug.

#![allow(
    clippy::new_without_default,
    reason = "new() creates namespaces, links and groups as root: not a default value"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod commands;

pub use commands::{command, require_command, sh, sh_ok, sh_unchecked};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this test process and call, usable for
/// interfaces (≤ 15 chars), namespaces, users and groups.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this end-to-end test needs root (it creates namespaces, users and runs the capture daemon); run it with sudo"
    );
}

/// Directory of the workspace's built binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    // target/debug/deps/integration-xxxx -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// A binary of the workspace, built in target/debug (Cargo builds a crate's
/// own binaries before its integration tests; others need `cargo build --workspace`).
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// A system group that is deleted on drop.
pub struct TempGroup {
    pub name: String,
    pub gid: u32,
}

impl TempGroup {
    pub fn new() -> TempGroup {
        let name = unique("nmg");
        sh_ok(&format!("groupadd --system {name}"));
        let gid = nix::unistd::Group::from_name(&name)
            .expect("lookup")
            .expect("group exists")
            .gid
            .as_raw();
        TempGroup { name, gid }
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _ = sh_unchecked(&format!("groupdel {}", self.name));
    }
}

/// A system user (no home, no login) deleted on drop.
pub struct TempUser {
    pub name: String,
}

impl TempUser {
    pub fn new(groups: &[&str]) -> TempUser {
        let name = unique("nmu");
        let g = if groups.is_empty() {
            String::new()
        } else {
            format!("-G {}", groups.join(","))
        };
        sh_ok(&format!(
            "useradd --system --no-create-home --shell /usr/sbin/nologin {g} {name}"
        ));
        TempUser { name }
    }

    /// `cmd` run as this user with its supplementary groups.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = command("setpriv");
        c.args([
            "--reuid",
            &self.name,
            "--regid",
            &self.name,
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = sh_unchecked(&format!("userdel {}", self.name));
        let _ = sh_unchecked(&format!("groupdel {} 2>/dev/null", self.name));
    }
}

/// A network namespace removed on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("nmns");
        sh_ok(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        Netns { name }
    }

    #[track_caller]
    pub fn exec(&self, cmd: &str) -> Output {
        sh(&format!(
            "ip netns exec {} sh -c '{}'",
            self.name,
            cmd.replace('\'', "'\\''")
        ))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh_unchecked(&format!(
            "ip netns pids {} | xargs -r kill -9; ip netns del {}",
            self.name, self.name
        ));
    }
}

/// Options for a daemon under test.
#[derive(Clone, Default)]
pub struct DaemonOpts {
    /// Extra TOML appended to the generated config.
    pub config_extra: String,
    /// Network namespace to run in (a fresh empty one when None).
    pub netns: Option<String>,
    pub autostart: bool,
    pub group: Option<String>,
    pub tick_ms: Option<u64>,
    /// Namespaces that stand for other machines (a lab's peer): with eBPF
    /// accounting their sockets would otherwise count as this host's.
    pub exclude_netns: Vec<String>,
    /// A command the daemon runs under, e.g. `setpriv --bounding-set ...`.
    pub wrapper: Vec<String>,
    /// The database path (default: `lib/netmon.db` in the daemon's temp dir).
    pub db: Option<PathBuf>,
    /// Extra environment of the daemon, e.g. `TZ`.
    pub env: Vec<(String, String)>,
}

/// `extra` with `exclude_netns` set in its `[capture]` section (added if missing).
fn with_excluded(extra: &str, exclude: &[String]) -> String {
    if exclude.is_empty() {
        return extra.to_owned();
    }
    let list: Vec<String> = exclude.iter().map(|n| format!("{n:?}")).collect();
    let line = format!("exclude_netns = [{}]", list.join(", "));
    if extra.contains("[capture]\n") {
        extra.replacen("[capture]\n", &format!("[capture]\n{line}\n"), 1)
    } else {
        format!("{extra}\n[capture]\n{line}\n")
    }
}

/// A real netmond on a temporary socket and DB, in a network namespace.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub db: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub group: TempGroupOrName,
    own_ns: Option<Netns>,
    pub netns: String,
    wrapper: Vec<String>,
    env: Vec<(String, String)>,
}

pub enum TempGroupOrName {
    Temp(TempGroup),
    Name(String),
}

impl TempGroupOrName {
    pub fn name(&self) -> &str {
        match self {
            TempGroupOrName::Temp(g) => &g.name,
            TempGroupOrName::Name(n) => n,
        }
    }
}

impl Daemon {
    pub fn start(opts: DaemonOpts) -> Daemon {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        // Let unprivileged test users reach the socket's directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let socket = dir.path().join("run/netmond.sock");
        let db = opts
            .db
            .clone()
            .unwrap_or_else(|| dir.path().join("lib/netmon.db"));
        let config = dir.path().join("netmond.toml");
        let log = dir.path().join("netmond.log");
        let group = match &opts.group {
            Some(n) => TempGroupOrName::Name(n.clone()),
            None => TempGroupOrName::Temp(TempGroup::new()),
        };
        let text = format!(
            "[daemon]\nautostart = {}\ntick_ms = {}\n{}\n",
            opts.autostart,
            opts.tick_ms.unwrap_or(1000),
            with_excluded(&opts.config_extra, &opts.exclude_netns)
        );
        std::fs::write(&config, text).expect("write config");
        let (own_ns, netns) = match &opts.netns {
            Some(n) => (None, n.clone()),
            None => {
                let ns = Netns::new();
                let name = ns.name.clone();
                (Some(ns), name)
            }
        };
        let mut d = Daemon {
            child: None,
            dir,
            socket,
            db,
            config,
            log,
            group,
            own_ns,
            netns,
            wrapper: opts.wrapper.clone(),
            env: opts.env.clone(),
        };
        d.spawn();
        d.wait_ready();
        d
    }

    pub fn command(&self) -> Command {
        let mut c = command("ip");
        c.args(["netns", "exec", &self.netns])
            .args(&self.wrapper)
            .arg(bin("netmond"))
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--db")
            .arg(&self.db)
            .arg("--group")
            .arg(self.group.name());
        c
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = self
            .command()
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn netmond");
        self.child = Some(child);
    }

    /// Waits until the daemon answers `status`: with autostart, monitoring
    /// has started by then.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // The socket accepts connections before monitoring has started
            // (autostart runs, eBPF attaches, then requests are served): a
            // generator started at the first connect could beat the
            // programs to its socket. An answered `status` comes after.
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
                && self.ctl(&["status"]).status.success()
            {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("netmond exited early ({st}): {}", self.log_text());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "netmond did not open its socket in 20 s: {}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, no chance to clean up; waits for the exit.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// netmonctl as root against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("netmonctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run netmonctl")
    }

    /// netmonctl --json …, parsed; panics with the output on failure.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl(&a);
        assert!(
            out.status.success(),
            "netmonctl {args:?} failed ({}): {}\n--- daemon log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "netmonctl {args:?}: bad JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "netmond did not exit within 15 s of SIGTERM: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.own_ns.take();
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Lab tests measure timing-sensitive attribution and host totals: one at a
/// time, so they neither compete for the two cores nor see each other's traffic.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A host shaped like a Docker host: a bridge in `host` with a veth into the
/// `ctr` namespace (the container, IPv4 and IPv6, default route via the
/// bridge), and a routed veth to `srv` (a server elsewhere). The host forwards
/// between them; nothing is NATed.
pub struct ContainerLab {
    _serial: std::sync::MutexGuard<'static, ()>,
    pub srv: Netns,
    pub ctr: Netns,
    pub host: Netns,
    pub bridge: String,
    pub ctr_ip: String,
    pub srv_ip: String,
    pub ctr_ip6: String,
    pub srv_ip6: String,
}

impl ContainerLab {
    pub fn new() -> ContainerLab {
        require_root();
        let serial = serial();
        let (host, ctr, srv) = (Netns::new(), Netns::new(), Netns::new());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let net = 1 + (std::process::id().wrapping_mul(11).wrapping_add(n * 17)) % 250;
        let (bridge, port, cif) = (unique("nmbr"), unique("nmpt"), unique("nmct"));
        let (up, sif) = (unique("nmup"), unique("nmsv"));
        sh_ok(&format!(
            "set -e
             ip -n {h} link add {bridge} type bridge
             ip -n {h} addr add 10.232.{net}.1/24 dev {bridge}
             ip -n {h} addr add fd00:232:{net}::1/64 dev {bridge} nodad
             ip link add {port} netns {h} type veth peer name {cif} netns {c}
             ip -n {h} link set {port} master {bridge}
             ip -n {c} addr add 10.232.{net}.2/24 dev {cif}
             ip -n {c} addr add fd00:232:{net}::2/64 dev {cif} nodad
             ip link add {up} netns {h} type veth peer name {sif} netns {s}
             ip -n {h} addr add 10.233.{net}.1/24 dev {up}
             ip -n {h} addr add fd00:233:{net}::1/64 dev {up} nodad
             ip -n {s} addr add 10.233.{net}.2/24 dev {sif}
             ip -n {s} addr add fd00:233:{net}::2/64 dev {sif} nodad
             for l in {bridge} {port} {up}; do ip -n {h} link set $l up; done
             ip -n {c} link set {cif} up
             ip -n {s} link set {sif} up
             ip -n {c} route add default via 10.232.{net}.1
             ip -n {c} -6 route add default via fd00:232:{net}::1
             ip -n {s} route add default via 10.233.{net}.1
             ip -n {s} -6 route add default via fd00:233:{net}::1
             ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
            h = host.name,
            c = ctr.name,
            s = srv.name
        ));
        ContainerLab {
            _serial: serial,
            srv,
            ctr,
            host,
            bridge,
            ctr_ip: format!("10.232.{net}.2"),
            srv_ip: format!("10.233.{net}.2"),
            ctr_ip6: format!("fd00:232:{net}::2"),
            srv_ip6: format!("fd00:233:{net}::2"),
        }
    }

    /// A daemon in the host namespace with its default choice of interfaces
    /// (every interface that is up: the bridge, its port and the uplink).
    pub fn daemon(&self, mut opts: DaemonOpts) -> Daemon {
        opts.netns = Some(self.host.name.clone());
        opts.autostart = true;
        opts.exclude_netns.push(self.srv.name.clone());
        let d = Daemon::start(opts);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st = d.ctl_json(&["status"]);
            let n = st["interfaces"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|i| i["capturing"] == true).count());
            if n >= 3 {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "bridge, port and uplink never all captured: {st}\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Two namespaces joined by a veth pair on a private /24 and a ULA /64:
/// `host` is where the daemon and the clients run, `peer` holds servers.
pub struct Lab {
    /// Lab tests measure timing-sensitive attribution: one at a time, so
    /// they do not compete with each other for the two cores.
    _serial: std::sync::MutexGuard<'static, ()>,
    pub peer: Netns,
    pub host: Netns,
    pub host_if: String,
    pub peer_if: String,
    pub host_ip: String,
    pub peer_ip: String,
    pub host_ip6: String,
    pub peer_ip6: String,
}

impl Lab {
    pub fn new() -> Lab {
        require_root();
        let serial = serial();
        let host = Netns::new();
        let peer = Netns::new();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let net = 1 + (std::process::id().wrapping_mul(7).wrapping_add(n * 13)) % 250;
        let host_if = unique("nmh");
        let peer_if = unique("nmp");
        let (host_ip, peer_ip) = (format!("10.231.{net}.1"), format!("10.231.{net}.2"));
        let (host_ip6, peer_ip6) = (format!("fd00:231:{net}::1"), format!("fd00:231:{net}::2"));
        sh_ok(&format!(
            "ip link add {host_if} netns {h} type veth peer name {peer_if} netns {p} && \
             ip -n {h} addr add {host_ip}/24 dev {host_if} && ip -n {p} addr add {peer_ip}/24 dev {peer_if} && \
             ip -n {h} addr add {host_ip6}/64 dev {host_if} nodad && ip -n {p} addr add {peer_ip6}/64 dev {peer_if} nodad && \
             ip -n {h} link set {host_if} up && ip -n {p} link set {peer_if} up",
            h = host.name,
            p = peer.name
        ));
        Lab {
            _serial: serial,
            peer,
            host,
            host_if,
            peer_if,
            host_ip,
            peer_ip,
            host_ip6,
            peer_ip6,
        }
    }

    /// A daemon watching the host namespace.
    pub fn daemon(&self, mut opts: DaemonOpts) -> Daemon {
        opts.netns = Some(self.host.name.clone());
        opts.autostart = true;
        opts.exclude_netns.push(self.peer.name.clone());
        let d = Daemon::start(opts);
        // Monitoring is up once the lab interface is being captured.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st = d.ctl_json(&["status"]);
            let capturing = st["interfaces"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|i| i["name"] == self.host_if.as_str() && i["capturing"] == true)
            });
            if capturing {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "lab interface never captured: {st}\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `program args` inside a namespace; the child's pid is the program's.
    #[track_caller]
    pub fn spawn_in(ns: &Netns, program: &str, args: &[&str]) -> Child {
        require_command(program);
        command("ip")
            .args(["netns", "exec", &ns.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in namespace")
    }
}

/// A program of short-lived downloaders: see [`gen::BURSTS`]. Its stdin is
/// piped (the "go" when `hold`), stdout too.
pub fn spawn_bursts(
    lab: &Lab,
    name: &str,
    port: &str,
    n: u64,
    period: f64,
    secs: f64,
    hold: bool,
) -> Child {
    require_command("python3");
    command("ip")
        .args([
            "netns",
            "exec",
            &lab.host.name,
            "python3",
            "-u",
            "-c",
            gen::BURSTS,
            name,
        ])
        .args([
            &lab.peer_ip,
            port,
            &n.to_string(),
            &period.to_string(),
            &secs.to_string(),
        ])
        .arg(if hold { "hold" } else { "go" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the burst program")
}

/// What the burst program reported at its end.
#[derive(Debug)]
pub struct Bursts {
    pub pids: Vec<u32>,
    /// Payload bytes received by its processes, all told.
    pub bytes: u64,
    /// Seconds from the first download's start to the last one's end.
    pub elapsed: f64,
}

impl Bursts {
    pub fn parse(out: &str) -> Bursts {
        let mut b = Bursts {
            pids: Vec::new(),
            bytes: 0,
            elapsed: 0.0,
        };
        for line in out.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["pid", p] => b.pids.push(p.parse().expect("pid")),
                ["done", bytes, secs] => {
                    b.bytes = bytes.parse().expect("bytes");
                    b.elapsed = secs.parse().expect("secs");
                }
                _ => {}
            }
        }
        assert!(b.elapsed > 0.0, "the burst program did not finish: {out}");
        b
    }
}

/// Waits for a child with a deadline, returning its output.
pub fn wait_output(child: Child, secs: u64) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("process {pid} did not finish within {secs} s");
        }
    }
}

/// Runs [`gen::NAMED_CHILDREN`] in the lab host: `total` short-lived
/// children, at most `conc` at a time, child `i` named `{prefix}{k:02}` (k =
/// i % `names`) sending `base + step * k` bytes to the peer's
/// [`gen::TCP_SERVER`] on `port` and holding the socket `hold_secs` before it
/// closes. Panics unless every child succeeded within `secs`.
#[allow(clippy::too_many_arguments)]
pub fn named_children(
    lab: &Lab,
    port: &str,
    total: u64,
    names: u64,
    conc: u32,
    (prefix, base, step): (&str, u64, u64),
    hold_secs: f64,
    secs: u64,
) {
    let gen = Lab::spawn_in(
        &lab.host,
        "python3",
        &[
            "-c",
            gen::NAMED_CHILDREN,
            &lab.peer_ip,
            port,
            &total.to_string(),
            &names.to_string(),
            &conc.to_string(),
            prefix,
            &base.to_string(),
            &step.to_string(),
            &hold_secs.to_string(),
        ],
    );
    let out = wait_output(gen, secs);
    assert!(
        out.status.success() && stdout(&out).trim() == "0",
        "generator failed: {out:?}"
    );
}

/// Python snippets used as traffic generators with known byte counts.
pub mod gen {
    /// Forks `total` children, at most `conc` at a time; child `i` renames
    /// itself `{prefix}{k:02}` (k = i % names), connects, sends
    /// `base + step * k` bytes, holds the socket `hold` seconds, closes it and
    /// exits. Prints the number of children that failed. See
    /// [`super::named_children`].
    pub const NAMED_CHILDREN: &str = r#"
import os, socket, sys, time
host, port, total, names, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
prefix, base, step, hold = sys.argv[6], int(sys.argv[7]), int(sys.argv[8]), float(sys.argv[9])
running = failed = 0
for i in range(total):
    if running >= conc:
        _, st = os.wait(); running -= 1; failed += st != 0
    k = i % names
    if os.fork() == 0:
        code = 1
        try:
            open("/proc/self/comm", "w").write("%s%02d" % (prefix, k))
            s = socket.create_connection((host, port)); s.sendall(b"n" * (base + step * k))
            if hold > 0:
                time.sleep(hold)
            s.close()
            code = 0
        finally:
            os._exit(code)
    running += 1
while running:
    _, st = os.wait(); running -= 1; failed += st != 0
print(failed, flush=True)
"#;

    /// TCP server: per connection, reads everything (prints the count), or
    /// sends `n` bytes when the client's first line is `GET n`.
    pub const TCP_SERVER: &str = r#"
import socket, sys, threading
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(512)
print("ready", flush=True)
def serve(c):
    with c:
        first = c.recv(65536)
        if first.startswith(b"GET "):
            n = int(first.split()[1]); chunk = b"x" * 65536
            while n > 0:
                k = c.send(chunk[:min(n, 65536)]); n -= k
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536): pass
        else:
            while first: first = c.recv(1 << 20)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

    /// TCP client: `up N` sends N payload bytes, `down N` receives N bytes.
    pub const TCP_CLIENT: &str = r#"
import socket, sys, time
host, port, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
c = socket.socket(fam, socket.SOCK_STREAM); c.connect((host, port))
if mode == "up":
    chunk = b"u" * 65536; left = n
    while left > 0:
        left -= c.send(chunk[:min(left, 65536)])
    c.shutdown(socket.SHUT_WR); c.recv(1)
else:
    req = b"GET %d\n" % n; c.sendall(req); got = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        got += len(b)
    assert got == n, got
c.close()
time.sleep(float(sys.argv[5]) if len(sys.argv) > 5 else 0)
print("done", flush=True)
"#;

    /// UDP sender: `count` unconnected sendto() datagrams of `size` bytes.
    pub const UDP_SENDER: &str = r#"
import socket, sys, time
host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); data = b"d" * size
for i in range(count):
    s.sendto(data, (host, port))
    if i % 200 == 0: time.sleep(0.002)
time.sleep(float(sys.argv[5]) if len(sys.argv) > 5 else 0)
print("done", flush=True)
"#;

    /// A program of short-lived processes: renames itself (comm) to argv[1],
    /// then every `period` s for `secs` s forks a child that downloads `n`
    /// bytes from a TCP_SERVER at host:port and exits. Prints "pid P" per
    /// child, then "done BYTES SECS": payload bytes the children received and
    /// the seconds from the first download's start to the last one's end.
    /// With "hold", the first child waits for a line on stdin before it
    /// downloads (a test can set a rule on its pid first).
    pub const BURSTS: &str = r#"
import os, socket, sys, time
name, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
period, secs, hold = float(sys.argv[5]), float(sys.argv[6]), sys.argv[7] == "hold"
with open("/proc/self/comm", "w") as f: f.write(name)
r, w = os.pipe()
def fetch():
    c = socket.socket(); c.connect((host, port)); c.sendall(b"GET %d\n" % n); got = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        got += len(b)
    c.close()
    return got
def spawn(wait):
    pid = os.fork()
    if pid == 0:
        if wait: os.read(r, 1)
        os._exit(0 if fetch() == n else 1)
    print("pid", pid, flush=True)
    return pid
pids = [spawn(hold)]
if hold: sys.stdin.readline()
t0 = time.monotonic()
if hold: os.write(w, b"g")
count = max(1, round(secs / period))
for k in range(1, count):
    target = t0 + k * period
    now = time.monotonic()
    if target > now: time.sleep(target - now)
    pids.append(spawn(False))
ok = 0
for p in pids:
    _, st = os.waitpid(p, 0)
    ok += os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0
print("done", ok * n, "%.3f" % (time.monotonic() - t0), flush=True)
"#;

    /// UDP sink that reads forever.
    pub const UDP_SINK: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True: s.recv(65536)
"#;

    /// Many short TCP connections from one process: `count` request /
    /// response exchanges, each receiving `size` bytes, one connection each.
    pub const MANY_CONNECTIONS: &str = r#"
import socket, sys
host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
req = b"GET %d\n" % size
for i in range(count):
    c = socket.socket(); c.connect((host, port)); c.sendall(req); got = 0
    while True:
        b = c.recv(65536)
        if not b: break
        got += len(b)
    assert got == size, got
    c.close()
print("done", flush=True)
"#;
}

/// Starts a server script in the peer namespace and waits for its "ready".
pub fn start_server(ns: &Netns, script: &str, args: &[&str]) -> ChildGuard {
    use std::io::BufRead;
    let mut all = vec!["-u", "-c", script];
    all.extend_from_slice(args);
    let mut child = Lab::spawn_in(ns, "python3", &all);
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("server output");
    assert_eq!(line.trim(), "ready", "server did not start");
    ChildGuard(child)
}

/// Kills the child on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `top --json` until `pred` holds or `secs` pass; returns the last.
pub fn wait_top(
    d: &Daemon,
    secs: u64,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = d.ctl_json(&["top", "--limit", "0"]);
        if pred(&v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Polls `read` until it reaches `lo`, then until it has held still for
/// 2.5 s (two one-second ticks: a late tick's bytes have landed), so an
/// upper bound sees everything that will be counted. Returns the last value;
/// it may be below `lo` when `secs` pass first.
pub fn settle(secs: u64, lo: u64, mut read: impl FnMut() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = read();
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = read();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        let quiet = since.elapsed() >= Duration::from_millis(2500);
        if (last >= lo && quiet) || Instant::now() > deadline {
            return last;
        }
    }
}

/// The most a TCP transfer of `payload` bytes may be credited: IPv4/IPv6 and
/// TCP headers with timestamps are 52–72 bytes a segment of up to 1448
/// payload bytes on the lab's 1500-byte MTU, at most 5% when nothing is
/// coalesced (eBPF sees each segment; pcap on veth often sees GSO
/// super-packets and far less), plus 16 KiB for the handshake, the request
/// line and the ACKs of the other direction. Counting a flow twice, or a
/// forged length, lands far above it.
pub fn tcp_credit_hi(payload: u64) -> u64 {
    payload + payload * 6 / 100 + 16 * 1024
}

/// `lo <= got <= hi`, with `what` and context in the message.
pub fn assert_between(got: u64, lo: u64, hi: u64, what: &str) {
    println!("{what}: {got} (allowed {lo}..={hi})");
    assert!(
        (lo..=hi).contains(&got),
        "{what}: {got} is outside the generator's {lo}..={hi}"
    );
}

/// The up bytes of the rows keyed `key` (a program name) in a report or a
/// report period (`rows`), 0 when it has none.
pub fn report_up(rep: &serde_json::Value, key: &str) -> u64 {
    rep["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["key"] == key)
        .map(|r| u(r, "up_bytes"))
        .sum()
}

pub fn proc_by_pid(top: &serde_json::Value, pid: u32) -> Option<serde_json::Value> {
    top["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
        .cloned()
}

/// The unsigned integer field `k` of `v`; panics when it is missing or not
/// a number, so a renamed or dropped field fails "less than" checks instead
/// of reading as 0.
pub fn u(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no unsigned field '{k}' in {v}"))
}

/// Starts uploading `n` bytes from the lab host to the peer's
/// `gen::TCP_SERVER` on `port` with `gen::TCP_CLIENT`; the child's pid is
/// the uploader's.
pub fn spawn_upload(lab: &Lab, port: &str, n: u64) -> Child {
    Lab::spawn_in(
        &lab.host,
        "python3",
        &[
            "-c",
            gen::TCP_CLIENT,
            &lab.peer_ip,
            port,
            "up",
            &n.to_string(),
        ],
    )
}

/// Uploads `n` bytes like [`spawn_upload`]; returns the uploader's pid once it is done.
pub fn upload(lab: &Lab, port: &str, n: u64) -> u32 {
    let up = spawn_upload(lab, port, n);
    let pid = up.id();
    wait_output(up, 60);
    pid
}

/// Polls `status` until the storage state is `want`; returns the storage object.
pub fn wait_storage(d: &Daemon, want: &str, secs: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let st = d.ctl_json(&["status"]);
        if st["storage"]["state"] == want {
            return st["storage"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "storage never became '{want}': {}\n{}",
            st["storage"],
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
