//! Connection state to netmond: `Connected`, or `Disconnected` with a capped
//! exponential backoff between attempts. No I/O here; the event loop dials.

use std::path::Path;
use std::time::Duration;

use netmon_proto::ConnectError;

use crate::app::Problem;

/// Doubles from `min` up to `max`, never beyond (the next delay is the
/// *smaller* of twice the last and the cap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    attempts: u32,
}

impl Backoff {
    pub const MIN: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.min(max);
        Backoff {
            min,
            max,
            next: min,
            attempts: 0,
        }
    }

    /// Delay before the next attempt; advances the backoff.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        d
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Backoff::MIN, Backoff::MAX)
    }
}

/// The link to the daemon as the event loop holds it.
#[derive(Debug)]
pub enum Conn<C> {
    Connected(C),
    Disconnected {
        backoff: Backoff,
        /// An attempt is in flight.
        dialing: bool,
    },
}

impl<C> Conn<C> {
    pub fn disconnected() -> Conn<C> {
        Conn::Disconnected {
            backoff: Backoff::default(),
            dialing: false,
        }
    }

    pub fn client(&self) -> Option<&C> {
        match self {
            Conn::Connected(c) => Some(c),
            Conn::Disconnected { .. } => None,
        }
    }
}

/// What the user is told about a failed connection attempt.
pub fn problem_of(err: &ConnectError) -> Problem {
    match err {
        ConnectError::NotRunning { .. } => Problem::NotRunning,
        ConnectError::PermissionDenied { path } => Problem::PermissionDenied {
            group: socket_group(path),
        },
        other => Problem::Other(error_chain(other)),
    }
}

/// What the user is told about a failed RPC while connecting or streaming.
pub fn problem_of_status(status: &tonic::Status) -> Problem {
    match status.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            Problem::PermissionDenied { group: None }
        }
        tonic::Code::Unavailable => Problem::Lost(status.message().to_owned()),
        _ => Problem::Other(status.message().to_owned()),
    }
}

/// The group owning the socket (or, when the socket cannot be reached, its
/// directory): the group a refused user has to join.
fn socket_group(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(path)
        .ok()
        .or_else(|| std::fs::metadata(path.parent()?).ok())?
        .gid();
    if gid == 0 {
        return None;
    }
    let etc = std::fs::read_to_string("/etc/group").ok()?;
    group_name(&etc, gid).map(str::to_owned)
}

/// The name of `gid` in an `/etc/group` text.
pub fn group_name(etc_group: &str, gid: u32) -> Option<&str> {
    etc_group.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == gid).then_some(name)
    })
}

pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_min_and_caps_at_max() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        let got: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(b.attempts(), 8);
    }

    #[test]
    fn backoff_never_exceeds_the_cap_even_after_many_attempts() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(3));
        for _ in 0..200 {
            assert!(b.next_delay() <= Duration::from_secs(3));
        }
        // A min above the max is clamped, not honoured.
        let mut b = Backoff::new(Duration::from_secs(9), Duration::from_secs(2));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }

    #[test]
    fn connect_errors_map_to_what_the_user_must_do() {
        let path = std::path::PathBuf::from("/x");
        assert_eq!(
            problem_of(&ConnectError::NotRunning { path: path.clone() }),
            Problem::NotRunning
        );
        assert_eq!(
            problem_of(&ConnectError::PermissionDenied { path }),
            Problem::PermissionDenied { group: None }
        );
        assert_eq!(
            problem_of_status(&tonic::Status::permission_denied("no")),
            Problem::PermissionDenied { group: None }
        );
    }

    #[test]
    fn group_names_come_from_etc_group() {
        let etc = "root:x:0:\nnetmon:x:998:alice,bob\n\nbroken\nother:x:1001:\n";
        assert_eq!(group_name(etc, 998), Some("netmon"));
        assert_eq!(group_name(etc, 1001), Some("other"));
        assert_eq!(group_name(etc, 5), None);
    }
}
