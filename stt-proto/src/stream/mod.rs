//! Multiplexed streams and flow control (spec §7.3–§7.5).
//!
//! Stream ids carry two bits: bit 0 is set for streams opened by the session's
//! responder, bit 1 for unidirectional streams. Streams open implicitly on their
//! first frame; every stream of the same kind with a lower index opens with it.

mod app_frames;
mod flow;
mod map;
mod recv;
mod send;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use bytes::{Bytes, BytesMut};

pub use app_frames::FrameError;
pub(crate) use app_frames::{bitmap, AppFrameSet};
use app_frames::{AppFrameQueue, APP_INDEX};
pub(crate) use flow::RecvWindow;
use map::StreamMap;
pub(crate) use recv::{RecvBuf, StreamViolation};
pub(crate) use send::{SendBuf, SendState};

use crate::event::{Event, EventQueue, SessionId};
use crate::recovery::loss::{SentFrame, MAX_SENT_FRAMES};
use crate::time::Instant;
use crate::wire::codec::{varint_len, Writer, VARINT_MAX};
use crate::wire::frame::{stream_frame_len, Frame};

/// A stream id (bit 0: opened by the session responder; bit 1: unidirectional).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct StreamId(pub u64);

impl StreamId {
    fn new(index: u64, responder: bool, uni: bool) -> Self {
        Self(index << 2 | u64::from(uni) << 1 | u64::from(responder))
    }

    /// Whether the stream carries data one way only.
    pub fn is_uni(self) -> bool {
        self.0 & 2 != 0
    }

    /// Whether the session's responder opened it.
    pub fn opened_by_responder(self) -> bool {
        self.0 & 1 != 0
    }

    /// The stream's index among streams of its kind.
    pub fn index(self) -> u64 {
        self.0 >> 2
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {}", self.0)
    }
}

/// Why a stream could not be opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// The peer's stream limit is reached; wait for `Event::StreamsUnblocked`.
    Blocked,
    /// The session is not established.
    NotEstablished,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Blocked => f.write_str("the peer's stream limit is reached"),
            StreamError::NotEstablished => f.write_str("session is not established"),
        }
    }
}

impl core::error::Error for StreamError {}

/// Why a write, finish or reset failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum WriteError {
    /// No such stream, or it has no sending half here.
    UnknownStream,
    /// The send buffer is full; wait for `Event::StreamWritable`.
    Blocked,
    /// The stream was finished or reset locally.
    Finished,
    /// The peer asked to stop (STOP_SENDING) with this code; the stream was reset.
    Stopped(u64),
    /// The session is not established.
    NotEstablished,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::UnknownStream => f.write_str("unknown stream (or no sending half)"),
            WriteError::Blocked => f.write_str("send buffer full"),
            WriteError::Finished => f.write_str("stream already finished or reset"),
            WriteError::Stopped(c) => write!(f, "peer stopped the stream with code {c}"),
            WriteError::NotEstablished => f.write_str("session is not established"),
        }
    }
}

impl core::error::Error for WriteError {}

/// Why a read failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// No such stream, or it has no receiving half here.
    UnknownStream,
    /// Nothing to read yet; wait for `Event::StreamReadable`.
    Blocked,
    /// The peer reset the stream with this code.
    Reset(u64),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::UnknownStream => f.write_str("unknown stream (or no receiving half)"),
            ReadError::Blocked => f.write_str("no data available yet"),
            ReadError::Reset(c) => write!(f, "peer reset the stream with code {c}"),
        }
    }
}

impl core::error::Error for ReadError {}

/// Limits that shape the stream machinery.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamLimits {
    pub(crate) stream_window: u64,
    pub(crate) session_window: u64,
    pub(crate) max_stream_window: u64,
    pub(crate) max_session_window: u64,
    pub(crate) max_streams_bidi: u64,
    pub(crate) max_streams_uni: u64,
    pub(crate) send_buffer: u64,
    pub(crate) app_frames: AppFrameSet,
    pub(crate) app_queue: usize,
    /// Out-of-order ranges one stream / all streams may hold (spec [ST-7]).
    pub(crate) max_stream_ranges: usize,
    pub(crate) max_session_ranges: usize,
}

impl StreamLimits {
    /// The limits `config` sets.
    pub(crate) fn new(config: &crate::config::Config) -> Self {
        Self {
            stream_window: config.stream_window,
            session_window: config.session_window,
            max_stream_window: config.max_stream_window,
            max_session_window: config.max_session_window,
            max_streams_bidi: config.max_streams_bidi,
            max_streams_uni: config.max_streams_uni,
            send_buffer: config.stream_send_buffer,
            app_frames: AppFrameSet { types: config.app_frame_types, max: config.max_app_frame },
            app_queue: config.app_frame_queue,
            max_stream_ranges: config.max_stream_ranges,
            max_session_ranges: config.max_session_ranges,
        }
    }
}

/// What the peer allowed us in its transport parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerLimits {
    pub(crate) max_data: u64,
    pub(crate) max_stream_data: u64,
    pub(crate) max_streams_bidi: u64,
    pub(crate) max_streams_uni: u64,
    pub(crate) app_frames: AppFrameSet,
}

struct SendHalf {
    state: SendState,
    buf: SendBuf,
    /// Peer's limit for this stream.
    max_data: u64,
    fin_sent: bool,
    fin_acked: bool,
    reset_pending: bool,
    reset_acked: bool,
    blocked_reported: Option<u64>,
    wants_writable: bool,
    stopped: Option<u64>,
    finished_reported: bool,
}

impl SendHalf {
    /// Bytes `write` accepts now: within the send buffer (unacknowledged bytes) and within
    /// `unsent_limit` (bytes not yet sent once).
    fn room(&self, send_buffer: u64, unsent_limit: u64) -> u64 {
        let unsent = self.buf.written() - self.buf.sent();
        send_buffer.saturating_sub(self.buf.unacked()).min(unsent_limit.saturating_sub(unsent))
    }

    /// Whether a writer waiting for room should be told now: room in the send buffer, and
    /// the unsent bytes down to half the limit (so each wake-up has a sizeable write to make).
    fn writable_again(&self, send_buffer: u64, unsent_limit: u64) -> bool {
        self.wants_writable
            && self.state == SendState::Open
            && self.buf.unacked() < send_buffer
            && self.buf.written() - self.buf.sent() <= unsent_limit / 2
    }
}

struct RecvHalf {
    buf: RecvBuf,
    window: RecvWindow,
    reset: Option<u64>,
    stop_pending: Option<u64>,
    stopped: bool,
    readable_reported: bool,
}

struct Stream {
    send: Option<SendHalf>,
    recv: Option<RecvHalf>,
}

impl Stream {
    fn is_done(&self) -> bool {
        let send_done = self.send.as_ref().is_none_or(|s| (s.fin_acked && s.buf.all_acked()) || s.reset_acked);
        let recv_done = self.recv.as_ref().is_none_or(|r| r.buf.is_finished() || r.reset.is_some() || r.stopped);
        send_done && recv_done
    }
}

