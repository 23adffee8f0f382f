//! The adapter that drives `stt-proto` directly: the reference IUT, also served by the
//! `stt-shim` binary. Deliberately broken behaviours ([`Break`]) are chosen at run time,
//! so the suite can be shown to fail without a cargo feature leaking into other builds.

use core::time::Duration;
use std::net::SocketAddr;
use std::str::FromStr;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stt_conformance_peer::item::{filler, hex, parse_bytes, parse_num, render_bytes, unhex};
use stt_conformance_peer::Item;
use stt_proto::crypto::AeadAlg;
use stt_proto::{
    Config, CongestionAlgorithm, Event, Identity, Input, Instant, Node, NodeId, NodeSeed, Output, PathAddr,
    RelayConfig, RelayStatus, SessionId, SessionState, SharedSeed, StreamId, UnixTime,
};

use crate::iut::{Iut, NodeSpec, Out};

/// A deliberately broken behaviour of the reference adapter (for showing the suite can fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Break {
    /// Every datagram is sent twice.
    DupOutput,
    /// Timers fire 1 ms after their deadline.
    LateTimers,
    /// Application events are lost.
    NoEvents,
    /// Every datagram received is echoed back to its sender (an amplifier).
    EchoInput,
    /// The last byte of every protected datagram is flipped on the way out.
    CorruptOutput,
}

impl FromStr for Break {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "dup-output" => Break::DupOutput,
            "late-timers" => Break::LateTimers,
            "no-events" => Break::NoEvents,
            "echo-input" => Break::EchoInput,
            "corrupt-output" => Break::CorruptOutput,
            other => {
                return Err(format!(
                    "unknown break `{other}` (dup-output, late-timers, no-events, echo-input, corrupt-output)"
                ))
            }
        })
    }
}

struct Slot {
    node: Node<ChaCha20Rng>,
    current: Option<SessionId>,
    /// The session of the last `register_relay` call (what `connect_via_relay` rides on).
    relay: Option<SessionId>,
    echo: Vec<Out>,
}

/// stt-proto behind the [`Iut`] contract.
#[derive(Default)]
pub struct ProtoIut {
    nodes: Vec<Option<Slot>>,
    breaks: Vec<Break>,
}

fn ms(v: &str) -> Result<Duration, String> {
    parse_num(v).map(Duration::from_millis).ok_or_else(|| format!("`{v}` is not a number of ms"))
}

fn num(v: &str) -> Result<u64, String> {
    parse_num(v).ok_or_else(|| format!("`{v}` is not a number"))
}

fn node_id(h: &str) -> Result<NodeId, String> {
    unhex(h).and_then(|b| <[u8; 32]>::try_from(b).ok()).map(NodeId).ok_or_else(|| format!("`{h}`: 64 hex digits"))
}

