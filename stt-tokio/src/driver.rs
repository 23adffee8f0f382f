//! The driver task: owns the `stt_proto::Node` and the UDP socket. Each turn it takes
//! application commands, moves stream bytes between the shared buffers and the core,
//! feeds received datagrams and expired timers, drains `poll_output`, then sleeps until
//! the socket, the next deadline or a command wakes it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use stt_proto::{
    DatagramError, Event, FrameError, Input, Node as Core, NodeId, Output, PathAddr, ReadError, SessionId, StreamError,
    StreamId, WriteError,
};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::shared::{lock, Ended, SessionShared, MESSAGE_QUEUE, STREAM_BUFFER};
use crate::tunnel::TunnelMsg;
use crate::udp::Udp;

/// Datagrams read from the socket per turn before the output is drained.
const RECV_BUDGET: usize = 64;
/// Commands taken per turn.
const CMD_BUDGET: usize = 256;

/// What application handles ask of the driver.
pub(crate) enum Cmd {
    Connect {
        to: PathAddr,
        expect: Option<NodeId>,
        reply: oneshot::Sender<Result<Arc<SessionShared>, Ended>>,
    },
    Open {
        session: SessionId,
        uni: bool,
        reply: oneshot::Sender<Result<StreamId, StreamError>>,
    },
    /// Stream buffers changed on the application side (write, finish or read).
    Flush {
        session: SessionId,
        stream: StreamId,
    },
    Reset {
        session: SessionId,
        stream: StreamId,
        code: u64,
    },
    StopSending {
        session: SessionId,
        stream: StreamId,
        code: u64,
    },
    Datagram {
        session: SessionId,
        data: Bytes,
        drop_oldest: bool,
        reply: oneshot::Sender<Result<(), DatagramError>>,
    },
    Frame {
        sessions: Option<Vec<SessionId>>,
        ty: u8,
        data: Bytes,
        reply: oneshot::Sender<Vec<(SessionId, Result<(), FrameError>)>>,
    },
    Stats {
        session: SessionId,
        reply: oneshot::Sender<Option<stt_proto::SessionStats>>,
    },
    Export {
        session: SessionId,
        label: Vec<u8>,
        context: Vec<u8>,
        len: usize,
        reply: oneshot::Sender<Result<Vec<u8>, stt_proto::ExportError>>,
    },
    Close {
        session: SessionId,
        code: u64,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub(crate) struct Driver {
    pub(crate) core: Core<ChaCha20Rng>,
    pub(crate) udp: Udp,
    pub(crate) clock: Clock,
    pub(crate) cmds: mpsc::UnboundedReceiver<Cmd>,
    pub(crate) tunnel_rx: mpsc::Receiver<TunnelMsg>,
    pub(crate) tunnels: HashMap<stt_proto::TunnelId, mpsc::Sender<Bytes>>,
    pub(crate) incoming: mpsc::UnboundedSender<Arc<SessionShared>>,
    pub(crate) events: tokio::sync::broadcast::Sender<Event>,
    pub(crate) sessions: HashMap<SessionId, Arc<SessionShared>>,
    pub(crate) connects: HashMap<SessionId, oneshot::Sender<Result<Arc<SessionShared>, Ended>>>,
    pub(crate) dirty: HashSet<(SessionId, StreamId)>,
    pub(crate) shutdown: Option<oneshot::Sender<()>>,
    pub(crate) tmp: Vec<u8>,
}

impl Driver {
    /// Runs until the node is shut down (or every handle is gone).
    pub(crate) async fn run(mut self) {
        let mut cmds_open = true;
        loop {
            // 0. Tunnel (WebSocket) connections: registrations and datagrams.
            for _ in 0..RECV_BUDGET {
                match self.tunnel_rx.try_recv() {
                    Ok(m) => self.tunnel(m),
                    Err(_) => break,
                }
            }
            // 1. Application commands.
            for _ in 0..CMD_BUDGET {
                match self.cmds.try_recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        if cmds_open {
                            cmds_open = false;
                            let now = self.clock.now();
                            self.core.close(now);
                        }
                        break;
                    }
                }
            }
            // 2. Stream bytes the application handed over or made room for.
            let dirty: Vec<_> = self.dirty.drain().collect();
            for (s, id) in dirty {
                self.flush_stream(s, id);
            }
            // 3. Datagrams from the network.
            let mut received = 0;
            while received < RECV_BUDGET {
                let (core, clock) = (&mut self.core, &self.clock);
                let r = self.udp.recv(|from, data| {
                    let now = clock.now();
                    let out = core.handle_input(Input::Datagram { now, from: from.into(), data });
                    if let stt_proto::InputOutcome::Dropped(reason) = out {
                        tracing::trace!(?reason, "datagram dropped");
                    }
                });
                match r {
                    Ok(0) => break,
                    Ok(n) => received += n,
                    Err(e) => {
                        tracing::debug!(error = %e, "recv error");
                        break;
                    }
                }
            }
            let budget_left = received < RECV_BUDGET;
            // 4. Timers (the clock is re-read after every wake-up).
            let now = self.clock.now();
            if self.core.next_deadline().is_some_and(|d| d <= now) {
                let _ = self.core.handle_input(Input::Timeout { now });
            }
            // 5. Output; then, with everything sent, the next handshake's ephemeral key.
            let deadline = self.drain().await;
            self.core.precompute();
            if (self.shutdown.is_some() || !cmds_open) && self.core.session_ids().next().is_none() {
                break;
            }
            if !budget_left || !self.dirty.is_empty() {
                tokio::task::yield_now().await;
                continue;
            }
            // 6. Sleep until something happens.
            let sleep = deadline.map(|d| self.clock.to_tokio(d));
            tokio::select! {
                r = self.udp.socket.readable() => { let _ = r; }
                _ = async { match sleep { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {}
                m = self.tunnel_rx.recv() => if let Some(m) = m { self.tunnel(m) },
                cmd = self.cmds.recv(), if cmds_open => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        cmds_open = false;
                        let now = self.clock.now();
                        self.core.close(now);
                    }
                },
            }
        }
        for s in self.sessions.values() {
            s.end(Ended::NodeGone);
        }
        for (_, reply) in self.connects.drain() {
            let _ = reply.send(Err(Ended::NodeGone));
        }
        if let Some(done) = self.shutdown.take() {
            let _ = done.send(());
        }
        tracing::debug!("driver stopped");
    }

