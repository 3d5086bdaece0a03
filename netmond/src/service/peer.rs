//! Who is calling: the peer's credentials (SO_PEERCRED via tonic) and its
//! group memberships, supplementary groups included.

/// Credentials of the process at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl Peer {
    /// Root, or the group is the peer's primary or one of its supplementary
    /// groups (SO_PEERCRED only carries the primary one).
    pub fn in_group(&self, gid: u32) -> bool {
        if self.uid == 0 || self.gid == gid {
            return true;
        }
        let Some(pid) = self.pid else { return false };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| supplementary_groups(&s).any(|g| g == gid))
            .unwrap_or(false)
    }
}

/// The `Groups:` line of /proc/<pid>/status.
pub fn supplementary_groups(status: &str) -> impl Iterator<Item = u32> + '_ {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .into_iter()
        .flat_map(|rest| rest.split_whitespace().filter_map(|g| g.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groups_line() {
        let s = "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGroups:\t24 27 998 \nNgid:\t0\n";
        assert_eq!(
            supplementary_groups(s).collect::<Vec<_>>(),
            vec![24, 27, 998]
        );
        assert_eq!(supplementary_groups("Groups:\n").count(), 0);
    }

    #[test]
    fn root_is_in_every_group() {
        assert!(Peer {
            uid: 0,
            gid: 0,
            pid: None
        }
        .in_group(4242));
        assert!(!Peer {
            uid: 1000,
            gid: 1000,
            pid: None
        }
        .in_group(4242));
    }
}
