//! Runs one trace against an IUT on a virtual clock (docs/conformance.md §2–§3).

use std::collections::VecDeque;

use stt_conformance_peer::item::{hex, parse_bytes};
use stt_conformance_peer::{Decoded, Item, Peer, PeerSetup};

use crate::iut::{Iut, NodeSpec, Out};
use crate::matching::{decoded_spec, item_spec, match_fields, match_item, match_packet, resolve, to_item, Vars};
use crate::trace::{render_line, render_spec, render_time, Action, Level, Line, Role, Spec, Time, Trace};

/// The scripted peer's address.
pub const PEER_ADDR: &str = "192.0.2.10:40000";
/// The second scripted peer's address (`peer2`, relay cases).
pub const PEER2_ADDR: &str = "192.0.2.20:40000";
/// The implementation's address.
pub const IUT_ADDR: &str = "198.51.100.1:7000";
/// Wall clock at virtual time 0 (ms since 1970).
pub const UNIX_AT_ZERO: u64 = 1_800_000_000_000;
/// The fixture shared seed (`00 01 … 1f`, as in the spec's vectors).
pub const SHARED_SEED: [u8; 32] = {
    let mut s = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        s[i] = i as u8;
        i += 1;
    }
    s
};

/// Node seed of IUT node `n`.
pub fn iut_seed(n: usize) -> [u8; 32] {
    core::array::from_fn(|i| 0x20 + i as u8 + (n as u8) * 0x40)
}

/// Node seed of the scripted peer.
pub const PEER_SEED: [u8; 32] = [0x99; 32];
/// Node seed of the second scripted peer.
pub const PEER2_SEED: [u8; 32] = [0x98; 32];

/// The scripted peers by name, address and node seed: `peer` sends and reads by default;
/// `peer2` is a second identity for relay cases (docs/conformance.md §2, "Several peers").
pub const PEERS: [(&str, &str, [u8; 32]); 2] = [("peer", PEER_ADDR, PEER_SEED), ("peer2", PEER2_ADDR, PEER2_SEED)];

/// A case's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every expectation held.
    Pass,
    /// A MUST-level expectation failed.
    Fail,
    /// A SHOULD-level expectation failed.
    NonStrict,
    /// The implementation lacks a feature the case requires.
    Unsupported,
    /// Excluded by the skip list.
    Skipped,
}

impl Verdict {
    /// Upper-case name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NonStrict => "NON-STRICT",
            Verdict::Unsupported => "UNSUPPORTED",
            Verdict::Skipped => "SKIPPED",
        }
    }
}

/// What a case run produced.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// Verdict.
    pub verdict: Verdict,
    /// Why it failed (file:line: message), or the reason for UNSUPPORTED/SKIPPED.
    pub message: String,
    /// The actual transcript in trace syntax (absolute times).
    pub transcript: Vec<String>,
    /// The expected lines with absolute times (for the diff).
    pub expected: Vec<String>,
}

struct Pending {
    at: u64,
    spec: Spec,
    decoded: Decoded,
    text: String,
}

/// One scripted peer of a case.
struct Scripted {
    name: &'static str,
    addr: &'static str,
    peer: Peer,
    /// Some line of the case delivers through this peer (`via=`): it plays the IUT's relay.
    relay: bool,
}

struct Run<'a> {
    iut: &'a mut dyn Iut,
    peers: Vec<Scripted>,
    now: u64,
    vars: Vars,
    out: VecDeque<Pending>,
    events: Vec<(u64, Item)>,
    transcript: Vec<String>,
    allow: Vec<String>,
    /// The actual line that satisfied the last expectation (for a readable diff).
    matched: Option<String>,
}

fn abs(t: u64) -> String {
    render_time(t)
}

