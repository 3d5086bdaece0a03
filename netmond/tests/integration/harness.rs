//! Test lab: daemons on temporary sockets, network namespaces and veth pairs
//! with unique names, throw-away users and groups, all removed on drop.

#![allow(dead_code, reason = "each test file uses a different part of the lab")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    if name == "netmond" {
        return PathBuf::from(env!("CARGO_BIN_EXE_netmond"));
    }
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} is not built: run `cargo build --workspace` first", p.display());
    p
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("run sh")
}

pub fn sh_ok(cmd: &str) {
    let out = sh(cmd);
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
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
        let gid = nix::unistd::Group::from_name(&name).expect("lookup").expect("group exists").gid.as_raw();
        TempGroup { name, gid }
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _ = sh(&format!("groupdel {}", self.name));
    }
}

/// A system user (no home, no login) deleted on drop.
pub struct TempUser {
    pub name: String,
}

impl TempUser {
    pub fn new(groups: &[&str]) -> TempUser {
        let name = unique("nmu");
        let g = if groups.is_empty() { String::new() } else { format!("-G {}", groups.join(",")) };
        sh_ok(&format!("useradd --system --no-create-home --shell /usr/sbin/nologin {g} {name}"));
        TempUser { name }
    }

    /// `cmd` run as this user with its supplementary groups.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", &self.name, "--regid", &self.name, "--init-groups", "--"]).arg(program);
        c
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = sh(&format!("userdel {}", self.name));
        let _ = sh(&format!("groupdel {} 2>/dev/null", self.name));
    }
}

/// A network namespace removed on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("nmns");
        sh_ok(&format!("ip netns add {name} && ip -n {name} link set lo up"));
        Netns { name }
    }

    pub fn exec(&self, cmd: &str) -> Output {
        sh(&format!("ip netns exec {} sh -c '{}'", self.name, cmd.replace('\'', "'\\''")))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&format!("ip netns pids {} | xargs -r kill -9; ip netns del {}", self.name, self.name));
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
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let socket = dir.path().join("run/netmond.sock");
        let db = dir.path().join("lib/netmon.db");
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
            opts.config_extra
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
        let mut d = Daemon { child: None, dir, socket, db, config, log, group, own_ns, netns };
        d.spawn();
        d.wait_ready();
        d
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns])
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
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = self
            .command()
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn netmond");
        self.child = Some(child);
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("netmond exited early ({st}): {}", self.log_text());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("netmond did not open its socket in 20 s: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// netmonctl as root against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("netmonctl")).arg("--socket").arg(&self.socket).args(args).output().expect("run netmonctl")
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
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("netmonctl {args:?}: bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
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
                panic!("netmond did not exit within 15 s of SIGTERM: {}", self.log_text());
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
