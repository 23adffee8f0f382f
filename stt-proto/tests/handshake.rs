//! Handshake behaviour in the simulator (spec §6). Requirement ids in brackets.

use stt_proto::sim::{LinkConfig, World};
use stt_proto::{Config, DropReason, Event, HandshakeFailure, Identity, InputOutcome, TransportCode};

fn seed(default: u64) -> u64 {
    World::seed_from_env(default)
}

fn check<T>(r: Result<T, stt_proto::sim::SimError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// [HS-1] [HS-10] [HS-11]: both directions complete; each side learns the other's id.
#[test]
fn handshake_both_ways_learns_node_ids() {
    let mut w = World::new(seed(1));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    let sa = w.connect(a, b);
    check(w.drive_until(|w| w.established(a).len() == 1 && w.established(b).len() == 1, 1000));
    assert_eq!(w.established(a)[0], (sa, w.node_id(b)));
    assert_eq!(w.established(b)[0].1, w.node_id(a));
    // And the other way round, on the same nodes.
    let sb = w.connect(b, a);
    check(w.drive_until(|w| w.is_established(b, sb) && w.established(a).len() == 2, 1000));
    let ids = |w: &World, i| w.established(i).iter().map(|e| e.1).collect::<Vec<_>>();
    assert!(ids(&w, b).iter().all(|p| *p == w.node_id(a)));
    assert!(ids(&w, a).iter().all(|p| *p == w.node_id(b)));
    // 8 X25519 operations per handshake end to end (plus one static key each at start).
    let ops = w.node(a).stats().x25519_ops + w.node(b).stats().x25519_ops;
    assert_eq!(ops, 2 + 2 * 8, "X25519 operations");
}

/// [HS-11]: a connect naming the wrong node id aborts.
#[test]
fn wrong_expected_peer_aborts() {
    let mut w = World::new(seed(2));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    let c = w.add_node(Config::default());
    let to = w.addr(b);
    let wrong = w.node_id(c);
    let now = w.now;
    let s = w.node(a).connect(now, to, Some(wrong)).unwrap();
    check(w.drive_until(|w| !w.nodes[a].events.is_empty(), 1000));
    assert_eq!(w.nodes[a].events[0], Event::HandshakeFailed { session: s, reason: HandshakeFailure::PeerMismatch });
    w.run_for(std::time::Duration::from_secs(30));
    assert!(w.established(a).is_empty() && w.established(b).is_empty());
    assert_eq!(w.node(b).session_ids().count(), 0, "the responder's half-open state expired");
    // ... and the responder counted it, so its operator can see why nobody arrived.
    assert_eq!(w.node(b).stats().handshakes_abandoned, 1);
    assert_eq!(w.node(a).stats().handshakes_abandoned, 0);
}

/// [HS-22]: the initiator is established on sending AUTH_PROOF and sends at once; when
/// AUTH_PROOF is lost, the first PTO probe carries it again, so the responder is
/// established after one PTO instead of the 300 ms handshake retransmission.
#[test]
fn lost_auth_proof_is_repeated_with_the_first_probe() {
    let mut w = World::new(seed(31));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    // 10 ms links: HELLO leaves at 0, CHALLENGE arrives at 20 ms, AUTH_PROOF leaves then.
    w.set_link(
        a,
        b,
        LinkConfig {
            blackholes: vec![(stt_proto::Instant::from_micros(15_000), stt_proto::Instant::from_micros(25_000))],
            ..Default::default()
        },
    );
    let s = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, s), 1000));
    let now = w.now;
    assert!(now < stt_proto::Instant::from_micros(25_000), "established when AUTH_PROOF left: {now:?}");
    let cwnd = w.node(a).session(s).unwrap().stats().cwnd;
    let id = w.node(a).session(s).unwrap().open_uni(now).unwrap();
    w.node(a).session(s).unwrap().write(now, id, b"early").unwrap();
    check(w.drive_until(|w| w.established(b).len() == 1, 10_000));
    let at = w.now;
    assert!(at < stt_proto::Instant::from_micros(250_000), "responder established at {at:?}, not after one PTO");
    // The packet the responder could not open is resent, and its loss is no congestion
    // signal (RFC 9002 §7.5): it was sent before the responder held the keys.
    let sb = w.established(b)[0].0;
    check(w.drive_until(
        |w| {
            w.node(b).session(sb).is_some_and(|s| s.stats().bytes_in > 0)
                && w.nodes[b].events.iter().any(|e| {
                    matches!(e, stt_proto::Event::StreamOpened { .. } | stt_proto::Event::StreamReadable { .. })
                })
        },
        10_000,
    ));
    w.run_for(std::time::Duration::from_millis(500));
    let st = w.node(a).session(s).unwrap().stats();
    assert!(st.lost >= 1, "the early packet was declared lost: {st:?}");
    assert!(st.cwnd >= cwnd, "window {} after the keyless loss, {cwnd} before", st.cwnd);
}

