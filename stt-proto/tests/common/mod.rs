//! Helpers shared by the simulator tests.
#![allow(dead_code)]

use stt_proto::sim::World;
use stt_proto::{CloseReason, Config, Event, Instant, ReadError, SessionId, StreamId, WriteError};

pub fn check<T>(r: Result<T, stt_proto::sim::SimError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

pub fn pair(w: &mut World, ca: Config, cb: Config) -> (usize, usize, SessionId, SessionId) {
    let a = w.add_node(ca);
    let b = w.add_node(cb);
    let sa = w.connect(a, b);
    check(w.drive_until(|w| w.is_established(a, sa) && w.established(b).len() == 1, 100_000));
    let sb = w.established(b)[0].0;
    (a, b, sa, sb)
}

/// When node `i` reported session `s` closed, and why.
pub fn closed_at(w: &World, i: usize, s: SessionId) -> Option<(Instant, CloseReason)> {
    w.nodes[i].timed_events.iter().find_map(|(t, e)| match e {
        Event::Closed { session, reason } if *session == s => Some((*t, *reason)),
        _ => None,
    })
}

/// Deterministic test data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(u32::from(seed)) as u8).collect()
}

/// Sends `data` a→b on one stream and returns what b read, stepping the world.
pub fn transfer(
    w: &mut World,
    a: usize,
    b: usize,
    sa: SessionId,
    sb: SessionId,
    data: &[u8],
    max_steps: usize,
) -> Vec<u8> {
    transfer_with(w, a, b, sa, sb, data, max_steps, |_| {})
}

/// As [`transfer`], calling `hook` before every step (to rebind, inject, ...).
#[allow(clippy::too_many_arguments)]
pub fn transfer_with(
    w: &mut World,
    a: usize,
    b: usize,
    sa: SessionId,
    sb: SessionId,
    data: &[u8],
    max_steps: usize,
    mut hook: impl FnMut(&mut World),
) -> Vec<u8> {
    let now = w.now;
    let id = w.node(a).session(sa).unwrap().open_uni(now).unwrap();
    let mut sent = 0;
    let mut finished = false;
    let mut got = Vec::new();
    let mut peer: Option<StreamId> = None;
    let mut done = false;
    let mut buf = vec![0u8; 65_536];
    for _ in 0..max_steps {
        let now = w.now;
        let mut s = w.node(a).session(sa).unwrap();
        while sent < data.len() {
            match s.write(now, id, &data[sent..(sent + 100_000).min(data.len())]) {
                Ok(n) => sent += n,
                Err(WriteError::Blocked) => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        if sent == data.len() && !finished {
            s.finish(now, id).unwrap();
            finished = true;
        }
        let mut r = w.node(b).session(sb).unwrap();
        if peer.is_none() {
            peer = r.accept_stream();
        }
        if let Some(p) = peer {
            loop {
                match r.read(now, p, &mut buf) {
                    Ok((n, fin)) => {
                        got.extend_from_slice(&buf[..n]);
                        if fin {
                            done = true;
                            break;
                        }
                    }
                    Err(ReadError::Blocked) => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
        if done {
            return got;
        }
        hook(w);
        if !w.step() {
            break;
        }
    }
    panic!(
        "{}",
        w.error(&format!("transfer incomplete after {max_steps} steps: {} of {} bytes", got.len(), data.len()))
    );
}
