//! Stream handles implementing `AsyncWrite` / `AsyncRead`. Reads and writes run the core
//! in the caller's task under the node lock: bytes go from the caller's buffer into the
//! core's send buffer and, on the other side, from the core's reassembly buffer into the
//! caller's buffer. Nothing is buffered in between, so the core's flow control is the
//! only limit on what a peer can make this node hold.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use stt_proto::{ReadError, StreamId, WriteError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::session::Session;
use crate::shared::Ended;

/// Why a stream operation failed. Carried inside the `io::Error` of `AsyncRead` /
/// `AsyncWrite` (kind `ConnectionReset`); get it back with [`StreamClosed::of`].
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
/// # let shared = SharedSeed::random();
/// # let id = |s: &SharedSeed| Identity::new(NodeSeed::random(), s.clone());
/// # let a = Node::bind("127.0.0.1:0".parse()?, Config::default(), id(&shared)).await?;
/// # let b = Node::bind("127.0.0.1:0".parse()?, Config::default().app_frame_types(&[0x90]), id(&shared)).await?;
/// # let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
/// # let (s, r) = (s?, r.expect("b is running"));
/// use stt_tokio::StreamClosed;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let mut w = s.open_uni().await?;
/// w.write_all(b"unwanted").await?;
/// let mut rx = r.accept_uni().await.expect("a stream");
/// rx.stop(9); // the reader asks the writer to stop, with a code
/// assert_eq!(w.finish().await, Err(StreamClosed::Stopped(9)));
/// // Through `AsyncRead`, the same error comes inside an `io::Error`.
/// let mut w = s.open_uni().await?;
/// w.write_all(b"abandoned").await?;
/// let mut rx = r.accept_uni().await.expect("a stream");
/// w.reset(4);
/// let e = rx.read_to_end(&mut Vec::new()).await.unwrap_err();
/// assert_eq!(StreamClosed::of(&e), Some(StreamClosed::Reset(4)));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamClosed {
    /// The peer reset (abandoned) the stream with this code.
    Reset(u64),
    /// The peer asked this side to stop sending, with this code.
    Stopped(u64),
    /// The session ended.
    SessionClosed(Ended),
    /// This side already finished or reset the stream.
    Finished,
}

impl StreamClosed {
    /// The `StreamClosed` inside an I/O error from a stream, if it is one.
    pub fn of(e: &io::Error) -> Option<StreamClosed> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<StreamClosed>()).copied()
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, self)
    }
}

impl fmt::Display for StreamClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamClosed::Reset(c) => write!(f, "peer reset the stream with code {c}"),
            StreamClosed::Stopped(c) => write!(f, "peer stopped the stream with code {c}"),
            StreamClosed::SessionClosed(e) => write!(f, "{e}"),
            StreamClosed::Finished => f.write_str("stream already finished or reset"),
        }
    }
}

impl std::error::Error for StreamClosed {}

/// How a stream ends when its handle is dropped, and what the handles share.
struct Handle {
    session: Session,
    id: StreamId,
}

impl Handle {
    fn new(session: Session, id: StreamId) -> Self {
        {
            let shared = session.node().shared();
            shared.lock().add_stream_handle(session.id(), id);
        }
        Self { session, id }
    }

    fn gone(&self) -> StreamClosed {
        StreamClosed::SessionClosed(self.session.ended().unwrap_or(Ended::NodeGone))
    }

