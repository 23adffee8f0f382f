//! UDP I/O through `quinn-udp`: batched receive with GRO, and GSO trains built from
//! consecutive equal-size datagrams to the same destination, falling back to single
//! datagrams where the kernel refuses segmentation offload.
//!
//! Everything here is non-blocking: a send that would block leaves the train in place
//! and reports it, so the caller (an application task or the driver, holding the node
//! lock) never waits on the socket; the driver waits for writability and flushes.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Receive buffers per batch.
pub(crate) const RECV_BATCH: usize = 8;
/// Buffers an application task fills when it takes input itself (`State::recv_inline`).
pub(crate) const INLINE_BATCH: usize = 2;
/// Bytes per receive buffer (room for a GRO train).
const RECV_BUF: usize = 65_536;
/// Kernel buffer sizes a node asks for on its UDP socket ([`Node::bind_with`](crate::Node::bind_with)).
///
/// A node with many sessions receives bursts from all of them at once: the usual default
/// receive buffer (~208 KiB on Linux) overflows with a thousand active peers, and every
/// datagram the kernel drops then waits for loss recovery. The request is best effort: the
/// kernel caps it (on Linux at `net.core.rmem_max` / `net.core.wmem_max`), a buffer that is
/// already larger is left alone, and [`Node::socket_buffers`](crate::Node::socket_buffers)
/// reports what the kernel granted (also logged at `debug` level when the node starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketOptions {
    /// `SO_RCVBUF` to ask for, in bytes; `None` keeps the system default. Default 4 MiB.
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF` to ask for, in bytes; `None` keeps the system default. Default 4 MiB.
    pub send_buffer: Option<usize>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self { recv_buffer: Some(4 << 20), send_buffer: Some(4 << 20) }
    }
}

impl SocketOptions {
    /// Sets the receive buffer to ask for (`None`: the system default).
    pub fn recv_buffer(mut self, bytes: Option<usize>) -> Self {
        self.recv_buffer = bytes;
        self
    }

    /// Sets the send buffer to ask for (`None`: the system default).
    pub fn send_buffer(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer = bytes;
        self
    }
}

/// The socket with its offload state; shared by every task that sends.
pub(crate) struct UdpIo {
    pub(crate) socket: UdpSocket,
    state: UdpSocketState,
}

impl UdpIo {
    pub(crate) fn new(socket: UdpSocket, options: SocketOptions) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        let sock = socket2::SockRef::from(&socket);
        if let Some(want) = options.recv_buffer {
            if sock.recv_buffer_size().is_ok_and(|n| n < want) {
                if let Err(e) = sock.set_recv_buffer_size(want) {
                    tracing::debug!(error = %e, "cannot enlarge the socket receive buffer");
                }
            }
        }
        if let Some(want) = options.send_buffer {
            if sock.send_buffer_size().is_ok_and(|n| n < want) {
                if let Err(e) = sock.set_send_buffer_size(want) {
                    tracing::debug!(error = %e, "cannot enlarge the socket send buffer");
                }
            }
        }
        let io = Self { socket, state };
        let (recv, send) = io.buffer_sizes();
        tracing::debug!(recv, send, "socket buffers (bytes, as the kernel reports them)");
        Ok(io)
    }

    /// The socket's receive and send buffer sizes as the kernel reports them (0 if unknown).
    pub(crate) fn buffer_sizes(&self) -> (usize, usize) {
        let sock = socket2::SockRef::from(&self.socket);
        (sock.recv_buffer_size().unwrap_or(0), sock.send_buffer_size().unwrap_or(0))
    }

    /// Receives what is waiting without blocking, into at most `limit` buffers; `Ok(0)`
    /// when nothing is.
    pub(crate) fn try_recv(&self, bufs: &mut RecvBufs, limit: usize) -> io::Result<usize> {
        let RecvBufs { bufs, metas, filled } = bufs;
        // Only as many slices as buffers: an empty slice would truncate a datagram.
        let used = bufs.len().min(RECV_BATCH).min(limit.max(1));
        let mut slices: [IoSliceMut<'_>; RECV_BATCH] = {
            let mut it = bufs.iter_mut();
            std::array::from_fn(|_| IoSliceMut::new(it.next().map_or(&mut [][..], |b| &mut b[..])))
        };
        let sock = &self.socket;
        let n = match sock
            .try_io(Interest::READABLE, || self.state.recv(sock.into(), &mut slices[..used], &mut metas[..used]))
        {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        *filled = n;
        Ok(n)
    }

    fn try_send(&self, dst: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> io::Result<()> {
        let t = Transmit { destination: dst, ecn: None, contents, segment_size, src_ip: None };
        self.socket.try_io(Interest::WRITABLE, || self.state.try_send((&self.socket).into(), &t))
    }

    fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }
}

/// Full receive batches ([`RECV_BATCH`] × 64 KiB) not in use, shared by every node of the
/// process: a driver takes one for a receive and gives it back once the datagrams are
/// delivered, before it sleeps. A node alone reuses its one batch as before; a process
/// with many nodes (a test harness, a load generator, a host of several identities) keeps
/// a few warm batches in all instead of 512 KiB per node, touched again on every wake-up.
static POOL: std::sync::Mutex<Vec<RecvBufs>> = std::sync::Mutex::new(Vec::new());

/// Batches the pool keeps (at most 8 MiB): as many drivers as receive at one moment (one
/// per runtime thread) find one waiting; more are allocated and dropped when returned.
const POOL_KEEP: usize = 16;

/// The driver's receive buffers (owned by the driver task: receiving takes no lock).
pub(crate) struct RecvBufs {
    bufs: Vec<Vec<u8>>,
    metas: [RecvMeta; RECV_BATCH],
    filled: usize,
}

impl RecvBufs {
    /// A full batch of zeroed buffers.
    fn new() -> Self {
        Self { bufs: (0..RECV_BATCH).map(|_| vec![0u8; RECV_BUF]).collect(), metas: Default::default(), filled: 0 }
    }

    /// A full batch from the process-wide pool (or a new one).
    pub(crate) fn take() -> Self {
        let pooled = POOL.lock().ok().and_then(|mut p| p.pop());
        pooled.unwrap_or_else(Self::new)
    }

    /// Gives a full batch back to the pool (dropped if the pool is full).
    pub(crate) fn give_back(mut self) {
        self.filled = 0;
        if let Ok(mut p) = POOL.lock() {
            if p.len() < POOL_KEEP {
                p.push(self);
            }
        }
    }

    /// Hands every datagram of the last receive (GRO trains split by their stride) to
    /// `deliver`; returns how many.
    pub(crate) fn deliver(&mut self, mut deliver: impl FnMut(SocketAddr, &mut [u8])) -> usize {
        let mut delivered = 0;
        for (meta, buf) in self.metas.iter().zip(self.bufs.iter_mut()).take(self.filled) {
            let stride = meta.stride.max(1);
            let len = meta.len.min(buf.len());
            let mut off = 0;
            while off < len {
                let end = (off + stride).min(len);
                deliver(meta.addr, &mut buf[off..end]);
                delivered += 1;
                off = end;
            }
        }
        self.filled = 0;
        delivered
    }
}

/// Datagrams waiting to leave as one GSO train: `batch[..used]`, `count` datagrams of
/// `seg` bytes (the last may be shorter) to `dst`. The core writes the next datagram
/// straight into `batch[used..]`.
pub(crate) struct SendTrain {
    batch: Vec<u8>,
    used: usize,
    count: usize,
    seg: usize,
    dst: Option<SocketAddr>,
    max_payload: usize,
    max_segments: usize,
    /// A datagram that does not join the train waits here while the train is sent.
    spare: Vec<u8>,
    parked: Option<(SocketAddr, usize)>,
}

impl SendTrain {
    pub(crate) fn new(io: &UdpIo, max_payload: usize) -> Self {
        // A GSO send carries at most 64 KiB in all.
        let max_segments = io.max_gso_segments().clamp(1, 64).min((65_000 / max_payload.max(1)).max(1));
        Self {
            batch: vec![0u8; (max_segments + 1) * max_payload],
            used: 0,
            count: 0,
            seg: 0,
            dst: None,
            max_payload,
            max_segments,
            spare: vec![0u8; max_payload],
            parked: None,
        }
    }

    /// Where the core writes the next datagram (`max_payload` bytes), in place in the train.
    pub(crate) fn tail(&mut self) -> &mut [u8] {
        let (start, end) = (self.used, self.used + self.max_payload);
        &mut self.batch[start..end]
    }

    /// Commits the `len` bytes just written into [`tail`](Self::tail) as a datagram to
    /// `dst`. Returns false when the socket would block: the datagram is kept, and nothing
    /// more may be written until [`flush`](Self::flush) returns true.
    pub(crate) fn commit(&mut self, io: &UdpIo, dst: SocketAddr, len: usize) -> bool {
        let start = self.used;
        let joins = self.dst == Some(dst)
            && len <= self.seg
            && self.count < self.max_segments
            && start.is_multiple_of(self.seg.max(1));
        if self.count > 0 && !joins {
            // Send the train before it; keep this datagram aside (a copy only at train ends).
            self.spare[..len].copy_from_slice(&self.batch[start..start + len]);
            self.parked = Some((dst, len));
            if !self.send_train(io) {
                return false;
            }
            self.unpark();
        } else {
            if self.count == 0 {
                self.dst = Some(dst);
                self.seg = len;
            }
            self.used += len;
            self.count += 1;
        }
        // A shorter datagram ends a train.
        if len < self.seg || self.max_segments == 1 || self.count == self.max_segments {
            return self.flush(io);
        }
        true
    }

    /// Sends everything pending. Returns false when the socket would block (the rest
    /// stays queued; call again once it is writable).
    pub(crate) fn flush(&mut self, io: &UdpIo) -> bool {
        loop {
            if !self.send_train(io) {
                return false;
            }
            if self.parked.is_none() {
                return true;
            }
            self.unpark();
        }
    }

    /// Whether a datagram waits for the socket.
    pub(crate) fn is_pending(&self) -> bool {
        self.count > 0 || self.parked.is_some()
    }

    fn unpark(&mut self) {
        if let Some((dst, len)) = self.parked.take() {
            self.batch[..len].copy_from_slice(&self.spare[..len]);
            self.dst = Some(dst);
            self.seg = len;
            self.used = len;
            self.count = 1;
        }
    }

    /// Sends the train; false if the socket would block (the train is kept).
    fn send_train(&mut self, io: &UdpIo) -> bool {
        let Some(dst) = self.dst else { return true };
        let seg = (self.count > 1).then_some(self.seg);
        match io.try_send(dst, &self.batch[..self.used], seg) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if seg.is_some() => {
                // GSO refused: fall back to single datagrams from now on. What the socket
                // refuses now is lost like any datagram; loss recovery resends it.
                tracing::debug!(error = %e, "segmentation offload failed; sending datagrams one by one");
                self.max_segments = 1;
                let step = self.seg.max(1);
                for chunk in self.batch[..self.used].chunks(step) {
                    if let Err(e) = io.try_send(dst, chunk, None) {
                        tracing::debug!(error = %e, "send failed");
                    }
                }
            }
            // An ICMP error from an earlier datagram, an unreachable address: UDP loses it.
            Err(e) => tracing::debug!(error = %e, "send failed"),
        }
        self.used = 0;
        self.count = 0;
        self.dst = None;
        true
    }
}
