//! The alert hook: the configured command run with the alert in `NETMON_ALERT_*`
//! environment variables. argv only (never a shell), as an unprivileged user with
//! no capabilities and no inherited descriptors, in its own process group that a
//! timeout kills whole; at most one run per alert at a time, on its own thread:
//! never blocks a tick.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netmon_proto::v1;
use tracing::{debug, warn};

use super::{direction_name, kind_name};

/// Hooks running (or waiting for their alert's previous run) at once; more are dropped and logged.
const MAX_PENDING: usize = 32;

/// How one run ended.
#[derive(Debug)]
pub enum HookOutcome {
    Exited(ExitStatus),
    TimedOut,
    SpawnFailed(std::io::Error),
    WaitFailed(std::io::Error),
}

fn rfc3339(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Who the hook runs as: never root, so a hook (or whatever a process name
/// talks it into) cannot use the daemon's privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookUser {
    pub uid: u32,
    pub gid: u32,
}

impl HookUser {
    /// `nobody` on Debian and most distributions.
    pub const NOBODY: HookUser = HookUser {
        uid: 65_534,
        gid: 65_534,
    };

    /// The user called `name`, with its primary group; root is refused.
    pub fn lookup(name: &str) -> Result<HookUser, String> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| format!("cannot look up user '{name}': {e}"))?
            .ok_or_else(|| format!("no user '{name}'"))?;
        if user.uid.is_root() {
            return Err("the hook must not run as root: name an unprivileged user".to_owned());
        }
        Ok(HookUser {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }
}

/// A value for the hook with control characters removed: a process name or
/// message must not put terminal escapes or fake lines in what the hook prints.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// The variables a hook receives for `a`, without control characters.
pub fn env_for(a: &v1::Alert) -> Vec<(&'static str, String)> {
    env_raw(a)
        .into_iter()
        .map(|(k, v)| (k, clean(&v)))
        .collect()
}

fn env_raw(a: &v1::Alert) -> Vec<(&'static str, String)> {
    let p = a.process.clone().unwrap_or_default();
    let state = match v1::AlertState::try_from(a.state) {
        Ok(v1::AlertState::Open) => "open",
        Ok(v1::AlertState::Closed) => "closed",
        _ => "",
    };
    let pid = if p.pid == 0 {
        String::new()
    } else {
        p.pid.to_string()
    };
    // A program alert's processes, space-separated.
    let pids = a
        .pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        ("NETMON_ALERT_ID", a.id.to_string()),
        (
            "NETMON_ALERT_KIND",
            kind_name(v1::ThresholdKind::try_from(a.kind).unwrap_or_default()).to_owned(),
        ),
        ("NETMON_ALERT_STATE", state.to_owned()),
        ("NETMON_ALERT_PID", pid),
        ("NETMON_ALERT_PIDS", pids),
        ("NETMON_ALERT_PROCESS", p.name),
        ("NETMON_ALERT_EXE", p.exe),
        ("NETMON_ALERT_USER", p.user),
        (
            "NETMON_ALERT_DIRECTION",
            direction_name(v1::Direction::try_from(a.direction).unwrap_or_default()).to_owned(),
        ),
        ("NETMON_ALERT_VALUE", a.value.to_string()),
        ("NETMON_ALERT_PEAK", a.peak.to_string()),
        ("NETMON_ALERT_THRESHOLD", a.threshold.to_string()),
        ("NETMON_ALERT_STARTED", rfc3339(a.started_ms)),
        ("NETMON_ALERT_ENDED", rfc3339(a.ended_ms)),
        ("NETMON_ALERT_MESSAGE", a.message.clone()),
    ]
}

