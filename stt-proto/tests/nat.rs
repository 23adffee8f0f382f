//! Hole punching across the RFC 4787 NAT models of the simulator (spec §12, issue #15): a
//! matrix over pairs of NAT types. In every cell a relay (public) carries the session at
//! first and a transfer runs byte-exact while punching may move it onto a direct path
//! mid-transfer; the test asserts which cells end direct and which stay relayed.

use std::time::Duration;

use stt_proto::sim::{NatConfig, World};
use stt_proto::{Config, NodeId, PathAddr, RelayConfig, RelayStatus, SessionId};

mod common;

use common::{check, pattern, transfer};

#[derive(Clone, Copy, Debug)]
enum Nat {
    /// No NAT: a public address.
    None,
    /// Full cone: endpoint-independent mapping and filtering.
    Easiest,
    /// A typical home router: endpoint-independent mapping, port-restricted filtering.
    Easy,
    /// Address-dependent mapping and filtering.
    AddressDependent,
    /// Symmetric: address-and-port-dependent mapping and filtering, random ports.
    Hard,
}

impl Nat {
    fn config(self) -> Option<NatConfig> {
        match self {
            Nat::None => None,
            Nat::Easiest => Some(NatConfig::easiest()),
            Nat::Easy => Some(NatConfig::easy()),
            Nat::AddressDependent => Some(NatConfig::address_dependent()),
            Nat::Hard => Some(NatConfig::hard()),
        }
    }

    /// Endpoint-independent mapping: the address the relay sees is the one everyone sees.
    fn eim(self) -> bool {
        matches!(self, Nat::None | Nat::Easiest | Nat::Easy)
    }

    /// Endpoint-independent filtering: anyone gets in through an existing mapping.
    fn eif(self) -> bool {
        matches!(self, Nat::None | Nat::Easiest)
    }
}

/// Whether a direct path is expected: both mappings endpoint-independent (each side's
/// probe reaches the other's reflexive address, which the other's own probe opened), or one
/// side endpoint-independent in both mapping and filtering (the other side's probe gets in
/// from whatever port its NAT picked, and is answered there).
fn expect_direct(a: Nat, b: Nat) -> bool {
    (a.eim() && b.eim()) || (a.eim() && a.eif()) || (b.eim() && b.eif())
}

struct Cell {
    w: World,
    a: usize,
    b: usize,
    sa: SessionId,
    sb: SessionId,
}

fn add(w: &mut World, nat: Nat) -> usize {
    let i = match nat.config() {
        Some(c) => {
            let n = w.add_nat(c);
            w.add_node_behind(Config::default(), n)
        }
        None => w.add_node(Config::default()),
    };
    let local = w.local_addr(i);
    w.node(i).set_local_addresses(&[local]);
    i
}

/// A relay, A behind `na`, B behind `nb`; both registered; A opens a session with B by
/// node id through the relay.
fn cell(seed: u64, na: Nat, nb: Nat) -> Cell {
    let mut w = World::new(World::seed_from_env(seed));
    let r = w.add_node(Config::default().relay(Some(RelayConfig::default())));
    let a = add(&mut w, na);
    let b = add(&mut w, nb);
    let ra = w.connect(a, r);
    let rb = w.connect(b, r);
    check(w.drive_until(|w| w.is_established(a, ra) && w.is_established(b, rb), 20_000));
    w.node(a).session(ra).unwrap().register_relay();
    w.node(b).session(rb).unwrap().register_relay();
    check(w.drive_until(
        |w| {
            [(a, ra), (b, rb)].iter().all(|&(i, s)| {
                matches!(w.node(i).session(s).unwrap().relay_status(), Some(RelayStatus::Registered { .. }))
            })
        },
        20_000,
    ));
    let peer: NodeId = w.node_id(b);
    let now = w.now;
    let sa = w.node(a).connect_via_relay(now, ra, peer).unwrap();
    check(w.drive_until(|w| w.is_established(a, sa) && !w.established(b).is_empty(), 20_000));
    let me = w.node_id(a);
    let sb = w.established(b).into_iter().find(|(_, p)| *p == me).unwrap().0;
    Cell { w, a, b, sa, sb }
}

fn remotes(c: &mut Cell) -> (PathAddr, PathAddr) {
    let ra = c.w.node(c.a).session(c.sa).unwrap().remote();
    let rb = c.w.node(c.b).session(c.sb).unwrap().remote();
    (ra, rb)
}

