//! Lets the gRPC ecosystem's own clients in: gRPC C core (Python, C++, Ruby,
//! PHP) since 1.57, grpc-java and grpc-swift send the percent-encoded socket
//! path (`tmp%2Fx%2Fnetmond.sock`) as `:authority` on a Unix socket, which
//! the h2 crate under tonic refuses with a bare RST_STREAM(PROTOCOL_ERROR).
//! This layer sits on the read half of each API connection, re-frames the
//! client's HTTP/2 HEADERS and replaces an `:authority` that `http` cannot
//! parse with `localhost` before h2 sees it. It owns nothing else: every
//! other frame and the whole server-to-client direction pass through as is.
//!
//! Why a re-encoding layer and not a byte patch or a fork of h2:
//! - `:authority` travels HPACK-compressed, often as a reference into the
//!   connection's dynamic table, so rewriting bytes without decoding HPACK
//!   is unsound. Here every header block is decoded with the client's table
//!   and re-emitted as plain literals that never touch h2's dynamic table,
//!   so the two HPACK states cannot drift apart.
//! - A patched copy of h2 in the workspace would freeze a root daemon's
//!   HTTP/2 stack at one release (h2 shipped a dozen protocol and DoS fixes
//!   in 2026 alone) and h2 0.4.20, the newest release, still rejects such an
//!   authority. This layer keeps h2 upstream: h2 still validates every
//!   header, limit and frame after us.
//! - Requests are small and rare, so decoding them costs nothing that
//!   matters (the decoder in `hpack` does bounded work per byte); replies,
//!   the heavy direction, are never touched.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an unparsable `:authority` becomes; what grpc-go sends on a Unix
/// socket and what `grpc.default_authority` is usually set to by hand.
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";
/// Largest compressed header block accepted, all CONTINUATIONs included.
/// A gRPC request's headers are a few hundred bytes.
pub const MAX_HEADER_BLOCK: usize = 16 * 1024;
/// Largest decoded header list (RFC 7541 size: name + value + 32 each).
/// The server advertises the same figure, so h2 refuses anything larger.
pub const MAX_HEADER_LIST: usize = 16 * 1024;
/// Dynamic table size the server allows the client's encoder: h2's default
/// SETTINGS_HEADER_TABLE_SIZE, which netmond never changes.
const HPACK_TABLE_SIZE: usize = 4096;
/// Frames this layer emits stay within the smallest SETTINGS_MAX_FRAME_SIZE
/// any HTTP/2 peer must accept.
const MAX_FRAME: usize = 16 * 1024;

const PREFACE_LEN: usize = 24;
const FRAME_HEAD: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_PUSH_PROMISE: u8 = 0x5;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// A client broke HTTP/2 framing in a way this layer cannot forward; the
/// connection is closed (h2 would have closed it too).
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("header block of stream {stream} is larger than {MAX_HEADER_BLOCK} bytes")]
    BlockTooLarge { stream: u32 },
    #[error("decoded headers of stream {stream} exceed {MAX_HEADER_LIST} bytes")]
    ListTooLarge { stream: u32 },
    #[error("frame of type {kind:#x} inside the header block of stream {stream}")]
    Interleaved { kind: u8, stream: u32 },
    #[error("bad padding or priority in HEADERS of stream {stream}")]
    BadHeadersFrame { stream: u32 },
    #[error("PUSH_PROMISE from a client")]
    PushPromise,
    #[error("cannot decode the header block of stream {stream}: {reason}")]
    Hpack { stream: u32, reason: String },
}

enum State {
    /// The client connection preface, passed through.
    Preface { left: usize },
    /// Waiting for a 9-byte frame header.
    Head,
    /// Passing `left` payload bytes of a frame through unchanged.
    Forward { left: usize },
    /// Collecting the payload of a HEADERS or CONTINUATION frame.
    Payload {
        len: usize,
        kind: u8,
        flags: u8,
        stream: u32,
    },
}

/// A HEADERS frame whose block is still being collected.
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
}

/// The pure part: client-to-server HTTP/2 bytes in, the same bytes out with
/// every header block re-encoded and a bad `:authority` replaced.
pub struct Rewriter {
    decoder: super::hpack::Decoder,
    state: State,
    /// Input received but not yet consumed (a partial frame head/payload).
    pending: Vec<u8>,
    open: Option<OpenBlock>,
    block: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    encoded: Vec<u8>,
    /// Authorities replaced on this connection (logged once).
    pub rewritten: u64,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            decoder: super::hpack::Decoder::new(HPACK_TABLE_SIZE),
            state: State::Preface { left: PREFACE_LEN },
            pending: Vec::new(),
            open: None,
            block: Vec::new(),
            headers: Vec::new(),
            encoded: Vec::new(),
            rewritten: 0,
        }
    }
}