    fn tunnel(&mut self, m: TunnelMsg) {
        match m {
            TunnelMsg::Opened(id, tx) => {
                self.tunnels.insert(id, tx);
            }
            TunnelMsg::Data(id, data) => {
                // Decrypted in place in the driver's scratch buffer: no allocation per datagram.
                let n = data.len().min(self.tmp.len());
                self.tmp[..n].copy_from_slice(&data[..n]);
                let now = self.clock.now();
                let _ = self.core.handle_input(Input::Datagram {
                    now,
                    from: PathAddr::Tunnel(id),
                    data: &mut self.tmp[..n],
                });
            }
            TunnelMsg::Closed(id) => {
                self.tunnels.remove(&id);
            }
        }
    }

    fn command(&mut self, cmd: Cmd) {
        let now = self.clock.now();
        match cmd {
            Cmd::Connect { to, expect, reply } => match self.core.connect(now, to, expect) {
                Ok(id) => {
                    self.connects.insert(id, reply);
                }
                Err(_) => {
                    let _ = reply.send(Err(Ended::NodeGone));
                }
            },
            Cmd::Open { session, uni, reply } => {
                let r = match self.core.session(session) {
                    Some(mut s) => s.open_stream(now, uni),
                    None => Err(StreamError::NotEstablished),
                };
                if let (Ok(id), Some(shared)) = (r, self.sessions.get(&session)) {
                    shared.stream(id);
                }
                let _ = reply.send(r);
            }
            Cmd::Flush { session, stream } => {
                self.dirty.insert((session, stream));
            }
            Cmd::Reset { session, stream, code } => {
                if let Some(mut s) = self.core.session(session) {
                    let _ = s.reset_stream(now, stream, code);
                }
            }
            Cmd::StopSending { session, stream, code } => {
                if let Some(mut s) = self.core.session(session) {
                    let _ = s.stop_sending(now, stream, code);
                }
            }
            Cmd::Datagram { session, data, drop_oldest, reply } => {
                let r = match self.core.session(session) {
                    Some(mut s) => s.send_datagram(now, &data, drop_oldest),
                    None => Err(DatagramError::NotEstablished),
                };
                let _ = reply.send(r);
            }
            Cmd::Frame { sessions, ty, data, reply } => {
                let targets: Vec<SessionId> = sessions.unwrap_or_else(|| self.sessions.keys().copied().collect());
                let results = targets
                    .into_iter()
                    .map(|id| {
                        let r = match self.core.session(id) {
                            Some(mut s) => s.send_app_frame(now, ty, &data),
                            None => Err(FrameError::NotEstablished),
                        };
                        (id, r)
                    })
                    .collect();
                let _ = reply.send(results);
            }
            Cmd::Stats { session, reply } => {
                let _ = reply.send(self.core.session(session).map(|s| s.stats()));
            }
            Cmd::Export { session, label, context, len, reply } => {
                let mut out = vec![0u8; len];
                let r = match self.core.session(session) {
                    Some(s) => s.export_keying_material(&label, &context, &mut out).map(|()| out),
                    None => Err(stt_proto::ExportError::NotEstablished),
                };
                let _ = reply.send(r);
            }
            Cmd::Close { session, code } => {
                if let Some(mut s) = self.core.session(session) {
                    s.close(now, code);
                }
            }
            Cmd::Shutdown { reply } => {
                self.shutdown = Some(reply);
                self.core.close(now);
            }
        }
    }

