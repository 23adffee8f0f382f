//! Path MTU discovery and session continuity across address changes, in the simulator
//! (spec §8.4, §8.5).

use std::net::SocketAddr;
use std::time::Duration;

use stt_proto::sim::{LinkConfig, World};
use stt_proto::{Config, Event, PathAddr};

mod common;

use common::{pair, pattern, transfer, transfer_with};

/// [PM-1]: with a 1200-byte maximum, no datagram larger than 1200 bytes is ever sent.
#[test]
fn mtu_cap_is_never_exceeded() {
    let mut w = World::new(World::seed_from_env(60));
    let config = Config::default().max_udp_payload(1200);
    let (a, b, sa, sb) = pair(&mut w, config.clone(), config);
    let data = pattern(1 << 20, 7);
    assert!(transfer(&mut w, a, b, sa, sb, &data, 1_000_000) == data);
    assert_eq!(w.largest_datagram(a, b), 1200);
    assert!(w.largest_datagram(b, a) <= 1200);
}

/// [PM-2]: on a path that carries at most 1452 bytes, discovery settles on exactly 1452.
#[test]
fn pmtud_finds_a_1452_byte_path() {
    let mut w = World::new(World::seed_from_env(61));
    w.set_default_link(LinkConfig { mtu: Some(1452), ..Default::default() });
    let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default());
    let data = pattern(2 << 20, 8);
    assert!(transfer(&mut w, a, b, sa, sb, &data, 1_000_000) == data);
    w.run_for(Duration::from_secs(5));
    assert_eq!(w.node(a).session(sa).unwrap().stats().mtu, 1452);
    assert_eq!(w.node(b).session(sb).unwrap().stats().mtu, 1452);
}

/// [MG-1] [MG-2]: NAT rebinding of the sender mid-transfer keeps the session.
#[test]
fn nat_rebinding_mid_transfer_keeps_the_session() {
    let mut w = World::new(World::seed_from_env(62));
    let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default());
    let new_addr: SocketAddr = "192.0.2.1:5999".parse().unwrap();
    let start = w.now;
    let mut rebound = false;
    let data = pattern(2 << 20, 9);
    let got = transfer_with(&mut w, a, b, sa, sb, &data, 1_000_000, |w| {
        if !rebound && w.now.saturating_duration_since(start) > Duration::from_millis(150) {
            w.rebind(a, new_addr);
            rebound = true;
        }
    });
    assert!(rebound && got == data);
    assert_eq!(w.node(b).session(sb).unwrap().remote(), PathAddr::Udp(new_addr));
    assert!(w.nodes[b].events.contains(&Event::PathChanged { session: sb, remote: PathAddr::Udp(new_addr) }));
}

/// [MG-4]: either side may move: the receiver rebinds mid-transfer.
#[test]
fn receiver_rebinding_keeps_the_session() {
    let mut w = World::new(World::seed_from_env(63));
    let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default());
    let new_addr: SocketAddr = "192.0.2.2:6001".parse().unwrap();
    let start = w.now;
    let mut rebound = false;
    let data = pattern(1 << 20, 10);
    let got = transfer_with(&mut w, a, b, sa, sb, &data, 1_000_000, |w| {
        if !rebound && w.now.saturating_duration_since(start) > Duration::from_millis(100) {
            w.rebind(b, new_addr);
            rebound = true;
        }
    });
    assert!(rebound && got == data);
    assert_eq!(w.node(a).session(sa).unwrap().remote(), PathAddr::Udp(new_addr));
}

/// [MG-1] [MG-3]: a spoofed-source copy of a packet, arriving before the original, does
/// not move the session: the old path answers its probe and is restored.
#[test]
fn spoofed_source_copy_does_not_move_the_session() {
    let mut w = World::new(World::seed_from_env(64));
    let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default());
    let spoofed: SocketAddr = "198.51.100.66:1234".parse().unwrap();
    let real = w.nodes[a].addr;
    w.capture = true;
    let start = w.now;
    let mut injected = 0;
    let data = pattern(2 << 20, 11);
    let got = transfer_with(&mut w, a, b, sa, sb, &data, 1_000_000, |w| {
        if injected < 3 && w.now.saturating_duration_since(start) > Duration::from_millis(25 * (injected + 1)) {
            // The newest packet from a is still in flight (10 ms links): its copy wins the race.
            let pkt =
                w.captured.iter().rev().find(|c| c.from_node == a && c.data[0] & 0xfe == 0x40).map(|c| c.data.clone());
            if let Some(p) = pkt {
                let _ = w.inject(b, spoofed, &p);
                injected += 1;
            }
        }
    });
    assert_eq!(injected, 3);
    assert!(got == data);
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.node(b).session(sb).unwrap().remote(), PathAddr::Udp(real));
    assert!(
        !w.nodes[b].events.iter().any(|e| matches!(e, Event::PathChanged { .. })),
        "no validated move: {:?}",
        w.nodes[b].events.iter().filter(|e| matches!(e, Event::PathChanged { .. })).collect::<Vec<_>>()
    );
    // Nothing beyond the anti-amplification budget went to the spoofed address.
    let to_spoofed: usize = w.captured.iter().filter(|c| c.to == spoofed).map(|c| c.data.len()).sum();
    assert!(to_spoofed <= 3 * 3 * 1300, "{to_spoofed} bytes sent to the spoofed address");
}
