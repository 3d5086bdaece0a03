//! HPACK (RFC 7541) decoding for the `:authority` layer: a client's header
//! blocks in, header lists out, with the work bounded by the block's size
//! and the list limit (decoding stops at the limit). Pure: no I/O.
//!
//! Own code rather than a crate: the HPACK crates at hand rebuild a Huffman
//! table for every string, so a 16 KiB block of one-byte strings cost seconds
//! of CPU, and they cannot stop early. The Huffman code is canonical, so the
//! code lengths of Appendix B are all the table this needs.

use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("truncated header block")]
    Truncated,
    #[error("integer too large")]
    Integer,
    #[error("index {0} is in neither table")]
    Index(usize),
    #[error("bad Huffman string")]
    Huffman,
    #[error("dynamic table size {0} above the {1} allowed")]
    TableSize(usize, usize),
    #[error("dynamic table size update after a header field")]
    LateSizeUpdate,
    #[error("header list larger than {0} bytes")]
    ListTooLarge(usize),
}

/// The decoding side of one connection's HPACK context.
pub struct Decoder {
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// RFC 7541 size of `table` (name + value + 32 per entry).
    size: usize,
    max_size: usize,
    /// What SETTINGS_HEADER_TABLE_SIZE allows the client to ask for.
    allowed: usize,
}

impl Decoder {
    pub fn new(allowed: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: allowed,
            allowed,
        }
    }

    /// Decodes one complete header block into `out` (cleared first). Fails
    /// as soon as the list outgrows `max_list` bytes (RFC 7541 sizes).
    pub fn decode(
        &mut self,
        mut b: &[u8],
        max_list: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), HpackError> {
        out.clear();
        let mut list = 0usize;
        while let Some(&first) = b.first() {
            let (name, value) = if first & 0x80 != 0 {
                let (i, rest) = integer(b, 7)?;
                b = rest;
                let (n, v) = self.get(i)?;
                (n.to_vec(), v.to_vec())
            } else if first & 0xe0 == 0x20 {
                if !out.is_empty() {
                    return Err(HpackError::LateSizeUpdate);
                }
                let (size, rest) = integer(b, 5)?;
                b = rest;
                if size > self.allowed {
                    return Err(HpackError::TableSize(size, self.allowed));
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // 01xxxxxx: incremental indexing (6-bit index); 0000xxxx and
                // 0001xxxx: without / never indexed (4-bit index).
                let indexing = first & 0x40 != 0;
                let (i, rest) = integer(b, if indexing { 6 } else { 4 })?;
                b = rest;
                let name = if i == 0 {
                    let (s, rest) = string(b)?;
                    b = rest;
                    s
                } else {
                    self.get(i)?.0.to_vec()
                };
                let (value, rest) = string(b)?;
                b = rest;
                if indexing {
                    self.insert(name.clone(), value.clone());
                }
                (name, value)
            };
            list += name.len() + value.len() + 32;
            if list > max_list {
                return Err(HpackError::ListTooLarge(max_list));
            }
            out.push((name, value));
        }
        Ok(())
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            1..=61 => Ok(STATIC_TABLE[index - 1]),
            _ => self
                .table
                .get(index.wrapping_sub(62))
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .ok_or(HpackError::Index(index)),
        }
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let entry = name.len() + value.len() + 32;
        if entry > self.max_size {
            // RFC 7541 §4.4: an entry larger than the table empties it.
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(entry);
        self.size += entry;
        self.table.push_front((name, value));
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => break,
            }
        }
    }
}

/// RFC 7541 §5.1: an integer with an N-bit prefix; at most 4 continuation
/// bytes (values up to 2^28), plenty for any size this layer accepts.
fn integer(b: &[u8], prefix: u8) -> Result<(usize, &[u8]), HpackError> {
    let (&first, mut rest) = b.split_first().ok_or(HpackError::Truncated)?;
    let max = (1usize << prefix) - 1;
    let mut v = usize::from(first) & max;
    if v < max {
        return Ok((v, rest));
    }
    for shift in [0u32, 7, 14, 21] {
        let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
        rest = tail;
        v += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((v, rest));
        }
    }
    Err(HpackError::Integer)
}

