//! Fuzzing harnesses (feature `fuzzing`). The cargo-fuzz targets in `fuzz/` call these,
//! and `tests/fuzz_corpus.rs` replays every committed corpus through them on stable, so
//! each `cargo test` checks them too. Each harness panics only on a real defect: a crash
//! in the core or a broken invariant it asserts.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use crate::crypto::{AeadAlg, NullAead, RustCrypto};
use crate::record::{KeyUpdatePolicy, Record};
use crate::replay::{ReplayVerdict, ReplayWindow};
use crate::sim::{LinkConfig, World};
use crate::stream::{RecvBuf, StreamId};
use crate::time::Instant;
use crate::wire::codec::{Reader, Writer};
use crate::wire::frame::{AckFrame, CloseKind, Frame};
use crate::wire::handshake::{AuthPayload, ChallengePayload, HelloPayload};
use crate::wire::header::{Header, WireSessionId};
use crate::wire::params::TransportParams;
use crate::{Config, Identity, Input, Node, NodeSeed, Output, PathAddr, SharedSeed, UnixTime};

/// A cursor over fuzz input that yields zeros when exhausted.
struct Input8<'a>(&'a [u8]);

impl Input8<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) << 8 | u16::from(self.u8())
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Header decode; what decodes re-encodes to the same bytes.
pub fn header(data: &[u8]) {
    if let Some((h, n)) = Header::decode(data) {
        let mut buf = [0u8; 32];
        let mut w = Writer::new(&mut buf);
        let m = h.encode(&mut w).expect("a decoded header encodes");
        assert_eq!(m, n);
        assert_eq!(&buf[..n], &data[..n], "header round trip");
    }
}

/// Frame decode; every decoded frame re-encodes and decodes to itself.
pub fn frames(data: &[u8]) {
    let mut r = Reader::new(data);
    while let Some(f) = Frame::decode(&mut r) {
        if f == Frame::Padding {
            continue;
        }
        let mut buf = vec![0u8; f.encoded_len() + 8];
        let mut w = Writer::new(&mut buf);
        f.encode(&mut w).expect("decoded frame encodes");
        assert_eq!(w.len(), f.encoded_len(), "encoded_len agrees");
        let n = w.len();
        assert_eq!(Frame::decode(&mut Reader::new(&buf[..n])), Some(f), "frame round trip");
    }
}

/// Frames built from fuzz input encode and decode to themselves.
pub fn frame_encode(data: &[u8]) {
    let mut i = Input8(data);
    let mut body = [0u8; 64];
    while !i.is_empty() {
        let v = (u64::from(i.u16()) << (i.u8() % 48)) & ((1 << 61) - 1);
        let len = usize::from(i.u8() % 64);
        body[..len].copy_from_slice(
            &{
                let mut b = [0u8; 64];
                let src = i.bytes(len);
                b[..src.len()].copy_from_slice(src);
                b
            }[..len],
        );
        let data = &body[..len];
        let addr = core::net::SocketAddr::from(((v as u32).to_be_bytes(), (v >> 32) as u16));
        let mut cands = [0u8; 8 * 7];
        let ncands = {
            let mut cw = Writer::new(&mut cands);
            for k in 0..(v % 9) {
                let a = core::net::SocketAddr::from(((v as u32 ^ k as u32).to_be_bytes(), k as u16));
                crate::wire::handshake::encode_addr(&mut cw, Some(a)).expect("fits");
            }
            cw.len()
        };
        let f = match i.u8() % 16 {
            0 => Frame::Stream { id: v, offset: v / 3, data, fin: v & 1 == 0 },
            1 => Frame::StreamClose { id: v, code: v >> 3, final_size: v >> 1 },
            2 => Frame::StopSending { id: v, code: v },
            3 => Frame::MaxData(v),
            4 => Frame::MaxStreamData { id: v, max: v },
            5 => Frame::MaxStreams { uni: v & 1 == 1, count: v },
            6 => Frame::Datagram(data),
            7 => Frame::SessionClose {
                kind: if v & 1 == 0 { CloseKind::Transport } else { CloseKind::Application },
                code: v,
                reason: match core::str::from_utf8(data) {
                    Ok(s) if s.len() <= crate::wire::frame::MAX_CLOSE_REASON => s.as_bytes(),
                    _ => &[],
                },
            },
            8 => Frame::PathChallenge([v as u8; 8]),
            9 => Frame::Rehandshake { seq: v, message: 1 + (v & 1) as u8, noise: data },
            10 => Frame::StreamsBlocked { uni: false, limit: v },
            12 => Frame::RelayRegister,
            13 => Frame::RelayStatus { status: (v & 1) as u8, observed: (v & 2 == 0).then_some(addr) },
            14 => Frame::RelayData { peer: [v as u8; 32], data },
            15 => Frame::Candidates { round: v, addrs: &cands[..ncands] },
            _ => Frame::KeepAlive,
        };
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        f.encode(&mut w).expect("fits");
        let n = w.len();
        assert_eq!(Frame::decode(&mut Reader::new(&buf[..n])), Some(f));
    }
}

