//! The established session's data path (spec §7): received packets → ACK tracking →
//! frames → streams, datagrams and flow control; and the other way, packet assembly
//! under congestion control and pacing, with loss recovery.

use alloc::boxed::Box;
use core::time::Duration;

use crate::config::Config;
use crate::datagram::DatagramQueue;
use crate::error::TransportCode;
use crate::event::{Event, EventQueue, SessionId};
use crate::gate::{Gated, PMTUD};
use crate::pmtud::Pmtud;
use crate::recovery::ack::AckTracker;
use crate::recovery::cc::CongestionControl;
use crate::recovery::loss::{Frames, LossDetector, RecoverySink, SentFrame, SentPacket, MAX_SENT_FRAMES};
use crate::recovery::pacer::Pacer;
use crate::recovery::rtt::RttEstimator;
use crate::stream::{PeerLimits, StreamId, StreamLimits, StreamViolation, Streams};
use crate::time::Instant;
use crate::wire::codec::Writer;
use crate::wire::frame::{AckFrame, Frame};

/// Frames logged for one packet being built.
pub(crate) type FrameLog = heapless::Vec<SentFrame, MAX_SENT_FRAMES>;

/// Everything an established session needs to move data.
pub(crate) struct Transport {
    session: SessionId,
    pub(crate) loss: LossDetector,
    pub(crate) acks: AckTracker,
    pub(crate) cc: Box<dyn CongestionControl>,
    pacer: Pacer,
    pacing_until: Option<Instant>,
    /// The session's streams (and application frames), created when first used: a
    /// session that never carries one holds none of their state (≈ 480 bytes).
    streams: Option<Box<Streams>>,
    /// What creating them takes besides the node's config.
    peer_limits: PeerLimits,
    responder: bool,
    pub(crate) dgram_send: DatagramQueue,
    pub(crate) dgram_recv: DatagramQueue,
    /// RELAY_DATA to send: entries are `node id (32) ‖ datagram` (spec §12).
    pub(crate) relay_out: DatagramQueue,
    /// RELAY_DATA received, for the node to forward or unwrap after the packet.
    pub(crate) relay_in: DatagramQueue,
    /// A packet carrying relay or punching control was lost.
    pub(crate) control_lost: bool,
    /// The current maximum datagram size on the path.
    pub(crate) mtu: u64,
    /// PTO probes still owed.
    probes: u8,
    /// FINAL must be (re)sent.
    pub(crate) send_final: bool,
    pmtud: Gated<Pmtud, PMTUD>,
}

struct Sink<'a> {
    streams: Option<&'a mut Streams>,
    cc: &'a mut dyn CongestionControl,
    pmtud: Option<&'a mut Pmtud>,
    mtu: &'a mut u64,
    rtt: RttEstimator,
    events: &'a mut EventQueue,
    send_final: &'a mut bool,
    control_lost: &'a mut bool,
    app_limited: bool,
}

impl RecoverySink for Sink<'_> {
    fn acked(&mut self, now: Instant, p: &SentPacket, frames: Frames<'_>) {
        if p.mtu_probe {
            if let Some(grown) = self.pmtud.as_mut().and_then(|d| d.on_probe_acked(u64::from(p.size), now)) {
                *self.mtu = grown;
                self.cc.on_mtu_change(grown);
            }
        }
        if let Some(s) = self.streams.as_deref_mut() {
            for f in frames {
                s.on_frame_acked(f, self.events);
            }
        }
        if p.ack_eliciting && !p.mtu_probe {
            self.cc.on_ack(now, p.time, u64::from(p.size), &self.rtt, self.app_limited);
        }
    }

    fn lost(&mut self, p: &SentPacket, frames: Frames<'_>) {
        if p.mtu_probe {
            if let Some(d) = self.pmtud.as_mut() {
                d.on_probe_lost(u64::from(p.size), p.time);
            }
        }
        for f in frames {
            if *f == SentFrame::Final {
                *self.send_final = true;
            }
            if *f == SentFrame::Control {
                *self.control_lost = true;
            }
            if let Some(s) = self.streams.as_deref_mut() {
                s.on_frame_lost(f);
            }
        }
    }

    fn acked_late(&mut self, frame: &SentFrame) {
        if let Some(s) = self.streams.as_deref_mut() {
            s.on_frame_acked(frame, self.events);
        }
    }

    fn congestion(&mut self, now: Instant, sent: Instant, persistent: bool) -> bool {
        self.cc.on_congestion_event(now, sent, persistent)
    }

    fn spurious(&mut self) {
        self.cc.on_spurious_congestion();
    }
}

