//! Simulated NATs with the RFC 4787 mapping and filtering behaviours.
//!
//! A NAT has one public IP and a private network `10.<nat index>.0.0/16`. Nodes added
//! with [`World::add_node_behind`] live on that network. The rules (also in
//! `docs/sim-nat.md`):
//!
//! - **Inside.** A datagram from a node behind NAT `n` to an address in `10.n.0.0/16` goes
//!   straight to the node with that private address, untranslated. A datagram to the NAT's
//!   own public IP is dropped (no hairpinning; counted in [`NatStats::hairpin_dropped`]).
//!   Anything else leaves through the NAT.
//! - **Outbound.** The NAT finds the mapping for the datagram, keyed by the private source
//!   and, per [`NatConfig::mapping`], nothing else (endpoint-independent), the destination
//!   IP (address-dependent) or the destination IP and port (address-and-port-dependent). If
//!   there is none it creates one with a public port chosen per [`NatConfig::ports`]. The
//!   source becomes `public_ip:mapping port`, the mapping's timer restarts and the
//!   destination joins the mapping's list of contacted endpoints. This happens when the
//!   node sends (the NAT is on the node's side of the link).
//! - **Inbound.** A datagram reaching `public_ip:port` is looked up by port; it is dropped
//!   when no live mapping has that port ([`NatStats::inbound_no_mapping`]) or when
//!   [`NatConfig::filtering`] rejects its source ([`NatStats::inbound_filtered`]):
//!   endpoint-independent filtering accepts anyone, address-dependent filtering a source
//!   whose IP the mapping has contacted, address-and-port-dependent filtering a source
//!   whose IP and port it has contacted. An accepted datagram goes to the mapping's private
//!   address with its source unchanged. This is decided when the datagram arrives at the
//!   NAT (after the link's delay), so two peers sending to each other at the same instant
//!   both open their NATs before the other's datagram arrives.
//! - **Timeout.** A mapping expires once more than [`NatConfig::mapping_timeout`] has
//!   passed since its last outbound datagram; inbound datagrams do not refresh it. Expired
//!   mappings are removed lazily (on the NAT's next translation) and counted.
//! - **Private addresses** are unreachable from outside their NAT: a datagram from the
//!   public side (or from another NAT) to a `10.x` address is lost.
//! - **Links and capture.** Links still apply per (sender node, receiver node). For a
//!   datagram to a NAT's public address the receiver is the node behind the mapping live
//!   when it is sent; with no such mapping it travels on a fresh default link (no link
//!   state, not counted in `delivered_bytes`) and the NAT decides on arrival.
//!   [`World::captured`](super::World::captured) records the source after translation
//!   (what is on the wire outside the NAT) and the destination as sent;
//!   [`World::delivered`](super::World::delivered) records the source the receiver saw.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;

use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha20Rng;

use super::{World, SIM_UNIX_EPOCH};
use crate::{Config, Identity, Instant, UnixTime};

/// A NAT in a [`World`], from [`World::add_nat`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NatId(usize);

impl NatId {
    /// The NAT's index in its world (0 for the first NAT added).
    pub fn index(self) -> usize {
        self.0
    }
}

/// An RFC 4787 behaviour, used for both mapping (which outbound flows share a public port)
/// and filtering (which inbound sources a mapping accepts).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum NatBehavior {
    /// Mapping: one public port per private address, whatever the destination.
    /// Filtering: anyone may send to a mapping's public port.
    EndpointIndependent,
    /// Mapping: one public port per private address and destination IP.
    /// Filtering: only IPs the mapping has sent to may send to it.
    AddressDependent,
    /// Mapping: one public port per private address and destination IP and port.
    /// Filtering: only IP:port pairs the mapping has sent to may send to it.
    AddressAndPortDependent,
}

/// How a NAT picks the public port of a new mapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PortAssignment {
    /// The private port if no live mapping of this NAT uses it, else a random free port.
    Preserve,
    /// A random free port in 1024..=65535 other than the private port (so a test can tell
    /// the two apart), from the world's RNG: the same seed gives the same ports.
    Random,
}

/// A NAT's behaviour. Build one from a preset and adjust it with the `with_` methods.
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// Which outbound flows share a mapping.
    pub mapping: NatBehavior,
    /// Which inbound sources a mapping accepts.
    pub filtering: NatBehavior,
    /// How a new mapping's public port is chosen.
    pub ports: PortAssignment,
    /// A mapping expires once this much time has passed since its last outbound datagram
    /// (inbound datagrams do not refresh it). The presets use 120 s (RFC 4787 REQ-5's
    /// minimum).
    pub mapping_timeout: Duration,
    /// The NAT's public IP. The unspecified address (the presets' value) means
    /// [`World::add_nat`] assigns one: `203.0.113.<index + 1>` for the first 254 NATs,
    /// then `198.51.100.<index - 253>`.
    pub public_ip: IpAddr,
}