/// Handshake payload decoders on arbitrary bytes; what decodes re-encodes identically.
pub fn handshake_payloads(data: &[u8]) {
    if let Some(h) = HelloPayload::decode(data) {
        let mut buf = vec![0u8; data.len() + 16];
        h.encode(&mut Writer::new(&mut buf)).expect("encodes");
        assert_eq!(HelloPayload::decode(&buf), Some(h));
    }
    if let Some(c) = ChallengePayload::decode(data) {
        let mut buf = vec![0u8; 1024];
        let mut w = Writer::new(&mut buf);
        c.encode(&mut w).expect("encodes");
        let n = w.len();
        assert_eq!(ChallengePayload::decode(&buf[..n]), Some(c));
    }
    let _ = AuthPayload::decode(data);
}

/// Transport parameters: decode, re-encode, decode again to the same value.
pub fn transport_params(data: &[u8]) {
    if let Some(p) = TransportParams::decode(&mut Reader::new(data)) {
        let mut buf = vec![0u8; 512];
        let mut w = Writer::new(&mut buf);
        p.encode(&mut w).expect("encodes");
        let n = w.len();
        assert_eq!(TransportParams::decode(&mut Reader::new(&buf[..n])), Some(p));
    }
}

fn node(seed: u8, config: Config) -> Node<rand_chacha::ChaCha20Rng> {
    use rand_chacha::rand_core::SeedableRng;
    let id = Identity::new(NodeSeed::from_bytes([seed; 32]), SharedSeed::from_bytes([9; 32]));
    Node::new(
        config,
        id,
        rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(seed)),
        Instant::ZERO,
        Some(UnixTime::from_millis(1_700_000_000_000)),
    )
    .expect("valid config")
}

/// The responder's front door with real crypto: arbitrary datagrams from arbitrary
/// sources create no state, cost no X25519 operation, and get back no more bytes than
/// they carried.
pub fn front_door(data: &[u8]) {
    let mut n = node(1, Config::default());
    let ops = n.stats().x25519_ops;
    let mut i = Input8(data);
    let mut out = vec![0u8; 2048];
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let mut now = Instant::ZERO;
    while !i.is_empty() {
        let len = usize::from(i.u16() % 1500);
        let src = PathAddr::Udp(core::net::SocketAddr::from(([198, 51, 100, i.u8()], i.u16())));
        let mut d = i.bytes(len).to_vec();
        bytes_in += d.len() as u64;
        now = now.saturating_add(Duration::from_millis(u64::from(i.u8())));
        let _ = n.handle_input(Input::Datagram { now, from: src, data: &mut d });
        while let Output::Transmit(t) = n.poll_output(&mut out) {
            bytes_out += t.len as u64;
        }
        let _ = n.handle_input(Input::Timeout { now });
    }
    assert_eq!(n.session_ids().count(), 0, "no state from unauthenticated input");
    assert_eq!(n.stats().x25519_ops, ops, "no DH for unauthenticated input");
    assert!(bytes_out <= bytes_in, "amplification: {bytes_out} out for {bytes_in} in");
}

/// An established pair on the null AEAD; fuzz input becomes the plaintext of protected
/// packets injected into one side (frames behind the crypto).
pub fn protected_frames(data: &[u8]) {
    let config = Config::default().crypto_provider(&NullAead).app_frame_types(&[0x80, 0x81]);
    let mut w = World::new(1);
    w.capture = true;
    let a = w.add_node(config.clone());
    let b = w.add_node(config);
    let s = w.connect(a, b);
    if w.drive_until(|w| w.is_established(a, s) && !w.established(b).is_empty(), 1000).is_err() {
        panic!("null-AEAD handshake did not complete");
    }
    let Some(sid) =
        w.captured.iter().rev().find(|c| c.from_node == a && c.data[0] & 0xfe == 0x40).map(|c| c.data[1..9].to_vec())
    else {
        return;
    };
    let from = w.nodes[a].addr;
    let mut i = Input8(data);
    let mut pn: u32 = 1_000_000;
    while !i.is_empty() {
        let len = usize::from(i.u16() % 1400);
        let payload = i.bytes(len).to_vec();
        let mut pkt = Vec::with_capacity(13 + payload.len() + 16);
        pkt.push(0x40);
        pkt.extend_from_slice(&sid);
        pkt.extend_from_slice(&pn.to_be_bytes());
        pkt.extend_from_slice(&payload);
        pkt.extend_from_slice(&[0; 16]);
        pn = pn.wrapping_add(1 + u32::from(i.u8() % 4));
        let _ = w.inject(b, from, &pkt);
        if i.u8() % 4 == 0 {
            w.run_for(Duration::from_millis(u64::from(i.u8())));
        }
    }
    w.run_for(Duration::from_secs(2));
}

