//! The scripted peer: one side of one session, built from the packet descriptions of a
//! trace and reading what the implementation under test sends (docs/protocol.md §4–§6).
//! Noise is snow's; everything around it is written here from the spec.

use std::collections::HashMap;
use std::net::SocketAddr;

use snow::HandshakeState;

use crate::item::{hex, unhex, Item};
use crate::keys::{hkdf_label, hmac16, open_cookie, DirectionKeys, NodeKeys, AEAD_AES, AEAD_CHACHA};
use crate::wire::{decode_frames_relayed, decode_params, encode_frames, encode_params, push_addr, read_addr, Reader};

const NOISE: &str = "Noise_XXpsk0_25519_ChaChaPoly_SHA256";
const HELLO_HEADER: usize = 10;
const HS_HEADER: usize = 18;
const PROT_HEADER: usize = 13;
const MAC: usize = 16;
/// The smallest HELLO (§4.2 [HS-4]).
pub const HELLO_MIN: usize = 1200;

/// A datagram from the implementation under test, as the peer reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The packet and its cleartext (or decrypted handshake) fields.
    pub packet: Item,
    /// The frames of a protected packet, when it opened.
    pub frames: Option<Vec<Item>>,
    /// The datagrams its RELAY_DATA frames carry, whole (§12.1).
    pub relayed: Vec<crate::wire::Relayed>,
}

impl Decoded {
    /// A packet without frames.
    pub fn packet(packet: Item) -> Self {
        Self { packet, frames: None, relayed: Vec::new() }
    }
}

/// How the peer is set up.
#[derive(Clone)]
pub struct PeerSetup {
    /// The group's shared seed.
    pub shared_seed: [u8; 32],
    /// The peer's own node seed.
    pub node_seed: [u8; 32],
    /// Seeds the peer's ephemerals and session ids.
    pub rng_seed: u64,
    /// The implementation's address as the peer sees it (CHALLENGE's observed address).
    pub observed: SocketAddr,
}

/// The scripted peer.
pub struct Peer {
    setup: PeerSetup,
    keys: NodeKeys,
    counter: u64,
    local_sid: [u8; 8],
    remote_sid: Option<[u8; 8]>,
    hs: Option<HandshakeState>,
    last_hello: Option<Vec<u8>>,
    last_auth: Option<Vec<u8>>,
    last_challenge: Option<Vec<u8>>,
    offered: Vec<u8>,
    aead: u8,
    tx: Option<DirectionKeys>,
    tx_phase: u8,
    tx_prev: Option<DirectionKeys>,
    rx: Option<DirectionKeys>,
    rx_prev: Option<DirectionKeys>,
    rx_phase: u8,
    next_pn: u64,
    largest_rx: Option<u64>,
    remote_id: Option<[u8; 32]>,
    cookie: Option<[u8; 16]>,
    seen: HashMap<Vec<u8>, Decoded>,
    /// `exporter_secret` of §5.6, once the handshake finished.
    exporter: Option<[u8; 32]>,
}

fn sid_field(s: &[u8; 8]) -> String {
    hex(s)
}

impl Peer {
    /// A peer with no session yet.
    pub fn new(setup: PeerSetup) -> Self {
        let keys = NodeKeys::derive(&setup.shared_seed, &setup.node_seed);
        let local_sid = hkdf_label(&setup.rng_seed.to_be_bytes(), b"peer sid")[..8].try_into().expect("8 bytes");
        Self {
            setup,
            keys,
            counter: 0,
            local_sid,
            remote_sid: None,
            hs: None,
            last_hello: None,
            last_auth: None,
            last_challenge: None,
            offered: Vec::new(),
            aead: AEAD_CHACHA,
            tx: None,
            tx_phase: 0,
            tx_prev: None,
            rx: None,
            rx_prev: None,
            rx_phase: 0,
            next_pn: 0,
            largest_rx: None,
            remote_id: None,
            cookie: None,
            seen: HashMap::new(),
            exporter: None,
        }
    }

    /// The peer's node id.
    pub fn node_id(&self) -> [u8; 32] {
        self.keys.node_id
    }

