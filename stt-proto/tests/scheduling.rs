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