/// Kills the hook's whole process group: its children die with it.
fn kill_group(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `argv` for `a` as `user` and waits at most `timeout`; on expiry its
/// process group is killed. Blocking: call it from a thread of its own.
pub fn run(argv: &[String], a: &v1::Alert, timeout: Duration, user: HookUser) -> HookOutcome {
    let Some((program, args)) = argv.split_first() else {
        return HookOutcome::SpawnFailed(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty hook command",
        ));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env_for(a))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // std drops supplementary groups when root sets a uid; leaving uid 0
        // clears every capability.
        .gid(user.gid)
        .uid(user.uid)
        .process_group(0);
    // SAFETY: runs in the forked child before exec; close_range(2) is a plain
    // async-signal-safe syscall and nothing is allocated. It marks every
    // descriptor above stderr close-on-exec, so libpcap's packet sockets and
    // the netlink and database descriptors (opened without O_CLOEXEC) do not
    // reach the hook, while std's own exec-error pipe still works.
    unsafe {
        cmd.pre_exec(|| {
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            let rc = libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return HookOutcome::SpawnFailed(e),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return HookOutcome::Exited(st),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                return HookOutcome::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(&mut child);
                return HookOutcome::WaitFailed(e);
            }
        }
    }
}

/// Per alert id: a lock that serializes its runs, and how many runs hold or wait for it.
type Pending = HashMap<u64, (Arc<Mutex<()>>, usize)>;

/// Runs the hook for alerts off the tick. Runs for one alert (open, then
/// close) are serialized; different alerts run side by side.
#[derive(Clone)]
pub struct HookRunner {
    argv: Arc<Vec<String>>,
    timeout: Duration,
    user: HookUser,
    pending: Arc<Mutex<Pending>>,
}

impl HookRunner {
    pub fn new(argv: Vec<String>, timeout: Duration, user: HookUser) -> HookRunner {
        HookRunner {
            argv: Arc::new(argv),
            timeout,
            user,
            pending: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.argv.is_empty()
    }

    /// Starts the hook for `a` on a thread; returns it (for tests), or
    /// `None` when no hook is configured or too many are pending.
    pub fn fire(&self, a: &v1::Alert) -> Option<std::thread::JoinHandle<()>> {
        if !self.enabled() {
            return None;
        }
        let slot = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let total: usize = p.values().map(|(_, n)| n).sum();
            if total >= MAX_PENDING {
                warn!(
                    alert = a.id,
                    pending = total,
                    "alert hook skipped: too many hooks still running"
                );
                return None;
            }
            let e = p
                .entry(a.id)
                .or_insert_with(|| (Arc::new(Mutex::new(())), 0));
            e.1 += 1;
            e.0.clone()
        };
        let (me, alert) = (self.clone(), a.clone());
        let spawned = std::thread::Builder::new()
            .name("netmond-hook".into())
            .spawn(move || {
                {
                    let _one = slot.lock().unwrap_or_else(|e| e.into_inner());
                    me.run_logged(&alert);
                }
                let mut p = me.pending.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = p.get_mut(&alert.id) {
                    e.1 -= 1;
                    if e.1 == 0 {
                        p.remove(&alert.id);
                    }
                }
            });
        match spawned {
            Ok(h) => Some(h),
            Err(e) => {
                warn!(error = %e, alert = a.id, "cannot start a thread for the alert hook");
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = p.get_mut(&a.id) {
                    e.1 -= 1;
                    if e.1 == 0 {
                        p.remove(&a.id);
                    }
                }
                None
            }
        }
    }

    fn run_logged(&self, a: &v1::Alert) {
        let cmd = self.argv.first().map(String::as_str).unwrap_or_default();
        match run(&self.argv, a, self.timeout, self.user) {
            HookOutcome::Exited(st) if st.success() => debug!(alert = a.id, cmd, "alert hook ran"),
            HookOutcome::Exited(st) => warn!(alert = a.id, cmd, status = %st, "alert hook failed"),
            HookOutcome::TimedOut => warn!(
                alert = a.id,
                cmd,
                timeout_secs = self.timeout.as_secs_f64(),
                "alert hook timed out and was killed"
            ),
            HookOutcome::SpawnFailed(e) => {
                warn!(alert = a.id, cmd, error = %e, "cannot run the alert hook")
            }
            HookOutcome::WaitFailed(e) => {
                warn!(alert = a.id, cmd, error = %e, "lost track of the alert hook")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn alert(name: &str) -> v1::Alert {
        v1::Alert {
            id: 7,
            kind: v1::ThresholdKind::ProcessRate as i32,
            state: v1::AlertState::Open as i32,
            direction: v1::Direction::Up as i32,
            process: Some(v1::ProcessIdentity {
                pid: 4242,
                name: name.into(),
                exe: "/usr/bin/python3".into(),
                user: "alice".into(),
                ..Default::default()
            }),
            threshold: 1000,
            value: 2000,
            peak: 3000,
            started_ms: 1_700_000_000_000,
            ended_ms: 0,
            message: "python3 (pid 4242): up rate over".into(),
            ..Default::default()
        }
    }

    /// Hooks run as `nobody`: setting a uid needs root (CI is root).
    fn as_nobody() -> HookUser {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the hook tests need root: they run the hook as 'nobody'"
        );
        HookUser::NOBODY
    }

    /// A temporary directory the unprivileged hook can write to.
    fn shared_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        dir
    }

    /// Writes an executable script. A child process writes it, so no writable
    /// descriptor of ours can leak into another test's fork and make the exec
    /// fail with ETXTBSY.
    fn write_script(path: &std::path::Path, body: &str) {
        let st = std::process::Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
                "_",
                body,
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "writing {}", path.display());
    }

