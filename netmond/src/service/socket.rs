//! The API socket on disk: created root:group 0660 with no window in which
//! anyone else could connect, stale sockets replaced, a live daemon detected.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::stat::{umask, Mode};
use nix::unistd::{chown, Gid};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("netmond is already running on '{}'", path.display())]
    AlreadyRunning { path: PathBuf },
    #[error("'{}' exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot create socket directory '{}'", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot bind '{}'", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set owner/mode of '{}'", path.display())]
    Perms {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A bound listener and the socket file it owns. Dropping it removes the
/// file, but only if it is still ours (another daemon may have replaced it).
pub struct BoundSocket {
    pub listener: UnixListener,
    path: PathBuf,
    dev_ino: (u64, u64),
}

impl BoundSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.dev_ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds `path` for the API: parent directory created 0750 root:`gid` when
/// missing, socket mode 0660 owner root group `gid`.
pub fn bind(path: &Path, gid: Gid) -> Result<BoundSocket, SocketError> {
    let owned = || path.to_path_buf();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|source| SocketError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(
                |source| SocketError::Dir {
                    path: dir.to_path_buf(),
                    source,
                },
            )?;
            chown(dir, None, Some(gid)).map_err(|e| SocketError::Dir {
                path: dir.to_path_buf(),
                source: e.into(),
            })?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::AlreadyRunning { path: owned() }),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %path.display(), "replacing stale socket from an earlier run");
                std::fs::remove_file(path).map_err(|source| SocketError::Bind {
                    path: owned(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(SocketError::Bind {
                    path: owned(),
                    source,
                })
            }
        },
        Ok(_) => return Err(SocketError::NotASocket { path: owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(SocketError::Bind {
                path: owned(),
                source,
            })
        }
    }
    // Created 0600 under this umask, so nobody but us can connect before the
    // group and mode below are in place.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => SocketError::AlreadyRunning { path: owned() },
        _ => SocketError::Bind {
            path: owned(),
            source,
        },
    })?;
    let meta = std::fs::symlink_metadata(path).map_err(|source| SocketError::Bind {
        path: owned(),
        source,
    })?;
    let guard = BoundSocket {
        listener,
        path: owned(),
        dev_ino: (meta.dev(), meta.ino()),
    };
    chown(path, None, Some(gid)).map_err(|e| SocketError::Perms {
        path: owned(),
        source: e.into(),
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|source| {
        SocketError::Perms {
            path: owned(),
            source,
        }
    })?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_0660_and_second_bind_is_already_running() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/n.sock");
        let gid = nix::unistd::getegid();
        let s = bind(&p, gid).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let dmode = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o750);
        assert!(matches!(
            bind(&p, gid),
            Err(SocketError::AlreadyRunning { .. })
        ));
        drop(s);
        assert!(!p.exists(), "dropping the guard removes the socket");
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.sock");
        let l = UnixListener::bind(&p).unwrap();
        drop(l); // file stays, nobody listens
        let gid = nix::unistd::getegid();
        let _s = bind(&p, gid).unwrap();
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.sock");
        std::fs::write(&p, b"x").unwrap();
        assert!(matches!(
            bind(&p, nix::unistd::getegid()),
            Err(SocketError::NotASocket { .. })
        ));
    }
}
