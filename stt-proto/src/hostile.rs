//! A hostile member (issue #14): a seed holder with a genuine session who sends whatever
//! authenticated frames it likes. Each test drives the simulator on the null AEAD, forges
//! the attacker's packets with the receiver's session id, and counts the work, memory and
//! bytes the attack costs its victim (never time). Spec: [ST-7], [MG-3], [LC-10], [RL-11].

use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use crate::crypto::NullAead;
use crate::sim::World;
use crate::wire::codec::Writer;
use crate::wire::frame::Frame;
use crate::wire::header::RECORD_HEADER_LEN;
use crate::{CloseReason, Config, DropReason, Event, InputOutcome, SessionId, TransportCode};

/// Null-AEAD config (forgeable by the test, and only by the test).
fn null_config() -> Config {
    Config::default().crypto_provider(&NullAead)
}

/// `x` connects to `y`; both established. Returns the two session ids.
fn establish(w: &mut World, x: usize, y: usize) -> (SessionId, SessionId) {
    let before = w.established(y).len();
    let sx = w.connect(x, y);
    if let Err(e) = w.drive_until(|w| w.is_established(x, sx) && w.established(y).len() > before, 10_000) {
        panic!("{e}");
    }
    let sy = w.established(y)[before].0;
    w.run_for(Duration::from_millis(200));
    (sx, sy)
}

/// The session id node `to` chose for its session with node `from`, read off the wire.
fn wire_sid(w: &World, from: usize, to: usize) -> [u8; 8] {
    let to_addr = w.nodes[to].addr;
    let c = w
        .captured
        .iter()
        .rev()
        .find(|c| c.from_node == from && c.to == to_addr && c.data[0] & 0xfe == 0x40)
        .expect("a protected packet on the wire");
    c.data[1..9].try_into().expect("8 bytes")
}

