//! Pure parsers for the name a client puts in its first bytes: the TLS
//! ClientHello SNI and the HTTP/1.x `Host:` header. No I/O, no allocation
//! but the returned name, never panics; only what one segment holds is read.

/// Longest host name accepted.
const MAX_HOST: usize = 253;

/// A host name as users should see it: lower case, LDH plus `_` and `.`,
/// not an IP literal. `None` for anything else.
pub fn clean_host(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > MAX_HOST {
        return None;
    }
    if !raw
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return None;
    }
    let s = std::str::from_utf8(raw).ok()?.to_ascii_lowercase();
    if s.parse::<std::net::IpAddr>().is_ok() || s.split('.').any(str::is_empty) {
        return None;
    }
    Some(s)
}

/// The server name of a TLS ClientHello at the start of a TCP payload.
pub fn tls_sni(p: &[u8]) -> Option<String> {
    // Record header: handshake (0x16), version 3.x, length.
    if *p.first()? != 0x16 || *p.get(1)? != 3 {
        return None;
    }
    let hs = p.get(5..)?;
    // Handshake header: client_hello (1), 24-bit length; then the body.
    if *hs.first()? != 1 {
        return None;
    }
    let mut at = 4 + 2 + 32; // header, client_version, random
    let sid = usize::from(*hs.get(at)?);
    at += 1 + sid;
    let suites = usize::from(u16::from_be_bytes([*hs.get(at)?, *hs.get(at + 1)?]));
    at += 2 + suites;
    let comp = usize::from(*hs.get(at)?);
    at += 1 + comp;
    let ext_len = usize::from(u16::from_be_bytes([*hs.get(at)?, *hs.get(at + 1)?]));
    at += 2;
    // Extensions may run past what was captured; read what is there.
    let end = hs.len().min(at + ext_len);
    while at + 4 <= end {
        let ty = u16::from_be_bytes([hs[at], hs[at + 1]]);
        let len = usize::from(u16::from_be_bytes([hs[at + 2], hs[at + 3]]));
        let body = hs.get(at + 4..at + 4 + len)?;
        if ty == 0 {
            return sni_list(body);
        }
        at += 4 + len;
    }
    None
}

fn sni_list(b: &[u8]) -> Option<String> {
    let list_len = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
    let list = b.get(2..2 + list_len)?;
    let mut at = 0;
    while at + 3 <= list.len() {
        let kind = list[at];
        let len = usize::from(u16::from_be_bytes([list[at + 1], list[at + 2]]));
        let name = list.get(at + 3..at + 3 + len)?;
        if kind == 0 {
            return clean_host(name);
        }
        at += 3 + len;
    }
    None
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// The `Host:` header of an HTTP/1.x request at the start of a TCP payload
/// (port and IP literals dropped).
pub fn http_host(p: &[u8]) -> Option<String> {
    if !METHODS.iter().any(|m| p.starts_with(m)) {
        return None;
    }
    let mut lines = p.split(|&b| b == b'\n');
    let request = lines.next()?;
    if !request.windows(5).any(|w| w == b"HTTP/") {
        return None;
    }
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = line.split_at(colon);
        if !key.eq_ignore_ascii_case(b"host") {
            continue;
        }
        let value = value.get(1..)?.trim_ascii();
        if value.first() == Some(&b'[') {
            return None; // an IPv6 literal
        }
        let host = match value.iter().rposition(|&b| b == b':') {
            Some(i) => value.get(..i)?,
            None => value,
        };
        return clean_host(host);
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use netmon_testkit::tls::build_client_hello;
    use proptest::prelude::*;

    #[test]
    fn sni_is_read_from_a_client_hello() {
        let ch = build_client_hello("SNI.Example.Test");
        assert_eq!(tls_sni(&ch).as_deref(), Some("sni.example.test"));
    }

    #[test]
    fn sni_cut_short_or_absent_is_none() {
        let ch = build_client_hello("sni.example.test");
        for cut in 0..ch.len() {
            assert_eq!(tls_sni(&ch[..cut]), None, "cut at {cut}");
        }
        let mut not_hello = ch.clone();
        not_hello[5] = 2; // ServerHello
        assert_eq!(tls_sni(&not_hello), None);
    }

    #[test]
    fn sni_with_bad_characters_or_ip_literal_is_none() {
        assert_eq!(tls_sni(&build_client_hello("a b.test")), None);
        assert_eq!(tls_sni(&build_client_hello("10.0.0.1")), None);
    }

    #[test]
    fn http_host_header_drops_the_port() {
        let req = b"GET /x HTTP/1.1\r\nUser-Agent: t\r\nhOsT:  Files.Example.Test:8080 \r\n\r\n";
        assert_eq!(http_host(req).as_deref(), Some("files.example.test"));
        let req = b"POST / HTTP/1.0\r\nHost: a.test\r\n";
        assert_eq!(http_host(req).as_deref(), Some("a.test"));
    }

    #[test]
    fn http_without_host_or_with_literal_or_not_http_is_none() {
        assert_eq!(
            http_host(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\nHost: x.test\r\n"),
            None
        );
        assert_eq!(http_host(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), None);
        assert_eq!(http_host(b"GET / HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n"), None);
        assert_eq!(http_host(b"SSH-2.0-OpenSSH\r\nHost: a.test\r\n"), None);
        assert_eq!(http_host(b"GET / foo\r\nHost: a.test\r\n"), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = tls_sni(&b);
            let _ = http_host(&b);
            let _ = clean_host(&b);
        }

        #[test]
        fn never_panics_on_mutated_client_hellos(
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)
        ) {
            let mut ch = build_client_hello("sni.example.test");
            for (at, v) in flips {
                let n = ch.len();
                ch[at % n] = v;
            }
            let _ = tls_sni(&ch);
        }
    }
}
