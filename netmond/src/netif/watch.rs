//! The link/address change watcher: one thread on an rtnetlink multicast
//! socket that calls back, debounced, when something changed. It reports only
//! "changed"; callers re-read with `list()`. It must never block its caller.

use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::parse::{self, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK};
use super::wait::{self, StopFd};
use super::NetifError;
use crate::netlink::{self, Socket};

/// A burst ends after this long without events...
const QUIET: Duration = Duration::from_millis(50);
/// ...but the callback never runs later than this after the burst's first event.
const MAX_DELAY: Duration = Duration::from_millis(100);
/// Pause after an unexpected socket error, so a broken socket cannot spin.
const ERROR_BACKOFF_MS: i32 = 1000;
/// Receive buffer asked for, to ride out bursts (e.g. many containers starting).
const RCVBUF: usize = 1 << 20;

/// Watches rtnetlink for link and address changes on a dedicated thread.
/// Dropping it stops it, like `stop`.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<StopFd>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Subscribes to rtnetlink multicast groups (`RTMGRP_LINK |
    /// RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`) on a dedicated thread and
    /// calls `on_change` whenever a link or address appears, disappears or
    /// changes state. Debounced: once per burst that has been quiet for
    /// ~50 ms, and never later than ~100 ms after the burst's first event.
    /// A lost-events condition (ENOBUFS) counts as a change. A panic in
    /// `on_change` is logged and the watcher carries on.
    pub fn start(on_change: impl Fn() + Send + 'static) -> Result<Watcher, NetifError> {
        let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        let socket = Socket::open(netlink::Protocol::Route, groups)
            .and_then(|s| s.set_nonblocking().map(|()| s))
            .map_err(|source| NetifError::Socket { source })?;
        if let Err(error) = socket.set_recv_buffer(RCVBUF) {
            tracing::debug!(%error, "netif watcher keeps the default receive buffer");
        }
        let stop = Arc::new(StopFd::new().map_err(|source| NetifError::Socket { source })?);
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("netif-watch".into())
            .spawn(move || run(&socket, &thread_stop, &on_change))
            .map_err(|source| NetifError::Thread { source })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it. Returns promptly, unless a callback
    /// is running at that moment (it is let finish).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if let Err(error) = self.stop.signal() {
                // Cannot happen with a valid eventfd; never hang on join then.
                tracing::warn!(%error, "cannot signal the netif watcher to stop");
                return;
            }
            if thread.join().is_err() {
                tracing::warn!("netif watcher thread panicked");
            }
        }
    }
}