    /// The peer's session id (what the implementation must put in packets to it).
    pub fn sid(&self) -> [u8; 8] {
        self.local_sid
    }

    /// The implementation's node id, once the handshake revealed it.
    pub fn remote_id(&self) -> Option<[u8; 32]> {
        self.remote_id
    }

    /// Keying material exported from the session (§5.6), once the handshake finished.
    pub fn export(&self, label: &[u8], context: &[u8], len: usize) -> Option<Vec<u8>> {
        let secret = self.exporter?;
        let label_len = u8::try_from(label.len()).ok()?;
        let info = [b"stt/1 export ".as_slice(), &[label_len], label, context].concat();
        let mut out = vec![0u8; len];
        hkdf::Hkdf::<sha2::Sha256>::from_prk(&secret).ok()?.expand(&info, &mut out).ok()?;
        Some(out)
    }

    /// Whether record keys are installed.
    pub fn has_keys(&self) -> bool {
        self.tx.is_some()
    }

    /// The next packet number the peer will seal.
    pub fn next_pn(&self) -> u64 {
        self.next_pn
    }

    fn ephemeral(&mut self) -> [u8; 32] {
        self.counter += 1;
        hkdf_label(&[self.setup.rng_seed.to_be_bytes(), self.counter.to_be_bytes()].concat(), b"peer ephemeral")
    }

    fn builder_keys(&self, it: &Item) -> Result<NodeKeys, String> {
        match it.get("seed") {
            None => Ok(self.keys.clone()),
            Some(s) => {
                // `seed=hex:…` (32 bytes) is a shared seed; any other word names an unrelated one.
                let seed: [u8; 32] = match crate::item::parse_bytes(s).and_then(|b| b.try_into().ok()) {
                    Some(b) => b,
                    None => hkdf_label(s.as_bytes(), b"other seed"),
                };
                Ok(NodeKeys::derive(&seed, &self.setup.node_seed))
            }
        }
    }

    fn new_sid(&mut self) {
        self.local_sid = hkdf_label(&[self.setup.rng_seed.to_be_bytes(), self.counter.to_be_bytes()].concat(), b"sid")
            [..8]
            .try_into()
            .expect("8 bytes");
    }

    // ----- peer as initiator -----

    /// Builds a HELLO (§4.2). Fields: `resend`, `ts` (ms), `aeads` (`01,02`), `len`,
    /// `mac` (`zero`, `cookie`, `bad`), `v`, `seed` (another shared seed), `pad` (`nonzero`).
    ///
    /// # Errors
    /// A malformed field, or `resend` before any HELLO.
    pub fn hello(&mut self, it: &Item, unix_ms: u64) -> Result<Vec<u8>, String> {
        if it.get("resend").is_some() {
            return self.last_hello.clone().ok_or_else(|| "resend before any HELLO".to_string());
        }
        let len = it.num("len")?.unwrap_or(HELLO_MIN as u64) as usize;
        let version = it.num("v")?.unwrap_or(1) as u8;
        let ts = it.num("ts")?.unwrap_or(unix_ms);
        self.offered = match it.get("aeads") {
            Some(a) => {
                a.split(',').map(|x| u8::from_str_radix(x, 16).map_err(|_| "aeads=01,02")).collect::<Result<_, _>>()?
            }
            None => vec![AEAD_CHACHA, AEAD_AES],
        };
        if it.get("fresh").is_some() || self.last_hello.is_some() {
            self.new_sid();
        }
        let keys = self.builder_keys(it)?;
        let e = self.ephemeral();
        let ephemeral_public = match it.get("eph") {
            None => None,
            // All zeros, or a point of order 8 on Curve25519.
            Some("zero") => Some([0; 32]),
            Some("order8") => unhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .and_then(|b| b.try_into().ok()),
            Some(other) => {
                Some(crate::item::parse_bytes(other).and_then(|b| b.try_into().ok()).ok_or("eph=zero|order8|hex:…")?)
            }
        };
        let hello = HelloInput {
            version,
            sid: self.local_sid,
            timestamp_ms: ts,
            offered: self.offered.clone(),
            len,
            pad_nonzero: it.get("pad") == Some("nonzero"),
            ephemeral_public,
        };
        let (hs, mut out) = build_hello(&keys, &e, &hello)?;
        match it.get("mac").unwrap_or(if self.cookie.is_some() { "cookie" } else { "zero" }) {
            "zero" => {}
            "cookie" => {
                let c = self.cookie.ok_or("mac=cookie without a COOKIE received")?;
                let m = hmac16(&c, &out[..len - MAC]);
                out[len - MAC..].copy_from_slice(&m);
            }
            "bad" => out[len - MAC..].copy_from_slice(&[0x5a; 16]),
            other => return Err(format!("mac={other}: use zero, cookie or bad")),
        }
        self.hs = Some(hs);
        self.last_hello = Some(out.clone());
        self.tx = None;
        self.rx = None;
        Ok(out)
    }

