//! The `stt` file-transfer protocol: one file per bidirectional STT stream.
//!
//! ```text
//! sender → receiver   header, then the file's bytes, then the end of the stream
//!   header = "STTF" | version (1 byte, = 3) | flags (1 byte; bit 0 = RESUMABLE, bit 1 = UNVERIFIED)
//!            | size (u64 big-endian; u64::MAX = unknown, stdin)
//!            | name length (u16 big-endian, ≤ 255) | name (UTF-8; a bare file name, no path)
//!   (version 2: the same without the flags byte; read by this binary, and written for a
//!   transfer without flags, so that receivers that only speak version 2 still get it)
//! receiver → sender   one reply, then the end of the stream, once the file is on disk
//!
//! A RESUMABLE transfer (`stt send --resume`; the size must be known) inserts one exchange
//! between the header and the bytes, and its reply's digest covers the whole file:
//!
//! ```text
//! receiver → sender   offer = "STTR" | offset (u64 big-endian: bytes it already holds from an
//!                     earlier try by this sender, of this name and size) | SHA-256 of them (32 bytes)
//!                     (or a reply, if it refuses the transfer)
//! sender → receiver   start (u64 big-endian: the offset if its own first bytes hash the same,
//!                     else 0), then the file's bytes from there
//! ```
//!
//! An UNVERIFIED transfer (`stt send --no-verify`; never RESUMABLE) skips the end-to-end
//! digest: neither side hashes the file and the reply's digest is all zeros. Every byte is
//! still authenticated by the session's AEAD; what is given up is the check of the stored
//! bytes against the sender's file (against a fault in either program), for the CPU that
//! SHA-256 costs on each side.
//!
//! A receiver keeps the partial file of an interrupted RESUMABLE transfer (named
//! `NAME.TAG.stt-partial`, TAG from the sender's node id, the name and the size) and removes
//! that of any other transfer.
//!   reply  = status (1 byte: 0 = stored and synced, 6 = counted and discarded, else a code below)
//!            | SHA-256 of the bytes received (32 bytes; zeros if none)
//!            | message length (u16 big-endian, ≤ 1024) | message (UTF-8, for humans)
//! ```
//!
//! The same application codes close sessions (`Session::close`), reset or stop streams
//! and fill the reply's status, so the other side can say in words what happened:
//!
//! | code | name | meaning |
//! |---|---|---|
//! | 0 | `DONE` | finished normally |
//! | 1 | `FAILED` | the receiver could not store the file (disk full, I/O error, truncated) |
//! | 2 | `SENDER_CANCELLED` | the sender was interrupted (Ctrl-C) |
//! | 3 | `RECEIVER_SHUTDOWN` | the receiver was interrupted (Ctrl-C) |
//! | 4 | `REFUSED` | the receiver refused the stream (bad header, unidirectional stream, name taken) |
//! | 5 | `BUSY` | the receiver has too many transfers in flight; try again |
//! | 6 | `DISCARDED` | (reply status only) the receiver counted the bytes and threw them away |

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Finished normally.
pub const DONE: u64 = 0;
/// The receiver could not store the file.
pub const FAILED: u64 = 1;
/// The sender was interrupted.
pub const SENDER_CANCELLED: u64 = 2;
/// The receiver was interrupted.
pub const RECEIVER_SHUTDOWN: u64 = 3;
/// The receiver refused the stream.
pub const REFUSED: u64 = 4;
/// The receiver has too many transfers in flight.
pub const BUSY: u64 = 5;
/// Reply status: the receiver counted the bytes and discarded them (no `--out`).
pub const DISCARDED: u64 = 6;
/// The peer is a relay: it forwards between its members and receives no files.
pub const NOT_A_RECEIVER: u64 = 7;
/// The relay shut down (Ctrl-C or SIGTERM).
pub const RELAY_SHUTDOWN: u64 = 8;

