//! pcap handles and their threads: one bulk capture thread per interface
//! (batched reads into a thread-local flow table, drained once per tick) and
//! one tiny immediate-mode thread that sees new flows within a millisecond so
//! their owner is looked up while the socket still exists (`flow_start`). The
//! only pcap I/O.

mod flow_start;

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use netmon_wire::decode::{self, LinkType};
use netmon_wire::flows::{FlowDelta, FlowTable, Ingest, LocalSet};
use tracing::{debug, warn};

use crate::attribution::procmap::{Priority, ResolverHandle};
use flow_start::{flow_start_loop, START_FILTER};
pub use flow_start::{lookup_priority, query_for};

/// Packet-size histogram bounds (layer-3 bytes, inclusive upper bounds).
pub const SIZE_BOUNDS: [u32; 8] = [64, 128, 256, 512, 1024, 1500, 9000, u32::MAX];

/// BPF for the bulk capture: the IP traffic we count (VLAN-tagged too).
const BULK_FILTER: &str = "ip or ip6 or (vlan and (ip or ip6))";
/// BPF for the name capture: DNS answers (UDP and TCP, mDNS) and, over
/// IPv4 and IPv6 without extension headers, TCP segments whose payload
/// starts a TLS ClientHello or an HTTP GET/POST/HEAD/PUT request. BPF's
/// `tcp[]` is IPv4-only, hence the `ip6[]` forms; VLAN-tagged frames are
/// not matched.
const NAME_FILTER: &str = "udp port 53 or tcp port 53 \
     or (ip and tcp and (tcp[((tcp[12:1] & 0xf0) >> 2):1] = 0x16 \
         and tcp[((tcp[12:1] & 0xf0) >> 2) + 5:1] = 0x01)) \
     or (ip and tcp and (tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420 \
         or tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x504f5354 \
         or tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x48454144 \
         or tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x50555420)) \
     or (ip6 and ip6[6] = 6 and ip6[40 + ((ip6[52] & 0xf0) >> 2)] = 0x16 \
         and ip6[45 + ((ip6[52] & 0xf0) >> 2)] = 0x01) \
     or (ip6 and ip6[6] = 6 and (ip6[40 + ((ip6[52] & 0xf0) >> 2):4] = 0x47455420 \
         or ip6[40 + ((ip6[52] & 0xf0) >> 2):4] = 0x504f5354 \
         or ip6[40 + ((ip6[52] & 0xf0) >> 2):4] = 0x48454144 \
         or ip6[40 + ((ip6[52] & 0xf0) >> 2):4] = 0x50555420))";

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open capture on '{iface}'")]
    Open {
        iface: String,
        #[source]
        source: pcap::Error,
    },
    #[error("cannot set the capture filter on '{iface}'")]
    Filter {
        iface: String,
        #[source]
        source: pcap::Error,
    },
    #[error("'{iface}' has link type {dlt}, which netmond cannot decode")]
    LinkType { iface: String, dlt: i32 },
    /// Not an error: the flow-start capture is not wanted (socket accounting).
    #[error("flow-start capture not wanted")]
    Disabled,
    #[error("cannot start a capture thread for '{iface}'")]
    Thread {
        iface: String,
        #[source]
        source: std::io::Error,
    },
}

/// Capture settings derived from the config.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub snaplen: i32,
    pub buffer_bytes: i32,
    /// Read timeout of the bulk capture: the longest a quiet packet waits.
    pub timeout_ms: i32,
    pub max_flows: usize,
    pub idle_ms: i64,
    /// Ask the resolver who owns new flows (off when socket accounting owns
    /// attribution: then no flow-start capture runs either).
    pub lookups: bool,
}

/// State shared by every capture thread of a run, read without locks on
/// the hot path (the local set is re-read only when its generation moves).
pub struct Shared {
    /// Bumped by the engine at every tick; threads drain when they see it move.
    pub epoch: AtomicU64,
    pub local: RwLock<Arc<LocalSet>>,
    pub local_gen: AtomicU64,
    /// Batches handed over and not yet taken by the aggregator. While the
    /// aggregator is behind, threads keep counting in their bounded tables
    /// instead of queueing more batches, so memory stays bounded.
    pub in_flight: std::sync::atomic::AtomicUsize,
}

