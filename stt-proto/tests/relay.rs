//! Relays and hole punching in the simulator (spec §12): registration, forwarding by node
//! id, refusal, punching onto a direct path, and falling back to the relay.

use std::time::Duration;

use stt_proto::sim::World;
use stt_proto::{Config, Event, NodeId, PathAddr, RelayConfig, RelayStatus, SessionId};

mod common;

use common::{check, closed_at, pattern, transfer, transfer_with};

/// A relay node and two members registered with it. Returns (relay, a, b, a's relay
/// session, b's relay session).
pub fn relay_world(w: &mut World, member: Config, relay: RelayConfig) -> (usize, usize, usize, SessionId, SessionId) {
    let r = w.add_node(Config::default().relay(Some(relay)));
    let a = w.add_node(member.clone());
    let b = w.add_node(member);
    for i in [a, b] {
        let addr = w.nodes[i].addr;
        w.node(i).set_local_addresses(&[addr]);
    }
    let ra = w.connect(a, r);
    let rb = w.connect(b, r);
    check(w.drive_until(|w| w.is_established(a, ra) && w.is_established(b, rb), 10_000));
    assert!(w.node(a).session(ra).unwrap().register_relay());
    assert!(w.node(b).session(rb).unwrap().register_relay());
    check(w.drive_until(
        |w| {
            [(a, ra), (b, rb)].iter().all(|&(i, s)| {
                matches!(w.node(i).session(s).unwrap().relay_status(), Some(RelayStatus::Registered { .. }))
            })
        },
        10_000,
    ));
    (r, a, b, ra, rb)
}

/// Steps until `a`'s session `sa` runs on the direct path to `b`.
fn wait_direct(w: &mut World, a: usize, sa: SessionId, b: usize) {
    let b_addr = w.nodes[b].addr;
    check(w.drive_until(|w| w.node(a).session(sa).unwrap().remote() == PathAddr::Udp(b_addr), 100_000));
}

fn connect_via(w: &mut World, a: usize, ra: SessionId, b: usize) -> (SessionId, SessionId) {
    let peer: NodeId = w.node_id(b);
    let now = w.now;
    let sa = w.node(a).connect_via_relay(now, ra, peer).unwrap();
    check(w.drive_until(|w| w.is_established(a, sa) && !w.established(b).is_empty(), 10_000));
    let me = w.node_id(a);
    let sb = w.established(b).into_iter().find(|(_, p)| *p == me).unwrap().0;
    (sa, sb)
}

/// [RY-1] [RY-2] [RY-3] [RY-4]: members register, learn their reflexive address, and a
/// session opened by node id through the relay carries a stream byte-exact while the relay
/// forwards what it cannot read.
#[test]
fn relay_forwards_a_session_by_node_id() {
    let mut w = World::new(World::seed_from_env(900));
    let (r, a, b, ra, _rb) = relay_world(&mut w, Config::default().keep_relay_path(true), RelayConfig::default());
    let observed = w.node(a).session(ra).unwrap().relay_status();
    let a_addr = w.nodes[a].addr;
    assert_eq!(observed, Some(RelayStatus::Registered { observed: Some(a_addr) }));
    assert!(w.nodes[a].events.iter().any(|e| matches!(e, Event::RelayStatus { .. })));
    let (sa, sb) = connect_via(&mut w, a, ra, b);
    assert!(w.node(a).session(sa).unwrap().remote().is_relayed());
    let data = pattern(300_000, 3);
    assert!(transfer(&mut w, a, b, sa, sb, &data, 1_000_000) == data);
    let forwarded = w.node(r).stats().relay_forwarded_bytes;
    assert!(forwarded > 300_000, "the relay forwarded {forwarded} bytes");
    // Nothing went directly between the members.
    assert_eq!(w.delivered_bytes(a, b), 0);
    assert_eq!(w.delivered_bytes(b, a), 0);
    assert!(w.node(b).session(sb).unwrap().remote().is_relayed());
}