/// The header's first bytes.
pub const MAGIC: &[u8; 4] = b"STTF";
/// The protocol version this binary writes.
pub const VERSION: u8 = 3;
/// The earlier version, without the flags byte; still read.
pub const VERSION_2: u8 = 2;
/// Header flag: the sender can resume (an offer/start exchange precedes the bytes).
pub const FLAG_RESUMABLE: u8 = 1;
/// Header flag: no end-to-end digest (`--no-verify`); the reply's digest is zeros.
pub const FLAG_UNVERIFIED: u8 = 2;
/// The first bytes of a resume offer (never the start of a reply: statuses are ≤ 6).
pub const OFFER_MAGIC: &[u8; 4] = b"STTR";
/// Size value meaning "unknown" (the sender reads stdin).
pub const UNKNOWN_SIZE: u64 = u64::MAX;
/// Longest file name in a header, in bytes.
pub const MAX_NAME: usize = 255;
/// Longest reply message, in bytes.
pub const MAX_MESSAGE: usize = 1024;

/// A code in words, for the side that receives it.
pub fn words(code: u64) -> String {
    match code {
        DONE => "finished normally".into(),
        FAILED => "the receiver could not store the file".into(),
        SENDER_CANCELLED => "sender cancelled".into(),
        RECEIVER_SHUTDOWN => "receiver shut down".into(),
        REFUSED => "the receiver refused the transfer".into(),
        BUSY => "the receiver is busy (too many transfers at once); try again".into(),
        DISCARDED => "the receiver discarded the data".into(),
        NOT_A_RECEIVER => "the peer is a relay: it forwards between registered members and receives no files \
                           (send to a receiver's node id with --relay ADDR --peer ID)"
            .into(),
        RELAY_SHUTDOWN => "the relay shut down".into(),
        other => format!("unknown application code {other}"),
    }
}

/// What the sender announces before the file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The file's size, if known.
    pub size: Option<u64>,
    /// The file's name as sent (sanitize it before use).
    pub name: String,
    /// The sender asks for a resumable transfer (offer/start exchange).
    pub resumable: bool,
    /// The sender hashes the file and checks the receiver's digest (not `--no-verify`).
    pub verified: bool,
}

/// What a receiver answers a RESUMABLE header with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It holds `offset` bytes of an earlier try, whose SHA-256 is `digest`.
    Offer {
        /// Bytes held.
        offset: u64,
        /// SHA-256 of those bytes.
        digest: [u8; 32],
    },
    /// It refused the transfer.
    Reply(Reply),
}

/// The receiver's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// 0 = stored and synced; otherwise a code.
    pub status: u64,
    /// SHA-256 of the bytes the receiver got.
    pub digest: [u8; 32],
    /// For humans.
    pub message: String,
}

