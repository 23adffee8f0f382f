//! [ND-1]: the node's per-packet and per-timer work does not grow with idle sessions.
//! Work is counted (sessions the node calls into), never timed.

use stt_proto::sim::World;
use stt_proto::Config;

mod common;

use common::{check, pattern, transfer};

/// Sessions visited by the server per datagram it handled or sent during one bulk
/// transfer, while it holds `idle` established idle sessions with other nodes.
fn visits_per_datagram(idle: usize) -> (f64, u64) {
    let mut w = World::new(World::seed_from_env(70));
    let server = w.add_node(Config::default());
    let clients: Vec<usize> = (0..idle).map(|_| w.add_node(Config::default())).collect();
    let sessions: Vec<_> = clients.iter().map(|&c| (c, w.connect(c, server))).collect();
    check(w.drive_until(|w| sessions.iter().all(|&(c, s)| w.is_established(c, s)), 1_000_000));
    let a = w.add_node(Config::default());
    let sa = w.connect(a, server);
    check(w.drive_until(|w| w.is_established(a, sa) && w.established(server).len() == idle + 1, 100_000));
    let sb = w.established(server)[idle].0;
    // Let the handshakes' tails (FINAL acknowledgements, old-key discards) settle.
    w.run_for(std::time::Duration::from_millis(500));

    let before = w.node(server).stats().clone();
    let data = pattern(512 << 10, 9);
    assert!(transfer(&mut w, a, server, sa, sb, &data, 1_000_000) == data);
    let after = w.node(server).stats().clone();
    let datagrams = (after.datagrams_in - before.datagrams_in) + (after.datagrams_out - before.datagrams_out);
    let visits = after.sessions_visited - before.sessions_visited;
    (visits as f64 / datagrams as f64, visits)
}

/// [ND-1]: with 300 idle sessions the server visits no more sessions per datagram than
/// with none (the idle ones are never touched while one flow moves data).
#[test]
fn work_per_datagram_does_not_grow_with_idle_sessions() {
    let (alone, _) = visits_per_datagram(0);
    let (crowded, visits) = visits_per_datagram(300);
    assert!(alone <= 4.0, "one flow costs {alone:.2} session visits per datagram");
    assert!(
        crowded <= alone * 1.25 + 0.1,
        "300 idle sessions raised the work per datagram from {alone:.2} to {crowded:.2} visits ({visits} in all)"
    );
}

/// Routing by session id (spec [PK-4], [LC-8]): after a session ends and its slot is reused
/// by a new session with the same peer, a packet of the old session (its id stale) is
/// dropped as for an unknown session and never reaches the new one; a foreign id too (the
/// route table's own test checks one bucket per lookup with 10 000 ids).
#[test]
fn stale_and_foreign_session_ids_route_nowhere() {
    use stt_proto::{DropReason, InputOutcome};
    let mut w = World::new(World::seed_from_env(71));
    let server = w.add_node(Config::default());
    let clients: Vec<usize> = (0..50).map(|_| w.add_node(Config::default())).collect();
    let idle: Vec<_> = clients.iter().map(|&c| (c, w.connect(c, server))).collect();
    check(w.drive_until(|w| idle.iter().all(|&(c, s)| w.is_established(c, s)), 1_000_000));
    let a = w.add_node(Config::default());
    let sa = w.connect(a, server);
    check(w.drive_until(|w| w.is_established(a, sa) && w.established(server).len() == 51, 100_000));
    let sb = w.established(server).iter().find(|(_, p)| *p == w.node_id(a)).unwrap().0;
    w.capture = true;
    let now = w.now;
    w.node(a).session(sa).unwrap().send_datagram(now, b"old", false).unwrap();
    w.run_for(std::time::Duration::from_millis(100));
    let old = w.captured.iter().rev().find(|c| c.from_node == a && c.data[0] & 0xfe == 0x40).unwrap().clone();
    w.capture = false;
    let now = w.now;
    w.node(a).session(sa).unwrap().close(now, 0);
    check(w.drive_until(|w| w.node(server).session(sb).is_none(), 100_000));

    // A new session with the same peer takes the freed slot.
    let sa2 = w.connect(a, server);
    check(w.drive_until(|w| w.is_established(a, sa2) && w.established(server).len() == 52, 100_000));
    let sb2 = w.established(server).last().unwrap().0;
    assert_eq!(sb2.as_u64() as u32, sb.as_u64() as u32, "the slot was reused");
    assert_ne!(sb2, sb);
    let before = w.node(server).session(sb2).unwrap().stats();
    assert_eq!(w.inject(server, old.from, &old.data), InputOutcome::Dropped(DropReason::UnknownSession));
    let mut foreign = old.data.clone();
    foreign[1..9].copy_from_slice(&[0x5a; 8]);
    assert_eq!(w.inject(server, old.from, &foreign), InputOutcome::Dropped(DropReason::UnknownSession));
    let after = w.node(server).session(sb2).unwrap().stats();
    assert_eq!(
        (after.packets_in, after.auth_failures),
        (before.packets_in, before.auth_failures),
        "new session untouched"
    );
    let mut buf = [0u8; 64];
    assert_eq!(w.node(server).session(sb2).unwrap().recv_datagram(&mut buf), None);
    assert!(w.is_established(a, sa2));
}
