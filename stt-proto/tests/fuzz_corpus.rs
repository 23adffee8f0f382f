//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same
//! harness functions the cargo-fuzz targets call, plus seeded random inputs, so each
//! `cargo test` checks them on stable.

use std::path::Path;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use stt_proto::fuzzing;

type Harness = fn(&[u8]);

const TARGETS: &[(&str, Harness)] = &[
    ("header", fuzzing::header),
    ("frames", fuzzing::frames),
    ("frame_encode", fuzzing::frame_encode),
    ("handshake_payloads", fuzzing::handshake_payloads),
    ("transport_params", fuzzing::transport_params),
    ("front_door", fuzzing::front_door),
    ("protected_frames", fuzzing::protected_frames),
    ("session_ops", fuzzing::session_ops),
    ("reassembly", fuzzing::reassembly),
    ("replay_window", fuzzing::replay_window),
    ("cookie", fuzzing::cookie),
    ("app_frames", fuzzing::app_frames),
    ("key_schedule", fuzzing::key_schedule),
    ("ack_ranges", fuzzing::ack_ranges),
    ("segment", fuzzing::segment),
    ("hostile_frames", fuzzing::hostile_frames),
    ("relay_frames", fuzzing::relay_frames),
];

/// Fuzz targets over the conformance suite (`conformance/src/fuzzing.rs`).
const CONFORMANCE_TARGETS: [&str; 2] = ["trace_parser", "peer_codec"];

#[test]
fn every_fuzz_target_is_listed() {
    let listed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/targets.txt")).unwrap();
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    // The conformance crate's targets (trace_parser, peer_codec) are replayed by its own test.
    let core: Vec<&str> = listed.split_whitespace().filter(|t| !CONFORMANCE_TARGETS.contains(t)).collect();
    assert_eq!(core, names, "fuzz/targets.txt and this table agree");
}

#[test]
fn committed_corpora_replay_without_failure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut total = 0;
    for (name, harness) in TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            harness(&data);
            total += 1;
        }
    }
    println!("replayed {total} corpus inputs");
}

#[test]
fn seeded_random_inputs() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(stt_proto::sim::World::seed_from_env(99));
    for (name, harness) in TARGETS {
        let rounds =
            if matches!(*name, "protected_frames" | "session_ops" | "app_frames" | "hostile_frames" | "relay_frames") {
                4
            } else {
                200
            };
        for _ in 0..rounds {
            let len = (rng.next_u32() % 2048) as usize;
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            harness(&data);
        }
    }
}