/// [HS-22]: protected packets that overtake their AUTH_PROOF (the initiator sends right
/// behind it; the path reorders) are held by the responder and processed once the
/// AUTH_PROOF is accepted, not dropped and left to loss recovery; `early_packets(0)` drops
/// them.
#[test]
fn packets_ahead_of_auth_proof_wait_for_it() {
    // Returns what injecting the data packets gave, and whether the responder had the
    // early data right after the AUTH_PROOF.
    fn ahead(responder: Config) -> (Vec<InputOutcome>, bool) {
        let mut w = World::new(seed(32));
        let a = w.add_node(Config::default());
        let b = w.add_node(responder);
        w.capture = true;
        // AUTH_PROOF and the data right behind it (sent at 20 ms) are lost on the link;
        // they are delivered by hand below, the data first.
        w.set_link(
            a,
            b,
            LinkConfig {
                blackholes: vec![(stt_proto::Instant::from_micros(15_000), stt_proto::Instant::from_micros(25_000))],
                ..Default::default()
            },
        );
        let s = w.connect(a, b);
        check(w.drive_until(|w| w.is_established(a, s), 1000));
        let now = w.now;
        let id = w.node(a).session(s).unwrap().open_uni(now).unwrap();
        w.node(a).session(s).unwrap().write(now, id, b"early").unwrap();
        w.flush();
        let from = w.nodes[a].addr;
        let sent = |keep: fn(u8) -> bool| {
            w.captured
                .iter()
                .filter(|c| c.from_node == a && keep(c.data[0]))
                .map(|c| c.data.clone())
                .collect::<Vec<_>>()
        };
        let (auth, data) = (sent(|t| t == 0x03), sent(|t| t & 0xfe == 0x40));
        assert_eq!(auth.len(), 1, "one AUTH_PROOF");
        assert!(!data.is_empty(), "data sent right behind AUTH_PROOF");
        let outcomes = data.iter().map(|d| w.inject(b, from, d)).collect();
        assert!(w.established(b).is_empty(), "nothing happens before AUTH_PROOF");
        assert_eq!(w.inject(b, from, &auth[0]), InputOutcome::Consumed);
        w.flush();
        assert_eq!(w.established(b).len(), 1);
        let got =
            w.nodes[b].events.iter().any(|e| matches!(e, Event::StreamOpened { .. } | Event::StreamReadable { .. }));
        (outcomes, got)
    }
    let (held, got) = ahead(Config::default());
    assert!(held.iter().all(|o| *o == InputOutcome::Consumed), "held, not dropped: {held:?}");
    assert!(got, "the early data arrived with AUTH_PROOF");
    let (dropped, got) = ahead(Config::default().early_packets(0));
    assert!(dropped.iter().all(|o| *o == InputOutcome::Dropped(DropReason::UnexpectedState)), "{dropped:?}");
    assert!(!got, "dropped early data waits for the initiator's loss recovery");
}