fn run(socket: &Socket, stop: &StopFd, on_change: &dyn Fn()) {
    let mut buf = vec![0u8; netlink::RECV_BUF];
    let mut debounce = Debounce::default();
    loop {
        let timeout = debounce
            .wait(Instant::now())
            .map_or(-1, |d| i32::try_from(d.as_millis()).unwrap_or(i32::MAX));
        let ready = match wait::poll2(socket.as_fd(), stop.as_fd(), timeout) {
            Ok(r) => r,
            Err(error) => {
                // Not expected with two valid fds; pause so it cannot spin.
                tracing::warn!(%error, "netif watcher poll failed");
                std::thread::sleep(Duration::from_millis(100));
                Default::default()
            }
        };
        if ready.stop {
            return;
        }
        if ready.socket && drain(socket, &mut buf, &mut debounce) == Drained::Broken {
            let backoff = wait::poll2(stop.as_fd(), stop.as_fd(), ERROR_BACKOFF_MS);
            if backoff.is_ok_and(|r| r.stop) {
                return;
            }
        }
        if debounce.due(Instant::now()) {
            debounce = Debounce::default();
            if catch_unwind(AssertUnwindSafe(on_change)).is_err() {
                tracing::error!("netif change callback panicked");
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Drained {
    Empty,
    Broken,
}

/// Reads every pending datagram, noting changes in `debounce`.
fn drain(socket: &Socket, buf: &mut [u8], debounce: &mut Debounce) -> Drained {
    loop {
        match socket.recv(buf) {
            Ok(n) => {
                if is_change(&buf[..n]) {
                    debounce.event(Instant::now());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Drained::Empty,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                tracing::debug!("netif watcher lost events (ENOBUFS); treating as changed");
                debounce.event(Instant::now());
            }
            Err(error) => {
                tracing::warn!(%error, "netif watcher cannot read its socket; treating as changed");
                debounce.event(Instant::now());
                return Drained::Broken;
            }
        }
    }
}

/// Whether a multicast datagram reports a link or address change. Wireless
/// extension events (`RTM_NEWLINK` with `IFLA_WIRELESS`, sent on every scan)
/// are not changes; a malformed datagram is treated as one, to be safe.
pub(crate) fn is_change(datagram: &[u8]) -> bool {
    parse::messages(datagram).any(|m| match m {
        Err(_) => true,
        Ok(m) => match m.ty {
            parse::RTM_NEWLINK => parse::parse_link(m.payload).map_or(true, |l| !l.wireless_event),
            parse::RTM_DELLINK | parse::RTM_NEWADDR | parse::RTM_DELADDR => true,
            _ => false,
        },
    })
}

/// Pure debounce state: the first and last event of the pending burst.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Debounce {
    pending: Option<(Instant, Instant)>,
}

impl Debounce {
    pub(crate) fn event(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |(first, _)| first);
        self.pending = Some((first, now));
    }

    fn deadline(&self) -> Option<Instant> {
        self.pending
            .map(|(first, last)| (last + QUIET).min(first + MAX_DELAY))
    }

    /// How long to wait for more events before the callback is due; `None`
    /// when nothing is pending. Rounded up to whole milliseconds.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        self.deadline().map(|d| {
            let left = d.saturating_duration_since(now);
            Duration::from_millis(left.as_micros().div_ceil(1000) as u64)
        })
    }

    pub(crate) fn due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use crate::netif::parse::tests::{attr, ifaddrmsg, ifinfomsg, msg};

    #[test]
    fn quiet_burst_fires_after_the_quiet_gap() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert_eq!(d.wait(t0), None);
        assert!(!d.due(t0));
        d.event(t0);
        assert_eq!(d.wait(t0), Some(QUIET));
        assert!(!d.due(t0 + Duration::from_millis(49)));
        assert!(d.due(t0 + QUIET));
    }

    #[test]
    fn continuous_burst_fires_within_max_delay_of_its_first_event() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        for ms in (0..=90).step_by(10) {
            d.event(t0 + Duration::from_millis(ms));
        }
        let now = t0 + Duration::from_millis(90);
        assert_eq!(d.wait(now), Some(Duration::from_millis(10)));
        assert!(!d.due(now));
        assert!(d.due(t0 + MAX_DELAY));
    }

    #[test]
    fn address_and_link_messages_are_changes() {
        let mut dgram = Vec::new();
        let mut p = ifaddrmsg(2, 24, 4);
        attr(&mut p, 2, &[10, 1, 2, 3]);
        msg(&mut dgram, parse::RTM_DELADDR, 0, 0, &p);
        assert!(is_change(&dgram));

        let mut dgram = Vec::new();
        msg(&mut dgram, parse::RTM_NEWLINK, 0, 0, &ifinfomsg(1, 4, 1));
        assert!(is_change(&dgram));
    }

    #[test]
    fn wireless_scan_events_and_other_messages_are_not_changes() {
        let mut p = ifinfomsg(1, 4, 1);
        attr(&mut p, 11, &[0; 8]); // IFLA_WIRELESS
        let mut dgram = Vec::new();
        msg(&mut dgram, parse::RTM_NEWLINK, 0, 0, &p);
        msg(&mut dgram, 24, 0, 0, &[0; 12]); // RTM_NEWROUTE
        assert!(!is_change(&dgram));
        assert!(is_change(&[1, 2, 3]), "malformed counts as a change");
    }
}
