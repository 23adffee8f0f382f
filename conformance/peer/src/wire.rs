//! Byte-level codec of docs/protocol.md §2, §4.3 (addresses), §4.6, §7.1 and §12.1,
//! written from the text.

use std::net::SocketAddr;

use crate::item::{filler, hex, parse_bytes, render_bytes, unhex, Item};

/// A bounds-checked reader.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    /// Bytes left.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
    /// `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    /// A QUIC varint (RFC 9000 §16).
    pub fn varint(&mut self) -> Option<u64> {
        let first = *self.buf.first()?;
        let len = 1usize << (first >> 6);
        let bytes = self.take(len)?;
        let mut v = u64::from(first & 0x3f);
        for b in &bytes[1..] {
            v = v << 8 | u64::from(*b);
        }
        Some(v)
    }
    /// `length(varint) ‖ bytes`.
    pub fn var_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }
}

/// Appends a QUIC varint in its shortest form.
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// Appends an address as in `observed_addr` (§4.3): `0x04 ipv4(4) port(2) | 0x06 ipv6(16) port(2)`.
pub fn push_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v) => {
            out.push(4);
            out.extend_from_slice(&v.ip().octets());
            out.extend_from_slice(&v.port().to_be_bytes());
        }
        SocketAddr::V6(v) => {
            out.push(6);
            out.extend_from_slice(&v.ip().octets());
            out.extend_from_slice(&v.port().to_be_bytes());
        }
    }
}

/// Reads an `observed_addr` (§4.3): `Some(None)` for `0x00`, `None` when malformed.
pub fn read_addr(r: &mut Reader<'_>) -> Option<Option<SocketAddr>> {
    let kind = r.u8()?;
    let ip: std::net::IpAddr = match kind {
        0 => return Some(None),
        4 => <[u8; 4]>::try_from(r.take(4)?).ok()?.into(),
        6 => <[u8; 16]>::try_from(r.take(16)?).ok()?.into(),
        _ => return None,
    };
    let port = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
    Some(Some(SocketAddr::new(ip, port)))
}

/// Most addresses in a CANDIDATES frame (§12.1).
pub const MAX_CANDIDATES: usize = 8;

/// Transport parameter names in id order (§4.6); id 0x04 is the app-frame bitmap.
pub const PARAMS: [(u64, &str); 9] = [
    (0x01, "idle_timeout_ms"),
    (0x02, "max_udp_payload"),
    (0x03, "max_datagram_frame"),
    (0x04, "app_frame_types"),
    (0x05, "max_app_frame"),
    (0x06, "initial_max_data"),
    (0x07, "initial_max_stream_data"),
    (0x08, "initial_max_streams_bidi"),
    (0x09, "initial_max_streams_uni"),
];

/// Encodes parameters given as fields; fields with other names are ignored.
/// `params=hex:…` replaces the whole list with raw bytes.
///
/// # Errors
/// A value that is not a number (or, for `app_frame_types`, not 16 bytes of hex).
pub fn encode_params(fields: &Item) -> Result<Vec<u8>, String> {
    if let Some(raw) = fields.bytes("params")? {
        return Ok(raw);
    }
    let mut out = Vec::new();
    for (id, name) in PARAMS {
        if id == 0x04 {
            if let Some(b) = fields.bytes(name)? {
                put_varint(&mut out, id);
                put_varint(&mut out, b.len() as u64);
                out.extend_from_slice(&b);
            }
            continue;
        }
        if let Some(v) = fields.num(name)? {
            let mut val = Vec::new();
            put_varint(&mut val, v);
            put_varint(&mut out, id);
            put_varint(&mut out, val.len() as u64);
            out.extend_from_slice(&val);
        }
    }
    Ok(out)
}

