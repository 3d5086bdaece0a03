//! Sockets of other network namespaces: one sock_diag socket per namespace that some
//! process lives in, each created on a short-lived thread inside that namespace
//! (`crate::netns`). Never changes the namespace of any long-lived thread.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::fdindex::parse_pid;
use super::sockdiag::SockDiag;

/// Most foreign namespaces we keep a socket for.
const MAX_NETNS: usize = 64;

pub struct OtherNets {
    own: u64,
    proc_root: PathBuf,
    interval: Duration,
    last_enum: Option<Instant>,
    socks: HashMap<u64, SockDiag>,
}

fn netns_ino(proc_pid: &Path) -> Option<u64> {
    std::fs::metadata(proc_pid.join("ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// A sock_diag socket living in the network namespace of `pid` (a netlink
/// socket stays in the namespace it was created in).
fn open_in(proc_root: &Path, pid: u32) -> io::Result<SockDiag> {
    let ns = proc_root.join(pid.to_string()).join("ns/net");
    crate::netns::run_in_path(&ns, "procmap-setns", SockDiag::open)
}

impl OtherNets {
    pub fn new(proc_root: &Path, interval: Duration) -> OtherNets {
        OtherNets {
            own: netns_ino(&proc_root.join("self")).unwrap_or(0),
            proc_root: proc_root.to_path_buf(),
            interval,
            last_enum: None,
            socks: HashMap::new(),
        }
    }

    /// Re-enumerate namespaces (at most once per `interval`): open a socket for each
    /// new one, drop those no process lives in any more.
    pub fn refresh(&mut self) {
        let now = Instant::now();
        if self
            .last_enum
            .is_some_and(|t| now.saturating_duration_since(t) < self.interval)
        {
            return;
        }
        self.last_enum = Some(now);
        let Ok(rd) = std::fs::read_dir(&self.proc_root) else {
            return;
        };
        let mut seen: HashMap<u64, u32> = HashMap::new();
        for e in rd.flatten() {
            let Some(pid) = parse_pid(e.file_name().as_encoded_bytes()) else {
                continue;
            };
            if let Some(ino) = netns_ino(&e.path()) {
                if ino != self.own {
                    seen.entry(ino).or_insert(pid);
                }
            }
        }
        self.socks.retain(|ino, _| seen.contains_key(ino));
        for (ino, pid) in seen {
            if self.socks.len() >= MAX_NETNS {
                break;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = self.socks.entry(ino) {
                if let Ok(sd) = open_in(&self.proc_root, pid) {
                    v.insert(sd);
                }
            }
        }
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut SockDiag> {
        self.socks.get_mut(&ino)
    }

    pub fn inodes(&self) -> Vec<u64> {
        self.socks.keys().copied().collect()
    }
}