    /// Moves application bytes into the core (and finishes), then pulls received bytes out.
    fn flush_stream(&mut self, sid: SessionId, id: StreamId) {
        let Some(shared) = self.sessions.get(&sid).cloned() else { return };
        let stream = shared.stream(id);
        let now = self.clock.now();
        let Some(mut core) = self.core.session(sid) else { return };
        {
            let mut send = lock(&stream.send);
            let before = send.queued;
            while let Some(chunk) = send.queue.front().cloned() {
                match core.write_bytes(now, id, chunk.clone()) {
                    Ok(n) => {
                        send.queued -= n;
                        if n == chunk.len() {
                            send.queue.pop_front();
                        } else {
                            send.queue[0] = chunk.slice(n..);
                            break;
                        }
                    }
                    Err(WriteError::Blocked) => break,
                    Err(e) => {
                        send.error = Some(e.to_string());
                        send.queue.clear();
                        send.queued = 0;
                        break;
                    }
                }
            }
            if send.queue.is_empty() && send.finish && !send.finished_in_core {
                match core.finish(now, id) {
                    Ok(()) => send.finished_in_core = true,
                    Err(e) => send.error = Some(e.to_string()),
                }
            }
            if send.queued < before || send.error.is_some() {
                if let Some(w) = send.waker.take() {
                    w.wake();
                }
            }
        }
        let mut recv = lock(&stream.recv);
        let mut changed = false;
        while !recv.fin && recv.reset.is_none() && recv.buf.len() < STREAM_BUFFER {
            // Read straight into the stream's buffer (no staging copy).
            // Only as much as the core holds, so the buffer is not zero-filled needlessly.
            let room = (STREAM_BUFFER - recv.buf.len()).min(self.tmp.len()).min(core.readable(id));
            let old = recv.buf.len();
            recv.buf.resize(old + room, 0);
            let r = core.read(now, id, &mut recv.buf[old..]);
            let got = match r {
                Ok((n, _)) => n,
                Err(_) => 0,
            };
            recv.buf.truncate(old + got);
            match r {
                Ok((n, fin)) => {
                    recv.fin = fin;
                    changed = true;
                    if n == 0 && !fin {
                        break;
                    }
                }
                Err(ReadError::Reset(code)) => {
                    recv.reset = Some(code);
                    changed = true;
                }
                Err(_) => break,
            }
        }
        recv.stalled = recv.buf.len() >= STREAM_BUFFER;
        if changed {
            if let Some(w) = recv.waker.take() {
                w.wake();
            }
        }
    }

    /// Drains the core's output: sends datagrams, applies events. Returns the next deadline.
    async fn drain(&mut self) -> Option<stt_proto::Instant> {
        loop {
            // The core writes each datagram straight into the UDP send train.
            match self.core.poll_output(self.udp.tail()) {
                Output::Transmit(t) => match t.dst {
                    PathAddr::Udp(dst) => self.udp.commit(dst, t.len).await,
                    PathAddr::Tunnel(id) => {
                        // A full connection queue drops the datagram; loss recovery resends.
                        if let Some(tx) = self.tunnels.get(&id) {
                            let _ = tx.try_send(Bytes::copy_from_slice(&self.udp.tail()[..t.len]));
                        }
                    }
                },
                Output::Event(e) => self.event(e),
                Output::Wait(deadline) => {
                    self.udp.flush().await;
                    return deadline;
                }
            }
        }
    }

