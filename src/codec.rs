//! Codecs: how values become bytes in the shared tier.
//!
//! The default is [`Postcard`]: maintained, compact, handles every serde type, and returns
//! an error (never panics) on bad bytes. bincode's format stays available behind the
//! `bincode` feature; its crate is unmaintained (RUSTSEC-2025-0141).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;

/// Turns values into bytes and back. Implementations must not panic on any input.
pub trait Codec: Send + Sync + 'static {
    /// Encodes a value.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error>;
    /// Decodes bytes produced by `encode` (or anything else: then an error).
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error>;
}

fn codec_err(e: impl std::fmt::Display) -> Error {
    Error::Codec(e.to_string())
}

/// postcard (the default): varint-compact, serde-complete.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(value).map_err(codec_err)
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        postcard::from_bytes(bytes).map_err(codec_err)
    }
}

/// bitcode through its serde support.
#[cfg(feature = "bitcode")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Bitcode;

#[cfg(feature = "bitcode")]
impl Codec for Bitcode {
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        bitcode::serialize(value).map_err(codec_err)
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        bitcode::deserialize(bytes).map_err(codec_err)
    }
}

/// bincode 2's standard configuration with a 256 MiB limit: without one, a bogus length in
/// bad bytes makes bincode try a huge allocation and abort the process.
#[cfg(feature = "bincode")]
const BINCODE: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ 256 << 20 }>,
> = bincode::config::standard().with_limit::<{ 256 << 20 }>();

/// bincode 2's format (the crate is unmaintained).
#[cfg(feature = "bincode")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

#[cfg(feature = "bincode")]
impl Codec for Bincode {
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        bincode::serde::encode_to_vec(value, BINCODE).map_err(codec_err)
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        bincode::serde::decode_from_slice(bytes, BINCODE)
            .map(|(v, _)| v)
            .map_err(codec_err)
    }
}

/// The codec a [`Cache`](crate::Cache) uses unless told otherwise.
pub type DefaultCodec = Postcard;

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<C: Codec>() {
        let v: Vec<(u32, String, Option<bool>)> =
            vec![(1, "a".into(), None), (2, "b".into(), Some(true))];
        let bytes = C::encode(&v).unwrap();
        assert_eq!(
            C::decode::<Vec<(u32, String, Option<bool>)>>(&bytes).unwrap(),
            v
        );
        // Truncated and garbage input are errors, not panics.
        for cut in 0..bytes.len() {
            let _ = C::decode::<Vec<(u32, String, Option<bool>)>>(&bytes[..cut]);
        }
        assert!(C::decode::<Vec<(u32, String, Option<bool>)>>(&[0xff; 16]).is_err());
    }

    #[test]
    fn postcard_roundtrips_and_rejects_garbage() {
        roundtrip::<Postcard>();
    }
    #[cfg(feature = "bitcode")]
    #[test]
    fn bitcode_roundtrips_and_rejects_garbage() {
        roundtrip::<Bitcode>();
    }
    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_roundtrips_and_rejects_garbage() {
        roundtrip::<Bincode>();
    }
}
