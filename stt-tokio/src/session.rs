//! The session handle: streams, datagrams, application frames, stats, close.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use stt_proto::{DatagramError, FrameError, NodeId, PathAddr, SessionId, SessionStats, StreamError, StreamId};
use tokio::sync::oneshot;

use crate::driver::Cmd;
use crate::node::Node;
use crate::shared::{lock, Ended, SessionShared};
use crate::stream::{RecvStream, SendStream};

/// A handshake that did not produce a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectError(pub Ended);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect failed: {}", self.0)
    }
}

impl std::error::Error for ConnectError {}

/// An authenticated, encrypted session with a peer node. Cheap to clone.
#[doc(alias = "STTSession")]
#[derive(Clone)]
pub struct Session {
    node: Node,
    shared: Arc<SessionShared>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("id", &self.shared.id).field("peer", &self.shared.peer).finish()
    }
}

impl Session {
    pub(crate) fn new(node: Node, shared: Arc<SessionShared>) -> Self {
        Self { node, shared }
    }

    /// The session's id within its node.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// The peer's authenticated node id.
    pub fn peer_node_id(&self) -> NodeId {
        self.shared.peer
    }

    /// The peer's current address.
    pub fn remote(&self) -> PathAddr {
        *lock(&self.shared.remote)
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        self.shared.ended()
    }

    /// Waits until the session ends.
    pub async fn closed(&self) -> Ended {
        loop {
            let notified = self.shared.ended_notify.notified();
            if let Some(e) = self.shared.ended() {
                return e;
            }
            notified.await;
        }
    }

    /// Current counters (RTT, congestion window, losses, ...).
    pub async fn stats(&self) -> Option<SessionStats> {
        let (reply, rx) = oneshot::channel();
        self.node.send(Cmd::Stats { session: self.shared.id, reply });
        rx.await.ok().flatten()
    }

    /// Derives keying material bound to this session (both sides get the same bytes for
    /// the same label and context; see the spec's exporter).
    ///
    /// # Errors
    /// [`stt_proto::ExportError`] if the session is gone or `out` is over 8160 bytes.
    pub async fn export_keying_material(
        &self,
        label: &[u8],
        context: &[u8],
        out: &mut [u8],
    ) -> Result<(), stt_proto::ExportError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::Export {
            session: self.shared.id,
            label: label.to_vec(),
            context: context.to_vec(),
            len: out.len(),
            reply,
        };
        if !self.node.send(cmd) {
            return Err(stt_proto::ExportError::NotEstablished);
        }
        let bytes = rx.await.unwrap_or(Err(stt_proto::ExportError::NotEstablished))?;
        out.copy_from_slice(&bytes);
        Ok(())
    }

    async fn open(&self, uni: bool) -> Result<StreamId, StreamError> {
        loop {
            let notified = self.shared.incoming.notified();
            let (reply, rx) = oneshot::channel();
            if !self.node.send(Cmd::Open { session: self.shared.id, uni, reply }) {
                return Err(StreamError::NotEstablished);
            }
            match rx.await.unwrap_or(Err(StreamError::NotEstablished)) {
                Ok(id) => return Ok(id),
                // At the peer's stream limit: wait until it raises it.
                Err(StreamError::Blocked) if self.shared.ended().is_none() => notified.await,
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens a bidirectional stream (waits while the peer's stream limit is reached).
    ///
    /// # Errors
    /// [`StreamError`] if the session is gone.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), StreamError> {
        let id = self.open(false).await?;
        Ok((self.send_stream(id), self.recv_stream(id)))
    }

    /// Opens a unidirectional stream.
    ///
    /// # Errors
    /// [`StreamError`] if the session is gone.
    pub async fn open_uni(&self) -> Result<SendStream, StreamError> {
        let id = self.open(true).await?;
        Ok(self.send_stream(id))
    }

    async fn accept(&self, uni: bool) -> Option<StreamId> {
        loop {
            let notified = self.shared.incoming.notified();
            let q = if uni { &self.shared.incoming_uni } else { &self.shared.incoming_bi };
            if let Some(id) = lock(q).pop_front() {
                return Some(id);
            }
            if self.shared.ended().is_some() {
                return None;
            }
            notified.await;
        }
    }

    /// Waits for the next bidirectional stream the peer opened.
    pub async fn accept_bi(&self) -> Option<(SendStream, RecvStream)> {
        let id = self.accept(false).await?;
        Some((self.send_stream(id), self.recv_stream(id)))
    }

    /// Waits for the next unidirectional stream the peer opened.
    pub async fn accept_uni(&self) -> Option<RecvStream> {
        let id = self.accept(true).await?;
        Some(self.recv_stream(id))
    }

    fn send_stream(&self, id: StreamId) -> SendStream {
        SendStream::new(self.node.clone(), self.shared.clone(), id)
    }

    fn recv_stream(&self, id: StreamId) -> RecvStream {
        RecvStream::new(self.node.clone(), self.shared.clone(), id)
    }

    /// Sends an unreliable datagram; when the queue is full the oldest queued one is dropped.
    ///
    /// # Errors
    /// [`DatagramError`] (too large, disabled, not established).
    pub async fn send_datagram(&self, data: Bytes) -> Result<(), DatagramError> {
        let (reply, rx) = oneshot::channel();
        if !self.node.send(Cmd::Datagram { session: self.shared.id, data, drop_oldest: true, reply }) {
            return Err(DatagramError::NotEstablished);
        }
        rx.await.unwrap_or(Err(DatagramError::NotEstablished))
    }

    /// Receives the next datagram; `None` once the session ended.
    pub async fn recv_datagram(&self) -> Option<Bytes> {
        loop {
            let notified = self.shared.datagram_ready.notified();
            if let Some(d) = lock(&self.shared.datagrams).pop_front() {
                return Some(d);
            }
            if self.shared.ended().is_some() {
                return None;
            }
            notified.await;
        }
    }

    /// Sends an application frame (type 0x80–0xFF, declared by the peer).
    ///
    /// # Errors
    /// [`FrameError`] (undeclared type, too large, buffer full, not established).
    pub async fn send_frame(&self, ty: u8, body: Bytes) -> Result<(), FrameError> {
        let mut r = self.node.send_to_sessions(&[self.shared.id], ty, body).await;
        r.pop().map_or(Err(FrameError::NotEstablished), |(_, r)| r)
    }

    /// Receives the next application frame `(type, body)`; `None` once the session ended.
    pub async fn recv_frame(&self) -> Option<(u8, Bytes)> {
        loop {
            let notified = self.shared.frame_ready.notified();
            if let Some(f) = lock(&self.shared.frames).pop_front() {
                return Some(f);
            }
            if self.shared.ended().is_some() {
                return None;
            }
            notified.await;
        }
    }

    /// Closes the session with an application code.
    pub fn close(&self, code: u64) {
        self.node.send(Cmd::Close { session: self.shared.id, code });
    }
}