/// [HS-20]: the allow-list is applied after AUTH_PROOF and refuses with its own code. The
/// initiator was established when it sent AUTH_PROOF ([HS-22]), so it sees its session closed
/// by the peer with NOT_ALLOWED (as a TLS 1.3 client learns of a refused client certificate).
#[test]
fn allow_list_refusal_closes_with_code() {
    let mut w = World::new(seed(3));
    let a = w.add_node(Config::default());
    let other = w.random_node_seed().node_id();
    let b = w.add_node(Config::default().allow_list(Some(vec![other])));
    let s = w.connect(a, b);
    check(w.drive_until(|w| w.nodes[a].events.len() >= 2, 1000));
    assert_eq!(w.nodes[a].events[0], Event::Established { session: s, peer: w.node_id(b) });
    assert_eq!(
        w.nodes[a].events[1],
        Event::Closed { session: s, reason: stt_proto::CloseReason::RemoteTransport(TransportCode::NotAllowed) }
    );
    assert!(w.nodes[b].events.is_empty(), "no Established on the refusing side");
    // An allowed peer gets in.
    let allowed = w.node_id(a);
    let d = w.add_node(Config::default().allow_list(Some(vec![allowed])));
    let s2 = w.connect(a, d);
    check(w.drive_until(|w| w.is_established(a, s2), 1000));
}

/// [HS-6] [HS-13]: wrong shared seed and junk: no session, no state, nothing sent, 0 X25519.
#[test]
fn wrong_seed_and_junk_cost_nothing() {
    let mut w = World::new(seed(4));
    let a = w.add_node(Config::default());
    let stranger_seed = w.random_node_seed();
    let mut other_group = [0u8; 32];
    other_group[0] = 1;
    let identity = Identity::new(stranger_seed, stt_proto::SharedSeed::from_bytes(other_group));
    let m = w.add_node_with(Config::default(), identity, Some(stt_proto::sim::SIM_UNIX_EPOCH));
    let ops_before = w.node(a).stats().x25519_ops;
    let sent_before = w.nodes[a].bytes_sent;
    w.connect(m, a);
    w.run_for(std::time::Duration::from_secs(15));
    assert!(w.established(a).is_empty());
    assert_eq!(w.node(a).session_ids().count(), 0, "no state");
    assert_eq!(w.nodes[a].bytes_sent, sent_before, "nothing sent");
    assert_eq!(w.node(a).stats().x25519_ops, ops_before, "no X25519");
    assert!(w.node(a).stats().dropped(DropReason::AuthFailed) >= 3, "HELLO retransmissions all refused");
    assert!(
        matches!(w.nodes[m].events[..], [Event::HandshakeFailed { reason: HandshakeFailure::Timeout, .. }]),
        "HandshakeFailed after the timeout"
    );

    // Random junk of every size, every type byte.
    let from = "198.51.100.7:999".parse().unwrap();
    let mut junk = vec![0u8; 2100];
    let mut x = 0x1234_5678u32;
    for len in (0..2100).step_by(7) {
        for b in junk.iter_mut().take(len) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        if len > 0 {
            junk[0] = (len % 6) as u8;
        }
        let out = w.inject(a, from, &junk[..len]);
        assert_ne!(out, InputOutcome::Consumed, "junk of {len} bytes consumed");
    }
    w.flush();
    assert_eq!(w.nodes[a].bytes_sent, sent_before, "junk answered");
    assert_eq!(w.node(a).stats().x25519_ops, ops_before, "junk cost a DH");
    assert_eq!(w.node(a).session_ids().count(), 0);
}

/// [HS-5] [HS-4]: before the peer proves the seed, bytes out ≤ bytes in, for every input size.
#[test]
fn no_amplification_before_proof() {
    let mut w = World::new(seed(5));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    w.capture = true;
    w.connect(a, b);
    check(w.drive_until(|w| w.captured.iter().any(|c| c.data[0] == 0x02), 1000));
    let hello: Vec<u8> = w.captured.iter().find(|c| c.data[0] == 0x01).unwrap().data.clone();
    let from = "198.51.100.9:5".parse().unwrap();
    // Truncated and extended HELLOs from a spoofed address.
    for len in 0..hello.len() + 64 {
        let mut d = hello.clone();
        d.resize(len, 0);
        let before = w.nodes[b].bytes_sent;
        let _ = w.inject(b, from, &d);
        w.flush();
        let sent = w.nodes[b].bytes_sent - before;
        assert!(sent as usize <= len, "{sent} bytes sent for a {len}-byte input");
    }
    let challenge_len = w.captured.iter().find(|c| c.data[0] == 0x02).unwrap().data.len();
    assert!(challenge_len <= hello.len(), "CHALLENGE {challenge_len} > HELLO {}", hello.len());
    assert_eq!(hello.len(), 1200, "HELLO padded to 1200");
}

