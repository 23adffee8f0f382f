//! Counters: the core reports through these instead of logging.

use core::time::Duration;

use crate::error::DropReason;

/// Node-wide counters.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct NodeStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams emitted.
    pub datagrams_out: u64,
    /// Bytes emitted.
    pub bytes_out: u64,
    /// X25519 scalar multiplications performed (key generation and agreement).
    pub x25519_ops: u64,
    /// Handshakes this node completed, as either role.
    pub handshakes_completed: u64,
    /// Responder handshakes started (CHALLENGE built).
    pub handshakes_started: u64,
    /// Responder handshakes that expired after CHALLENGE without an AUTH_PROOF: the
    /// initiator went away, or it expected another node id and aborted without a word
    /// (spec [HS-17]).
    pub handshakes_abandoned: u64,
    /// Stored CHALLENGEs re-sent for retransmitted HELLOs.
    pub challenges_resent: u64,
    /// FINALs re-sent for retransmitted AUTH_PROOFs.
    pub finals_resent: u64,
    /// COOKIE replies sent.
    pub cookies_sent: u64,
    /// Inputs whose time was earlier than a previous input's.
    pub time_went_backwards: u64,
    /// Dropped datagrams, indexed by [`DropReason::index`].
    pub dropped: [u64; DropReason::COUNT],
    /// Sessions the node called into from `poll_output` and `Input::Timeout`: work that
    /// grows with active sessions, never with idle ones (spec [ND-1]).
    pub sessions_visited: u64,
    /// Times a session stayed due right after its timeout with nothing to send, and its
    /// next visit was deferred by a millisecond so the driver does not spin. Zero unless a
    /// session's timers and output disagree (a bug).
    pub stalled_deadlines: u64,
    /// Relay: datagrams forwarded between members, and their bytes.
    pub relay_forwarded: u64,
    /// Relay: bytes forwarded between members.
    pub relay_forwarded_bytes: u64,
    /// Relay: datagrams dropped (sender unregistered or over its rate, destination
    /// unknown, or its queue full).
    pub relay_dropped: u64,
    /// Relay: registrations refused.
    pub relay_refused: u64,
    /// Member: datagrams for a relayed path that could not be handed to the relay session
    /// (gone, not registered, queue full or too large).
    pub relay_send_dropped: u64,
    /// Hole punching: probes sent.
    pub punch_probes: u64,
    /// Hole punching: sessions that moved from a relay onto a direct path.
    pub punch_direct: u64,
    /// Sessions that fell back from a dead direct path to their relay.
    pub relay_fallbacks: u64,
}

impl NodeStats {
    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Datagrams dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Per-session counters.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SessionStats {
    /// Authenticated packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Bytes received (whole datagrams).
    pub bytes_in: u64,
    /// Bytes sent (whole datagrams).
    pub bytes_out: u64,
    /// Packets that failed authentication.
    pub auth_failures: u64,
    /// Packets refused by the replay window.
    pub replays: u64,
    /// Key updates completed (either side started).
    pub key_updates: u64,
    /// In-session re-handshakes completed.
    pub rehandshakes: u64,
    /// Datagrams dropped because a queue was full.
    pub datagrams_dropped: u64,
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Packets declared lost.
    pub lost: u64,
    /// Congestion window in bytes.
    pub cwnd: u64,
    /// Bytes in flight.
    pub bytes_in_flight: u64,
    /// Current maximum datagram size of the path.
    pub mtu: u64,
    /// Streams open now.
    pub streams: u64,
    /// Disjoint ranges of out-of-order stream data held for reassembly now, across all
    /// streams (capped by `Config::max_session_ranges`, spec [ST-7]).
    pub recv_ranges: u64,
    /// Reassembly work so far: one per received stream frame plus one per held range it
    /// had to examine. Grows linearly with the frames received (spec [ST-7]).
    pub reassembly_steps: u64,
    /// Packets declared lost that were acknowledged after all (reordering, spec [LR-1]).
    pub spurious_losses: u64,
    /// Packets sent that carried nothing to acknowledge (ACK-only and the like).
    pub non_eliciting_packets: u64,
}

/// The counters a session keeps itself; [`SessionStats`]' other figures are read from the
/// session's state when asked (so an idle session does not store them).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SessionCounters {
    pub(crate) packets_in: u64,
    pub(crate) packets_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) auth_failures: u64,
    pub(crate) replays: u64,
    pub(crate) non_eliciting_packets: u64,
}

impl SessionCounters {
    /// The counters as [`SessionStats`], the other figures zero.
    pub(crate) fn to_stats(self) -> SessionStats {
        SessionStats {
            packets_in: self.packets_in,
            packets_out: self.packets_out,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            auth_failures: self.auth_failures,
            replays: self.replays,
            non_eliciting_packets: self.non_eliciting_packets,
            ..SessionStats::default()
        }
    }
}
