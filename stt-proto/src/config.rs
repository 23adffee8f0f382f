//! Node configuration: a validated builder (spec §9 lists the defaults).

use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

#[cfg(not(any(feature = "ring", feature = "aws-lc")))]
use crate::crypto::RustCrypto;
use crate::crypto::{AeadAlg, CryptoProvider};
use crate::identity::NodeId;

/// Every limit and timer of a node. Build with `Config::default()` and the
/// by-value setters; [`Node::new`](crate::Node::new) validates it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    pub(crate) provider: &'static dyn CryptoProvider,
    pub(crate) aeads: heapless::Vec<AeadAlg, 2>,
    pub(crate) max_udp_payload: usize,
    pub(crate) max_sessions: usize,
    pub(crate) max_half_open: usize,
    pub(crate) accept_incoming: bool,
    pub(crate) allow_list: Option<Vec<NodeId>>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) handshake_retransmit: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) keepalive_active: Option<Duration>,
    pub(crate) keepalive_idle: Option<Duration>,
    pub(crate) handshake_rate: u32,
    pub(crate) handshake_burst: u32,
    pub(crate) timestamp_window: Duration,
    pub(crate) cookie_lifetime: Duration,
    pub(crate) cookie_rate: u32,
    pub(crate) ephemeral_cache: usize,
    pub(crate) key_update_packets: u64,
    pub(crate) key_update_interval: Duration,
    pub(crate) rehandshake_interval: Option<Duration>,
    pub(crate) integrity_limit: Option<u64>,
    pub(crate) max_events: usize,
    pub(crate) max_session_events: usize,
    pub(crate) max_stream_ranges: usize,
    pub(crate) max_session_ranges: usize,
    pub(crate) rehandshake_min_interval: Duration,
    pub(crate) datagram_queue: usize,
    pub(crate) early_packets: usize,
    pub(crate) max_datagram_frame: usize,
    pub(crate) session_id_prefix: heapless::Vec<u8, 4>,
    pub(crate) stream_window: u64,
    pub(crate) session_window: u64,
    pub(crate) max_stream_window: u64,
    pub(crate) max_session_window: u64,
    pub(crate) max_streams_bidi: u64,
    pub(crate) max_streams_uni: u64,
    pub(crate) stream_send_buffer: u64,
    pub(crate) congestion: crate::recovery::CongestionAlgorithm,
    pub(crate) app_frame_types: [u8; 16],
    pub(crate) max_app_frame: u64,
    pub(crate) app_frame_queue: usize,
    pub(crate) relay: Option<crate::relay::RelayConfig>,
    pub(crate) keep_relay_path: bool,
}

/// `aws-lc-rs` when the `aws-lc` feature is on (the fastest AES-256-GCM measured), else
/// `ring` when the `ring` feature is on, else RustCrypto.
fn default_provider() -> &'static dyn CryptoProvider {
    #[cfg(feature = "aws-lc")]
    {
        &crate::crypto::AwsLc
    }
    #[cfg(all(feature = "ring", not(feature = "aws-lc")))]
    {
        &crate::crypto::Ring
    }
    #[cfg(not(any(feature = "ring", feature = "aws-lc")))]
    {
        &RustCrypto
    }
}