/// All streams of one session, with session-level flow control.
pub(crate) struct Streams {
    session: SessionId,
    responder: bool,
    limits: StreamLimits,
    map: StreamMap<Box<Stream>>,
    next_local: [u64; 2],
    peer_max_streams: [u64; 2],
    wants_streams: bool,
    /// Kind and limit of the last STREAMS_BLOCKED sent.
    streams_blocked_sent: [Option<u64>; 2],
    streams_blocked_pending: [bool; 2],
    /// Lowest peer index not yet opened, per kind.
    next_peer: [u64; 2],
    /// Limits we advertise for peer-opened streams, and peer streams closed so far.
    local_max_streams: [u64; 2],
    peer_closed: [u64; 2],
    max_streams_pending: [bool; 2],
    accept_queue: VecDeque<StreamId>,
    // Session flow control.
    send_max_data: u64,
    send_data: u64,
    data_blocked_reported: Option<u64>,
    recv_window: RecvWindow,
    recv_data: u64,
    recv_consumed: u64,
    max_data_pending: bool,
    peer_stream_window: u64,
    /// Reassembly work so far (spec [ST-7]): inserts plus held ranges examined.
    reassembly_steps: u64,
    /// Out-of-order ranges held by all receiving halves now (spec [ST-7]).
    recv_ranges: usize,
    round_robin: u64,
    app: AppFrameQueue,
    /// Acknowledged send chunks kept for the next copying writes, so a bulk sender reuses
    /// its buffers instead of allocating (and faulting in) fresh memory per write. Bounded:
    /// at most `MAX_SPARES` chunks and `send_buffer` bytes in all (so a sending half holds
    /// at most twice its buffer; a chunk counts by its capacity); taken by the next copying
    /// writes, dropped all at once by `finish`, `reset`, the peer's STOP_SENDING, an
    /// acknowledgement that leaves the stream nothing unacknowledged, or an idle keepalive
    /// interval (`shrink_if_idle`).
    spares: Vec<BytesMut>,
    /// Bytes a stream may hold written but not yet sent once, now: twice the congestion
    /// window, within [`MIN_UNSENT`, `UNSENT_LIMIT`] (`follow_window`).
    unsent_limit: u64,
}

/// Bytes a stream may hold written but not yet sent once (as TCP_NOTSENT_LOWAT): writes stop
/// there, and `StreamWritable` comes back once half of it went out. Sending then reads what
/// was written moments before, still in the CPU's cache, instead of megabytes queued long
/// before (+18-22 % bulk throughput on loopback against a queue of the whole 4 MiB send
/// buffer); bytes in flight may still fill `send_buffer`, so long fat paths keep their window.
///
/// Below that, the allowance follows the congestion window (twice the window, at least
/// [`MIN_UNSENT`]): a session whose window is small gets no further ahead of its path than
/// two windows, so a node with many sessions sending at once holds (and first touches)
/// memory in proportion to what its paths carry, not 256 KiB per stream.
pub(crate) const UNSENT_LIMIT: u64 = 256 * 1024;

/// The least unsent allowance per stream, whatever the congestion window.
pub(crate) const MIN_UNSENT: u64 = 32 * 1024;

/// Largest chunk a copying write allocates: every chunk of a bulk writer has this size, so
/// an acknowledged one fits the next write again (`Streams::spares`), and it stays below
/// the size at which common allocators map fresh pages for each allocation (glibc: 128 KiB),
/// so chunks freed by one session are reused by the next instead of being faulted in anew.
pub(crate) const SEND_CHUNK: usize = 32 * 1024;

/// Acknowledged chunks a session keeps for reuse by copying writes (see `Streams::spares`).
const MAX_SPARES: usize = 8;

/// The session's range count after one stream went from `before` to `after` ranges.
fn recount(total: usize, before: usize, after: usize) -> usize {
    (total + after).saturating_sub(before)
}

fn kind(uni: bool) -> usize {
    usize::from(uni)
}

impl Streams {
    pub(crate) fn new(
        session: SessionId,
        responder: bool,
        limits: StreamLimits,
        peer: PeerLimits,
        now: Instant,
    ) -> Self {
        Self {
            session,
            responder,
            limits,
            map: StreamMap::new(),
            next_local: [0; 2],
            peer_max_streams: [peer.max_streams_bidi, peer.max_streams_uni],
            wants_streams: false,
            streams_blocked_sent: [None; 2],
            streams_blocked_pending: [false; 2],
            next_peer: [0; 2],
            local_max_streams: [limits.max_streams_bidi, limits.max_streams_uni],
            peer_closed: [0; 2],
            max_streams_pending: [false; 2],
            accept_queue: VecDeque::new(),
            send_max_data: peer.max_data,
            send_data: 0,
            data_blocked_reported: None,
            recv_window: RecvWindow::new(limits.session_window, limits.max_session_window, now),
            recv_data: 0,
            recv_consumed: 0,
            max_data_pending: false,
            peer_stream_window: peer.max_stream_data,
            reassembly_steps: 0,
            recv_ranges: 0,
            round_robin: 0,
            spares: Vec::new(),
            unsent_limit: UNSENT_LIMIT,
            app: AppFrameQueue {
                queue: crate::datagram::DatagramQueue::new(
                    limits.app_queue,
                    limits.app_queue * (limits.app_frames.max as usize + 1),
                ),
                local: limits.app_frames,
                peer: peer.app_frames,
            },
        }
    }

    /// Creates the reserved application-frame stream `id` (one each way) when first used:
    /// a session that never carries application frames holds neither (spec [AF-1]).
    fn app_stream(&mut self, id: StreamId, now: Instant) {
        if !self.map.contains_key(id.0) {
            let s = self.new_stream(id, now);
            self.map.insert(id.0, Box::new(s));
        }
    }

    fn app_send_id(&self) -> StreamId {
        StreamId::new(APP_INDEX, self.responder, true)
    }

    fn app_recv_id(&self) -> StreamId {
        StreamId::new(APP_INDEX, !self.responder, true)
    }

    /// Queues an application frame (`type ‖ length ‖ body`) on the frame stream.
    pub(crate) fn send_app_frame(&mut self, now: Instant, ty: u8, body: &[u8]) -> Result<(), FrameError> {
        if ty < 0x80 {
            return Err(FrameError::NotAppType(ty));
        }
        if !self.app.peer.contains(ty) {
            return Err(FrameError::Undeclared(ty));
        }
        // A frame must also fit this side's send buffer whole (type and length prefix take
        // at most 9 bytes), or it would wait for room that never comes.
        let fits = self.limits.send_buffer.min(UNSENT_LIMIT).saturating_sub(9);
        let max = self.app.peer.max.min(fits);
        if body.len() as u64 > max {
            return Err(FrameError::TooLarge { max });
        }
        let id = self.app_send_id();
        self.app_stream(id, now);
        let mut head = [0u8; 9];
        let mut w = Writer::new(&mut head);
        let _ = w.u8(ty);
        let _ = w.varint(body.len() as u64);
        let n = w.len();
        // A frame goes whole or not at all: within the fixed unsent limit (which it was
        // checked to fit), not the window-following one, which may stay below its size.
        let room = self.room_within(id, UNSENT_LIMIT).map_err(|_| FrameError::Blocked)?;
        if room < (n + body.len()) as u64 {
            if let Some(s) = self.map.get_mut(id.0).and_then(|s| s.send.as_mut()) {
                s.wants_writable = true;
            }
            return Err(FrameError::Blocked);
        }
        let _ = self.push(id, Bytes::copy_from_slice(&head[..n]), n, UNSENT_LIMIT);
        let _ = self.push(id, Bytes::copy_from_slice(body), body.len(), UNSENT_LIMIT);
        Ok(())
    }