/// RFC 7541 §5.2: a string literal, raw or Huffman-coded.
fn string(b: &[u8]) -> Result<(Vec<u8>, &[u8]), HpackError> {
    let huffman = b.first().is_some_and(|f| f & 0x80 != 0);
    let (len, rest) = integer(b, 7)?;
    if len > rest.len() {
        return Err(HpackError::Truncated);
    }
    let (s, rest) = rest.split_at(len);
    let s = if huffman {
        huffman_decode(s)?
    } else {
        s.to_vec()
    };
    Ok((s, rest))
}

/// Code length of each symbol (256 = EOS), RFC 7541 Appendix B.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// Canonical decoding tables built from [`CODE_LENGTHS`] once.
struct Canonical {
    /// Symbols ordered by (code length, symbol).
    symbols: [u16; 257],
    /// For each length: first code, and the index in `symbols` of its first symbol.
    first_code: [u32; 31],
    first_index: [u16; 31],
    count: [u16; 31],
}

fn canonical() -> &'static Canonical {
    static TABLE: std::sync::OnceLock<Canonical> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut count = [0u16; 31];
        for &l in &CODE_LENGTHS {
            count[usize::from(l)] += 1;
        }
        let mut symbols = [0u16; 257];
        let mut first_code = [0u32; 31];
        let mut first_index = [0u16; 31];
        let (mut code, mut index) = (0u32, 0u16);
        for len in 1..31 {
            code <<= 1;
            first_code[len] = code;
            first_index[len] = index;
            for (sym, &l) in CODE_LENGTHS.iter().enumerate() {
                if usize::from(l) == len {
                    symbols[usize::from(index)] = sym as u16;
                    index += 1;
                    code += 1;
                }
            }
        }
        Canonical {
            symbols,
            first_code,
            first_index,
            count,
        }
    })
}

/// Decodes a Huffman string bit by bit: at most 30 steps per output byte,
/// no allocation beyond the output.
fn huffman_decode(input: &[u8]) -> Result<Vec<u8>, HpackError> {
    let t = canonical();
    let mut out = Vec::with_capacity(input.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in input {
        for bit in (0..8).rev() {
            code = code << 1 | u32::from(byte >> bit & 1);
            len += 1;
            if len > 30 {
                return Err(HpackError::Huffman);
            }
            let offset = code.wrapping_sub(t.first_code[len]);
            if code >= t.first_code[len] && offset < u32::from(t.count[len]) {
                let sym = t.symbols[usize::from(t.first_index[len]) + offset as usize];
                if sym == 256 {
                    return Err(HpackError::Huffman);
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
            }
        }
    }
    // Padding: fewer than 8 bits, all ones (the EOS prefix).
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HpackError::Huffman);
    }
    Ok(out)
}

