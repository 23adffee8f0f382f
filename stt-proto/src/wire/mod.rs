//! Wire formats: checked readers over untrusted bytes, and writers into caller buffers.
//!
//! Every decoder returns `None` (or an error) on short or malformed input; none panics.

pub(crate) mod codec;
pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod header;
pub(crate) mod params;
