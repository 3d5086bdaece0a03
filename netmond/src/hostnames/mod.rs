//! Remote host names learned passively (DNS answers to queries this host
//! sent, TLS SNI, HTTP Host) into a bounded table with TTLs, their categories,
//! and optional rate-limited reverse DNS. Fed by the name capture, read per tick.

pub mod category;
pub mod pending;
pub mod reverse;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use category::Categories;

use netmon_wire::decode::PacketMeta;
use netmon_wire::flows::LocalSet;
use netmon_wire::{dns, sniff};

use crate::sync::lock;
use pending::Pending;

/// Shortest time a DNS-learned name is kept, seconds.
pub const TTL_FLOOR_S: u32 = 60;
/// Longest time a DNS-learned name is kept, seconds.
pub const TTL_CAP_S: u32 = 86_400;
/// How long an SNI / Host / reverse name is kept, seconds.
const FLOW_NAME_TTL_S: u32 = 3_600;

/// Where a name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Dns,
    Sni,
    HttpHost,
    Reverse,
}

/// What the aggregator gets for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameInfo {
    pub name: Arc<str>,
    pub category: Option<Arc<str>>,
}

#[derive(Debug)]
struct Entry {
    info: NameInfo,
    expires_ms: i64,
    source: Source,
    /// Last insert or lookup: eviction goes by use, so whoever can make this
    /// host see answers with long TTLs cannot push out the names in use.
    used_ms: Cell<i64>,
}

/// Address -> name, bounded. When full, expired entries go first, then the
/// least recently used (an eighth of the table at once, so the scan is
/// amortised); evictions are counted.
#[derive(Debug)]
pub struct NameTable {
    map: HashMap<IpAddr, Entry>,
    cap: usize,
    categories: Categories,
    evicted: u64,
}