impl Rewriter {
    /// Consumes `input` and appends what h2 should read to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.pending.extend_from_slice(input);
        let mut pos = 0;
        let result = self.run(&mut pos, out);
        self.pending.drain(..pos);
        result
    }

    fn run(&mut self, pos: &mut usize, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        loop {
            let avail = self.pending.len() - *pos;
            match self.state {
                State::Preface { left } | State::Forward { left } => {
                    let n = left.min(avail);
                    out.extend_from_slice(&self.pending[*pos..*pos + n]);
                    *pos += n;
                    if n == left {
                        self.state = State::Head;
                    } else {
                        self.state = match self.state {
                            State::Preface { .. } => State::Preface { left: left - n },
                            _ => State::Forward { left: left - n },
                        };
                        return Ok(());
                    }
                }
                State::Head => {
                    if avail < FRAME_HEAD {
                        return Ok(());
                    }
                    let h = &self.pending[*pos..*pos + FRAME_HEAD];
                    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    let (kind, flags) = (h[3], h[4]);
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    let in_block = self.open.as_ref().map(|b| b.stream);
                    match (kind, in_block) {
                        (TYPE_PUSH_PROMISE, _) => return Err(RewriteError::PushPromise),
                        (TYPE_HEADERS, None) | (TYPE_CONTINUATION, Some(_)) => {
                            if in_block.is_some_and(|s| s != stream) {
                                return Err(RewriteError::Interleaved { kind, stream });
                            }
                            // A HEADERS payload may add padding (≤ 256) and priority (5).
                            let room = match kind {
                                TYPE_HEADERS => MAX_HEADER_BLOCK + 261,
                                _ => MAX_HEADER_BLOCK.saturating_sub(self.block.len()),
                            };
                            if len > room {
                                return Err(RewriteError::BlockTooLarge { stream });
                            }
                            *pos += FRAME_HEAD;
                            self.state = State::Payload {
                                len,
                                kind,
                                flags,
                                stream,
                            };
                        }
                        (_, Some(open)) => {
                            return Err(RewriteError::Interleaved { kind, stream: open })
                        }
                        // Everything else, a stray CONTINUATION included, is
                        // h2's to judge.
                        (_, None) => {
                            out.extend_from_slice(h);
                            *pos += FRAME_HEAD;
                            self.state = State::Forward { left: len };
                        }
                    }
                }
                State::Payload {
                    len,
                    kind,
                    flags,
                    stream,
                } => {
                    if avail < len {
                        return Ok(());
                    }
                    let start = *pos;
                    *pos += len;
                    self.state = State::Head;
                    if kind == TYPE_HEADERS {
                        let payload = &self.pending[start..start + len];
                        let (fragment, priority) = split_headers_payload(payload, flags)
                            .ok_or(RewriteError::BadHeadersFrame { stream })?;
                        self.block.clear();
                        self.block.extend_from_slice(fragment);
                        self.open = Some(OpenBlock {
                            stream,
                            end_stream: flags & FLAG_END_STREAM != 0,
                            priority,
                        });
                    } else {
                        self.block
                            .extend_from_slice(&self.pending[start..start + len]);
                    }
                    if self.block.len() > MAX_HEADER_BLOCK {
                        return Err(RewriteError::BlockTooLarge { stream });
                    }
                    if flags & FLAG_END_HEADERS != 0 {
                        self.finish_block(out)?;
                    }
                }
            }
        }
    }

    /// Decodes the collected block, fixes `:authority`, emits HEADERS (and
    /// CONTINUATION frames if the literals outgrow one frame).
    fn finish_block(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let stream = open.stream;
        self.decoder
            .decode(&self.block, MAX_HEADER_LIST, &mut self.headers)
            .map_err(|e| match e {
                super::hpack::HpackError::ListTooLarge(_) => RewriteError::ListTooLarge { stream },
                e => RewriteError::Hpack {
                    stream,
                    reason: e.to_string(),
                },
            })?;
        self.encoded.clear();
        for (name, value) in &self.headers {
            let value: &[u8] = if name == b":authority" && !is_valid_authority(value) {
                self.rewritten += 1;
                REPLACEMENT_AUTHORITY
            } else {
                value
            };
            encode_literal(&mut self.encoded, name, value);
        }
        self.block.clear();
        emit_headers(out, &open, &self.encoded);
        Ok(())
    }
}