/// Decodes a parameter list into named fields (unknown ids shown as `param_ID`).
///
/// # Errors
/// A malformed list, a repeated id or a malformed value (§4.6 [HS-15]).
pub fn decode_params(buf: &[u8], into: &mut Item) -> Result<(), String> {
    let mut r = Reader::new(buf);
    let mut seen = Vec::new();
    while !r.rest().is_empty() {
        let id = r.varint().ok_or("truncated parameter id")?;
        let value = r.var_bytes().ok_or("truncated parameter value")?;
        if seen.contains(&id) {
            return Err(format!("parameter {id:#x} repeated"));
        }
        seen.push(id);
        match PARAMS.iter().find(|(i, _)| *i == id) {
            Some((0x04, name)) => into.fields.push((name.to_string(), format!("hex:{}", crate::item::hex(value)))),
            Some((_, name)) => {
                let mut vr = Reader::new(value);
                let v = vr.varint().filter(|_| vr.rest().is_empty()).ok_or("malformed parameter value")?;
                into.fields.push((name.to_string(), v.to_string()));
            }
            None => into.fields.push((format!("param_{id:#x}"), format!("hex:{}", crate::item::hex(value)))),
        }
    }
    Ok(())
}

/// Frame type bytes (§7.1).
mod ty {
    pub const PADDING: u8 = 0x00;
    pub const DATA: u8 = 0x10;
    pub const ACK: u8 = 0x11;
    pub const FINAL: u8 = 0x12;
    pub const KEEP_ALIVE: u8 = 0x13;
    pub const DATAGRAM: u8 = 0x14;
    pub const REHANDSHAKE: u8 = 0x15;
    pub const MAX_DATA: u8 = 0x16;
    pub const MAX_STREAM_DATA: u8 = 0x17;
    pub const MAX_STREAMS: u8 = 0x18;
    pub const DATA_BLOCKED: u8 = 0x19;
    pub const STREAM_DATA_BLOCKED: u8 = 0x1a;
    pub const STREAMS_BLOCKED: u8 = 0x1b;
    pub const STREAM_CLOSE: u8 = 0x21;
    pub const FIN: u8 = 0x22;
    pub const STOP_SENDING: u8 = 0x23;
    pub const SESSION_CLOSE: u8 = 0x30;
    pub const PATH_CHALLENGE: u8 = 0x31;
    pub const PATH_RESPONSE: u8 = 0x32;
    pub const RELAY_REGISTER: u8 = 0x38;
    pub const RELAY_STATUS: u8 = 0x39;
    pub const RELAY_DATA: u8 = 0x3a;
    pub const CANDIDATES: u8 = 0x3b;
}

fn dir_name(d: u8) -> Option<&'static str> {
    match d {
        0 => Some("bidi"),
        1 => Some("uni"),
        _ => None,
    }
}

/// A datagram carried in a RELAY_DATA frame (§12.1): the node id it names and the bytes.
pub type Relayed = ([u8; 32], Vec<u8>);

/// Decodes a packet's plaintext into frame items.
///
/// # Errors
/// The first malformed or unknown frame, as text.
pub fn decode_frames(plain: &[u8]) -> Result<Vec<Item>, String> {
    decode_frames_relayed(plain).map(|(f, _)| f)
}