/// A malformed header or reply.
#[derive(Debug)]
pub enum WireError {
    /// The stream did not start with [`MAGIC`].
    BadMagic,
    /// A version this binary does not speak.
    Version(u8),
    /// Header flags this binary does not know.
    Flags(u8),
    /// A length field above its limit.
    TooLong(&'static str, usize),
    /// The name or message is not UTF-8.
    NotUtf8(&'static str),
    /// The stream ended or failed before the whole header or reply arrived.
    Io(std::io::Error),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadMagic => f.write_str("not an stt file transfer (bad magic)"),
            WireError::Version(v) => {
                write!(f, "unsupported stt file-transfer version {v} (this binary speaks {VERSION})")
            }
            WireError::Flags(x) => write!(f, "unknown file-transfer header flags {x:#04x}"),
            WireError::TooLong(what, n) => write!(f, "{what} of {n} bytes is too long"),
            WireError::NotUtf8(what) => write!(f, "{what} is not UTF-8"),
            WireError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        WireError::Io(e)
    }
}

/// Encodes a header: version 3 with its flags byte for a resumable or unverified transfer, else version 2
/// (which every receiver reads). `name` must be at most [`MAX_NAME`] bytes (longer names are
/// cut at a character boundary).
pub fn encode_header(h: &Header) -> Vec<u8> {
    let name = truncate(&h.name, MAX_NAME);
    let mut v = Vec::with_capacity(16 + name.len());
    v.extend_from_slice(MAGIC);
    let flags = if h.resumable { FLAG_RESUMABLE } else { 0 } | if h.verified { 0 } else { FLAG_UNVERIFIED };
    if flags != 0 {
        v.push(VERSION);
        v.push(flags);
    } else {
        v.push(VERSION_2);
    }
    v.extend_from_slice(&h.size.unwrap_or(UNKNOWN_SIZE).to_be_bytes());
    v.extend_from_slice(&(name.len() as u16).to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v
}

/// Reads a header (at most 271 bytes are read). Unknown flags are refused.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Header, WireError> {
    let mut start = [0u8; 5];
    r.read_exact(&mut start).await?;
    if &start[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let flags = match start[4] {
        VERSION => r.read_u8().await?,
        VERSION_2 => 0,
        v => return Err(WireError::Version(v)),
    };
    if flags & !(FLAG_RESUMABLE | FLAG_UNVERIFIED) != 0 || flags == FLAG_RESUMABLE | FLAG_UNVERIFIED {
        return Err(WireError::Flags(flags));
    }
    let mut fixed = [0u8; 10];
    r.read_exact(&mut fixed).await?;
    let size = u64::from_be_bytes(fixed[..8].try_into().unwrap_or([0xff; 8]));
    let len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    if len > MAX_NAME {
        return Err(WireError::TooLong("file name", len));
    }
    let mut name = vec![0u8; len];
    r.read_exact(&mut name).await?;
    let name = String::from_utf8(name).map_err(|_| WireError::NotUtf8("file name"))?;
    Ok(Header {
        size: (size != UNKNOWN_SIZE).then_some(size),
        name,
        resumable: flags & FLAG_RESUMABLE != 0,
        verified: flags & FLAG_UNVERIFIED == 0,
    })
}

/// Encodes a resume offer.
pub fn encode_offer(offset: u64, digest: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(44);
    v.extend_from_slice(OFFER_MAGIC);
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(digest);
    v
}

/// Reads the receiver's answer to a RESUMABLE header: an offer, or a refusal's reply.
pub async fn read_answer<R: AsyncRead + Unpin>(r: &mut R) -> Result<Answer, WireError> {
    let first = r.read_u8().await?;
    if first != OFFER_MAGIC[0] {
        return read_reply_after(first, r).await.map(Answer::Reply);
    }
    let mut rest = [0u8; 43];
    r.read_exact(&mut rest).await?;
    if rest[..3] != OFFER_MAGIC[1..] {
        return Err(WireError::BadMagic);
    }
    let offset = u64::from_be_bytes(rest[3..11].try_into().unwrap_or([0xff; 8]));
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&rest[11..]);
    Ok(Answer::Offer { offset, digest })
}

/// Reads the sender's start offset (after an offer).
pub async fn read_start<R: AsyncRead + Unpin>(r: &mut R) -> Result<u64, WireError> {
    Ok(r.read_u64().await?)
}

/// Encodes a reply (the message is cut to [`MAX_MESSAGE`] bytes).
pub fn encode_reply(r: &Reply) -> Vec<u8> {
    let msg = truncate(&r.message, MAX_MESSAGE);
    let mut v = Vec::with_capacity(35 + msg.len());
    v.push(u8::try_from(r.status).unwrap_or(u8::MAX));
    v.extend_from_slice(&r.digest);
    v.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    v.extend_from_slice(msg.as_bytes());
    v
}

/// Reads a reply (at most 1059 bytes are read).
pub async fn read_reply<R: AsyncRead + Unpin>(r: &mut R) -> Result<Reply, WireError> {
    let status = r.read_u8().await?;
    read_reply_after(status, r).await
}

/// Reads the rest of a reply whose status byte was already read.
async fn read_reply_after<R: AsyncRead + Unpin>(status: u8, r: &mut R) -> Result<Reply, WireError> {
    let mut fixed = [0u8; 34];
    r.read_exact(&mut fixed).await?;
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&fixed[..32]);
    let len = u16::from_be_bytes([fixed[32], fixed[33]]) as usize;
    if len > MAX_MESSAGE {
        return Err(WireError::TooLong("reply message", len));
    }
    let mut msg = vec![0u8; len];
    r.read_exact(&mut msg).await?;
    let message = String::from_utf8(msg).map_err(|_| WireError::NotUtf8("reply message"))?;
    Ok(Reply { status: u64::from(status), digest, message })
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn header_round_trip_and_limits() {
        let h = Header { size: Some(3_000_000), name: "report.pdf".into(), resumable: false, verified: true };
        let enc = encode_header(&h);
        assert_eq!(read_header(&mut &enc[..]).await.unwrap(), h);
        let unknown = Header { size: None, name: String::new(), resumable: true, verified: true };
        assert_eq!(read_header(&mut &encode_header(&unknown)[..]).await.unwrap(), unknown);
        // A name longer than the limit is cut on a character boundary.
        let long = Header { size: Some(1), name: "é".repeat(200), resumable: false, verified: true };
        let got = read_header(&mut &encode_header(&long)[..]).await.unwrap();
        assert!(got.name.len() <= MAX_NAME && got.name.chars().all(|c| c == 'é'));
        // Without flags, version 2 (what receivers before version 3 read); with, version 3.
        assert_eq!(&enc[..5], b"STTF\x02");
        let resumable = Header { size: Some(3_000_000), name: "report.pdf".into(), resumable: true, verified: true };
        let enc3 = encode_header(&resumable);
        assert_eq!(&enc3[..6], b"STTF\x03\x01");
        assert_eq!(read_header(&mut &enc3[..]).await.unwrap(), resumable);
        // Oversize length, bad magic, other version, truncated.
        let mut bad = enc.clone();
        bad[13..15].copy_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(read_header(&mut &bad[..]).await, Err(WireError::TooLong(_, 1000))));
        assert!(matches!(read_header(&mut &b"HTTP/1.1 200 OK\r\n"[..]).await, Err(WireError::BadMagic)));
        // Version 1 (SHA3-256 digests) is refused with its number.
        let mut v1 = enc.clone();
        v1[4] = 1;
        assert!(matches!(read_header(&mut &v1[..]).await, Err(WireError::Version(1))));
        // Version 3 without flags is read; unknown flags are refused.
        let mut v3 = enc.clone();
        v3[4] = VERSION;
        v3.insert(5, 0);
        assert_eq!(read_header(&mut &v3[..]).await.unwrap(), h);
        let mut flags = enc3.clone();
        flags[5] = 0x82;
        assert!(matches!(read_header(&mut &flags[..]).await, Err(WireError::Flags(0x82))));
        // UNVERIFIED (`--no-verify`): version 3, flag bit 1; never together with RESUMABLE.
        let unverified = Header { size: Some(10), name: "x".into(), resumable: false, verified: false };
        let enc4 = encode_header(&unverified);
        assert_eq!(&enc4[..6], b"STTF\x03\x02");
        assert_eq!(read_header(&mut &enc4[..]).await.unwrap(), unverified);
        flags[5] = FLAG_RESUMABLE | FLAG_UNVERIFIED;
        assert!(matches!(read_header(&mut &flags[..]).await, Err(WireError::Flags(3))));
        assert!(matches!(read_header(&mut &enc[..enc.len() - 1]).await, Err(WireError::Io(_))));
    }

    #[tokio::test]
    async fn reply_round_trip() {
        let r = Reply { status: FAILED, digest: [7; 32], message: "No space left on device".into() };
        assert_eq!(read_reply(&mut &encode_reply(&r)[..]).await.unwrap(), r);
        let mut bad = encode_reply(&r);
        bad[33..35].copy_from_slice(&2000u16.to_be_bytes());
        assert!(matches!(read_reply(&mut &bad[..]).await, Err(WireError::TooLong(_, 2000))));
    }

    #[tokio::test]
    async fn answer_is_an_offer_or_a_refusal() {
        let offer = encode_offer(12345, &[9; 32]);
        assert_eq!(offer.len(), 44);
        assert_eq!(read_answer(&mut &offer[..]).await.unwrap(), Answer::Offer { offset: 12345, digest: [9; 32] });
        let r = Reply { status: BUSY, digest: [0; 32], message: "busy".into() };
        assert_eq!(read_answer(&mut &encode_reply(&r)[..]).await.unwrap(), Answer::Reply(r));
        assert!(matches!(read_answer(&mut &b"SXXX"[..]).await, Err(WireError::Io(_))));
        let mut bad = offer.clone();
        bad[2] = b'X';
        assert!(matches!(read_answer(&mut &bad[..]).await, Err(WireError::BadMagic)));
        assert_eq!(read_start(&mut &7u64.to_be_bytes()[..]).await.unwrap(), 7);
    }

    #[test]
    fn codes_in_words() {
        assert_eq!(words(SENDER_CANCELLED), "sender cancelled");
        assert_eq!(words(RECEIVER_SHUTDOWN), "receiver shut down");
        assert!(!words(99).contains("NoError"));
    }
}
