//! What the watcher thread waits on besides its netlink socket: an eventfd
//! that tells it to stop, and a poll over both. No netlink here (that is
//! `crate::netlink`), and no `unsafe`: nix wraps both calls.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// A non-blocking eventfd used to tell a thread blocked in `poll` to exit.
#[derive(Debug)]
pub(crate) struct StopFd {
    fd: EventFd,
}

impl StopFd {
    pub(crate) fn new() -> io::Result<Self> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Self { fd })
    }

    /// Makes the fd readable (for good: it is never drained).
    pub(crate) fn signal(&self) -> io::Result<()> {
        self.fd.write(1)?;
        Ok(())
    }
}

impl AsFd for StopFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Readiness of the two descriptors a watcher waits on.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    pub socket: bool,
    pub stop: bool,
}

/// Waits until `socket` or `stop` is readable (or in error), or `timeout_ms`
/// passes (`-1`: forever). EINTR returns with nothing ready.
pub(crate) fn poll2(
    socket: BorrowedFd<'_>,
    stop: BorrowedFd<'_>,
    timeout_ms: i32,
) -> io::Result<Ready> {
    let mut fds = [
        PollFd::new(socket, PollFlags::POLLIN),
        PollFd::new(stop, PollFlags::POLLIN),
    ];
    let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::NONE);
    match nix::poll::poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok(Ready::default()),
        Err(e) => return Err(e.into()),
    }
    // `revents` is None only for bits nix does not know: still "something happened".
    let ready = |fd: &PollFd<'_>| fd.any().unwrap_or(true);
    Ok(Ready {
        socket: ready(&fds[0]),
        stop: ready(&fds[1]),
    })
}
