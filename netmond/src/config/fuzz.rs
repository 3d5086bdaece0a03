//! Fuzz target for the config loader: TOML text -> `Config`, or a typed
//! `ConfigError` whose message names the file (parse errors) or the key
//! (value errors) in single quotes. Never a panic. Corpus: `fuzz-corpus/config/`.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use netmon_testkit::fuzz::{cases, mutated, replay};

fn config_target(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/fuzz/netmond.toml");
    match FileConfig::parse(&text, path) {
        Ok(mut file) => {
            // A file the input names would be read: keep the target pure.
            file.names.categories_file = None;
            if let Err(e) = Config::resolve(file, Some(path.to_path_buf()), Overrides::default()) {
                // The whole chain, as the daemon logs it at start.
                let mut msg = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg.push_str(&format!(": {s}"));
                    source = s.source();
                }
                assert!(msg.contains('\''), "an error that names nothing: {msg}");
            }
        }
        Err(e) => {
            assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
            assert!(e.to_string().contains("'/fuzz/netmond.toml'"), "{e}");
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        FileConfig::example().into_bytes(),
        super::tests::uncommented_example().into_bytes(),
        b"[daemon]\nautostart = true\ntick_ms = 1000\n[capture]\nattribution = \"socket-lookup\"\n"
            .to_vec(),
        b"[alerts]\ndefault_process_rate = \"5MiB/s\"\nhost_rate = 1000\n".to_vec(),
        b"[names]\ncategories = { \"example.com\" = \"web\" }\n".to_vec(),
        b"[daemon]\ntick_ms = 0\n".to_vec(),
        b"[nope]\nx = 1\n".to_vec(),
    ]
}

#[test]
fn config_corpus_replays() {
    replay(
        env!("CARGO_MANIFEST_DIR"),
        "config",
        &seeds(),
        config_target,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_holds_on_arbitrary_text(d in "[\\[\\]a-z_=\"\\n .0-9{},]{0,200}") {
        config_target(d.as_bytes());
    }

    #[test]
    fn config_holds_on_mutated_files(d in mutated(seeds())) {
        config_target(&d);
    }
}