/// Session operations in the simulator (streams, datagrams, frames, loss, time): every
/// finished stream arrives exactly once and in order; no flow limit is exceeded (the
/// receiver would close the session).
pub fn session_ops(data: &[u8]) {
    let config = Config::default().crypto_provider(&NullAead).stream_window(4096).session_window(8192);
    let mut w = World::new(2);
    let a = w.add_node(config.clone());
    let b = w.add_node(config);
    let sa = w.connect(a, b);
    if w.drive_until(|w| w.is_established(a, sa) && !w.established(b).is_empty(), 10_000).is_err() {
        return;
    }
    let sb = w.established(b)[0].0;
    let mut i = Input8(data);
    let mut sent: BTreeMap<StreamId, (Vec<u8>, bool)> = BTreeMap::new();
    let mut got: BTreeMap<StreamId, (Vec<u8>, bool)> = BTreeMap::new();
    let mut buf = vec![0u8; 8192];
    for _ in 0..64 {
        if i.is_empty() {
            break;
        }
        let now = w.now;
        match i.u8() % 8 {
            0 => {
                if let Some(Ok(id)) = w.node(a).session(sa).map(|mut s| s.open_uni(now)) {
                    sent.insert(id, (Vec::new(), false));
                }
            }
            1 => {
                let len = usize::from(i.u16() % 6000);
                let k = i.u8();
                let ids: Vec<_> = sent.iter().filter(|(_, v)| !v.1).map(|(k, _)| *k).collect();
                if let Some(id) = ids.get(usize::from(k) % ids.len().max(1)) {
                    let bytes: Vec<u8> = (0..len).map(|x| (x as u8) ^ k).collect();
                    if let Some(Ok(n)) = w.node(a).session(sa).map(|mut s| s.write(now, *id, &bytes)) {
                        sent.get_mut(id).expect("present").0.extend_from_slice(&bytes[..n]);
                    }
                }
            }
            2 => {
                let ids: Vec<_> = sent.iter().filter(|(_, v)| !v.1).map(|(k, _)| *k).collect();
                if let Some(id) = ids.first() {
                    if let Some(Ok(())) = w.node(a).session(sa).map(|mut s| s.finish(now, *id)) {
                        sent.get_mut(id).expect("present").1 = true;
                    }
                }
            }
            3 => {
                let len = usize::from(i.u16() % 1200);
                let d = vec![i.u8(); len];
                let _ = w.node(a).session(sa).map(|mut s| s.send_datagram(now, &d, i.0.len() % 2 == 0));
            }
            4 => w.run_for(Duration::from_millis(u64::from(i.u8()) * 4)),
            5 => {
                let loss = f64::from(i.u8() % 30) / 100.0;
                w.set_links(a, b, LinkConfig { loss, reorder: f64::from(i.u8() % 20) / 100.0, ..Default::default() });
            }
            6 => {
                let mut d = [0u8; 1500];
                while let Some(Some(_)) = w.node(b).session(sb).map(|mut s| s.recv_datagram(&mut d)) {}
            }
            _ => {}
        }
        read_all(&mut w, b, sb, &mut got, &mut buf);
    }
    w.set_links(a, b, LinkConfig::default());
    for _ in 0..400 {
        w.run_for(Duration::from_millis(50));
        read_all(&mut w, b, sb, &mut got, &mut buf);
    }
    if !w.is_established(a, sa) {
        panic!("session broke under fuzzed operations: {:?}", w.nodes[a].events.last());
    }
    for (id, (data, fin)) in &sent {
        let (rx, rfin) = got.get(id).cloned().unwrap_or_default();
        assert!(data.starts_with(&rx), "stream {id:?}: received bytes are not a prefix of the sent bytes");
        if *fin {
            assert!(rfin && rx == *data, "stream {id:?}: finished but not delivered exactly once, in order");
        }
    }
}