/// Decodes a packet's plaintext into frame items, and returns the whole datagrams its
/// RELAY_DATA frames carry (the items show only their first 64 bytes).
///
/// # Errors
/// The first malformed or unknown frame, as text.
pub fn decode_frames_relayed(plain: &[u8]) -> Result<(Vec<Item>, Vec<Relayed>), String> {
    let mut r = Reader::new(plain);
    let mut out = Vec::new();
    let mut relayed = Vec::new();
    while let Some(t) = r.u8() {
        let bad = || format!("malformed frame {t:#04x}");
        let item = match t {
            ty::PADDING => {
                let n = r.rest().len() + 1;
                if r.rest().iter().any(|b| *b != 0) {
                    return Err("non-zero byte in PADDING".into());
                }
                r.take(n - 1);
                Item::new("PADDING").with("len", n)
            }
            ty::DATA | ty::FIN => {
                let id = r.varint().ok_or_else(bad)?;
                let off = r.varint().ok_or_else(bad)?;
                let data = r.var_bytes().ok_or_else(bad)?;
                let mut it = Item::new(if t == ty::FIN { "FIN" } else { "DATA" })
                    .with("id", id)
                    .with("off", off)
                    .with("len", data.len());
                if data.len() <= 64 {
                    it = it.with("data", render_bytes(data));
                }
                it
            }
            ty::ACK => {
                let largest = r.varint().ok_or_else(bad)?;
                let delay = r.varint().ok_or_else(bad)?;
                let count = r.varint().ok_or_else(bad)?;
                let first = r.varint().ok_or_else(bad)?;
                let mut lo = largest.checked_sub(first).ok_or_else(bad)?;
                let mut ranges = vec![format!("{lo}-{largest}")];
                for _ in 0..count.min(1000) {
                    let gap = r.varint().ok_or_else(bad)?;
                    let len = r.varint().ok_or_else(bad)?;
                    let hi = lo.checked_sub(gap).and_then(|v| v.checked_sub(2)).ok_or_else(bad)?;
                    lo = hi.checked_sub(len).ok_or_else(bad)?;
                    ranges.push(format!("{lo}-{hi}"));
                }
                Item::new("ACK")
                    .with("largest", largest)
                    .with("delay", delay.saturating_mul(8))
                    .with("ranges", ranges.join(","))
            }
            ty::FINAL => Item::new("FINAL"),
            ty::KEEP_ALIVE => Item::new("KEEP_ALIVE"),
            ty::DATAGRAM => {
                let d = r.var_bytes().ok_or_else(bad)?;
                Item::new("DATAGRAM").with("len", d.len()).with("data", render_bytes(d))
            }
            ty::REHANDSHAKE => {
                let seq = r.varint().ok_or_else(bad)?;
                let msg = r.u8().ok_or_else(bad)?;
                let n = r.var_bytes().ok_or_else(bad)?;
                Item::new("REHANDSHAKE").with("seq", seq).with("msg", msg).with("len", n.len())
            }
            ty::MAX_DATA => Item::new("MAX_DATA").with("max", r.varint().ok_or_else(bad)?),
            ty::MAX_STREAM_DATA => Item::new("MAX_STREAM_DATA")
                .with("id", r.varint().ok_or_else(bad)?)
                .with("max", r.varint().ok_or_else(bad)?),
            ty::MAX_STREAMS | ty::STREAMS_BLOCKED => {
                let d = dir_name(r.u8().ok_or_else(bad)?).ok_or_else(bad)?;
                let v = r.varint().ok_or_else(bad)?;
                if t == ty::MAX_STREAMS {
                    Item::new("MAX_STREAMS").with("dir", d).with("count", v)
                } else {
                    Item::new("STREAMS_BLOCKED").with("dir", d).with("limit", v)
                }
            }
            ty::DATA_BLOCKED => Item::new("DATA_BLOCKED").with("limit", r.varint().ok_or_else(bad)?),
            ty::STREAM_DATA_BLOCKED => Item::new("STREAM_DATA_BLOCKED")
                .with("id", r.varint().ok_or_else(bad)?)
                .with("limit", r.varint().ok_or_else(bad)?),
            ty::STREAM_CLOSE => Item::new("STREAM_CLOSE")
                .with("id", r.varint().ok_or_else(bad)?)
                .with("code", r.varint().ok_or_else(bad)?)
                .with("final", r.varint().ok_or_else(bad)?),
            ty::STOP_SENDING => Item::new("STOP_SENDING")
                .with("id", r.varint().ok_or_else(bad)?)
                .with("code", r.varint().ok_or_else(bad)?),
            ty::SESSION_CLOSE => {
                let kind = match r.u8().ok_or_else(bad)? {
                    0 => "transport",
                    1 => "app",
                    _ => return Err(bad()),
                };
                Item::new("SESSION_CLOSE").with("kind", kind).with("code", r.varint().ok_or_else(bad)?)
            }
            ty::PATH_CHALLENGE | ty::PATH_RESPONSE => {
                let d = r.take(8).ok_or_else(bad)?;
                let name = if t == ty::PATH_CHALLENGE { "PATH_CHALLENGE" } else { "PATH_RESPONSE" };
                Item::new(name).with("data", format!("hex:{}", crate::item::hex(d)))
            }
            ty::RELAY_REGISTER => Item::new("RELAY_REGISTER"),
            ty::RELAY_STATUS => {
                let status = r.u8().ok_or_else(bad)?;
                let observed = read_addr(&mut r).ok_or_else(bad)?;
                Item::new("RELAY_STATUS")
                    .with("status", status)
                    .with("observed", observed.map_or("none".to_string(), |a| a.to_string()))
            }
            ty::RELAY_DATA => {
                let id = r.take(32).ok_or_else(bad)?;
                let d = r.var_bytes().ok_or_else(bad)?;
                relayed.push((<[u8; 32]>::try_from(id).map_err(|_| bad())?, d.to_vec()));
                let mut it = Item::new("RELAY_DATA").with("id", hex(id)).with("len", d.len());
                if d.len() <= 64 {
                    it = it.with("data", render_bytes(d));
                }
                it
            }
            ty::CANDIDATES => {
                let round = r.varint().ok_or_else(bad)?;
                let count = r.u8().ok_or_else(bad)?;
                if usize::from(count) > MAX_CANDIDATES {
                    return Err(format!("CANDIDATES with {count} addresses (at most {MAX_CANDIDATES})"));
                }
                let mut addrs = Vec::new();
                for _ in 0..count {
                    // "as observed_addr, never 0x00"
                    addrs.push(read_addr(&mut r).flatten().ok_or_else(bad)?.to_string());
                }
                let it = Item::new("CANDIDATES").with("round", round).with("count", count);
                if addrs.is_empty() {
                    it
                } else {
                    it.with("addrs", addrs.join(","))
                }
            }
            other => return Err(format!("unknown frame type {other:#04x}")),
        };
        out.push(item);
    }
    Ok((out, relayed))
}

