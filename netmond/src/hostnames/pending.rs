//! DNS queries this host sent, awaiting their answers. An answer is believed
//! only when it matches one such query (transport, addresses, ports, id and
//! question) within `QUERY_TIMEOUT_MS`; anything else is a guess or a forgery.
//! Pure and bounded; no I/O.

use std::collections::HashMap;
use std::net::SocketAddr;

use netmon_wire::dns::Question;

/// How long a query waits for its answer. Stub resolvers retry after 5 s.
pub const QUERY_TIMEOUT_MS: i64 = 10_000;
/// Queries awaited at once; more are not recorded (and their answers not believed).
const MAX_PENDING: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    proto: u8,
    client: SocketAddr,
    server: SocketAddr,
    question: Question,
}

#[derive(Debug, Default)]
pub struct Pending {
    /// Query -> when it was sent (capture time, ms).
    sent: HashMap<Key, i64>,
    /// Queries not recorded because the table was full.
    pub dropped: u64,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Records a query from local `client` to `server`.
    pub fn sent(
        &mut self,
        proto: u8,
        client: SocketAddr,
        server: SocketAddr,
        question: Question,
        now_ms: i64,
    ) {
        if self.sent.len() >= MAX_PENDING {
            self.sent.retain(|_, t| now_ms - *t <= QUERY_TIMEOUT_MS);
        }
        if self.sent.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        let key = Key {
            proto,
            client,
            server,
            question,
        };
        self.sent.insert(key, now_ms);
    }

    /// Whether an answer from `server` to `client` answers a query still
    /// awaited. The query is then answered: a second answer is not believed.
    pub fn answered(
        &mut self,
        proto: u8,
        server: SocketAddr,
        client: SocketAddr,
        question: Question,
        now_ms: i64,
    ) -> bool {
        let key = Key {
            proto,
            client,
            server,
            question,
        };
        self.sent
            .remove(&key)
            .is_some_and(|t| (t..=t + QUERY_TIMEOUT_MS).contains(&now_ms))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    fn q(id: u16, name: &str) -> Question {
        Question {
            id,
            name: name.into(),
            qtype: 1,
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_the_exact_query_in_time_is_answered_and_only_once() {
        let (c, srv) = (sa("10.0.0.1:40000"), sa("10.0.0.53:53"));
        let mut p = Pending::default();
        p.sent(17, c, srv, q(7, "a.test"), 1_000);
        // Wrong id, name, port, server or transport: not this query.
        assert!(!p.answered(17, srv, c, q(8, "a.test"), 1_100));
        assert!(!p.answered(17, srv, c, q(7, "b.test"), 1_100));
        assert!(!p.answered(17, srv, sa("10.0.0.1:40001"), q(7, "a.test"), 1_100));
        assert!(!p.answered(17, sa("10.0.0.66:53"), c, q(7, "a.test"), 1_100));
        assert!(!p.answered(6, srv, c, q(7, "a.test"), 1_100));
        assert!(p.answered(17, srv, c, q(7, "a.test"), 1_100));
        assert!(
            !p.answered(17, srv, c, q(7, "a.test"), 1_200),
            "answered once"
        );
        // Too late.
        p.sent(17, c, srv, q(9, "a.test"), 1_000);
        assert!(!p.answered(17, srv, c, q(9, "a.test"), 1_000 + QUERY_TIMEOUT_MS + 1));
        assert!(p.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_expired_queries_make_room() {
        let srv = sa("10.0.0.53:53");
        let mut p = Pending::default();
        for i in 0..MAX_PENDING as u16 + 10 {
            p.sent(17, sa("10.0.0.1:1"), srv, q(i, "x.test"), 0);
        }
        assert_eq!(p.len(), MAX_PENDING);
        assert_eq!(p.dropped, 10);
        p.sent(
            17,
            sa("10.0.0.1:1"),
            srv,
            q(1, "late.test"),
            QUERY_TIMEOUT_MS + 1,
        );
        assert_eq!(p.len(), 1);
    }
}
