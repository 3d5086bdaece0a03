//! Fuzz targets for the wire parsers on the stable toolchain: each target takes
//! raw bytes and checks the properties (no panic, typed errors, lengths and
//! offsets within the input). Driven by proptest (arbitrary bytes plus
//! structure-aware mutations of valid packets from netmon-testkit) and by the
//! checked-in corpus under `fuzz-corpus/<target>/`, replayed on every run.
//! Knobs (case count, rewriting the seeds): see `netmon_testkit::fuzz`.

use std::time::{Duration, Instant};

use netmon_testkit::fuzz::{self, assert_within, cases};
use netmon_testkit::{dns as tdns, synth, tls};
use netmon_wire::decode::{decode, l4_payload, LinkType, PacketMeta};
use netmon_wire::{dns, sniff};
use proptest::prelude::*;

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Null,
    LinkType::Loop,
];

/// A single call that takes this long on a few hundred bytes is a loop, not work.
const SLOW: Duration = Duration::from_millis(500);

fn timed<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(
        took < SLOW,
        "{what} took {took:?} on {} bytes: {input:02x?}",
        input.len()
    );
    out
}

/// Input layout: byte 0 picks the link type, bytes 1..5 the wire length
/// (big endian), the rest is the captured frame.
fn decode_target(data: &[u8]) {
    let (link, orig, frame) = match data {
        [l, a, b, c, d, rest @ ..] => (
            LINKS[usize::from(*l) % LINKS.len()],
            u32::from_be_bytes([*a, *b, *c, *d]),
            rest,
        ),
        _ => (LinkType::Ethernet, data.len() as u32, data),
    };
    check_decode(link, frame, orig);
    // The same frame as if the wire carried exactly what was captured.
    check_decode(link, frame, frame.len() as u32);
}

fn check_decode(link: LinkType, frame: &[u8], orig: u32) {
    let out = timed("decode", frame, || decode(link, frame, orig));
    if let Ok(m) = out {
        check_meta(&m, frame, orig);
    }
    if let Some(p) = timed("l4_payload", frame, || l4_payload(link, frame)) {
        // A sub-slice of the frame, never bytes from elsewhere.
        assert_within(frame, p);
    }
}

fn check_meta(m: &PacketMeta, frame: &[u8], orig: u32) {
    // The claimed IP length is clamped to what the wire carried.
    assert!(m.l3_len <= orig, "l3_len {} > orig {orig}", m.l3_len);
    // The transport payload lies inside the IP packet.
    assert!(
        m.payload_len <= m.l3_len,
        "payload {} > l3 {} ({frame:02x?})",
        m.payload_len,
        m.l3_len
    );
}

/// Every DNS entry point on one message; names and positions stay in bounds.
fn dns_target(data: &[u8]) {
    for q in [
        timed("query_question", data, || dns::query_question(data)),
        timed("response_question", data, || dns::response_question(data)),
    ]
    .into_iter()
    .flatten()
    {
        assert!(q.name.len() <= 253, "name of {} bytes", q.name.len());
        assert!(q.name.len() <= data.len());
    }
    for pos in [0, 12, data.len() / 2] {
        if let Ok((name, after)) = timed("read_name", data, || dns::read_name(data, pos)) {
            assert!(after <= data.len(), "name ends at {after} > {}", data.len());
            assert!(name.len() <= 253);
        }
    }
    for rs in [
        timed("parse_response", data, || dns::parse_response(data)),
        timed("parse_tcp_response", data, || dns::parse_tcp_response(data)),
    ]
    .into_iter()
    .flatten()
    {
        // Each answer needs at least a 10-byte fixed part and 4 bytes of address.
        assert!(rs.len() <= data.len() / 14 + 1, "{} answers", rs.len());
        for r in rs {
            assert!(r.name.len() <= 253);
        }
    }
    if let Ok(m) = dns::tcp_message(data) {
        assert!(m.len() + 2 <= data.len());
    }
}

/// TLS SNI and HTTP Host: a name is clean and no longer than the input.
fn sniff_target(data: &[u8]) {
    for host in [
        timed("tls_sni", data, || sniff::tls_sni(data)),
        timed("http_host", data, || sniff::http_host(data)),
    ]
    .into_iter()
    .flatten()
    {
        assert!(host.len() <= data.len() && host.len() <= 253);
        assert_eq!(sniff::clean_host(host.as_bytes()).as_deref(), Some(&*host));
    }
}

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("decode", decode_target),
    ("dns", dns_target),
    ("sniff", sniff_target),
];

/// Valid inputs for each target, the starting points of the mutations.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "decode" => synth::capture(&synth::SynthConfig {
            frames: 400,
            flows: 40,
            seed: 7,
        })
        .into_iter()
        .map(|(frame, orig)| {
            let mut d = vec![0];
            d.extend_from_slice(&orig.to_be_bytes());
            d.extend_from_slice(&frame);
            d
        })
        .collect(),
        "dns" => {
            let mut v = vec![
                tdns::query("example.com", 1),
                tdns::query("a.b.c.d.example.org", 28),
                tdns::response(
                    "www.example.com",
                    &["cdn.example.net"],
                    &[[192, 0, 2, 1]],
                    60,
                ),
                tdns::response("x.test", &[], &[[10, 0, 0, 1], [10, 0, 0, 2]], 0),
            ];
            let r = tdns::response("tcp.example", &[], &[[192, 0, 2, 7]], 30);
            let mut tcp = (r.len() as u16).to_be_bytes().to_vec();
            tcp.extend_from_slice(&r);
            v.push(tcp);
            v
        }
        "sniff" => vec![
            tls::build_client_hello("example.com"),
            tls::build_client_hello("a-very.long-name.with_under.example.org"),
            b"GET / HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n".to_vec(),
            b"POST /x HTTP/1.0\r\nhOsT:   Mixed.Case.Example\r\n\r\n".to_vec(),
        ],
        _ => Vec::new(),
    }
}

/// Seeds kept in the corpus: a spread of the synthetic frames, all the others.
fn corpus_seeds(target: &str) -> Vec<Vec<u8>> {
    let all = seeds(target);
    if target == "decode" {
        all.into_iter().step_by(20).collect()
    } else {
        all
    }
}

#[test]
fn corpus_replays_without_failure() {
    for (name, target) in TARGETS {
        fuzz::replay(
            env!("CARGO_MANIFEST_DIR"),
            name,
            &corpus_seeds(name),
            target,
        );
    }
}

fn mutated(target: &str) -> impl Strategy<Value = Vec<u8>> {
    fuzz::mutated(seeds(target))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decode_holds_on_arbitrary_bytes(d in proptest::collection::vec(any::<u8>(), 0..300)) {
        decode_target(&d);
    }

    #[test]
    fn decode_holds_on_mutated_frames(d in mutated("decode")) {
        decode_target(&d);
    }

    #[test]
    fn dns_holds_on_arbitrary_bytes(d in proptest::collection::vec(any::<u8>(), 0..600)) {
        dns_target(&d);
    }

    #[test]
    fn dns_holds_on_mutated_messages(d in mutated("dns")) {
        dns_target(&d);
    }

    #[test]
    fn sniff_holds_on_arbitrary_bytes(d in proptest::collection::vec(any::<u8>(), 0..600)) {
        sniff_target(&d);
    }

    #[test]
    fn sniff_holds_on_mutated_payloads(d in mutated("sniff")) {
        sniff_target(&d);
    }
}
