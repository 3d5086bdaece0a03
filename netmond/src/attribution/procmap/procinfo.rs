//! Process facts (`ProcessInfo`) read from /proc at attribution time. One process's
//! facts all come through one opened `/proc/<pid>` directory (`ProcDir`, a `procfs`
//! process handle): a pid reused between two reads makes the later reads fail instead
//! of describing another process. `procfs` parses stat (comm lossily) and reads exe;
//! status, cmdline and cgroup are read as bytes through the same handle and parsed here,
//! because `procfs` reads those files as UTF-8 text (one non-UTF-8 byte in a name, an
//! argument or a cgroup path fails the whole file) and reads a command line whole.
//! A name is any bytes a process chose (prctl, /proc/self/comm), shown lossily, and one
//! odd field never drops a process. Knows nothing of sockets.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use procfs::process::Process;

use super::ProcessInfo;

/// Fields of `/proc/<pid>/stat` that we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Read as bytes and kept lossily (`procfs` does so).
    pub comm: String,
    /// Field 22: clock ticks since boot.
    pub start_time: u64,
}

impl From<procfs::process::Stat> for Stat {
    fn from(s: procfs::process::Stat) -> Stat {
        Stat {
            comm: s.comm,
            start_time: s.starttime,
        }
    }
}

/// One process's `/proc/<pid>` directory, opened once; every read below is relative
/// to it.
pub struct ProcDir(Process);

impl ProcDir {
    /// `None` when the process is gone (or /proc is not readable).
    pub fn open(proc_root: &Path, pid: u32) -> Option<ProcDir> {
        Process::new_with_root(proc_root.join(pid.to_string()))
            .ok()
            .map(ProcDir)
    }

    /// `/proc/<pid>/stat`: cheap, and enough to key a cache.
    pub fn stat(&self) -> Option<Stat> {
        self.0.stat().ok().map(Stat::from)
    }

    /// At most `limit` bytes of a file of this process.
    fn read_bytes(&self, file: &str, limit: usize) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        self.0
            .open_relative(file)
            .ok()?
            .take(limit as u64)
            .read_to_end(&mut buf)
            .ok()?;
        Some(buf)
    }
}

/// Bytes read of `status` and `cgroup`: both are a few hundred bytes; the bound only
/// keeps a surprise from costing memory.
const SMALL_FILE_MAX: usize = 64 * 1024;

/// The real uid from the `Uid:` line of `/proc/<pid>/status` (whose `Name:` line may
/// hold any bytes).
pub fn parse_status_uid(s: &[u8]) -> Option<u32> {
    let line = s
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"Uid:"))?;
    std::str::from_utf8(line)
        .ok()?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bytes of a command line kept, in memory, on the API and in the database: a
/// megabyte of argv must not become a megabyte per reply, per flow and per row.
pub const CMDLINE_MAX: usize = 4096;

/// `/proc/<pid>/cmdline`: NUL-separated args joined by single spaces, cut to
/// `CMDLINE_MAX` bytes (on a character boundary); true when cut.
pub fn parse_cmdline(b: &[u8]) -> (String, bool) {
    let b = b.strip_suffix(b"\0").unwrap_or(b);
    let cut = b.len() > CMDLINE_MAX;
    let b = b.get(..CMDLINE_MAX).unwrap_or(b);
    let mut s = b
        .split(|&c| c == 0)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    // A sequence cut in the middle became U+FFFD, which may be longer.
    if s.len() > CMDLINE_MAX {
        let mut end = CMDLINE_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    (s, cut)
}

/// `btime` (boot time, seconds since the epoch) from `/proc/stat`.
pub fn parse_btime(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The cgroup path of a process from `/proc/<pid>/cgroup`: the unified (v2, `0::`) line
/// when it names more than the root, else the `name=systemd` v1 line, else the first
/// line with a non-root path.
pub fn parse_cgroup(s: &str) -> String {
    let entries: Vec<(&str, &str)> = s
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrl = it.next()?;
            let path = it.next()?;
            Some((ctrl, path))
        })
        .collect();
    let pick = |pred: &dyn Fn(&str) -> bool| {
        entries
            .iter()
            .find(|(c, p)| pred(c) && *p != "/")
            .map(|(_, p)| p.to_string())
    };
    pick(&|c| c.is_empty())
        .or_else(|| pick(&|c| c == "name=systemd"))
        .or_else(|| pick(&|_| true))
        .or_else(|| entries.first().map(|(_, p)| p.to_string()))
        .unwrap_or_default()
}

/// The innermost systemd unit named in a cgroup path: `/system.slice/nginx.service` ->
/// `nginx.service`; `""` when none.
pub fn unit_from_cgroup(path: &str) -> String {
    const SUFFIXES: [&str; 5] = [".service", ".scope", ".socket", ".mount", ".swap"];
    path.rsplit('/')
        .find(|c| SUFFIXES.iter().any(|s| c.ends_with(s) && c.len() > s.len()))
        .unwrap_or("")
        .to_string()
}

