//! Fuzz targets for the rtnetlink side: the netlink message and attribute
//! walkers, `RTM_NEWLINK` / `RTM_NEWADDR` parsers, the change filter and the
//! `/proc/net/dev` reader. No panic, typed errors, slices within the input,
//! walks bounded by the input's length. Corpus: `fuzz-corpus/{netlink,netif}/`.

use proptest::prelude::*;

use super::parse::tests::{attr, ifaddrmsg, ifinfomsg, msg};
use super::parse::*;
use crate::netlink::msg::{
    attributes, messages, parse_error, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLM_F_MULTI,
};
use netmon_testkit::fuzz::{assert_within, cases, mutated, replay};

/// Messages and attributes of one datagram: each inside the input, and no
/// more of them than the input has room for (a walk that cannot stall).
fn netlink_target(data: &[u8]) {
    let mut n = 0;
    for m in messages(data) {
        n += 1;
        assert!(n <= data.len() / NLMSG_HDRLEN + 1, "message walk runs on");
        let Ok(m) = m else { continue };
        assert_within(data, m.payload);
        let mut a = 0;
        for (_, v) in attributes(m.payload) {
            a += 1;
            assert!(a <= m.payload.len() / 4 + 1, "attribute walk runs on");
            assert_within(m.payload, v);
        }
        if m.ty == NLMSG_ERROR {
            if let Err(e) = parse_error(m.payload) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
    let mut a = 0;
    for (_, v) in attributes(data) {
        a += 1;
        assert!(a <= data.len() / 4 + 1, "attribute walk runs on");
        assert_within(data, v);
    }
}

/// The link and address parsers, on every message and on the raw bytes.
fn netif_target(data: &[u8]) {
    let payloads = messages(data)
        .flatten()
        .map(|m| m.payload)
        .chain(std::iter::once(data));
    for p in payloads {
        match parse_link(p) {
            Ok(l) => assert!(l.name.chars().count() <= p.len()),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        if let Err(e) = parse_addr(p) {
            assert!(!e.to_string().is_empty());
        }
    }
    let _ = super::watch::is_change(data);
    let text = String::from_utf8_lossy(data);
    for (name, _) in parse_proc_net_dev(&text) {
        assert!(name.len() <= text.len());
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut link = ifinfomsg(1, 7, 0x1 | 0x40);
    attr(&mut link, 3, b"veth0\0");
    attr(&mut link, 1, &[2, 0, 0, 0, 0, 1]);
    let mut stats = vec![0u8; 24 * 8];
    stats[0] = 9;
    attr(&mut link, 23, &stats);
    let mut addr4 = ifaddrmsg(2, 24, 7);
    attr(&mut addr4, 2, &[10, 0, 0, 1]);
    attr(&mut addr4, 1, &[10, 0, 0, 1]);
    let mut addr6 = ifaddrmsg(10, 64, 7);
    attr(
        &mut addr6,
        1,
        &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    );
    let mut dump = Vec::new();
    msg(&mut dump, RTM_NEWLINK, NLM_F_MULTI, 1, &link);
    msg(&mut dump, RTM_NEWADDR, NLM_F_MULTI, 1, &addr4);
    msg(&mut dump, RTM_NEWADDR, NLM_F_MULTI, 1, &addr6);
    msg(&mut dump, NLMSG_DONE, NLM_F_MULTI, 1, &0u32.to_ne_bytes());
    let mut err = Vec::new();
    msg(&mut err, NLMSG_ERROR, 0, 2, &(-1i32).to_ne_bytes());
    let mut single = Vec::new();
    msg(&mut single, RTM_NEWLINK, 0, 0, &link);
    let dev = b"Inter-|   Receive                                                |  Transmit\n \
        face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
        lo: 1234 10 0 0 0 0 0 0 1234 10 0 0 0 0 0 0\n  eth0: 99 1 0 0 0 0 0 0 77 1 0 0 0 0 0 0\n"
        .to_vec();
    vec![dump, err, single, link, addr4, dev]
}

#[test]
fn netlink_corpus_replays() {
    replay(
        env!("CARGO_MANIFEST_DIR"),
        "netlink",
        &seeds(),
        netlink_target,
    );
}

#[test]
fn netif_corpus_replays() {
    replay(env!("CARGO_MANIFEST_DIR"), "netif", &seeds(), netif_target);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn netlink_holds_on_arbitrary_bytes(d in proptest::collection::vec(any::<u8>(), 0..512)) {
        netlink_target(&d);
        netif_target(&d);
    }

    #[test]
    fn netlink_holds_on_mutated_messages(d in mutated(seeds())) {
        netlink_target(&d);
        netif_target(&d);
    }
}
