//! Fuzz targets on the stable toolchain (no libFuzzer): replaying a checked-in
//! corpus (`<crate>/fuzz-corpus/<target>/`) and structure-aware byte mutations
//! of valid inputs for proptest. `NETMON_FUZZ_CASES=N` runs N cases per
//! property instead of the default; `NETMON_FUZZ_WRITE_SEEDS=1` rewrites the
//! seed files (`seed-*`) of the corpus.

use std::path::Path;

use proptest::prelude::*;

pub fn cases() -> u32 {
    std::env::var("NETMON_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

/// Runs `f` on every file of `crate_dir/fuzz-corpus/target/` (after writing
/// `seeds` there as `seed-NNN` when asked to); panics naming the file that
/// fails. Returns how many files ran.
#[allow(clippy::unwrap_used, reason = "test-only code may unwrap")]
pub fn replay(crate_dir: &str, target: &str, seeds: &[Vec<u8>], f: fn(&[u8])) -> usize {
    let dir = Path::new(crate_dir).join("fuzz-corpus").join(target);
    if std::env::var_os("NETMON_FUZZ_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), s).unwrap();
        }
    }
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let res = std::panic::catch_unwind(|| f(&data));
        assert!(res.is_ok(), "{target}: {} fails", path.display());
        n += 1;
    }
    println!("{target}: {n} corpus files replayed");
    assert!(n >= seeds.len().min(4), "{target}: corpus of {n} files");
    n
}

#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    /// A length-like value (0, 1, small, huge) over 2 or 4 bytes, in native
    /// order (netlink's) or big endian (the wire's).
    Len(usize, u32, bool, bool),
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
                Just(0u32),
                Just(1),
                Just(4),
                Just(0xffff),
                Just(u32::MAX),
                any::<u32>()
            ],
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(a, v, wide, be)| Mutation::Len(a, v, wide, be)),
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
            Mutation::Len(a, v, wide, be) => {
                let at = a % len;
                let bytes = match (*wide, *be) {
                    (true, true) => v.to_be_bytes().to_vec(),
                    (true, false) => v.to_ne_bytes().to_vec(),
                    (false, true) => (*v as u16).to_be_bytes().to_vec(),
                    (false, false) => (*v as u16).to_ne_bytes().to_vec(),
                };
                for (i, b) in bytes.into_iter().enumerate() {
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

/// One of `seeds` with one to five mutations.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (0..n, proptest::collection::vec(mutation(), 1..6))
        .prop_map(move |(i, muts)| apply(seeds[i].clone(), &muts))
}

/// Asserts `inner` is a sub-slice of `outer`: an offset the parser reported stays in its input.
pub fn assert_within(outer: &[u8], inner: &[u8]) {
    let (s, e) = (
        outer.as_ptr() as usize,
        outer.as_ptr() as usize + outer.len(),
    );
    let (is, ie) = (
        inner.as_ptr() as usize,
        inner.as_ptr() as usize + inner.len(),
    );
    assert!(
        inner.is_empty() || (is >= s && ie <= e),
        "a slice outside the input"
    );
}
