//! DNS messages built for tests: queries and responses with uncompressed
//! names, CNAME chains and A records, as a stub resolver and its server send.

/// Encodes `name` as uncompressed labels.
pub fn name(n: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in n.split('.').filter(|l| !l.is_empty()) {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

/// A response header: id 0x1234, recursion desired and available, no error.
pub fn header(qd: u16, an: u16) -> Vec<u8> {
    let mut v = vec![0x12, 0x34, 0x81, 0x80];
    v.extend_from_slice(&qd.to_be_bytes());
    v.extend_from_slice(&an.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v
}

pub fn question(q: &str, qtype: u16) -> Vec<u8> {
    let mut v = name(q);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v
}

/// A standard recursive query for `q` with id 0x1234, as a stub resolver sends.
pub fn query(q: &str, qtype: u16) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend(question(q, qtype));
    m
}

/// A record with an already-encoded owner name.
pub fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut v = owner.to_vec();
    v.extend_from_slice(&rtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&ttl.to_be_bytes());
    v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    v.extend_from_slice(rdata);
    v
}

/// A response to `q` (type A) answering it with a CNAME chain through
/// `chain` and the addresses `addrs` on the last name, uncompressed.
pub fn response(q: &str, chain: &[&str], addrs: &[[u8; 4]], ttl: u32) -> Vec<u8> {
    let mut m = header(1, (chain.len() + addrs.len()) as u16);
    m.extend(question(q, 1));
    let mut owner = q;
    for c in chain {
        m.extend(rr(&name(owner), 5, ttl, &name(c)));
        owner = c;
    }
    for a in addrs {
        m.extend(rr(&name(owner), 1, ttl, a));
    }
    m
}
