//! `FrameDispatcher` (handlers per application frame type) and `EventEmitter` (typed,
//! filtered event subscription), the original STT's names for these roles.

use std::collections::HashMap;

use bytes::Bytes;
use stt_proto::Event;
use tokio::sync::broadcast;

use crate::session::Session;

type Handler = Box<dyn FnMut(&Session, Bytes) + Send>;
type EventFilter = Box<dyn Fn(&Event) -> bool + Send>;

/// Routes received application frames to a handler per type (0x80–0xFF).
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
/// let shared = SharedSeed::random(); // every member holds the same shared seed
/// let node = |s: &SharedSeed| Identity::new(NodeSeed::random(), s.clone());
/// let a = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
/// // The receiver declares the application frame types it accepts.
/// let b = Node::bind("127.0.0.1:0".parse()?, Config::default().app_frame_types(&[0x80]), node(&shared)).await?;
/// use stt_tokio::FrameDispatcher;
/// let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
/// let (s, r) = (s?, r.expect("b is running"));
/// let (tx, mut got) = tokio::sync::mpsc::unbounded_channel();
/// let dispatcher = FrameDispatcher::new().on(0x80, move |_session, body| {
///     let _ = tx.send(body);
/// });
/// tokio::spawn(dispatcher.run(r));
/// s.send_frame(0x80, bytes::Bytes::from_static(b"chat: hello")).await?;
/// assert_eq!(got.recv().await.as_deref(), Some(&b"chat: hello"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct FrameDispatcher {
    handlers: HashMap<u8, Handler>,
    fallback: Option<Handler>,
}

impl FrameDispatcher {
    /// An empty dispatcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for frames of type `ty`.
    #[must_use]
    pub fn on(mut self, ty: u8, handler: impl FnMut(&Session, Bytes) + Send + 'static) -> Self {
        self.handlers.insert(ty, Box::new(handler));
        self
    }

    /// Registers a handler for types without their own.
    #[must_use]
    pub fn otherwise(mut self, handler: impl FnMut(&Session, Bytes) + Send + 'static) -> Self {
        self.fallback = Some(Box::new(handler));
        self
    }

    /// Dispatches one frame; returns false if no handler took it.
    pub fn dispatch(&mut self, session: &Session, ty: u8, body: Bytes) -> bool {
        match self.handlers.get_mut(&ty).or(self.fallback.as_mut()) {
            Some(h) => {
                h(session, body);
                true
            }
            None => false,
        }
    }

    /// Dispatches every frame of `session` until it ends; returns how many were handled.
    pub async fn run(mut self, session: Session) -> u64 {
        let mut n = 0;
        while let Some((ty, body)) = session.recv_frame().await {
            n += u64::from(self.dispatch(&session, ty, body));
        }
        n
    }
}

/// A subscription to a node's events, optionally filtered. Slow subscribers miss events
/// (the channel holds 1024); `recv` reports how many were skipped through `lagged`.
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
/// use stt_tokio::Event;
/// let mut established = a.events().filter(|e| matches!(e, Event::Established { .. }));
/// let (s, _r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
/// let s = s?;
/// match established.recv().await {
///     Some(Event::Established { session, peer }) => {
///         assert_eq!(session, s.id());
///         assert_eq!(peer, b.node_id());
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
pub struct EventEmitter {
    rx: broadcast::Receiver<Event>,
    filter: Option<EventFilter>,
    /// Events skipped because this subscriber fell behind.
    pub lagged: u64,
}

impl EventEmitter {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Self { rx, filter: None, lagged: 0 }
    }

    /// Keeps only events for which `f` is true.
    #[must_use]
    pub fn filter(mut self, f: impl Fn(&Event) -> bool + Send + 'static) -> Self {
        self.filter = Some(Box::new(f));
        self
    }

    /// The next matching event; `None` once the node stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) if self.filter.as_ref().is_none_or(|f| f(&e)) => return Some(e),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => self.lagged += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
