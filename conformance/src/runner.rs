//! Runs one trace against an IUT on a virtual clock (docs/conformance.md §2–§3).

use std::collections::VecDeque;

use stt_conformance_peer::item::{hex, parse_bytes};
use stt_conformance_peer::{Decoded, Item, Peer, PeerSetup};

use crate::iut::{Iut, NodeSpec, Out};
use crate::matching::{decoded_spec, item_spec, match_fields, match_item, match_packet, to_item, Vars};
use crate::trace::{render_line, render_spec, render_time, Action, Level, Line, Role, Spec, Time, Trace};

/// The scripted peer's address.
pub const PEER_ADDR: &str = "192.0.2.10:40000";
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

struct Run<'a> {
    iut: &'a mut dyn Iut,
    peer: Peer,
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
    /// context, by the peer's own §5.6 derivation) once the handshake finished.
    fn refresh_peer_vars(&mut self) {
        self.vars.insert("peer.sid".into(), hex(&self.peer.sid()));
        if let Some(e) = self.peer.export(b"conformance", b"", 32) {
            self.vars.insert("peer.export".into(), format!("hex:{}", hex(&e)));
        }
    }

    fn collect(&mut self, at: u64) -> Result<(), String> {
        for o in self.iut.drain(0)? {
            match o {
                Out::Send { to, data } => {
                    let decoded = self.peer.read(&data);
                    self.refresh_peer_vars();
                    let spec = decoded_spec(&decoded, (to != PEER_ADDR).then_some(to.as_str()));
                    let text = format!("{} expect send {}", abs(at), render_spec(&spec));
                    self.transcript.push(text.clone());
                    self.out.push_back(Pending { at, spec, decoded, text });
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
        let mut data = match item.name.as_str() {
            "HELLO" => self.peer.hello(&item, UNIX_AT_ZERO + at / 1000)?,
            "CHALLENGE" => self.peer.challenge(&item)?,
            "AUTH_PROOF" => self.peer.auth_proof(&item)?,
            "PROT" => self.peer.seal(&item, &frames)?,
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
        self.refresh_peer_vars();
        if let Some(name) = item.get("save") {
            self.vars.insert(format!("${name}"), format!("hex:{}", hex(&data)));
        }
        Ok((item.get("from").unwrap_or(PEER_ADDR).to_string(), data))
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
    let spec = NodeSpec {
        shared_seed: SHARED_SEED,
        node_seed: iut_seed(0),
        rng: trace.rng,
        unix_ms: UNIX_AT_ZERO,
        config: trace.config.clone(),
    };
    let iut_id = match iut.create(0, &spec) {
        Ok(id) => id,
        Err(e) => return CaseResult { verdict: fail_verdict, message: e, transcript: Vec::new(), expected },
    };
    let peer = Peer::new(PeerSetup {
        shared_seed: SHARED_SEED,
        node_seed: PEER_SEED,
        rng_seed: trace.rng,
        observed: IUT_ADDR.parse().expect("constant address"),
    });
    let mut vars = Vars::new();
    vars.insert("peer.id".into(), hex(&peer.node_id()));
    vars.insert("peer.sid".into(), hex(&peer.sid()));
    vars.insert("iut.id".into(), hex(&iut_id));
    vars.insert("iut.addr".into(), IUT_ADDR.into());
    vars.insert("peer.addr".into(), PEER_ADDR.into());
    let mut run = Run {
        iut,
        peer,
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