/// [HS-7] [HS-8]: replayed HELLO from another address: no new session; existing untouched.
/// Retransmitted HELLO (lost CHALLENGE): one session, no extra DH.
#[test]
fn replayed_and_retransmitted_hello() {
    let mut w = World::new(seed(6));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    w.capture = true;
    let s = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, s) && w.established(b).len() == 1, 1000));
    let hello = w.captured.iter().find(|c| c.data[0] == 0x01).unwrap().data.clone();
    let ops = w.node(b).stats().x25519_ops;
    let sessions = w.node(b).session_ids().count();
    let out = w.inject(b, "198.51.100.1:1".parse().unwrap(), &hello);
    assert_eq!(out, InputOutcome::Dropped(DropReason::Replay));
    // Same address, after the session is established: still no new state.
    let a_addr = w.nodes[a].addr;
    let out = w.inject(b, a_addr, &hello);
    assert_eq!(out, InputOutcome::Dropped(DropReason::Replay));
    assert_eq!(w.node(b).stats().x25519_ops, ops, "no DH for a replay");
    assert_eq!(w.node(b).session_ids().count(), sessions);
    assert!(w.is_established(a, s));

    // Lost CHALLENGE: the initiator retransmits the identical HELLO and gets the stored CHALLENGE.
    let mut w = World::new(seed(7));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    let cut = w.now.saturating_add(std::time::Duration::from_millis(100));
    w.set_link(b, a, LinkConfig { blackholes: vec![(w.now, cut)], ..Default::default() });
    let s = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, s) && w.established(b).len() == 1, 1000));
    assert!(w.node(b).stats().challenges_resent >= 1);
    assert_eq!(w.node(b).stats().x25519_ops, 1 + 4, "responder: static + 4, no extra DH");
    assert_eq!(w.node(b).stats().handshakes_started, 1);
    assert_eq!(w.established(b).len(), 1);
}

/// [HS-16]: a re-sent AUTH_PROOF (lost FINAL) gets one FINAL and changes no state;
/// a replayed AUTH_PROOF creates nothing.
#[test]
fn retransmitted_and_replayed_auth_proof() {
    let mut w = World::new(seed(8));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    w.capture = true;
    // Lose B→A for a while after the CHALLENGE went out: FINAL is lost.
    w.set_link(
        b,
        a,
        LinkConfig {
            blackholes: vec![(stt_proto::Instant::from_micros(15_000), stt_proto::Instant::from_micros(400_000))],
            ..Default::default()
        },
    );
    let s = w.connect(a, b);
    // The initiator is established on sending AUTH_PROOF ([HS-22]) and repeats it until
    // something authenticated arrives from the responder.
    check(w.drive_until(|w| w.is_established(a, s) && w.node(b).stats().finals_resent >= 1, 1000));
    assert_eq!(w.established(b).len(), 1);
    assert_eq!(w.node(b).stats().x25519_ops, 5);
    let auth = w.captured.iter().find(|c| c.data[0] == 0x03).unwrap().data.clone();
    let ops = w.node(b).stats().x25519_ops;
    let out = w.inject(b, "198.51.100.3:3".parse().unwrap(), &auth);
    assert_eq!(out, InputOutcome::Consumed, "one FINAL for a repeated AUTH_PROOF");
    let mut tampered = auth.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(w.inject(b, "198.51.100.3:3".parse().unwrap(), &tampered), InputOutcome::Dropped(DropReason::Replay));
    assert_eq!(w.node(b).stats().x25519_ops, ops);
    assert_eq!(w.established(b).len(), 1);
    assert!(w.is_established(a, s));
}

/// [HS-14]: 50 sequential handshakes complete under 30 % loss both ways.
#[test]
fn handshake_under_30_percent_loss() {
    let mut w = World::new(seed(9));
    w.set_default_link(LinkConfig { loss: 0.3, ..Default::default() });
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    for _ in 0..50 {
        let s = w.connect(a, b);
        check(w.drive_until(
            |w| {
                w.is_established(a, s)
                    || !w.nodes[a]
                        .events
                        .iter()
                        .all(|e| !matches!(e, Event::HandshakeFailed { session, .. } if *session == s))
            },
            100_000,
        ));
        assert!(w.is_established(a, s), "handshake failed under 30% loss (seed {})", w.seed());
    }
}

