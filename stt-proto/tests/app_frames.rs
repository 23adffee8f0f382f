//! Application frames 0x80–0xFF and exported keying material, end to end in the simulator
//! (spec §7.7, §5.7).

use std::time::Duration;

use stt_proto::sim::{LinkConfig, World};
use stt_proto::{Config, Event, ExportError, FrameError, SessionId};

mod common;

use common::{check, pair};

fn body(i: u32) -> Vec<u8> {
    let len = (i * 37 % 3000) as usize;
    (0..len).map(|k| (k as u32 ^ i) as u8).collect()
}

/// [AF-1] [AF-3]: declared frames arrive reliably, once and in order under 10 % loss.
#[test]
fn app_frames_reliable_and_ordered_under_loss() {
    let mut w = World::new(World::seed_from_env(50));
    w.set_default_link(LinkConfig { loss: 0.1, ..Default::default() });
    let types = [0x80, 0x9f, 0xff];
    let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default().app_frame_types(&types));
    let mut sent = 0u32;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    for _ in 0..200_000 {
        let now = w.now;
        while sent < 500 {
            let ty = types[(sent % 3) as usize];
            match w.node(a).session(sa).unwrap().send_app_frame(now, ty, &body(sent)) {
                Ok(()) => sent += 1,
                Err(FrameError::Blocked) => break,
                Err(e) => panic!("{e}"),
            }
        }
        while let Some((ty, n)) = w.node(b).session(sb).unwrap().recv_app_frame(now, &mut buf) {
            got.push((ty, buf[..n].to_vec()));
        }
        if got.len() == 500 || !w.step() {
            break;
        }
    }
    assert_eq!(got.len(), 500);
    for (i, (ty, b)) in got.iter().enumerate() {
        assert_eq!(*ty, types[i % 3], "frame {i} type");
        assert_eq!(*b, body(i as u32), "frame {i} body");
    }
    assert!(w.nodes[b].events.iter().any(|e| matches!(e, Event::AppFrameReadable { .. })));
}

/// [AF-2]: types the peer did not declare are refused locally, as are oversize bodies.
#[test]
fn undeclared_and_oversize_frames_are_local_errors() {
    let mut w = World::new(World::seed_from_env(51));
    let cb = Config::default().app_frame_types(&[0x80]).max_app_frame(1000);
    let (a, _, sa, _) = pair(&mut w, Config::default(), cb);
    let now = w.now;
    let mut s = w.node(a).session(sa).unwrap();
    assert_eq!(s.send_app_frame(now, 0x81, b"x"), Err(FrameError::Undeclared(0x81)));
    assert_eq!(s.send_app_frame(now, 0x7f, b"x"), Err(FrameError::NotAppType(0x7f)));
    assert_eq!(s.send_app_frame(now, 0x80, &[0; 1001]), Err(FrameError::TooLarge { max: 1000 }));
    assert_eq!(s.send_app_frame(now, 0x80, &[0; 1000]), Ok(()));
}

/// A frame larger than this side's own send buffer could never be buffered whole: refused at
/// once with the size that can be sent, instead of `Blocked` for ever (each acknowledgement
/// waking the sender for nothing).
#[test]
fn frames_larger_than_the_own_send_buffer_are_refused() {
    let mut w = World::new(World::seed_from_env(52));
    let ca = Config::default().stream_send_buffer(2000);
    let cb = Config::default().app_frame_types(&[0x80]).max_app_frame(60_000);
    let (a, _, sa, _) = pair(&mut w, ca, cb);
    let now = w.now;
    let mut s = w.node(a).session(sa).unwrap();
    assert_eq!(s.send_app_frame(now, 0x80, &[0; 5000]), Err(FrameError::TooLarge { max: 1991 }));
    assert_eq!(s.send_app_frame(now, 0x80, &[0; 1991]), Ok(()));
}

/// [AF-3]: frames nobody reads wait in a bounded queue; flow control then holds the
/// sender back, and reading lets the rest through.
#[test]
fn unread_frames_wait_in_a_bounded_queue() {
    let mut w = World::new(World::seed_from_env(52));
    let cb = Config::default()
        .app_frame_types(&[0x80])
        .app_frame_queue(8)
        .stream_window(16 * 1024)
        .max_stream_window(16 * 1024);
    let (a, b, sa, sb) = pair(&mut w, Config::default(), cb);
    let mut sent = 0u32;
    let mut blocked = false;
    for _ in 0..200 {
        let now = w.now;
        while sent < 200 {
            match w.node(a).session(sa).unwrap().send_app_frame(now, 0x80, &[sent as u8; 1000]) {
                Ok(()) => sent += 1,
                Err(FrameError::Blocked) => {
                    blocked = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        w.run_for(Duration::from_millis(20));
    }
    // 8 queued + at most one window in the stream buffer; the rest is held by the sender.
    let in_flight = w.node(a).session(sa).unwrap().stats().bytes_in_flight;
    assert_eq!(in_flight, 0, "nothing is stuck in flight: the sender is flow-blocked");
    let mut buf = [0u8; 2000];
    let mut got = 0u32;
    // Without stepping the network, the receiver holds at most its queue plus one window.
    let now = w.now;
    while let Some((_, n)) = w.node(b).session(sb).unwrap().recv_app_frame(now, &mut buf) {
        assert_eq!((n, buf[0]), (1000, got as u8));
        got += 1;
    }
    assert!((8..=8 + 17).contains(&got), "held by the receiver: {got} frames");
    for _ in 0..2000 {
        let now = w.now;
        while let Some((_, n)) = w.node(b).session(sb).unwrap().recv_app_frame(now, &mut buf) {
            assert_eq!(n, 1000);
            assert_eq!(buf[0], got as u8, "in order");
            got += 1;
        }
        while sent < 200 {
            match w.node(a).session(sa).unwrap().send_app_frame(now, 0x80, &[sent as u8; 1000]) {
                Ok(()) => sent += 1,
                Err(_) => break,
            }
        }
        if got == 200 {
            break;
        }
        w.run_for(Duration::from_millis(10));
    }
    let _ = blocked;
    assert_eq!(got, 200);
}

/// [EX-1]: both sides export the same keying material; labels and contexts separate it.
#[test]
fn exported_keys_agree() {
    let mut w = World::new(World::seed_from_env(53));
    let (a, b, sa, sb) = pair(&mut w, Config::default(), Config::default());
    let export = |w: &mut World, n: usize, s: SessionId, label: &[u8], ctx: &[u8]| {
        let mut out = [0u8; 48];
        w.node(n).session(s).unwrap().export_keying_material(label, ctx, &mut out).unwrap();
        out
    };
    let ka = export(&mut w, a, sa, b"segment", b"ctx");
    assert_eq!(ka, export(&mut w, b, sb, b"segment", b"ctx"));
    assert_ne!(ka, export(&mut w, a, sa, b"storage", b"ctx"));
    assert_ne!(ka, export(&mut w, a, sa, b"segment", b"other"));
    let mut big = vec![0u8; 9000];
    assert_eq!(w.node(a).session(sa).unwrap().export_keying_material(b"x", b"", &mut big), Err(ExportError::TooLong));
    // A different session between the same nodes exports different keys.
    let s2 = w.connect(b, a);
    check(w.drive_until(|w| w.is_established(b, s2), 10_000));
    assert_ne!(ka, export(&mut w, b, s2, b"segment", b"ctx"));
}
