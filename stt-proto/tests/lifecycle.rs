//! Session lifecycle in the simulator: idle timeout, keepalive, close and drain,
//! time going backwards (spec §8).

use std::time::Duration;

use stt_proto::sim::{LinkConfig, World};
use stt_proto::{CloseReason, Config, DropReason, Input, InputOutcome, Instant, SessionId};

mod common;

use common::closed_at;

fn check<T>(r: Result<T, stt_proto::sim::SimError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn pair(seed: u64, config: Config) -> (World, usize, usize, SessionId, SessionId) {
    let mut w = World::new(World::seed_from_env(seed));
    let a = w.add_node(config.clone());
    let b = w.add_node(config);
    let sa = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, sa) && w.established(b).len() == 1, 1000));
    let sb = w.established(b)[0].0;
    (w, a, b, sa, sb)
}

/// [LC-4]: with keepalive off, each side closes exactly `idle_timeout` after the last
/// authenticated packet it received, in virtual time, and sends nothing.
#[test]
fn idle_timeout_exactly_on_time() {
    let config = Config::default().keepalive_active(None).keepalive_idle(None).idle_timeout(Duration::from_secs(5));
    let mut w = World::new(World::seed_from_env(20));
    w.capture = true;
    let a = w.add_node(config.clone());
    let b = w.add_node(config);
    let sa = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, sa) && w.established(b).len() == 1, 1000));
    let sb = w.established(b)[0].0;
    w.run_for(Duration::from_secs(1));
    // Links delay 10 ms: the last packet each side received left the other 10 ms earlier.
    let last_from = |w: &World, n: usize| w.captured.iter().filter(|c| c.from_node == n).map(|c| c.at).max().unwrap();
    let (last_a, last_b) = (last_from(&w, a), last_from(&w, b));
    let sent = (w.nodes[a].bytes_sent, w.nodes[b].bytes_sent);
    w.run_for(Duration::from_secs(10));
    let expect = |t: Instant| t.saturating_add(Duration::from_millis(10) + Duration::from_secs(5));
    assert_eq!(closed_at(&w, b, sb), Some((expect(last_a), CloseReason::IdleTimeout)));
    assert_eq!(closed_at(&w, a, sa), Some((expect(last_b), CloseReason::IdleTimeout)));
    assert_eq!((w.nodes[a].bytes_sent, w.nodes[b].bytes_sent), sent, "idle timeout is silent");
    assert_eq!(w.node(a).session_ids().count() + w.node(b).session_ids().count(), 0);
}

/// [LC-2] [LC-3]: keepalives keep an idle session open far past the idle timeout.
#[test]
fn keepalives_prevent_idle_timeout() {
    // 1200-byte datagrams: no path-MTU probes among the packets counted.
    let config = Config::default()
        .keepalive_idle(Some(Duration::from_secs(2)))
        .idle_timeout(Duration::from_secs(5))
        .max_udp_payload(1200);
    let (mut w, a, b, sa, sb) = pair(21, config);
    w.run_for(Duration::from_secs(120));
    assert!(w.is_established(a, sa) && w.is_established(b, sb));
    assert!(closed_at(&w, a, sa).is_none() && closed_at(&w, b, sb).is_none());
    // Each side sends its keepalive every 2 s; whichever side's keepalive leaves just
    // after the other's arrived carries the ACK in it, the other side answers with an ACK
    // (which side depends only on when each became established).
    let pa = w.node(a).session(sa).unwrap().stats().packets_out;
    let pb = w.node(b).session(sb).unwrap().stats().packets_out;
    assert!(pa >= 55 && pb >= 55, "one keepalive per 2 s from each side: {pa} {pb}");
    assert!(pa + pb <= 190, "at most three packets per 2 s in all: {pa} + {pb}");
}

/// [LC-4] with one side gone: the survivor times out despite its own keepalives.
#[test]
fn dead_peer_is_detected() {
    let config = Config::default().keepalive_idle(Some(Duration::from_secs(2))).idle_timeout(Duration::from_secs(5));
    let (mut w, a, b, sa, _) = pair(22, config);
    w.restart(b);
    w.run_for(Duration::from_secs(10));
    assert!(matches!(closed_at(&w, a, sa), Some((_, CloseReason::IdleTimeout))));
}

/// [LC-5] [LC-6] [LC-7]: close sends SESSION_CLOSE with the code, the peer drains, both
/// sides free the session after three PTOs, later packets are answered with nothing.
#[test]
fn close_drains_and_frees() {
    let (mut w, a, b, sa, sb) = pair(23, Config::default());
    w.capture = true;
    let now = w.now;
    w.node(a).session(sa).unwrap().close(now, 7);
    w.flush();
    assert!(matches!(closed_at(&w, a, sa), Some((_, CloseReason::Local(7)))));
    check(w.drive_until(|w| closed_at(w, b, sb).is_some(), 100));
    assert!(matches!(closed_at(&w, b, sb), Some((_, CloseReason::Remote(7)))));
    let b_sent = w.nodes[b].bytes_sent;
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.nodes[b].bytes_sent, b_sent, "a draining session sends nothing");
    assert_eq!(w.node(a).session_ids().count(), 0);
    assert_eq!(w.node(b).session_ids().count(), 0);
    // A late protected packet for the closed session: answered with nothing.
    let late = w.captured.iter().rev().find(|c| c.from_node == a && c.data[0] & 0xfe == 0x40).unwrap().data.clone();
    let from = w.nodes[a].addr;
    assert_eq!(w.inject(b, from, &late), InputOutcome::Dropped(DropReason::UnknownSession));
    w.flush();
    assert_eq!(w.nodes[b].bytes_sent, b_sent);
}