    /// Builds AUTH_PROOF (§4.3) and installs the record keys. Fields: `resend`, transport
    /// parameters by name.
    ///
    /// # Errors
    /// No CHALLENGE read yet, or a malformed field.
    pub fn auth_proof(&mut self, it: &Item) -> Result<Vec<u8>, String> {
        if it.get("resend").is_some() {
            return self.last_auth.clone().ok_or_else(|| "resend before any AUTH_PROOF".to_string());
        }
        let mut hs = self.hs.take().ok_or("AUTH_PROOF before a CHALLENGE was read")?;
        if !hs.is_my_turn() || !hs.is_initiator() {
            return Err("AUTH_PROOF out of turn".into());
        }
        let remote = self.remote_sid.ok_or("no responder sid")?;
        let params = encode_params(&with_default_params(it))?;
        let mut out = vec![0u8; HS_HEADER + 48 + 16 + params.len() + 16];
        out[0] = 0x03;
        out[1] = 1;
        out[2..10].copy_from_slice(&self.local_sid);
        out[10..18].copy_from_slice(&remote);
        let n = hs.write_message(&params, &mut out[HS_HEADER..]).map_err(|e| e.to_string())?;
        out.truncate(HS_HEADER + n);
        let (c1, c2) = hs.dangerously_get_raw_split();
        self.exporter = Some(exporter_secret(hs.get_handshake_hash(), &c1, &c2));
        self.install(c1, c2);
        self.last_auth = Some(out.clone());
        Ok(out)
    }

    fn install(&mut self, tx: [u8; 32], rx: [u8; 32]) {
        self.tx = Some(DirectionKeys::new(tx, self.aead));
        self.rx = Some(DirectionKeys::new(rx, self.aead));
        self.rx_prev = None;
        self.tx_phase = 0;
        self.rx_phase = 0;
        self.next_pn = 0;
        self.largest_rx = None;
    }

    // ----- peer as responder -----

    /// Builds CHALLENGE (§4.3) in answer to the last HELLO read. Fields: `resend`,
    /// `aead` (id), `sid_echo` (hex, a wrong echo), `observed` (`ip:port` or `none`), parameters.
    ///
    /// # Errors
    /// No HELLO read yet, or a malformed field.
    pub fn challenge(&mut self, it: &Item) -> Result<Vec<u8>, String> {
        if it.get("resend").is_some() {
            return self.last_challenge.clone().ok_or_else(|| "resend before any CHALLENGE".to_string());
        }
        let mut hs = self.hs.take().ok_or("CHALLENGE before a HELLO was read")?;
        let remote = self.remote_sid.ok_or("no initiator sid")?;
        self.aead = match it.num("aead")? {
            Some(a) => a as u8,
            None => *self.offered.first().unwrap_or(&AEAD_CHACHA),
        };
        let mut plain = Vec::new();
        match it.get("sid_echo") {
            Some(h) => plain.extend_from_slice(&unhex(h).filter(|b| b.len() == 8).ok_or("sid_echo is 16 hex digits")?),
            None => plain.extend_from_slice(&self.local_sid),
        }
        plain.push(self.aead);
        match it.get("observed") {
            Some("none") => plain.push(0),
            Some(a) => push_addr(&mut plain, a.parse().map_err(|_| "observed=ip:port")?),
            None => push_addr(&mut plain, self.setup.observed),
        }
        plain.extend_from_slice(&encode_params(&with_default_params(it))?);
        let mut out = vec![0u8; HS_HEADER + 32 + 48 + 16 + plain.len() + 16];
        out[0] = 0x02;
        out[1] = 1;
        out[2..10].copy_from_slice(&self.local_sid);
        out[10..18].copy_from_slice(&remote);
        let n = hs.write_message(&plain, &mut out[HS_HEADER..]).map_err(|e| e.to_string())?;
        out.truncate(HS_HEADER + n);
        self.hs = Some(hs);
        self.last_challenge = Some(out.clone());
        Ok(out)
    }