    /// Moves complete frames from the frame stream into the queue while it has room.
    /// Returns a violation for undeclared types or oversize frames (spec [AF-2]).
    fn parse_app_frames(
        &mut self,
        now: Instant,
        srtt: Duration,
        events: &mut EventQueue,
    ) -> Result<(), StreamViolation> {
        let id = self.app_recv_id();
        let mut consumed = 0u64;
        while let Some(r) = self.map.get_mut(id.0).and_then(|s| s.recv.as_mut()) {
            let mut head = [0u8; 9];
            let got = r.buf.peek(&mut head);
            if got == 0 {
                break;
            }
            let ty = head[0];
            let mut rd = crate::wire::codec::Reader::new(&head[1..got]);
            let Some(len) = rd.varint() else { break };
            if !self.app.local.contains(ty) {
                return Err(StreamViolation::UndeclaredAppFrame);
            }
            if len > self.app.local.max {
                return Err(StreamViolation::FlowControl);
            }
            let hdr = 1 + varint_len(len) as u64;
            if r.buf.readable() < hdr + len || !self.app.queue.has_room(len as usize + 1) {
                break;
            }
            let was_empty = self.app.queue.is_empty();
            let mut skip = [0u8; 9];
            let held = r.buf.ranges();
            r.buf.read(&mut skip[..hdr as usize]);
            let queue = &mut self.app.queue;
            r.buf.read_with(len as usize, |body| queue.push_parts(&[ty], body));
            self.recv_ranges = recount(self.recv_ranges, held, r.buf.ranges());
            consumed += hdr + len;
            r.window.on_consumed(now, srtt, r.buf.read_offset());
            if was_empty {
                events.push_back(Event::AppFrameReadable { session: self.session });
            }
        }
        if consumed > 0 {
            self.recv_consumed += consumed;
            if self.recv_window.on_consumed(now, srtt, self.recv_consumed) {
                self.max_data_pending = true;
            }
        }
        Ok(())
    }

    /// Takes the oldest received application frame: `(type, body length)`; the body is
    /// copied into `buf` (truncated to its length).
    pub(crate) fn recv_app_frame(
        &mut self,
        now: Instant,
        srtt: Duration,
        buf: &mut [u8],
        events: &mut EventQueue,
    ) -> Option<(u8, usize)> {
        let mut ty = 0u8;
        let len = self.app.queue.pop_with(|a, b| {
            let (first, rest_a, rest_b) = match a.split_first() {
                Some((f, r)) => (*f, r, b),
                None => (b.first().copied().unwrap_or(0), &[][..], b.get(1..).unwrap_or(&[])),
            };
            ty = first;
            let n = (rest_a.len() + rest_b.len()).min(buf.len());
            let from_a = n.min(rest_a.len());
            buf[..from_a].copy_from_slice(&rest_a[..from_a]);
            buf[from_a..n].copy_from_slice(&rest_b[..n - from_a]);
            rest_a.len() + rest_b.len()
        })?;
        // Room freed: frames still in the stream buffer may move up.
        let _ = self.parse_app_frames(now, srtt, events);
        Some((ty, len))
    }

    fn is_local(&self, id: StreamId) -> bool {
        id.opened_by_responder() == self.responder
    }

    fn new_stream(&self, id: StreamId, now: Instant) -> Stream {
        let local = self.is_local(id);
        let send = (local || !id.is_uni()).then(|| SendHalf {
            state: SendState::Open,
            buf: SendBuf::default(),
            max_data: self.peer_stream_window,
            fin_sent: false,
            fin_acked: false,
            reset_pending: false,
            reset_acked: false,
            blocked_reported: None,
            wants_writable: false,
            stopped: None,
            finished_reported: false,
        });
        let recv = (!local || !id.is_uni()).then(|| RecvHalf {
            buf: RecvBuf::default(),
            window: RecvWindow::new(self.limits.stream_window, self.limits.max_stream_window, now),
            reset: None,
            stop_pending: None,
            stopped: false,
            readable_reported: false,
        });
        Stream { send, recv }
    }

    // ----- application commands -----

    pub(crate) fn open(&mut self, now: Instant, uni: bool) -> Result<StreamId, StreamError> {
        let k = kind(uni);
        let index = self.next_local[k];
        if index >= APP_INDEX {
            return Err(StreamError::Blocked);
        }
        if index >= self.peer_max_streams[k] {
            self.wants_streams = true;
            if self.streams_blocked_sent[k] != Some(self.peer_max_streams[k]) {
                self.streams_blocked_pending[k] = true;
            }
            return Err(StreamError::Blocked);
        }
        self.next_local[k] += 1;
        let id = StreamId::new(index, self.responder, uni);
        let s = self.new_stream(id, now);
        self.map.insert(id.0, Box::new(s));
        Ok(id)
    }

    /// Takes the oldest peer-opened stream. Streams the peer reset (and that were freed)
    /// before anyone accepted them are skipped: there is nothing left to read.
    pub(crate) fn accept(&mut self) -> Option<StreamId> {
        while let Some(id) = self.accept_queue.pop_front() {
            if self.map.contains_key(id.0) {
                return Some(id);
            }
        }
        None
    }

    /// Takes the oldest peer-opened stream of one kind (the queue is bounded by the stream
    /// limits this side advertises), skipping freed ones as [`accept`](Self::accept) does.
    pub(crate) fn accept_kind(&mut self, uni: bool) -> Option<StreamId> {
        loop {
            let i = self.accept_queue.iter().position(|id| id.is_uni() == uni)?;
            let id = self.accept_queue.remove(i)?;
            if self.map.contains_key(id.0) {
                return Some(id);
            }
        }
    }

    /// Bytes `write` would accept now on `id`.
    pub(crate) fn write_room(&self, id: StreamId) -> Result<u64, WriteError> {
        self.room_within(id, self.unsent_limit)
    }

    /// Bytes a write would fit on `id` with at most `unsent_limit` bytes unsent.
    fn room_within(&self, id: StreamId, unsent_limit: u64) -> Result<u64, WriteError> {
        let s = self.map.get(id.0).and_then(|s| s.send.as_ref()).ok_or(WriteError::UnknownStream)?;
        if let Some(code) = s.stopped {
            return Err(WriteError::Stopped(code));
        }
        if s.state != SendState::Open {
            return Err(WriteError::Finished);
        }
        Ok(s.room(self.limits.send_buffer, unsent_limit))
    }

    /// Sets the unsent allowance of writes from the congestion window `cwnd` (see
    /// [`UNSENT_LIMIT`]).
    pub(crate) fn follow_window(&mut self, cwnd: u64) {
        self.unsent_limit = cwnd.saturating_mul(2).clamp(MIN_UNSENT, UNSENT_LIMIT);
    }

    /// Copies as much of `data` as fits into the send buffer, in chunks of at most
    /// [`SEND_CHUNK`] bytes, each into a spare chunk when one is kept; returns how much was
    /// taken. A write cut short by the room takes whole chunks only, and none while more
    /// than half the unsent allowance is still queued (the writer hears `StreamWritable`
    /// once it is down to half, as for a full buffer): a bulk writer's chunks all have one
    /// size, so every acknowledged one fits again and steady writing allocates nothing.
    pub(crate) fn write_copy(&mut self, id: StreamId, data: &[u8]) -> Result<usize, WriteError> {
        let room = self.write_room(id)?;
        let mut n = (data.len() as u64).min(room) as usize;
        if n < data.len() {
            let queued = self.map.get(id.0).and_then(|s| s.send.as_ref()).map_or(0, |s| s.buf.written() - s.buf.sent());
            if n >= SEND_CHUNK {
                n -= n % SEND_CHUNK;
            } else if queued > self.unsent_limit / 2 {
                n = 0;
            }
        }
        if n == 0 {
            let r = self.push(id, Bytes::new(), data.len(), self.unsent_limit);
            return if data.is_empty() { r } else { r.and(Err(WriteError::Blocked)) };
        }
        let mut taken = 0;
        while taken < n {
            let k = (n - taken).min(SEND_CHUNK);
            // Spares are whole chunks (`on_frame_acked` keeps no others), and only a piece
            // that fills one takes it: a full buffer freezes without allocating (a partly
            // filled one needs a shared header).
            let spare = if k == SEND_CHUNK { self.spares.pop() } else { None };
            let mut chunk = match spare {
                Some(mut b) => {
                    b.clear();
                    b
                }
                None => BytesMut::with_capacity(k),
            };
            chunk.extend_from_slice(&data[taken..taken + k]);
            // The last piece stands for the rest of the write: a shortfall asks for
            // `StreamWritable`. Every piece fits (`n` is within the room).
            let requested = if taken + k == n { data.len() - taken } else { k };
            taken += self.push(id, chunk.freeze(), requested, self.unsent_limit)?;
        }
        Ok(taken)
    }