/// Applies `@config` names (docs/conformance.md §4) to a stt-proto config.
fn configure(mut c: Config, items: &[(String, String)]) -> Result<Config, String> {
    // `relay=1` and the `relay_*` limits build one relay configuration (spec §12.2).
    let mut relay: Option<RelayConfig> = None;
    for (k, v) in items {
        if let Some(limit) = k.strip_prefix("relay") {
            let rc = relay.get_or_insert_with(RelayConfig::default);
            match limit {
                "" if v == "1" || v == "true" => {}
                "" => {
                    relay = None;
                    continue;
                }
                "_members" => rc.members = Some(v.split(',').map(node_id).collect::<Result<_, _>>()?),
                "_max_members" => rc.max_members = num(v)? as usize,
                "_member_rate" => rc.member_rate = num(v)? as u32,
                "_member_burst" => rc.member_burst = num(v)? as u32,
                "_member_queue" => rc.member_queue = num(v)? as usize,
                other => return Err(format!("unsupported config `relay{other}`")),
            }
            continue;
        }
        let off = |v: &str| -> Result<Option<Duration>, String> { Ok(Some(ms(v)?).filter(|d| !d.is_zero())) };
        c = match k.as_str() {
            "idle_timeout_ms" => c.idle_timeout(ms(v)?),
            "handshake_timeout_ms" => c.handshake_timeout(ms(v)?),
            "handshake_retransmit_ms" => c.handshake_retransmit(ms(v)?),
            "keepalive_active_ms" => c.keepalive_active(off(v)?),
            "keepalive_idle_ms" => c.keepalive_idle(off(v)?),
            "handshake_rate" => c.handshake_rate(num(v)? as u32),
            "handshake_burst" => c.handshake_burst(num(v)? as u32),
            "timestamp_window_ms" => c.timestamp_window(ms(v)?),
            "cookie_lifetime_ms" => c.cookie_lifetime(ms(v)?),
            "cookie_rate" => c.cookie_rate(num(v)? as u32),
            "ephemeral_cache" => c.ephemeral_cache(num(v)? as usize),
            "max_half_open" => c.max_half_open(num(v)? as usize),
            "max_sessions" => c.max_sessions(num(v)? as usize),
            "accept_incoming" => c.accept_incoming(v == "1" || v == "true"),
            "key_update_packets" => c.key_update_packets(num(v)?),
            "rehandshake_interval_ms" => c.rehandshake_interval(off(v)?),
            "rehandshake_min_interval_ms" => c.rehandshake_min_interval(ms(v)?),
            "max_events" => c.max_events(num(v)? as usize),
            "max_session_events" => c.max_session_events(num(v)? as usize),
            "max_stream_ranges" => c.max_stream_ranges(num(v)? as usize),
            "max_session_ranges" => c.max_session_ranges(num(v)? as usize),
            "integrity_limit" => c.integrity_limit(num(v)?),
            "app_frame_queue" => c.app_frame_queue(num(v)? as usize),
            "max_udp_payload" => c.max_udp_payload(num(v)? as usize),
            "max_datagram_frame" => c.max_datagram_frame(num(v)? as usize),
            "initial_max_stream_data" => c.stream_window(num(v)?),
            "initial_max_data" => c.session_window(num(v)?),
            "max_stream_window" => c.max_stream_window(num(v)?),
            "max_session_window" => c.max_session_window(num(v)?),
            "initial_max_streams_bidi" => c.max_streams_bidi(num(v)?),
            "initial_max_streams_uni" => c.max_streams_uni(num(v)?),
            "congestion" => c.congestion(match v.as_str() {
                "newreno" => CongestionAlgorithm::NewReno,
                _ => CongestionAlgorithm::Cubic,
            }),
            "aeads" => {
                let algs: Vec<AeadAlg> = v
                    .split(',')
                    .map(|a| match a {
                        "chacha" | "01" => Ok(AeadAlg::ChaCha20Poly1305),
                        "aes" | "02" => Ok(AeadAlg::Aes256Gcm),
                        o => Err(format!("unknown AEAD `{o}`")),
                    })
                    .collect::<Result<_, _>>()?;
                c.aeads(&algs)
            }
            "app_frame_types" => {
                let types: Vec<u8> = v.split(',').map(|t| num(t).map(|n| n as u8)).collect::<Result<_, _>>()?;
                c.app_frame_types(&types)
            }
            "allow_list" => {
                let ids = v
                    .split(',')
                    .map(|h| {
                        unhex(h).and_then(|b| <[u8; 32]>::try_from(b).ok()).map(NodeId).ok_or("allow_list: hex ids")
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                c.allow_list(Some(ids))
            }
            "keep_relay_path" => c.keep_relay_path(v == "1" || v == "true"),
            other => return Err(format!("unsupported config `{other}`")),
        };
    }
    if relay.is_some() {
        c = c.relay(relay);
    }
    Ok(c)
}

fn event_item(e: &Event) -> Option<(Option<SessionId>, Item)> {
    Some(match *e {
        Event::Established { session, peer } => (Some(session), Item::new("Established").with("peer", hex(&peer.0))),
        Event::HandshakeFailed { session, reason } => {
            (Some(session), Item::new("HandshakeFailed").with("reason", format!("{reason:?}").replace(' ', "")))
        }
        Event::Closed { session, reason } => {
            (Some(session), Item::new("Closed").with("reason", format!("{reason:?}").replace(' ', "")))
        }
        Event::DatagramReadable { .. } => (None, Item::new("DatagramReadable")),
        Event::StreamOpened { stream, .. } => (None, Item::new("StreamOpened").with("id", stream.0)),
        Event::StreamReadable { stream, .. } => (None, Item::new("StreamReadable").with("id", stream.0)),
        Event::StreamWritable { stream, .. } => (None, Item::new("StreamWritable").with("id", stream.0)),
        Event::StreamFinished { stream, .. } => (None, Item::new("StreamFinished").with("id", stream.0)),
        Event::StreamReset { stream, code, .. } => {
            (None, Item::new("StreamReset").with("id", stream.0).with("code", code))
        }
        Event::StreamStopped { stream, code, .. } => {
            (None, Item::new("StreamStopped").with("id", stream.0).with("code", code))
        }
        Event::StreamsUnblocked { .. } => (None, Item::new("StreamsUnblocked")),
        Event::AppFrameReadable { .. } => (None, Item::new("AppFrameReadable")),
        Event::PathChanged { remote, .. } => (None, path_item(Item::new("PathChanged"), remote)),
        Event::RelayStatus { status, .. } => (None, relay_status_item(Item::new("RelayStatus"), status)),
        _ => return None,
    })
}

/// `remote=ip:port`, or `remote=relay peer=ID` for a relayed path (spec §12).
fn path_item(it: Item, a: PathAddr) -> Item {
    match a {
        PathAddr::Relay(r) => it.with("remote", "relay").with("peer", hex(&r.peer.0)),
        other => it.with("remote", addr_text(other)),
    }
}

/// `status=registering|registered|refused`, and `observed=ip:port|none` when registered.
fn relay_status_item(it: Item, s: RelayStatus) -> Item {
    match s {
        RelayStatus::Registering => it.with("status", "registering"),
        RelayStatus::Registered { observed } => {
            it.with("status", "registered").with("observed", observed.map_or("none".into(), |a| a.to_string()))
        }
        RelayStatus::Refused => it.with("status", "refused"),
    }
}

fn addr(s: &str) -> Result<PathAddr, String> {
    SocketAddr::from_str(s).map(PathAddr::Udp).map_err(|_| format!("`{s}` is not ip:port"))
}

fn addr_text(a: PathAddr) -> String {
    match a {
        PathAddr::Udp(a) => a.to_string(),
        PathAddr::Tunnel(t) => format!("tunnel:{t:?}"),
        PathAddr::Relay(r) => format!("relay:{r:?}"),
    }
}

impl ProtoIut {
    /// The reference adapter with the given broken behaviours.
    pub fn new(breaks: Vec<Break>) -> Self {
        Self { nodes: Vec::new(), breaks }
    }

    fn slot(&mut self, node: usize) -> Result<&mut Slot, String> {
        self.nodes.get_mut(node).and_then(Option::as_mut).ok_or_else(|| format!("no node {node}"))
    }

    fn broken(&self, b: Break) -> bool {
        self.breaks.contains(&b)
    }
}

impl Iut for ProtoIut {
    fn features(&mut self) -> Result<Vec<String>, String> {
        Ok([
            "streams",
            "datagrams",
            "app-frames",
            "key-update",
            "rehandshake",
            "cookie",
            "migration",
            "pmtud",
            "allow-list",
            "relay",
        ]
        .map(String::from)
        .to_vec())
    }

    fn create(&mut self, node: usize, spec: &NodeSpec) -> Result<[u8; 32], String> {
        let (extra, rest): (Vec<_>, Vec<_>) = spec.config.iter().cloned().partition(|(k, _)| k == "extra_shared_seed");
        // Traces must not depend on the host CPU: ChaCha20-Poly1305 first unless `@config aeads=`.
        let base = Config::default().aeads(&[AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm]);
        let config = configure(base, &rest)?;
        let mut identity =
            Identity::new(NodeSeed::from_bytes(spec.node_seed), SharedSeed::from_bytes(spec.shared_seed));
        for (_, v) in extra {
            let b: [u8; 32] =
                parse_bytes(&v).and_then(|b| b.try_into().ok()).ok_or("extra_shared_seed=hex:<32 bytes>")?;
            identity = identity.with_shared_seed(SharedSeed::from_bytes(b)).map_err(|e| format!("{e:?}"))?;
        }
        let n = Node::new(
            config,
            identity,
            ChaCha20Rng::seed_from_u64(spec.rng),
            Instant::from_micros(0),
            Some(UnixTime::from_millis(spec.unix_ms)),
        )
        .map_err(|e| e.to_string())?;
        let id = n.node_id().0;
        if self.nodes.len() <= node {
            self.nodes.resize_with(node + 1, || None);
        }
        self.nodes[node] = Some(Slot { node: n, current: None, relay: None, echo: Vec::new() });
        Ok(id)
    }

    fn input(&mut self, node: usize, now_us: u64, from: &str, data: &[u8]) -> Result<(), String> {
        let echo = self.broken(Break::EchoInput);
        let from = addr(from)?;
        let s = self.slot(node)?;
        let mut buf = data.to_vec();
        let _ = s.node.handle_input(Input::Datagram { now: Instant::from_micros(now_us), from, data: &mut buf });
        if echo {
            s.echo.push(Out::Send { to: addr_text(from), data: data.to_vec() });
        }
        Ok(())
    }

    fn timeout(&mut self, node: usize, now_us: u64) -> Result<(), String> {
        let late = self.broken(Break::LateTimers);
        let s = self.slot(node)?;
        let now = if late { now_us.saturating_sub(1000) } else { now_us };
        let _ = s.node.handle_input(Input::Timeout { now: Instant::from_micros(now) });
        Ok(())
    }

    fn deadline(&mut self, node: usize) -> Result<Option<u64>, String> {
        let late = self.broken(Break::LateTimers);
        let s = self.slot(node)?;
        Ok(s.node.next_deadline().map(|d| d.as_micros() + if late { 1000 } else { 0 }))
    }

    fn drain(&mut self, node: usize) -> Result<Vec<Out>, String> {
        let (dup, no_events, corrupt) =
            (self.broken(Break::DupOutput), self.broken(Break::NoEvents), self.broken(Break::CorruptOutput));
        let s = self.slot(node)?;
        let mut out = core::mem::take(&mut s.echo);
        let mut buf = vec![0u8; 65536];
        loop {
            match s.node.poll_output(&mut buf) {
                Output::Transmit(t) => {
                    let mut data = buf[..t.len].to_vec();
                    if corrupt && matches!(data.first(), Some(0x40 | 0x41)) {
                        if let Some(b) = data.last_mut() {
                            *b ^= 1;
                        }
                    }
                    let o = Out::Send { to: addr_text(t.dst), data };
                    if dup {
                        out.push(o.clone());
                    }
                    out.push(o);
                }
                Output::Event(e) => {
                    if let Some((session, item)) = event_item(&e) {
                        if item.name == "Established" {
                            s.current = session;
                        }
                        if !no_events {
                            out.push(Out::Event(item));
                        }
                    }
                }
                Output::Wait(_) => return Ok(out),
            }
        }
    }

    fn app(&mut self, node: usize, now_us: u64, call: &Item) -> Result<Result<Item, String>, String> {
        let now = Instant::from_micros(now_us);
        let s = self.slot(node)?;
        let ok = Item::new("");
        let stream = |call: &Item| -> Result<StreamId, String> {
            call.num("id")?.map(StreamId).ok_or_else(|| format!("{} needs id=", call.name))
        };
        if call.name == "connect" {
            let to = addr(call.get("to").ok_or("connect needs to=")?)?;
            let expect = match call.get("expect") {
                Some(h) => Some(NodeId(unhex(h).and_then(|b| b.try_into().ok()).ok_or("expect=64 hex digits")?)),
                None => None,
            };
            return Ok(match s.node.connect(now, to, expect) {
                Ok(id) => {
                    s.current = Some(id);
                    Ok(ok)
                }
                Err(e) => Err(format!("{e:?}")),
            });
        }
        if call.name == "shutdown" {
            s.node.close(now);
            return Ok(Ok(ok));
        }
        if call.name == "local_addresses" {
            let addrs = call.get("addrs").ok_or("local_addresses needs addrs=ip:port,…")?;
            let addrs: Vec<SocketAddr> = addrs
                .split(',')
                .map(|a| SocketAddr::from_str(a).map_err(|_| format!("`{a}` is not ip:port")))
                .collect::<Result<_, _>>()?;
            s.node.set_local_addresses(&addrs);
            return Ok(Ok(ok));
        }
        if call.name == "connect_via_relay" {
            let peer = node_id(call.get("peer").ok_or("connect_via_relay needs peer=")?)?;
            let Some(via) = s.relay.or(s.current) else { return Ok(Err("no_session".into())) };
            return Ok(match s.node.connect_via_relay(now, via, peer) {
                Ok(id) => {
                    s.current = Some(id);
                    Ok(ok)
                }
                Err(e) => Err(format!("{e:?}")),
            });
        }
        if call.name == "sync_time" {
            s.node.sync_unix_time(now, UnixTime::from_millis(call.num("unix")?.ok_or("sync_time needs unix=")?));
            return Ok(Ok(ok));
        }
        let Some(id) = s.current else { return Ok(Err("no_session".into())) };
        let Some(mut sess) = s.node.session(id) else { return Ok(Err("no_session".into())) };
        let res: Result<Item, String> = match call.name.as_str() {
            "open" => sess
                .open_stream(now, call.get("uni").is_some())
                .map(|i| ok.with("id", i.0))
                .map_err(|e| format!("{e:?}")),
            "accept" => Ok(match sess.accept_stream() {
                Some(i) => ok.with("id", i.0),
                None => ok.with("none", ""),
            }),
            "write" => {
                let off = call.num("off")?.unwrap_or(0);
                let data = match call.bytes("data")? {
                    Some(d) => d,
                    None => filler(off, call.num("len")?.ok_or("write needs data= or len=")? as usize),
                };
                sess.write(now, stream(call)?, &data).map(|n| ok.with("n", n)).map_err(|e| format!("{e:?}"))
            }
            "finish" => sess.finish(now, stream(call)?).map(|()| ok).map_err(|e| format!("{e:?}")),
            "reset" => sess
                .reset_stream(now, stream(call)?, call.num("code")?.unwrap_or(0))
                .map(|()| ok)
                .map_err(|e| format!("{e:?}")),
            "stop" => sess
                .stop_sending(now, stream(call)?, call.num("code")?.unwrap_or(0))
                .map(|()| ok)
                .map_err(|e| format!("{e:?}")),
            "read" => {
                let mut buf = vec![0u8; call.num("max")?.unwrap_or(65536) as usize];
                match sess.read(now, stream(call)?, &mut buf) {
                    Ok((n, fin)) => {
                        let mut r = ok.with("len", n);
                        if let Some(off) = call.num("check")? {
                            r = r.with("filler", u8::from(buf[..n] == filler(off, n)[..]));
                        } else if n <= 64 {
                            r = r.with("data", render_bytes(&buf[..n]));
                        }
                        Ok(r.with("fin", u8::from(fin)))
                    }
                    Err(e) => Err(format!("{e:?}")),
                }
            }
            "datagram" => {
                let data = call.bytes("data")?.ok_or("datagram needs data=")?;
                sess.send_datagram(now, &data, false).map(|()| ok).map_err(|e| format!("{e:?}"))
            }
            "recv_datagram" => {
                let mut buf = vec![0u8; 65536];
                Ok(match sess.recv_datagram(&mut buf) {
                    Some(n) => ok.with("data", render_bytes(&buf[..n])),
                    None => ok.with("none", ""),
                })
            }
            "frame" => {
                let ty = call.num("ty")?.ok_or("frame needs ty=")? as u8;
                let data = call.bytes("data")?.unwrap_or_default();
                sess.send_app_frame(now, ty, &data).map(|()| ok).map_err(|e| format!("{e:?}"))
            }
            "recv_frame" => {
                let mut buf = vec![0u8; 65536];
                Ok(match sess.recv_app_frame(now, &mut buf) {
                    Some((ty, n)) => ok.with("ty", format!("{ty:#04x}")).with("data", render_bytes(&buf[..n])),
                    None => ok.with("none", ""),
                })
            }
            "close" => {
                sess.close(now, call.num("code")?.unwrap_or(0));
                Ok(ok)
            }
            "register_relay" => {
                if sess.register_relay() {
                    s.relay = Some(id);
                    Ok(ok)
                } else {
                    Err("relayed_path".into())
                }
            }
            "relay_status" => Ok(match sess.relay_status() {
                Some(st) => relay_status_item(ok, st),
                None => ok.with("status", "none"),
            }),
            "remote" => Ok(path_item(ok, sess.remote())),
            "export" => {
                let label = call.bytes("label")?.unwrap_or_default();
                let mut out = vec![0u8; call.num("len")?.unwrap_or(32) as usize];
                sess.export_keying_material(&label, &[], &mut out)
                    .map(|()| ok.with("data", format!("hex:{}", hex(&out))))
                    .map_err(|e| format!("{e:?}"))
            }
            other => return Err(format!("unsupported app call `{other}`")),
        };
        Ok(res)
    }

    fn state(&mut self, node: usize, name: &str) -> Result<Option<i64>, String> {
        let s = self.slot(node)?;
        let st = s.node.stats().clone();
        let v = match name {
            "sessions" => s.node.session_ids().count() as u64,
            "established" => {
                let ids: Vec<_> = s.node.session_ids().collect();
                ids.into_iter()
                    .filter(|i| s.node.session(*i).is_some_and(|x| x.state() == SessionState::Established))
                    .count() as u64
            }
            "x25519_ops" => st.x25519_ops,
            "handshakes_completed" => st.handshakes_completed,
            "handshakes_started" => st.handshakes_started,
            "challenges_resent" => st.challenges_resent,
            "finals_resent" => st.finals_resent,
            "cookies_sent" => st.cookies_sent,
            "datagrams_in" => st.datagrams_in,
            "datagrams_out" => st.datagrams_out,
            "bytes_out" => st.bytes_out,
            "drops.total" => st.dropped_total(),
            "relay_forwarded" => st.relay_forwarded,
            "relay_forwarded_bytes" => st.relay_forwarded_bytes,
            "relay_dropped" => st.relay_dropped,
            "relay_refused" => st.relay_refused,
            "relay_send_dropped" => st.relay_send_dropped,
            "relay_fallbacks" => st.relay_fallbacks,
            "punch_probes" => st.punch_probes,
            "punch_direct" => st.punch_direct,
            n if n.starts_with("drops.") => {
                use stt_proto::DropReason as D;
                let r = match &n[6..] {
                    "malformed" => D::Malformed,
                    "bad_version" => D::BadVersion,
                    "unknown_session" => D::UnknownSession,
                    "auth_failed" => D::AuthFailed,
                    "replay" => D::Replay,
                    "rate_limited" => D::RateLimited,
                    "cookie_sent" => D::CookieSent,
                    "bad_cookie" => D::BadCookie,
                    "not_accepting" => D::NotAccepting,
                    "no_common_aead" => D::NoCommonAead,
                    "unexpected_state" => D::UnexpectedState,
                    "event_queue_full" => D::EventQueueFull,
                    "not_allowed" => D::NotAllowed,
                    _ => return Ok(None),
                };
                st.dropped(r)
            }
            n if n.starts_with("session.") => {
                let Some(id) = s.current else { return Ok(Some(-1)) };
                let Some(sess) = s.node.session(id) else { return Ok(Some(-1)) };
                let ss = sess.stats();
                match &n[8..] {
                    "state" => match sess.state() {
                        SessionState::Handshaking => 0,
                        SessionState::Established => 1,
                        SessionState::Closing => 2,
                        SessionState::Draining => 3,
                        _ => 4,
                    },
                    "packets_in" => ss.packets_in,
                    "packets_out" => ss.packets_out,
                    "auth_failures" => ss.auth_failures,
                    "replays" => ss.replays,
                    "key_updates" => ss.key_updates,
                    "rehandshakes" => ss.rehandshakes,
                    "lost" => ss.lost,
                    "spurious_losses" => ss.spurious_losses,
                    "cwnd" => ss.cwnd,
                    "bytes_in_flight" => ss.bytes_in_flight,
                    "rtt_us" => u64::try_from(ss.rtt.as_micros()).unwrap_or(u64::MAX),
                    "streams" => ss.streams,
                    "recv_ranges" => ss.recv_ranges,
                    "mtu" => ss.mtu,
                    "aead" => u64::from(sess.aead().map_or(0, AeadAlg::id)),
                    "relayed" => u64::from(sess.remote().is_relayed()),
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(v as i64))
    }
}