fn need(it: &Item, key: &str) -> Result<u64, String> {
    it.num(key)?.ok_or_else(|| format!("{} needs {key}=", it.name))
}

fn payload(it: &Item, offset: u64) -> Result<Vec<u8>, String> {
    match it.bytes("data")? {
        Some(b) => Ok(b),
        None => Ok(filler(offset, need(it, "len")? as usize)),
    }
}

/// Encodes frame items into a plaintext.
///
/// # Errors
/// An unknown frame name or a missing field.
pub fn encode_frames(items: &[Item]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for it in items {
        let v = |out: &mut Vec<u8>, key: &str| -> Result<(), String> {
            put_varint(out, need(it, key)?);
            Ok(())
        };
        match it.name.as_str() {
            "PADDING" => out.resize(out.len() + it.num("len")?.unwrap_or(1) as usize, 0),
            "DATA" | "FIN" => {
                out.push(if it.name == "FIN" { ty::FIN } else { ty::DATA });
                v(&mut out, "id")?;
                let off = it.num("off")?.unwrap_or(0);
                put_varint(&mut out, off);
                let data = payload(it, off)?;
                put_varint(&mut out, it.num("wire_len")?.unwrap_or(data.len() as u64));
                out.extend_from_slice(&data);
            }
            "ACK" => {
                // ranges=lo-hi,lo-hi highest first
                let text = it.get("ranges").ok_or("ACK needs ranges=")?;
                let mut ranges = Vec::new();
                for r in text.split(',') {
                    let (lo, hi) = r.split_once('-').ok_or("ACK range is lo-hi")?;
                    let lo: u64 = lo.parse().map_err(|_| "ACK range number")?;
                    let hi: u64 = hi.parse().map_err(|_| "ACK range number")?;
                    ranges.push((lo, hi));
                }
                out.push(ty::ACK);
                let (lo0, hi0) = ranges[0];
                put_varint(&mut out, hi0);
                put_varint(&mut out, it.num("delay")?.unwrap_or(0) / 8);
                put_varint(&mut out, ranges.len() as u64 - 1);
                put_varint(&mut out, hi0.checked_sub(lo0).ok_or("ACK range lo > hi")?);
                let mut smallest = lo0;
                for (lo, hi) in &ranges[1..] {
                    let gap = hi.checked_add(2).and_then(|h| smallest.checked_sub(h));
                    put_varint(&mut out, gap.ok_or("ACK ranges must descend with gaps")?);
                    put_varint(&mut out, hi.checked_sub(*lo).ok_or("ACK range lo > hi")?);
                    smallest = *lo;
                }
            }
            "FINAL" => out.push(ty::FINAL),
            "KEEP_ALIVE" => out.push(ty::KEEP_ALIVE),
            "DATAGRAM" => {
                out.push(ty::DATAGRAM);
                let d = payload(it, 0)?;
                put_varint(&mut out, d.len() as u64);
                out.extend_from_slice(&d);
            }
            "REHANDSHAKE" => {
                out.push(ty::REHANDSHAKE);
                v(&mut out, "seq")?;
                out.push(need(it, "msg")? as u8);
                let d = payload(it, 0)?;
                put_varint(&mut out, d.len() as u64);
                out.extend_from_slice(&d);
            }
            "MAX_DATA" => {
                out.push(ty::MAX_DATA);
                v(&mut out, "max")?;
            }
            "MAX_STREAM_DATA" => {
                out.push(ty::MAX_STREAM_DATA);
                v(&mut out, "id")?;
                v(&mut out, "max")?;
            }
            "MAX_STREAMS" | "STREAMS_BLOCKED" => {
                out.push(if it.name == "MAX_STREAMS" { ty::MAX_STREAMS } else { ty::STREAMS_BLOCKED });
                out.push(u8::from(it.get("dir") == Some("uni")));
                v(&mut out, if it.name == "MAX_STREAMS" { "count" } else { "limit" })?;
            }
            "DATA_BLOCKED" => {
                out.push(ty::DATA_BLOCKED);
                v(&mut out, "limit")?;
            }
            "STREAM_DATA_BLOCKED" => {
                out.push(ty::STREAM_DATA_BLOCKED);
                v(&mut out, "id")?;
                v(&mut out, "limit")?;
            }
            "STREAM_CLOSE" => {
                out.push(ty::STREAM_CLOSE);
                v(&mut out, "id")?;
                v(&mut out, "code")?;
                v(&mut out, "final")?;
            }
            "STOP_SENDING" => {
                out.push(ty::STOP_SENDING);
                v(&mut out, "id")?;
                v(&mut out, "code")?;
            }
            "SESSION_CLOSE" => {
                out.push(ty::SESSION_CLOSE);
                out.push(u8::from(it.get("kind") == Some("app")));
                v(&mut out, "code")?;
            }
            "PATH_CHALLENGE" | "PATH_RESPONSE" => {
                out.push(if it.name == "PATH_CHALLENGE" { ty::PATH_CHALLENGE } else { ty::PATH_RESPONSE });
                let d = it.bytes("data")?.ok_or("path frames need data=")?;
                if d.len() != 8 {
                    return Err("path frame data is 8 bytes".into());
                }
                out.extend_from_slice(&d);
            }
            "RELAY_REGISTER" => out.push(ty::RELAY_REGISTER),
            "RELAY_STATUS" => {
                out.push(ty::RELAY_STATUS);
                out.push(it.num("status")?.unwrap_or(0) as u8);
                match it.get("observed") {
                    None | Some("none") => out.push(0),
                    Some(a) => push_addr(&mut out, a.parse().map_err(|_| "RELAY_STATUS observed=ip:port|none")?),
                }
            }
            "RELAY_DATA" => {
                out.push(ty::RELAY_DATA);
                let id = it.get("id").and_then(|v| unhex(v).or_else(|| parse_bytes(v))).filter(|b| b.len() == 32);
                out.extend_from_slice(&id.ok_or("RELAY_DATA needs id= (a node id: 64 hex digits)")?);
                let d = payload(it, 0)?;
                put_varint(&mut out, it.num("wire_len")?.unwrap_or(d.len() as u64));
                out.extend_from_slice(&d);
            }
            "CANDIDATES" => {
                out.push(ty::CANDIDATES);
                v(&mut out, "round")?;
                let addrs: Vec<SocketAddr> = match it.get("addrs") {
                    None => Vec::new(),
                    Some(list) => list
                        .split(',')
                        .map(|a| a.parse().map_err(|_| format!("CANDIDATES addrs: `{a}` is not ip:port")))
                        .collect::<Result<_, _>>()?,
                };
                // `count` may lie (a malformed frame); it defaults to the list's length.
                out.push(it.num("count")?.unwrap_or(addrs.len() as u64) as u8);
                for a in addrs {
                    push_addr(&mut out, a);
                }
            }
            "RAW" => out.extend_from_slice(&it.bytes("data")?.ok_or("RAW needs data=hex:…")?),
            other => return Err(format!("unknown frame {other}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let items = vec![
            Item::new("DATA").with("id", 4).with("off", 7).with("len", 5).with("data", "\"hello\""),
            Item::new("ACK").with("largest", 9).with("delay", 24).with("ranges", "7-9,2-4,0-0"),
            Item::new("MAX_STREAMS").with("dir", "uni").with("count", 7),
            Item::new("SESSION_CLOSE").with("kind", "app").with("code", 300),
            Item::new("RELAY_REGISTER"),
            Item::new("RELAY_STATUS").with("status", 0).with("observed", "203.0.113.7:4000"),
            Item::new("RELAY_STATUS").with("status", 1).with("observed", "none"),
            Item::new("RELAY_DATA").with("id", "ab".repeat(32)).with("len", 3).with("data", "hex:010203"),
            Item::new("CANDIDATES").with("round", 2).with("count", 2).with("addrs", "192.0.2.1:5,[2001:db8::1]:443"),
            Item::new("CANDIDATES").with("round", 1).with("count", 0),
            Item::new("PADDING").with("len", 3),
        ];
        let enc = encode_frames(&items).unwrap();
        let dec = decode_frames(&enc).unwrap();
        assert_eq!(dec, items);
    }

    /// §12.1 byte layouts, written out by hand from the table.
    #[test]
    fn relay_frames_bytes() {
        let enc = |i: Item| encode_frames(&[i]).unwrap();
        assert_eq!(enc(Item::new("RELAY_REGISTER")), [0x38]);
        assert_eq!(
            enc(Item::new("RELAY_STATUS").with("status", 0).with("observed", "192.0.2.10:40000")),
            [0x39, 0, 4, 192, 0, 2, 10, 0x9c, 0x40]
        );
        let mut want = vec![0x3a];
        want.extend_from_slice(&[7; 32]);
        want.extend_from_slice(&[2, b'h', b'i']);
        assert_eq!(enc(Item::new("RELAY_DATA").with("id", hex(&[7; 32])).with("data", "\"hi\"")), want);
        assert_eq!(
            enc(Item::new("CANDIDATES").with("round", 1).with("addrs", "10.0.0.1:1")),
            [0x3b, 1, 1, 4, 10, 0, 0, 1, 0, 1]
        );
        // More than 8 addresses, or a 0x00 address, is malformed.
        assert!(decode_frames(&[0x3b, 1, 9]).is_err());
        assert!(decode_frames(&[0x3b, 1, 1, 0]).is_err());
        assert!(decode_frames(&[0x39, 0, 5]).is_err());
    }

    #[test]
    fn varints() {
        for v in [0u64, 63, 64, 16383, 16384, (1 << 30) - 1, 1 << 30, (1 << 62) - 1] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Reader::new(&b).varint(), Some(v));
        }
        // RFC 9000 §A.1 example: 0x7bbd = 15293.
        assert_eq!(Reader::new(&[0x7b, 0xbd]).varint(), Some(15293));
    }
}