    // ----- protected packets -----

    /// Seals a protected packet (§4.5). Fields: `pn`, `kp` (0/1), `ku` (start a key
    /// update first), `rsid` (hex), `tag` (`bad`).
    ///
    /// # Errors
    /// No keys yet, or a malformed frame.
    pub fn seal(&mut self, it: &Item, frames: &[Item]) -> Result<Vec<u8>, String> {
        if it.get("ku").is_some() {
            let cur = self.tx.clone().ok_or("no keys")?;
            self.tx = Some(cur.next());
            self.tx_prev = Some(cur);
            self.tx_phase ^= 1;
        }
        let keys = self.tx.clone().ok_or("PROT before the handshake gave keys")?;
        let pn = match it.num("pn")? {
            Some(p) => p,
            None => self.next_pn,
        };
        self.next_pn = self.next_pn.max(pn.saturating_add(1));
        let phase = it.num("kp")?.map_or(self.tx_phase, |k| k as u8 & 1);
        let sealing_keys = match (phase == self.tx_phase, &self.tx_prev) {
            (true, _) => keys,
            (false, Some(prev)) => prev.clone(),
            (false, None) => keys.next(),
        };
        let rsid = match it.get("rsid") {
            Some(h) => unhex(h).filter(|b| b.len() == 8).ok_or("rsid is 16 hex digits")?,
            None => self.remote_sid.ok_or("no remote sid")?.to_vec(),
        };
        let mut out = vec![0x40 | phase];
        out.extend_from_slice(&rsid);
        out.extend_from_slice(&(pn as u32).to_be_bytes());
        let plain = encode_frames(frames)?;
        let sealed = sealing_keys.seal(pn, &out, &plain);
        out.extend_from_slice(&sealed);
        if it.get("tag") == Some("bad") {
            if let Some(b) = out.last_mut() {
                *b ^= 0x01;
            }
        }
        Ok(out)
    }

    // ----- reading -----

    /// Reads a datagram from the implementation. The same bytes always read the same way
    /// (a retransmission is rendered like the original).
    pub fn read(&mut self, dgram: &[u8]) -> Decoded {
        if let Some(d) = self.seen.get(dgram) {
            return d.clone();
        }
        let d = match dgram.first() {
            Some(0x01) => self.read_hello(dgram),
            Some(0x02) => self.read_challenge(dgram),
            Some(0x03) => self.read_auth_proof(dgram),
            Some(0x04) => self.read_cookie(dgram),
            Some(0x40 | 0x41) => self.read_protected(dgram),
            _ => Decoded::packet(Item::new("UNKNOWN").with("len", dgram.len())),
        };
        // Protected packets are not cached: the same bytes twice is a replay worth seeing.
        if !matches!(dgram.first(), Some(0x40 | 0x41)) {
            self.seen.insert(dgram.to_vec(), d.clone());
        }
        d
    }

    fn undecodable(name: &str, len: usize, why: &str) -> Decoded {
        Decoded::packet(Item::new(name).with("len", len).with("error", why.replace(' ', "_")))
    }