/// A protected packet (null AEAD, key phase 0) carrying `frames`.
fn forge(sid: [u8; 8], pn: u32, frames: &[Frame<'_>]) -> Vec<u8> {
    let mut body = alloc::vec![0u8; 1500];
    let mut wr = Writer::new(&mut body);
    for f in frames {
        f.encode(&mut wr).expect("frames fit one packet");
    }
    let n = wr.len();
    let mut pkt = Vec::with_capacity(RECORD_HEADER_LEN + n + 16);
    pkt.push(0x40);
    pkt.extend_from_slice(&sid);
    pkt.extend_from_slice(&pn.to_be_bytes());
    pkt.extend_from_slice(&body[..n]);
    pkt.extend_from_slice(&[0; 16]);
    pkt
}

/// Item 1, spec [ST-7]: 1-byte STREAM pieces with 1-byte gaps and offset 0 missing. Each
/// insert must cost O(log n + overlapped ranges) (counted by the reassembly meter, not
/// timed), the ranges held never exceed the per-stream cap, and crossing it closes the
/// session with PROTOCOL_VIOLATION. Before the fix: ~n²/2 steps and no cap at all.
#[test]
fn hostile_gappy_reassembly_is_linear_and_capped() {
    let mut w = World::new(World::seed_from_env(141));
    w.capture = true;
    let a = w.add_node(null_config());
    let b = w.add_node(null_config());
    let (_, sb) = establish(&mut w, a, b);
    let sid = wire_sid(&w, a, b);
    let from = w.nodes[a].addr;
    let cap = Config::default().max_stream_ranges;
    let pieces: u64 = 3000;
    let per_packet = 120;
    let data = [0x5a_u8];
    let mut sent = 0u64;
    let mut pn = 1_000_000u32;
    let mut max_ranges = 0;
    while sent < pieces {
        let frames: Vec<Frame<'_>> = (sent..(sent + per_packet).min(pieces))
            .map(|k| Frame::Stream { id: 0, offset: 2 * k + 1, data: &data, fin: false })
            .collect();
        sent += frames.len() as u64;
        let _ = w.inject(b, from, &forge(sid, pn, &frames));
        pn += 1;
        let Some(s) = w.node(b).session(sb) else { break };
        let st = s.stats();
        max_ranges = max_ranges.max(st.recv_ranges);
        if s.state() != crate::SessionState::Established {
            break;
        }
    }
    let steps = w.node(b).session(sb).map_or(0, |s| s.stats().reassembly_steps);
    w.flush();
    let closed = w.nodes[b].events.iter().any(|e| {
        matches!(
            e,
            Event::Closed { session, reason: CloseReason::LocalTransport(TransportCode::ProtocolViolation) }
                if *session == sb
        )
    });
    std::println!("gappy reassembly: {sent} pieces, {steps} steps, max {max_ranges} ranges, closed={closed}");
    assert!(max_ranges <= cap as u64, "ranges held {max_ranges} > cap {cap}");
    // log2(1024) + a merge and a compare per insert, with room to spare; quadratic was ~n²/2.
    assert!(steps <= 4 * sent, "reassembly work {steps} for {sent} pieces is not linear");
    assert!(closed, "crossing the range cap closes the session with PROTOCOL_VIOLATION");
}

/// Item 3, spec [MG-3]: probe-only packets (PATH_CHALLENGE) from a spoofed address that
/// never became the path get PATH_RESPONSEs within 3× the bytes received from that
/// address. Before the fix: every 38-byte probe drew a 1200-byte response (31.6×).
#[test]
fn hostile_path_probes_do_not_amplify_toward_spoofed_address() {
    let mut w = World::new(World::seed_from_env(143));
    w.capture = true;
    let a = w.add_node(null_config());
    let b = w.add_node(null_config());
    let _ = establish(&mut w, a, b);
    let sid = wire_sid(&w, a, b);
    let victim: SocketAddr = "203.0.113.9:443".parse().expect("address");
    let mark = w.captured.len();
    let mut bytes_in = 0u64;
    for k in 0..100u32 {
        let pkt = forge(sid, 1_000_000 + k, &[Frame::PathChallenge([k as u8; 8])]);
        bytes_in += pkt.len() as u64;
        assert_eq!(w.inject(b, victim, &pkt), InputOutcome::Consumed);
        w.flush();
    }
    w.run_for(Duration::from_secs(2));
    let bytes_out: u64 = w.captured[mark..].iter().filter(|c| c.to == victim).map(|c| c.data.len() as u64).sum();
    let responses = w.captured[mark..].iter().filter(|c| c.to == victim).count();
    std::println!("spoofed probes: {bytes_in} B in, {bytes_out} B out in {responses} datagrams");
    assert!(bytes_out > 0, "a probe still gets an answer within budget");
    assert!(bytes_out <= 3 * bytes_in, "amplification toward an unvalidated address: {bytes_out} B for {bytes_in} B");
}

/// Item 7, spec [LC-10]: a member whose packets each queue hundreds of events (stream
/// open/reset churn on unidirectional streams) while the driver is not draining cannot
/// make the node drop another member's packets; only its own are refused past its share.
#[test]
fn hostile_event_churn_does_not_starve_other_sessions() {
    let mut w = World::new(World::seed_from_env(147));
    w.capture = true;
    let a = w.add_node(null_config());
    let b = w.add_node(null_config());
    let c = w.add_node(null_config());
    let (_, sab) = establish(&mut w, a, b);
    let (_, scb) = establish(&mut w, c, b);
    let sid_a = wire_sid(&w, a, b);
    let sid_c = wire_sid(&w, c, b);
    let (from_a, from_c) = (w.nodes[a].addr, w.nodes[c].addr);
    // No flush from here on: the driver is busy, events pile up.
    let mut refused = 0;
    for p in 0..10u64 {
        let frames: Vec<Frame<'_>> =
            (p * 100..p * 100 + 100).map(|i| Frame::StreamClose { id: i << 2 | 2, code: 7, final_size: 0 }).collect();
        match w.inject(b, from_a, &forge(sid_a, 1_000_000 + p as u32, &frames)) {
            InputOutcome::Dropped(DropReason::EventQueueFull) => refused += 1,
            InputOutcome::Consumed => {}
            o => panic!("unexpected outcome {o:?}"),
        }
    }
    let innocent = w.inject(b, from_c, &forge(sid_c, 1_000_000, &[Frame::KeepAlive]));
    w.flush();
    let of = |s: SessionId| {
        w.nodes[b]
            .events
            .iter()
            .filter(|e| match e {
                Event::StreamOpened { session, .. } | Event::StreamReset { session, .. } => *session == s,
                _ => false,
            })
            .count()
    };
    let (queued_a, queued_c) = (of(sab), of(scb));
    std::println!(
        "event churn: attacker queued {queued_a} events, {refused} of its packets refused; innocent: {innocent:?}"
    );
    assert_eq!(innocent, InputOutcome::Consumed, "another member's packet was dropped for a full event queue");
    assert_eq!(queued_c, 0);
    let cap = Config::default().max_session_events;
    assert!(queued_a <= cap + 200, "one session queued {queued_a} events (cap {cap} + one packet)");
    assert!(refused > 0, "the churning session itself is held back");
}

/// Item 8, spec [RL-11]: a member that starts re-handshakes as fast as it can costs the
/// responder at most 2 X25519 per `rehandshake_min_interval` (counted in NodeStats).
#[test]
fn hostile_rehandshake_flood_is_rate_limited() {
    let mut w = World::new(World::seed_from_env(148));
    let attacker = null_config().rehandshake_interval(Some(Duration::from_millis(2)));
    let a = w.add_node(attacker);
    let b = w.add_node(null_config());
    let _ = establish(&mut w, a, b);
    let ops_before = w.node(b).stats().x25519_ops;
    let secs = 20;
    w.run_for(Duration::from_secs(secs));
    let ops = w.node(b).stats().x25519_ops - ops_before;
    let min = Config::default().rehandshake_min_interval;
    let allowed = 2 * (1 + secs / min.as_secs().max(1));
    std::println!("re-handshake flood: responder spent {ops} X25519 in {secs} s (allowed {allowed})");
    assert!(ops <= allowed, "responder X25519 ops {ops} > {allowed}");
    assert!(w.established(b).len() == 1 && w.nodes[b].events.iter().all(|e| !matches!(e, Event::Closed { .. })));
}