impl Default for Config {
    fn default() -> Self {
        let provider = default_provider();
        let mut aeads = heapless::Vec::new();
        for a in provider.preferred_aeads() {
            if provider.supports(a) {
                let _ = aeads.push(a);
            }
        }
        Self {
            provider,
            aeads,
            max_udp_payload: 1472,
            max_sessions: 1024,
            max_half_open: 256,
            accept_incoming: true,
            allow_list: None,
            handshake_timeout: Duration::from_secs(15),
            handshake_retransmit: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(30),
            keepalive_active: Some(Duration::from_secs(2)),
            keepalive_idle: Some(Duration::from_secs(10)),
            handshake_rate: 1000,
            handshake_burst: 200,
            timestamp_window: Duration::from_secs(60),
            cookie_lifetime: Duration::from_secs(120),
            cookie_rate: 1000,
            ephemeral_cache: 8192,
            key_update_packets: 1 << 22,
            key_update_interval: Duration::from_secs(3600),
            rehandshake_interval: Some(Duration::from_secs(600)),
            integrity_limit: None,
            max_events: 1024,
            max_session_events: 256,
            max_stream_ranges: 1024,
            max_session_ranges: 4096,
            rehandshake_min_interval: Duration::from_secs(30),
            datagram_queue: 256,
            early_packets: 16,
            max_datagram_frame: 1150,
            session_id_prefix: heapless::Vec::new(),
            stream_window: 256 * 1024,
            session_window: 1024 * 1024,
            max_stream_window: 16 * 1024 * 1024,
            max_session_window: 24 * 1024 * 1024,
            max_streams_bidi: 100,
            max_streams_uni: 100,
            stream_send_buffer: 4 * 1024 * 1024,
            congestion: crate::recovery::CongestionAlgorithm::default(),
            app_frame_types: [0; 16],
            max_app_frame: 65_000,
            app_frame_queue: 64,
            relay: None,
            keep_relay_path: false,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, v: $ty) -> Self {
            self.$name = v;
            self
        }
    };
}

impl Config {
    /// The application frame types (0x80–0xFF) this node accepts; fixed for the node's
    /// lifetime and announced in the handshake. Other values are ignored.
    #[must_use]
    pub fn app_frame_types(mut self, types: &[u8]) -> Self {
        self.app_frame_types = crate::stream::bitmap(types);
        self
    }

    /// Uses `provider` for packet protection (default: `AwsLc` with the `aws-lc` feature,
    /// else `Ring` with the `ring` feature, else `RustCrypto`).
    #[must_use]
    pub fn crypto_provider(mut self, provider: &'static dyn CryptoProvider) -> Self {
        self.provider = provider;
        let prefs = provider.preferred_aeads();
        let supported: heapless::Vec<AeadAlg, 2> = prefs.iter().copied().filter(|a| provider.supports(*a)).collect();
        self.aeads(&supported)
    }

    /// The AEADs this node offers (as initiator, in preference order) and accepts
    /// (as responder, in its own preference order). Default: the provider's
    /// [`preferred_aeads`](CryptoProvider::preferred_aeads) (with `ring` on a CPU with AES
    /// instructions, AES-256-GCM first; otherwise ChaCha20-Poly1305 first). Set it after
    /// [`crypto_provider`](Self::crypto_provider), which resets it.
    #[must_use]
    pub fn aeads(mut self, algs: &[AeadAlg]) -> Self {
        self.aeads.clear();
        for a in algs.iter().take(2) {
            if !self.aeads.contains(a) {
                let _ = self.aeads.push(*a);
            }
        }
        self
    }

    /// Serve as a relay for members that register (spec §12); `None` (the default) refuses
    /// registrations. Needs the `relay` feature (on by default): without it `validate`
    /// refuses `Some`.
    #[must_use]
    pub fn relay(mut self, relay: Option<crate::relay::RelayConfig>) -> Self {
        self.relay = relay;
        self
    }

    /// Never punch holes: sessions opened through a relay stay relayed (default false).
    #[must_use]
    pub fn keep_relay_path(mut self, keep: bool) -> Self {
        self.keep_relay_path = keep;
        self
    }

    /// Accept only these peers (checked after AUTH_PROOF, spec [HS-20]); `None` accepts any seed holder.
    #[must_use]
    pub fn allow_list(mut self, ids: Option<Vec<NodeId>>) -> Self {
        self.allow_list = ids;
        self
    }

    /// A fixed prefix (≤ 4 bytes) for every session id this node chooses, for load-balancer routing.
    #[must_use]
    pub fn session_id_prefix(mut self, prefix: &[u8]) -> Self {
        self.session_id_prefix.clear();
        for b in prefix.iter().take(5) {
            // A fifth byte makes validation fail with a clear message.
            if self.session_id_prefix.push(*b).is_err() {
                self.max_udp_payload = 0;
            }
        }
        self
    }