fn read_all(
    w: &mut World,
    b: usize,
    sb: crate::SessionId,
    got: &mut BTreeMap<StreamId, (Vec<u8>, bool)>,
    buf: &mut [u8],
) {
    let now = w.now;
    let Some(mut s) = w.node(b).session(sb) else { return };
    while let Some(id) = s.accept_stream() {
        got.entry(id).or_default();
    }
    for (id, (v, fin)) in got.iter_mut() {
        while !*fin {
            match s.read(now, *id, buf) {
                Ok((n, f)) => {
                    v.extend_from_slice(&buf[..n]);
                    *fin = f;
                    if n == 0 && !f {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
}

/// Reassembly against a naive model: any segments, any order, duplicates; conflicting
/// overlaps must be refused.
pub fn reassembly(data: &[u8]) {
    let mut i = Input8(data);
    let total = usize::from(i.u16() % 4096);
    let truth: Vec<u8> = (0..total).map(|x| (x * 7) as u8).collect();
    let mut b = RecvBuf::default();
    let mut out = Vec::new();
    let mut tmp = [0u8; 97];
    while !i.is_empty() {
        let start = usize::from(i.u16()) % (total + 1);
        let end = (start + usize::from(i.u8())).min(total);
        let corrupt = i.u8() == 0xff && end > start;
        let mut seg = truth[start..end].to_vec();
        if corrupt {
            seg[0] ^= 1;
        }
        let r = b.insert(start as u64, &seg, end == total, 1 << 20, usize::MAX);
        if corrupt {
            // Either refused as a conflict, or the corrupted byte was not yet received
            // (then the later genuine data conflicts instead); never delivered silently.
            let _ = r;
            return;
        }
        r.expect("consistent data is accepted");
        loop {
            let n = b.read(&mut tmp);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&tmp[..n]);
        }
        assert!(truth.starts_with(&out), "delivered bytes are a prefix of the stream");
    }
}

/// The replay window against a set model.
pub fn replay_window(data: &[u8]) {
    let mut w = ReplayWindow::default();
    let mut seen = alloc::collections::BTreeSet::new();
    let mut largest: Option<u64> = None;
    let mut i = Input8(data);
    let mut base = 0u64;
    while !i.is_empty() {
        base = base.wrapping_add(u64::from(i.u8()) * 16);
        let pn = base.saturating_sub(u64::from(i.u16()) % 4096);
        let expect = match largest {
            Some(l) if pn <= l && l - pn >= crate::REPLAY_WINDOW => ReplayVerdict::TooOld,
            _ if seen.contains(&pn) => ReplayVerdict::Duplicate,
            _ => ReplayVerdict::Fresh,
        };
        assert_eq!(w.check(pn), expect, "pn {pn}");
        if expect == ReplayVerdict::Fresh && i.u8() % 4 != 0 {
            w.mark(pn);
            seen.insert(pn);
            largest = Some(largest.map_or(pn, |l| l.max(pn)));
        }
    }
}

/// Cookie checks with arbitrary inputs never accept what was not minted.
pub fn cookie(data: &[u8]) {
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    let mut jar = crate::cookie::CookieJar::new(Duration::from_secs(120), 10, Instant::ZERO, &mut rng);
    let mut i = Input8(data);
    let addr = PathAddr::Udp(core::net::SocketAddr::from(([192, 0, 2, i.u8()], i.u16())));
    let mac: [u8; 16] = core::array::from_fn(|_| i.u8());
    let tag: [u8; 16] = core::array::from_fn(|_| i.u8());
    let rest = i.0;
    assert!(!jar.verify(Instant::ZERO, &mut rng, addr, rest, &mac), "a guessed cookie MAC verified");
    let _ = crate::cookie::open_cookie(&[7; 32], &tag, rest);
}

/// Application frame parsing on the frame stream, with arbitrary bytes.
pub fn app_frames(data: &[u8]) {
    let config = Config::default().crypto_provider(&NullAead).app_frame_types(&[0x80, 0xa0]);
    let mut w = World::new(3);
    w.capture = true;
    let a = w.add_node(config.clone());
    let b = w.add_node(config);
    let s = w.connect(a, b);
    if w.drive_until(|w| w.is_established(a, s) && !w.established(b).is_empty(), 1000).is_err() {
        return;
    }
    let Some(sid) =
        w.captured.iter().rev().find(|c| c.from_node == a && c.data[0] & 0xfe == 0x40).map(|c| c.data[1..9].to_vec())
    else {
        return;
    };
    // STREAM frames on the initiator's frame stream (index 2^60 - 1, uni, initiator side).
    let app_id = ((1u64 << 60) - 1) << 2 | 2;
    let mut payload = vec![0u8; data.len() + 32];
    let mut wr = Writer::new(&mut payload);
    Frame::Stream { id: app_id, offset: 0, data, fin: false }.encode(&mut wr).expect("fits");
    let n = wr.len();
    let mut pkt = vec![0x40];
    pkt.extend_from_slice(&sid);
    pkt.extend_from_slice(&5_000_000u32.to_be_bytes());
    pkt.extend_from_slice(&payload[..n]);
    pkt.extend_from_slice(&[0; 16]);
    let _ = w.inject(b, w.nodes[a].addr, &pkt);
    w.run_for(Duration::from_millis(100));
    let sb = w.established(b)[0].0;
    let mut buf = [0u8; 70_000];
    let now = w.now;
    if let Some(mut sess) = w.node(b).session(sb) {
        while let Some((ty, _)) = sess.recv_app_frame(now, &mut buf) {
            assert!(ty == 0x80 || ty == 0xa0, "an undeclared type was delivered");
        }
    }
}

/// Sealing under key updates never reuses a (key, packet number) pair.
pub fn key_schedule(data: &[u8]) {
    let mut i = Input8(data);
    let alg = if i.u8() & 1 == 0 { AeadAlg::ChaCha20Poly1305 } else { AeadAlg::Aes256Gcm };
    let mut r = Record::new(&RustCrypto, alg, [i.u8(); 32], [i.u8(); 32], None, Instant::ZERO);
    let mut seen = alloc::collections::BTreeSet::new();
    let mut buf = [0u8; 64];
    let mut now = Instant::ZERO;
    for _ in 0..256 {
        if i.is_empty() {
            break;
        }
        let policy = KeyUpdatePolicy {
            packets: u64::from(i.u8() % 8) + 1,
            interval: Duration::from_secs(3600),
            paused: i.u8() % 5 == 0,
        };
        now = now.saturating_add(Duration::from_millis(u64::from(i.u8())));
        let pn = r.next_pn();
        if r.seal(now, policy, WireSessionId([1; 8]), &mut buf, 8).is_ok() {
            assert!(seen.insert(pn), "packet number {pn} sealed twice");
        }
    }
}

/// ACK frames: decoded ranges are ascending-disjoint when reversed and within bounds.
pub fn ack_ranges(data: &[u8]) {
    let mut r = Reader::new(data);
    if let Some(Frame::Ack(a)) = Frame::decode(&mut r) {
        let mut prev: Option<core::ops::Range<u64>> = None;
        for range in a.ranges() {
            assert!(range.start < range.end && range.end <= a.largest + 1);
            if let Some(p) = prev {
                assert!(range.end < p.start, "ranges descend with gaps");
            }
            prev = Some(range);
        }
        let _ = AckFrame::encode;
    }
}

/// The segment decoder with arbitrary headers and segments: never panics; whatever it
/// releases for a genuine stream is a prefix of that stream.
pub fn segment(data: &[u8]) {
    use crate::segment::{SegmentDecoder, SegmentEncoder, SegmentMode};
    let key = [5u8; 32];
    let mut i = Input8(data);
    // A genuine stream, then fuzz-chosen deliveries and corruptions.
    let total = usize::from(i.u16() % 2000);
    let size = u32::from(i.u8() % 64) + 1;
    let mode = match i.u8() % 2 {
        0 => SegmentMode::Live,
        _ => SegmentMode::Bounded(total as u64),
    };
    let truth: Vec<u8> = (0..total).map(|x| (x * 13) as u8).collect();
    let Ok(mut e) = SegmentEncoder::new(&key, [7; 32], mode, size) else { return };
    let header = e.header().to_vec();
    let chunks: Vec<&[u8]> = if truth.is_empty() { vec![&[][..]] } else { truth.chunks(size as usize).collect() };
    let n = chunks.len();
    let segs: Vec<Vec<u8>> = chunks
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let mut out = vec![0u8; c.len() + 16];
            let _ = e.seal(c, k + 1 == n, &mut out);
            out
        })
        .collect();
    let Ok((mut d, _)) = SegmentDecoder::new(&key, &header) else { return };
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !i.is_empty() {
        let k = usize::from(i.u16()) % (n + 2);
        let mut seg = segs.get(k).cloned().unwrap_or_else(|| i.bytes(40).to_vec());
        if i.u8() == 0xff && !seg.is_empty() {
            let at = usize::from(i.u8()) % seg.len();
            seg[at] ^= 1;
        }
        let _ = d.push(k as u64, &seg);
        loop {
            let r = d.read(&mut buf);
            if r == 0 {
                break;
            }
            got.extend_from_slice(&buf[..r]);
        }
        assert!(truth.starts_with(&got), "released bytes are a prefix of the genuine stream");
    }
    if d.finish().is_ok() {
        assert_eq!(got, truth, "a complete stream is the whole stream");
    }
    // Arbitrary headers never panic.
    let _ = SegmentDecoder::new(&key, data);
}

/// A hostile member (spec [ST-7], [MG-3], [LC-10], [RL-11]): an established pair on the
/// null AEAD, and fuzz input decoded into sequences of authenticated frames from one side
/// (gappy and overlapping stream data, resets, stops, window updates, re-handshake
/// requests, path probes from spoofed addresses) injected while the driver drains output
/// only now and then. Asserts bounds, not just the absence of a panic: ranges held stay
/// within the caps, reassembly work, events and streams grow at most linearly with the
/// frames received, bytes toward spoofed addresses stay within 3× what they sent, and the
/// receiver's X25519 operations within the re-handshake rate limit.
pub fn hostile_frames(data: &[u8]) {
    const STREAMS: u64 = 8;
    let config = Config::default()
        .crypto_provider(&NullAead)
        .stream_window(16 * 1024)
        .session_window(64 * 1024)
        .max_stream_window(16 * 1024)
        .max_session_window(64 * 1024)
        .max_streams_bidi(STREAMS)
        .max_streams_uni(STREAMS)
        .max_stream_ranges(32)
        .max_session_ranges(64)
        .max_events(64)
        .max_session_events(32)
        .rehandshake_min_interval(Duration::from_secs(5));
    let mut w = World::new(3);
    w.capture = true;
    let a = w.add_node(config.clone());
    let b = w.add_node(config.clone());
    let sa = w.connect(a, b);
    if w.drive_until(|w| w.is_established(a, sa) && !w.established(b).is_empty(), 1000).is_err() {
        panic!("null-AEAD handshake did not complete");
    }
    let sb = w.established(b)[0].0;
    let b_addr = w.nodes[b].addr;
    let Some(sid) = w
        .captured
        .iter()
        .rev()
        .find(|c| c.from_node == a && c.to == b_addr && c.data[0] & 0xfe == 0x40)
        .map(|c| c.data[1..9].to_vec())
    else {
        return;
    };
    let from = w.nodes[a].addr;
    let (t0, ops0) = (w.now, w.node(b).stats().x25519_ops);
    let events0 = w.nodes[b].events.len();
    let mark = w.captured.len();
    let filler = [0x3c_u8; 256];
    let mut spoofed_in: BTreeMap<core::net::SocketAddr, u64> = BTreeMap::new();
    let (mut frames, mut stream_frames) = (0u64, 0u64);
    let mut i = Input8(data);
    let mut pn: u32 = 1_000_000;
    let mut body = vec![0u8; 1200];
    while !i.is_empty() {
        // One packet: up to `count` frames from the input.
        let count = 1 + usize::from(i.u8() % 32);
        let mut wr = Writer::new(&mut body);
        let mut spoof = None;
        for _ in 0..count {
            let id = (u64::from(i.u8()) % (2 * STREAMS)) << 2 | u64::from(i.u8() % 4);
            let f = match i.u8() % 10 {
                0..=3 => {
                    stream_frames += 1;
                    let offset = u64::from(i.u16() % 20_000);
                    let len = usize::from(i.u8() % 64);
                    Frame::Stream { id, offset, data: &filler[..len], fin: i.u8() % 16 == 0 }
                }
                4 => Frame::StreamClose { id, code: 1, final_size: u64::from(i.u16() % 20_000) },
                5 => Frame::StopSending { id, code: 2 },
                6 => Frame::MaxStreamData { id, max: u64::from(i.u16()) },
                7 => Frame::Rehandshake { seq: u64::from(i.u8()), message: 1, noise: &filler[..48] },
                8 => {
                    spoof = Some(core::net::SocketAddr::from(([198, 51, 100, i.u8() % 4], 9)));
                    Frame::PathChallenge([i.u8(); 8])
                }
                _ => Frame::KeepAlive,
            };
            if f.encoded_len() > wr.remaining() || f.encode(&mut wr).is_none() {
                break;
            }
            frames += 1;
        }
        let n = wr.len();
        if n == 0 {
            continue;
        }
        let mut pkt = Vec::with_capacity(13 + n + 16);
        pkt.push(0x40);
        pkt.extend_from_slice(&sid);
        pkt.extend_from_slice(&pn.to_be_bytes());
        pkt.extend_from_slice(&body[..n]);
        pkt.extend_from_slice(&[0; 16]);
        pn = pn.wrapping_add(1);
        let src = spoof.unwrap_or(from);
        if let Some(s) = spoof {
            *spoofed_in.entry(s).or_default() += pkt.len() as u64;
        }
        let _ = w.inject(b, src, &pkt);
        if let Some(s) = w.node(b).session(sb) {
            let st = s.stats();
            assert!(st.recv_ranges <= 64, "ranges held {} over the session cap", st.recv_ranges);
            assert!(st.streams <= 2 * STREAMS, "streams {} over the limits", st.streams);
            assert!(
                st.reassembly_steps <= 3 * stream_frames,
                "reassembly work {} for {stream_frames} stream frames",
                st.reassembly_steps
            );
        }
        // The driver drains now and then; in between, events pile up.
        match i.u8() % 4 {
            0 => w.flush(),
            1 => w.run_for(Duration::from_millis(u64::from(i.u8()) * 4)),
            _ => {}
        }
    }
    w.run_for(Duration::from_secs(1));
    let events = (w.nodes[b].events.len() - events0) as u64;
    // Per frame at most: the stream it names opened, one readable/reset/stopped event;
    // streams opened in bulk are bounded by the stream limits plus one per stream closed.
    assert!(events <= 3 * frames + 4 * STREAMS + 8, "{events} events for {frames} frames");
    for (addr, bytes_in) in &spoofed_in {
        let out: u64 =
            w.captured[mark..].iter().filter(|c| c.from_node == b && c.to == *addr).map(|c| c.data.len() as u64).sum();
        assert!(out <= 3 * bytes_in, "{out} B toward unvalidated {addr} for {bytes_in} B received");
    }
    let elapsed = w.now.saturating_duration_since(t0).as_secs();
    let ops = w.node(b).stats().x25519_ops - ops0;
    assert!(ops <= 2 * (1 + elapsed / 5), "{ops} X25519 at the responder in {elapsed} s");
}

/// Relays and hole punching under a hostile member (spec §12): a relay R, a member M and a
/// victim V, both registered, and M's session with V through R. M's node then goes silent
/// and fuzz input becomes M's authenticated packets (null AEAD): on its session with the
/// relay (RELAY_DATA to V, to itself, to unknown ids, of any size; RELAY_REGISTER;
/// RELAY_STATUS) and end to end to V, through the relay or directly from M's or spoofed
/// addresses (CANDIDATES of any round naming any addresses, PATH_CHALLENGE, PATH_RESPONSE
/// echoing a probe V sent to M's address, relay frames, keepalives), with time passing.
/// Asserts bounds, not just the absence of a panic: no node ever stalls ([ND-1]), and V
/// sends addresses other than its relay's and M's at most 3× the bytes it received ([MG-3],
/// [PU-3], [PU-5]).
pub fn relay_frames(data: &[u8]) {
    use core::net::SocketAddr;
    let config = Config::default().crypto_provider(&NullAead);
    let mut w = World::new(4);
    w.capture = true;
    let r = w.add_node(config.clone().relay(Some(crate::RelayConfig::default())));
    let m = w.add_node(config.clone().keep_relay_path(true));
    let v = w.add_node(config);
    for i in [m, v] {
        let addr = w.nodes[i].addr;
        w.node(i).set_local_addresses(&[addr]);
    }
    let (mr, vr) = (w.connect(m, r), w.connect(v, r));
    if w.drive_until(|w| w.is_established(m, mr) && w.is_established(v, vr), 1000).is_err() {
        panic!("null-AEAD handshakes did not complete");
    }
    for (i, s) in [(m, mr), (v, vr)] {
        w.node(i).session(s).map(|mut s| s.register_relay());
    }
    let registered = |w: &mut World, i: usize, s| {
        matches!(w.node(i).session(s).and_then(|s| s.relay_status()), Some(crate::RelayStatus::Registered { .. }))
    };
    if w.drive_until(|w| registered(w, m, mr) && registered(w, v, vr), 1000).is_err() {
        panic!("registration did not complete");
    }
    let (m_id, v_id) = (w.node_id(m), w.node_id(v));
    let now = w.now;
    let Ok(mv) = w.node(m).connect_via_relay(now, mr, v_id) else { panic!("connect through the relay") };
    if w.drive_until(|w| w.is_established(m, mv) && w.established(v).iter().any(|(_, p)| *p == m_id), 2000).is_err() {
        panic!("relayed handshake did not complete");
    }
    w.run_for(Duration::from_millis(100));
    let (r_addr, m_addr, v_addr) = (w.nodes[r].addr, w.nodes[m].addr, w.nodes[v].addr);
    let sid_of = |w: &World, from: usize, to: SocketAddr| {
        w.captured.iter().rev().find(|c| c.from_node == from && c.to == to && c.data[0] & 0xfe == 0x40).map(|c| {
            let mut s = [0u8; 8];
            s.copy_from_slice(&c.data[1..9]);
            s
        })
    };
    let Some(sid_r) = sid_of(&w, m, r_addr) else { return };
    // V's session id for M: the header of an end-to-end packet inside M's RELAY_DATA.
    let mut sid_v = None;
    for c in w.captured.iter().rev().filter(|c| c.from_node == m && c.to == r_addr) {
        let mut rd = Reader::new(&c.data[13..c.data.len() - 16]);
        while let Some(f) = Frame::decode(&mut rd) {
            if let Frame::RelayData { peer, data } = f {
                if peer == v_id.0 && data.len() > 9 {
                    let mut s = [0u8; 8];
                    s.copy_from_slice(&data[1..9]);
                    sid_v = Some(s);
                }
            }
        }
        if sid_v.is_some() {
            break;
        }
    }
    let Some(sid_v) = sid_v else { return };
    w.restart(m);
    let mark = w.captured.len();
    // What V is sent: the relay's datagrams (captured) and what is injected straight to it.
    let mut injected = 0u64;
    let spoofed = |k: u8| SocketAddr::from(([198, 51, 100, k % 4], 9));
    let seal = |sid: [u8; 8], pn: u32, body: &[u8]| {
        let mut p = Vec::with_capacity(13 + body.len() + 16);
        p.push(0x40);
        p.extend_from_slice(&sid);
        p.extend_from_slice(&pn.to_be_bytes());
        p.extend_from_slice(body);
        p.extend_from_slice(&[0; 16]);
        p
    };
    let filler = [0x40_u8; 1400];
    let mut i = Input8(data);
    let (mut pn_r, mut pn_v) = (1_000_000u32, 1_000_000u32);
    let mut body = vec![0u8; 1300];
    let mut inner = vec![0u8; 1300];
    while !i.is_empty() {
        // One end-to-end packet M→V of up to 8 frames.
        let mut wr = Writer::new(&mut inner);
        for _ in 0..1 + i.u8() % 8 {
            let probe = w
                .captured
                .iter()
                .rev()
                // M reads only what reaches its own address.
                .find(|c| c.from_node == v && c.to == m_addr && c.data.len() > 22 && c.data[13] == 0x31)
                .map(|c| {
                    let mut d = [0u8; 8];
                    d.copy_from_slice(&c.data[14..22]);
                    d
                });
            let mut cands = [0u8; 8 * 19];
            let f = match i.u8() % 8 {
                0 | 1 => {
                    let n = usize::from(i.u8() % 9);
                    let mut cw = Writer::new(&mut cands);
                    for _ in 0..n {
                        let a = match i.u8() % 4 {
                            0 => m_addr,
                            1 => spoofed(i.u8()),
                            2 => SocketAddr::from(([i.u8(), i.u8(), i.u8(), i.u8()], i.u16())),
                            _ => v_addr,
                        };
                        let _ = crate::wire::handshake::encode_addr(&mut cw, Some(a));
                    }
                    let len = cw.len();
                    let round = u64::from(i.u8() % 8);
                    let f = Frame::Candidates { round, addrs: &cands[..len] };
                    if f.encoded_len() > wr.remaining() || f.encode(&mut wr).is_none() {
                        break;
                    }
                    continue;
                }
                2 => Frame::PathResponse(probe.unwrap_or_else(|| [i.u8(); 8])),
                3 => Frame::PathChallenge([i.u8(); 8]),
                4 => Frame::RelayRegister,
                5 => Frame::RelayData { peer: [i.u8(); 32], data: &filler[..usize::from(i.u8())] },
                6 => Frame::RelayStatus { status: i.u8() % 2, observed: Some(spoofed(i.u8())) },
                _ => Frame::KeepAlive,
            };
            if f.encoded_len() > wr.remaining() || f.encode(&mut wr).is_none() {
                break;
            }
        }
        let n = wr.len();
        if n == 0 {
            continue;
        }
        pn_v = pn_v.wrapping_add(1);
        let e2e = seal(sid_v, pn_v, &inner[..n]);
        match i.u8() % 4 {
            // Through the relay, with extra RELAY_DATA to itself, to nobody or oversized.
            0 | 1 => {
                let mut wr = Writer::new(&mut body);
                let _ = Frame::RelayData { peer: v_id.0, data: &e2e }.encode(&mut wr);
                let room = wr.remaining().saturating_sub(40);
                let extra = match i.u8() % 4 {
                    0 => Some(Frame::RelayData { peer: m_id.0, data: &filler[..64.min(room)] }),
                    1 => {
                        let len = (usize::from(i.u16()) % filler.len()).min(room);
                        Some(Frame::RelayData { peer: [i.u8(); 32], data: &filler[..len] })
                    }
                    2 => Some(Frame::RelayRegister),
                    _ => None,
                };
                if let Some(f) = extra.filter(|f| f.encoded_len() <= wr.remaining()) {
                    let _ = f.encode(&mut wr);
                }
                let n = wr.len();
                pn_r = pn_r.wrapping_add(1);
                let _ = w.inject(r, m_addr, &seal(sid_r, pn_r, &body[..n]));
            }
            // Straight to V, from M's address or a spoofed one.
            2 => {
                injected += e2e.len() as u64;
                let _ = w.inject(v, m_addr, &e2e);
            }
            _ => {
                injected += e2e.len() as u64;
                let _ = w.inject(v, spoofed(i.u8()), &e2e);
            }
        }
        match i.u8() % 4 {
            0 => w.flush(),
            1 => w.run_for(Duration::from_millis(u64::from(i.u8()) * 8)),
            _ => {}
        }
    }
    w.run_for(Duration::from_secs(3));
    for n in [r, v] {
        assert_eq!(w.node(n).stats().stalled_deadlines, 0, "node {n} stalled");
    }
    // Since the start: credit earned before the attack counts too.
    let v_in = injected
        + w.captured.iter().filter(|c| c.to == v_addr && c.from_node != v).map(|c| c.data.len() as u64).sum::<u64>();
    let third: u64 = w.captured[mark..]
        .iter()
        .filter(|c| c.from_node == v && c.to != r_addr && c.to != m_addr)
        .map(|c| c.data.len() as u64)
        .sum();
    assert!(third <= 3 * v_in, "{third} B to third parties for {v_in} B received");
}
