//! Accepting API connections: the peer's credentials taken once, the
//! connection caps applied, the `:authority` layer put on, and accept errors
//! (EMFILE and friends) waited out instead of spun on.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::authority::AuthorityShim;
use super::limits::{Caps, Limits, Slot, Slots, REFUSED_PER_UID, REFUSED_TOTAL, ROOT_RESERVE};
use super::peer::Peer;

/// What every request on a connection knows about it (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: Arc<Peer>,
    /// Set when the connection is over a cap: every call gets this reason.
    pub refused: Option<Arc<str>>,
}

/// An accepted API connection; its slot is released when hyper drops it.
pub struct Conn {
    io: AuthorityShim<UnixStream>,
    info: ConnInfo,
    _slot: Slot,
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Connection counters shared by the accept loop and `status`.
pub struct Gate {
    served: Arc<Slots>,
    refused: Arc<Slots>,
    /// Connections closed at once because even the refusal slots were full.
    pub dropped: AtomicU64,
}

impl Gate {
    pub fn new(limits: &Limits) -> Gate {
        Gate {
            served: Slots::new("connections", limits.connections, ROOT_RESERVE),
            refused: Slots::new(
                "refused connections",
                Caps {
                    per_uid: REFUSED_PER_UID,
                    total: REFUSED_TOTAL,
                },
                0,
            ),
            dropped: AtomicU64::new(0),
        }
    }

    /// A served connection, or a refused one that still gets told why, or
    /// `None`: close it.
    fn admit(&self, stream: UnixStream) -> Option<Conn> {
        let peer = match Peer::of_socket(&stream) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                debug!(%e, "API connection without peer credentials closed");
                return None;
            }
        };
        let uid = peer.uid;
        let (slot, refused) = match self.served.try_take(uid) {
            Ok(slot) => (slot, None),
            Err(why) => match self.refused.try_take(uid) {
                Ok(slot) => (slot, Some(Arc::<str>::from(why.to_string()))),
                Err(_) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            },
        };
        if let Some(why) = &refused {
            debug!(uid, pid = peer.pid, reason = %why, "API connection over its cap");
        }
        Some(Conn {
            io: AuthorityShim::new(stream),
            info: ConnInfo { peer, refused },
            _slot: slot,
        })
    }
}

/// Whether an accept error means "out of a resource, wait" rather than
/// "this one connection failed".
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accepts on `listener` until `shutdown`; the stream tonic serves.
pub fn incoming(
    listener: UnixListener,
    gate: Arc<Gate>,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut last_warn: Option<tokio::time::Instant> = None;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, _)) => {
                    if let Some(conn) = gate.admit(stream) {
                        if tx.send(Ok(conn)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) if is_exhaustion(&e) => {
                    // The pending connection stays queued; retrying at once
                    // would spin a core until a descriptor frees up.
                    if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        warn!(error = %e, "API accept failed for lack of resources; retrying every 100 ms");
                        last_warn = Some(tokio::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => debug!(error = %e, "API accept failed"),
            }
        }
    });
    ReceiverStream::new(rx)
}