/// [LC-5]: the SESSION_CLOSE is sent even when the driver's next poll for output comes
/// after the closing period ran out (a late driver): the peer learns the code.
#[test]
fn close_is_sent_even_when_polled_late() {
    let (mut w, a, b, sa, sb) = pair(25, Config::default());
    let now = w.now;
    w.node(a).session(sa).unwrap().close(now, 7);
    let late = now.saturating_add(Duration::from_secs(10));
    let _ = w.node(a).handle_input(Input::Timeout { now: late });
    w.flush();
    check(w.drive_until(|w| closed_at(w, b, sb).is_some(), 200));
    assert!(matches!(closed_at(&w, b, sb), Some((_, CloseReason::Remote(7)))));
}

/// [LC-11]: a close with a reason phrase delivers the phrase with the code (cut to 255 bytes
/// at a character boundary); a close without one leaves none.
#[test]
fn close_reason_reaches_the_peer() {
    let (mut w, a, b, sa, sb) = pair(26, Config::default());
    let now = w.now;
    let long = "é".repeat(200);
    w.node(a).session(sa).unwrap().close_with_reason(now, 4, &long);
    w.flush();
    check(w.drive_until(|w| closed_at(w, b, sb).is_some(), 100));
    assert!(matches!(closed_at(&w, b, sb), Some((_, CloseReason::Remote(4)))));
    let got = w.node(b).session(sb).unwrap().peer_close_reason().map(str::to_owned).unwrap();
    assert!(got.len() <= 255 && got.len() >= 254 && long.starts_with(&got), "{} bytes", got.len());
    assert_eq!(w.node(a).session(sa).unwrap().peer_close_reason(), None, "the closing side has no peer reason");

    let (mut w, a, b, sa, sb) = pair(27, Config::default());
    let now = w.now;
    w.node(a).session(sa).unwrap().close(now, 4);
    w.flush();
    check(w.drive_until(|w| closed_at(w, b, sb).is_some(), 100));
    assert_eq!(w.node(b).session(sb).unwrap().peer_close_reason(), None);
}

/// [LC-6]: a lost SESSION_CLOSE is repeated when the peer's packets keep arriving.
#[test]
fn lost_close_is_repeated() {
    let config = Config::default().keepalive_idle(Some(Duration::from_millis(100))).keepalive_active(None);
    let (mut w, a, b, sa, sb) = pair(24, config);
    let now = w.now;
    w.set_link(
        a,
        b,
        LinkConfig { blackholes: vec![(now, now.saturating_add(Duration::from_millis(5)))], ..Default::default() },
    );
    w.node(a).session(sa).unwrap().close(now, 9);
    w.run_for(Duration::from_secs(2));
    assert!(matches!(closed_at(&w, b, sb), Some((_, CloseReason::Remote(9)))), "{:?}", w.nodes[b].events);
}

/// Time going backwards never panics and is counted.
#[test]
fn backwards_time_is_clamped() {
    let (mut w, a, _, sa, _) = pair(25, Config::default());
    let later = w.now.saturating_add(Duration::from_secs(1));
    let node = w.node(a);
    let _ = node.handle_input(Input::Timeout { now: later });
    let _ = node.handle_input(Input::Timeout { now: Instant::ZERO });
    let _ = node.handle_input(Input::Datagram {
        now: Instant::ZERO,
        from: "192.0.2.9:1".parse::<std::net::SocketAddr>().unwrap().into(),
        data: &mut [0x40; 40],
    });
    assert_eq!(node.stats().time_went_backwards, 2);
    assert!(node.next_deadline().is_some_and(|d| d >= later));
    let mut buf = vec![0u8; 1500];
    let _ = node.poll_output(&mut buf);
    w.run_for(Duration::from_secs(1));
    assert!(w.is_established(a, sa));
}

/// [LC-9]: a node shut down closes its sessions; the peer sees the close.
#[test]
fn node_shutdown_closes_sessions() {
    let (mut w, a, b, sa, sb) = pair(26, Config::default());
    let now = w.now;
    w.node(a).close(now);
    check(w.drive_until(|w| closed_at(w, b, sb).is_some(), 100));
    assert!(matches!(closed_at(&w, a, sa), Some((_, CloseReason::NodeClosed))));
    assert!(matches!(closed_at(&w, b, sb), Some((_, CloseReason::RemoteTransport(stt_proto::TransportCode::NoError)))));
    let to = w.addr(b);
    assert_eq!(w.node(a).connect(now, to, None), Err(stt_proto::ConnectError::NodeClosed));
}