impl NatConfig {
    /// The mapping timeout of the presets.
    pub const DEFAULT_MAPPING_TIMEOUT: Duration = Duration::from_secs(120);

    /// A NAT with these behaviours, a 120 s mapping timeout and a public IP assigned by
    /// [`World::add_nat`].
    pub fn new(mapping: NatBehavior, filtering: NatBehavior, ports: PortAssignment) -> Self {
        Self {
            mapping,
            filtering,
            ports,
            mapping_timeout: Self::DEFAULT_MAPPING_TIMEOUT,
            public_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// Full cone: endpoint-independent mapping and filtering, port preserving.
    pub fn easiest() -> Self {
        Self::new(NatBehavior::EndpointIndependent, NatBehavior::EndpointIndependent, PortAssignment::Preserve)
    }

    /// A typical home router (port-restricted cone): endpoint-independent mapping,
    /// address-and-port-dependent filtering, port preserving.
    pub fn easy() -> Self {
        Self::new(NatBehavior::EndpointIndependent, NatBehavior::AddressAndPortDependent, PortAssignment::Preserve)
    }

    /// Address-dependent mapping and filtering, port preserving.
    pub fn address_dependent() -> Self {
        Self::new(NatBehavior::AddressDependent, NatBehavior::AddressDependent, PortAssignment::Preserve)
    }

    /// Symmetric: address-and-port-dependent mapping and filtering, random ports.
    pub fn hard() -> Self {
        Self::new(NatBehavior::AddressAndPortDependent, NatBehavior::AddressAndPortDependent, PortAssignment::Random)
    }

    /// With this mapping behaviour.
    pub fn with_mapping(mut self, mapping: NatBehavior) -> Self {
        self.mapping = mapping;
        self
    }

    /// With this filtering behaviour.
    pub fn with_filtering(mut self, filtering: NatBehavior) -> Self {
        self.filtering = filtering;
        self
    }

    /// With this port assignment.
    pub fn with_ports(mut self, ports: PortAssignment) -> Self {
        self.ports = ports;
        self
    }

    /// With this mapping timeout.
    pub fn with_mapping_timeout(mut self, timeout: Duration) -> Self {
        self.mapping_timeout = timeout;
        self
    }

    /// With this public IP (it must not be any other NAT's or node's IP).
    pub fn with_public_ip(mut self, ip: IpAddr) -> Self {
        self.public_ip = ip;
        self
    }
}

/// What a NAT did so far.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct NatStats {
    /// Mappings created.
    pub mappings_created: u64,
    /// Mappings whose timeout has passed (whether or not the NAT has removed them yet).
    pub mappings_expired: u64,
    /// Mappings alive now.
    pub mappings_active: u64,
    /// Inbound datagrams dropped by the filtering behaviour.
    pub inbound_filtered: u64,
    /// Inbound datagrams to a public port with no live mapping.
    pub inbound_no_mapping: u64,
    /// Outbound datagrams whose source was rewritten.
    pub translated_out: u64,
    /// Inbound datagrams accepted and forwarded to a private address.
    pub translated_in: u64,
    /// Datagrams from inside to the NAT's own public IP, dropped (no hairpinning).
    pub hairpin_dropped: u64,
}

/// Mapping key: the private source, plus the destination IP (address-dependent) and port
/// (address-and-port-dependent).
type MapKey = (SocketAddr, Option<IpAddr>, Option<u16>);

struct Mapping {
    port: u16,
    last_out: Instant,
    /// Remote endpoints this mapping has sent to.
    contacted: BTreeSet<SocketAddr>,
}

/// A NAT's state.
pub(super) struct Nat {
    pub(super) config: NatConfig,
    index: u8,
    hosts: usize,
    mappings: BTreeMap<MapKey, Mapping>,
    by_port: BTreeMap<u16, MapKey>,
    stats: NatStats,
}

/// Where an outgoing datagram goes.
pub(super) struct Hop {
    /// Its source on the wire (translated if it left a NAT).
    pub(super) from: SocketAddr,
    /// Inside which NAT it travels (`None`: the public side).
    pub(super) realm: Option<NatId>,
    /// Its receiver as far as known at send time.
    pub(super) target: Target,
}

/// The receiver of an outgoing datagram.
pub(super) enum Target {
    /// This node (the link `(sender, node)` applies).
    Node(usize),
    /// A NAT's public address with no live mapping now: the NAT decides on arrival.
    Nat,
    /// Nobody: the datagram is lost, for this reason.
    Lost(&'static str),
}

impl Nat {
    fn is_inside(&self, ip: IpAddr) -> bool {
        matches!(ip, IpAddr::V4(v4) if v4.octets()[..2] == [10, self.index])
    }

    fn expired(&self, m: &Mapping, now: Instant) -> bool {
        now.saturating_duration_since(m.last_out) > self.config.mapping_timeout
    }

