//! Optional reverse DNS (off by default: it sends queries the user did not
//! ask for): one worker thread with a bounded queue, a cache of what was
//! asked, and a rate limit. The tick only ever `try_send`s to it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{NameTable, Source};

/// Lookups per second at most.
pub const RATE_PER_SEC: u32 = 10;
/// An address is asked about again after this long (answer or not).
const ASK_AGAIN_MS: i64 = 3_600_000;
/// Addresses remembered as asked; beyond this the memory is cleared.
const MAX_ASKED: usize = 50_000;
/// Queue between the tick and the worker.
const QUEUE: usize = 256;

/// A token bucket with an injected clock (milliseconds).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_sec: u32,
    /// Tokens in thousandths, so refill is exact in integer milliseconds.
    milli_tokens: u64,
    last_ms: i64,
}

impl RateLimiter {
    /// A full bucket of `per_sec` tokens.
    pub fn new(per_sec: u32, now_ms: i64) -> RateLimiter {
        let per_sec = per_sec.max(1);
        RateLimiter {
            per_sec,
            milli_tokens: u64::from(per_sec) * 1000,
            last_ms: now_ms,
        }
    }

    /// Takes a token if one is there.
    pub fn try_take(&mut self, now_ms: i64) -> bool {
        let elapsed = u64::try_from(now_ms - self.last_ms).unwrap_or(0);
        self.last_ms = self.last_ms.max(now_ms);
        let cap = u64::from(self.per_sec) * 1000;
        self.milli_tokens = (self.milli_tokens + elapsed * u64::from(self.per_sec)).min(cap);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Milliseconds until the next token.
    pub fn wait_ms(&self) -> u64 {
        (1000u64.saturating_sub(self.milli_tokens)).div_ceil(u64::from(self.per_sec))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start the reverse DNS thread")]
pub struct ReverseError(#[source] std::io::Error);

pub struct Reverse {
    tx: Option<SyncSender<IpAddr>>,
    asked: Mutex<HashMap<IpAddr, i64>>,
    thread: Option<JoinHandle<()>>,
}

impl Reverse {
    pub fn start(table: Arc<Mutex<NameTable>>, per_sec: u32) -> Result<Reverse, ReverseError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("reverse-dns".into())
            .spawn(move || worker(rx, table, per_sec))
            .map_err(ReverseError)?;
        Ok(Reverse {
            tx: Some(tx),
            asked: Mutex::new(HashMap::new()),
            thread: Some(thread),
        })
    }

    /// Queues addresses not asked about recently; a full queue drops the
    /// rest (they are asked about at a later tick).
    pub fn request(&self, addrs: &[IpAddr], now_ms: i64) {
        let Some(tx) = &self.tx else { return };
        if addrs.is_empty() {
            return;
        }
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        if asked.len() > MAX_ASKED {
            asked.clear();
        }
        for ip in addrs {
            if !worth_asking(ip) {
                continue;
            }
            if asked.get(ip).is_some_and(|t| now_ms - t < ASK_AGAIN_MS) {
                continue;
            }
            if tx.try_send(*ip).is_err() {
                break;
            }
            asked.insert(*ip, now_ms);
        }
    }
}

impl Drop for Reverse {
    fn drop(&mut self) {
        // Closing the queue ends the worker after its current lookup.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            // A lookup stuck in the system resolver would hold us here:
            // detach rather than wait for it.
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Multicast, loopback and unspecified addresses have no useful PTR.
fn worth_asking(ip: &IpAddr) -> bool {
    !(ip.is_loopback() || ip.is_multicast() || ip.is_unspecified())
}

fn worker(rx: Receiver<IpAddr>, table: Arc<Mutex<NameTable>>, per_sec: u32) {
    let mut limit = RateLimiter::new(per_sec, crate::clock::now_ms());
    loop {
        let ip = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(ip) => ip,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        while !limit.try_take(crate::clock::now_ms()) {
            std::thread::sleep(Duration::from_millis(limit.wait_ms().max(1)));
        }
        // The system resolver's own timeout (resolv.conf) bounds this call;
        // it runs here, never on the tick.
        if let Some(name) =
            lookup_ptr(ip).and_then(|n| netmon_wire::sniff::clean_host(n.as_bytes()))
        {
            table.lock().unwrap_or_else(|p| p.into_inner()).insert(
                ip,
                &name,
                Source::Reverse,
                0,
                crate::clock::now_ms(),
            );
        }
    }
}

/// `getnameinfo` with NI_NAMEREQD: the PTR name of `ip`, if any.
fn lookup_ptr(ip: IpAddr) -> Option<String> {
    let sa = nix::sys::socket::SockaddrStorage::from(std::net::SocketAddr::new(ip, 0));
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `sa` is a valid socket address of the length passed; `host`
    // is a writable buffer of the length passed; no service buffer is given.
    let rc = unsafe {
        libc::getnameinfo(
            nix::sys::socket::SockaddrLike::as_ptr(&sa),
            nix::sys::socket::SockaddrLike::len(&sa),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let c = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    c.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_a_burst_then_the_rate() {
        let mut r = RateLimiter::new(10, 0);
        let burst = (0..50).filter(|_| r.try_take(0)).count();
        assert_eq!(burst, 10);
        assert!(!r.try_take(50));
        assert_eq!(r.wait_ms(), 50);
        assert!(r.try_take(100));
        assert!(!r.try_take(100));
        // Over 10 s at most 10/s more.
        let mut got = 0;
        for t in (100..10_100).step_by(10) {
            if r.try_take(t) {
                got += 1;
            }
        }
        assert!((99..=101).contains(&got), "{got}");
    }

    #[test]
    fn rate_limiter_ignores_a_clock_going_back() {
        let mut r = RateLimiter::new(2, 10_000);
        assert!(r.try_take(10_000) && r.try_take(10_000));
        assert!(!r.try_take(0));
        assert!(!r.try_take(10_000));
        assert!(r.try_take(10_500));
    }

    #[test]
    fn reverse_dns_is_off_by_default() {
        let names = super::super::Names::new(super::super::NamesSettings {
            passive: true,
            reverse_dns: crate::config::NamesSection::default().reverse_dns,
            max_entries: 100,
            categories: super::super::Categories::default(),
        });
        assert!(!names.reverse_enabled());
        // A miss queues nothing and returns at once.
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(names.with_lookup(|l| l(&ip)).is_none());
    }
}
