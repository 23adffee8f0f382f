#![cfg_attr(not(feature = "websocket"), allow(dead_code))]
//! Datagram tunnels (WebSocket connections) as paths of the core: connection tasks talk
//! to the driver through a bounded channel.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use stt_proto::TunnelId;
use tokio::sync::mpsc;

/// What connection tasks tell the driver.
pub(crate) enum TunnelMsg {
    Opened(TunnelId, mpsc::Sender<Bytes>),
    Data(TunnelId, Bytes),
    Closed(TunnelId),
}

/// Allocates tunnel ids and carries messages to the driver.
#[derive(Clone)]
pub(crate) struct Tunnels {
    pub(crate) to_driver: mpsc::Sender<TunnelMsg>,
    next: Arc<AtomicU32>,
}

impl Tunnels {
    pub(crate) fn new(to_driver: mpsc::Sender<TunnelMsg>) -> Self {
        Self { to_driver, next: Arc::new(AtomicU32::new(1)) }
    }

    #[allow(dead_code)]
    pub(crate) fn allocate(&self) -> TunnelId {
        TunnelId(self.next.fetch_add(1, Ordering::Relaxed))
    }
}
