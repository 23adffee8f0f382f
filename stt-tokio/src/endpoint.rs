//! Named endpoints (the original STT's EndpointManager): a node registers endpoints by
//! name; a peer sends bytes to (node id, endpoint name) over its session. Messages travel
//! as application frames of one type chosen by the application (spec §10.5):
//! `name length (u8) ‖ name (UTF-8) ‖ body`. Every endpoint has a bounded queue; while a
//! queue is full its session's frames are not taken, so flow control holds the sender back.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use stt_proto::{FrameError, NodeId, SessionId};
use tokio::sync::{mpsc, Mutex as AsyncMutex};

use crate::dispatch::FrameDispatcher;
use crate::node::Node;
use crate::session::Session;
use crate::shared::lock;

/// Why an endpoint message could not be sent.
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
/// use stt_tokio::{EndpointError, Endpoints, FrameError};
/// // A name must be 1 to 255 bytes; the frame type must be one the peer declared.
/// assert_eq!(Endpoints::new(0x90).send(&s, "", b"x").await, Err(EndpointError::BadName));
/// let undeclared = Endpoints::new(0x91).send(&s, "inbox", b"x").await;
/// assert_eq!(undeclared, Err(EndpointError::Frame(FrameError::Undeclared(0x91))));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    /// Names are 1..=255 bytes.
    BadName,
    /// The frame could not be sent.
    Frame(FrameError),
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::BadName => f.write_str("endpoint names are 1 to 255 bytes"),
            EndpointError::Frame(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EndpointError {}

/// One message delivered to an endpoint.
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
/// use stt_tokio::{Endpoints, FrameDispatcher};
/// let eps = Endpoints::new(0x90);
/// let inbox = eps.register("inbox", 16);
/// let over = r.id();
/// tokio::spawn(async move { eps.serve(r, FrameDispatcher::new()).await });
/// Endpoints::new(0x90).send(&s, "inbox", b"hello").await?;
/// let m = inbox.recv().await.expect("a message");
/// // Who sent it, over which session, and the bytes.
/// assert_eq!((m.from, m.session, &m.body[..]), (a.node_id(), over, &b"hello"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointMessage {
    /// The sending node.
    pub from: NodeId,
    /// The session it came over.
    pub session: SessionId,
    /// The bytes.
    pub body: Bytes,
}

/// A registered endpoint: receive its messages.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stt_tokio::Endpoints;
/// let eps = Endpoints::new(0x90);
/// let inbox = eps.register("inbox", 16); // at most 16 messages wait; more are dropped
/// assert_eq!(inbox.name(), "inbox");
/// // Once the manager is gone, nothing more can arrive.
/// drop(eps);
/// assert!(inbox.recv().await.is_none());
/// # Ok(())
/// # }
/// ```
pub struct Endpoint {
    name: String,
    rx: AsyncMutex<mpsc::Receiver<EndpointMessage>>,
}

impl Endpoint {
    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message; `None` once the manager is gone.
    pub async fn recv(&self) -> Option<EndpointMessage> {
        self.rx.lock().await.recv().await
    }
}

/// Routes application frames of one type to named endpoints.
#[doc(alias = "EndpointManager")]
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
/// let shared = SharedSeed::random(); // every member holds the same shared seed
/// let node = |s: &SharedSeed| Identity::new(NodeSeed::random(), s.clone());
/// let a = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
/// let b = Node::bind("127.0.0.1:0".parse()?, Config::default().app_frame_types(&[0x90]), node(&shared)).await?;
/// use stt_tokio::{Endpoints, FrameDispatcher};
/// // Named endpoints ride on one application frame type (here 0x90).
/// let eps = Endpoints::new(0x90);
/// let inbox = eps.register("inbox", 16);
/// let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
/// let (s, r) = (s?, r.expect("b is running"));
/// tokio::spawn(async move { eps.serve(r, FrameDispatcher::new()).await });
/// Endpoints::new(0x90).send(&s, "inbox", b"hello").await?;
/// let m = inbox.recv().await.expect("a message");
/// assert_eq!(&m.body[..], b"hello");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Endpoints {
    ty: u8,
    routes: Arc<Mutex<HashMap<String, mpsc::Sender<EndpointMessage>>>>,
    /// Messages for unknown endpoints (dropped and counted).
    unknown: Arc<Mutex<u64>>,
}

