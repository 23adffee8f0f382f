//! # stt-mio: STT inside your own `mio` event loop
//!
//! For games, proxies and custom runtimes that already run a [`mio::Poll`] loop. A
//! [`Driver`] owns a [`stt_proto::Node`] and a [`mio::net::UdpSocket`] registered under
//! a [`mio::Token`] you choose; your loop hands it the events for that token and its
//! timeout, and reaches the node for commands in between.
//!
//! ## Embedding guide
//! ```no_run
//! use std::time::Instant;
//! use mio::{Events, Poll, Token};
//! use stt_mio::{stt_proto, Driver}; // the core, re-exported: no second dependency to keep in step
//! # fn identity() -> stt_proto::Identity {
//! #     stt_proto::Identity::new(stt_proto::NodeSeed::from_bytes([1; 32]), stt_proto::SharedSeed::from_bytes([2; 32]))
//! # }
//!
//! const STT: Token = Token(0);
//! let mut poll = Poll::new()?;
//! let socket = mio::net::UdpSocket::bind("0.0.0.0:7000".parse().unwrap())?;
//! let mut stt = Driver::new(socket, STT, stt_proto::Config::default(), identity())?;
//! stt.register(poll.registry())?;
//! let mut events = Events::with_capacity(256);
//! loop {
//!     // 1. Sleep no longer than the driver's next deadline (plus your own timers).
//!     poll.poll(&mut events, stt.timeout(Instant::now()))?;
//!     for event in events.iter() {
//!         match event.token() {
//!             STT => stt.handle_event(event, Instant::now(), poll.registry())?,
//!             _ => { /* your other sockets */ }
//!         }
//!     }
//!     // 2. Timers: cheap when nothing is due.
//!     stt.handle_timeout(Instant::now(), poll.registry())?;
//!     // 3. Your own work: commands go through `stt.node()`, then flush what they queued.
//!     for e in stt.take_events() {
//!         println!("{e:?}");
//!     }
//!     stt.flush(Instant::now(), poll.registry())?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Rules the driver keeps: reads are edge-triggered and drained until `WouldBlock`; a send
//! that would block parks the datagram, asks for `WRITABLE`, and resumes on that event;
//! `timeout()` is zero only when work is due, so the loop never spins.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The protocol core this driver runs, re-exported (configs, identities, events).
pub use stt_proto;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use mio::event::Event as MioEvent;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stt_proto::{Config, ConfigError, Event, Identity, Input, Instant, Node, Output, PathAddr, UnixTime};

/// Datagrams read per readiness event before output is drained (fairness to other sockets).
const READ_BUDGET: usize = 256;

/// The socket operations the driver needs; implemented for [`mio::net::UdpSocket`].
/// Implement it to put STT on another non-blocking datagram socket (or a test double).
pub trait DatagramSocket: mio::event::Source {
    /// Sends one datagram; `WouldBlock` when the socket cannot take it now.
    ///
    /// # Errors
    /// The socket's.
    fn send_to(&mut self, buf: &[u8], dst: SocketAddr) -> io::Result<usize>;
    /// Receives one datagram; `WouldBlock` when none is waiting.
    ///
    /// # Errors
    /// The socket's.
    fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    /// The bound address.
    ///
    /// # Errors
    /// The socket's.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl DatagramSocket for UdpSocket {
    fn send_to(&mut self, buf: &[u8], dst: SocketAddr) -> io::Result<usize> {
        UdpSocket::send_to(self, buf, dst)
    }
    fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::recv_from(self, buf)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        UdpSocket::local_addr(self)
    }
}

/// A datagram the socket refused with `WouldBlock`, kept until `WRITABLE`.
struct Parked {
    len: usize,
    dst: SocketAddr,
}

/// The STT node, its UDP socket, and the glue between them and a mio loop.
pub struct Driver<S: DatagramSocket = UdpSocket> {
    node: Node<ChaCha20Rng>,
    socket: S,
    token: Token,
    epoch: StdInstant,
    out: Vec<u8>,
    inp: Vec<u8>,
    parked: Option<Parked>,
    writable_requested: bool,
    events: Vec<Event>,
}

