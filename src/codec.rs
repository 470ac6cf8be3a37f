//! Codecs: how values become bytes in the shared tier.
//!
//! The default is [`Bitcode`], picked by speed on the shared workload (a `Vec` of 100 rows,
//! `cargo bench --bench codecs --features postcard,bincode`, one run on the project's
//! 2-core machine): decode 8.9 us against postcard 14.3 us and bincode 2 18.0 us, encode
//! 4.8 us against 4.0 and 4.0, and the smallest output (21,140 bytes against 21,563 and
//! 21,391). Decoding is what a hit pays, so decode speed decides. wincode was measured
//! too but has no serde support.
//!
//! bitcode panics (instead of returning an error) when asked to encode serde features it
//! does not support, such as internally tagged enums and `#[serde(flatten)]`; [`Bitcode`]
//! catches that and returns [`Error::Codec`], so builds with `panic = "abort"` should use
//! `Postcard` (feature `postcard`) for such types. bincode's format stays available behind
//! the `bincode` feature; its crate is unmaintained (RUSTSEC-2025-0141).

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

/// postcard: varint-compact; returns errors for everything it cannot handle.
#[cfg(feature = "postcard")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

#[cfg(feature = "postcard")]
impl Codec for Postcard {
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(value).map_err(codec_err)
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        postcard::from_bytes(bytes).map_err(codec_err)
    }
}

/// bitcode through its serde support (the default). Its panics become errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bitcode;

/// Runs `f`, turning a panic into a codec error.
fn no_panic<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Codec(format!(
            "bitcode cannot {what} this type: {msg}"
        )))
    })
}

impl Codec for Bitcode {
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        no_panic("encode", || bitcode::serialize(value).map_err(codec_err))
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        no_panic("decode", || bitcode::deserialize(bytes).map_err(codec_err))
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

/// Decodes with a limit of `LIMIT` bytes claimed (bincode's count of what the value holds).
#[cfg(feature = "bincode")]
fn bincode_decode<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, Error> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    bincode::serde::decode_from_slice(bytes, config)
        .map(|(v, _)| v)
        .map_err(codec_err)
}

/// bincode 2's format (the crate is unmaintained).
#[cfg(feature = "bincode")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

#[cfg(feature = "bincode")]
impl Codec for Bincode {
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        bincode::serde::encode_to_vec(value, BINCODE).map_err(codec_err)
    }
    /// bincode allocates a string's or a byte buffer's whole announced length (up to the
    /// limit) before reading it, so the limit follows the input: a decoded value claims at
    /// most 16 bytes per input byte (an `u128` in one varint byte; strings and bytes claim
    /// one), and a 9-byte input can no longer allocate 256 MiB, at most 1 MiB.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        match bytes.len() {
            n if n <= 64 << 10 => bincode_decode::<T, { 1 << 20 }>(bytes),
            n if n <= 1 << 20 => bincode_decode::<T, { 16 << 20 }>(bytes),
            _ => bincode_decode::<T, { 256 << 20 }>(bytes),
        }
    }
}

/// The codec a [`Cache`](crate::Cache) uses unless told otherwise.
pub type DefaultCodec = Bitcode;

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

    #[cfg(feature = "postcard")]
    #[test]
    fn postcard_roundtrips_and_rejects_garbage() {
        roundtrip::<Postcard>();
    }
    #[test]
    fn bitcode_roundtrips_and_rejects_garbage() {
        roundtrip::<Bitcode>();
    }

    #[derive(serde::Serialize)]
    #[serde(tag = "type")]
    enum Tagged {
        A { x: u32 },
        B { y: String, z: bool },
    }

    #[test]
    fn bitcode_panics_become_errors() {
        let mixed = vec![
            Tagged::A { x: 1 },
            Tagged::B {
                y: "s".into(),
                z: true,
            },
        ];
        let err = Bitcode::encode(&mixed).unwrap_err();
        assert!(matches!(err, Error::Codec(_)), "{err}");
    }
    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_roundtrips_and_rejects_garbage() {
        roundtrip::<Bincode>();
    }

    /// Found by `fuzz/` (codec_bincode): 9 bytes announcing a 70 MB string made bincode
    /// allocate it whole before finding the input short. The limit now follows the input.
    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_lengths_past_the_input_do_not_allocate() {
        let mut bytes = vec![0xfc]; // a varint u32 follows
        bytes.extend_from_slice(&(100u32 << 20).to_le_bytes());
        let err = Bincode::decode::<String>(&bytes).unwrap_err().to_string();
        assert!(err.contains("Limit"), "{err}");
        // The densest values (16 bytes claimed per input byte) still decode in each tier.
        for n in [65_000, 1_000_000] {
            let dense = vec![0u128; n];
            let bytes = Bincode::encode(&dense).unwrap();
            assert_eq!(Bincode::decode::<Vec<u128>>(&bytes).unwrap(), dense);
        }
        let text = "x".repeat(2 << 20);
        let bytes = Bincode::encode(&text).unwrap();
        assert_eq!(Bincode::decode::<String>(&bytes).unwrap(), text);
    }
}
