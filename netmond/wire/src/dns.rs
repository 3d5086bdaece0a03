//! Pure DNS response parser: which addresses answer which asked-for name.
//! No I/O; bounded work on any input (compression loops, huge counts) and
//! never panics. Used for unicast DNS (UDP and TCP) and mDNS responses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest presentation-form name kept (RFC 1035 wire limit is 255).
const MAX_NAME: usize = 253;
/// Compression pointers followed per name before giving up.
const MAX_JUMPS: usize = 16;
/// Resource records read per message; the rest are ignored.
const MAX_RECORDS: usize = 64;
/// CNAME links followed from an address back to the asked-for name.
const MAX_CHAIN: usize = 10;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("message ends early")]
    Truncated,
    #[error("not a successful standard response")]
    NotResponse,
    #[error("bad or looping name compression")]
    BadName,
    #[error("not a standard query with a question")]
    NotQuery,
}

/// What ties an answer to its query: the message id and the first question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    pub id: u16,
    /// Lower case, dotted.
    pub name: String,
    pub qtype: u16,
}

fn first_question(m: &[u8]) -> Result<Question, DnsError> {
    let id = be16(m, 0)?;
    if be16(m, 4)? == 0 {
        return Err(DnsError::NotQuery);
    }
    let (name, next) = read_name(m, 12)?;
    let qtype = be16(m, next)?;
    Ok(Question { id, name, qtype })
}

/// The question of a standard query (QR clear, opcode 0) this host sends.
pub fn query_question(m: &[u8]) -> Result<Question, DnsError> {
    let flags = be16(m, 2)?;
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 {
        return Err(DnsError::NotQuery);
    }
    first_question(m)
}

/// The question a response answers (its flags are checked by `parse_response`).
pub fn response_question(m: &[u8]) -> Result<Question, DnsError> {
    first_question(m)
}

/// The message of a DNS-over-TCP segment: the 2-byte length prefix and the
/// message, all in one segment.
pub fn tcp_message(payload: &[u8]) -> Result<&[u8], DnsError> {
    let len = usize::from(be16(payload, 0)?);
    payload.get(2..2 + len).ok_or(DnsError::Truncated)
}

/// One learned mapping: `addr` was handed out for `name` (the first name of
/// the CNAME chain, i.e. what the process asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub addr: IpAddr,
    pub name: String,
    /// Seconds, the smallest TTL along the chain.
    pub ttl: u32,
}

fn be16(m: &[u8], at: usize) -> Result<u16, DnsError> {
    match m.get(at..at + 2) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(DnsError::Truncated),
    }
}

fn be32(m: &[u8], at: usize) -> Result<u32, DnsError> {
    match m.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(DnsError::Truncated),
    }
}

/// Reads the (possibly compressed) name at `pos` into lower-case dotted form.
/// Returns the name and the position just after it in the message.
/// Pointers must point strictly backwards and are bounded in number, so a
/// crafted loop ends with `BadName`.
pub fn read_name(m: &[u8], pos: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::new();
    let mut at = pos;
    let mut after = None;
    let mut jumps = 0;
    // Where the current run of labels started: a pointer must go before it.
    let mut run_start = pos;
    loop {
        let len = *m.get(at).ok_or(DnsError::Truncated)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok((out, after.unwrap_or(at + 1)));
                }
                let label = m
                    .get(at + 1..at + 1 + usize::from(len))
                    .ok_or(DnsError::Truncated)?;
                if out.len() + label.len() + 1 > MAX_NAME + 1 {
                    return Err(DnsError::BadName);
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    // Host names only: printable ASCII, no dot inside a label.
                    if !(0x21..=0x7e).contains(&b) || b == b'.' {
                        return Err(DnsError::BadName);
                    }
                    out.push(char::from(b.to_ascii_lowercase()));
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let target = usize::from(be16(m, at)? & 0x3fff);
                jumps += 1;
                if jumps > MAX_JUMPS || target >= run_start {
                    return Err(DnsError::BadName);
                }
                after.get_or_insert(at + 2);
                at = target;
                run_start = target;
            }
            _ => return Err(DnsError::BadName),
        }
    }
}

struct Rr {
    owner: String,
    ttl: u32,
    data: RrData,
}

enum RrData {
    Addr(IpAddr),
    Cname(String),
}