impl Run<'_> {
    /// `peer.sid`, and `peer.export` (32 bytes exported with label "conformance", no
    /// context, by the peer's own §5.6 derivation) once the handshake finished; the same
    /// for `peer2`.
    fn refresh_peer_vars(&mut self) {
        for p in &self.peers {
            self.vars.insert(format!("{}.sid", p.name), hex(&p.peer.sid()));
            if let Some(e) = p.peer.export(b"conformance", b"", 32) {
                self.vars.insert(format!("{}.export", p.name), format!("hex:{}", hex(&e)));
            }
        }
    }

    fn peer_index(&self, name: &str) -> Result<usize, String> {
        self.peers.iter().position(|p| p.name == name).ok_or_else(|| format!("no scripted peer `{name}`"))
    }

    /// The peer that reads a datagram the IUT sent to `to`: the one whose session id the
    /// packet names as its receiver, else the one at that address, else `peer`.
    fn reader(&self, to: &str, data: &[u8]) -> usize {
        let rsid = match data.first() {
            Some(0x02 | 0x03) => data.get(10..18),
            Some(0x04) => data.get(2..10),
            Some(0x40 | 0x41) => data.get(1..9),
            _ => None,
        };
        rsid.and_then(|r| self.peers.iter().position(|p| p.peer.sid() == r))
            .or_else(|| self.peers.iter().position(|p| p.addr == to))
            .unwrap_or(0)
    }

    fn pend(&mut self, at: u64, spec: Spec, decoded: Decoded) {
        let text = format!("{} expect send {}", abs(at), render_spec(&spec));
        self.transcript.push(text.clone());
        self.out.push_back(Pending { at, spec, decoded, text });
    }

    fn collect(&mut self, at: u64) -> Result<(), String> {
        for o in self.iut.drain(0)? {
            match o {
                Out::Send { to, data } => {
                    let i = self.reader(&to, &data);
                    let mut decoded = self.peers[i].peer.read(&data);
                    let spec = decoded_spec(&decoded, (to != PEER_ADDR).then_some(to.as_str()));
                    decoded.packet.fields.push(("to".into(), to));
                    // A datagram the IUT hands its relay (peer `i`) for another scripted peer
                    // is read by that peer too, as a datagram of its own `via=` the relay.
                    let relayed = core::mem::take(&mut decoded.relayed);
                    let inner: Vec<_> = if self.peers[i].relay {
                        relayed
                            .into_iter()
                            .filter_map(|(id, bytes)| {
                                let j = self.peers.iter().position(|p| p.peer.node_id() == id)?;
                                (j != i).then_some((j, bytes))
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    self.pend(at, spec, decoded);
                    for (j, bytes) in inner {
                        let mut d = self.peers[j].peer.read(&bytes);
                        d.packet.fields.push(("via".into(), self.peers[i].name.into()));
                        let spec = decoded_spec(&d, None);
                        self.pend(at, spec, d);
                    }
                    self.refresh_peer_vars();
                }
                Out::Event(e) => {
                    self.transcript.push(format!("{} expect event {}", abs(at), render_spec(&item_spec(&e))));
                    self.events.push((at, e));
                }
            }
        }
        Ok(())
    }

    fn advance(&mut self, to: u64) -> Result<(), String> {
        for _ in 0..100_000 {
            match self.iut.deadline(0)? {
                Some(d) if d <= to => {
                    let t = d.max(self.now);
                    self.now = t;
                    self.iut.timeout(0, t)?;
                    self.collect(t)?;
                }
                _ => {
                    self.now = self.now.max(to);
                    return Ok(());
                }
            }
        }
        Err(format!("timers keep firing at {}", abs(self.now)))
    }

    fn allowed(&self, p: &Pending) -> bool {
        !self.allow.is_empty()
            && p.decoded
                .frames
                .as_ref()
                .is_some_and(|f| f.iter().all(|x| x.name == "PADDING" || self.allow.contains(&x.name)))
    }

    fn check_unexpected(&mut self) -> Result<(), String> {
        while let Some(p) = self.out.pop_front() {
            if !self.allowed(&p) {
                return Err(format!("unexpected datagram at {}: {}", abs(p.at), render_spec(&p.spec)));
            }
        }
        Ok(())
    }

    fn build(&mut self, spec: &Spec, at: u64) -> Result<(String, Vec<u8>), String> {
        let item = to_item(spec, &self.vars)?;
        let frames: Vec<Item> =
            spec.frames.iter().flatten().map(|f| to_item(f, &self.vars)).collect::<Result<_, _>>()?;
        let by = item.get("by").map_or(Ok(0), |n| self.peer_index(n))?;
        let via = item.get("via").map(|n| self.peer_index(n)).transpose()?;
        let peer = &mut self.peers[by].peer;
        let mut data = match item.name.as_str() {
            "HELLO" => peer.hello(&item, UNIX_AT_ZERO + at / 1000)?,
            "CHALLENGE" => peer.challenge(&item)?,
            "AUTH_PROOF" => peer.auth_proof(&item)?,
            "PROT" => peer.seal(&item, &frames)?,
            "RAW" => item.get("data").and_then(parse_bytes).ok_or("RAW needs data=hex:…")?,
            other => return Err(format!("the peer cannot send {other}")),
        };
        if let Some(n) = item.get("trunc") {
            let n: i64 = n.parse().map_err(|_| "trunc=N or trunc=-N")?;
            let keep = if n < 0 { data.len().saturating_sub(n.unsigned_abs() as usize) } else { n as usize };
            data.truncate(keep);
        }
        if let Some(n) = item.num("append")? {
            data.resize(data.len() + n as usize, 0);
        }
        if let Some(i) = item.get("flip") {
            let i: i64 = i.parse().map_err(|_| "flip=INDEX (negative from the end)")?;
            let idx = if i < 0 { data.len().checked_sub(i.unsigned_abs() as usize) } else { Some(i as usize) };
            let b = idx.and_then(|k| data.get_mut(k)).ok_or("flip index outside the datagram")?;
            *b ^= 0x01;
        }
        if let Some(name) = item.get("save") {
            self.vars.insert(format!("${name}"), format!("hex:{}", hex(&data)));
        }
        let mut source = self.peers[by].addr;
        if let Some(v) = via {
            // The relay `v` delivers the datagram in a RELAY_DATA frame naming its source.
            let frame = Item::new("RELAY_DATA")
                .with("id", hex(&self.peers[by].peer.node_id()))
                .with("data", format!("hex:{}", hex(&data)));
            data = self.peers[v].peer.seal(&Item::new("PROT"), &[frame])?;
            source = self.peers[v].addr;
        }
        self.refresh_peer_vars();
        Ok((item.get("from").unwrap_or(source).to_string(), data))
    }

    fn line(&mut self, l: &Line, at: u64) -> Result<u64, String> {
        match &l.action {
            Action::Recv(spec) => {
                self.check_unexpected()?;
                self.advance(at)?;
                let (from, data) = self.build(spec, at)?;
                self.transcript.push(format!("{} recv {}", abs(at), render_spec(spec)));
                self.iut.input(0, at, &from, &data)?;
                self.collect(at)?;
            }
            Action::App(call, want) => {
                self.check_unexpected()?;
                self.advance(at)?;
                let item = to_item(call, &self.vars)?;
                let got = self.iut.app(0, at, &item)?;
                let got = match got {
                    Ok(i) => i,
                    Err(e) => Item::new("").with("error", e),
                };
                let text = crate::shim::fields_text(&got);
                self.transcript.push(format!("{} app {} ->{text}", abs(at), render_spec(call)));
                self.matched = self.transcript.last().cloned();
                if let Some(w) = want {
                    match_fields(&w.fields, &got, &mut self.vars).map_err(|e| format!("app {}: {e}", call.name))?;
                } else if got.get("error").is_some() {
                    return Err(format!("app {} refused: {}", call.name, got.get("error").unwrap_or_default()));
                }
                self.collect(at)?;
            }
            Action::Tick => {
                self.check_unexpected()?;
                self.advance(at)?;
            }
            Action::ExpectSend(spec) => {
                self.advance(at)?;
                loop {
                    let Some(p) = self.out.pop_front() else {
                        return Err(format!("expected at {}: send {}; nothing was sent", abs(at), render_spec(spec)));
                    };
                    let mut v = self.vars.clone();
                    let matched = match_packet(spec, &p.decoded, &mut v);
                    if matched.is_err() && self.allowed(&p) {
                        continue;
                    }
                    if let Err(e) = matched {
                        return Err(format!(
                            "expected at {}: send {}\n  actual at {}: send {}\n  ({e})",
                            abs(at),
                            render_spec(spec),
                            abs(p.at),
                            render_spec(&p.spec)
                        ));
                    }
                    if p.at != at {
                        return Err(format!(
                            "expected at {}: send {}\n  actual at {}: sent then instead",
                            abs(at),
                            render_spec(spec),
                            abs(p.at)
                        ));
                    }
                    self.vars = v;
                    self.matched = Some(p.text);
                    break;
                }
            }
            Action::ExpectNone(d) => {
                self.advance(at)?;
                self.check_unexpected()?;
                if let Some(d) = d {
                    self.advance(at + d)?;
                    self.check_unexpected()?;
                    return Ok(at + d);
                }
            }
            Action::ExpectEvent(spec) => {
                self.advance(at)?;
                let pos = self
                    .events
                    .iter()
                    .position(|(t, e)| *t == at && match_item(spec, e, &mut self.vars.clone()).is_ok());
                match pos {
                    Some(k) => {
                        let (_, e) = self.events.remove(k);
                        match_item(spec, &e, &mut self.vars)?;
                        self.matched = Some(format!("{} expect event {}", abs(at), render_spec(&item_spec(&e))));
                    }
                    None => {
                        let seen: Vec<String> = self.events.iter().map(|(t, e)| format!("{} {}", abs(*t), e)).collect();
                        return Err(format!(
                            "expected at {}: event {}; events not yet matched: [{}]",
                            abs(at),
                            render_spec(spec),
                            seen.join(", ")
                        ));
                    }
                }
            }
            Action::ExpectState(name, op, value) => {
                self.advance(at)?;
                let v = self.iut.state(0, name)?.ok_or_else(|| format!("state {name} is not exported"))?;
                self.transcript.push(format!("{} expect state {name} == {v}", abs(at)));
                self.matched = self.transcript.last().cloned();
                let f = crate::trace::Field { key: name.clone(), op: *op, value: value.clone() };
                match_fields(&[f], &Item::new("").with(name, v), &mut self.vars)
                    .map_err(|e| format!("state at {}: {e}", abs(at)))?;
            }
            Action::Sim(_) => return Err("`sim` lines belong to @iut pair cases".into()),
        }
        Ok(at)
    }
}

/// Absolute times of each line (relative times resolved).
pub fn absolute_times(trace: &Trace) -> Vec<u64> {
    let mut t = 0u64;
    trace
        .lines
        .iter()
        .map(|l| {
            t = match l.time {
                Time::Same => t,
                Time::Abs(a) => a,
                Time::Rel(d) => t + d,
            };
            let at = t;
            if let Action::ExpectNone(Some(d)) = l.action {
                t += d;
            }
            at
        })
        .collect()
}

/// Runs one scripted case.
pub fn run_case(trace: &Trace, iut: &mut dyn Iut) -> CaseResult {
    let times = absolute_times(trace);
    let expected: Vec<String> = trace
        .lines
        .iter()
        .zip(&times)
        .map(|(l, t)| {
            let mut l = l.clone();
            l.time = Time::Abs(*t);
            render_line(&l)
        })
        .collect();
    let fail_verdict = if trace.level == Level::Should { Verdict::NonStrict } else { Verdict::Fail };
    match iut.features() {
        Ok(f) => {
            if let Some(missing) = trace.requires.iter().find(|r| !f.contains(r)) {
                return CaseResult {
                    verdict: Verdict::Unsupported,
                    message: format!("requires {missing}"),
                    transcript: Vec::new(),
                    expected,
                };
            }
        }
        Err(e) => return CaseResult { verdict: Verdict::Fail, message: e, transcript: Vec::new(), expected },
    }
    if trace.role == Role::Pair {
        return crate::sim::run_pair(trace, iut, expected, fail_verdict);
    }
    let mut vars = Vars::new();
    let peers: Vec<Scripted> = PEERS
        .iter()
        .enumerate()
        .map(|(k, &(name, addr, node_seed))| {
            // Distinct randomness per peer (so distinct session ids); `peer` keeps the case's.
            let rng_seed = trace.rng ^ ((k as u64) << 32);
            let peer = Peer::new(PeerSetup {
                shared_seed: SHARED_SEED,
                node_seed,
                rng_seed,
                observed: IUT_ADDR.parse().expect("constant address"),
            });
            vars.insert(format!("{name}.id"), hex(&peer.node_id()));
            vars.insert(format!("{name}.sid"), hex(&peer.sid()));
            vars.insert(format!("{name}.addr"), addr.into());
            let relay = trace.lines.iter().any(|l| match &l.action {
                Action::Recv(spec) => spec.fields.iter().any(|f| f.key == "via" && f.value == name),
                _ => false,
            });
            Scripted { name, addr, peer, relay }
        })
        .collect();
    // Configuration values may name the peers' fixed values (`relay_members=peer2.id`).
    let config = trace
        .config
        .iter()
        .map(|(k, v)| {
            let v = v.split(',').map(|x| if x.starts_with('$') { Ok(x.to_string()) } else { resolve(x, &vars) });
            Ok((k.clone(), v.collect::<Result<Vec<_>, String>>()?.join(",")))
        })
        .collect::<Result<Vec<_>, String>>();
    let created = config.and_then(|config| {
        let spec = NodeSpec {
            shared_seed: SHARED_SEED,
            node_seed: iut_seed(0),
            rng: trace.rng,
            unix_ms: UNIX_AT_ZERO,
            config,
        };
        iut.create(0, &spec)
    });
    let iut_id = match created {
        Ok(id) => id,
        Err(e) => return CaseResult { verdict: fail_verdict, message: e, transcript: Vec::new(), expected },
    };
    vars.insert("iut.id".into(), hex(&iut_id));
    vars.insert("iut.addr".into(), IUT_ADDR.into());
    let mut run = Run {
        iut,
        peers,
        now: 0,
        vars,
        out: VecDeque::new(),
        events: Vec::new(),
        transcript: Vec::new(),
        allow: trace.allow.clone(),
        matched: None,
    };
    let mut outcome = Ok(());
    let mut shown = Vec::new();
    for (k, (l, at)) in trace.lines.iter().zip(&times).enumerate() {
        if *at < run.now {
            outcome = Err(format!("{}:{}: time goes backwards", l.file, l.lineno));
            break;
        }
        run.matched = None;
        if let Err(e) = run.line(l, *at) {
            outcome = Err(format!("{}:{}: {e}", l.file, l.lineno));
            break;
        }
        shown.push(run.matched.take().unwrap_or_else(|| expected[k].clone()));
    }
    let n = shown.len();
    let expected: Vec<String> = shown.into_iter().chain(expected.iter().skip(n).cloned()).collect();
    if outcome.is_ok() {
        outcome = run.check_unexpected().map_err(|e| format!("after the last line: {e}"));
    }
    match outcome {
        Ok(()) => CaseResult { verdict: Verdict::Pass, message: String::new(), transcript: run.transcript, expected },
        Err(message) => CaseResult { verdict: fail_verdict, message, transcript: run.transcript, expected },
    }
}