/// A session's streams, made when first used.
#[cold]
#[inline(never)]
fn new_streams(session: SessionId, responder: bool, peer: &PeerLimits, config: &Config, now: Instant) -> Box<Streams> {
    Box::new(Streams::new(session, responder, StreamLimits::new(config), *peer, now))
}

impl Transport {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        session: SessionId,
        rtt: RttEstimator,
        first_pn: u64,
        cc: Box<dyn CongestionControl>,
        responder: bool,
        peer_limits: PeerLimits,
        datagram_queue: usize,
        mtu: u64,
        mtu_ceiling: u64,
        now: Instant,
    ) -> Self {
        Self {
            session,
            loss: LossDetector::new(rtt, first_pn),
            acks: AckTracker::default(),
            cc,
            pacer: Pacer::new(now),
            pacing_until: None,
            streams: None,
            peer_limits,
            responder,
            dgram_send: DatagramQueue::new(datagram_queue, datagram_queue * 1500),
            dgram_recv: DatagramQueue::new(datagram_queue, datagram_queue * 1500),
            relay_out: DatagramQueue::new(datagram_queue, datagram_queue * 1500),
            relay_in: DatagramQueue::new(64, 64 * 1500),
            control_lost: false,
            mtu,
            probes: 0,
            send_final: false,
            pmtud: Gated::new((mtu_ceiling > mtu).then(|| Pmtud::new(mtu, mtu_ceiling, now))),
        }
    }

    pub(crate) fn rtt(&self) -> &RttEstimator {
        &self.loss.rtt
    }

    /// The earliest of the ACK, loss / PTO, pacing and probe timers. With `can_send`
    /// false (an unvalidated path out of budget) only the loss timer counts; with
    /// `validated` false (a path not validated yet) no MTU probe is due.
    pub(crate) fn deadline(&self, can_send: bool, validated: bool) -> Option<Instant> {
        if !can_send {
            return self.loss.deadline();
        }
        let probe = self.pmtud.as_ref().filter(|_| validated).and_then(Pmtud::deadline);
        [self.acks.deadline(), self.loss.deadline(), self.pacing_until, probe].into_iter().flatten().min()
    }

    /// The streams, if any was used yet.
    pub(crate) fn streams(&self) -> Option<&Streams> {
        self.streams.as_deref()
    }

    /// The streams, if any was used yet (for what an unused set would do nothing with).
    pub(crate) fn streams_mut(&mut self) -> Option<&mut Streams> {
        self.streams.as_deref_mut()
    }

    /// The streams for an application write: their unsent allowance follows the congestion
    /// window first (`Streams::follow_window`).
    pub(crate) fn streams_for_write(&mut self) -> Option<&mut Streams> {
        let cwnd = self.cc.window();
        let s = self.streams.as_deref_mut()?;
        s.follow_window(cwnd);
        Some(s)
    }

    /// The streams, created now if none was used yet.
    #[inline]
    pub(crate) fn streams_or_new(&mut self, config: &Config, now: Instant) -> &mut Streams {
        self.streams.get_or_insert_with(|| new_streams(self.session, self.responder, &self.peer_limits, config, now))
    }

    fn has_app_data(&self) -> bool {
        self.streams.as_ref().is_some_and(|s| s.has_pending())
            || !self.dgram_send.is_empty()
            || !self.relay_out.is_empty()
    }

    fn congestion_allows(&self) -> bool {
        self.probes > 0 || self.loss.bytes_against_window(self.cc.window()) + self.mtu <= self.cc.window()
    }

    /// Whether a packet should be built now (`validated`: MTU probes may go, spec [PM-2]).
    pub(crate) fn wants_to_send(&self, now: Instant, validated: bool) -> bool {
        if self.acks.deadline().is_some_and(|d| d <= now)
            || self.probes > 0
            || (validated && self.mtu_probe_due(now).is_some())
            || !self.relay_out.is_empty()
        {
            return true;
        }
        let paced = self.pacing_until.is_some_and(|t| t > now);
        !paced && self.congestion_allows() && (self.has_app_data() || self.send_final)
    }

    /// Runs `f` on the loss detector with a sink over the rest of the transport.
    fn with_sink<R>(
        &mut self,
        events: &mut EventQueue,
        app_limited: bool,
        f: impl FnOnce(&mut LossDetector, &mut Sink<'_>) -> R,
    ) -> R {
        let rtt = self.loss.rtt;
        let mut sink = Sink {
            streams: self.streams.as_deref_mut(),
            cc: &mut *self.cc,
            pmtud: self.pmtud.as_mut(),
            mtu: &mut self.mtu,
            rtt,
            events,
            send_final: &mut self.send_final,
            control_lost: &mut self.control_lost,
            app_limited,
        };
        f(&mut self.loss, &mut sink)
    }

    /// Fires the loss-detection timer.
    pub(crate) fn on_timeout(&mut self, now: Instant, events: &mut EventQueue) {
        if self.pacing_until.is_some_and(|t| t <= now) {
            self.pacing_until = None;
        }
        if self.loss.deadline().is_none_or(|d| d > now) {
            return;
        }
        if self.with_sink(events, false, |loss, sink| loss.on_timeout(now, sink)) {
            // PTO: re-send what the oldest packet in flight carried, in up to two probes.
            self.probes = 2;
            if let Some((_, frames)) = self.loss.oldest_unacked() {
                for f in frames {
                    if *f == SentFrame::Final {
                        self.send_final = true;
                    }
                    if *f == SentFrame::Control {
                        self.control_lost = true;
                    }
                    if let Some(s) = self.streams.as_deref_mut() {
                        s.on_frame_lost(f);
                    }
                }
            }
        }
    }

    /// Records an authenticated packet for acknowledgement.
    pub(crate) fn on_packet_received(&mut self, now: Instant, pn: u64, ack_eliciting: bool) {
        self.acks.on_packet(now, pn, ack_eliciting);
    }

    /// Applies one frame from the peer.
    pub(crate) fn handle_frame(
        &mut self,
        now: Instant,
        frame: &Frame<'_>,
        config: &Config,
        events: &mut EventQueue,
    ) -> Result<(), TransportCode> {
        let v = |e: StreamViolation| match e {
            StreamViolation::ConflictingData
            | StreamViolation::FinalSize
            | StreamViolation::FlowControl
            | StreamViolation::UndeclaredAppFrame
            | StreamViolation::TooManyRanges => TransportCode::ProtocolViolation,
        };
        match *frame {
            Frame::Ack(ref ack) => self.on_ack(now, ack, events)?,
            Frame::Stream { id, offset, data, fin } => {
                let srtt = self.loss.rtt.smoothed();
                let streams = self.streams_or_new(config, now);
                streams.on_stream_frame(now, srtt, StreamId(id), offset, data, fin, events).map_err(v)?
            }
            Frame::StreamClose { id, code, final_size } => self
                .streams_or_new(config, now)
                .on_stream_close(now, StreamId(id), code, final_size, events)
                .map_err(v)?,
            Frame::StopSending { id, code } => {
                self.streams_or_new(config, now).on_stop_sending(now, StreamId(id), code, events).map_err(v)?
            }
            Frame::MaxData(max) => self.streams_or_new(config, now).on_max_data(max),
            Frame::MaxStreamData { id, max } => self.streams_or_new(config, now).on_max_stream_data(StreamId(id), max),
            Frame::MaxStreams { uni, count } => self.streams_or_new(config, now).on_max_streams(uni, count, events),
            Frame::Datagram(d) => {
                if d.len() > config.max_datagram_frame {
                    return Err(TransportCode::ProtocolViolation);
                }
                let was_empty = self.dgram_recv.is_empty();
                // Overflow rule: drop the oldest (counted).
                self.dgram_recv.push(d, true);
                if was_empty {
                    events.push_back(Event::DatagramReadable { session: self.session });
                }
            }
            Frame::DataBlocked(_) | Frame::StreamDataBlocked { .. } | Frame::StreamsBlocked { .. } => {}
            _ => {}
        }
        Ok(())
    }

    fn on_ack(&mut self, now: Instant, ack: &AckFrame<'_>, events: &mut EventQueue) -> Result<(), TransportCode> {
        let app_limited = !self.has_app_data() && self.loss.bytes_in_flight() + 2 * self.mtu < self.cc.window();
        self.with_sink(events, app_limited, |loss, sink| loss.on_ack(now, ack, sink))
            .map_err(|_| TransportCode::ProtocolViolation)?;
        if self.loss.pto_count() == 0 {
            self.probes = 0;
        }
        Ok(())
    }

    /// Writes this transport's frames into a packet being built. Returns whether the
    /// packet is ack-eliciting. `keepalive` asks for an ack-eliciting packet regardless.
    pub(crate) fn write_frames(
        &mut self,
        now: Instant,
        w: &mut Writer<'_>,
        log: &mut FrameLog,
        keepalive: bool,
        events: &mut EventQueue,
    ) -> bool {
        let mut eliciting = false;
        // An ACK that is due goes now, and so does one early in the session or soon after
        // a gap (`eager`). One that is not yet due (spec [RC-1]) only rides in a packet that
        // carries something else: it is taken back below if nothing follows, and the ACK
        // timer sends it when due.
        let packet_start = w.len();
        let mut optional_ack = None;
        if let Some((ranges, delay)) = self.acks.ack(now) {
            let due = self.acks.deadline().is_some_and(|d| d <= now);
            if (due || self.acks.has_unacked()) && AckFrame::encode(ranges, delay, w).is_some() {
                if due || self.acks.eager() {
                    self.acks.on_ack_sent();
                } else {
                    optional_ack = Some(w.len());
                }
            }
        }
        if self.send_final && log.len() < MAX_SENT_FRAMES && Frame::Final.encode(w).is_some() {
            self.send_final = false;
            let _ = log.push(SentFrame::Final);
            eliciting = true;
        }
        let paced = self.pacing_until.is_some_and(|t| t > now);
        if self.congestion_allows() && (!paced || self.probes > 0) {
            let before = log.len();
            if let Some(s) = self.streams.as_deref_mut() {
                s.write_frames(w, log, events);
            }
            eliciting |= log.len() > before;
            while let Some(len) = self.dgram_send.front_len() {
                if 1 + crate::wire::codec::varint_len(len as u64) + len > w.remaining() {
                    break;
                }
                let ok = self.dgram_send.pop_with(|a, b| {
                    w.u8(crate::wire::frame::FRAME_DATAGRAM).is_some()
                        && w.varint(len as u64).is_some()
                        && w.bytes(a).is_some()
                        && w.bytes(b).is_some()
                });
                eliciting |= ok == Some(true);
            }
        }
        // Forwarded datagrams: one RELAY_DATA frame each, outside this session's congestion
        // control and pacing (the end-to-end session has its own; spec [RY-3]). They do not
        // make the packet ack-eliciting and are never retransmitted.
        while let Some(len) = self.relay_out.front_len().filter(|_| cfg!(feature = "relay")) {
            let Some(dlen) = len.checked_sub(32) else {
                self.relay_out.pop_with(|_, _| ());
                continue;
            };
            if 1 + len + crate::wire::codec::varint_len(dlen as u64) > w.remaining() {
                break;
            }
            let ok = self.relay_out.pop_with(|a, b| {
                let mut id = [0u8; 32];
                let mut data_a: &[u8] = a;
                let mut data_b: &[u8] = b;
                // The id may straddle the ring's two slices.
                let from_a = data_a.len().min(32);
                id[..from_a].copy_from_slice(&data_a[..from_a]);
                data_a = &data_a[from_a..];
                let from_b = 32 - from_a;
                id[from_a..].copy_from_slice(&data_b[..from_b]);
                data_b = &data_b[from_b..];
                w.u8(crate::wire::frame::FRAME_RELAY_DATA).is_some()
                    && w.bytes(&id).is_some()
                    && w.varint(dlen as u64).is_some()
                    && w.bytes(data_a).is_some()
                    && w.bytes(data_b).is_some()
            });
            let _ = ok;
        }
        if (keepalive || self.probes > 0) && !eliciting && Frame::KeepAlive.encode(w).is_some() {
            eliciting = true;
        }
        if let Some(ack_end) = optional_ack {
            if packet_start == 0 && w.len() == ack_end {
                // Only the early ACK: no packet for it; the ACK timer sends it when due.
                w.rewind(packet_start);
            } else {
                self.acks.on_ack_sent();
            }
        }
        eliciting
    }

    /// Acknowledges every packet received, in the packet that carries SESSION_CLOSE (spec
    /// [LC-12]): what the peer sent just before the close counts as delivered. Left out
    /// whole when it does not fit.
    pub(crate) fn write_close_ack(&mut self, now: Instant, w: &mut Writer<'_>) {
        let mark = w.len();
        if let Some((ranges, delay)) = self.acks.ack(now) {
            if AckFrame::encode(ranges, delay, w).is_some() {
                self.acks.on_ack_sent();
            } else {
                w.rewind(mark);
            }
        }
    }

    /// The size of a path-MTU probe due now, if any.
    pub(crate) fn mtu_probe_due(&self, now: Instant) -> Option<u64> {
        self.pmtud.as_ref()?.probe_due(now)
    }

    /// Writes a probe's payload: a KEEP_ALIVE padded to fill `payload_len` bytes.
    pub(crate) fn write_mtu_probe(&mut self, w: &mut Writer<'_>, payload_len: usize, size: u64) -> Option<FrameLog> {
        Frame::KeepAlive.encode(w)?;
        w.zeros(payload_len.checked_sub(1)?)?;
        if let Some(d) = self.pmtud.as_mut() {
            d.on_probe_sent(size);
        }
        let mut log = FrameLog::new();
        let _ = log.push(SentFrame::MtuProbe);
        Some(log)
    }

    /// Records a sealed packet for loss recovery and pacing.
    pub(crate) fn on_sent(
        &mut self,
        now: Instant,
        pn: u64,
        size: usize,
        eliciting: bool,
        mtu_probe: bool,
        frames: FrameLog,
    ) {
        self.loss.on_sent(pn, now, size as u32, eliciting, mtu_probe, &frames);
        if eliciting {
            self.probes = self.probes.saturating_sub(1);
            self.pacer.on_sent(size as u64);
            let srtt = self.loss.rtt.smoothed();
            self.pacing_until = self.pacer.delay(now, self.mtu, self.cc.window(), srtt, self.mtu);
        }
    }

    /// The session moved between a relayed and a direct path (spec [PU-7]): the datagram
    /// size starts again at 1200 bytes (discovery runs again on a direct path, up to
    /// `mtu_ceiling`) and the congestion controller starts afresh.
    pub(crate) fn on_path_kind_change(
        &mut self,
        now: Instant,
        mtu_ceiling: Option<u64>,
        cc: Box<dyn CongestionControl>,
    ) {
        self.mtu = crate::session::INITIAL_MTU;
        self.cc = cc;
        self.pmtud = Gated::new(mtu_ceiling.filter(|c| *c > self.mtu).map(|c| Pmtud::new(self.mtu, c, now)));
        self.pacing_until = None;
    }

    /// Gives back memory sized for traffic while the session is idle (spec [LC-3]).
    pub(crate) fn shrink_if_idle(&mut self) {
        self.loss.shrink_if_idle();
        for q in [&mut self.dgram_send, &mut self.dgram_recv, &mut self.relay_out, &mut self.relay_in] {
            q.release_if_empty();
        }
        if let Some(s) = self.streams.as_deref_mut() {
            s.shrink_if_idle();
        }
    }

    /// Bytes in flight and congestion window (for stats).
    pub(crate) fn window(&self) -> (u64, u64) {
        (self.loss.bytes_in_flight(), self.cc.window())
    }

    /// Lost packets so far.
    /// Everything the application handed over was sent and acknowledged (datagrams, being
    /// unreliable, only need to have left).
    pub(crate) fn all_acknowledged(&self) -> bool {
        !self.has_app_data() && self.loss.bytes_in_flight() == 0
    }

    pub(crate) fn lost(&self) -> u64 {
        self.loss.lost_packets
    }

    #[allow(dead_code)]
    pub(crate) fn pto(&self) -> Duration {
        self.loss.rtt.pto()
    }
}
