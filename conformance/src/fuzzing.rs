//! Harnesses for the cargo-fuzz targets `trace_parser` and `peer_codec` (also replayed
//! by `conformance/tests/fuzz_corpus.rs`). They panic only on a broken property.

use stt_conformance_peer::wire::{decode_frames, decode_params, encode_frames};
use stt_conformance_peer::{Item, Peer, PeerSetup};

use crate::trace::{parse, render_line, tokenize};

/// Parses any text as a trace; whatever parses must render and re-parse to the same lines.
pub fn trace_parser(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else { return };
    for line in text.lines() {
        let _ = tokenize(line);
    }
    let Ok(t) = parse(text, "fuzz.trace", &mut |_| Err("no includes".into())) else { return };
    let rendered: Vec<String> = t.lines.iter().map(render_line).collect();
    let again = parse(&format!("@case {}\n{}", t.id, rendered.join("\n")), "re.trace", &mut |_| Err(String::new()))
        .expect("a rendered trace parses");
    assert_eq!(t.lines.len(), again.lines.len());
    for (a, b) in t.lines.iter().zip(&again.lines) {
        assert_eq!((a.time, &a.action), (b.time, &b.action), "render/parse round trip");
    }
}

/// The scripted peer's decoders on arbitrary bytes: no panic, and decoded frames re-encode
/// to a list that decodes the same.
pub fn peer_codec(data: &[u8]) {
    if let Ok(frames) = decode_frames(data) {
        let enc = encode_frames(&frames).expect("decoded frames encode");
        let dec = decode_frames(&enc).expect("re-encoded frames decode");
        // DATA frames longer than 64 bytes render without their bytes; compare names.
        let names = |f: &[Item]| f.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&frames), names(&dec));
    }
    let _ = decode_params(data, &mut Item::new("P"));
    let mut peer = Peer::new(PeerSetup {
        shared_seed: [0; 32],
        node_seed: [1; 32],
        rng_seed: 1,
        observed: "192.0.2.1:1".parse().expect("constant"),
    });
    let _ = peer.read(data);
}