/// RFC 7541 Appendix A.
static STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(headers: &[(&[u8], &[u8])], enc: &mut loona_hpack::Encoder) -> Vec<u8> {
        enc.encode(headers.iter().copied())
    }

    #[test]
    fn decodes_what_an_independent_encoder_writes_across_blocks() {
        let mut enc = loona_hpack::Encoder::new();
        let mut dec = Decoder::new(4096);
        let mut out = Vec::new();
        let long = vec![b'z'; 300];
        for round in 0..20u32 {
            let path = format!("/netmon.v1.Netmon/Call{}", round % 3);
            let hs: Vec<(&[u8], &[u8])> = vec![
                (b":method", b"POST"),
                (b":path", path.as_bytes()),
                (b":authority", b"tmp%2Fx%2Fnetmond.sock"),
                (
                    b"user-agent",
                    b"grpc-python/1.85.3 grpc-c/51.0.0 (linux; chttp2)",
                ),
                (b"x-long", &long),
            ];
            let block = encode(&hs, &mut enc);
            dec.decode(&block, 1 << 20, &mut out).unwrap();
            let got: Vec<(&[u8], &[u8])> = out.iter().map(|(n, v)| (&n[..], &v[..])).collect();
            assert_eq!(got, hs, "round {round}");
        }
    }

    #[test]
    fn huffman_round_trips_every_byte_and_rejects_bad_padding() {
        // RFC 7541 C.4.1: "www.example.com".
        let coded = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        assert_eq!(huffman_decode(&coded).unwrap(), b"www.example.com");
        let all: Vec<u8> = (0..=255u8).collect();
        let block = loona_hpack::Encoder::new().encode([(&b"x"[..], &all[..])]);
        let mut out = Vec::new();
        Decoder::new(4096)
            .decode(&block, 1 << 20, &mut out)
            .unwrap();
        assert_eq!(out[0].1, all);
        // A zero padding bit, and a full byte of padding.
        assert_eq!(huffman_decode(&[0x00]), Err(HpackError::Huffman));
        assert_eq!(huffman_decode(&[0xf1, 0xff]), Err(HpackError::Huffman));
    }

    #[test]
    fn limits_and_errors() {
        let mut out = Vec::new();
        let mut d = Decoder::new(4096);
        assert_eq!(
            d.decode(&[0xbe], 1024, &mut out),
            Err(HpackError::Index(62))
        );
        assert_eq!(d.decode(&[0x3f, 0xe1, 0x1f], 1024, &mut out), Ok(()));
        assert!(matches!(
            d.decode(&[0x3f, 0xe2, 0x1f], 1024, &mut out),
            Err(HpackError::TableSize(..))
        ));
        assert_eq!(
            d.decode(&[0x82, 0x20], 1024, &mut out),
            Err(HpackError::LateSizeUpdate)
        );
        assert_eq!(
            d.decode(&[0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 1024, &mut out),
            Err(HpackError::Integer)
        );
        assert_eq!(
            d.decode(&[0x00, 0x05, b'a'], 1024, &mut out),
            Err(HpackError::Truncated)
        );
        // The list limit stops decoding at once.
        let many: Vec<u8> = std::iter::repeat_n([0x82u8], 1000).flatten().collect();
        assert_eq!(
            d.decode(&many, 16 * 1024, &mut out),
            Err(HpackError::ListTooLarge(16 * 1024))
        );
    }

    #[test]
    fn dynamic_table_evicts_oldest_and_size_update_shrinks_it() {
        let mut d = Decoder::new(100);
        let mut out = Vec::new();
        // Literal with indexing, new name "a"/"b" (34 bytes each entry).
        let add = |n: u8| vec![0x40, 0x01, n, 0x01, b'v'];
        d.decode(&[add(b'a'), add(b'b'), add(b'c')].concat(), 1024, &mut out)
            .unwrap();
        assert_eq!(d.table.len(), 2, "100 bytes hold two 34-byte entries");
        d.decode(&[0xbe], 1024, &mut out).unwrap();
        assert_eq!(out[0].0, b"c");
        d.decode(&[0x20], 1024, &mut out).unwrap();
        assert_eq!((d.table.len(), d.size), (0, 0));
    }

    #[test]
    fn flood_of_tiny_huffman_strings_is_cheap() {
        let block: Vec<u8> = std::iter::repeat_n([0x01u8, 0x81, 0x1f], 5000)
            .flatten()
            .collect();
        let t = std::time::Instant::now();
        let r = Decoder::new(4096).decode(&block, usize::MAX, &mut Vec::new());
        assert!(r.is_ok(), "{r:?}");
        assert!(
            t.elapsed() < std::time::Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn arbitrary_blocks_never_panic() {
        use proptest::prelude::*;
        proptest!(|(blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8))| {
            let mut d = Decoder::new(4096);
            let mut out = Vec::new();
            for b in blocks {
                let _ = d.decode(&b, 16 * 1024, &mut out);
            }
        });
    }
}