/// Batches allowed in flight across all threads before threads wait.
const MAX_IN_FLIGHT: usize = 16;

impl Shared {
    pub fn new(local: LocalSet) -> Shared {
        Shared {
            epoch: AtomicU64::new(0),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            local: RwLock::new(Arc::new(local)),
            local_gen: AtomicU64::new(0),
        }
    }

    pub fn set_local(&self, local: LocalSet) {
        if let Ok(mut l) = self.local.write() {
            *l = Arc::new(local);
        }
        self.local_gen.fetch_add(1, Ordering::Release);
    }

    fn local(&self) -> Arc<LocalSet> {
        self.local
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

/// Per-interface counters, written by its thread once per tick.
#[derive(Debug, Default)]
pub struct IfaceStats {
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub if_dropped: AtomicU64,
    pub counted_packets: AtomicU64,
    pub counted_bytes: AtomicU64,
    pub malformed: AtomicU64,
    pub handoff_dropped: AtomicU64,
    pub flows: AtomicU64,
    pub evicted: AtomicU64,
    pub evicted_half_open: AtomicU64,
    pub running: AtomicBool,
    pub error: Mutex<String>,
    pub link_type: Mutex<String>,
}

/// What a capture thread hands over at each tick.
#[derive(Debug)]
pub struct Batch {
    pub iface: u16,
    pub epoch: u64,
    pub deltas: Vec<FlowDelta>,
    pub size_hist: [u64; SIZE_BOUNDS.len()],
}

/// A running capture of one interface (bulk and flow-start threads).
pub struct CaptureHandle {
    pub name: String,
    pub id: u16,
    pub stats: Arc<IfaceStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The local addresses, for the name capture (DNS answers must answer
    /// a query sent from here, to here).
    shared: Arc<Shared>,
}

impl CaptureHandle {
    pub fn is_running(&self) -> bool {
        self.stats.running.load(Ordering::Relaxed)
    }

    /// Tells the threads to stop; they notice within the read timeout.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Adds the name capture of this interface: DNS answers, ClientHellos
    /// and HTTP requests at `snaplen`, on its own thread, feeding `names`.
    /// It stops with the other threads of the handle.
    pub fn start_names(
        &mut self,
        names: Arc<crate::hostnames::Names>,
        snaplen: i32,
    ) -> Result<(), CaptureError> {
        let iface = self.name.clone();
        let mut cap = open(&iface, snaplen, 2 << 20, 100, false)?;
        let dlt = cap.get_datalink().0;
        let link = LinkType::from_dlt(dlt).ok_or(CaptureError::LinkType {
            iface: iface.clone(),
            dlt,
        })?;
        cap.filter(NAME_FILTER, true)
            .map_err(|source| CaptureError::Filter {
                iface: iface.clone(),
                source,
            })?;
        let stop = self.stop.clone();
        let shared = self.shared.clone();
        let t = std::thread::Builder::new()
            .name(format!("names-{iface}"))
            .spawn(move || name_loop(cap, link, &names, &shared, &stop, &iface))
            .map_err(|source| CaptureError::Thread {
                iface: self.name.clone(),
                source,
            })?;
        self.threads.push(t);
        Ok(())
    }

    pub fn join(mut self) {
        self.signal_stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Opens a non-blocking capture: threads wait in `poll` with their own
/// timeout, so they notice ticks and stop requests even when the wire is
/// quiet (a blocking pcap read may wait for the next packet forever).
fn open(
    iface: &str,
    snaplen: i32,
    buffer: i32,
    timeout_ms: i32,
    immediate: bool,
) -> Result<pcap::Capture<pcap::Active>, CaptureError> {
    pcap::Capture::from_device(iface)
        .and_then(|c| {
            c.promisc(false)
                .snaplen(snaplen)
                .buffer_size(buffer)
                .timeout(timeout_ms)
                .immediate_mode(immediate)
                .open()
        })
        .and_then(pcap::Capture::setnonblock)
        .map_err(|source| CaptureError::Open {
            iface: iface.to_owned(),
            source,
        })
}

/// Waits until the capture has something to read or `timeout_ms` passes.
/// Errors (EINTR) only end the wait early: the caller reads either way.
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, timeout_ms: i32) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::NONE);
    let _ = poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], timeout);
}