/// [RY-5]: a relay with a member list refuses others; they cannot have traffic forwarded.
#[test]
fn relay_refuses_members_not_on_its_list() {
    let mut w = World::new(World::seed_from_env(901));
    let r = w.add_node(Config::default().relay(Some(RelayConfig::default().members(Some(vec![])))));
    let a = w.add_node(Config::default());
    let s = w.connect(a, r);
    check(w.drive_until(|w| w.is_established(a, s), 10_000));
    w.node(a).session(s).unwrap().register_relay();
    check(w.drive_until(|w| w.node(a).session(s).unwrap().relay_status() == Some(RelayStatus::Refused), 10_000));
    assert_eq!(w.node(r).stats().relay_refused, 1);
    let now = w.now;
    let err = w.node(a).connect_via_relay(now, s, NodeId([7; 32])).unwrap_err();
    assert_eq!(err, stt_proto::ConnectError::NoRelay);
}

/// [RY-5]: a full relay refuses; once a registration is released, the refused member asking
/// again on the same session is registered (the relay decides afresh).
#[test]
fn full_relay_registers_a_member_that_asks_again_once_there_is_room() {
    let mut w = World::new(World::seed_from_env(905));
    let mut rc = RelayConfig::default();
    rc.max_members = 1;
    let r = w.add_node(Config::default().relay(Some(rc)));
    let a = w.add_node(Config::default());
    let b = w.add_node(Config::default());
    let sa = w.connect(a, r);
    let sb = w.connect(b, r);
    check(w.drive_until(|w| w.is_established(a, sa) && w.is_established(b, sb), 10_000));
    let status = |w: &mut World, i: usize, s: SessionId| w.node(i).session(s).unwrap().relay_status();
    w.node(a).session(sa).unwrap().register_relay();
    check(w.drive_until(|w| matches!(status(w, a, sa), Some(RelayStatus::Registered { .. })), 10_000));
    w.node(b).session(sb).unwrap().register_relay();
    check(w.drive_until(|w| status(w, b, sb) == Some(RelayStatus::Refused), 10_000));
    let now = w.now;
    w.node(a).session(sa).unwrap().close(now, 0);
    check(w.drive_until(|w| w.node(r).session_ids().count() == 1, 100_000));
    w.node(b).session(sb).unwrap().register_relay();
    check(w.drive_until(|w| matches!(status(w, b, sb), Some(RelayStatus::Registered { .. })), 10_000));
    assert_eq!(w.node(r).stats().relay_refused, 1);
}

/// A node that is not a relay answers a registration with "refused".
#[test]
fn plain_node_refuses_registration() {
    let mut w = World::new(World::seed_from_env(902));
    let r = w.add_node(Config::default());
    let a = w.add_node(Config::default());
    let s = w.connect(a, r);
    check(w.drive_until(|w| w.is_established(a, s), 10_000));
    w.node(a).session(s).unwrap().register_relay();
    check(w.drive_until(|w| w.node(a).session(s).unwrap().relay_status() == Some(RelayStatus::Refused), 10_000));
}

/// [PU-2] [PU-3] [PU-5]: with nothing in the way, punching moves both sides onto the
/// direct path within about a second, and the transfer finishes there.
#[test]
fn punching_moves_the_session_onto_the_direct_path() {
    let mut w = World::new(World::seed_from_env(903));
    let (_r, a, b, ra, _rb) = relay_world(&mut w, Config::default(), RelayConfig::default());
    let (sa, sb) = connect_via(&mut w, a, ra, b);
    let start = w.now;
    let b_addr = w.nodes[b].addr;
    let a_addr = w.nodes[a].addr;
    check(w.drive_until(
        |w| {
            w.node(a).session(sa).unwrap().remote() == PathAddr::Udp(b_addr)
                && w.node(b).session(sb).unwrap().remote() == PathAddr::Udp(a_addr)
        },
        100_000,
    ));
    assert!(w.now.saturating_duration_since(start) < Duration::from_secs(2));
    assert!(w.node(a).stats().punch_direct + w.node(b).stats().punch_direct >= 1);
    let data = pattern(500_000, 4);
    let before = w.delivered_bytes(a, b);
    assert!(transfer(&mut w, a, b, sa, sb, &data, 1_000_000) == data);
    assert!(w.delivered_bytes(a, b) - before > 500_000, "the data went direct");
}

