//! Errors of app commands, close reasons and drop reasons.

use core::fmt;

/// Transport close codes carried in SESSION_CLOSE with kind "transport" (spec §8.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TransportCode {
    /// 0x00: graceful close without error.
    NoError,
    /// 0x01: the peer broke a protocol rule.
    ProtocolViolation,
    /// 0x02: the responder's accept policy refused the initiator's node id.
    NotAllowed,
    /// 0x03: an internal error.
    Internal,
    /// 0x04: another session with the same peer was kept instead.
    Superseded,
    /// 0x05: an AEAD usage limit was reached.
    AeadLimit,
    /// 0x06: a frame could not be decoded.
    FrameEncoding,
    /// Any other value.
    Unknown(u64),
}

impl TransportCode {
    /// The wire value.
    pub fn to_u64(self) -> u64 {
        match self {
            TransportCode::NoError => 0,
            TransportCode::ProtocolViolation => 1,
            TransportCode::NotAllowed => 2,
            TransportCode::Internal => 3,
            TransportCode::Superseded => 4,
            TransportCode::AeadLimit => 5,
            TransportCode::FrameEncoding => 6,
            TransportCode::Unknown(v) => v,
        }
    }

    /// The code for a wire value.
    pub fn from_u64(v: u64) -> Self {
        match v {
            0 => TransportCode::NoError,
            1 => TransportCode::ProtocolViolation,
            2 => TransportCode::NotAllowed,
            3 => TransportCode::Internal,
            4 => TransportCode::Superseded,
            5 => TransportCode::AeadLimit,
            6 => TransportCode::FrameEncoding,
            v => TransportCode::Unknown(v),
        }
    }
}

/// Why a session ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The local application closed it with this code.
    Local(u64),
    /// The peer's application closed it with this code.
    Remote(u64),
    /// The local node closed it with a transport code.
    LocalTransport(TransportCode),
    /// The peer closed it with a transport code.
    RemoteTransport(TransportCode),
    /// Nothing authenticated arrived for the idle timeout (or, for a session this node
    /// initiated and reported established on sending AUTH_PROOF, nothing from the responder
    /// before the handshake timeout, spec [HS-22]).
    IdleTimeout,
    /// The whole node was shut down.
    NodeClosed,
    /// The session ran through a relay and this node's session with that relay ended, with
    /// no direct path to fall back on (spec [RY-7]).
    RelayLost,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local(c) => write!(f, "closed locally with application code {c}"),
            CloseReason::Remote(c) => write!(f, "closed by peer with application code {c}"),
            CloseReason::LocalTransport(c) => write!(f, "closed locally: {c:?}"),
            CloseReason::RemoteTransport(c) => write!(f, "closed by peer: {c:?}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::NodeClosed => f.write_str("node shut down"),
            CloseReason::RelayLost => f.write_str("the relay it ran through went away (no direct path)"),
        }
    }
}

/// Why a handshake this node initiated failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// No CHALLENGE (or, where the initiator waits for it, FINAL) arrived within the
    /// handshake timeout.
    Timeout,
    /// The responder's node id differs from the one `connect` expected.
    PeerMismatch,
    /// The responder chose an AEAD that was not offered (downgrade attempt).
    AeadNotOffered,
    /// The responder refused with a transport close code (e.g. not on its allow-list).
    Refused(TransportCode),
    /// Another session with the same peer was kept (simultaneous open).
    Superseded,
    /// The responder's handshake payload was malformed.
    Malformed,
    /// The node was shut down.
    NodeClosed,
    /// The handshake ran through a relay, and this node's session with the relay ended
    /// (spec [RY-7]).
    RelayLost,
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeFailure::Timeout => f.write_str("handshake timed out"),
            HandshakeFailure::PeerMismatch => f.write_str("peer's node id is not the expected one"),
            HandshakeFailure::AeadNotOffered => f.write_str("peer chose an AEAD that was not offered"),
            HandshakeFailure::Refused(c) => write!(f, "peer refused the session: {c:?}"),
            HandshakeFailure::Superseded => f.write_str("superseded by a simultaneous session with the same peer"),
            HandshakeFailure::Malformed => f.write_str("peer sent a malformed handshake payload"),
            HandshakeFailure::NodeClosed => f.write_str("node shut down"),
            HandshakeFailure::RelayLost => f.write_str("the relay session it ran through ended"),
        }
    }
}

/// Why a datagram from the network was dropped. Each has a counter in `NodeStats`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum DropReason {
    /// Too short, too long or undecodable.
    Malformed,
    /// An unsupported protocol version.
    BadVersion,
    /// No session has this session id.
    UnknownSession,
    /// Authentication failed (wrong seed, forged or corrupted).
    AuthFailed,
    /// A packet number or handshake message seen before.
    Replay,
    /// The handshake rate or COOKIE rate limit was exceeded.
    RateLimited,
    /// The HELLO was answered with a COOKIE instead of a CHALLENGE.
    CookieSent,
    /// A cookie MAC that does not verify.
    BadCookie,
    /// This node does not accept new sessions now (config, session or cache limits).
    NotAccepting,
    /// No AEAD in common with the initiator.
    NoCommonAead,
    /// The message does not fit the session's current state.
    UnexpectedState,
    /// The event queue is full; the application must drain events.
    EventQueueFull,
    /// An AUTH_PROOF authenticated a peer that is not on the allow-list: its session was
    /// refused with SESSION_CLOSE `NOT_ALLOWED` (spec [HS-20]).
    NotAllowed,
}

impl DropReason {
    /// Number of reasons (size of the counter table).
    pub const COUNT: usize = 13;

    /// Index into the counter table.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Why `connect` could not start a handshake.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// `max_sessions` sessions exist already.
    TooManySessions,
    /// The node was shut down.
    NodeClosed,
    /// `connect_via_relay` named a session that is not a registered relay session.
    NoRelay,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::TooManySessions => f.write_str("session limit reached (config max_sessions)"),
            ConnectError::NodeClosed => f.write_str("node is shut down"),
            ConnectError::NoRelay => f.write_str(
                "not a relay session this node is registered with (register_relay, then wait for RelayStatus)",
            ),
        }
    }
}

impl core::error::Error for ConnectError {}

/// Why a datagram could not be queued.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum DatagramError {
    /// Larger than the peer accepts or than fits one packet; `max` is the current maximum.
    TooLarge {
        /// Largest payload accepted now.
        max: usize,
    },
    /// The send queue is full (policy `Reject`).
    Blocked,
    /// The peer does not accept datagrams.
    Disabled,
    /// The session is not established (or already closing).
    NotEstablished,
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatagramError::TooLarge { max } => write!(f, "datagram too large: the current maximum is {max} bytes"),
            DatagramError::Blocked => f.write_str("datagram send queue is full"),
            DatagramError::Disabled => f.write_str("peer does not accept datagrams"),
            DatagramError::NotEstablished => f.write_str("session is not established"),
        }
    }
}

impl core::error::Error for DatagramError {}

/// Why keying material could not be exported.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ExportError {
    /// The handshake has not produced keys yet.
    NotEstablished,
    /// More than 255·32 bytes were asked for, or a label over 255 bytes.
    TooLong,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::NotEstablished => f.write_str("session has no keys yet"),
            ExportError::TooLong => f.write_str("at most 8160 bytes (and labels of 255 bytes) can be exported"),
        }
    }
}

impl core::error::Error for ExportError {}