/// Whether h2 would accept `value` as `:authority` (it parses it the same way).
fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// The header block fragment and the priority fields of a HEADERS payload,
/// padding removed; `None` when the padding or priority does not fit.
fn split_headers_payload(payload: &[u8], flags: u8) -> Option<(&[u8], Option<[u8; 5]>)> {
    let mut p = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&n, rest) = p.split_first()?;
        pad = usize::from(n);
        p = rest;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let fields: [u8; 5] = p.get(..5)?.try_into().ok()?;
        priority = Some(fields);
        p = &p[5..];
    }
    let end = p.len().checked_sub(pad)?;
    Some((&p[..end], priority))
}

/// RFC 7541 §6.2.2 "literal header field without indexing, new name", no
/// Huffman: h2's dynamic table is never used, so it cannot drift from ours.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    encode_int(out, name.len(), 7, 0);
    out.extend_from_slice(name);
    encode_int(out, value.len(), 7, 0);
    out.extend_from_slice(value);
}

/// RFC 7541 §5.1 integer with an N-bit prefix.
fn encode_int(out: &mut Vec<u8>, mut v: usize, prefix_bits: u8, first: u8) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn push_frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

fn emit_headers(out: &mut Vec<u8>, open: &OpenBlock, block: &[u8]) {
    let prio_len = if open.priority.is_some() { 5 } else { 0 };
    let first_len = block.len().min(MAX_FRAME - prio_len);
    let (first, mut rest) = block.split_at(first_len);
    let mut flags = 0;
    if open.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if open.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    push_frame_head(
        out,
        prio_len + first.len(),
        TYPE_HEADERS,
        flags,
        open.stream,
    );
    if let Some(p) = open.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME);
        let (chunk, tail) = rest.split_at(n);
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        push_frame_head(out, n, TYPE_CONTINUATION, flags, open.stream);
        out.extend_from_slice(chunk);
        rest = tail;
    }
}

/// An API connection whose client-to-server bytes go through a [`Rewriter`].
pub struct AuthorityShim<S> {
    inner: S,
    rewriter: Rewriter,
    out: Vec<u8>,
    out_pos: usize,
    read_buf: Box<[u8]>,
    logged: bool,
}

impl<S> AuthorityShim<S> {
    pub fn new(inner: S) -> Self {
        AuthorityShim {
            inner,
            rewriter: Rewriter::default(),
            out: Vec::new(),
            out_pos: 0,
            read_buf: vec![0; 4096].into_boxed_slice(),
            logged: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityShim<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.read_buf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            if let Err(e) = this.rewriter.feed(rb.filled(), &mut this.out) {
                tracing::debug!(error = %e, "API connection closed: malformed HTTP/2 from the client");
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
            if this.rewriter.rewritten > 0 && !this.logged {
                this.logged = true;
                tracing::debug!("client sent an :authority h2 refuses (a Unix socket path); replaced with 'localhost'");
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityShim<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_frame_head(&mut v, payload.len(), kind, flags, stream);
        v.extend_from_slice(payload);
        v
    }

    /// Splits the rewritten stream into frames: (type, flags, stream, payload).
    fn frames(mut b: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert_eq!(&b[..24], PREFACE);
        b = &b[24..];
        let mut v = Vec::new();
        while !b.is_empty() {
            let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
            let s = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
            v.push((b[3], b[4], s, b[9..9 + len].to_vec()));
            b = &b[9 + len..];
        }
        v
    }

    fn grpc_headers(authority: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (b":path", b"/netmon.v1.Netmon/GetStatus".to_vec()),
            (b":authority", authority.to_vec()),
            (b"content-type", b"application/grpc".to_vec()),
            (b"te", b"trailers".to_vec()),
        ]
    }

    /// A client connection: two requests whose headers are HPACK-encoded by
    /// a real encoder with indexing, so the second one refers to the first's
    /// dynamic table entries (as the C core's encoder does).
    fn client_bytes(authority: &[u8]) -> Vec<u8> {
        let mut enc = loona_hpack::Encoder::new();
        let mut b = PREFACE.to_vec();
        b.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        for stream in [1u32, 3] {
            let h = grpc_headers(authority);
            let block = enc.encode(h.iter().map(|(n, v)| (*n, v.as_slice())));
            b.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, stream, &block));
            b.extend(frame(0x0, FLAG_END_STREAM, stream, &[0, 0, 0, 0, 0]));
        }
        b
    }

