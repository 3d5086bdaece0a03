//! Pure netlink framing shared by every protocol: the `nlmsghdr` layout,
//! walking the messages of a datagram and the attributes of a payload, with
//! bounds checks. No I/O, no logging, no panics on malformed input.

use std::mem::{offset_of, size_of};

/// `struct nlmsghdr` (include/uapi/linux/netlink.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NlMsgHdr {
    pub len: u32,
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// Port id of the sender; 0 in requests to the kernel.
    pub pid: u32,
}

/// Size of `struct nlmsghdr`: where the payload starts.
pub const NLMSG_HDRLEN: usize = size_of::<NlMsgHdr>();
const _: () = assert!(NLMSG_HDRLEN == 16);

impl NlMsgHdr {
    /// A request header for a message of `payload_len` bytes after the header.
    pub fn request(ty: u16, flags: u16, seq: u32, payload_len: usize) -> NlMsgHdr {
        NlMsgHdr {
            len: u32::try_from(NLMSG_HDRLEN + payload_len).unwrap_or(u32::MAX),
            ty,
            flags,
            seq,
            pid: 0,
        }
    }

    /// Writes the header into the first `NLMSG_HDRLEN` bytes of `out`
    /// (which the callers' message layouts always have).
    pub fn write(&self, out: &mut [u8]) {
        put(out, offset_of!(NlMsgHdr, len), &self.len.to_ne_bytes());
        put(out, offset_of!(NlMsgHdr, ty), &self.ty.to_ne_bytes());
        put(out, offset_of!(NlMsgHdr, flags), &self.flags.to_ne_bytes());
        put(out, offset_of!(NlMsgHdr, seq), &self.seq.to_ne_bytes());
        put(out, offset_of!(NlMsgHdr, pid), &self.pid.to_ne_bytes());
    }

    /// Reads a header from the start of `b`; `None` when `b` is shorter.
    pub fn read(b: &[u8]) -> Option<NlMsgHdr> {
        Some(NlMsgHdr {
            len: u32_at(b, offset_of!(NlMsgHdr, len))?,
            ty: u16_at(b, offset_of!(NlMsgHdr, ty))?,
            flags: u16_at(b, offset_of!(NlMsgHdr, flags))?,
            seq: u32_at(b, offset_of!(NlMsgHdr, seq))?,
            pid: u32_at(b, offset_of!(NlMsgHdr, pid))?,
        })
    }
}

// Stable kernel ABI values (include/uapi/linux/netlink.h).
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_MULTI: u16 = 0x02;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_DUMP: u16 = 0x100 | 0x200; // NLM_F_ROOT | NLM_F_MATCH

/// `struct nlattr` / `struct rtattr`: both are `{ u16 len; u16 type; }`.
#[repr(C)]
struct NlAttr {
    len: u16,
    ty: u16,
}
/// Size of an attribute header.
pub const NLA_HDRLEN: usize = size_of::<NlAttr>();
/// Top bits of an attribute type are the NESTED / NET_BYTEORDER flags.
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// Netlink messages and attributes start on 4-byte boundaries.
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Why a buffer could not be read as netlink.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("netlink message header truncated ({len} bytes left)")]
    ShortHeader { len: usize },
    #[error("netlink message length {claimed} is invalid ({available} bytes available)")]
    BadLength { claimed: usize, available: usize },
    #[error("{what} payload too short ({len} bytes)")]
    ShortPayload { what: &'static str, len: usize },
}

pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Copies `bytes` to `out[at..]`; the callers' layouts are sized so it fits.
pub fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// One netlink message: its header fields and payload (after the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlMsg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Walks the netlink messages of one datagram. Stops after the first error.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf }
}

pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NlMsg<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let buf = self.rest;
        let parsed = (|| {
            let hdr = NlMsgHdr::read(buf).ok_or(ParseError::ShortHeader { len: buf.len() })?;
            let len = hdr.len as usize;
            if len < NLMSG_HDRLEN || len > buf.len() {
                return Err(ParseError::BadLength {
                    claimed: len,
                    available: buf.len(),
                });
            }
            let msg = NlMsg {
                ty: hdr.ty,
                flags: hdr.flags,
                seq: hdr.seq,
                payload: &buf[NLMSG_HDRLEN..len],
            };
            Ok((msg, buf.get(align4(len)..).unwrap_or(&[])))
        })();
        match parsed {
            Ok((msg, rest)) => {
                self.rest = rest;
                Some(Ok(msg))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Walks attributes `(type without flag bits, payload)`. A truncated trailing
/// attribute ends the walk (the kernel never sends one; junk is ignored).
pub fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(rest, offset_of!(NlAttr, len))?);
        let ty = u16_at(rest, offset_of!(NlAttr, ty))? & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > rest.len() {
            return None;
        }
        let value = &rest[NLA_HDRLEN..len];
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some((ty, value))
    })
}

/// Parses an `NLMSG_ERROR` payload (`struct nlmsgerr`, whose first field is
/// the negative errno): `0` is an ACK, otherwise a positive errno.
pub fn parse_error(payload: &[u8]) -> Result<i32, ParseError> {
    let code = u32_at(payload, 0).ok_or(ParseError::ShortPayload {
        what: "nlmsgerr",
        len: payload.len(),
    })? as i32;
    Ok(code.saturating_neg())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    /// Appends one attribute (padded to 4 bytes).
    fn attr(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
        let len = NLA_HDRLEN + value.len();
        buf.extend_from_slice(&(len as u16).to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(value);
        buf.resize(align4(buf.len()), 0);
    }

    /// Wraps a payload in a netlink header (padded to 4 bytes).
    fn msg(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, payload: &[u8]) {
        let start = buf.len();
        buf.resize(start + NLMSG_HDRLEN, 0);
        NlMsgHdr::request(ty, flags, seq, payload.len()).write(&mut buf[start..]);
        buf.extend_from_slice(payload);
        buf.resize(align4(buf.len()), 0);
    }

    #[test]
    fn bad_lengths_end_the_walk_with_an_error() {
        let mut buf = Vec::new();
        msg(&mut buf, 16, 0, 1, &[7; 20]);
        let good = buf.len();
        buf.extend_from_slice(&1000u32.to_ne_bytes());
        buf.extend_from_slice(&[0; 12]);
        let r: Vec<_> = messages(&buf).collect();
        assert_eq!(r.len(), 2);
        assert!(r[0].is_ok());
        assert_eq!(
            r[1],
            Err(ParseError::BadLength {
                claimed: 1000,
                available: buf.len() - good
            })
        );
        assert_eq!(
            messages(&[1, 2, 3]).next(),
            Some(Err(ParseError::ShortHeader { len: 3 }))
        );
        let mut tiny = 8u32.to_ne_bytes().to_vec();
        tiny.resize(16, 0);
        assert!(matches!(
            messages(&tiny).next(),
            Some(Err(ParseError::BadLength { claimed: 8, .. }))
        ));
    }

    #[test]
    fn error_message_carries_a_positive_errno_and_zero_is_ack() {
        assert_eq!(parse_error(&(-105i32).to_ne_bytes()).unwrap(), 105);
        assert_eq!(parse_error(&0i32.to_ne_bytes()).unwrap(), 0);
        assert!(parse_error(&[0; 2]).is_err());
    }

    #[test]
    fn attribute_walk_stops_at_truncated_attribute() {
        let mut b = Vec::new();
        attr(&mut b, 3, b"ab\0");
        b.extend_from_slice(&[200, 0, 3, 0, 1]);
        let attrs: Vec<_> = attributes(&b).collect();
        assert_eq!(attrs, vec![(3, &b"ab\0"[..])]);
        assert_eq!(attributes(&[4, 0, 1]).count(), 0);
        assert_eq!(attributes(&[2, 0, 1, 0]).count(), 0);
    }

    #[test]
    fn header_round_trips_through_its_layout() {
        let h = NlMsgHdr::request(20, NLM_F_REQUEST | NLM_F_DUMP, 7, 56);
        let mut b = [0u8; NLMSG_HDRLEN];
        h.write(&mut b);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 20);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        assert_eq!(NlMsgHdr::read(&b), Some(h));
        assert_eq!(NlMsgHdr::read(&b[..15]), None);
    }
}
