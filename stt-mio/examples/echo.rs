//! Server and client in one single-threaded mio loop: the client sends 4 MiB on a
//! bidirectional stream, the server echoes it, the client checks every byte and exits 0.
//!
//! ```sh
//! cargo run -p stt-mio --example echo
//! ```

use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use stt_mio::Driver;
use stt_proto::{Config, Event, Identity, NodeSeed, SharedSeed, StreamId};

const SERVER: Token = Token(0);
const CLIENT: Token = Token(1);

fn driver(token: Token, shared: &SharedSeed, seed: u8) -> std::io::Result<Driver> {
    let socket = mio::net::UdpSocket::bind("127.0.0.1:0".parse().expect("address"))?;
    Driver::new(socket, token, Config::default(), Identity::new(NodeSeed::from_bytes([seed; 32]), shared.clone()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = SharedSeed::from_bytes(stt_proto_random());
    let mut poll = Poll::new()?;
    let mut server = driver(SERVER, &shared, 1)?;
    let mut client = driver(CLIENT, &shared, 2)?;
    server.register(poll.registry())?;
    client.register(poll.registry())?;
    let now = Instant::now();
    let to = server.local_addr()?.into();
    let t = client.instant(now);
    let session = client.node().connect(t, to, None)?;
    client.flush(now, poll.registry())?;

    let data: Vec<u8> = (0..4u32 << 20).map(|i| i.wrapping_mul(2_654_435_761) as u8).collect();
    let (mut sent, mut echoed, mut back) = (0usize, Vec::<u8>::new(), Vec::<u8>::with_capacity(data.len()));
    let mut client_stream: Option<StreamId> = None;
    let mut server_side: Option<(stt_proto::SessionId, StreamId)> = None;
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; 1 << 16];
    let started = Instant::now();
    while back.len() < data.len() {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("echo did not complete in 60 s".into());
        }
        let timeout = [server.timeout(Instant::now()), client.timeout(Instant::now())].into_iter().flatten().min();
        poll.poll(&mut events, timeout.or(Some(Duration::from_millis(100))))?;
        let now = Instant::now();
        for e in events.iter() {
            match e.token() {
                SERVER => server.handle_event(e, now, poll.registry())?,
                CLIENT => client.handle_event(e, now, poll.registry())?,
                _ => {}
            }
        }
        server.handle_timeout(now, poll.registry())?;
        client.handle_timeout(now, poll.registry())?;
        let t = client.instant(now);
        // Client: once established, open the stream and keep writing.
        for e in client.take_events() {
            if matches!(e, Event::Established { .. }) {
                client_stream = client.node().session(session).and_then(|mut s| s.open_bi(t).ok());
            }
        }
        if let (Some(id), Some(mut s)) = (client_stream, client.node().session(session)) {
            while sent < data.len() {
                match s.write(t, id, &data[sent..(sent + 65_536).min(data.len())]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            if sent == data.len() {
                let _ = s.finish(t, id);
            }
            while let Ok((n, _)) = s.read(t, id, &mut buf) {
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
            }
        }
        // Server: accept, read, echo.
        let ts = server.instant(now);
        for e in server.take_events() {
            if let Event::StreamOpened { session, stream } = e {
                server_side = Some((session, stream));
            }
        }
        if let Some((sid, id)) = server_side {
            if let Some(mut s) = server.node().session(sid) {
                while let Ok((n, _)) = s.read(ts, id, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    echoed.extend_from_slice(&buf[..n]);
                }
                while !echoed.is_empty() {
                    match s.write(ts, id, &echoed) {
                        Ok(n) if n > 0 => {
                            echoed.drain(..n);
                        }
                        _ => break,
                    }
                }
            }
        }
        server.flush(now, poll.registry())?;
        client.flush(now, poll.registry())?;
    }
    if back != data {
        return Err("echo differs".into());
    }
    println!("echoed {} bytes intact in {:.2?} on one thread", back.len(), started.elapsed());
    Ok(())
}

fn stt_proto_random() -> [u8; 32] {
    use rand_chacha::rand_core::{OsRng, TryRngCore};
    let mut b = [0u8; 32];
    OsRng.try_fill_bytes(&mut b).expect("OS randomness");
    b
}