    /// Removes and counts the expired mappings.
    fn expire(&mut self, now: Instant) {
        let timeout = self.config.mapping_timeout;
        let by_port = &mut self.by_port;
        let stats = &mut self.stats;
        self.mappings.retain(|_, m| {
            let live = now.saturating_duration_since(m.last_out) <= timeout;
            if !live {
                by_port.remove(&m.port);
                stats.mappings_expired += 1;
            }
            live
        });
    }

    fn pick_port(&self, private: u16, rng: &mut ChaCha20Rng) -> u16 {
        assert!(self.by_port.len() < 60_000, "sim NAT out of public ports");
        if self.config.ports == PortAssignment::Preserve && !self.by_port.contains_key(&private) {
            return private;
        }
        loop {
            let port = 1024 + (rng.next_u64() % (65_536 - 1024)) as u16;
            if port != private && !self.by_port.contains_key(&port) {
                return port;
            }
        }
    }

    /// Translates a datagram from `src` (private) to `dst` (outside): its public source.
    fn outbound(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, rng: &mut ChaCha20Rng) -> SocketAddr {
        self.expire(now);
        let key = match self.config.mapping {
            NatBehavior::EndpointIndependent => (src, None, None),
            NatBehavior::AddressDependent => (src, Some(dst.ip()), None),
            NatBehavior::AddressAndPortDependent => (src, Some(dst.ip()), Some(dst.port())),
        };
        if !self.mappings.contains_key(&key) {
            let port = self.pick_port(src.port(), rng);
            self.mappings.insert(key, Mapping { port, last_out: now, contacted: BTreeSet::new() });
            self.by_port.insert(port, key);
            self.stats.mappings_created += 1;
        }
        let m = self.mappings.get_mut(&key).expect("mapping just ensured");
        m.last_out = now;
        m.contacted.insert(dst);
        self.stats.translated_out += 1;
        SocketAddr::new(self.config.public_ip, m.port)
    }

    /// The private address behind public `port` now, without side effects (to pick a link).
    fn peek(&self, now: Instant, port: u16) -> Option<SocketAddr> {
        let key = self.by_port.get(&port)?;
        let m = self.mappings.get(key)?;
        (!self.expired(m, now)).then_some(key.0)
    }

    /// Filters a datagram from `from` arriving at public `port`: the private address to
    /// forward it to, or why it is dropped.
    fn inbound(&mut self, now: Instant, from: SocketAddr, port: u16) -> Result<SocketAddr, &'static str> {
        self.expire(now);
        let Some(key) = self.by_port.get(&port) else {
            self.stats.inbound_no_mapping += 1;
            return Err("no mapping");
        };
        let m = &self.mappings[key];
        let accept = match self.config.filtering {
            NatBehavior::EndpointIndependent => true,
            NatBehavior::AddressDependent => m.contacted.iter().any(|c| c.ip() == from.ip()),
            NatBehavior::AddressAndPortDependent => m.contacted.contains(&from),
        };
        if accept {
            self.stats.translated_in += 1;
            Ok(key.0)
        } else {
            self.stats.inbound_filtered += 1;
            Err("filtered")
        }
    }

    fn stats(&self, now: Instant) -> NatStats {
        let pending = self.mappings.values().filter(|m| self.expired(m, now)).count() as u64;
        NatStats {
            mappings_expired: self.stats.mappings_expired + pending,
            mappings_active: self.mappings.len() as u64 - pending,
            ..self.stats
        }
    }
}

impl World {
    /// Adds a NAT; nodes go behind it with [`World::add_node_behind`].
    ///
    /// # Panics
    /// Beyond 256 NATs, or if `config.public_ip` is another NAT's or a node's IP.
    pub fn add_nat(&mut self, mut config: NatConfig) -> NatId {
        let n = self.nats.len();
        let index = u8::try_from(n).expect("the simulator supports at most 256 NATs");
        if config.public_ip.is_unspecified() {
            config.public_ip = IpAddr::V4(match u8::try_from(n + 1) {
                Ok(last) if last < 255 => Ipv4Addr::new(203, 0, 113, last),
                _ => Ipv4Addr::new(198, 51, 100, (n - 253) as u8),
            });
        }
        let ip = config.public_ip;
        assert!(
            !self.nats.iter().any(|x| x.config.public_ip == ip) && !self.nodes.iter().any(|x| x.addr.ip() == ip),
            "NAT public IP {ip} is already in use"
        );
        self.log(format!("add NAT {n} at {ip}: {config:?}"));
        self.nats.push(Nat {
            config,
            index,
            hosts: 0,
            mappings: BTreeMap::new(),
            by_port: BTreeMap::new(),
            stats: NatStats::default(),
        });
        NatId(n)
    }