fn encode(name: &str, body: &[u8]) -> Result<Bytes, EndpointError> {
    if name.is_empty() || name.len() > 255 {
        return Err(EndpointError::BadName);
    }
    let mut b = BytesMut::with_capacity(1 + name.len() + body.len());
    b.extend_from_slice(&[name.len() as u8]);
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(body);
    Ok(b.freeze())
}

impl Endpoints {
    /// A manager using application frame type `ty` (declare it in `Config::app_frame_types`).
    pub fn new(ty: u8) -> Self {
        Self { ty, routes: Arc::default(), unknown: Arc::default() }
    }

    /// The frame type used.
    pub fn frame_type(&self) -> u8 {
        self.ty
    }

    /// Registers `name` with a queue of `capacity` messages (replacing any earlier one).
    pub fn register(&self, name: &str, capacity: usize) -> Endpoint {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        lock(&self.routes).insert(name.to_string(), tx);
        Endpoint { name: name.to_string(), rx: AsyncMutex::new(rx) }
    }

    /// Messages that named no registered endpoint.
    pub fn unknown_dropped(&self) -> u64 {
        *lock(&self.unknown)
    }

    /// Sends `body` to endpoint `name` of the session's peer.
    ///
    /// # Errors
    /// [`EndpointError`].
    pub async fn send(&self, session: &Session, name: &str, body: &[u8]) -> Result<(), EndpointError> {
        session.send_frame(self.ty, encode(name, body)?).await.map_err(EndpointError::Frame)
    }

    /// Sends `body` to endpoint `name` on every established session of `node`.
    ///
    /// # Errors
    /// [`EndpointError::BadName`]; per-session frame results otherwise.
    pub async fn send_to_all(
        &self,
        node: &Node,
        name: &str,
        body: &[u8],
    ) -> Result<Vec<(SessionId, Result<(), FrameError>)>, EndpointError> {
        Ok(node.send_to_all(self.ty, encode(name, body)?).await)
    }

    /// Sends `body` to endpoint `name` on the given sessions.
    ///
    /// # Errors
    /// [`EndpointError::BadName`]; per-session frame results otherwise.
    pub async fn send_to_sessions(
        &self,
        node: &Node,
        sessions: &[SessionId],
        name: &str,
        body: &[u8],
    ) -> Result<Vec<(SessionId, Result<(), FrameError>)>, EndpointError> {
        Ok(node.send_to_sessions(sessions, self.ty, encode(name, body)?).await)
    }

    /// Serves one session until it ends: endpoint frames go to their endpoints (waiting
    /// while a queue is full), other frames to `others`.
    pub async fn serve(&self, session: Session, mut others: FrameDispatcher) {
        while let Some((ty, body)) = session.recv_frame().await {
            if ty != self.ty {
                others.dispatch(&session, ty, body);
                continue;
            }
            let Some((&len, rest)) = body.split_first() else { continue };
            let len = usize::from(len);
            let Some(name) = rest.get(..len).and_then(|n| std::str::from_utf8(n).ok()) else { continue };
            let tx = lock(&self.routes).get(name).cloned();
            let msg =
                EndpointMessage { from: session.peer_node_id(), session: session.id(), body: body.slice(1 + len..) };
            match tx {
                // Waiting here stops this session's frames from being taken: backpressure.
                Some(tx) => {
                    let _ = tx.send(msg).await;
                }
                None => *lock(&self.unknown) += 1,
            }
        }
    }
}
