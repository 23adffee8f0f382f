//! Stream handles implementing `AsyncWrite` / `AsyncRead`.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use stt_proto::StreamId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::driver::Cmd;
use crate::node::Node;
use crate::shared::{lock, SessionShared, StreamShared, STREAM_BUFFER};

/// A stream operation failed because the stream or its session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamClosed(pub String);

impl fmt::Display for StreamClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StreamClosed {}

fn closed(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, StreamClosed(msg.into()))
}

/// The sending half of a stream.
pub struct SendStream {
    node: Node,
    session: Arc<SessionShared>,
    stream: Arc<StreamShared>,
    id: StreamId,
}

impl SendStream {
    pub(crate) fn new(node: Node, session: Arc<SessionShared>, id: StreamId) -> Self {
        let stream = session.stream(id);
        Self { node, session, stream, id }
    }

    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    fn nudge(&self) {
        self.node.send(Cmd::Flush { session: self.session.id, stream: self.id });
    }

    /// Ends the stream and waits until the peer acknowledged every byte and the end.
    ///
    /// # Errors
    /// [`StreamClosed`] if the stream was stopped or the session ended first.
    pub async fn finish(&mut self) -> Result<(), StreamClosed> {
        lock(&self.stream.send).finish = true;
        self.nudge();
        loop {
            let notified = self.stream.finished.notified();
            {
                let send = lock(&self.stream.send);
                if send.acked {
                    return Ok(());
                }
                if let Some(e) = &send.error {
                    return Err(StreamClosed(e.clone()));
                }
            }
            if let Some(e) = self.session.ended() {
                return Err(StreamClosed(e.to_string()));
            }
            notified.await;
        }
    }

    /// Abandons the stream with `code` (the peer sees a reset).
    pub fn reset(&mut self, code: u64) {
        let mut send = lock(&self.stream.send);
        send.queue.clear();
        send.queued = 0;
        send.reset = Some(code);
        drop(send);
        self.node.send(Cmd::Reset { session: self.session.id, stream: self.id, code });
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut send = lock(&this.stream.send);
        if let Some(e) = &send.error {
            return Poll::Ready(Err(closed(e.clone())));
        }
        if let Some(e) = this.session.ended() {
            return Poll::Ready(Err(closed(e.to_string())));
        }
        if send.finish || send.reset.is_some() {
            return Poll::Ready(Err(closed("stream already finished")));
        }
        if send.queued >= STREAM_BUFFER {
            send.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(STREAM_BUFFER - send.queued);
        let was_empty = send.queue.is_empty();
        send.queue.push_back(Bytes::copy_from_slice(&buf[..n]));
        send.queued += n;
        drop(send);
        if was_empty {
            this.nudge();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        lock(&this.stream.send).finish = true;
        this.nudge();
        Poll::Ready(Ok(()))
    }
}

/// The receiving half of a stream.
pub struct RecvStream {
    node: Node,
    session: Arc<SessionShared>,
    stream: Arc<StreamShared>,
    id: StreamId,
}

impl RecvStream {
    pub(crate) fn new(node: Node, session: Arc<SessionShared>, id: StreamId) -> Self {
        let stream = session.stream(id);
        let r = Self { node, session, stream, id };
        // Pull whatever already arrived.
        r.node.send(Cmd::Flush { session: r.session.id, stream: id });
        r
    }

    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Asks the peer to stop sending; unread data is discarded.
    pub fn stop(&mut self, code: u64) {
        self.node.send(Cmd::StopSending { session: self.session.id, stream: self.id, code });
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut recv = lock(&this.stream.recv);
        if !recv.buf.is_empty() {
            let n = recv.buf.len().min(out.remaining());
            out.put_slice(&recv.buf[..n]);
            recv.buf.advance(n);
            let was_stalled = recv.stalled;
            recv.stalled = false;
            drop(recv);
            if was_stalled {
                this.node.send(Cmd::Flush { session: this.session.id, stream: this.id });
            }
            return Poll::Ready(Ok(()));
        }
        if recv.fin {
            return Poll::Ready(Ok(()));
        }
        if let Some(code) = recv.reset {
            return Poll::Ready(Err(closed(format!("peer reset the stream with code {code}"))));
        }
        if let Some(e) = this.session.ended() {
            return Poll::Ready(Err(closed(e.to_string())));
        }
        recv.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
