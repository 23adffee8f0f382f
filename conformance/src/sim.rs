//! Pair cases: two IUT nodes on a seeded, simulated link owned by the runner, with pass
//! predicates on counters (docs/conformance.md §6). Link: `loss` (0..1), `burst` (mean
//! length of a loss burst), `delay` and `jitter` (s), `dup`, `corrupt` (0..1), `mtu`
//! (bytes; larger datagrams vanish), `up`/`down` (s, a repeating blackhole), `rebind` (s,
//! node 0 moves to a new port), `spoof` (0..1, copies of node 0's packets from a spoofed address).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use stt_conformance_peer::{Item, Peer, PeerSetup};

use crate::iut::{Iut, NodeSpec, Out};
use crate::matching::match_fields;
use crate::runner::{iut_seed, CaseResult, Verdict, PEER_SEED, SHARED_SEED, UNIX_AT_ZERO};
use crate::trace::{Action, Field, Spec, Trace};

const A: &str = "10.0.0.1:1000";
const A_MOVED: &str = "10.0.0.1:1001";
const B: &str = "10.0.0.2:2000";
const SPOOFED: &str = "10.0.0.66:6666";

#[derive(Clone, Default)]
struct Link {
    loss: f64,
    burst: f64,
    delay: u64,
    jitter: u64,
    dup: f64,
    corrupt: f64,
    mtu: usize,
    up: u64,
    down: u64,
    rebind: Option<u64>,
    spoof: f64,
}

fn secs(v: &str) -> Result<u64, String> {
    crate::trace::parse_secs(v).ok_or_else(|| format!("`{v}` is not seconds"))
}

impl Link {
    fn parse(kv: &[(String, String)]) -> Result<Self, String> {
        let mut l = Link { burst: 1.0, ..Link::default() };
        for (k, v) in kv {
            let f = || v.parse::<f64>().map_err(|_| format!("{k}={v} is not a number"));
            match k.as_str() {
                "loss" => l.loss = f()?,
                "burst" => l.burst = f()?.max(1.0),
                "delay" => l.delay = secs(v)?,
                "jitter" => l.jitter = secs(v)?,
                "dup" => l.dup = f()?,
                "corrupt" => l.corrupt = f()?,
                "mtu" => l.mtu = v.parse().map_err(|_| "mtu=BYTES")?,
                "up" => l.up = secs(v)?,
                "down" => l.down = secs(v)?,
                "rebind" => l.rebind = Some(secs(v)?),
                "spoof" => l.spoof = f()?,
                other => return Err(format!("unknown link parameter `{other}`")),
            }
        }
        Ok(l)
    }
}

struct Datagram {
    to_node: usize,
    from: String,
    data: Vec<u8>,
}

struct World<'a> {
    iut: &'a mut dyn Iut,
    link: Link,
    rng: ChaCha20Rng,
    in_burst: [bool; 2],
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    packets: HashMap<u64, Datagram>,
    seq: u64,
    now: u64,
    counters: BTreeMap<String, i64>,
    events: Vec<(usize, Item)>,
}