/// The whole matrix: byte-exact in every cell, direct exactly where expected.
#[test]
fn nat_matrix_direct_where_expected_relayed_otherwise() {
    use Nat::*;
    let kinds = [None, Easiest, Easy, AddressDependent, Hard];
    let mut table = String::new();
    let mut seed = 1000;
    for na in kinds {
        for nb in kinds {
            seed += 1;
            let mut c = cell(seed, na, nb);
            // The transfer starts on the relayed path; punching may move it mid-way.
            let data = pattern(400_000, seed as u8);
            let (a, b, sa, sb) = (c.a, c.b, c.sa, c.sb);
            assert!(transfer(&mut c.w, a, b, sa, sb, &data, 2_000_000) == data, "{na:?} x {nb:?}: bytes differ");
            c.w.run_for(Duration::from_secs(3));
            let (ra, rb) = remotes(&mut c);
            let direct = !ra.is_relayed() && !rb.is_relayed();
            let relayed = ra.is_relayed() && rb.is_relayed();
            table.push_str(&format!(
                "{na:?} x {nb:?}: {}\n",
                if direct {
                    "direct"
                } else if relayed {
                    "relayed"
                } else {
                    "split"
                }
            ));
            assert!(direct || relayed, "{na:?} x {nb:?}: sides disagree: {ra} / {rb}");
            assert_eq!(direct, expect_direct(na, nb), "{na:?} x {nb:?}\n{table}");
        }
    }
    println!("{table}");
}

/// A path switch mid-transfer: with two home routers, the stream starts over the relay
/// and finishes on the direct path, byte-exact; most bytes went direct.
#[test]
fn nat_easy_pair_switches_mid_transfer() {
    let mut c = cell(2001, Nat::Easy, Nat::Easy);
    assert!(remotes(&mut c).0.is_relayed(), "starts relayed");
    let data = pattern(3_000_000, 9);
    let (a, b, sa, sb) = (c.a, c.b, c.sa, c.sb);
    assert!(transfer(&mut c.w, a, b, sa, sb, &data, 3_000_000) == data);
    let (ra, rb) = remotes(&mut c);
    assert!(!ra.is_relayed() && !rb.is_relayed(), "{ra} / {rb}");
    assert!(c.w.node(a).stats().punch_direct + c.w.node(b).stats().punch_direct >= 1);
}

/// Two symmetric NATs: punching fails, the session stays relayed, retries later (a new
/// round after 30 s) and still carries data.
#[test]
fn nat_symmetric_pair_stays_relayed_and_retries() {
    let mut c = cell(2002, Nat::Hard, Nat::Hard);
    let probes_before = c.w.node(c.a).stats().punch_probes;
    c.w.run_for(Duration::from_secs(40));
    let (ra, rb) = remotes(&mut c);
    assert!(ra.is_relayed() && rb.is_relayed());
    let probes = c.w.node(c.a).stats().punch_probes - probes_before;
    assert!(probes > 20, "a second round probed again ({probes} probes)");
    let data = pattern(200_000, 10);
    let (a, b, sa, sb) = (c.a, c.b, c.sa, c.sb);
    assert!(transfer(&mut c.w, a, b, sa, sb, &data, 2_000_000) == data);
}

/// Keepalives (10 s when idle) hold NAT mappings that expire after 20 s: an idle minute
/// later the direct path still works.
#[test]
fn nat_keepalives_hold_mappings_open() {
    let mut w = World::new(World::seed_from_env(2003));
    let r = w.add_node(Config::default().relay(Some(RelayConfig::default())));
    let short = |c: NatConfig| c.with_mapping_timeout(Duration::from_secs(20));
    let na = w.add_nat(short(NatConfig::easy()));
    let nb = w.add_nat(short(NatConfig::easy()));
    let a = w.add_node_behind(Config::default(), na);
    let b = w.add_node_behind(Config::default(), nb);
    let ra = w.connect(a, r);
    let rb = w.connect(b, r);
    check(w.drive_until(|w| w.is_established(a, ra) && w.is_established(b, rb), 20_000));
    w.node(a).session(ra).unwrap().register_relay();
    w.node(b).session(rb).unwrap().register_relay();
    w.run_for(Duration::from_millis(500));
    let now = w.now;
    let peer = w.node_id(b);
    let sa = w.node(a).connect_via_relay(now, ra, peer).unwrap();
    check(w.drive_until(|w| w.is_established(a, sa) && w.established(b).len() >= 2, 20_000));
    let sb = w.established(b).last().unwrap().0;
    w.run_for(Duration::from_secs(60));
    let mut c = Cell { w, a, b, sa, sb };
    let (pa, pb) = remotes(&mut c);
    assert!(!pa.is_relayed() && !pb.is_relayed(), "{pa} / {pb}");
    let data = pattern(300_000, 11);
    assert!(transfer(&mut c.w, a, b, sa, sb, &data, 2_000_000) == data);
    assert_eq!(c.w.nat_stats(na).mappings_expired, 0);
    assert_eq!(c.w.nat_stats(nb).mappings_expired, 0);
}