    fn read_hello(&mut self, d: &[u8]) -> Decoded {
        if d.len() < HELLO_MIN {
            return Self::undecodable("HELLO", d.len(), "short");
        }
        let sid: [u8; 8] = d[2..10].try_into().expect("length checked");
        let prologue = [b"STT/1".as_slice(), &d[..HELLO_HEADER]].concat();
        let e = self.ephemeral();
        let built = snow::Builder::new(NOISE.parse().expect("noise name"))
            .local_private_key(&self.keys.static_private)
            .and_then(|b| b.psk(0, &self.keys.psk))
            .and_then(|b| b.prologue(&prologue))
            .map(|b| b.fixed_ephemeral_key_for_testing_only(&e))
            .and_then(|b| b.build_responder());
        let Ok(mut hs) = built else { return Self::undecodable("HELLO", d.len(), "noise setup") };
        let mut plain = vec![0u8; d.len()];
        let Ok(n) = hs.read_message(&d[HELLO_HEADER..d.len() - MAC], &mut plain) else {
            return Self::undecodable("HELLO", d.len(), "noise read failed");
        };
        let mut r = Reader::new(&plain[..n]);
        let (Some(ts), Some(count)) = (r.take(8), r.u8()) else {
            return Self::undecodable("HELLO", d.len(), "payload");
        };
        let Some(ids) = r.take(usize::from(count)) else { return Self::undecodable("HELLO", d.len(), "payload") };
        let zero_pad = r.rest().iter().all(|b| *b == 0);
        let mac = &d[d.len() - MAC..];
        let mac_state = if mac.iter().all(|b| *b == 0) {
            "zero"
        } else if self.cookie.is_some_and(|c| hmac16(&c, &d[..d.len() - MAC]) == mac) {
            "cookie"
        } else {
            "bad"
        };
        self.offered = ids.to_vec();
        self.remote_sid = Some(sid);
        self.hs = Some(hs);
        let ts = u64::from_be_bytes(ts.try_into().expect("8 bytes"));
        let packet = Item::new("HELLO")
            .with("v", d[1])
            .with("sid", sid_field(&sid))
            .with("len", d.len())
            .with("ts", ts)
            .with("aeads", ids.iter().map(|i| format!("{i:02x}")).collect::<Vec<_>>().join(","))
            .with("pad", if zero_pad { "zero" } else { "nonzero" })
            .with("mac", mac_state);
        Decoded::packet(packet)
    }

    /// Reads the header and the Noise message of a CHALLENGE or AUTH_PROOF: the packet item,
    /// the sender sid, the Noise state and the payload; or the rendering of a failure.
    fn read_hs_message(&mut self, name: &str, d: &[u8]) -> Result<(Item, [u8; 8], HandshakeState, Vec<u8>), Decoded> {
        if d.len() < HS_HEADER {
            return Err(Self::undecodable(name, d.len(), "short"));
        }
        let sid: [u8; 8] = d[2..10].try_into().expect("checked");
        let rsid: [u8; 8] = d[10..18].try_into().expect("checked");
        let packet = Item::new(name)
            .with("v", d[1])
            .with("sid", sid_field(&sid))
            .with("rsid", sid_field(&rsid))
            .with("len", d.len());
        let Some(mut hs) = self.hs.take() else {
            return Err(Decoded::packet(packet.with("error", "unexpected")));
        };
        let mut plain = vec![0u8; d.len()];
        match hs.read_message(&d[HS_HEADER..], &mut plain) {
            Ok(n) => {
                plain.truncate(n);
                Ok((packet, sid, hs, plain))
            }
            Err(_) => {
                self.hs = Some(hs);
                Err(Decoded::packet(packet.with("error", "noise_read_failed")))
            }
        }
    }

    /// Adds the proven identity of the remote static key.
    fn note_identity(&mut self, hs: &HandshakeState, packet: Item) -> Item {
        match hs.get_remote_static() {
            Some(s) => {
                let id = crate::keys::node_id(s);
                self.remote_id = Some(id);
                packet.with("id", hex(&id))
            }
            None => packet,
        }
    }

    fn read_challenge(&mut self, d: &[u8]) -> Decoded {
        let (mut packet, sid, hs, plain) = match self.read_hs_message("CHALLENGE", d) {
            Ok(r) => r,
            Err(d) => return d,
        };
        let mut r = Reader::new(&plain);
        let (Some(echo), Some(aead)) = (r.take(8), r.u8()) else {
            return Decoded::packet(packet.with("error", "payload"));
        };
        let observed = read_addr(&mut r);
        packet =
            packet.with("sid_echo", if echo == sid { "ok" } else { "mismatch" }).with("aead", format!("{aead:02x}"));
        packet = packet
            .with("observed", observed.map_or("none".to_string(), |a| a.map_or("none".into(), |a| a.to_string())));
        if let Err(e) = decode_params(r.rest(), &mut packet) {
            packet = packet.with("error", e.replace(' ', "_"));
        }
        let packet = self.note_identity(&hs, packet);
        self.aead = aead;
        self.remote_sid = Some(sid);
        self.hs = Some(hs);
        Decoded::packet(packet)
    }