/// Wall-clock start of a process in ms since the epoch.
pub fn started_ms(btime_s: u64, start_ticks: u64, clk_tck: u64) -> i64 {
    let tck = clk_tck.max(1);
    let ms = btime_s.saturating_mul(1000) + start_ticks.saturating_mul(1000) / tck;
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Process-independent facts needed to build a `ProcessInfo`, plus the user-name cache.
pub struct InfoReader {
    pub btime_s: u64,
    pub clk_tck: u64,
    users: HashMap<u32, String>,
}

impl InfoReader {
    pub fn new(proc_root: &Path) -> InfoReader {
        let btime_s = std::fs::read_to_string(proc_root.join("stat"))
            .ok()
            .and_then(|s| parse_btime(&s))
            .unwrap_or(0);
        let clk_tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(100);
        InfoReader {
            btime_s,
            clk_tck,
            users: HashMap::new(),
        }
    }

    pub fn user_name(&mut self, uid: u32) -> String {
        if let Some(n) = self.users.get(&uid) {
            return n.clone();
        }
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        if self.users.len() > 4096 {
            self.users.clear();
        }
        self.users.insert(uid, name.clone());
        name
    }

    /// Read everything else for a process whose stat was just read through `dir`.
    /// Missing pieces (exe of a kernel thread, permission) become empty strings, not
    /// failures.
    pub fn read_rest(&mut self, pid: u32, dir: &ProcDir, stat: Stat) -> ProcessInfo {
        let exe = dir
            .0
            .exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // What `parse_cmdline` keeps, plus a byte to tell a cut and the trailing NUL:
        // a huge argv is never read whole.
        let (cmdline, cmdline_truncated) = dir
            .read_bytes("cmdline", CMDLINE_MAX + 2)
            .map(|b| parse_cmdline(&b))
            .unwrap_or_default();
        let uid = dir
            .read_bytes("status", SMALL_FILE_MAX)
            .and_then(|s| parse_status_uid(&s))
            .or_else(|| dir.0.uid().ok())
            .unwrap_or(u32::MAX);
        let user = self.user_name(uid);
        let cgroup = dir
            .read_bytes("cgroup", SMALL_FILE_MAX)
            .map(|s| parse_cgroup(&String::from_utf8_lossy(&s)))
            .unwrap_or_default();
        let unit = unit_from_cgroup(&cgroup);
        let container = super::container::container_from_cgroup(&cgroup);
        let netns = dir
            .0
            .open_relative("ns/net")
            .and_then(|f| Ok(f.metadata()?))
            .map(|m| m.ino())
            .unwrap_or(0);
        ProcessInfo {
            pid,
            start_time: stat.start_time,
            started_ms: started_ms(self.btime_s, stat.start_time, self.clk_tck),
            name: stat.comm,
            exe,
            cmdline,
            cmdline_truncated,
            uid,
            user,
            unit,
            cgroup,
            container,
            netns,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use procfs::FromRead;

    /// The stat parse `ProcDir::stat` uses, over given bytes.
    fn parse_stat(b: &[u8]) -> Option<Stat> {
        procfs::process::Stat::from_read(b).ok().map(Stat::from)
    }

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let s = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(
            parse_stat(s.as_bytes()),
            Some(Stat {
                comm: "my (odd) proc".into(),
                start_time: 987654
            })
        );
    }

    #[test]
    fn stat_real_line_and_garbage() {
        let s = "12577 (cat) R 12575 12575 5609 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 55918 3133440 406 18446744073709551615 94629744152576 94629744172457 140725586194064 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94629744188464 94629744190080 94630003015680 140725586201302 140725586201322 140725586201322 140725586202603 0\n";
        assert_eq!(parse_stat(s.as_bytes()).unwrap().start_time, 55918);
        assert_eq!(parse_stat(s.as_bytes()).unwrap().comm, "cat");
        assert_eq!(parse_stat(b"12 (x) R 1 2"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn stat_with_non_utf8_comm_keeps_the_process_and_shows_the_name_lossily() {
        let s = b"4242 (nmx\xff\xfe) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.start_time, 987654);
        assert_eq!(st.comm, "nmx\u{fffd}\u{fffd}");
    }

    #[test]
    fn own_process_is_read_through_one_handle() {
        let root = Path::new("/proc");
        let dir = ProcDir::open(root, std::process::id()).unwrap();
        let stat = dir.stat().unwrap();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(stat.comm, comm.trim_end_matches('\n'));
        let info = InfoReader::new(root).read_rest(std::process::id(), &dir, stat.clone());
        assert_eq!(info.start_time, stat.start_time);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(info.exe, exe.to_string_lossy());
        let args = std::env::args().collect::<Vec<_>>().join(" ");
        assert_eq!(info.cmdline, args);
        assert_eq!(info.uid, nix::unistd::getuid().as_raw());
        let netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(info.netns, netns);
    }

    #[test]
    fn a_handle_to_a_gone_process_reads_nothing_even_if_its_pid_comes_back() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let dir = ProcDir::open(Path::new("/proc"), child.id()).unwrap();
        assert!(dir.stat().is_some());
        child.kill().unwrap();
        child.wait().unwrap();
        // Reaped: whoever gets the pid next, this handle names the old process.
        assert_eq!(dir.stat(), None);
        assert!(dir.read_bytes("cmdline", CMDLINE_MAX).is_none());
        assert!(ProcDir::open(Path::new("/proc"), u32::MAX).is_none());
    }

    #[test]
    fn status_uid_survives_a_non_utf8_name_line() {
        let s = b"Name:\tnmx\xff\xfe\nUmask:\t0022\nUid:\t1000\t0\t0\t0\n";
        assert_eq!(parse_status_uid(s), Some(1000));
    }

    #[test]
    fn status_uid_is_the_real_uid() {
        let s = "Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_status_uid(s.as_bytes()), Some(1000));
        assert_eq!(parse_status_uid(b"Name:\tx\n"), None);
    }

    #[test]
    fn cmdline_joins_args() {
        let whole = |s: &str| (s.to_string(), false);
        assert_eq!(
            parse_cmdline(b"curl\0-s\0http://x/\0"),
            whole("curl -s http://x/")
        );
        assert_eq!(
            parse_cmdline(b"nginx: worker process"),
            whole("nginx: worker process")
        );
        assert_eq!(parse_cmdline(b""), whole(""));
        assert_eq!(parse_cmdline(b"a\0\0b\0"), whole("a  b"));
    }

    #[test]
    fn long_cmdline_is_capped_and_marked_cut() {
        let mut argv = b"python3\0-c\0".to_vec();
        argv.extend(std::iter::repeat_n(b'a', 1 << 20));
        argv.push(0);
        let (s, cut) = parse_cmdline(&argv);
        assert!(cut);
        assert_eq!(s.len(), CMDLINE_MAX);
        assert!(s.starts_with("python3 -c aaa"));
        // Exactly the cap, with its trailing NUL, is whole.
        let mut exact = vec![b'b'; CMDLINE_MAX];
        exact.push(0);
        assert_eq!(parse_cmdline(&exact), ("b".repeat(CMDLINE_MAX), false));
        // A multi-byte character across the cut never overshoots the cap.
        let mut wide = vec![b'c'; CMDLINE_MAX - 1];
        wide.extend("é".repeat(10).as_bytes());
        let (s, cut) = parse_cmdline(&wide);
        assert!(cut && s.len() <= CMDLINE_MAX, "{}", s.len());
    }

    #[test]
    fn btime_from_proc_stat() {
        let s = "cpu  1 2 3\ncpu0 1 2 3\nintr 5\nctxt 9\nbtime 1795303095\nprocesses 12\n";
        assert_eq!(parse_btime(s), Some(1795303095));
        assert_eq!(parse_btime("cpu 1\n"), None);
    }

    #[test]
    fn cgroup_v2_unit() {
        let s = "0::/system.slice/nginx.service\n";
        assert_eq!(parse_cgroup(s), "/system.slice/nginx.service");
        assert_eq!(unit_from_cgroup(&parse_cgroup(s)), "nginx.service");
    }

    #[test]
    fn cgroup_user_session_scope() {
        let p =
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope";
        assert_eq!(unit_from_cgroup(p), "app-gnome-firefox-1234.scope");
        assert_eq!(unit_from_cgroup("/"), "");
        assert_eq!(unit_from_cgroup(""), "");
        assert_eq!(unit_from_cgroup("/docker/abc"), "");
        assert_eq!(unit_from_cgroup("/x/.service"), "");
    }

    #[test]
    fn cgroup_v1_hybrid_prefers_name_systemd_then_any() {
        let s = "9:name=systemd:/system.slice/sshd.service\n4:memory:/foo\n0::/\n";
        assert_eq!(parse_cgroup(s), "/system.slice/sshd.service");
        let s2 = "9:name=systemd:/\n4:memory:/process_api/7e9e\n0::/\n";
        assert_eq!(parse_cgroup(s2), "/process_api/7e9e");
        assert_eq!(parse_cgroup("0::/\n"), "/");
        assert_eq!(parse_cgroup(""), "");
    }

    #[test]
    fn started_ms_from_ticks() {
        assert_eq!(started_ms(1_000, 250, 100), 1_002_500);
        assert_eq!(started_ms(0, 5, 0), 5_000);
    }
}
