//! Running a piece of work inside another network namespace: on a short-lived
//! thread that joins the namespace with setns(2) and exits, so no long-lived
//! thread ever changes namespace. Sockets created there stay there.

use std::fs::File;
use std::io;
use std::path::Path;

use nix::sched::{setns, CloneFlags};

/// Runs `work` on a new thread named `name` inside the network namespace of
/// the namespace file `ns` (`/proc/<pid>/ns/net`, `/run/netns/NAME`) and
/// returns what it returned. Fails when the thread cannot start, the
/// namespace cannot be entered, or `work` panics.
pub fn run_in<T: Send>(
    ns: &File,
    name: &str,
    work: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn_scoped(s, || {
                setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("cannot enter the network namespace: {e}"),
                    )
                })?;
                work()
            })?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other(format!("thread '{name}' panicked"))))
    })
}

/// `run_in` for the namespace file at `path`.
pub fn run_in_path<T: Send>(
    path: &Path,
    name: &str,
    work: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    run_in(&File::open(path)?, name, work)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn own_netns() -> u64 {
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    /// A fresh network namespace, held open by its file (needs root).
    fn new_netns() -> File {
        std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET) needs root");
            File::open("/proc/thread-self/ns/net").unwrap()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn work_runs_in_the_namespace_and_the_caller_stays_put() {
        let before = own_netns();
        let ns = new_netns();
        let target = ns.metadata().unwrap().ino();
        assert_ne!(target, before);
        let seen = run_in(&ns, "netns-test", || Ok(own_netns())).unwrap();
        assert_eq!(seen, target);
        assert_eq!(own_netns(), before);
    }

    #[test]
    fn a_panic_in_the_work_is_an_error() {
        let r: io::Result<()> = run_in_path(Path::new("/proc/self/ns/net"), "netns-test", || {
            panic!("boom")
        });
        assert!(r.is_err());
    }

    #[test]
    fn a_file_that_is_no_namespace_is_an_error() {
        let r = run_in_path(Path::new("/proc/self/status"), "netns-test", || Ok(()));
        let e = r.unwrap_err().to_string();
        assert!(e.contains("cannot enter the network namespace"), "{e}");
    }
}