/// Opens `iface` and starts its threads.
pub fn start(
    iface: &str,
    id: u16,
    settings: &CaptureSettings,
    shared: Arc<Shared>,
    out: SyncSender<Batch>,
    resolver: ResolverHandle,
) -> Result<CaptureHandle, CaptureError> {
    let mut bulk = open(
        iface,
        settings.snaplen,
        settings.buffer_bytes,
        settings.timeout_ms,
        false,
    )?;
    let dlt = bulk.get_datalink().0;
    let link = LinkType::from_dlt(dlt).ok_or(CaptureError::LinkType {
        iface: iface.to_owned(),
        dlt,
    })?;
    bulk.filter(BULK_FILTER, true)
        .map_err(|source| CaptureError::Filter {
            iface: iface.to_owned(),
            source,
        })?;
    // The flow-start capture is an optimisation: without it attribution of
    // short-lived flows is slower, counting is unaffected.
    let start_cap = if !settings.lookups {
        Err(CaptureError::Disabled)
    } else {
        open(iface, 128, 2 << 20, 1, true)
    }
    .and_then(|mut c| {
        c.filter(START_FILTER, true)
            .map_err(|source| CaptureError::Filter {
                iface: iface.to_owned(),
                source,
            })?;
        Ok(c)
    });

    let stats = Arc::new(IfaceStats::default());
    stats.running.store(true, Ordering::Relaxed);
    if let Ok(mut l) = stats.link_type.lock() {
        *l = format!("{link:?}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let fast_path = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let name = iface.to_owned();
    let handle_shared = shared.clone();
    let bulk_thread = BulkThread {
        iface: name.clone(),
        id,
        link,
        settings: settings.clone(),
        shared: shared.clone(),
        out,
        resolver: resolver.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
        fast_path: fast_path.clone(),
    };
    let ended = Ended(stats.clone());
    threads.push(
        std::thread::Builder::new()
            .name(format!("cap-{name}"))
            .spawn(move || {
                let _ended = ended;
                bulk_thread.run(bulk);
            })
            .map_err(|source| CaptureError::Thread {
                iface: name.clone(),
                source,
            })?,
    );
    match start_cap {
        Ok(cap) => {
            let (sh, st, r, n, fp) = (
                shared,
                stop.clone(),
                resolver,
                name.clone(),
                fast_path.clone(),
            );
            fast_path.store(true, Ordering::Relaxed);
            match std::thread::Builder::new()
                .name(format!("new-{name}"))
                .spawn(move || {
                    // However it ends: the bulk thread then asks about new flows itself.
                    let _off = FastPathOff(fp);
                    flow_start_loop(cap, link, sh, r, st, &n);
                }) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    fast_path.store(false, Ordering::Relaxed);
                    warn!(iface = %name, %e, "flow-start thread not started");
                }
            }
        }
        Err(CaptureError::Disabled) => {}
        Err(e) => {
            warn!(iface = %name, error = %e, "flow-start capture unavailable; attribution of short flows is slower")
        }
    }
    Ok(CaptureHandle {
        name,
        id,
        stats,
        stop,
        threads,
        shared: handle_shared,
    })
}

/// Marks a capture ended when its bulk thread ends, a panic included: the
/// monitor then reaps it, says why in `status` and starts it again.
struct Ended(Arc<IfaceStats>);

impl Drop for Ended {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(mut err) = self.0.error.lock() {
                *err = "the capture thread failed (see the log)".to_owned();
            }
        }
        self.0.running.store(false, Ordering::Relaxed);
    }
}

/// Clears an interface's flow-start flag when that thread ends, however.
struct FastPathOff(Arc<AtomicBool>);