    /// Adds a node behind `nat` with a random node seed, the world's shared seed and a
    /// correct clock (like [`World::add_node`]).
    ///
    /// The `k`-th node behind NAT `n` (from 0) gets the private address
    /// `10.n.0.(k+1)` (`10.n.x.y` beyond 254 nodes) with port 4000 when `k` is even and
    /// `4000 + k` when it is odd (modulo 60 000): nodes 0, 2, 4… share port 4000, so a port-preserving
    /// NAT must give all but the first of them another public port.
    pub fn add_node_behind(&mut self, config: Config, nat: NatId) -> usize {
        let seed = self.random_node_seed();
        let identity = Identity::new(seed, self.shared_seed());
        self.add_node_behind_with(config, identity, Some(SIM_UNIX_EPOCH), nat)
    }

    /// [`World::add_node_behind`] with a given identity and wall clock (`None`: no RTC),
    /// like [`World::add_node_with`].
    pub fn add_node_behind_with(
        &mut self,
        config: Config,
        identity: Identity,
        unix: Option<UnixTime>,
        nat: NatId,
    ) -> usize {
        let n = &mut self.nats[nat.0];
        let k = n.hosts;
        n.hosts += 1;
        let host = u16::try_from(k + 1).ok().filter(|h| *h < u16::MAX).expect("at most 65 534 nodes behind one NAT");
        let ip = Ipv4Addr::new(10, n.index, (host >> 8) as u8, host as u8);
        let port = if k % 2 == 0 { 4000 } else { (4000 + k % 60_000) as u16 };
        let idx = self.add_node_with(config, identity, unix);
        let addr = SocketAddr::new(IpAddr::V4(ip), port);
        self.log(format!("node {idx} is behind NAT {} at {addr}", nat.0));
        self.nodes[idx].addr = addr;
        self.nodes[idx].nat = Some(nat);
        idx
    }

    /// The NAT node `node` is behind, if any.
    pub fn nat_of(&self, node: usize) -> Option<NatId> {
        self.nodes[node].nat
    }

    /// Node `node`'s own address: its private address if it is behind a NAT.
    pub fn local_addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr
    }

    /// NAT `nat`'s configuration, with its public IP filled in.
    pub fn nat_config(&self, nat: NatId) -> &NatConfig {
        &self.nats[nat.0].config
    }

    /// What NAT `nat` did so far.
    pub fn nat_stats(&self, nat: NatId) -> NatStats {
        self.nats[nat.0].stats(self.now)
    }

    /// Routes a datagram node `from_node` sends to `to` now (translating it if it leaves a NAT).
    pub(super) fn route_out(&mut self, from_node: usize, to: SocketAddr) -> Hop {
        let src = self.nodes[from_node].addr;
        let Some(id) = self.nodes[from_node].nat else {
            return Hop { from: src, realm: None, target: self.outside_target(to) };
        };
        let nat = &mut self.nats[id.0];
        if nat.is_inside(to.ip()) {
            let target = match self.nodes.iter().position(|n| n.nat == Some(id) && n.addr == to) {
                Some(i) => Target::Node(i),
                None => Target::Lost("no such private address"),
            };
            return Hop { from: src, realm: Some(id), target };
        }
        if to.ip() == nat.config.public_ip {
            nat.stats.hairpin_dropped += 1;
            return Hop { from: src, realm: Some(id), target: Target::Lost("NAT does not hairpin") };
        }
        let from = nat.outbound(self.now, src, to, &mut self.rng);
        Hop { from, realm: None, target: self.outside_target(to) }
    }

    /// The receiver of a datagram to `to` on the public side, as far as known now.
    fn outside_target(&self, to: SocketAddr) -> Target {
        if let Some(k) = self.nats.iter().position(|n| n.config.public_ip == to.ip()) {
            let id = Some(NatId(k));
            return match self.nats[k].peek(self.now, to.port()) {
                Some(private) => match self.nodes.iter().position(|n| n.nat == id && n.addr == private) {
                    Some(i) => Target::Node(i),
                    None => Target::Lost("no node at the mapping's private address"),
                },
                None => Target::Nat,
            };
        }
        match self.nodes.iter().position(|n| n.nat.is_none() && n.addr == to) {
            Some(i) => Target::Node(i),
            None => Target::Lost("no such address"),
        }
    }