    /// A script that writes its environment to `out`.
    fn env_script(dir: &std::path::Path) -> (String, std::path::PathBuf) {
        let out = dir.join("env.txt");
        let script = dir.join("hook.sh");
        write_script(&script, &format!("#!/bin/sh\nenv > '{}'\n", out.display()));
        (script.display().to_string(), out)
    }

    fn vars(path: &std::path::Path) -> HashMap<String, String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn hook_gets_the_alert_as_variables() {
        let dir = shared_dir();
        let (script, out) = env_script(dir.path());
        let r = run(
            &[script],
            &alert("python3"),
            Duration::from_secs(10),
            as_nobody(),
        );
        assert!(
            matches!(r, HookOutcome::Exited(st) if st.success()),
            "{r:?}"
        );
        let v = vars(&out);
        let want = [
            ("NETMON_ALERT_ID", "7"),
            ("NETMON_ALERT_KIND", "rate"),
            ("NETMON_ALERT_STATE", "open"),
            ("NETMON_ALERT_PID", "4242"),
            ("NETMON_ALERT_PIDS", ""),
            ("NETMON_ALERT_PROCESS", "python3"),
            ("NETMON_ALERT_EXE", "/usr/bin/python3"),
            ("NETMON_ALERT_USER", "alice"),
            ("NETMON_ALERT_DIRECTION", "up"),
            ("NETMON_ALERT_VALUE", "2000"),
            ("NETMON_ALERT_PEAK", "3000"),
            ("NETMON_ALERT_THRESHOLD", "1000"),
            ("NETMON_ALERT_STARTED", "2023-11-14T22:13:20Z"),
            ("NETMON_ALERT_ENDED", ""),
            ("NETMON_ALERT_MESSAGE", "python3 (pid 4242): up rate over"),
        ];
        for (k, val) in want {
            assert_eq!(v.get(k).map(String::as_str), Some(val), "{k}");
        }
    }

    #[test]
    fn a_hostile_process_name_arrives_verbatim_and_runs_nothing() {
        let dir = shared_dir();
        let marker = dir.path().join("pwned");
        let name = format!(
            "x; rm -rf /; touch {} $(touch {})",
            marker.display(),
            marker.display()
        );
        // The name also goes in argv: still no shell to interpret it.
        let (script, out) = env_script(dir.path());
        let r = run(
            &[script, name.clone()],
            &alert(&name),
            Duration::from_secs(10),
            as_nobody(),
        );
        assert!(
            matches!(r, HookOutcome::Exited(st) if st.success()),
            "{r:?}"
        );
        assert_eq!(vars(&out).get("NETMON_ALERT_PROCESS"), Some(&name));
        assert!(
            !marker.exists(),
            "the process name was interpreted by a shell"
        );
    }

