//! The `stt` file-transfer protocol: one file per bidirectional STT stream.
//!
//! ```text
//! sender → receiver   header, then the file's bytes, then the end of the stream
//!   header = "STTF" | version (1 byte, = 2) | size (u64 big-endian; u64::MAX = unknown, stdin)
//!            | name length (u16 big-endian, ≤ 255) | name (UTF-8; a bare file name, no path)
//! receiver → sender   one reply, then the end of the stream, once the file is on disk
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

/// The header's first bytes.
pub const MAGIC: &[u8; 4] = b"STTF";
/// The protocol version this binary speaks.
pub const VERSION: u8 = 2;
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

/// Encodes a header. `name` must be at most [`MAX_NAME`] bytes (longer names are cut at a
/// character boundary).
pub fn encode_header(h: &Header) -> Vec<u8> {
    let name = truncate(&h.name, MAX_NAME);
    let mut v = Vec::with_capacity(15 + name.len());
    v.extend_from_slice(MAGIC);
    v.push(VERSION);
    v.extend_from_slice(&h.size.unwrap_or(UNKNOWN_SIZE).to_be_bytes());
    v.extend_from_slice(&(name.len() as u16).to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v
}

/// Reads a header (at most 270 bytes are read).
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Header, WireError> {
    let mut fixed = [0u8; 15];
    r.read_exact(&mut fixed).await?;
    if &fixed[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if fixed[4] != VERSION {
        return Err(WireError::Version(fixed[4]));
    }
    let size = u64::from_be_bytes(fixed[5..13].try_into().unwrap_or([0xff; 8]));
    let len = u16::from_be_bytes([fixed[13], fixed[14]]) as usize;
    if len > MAX_NAME {
        return Err(WireError::TooLong("file name", len));
    }
    let mut name = vec![0u8; len];
    r.read_exact(&mut name).await?;
    let name = String::from_utf8(name).map_err(|_| WireError::NotUtf8("file name"))?;
    Ok(Header { size: (size != UNKNOWN_SIZE).then_some(size), name })
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
    let mut fixed = [0u8; 35];
    r.read_exact(&mut fixed).await?;
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&fixed[1..33]);
    let len = u16::from_be_bytes([fixed[33], fixed[34]]) as usize;
    if len > MAX_MESSAGE {
        return Err(WireError::TooLong("reply message", len));
    }
    let mut msg = vec![0u8; len];
    r.read_exact(&mut msg).await?;
    let message = String::from_utf8(msg).map_err(|_| WireError::NotUtf8("reply message"))?;
    Ok(Reply { status: u64::from(fixed[0]), digest, message })
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
        let h = Header { size: Some(3_000_000), name: "report.pdf".into() };
        let enc = encode_header(&h);
        assert_eq!(read_header(&mut &enc[..]).await.unwrap(), h);
        let unknown = Header { size: None, name: String::new() };
        assert_eq!(read_header(&mut &encode_header(&unknown)[..]).await.unwrap(), unknown);
        // A name longer than the limit is cut on a character boundary.
        let long = Header { size: Some(1), name: "é".repeat(200) };
        let got = read_header(&mut &encode_header(&long)[..]).await.unwrap();
        assert!(got.name.len() <= MAX_NAME && got.name.chars().all(|c| c == 'é'));
        // Oversize length, bad magic, other version, truncated.
        let mut bad = enc.clone();
        bad[13..15].copy_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(read_header(&mut &bad[..]).await, Err(WireError::TooLong(_, 1000))));
        assert!(matches!(read_header(&mut &b"HTTP/1.1 200 OK\r\n"[..]).await, Err(WireError::BadMagic)));
        // Version 1 (SHA3-256 digests) is refused with its number.
        let mut v1 = enc.clone();
        v1[4] = 1;
        assert!(matches!(read_header(&mut &v1[..]).await, Err(WireError::Version(1))));
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

    #[test]
    fn codes_in_words() {
        assert_eq!(words(SENDER_CANCELLED), "sender cancelled");
        assert_eq!(words(RECEIVER_SHUTDOWN), "receiver shut down");
        assert!(!words(99).contains("NoError"));
    }
}
