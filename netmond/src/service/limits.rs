//! What one caller and all callers together may hold open on the API:
//! connections, Subscribe streams, Export streams, request sizes, HTTP/2
//! streams. A slot is a guard released on drop; a refusal carries the text
//! the client is shown. Root is never held to a per-user cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Requests are a few bytes; anything larger is refused before it is
/// buffered or decoded, and before any permission check runs.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// HTTP/2 streams one connection may have open at once (SETTINGS).
pub const STREAMS_PER_CONNECTION: u32 = 32;
/// HTTP/2 flow-control windows: how much request data a client can make
/// the server buffer per stream and per connection.
pub const STREAM_WINDOW: u32 = 64 * 1024;
pub const CONNECTION_WINDOW: u32 = 256 * 1024;
/// File descriptors kept for everything but API connections: capture
/// handles, netlink, SQLite, /proc reads, the metrics listener.
pub const FD_HEADROOM: u64 = 512;
/// Connections kept for root beyond the total, so `netmonctl` as root
/// still works when members have used every slot.
pub const ROOT_RESERVE: usize = 64;
/// Connections over a cap that are still served, each call answered with
/// RESOURCE_EXHAUSTED and the reason; beyond these, connections are closed
/// at once.
pub const REFUSED_PER_UID: usize = 8;
pub const REFUSED_TOTAL: usize = 64;

/// Caps of one kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_uid: usize,
    pub total: usize,
}

/// Every cap of the API, sized for design.md's client target (200
/// subscribers, 1,000 connections and 50 unread exports at once) from a
/// single user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connections: Caps,
    pub subscribers: Caps,
    pub exports: Caps,
}

impl Limits {
    /// Caps for a process allowed `nofile` open files.
    pub fn for_fd_limit(nofile: u64) -> Limits {
        let budget = nofile.saturating_sub(FD_HEADROOM) as usize;
        let total = budget
            .saturating_sub(ROOT_RESERVE + REFUSED_TOTAL)
            .clamp(16, 2048);
        Limits {
            connections: Caps {
                per_uid: total.min(1024),
                total,
            },
            subscribers: Caps {
                per_uid: 256,
                total: 1024,
            },
            exports: Caps {
                per_uid: 64,
                total: 128,
            },
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard one and returns the result.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            // A million-entry fd table costs memory for nothing: cap it.
            let want = hard.min(65_536).max(soft);
            if want > soft {
                if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, hard) {
                    tracing::warn!(%e, soft, "cannot raise the open file limit");
                    return soft;
                }
            }
            want
        }
        Err(e) => {
            tracing::warn!(%e, "cannot read the open file limit");
            1024
        }
    }
}

/// Why a slot was not given; its text is what the client sees.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("too many {what} from uid {uid} (limit {limit} per user); close some and retry")]
    PerUid {
        what: &'static str,
        uid: u32,
        limit: usize,
    },
    #[error("netmond is at its limit of {limit} {what}; retry later")]
    Total { what: &'static str, limit: usize },
}

/// Counters for one kind of resource.
#[derive(Debug)]
pub struct Slots {
    what: &'static str,
    caps: Caps,
    /// Extra room root may use beyond `caps.total`.
    root_reserve: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// A held slot; released on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    pub fn new(what: &'static str, caps: Caps, root_reserve: usize) -> Arc<Slots> {
        Arc::new(Slots {
            what,
            caps,
            root_reserve,
            state: Mutex::new(State::default()),
        })
    }

    pub fn try_take(self: &Arc<Self>, uid: u32) -> Result<Slot, Refused> {
        let mut st = crate::sync::lock(&self.state);
        let total_cap = if uid == 0 {
            self.caps.total + self.root_reserve
        } else {
            self.caps.total
        };
        if st.total >= total_cap {
            return Err(Refused::Total {
                what: self.what,
                limit: self.caps.total,
            });
        }
        let mine = st.by_uid.entry(uid).or_insert(0);
        if uid != 0 && *mine >= self.caps.per_uid {
            return Err(Refused::PerUid {
                what: self.what,
                uid,
                limit: self.caps.per_uid,
            });
        }
        *mine += 1;
        st.total += 1;
        Ok(Slot {
            slots: self.clone(),
            uid,
        })
    }

    /// Slots held now, in total and by `uid`.
    pub fn held(&self, uid: u32) -> (usize, usize) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (st.total, st.by_uid.get(&uid).copied().unwrap_or(0))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.slots.state.lock().unwrap_or_else(|p| p.into_inner());
        st.total = st.total.saturating_sub(1);
        if let Some(n) = st.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                st.by_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_uid_and_total_caps_hold_and_drop_releases() {
        let s = Slots::new(
            "streams",
            Caps {
                per_uid: 2,
                total: 3,
            },
            1,
        );
        let a1 = s.try_take(1000).unwrap();
        let _a2 = s.try_take(1000).unwrap();
        assert_eq!(
            s.try_take(1000).unwrap_err(),
            Refused::PerUid {
                what: "streams",
                uid: 1000,
                limit: 2
            }
        );
        let _b = s.try_take(1001).unwrap();
        assert!(matches!(s.try_take(1002), Err(Refused::Total { .. })));
        // Root has its reserve, and no per-user cap.
        let r = s.try_take(0).unwrap();
        assert!(matches!(s.try_take(0), Err(Refused::Total { .. })));
        drop(a1);
        drop(r);
        assert_eq!(s.held(1000), (2, 1));
        let _a3 = s.try_take(1000).unwrap();
        assert!(matches!(s.try_take(1000), Err(Refused::Total { .. })));
        let why = Refused::PerUid {
            what: "Subscribe streams",
            uid: 1000,
            limit: 2,
        };
        assert_eq!(
            why.to_string(),
            "too many Subscribe streams from uid 1000 (limit 2 per user); close some and retry"
        );
    }

    #[test]
    fn caps_follow_the_fd_limit_and_meet_the_client_target() {
        let l = Limits::for_fd_limit(65_536);
        assert_eq!(l.connections.total, 2048);
        assert!(l.connections.per_uid >= 1000);
        assert!(l.subscribers.per_uid >= 200 && l.exports.per_uid >= 50);
        // A default 1024-fd limit leaves room for the daemon's own files.
        let small = Limits::for_fd_limit(1024);
        assert!(
            small.connections.total + ROOT_RESERVE + REFUSED_TOTAL + FD_HEADROOM as usize <= 1024
        );
    }
}