    fn decode_all(fr: &[(u8, u8, u32, Vec<u8>)]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        // h2's side: a fresh decoder that must never need a dynamic table.
        let mut dec = loona_hpack::Decoder::new();
        dec.set_max_allowed_table_size(0);
        dec.set_max_table_size(0);
        fr.iter()
            .filter(|f| f.0 == TYPE_HEADERS)
            .map(|f| dec.decode(&f.3).unwrap())
            .collect()
    }

    #[test]
    fn percent_encoded_socket_path_becomes_localhost_in_every_request() {
        let input = client_bytes(b"tmp%2Fnm%2Fnetmond.sock");
        let mut rw = Rewriter::default();
        let mut out = Vec::new();
        rw.feed(&input, &mut out).unwrap();
        let fr = frames(&out);
        let blocks = decode_all(&fr);
        assert_eq!(blocks.len(), 2);
        for b in &blocks {
            let auth = b.iter().find(|(n, _)| n == b":authority").unwrap();
            assert_eq!(auth.1, b"localhost");
            assert!(b
                .iter()
                .any(|(n, v)| n == b":path" && v == b"/netmon.v1.Netmon/GetStatus"));
            assert_eq!(b.len(), 6);
        }
        assert_eq!(rw.rewritten, 2);
        // DATA frames and SETTINGS pass through byte for byte.
        let data: Vec<_> = fr.iter().filter(|f| f.0 == 0).collect();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0].1, FLAG_END_STREAM);
        assert_eq!(data[0].3, vec![0, 0, 0, 0, 0]);
    }

    #[test]
    fn valid_authority_is_kept_and_byte_at_a_time_input_gives_the_same_output() {
        let input = client_bytes(b"localhost:50051");
        let mut whole = Vec::new();
        Rewriter::default().feed(&input, &mut whole).unwrap();
        let mut rw = Rewriter::default();
        let mut split = Vec::new();
        for b in &input {
            rw.feed(std::slice::from_ref(b), &mut split).unwrap();
        }
        assert_eq!(whole, split);
        for b in decode_all(&frames(&whole)) {
            assert!(b
                .iter()
                .any(|(n, v)| n == b":authority" && v == b"localhost:50051"));
        }
        assert_eq!(rw.rewritten, 0);
    }

    #[test]
    fn padding_priority_and_continuation_are_reassembled() {
        let mut enc = loona_hpack::Encoder::new();
        let h = grpc_headers(b"a%2Fb");
        let block = enc.encode(h.iter().map(|(n, v)| (*n, v.as_slice())));
        let (a, b) = block.split_at(block.len() / 2);
        let mut payload = vec![3u8]; // pad length
        payload.extend([0x80, 0, 0, 0, 7]); // exclusive dependency, weight
        payload.extend(a);
        payload.extend([0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
            5,
            &payload,
        ));
        input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 5, b));
        let mut out = Vec::new();
        Rewriter::default().feed(&input, &mut out).unwrap();
        let fr = frames(&out);
        assert_eq!(fr.len(), 1);
        let (kind, flags, stream, p) = &fr[0];
        assert_eq!((*kind, *stream), (TYPE_HEADERS, 5));
        assert_eq!(
            *flags,
            FLAG_PRIORITY | FLAG_END_STREAM | FLAG_END_HEADERS,
            "padding dropped, the rest kept"
        );
        assert_eq!(&p[..5], &[0x80, 0, 0, 0, 7]);
        let mut dec = loona_hpack::Decoder::new();
        let hs = dec.decode(&p[5..]).unwrap();
        assert!(hs
            .iter()
            .any(|(n, v)| n == b":authority" && v == b"localhost"));
    }

    #[test]
    fn large_block_is_split_into_continuations_within_the_frame_limit() {
        // The list limit keeps real blocks within one frame; this guards the
        // split for the day either limit changes.
        let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let open = OpenBlock {
            stream: 7,
            end_stream: true,
            priority: Some([0, 0, 0, 1, 15]),
        };
        let mut out = PREFACE.to_vec();
        emit_headers(&mut out, &open, &block);
        let fr = frames(&out);
        assert_eq!(fr.len(), 3);
        assert!(fr.iter().all(|f| f.3.len() <= MAX_FRAME && f.2 == 7));
        assert_eq!(fr[0].0, TYPE_HEADERS);
        assert_eq!(fr[0].1, FLAG_END_STREAM | FLAG_PRIORITY);
        assert!(fr[1..].iter().all(|f| f.0 == TYPE_CONTINUATION));
        assert_eq!(fr[1].1, 0);
        assert_eq!(fr[2].1, FLAG_END_HEADERS);
        let joined: Vec<u8> = fr.iter().flat_map(|f| f.3.clone()).skip(5).collect();
        assert_eq!(joined, block);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            frame(TYPE_PUSH_PROMISE, FLAG_END_HEADERS, 1, &[0, 0, 0, 2]),
            // A DATA frame inside an open header block.
            [frame(TYPE_HEADERS, 0, 1, &[0x82]), frame(0, 0, 1, &[])].concat(),
            // Padding longer than the payload.
            frame(TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &[9, 0x82]),
            // Index beyond both tables.
            frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0xff, 0x7f]),
            // A dynamic table larger than the server allows.
            frame(
                TYPE_HEADERS,
                FLAG_END_HEADERS,
                1,
                &[0x3f, 0xe1, 0xff, 0x03, 0x82],
            ),
            // Endless CONTINUATIONs.
            std::iter::once(frame(TYPE_HEADERS, 0, 1, &[0; 16000]))
                .chain(
                    std::iter::repeat_with(|| frame(TYPE_CONTINUATION, 0, 1, &[0; 16000])).take(4),
                )
                .flatten()
                .collect(),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let input = [PREFACE, &c].concat();
            let r = Rewriter::default().feed(&input, &mut Vec::new());
            assert!(r.is_err(), "case {i} accepted");
        }
    }

    impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
        for AuthorityShim<S>
    {
        type ConnectInfo = S::ConnectInfo;
        fn connect_info(&self) -> S::ConnectInfo {
            self.inner.connect_info()
        }
    }

    /// What a tonic server answers on stream 1 to a request whose
    /// `:authority` is a percent-encoded socket path, as the C core sends:
    /// the frame type of the first frame on that stream.
    async fn first_reply_frame(through_layer: bool) -> u8 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(netmon_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .unwrap();
        let router = tonic::transport::Server::builder().add_service(reflection);
        tokio::spawn(async move {
            if through_layer {
                let io = tokio_stream::iter([Ok::<_, io::Error>(AuthorityShim::new(server))]);
                router.serve_with_incoming(io).await
            } else {
                let io = tokio_stream::iter([Ok::<_, io::Error>(server)]);
                router.serve_with_incoming(io).await
            }
        });
        let mut block = Vec::new();
        for (n, v) in grpc_headers(b"tmp%2Fnm%2Fnetmond.sock") {
            encode_literal(&mut block, n, &v);
        }
        let mut req = PREFACE.to_vec();
        req.extend(frame(0x4, 0, 0, &[]));
        req.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block));
        req.extend(frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0]));
        client.write_all(&req).await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(10), client.read(&mut chunk))
                    .await
                    .expect("a reply within 10 s")
                    .unwrap();
            assert!(n > 0, "connection closed without a reply");
            buf.extend_from_slice(&chunk[..n]);
            let mut b = &buf[..];
            while b.len() >= 9 {
                let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
                if b.len() < 9 + len {
                    break;
                }
                let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
                if stream == 1 {
                    return b[3];
                }
                b = &b[9 + len..];
            }
        }
    }

    /// Guards the reason this layer exists: when an h2 release accepts such
    /// an authority, the first assertion fails and the layer can go.
    #[tokio::test]
    async fn h2_resets_a_socket_path_authority_and_this_layer_lets_it_through() {
        const RST_STREAM: u8 = 0x3;
        assert_eq!(
            first_reply_frame(false).await,
            RST_STREAM,
            "h2 now accepts a percent-encoded :authority: service::authority may be removed"
        );
        assert_eq!(first_reply_frame(true).await, TYPE_HEADERS);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(|(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16))| {
            let mut rw = Rewriter::default();
            let mut out = Vec::new();
            let _ = rw.feed(PREFACE, &mut out);
            for c in chunks {
                if rw.feed(&c, &mut out).is_err() {
                    break;
                }
            }
        });
    }
}