/// [HS-9]: the COOKIE path: a responder whose clock is skewed answers COOKIE; the retry
/// with a valid cookie MAC is accepted.
#[test]
fn cookie_path_with_skewed_clock() {
    let mut w = World::new(seed(10));
    let a = w.add_node(Config::default());
    let seed_b = w.random_node_seed();
    let skewed = stt_proto::UnixTime::from_millis(stt_proto::sim::SIM_UNIX_EPOCH.as_millis() + 3_600_000);
    let b = w.add_node_with(Config::default(), Identity::new(seed_b, w.shared_seed()), Some(skewed));
    let s = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, s), 1000));
    assert_eq!(w.node(b).stats().cookies_sent, 1);
    assert_eq!(w.node(b).stats().handshakes_started, 1);
    // A node with no wall clock at all takes the same path.
    let seed_c = w.random_node_seed();
    let c = w.add_node_with(Config::default(), Identity::new(seed_c, w.shared_seed()), None);
    let s = w.connect(a, c);
    check(w.drive_until(|w| w.is_established(a, s), 1000));
    assert_eq!(w.node(c).stats().cookies_sent, 1);
}

/// [HS-9]: under load (handshake rate exceeded) new initiators get a COOKIE, then succeed.
#[test]
fn cookie_path_under_load() {
    let mut w = World::new(seed(11));
    let b = w.add_node(Config::default().handshake_rate(1).handshake_burst(1));
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let a = w.add_node(Config::default());
        sessions.push((a, w.connect(a, b)));
    }
    check(w.drive_until(
        |w| sessions.iter().all(|(a, s)| w.is_established(*a, *s)) && w.established(b).len() == 4,
        10_000,
    ));
    assert!(w.node(b).stats().cookies_sent >= 3, "cookies: {}", w.node(b).stats().cookies_sent);
    assert_eq!(w.established(b).len(), 4);
}

/// [RL-1]: without a common AEAD the responder refuses (the forged-choice downgrade is a unit
/// test in `node.rs`); with one, the responder's preference among the offer wins.
#[test]
fn aead_offer_and_choice() {
    use stt_proto::crypto::AeadAlg;
    let mut w = World::new(seed(12));
    let a = w.add_node(Config::default().aeads(&[AeadAlg::Aes256Gcm]));
    let b = w.add_node(Config::default().aeads(&[AeadAlg::ChaCha20Poly1305]));
    w.connect(a, b);
    w.run_for(std::time::Duration::from_secs(1));
    assert!(w.established(a).is_empty());
    assert_eq!(w.node(b).stats().dropped(DropReason::NoCommonAead), w.node(b).stats().datagrams_in);
    // Both agree when they share one; the responder's preference wins among the offer.
    let c = w.add_node(Config::default().aeads(&[AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm]));
    let d = w.add_node(Config::default().aeads(&[AeadAlg::Aes256Gcm, AeadAlg::ChaCha20Poly1305]));
    let s = w.connect(c, d);
    check(w.drive_until(|w| w.is_established(c, s), 1000));
    assert_eq!(w.node(c).session(s).unwrap().aead(), Some(AeadAlg::Aes256Gcm));
}

/// [HS-21]: simultaneous open yields one session, `Established` once on each side.
#[test]
fn simultaneous_open_yields_one_session() {
    for k in 0..5 {
        let mut w = World::new(seed(100 + k));
        let a = w.add_node(Config::default());
        let b = w.add_node(Config::default());
        w.connect(a, b);
        w.connect(b, a);
        w.run_for(std::time::Duration::from_secs(2));
        assert_eq!(w.established(a).len(), 1, "seed {}: {:?}", w.seed(), w.nodes[a].events);
        assert_eq!(w.established(b).len(), 1, "seed {}: {:?}", w.seed(), w.nodes[b].events);
        let sa = w.established(a)[0].0;
        let sb = w.established(b)[0].0;
        assert!(w.is_established(a, sa) && w.is_established(b, sb));
        assert_eq!(w.node(a).session_ids().count(), 1, "the losing session is gone");
        assert_eq!(w.node(b).session_ids().count(), 1);
    }
}

