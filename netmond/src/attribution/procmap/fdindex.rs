//! The socket inode -> (pid, fd) index, filled from `/proc/<pid>/fd/*` links one pid at
//! a time or by a full (rate-limited, caller-decided) rescan. Knows nothing of netlink;
//! never rescans on its own. Hand-written rather than procfs's `Process::fd()`, which
//! opens, reads and stats every fd (four calls against one readlink): reading 200
//! socket fds took 1.0 ms with it against 0.66 ms here (best of 40, release build).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Parse the target of a `/proc/<pid>/fd/N` link: `socket:[12345]` -> 12345.
pub fn parse_socket_link(link: &[u8]) -> Option<u64> {
    let inner = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if inner.is_empty() || !inner.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// Parse a `/proc` directory entry name as a pid.
pub fn parse_pid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// Who holds a socket inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub fd: u32,
}

/// inode -> holder, with the reverse map so one pid can be refreshed or dropped alone.
/// A socket shared by several processes (fork inheritance) keeps the holder seen last.
pub struct FdIndex {
    proc_root: PathBuf,
    by_inode: HashMap<u64, Holder>,
    by_pid: HashMap<u32, Vec<u64>>,
    links: Vec<(u32, u64)>,
}

impl FdIndex {
    pub fn new(proc_root: &Path) -> FdIndex {
        FdIndex {
            proc_root: proc_root.to_path_buf(),
            by_inode: HashMap::new(),
            by_pid: HashMap::new(),
            links: Vec::new(),
        }
    }

    pub fn get(&self, inode: u64) -> Option<Holder> {
        self.by_inode.get(&inode).copied()
    }

    /// Does `/proc/<pid>/fd/<fd>` still point at this socket? One readlink.
    pub fn verify(&self, inode: u64, h: Holder) -> bool {
        let p = self
            .proc_root
            .join(h.pid.to_string())
            .join("fd")
            .join(h.fd.to_string());
        match std::fs::read_link(&p) {
            Ok(t) => parse_socket_link(t.as_os_str().as_encoded_bytes()) == Some(inode),
            Err(_) => false,
        }
    }

    /// Forget a pid (it exited, or a lookup proved its entry stale).
    pub fn remove_pid(&mut self, pid: u32) {
        if let Some(inodes) = self.by_pid.remove(&pid) {
            for ino in inodes {
                if self.by_inode.get(&ino).is_some_and(|h| h.pid == pid) {
                    self.by_inode.remove(&ino);
                }
            }
        }
    }

    /// Read the socket fds of one pid into `self.links` (as (fd, inode)). Returns false
    /// when the fd directory cannot be read (process gone, or not permitted).
    fn read_fds(&mut self, pid: u32) -> bool {
        self.links.clear();
        let dir = self.proc_root.join(pid.to_string()).join("fd");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return false;
        };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(fd) = parse_pid(name.as_encoded_bytes()) else {
                continue;
            };
            if let Ok(t) = std::fs::read_link(ent.path()) {
                if let Some(ino) = parse_socket_link(t.as_os_str().as_encoded_bytes()) {
                    self.links.push((fd, ino));
                }
            }
        }
        true
    }

    /// Re-read one pid's fd table and replace its entries.
    pub fn scan_pid(&mut self, pid: u32) {
        let ok = self.read_fds(pid);
        self.remove_pid(pid);
        if !ok {
            return;
        }
        let mut mine = Vec::with_capacity(self.links.len());
        for &(fd, ino) in &self.links {
            self.by_inode.insert(ino, Holder { pid, fd });
            mine.push(ino);
        }
        if !mine.is_empty() {
            self.by_pid.insert(pid, mine);
        }
    }

    /// Rebuild the whole index from every pid under /proc.
    pub fn full_scan(&mut self) {
        self.by_inode.clear();
        self.by_pid.clear();
        let Ok(rd) = std::fs::read_dir(&self.proc_root) else {
            return;
        };
        let pids: Vec<u32> = rd
            .flatten()
            .filter_map(|e| parse_pid(e.file_name().as_encoded_bytes()))
            .collect();
        for pid in pids {
            self.scan_pid(pid);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    #[test]
    fn parses_socket_links_only() {
        assert_eq!(parse_socket_link(b"socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link(b"socket:[0]"), Some(0));
        assert_eq!(parse_socket_link(b"socket:[]"), None);
        assert_eq!(parse_socket_link(b"socket:[12a]"), None);
        assert_eq!(parse_socket_link(b"pipe:[12345]"), None);
        assert_eq!(parse_socket_link(b"anon_inode:[eventpoll]"), None);
        assert_eq!(parse_socket_link(b"/dev/null"), None);
        assert_eq!(parse_socket_link(b"socket:[99999999999999999999999]"), None);
    }

    #[test]
    fn parses_pid_names() {
        assert_eq!(parse_pid(b"1"), Some(1));
        assert_eq!(parse_pid(b"4194304"), Some(4194304));
        assert_eq!(parse_pid(b"self"), None);
        assert_eq!(parse_pid(b""), None);
        assert_eq!(parse_pid(b"-1"), None);
    }

    #[test]
    fn indexes_own_socket_and_forgets_pid() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsRawFd;
        let fd = sock.as_raw_fd();
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let ino = parse_socket_link(link.as_os_str().as_encoded_bytes()).unwrap();
        let me = std::process::id();
        let mut idx = FdIndex::new(Path::new("/proc"));
        idx.scan_pid(me);
        let h = idx.get(ino).unwrap();
        assert_eq!(
            h,
            Holder {
                pid: me,
                fd: fd as u32
            }
        );
        assert!(idx.verify(ino, h));
        assert!(!idx.verify(ino + 1_000_000_000, h));
        idx.remove_pid(me);
        assert_eq!(idx.get(ino), None);
    }
}
