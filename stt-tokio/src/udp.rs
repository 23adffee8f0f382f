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
    /// Datagrams waiting to leave as one GSO train.
    batch: Vec<u8>,
    batch_dst: Option<SocketAddr>,
    batch_seg: usize,
    batch_count: usize,
}

impl Udp {
    pub(crate) fn new(socket: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        let max_segments = state.max_gso_segments().clamp(1, 16);
        Ok(Self {
            socket,
            state,
            max_segments,
            recv_bufs: (0..RECV_BATCH).map(|_| vec![0u8; RECV_BUF]).collect(),
            metas: vec![RecvMeta::default(); RECV_BATCH],
            batch: Vec::with_capacity(16 * 1500),
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

    /// Queues a datagram; consecutive equal-size datagrams to one destination leave as a
    /// single GSO send.
    pub(crate) async fn send(&mut self, dst: SocketAddr, data: &[u8]) {
        let joins = self.batch_dst == Some(dst)
            && data.len() <= self.batch_seg
            && self.batch_count < self.max_segments
            && self.batch.len() % self.batch_seg.max(1) == 0;
        if !joins {
            self.flush().await;
            self.batch_dst = Some(dst);
            self.batch_seg = data.len();
        }
        self.batch.extend_from_slice(data);
        self.batch_count += 1;
        // A shorter datagram ends a train.
        if data.len() < self.batch_seg || self.max_segments == 1 {
            self.flush().await;
        }
    }

    /// Sends the pending train.
    pub(crate) async fn flush(&mut self) {
        let Some(dst) = self.batch_dst.take() else { return };
        let seg = (self.batch_count > 1).then_some(self.batch_seg);
        if let Err(e) = self.send_now(dst, seg).await {
            if seg.is_some() {
                // GSO refused: fall back to single datagrams from now on.
                tracing::debug!(error = %e, "segmentation offload failed; sending datagrams one by one");
                self.max_segments = 1;
                let chunks: Vec<Vec<u8>> = self.batch.chunks(self.batch_seg).map(<[u8]>::to_vec).collect();
                for c in chunks {
                    self.batch.clear();
                    self.batch.extend_from_slice(&c);
                    if let Err(e) = self.send_now(dst, None).await {
                        tracing::debug!(error = %e, "send failed");
                    }
                }
            } else {
                tracing::debug!(error = %e, "send failed");
            }
        }
        self.batch.clear();
        self.batch_count = 0;
    }

    async fn send_now(&self, dst: SocketAddr, segment_size: Option<usize>) -> io::Result<()> {
        let t = Transmit { destination: dst, ecn: None, contents: &self.batch, segment_size, src_ip: None };
        loop {
            match self.socket.try_io(Interest::WRITABLE, || self.state.try_send((&self.socket).into(), &t)) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.socket.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}
