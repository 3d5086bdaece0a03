//! Basic mode's view of TCP: one sock_diag dump per call plus the kernel's destroy
//! notifications, each socket joined to its owner through the fd index. Cumulative
//! counters only: turning them into deltas is the caller's business.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::warn;

use super::fdindex::FdIndex;
use super::procinfo::{InfoReader, ProcDir};
use super::sockdiag::{DestroyListener, DumpChunk, SockDiag, TcpSock};
use super::ProcessInfo;

/// One TCP socket as seen by one sample.
#[derive(Clone, Debug)]
pub struct TcpSample {
    /// The kernel's socket cookie: stable for the socket's life.
    pub cookie: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Payload bytes sent and acknowledged (`tcpi_bytes_acked`).
    pub bytes_acked: u64,
    /// Payload bytes received (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// The process holding it, or the one that held it when it was last seen open.
    pub owner: Option<Arc<ProcessInfo>>,
    /// Final counters from a destroy notification: the socket is gone.
    pub closed: bool,
}

/// Owns the sock_diag sockets, the fd index and the owner cache of basic mode.
pub struct TcpSampler {
    diag: SockDiag,
    destroy: Option<DestroyListener>,
    index: FdIndex,
    info: InfoReader,
    proc_root: PathBuf,
    /// Owner per socket cookie, learned while the socket had an inode.
    owners: HashMap<u64, Arc<ProcessInfo>>,
    /// Processes by pid (checked against the start time before reuse).
    procs: HashMap<u32, Arc<ProcessInfo>>,
    /// Inodes no process was found for after a full rescan (not rescanned again).
    unowned: HashSet<u64>,
    chunk: DumpChunk,
    /// Dump messages that could not be parsed, and lost destroy notifications.
    pub malformed: u64,
    /// Whether the destroy notification subscription was accepted.
    pub destroy_events: bool,
}

impl TcpSampler {
    pub fn open() -> io::Result<TcpSampler> {
        let diag = SockDiag::open()?;
        let destroy = match DestroyListener::open() {
            Ok(d) => Some(d),
            Err(error) => {
                warn!(%error, "no TCP destroy notifications: bytes of sockets closed between two ticks are lost");
                None
            }
        };
        let proc_root = PathBuf::from("/proc");
        let mut index = FdIndex::new(&proc_root);
        index.full_scan();
        Ok(TcpSampler {
            diag,
            destroy_events: destroy.is_some(),
            destroy,
            index,
            info: InfoReader::new(&proc_root),
            proc_root,
            owners: HashMap::new(),
            procs: HashMap::new(),
            unowned: HashSet::new(),
            chunk: DumpChunk::default(),
            malformed: 0,
        })
    }

    /// Every open TCP socket (both families) and every socket destroyed since the last
    /// call, open ones first.
    pub fn sample(&mut self) -> io::Result<Vec<TcpSample>> {
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.socks.clear();
        chunk.malformed = 0;
        chunk.done = false;
        let r = self
            .diag
            .dump_tcp(libc::AF_INET as u8, &mut chunk)
            .and_then(|()| self.diag.dump_tcp(libc::AF_INET6 as u8, &mut chunk));
        if let Err(e) = r {
            self.chunk = chunk;
            return Err(e);
        }
        let open_count = chunk.socks.len();
        if let Some(d) = self.destroy.as_mut() {
            let gone = d.drain();
            chunk.malformed += gone.malformed;
            chunk.socks.extend(gone.socks);
        }
        self.malformed += chunk.malformed;

        // Inodes of open sockets whose owner is unknown and not given up on.
        let misses = chunk.socks[..open_count].iter().any(|s| {
            s.diag.inode != 0
                && !self.owners.contains_key(&s.cookie)
                && self.index.get(s.diag.inode).is_none()
                && !self.unowned.contains(&s.diag.inode)
        });
        if misses {
            self.index.full_scan();
        }
        let mut out = Vec::with_capacity(chunk.socks.len());
        let mut live = HashSet::with_capacity(open_count);
        for (i, s) in chunk.socks.iter().enumerate() {
            let closed = i >= open_count;
            let owner = self.owner_of(s);
            if !closed {
                live.insert(s.cookie);
            }
            out.push(TcpSample {
                cookie: s.cookie,
                local: s.diag.local,
                remote: s.diag.remote,
                bytes_acked: s.bytes_acked,
                bytes_received: s.bytes_received,
                owner,
                closed,
            });
        }
        self.owners.retain(|c, _| live.contains(c));
        let inodes: HashSet<u64> = chunk.socks[..open_count]
            .iter()
            .map(|s| s.diag.inode)
            .collect();
        self.unowned.retain(|i| inodes.contains(i));
        self.chunk = chunk;
        Ok(out)
    }

    fn owner_of(&mut self, s: &TcpSock) -> Option<Arc<ProcessInfo>> {
        if let Some(o) = self.owners.get(&s.cookie) {
            return Some(o.clone());
        }
        if s.diag.inode == 0 {
            return None;
        }
        let Some(h) = self.index.get(s.diag.inode) else {
            self.unowned.insert(s.diag.inode);
            return None;
        };
        let info = self.process(h.pid)?;
        self.owners.insert(s.cookie, info.clone());
        Some(info)
    }

    fn process(&mut self, pid: u32) -> Option<Arc<ProcessInfo>> {
        let dir = ProcDir::open(&self.proc_root, pid)?;
        let stat = dir.stat()?;
        if let Some(p) = self.procs.get(&pid) {
            if p.start_time == stat.start_time {
                return Some(p.clone());
            }
        }
        let info = Arc::new(self.info.read_rest(pid, &dir, stat));
        if self.procs.len() > 8192 {
            self.procs.clear();
        }
        self.procs.insert(pid, info.clone());
        Some(info)
    }
}