impl World<'_> {
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn a_addr(&self) -> &'static str {
        if self.link.rebind.is_some_and(|r| self.now >= r) {
            A_MOVED
        } else {
            A
        }
    }

    fn bump(&mut self, k: &str, by: i64) {
        *self.counters.entry(k.into()).or_default() += by;
    }

    fn max(&mut self, k: &str, v: i64) {
        let e = self.counters.entry(k.into()).or_default();
        *e = (*e).max(v);
    }

    fn enqueue(&mut self, at: u64, d: Datagram) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.packets.insert(self.seq, d);
    }

    fn blackholed(&self) -> bool {
        self.link.down > 0 && self.link.up > 0 && self.now % (self.link.up + self.link.down) >= self.link.up
    }

    fn send(&mut self, from_node: usize, to: &str, mut data: Vec<u8>) {
        self.max("max_datagram", data.len() as i64);
        let to_node = if to == B {
            1
        } else if to == self.a_addr() {
            0
        } else {
            self.bump("misdirected", 1);
            self.bump("misdirected_bytes", data.len() as i64);
            return;
        };
        let dir = from_node;
        if self.link.mtu > 0 && data.len() > self.link.mtu {
            self.bump("oversize", 1);
            return;
        }
        if self.blackholed() {
            self.bump("blackholed", 1);
            return;
        }
        let lost = if self.in_burst[dir] {
            self.unit() < 1.0 - 1.0 / self.link.burst
        } else {
            self.unit() < self.link.loss / self.link.burst
        };
        self.in_burst[dir] = lost;
        if lost {
            self.bump("lost", 1);
            return;
        }
        if self.link.corrupt > 0.0 && self.unit() < self.link.corrupt {
            let i = (self.rng.next_u64() % data.len().max(1) as u64) as usize;
            if self.unit() < 0.5 {
                if let Some(b) = data.get_mut(i) {
                    *b ^= 1 << (self.rng.next_u32() % 8);
                }
            } else {
                data.truncate(i);
            }
            self.bump("corrupted", 1);
        }
        let from = if from_node == 0 { self.a_addr() } else { B }.to_string();
        let jitter = if self.link.jitter > 0 { self.rng.next_u64() % self.link.jitter } else { 0 };
        let at = self.now + self.link.delay + jitter;
        if self.link.dup > 0.0 && self.unit() < self.link.dup {
            let extra = if self.link.jitter > 0 { self.rng.next_u64() % self.link.jitter } else { 0 };
            self.enqueue(at + extra, Datagram { to_node, from: from.clone(), data: data.clone() });
        }
        if from_node == 0 && self.link.spoof > 0.0 && self.unit() < self.link.spoof {
            self.enqueue(at, Datagram { to_node, from: SPOOFED.into(), data: data.clone() });
        }
        self.enqueue(at, Datagram { to_node, from, data });
    }

    fn drain(&mut self) -> Result<(), String> {
        for node in 0..2 {
            for o in self.iut.drain(node)? {
                match o {
                    Out::Send { to, data } => self.send(node, &to, data),
                    Out::Event(e) => {
                        if e.name == "Closed" {
                            self.bump("closed", 1);
                        }
                        if e.name == "PathChanged" {
                            self.bump("path_changed", 1);
                        }
                        self.events.push((node, e));
                    }
                }
            }
        }
        Ok(())
    }

    /// Advances to the next link delivery or timer, no later than `limit`. False when idle.
    fn step(&mut self, limit: u64) -> Result<bool, String> {
        let mut next = self.queue.peek().map(|Reverse((t, _))| *t);
        for node in 0..2 {
            if let Some(d) = self.iut.deadline(node)? {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        let Some(next) = next.filter(|n| *n <= limit) else {
            self.now = limit;
            return Ok(false);
        };
        self.now = self.now.max(next);
        while let Some(Reverse((t, s))) = self.queue.peek().copied() {
            if t > self.now {
                break;
            }
            self.queue.pop();
            if let Some(d) = self.packets.remove(&s) {
                self.iut.input(d.to_node, self.now, &d.from, &d.data)?;
            }
        }
        for node in 0..2 {
            if self.iut.deadline(node)?.is_some_and(|d| d <= self.now) {
                self.iut.timeout(node, self.now)?;
            }
        }
        self.drain()?;
        Ok(true)
    }

    fn app(&mut self, node: usize, call: Item) -> Result<Result<Item, String>, String> {
        let r = self.iut.app(node, self.now, &call)?;
        self.drain()?;
        Ok(r)
    }

    fn take_events(&mut self) -> Vec<(usize, Item)> {
        core::mem::take(&mut self.events)
    }
}

fn scenario_handshakes(w: &mut World<'_>, s: &Spec, limit: u64) -> Result<(), String> {
    let count = s.get("count").and_then(|c| c.parse::<u64>().ok()).ok_or("handshakes needs count=")?;
    for _ in 0..count {
        w.app(0, Item::new("connect").with("to", B))?.map_err(|e| format!("connect refused: {e}"))?;
        let mut done = false;
        while !done && w.step(limit)? {
            for (node, e) in w.take_events() {
                if node == 0 && e.name == "Established" {
                    w.bump("handshakes", 1);
                    done = true;
                } else if node == 0 && e.name == "HandshakeFailed" {
                    w.bump("failed", 1);
                    done = true;
                }
            }
        }
        if !done {
            break;
        }
        let _ = w.app(0, Item::new("close").with("code", 0))?;
        let until = w.now + 2_000_000;
        while w.now < until && w.step(until)? {}
        w.take_events();
    }
    Ok(())
}

struct Flood {
    peer: Peer,
    left: u64,
    every: u64,
    next: u64,
}

fn scenario_transfer(w: &mut World<'_>, s: &Spec, limit: u64, rng: u64) -> Result<(), String> {
    let bytes = s.get("bytes").and_then(|c| c.parse::<u64>().ok()).ok_or("transfer needs bytes=")?;
    let streams = s.get("streams").and_then(|c| c.parse::<u64>().ok()).unwrap_or(1).max(1);
    let mut flood = s.get("flood").and_then(|c| c.parse::<u64>().ok()).map(|n| Flood {
        peer: Peer::new(PeerSetup {
            shared_seed: SHARED_SEED,
            node_seed: PEER_SEED,
            rng_seed: rng,
            observed: B.parse().expect("constant"),
        }),
        left: n,
        every: s.get("flood_ms").and_then(|m| m.parse::<u64>().ok()).unwrap_or(1000) * 1000 / n.max(1),
        next: 0,
    });
    w.app(0, Item::new("connect").with("to", B))?.map_err(|e| format!("connect refused: {e}"))?;
    let per = bytes / streams;
    let uni = s.get("uni").is_some();
    let mut ids: Vec<u64> = Vec::new();
    let mut sent: Vec<u64> = Vec::new();
    let mut writable: Vec<bool> = Vec::new();
    let mut finished: Vec<bool> = Vec::new();
    let mut got: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
    let mut readable: Vec<u64> = Vec::new();
    let mut established = false;
    let mut blocked = false;
    loop {
        for (node, e) in w.take_events() {
            match (node, e.name.as_str()) {
                (0, "Established") => {
                    w.bump("handshakes", 1);
                    established = true;
                }
                (0, "StreamsUnblocked") => blocked = false,
                (0, "StreamWritable") => {
                    if let Some(k) = ids.iter().position(|i| Some(*i) == e.num("id").ok().flatten()) {
                        writable[k] = true;
                    }
                }
                (1, "StreamOpened" | "StreamReadable") => {
                    let id = e.num("id")?.ok_or("event without id")?;
                    if !readable.contains(&id) {
                        readable.push(id);
                    }
                }
                _ => {}
            }
        }
        while established && !blocked && (ids.len() as u64) < streams {
            let call = if uni { Item::new("open").with("uni", "") } else { Item::new("open") };
            match w.app(0, call)? {
                Ok(r) => {
                    ids.push(r.num("id")?.ok_or("open gave no id")?);
                    sent.push(0);
                    writable.push(true);
                    finished.push(false);
                }
                Err(_) => {
                    blocked = true;
                    w.bump("open_blocked", 1);
                }
            }
        }
        if established {
            for k in 0..ids.len() {
                while writable[k] && sent[k] < per {
                    let len = (per - sent[k]).min(65536);
                    let r = w.app(0, Item::new("write").with("id", ids[k]).with("off", sent[k]).with("len", len))?;
                    let n = match r {
                        Ok(r) => r.num("n")?.unwrap_or(0),
                        Err(_) => 0,
                    };
                    sent[k] += n;
                    if n < len {
                        writable[k] = false;
                    }
                }
                if sent[k] == per && !finished[k] {
                    w.app(0, Item::new("finish").with("id", ids[k]))?.map_err(|e| format!("finish refused: {e}"))?;
                    finished[k] = true;
                }
            }
        }
        for id in core::mem::take(&mut readable) {
            loop {
                let (off, fin) = *got.get(&id).unwrap_or(&(0, false));
                if fin {
                    break;
                }
                let r = w.app(1, Item::new("read").with("id", id).with("max", 65536).with("check", off))?;
                let Ok(r) = r else { break };
                let n = r.num("len")?.unwrap_or(0);
                if r.get("filler") == Some("0") {
                    w.bump("corrupt", 1);
                }
                let fin = r.get("fin") == Some("1");
                w.bump("delivered", n as i64);
                got.insert(id, (off + n, fin));
                if n == 0 && !fin {
                    break;
                }
            }
        }
        let complete = got.len() as u64 == streams && got.values().all(|(n, fin)| *fin && *n == per);
        if complete {
            w.counters.insert("complete".into(), 1);
            w.counters.insert("elapsed_ms".into(), (w.now / 1000) as i64);
            return Ok(());
        }
        if let Some(f) = flood.as_mut() {
            if f.left > 0 && w.now >= f.next {
                let item = Item::new("HELLO").with("fresh", "");
                let data = f.peer.hello(&item, UNIX_AT_ZERO + w.now / 1000)?;
                let from = format!("10.9.{}.{}:{}", (f.left >> 8) & 0xff, f.left & 0xff, 3000 + (f.left % 1000));
                w.iut.input(1, w.now, &from, &data)?;
                for o in w.iut.drain(1)? {
                    match o {
                        Out::Send { to, data } if to.starts_with("10.9.") => {
                            w.bump("flood_reply_bytes", data.len() as i64)
                        }
                        Out::Send { to, data } => w.send(1, &to, data),
                        Out::Event(e) => w.events.push((1, e)),
                    }
                }
                if let Some(v) = w.iut.state(1, "sessions")? {
                    w.max("b_sessions_max", v);
                }
                f.left -= 1;
                f.next = w.now + f.every;
                w.bump("flood_sent", 1);
                continue;
            }
        }
        let horizon = flood.as_ref().filter(|f| f.left > 0).map_or(limit, |f| f.next.min(limit));
        if !w.step(horizon)? && w.now >= limit {
            return Ok(());
        }
    }
}

/// Runs a pair case: creates two nodes, runs each `sim` line, checks `expect state sim.*`.
pub fn run_pair(trace: &Trace, iut: &mut dyn Iut, expected: Vec<String>, fail: Verdict) -> CaseResult {
    let mut transcript = Vec::new();
    let r = (|| -> Result<(), String> {
        for node in 0..2 {
            iut.create(
                node,
                &NodeSpec {
                    shared_seed: SHARED_SEED,
                    node_seed: iut_seed(node),
                    rng: trace.rng.wrapping_add(node as u64 * 7919),
                    unix_ms: UNIX_AT_ZERO,
                    config: trace.config.clone(),
                },
            )?;
        }
        let mut w = World {
            iut,
            link: Link::parse(&trace.link)?,
            rng: ChaCha20Rng::seed_from_u64(trace.rng),
            in_burst: [false; 2],
            queue: BinaryHeap::new(),
            packets: HashMap::new(),
            seq: 0,
            now: 0,
            counters: BTreeMap::new(),
            events: Vec::new(),
        };
        for l in &trace.lines {
            let at = format!("{}:{}", l.file, l.lineno);
            match &l.action {
                Action::Sim(s) => {
                    let within = s.get("within").map_or(Ok(600_000_000), secs)?;
                    let limit = w.now + within;
                    match s.name.as_str() {
                        "handshakes" => scenario_handshakes(&mut w, s, limit),
                        "transfer" => scenario_transfer(&mut w, s, limit, trace.rng),
                        other => Err(format!("unknown scenario `{other}`")),
                    }
                    .map_err(|e| format!("{at}: {e}"))?;
                    transcript.push(format!(
                        "sim {} # done at {}",
                        crate::trace::render_spec(s),
                        crate::trace::render_time(w.now)
                    ));
                }
                Action::ExpectState(name, op, value) => {
                    let v = if let Some(k) = name.strip_prefix("sim.") {
                        w.counters.get(k).copied().unwrap_or(0)
                    } else if let Some(k) = name.strip_prefix("a.") {
                        w.iut.state(0, k)?.ok_or_else(|| format!("{at}: state {k} is not exported"))?
                    } else if let Some(k) = name.strip_prefix("b.") {
                        w.iut.state(1, k)?.ok_or_else(|| format!("{at}: state {k} is not exported"))?
                    } else {
                        return Err(format!("{at}: pair cases check sim.*, a.* or b.* state"));
                    };
                    transcript.push(format!("expect state {name} == {v}"));
                    let f = Field { key: name.clone(), op: *op, value: value.clone() };
                    match_fields(&[f], &Item::new("").with(name, v), &mut Default::default())
                        .map_err(|e| format!("{at}: {e} (counters: {:?})", w.counters))?;
                }
                _ => return Err(format!("{at}: pair cases have only `sim` and `expect state` lines")),
            }
        }
        Ok(())
    })();
    match r {
        Ok(()) => CaseResult { verdict: Verdict::Pass, message: String::new(), transcript, expected },
        Err(message) => CaseResult { verdict: fail, message, transcript, expected },
    }
}