impl<S: DatagramSocket> Driver<S> {
    /// Wraps a bound socket. Randomness comes from the OS; wall time from the system clock.
    ///
    /// # Errors
    /// An `InvalidInput` I/O error carrying the [`ConfigError`] if the config is invalid.
    pub fn new(socket: S, token: Token, config: Config, identity: Identity) -> io::Result<Self> {
        let epoch = StdInstant::now();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| UnixTime::from_millis(d.as_millis() as u64))
            .ok();
        let node = Node::new(config, identity, ChaCha20Rng::from_os_rng(), Instant::ZERO, unix)
            .map_err(|e: ConfigError| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self {
            node,
            socket,
            token,
            epoch,
            out: vec![0; 65_536],
            inp: vec![0; 65_536],
            parked: None,
            writable_requested: false,
            events: Vec::new(),
        })
    }

    /// Registers the socket (readable) with `registry` under this driver's token.
    ///
    /// # Errors
    /// The registry's error.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.socket, self.token, Interest::READABLE)
    }

    /// The token this driver answers to.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The socket's local address.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The core, for commands (connect, streams, datagrams, frames, close). Call
    /// [`flush`](Self::flush) afterwards so what they queued is sent.
    pub fn node(&mut self) -> &mut Node<ChaCha20Rng> {
        &mut self.node
    }

    /// The core's clock for `now`.
    pub fn instant(&self, now: StdInstant) -> Instant {
        Instant::from_micros(now.saturating_duration_since(self.epoch).as_micros() as u64)
    }

    /// Events the core produced since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// How long `Poll::poll` may sleep: `None` if only I/O can wake the driver, zero only
    /// when work is due now.
    pub fn timeout(&self, now: StdInstant) -> Option<Duration> {
        let deadline = self.node.next_deadline()?;
        let now = self.instant(now);
        Some(deadline.saturating_duration_since(now))
    }

    /// Handles a mio event for this driver's token: reads until `WouldBlock`, resumes a
    /// parked send on `WRITABLE`, then flushes.
    ///
    /// # Errors
    /// Socket errors other than `WouldBlock` (and the registry's when re-registering).
    pub fn handle_event(&mut self, event: &MioEvent, now: StdInstant, registry: &Registry) -> io::Result<()> {
        if event.token() != self.token {
            return Ok(());
        }
        if event.is_readable() {
            self.read(now)?;
        }
        self.flush(now, registry)
    }

    fn read(&mut self, now: StdInstant) -> io::Result<()> {
        for _ in 0..READ_BUDGET {
            match self.socket.recv_from(&mut self.inp) {
                Ok((n, from)) => {
                    let t = self.instant(now);
                    let _ =
                        self.node.handle_input(Input::Datagram { now: t, from: from.into(), data: &mut self.inp[..n] });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Fires the core's timers if one is due, then flushes.
    ///
    /// # Errors
    /// Socket errors other than `WouldBlock`.
    pub fn handle_timeout(&mut self, now: StdInstant, registry: &Registry) -> io::Result<()> {
        let t = self.instant(now);
        if self.node.next_deadline().is_some_and(|d| d <= t) {
            let _ = self.node.handle_input(Input::Timeout { now: t });
        }
        self.flush(now, registry)
    }

    /// Sends everything the core wants to send and collects its events. If the socket
    /// would block, the datagram is parked and `WRITABLE` requested; output resumes on it.
    ///
    /// # Errors
    /// Socket errors other than `WouldBlock`.
    pub fn flush(&mut self, _now: StdInstant, registry: &Registry) -> io::Result<()> {
        if let Some(p) = self.parked.take() {
            if !self.send(p.dst, p.len, registry)? {
                return Ok(());
            }
        }
        loop {
            match self.node.poll_output(&mut self.out) {
                Output::Transmit(t) => {
                    let PathAddr::Udp(dst) = t.dst else { continue };
                    if !self.send(dst, t.len, registry)? {
                        return Ok(());
                    }
                }
                Output::Event(e) => self.events.push(e),
                Output::Wait(_) => break,
            }
        }
        // Everything is sent: compute the next handshake's ephemeral key off its critical path.
        self.node.precompute();
        if self.writable_requested {
            self.writable_requested = false;
            registry.reregister(&mut self.socket, self.token, Interest::READABLE)?;
        }
        Ok(())
    }

    /// Sends `out[..len]`; on `WouldBlock` parks it and asks for `WRITABLE`. Returns
    /// whether it went out.
    fn send(&mut self, dst: SocketAddr, len: usize, registry: &Registry) -> io::Result<bool> {
        match self.socket.send_to(&self.out[..len], dst) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.parked = Some(Parked { len, dst });
                if !self.writable_requested {
                    self.writable_requested = true;
                    registry.reregister(&mut self.socket, self.token, Interest::READABLE | Interest::WRITABLE)?;
                }
                Ok(false)
            }
            Err(e) => {
                tracing::debug!(error = %e, "send failed; the datagram is dropped (loss recovery resends)");
                Ok(true)
            }
        }
    }

    /// Whether a datagram waits for the socket to become writable.
    pub fn is_send_parked(&self) -> bool {
        self.parked.is_some()
    }
}