    fn read_auth_proof(&mut self, d: &[u8]) -> Decoded {
        let (mut packet, _, mut hs, plain) = match self.read_hs_message("AUTH_PROOF", d) {
            Ok(r) => r,
            Err(d) => return d,
        };
        if let Err(e) = decode_params(&plain, &mut packet) {
            packet = packet.with("error", e.replace(' ', "_"));
        }
        let packet = self.note_identity(&hs, packet);
        let (c1, c2) = hs.dangerously_get_raw_split();
        self.exporter = Some(exporter_secret(hs.get_handshake_hash(), &c1, &c2));
        self.install(c2, c1);
        Decoded::packet(packet)
    }

    fn read_cookie(&mut self, d: &[u8]) -> Decoded {
        let mut packet = Item::new("COOKIE").with("len", d.len());
        if d.len() != 66 {
            return Decoded::packet(packet.with("error", "length"));
        }
        packet = packet.with("v", d[1]).with("rsid", sid_field(&d[2..10].try_into().expect("checked")));
        let nonce: [u8; 24] = d[10..34].try_into().expect("checked");
        let Some(hello) = self.last_hello.as_ref() else {
            return Decoded::packet(packet.with("open", "no_hello"));
        };
        let tag = &hello[hello.len() - 32..hello.len() - 16];
        match open_cookie(&self.keys.cookie_key, &nonce, &d[34..], tag) {
            Some(c) => {
                self.cookie = Some(c);
                Decoded::packet(packet.with("open", "ok"))
            }
            None => Decoded::packet(packet.with("open", "failed")),
        }
    }

    fn decode_pn(&self, low: u32) -> u64 {
        // RFC 9000 §A.3 with 32-bit truncation.
        let expected = self.largest_rx.map_or(0, |l| l + 1);
        let win: u64 = 1 << 32;
        let candidate = (expected & !(win - 1)) | u64::from(low);
        if candidate + win / 2 <= expected && candidate + win < (1 << 62) {
            candidate + win
        } else if candidate > expected + win / 2 && candidate >= win {
            candidate - win
        } else {
            candidate
        }
    }

    fn read_protected(&mut self, d: &[u8]) -> Decoded {
        if d.len() < PROT_HEADER + 16 {
            return Self::undecodable("PROT", d.len(), "short");
        }
        let phase = d[0] & 1;
        let rsid: [u8; 8] = d[1..9].try_into().expect("checked");
        let pn = self.decode_pn(u32::from_be_bytes(d[9..13].try_into().expect("checked")));
        let packet =
            Item::new("PROT").with("kp", phase).with("rsid", sid_field(&rsid)).with("pn", pn).with("len", d.len());
        let Some(rx) = self.rx.clone() else { return Decoded::packet(packet.with("open", "no_keys")) };
        let (ad, sealed) = d.split_at(PROT_HEADER);
        let opened = if phase == self.rx_phase {
            rx.open(pn, ad, sealed).or_else(|| self.rx_prev.as_ref().and_then(|k| k.open(pn, ad, sealed)))
        } else {
            let next = rx.next();
            match next.open(pn, ad, sealed) {
                Some(p) => {
                    self.rx_prev = Some(rx);
                    self.rx = Some(next);
                    self.rx_phase = phase;
                    if self.tx_phase != phase {
                        if let Some(t) = self.tx.clone() {
                            self.tx = Some(t.next());
                            self.tx_prev = Some(t);
                            self.tx_phase = phase;
                        }
                    }
                    Some(p)
                }
                None => self.rx_prev.as_ref().and_then(|k| k.open(pn, ad, sealed)),
            }
        };
        let Some(plain) = opened else { return Decoded::packet(packet.with("open", "failed")) };
        self.largest_rx = Some(self.largest_rx.map_or(pn, |l| l.max(pn)));
        match decode_frames_relayed(&plain) {
            Ok((frames, relayed)) => Decoded { packet, frames: Some(frames), relayed },
            Err(e) => Decoded::packet(packet.with("error", e.replace(' ', "_"))),
        }
    }
}