    #[test]
    fn hook_past_its_timeout_is_killed() {
        let t0 = Instant::now();
        let r = run(
            &["/bin/sleep".into(), "30".into()],
            &alert("x"),
            Duration::from_millis(300),
            as_nobody(),
        );
        assert!(matches!(r, HookOutcome::TimedOut), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_reported_not_fatal() {
        let r = run(
            &["/nonexistent/netmon-hook".into()],
            &alert("x"),
            Duration::from_secs(1),
            as_nobody(),
        );
        assert!(matches!(r, HookOutcome::SpawnFailed(_)), "{r:?}");
    }

    #[test]
    fn runs_for_one_alert_do_not_overlap() {
        let dir = shared_dir();
        let log = dir.path().join("log");
        let script = dir.path().join("slow.sh");
        // Appends "start" and "end" around a sleep: overlap would interleave them.
        write_script(
            &script,
            &format!(
                "#!/bin/sh\necho start >> '{0}'\nsleep 0.3\necho end >> '{0}'\n",
                log.display()
            ),
        );
        let runner = HookRunner::new(
            vec![script.display().to_string()],
            Duration::from_secs(10),
            as_nobody(),
        );
        let a = alert("x");
        let mut closed = a.clone();
        closed.state = v1::AlertState::Closed as i32;
        let h1 = runner.fire(&a).unwrap();
        let h2 = runner.fire(&closed).unwrap();
        h1.join().unwrap();
        h2.join().unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "start\nend\nstart\nend\n"
        );
        assert!(runner.pending.lock().unwrap().is_empty());
    }

    #[test]
    fn hook_runs_unprivileged_without_the_daemons_descriptors() {
        let dir = shared_dir();
        let out = dir.path().join("who.txt");
        let script = dir.path().join("who.sh");
        // A descriptor without close-on-exec, like libpcap's packet sockets.
        let leak = nix::unistd::dup(std::io::stderr()).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&leak);
        write_script(
            &script,
            &format!(
                "#!/bin/sh\n{{ id -u; id -g; id -G; grep ^CapEff /proc/self/status; \
                 if [ -e /proc/self/fd/{fd} ]; then echo leaked; else echo closed; fi; \
                 }} > '{}'\n",
                out.display()
            ),
        );
        let r = run(
            &[script.display().to_string()],
            &alert("x"),
            Duration::from_secs(10),
            as_nobody(),
        );
        assert!(
            matches!(r, HookOutcome::Exited(st) if st.success()),
            "{r:?}"
        );
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..3], ["65534", "65534", "65534"], "{text}");
        assert_eq!(
            lines[3].split_whitespace().nth(1),
            Some("0000000000000000"),
            "{text}"
        );
        assert_eq!(lines[4], "closed", "fd {fd} reached the hook: {text}");
    }

    #[test]
    fn timeout_kills_the_hooks_children_too() {
        let dir = shared_dir();
        let pidfile = dir.path().join("child.pid");
        let script = dir.path().join("spawns.sh");
        write_script(
            &script,
            &format!(
                "#!/bin/sh\n/bin/sleep 30 &\necho $! > '{}'\nwait\n",
                pidfile.display()
            ),
        );
        let r = run(
            &[script.display().to_string()],
            &alert("x"),
            Duration::from_millis(500),
            as_nobody(),
        );
        assert!(matches!(r, HookOutcome::TimedOut), "{r:?}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed: gone, or a zombie waiting for init to reap it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let alive = loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit(") ").next().and_then(|r| r.chars().next()));
            let alive = state.is_some_and(|c| c != 'Z' && c != 'X');
            if !alive || Instant::now() > deadline {
                break alive;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!alive, "the hook's child {pid} outlived the timeout");
    }

    #[test]
    fn control_characters_are_stripped_from_the_values() {
        let mut a = alert("evil\x1b]0;owned\x07\nNETMON_FAKE=1");
        a.message = "line one\r\nline two\u{9b}".into();
        let env: HashMap<_, _> = env_for(&a).into_iter().collect();
        assert_eq!(env["NETMON_ALERT_PROCESS"], "evil]0;ownedNETMON_FAKE=1");
        assert_eq!(env["NETMON_ALERT_MESSAGE"], "line oneline two");
    }

    #[test]
    fn root_is_refused_as_the_hook_user() {
        assert!(HookUser::lookup("root").is_err());
        assert!(HookUser::lookup("no-such-user-netmon").is_err());
        assert_eq!(HookUser::lookup("nobody").unwrap(), HookUser::NOBODY);
    }
}
