//! Congestion control against a bottleneck (rate limit + drop-tail queue) in the
//! simulator: utilisation and fairness (spec §7.8, DESIGN §5).

use std::time::Duration;

use bytes::Bytes;
use stt_proto::sim::{Bottleneck, LinkConfig, World};
use stt_proto::{Config, Instant, SessionId, StreamId};

mod common;

use common::pair;

static CHUNK: [u8; 65_536] = [0x5a; 65_536];

struct Flow {
    a: usize,
    b: usize,
    sa: SessionId,
    sb: SessionId,
    send: Option<StreamId>,
    recv: Option<StreamId>,
    start: Instant,
    /// (time, total bytes read by the receiver)
    samples: Vec<(Instant, u64)>,
    total: u64,
}

impl Flow {
    fn bytes_between(&self, from: Instant, to: Instant) -> u64 {
        let at = |t: Instant| self.samples.iter().take_while(|(s, _)| *s <= t).last().map_or(0, |(_, b)| *b);
        at(to) - at(from)
    }
}

/// Runs bulk transfers until `end`, keeping every started flow's send buffer full.
fn run(w: &mut World, flows: &mut [Flow], end: Instant) {
    let mut buf = vec![0u8; 1 << 16];
    while w.now < end {
        let now = w.now;
        for f in flows.iter_mut() {
            if now < f.start {
                continue;
            }
            let mut s = w.node(f.a).session(f.sa).unwrap();
            let id = *f.send.get_or_insert_with(|| s.open_uni(now).unwrap());
            while s.write_bytes(now, id, Bytes::from_static(&CHUNK)).is_ok_and(|n| n > 0) {}
            let mut r = w.node(f.b).session(f.sb).unwrap();
            if f.recv.is_none() {
                f.recv = r.accept_stream();
            }
            if let Some(id) = f.recv {
                while let Ok((n, _)) = r.read(now, id, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    f.total += n as u64;
                }
            }
            if f.samples.last().is_none_or(|(_, b)| *b != f.total) {
                f.samples.push((now, f.total));
            }
        }
        if !w.step() {
            break;
        }
    }
}

fn at(secs: f64) -> Instant {
    Instant::from_micros((secs * 1e6) as u64)
}

const RATE_BPS: u64 = 20_000_000;

fn bottleneck_link(shared: Option<usize>) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(25),
        bottleneck: shared.is_none().then_some(Bottleneck { rate_bps: RATE_BPS, queue_bytes: 125_000 }),
        shared_bottleneck: shared,
        ..Default::default()
    }
}

/// [CC-1]: one CUBIC flow uses ≥ 80 % of a 20 Mbit/s, 50 ms RTT bottleneck.
#[test]
fn bottleneck_utilisation_at_least_80_percent() {
    let mut w = World::new(World::seed_from_env(70));
    w.set_default_link(LinkConfig { delay: Duration::from_millis(25), ..Default::default() });
    let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default());
    w.set_link(a, b, bottleneck_link(None));
    let start = w.now;
    let mut flows = [Flow { a, b, sa, sb, send: None, recv: None, start, samples: vec![], total: 0 }];
    run(&mut w, &mut flows, at(20.0));
    let goodput = flows[0].bytes_between(at(5.0), at(20.0)) as f64 / 15.0;
    let capacity = RATE_BPS as f64 / 8.0;
    let utilisation = goodput / capacity;
    println!("bottleneck utilisation (goodput / capacity): {:.1} %", utilisation * 100.0);
    assert!(utilisation >= 0.8, "utilisation {:.1} % (seed {})", utilisation * 100.0, w.seed());
}

/// [CC-2]: two flows sharing the bottleneck converge to a fair share (Jain ≥ 0.9).
#[test]
fn two_flows_are_fair() {
    let mut w = World::new(World::seed_from_env(71));
    w.set_default_link(LinkConfig { delay: Duration::from_millis(25), ..Default::default() });
    let (a1, b1, s1, r1) = pair(&mut w, Config::default(), Config::default());
    let (a2, b2, s2, r2) = pair(&mut w, Config::default(), Config::default());
    let g = w.add_shared_bottleneck(Bottleneck { rate_bps: RATE_BPS, queue_bytes: 125_000 });
    w.set_link(a1, b1, bottleneck_link(Some(g)));
    w.set_link(a2, b2, bottleneck_link(Some(g)));
    let t0 = w.now;
    let mut flows = [
        Flow { a: a1, b: b1, sa: s1, sb: r1, send: None, recv: None, start: t0, samples: vec![], total: 0 },
        Flow {
            a: a2,
            b: b2,
            sa: s2,
            sb: r2,
            send: None,
            recv: None,
            start: t0.saturating_add(Duration::from_secs(2)),
            samples: vec![],
            total: 0,
        },
    ];
    run(&mut w, &mut flows, at(40.0));
    let x: Vec<f64> = flows.iter().map(|f| f.bytes_between(at(15.0), at(40.0)) as f64 / 25.0).collect();
    let jain = (x[0] + x[1]).powi(2) / (2.0 * (x[0] * x[0] + x[1] * x[1]));
    let total = (x[0] + x[1]) / (RATE_BPS as f64 / 8.0);
    println!("flows {:.0} / {:.0} B/s, Jain {:.3}, utilisation {:.1} %", x[0], x[1], jain, total * 100.0);
    assert!(jain >= 0.9, "Jain fairness {jain:.3}: {x:?} (seed {})", w.seed());
    assert!(total >= 0.8, "together they fill the link: {:.1} %", total * 100.0);
}
