//! The textual form shared with the trace format: a named item with ordered fields,
//! used for packets and frames alike, and the byte-string value syntax.

use core::fmt;

/// A packet or frame as text: `NAME key=value key=value …`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Item {
    /// Packet or frame name (`HELLO`, `PROT`, `DATA`, …).
    pub name: String,
    /// Fields in canonical order.
    pub fields: Vec<(String, String)>,
}

impl Item {
    /// An item with no fields.
    pub fn new(name: &str) -> Self {
        Self { name: name.to_string(), fields: Vec::new() }
    }

    /// Adds a field.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.fields.push((key.to_string(), value.to_string()));
        self
    }

    /// The value of field `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Field `key` as an unsigned number (decimal or `0x` hex).
    ///
    /// # Errors
    /// When the field is present but not a number.
    pub fn num(&self, key: &str) -> Result<Option<u64>, String> {
        self.get(key).map(|v| parse_num(v).ok_or_else(|| format!("{key}={v} is not a number"))).transpose()
    }

    /// Field `key` as bytes (`"text"` or `hex:…`).
    ///
    /// # Errors
    /// When the field is present but not a byte string.
    pub fn bytes(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.get(key).map(|v| parse_bytes(v).ok_or_else(|| format!("{key}={v} is not a byte string"))).transpose()
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// Parses `123` or `0x7b`.
pub fn parse_num(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses lower- or upper-case hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// Parses `"text"` (with `\"`, `\\`, `\n` escapes) or `hex:…`.
pub fn parse_bytes(v: &str) -> Option<Vec<u8>> {
    if let Some(h) = v.strip_prefix("hex:") {
        return unhex(h);
    }
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                'n' => out.push(b'\n'),
                '"' => out.push(b'"'),
                '\\' => out.push(b'\\'),
                _ => return None,
            }
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Some(out)
}

/// Renders bytes canonically: printable ASCII as `"text"`, anything else as `hex:…`.
pub fn render_bytes(b: &[u8]) -> String {
    if !b.is_empty() && b.iter().all(|c| (0x20..0x7f).contains(c) && *c != b'"' && *c != b'\\') {
        format!("\"{}\"", String::from_utf8_lossy(b))
    } else {
        format!("hex:{}", hex(b))
    }
}

/// The deterministic filler used when a trace gives only a length: byte *i* is `i mod 251`.
pub fn filler(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((offset + i) % 251) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        for b in [b"hello".to_vec(), vec![0, 1, 255], b"a\"b".to_vec(), Vec::new()] {
            assert_eq!(parse_bytes(&render_bytes(&b)).unwrap(), b);
        }
        assert_eq!(parse_bytes("\"a\\nb\"").unwrap(), b"a\nb");
        assert!(parse_bytes("hex:abc").is_none());
        assert_eq!(parse_num("0x10"), Some(16));
    }
}