    fn event(&mut self, e: Event) {
        let _ = self.events.send(e);
        let now = self.clock.now();
        match e {
            Event::Established { session, peer } => {
                let remote = self.core.session(session).map(|s| s.remote());
                let Some(remote) = remote else { return };
                let shared = Arc::new(SessionShared::new(session, peer, remote));
                self.sessions.insert(session, shared.clone());
                tracing::info!(peer = %short(&peer), "session established");
                match self.connects.remove(&session) {
                    Some(reply) => {
                        let _ = reply.send(Ok(shared));
                    }
                    None => {
                        let _ = self.incoming.send(shared);
                    }
                }
            }
            Event::HandshakeFailed { session, reason } => {
                tracing::info!(%reason, "handshake failed");
                if let Some(reply) = self.connects.remove(&session) {
                    let _ = reply.send(Err(Ended::Failed(reason)));
                }
            }
            Event::Closed { session, reason } => {
                tracing::info!(%reason, "session closed");
                if let Some(s) = self.sessions.remove(&session) {
                    s.end(Ended::Closed(reason));
                }
            }
            Event::StreamOpened { session, stream } => {
                if let Some(s) = self.sessions.get(&session) {
                    s.stream(stream);
                    let q = if stream.is_uni() { &s.incoming_uni } else { &s.incoming_bi };
                    lock(q).push_back(stream);
                    s.incoming.notify_waiters();
                }
                // Take it from the core's accept queue: the driver tracks acceptance itself.
                if let Some(mut c) = self.core.session(session) {
                    while c.accept_stream().is_some() {}
                }
            }
            Event::StreamReadable { session, stream } | Event::StreamWritable { session, stream } => {
                self.flush_stream(session, stream);
            }
            Event::StreamFinished { session, stream } => {
                if let Some(s) = self.sessions.get(&session) {
                    let st = s.stream(stream);
                    lock(&st.send).acked = true;
                    st.finished.notify_waiters();
                }
            }
            Event::StreamReset { session, stream, code } => {
                self.flush_stream(session, stream);
                if let Some(s) = self.sessions.get(&session) {
                    let st = s.stream(stream);
                    lock(&st.recv).reset = Some(code);
                    st.wake_all();
                }
            }
            Event::StreamStopped { session, stream, code } => {
                if let Some(s) = self.sessions.get(&session) {
                    let st = s.stream(stream);
                    lock(&st.send).error = Some(format!("peer stopped the stream with code {code}"));
                    st.wake_all();
                }
            }
            Event::StreamsUnblocked { session } => {
                if let Some(s) = self.sessions.get(&session) {
                    s.incoming.notify_waiters();
                }
            }
            Event::DatagramReadable { session } => {
                let Some(shared) = self.sessions.get(&session).cloned() else { return };
                let Some(mut core) = self.core.session(session) else { return };
                let mut q = lock(&shared.datagrams);
                while let Some(n) = core.recv_datagram(&mut self.tmp) {
                    if q.len() >= MESSAGE_QUEUE {
                        q.pop_front();
                    }
                    q.push_back(Bytes::copy_from_slice(&self.tmp[..n.min(self.tmp.len())]));
                }
                shared.datagram_ready.notify_waiters();
            }
            Event::AppFrameReadable { session } => {
                let Some(shared) = self.sessions.get(&session).cloned() else { return };
                let Some(mut core) = self.core.session(session) else { return };
                let mut q = lock(&shared.frames);
                while q.len() < MESSAGE_QUEUE {
                    let Some((ty, n)) = core.recv_app_frame(now, &mut self.tmp) else { break };
                    q.push_back((ty, Bytes::copy_from_slice(&self.tmp[..n.min(self.tmp.len())])));
                }
                shared.frame_ready.notify_waiters();
            }
            Event::PathChanged { session, remote } => {
                if let Some(s) = self.sessions.get(&session) {
                    *lock(&s.remote) = remote;
                }
            }
            _ => {}
        }
    }
}

/// A node id shortened for logs (addresses are never logged at info level).
pub(crate) fn short(id: &NodeId) -> String {
    let s = id.to_string();
    s[..12.min(s.len())].to_string()
}