    /// The configured largest UDP payload (see [`max_udp_payload`](Self::max_udp_payload)):
    /// the buffer size `poll_output` needs.
    pub fn udp_payload_limit(&self) -> usize {
        self.max_udp_payload
    }

    /// Overrides the AEAD integrity limit (failed openings before close); for tests.
    #[must_use]
    pub fn integrity_limit(mut self, limit: u64) -> Self {
        self.integrity_limit = Some(limit);
        self
    }

    setter!(
        /// Largest UDP payload this node sends or accepts (1200..=65527, default 1472).
        /// Sessions start at 1200 bytes and path MTU discovery probes up to the smaller
        /// of both sides' values; 1200 disables probing (as does a build without the `pmtud`
        /// feature). `poll_output` needs a buffer this large.
        max_udp_payload: usize
    );
    setter!(
        /// Most sessions at once, in any state.
        max_sessions: usize
    );
    setter!(
        /// Most responder handshakes waiting for AUTH_PROOF.
        max_half_open: usize
    );
    setter!(
        /// Whether HELLOs from other nodes are answered at all.
        accept_incoming: bool
    );
    setter!(
        /// Time after which an unfinished handshake fails.
        handshake_timeout: Duration
    );
    setter!(
        /// First retransmission delay of HELLO / AUTH_PROOF; later ones wait twice as long.
        handshake_retransmit: Duration
    );
    setter!(
        /// Session closes when nothing authenticated arrived for this long (the smaller of both sides' values).
        idle_timeout: Duration
    );
    setter!(
        /// Keepalive interval while application data moved recently (`None` disables).
        keepalive_active: Option<Duration>
    );
    setter!(
        /// Keepalive interval while idle (`None` disables).
        keepalive_idle: Option<Duration>
    );
    setter!(
        /// Responder handshakes started per second before COOKIE is required.
        handshake_rate: u32
    );
    setter!(
        /// Burst allowance of the handshake token bucket.
        handshake_burst: u32
    );
    setter!(
        /// Largest accepted distance between a HELLO's timestamp and local wall time.
        timestamp_window: Duration
    );
    setter!(
        /// Lifetime of a cookie secret (cookies from the previous secret are also accepted).
        cookie_lifetime: Duration
    );
    setter!(
        /// COOKIE replies per second, across all destinations.
        cookie_rate: u32
    );
    setter!(
        /// Capacity of the seen-ephemeral cache (replay protection); when full, new handshakes are refused.
        ephemeral_cache: usize
    );
    setter!(
        /// Packets sealed under one key phase before a key update is started.
        key_update_packets: u64
    );
    setter!(
        /// Age of a key phase after which a key update is started.
        key_update_interval: Duration
    );
    setter!(
        /// Interval of the in-session re-handshake (fresh DH, post-compromise security); `None`
        /// disables. A build without the `rehandshake` feature never runs one.
        rehandshake_interval: Option<Duration>
    );
    setter!(
        /// Capacity of the node's event queue (spec [LC-10]). While it is full, HELLOs and
        /// handshake packets are refused, and so are packets of sessions that already have
        /// events waiting; a session with none still gets one packet through.
        max_events: usize
    );
    setter!(
        /// Events one session may have waiting in the node's queue (spec [LC-10]); while it
        /// has this many, that session's packets are refused (`DropReason::EventQueueFull`)
        /// and the peer retransmits. Other sessions are unaffected. One packet can add at
        /// most one event per frame plus one per stream it opens on top of this.
        max_session_events: usize
    );
    setter!(
        /// Disjoint out-of-order ranges a stream may hold for reassembly (spec [ST-7]);
        /// a peer that makes more closes the session with `PROTOCOL_VIOLATION`.
        max_stream_ranges: usize
    );
    setter!(
        /// Disjoint out-of-order ranges all streams of a session may hold together
        /// (spec [ST-7]); past it the session closes with `PROTOCOL_VIOLATION`.
        max_session_ranges: usize
    );
    setter!(
        /// Shortest time between two re-handshakes this node answers as the session
        /// responder (spec [RL-11]); earlier requests are ignored without any DH, so a
        /// peer costs at most 2 X25519 per interval. The first is always answered.
        rehandshake_min_interval: Duration
    );
    setter!(
        /// Datagrams queued per session and direction.
        datagram_queue: usize
    );
    setter!(
        /// Protected packets this node holds, in all, for half-open sessions whose
        /// AUTH_PROOF they overtook (spec [HS-22]); when full, the oldest is dropped. Each
        /// costs up to `max_udp_payload` bytes while held. Default 16; 0 drops them (the
        /// initiator's loss recovery resends them).
        early_packets: usize
    );
    setter!(
        /// Largest DATAGRAM payload this node accepts.
        max_datagram_frame: usize
    );
    setter!(
        /// Initial receive window per stream (auto-tuned up to `max_stream_window`).
        stream_window: u64
    );
    setter!(
        /// Initial receive window per session (auto-tuned up to `max_session_window`).
        session_window: u64
    );
    setter!(
        /// Largest receive window per stream.
        max_stream_window: u64
    );
    setter!(
        /// Largest receive window per session.
        max_session_window: u64
    );
    setter!(
        /// Bidirectional streams the peer may have open at once.
        max_streams_bidi: u64
    );
    setter!(
        /// Unidirectional streams the peer may have open at once.
        max_streams_uni: u64
    );
    setter!(
        /// Bytes buffered per stream (written, not yet acknowledged); writes beyond block.
        /// Of these, at most two congestion windows (at least 32 KiB, at most 256 KiB) may be
        /// waiting to be sent for the first time: writes stop there too and
        /// `StreamWritable` follows once half of it went out. A session on a slow or
        /// crowded path so holds little more than its path carries.
        stream_send_buffer: u64
    );
    setter!(
        /// Largest application frame body accepted (default and maximum 65000 bytes).
        max_app_frame: u64
    );
    setter!(
        /// Received application frames held for the application; beyond this the frame
        /// stream stops being read (flow control pushes back on the sender).
        app_frame_queue: usize
    );
    setter!(
        /// Congestion controller (default CUBIC; NewReno in a build without the `cubic`
        /// feature, which refuses CUBIC).
        congestion: crate::recovery::CongestionAlgorithm
    );

