//! The few lab helpers these tests need (copied from netmond's test lab, which
//! another crate cannot import): namespaces, veth pair, group, user, daemon.
//! Running commands (`sh`, the missing-package message) is netmond's own
//! `commands` module, included by path.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use crate::commands::{command, require_command, sh_ok, sh_unchecked};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this test process and call (≤ 15 chars).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

pub fn require_root() {
    let out = command("id").arg("-u").output().expect("run id -u");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim() == "0",
        "this end-to-end test needs root (it creates namespaces, a group and a user, \
         and runs the capture daemon); run it with sudo"
    );
}

/// A binary of the workspace, next to this test's directory (target/debug).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    // target/debug/deps/integration-xxxx -> target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run cargo build --workspace first",
        p.display()
    );
    p
}

/// A system group deleted on drop.
pub struct TempGroup {
    pub name: String,
}

impl TempGroup {
    pub fn new() -> TempGroup {
        let name = unique("nmg");
        sh_ok(&format!("groupadd --system {name}"));
        TempGroup { name }
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
    /// A user in `group`, or in no extra group at all.
    pub fn new(group: Option<&str>) -> TempUser {
        let name = unique("nmu");
        let groups = group.map(|g| format!("-G {g}")).unwrap_or_default();
        sh_ok(&format!(
            "useradd --system --no-create-home --shell /usr/sbin/nologin {groups} {name}"
        ));
        TempUser { name }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = sh_unchecked(&format!("userdel {}", self.name));
        let _ = sh_unchecked(&format!("groupdel {} 2>/dev/null", self.name));
    }
}

/// A network namespace removed on drop (with whatever still runs in it).
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

    /// Starts `program args` inside the namespace.
    #[track_caller]
    pub fn spawn(&self, program: &str, args: &[&str]) -> Child {
        require_command(program);
        command("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh_unchecked(&format!(
            "ip netns pids {n} | xargs -r kill -9; ip netns del {n}",
            n = self.name
        ));
    }
}

/// Two namespaces joined by a veth pair on a private /24: `host` is watched
/// by the daemon and runs the clients, `peer` runs the servers.
pub struct Lab {
    /// One lab at a time: the daemons would compete for the two cores.
    _serial: std::sync::MutexGuard<'static, ()>,
    pub peer: Netns,
    pub host: Netns,
    pub host_if: String,
    pub peer_ip: String,
}

impl Lab {
    pub fn new() -> Lab {
        require_root();
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let host = Netns::new();
        let peer = Netns::new();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let net = 1 + (std::process::id().wrapping_mul(7).wrapping_add(n * 13)) % 250;
        let host_if = unique("nth");
        let peer_if = unique("ntp");
        let (host_ip, peer_ip) = (format!("10.232.{net}.1"), format!("10.232.{net}.2"));
        sh_ok(&format!(
            "ip link add {host_if} netns {h} type veth peer name {peer_if} netns {p} && \
             ip -n {h} addr add {host_ip}/24 dev {host_if} && ip -n {p} addr add {peer_ip}/24 dev {peer_if} && \
             ip -n {h} link set {host_if} up && ip -n {p} link set {peer_if} up",
            h = host.name,
            p = peer.name
        ));
        Lab {
            _serial: serial,
            peer,
            host,
            host_if,
            peer_ip,
        }
    }
}

/// A real netmond on a temporary socket and DB in the lab's host namespace.
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    log: PathBuf,
    config: PathBuf,
    db: PathBuf,
    group: String,
    netns: String,
    iface: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start(lab: &Lab, group: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        // Let the unprivileged test user reach the socket's directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let socket = dir.path().join("run/netmond.sock");
        let db = dir.path().join("lib/netmon.db");
        let config = dir.path().join("netmond.toml");
        let log = dir.path().join("netmond.log");
        std::fs::write(&config, "[daemon]\nautostart = true\ntick_ms = 1000\n")
            .expect("write config");
        let mut d = Daemon {
            child: None,
            socket,
            log,
            config,
            db,
            group: group.to_owned(),
            netns: lab.host.name.clone(),
            iface: lab.host_if.clone(),
            _dir: dir,
        };
        d.spawn();
        d
    }

    /// Replaces the config file (the daemon reads it again on reload).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Starts netmond and waits until it captures the lab interface.
    pub fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = command("ip")
            .args(["netns", "exec", &self.netns])
            .arg(bin("netmond"))
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--db")
            .arg(&self.db)
            .arg("--group")
            .arg(&self.group)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn netmond");
        self.child = Some(child);
        let iface = self.iface.clone();
        self.wait_capturing(&iface);
    }

    /// SIGTERM and wait (at most 15 s).
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        sh_ok(&format!("kill -TERM {}", child.id()));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("netmond did not exit within 15 s: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_capturing(&mut self, iface: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!("netmond exited early ({st}): {}", self.log_text());
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                let st = self.status();
                let capturing = st["interfaces"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|i| i["name"] == iface && i["capturing"] == true)
                });
                if capturing {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "netmond never captured '{iface}' within 20 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `netmonctl --json status` as root.
    pub fn status(&self) -> serde_json::Value {
        self.ctl_json(&["status"])
    }

    /// `netmonctl --json ARGS` as root, parsed.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(bin("netmonctl"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--json")
            .args(args)
            .output()
            .expect("run netmonctl");
        assert!(
            out.status.success(),
            "netmonctl {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        serde_json::from_slice(&out.stdout).expect("netmonctl JSON")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kills the child on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// TCP sink: accepts connections and reads everything.
pub const TCP_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
print("ready", flush=True)
def serve(c):
    with c:
        while c.recv(1 << 20): pass
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// TCP client that sends ~3 MiB/s for at most `secs` seconds, then exits.
pub const TCP_TRICKLE: &str = r#"
import socket, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = socket.socket(); c.connect((host, port))
chunk = b"u" * 32768; end = time.time() + secs
while time.time() < end:
    c.sendall(chunk); time.sleep(0.01)
c.close()
"#;

/// Starts the TCP sink in `ns` and waits for its "ready".
pub fn start_server(ns: &Netns, ip: &str, port: u16) -> ChildGuard {
    use std::io::BufRead;
    let port = port.to_string();
    let mut child = ns.spawn("python3", &["-u", "-c", TCP_SERVER, ip, &port]);
    let stdout = child.stdout.take().expect("stdout");
    let guard = ChildGuard(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("server output");
    assert_eq!(line.trim(), "ready", "server did not start");
    guard
}
