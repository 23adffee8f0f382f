//! Replays the committed corpora of the conformance fuzz targets, and seeded random inputs.

use std::path::Path;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

type Harness = fn(&[u8]);
const TARGETS: [(&str, Harness); 2] =
    [("trace_parser", conformance::fuzzing::trace_parser), ("peer_codec", conformance::fuzzing::peer_codec)];

#[test]
fn corpora_and_random_inputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut total = 0;
    for (name, harness) in TARGETS {
        for e in std::fs::read_dir(root.join(name)).unwrap().flatten() {
            harness(&std::fs::read(e.path()).unwrap());
            total += 1;
        }
    }
    assert!(total > 10, "corpora present");
    // Every committed trace is also a parser input.
    let traces = conformance::suite::find_traces(&conformance::suite::default_traces()).unwrap();
    for p in traces {
        conformance::fuzzing::trace_parser(&std::fs::read(p).unwrap());
    }
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for (_, harness) in TARGETS {
        for _ in 0..300 {
            let mut data = vec![0u8; (rng.next_u32() % 600) as usize];
            rng.fill_bytes(&mut data);
            harness(&data);
        }
    }
}

#[test]
fn listed_in_fuzz_targets() {
    let listed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/targets.txt")).unwrap();
    for (name, _) in TARGETS {
        assert!(listed.split_whitespace().any(|t| t == name), "{name} missing from fuzz/targets.txt");
    }
}