    /// Checks every value; `Node::new` calls it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &'static str, reason: &'static str| Err(ConfigError { field, reason });
        if !(1200..=65527).contains(&self.max_udp_payload) {
            return err("max_udp_payload", "must be within 1200..=65527 (and the session id prefix at most 4 bytes)");
        }
        if self.aeads.is_empty() {
            return err("aeads", "at least one AEAD must be enabled");
        }
        if self.aeads.iter().any(|a| !self.provider.supports(*a)) {
            return err("aeads", "names an AEAD the crypto provider does not support in this build");
        }
        if self.max_sessions == 0 {
            return err("max_sessions", "must be at least 1");
        }
        if self.handshake_timeout.is_zero() || self.handshake_retransmit.is_zero() {
            return err("handshake_timeout", "handshake timers must be non-zero");
        }
        if self.handshake_retransmit >= self.handshake_timeout {
            return err("handshake_retransmit", "must be shorter than handshake_timeout");
        }
        if self.idle_timeout.is_zero() {
            return err("idle_timeout", "must be non-zero");
        }
        for k in [self.keepalive_active, self.keepalive_idle].into_iter().flatten() {
            if k.is_zero() || k >= self.idle_timeout {
                return err("keepalive", "keepalive intervals must be non-zero and shorter than idle_timeout");
            }
        }
        if self.handshake_rate == 0 || self.handshake_burst == 0 || self.cookie_rate == 0 {
            return err("handshake_rate", "rates and burst must be at least 1");
        }
        if self.cookie_lifetime.is_zero() {
            return err("cookie_lifetime", "must be non-zero");
        }
        if self.ephemeral_cache == 0 {
            return err("ephemeral_cache", "must be at least 1");
        }
        if self.key_update_packets == 0 || self.key_update_interval.is_zero() {
            return err("key_update_packets", "key update triggers must be non-zero");
        }
        if self.rehandshake_interval.is_some_and(|i| i.is_zero()) {
            return err("rehandshake_interval", "must be non-zero (or None)");
        }
        if self.max_events < 16 {
            return err("max_events", "must be at least 16");
        }
        if self.max_session_events == 0 || self.max_session_events > self.max_events {
            return err("max_session_events", "must be within 1..=max_events");
        }
        if self.max_stream_ranges < 2 || self.max_session_ranges < self.max_stream_ranges {
            return err("max_stream_ranges", "must be at least 2, and max_session_ranges at least max_stream_ranges");
        }
        if self.stream_window == 0 || self.session_window == 0 || self.stream_send_buffer == 0 {
            return err("stream_window", "flow-control windows and the send buffer must be non-zero");
        }
        if self.stream_window > self.max_stream_window || self.session_window > self.max_session_window {
            return err("max_stream_window", "maximum windows must be at least the initial windows");
        }
        if self.max_app_frame > 65_000 || self.app_frame_queue == 0 {
            return err("max_app_frame", "application frames are at most 65000 bytes and the queue holds at least one");
        }
        if self.max_datagram_frame > self.max_udp_payload {
            return err("max_datagram_frame", "must not exceed max_udp_payload");
        }
        if !cfg!(feature = "relay") && self.relay.is_some() {
            return err("relay", "relaying is not in this build (feature `relay`)");
        }
        if !cfg!(feature = "cubic") && self.congestion == crate::recovery::CongestionAlgorithm::Cubic {
            return err("congestion", "CUBIC is not in this build (feature `cubic`)");
        }
        Ok(())
    }
}

