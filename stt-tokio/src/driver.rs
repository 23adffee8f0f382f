//! The driver task: receives datagrams (without the node lock), feeds them and expired
//! timers to the core, drains the output, and sleeps until the socket, the next deadline
//! or an application task wakes it. Application reads and writes do not go through it:
//! they run the core themselves (see `state.rs`).

use std::sync::Arc;

use stt_proto::{DropReason, Input, InputOutcome};
use tokio::sync::mpsc;

use crate::state::NodeShared;
use crate::tunnel::TunnelMsg;
use crate::udp::{RecvBufs, RECV_BATCH};

/// Tunnel messages taken per turn.
const TUNNEL_BUDGET: usize = 64;

/// Runs until the node is shut down (or every user handle is gone) and its sessions ended.
pub(crate) async fn run(node: Arc<NodeShared>, mut tunnel_rx: mpsc::Receiver<TunnelMsg>) {
    let mut refusals = Refusals::default();
    loop {
        // 1. Receive without the lock, into a batch of buffers from the process-wide pool
        //    (given back below, before this task waits).
        let mut bufs = RecvBufs::take();
        let batches = match node.io.try_recv(&mut bufs, RECV_BATCH) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "recv error");
                0
            }
        };
        // 2. Feed input and timers, drain output.
        let (deadline, blocked, clock) = {
            let mut guard = node.lock();
            let st = &mut *guard;
            if batches > 0 {
                let now = st.clock.now();
                let core = &mut st.core;
                bufs.deliver(|from, data| {
                    let out = core.handle_input(Input::Datagram { now, from: from.into(), data });
                    if let InputOutcome::Dropped(reason) = out {
                        tracing::trace!(?reason, "datagram dropped");
                        refusals.note(reason);
                    }
                });
            }
            for _ in 0..TUNNEL_BUDGET {
                match tunnel_rx.try_recv() {
                    Ok(m) => st.tunnel(m),
                    Err(_) => break,
                }
            }
            st.on_timer();
            refusals.abandoned(st.core.stats().handshakes_abandoned);
            refusals.report();
            st.drain(&node.io, &node.incoming);
            if !st.send_pending() {
                // With everything sent, the next handshake's ephemeral key.
                st.core.precompute();
            }
            if st.stopping && st.core.session_ids().next().is_none() {
                st.end_all();
                break;
            }
            let deadline = st.core.next_deadline();
            st.driver_wake = deadline;
            (deadline, st.blocked, st.clock)
        };
        bufs.give_back();
        if batches == RECV_BATCH {
            // More may be waiting: let other tasks run, then read again.
            tokio::task::yield_now().await;
            continue;
        }
        // 3. Sleep until something happens.
        let sleep = deadline.map(|d| clock.to_tokio(d));
        tokio::select! {
            r = node.io.socket.readable() => { let _ = r; }
            _ = async { match sleep { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {}
            () = node.driver.notified() => {}
            r = node.io.socket.writable(), if blocked => { let _ = r; }
            m = tunnel_rx.recv() => if let Some(m) = m { node.lock().tunnel(m) },
        }
    }
    node.incoming.notify_waiters();
    node.stopped.notify_waiters();
    tracing::debug!("driver stopped");
}

/// Refused handshakes and unauthenticated datagrams, logged at info level at most once a
/// second (a flood of junk must not flood the log), with the reason and how many. Nothing
/// secret and no address is logged.
#[derive(Default)]
struct Refusals {
    counts: [u64; DropReason::COUNT],
    /// Half-open handshakes that expired, not yet logged, and the node's total so far.
    abandoned: u64,
    abandoned_total: u64,
    last: Option<std::time::Instant>,
}

/// The drop reasons that mean "someone tried and was refused", with words for the log.
const REFUSALS: [(DropReason, &str); 7] = [
    (DropReason::AuthFailed, "authentication failed (wrong shared seed, or forged)"),
    (DropReason::BadCookie, "a cookie that does not verify"),
    (DropReason::BadVersion, "an unsupported protocol version"),
    (DropReason::NoCommonAead, "no cipher in common"),
    (DropReason::NotAccepting, "not accepting sessions now (limits or shut down)"),
    (DropReason::RateLimited, "handshake rate limit"),
    (DropReason::NotAllowed, "a member not on the allow-list"),
];

impl Refusals {
    fn note(&mut self, reason: DropReason) {
        if REFUSALS.iter().any(|(r, _)| *r == reason) {
            if let Some(c) = self.counts.get_mut(reason.index()) {
                *c += 1;
            }
        }
    }

    /// The node's count of handshakes abandoned after CHALLENGE (`NodeStats`).
    fn abandoned(&mut self, total: u64) {
        self.abandoned += total.saturating_sub(self.abandoned_total);
        self.abandoned_total = total;
    }

    fn report(&mut self) {
        if (self.counts.iter().all(|c| *c == 0) && self.abandoned == 0)
            || self.last.is_some_and(|t| t.elapsed().as_secs() < 1)
        {
            return;
        }
        if self.abandoned > 0 {
            tracing::info!(
                count = self.abandoned,
                "refused: a handshake abandoned after CHALLENGE (the initiator went away, or expected another node id)"
            );
            self.abandoned = 0;
        }
        self.last = Some(std::time::Instant::now());
        for (reason, words) in REFUSALS {
            if let Some(n) = self.counts.get_mut(reason.index()).filter(|n| **n > 0) {
                tracing::info!(count = *n, "refused: {words}");
                *n = 0;
            }
        }
    }
}
