//! Low-latency threads within a CPU budget. The resolver and the flow-start
//! watchers wake on events and must run at once (a short-lived socket's
//! owner is visible for a millisecond or two), so they take real-time
//! priority (SCHED_RR) — but only while their work stays small. A thread
//! that uses more than a quarter of a CPU over a second (a flood of new
//! flows drives it) drops to ordinary scheduling at nice −10 until a quiet
//! second, so traffic from the network can never starve the machine.

use std::time::{Duration, Instant};

use tracing::{debug, info};

/// How often a thread's CPU use is judged.
const WINDOW: Duration = Duration::from_secs(1);
/// Fraction of one CPU above which a real-time thread is demoted.
const DEMOTE_ABOVE: f64 = 0.25;
/// Fraction of one CPU below which a demoted thread is promoted again.
const PROMOTE_BELOW: f64 = 0.05;

/// The calling thread's scheduling, judged once a `WINDOW`.
pub struct LowLatency {
    name: &'static str,
    /// Whether the kernel granted real-time priority at start.
    allowed: bool,
    realtime: bool,
    window_start: Instant,
    cpu_at_start: Duration,
}

impl LowLatency {
    /// Makes the calling thread real-time (or nice −10 where that is not
    /// allowed). `name` is for the log.
    pub fn start(name: &'static str) -> LowLatency {
        let allowed = set_realtime(true);
        if !allowed {
            debug!(
                thread = name,
                "real-time priority not allowed; nice -10 instead"
            );
        }
        LowLatency {
            name,
            allowed,
            realtime: allowed,
            window_start: Instant::now(),
            cpu_at_start: thread_cpu(),
        }
    }

    /// Call on every loop iteration; costs one clock read but once a window.
    pub fn check(&mut self) {
        if !self.allowed {
            return;
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        let cpu = thread_cpu();
        let busy = cpu.saturating_sub(self.cpu_at_start).as_secs_f64() / elapsed.as_secs_f64();
        if let Some(rt) = next_state(self.realtime, busy) {
            if set_realtime(rt) == rt {
                self.realtime = rt;
                if rt {
                    info!(
                        thread = self.name,
                        "quiet again: real-time priority restored"
                    );
                } else {
                    info!(
                        thread = self.name,
                        busy = format!("{:.0}%", busy * 100.0),
                        "over its real-time CPU budget (a flood?): ordinary scheduling until quiet"
                    );
                }
            }
        }
        self.window_start = now;
        self.cpu_at_start = cpu;
    }
}

/// The state a thread should move to after a window `busy` (fraction of one
/// CPU), or None to stay.
fn next_state(realtime: bool, busy: f64) -> Option<bool> {
    if realtime && busy > DEMOTE_ABOVE {
        Some(false)
    } else if !realtime && busy < PROMOTE_BELOW {
        Some(true)
    } else {
        None
    }
}

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// SCHED_RR priority 1, or SCHED_OTHER at nice −10; true when the thread is
/// real-time afterwards.
fn set_realtime(on: bool) -> bool {
    let (policy, priority) = if on {
        (libc::SCHED_RR, 1)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: sched_setscheduler and setpriority on the calling thread
    // (tid 0) with a valid param; nix has no wrapper for either. A failed
    // setpriority leaves the default nice value, which is only slower.
    unsafe {
        let rc = libc::sched_setscheduler(0, policy, &param);
        let realtime = on && rc == 0;
        if !realtime {
            libc::setpriority(libc::PRIO_PROCESS, 0, -10);
        }
        realtime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_real_time_thread_is_demoted_and_promoted_when_quiet() {
        assert_eq!(next_state(true, 0.10), None);
        assert_eq!(next_state(true, 0.26), Some(false));
        assert_eq!(next_state(false, 0.20), None, "between the marks: stay");
        assert_eq!(next_state(false, 0.04), Some(true));
        assert_eq!(next_state(false, 0.0), Some(true));
    }

    #[test]
    fn a_thread_busy_for_a_second_loses_real_time_priority() {
        let got = std::thread::spawn(|| {
            let mut l = LowLatency::start("test");
            if !l.allowed {
                return None; // no CAP_SYS_NICE here: nothing to demote
            }
            let start = Instant::now();
            while l.realtime && start.elapsed() < Duration::from_secs(3) {
                l.check();
            }
            // SAFETY: reads the calling thread's policy.
            let policy = unsafe { libc::sched_getscheduler(0) };
            Some((start.elapsed(), l.realtime, policy))
        })
        .join()
        .unwrap();
        if let Some((after, realtime, policy)) = got {
            assert!(!realtime, "still real-time after {after:?} of spinning");
            assert_eq!(policy, libc::SCHED_OTHER);
            assert!(after < Duration::from_millis(2500), "{after:?}");
        }
    }
}