/// `exporter_secret = HKDF(salt = handshake_hash, ikm = c1 ‖ c2, info = "stt/1 exporter", L = 32)`.
fn exporter_secret(handshake_hash: &[u8], c1: &[u8; 32], c2: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(handshake_hash), &[c1.as_slice(), c2].concat())
        .expand(b"stt/1 exporter", &mut out)
        .expect("32 bytes is a valid HKDF length");
    out
}

/// What goes into a HELLO (§4.2).
#[derive(Clone, Debug)]
pub struct HelloInput {
    /// Version byte.
    pub version: u8,
    /// The initiator's session id.
    pub sid: [u8; 8],
    /// Wall clock in ms.
    pub timestamp_ms: u64,
    /// Offered AEAD ids in preference order.
    pub offered: Vec<u8>,
    /// Total datagram length.
    pub len: usize,
    /// Make the padding non-zero (an invalid HELLO).
    pub pad_nonzero: bool,
    /// Send this ephemeral public key instead of the real one (a low-order point, spec
    /// [HS-12]); message 1 is then written by [`crate::noise_msg1`], as snow will not.
    pub ephemeral_public: Option<[u8; 32]>,
}

/// Builds a HELLO with a zero MAC from fixed inputs: the initiator's Noise state and the bytes.
///
/// # Errors
/// A length too small for the payload, or a snow error.
pub fn build_hello(keys: &NodeKeys, ephemeral: &[u8; 32], h: &HelloInput) -> Result<(HandshakeState, Vec<u8>), String> {
    let len = h.len;
    if len < HELLO_HEADER + 48 + 9 + h.offered.len() + MAC {
        return Err(format!("HELLO len={len} is too small to build"));
    }
    let mut out = vec![0u8; len];
    out[0] = 0x01;
    out[1] = h.version;
    out[2..10].copy_from_slice(&h.sid);
    let prologue = [b"STT/1".as_slice(), &out[..HELLO_HEADER]].concat();
    let mut hs = snow::Builder::new(NOISE.parse().map_err(|_| "noise name")?)
        .local_private_key(&keys.static_private)
        .and_then(|b| b.psk(0, &keys.psk))
        .and_then(|b| b.prologue(&prologue))
        .map_err(|e| e.to_string())?
        .fixed_ephemeral_key_for_testing_only(ephemeral)
        .build_initiator()
        .map_err(|e| e.to_string())?;
    let mut plain = vec![0u8; len - HELLO_HEADER - 48 - MAC];
    plain[..8].copy_from_slice(&h.timestamp_ms.to_be_bytes());
    plain[8] = h.offered.len() as u8;
    plain[9..9 + h.offered.len()].copy_from_slice(&h.offered);
    if h.pad_nonzero {
        if let Some(last) = plain.last_mut() {
            *last = 1;
        }
    }
    hs.write_message(&plain, &mut out[HELLO_HEADER..len - MAC]).map_err(|e| e.to_string())?;
    if let Some(e_public) = &h.ephemeral_public {
        let prologue = [b"STT/1".as_slice(), &out[..HELLO_HEADER]].concat();
        let msg = crate::noise_msg1::message1(&keys.psk, &prologue, e_public, &plain);
        out[HELLO_HEADER..len - MAC].copy_from_slice(&msg);
    }
    Ok((hs, out))
}

fn with_default_params(it: &Item) -> Item {
    let mut p = it.clone();
    for (k, v) in [
        ("idle_timeout_ms", "30000"),
        ("max_udp_payload", "1200"),
        ("max_datagram_frame", "1150"),
        ("initial_max_data", "1048576"),
        ("initial_max_stream_data", "262144"),
        ("initial_max_streams_bidi", "100"),
        ("initial_max_streams_uni", "100"),
    ] {
        if p.get(k).is_none() {
            p.fields.push((k.into(), v.into()));
        }
    }
    p
}
