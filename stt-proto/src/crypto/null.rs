//! A null AEAD for fuzzing only (feature `fuzzing`): sealing copies, the tag is zero, and
//! opening accepts exactly a zero tag. It lets fuzzers reach frame processing behind the
//! record layer. It is chosen at run time with `Config::crypto_provider`; nothing selects
//! it by default, and it does not exist without the feature.

use alloc::boxed::Box;

use super::{AeadAlg, CryptoError, CryptoProvider, PacketKey, TAG_LEN};

/// The null provider. Never use it outside fuzzing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullAead;

impl CryptoProvider for NullAead {
    fn name(&self) -> &'static str {
        "null (fuzzing only)"
    }

    fn packet_key(&self, _alg: AeadAlg, _key: &[u8; 32]) -> Box<dyn PacketKey> {
        Box::new(NullKey)
    }
}

struct NullKey;

impl PacketKey for NullKey {
    fn seal_in_place(&self, _nonce: &[u8; 12], _aad: &[u8], _payload: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
        Ok([0; TAG_LEN])
    }

    fn open_in_place(
        &self,
        _nonce: &[u8; 12],
        _aad: &[u8],
        _payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        if *tag == [0; TAG_LEN] {
            Ok(())
        } else {
            Err(CryptoError)
        }
    }
}