/// A configuration value out of range.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is required of it.
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config `{}`: {}", self.field, self.reason)
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// RustCrypto restricted to ChaCha20-Poly1305, as a build without `aes-gcm` is.
    #[derive(Debug)]
    struct ChaChaOnly;

    impl CryptoProvider for ChaChaOnly {
        fn name(&self) -> &'static str {
            "chacha-only"
        }
        fn packet_key(&self, alg: AeadAlg, key: &[u8; 32]) -> alloc::boxed::Box<dyn crate::crypto::PacketKey> {
            crate::crypto::RustCrypto.packet_key(alg, key)
        }
        fn supports(&self, alg: AeadAlg) -> bool {
            alg == AeadAlg::ChaCha20Poly1305
        }
    }

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let e = Config::default().max_udp_payload(1000).validate().unwrap_err();
        assert_eq!(e.field, "max_udp_payload");
        let e = Config::default().keepalive_idle(Some(Duration::from_secs(60))).validate().unwrap_err();
        assert_eq!(e.field, "keepalive");
        assert!(alloc::format!("{e}").contains("shorter than idle_timeout"));
        assert_eq!(Config::default().aeads(&[]).validate().unwrap_err().field, "aeads");
        // A provider (or build) without AES-256-GCM: the default leaves it out, naming it is refused.
        let cfg = Config::default().crypto_provider(&ChaChaOnly);
        assert_eq!(&cfg.aeads[..], &[AeadAlg::ChaCha20Poly1305]);
        assert_eq!(cfg.validate(), Ok(()));
        let e = cfg.aeads(&[AeadAlg::Aes256Gcm, AeadAlg::ChaCha20Poly1305]).validate().unwrap_err();
        assert_eq!(e.field, "aeads");
        assert!(Config::default().session_id_prefix(&[1, 2, 3, 4, 5]).validate().is_err());
        assert!(Config::default().session_id_prefix(&[1, 2, 3, 4]).validate().is_ok());
    }
}