/// [PU-6]: when the direct path dies mid-transfer, the session falls back to the relay
/// and the stream completes byte-exact.
#[test]
fn dead_direct_path_falls_back_to_the_relay() {
    let mut w = World::new(World::seed_from_env(904));
    let (_r, a, b, ra, _rb) = relay_world(&mut w, Config::default(), RelayConfig::default());
    let (sa, sb) = connect_via(&mut w, a, ra, b);
    wait_direct(&mut w, a, sa, b);
    let data = pattern(2_000_000, 5);
    let mut cut = false;
    let got = transfer_with(&mut w, a, b, sa, sb, &data, 2_000_000, |w| {
        if !cut && w.delivered_bytes(a, b) > 300_000 {
            cut = true;
            // The direct path goes black both ways; the relay paths stay.
            let black = stt_proto::sim::LinkConfig { loss: 1.0, ..Default::default() };
            w.set_links(a, b, black);
        }
    });
    assert!(cut);
    assert!(got == data);
    assert!(w.node(a).stats().relay_fallbacks >= 1, "a fell back");
    assert!(w.node(a).session(sa).unwrap().remote().is_relayed());
}

/// [RY-7]: when the relay shuts down (closing its members' sessions), a session that
/// runs through it, with no direct path, ends at once on both sides with `RelayLost`
/// instead of waiting for the idle timeout; the members' other state is untouched.
#[test]
fn a_relayed_session_ends_when_its_relay_goes_away() {
    let mut w = World::new(World::seed_from_env(906));
    let (r, a, b, _ra, _rb) = relay_world(&mut w, Config::default().keep_relay_path(true), RelayConfig::default());
    let (sa, sb) = connect_via(&mut w, a, _ra, b);
    assert!(w.node(a).session(sa).unwrap().remote().is_relayed());
    let data = pattern(50_000, 6);
    assert!(transfer(&mut w, a, b, sa, sb, &data, 1_000_000) == data);
    let start = w.now;
    w.node(r).close(start);
    check(w.drive_until(|w| closed_at(w, a, sa).is_some() && closed_at(w, b, sb).is_some(), 100_000));
    for (i, s) in [(a, sa), (b, sb)] {
        let (at, reason) = closed_at(&w, i, s).unwrap();
        assert_eq!(reason, stt_proto::CloseReason::RelayLost);
        // The idle timeout is 30 s: this took about one relay round trip.
        assert!(
            at.saturating_duration_since(start) < Duration::from_millis(200),
            "after {:?}",
            at.saturating_duration_since(start)
        );
        assert!(w.node(i).session(s).is_none(), "the session is gone");
    }
}

/// [RY-7]: a session on a direct path only loses the relay as its fallback; it carries on.
#[test]
fn a_direct_session_outlives_its_relay() {
    let mut w = World::new(World::seed_from_env(907));
    let (_r, a, b, ra, _rb) = relay_world(&mut w, Config::default(), RelayConfig::default());
    let (sa, sb) = connect_via(&mut w, a, ra, b);
    wait_direct(&mut w, a, sa, b);
    let now = w.now;
    w.node(a).session(ra).unwrap().close(now, 0);
    w.run_for(Duration::from_secs(1));
    assert!(closed_at(&w, a, sa).is_none());
    let data = pattern(200_000, 7);
    assert!(transfer(&mut w, a, b, sa, sb, &data, 1_000_000) == data);
}
