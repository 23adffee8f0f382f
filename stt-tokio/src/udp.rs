//! UDP I/O through `quinn-udp`: batched receive with GRO, and GSO trains built from
//! consecutive equal-size datagrams to the same destination, falling back to single
//! datagrams where the kernel refuses segmentation offload.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Receive buffers per batch.
const RECV_BATCH: usize = 8;
/// Bytes per receive buffer (room for a GRO train).
const RECV_BUF: usize = 65_536;

/// The socket with its offload state and buffers.
pub(crate) struct Udp {
    pub(crate) socket: UdpSocket,
    state: UdpSocketState,
    max_segments: usize,
    recv_bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
    /// Datagrams waiting to leave as one GSO train: `batch[..used]`. The buffer keeps its
    /// full size; the core writes the next datagram straight into `batch[used..]`.
    batch: Vec<u8>,
    used: usize,
    /// Largest datagram the core writes.
    max_payload: usize,
    /// Holds one datagram while the train before it is sent.
    spare: Vec<u8>,
    batch_dst: Option<SocketAddr>,
    batch_seg: usize,
    batch_count: usize,
}

impl Udp {
    pub(crate) fn new(socket: UdpSocket, max_payload: usize) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        // A GSO send carries at most 64 KiB in all.
        let max_segments = state.max_gso_segments().clamp(1, 64).min((65_000 / max_payload.max(1)).max(1));
        // A train of max_segments datagrams plus room for the one being written.
        Ok(Self {
            socket,
            state,
            max_segments,
            recv_bufs: (0..RECV_BATCH).map(|_| vec![0u8; RECV_BUF]).collect(),
            metas: vec![RecvMeta::default(); RECV_BATCH],
            batch: vec![0u8; (max_segments + 1) * max_payload],
            used: 0,
            max_payload,
            spare: Vec::with_capacity(max_payload),
            batch_dst: None,
            batch_seg: 0,
            batch_count: 0,
        })
    }

    /// Receives what is waiting (without blocking) and hands every datagram (GRO trains
    /// split by their stride) to `deliver`. Returns how many datagrams were delivered.
    pub(crate) fn recv(&mut self, mut deliver: impl FnMut(SocketAddr, &mut [u8])) -> io::Result<usize> {
        let Self { socket, state, recv_bufs, metas, .. } = self;
        let mut slices: Vec<IoSliceMut<'_>> = recv_bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let sock: &UdpSocket = socket;
        let n = match sock.try_io(Interest::READABLE, || state.recv(sock.into(), &mut slices, metas)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut delivered = 0;
        for (meta, buf) in metas.iter().zip(slices.iter_mut()).take(n) {
            let stride = meta.stride.max(1);
            let mut off = 0;
            while off < meta.len {
                let end = (off + stride).min(meta.len);
                deliver(meta.addr, &mut buf[off..end]);
                delivered += 1;
                off = end;
            }
        }
        Ok(delivered)
    }

    /// Where the core writes the next datagram (`max_payload` bytes), in place in the train.
    pub(crate) fn tail(&mut self) -> &mut [u8] {
        let (start, end) = (self.used, self.used + self.max_payload);
        &mut self.batch[start..end]
    }

    /// Commits the `len` bytes just written into [`tail`](Self::tail) as a datagram to
    /// `dst`: consecutive equal-size datagrams to one destination leave as one GSO send.
    pub(crate) async fn commit(&mut self, dst: SocketAddr, len: usize) {
        let start = self.used;
        let joins = self.batch_dst == Some(dst)
            && len <= self.batch_seg
            && self.batch_count < self.max_segments
            && start % self.batch_seg.max(1) == 0;
        if !joins {
            if self.batch_count > 0 {
                // Send the train before it; keep this datagram (a copy only at train ends).
                self.spare.clear();
                self.spare.extend_from_slice(&self.batch[start..start + len]);
                self.flush().await;
                self.batch[..len].copy_from_slice(&self.spare);
            }
            self.batch_dst = Some(dst);
            self.batch_seg = len;
        }
        self.used += len;
        self.batch_count += 1;
        // A shorter datagram ends a train.
        if len < self.batch_seg || self.max_segments == 1 || self.batch_count == self.max_segments {
            self.flush().await;
        }
    }

    /// Sends the pending train.
    pub(crate) async fn flush(&mut self) {
        let Some(dst) = self.batch_dst.take() else { return };
        let seg = (self.batch_count > 1).then_some(self.batch_seg);
        if let Err(e) = self.send_now(dst, 0, self.used, seg).await {
            if seg.is_some() {
                // GSO refused: fall back to single datagrams from now on.
                tracing::debug!(error = %e, "segmentation offload failed; sending datagrams one by one");
                self.max_segments = 1;
                let step = self.batch_seg.max(1);
                let mut off = 0;
                while off < self.used {
                    let end = (off + step).min(self.used);
                    if let Err(e) = self.send_now(dst, off, end, None).await {
                        tracing::debug!(error = %e, "send failed");
                    }
                    off = end;
                }
            } else {
                tracing::debug!(error = %e, "send failed");
            }
        }
        self.used = 0;
        self.batch_count = 0;
    }

    async fn send_now(&self, dst: SocketAddr, from: usize, to: usize, segment_size: Option<usize>) -> io::Result<()> {
        let t = Transmit { destination: dst, ecn: None, contents: &self.batch[from..to], segment_size, src_ip: None };
        loop {
            match self.socket.try_io(Interest::WRITABLE, || self.state.try_send((&self.socket).into(), &t)) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.socket.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}
