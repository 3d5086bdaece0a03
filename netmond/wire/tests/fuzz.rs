//! Fuzz targets for the wire parsers on the stable toolchain: each target takes
//! raw bytes and checks the properties (no panic, typed errors, lengths and
//! offsets within the input). Driven by proptest (arbitrary bytes plus
//! structure-aware mutations of valid packets from netmon-testkit) and by the
//! checked-in corpus under `fuzz-corpus/<target>/`, replayed on every run.
//! `NETMON_FUZZ_CASES=N` runs N cases per property instead of the default.
//! `NETMON_FUZZ_WRITE_SEEDS=1` rewrites the seed files (`seed-*`) of the corpus.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
        let (start, end) = (
            frame.as_ptr() as usize,
            frame.as_ptr() as usize + frame.len(),
        );
        let (ps, pe) = (p.as_ptr() as usize, p.as_ptr() as usize + p.len());
        assert!(ps >= start && pe <= end, "payload outside the frame");
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

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target)
}

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
    let write = std::env::var_os("NETMON_FUZZ_WRITE_SEEDS").is_some();
    for (name, target) in TARGETS {
        let dir = corpus_dir(name);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in corpus_seeds(name).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:03}")), s).unwrap();
            }
        }
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let res = std::panic::catch_unwind(|| target(&data));
            assert!(res.is_ok(), "{name}: {} fails", path.display());
            n += 1;
        }
        println!("{name}: {n} corpus files replayed");
        assert!(n >= 4, "{name}: corpus of {n} files");
    }
}

/// A structure-aware mutation: overwrite, splat a length-like value, insert,
/// delete or truncate. Offsets are taken modulo the input length.
#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Be16(usize, u16),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Set(a, b)),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u16),
                Just(1),
                Just(0xffff),
                Just(0x7fff),
                any::<u16>()
            ]
        )
            .prop_map(|(a, v)| Mutation::Be16(a, v)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(a, b)| Mutation::Insert(a, b)),
        (any::<usize>(), 1usize..16).prop_map(|(a, n)| Mutation::Delete(a, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut d: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = d.len().max(1);
        match m {
            Mutation::Set(a, b) => {
                if let Some(x) = d.get_mut(a % len) {
                    *x = *b;
                }
            }
            Mutation::Be16(a, v) => {
                let at = a % len;
                for (i, b) in v.to_be_bytes().into_iter().enumerate() {
                    if let Some(x) = d.get_mut(at + i) {
                        *x = b;
                    }
                }
            }
            Mutation::Insert(a, b) => {
                let at = a % (d.len() + 1);
                d.splice(at..at, b.iter().copied());
            }
            Mutation::Delete(a, n) => {
                let at = a % len;
                let end = (at + n).min(d.len());
                if at < end {
                    d.drain(at..end);
                }
            }
            Mutation::Truncate(a) => d.truncate(a % (d.len() + 1)),
        }
    }
    d
}

fn cases() -> u32 {
    std::env::var("NETMON_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(target);
    let n = seeds.len();
    (0..n, proptest::collection::vec(mutation(), 1..6))
        .prop_map(move |(i, muts)| apply(seeds[i].clone(), &muts))
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