    /// The node a datagram arriving now, sent from `from` to `to` inside `realm`, is handed
    /// to (passing it through the destination NAT's filter, if any).
    pub(super) fn route_in(&mut self, realm: Option<NatId>, from: SocketAddr, to: SocketAddr) -> Option<usize> {
        if realm.is_some() {
            return self.nodes.iter().position(|n| n.nat == realm && n.addr == to);
        }
        let Some(k) = self.nats.iter().position(|n| n.config.public_ip == to.ip()) else {
            return self.nodes.iter().position(|n| n.nat.is_none() && n.addr == to);
        };
        let now = self.now;
        match self.nats[k].inbound(now, from, to.port()) {
            Ok(private) => self.nodes.iter().position(|n| n.nat == Some(NatId(k)) && n.addr == private),
            Err(why) => {
                self.log(format!("NAT {k} dropped datagram {from} -> {to}: {why}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;
    use crate::{PathAddr, SessionState};

    const JUNK: [u8; 16] = [0xEE; 16];

    fn world(seed: u64) -> World {
        let mut w = World::new(World::seed_from_env(seed));
        w.capture = true;
        w
    }

    fn send(w: &mut World, from: usize, to: SocketAddr) {
        w.send_raw(from, to, JUNK.to_vec());
    }

    fn settle(w: &mut World) {
        w.run_for(Duration::from_millis(100));
    }

    fn at_secs(w: &mut World, secs: f64) {
        w.run_until(Instant::from_micros((secs * 1e6) as u64));
    }

    /// The sources node `to` saw on datagrams from node `from`, from delivery `mark` on.
    fn seen(w: &World, mark: usize, from: usize, to: usize) -> Vec<SocketAddr> {
        w.delivered[mark..].iter().filter(|d| d.from_node == from && d.to_node == to).map(|d| d.from).collect()
    }

    fn last_seen(w: &World, mark: usize, from: usize, to: usize) -> Option<SocketAddr> {
        seen(w, mark, from, to).last().copied()
    }

    /// The public address server `s` sees for node `n` (which sends it a datagram now).
    fn observed(w: &mut World, n: usize, s: usize) -> SocketAddr {
        let mark = w.delivered.len();
        let to = w.local_addr(s);
        send(w, n, to);
        settle(w);
        last_seen(w, mark, n, s).expect("the server heard the node")
    }

    /// Nodes ignore the junk: every datagram on the wire is one the test sent.
    fn assert_only_test_traffic(w: &World, sent: usize) {
        assert_eq!(w.captured.len(), sent, "nodes answered junk");
    }

    struct Punch {
        w: World,
        nats: (NatId, NatId),
        /// [A→B in round 1, B→A in round 1, A→B in round 2, B→A in round 2]
        through: [bool; 4],
    }

    /// The classic experiment: A behind `x` and B behind `y` each send to the public server
    /// S, which learns their public addresses; then A and B send to each other's
    /// S-observed address at the same instant (round 1). In round 2 each sends to the
    /// source it last heard the other from, if any, else to the S-observed address again.
    fn punch(x: NatConfig, y: NatConfig) -> Punch {
        let mut w = world(7);
        let s = w.add_node(Config::default());
        let nats = (w.add_nat(x), w.add_nat(y));
        let a = w.add_node_behind(Config::default(), nats.0);
        let b = w.add_node_behind(Config::default(), nats.1);
        let s_addr = w.local_addr(s);
        send(&mut w, a, s_addr);
        send(&mut w, b, s_addr);
        settle(&mut w);
        let a_obs = last_seen(&w, 0, a, s).unwrap();
        let b_obs = last_seen(&w, 0, b, s).unwrap();
        assert_eq!(a_obs.ip(), w.nat_config(nats.0).public_ip);
        assert_eq!(b_obs.ip(), w.nat_config(nats.1).public_ip);

        let mark = w.delivered.len();
        send(&mut w, a, b_obs);
        send(&mut w, b, a_obs);
        settle(&mut w);
        let ab1 = last_seen(&w, mark, a, b);
        let ba1 = last_seen(&w, mark, b, a);

        let mark = w.delivered.len();
        send(&mut w, a, ba1.unwrap_or(b_obs));
        send(&mut w, b, ab1.unwrap_or(a_obs));
        settle(&mut w);
        let ab2 = last_seen(&w, mark, a, b);
        let ba2 = last_seen(&w, mark, b, a);
        assert_only_test_traffic(&w, 6);
        Punch { w, nats, through: [ab1.is_some(), ba1.is_some(), ab2.is_some(), ba2.is_some()] }
    }

    #[test]
    fn punching_matrix_of_presets() {
        const T: bool = true;
        const F: bool = false;
        let presets = [
            ("easiest", NatConfig::easiest()),
            ("easy", NatConfig::easy()),
            ("address_dependent", NatConfig::address_dependent()),
            ("hard", NatConfig::hard()),
        ];
        // Row: A's NAT; column: B's NAT; cell: [A→B r1, B→A r1, A→B r2, B→A r2].
        // - Both endpoint-independent mappings: both directions in round 1 (each side's
        //   send opened its mapping to the other's S-observed address before the other's
        //   datagram arrived).
        // - easiest vs a dependent mapping: the dependent side's datagram reaches the full
        //   cone in round 1 from a new public port; the full cone's reply to that port
        //   gets in (that mapping contacted exactly the full cone's address), so both
        //   directions work in round 2. Round 1 toward the S-observed port fails: that
        //   mapping only contacted S.
        // - easy (port-restricted) vs a dependent mapping: never; the dependent side
        //   always arrives from a port the easy side never contacted.
        // - Two dependent mappings: never.
        let expected = [
            [[T, T, T, T], [T, T, T, T], [F, T, T, T], [F, T, T, T]],
            [[T, T, T, T], [T, T, T, T], [F, F, F, F], [F, F, F, F]],
            [[T, F, T, T], [F, F, F, F], [F, F, F, F], [F, F, F, F]],
            [[T, F, T, T], [F, F, F, F], [F, F, F, F], [F, F, F, F]],
        ];
        for (i, (xn, x)) in presets.iter().enumerate() {
            for (j, (yn, y)) in presets.iter().enumerate() {
                let p = punch(x.clone(), y.clone());
                assert_eq!(p.through, expected[i][j], "A behind {xn}, B behind {yn}");
            }
        }
    }

    #[test]
    fn full_cone_vs_symmetric_stats() {
        let p = punch(NatConfig::easiest(), NatConfig::hard());
        let (s1, s2) = (p.w.nat_stats(p.nats.0), p.w.nat_stats(p.nats.1));
        // NAT1 (EIM): one mapping for everything; B's two datagrams got in.
        assert_eq!((s1.mappings_created, s1.translated_out, s1.translated_in, s1.inbound_filtered), (1, 3, 2, 0));
        // NAT2 (APDM): one mapping toward S, one toward A's address (used in both rounds);
        // A's round-1 datagram to the S mapping was filtered, its round-2 reply got in.
        assert_eq!((s2.mappings_created, s2.translated_out, s2.translated_in, s2.inbound_filtered), (2, 3, 1, 1));
        assert_eq!(s2.inbound_no_mapping, 0);
    }

    #[test]
    fn restricted_cone_opens_to_symmetric_after_exchange() {
        // Endpoint-independent mapping with address-dependent filtering lets the symmetric
        // side's new port in (same IP as contacted), so the exchange completes in round 2.
        let rc = NatConfig::easy().with_filtering(NatBehavior::AddressDependent);
        let p = punch(rc.clone(), NatConfig::hard());
        assert_eq!(p.through, [false, true, true, true]);
        let p = punch(NatConfig::hard(), rc);
        assert_eq!(p.through, [true, false, true, true]);
        // Both address-dependent filters with endpoint-independent mappings: round 1.
        let rc = NatConfig::easy().with_filtering(NatBehavior::AddressDependent);
        assert_eq!(punch(rc.clone(), rc).through, [true; 4]);
    }

    #[test]
    fn port_restricted_drops_until_both_sent() {
        let mut w = world(3);
        let s = w.add_node(Config::default());
        let (n1, n2) = (w.add_nat(NatConfig::easy()), w.add_nat(NatConfig::easy()));
        let a = w.add_node_behind(Config::default(), n1);
        let b = w.add_node_behind(Config::default(), n2);
        let a_obs = observed(&mut w, a, s);
        let b_obs = observed(&mut w, b, s);
        // Only A sends: NAT2 filters it (B's mapping contacted only S).
        let mark = w.delivered.len();
        send(&mut w, a, b_obs);
        settle(&mut w);
        assert!(seen(&w, mark, a, b).is_empty());
        assert_eq!(w.nat_stats(n2).inbound_filtered, 1);
        // B answers: NAT1 lets it in (A contacted b_obs), then A gets through too.
        send(&mut w, b, a_obs);
        settle(&mut w);
        assert_eq!(seen(&w, mark, b, a), [b_obs]);
        send(&mut w, a, b_obs);
        settle(&mut w);
        assert_eq!(seen(&w, mark, a, b), [a_obs]);
        assert_eq!(w.nat_stats(n1).inbound_filtered, 0);
        assert_eq!(w.nat_stats(n2).inbound_filtered, 1);
        assert_eq!(w.nat_stats(n1).mappings_created, 1);
        assert_only_test_traffic(&w, 5);
    }

    /// Servers S1 (192.0.2.x:4000), S1b (same IP, port 4001) and S2 (another IP).
    fn three_servers(w: &mut World) -> [usize; 3] {
        let s1 = w.add_node(Config::default());
        let s1b = w.add_node(Config::default());
        let s2 = w.add_node(Config::default());
        let ip = w.local_addr(s1).ip();
        w.rebind(s1b, SocketAddr::new(ip, 4001));
        [s1, s1b, s2]
    }

    #[test]
    fn mapping_behaviour_decides_the_public_port() {
        use NatBehavior::*;
        // Which of S1, S1b, S2 share a public port with S1's, and how many mappings.
        for (mapping, same, created) in [
            (EndpointIndependent, [true, true, true], 1),
            (AddressDependent, [true, true, false], 2),
            (AddressAndPortDependent, [true, false, false], 3),
        ] {
            let mut w = world(5);
            let servers = three_servers(&mut w);
            let nat = w.add_nat(NatConfig::easiest().with_mapping(mapping));
            let h = w.add_node_behind(Config::default(), nat);
            let obs: Vec<SocketAddr> = servers.iter().map(|&s| observed(&mut w, h, s)).collect();
            for (k, o) in obs.iter().enumerate() {
                assert_eq!(o.ip(), w.nat_config(nat).public_ip);
                assert_eq!(*o == obs[0], same[k], "{mapping:?}: server {k}");
            }
            // A second datagram reuses the mappings.
            let again: Vec<SocketAddr> = servers.iter().map(|&s| observed(&mut w, h, s)).collect();
            assert_eq!(obs, again);
            let st = w.nat_stats(nat);
            assert_eq!((st.mappings_created, st.mappings_active, st.translated_out), (created, created, 6));
        }
    }

    #[test]
    fn filtering_behaviour_decides_who_gets_in() {
        use NatBehavior::*;
        // After H contacted S1: which of S1, S1b, S2 may send to that mapping.
        for (filtering, allowed) in [
            (EndpointIndependent, [true, true, true]),
            (AddressDependent, [true, true, false]),
            (AddressAndPortDependent, [true, false, false]),
        ] {
            let mut w = world(9);
            let servers = three_servers(&mut w);
            let nat = w.add_nat(NatConfig::easiest().with_filtering(filtering));
            let h = w.add_node_behind(Config::default(), nat);
            let obs = observed(&mut w, h, servers[0]);
            let mark = w.delivered.len();
            for &s in &servers {
                send(&mut w, s, obs);
            }
            settle(&mut w);
            for (k, &s) in servers.iter().enumerate() {
                // Delivered with the source unchanged.
                let want: Vec<SocketAddr> = if allowed[k] { alloc::vec![w.local_addr(s)] } else { Vec::new() };
                assert_eq!(seen(&w, mark, s, h), want, "{filtering:?}: server {k}");
            }
            let st = w.nat_stats(nat);
            let n_allowed = allowed.iter().filter(|a| **a).count() as u64;
            assert_eq!((st.translated_in, st.inbound_filtered), (n_allowed, 3 - n_allowed));
            // A public port without a mapping, and the private address, are unreachable.
            send(&mut w, servers[0], SocketAddr::new(obs.ip(), obs.port() ^ 1));
            let private = w.local_addr(h);
            send(&mut w, servers[0], private);
            settle(&mut w);
            assert_eq!(w.nat_stats(nat).inbound_no_mapping, 1);
            assert_eq!(w.delivered.len(), mark + n_allowed as usize);
            assert_only_test_traffic(&w, 6);
        }
    }

    #[test]
    fn mappings_expire_without_outbound_traffic() {
        let mut w = world(11);
        let s = w.add_node(Config::default());
        let nat = w.add_nat(NatConfig::easy());
        let h = w.add_node_behind(Config::default(), nat);
        let obs = observed(&mut w, h, s); // at t = 0
        assert_eq!(obs.port(), 4000);
        // Inbound traffic does not refresh the mapping: it lives 120 s after the outbound one.
        let mark = w.delivered.len();
        for t in [60.0, 119.9] {
            at_secs(&mut w, t);
            send(&mut w, s, obs);
            settle(&mut w);
        }
        assert_eq!(seen(&w, mark, s, h).len(), 2);
        at_secs(&mut w, 120.5);
        assert_eq!(w.nat_stats(nat).mappings_expired, 1, "counted before the NAT removes it");
        assert_eq!(w.nat_stats(nat).mappings_active, 0);
        send(&mut w, s, obs);
        settle(&mut w);
        assert_eq!(seen(&w, mark, s, h).len(), 2);
        let st = w.nat_stats(nat);
        assert_eq!((st.mappings_expired, st.inbound_no_mapping, st.inbound_filtered), (1, 1, 0));
        // A new outbound datagram creates a new mapping (the same port: it is free again).
        at_secs(&mut w, 200.0);
        assert_eq!(observed(&mut w, h, s), obs);
        // Outbound traffic refreshes it: alive at 410 s thanks to the datagram at 300 s.
        at_secs(&mut w, 300.0);
        assert_eq!(observed(&mut w, h, s), obs);
        at_secs(&mut w, 410.0);
        let mark = w.delivered.len();
        send(&mut w, s, obs);
        settle(&mut w);
        assert_eq!(seen(&w, mark, s, h).len(), 1);
        let st = w.nat_stats(nat);
        assert_eq!((st.mappings_created, st.mappings_expired, st.mappings_active), (2, 1, 1));
        // A shorter timeout.
        let mut w = world(11);
        let s = w.add_node(Config::default());
        let nat = w.add_nat(NatConfig::hard().with_mapping_timeout(Duration::from_secs(5)));
        let h = w.add_node_behind(Config::default(), nat);
        let first = observed(&mut w, h, s);
        at_secs(&mut w, 5.2);
        let second = observed(&mut w, h, s);
        assert_ne!(first, second, "a random port for the new mapping");
        assert_eq!(w.nat_stats(nat).mappings_expired, 1);
    }

    #[test]
    fn port_preservation_and_random_ports() {
        fn ports(seed: u64, config: NatConfig) -> Vec<(u16, u16)> {
            let mut w = World::new(seed);
            w.capture = true;
            let s = w.add_node(Config::default());
            let nat = w.add_nat(config);
            let hosts: Vec<usize> = (0..4).map(|_| w.add_node_behind(Config::default(), nat)).collect();
            hosts.iter().map(|&h| (w.local_addr(h).port(), observed(&mut w, h, s).port())).collect()
        }
        // Hosts 0 and 2 share private port 4000, 1 and 3 have their own.
        let p = ports(1, NatConfig::easy());
        assert_eq!(p.iter().map(|p| p.0).collect::<Vec<_>>(), [4000, 4001, 4000, 4003]);
        assert_eq!((p[0].1, p[1].1, p[3].1), (4000, 4001, 4003), "preserved");
        assert!(![4000, 4001, 4003].contains(&p[2].1), "port 4000 is taken: another one");
        let r = ports(1, NatConfig::hard());
        assert!(r.iter().all(|(private, public)| private != public), "{r:?}");
        let mut public: Vec<u16> = r.iter().map(|p| p.1).collect();
        public.dedup();
        assert_eq!(public.len(), 4);
        // Deterministic by seed.
        assert_eq!(ports(1, NatConfig::hard()), r);
        assert_eq!(ports(1, NatConfig::easy()), p);
        assert_ne!(ports(2, NatConfig::hard()), r);
    }

    #[test]
    fn same_nat_hosts_talk_directly_and_no_hairpin() {
        let mut w = world(13);
        let s = w.add_node(Config::default());
        let nat = w.add_nat(NatConfig::easiest());
        let other = w.add_nat(NatConfig::easiest());
        let h0 = w.add_node_behind(Config::default(), nat);
        let h1 = w.add_node_behind(Config::default(), nat);
        let o = w.add_node_behind(Config::default(), other);
        assert_eq!((w.nat_of(h0), w.nat_of(h1), w.nat_of(s)), (Some(nat), Some(nat), None));
        assert_eq!(w.local_addr(h0), "10.0.0.1:4000".parse().unwrap());
        assert_eq!(w.local_addr(h1), "10.0.0.2:4001".parse().unwrap());
        assert_eq!(w.local_addr(o), "10.1.0.1:4000".parse().unwrap());
        assert_eq!(w.nat_config(nat).public_ip, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)));
        // Private to private inside one NAT: direct, untranslated.
        let (a0, a1) = (w.local_addr(h0), w.local_addr(h1));
        send(&mut w, h0, a1);
        settle(&mut w);
        assert_eq!(seen(&w, 0, h0, h1), [a0]);
        assert_eq!(w.nat_stats(nat).translated_out, 0);
        // To the NAT's own public address: dropped.
        let obs = observed(&mut w, h0, s);
        let mark = w.delivered.len();
        send(&mut w, h1, obs);
        settle(&mut w);
        assert!(seen(&w, mark, h1, h0).is_empty());
        assert_eq!(w.nat_stats(nat).hairpin_dropped, 1);
        // Private addresses are unreachable from the public side and from other NATs
        // (the datagram still leaves the other NAT through a mapping).
        send(&mut w, s, a0);
        send(&mut w, o, a0);
        settle(&mut w);
        assert_eq!(w.delivered.len(), mark);
        assert_eq!(w.nat_stats(other).translated_out, 1);
        // Captured: translated source outside, private inside.
        let c: Vec<(usize, SocketAddr)> = w.captured.iter().map(|c| (c.from_node, c.from)).collect();
        assert_eq!(c[0], (h0, a0));
        assert_eq!(c[1], (h0, obs));
        assert_eq!(c[4].1.ip(), w.nat_config(other).public_ip);
        assert_only_test_traffic(&w, 5);
    }

    #[test]
    fn handshakes_through_nats() {
        let mut w = World::new(World::seed_from_env(17));
        let s = w.add_node(Config::default());
        let (easy, hard) = (w.add_nat(NatConfig::easy()), w.add_nat(NatConfig::hard()));
        let a = w.add_node_behind(Config::default(), easy);
        let b = w.add_node_behind(Config::default(), hard);
        // Outbound to a public server works through any NAT.
        for n in [a, b] {
            let sess = w.connect(n, s);
            w.drive_until(|w| w.is_established(n, sess), 1_000).unwrap();
        }
        // Nobody can start a session to B's private address, nor to A's from outside.
        let to_b = w.connect(s, b);
        w.run_for(Duration::from_secs(5));
        assert!(!w.is_established(s, to_b));
        // A second node behind the full cone is reachable at its public mapping once it has one.
        let cone = w.add_nat(NatConfig::easiest());
        let c = w.add_node_behind(Config::default(), cone);
        w.capture = true;
        let c_pub = observed(&mut w, c, s);
        let now = w.now;
        let expect = Some(w.node_id(c));
        let sess = w.node(b).connect(now, PathAddr::Udp(c_pub), expect).unwrap();
        w.drive_until(|w| w.is_established(b, sess), 1_000).unwrap();
        assert_eq!(w.nodes[b].node.session(sess).map(|s| s.state()), Some(SessionState::Established));
    }
}