/// Parses a DNS response (no TCP length prefix) into address -> asked-for
/// name mappings. mDNS responses (no question, cache-flush bit) work too.
pub fn parse_response(m: &[u8]) -> Result<Vec<Resolved>, DnsError> {
    let flags = be16(m, 2)?;
    // QR set, standard query opcode, no error.
    if flags & 0x8000 == 0 || (flags >> 11) & 0xf != 0 || flags & 0xf != 0 {
        return Err(DnsError::NotResponse);
    }
    let qd = be16(m, 4)?;
    let an = be16(m, 6)?;
    let mut at = 12;
    let mut qname = None;
    for i in 0..qd.min(4) {
        let (name, next) = read_name(m, at)?;
        if i == 0 {
            qname = Some(name);
        }
        at = next + 4;
    }
    let mut rrs: Vec<Rr> = Vec::with_capacity(usize::from(an).min(MAX_RECORDS));
    for _ in 0..usize::from(an).min(MAX_RECORDS) {
        let (owner, next) = read_name(m, at)?;
        let rtype = be16(m, next)?;
        let class = be16(m, next + 2)? & 0x7fff;
        let ttl = be32(m, next + 4)?;
        let rdlen = usize::from(be16(m, next + 8)?);
        let rdata_at = next + 10;
        let rdata = m
            .get(rdata_at..rdata_at + rdlen)
            .ok_or(DnsError::Truncated)?;
        at = rdata_at + rdlen;
        if class != CLASS_IN {
            continue;
        }
        let data = match (rtype, rdata.len()) {
            (TYPE_A, 4) => RrData::Addr(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (TYPE_AAAA, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(rdata);
                RrData::Addr(IpAddr::V6(Ipv6Addr::from(a)))
            }
            (TYPE_CNAME, _) => match read_name(m, rdata_at) {
                Ok((target, _)) => RrData::Cname(target),
                Err(_) => continue,
            },
            _ => continue,
        };
        rrs.push(Rr { owner, ttl, data });
    }
    let mut out = Vec::new();
    for rr in &rrs {
        let RrData::Addr(addr) = rr.data else {
            continue;
        };
        // Walk the CNAME links back from the address's owner to the name
        // that was asked for (the question, when there is one).
        let mut name = rr.owner.as_str();
        let mut ttl = rr.ttl;
        for _ in 0..MAX_CHAIN {
            if qname.as_deref() == Some(name) {
                break;
            }
            let Some(link) = rrs
                .iter()
                .find(|r| matches!(&r.data, RrData::Cname(t) if t == name))
            else {
                break;
            };
            name = &link.owner;
            ttl = ttl.min(link.ttl);
        }
        if name.is_empty() {
            continue;
        }
        out.push(Resolved {
            addr,
            name: name.to_owned(),
            ttl,
        });
    }
    Ok(out)
}

/// DNS over TCP: the 2-byte length prefix and the message, all in one segment.
pub fn parse_tcp_response(payload: &[u8]) -> Result<Vec<Resolved>, DnsError> {
    parse_response(tcp_message(payload)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use netmon_testkit::dns::{self as build, *};
    use proptest::prelude::*;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    #[test]
    fn a_answer_maps_address_to_query_name() {
        let m = response("Files.Example.Test", &[], &[[10, 0, 0, 2]], 300);
        let r = parse_response(&m).unwrap();
        assert_eq!(
            r,
            vec![Resolved {
                addr: v4([10, 0, 0, 2]),
                name: "files.example.test".into(),
                ttl: 300
            }]
        );
    }

    #[test]
    fn cname_chain_maps_every_final_address_to_the_query_name() {
        let m = response(
            "www.example.com",
            &["www.example.com.cdn.net", "e1.cdn.net"],
            &[[192, 0, 2, 1], [192, 0, 2, 2]],
            120,
        );
        let r = parse_response(&m).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r
            .iter()
            .all(|x| x.name == "www.example.com" && x.ttl == 120));
        assert_eq!(r[1].addr, v4([192, 0, 2, 2]));
    }

    #[test]
    fn chain_ttl_is_the_smallest_along_it() {
        let mut m = header(1, 2);
        m.extend(question("a.test", 1));
        m.extend(rr(&name("a.test"), 5, 30, &name("b.test")));
        m.extend(rr(&name("b.test"), 1, 900, &[1, 2, 3, 4]));
        let r = parse_response(&m).unwrap();
        assert_eq!((r[0].name.as_str(), r[0].ttl), ("a.test", 30));
    }

    #[test]
    fn aaaa_answer_with_compression_pointer_to_the_question() {
        let mut m = header(1, 1);
        m.extend(question("v6.example.test", 28));
        // Owner: pointer to the question name at offset 12.
        let mut addr = [0u8; 16];
        addr[0] = 0xfd;
        addr[15] = 2;
        m.extend(rr(&[0xc0, 12], 28, 60, &addr));
        let r = parse_response(&m).unwrap();
        assert_eq!(r[0].addr, IpAddr::V6(Ipv6Addr::from(addr)));
        assert_eq!(r[0].name, "v6.example.test");
    }

    #[test]
    fn compressed_cname_target_and_suffix_pointer() {
        let mut m = header(1, 2);
        m.extend(question("www.example.test", 1)); // "example.test" at offset 16
        let mut target = vec![3, b'c', b'd', b'n'];
        target.extend_from_slice(&[0xc0, 16]); // cdn.example.test
        m.extend(rr(&[0xc0, 12], 5, 60, &target));
        let cname_rdata_at = m.len() - target.len();
        m.extend(rr(&[0xc0, cname_rdata_at as u8], 1, 60, &[10, 1, 1, 1]));
        let r = parse_response(&m).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "www.example.test");
        assert_eq!(read_name(&m, cname_rdata_at).unwrap().0, "cdn.example.test");
    }

    #[test]
    fn looping_and_forward_pointers_are_rejected() {
        let mut m = header(1, 0);
        m.extend_from_slice(&[0xc0, 12]); // points at itself
        m.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(parse_response(&m), Err(DnsError::BadName));
        let mut m = header(1, 0);
        m.extend_from_slice(&[1, b'a', 0xc0, 12]); // back to its own start
        m.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(parse_response(&m), Err(DnsError::BadName));
        let mut m = header(1, 0);
        m.extend_from_slice(&[0xc0, 40]); // forward
        m.extend_from_slice(&[0; 40]);
        assert_eq!(parse_response(&m), Err(DnsError::BadName));
    }

    #[test]
    fn queries_and_errors_are_not_responses() {
        let mut m = response("a.test", &[], &[[1, 1, 1, 1]], 5);
        m[2] = 0x01; // QR clear
        assert_eq!(parse_response(&m), Err(DnsError::NotResponse));
        let mut m = response("a.test", &[], &[[1, 1, 1, 1]], 5);
        m[3] = 0x83; // NXDOMAIN
        assert_eq!(parse_response(&m), Err(DnsError::NotResponse));
    }

    #[test]
    fn truncated_message_is_an_error_not_a_panic() {
        let m = response("a.test", &[], &[[1, 1, 1, 1]], 5);
        for cut in 0..m.len() {
            assert!(parse_response(&m[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn mdns_response_without_question_uses_owner_and_cache_flush_class() {
        let mut m = vec![0, 0, 0x84, 0x00, 0, 0, 0, 1, 0, 0, 0, 0];
        let mut r = rr(&name("printer.local"), 1, 120, &[192, 168, 1, 9]);
        let class_at = name("printer.local").len() + 2;
        r[class_at] = 0x80; // cache-flush bit
        m.extend(r);
        let out = parse_response(&m).unwrap();
        assert_eq!(out[0].name, "printer.local");
        assert_eq!(out[0].addr, v4([192, 168, 1, 9]));
    }

    #[test]
    fn questions_of_queries_and_responses_match() {
        let q = query_question(&build::query("Files.Example.TEST", 1)).unwrap();
        assert_eq!(
            q,
            Question {
                id: 0x1234,
                name: "files.example.test".into(),
                qtype: 1
            }
        );
        let r = build::response("files.example.test", &[], &[[10, 0, 0, 1]], 30);
        assert_eq!(response_question(&r).unwrap(), q);
        // A response is not a query, and a message without a question is neither.
        assert_eq!(query_question(&r), Err(DnsError::NotQuery));
        assert_eq!(
            response_question(&build::header(0, 0)),
            Err(DnsError::NotQuery)
        );
    }

    #[test]
    fn tcp_length_prefix_is_honoured() {
        let m = response("t.test", &[], &[[9, 9, 9, 9]], 5);
        let mut p = (m.len() as u16).to_be_bytes().to_vec();
        p.extend(&m);
        assert_eq!(parse_tcp_response(&p).unwrap()[0].name, "t.test");
        assert!(parse_tcp_response(&p[..p.len() - 1]).is_err());
    }

    #[test]
    fn non_hostname_bytes_are_rejected() {
        let mut m = header(1, 0);
        m.extend_from_slice(&[3, b'a', b'\n', b'b', 0, 0, 1, 0, 1]);
        assert_eq!(parse_response(&m), Err(DnsError::BadName));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_response(&b);
            let _ = parse_tcp_response(&b);
            let _ = read_name(&b, 0);
        }

        #[test]
        fn never_panics_on_mutated_responses(
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)
        ) {
            let mut m = response("www.example.com", &["x.cdn.net"], &[[1, 2, 3, 4]], 60);
            for (at, v) in flips {
                let n = m.len();
                m[at % n] = v;
            }
            let _ = parse_response(&m);
        }
    }
}
