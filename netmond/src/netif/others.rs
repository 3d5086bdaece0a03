//! Addresses of the host's other network namespaces (containers): with socket
//! lookups, traffic to or from them is a local socket's, not forwarded. Each
//! namespace is read from a short-lived thread inside it (`crate::netns`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Namespaces read at most (beyond this the rest stay unknown).
const MAX_NETNS: usize = 256;

/// Inode of a network namespace file (`/proc/<pid>/ns/net`, `/run/netns/NAME`).
pub fn netns_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// The inodes of named namespaces (`ip netns` names), for exclusions.
pub fn named_inodes(names: &[String]) -> HashSet<u64> {
    names
        .iter()
        .filter_map(|n| netns_inode(&Path::new("/run/netns").join(n)))
        .collect()
}

/// Local addresses of every other network namespace some process lives in or
/// that is named in /run/netns, but those in `exclude`.
pub fn other_namespace_addresses(exclude: &HashSet<u64>) -> Vec<IpAddr> {
    let own = netns_inode(Path::new("/proc/self/ns/net")).unwrap_or(0);
    let mut files: HashMap<u64, PathBuf> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            if let Some(ino) = netns_inode(&e.path()) {
                if ino != own && !exclude.contains(&ino) && files.len() < MAX_NETNS {
                    files.entry(ino).or_insert_with(|| e.path());
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let is_pid = e
                .file_name()
                .to_str()
                .is_some_and(|s| s.parse::<u32>().is_ok());
            if !is_pid {
                continue;
            }
            let path = e.path().join("ns/net");
            if let Some(ino) = netns_inode(&path) {
                if ino != own && !exclude.contains(&ino) && files.len() < MAX_NETNS {
                    files.entry(ino).or_insert(path);
                }
            }
        }
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for path in files.into_values() {
        for a in addresses_in(&path) {
            if !out.contains(&a) && !a.is_loopback() {
                out.push(a);
            }
        }
    }
    out
}

fn addresses_in(path: &Path) -> Vec<IpAddr> {
    crate::netns::run_in_path(path, "netif-setns", || {
        super::list()
            .map(|l| super::local_addresses(&l))
            .map_err(std::io::Error::other)
    })
    .unwrap_or_default()
}
