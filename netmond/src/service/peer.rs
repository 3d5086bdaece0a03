//! Who is calling: the peer's credentials and every group it belongs to,
//! taken from the kernel once, when the connection is accepted
//! (SO_PEERCRED + SO_PEERGROUPS). Never from /proc at request time: by then
//! the pid may belong to another process.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Credentials of the process that connected, as they were at connect().
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// For logs only; never used to decide anything.
    pub pid: i32,
    /// Supplementary groups at connect() (SO_PEERGROUPS).
    pub groups: Vec<u32>,
}

impl Peer {
    /// Root, or `gid` is the peer's primary or one of its supplementary groups.
    pub fn in_group(&self, gid: u32) -> bool {
        self.uid == 0 || self.gid == gid || self.groups.contains(&gid)
    }

    /// Reads the credentials the kernel recorded when `sock`'s peer connected.
    pub fn of_socket(sock: &impl AsFd) -> io::Result<Peer> {
        let cred = nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(io::Error::from)?;
        Ok(Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
            groups: peer_groups(sock)?,
        })
    }
}

/// SO_PEERGROUPS (Linux ≥ 4.13): nix has no wrapper for it.
fn peer_groups(sock: &impl AsFd) -> io::Result<Vec<u32>> {
    // NGROUPS_MAX is 65536; start small and grow to what the kernel asks for.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * std::mem::size_of::<libc::gid_t>())
            .map_err(|_| io::Error::other("group list too large"))?;
        // SAFETY: the buffer is valid for `len` bytes and the kernel writes at
        // most `len` bytes, reporting the size it needs in `len` on ERANGE.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_every_group_and_others_by_primary_or_supplementary() {
        let p = |uid, gid, groups: &[u32]| Peer {
            uid,
            gid,
            pid: 1,
            groups: groups.to_vec(),
        };
        assert!(p(0, 0, &[]).in_group(4242));
        assert!(!p(1000, 1000, &[]).in_group(4242));
        assert!(p(1000, 4242, &[]).in_group(4242));
        assert!(p(1000, 1000, &[24, 4242]).in_group(4242));
    }

    #[test]
    fn credentials_of_a_socket_pair_are_ours() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let p = Peer::of_socket(&a).unwrap();
        assert_eq!(p.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(p.gid, nix::unistd::getegid().as_raw());
        assert_eq!(p.pid, std::process::id() as i32);
        let mut ours: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.as_raw())
            .collect();
        let mut got = p.groups.clone();
        ours.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, ours);
    }
}