impl NameTable {
    pub fn new(cap: usize, categories: Categories) -> NameTable {
        NameTable {
            map: HashMap::with_capacity(cap.min(4096)),
            cap: cap.max(8),
            categories,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Records that `addr` goes by `name` (lower case) for `ttl_s` seconds
    /// (clamped for DNS; fixed for the other sources).
    pub fn insert(&mut self, addr: IpAddr, name: &str, source: Source, ttl_s: u32, now_ms: i64) {
        let ttl = match source {
            Source::Dns => ttl_s.clamp(TTL_FLOOR_S, TTL_CAP_S),
            _ => FLOW_NAME_TTL_S,
        };
        let expires_ms = now_ms + i64::from(ttl) * 1000;
        if let Some(e) = self.map.get_mut(&addr) {
            if source == Source::Reverse && e.source != Source::Reverse && e.expires_ms > now_ms {
                return;
            }
            if &*e.info.name != name {
                e.info = NameInfo {
                    name: Arc::from(name),
                    category: self.categories.category(name),
                };
            }
            e.expires_ms = expires_ms;
            e.source = source;
            e.used_ms.set(now_ms);
            return;
        }
        if self.map.len() >= self.cap {
            self.make_room(now_ms);
        }
        let info = self.make_info(name);
        self.map.insert(
            addr,
            Entry {
                info,
                expires_ms,
                source,
                used_ms: Cell::new(now_ms),
            },
        );
    }

    fn make_info(&self, name: &str) -> NameInfo {
        NameInfo {
            name: Arc::from(name),
            category: self.categories.category(name),
        }
    }

    fn make_room(&mut self, now_ms: i64) {
        let before = self.map.len();
        self.map.retain(|_, e| e.expires_ms > now_ms);
        if self.map.len() >= self.cap {
            let mut used: Vec<i64> = self.map.values().map(|e| e.used_ms.get()).collect();
            let k = (self.cap / 8).max(1).min(used.len() - 1);
            let (_, cut, _) = used.select_nth_unstable(k);
            let cut = *cut;
            let mut left = self.map.len() - self.cap + self.cap / 8 + 1;
            self.map.retain(|_, e| {
                if left > 0 && e.used_ms.get() <= cut {
                    left -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.evicted += (before - self.map.len()) as u64;
    }

    /// The name of `addr` at `now_ms`, unless it has expired; marks it used.
    pub fn lookup_at(&self, addr: &IpAddr, now_ms: i64) -> Option<NameInfo> {
        let e = self.map.get(addr).filter(|e| e.expires_ms > now_ms)?;
        e.used_ms.set(e.used_ms.get().max(now_ms));
        Some(e.info.clone())
    }

    /// The name of `addr` now.
    pub fn lookup(&self, addr: &IpAddr) -> Option<NameInfo> {
        self.lookup_at(addr, crate::clock::now_ms())
    }
}

/// Counters of the name capture, for status and tests.
#[derive(Debug, Default)]
pub struct NameStats {
    pub dns_responses: AtomicU64,
    pub client_hellos: AtomicU64,
    pub http_requests: AtomicU64,
    pub names_learned: AtomicU64,
    pub unparsed: AtomicU64,
    /// DNS answers that matched no query this host sent (spoofed, late,
    /// for another host, or mDNS): not believed.
    pub dns_unsolicited: AtomicU64,
}

/// Settings of the name service, from the `[names]` config section.
#[derive(Debug, Clone)]
pub struct NamesSettings {
    /// Learn names from captured DNS answers, ClientHellos and requests.
    pub passive: bool,
    pub reverse_dns: bool,
    pub max_entries: usize,
    pub categories: Categories,
}

/// The name table shared by the name capture threads (writers, one lock per
/// DNS answer or ClientHello: not the bulk hot path) and the tick (reader,
/// one lock per tick).
///
/// Choices: the name shown for an address is the name the process asked for
/// (the first name of a CNAME chain). The newest passive observation wins
/// (a ClientHello's SNI or a Host header replaces a DNS name for the same
/// address); reverse DNS only fills in where nothing passive is known.
/// DNS TTLs are honoured with a floor of [`TTL_FLOOR_S`] (connections often
/// outlive short TTLs) and a cap of [`TTL_CAP_S`]; the aggregator keeps the
/// last name it saw for a host row, so a host keeps its name after expiry.
///
/// Limits: answers served from a local cache on loopback (systemd-resolved)
/// are seen only when loopback is captured (the cache's own upstream queries
/// are seen); the name capture does not see VLAN-tagged frames or IPv6
/// packets with extension headers; a ClientHello or DNS-over-TCP answer split
/// over several segments is not reassembled; encrypted DNS and ECH hide names.
///
/// Trust: a DNS answer is believed only when it answers a query this host
/// sent (same transport, addresses, ports, id and question, within
/// [`pending::QUERY_TIMEOUT_MS`]) and is addressed to a local address; a
/// forged answer from port 53 teaches nothing. So answers to forwarded
/// queries (containers behind a bridge) and mDNS answers, which nobody asked
/// this host for, are not learned.
pub struct Names {
    table: Arc<Mutex<NameTable>>,
    pending: Mutex<Pending>,
    reverse: Option<reverse::Reverse>,
    pub stats: NameStats,
    passive: bool,
}

impl Names {
    pub fn new(s: NamesSettings) -> Names {
        let table = Arc::new(Mutex::new(NameTable::new(s.max_entries, s.categories)));
        let reverse = if s.reverse_dns {
            match reverse::Reverse::start(table.clone(), reverse::RATE_PER_SEC) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "reverse DNS worker not started");
                    None
                }
            }
        } else {
            None
        };
        Names {
            table,
            pending: Mutex::new(Pending::default()),
            reverse,
            stats: NameStats::default(),
            passive: s.passive,
        }
    }

    /// Whether the name capture should run.
    pub fn passive(&self) -> bool {
        self.passive
    }

    pub fn reverse_enabled(&self) -> bool {
        self.reverse.is_some()
    }

    /// Learns what one captured packet says about names. `payload` is the
    /// transport payload the capture holds; `local` the host's addresses.
    pub fn observe(&self, meta: &PacketMeta, payload: &[u8], now_ms: i64, local: &LocalSet) {
        let s = &self.stats;
        if matches!(meta.proto, 6 | 17) && meta.dst_port == 53 {
            self.query_sent(meta, payload, now_ms, local);
            return;
        }
        let dns = match meta.proto {
            17 if meta.src_port == 53 => Some(Ok(payload)),
            6 if meta.src_port == 53 && !payload.is_empty() => Some(dns::tcp_message(payload)),
            _ => None,
        };
        if let Some(msg) = dns {
            s.dns_responses.fetch_add(1, Ordering::Relaxed);
            let res = msg.and_then(|m| {
                if self.solicited(meta, m, now_ms, local) {
                    dns::parse_response(m)
                } else {
                    s.dns_unsolicited.fetch_add(1, Ordering::Relaxed);
                    Ok(Vec::new())
                }
            });
            match res {
                Ok(answers) if !answers.is_empty() => {
                    let mut t = lock(&self.table);
                    for a in &answers {
                        t.insert(a.addr, &a.name, Source::Dns, a.ttl, now_ms);
                    }
                    s.names_learned
                        .fetch_add(answers.len() as u64, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => {
                    s.unparsed.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        if meta.proto != 6 || payload.is_empty() {
            return;
        }
        let (name, source) = if payload[0] == 0x16 {
            s.client_hellos.fetch_add(1, Ordering::Relaxed);
            (sniff::tls_sni(payload), Source::Sni)
        } else {
            s.http_requests.fetch_add(1, Ordering::Relaxed);
            (sniff::http_host(payload), Source::HttpHost)
        };
        match name {
            // The client sent it: the name belongs to the destination.
            Some(n) => {
                lock(&self.table).insert(meta.dst, &n, source, 0, now_ms);
                s.names_learned.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                s.unparsed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records a DNS query sent from a local address, to match its answer.
    fn query_sent(&self, meta: &PacketMeta, payload: &[u8], now_ms: i64, local: &LocalSet) {
        if !local.is_local(&meta.src) {
            return;
        }
        let msg = if meta.proto == 6 {
            dns::tcp_message(payload).ok()
        } else {
            Some(payload)
        };
        if let Some(q) = msg.and_then(|m| dns::query_question(m).ok()) {
            let client = SocketAddr::new(meta.src, meta.src_port);
            let server = SocketAddr::new(meta.dst, meta.dst_port);
            lock(&self.pending).sent(meta.proto, client, server, q, now_ms);
        }
    }

    /// Whether a DNS response answers a query this host sent, to a local address.
    fn solicited(&self, meta: &PacketMeta, msg: &[u8], now_ms: i64, local: &LocalSet) -> bool {
        if meta.src_port != 53 || !local.is_local(&meta.dst) {
            return false;
        }
        let Ok(q) = dns::response_question(msg) else {
            return false;
        };
        let server = SocketAddr::new(meta.src, meta.src_port);
        let client = SocketAddr::new(meta.dst, meta.dst_port);
        lock(&self.pending).answered(meta.proto, server, client, q, now_ms)
    }

    /// Runs `f` with a lookup function over the table, locked once. With
    /// reverse DNS on, addresses without a name are queued for the worker
    /// afterwards (never waited on).
    pub fn with_lookup<R>(&self, f: impl FnOnce(&dyn Fn(&IpAddr) -> Option<NameInfo>) -> R) -> R {
        let now = crate::clock::now_ms();
        let misses = std::cell::RefCell::new(Vec::new());
        let r = {
            let t = lock(&self.table);
            let look = |ip: &IpAddr| {
                let hit = t.lookup_at(ip, now);
                if hit.is_none() && self.reverse.is_some() {
                    misses.borrow_mut().push(*ip);
                }
                hit
            };
            f(&look)
        };
        if let Some(rev) = &self.reverse {
            rev.request(&misses.into_inner(), now);
        }
        r
    }

    pub fn lookup(&self, addr: &IpAddr) -> Option<NameInfo> {
        lock(&self.table).lookup(addr)
    }

    /// (entries, evicted) of the table.
    pub fn table_stats(&self) -> (usize, u64) {
        let t = lock(&self.table);
        (t.len(), t.evicted())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use netmon_wire::classify::AppProto;
    use netmon_wire::decode::{Fragment, PktDir};
    use std::net::Ipv4Addr;

    fn ip(a: u8, b: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, a, b))
    }

    fn meta(proto: u8, src: IpAddr, sp: u16, dst: IpAddr, dp: u16) -> PacketMeta {
        PacketMeta {
            src,
            dst,
            proto,
            src_port: sp,
            dst_port: dp,
            l3_len: 100,
            tcp_flags: 0,
            payload_len: 0,
            fragment: Fragment::None,
            frag_id: 0,
            dir_hint: PktDir::Unknown,
            app: AppProto::Unknown,
            len_forged: false,
        }
    }

    fn names() -> Names {
        Names::new(NamesSettings {
            passive: true,
            reverse_dns: false,
            max_entries: 1000,
            categories: Categories::builtin(),
        })
    }

    #[test]
    fn ttl_expiry_with_floor_and_cap() {
        let mut t = NameTable::new(100, Categories::default());
        t.insert(ip(0, 1), "short.test", Source::Dns, 5, 1_000);
        t.insert(ip(0, 2), "long.test", Source::Dns, 300, 1_000);
        t.insert(ip(0, 3), "huge.test", Source::Dns, u32::MAX, 1_000);
        // The 5 s TTL is raised to the 60 s floor.
        assert!(t.lookup_at(&ip(0, 1), 1_000 + 59_000).is_some());
        assert!(t.lookup_at(&ip(0, 1), 1_000 + 60_000).is_none());
        assert!(t.lookup_at(&ip(0, 2), 1_000 + 299_000).is_some());
        assert!(t.lookup_at(&ip(0, 2), 1_000 + 300_000).is_none());
        let cap_ms = i64::from(TTL_CAP_S) * 1000;
        assert!(t.lookup_at(&ip(0, 3), 1_000 + cap_ms - 1).is_some());
        assert!(t.lookup_at(&ip(0, 3), 1_000 + cap_ms).is_none());
    }

    #[test]
    fn table_is_bounded_and_evicts_expired_then_least_recently_used() {
        let mut t = NameTable::new(64, Categories::default());
        for i in 0..64u8 {
            t.insert(ip(1, i), "old.test", Source::Dns, 60, 0);
        }
        assert_eq!(t.len(), 64);
        // All expired by now: they go first.
        t.insert(ip(2, 0), "in-use.test", Source::Dns, 60, 120_000);
        assert_eq!(t.len(), 1);
        assert_eq!(t.evicted(), 64);
        // A flood of names with the longest TTLs, while one short-lived name
        // keeps being looked up: the name in use stays.
        for i in 0..200u8 {
            let now = 120_000 + i64::from(i);
            t.insert(ip(3, i), "flood.test", Source::Dns, u32::MAX, now);
            assert!(
                t.lookup_at(&ip(2, 0), now).is_some(),
                "in use, evicted at {i}"
            );
            assert!(t.len() <= 64);
        }
        assert!(t.lookup_at(&ip(3, 199), 120_300).is_some(), "newest stays");
        assert!(
            t.lookup_at(&ip(3, 0), 120_300).is_none(),
            "oldest unused goes"
        );
        assert!(t.evicted() > 64);
    }

    #[test]
    fn sni_overrides_dns_and_reverse_only_fills_in() {
        let mut t = NameTable::new(100, Categories::builtin());
        t.insert(ip(0, 1), "e1.cdn.test", Source::Reverse, 0, 0);
        t.insert(ip(0, 1), "www.github.com", Source::Dns, 300, 0);
        t.insert(ip(0, 1), "ptr.example", Source::Reverse, 0, 1);
        let n = t.lookup_at(&ip(0, 1), 2).unwrap();
        assert_eq!(&*n.name, "www.github.com");
        assert_eq!(n.category.as_deref(), Some("development"));
        t.insert(ip(0, 1), "api.netflix.com", Source::Sni, 0, 3);
        let n = t.lookup_at(&ip(0, 1), 4).unwrap();
        assert_eq!(&*n.name, "api.netflix.com");
        assert_eq!(n.category.as_deref(), Some("streaming"));
    }

    /// This host is 10.0.0.1.
    fn here() -> LocalSet {
        LocalSet::new(vec![ip(0, 1)])
    }

    fn answer() -> Vec<u8> {
        netmon_testkit::dns::response(
            "files.example.test",
            &["edge.cdn.test"],
            &[[10, 0, 9, 1], [10, 0, 9, 2]],
            30,
        )
    }

    #[test]
    fn observe_dns_answer_to_our_query_names_every_final_address() {
        let n = names();
        let now = crate::clock::now_ms();
        let q = netmon_testkit::dns::query("files.example.test", 1);
        n.observe(&meta(17, ip(0, 1), 40000, ip(0, 53), 53), &q, now, &here());
        n.observe(
            &meta(17, ip(0, 53), 53, ip(0, 1), 40000),
            &answer(),
            now + 5,
            &here(),
        );
        for b in [1, 2] {
            let got = n.with_lookup(|l| l(&ip(9, b)));
            assert_eq!(got.unwrap().name.as_ref(), "files.example.test");
        }
        assert_eq!(n.stats.names_learned.load(Ordering::Relaxed), 2);
        // The same bytes arriving as a query to port 53 teach nothing.
        let other = names();
        other.observe(
            &meta(17, ip(0, 1), 40000, ip(0, 53), 53),
            &answer(),
            0,
            &here(),
        );
        assert_eq!(other.table_stats().0, 0);
    }

    #[test]
    fn forged_dns_answers_teach_nothing() {
        let now = crate::clock::now_ms();
        let q = netmon_testkit::dns::query("files.example.test", 1);
        let to_us = meta(17, ip(0, 53), 53, ip(0, 1), 40000);
        let cases: [(&str, Option<PacketMeta>, PacketMeta, i64); 6] = [
            ("no query at all", None, to_us, now),
            (
                "query from another host",
                Some(meta(17, ip(0, 7), 40000, ip(0, 53), 53)),
                meta(17, ip(0, 53), 53, ip(0, 7), 40000),
                now,
            ),
            (
                "answer from another server",
                Some(meta(17, ip(0, 1), 40000, ip(0, 53), 53)),
                meta(17, ip(6, 6), 53, ip(0, 1), 40000),
                now,
            ),
            (
                "answer to another port",
                Some(meta(17, ip(0, 1), 40000, ip(0, 53), 53)),
                meta(17, ip(0, 53), 53, ip(0, 1), 40001),
                now,
            ),
            (
                "answer over TCP to a UDP query",
                Some(meta(17, ip(0, 1), 40000, ip(0, 53), 53)),
                meta(6, ip(0, 53), 53, ip(0, 1), 40000),
                now,
            ),
            (
                "answer after the timeout",
                Some(meta(17, ip(0, 1), 40000, ip(0, 53), 53)),
                to_us,
                now + pending::QUERY_TIMEOUT_MS + 1,
            ),
        ];
        for (what, query, reply, at) in cases {
            let n = names();
            if let Some(qm) = query {
                n.observe(&qm, &q, now, &here());
            }
            let payload = if reply.proto == 6 {
                let a = answer();
                let mut p = (a.len() as u16).to_be_bytes().to_vec();
                p.extend(a);
                p
            } else {
                answer()
            };
            n.observe(&reply, &payload, at, &here());
            assert_eq!(n.table_stats().0, 0, "{what}");
            assert_eq!(n.stats.dns_unsolicited.load(Ordering::Relaxed), 1, "{what}");
        }
        // Another id or question in a matching 5-tuple: not this query either.
        let n = names();
        n.observe(&meta(17, ip(0, 1), 40000, ip(0, 53), 53), &q, now, &here());
        let mut other_id = answer();
        other_id[1] ^= 1;
        n.observe(&to_us, &other_id, now, &here());
        let other_q = netmon_testkit::dns::response("bank.example", &[], &[[10, 0, 9, 1]], 30);
        n.observe(&to_us, &other_q, now, &here());
        assert_eq!(n.table_stats().0, 0);
        // The real answer still matches, once.
        n.observe(&to_us, &answer(), now, &here());
        assert_eq!(n.table_stats().0, 2);
    }

    #[test]
    fn observe_client_hello_and_http_name_the_destination() {
        let n = names();
        let now = crate::clock::now_ms();
        let ch = netmon_testkit::tls::build_client_hello("sni.example.test");
        n.observe(&meta(6, ip(0, 1), 40000, ip(7, 7), 443), &ch, now, &here());
        let req = b"GET / HTTP/1.1\r\nHost: www.youtube.com\r\n\r\n";
        n.observe(&meta(6, ip(0, 1), 40001, ip(7, 8), 80), req, now, &here());
        n.observe(
            &meta(6, ip(0, 1), 40001, ip(7, 9), 80),
            b"junk",
            now,
            &here(),
        );
        assert_eq!(
            n.lookup(&ip(7, 7)).map(|i| i.name),
            Some(Arc::from("sni.example.test"))
        );
        let yt = n.with_lookup(|l| l(&ip(7, 8))).unwrap();
        assert_eq!(yt.category.as_deref(), Some("streaming"));
        assert_eq!(n.stats.unparsed.load(Ordering::Relaxed), 1);
        assert!(!n.reverse_enabled());
    }

    #[test]
    fn aggregator_names_hosts_and_connections_and_keeps_names_after_expiry() {
        use crate::aggregate::Aggregator;
        use netmon_wire::flows::{FlowDelta, FlowKey, Placement, TcpState};
        let key = FlowKey {
            proto: 6,
            local: ip(0, 1),
            local_port: 40000,
            remote: ip(5, 5),
            remote_port: 443,
        };
        let delta = FlowDelta {
            key,
            placement: Placement::Local,
            up_bytes: 100,
            down_bytes: 1000,
            up_packets: 1,
            down_packets: 1,
            first_seen_ms: 0,
            last_seen_ms: 0,
            tcp_state: TcpState::Established,
            app: AppProto::Unknown,
            is_new: true,
            ended: false,
            half_open: false,
        };
        let mut agg = Aggregator::new();
        agg.apply_deltas(0, &[delta], &[]);
        let mut t = NameTable::new(100, Categories::builtin());
        t.insert(ip(5, 5), "github.com", Source::Sni, 0, 0);
        agg.apply_names(&|a| t.lookup_at(a, 1));
        let r = agg.roll(1000, |_, _| true);
        let h = r.hosts.iter().find(|h| h.address == "10.0.5.5").unwrap();
        assert_eq!(
            (h.name.as_str(), h.category.as_str()),
            ("github.com", "development")
        );
        let c = agg.connections(1000, |_| String::new());
        assert_eq!(c[0].remote_name, "github.com");
        // The table entry expired: the host row keeps the name it had.
        agg.apply_names(&|a| t.lookup_at(a, i64::MAX));
        let r = agg.roll(1000, |_, _| true);
        assert_eq!(r.hosts[0].name, "github.com");
    }
}