impl Drop for FastPathOff {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

fn ts_ms(h: &pcap::PacketHeader) -> i64 {
    h.ts.tv_sec * 1000 + h.ts.tv_usec / 1000
}

fn size_bucket(len: u32) -> usize {
    SIZE_BOUNDS
        .iter()
        .position(|&b| len <= b)
        .unwrap_or(SIZE_BOUNDS.len() - 1)
}

struct BulkThread {
    iface: String,
    id: u16,
    link: LinkType,
    settings: CaptureSettings,
    shared: Arc<Shared>,
    out: SyncSender<Batch>,
    resolver: ResolverHandle,
    stats: Arc<IfaceStats>,
    stop: Arc<AtomicBool>,
    /// The flow-start thread of this interface is running.
    fast_path: Arc<AtomicBool>,
}

impl BulkThread {
    fn run(self, mut cap: pcap::Capture<pcap::Active>) {
        let mut table = FlowTable::new(self.settings.max_flows);
        let mut local = self.shared.local();
        let mut local_gen = self.shared.local_gen.load(Ordering::Acquire);
        let mut epoch = self.shared.epoch.load(Ordering::Acquire);
        let mut pending: Vec<FlowDelta> = Vec::with_capacity(1024);
        let mut hist = [0u64; SIZE_BOUNDS.len()];
        let (mut packets, mut bytes, mut malformed) = (0u64, 0u64, 0u64);
        let mut last_ms = crate::clock::now_ms();
        let mut base = StatBase::default();
        let mut idle_reads = 0u32;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            // Under load the ring always has packets: only wait when a read came back empty.
            if idle_reads > 0 {
                wait_readable(cap.as_fd(), self.settings.timeout_ms);
            }
            let link = self.link;
            let res = cap.dispatch(None, |p| {
                let now = ts_ms(p.header);
                last_ms = now;
                match decode::decode(link, p.data, p.header.len) {
                    Ok(meta) => {
                        packets += 1;
                        // Counted at the frame's real size, and reported: a
                        // length field that lies is a malformed packet.
                        malformed += u64::from(meta.len_forged);
                        bytes += u64::from(meta.l3_len);
                        hist[size_bucket(meta.l3_len)] += 1;
                        match table.ingest(&meta, &local, now) {
                            Ingest::New(key) => {
                                // Flows that start with a SYN, and UDP, were already
                                // sent to the resolver by the flow-start thread.
                                let started_seen = self.fast_path.load(Ordering::Relaxed)
                                    && (key.proto == 17
                                        || (key.proto == 6
                                            && meta.tcp_flags & decode::TCP_SYN != 0));
                                if !started_seen && self.settings.lookups {
                                    if let Some(q) = query_for(&key, &local) {
                                        self.resolver.submit(q, lookup_priority(&meta, &local));
                                    }
                                }
                            }
                            // A half-open flow whose lookup may still wait behind a
                            // flood turned real: ask again, first in line.
                            Ingest::Promoted(key) if self.settings.lookups => {
                                if let Some(q) = query_for(&key, &local) {
                                    self.resolver.submit(q, Priority::High);
                                }
                            }
                            Ingest::Promoted(_) | Ingest::Existing | Ingest::Overflow => {}
                        }
                    }
                    Err(_) => malformed += 1,
                }
            });
            match res {
                Ok(0) | Err(pcap::Error::TimeoutExpired) => idle_reads += 1,
                Ok(_) => idle_reads = 0,
                Err(e) => {
                    // The interface went away or the handle broke: report and end.
                    debug!(iface = %self.iface, error = %e, "capture ended");
                    if let Ok(mut err) = self.stats.error.lock() {
                        *err = e.to_string();
                    }
                    break;
                }
            }
            let g = self.shared.local_gen.load(Ordering::Acquire);
            if g != local_gen {
                local = self.shared.local();
                local_gen = g;
            }
            let e = self.shared.epoch.load(Ordering::Acquire);
            if e != epoch && self.shared.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
                // The aggregator is behind: keep counting in the table (its
                // deltas accumulate per flow) and hand over at a later tick.
                self.stats.handoff_dropped.fetch_add(1, Ordering::Relaxed);
                epoch = e;
            } else if e != epoch {
                if crate::fault::fire("capture", &self.iface) {
                    panic!(
                        "injected failure of the capture of '{}' (NETMOND_FAULT)",
                        self.iface
                    );
                }
                epoch = e;
                let now = crate::clock::now_ms().max(last_ms);
                table.expire(now, self.settings.idle_ms);
                table.drain(&mut pending);
                self.publish_stats(&mut cap, &mut base, &table, packets, bytes, malformed);
                self.hand_off(&mut pending, &mut hist, epoch);
            }
        }
        // Whatever is left is still traffic that happened: hand it over.
        table.expire(i64::MAX, 0);
        table.drain(&mut pending);
        self.publish_stats(&mut cap, &mut base, &table, packets, bytes, malformed);
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        self.hand_off(&mut pending, &mut hist, epoch);
        self.stats.running.store(false, Ordering::Relaxed);
    }

    fn publish_stats(
        &self,
        cap: &mut pcap::Capture<pcap::Active>,
        base: &mut StatBase,
        table: &FlowTable,
        packets: u64,
        bytes: u64,
        malformed: u64,
    ) {
        let s = &self.stats;
        if let Ok(st) = cap.stats() {
            base.update(st);
            s.received.store(base.received, Ordering::Relaxed);
            s.dropped.store(base.dropped, Ordering::Relaxed);
            s.if_dropped.store(base.if_dropped, Ordering::Relaxed);
        }
        s.counted_packets.store(packets, Ordering::Relaxed);
        s.counted_bytes.store(bytes, Ordering::Relaxed);
        s.malformed.store(malformed, Ordering::Relaxed);
        s.flows.store(table.len() as u64, Ordering::Relaxed);
        s.evicted.store(table.evicted(), Ordering::Relaxed);
        s.evicted_half_open
            .store(table.stats().evicted_half_open, Ordering::Relaxed);
    }

    fn hand_off(
        &self,
        pending: &mut Vec<FlowDelta>,
        hist: &mut [u64; SIZE_BOUNDS.len()],
        epoch: u64,
    ) {
        let batch = Batch {
            iface: self.id,
            epoch,
            deltas: std::mem::take(pending),
            size_hist: *hist,
        };
        // Counted before the send: the aggregator may take it at once.
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        match self.out.try_send(batch) {
            Ok(()) => *hist = [0; SIZE_BOUNDS.len()],
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                // Keep the bytes: they go out with the next hand-off.
                *pending = b.deltas;
                self.stats.handoff_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// pcap's counters are 32-bit and wrap; keep 64-bit totals.
#[derive(Default)]
struct StatBase {
    last: Option<pcap::Stat>,
    received: u64,
    dropped: u64,
    if_dropped: u64,
}

impl StatBase {
    fn update(&mut self, st: pcap::Stat) {
        let (r, d, i) = match self.last {
            Some(l) => (
                st.received.wrapping_sub(l.received),
                st.dropped.wrapping_sub(l.dropped),
                st.if_dropped.wrapping_sub(l.if_dropped),
            ),
            None => (st.received, st.dropped, st.if_dropped),
        };
        self.received += u64::from(r);
        self.dropped += u64::from(d);
        self.if_dropped += u64::from(i);
        self.last = Some(st);
    }
}

/// Reads DNS queries and answers, ClientHellos and requests into the name table.
fn name_loop(
    mut cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    names: &crate::hostnames::Names,
    shared: &Shared,
    stop: &AtomicBool,
    iface: &str,
) {
    let mut local = shared.local();
    let mut local_gen = shared.local_gen.load(Ordering::Acquire);
    while !stop.load(Ordering::Relaxed) {
        wait_readable(cap.as_fd(), 100);
        let g = shared.local_gen.load(Ordering::Acquire);
        if g != local_gen {
            local = shared.local();
            local_gen = g;
        }
        let res = cap.dispatch(None, |p| {
            let Ok(meta) = decode::decode(link, p.data, p.header.len) else {
                return;
            };
            if let Some(payload) = decode::l4_payload(link, p.data) {
                names.observe(&meta, payload, ts_ms(p.header), &local);
            }
        });
        if let Err(e) = res {
            if !matches!(e, pcap::Error::TimeoutExpired) {
                debug!(%iface, error = %e, "name capture ended");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_thread_that_fails_is_marked_ended_with_the_reason() {
        let stats = Arc::new(IfaceStats::default());
        stats.running.store(true, Ordering::Relaxed);
        let fast = Arc::new(AtomicBool::new(true));
        let (ended, off) = (Ended(stats.clone()), FastPathOff(fast.clone()));
        let t = std::thread::spawn(move || {
            let (_ended, _off) = (ended, off);
            panic!("a bug in the capture loop");
        });
        assert!(t.join().is_err());
        assert!(!stats.running.load(Ordering::Relaxed));
        assert!(stats.error.lock().unwrap().contains("failed"));
        assert!(
            !fast.load(Ordering::Relaxed),
            "the bulk thread asks about new flows again"
        );
        // An orderly end leaves no error.
        let stats = Arc::new(IfaceStats::default());
        stats.running.store(true, Ordering::Relaxed);
        drop(Ended(stats.clone()));
        assert!(!stats.running.load(Ordering::Relaxed));
        assert!(stats.error.lock().unwrap().is_empty());
    }

    #[test]
    fn size_buckets_cover_everything() {
        assert_eq!(size_bucket(40), 0);
        assert_eq!(size_bucket(1500), 5);
        assert_eq!(size_bucket(64_000), SIZE_BOUNDS.len() - 1);
    }

    #[test]
    fn name_filter_compiles_and_passes_what_it_should() {
        let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("dead capture");
        let prog = cap
            .compile(NAME_FILTER, true)
            .expect("name filter compiles");
        let frame = |ip: &[u8]| {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(if ip[0] >> 4 == 4 {
                &[8, 0]
            } else {
                &[0x86, 0xdd]
            });
            f.extend_from_slice(ip);
            f
        };
        let v4 = |proto: u8, l4: &[u8]| {
            let mut ip = vec![
                0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ];
            let len = (20 + l4.len()) as u16;
            ip[2..4].copy_from_slice(&len.to_be_bytes());
            ip.extend_from_slice(l4);
            frame(&ip)
        };
        let v6 = |proto: u8, l4: &[u8]| {
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            ip.extend_from_slice(&[proto, 64]);
            ip.extend_from_slice(&[0xfd; 32]);
            ip.extend_from_slice(l4);
            frame(&ip)
        };
        let tcp = |dport: u16, payload: &[u8]| {
            let mut t = vec![0x9c, 0x40];
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&[0; 8]);
            t.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            t.extend_from_slice(payload);
            t
        };
        let udp = |sport: u16| {
            let mut u = sport.to_be_bytes().to_vec();
            u.extend_from_slice(&[0x9c, 0x40, 0, 20, 0, 0]);
            u.extend_from_slice(&[0; 12]);
            u
        };
        let hello = netmon_testkit::tls::build_client_hello("a.test");
        let pass = |f: &[u8]| prog.filter(f);
        assert!(pass(&v4(17, &udp(53))));
        // Queries too: an answer is believed only for a query seen going out.
        let mut query = udp(40000);
        query[2..4].copy_from_slice(&53u16.to_be_bytes());
        assert!(pass(&v4(17, &query)));
        // mDNS answers answer nobody's query: not read.
        assert!(!pass(&v6(17, &udp(5353))));
        assert!(!pass(&v4(17, &udp(54))));
        assert!(pass(&v4(6, &tcp(443, &hello))));
        assert!(pass(&v6(6, &tcp(8443, &hello))));
        assert!(pass(&v4(6, &tcp(80, b"GET / HTTP/1.1\r\n"))));
        assert!(pass(&v6(6, &tcp(80, b"POST / HTTP/1.1\r\n"))));
        assert!(!pass(&v4(6, &tcp(443, &[0x17, 3, 3, 0, 10, 1]))));
        assert!(!pass(&v4(6, &tcp(80, b"HTTP/1.1 200 OK\r\n"))));
        assert!(!pass(&v6(6, &tcp(443, b""))));
    }

    #[test]
    fn pcap_counter_wrap_is_carried() {
        let mut b = StatBase::default();
        b.update(pcap::Stat {
            received: u32::MAX - 1,
            dropped: 0,
            if_dropped: 0,
        });
        b.update(pcap::Stat {
            received: 3,
            dropped: 1,
            if_dropped: 0,
        });
        assert_eq!(b.received, u64::from(u32::MAX) + 4);
        assert_eq!(b.dropped, 1);
    }
}
