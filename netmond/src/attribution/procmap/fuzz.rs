//! Fuzz target for the sock_diag reply parsers: one-socket answers, dump
//! chunks and destroy notifications. No panic, typed errors, no more sockets
//! than the input has room for. Corpus: `fuzz-corpus/sockdiag/`.

use proptest::prelude::*;

use super::sockdiag::tests::{done_msg, reply_bytes, tcp_msg};
use super::sockdiag::*;
use netmon_testkit::fuzz::{cases, mutated, replay};

/// `struct inet_diag_msg` is 72 bytes, behind a 16-byte netlink header.
const MIN_MSG: usize = 16 + 72;

fn sockdiag_target(data: &[u8]) {
    match parse_reply(data) {
        Ok(DiagAnswer::Found(r)) => {
            assert!(data.len() >= MIN_MSG, "{r:?} from {} bytes", data.len())
        }
        Ok(DiagAnswer::NotFound) | Err(_) => {}
    }
    let mut chunk = DumpChunk::default();
    if parse_dump_chunk(data, &mut chunk).is_ok() {
        let parsed = chunk.socks.len() + chunk.malformed as usize;
        assert!(
            parsed <= data.len() / 16 + 1,
            "{parsed} messages from {} bytes",
            data.len()
        );
        assert!(chunk.socks.len() <= data.len() / MIN_MSG);
    }
    let mut n = 0;
    let _ = for_each_dump_msg(data, |p| {
        n += 1;
        let _ = parse_diag_msg(p);
        let _ = parse_tcp_sock(p);
    });
    assert!(n <= data.len() / 16 + 1);
    let _ = parse_diag_msg(data);
    let _ = parse_tcp_sock(data);
    let _ = parse_tcp_info(data);
}

fn seeds() -> Vec<Vec<u8>> {
    let v4 = reply_bytes(
        libc::AF_INET as u8,
        1,
        "10.0.0.1:40000".parse().expect("addr"),
        "10.0.0.2:443".parse().expect("addr"),
        1000,
        4242,
    );
    let v6 = reply_bytes(
        libc::AF_INET6 as u8,
        6,
        "[fd00::1]:40000".parse().expect("addr"),
        "[fd00::2]:80".parse().expect("addr"),
        0,
        0,
    );
    let mut dump = tcp_msg(7, 0x1234_5678_9abc, 1 << 20, 4096, 232);
    dump.extend(tcp_msg(8, 99, 0, 0, 104));
    dump.extend(done_msg());
    let mut enoent = vec![0u8; 36];
    enoent[0..4].copy_from_slice(&36u32.to_ne_bytes());
    enoent[4..6].copy_from_slice(&2u16.to_ne_bytes());
    enoent[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
    vec![v4, v6, dump, enoent, done_msg()]
}

#[test]
fn sockdiag_corpus_replays() {
    replay(
        env!("CARGO_MANIFEST_DIR"),
        "sockdiag",
        &seeds(),
        sockdiag_target,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sockdiag_holds_on_arbitrary_bytes(d in proptest::collection::vec(any::<u8>(), 0..600)) {
        sockdiag_target(&d);
    }

    #[test]
    fn sockdiag_holds_on_mutated_replies(d in mutated(seeds())) {
        sockdiag_target(&d);
    }
}