    /// Releases the handle after `last` ran on the core (if the session still exists).
    fn release(&self, last: impl FnOnce(&mut stt_proto::SessionRef<'_>, stt_proto::Instant)) {
        let shared = self.session.node().shared();
        let mut st = shared.lock();
        let now = st.clock.now();
        if st.sessions.contains_key(&self.session.id()) {
            if let Some(mut s) = st.core.session(self.session.id()) {
                last(&mut s, now);
            }
        }
        st.remove_stream_handle(self.session.id(), self.id);
        shared.flush(&mut st);
    }
}

/// The sending half of a stream.
///
/// End it with [`finish`](Self::finish) (or `AsyncWriteExt::shutdown`). Dropped without
/// `finish` or [`reset`](Self::reset), it **resets** the stream with code
/// [`DROPPED`](Self::DROPPED): a writer that was cancelled or panicked mid-stream never
/// looks to the reader like a complete stream (the reader's read fails with
/// `StreamClosed::Reset(DROPPED)`). This differs from `quinn::SendStream`, which finishes.
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
/// let shared = SharedSeed::random(); // every member holds the same shared seed
/// let node = |s: &SharedSeed| Identity::new(NodeSeed::random(), s.clone());
/// let a = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
/// let b = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
/// use stt_tokio::{SendStream, StreamClosed};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
/// let (s, r) = (s?, r.expect("b is running"));
/// // Dropped without `finish`, a stream is reset: the reader never mistakes it for complete.
/// let mut w = s.open_uni().await?;
/// w.write_all(b"half a message").await?;
/// let mut rx = r.accept_uni().await.expect("a stream");
/// drop(w);
/// let mut got = Vec::new();
/// let e = rx.read_to_end(&mut got).await.unwrap_err();
/// assert_eq!(StreamClosed::of(&e), Some(StreamClosed::Reset(SendStream::DROPPED)));
/// # Ok(())
/// # }
/// ```
pub struct SendStream {
    h: Handle,
    /// `finish` or `reset` was called (or `poll_shutdown`).
    ended: bool,
}

impl SendStream {
    /// The reset code a `SendStream` dropped without `finish` sends.
    pub const DROPPED: u64 = 0;

    pub(crate) fn new(session: Session, id: StreamId) -> Self {
        Self { h: Handle::new(session, id), ended: false }
    }

    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.h.id
    }