/// [HS-21]: a restarted peer's new session replaces the stale one.
#[test]
fn peer_restart_replaces_stale_session() {
    let mut w = World::new(seed(13));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    let s = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, s) && w.established(b).len() == 1, 1000));
    let old_b = w.established(b)[0].0;
    // a loses all state and comes back with the same identity and address.
    w.restart(a);
    let s2 = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, s2), 1000));
    w.run_for(std::time::Duration::from_secs(1));
    assert!(w.node(b).session(old_b).is_none(), "stale session replaced and freed");
    assert_eq!(w.established(b).len(), 2);
    assert!(w.nodes[b].events.iter().any(|e| matches!(e, Event::Closed { session, reason: stt_proto::CloseReason::LocalTransport(TransportCode::Superseded) } if *session == old_b)));
    assert_eq!(w.node(b).session_ids().count(), 1);
}

/// [ID-2]: a responder holding the old and the new shared seed accepts initiators on either.
#[test]
fn shared_seed_rotation() {
    let mut w = World::new(seed(14));
    let old = w.shared_seed();
    let new = stt_proto::SharedSeed::from_bytes([0x5a; 32]);
    let r_seed = w.random_node_seed();
    let responder = Identity::new(r_seed, new.clone()).with_shared_seed(old.clone()).unwrap();
    let r = w.add_node_with(Config::default(), responder, Some(stt_proto::sim::SIM_UNIX_EPOCH));
    let old_member = w.add_node(Config::default());
    let n_seed = w.random_node_seed();
    let new_member =
        w.add_node_with(Config::default(), Identity::new(n_seed, new), Some(stt_proto::sim::SIM_UNIX_EPOCH));
    let s1 = w.connect(old_member, r);
    let s2 = w.connect(new_member, r);
    check(w.drive_until(|w| w.is_established(old_member, s1) && w.is_established(new_member, s2), 1000));
    // The two members do not share a seed with each other.
    let s3 = w.connect(old_member, new_member);
    w.run_for(std::time::Duration::from_secs(20));
    assert!(!w.is_established(old_member, s3));
    assert!(matches!(
        w.nodes[old_member].events.last(),
        Some(Event::HandshakeFailed { reason: HandshakeFailure::Timeout, .. })
    ));
}

/// [PK-4]: session ids carry the configured routing prefix.
#[test]
fn session_ids_carry_routing_prefix() {
    let mut w = World::new(seed(15));
    let a = w.add_node(Config::default().session_id_prefix(&[0xab, 0xcd]));
    let b = w.add_node(Config::default().session_id_prefix(&[0x01]));
    w.capture = true;
    let s = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, s), 1000));
    w.run_for(std::time::Duration::from_secs(3));
    for c in &w.captured {
        match c.data[0] {
            0x01 => assert_eq!(&c.data[2..4], &[0xab, 0xcd], "HELLO sender sid"),
            0x02 => assert_eq!((c.data[2], &c.data[10..12]), (0x01, &[0xab, 0xcd][..]), "CHALLENGE sids"),
            0x40 | 0x41 if c.from_node == a => assert_eq!(c.data[1], 0x01, "to b"),
            0x40 | 0x41 => assert_eq!(&c.data[1..3], &[0xab, 0xcd], "to a"),
            _ => {}
        }
    }
}

/// `Node::precompute` moves each side's ephemeral key generation off the critical path:
/// the handshake then costs 3 X25519 operations per side while it runs, 4 in all per side.
#[test]
fn precomputed_ephemerals_take_the_keygen_off_the_handshake() {
    let mut w = World::new(seed(40));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    assert!(w.node(a).precompute() && w.node(b).precompute());
    assert!(!w.node(a).precompute(), "one spare at a time");
    let before = [w.node(a).stats().x25519_ops, w.node(b).stats().x25519_ops];
    assert_eq!(before, [2, 2], "static key plus the precomputed ephemeral");
    let sa = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, sa) && w.established(b).len() == 1, 1000));
    let during = [w.node(a).stats().x25519_ops - before[0], w.node(b).stats().x25519_ops - before[1]];
    assert_eq!(during, [3, 3], "no ephemeral generation during the handshake");
    // The spare is used up; the next handshake computes its own, and still completes.
    assert!(w.node(a).precompute());
    let c = w.add_node(Config::default());
    let sc = w.connect(c, a);
    check(w.drive_until(|w| w.is_established(c, sc), 1000));
}