    pub(crate) fn write(&mut self, id: StreamId, data: Bytes) -> Result<usize, WriteError> {
        let requested = data.len();
        self.push(id, data, requested, self.unsent_limit)
    }

    /// Buffers what fits of `data`, the first bytes of a write of `requested` bytes; a
    /// shortfall (room for less than `requested`) asks for `StreamWritable`.
    fn push(&mut self, id: StreamId, data: Bytes, requested: usize, unsent_limit: u64) -> Result<usize, WriteError> {
        let buffer = self.limits.send_buffer;
        let s = self.map.get_mut(id.0).and_then(|s| s.send.as_mut()).ok_or(WriteError::UnknownStream)?;
        if let Some(code) = s.stopped {
            return Err(WriteError::Stopped(code));
        }
        if s.state != SendState::Open {
            return Err(WriteError::Finished);
        }
        let room = s.room(buffer, unsent_limit);
        if room == 0 {
            s.wants_writable = true;
            return Err(WriteError::Blocked);
        }
        let n = (data.len() as u64).min(room).min(VARINT_MAX - s.buf.written()) as usize;
        // `slice` clones, which gives a uniquely owned buffer a shared header (an
        // allocation): only a partial write pays it.
        if n < requested {
            s.wants_writable = true;
        }
        if n < data.len() {
            s.buf.push(data.slice(..n));
        } else {
            s.buf.push(data);
        }
        Ok(n)
    }

    pub(crate) fn finish(&mut self, id: StreamId) -> Result<(), WriteError> {
        let s = self.map.get_mut(id.0).and_then(|s| s.send.as_mut()).ok_or(WriteError::UnknownStream)?;
        if let Some(code) = s.stopped {
            return Err(WriteError::Stopped(code));
        }
        if s.state != SendState::Open {
            return Err(WriteError::Finished);
        }
        s.state = SendState::Finishing;
        self.spares = Vec::new();
        Ok(())
    }

    pub(crate) fn reset(&mut self, id: StreamId, code: u64) -> Result<(), WriteError> {
        self.spares = Vec::new();
        let s = self.map.get_mut(id.0).and_then(|s| s.send.as_mut()).ok_or(WriteError::UnknownStream)?;
        if matches!(s.state, SendState::Reset { .. }) || (s.fin_acked && s.buf.all_acked()) {
            return Err(WriteError::Finished);
        }
        Self::reset_half(s, code);
        Ok(())
    }

    fn reset_half(s: &mut SendHalf, code: u64) {
        let final_size = s.buf.sent();
        s.state = SendState::Reset { code, final_size };
        s.buf.clear();
        s.reset_pending = true;
    }

    pub(crate) fn stop_sending(&mut self, id: StreamId, code: u64) -> Result<(), ReadError> {
        let r = self.map.get_mut(id.0).and_then(|s| s.recv.as_mut()).ok_or(ReadError::UnknownStream)?;
        if !r.stopped {
            r.stopped = true;
            r.stop_pending = Some(code);
            self.recv_ranges = recount(self.recv_ranges, r.buf.ranges(), 0);
            r.buf.clear();
        }
        Ok(())
    }

    /// Reads into `out`: `(bytes, fin)`. `fin` is true once everything was read.
    /// Contiguous bytes `read` would return now (0 for unknown streams).
    pub(crate) fn readable(&self, id: StreamId) -> u64 {
        self.map.get(id.0).and_then(|s| s.recv.as_ref()).map_or(0, |r| r.buf.readable())
    }

    pub(crate) fn read(
        &mut self,
        now: Instant,
        srtt: Duration,
        id: StreamId,
        out: &mut [u8],
    ) -> Result<(usize, bool), ReadError> {
        let s = self.map.get_mut(id.0).ok_or(ReadError::UnknownStream)?;
        let r = s.recv.as_mut().ok_or(ReadError::UnknownStream)?;
        if let Some(code) = r.reset {
            return Err(ReadError::Reset(code));
        }
        let held = r.buf.ranges();
        let n = r.buf.read(out);
        self.recv_ranges = recount(self.recv_ranges, held, r.buf.ranges());
        let fin = r.buf.is_finished();
        if n == 0 && !fin {
            r.readable_reported = false;
            return Err(ReadError::Blocked);
        }
        if r.buf.readable() == 0 {
            r.readable_reported = false;
        }
        r.window.on_consumed(now, srtt, r.buf.read_offset());
        self.recv_consumed += n as u64;
        if self.recv_window.on_consumed(now, srtt, self.recv_consumed) {
            self.max_data_pending = true;
        }
        self.collect(id);
        Ok((n, fin))
    }

    /// Frees a finished stream and, for peer streams, raises the limit (spec [ST-6]).
    fn collect(&mut self, id: StreamId) {
        if self.map.get(id.0).is_some_and(|s| s.is_done()) {
            self.map.remove(id.0);
            if !self.is_local(id) {
                // A stream reset before anyone accepted it leaves the accept queue too, so
                // the queue never holds more than the live peer streams (the stream limits).
                if let Some(i) = self.accept_queue.iter().position(|q| *q == id) {
                    self.accept_queue.remove(i);
                }
                let k = kind(id.is_uni());
                self.peer_closed[k] += 1;
                self.local_max_streams[k] = self.peer_closed[k]
                    + if id.is_uni() { self.limits.max_streams_uni } else { self.limits.max_streams_bidi };
                self.max_streams_pending[k] = true;
            }
        }
    }

    /// Reassembly work so far: inserts plus held ranges examined (spec [ST-7]).
    pub(crate) fn reassembly_steps(&self) -> u64 {
        self.reassembly_steps
    }

    /// Disjoint received-but-unread ranges held across all streams now.
    pub(crate) fn recv_ranges(&self) -> usize {
        self.recv_ranges
    }

    /// Gives back memory sized for a burst while the session is idle.
    pub(crate) fn shrink_if_idle(&mut self) {
        self.spares = Vec::new();
        self.app.queue.release_if_empty();
        self.map.shrink();
        if self.accept_queue.is_empty() {
            self.accept_queue = VecDeque::new();
        }
    }

    /// Number of live application streams (the frame streams not counted).
    pub(crate) fn len(&self) -> usize {
        let app = [self.app_send_id(), self.app_recv_id()].iter().filter(|id| self.map.contains_key(id.0)).count();
        self.map.len() - app
    }

    // ----- peer frames -----

