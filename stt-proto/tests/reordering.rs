//! Loss recovery on paths that reorder (issue #19, spec §7.5): jitter larger than the base
//! RTT reorders heavily; it must not be taken for loss for long.

use std::time::Duration;

use stt_proto::sim::{Bottleneck, LinkConfig, World};
use stt_proto::Config;

mod common;

use common::{pair, pattern, transfer};

/// Goodput (bytes per virtual second) of a 2 MB upload over a 20 Mbit/s, 20 ms one-way path
/// with 2 % random loss and `jitter` of extra uniform delay (reordering).
fn goodput(seed: u64, jitter: Duration) -> (f64, u64) {
    let mut w = World::new(World::seed_from_env(seed));
    let link = LinkConfig {
        delay: Duration::from_millis(20),
        jitter,
        loss: 0.02,
        bottleneck: Some(Bottleneck { rate_bps: 20_000_000, queue_bytes: 125_000 }),
        ..Default::default()
    };
    w.set_default_link(link);
    let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default());
    let data = pattern(2_000_000, 1);
    let start = w.now;
    assert!(transfer(&mut w, a, b, sa, sb, &data, 5_000_000) == data);
    let secs = w.now.saturating_duration_since(start).as_secs_f64();
    let lost = w.node(a).session(sa).unwrap().stats().lost;
    (data.len() as f64 / secs, lost)
}

/// [LR-1] [LR-2]: throughput with 0–20 ms jitter (reordering on a 40 ms RTT path) is at
/// least half of the throughput without, at 2 % loss.
#[test]
fn jitter_costs_at_most_half_the_throughput() {
    let mut ratios = Vec::new();
    for seed in [1901, 1902, 1903] {
        let (clean, lost_clean) = goodput(seed, Duration::ZERO);
        let (jittery, lost_jitter) = goodput(seed, Duration::from_millis(20));
        println!(
            "seed {seed}: no jitter {:.2} MB/s ({lost_clean} declared lost), 0-20 ms jitter {:.2} MB/s ({lost_jitter} declared lost)",
            clean / 1e6,
            jittery / 1e6
        );
        ratios.push(jittery / clean);
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    let median = ratios[1];
    println!("jitter / no jitter (median of 3): {median:.2}");
    assert!(median >= 0.5, "ratio {median:.2}");
}

/// Issue #19 item 2: on a lossy, reordering path the receiver's control traffic stays
/// rare (before: a MAX_DATA on nearly every read, ~1 000 ack-eliciting packets for 4 MB,
/// each answered by an ACK-only packet from the sender: 22 % more datagrams).
#[test]
fn window_updates_and_ack_only_packets_stay_rare() {
    let mut w = World::new(World::seed_from_env(7));
    let link = LinkConfig {
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(15),
        loss: 0.08,
        duplicate: 0.03,
        ..Default::default()
    };
    w.set_default_link(link);
    let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default());
    let data = pattern(4_000_000, 1);
    assert!(transfer(&mut w, a, b, sa, sb, &data, 5_000_000) == data);
    let rx = w.node(b).session(sb).unwrap().stats();
    let tx = w.node(a).session(sa).unwrap().stats();
    let rx_eliciting = rx.packets_out - rx.non_eliciting_packets;
    println!(
        "receiver: {} packets, {rx_eliciting} ack-eliciting; sender: {} packets, {} not ack-eliciting",
        rx.packets_out, tx.packets_out, tx.non_eliciting_packets
    );
    assert!(rx_eliciting * 25 <= rx.packets_out, "receiver sent {rx_eliciting} ack-eliciting packets");
    assert!(
        tx.non_eliciting_packets * 20 <= tx.packets_out,
        "sender sent {} ACK-only packets",
        tx.non_eliciting_packets
    );
}

/// [LR-2] [LR-6], issue #19 item 2: on a path whose jitter reorders far beyond its base delay
/// (the lossy bench's 4 MiB upload, 2 % loss, 0–20 ms jitter, no fixed delay), the sender's
/// ack-eliciting datagrams stay within 3 % of the fewest that carry the payload plus one
/// per real loss: losses taken for reordering are few, and the tolerance learned is kept
/// although the RTT samples (from the packets that overtook) are small. Before: 5.4 %.
#[test]
fn reordering_without_base_delay_wastes_few_datagrams() {
    let mut over = Vec::new();
    for seed in [1, 2, 3] {
        let mut w = World::new(World::seed_from_env(seed));
        w.set_default_link(LinkConfig {
            delay: Duration::from_micros(50),
            jitter: Duration::from_millis(20),
            loss: 0.02,
            ..Default::default()
        });
        let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default());
        let data = pattern(4 << 20, 3);
        assert!(transfer(&mut w, a, b, sa, sb, &data, 20_000_000) == data);
        let tx = w.node(a).session(sa).unwrap().stats();
        let eliciting = tx.packets_out - tx.non_eliciting_packets;
        let real_losses = tx.lost - tx.spurious_losses;
        let minimum = (data.len() as f64 / (tx.mtu as f64 - 40.0)).ceil() + real_losses as f64;
        println!(
            "seed {seed}: {eliciting} ack-eliciting datagrams, {} declared lost, {} spurious: {:.3} of the minimum",
            tx.lost,
            tx.spurious_losses,
            eliciting as f64 / minimum
        );
        over.push(eliciting as f64 / minimum);
    }
    over.sort_by(|a, b| a.total_cmp(b));
    assert!(over[1] <= 1.03, "median {:.3} of the minimum", over[1]);
}