    /// Ends the stream and waits until the peer acknowledged every byte and the end.
    ///
    /// # Errors
    /// [`StreamClosed`] if the stream was stopped or reset, or the session ended first.
    pub async fn finish(&mut self) -> Result<(), StreamClosed> {
        if !self.ended {
            self.ended = true;
            let id = self.h.id;
            match self.h.session.with_core(|s, now| s.finish(now, id)) {
                Some(Ok(())) => {}
                Some(Err(WriteError::Stopped(c))) => return Err(StreamClosed::Stopped(c)),
                Some(Err(WriteError::Finished)) => return Err(StreamClosed::Finished),
                // Unknown: the core freed it, so everything was acknowledged already.
                Some(Err(_)) => {}
                None => return Err(self.h.gone()),
            }
        }
        std::future::poll_fn(|cx| self.poll_finished(cx)).await
    }

    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamClosed>> {
        let shared = self.h.session.node().shared();
        let mut st = shared.lock();
        let Some(app) = st.stream_app(self.h.session.id(), self.h.id) else {
            // The session ended; the peer may have acknowledged everything just before
            // (in the packet that closed it, spec [LC-12]).
            if self.h.session.shared().acked_at_end(self.h.id) {
                return Poll::Ready(Ok(()));
            }
            return Poll::Ready(Err(self.h.gone()));
        };
        if app.acked {
            return Poll::Ready(Ok(()));
        }
        if let Some(c) = app.stopped {
            return Poll::Ready(Err(StreamClosed::Stopped(c)));
        }
        app.finish = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Writes all of `data` without copying it, waiting for room as `write_all` does: the
    /// stream holds a reference to `data` (a [`Bytes`] is reference-counted) until the peer
    /// acknowledged it. For data the application already holds as `Bytes` (a file read
    /// once and sent to many peers, a message queue), this saves the copy into the
    /// stream's buffer that `AsyncWrite` makes, and the memory for it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bytes::Bytes;
    /// use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
    /// use tokio::io::AsyncReadExt;
    /// let shared = SharedSeed::random();
    /// let node = |s: &SharedSeed| Identity::new(NodeSeed::random(), s.clone());
    /// let a = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
    /// let b = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
    /// let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
    /// let (s, r) = (s?, r.expect("b is running"));
    /// let payload = Bytes::from(vec![7u8; 100_000]);
    /// let mut w = s.open_uni().await?;
    /// w.write_chunk(payload.clone()).await?; // `payload` is shared, not copied
    /// w.finish().await?;
    /// let mut got = Vec::new();
    /// r.accept_uni().await.expect("a stream").read_to_end(&mut got).await?;
    /// assert_eq!(got, payload);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`StreamClosed`] if the stream was stopped, reset or finished, or the session ended;
    /// how much of `data` was sent by then is unknown, as with `write_all`.
    ///
    /// # Cancellation
    /// Not cancel-safe, as `write_all`: dropped while waiting for room (a `select!`, a
    /// `timeout`), the future may have queued a prefix of `data`, and writing `data` again
    /// would send that prefix twice. Time out the whole stream (`reset`) instead.
    pub async fn write_chunk(&mut self, mut data: Bytes) -> Result<(), StreamClosed> {
        if self.ended {
            return Err(StreamClosed::Finished);
        }
        while !data.is_empty() {
            let n =
                std::future::poll_fn(|cx| self.poll_write_core(cx, |s, now, id| s.write_bytes(now, id, data.clone())))
                    .await?;
            if n == 0 {
                // Only a stream at its largest offset (2^62 bytes) takes nothing: it can
                // carry no more, as if finished.
                return Err(StreamClosed::Finished);
            }
            data.advance(n.min(data.len()));
        }
        Ok(())
    }

    /// Runs one write on the core (`write`: copying or by reference) and sends what it
    /// produced; `Pending` with the waker kept while the stream has no room.
    fn poll_write_core(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut stt_proto::SessionRef<'_>, stt_proto::Instant, StreamId) -> Result<usize, WriteError>,
    ) -> Poll<Result<usize, StreamClosed>> {
        if self.ended {
            return Poll::Ready(Err(StreamClosed::Finished));
        }
        let (sid, id) = (self.h.session.id(), self.h.id);
        let shared = self.h.session.node().shared();
        let mut st = shared.lock();
        if !st.sessions.contains_key(&sid) {
            return Poll::Ready(Err(self.h.gone()));
        }
        let now = st.clock.now();
        let r = match st.core.session(sid) {
            Some(mut s) => write(&mut s, now, id),
            None => Err(WriteError::NotEstablished),
        };
        match r {
            Ok(n) => {
                shared.flush(&mut st);
                Poll::Ready(Ok(n))
            }
            Err(WriteError::Blocked) => {
                if let Some(app) = st.stream_app(sid, id) {
                    app.write = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Err(WriteError::Stopped(c)) => Poll::Ready(Err(StreamClosed::Stopped(c))),
            Err(WriteError::Finished) => Poll::Ready(Err(StreamClosed::Finished)),
            // The core freed the stream: after a stop (its reset was acknowledged), say so.
            Err(_) => match st.stream_app(sid, id).and_then(|a| a.stopped) {
                Some(c) => Poll::Ready(Err(StreamClosed::Stopped(c))),
                None => Poll::Ready(Err(self.h.gone())),
            },
        }
    }

    /// Abandons the stream with `code` (the peer sees a reset; unsent data is dropped).
    pub fn reset(&mut self, code: u64) {
        self.ended = true;
        let id = self.h.id;
        self.h.session.with_core(|s, now| {
            let _ = s.reset_stream(now, id, code);
        });
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        let (id, ended) = (self.h.id, self.ended);
        self.h.release(|s, now| {
            if !ended {
                let _ = s.reset_stream(now, id, Self::DROPPED);
            }
        });
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_core(cx, |s, now, id| s.write(now, id, buf)).map_err(StreamClosed::into_io)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are in the core already; it sends them as fast as the path allows.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ended {
            this.ended = true;
            let id = this.h.id;
            if let Some(Err(WriteError::Stopped(c))) = this.h.session.with_core(|s, now| s.finish(now, id)) {
                return Poll::Ready(Err(StreamClosed::Stopped(c).into_io()));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The receiving half of a stream. Dropped before the end was read, it asks the peer to
/// stop sending (STOP_SENDING with code 0) and discards what arrived.
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
/// let shared = SharedSeed::random(); // every member holds the same shared seed
/// let node = |s: &SharedSeed| Identity::new(NodeSeed::random(), s.clone());
/// let a = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
/// let b = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
/// use stt_tokio::StreamClosed;
/// use tokio::io::AsyncWriteExt;
/// let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
/// let (s, r) = (s?, r.expect("b is running"));
/// let mut w = s.open_uni().await?;
/// w.write_all(b"unwanted").await?;
/// // The receiver drops the stream unread: the writer learns it was stopped.
/// drop(r.accept_uni().await.expect("a stream"));
/// let e = loop {
///     if let Err(e) = w.write_all(&[0; 1024]).await { break e; }
/// };
/// assert_eq!(StreamClosed::of(&e), Some(StreamClosed::Stopped(0)));
/// # Ok(())
/// # }
/// ```
pub struct RecvStream {
    h: Handle,
    /// The end was read (or a reset seen): nothing to stop on drop.
    done: bool,
}

impl RecvStream {
    pub(crate) fn new(session: Session, id: StreamId) -> Self {
        Self { h: Handle::new(session, id), done: false }
    }

    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.h.id
    }

    /// Asks the peer to stop sending; unread data is discarded.
    pub fn stop(&mut self, code: u64) {
        self.done = true;
        let id = self.h.id;
        self.h.session.with_core(|s, now| {
            let _ = s.stop_sending(now, id, code);
        });
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        let (id, done) = (self.h.id, self.done);
        self.h.release(|s, now| {
            if !done {
                let _ = s.stop_sending(now, id, 0);
            }
        });
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.done || out.remaining() == 0 {
            // A full buffer reads nothing (not "blocked": that would wait for data that
            // may already be here).
            return Poll::Ready(Ok(()));
        }
        let (sid, id) = (this.h.session.id(), this.h.id);
        let shared = this.h.session.node().shared();
        let mut st = shared.lock();
        let mut took_input = false;
        let r = loop {
            let now = st.clock.now();
            // Straight from the core's reassembly buffer into the caller's buffer. Data that
            // arrived before the session closed stays readable while the core drains it.
            let r = match st.core.session(sid) {
                Some(mut s) => s.read(now, id, out.initialize_unfilled()),
                None => Err(ReadError::UnknownStream),
            };
            // Nothing yet: take what the socket holds now, in this task, instead of waiting
            // for the driver to take it and wake us (one hop fewer on a round trip).
            if matches!(r, Err(ReadError::Blocked))
                && shared.readers_take_input
                && !took_input
                && st.recv_inline(&shared.io)
            {
                took_input = true;
                shared.flush(&mut st);
                continue;
            }
            break r;
        };
        match r {
            Ok((n, fin)) => {
                out.advance(n);
                this.done = fin;
                // Reading may have opened a window: send the update from this task.
                shared.flush(&mut st);
                Poll::Ready(Ok(()))
            }
            Err(_) if this.h.session.ended().is_some() => Poll::Ready(Err(this.h.gone().into_io())),
            Err(ReadError::Blocked) => {
                if let Some(app) = st.stream_app(sid, id) {
                    app.read = Some(cx.waker().clone());
                }
                drop(st);
                // Woken by the driver's event, and on a current-thread runtime also straight
                // by the socket: whichever comes first takes the datagram.
                if shared.readers_take_input && shared.io.socket.poll_recv_ready(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
            Err(ReadError::Reset(c)) => {
                this.done = true;
                Poll::Ready(Err(StreamClosed::Reset(c).into_io()))
            }
            // The core freed the stream: reset (it said so in an event), or its end was read.
            Err(_) if st.stream_app(sid, id).and_then(|a| a.reset).is_some() => {
                this.done = true;
                let code = st.stream_app(sid, id).and_then(|a| a.reset).unwrap_or(0);
                Poll::Ready(Err(StreamClosed::Reset(code).into_io()))
            }
            Err(_) if st.core.session(sid).is_some() => {
                this.done = true;
                Poll::Ready(Ok(()))
            }
            Err(_) => Poll::Ready(Err(this.h.gone().into_io())),
        }
    }
}