    /// Validates a stream id from the peer and opens every peer stream up to it (spec [ST-1]).
    fn peer_stream(&mut self, now: Instant, id: StreamId, events: &mut EventQueue) -> Result<(), StreamViolation> {
        if id.index() == APP_INDEX {
            // The reserved frame streams exist from the start (this side creates each when
            // first used) and are unidirectional.
            if !id.is_uni() {
                return Err(StreamViolation::FinalSize);
            }
            self.app_stream(id, now);
            return Ok(());
        }
        if self.is_local(id) {
            // Our own stream: it must exist (or have been finished and freed).
            if id.index() >= self.next_local[kind(id.is_uni())] {
                return Err(StreamViolation::FinalSize);
            }
            return Ok(());
        }
        let k = kind(id.is_uni());
        if id.index() >= self.local_max_streams[k] {
            return Err(StreamViolation::FlowControl);
        }
        while self.next_peer[k] <= id.index() {
            let new = StreamId::new(self.next_peer[k], !self.responder, id.is_uni());
            self.next_peer[k] += 1;
            let s = self.new_stream(new, now);
            self.map.insert(new.0, Box::new(s));
            self.accept_queue.push_back(new);
            events.push_back(Event::StreamOpened { session: self.session, stream: new });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_stream_frame(
        &mut self,
        now: Instant,
        srtt: Duration,
        id: StreamId,
        offset: u64,
        data: &[u8],
        fin: bool,
        events: &mut EventQueue,
    ) -> Result<(), StreamViolation> {
        let session = self.session;
        let is_app = id == self.app_recv_id();
        self.peer_stream(now, id, events)?;
        let Some(s) = self.map.get_mut(id.0) else { return Ok(()) };
        let Some(r) = s.recv.as_mut() else { return Err(StreamViolation::FinalSize) };
        if r.reset.is_some() || r.stopped {
            return Ok(());
        }
        let held = r.buf.ranges();
        let inserted = r.buf.insert(offset, data, fin, r.window.limit(), self.limits.max_stream_ranges);
        self.reassembly_steps += r.buf.take_steps();
        self.recv_ranges = recount(self.recv_ranges, held, r.buf.ranges());
        let new = inserted?;
        if self.recv_ranges > self.limits.max_session_ranges {
            // One over at most: the session closes on this frame (spec [ST-7]).
            return Err(StreamViolation::TooManyRanges);
        }
        self.recv_data += new;
        if self.recv_data > self.recv_window.limit() {
            return Err(StreamViolation::FlowControl);
        }
        if is_app {
            if fin {
                return Err(StreamViolation::FinalSize);
            }
            return self.parse_app_frames(now, srtt, events);
        }
        if (r.buf.readable() > 0 || r.buf.final_size() == Some(r.buf.read_offset())) && !r.readable_reported {
            r.readable_reported = true;
            events.push_back(Event::StreamReadable { session, stream: id });
        }
        Ok(())
    }

    pub(crate) fn on_stream_close(
        &mut self,
        now: Instant,
        id: StreamId,
        code: u64,
        final_size: u64,
        events: &mut EventQueue,
    ) -> Result<(), StreamViolation> {
        let session = self.session;
        self.peer_stream(now, id, events)?;
        let Some(s) = self.map.get_mut(id.0) else { return Ok(()) };
        let Some(r) = s.recv.as_mut() else { return Err(StreamViolation::FinalSize) };
        if final_size < r.buf.highest()
            || r.buf.final_size().is_some_and(|f| f != final_size)
            || final_size > r.window.limit()
        {
            return Err(StreamViolation::FinalSize);
        }
        if r.reset.is_none() {
            self.recv_data += final_size - r.buf.highest();
            if self.recv_data > self.recv_window.limit() {
                return Err(StreamViolation::FlowControl);
            }
            r.reset = Some(code);
            self.recv_ranges = recount(self.recv_ranges, r.buf.ranges(), 0);
            r.buf.clear();
            events.push_back(Event::StreamReset { session, stream: id, code });
        }
        self.collect(id);
        Ok(())
    }

    pub(crate) fn on_stop_sending(
        &mut self,
        now: Instant,
        id: StreamId,
        code: u64,
        events: &mut EventQueue,
    ) -> Result<(), StreamViolation> {
        let session = self.session;
        self.peer_stream(now, id, events)?;
        let Some(s) = self.map.get_mut(id.0) else { return Ok(()) };
        let Some(snd) = s.send.as_mut() else { return Err(StreamViolation::FinalSize) };
        if snd.stopped.is_none() {
            snd.stopped = Some(code);
            if !(matches!(snd.state, SendState::Reset { .. }) || snd.fin_acked && snd.buf.all_acked()) {
                Self::reset_half(snd, code);
                self.spares = Vec::new();
            }
            events.push_back(Event::StreamStopped { session, stream: id, code });
        }
        Ok(())
    }

    pub(crate) fn on_max_data(&mut self, max: u64) {
        self.send_max_data = self.send_max_data.max(max);
    }

    pub(crate) fn on_max_stream_data(&mut self, id: StreamId, max: u64) {
        if let Some(s) = self.map.get_mut(id.0).and_then(|s| s.send.as_mut()) {
            s.max_data = s.max_data.max(max);
        }
    }

    pub(crate) fn on_max_streams(&mut self, uni: bool, count: u64, events: &mut EventQueue) {
        let k = kind(uni);
        if count > self.peer_max_streams[k] {
            self.peer_max_streams[k] = count;
            if self.wants_streams {
                self.wants_streams = false;
                events.push_back(Event::StreamsUnblocked { session: self.session });
            }
        }
    }

    // ----- acknowledgements -----

    pub(crate) fn on_frame_acked(&mut self, f: &SentFrame, events: &mut EventQueue) {
        match *f {
            SentFrame::Stream { id, offset, len, fin } => {
                let session = self.session;
                let (buffer, unsent_limit) = (self.limits.send_buffer, self.unsent_limit);
                let spares = &mut self.spares;
                if let Some(s) = self.map.get_mut(id).and_then(|s| s.send.as_mut()) {
                    let open = s.state == SendState::Open;
                    s.buf.on_ack(offset, u64::from(len), |freed| {
                        if !open || spares.len() >= MAX_SPARES {
                            return;
                        }
                        let held: usize = spares.iter().map(BytesMut::capacity).sum();
                        // Only a chunk nobody else holds (bytes the app passed by reference
                        // may still be shared) can be written into again, and only a whole
                        // one (`write_copy` fills spares completely; others would clog the
                        // list); it counts by the memory it keeps.
                        if let Ok(b) = freed.try_into_mut() {
                            if b.capacity() == SEND_CHUNK && (held + b.capacity()) as u64 <= buffer {
                                spares.push(b);
                            }
                        }
                    });
                    if s.buf.unacked() == 0 {
                        // Nothing in flight: the writer is not streaming now.
                        *spares = Vec::new();
                    }
                    s.fin_acked |= fin;
                    if s.writable_again(buffer, unsent_limit) {
                        s.wants_writable = false;
                        events.push_back(Event::StreamWritable { session, stream: StreamId(id) });
                    }
                    if s.fin_acked && s.buf.all_acked() && !s.finished_reported {
                        s.finished_reported = true;
                        events.push_back(Event::StreamFinished { session, stream: StreamId(id) });
                    }
                }
                self.collect(StreamId(id));
            }
            SentFrame::StreamClose { id } => {
                if let Some(s) = self.map.get_mut(id).and_then(|s| s.send.as_mut()) {
                    s.reset_acked = true;
                }
                self.collect(StreamId(id));
            }
            _ => {}
        }
    }

    pub(crate) fn on_frame_lost(&mut self, f: &SentFrame) {
        match *f {
            SentFrame::Stream { id, offset, len, fin } => {
                if let Some(s) = self.map.get_mut(id).and_then(|s| s.send.as_mut()) {
                    if !matches!(s.state, SendState::Reset { .. }) {
                        s.buf.on_lost(offset, u64::from(len));
                        if fin && !s.fin_acked {
                            s.fin_sent = false;
                        }
                    }
                }
            }
            SentFrame::StreamClose { id } => {
                if let Some(s) = self.map.get_mut(id).and_then(|s| s.send.as_mut()) {
                    s.reset_pending = true;
                }
            }
            SentFrame::StopSending { id } => {
                if let Some(r) = self.map.get_mut(id).and_then(|s| s.recv.as_mut()) {
                    if r.stopped && r.stop_pending.is_none() {
                        r.stop_pending = Some(0);
                    }
                }
            }
            SentFrame::MaxData => self.max_data_pending = true,
            SentFrame::MaxStreamData { id } => {
                if let Some(r) = self.map.get_mut(id).and_then(|s| s.recv.as_mut()) {
                    r.window.mark_pending();
                }
            }
            SentFrame::MaxStreams { uni } => self.max_streams_pending[kind(uni)] = true,
            _ => {}
        }
    }

    // ----- output -----

    /// Whether any stream frame is waiting to be sent.
    pub(crate) fn has_pending(&self) -> bool {
        let session_room = self.send_max_data.saturating_sub(self.send_data);
        self.max_data_pending
            || self.max_streams_pending.iter().any(|p| *p)
            || self.streams_blocked_pending.iter().any(|p| *p)
            || self.map.values().any(|s| {
                s.send.as_ref().is_some_and(|h| {
                    h.reset_pending
                        || (!matches!(h.state, SendState::Reset { .. })
                            && (h.buf.has_pending(h.max_data.min(h.buf.sent() + session_room))
                                || (h.state == SendState::Finishing && !h.fin_sent && h.buf.sent() == h.buf.written())))
                }) || s.recv.as_ref().is_some_and(|r| r.stop_pending.is_some() || r.window.is_pending())
            })
    }

    /// Writes control frames and stream data into `w`, logging what needs acknowledgement.
    pub(crate) fn write_frames(
        &mut self,
        w: &mut Writer<'_>,
        log: &mut heapless::Vec<SentFrame, MAX_SENT_FRAMES>,
        events: &mut EventQueue,
    ) {
        if self.max_data_pending && log.len() < MAX_SENT_FRAMES {
            let f = Frame::MaxData(self.recv_window.limit());
            if f.encoded_len() <= w.remaining() && f.encode(w).is_some() {
                self.max_data_pending = false;
                // The session window's own flag too: else every later read reports an
                // update pending and each one sends another MAX_DATA (issue #19 item 2).
                self.recv_window.sent();
                let _ = log.push(SentFrame::MaxData);
            }
        }
        for (k, uni) in [(0, false), (1, true)] {
            if self.max_streams_pending[k] && log.len() < MAX_SENT_FRAMES {
                let f = Frame::MaxStreams { uni, count: self.local_max_streams[k] };
                if f.encoded_len() <= w.remaining() && f.encode(w).is_some() {
                    self.max_streams_pending[k] = false;
                    let _ = log.push(SentFrame::MaxStreams { uni });
                }
            }
        }
        for (k, uni) in [(0, false), (1, true)] {
            if self.streams_blocked_pending[k] {
                let f = Frame::StreamsBlocked { uni, limit: self.peer_max_streams[k] };
                if f.encoded_len() <= w.remaining() && f.encode(w).is_some() {
                    self.streams_blocked_pending[k] = false;
                    self.streams_blocked_sent[k] = Some(self.peer_max_streams[k]);
                }
            }
        }
        if self.send_data >= self.send_max_data && self.data_blocked_reported != Some(self.send_max_data) {
            let f = Frame::DataBlocked(self.send_max_data);
            if f.encoded_len() <= w.remaining() && f.encode(w).is_some() {
                self.data_blocked_reported = Some(self.send_max_data);
            }
        }
        // Control frames per stream, then data, starting after the last stream served.
        let start = self.round_robin;
        let mut served_any = None;
        for (from, to) in [(start, u64::MAX), (0, start)] {
            let mut cursor = from;
            while log.len() < MAX_SENT_FRAMES && w.remaining() >= 4 {
                let Some(id) = self.map.first_in(cursor, to) else { break };
                if self.write_stream(id, w, log, events) {
                    served_any = Some(id);
                }
                cursor = id + 1;
            }
        }
        if let Some(id) = served_any {
            self.round_robin = id + 1;
        }
    }

    /// Writes what one stream has pending; returns whether it wrote stream data. Sending
    /// makes room under `UNSENT_LIMIT`: a writer waiting for it hears `StreamWritable`.
    fn write_stream(
        &mut self,
        id: u64,
        w: &mut Writer<'_>,
        log: &mut heapless::Vec<SentFrame, MAX_SENT_FRAMES>,
        events: &mut EventQueue,
    ) -> bool {
        let (session, buffer, unsent_limit) = (self.session, self.limits.send_buffer, self.unsent_limit);
        let session_room = self.send_max_data.saturating_sub(self.send_data);
        let Some(s) = self.map.get_mut(id) else { return false };
        if let Some(r) = s.recv.as_mut() {
            if let Some(code) = r.stop_pending {
                let f = Frame::StopSending { id, code };
                if log.len() < MAX_SENT_FRAMES && f.encoded_len() <= w.remaining() && f.encode(w).is_some() {
                    r.stop_pending = None;
                    let _ = log.push(SentFrame::StopSending { id });
                }
            }
            if r.window.is_pending() && r.reset.is_none() && !r.stopped {
                let f = Frame::MaxStreamData { id, max: r.window.limit() };
                if log.len() < MAX_SENT_FRAMES && f.encoded_len() <= w.remaining() && f.encode(w).is_some() {
                    r.window.sent();
                    let _ = log.push(SentFrame::MaxStreamData { id });
                }
            }
        }
        let Some(snd) = s.send.as_mut() else { return false };
        if let SendState::Reset { code, final_size } = snd.state {
            if snd.reset_pending {
                let f = Frame::StreamClose { id, code, final_size };
                if log.len() < MAX_SENT_FRAMES && f.encoded_len() <= w.remaining() && f.encode(w).is_some() {
                    snd.reset_pending = false;
                    let _ = log.push(SentFrame::StreamClose { id });
                }
            }
            return false;
        }
        let limit = snd.max_data.min(snd.buf.sent() + session_room);
        let mut wrote = false;
        while log.len() < MAX_SENT_FRAMES {
            let overhead = stream_frame_len(id, snd.buf.sent(), 0) + 8;
            let room = w.remaining().saturating_sub(overhead) as u64;
            let finishing = snd.state == SendState::Finishing;
            let Some((offset, len)) = snd.buf.next_range(room, limit) else {
                // A FIN with no data left to send.
                if finishing && !snd.fin_sent && snd.buf.sent() == snd.buf.written() {
                    let offset = snd.buf.written();
                    let f = Frame::Stream { id, offset, data: &[], fin: true };
                    if f.encoded_len() <= w.remaining() && f.encode(w).is_some() {
                        snd.fin_sent = true;
                        let _ = log.push(SentFrame::Stream { id, offset, len: 0, fin: true });
                        wrote = true;
                    }
                } else if snd.buf.sent() < snd.buf.written()
                    && snd.buf.sent() >= limit
                    && snd.blocked_reported != Some(limit)
                {
                    let f = Frame::StreamDataBlocked { id, limit };
                    if f.encoded_len() <= w.remaining() && f.encode(w).is_some() {
                        snd.blocked_reported = Some(limit);
                    }
                }
                break;
            };
            if len == 0 {
                break;
            }
            let new_bytes = (offset + len).saturating_sub(snd.buf.sent());
            let fin = finishing && offset + len == snd.buf.written();
            // Header, then the bytes straight from the send buffer.
            let ty = if fin { 0x22 } else { 0x10 };
            let header_ok =
                w.u8(ty).is_some() && w.varint(id).is_some() && w.varint(offset).is_some() && w.varint(len).is_some();
            if !header_ok || snd.buf.copy_into(offset, len, w).is_none() {
                break;
            }
            snd.buf.mark_sent(offset, len);
            if fin {
                snd.fin_sent = true;
            }
            self.send_data += new_bytes;
            let _ = log.push(SentFrame::Stream { id, offset, len: len as u32, fin });
            wrote = true;
            if w.remaining() < varint_len(id) + 12 {
                break;
            }
        }
        if wrote && snd.writable_again(buffer, unsent_limit) {
            snd.wants_writable = false;
            events.push_back(Event::StreamWritable { session, stream: StreamId(id) });
        }
        wrote
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams(types: &[u8]) -> Streams {
        streams_sized(types, 1000)
    }

    /// As `streams`, with `size` for every window and the send buffer.
    fn streams_sized(types: &[u8], size: u64) -> Streams {
        let set = AppFrameSet { types: bitmap(types), max: 100 };
        let limits = StreamLimits {
            stream_window: size,
            session_window: size,
            max_stream_window: size,
            max_session_window: size,
            max_streams_bidi: 4,
            max_streams_uni: 4,
            send_buffer: size,
            app_frames: set,
            app_queue: 2,
            max_stream_ranges: 4,
            max_session_ranges: 6,
        };
        let peer = PeerLimits {
            max_data: size,
            max_stream_data: size,
            max_streams_bidi: 4,
            max_streams_uni: 4,
            app_frames: set,
        };
        Streams::new(SessionId { index: 0, generation: 0 }, false, limits, peer, Instant::ZERO)
    }

    /// [ST-7]: out-of-order ranges are capped per stream and per session (4 and 6 here);
    /// a reset releases a stream's ranges, reading releases the ones read.
    #[test]
    fn range_caps_per_stream_and_session() {
        let mut s = streams(&[]);
        let mut ev = EventQueue::new();
        let (t, rtt) = (Instant::ZERO, Duration::from_millis(10));
        let (a, b, c) = (StreamId(1), StreamId(5), StreamId(9));
        for id in [a, b] {
            for off in [1, 3, 5] {
                s.on_stream_frame(t, rtt, id, off, b"x", false, &mut ev).unwrap();
            }
        }
        assert_eq!(s.recv_ranges(), 6);
        assert_eq!(s.on_stream_frame(t, rtt, c, 1, b"x", false, &mut ev), Err(StreamViolation::TooManyRanges));
        let mut s = streams(&[]);
        for off in [1, 3, 5, 7] {
            s.on_stream_frame(t, rtt, a, off, b"x", false, &mut ev).unwrap();
        }
        assert_eq!(s.on_stream_frame(t, rtt, a, 9, b"x", false, &mut ev), Err(StreamViolation::TooManyRanges));
        let mut s = streams(&[]);
        for off in [1, 3, 5] {
            s.on_stream_frame(t, rtt, a, off, b"x", false, &mut ev).unwrap();
            s.on_stream_frame(t, rtt, b, off, b"x", false, &mut ev).unwrap();
        }
        s.on_stream_close(t, a, 0, 6, &mut ev).unwrap();
        assert_eq!(s.recv_ranges(), 3, "the reset stream's ranges are released");
        s.on_stream_frame(t, rtt, b, 0, b"x", false, &mut ev).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(t, rtt, b, &mut buf), Ok((2, false)));
        assert_eq!(s.recv_ranges(), 2, "read ranges are released");
    }

    /// [AF-2]: an undeclared or oversize application frame is a violation; declared
    /// frames wait in a bounded queue and the stream holds the rest (flow control).
    #[test]
    fn app_frames_checked_and_bounded() {
        let mut s = streams(&[0x80, 0x81]);
        let mut ev = EventQueue::new();
        let app = StreamId::new(APP_INDEX, true, true);
        let rtt = Duration::from_millis(10);
        let frames = [0x80, 2, b'h', b'i', 0x81, 1, b'!', 0x80, 0];
        s.on_stream_frame(Instant::ZERO, rtt, app, 0, &frames, false, &mut ev).unwrap();
        assert_eq!(ev.iter().filter(|e| matches!(e, Event::AppFrameReadable { .. })).count(), 1);
        let mut buf = [0u8; 8];
        assert_eq!(s.recv_app_frame(Instant::ZERO, rtt, &mut buf, &mut ev), Some((0x80, 2)));
        assert_eq!(&buf[..2], b"hi");
        assert_eq!(s.recv_app_frame(Instant::ZERO, rtt, &mut buf, &mut ev), Some((0x81, 1)));
        assert_eq!(
            s.recv_app_frame(Instant::ZERO, rtt, &mut buf, &mut ev),
            Some((0x80, 0)),
            "moved up once room freed"
        );
        assert_eq!(s.recv_app_frame(Instant::ZERO, rtt, &mut buf, &mut ev), None);
        let undeclared = [0x90, 0];
        let r = s.on_stream_frame(Instant::ZERO, rtt, app, 9, &undeclared, false, &mut ev);
        assert_eq!(r, Err(StreamViolation::UndeclaredAppFrame));
        let mut s = streams(&[0x80]);
        let oversize = [0x80, 0x40, 200];
        assert_eq!(
            s.on_stream_frame(Instant::ZERO, rtt, app, 0, &oversize, false, &mut ev),
            Err(StreamViolation::FlowControl)
        );
        assert_eq!(s.send_app_frame(Instant::ZERO, 0x81, b"x"), Err(FrameError::Undeclared(0x81)));
        assert_eq!(s.send_app_frame(Instant::ZERO, 0x10, b"x"), Err(FrameError::NotAppType(0x10)));
        assert_eq!(s.send_app_frame(Instant::ZERO, 0x80, &[0; 101]), Err(FrameError::TooLarge { max: 100 }));
        assert_eq!(s.send_app_frame(Instant::ZERO, 0x80, &[0; 100]), Ok(()));
    }

    /// Sends everything sendable on `s` in small packets; returns the frames logged.
    fn send_all(s: &mut Streams) -> Vec<SentFrame> {
        let mut ev = EventQueue::new();
        let mut frames = Vec::new();
        loop {
            let mut buf = [0u8; 64];
            let mut w = Writer::new(&mut buf);
            let mut log = heapless::Vec::new();
            s.write_frames(&mut w, &mut log, &mut ev);
            if log.is_empty() {
                return frames;
            }
            frames.extend(log.iter().copied());
        }
    }

    /// Acknowledges the stream frames that lie wholly below `end`.
    fn ack_below(s: &mut Streams, frames: &[SentFrame], end: u64) {
        let mut ev = EventQueue::new();
        for f in frames {
            if matches!(f, SentFrame::Stream { offset, len, .. } if offset + u64::from(*len) <= end) {
                s.on_frame_acked(f, &mut ev);
            }
        }
    }

    fn spare_bytes(s: &Streams) -> usize {
        s.spares.iter().map(BytesMut::capacity).sum()
    }

    /// `spares` holds at most `send_buffer` bytes (1000 here) of memory: a kept chunk counts
    /// by its capacity, not by the bytes that were written into it. Chunks the app passed
    /// by value (`write_bytes`) can be small views of large allocations.
    #[test]
    fn spares_hold_at_most_the_send_buffer_in_memory() {
        let mut s = streams(&[]);
        let id = s.open(Instant::ZERO, true).unwrap();
        for _ in 0..9 {
            let mut m = BytesMut::with_capacity(100_000);
            m.extend_from_slice(&[7; 100]);
            assert_eq!(s.write(id, m.freeze()), Ok(100));
        }
        let frames = send_all(&mut s);
        ack_below(&mut s, &frames, 800);
        assert!(s.map.get(id.0).and_then(|x| x.send.as_ref()).is_some_and(|h| h.buf.unacked() > 0));
        let held = spare_bytes(&s);
        assert!(held <= 1000, "spares hold {held} bytes of memory; the send buffer is 1000");
    }

    /// Copying writes of any size (up to several chunks), under any window, with sending
    /// and acknowledgements in between: every byte taken is kept in order, nothing is
    /// taken beyond the allowance, and no write takes more than it was given.
    #[test]
    fn copying_writes_keep_every_byte_within_the_allowance() {
        quickcheck::QuickCheck::new().tests(200).quickcheck(copying_writes_model as fn(Vec<(u16, u8, u8)>) -> bool);
    }

    fn copying_writes_model(mut ops: Vec<(u16, u8, u8)>) -> bool {
        ops.truncate(24);
        let mut s = streams_sized(&[], 1 << 20);
        let id = s.open(Instant::ZERO, true).unwrap();
        let mut model: Vec<u8> = Vec::new();
        let mut ev = EventQueue::new();
        let mut sent_frames = Vec::new();
        let mut acked = 0u64;
        for (k, (size, window_k, action)) in ops.into_iter().enumerate() {
            s.follow_window(u64::from(window_k) * 1024);
            // Odd sizes up to ~128 KiB: several chunks.
            let len = usize::from(size % 128) * 1021 + usize::from(action);
            let data: Vec<u8> = (0..len).map(|i| (i / 7 + k * 13) as u8).collect();
            match s.write_copy(id, &data) {
                Ok(n) if n <= data.len() => {
                    model.extend_from_slice(&data[..n]);
                    let h = s.map.get(id.0).and_then(|x| x.send.as_ref()).unwrap();
                    if n > 0 && h.buf.written() - h.buf.sent() > s.unsent_limit {
                        return false;
                    }
                }
                Err(WriteError::Blocked) => {}
                _ => return false,
            }
            let h = s.map.get(id.0).and_then(|x| x.send.as_ref()).unwrap();
            if h.buf.written() != model.len() as u64 {
                return false;
            }
            for _ in 0..action % 4 * 8 {
                let mut buf = [0u8; 1200];
                let mut w = Writer::new(&mut buf);
                let mut log = heapless::Vec::new();
                s.write_frames(&mut w, &mut log, &mut ev);
                sent_frames.extend(log.iter().copied());
            }
            if action % 5 == 0 {
                for f in sent_frames.drain(..) {
                    if let SentFrame::Stream { offset, len, .. } = f {
                        acked = acked.max(offset + u64::from(len));
                    }
                    s.on_frame_acked(&f, &mut ev);
                }
            }
        }
        // What is not yet acknowledged is still held, byte for byte.
        let h = s.map.get_mut(id.0).and_then(|x| x.send.as_mut()).unwrap();
        let (from, to) = (acked.min(model.len() as u64), model.len() as u64);
        let mut out = alloc::vec![0u8; (to - from) as usize + 16];
        let mut w = Writer::new(&mut out);
        let held = to == from || h.buf.copy_into(from, to - from, &mut w).is_some();
        held && out[..(to - from) as usize] == model[from as usize..]
    }

    /// A copying write cut short by the room takes whole chunks, and none while more than
    /// half the unsent allowance waits; acknowledged whole chunks are written into again.
    #[test]
    fn room_limited_copying_writes_take_whole_chunks() {
        let mut s = streams_sized(&[], 1 << 20);
        s.follow_window(48 * 1024); // allowance: 96 KiB
        let id = s.open(Instant::ZERO, true).unwrap();
        let data = [7; 200_000];
        assert_eq!(s.write_copy(id, &data), Ok(3 * SEND_CHUNK), "96 KiB of room: three whole chunks");
        assert_eq!(s.write_copy(id, &data[..1000]), Err(WriteError::Blocked), "no room at all");
        let frames = send_all(&mut s);
        ack_below(&mut s, &frames, 2 * SEND_CHUNK as u64 + 100);
        assert_eq!(s.spares.len(), 2, "the two acknowledged chunks are kept");
        // All sent: the whole allowance is room again, filled from the spares first.
        assert_eq!(s.write_copy(id, &data), Ok(3 * SEND_CHUNK));
        assert!(s.spares.is_empty(), "both spares written into again");
        // 20 000 bytes go out: 78 304 B unsent, over half the allowance, 20 000 B of room.
        let mut sent = 0;
        while sent < 20_000 {
            let mut buf = [0u8; 1000];
            let mut w = Writer::new(&mut buf);
            let mut log = heapless::Vec::new();
            s.write_frames(&mut w, &mut log, &mut EventQueue::new());
            sent += log
                .iter()
                .map(|f| if let SentFrame::Stream { len, .. } = f { *len as usize } else { 0 })
                .sum::<usize>();
        }
        assert_eq!(s.write_copy(id, &data), Err(WriteError::Blocked), "under a chunk of room, more than half queued");
        assert_eq!(s.write_copy(id, &data[..100]), Ok(100), "a write that fits whole is taken");
    }

    /// A stream the peer stopped (STOP_SENDING) writes nothing more and, its buffer
    /// cleared, never again has nothing unacknowledged: the spares must go as on a local
    /// reset, not stay with the session (idle sessions hold ~2.5 KB in all).
    #[test]
    fn spares_dropped_when_the_peer_stops_the_stream() {
        let mut s = streams_sized(&[], 1 << 20);
        let mut ev = EventQueue::new();
        let id = s.open(Instant::ZERO, true).unwrap();
        let chunk = [7; SEND_CHUNK];
        for _ in 0..5 {
            assert_eq!(s.write_copy(id, &chunk), Ok(SEND_CHUNK));
        }
        let frames = send_all(&mut s);
        // Written, not sent yet, when the peer stops the stream.
        assert_eq!(s.write_copy(id, &chunk), Ok(SEND_CHUNK));
        ack_below(&mut s, &frames, 4 * SEND_CHUNK as u64);
        assert!(!s.spares.is_empty(), "acknowledged chunks kept for reuse");
        s.on_stop_sending(Instant::ZERO, id, 9, &mut ev).unwrap();
        // What was still in flight is acknowledged; the session goes idle.
        ack_below(&mut s, &frames, u64::MAX);
        s.shrink_if_idle();
        assert_eq!(spare_bytes(&s), 0, "spares kept after the peer stopped the only stream");
    }

    #[test]
    fn stream_id_bits() {
        let id = StreamId::new(5, true, true);
        assert_eq!(id.0, 5 << 2 | 3);
        assert!(id.is_uni() && id.opened_by_responder());
        assert_eq!(id.index(), 5);
    }
}
