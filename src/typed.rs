//! Entries that know the type that wrote them.
//!
//! A key says what was read (operation, tables, condition, `extra`), not the Rust type the
//! value was cached as, and the default codec is not self-describing: bytes written as one
//! type decode "successfully" as another. So every entry's bytes start with a tag of the
//! writer's type, and a reader whose type differs gets a miss (or an error, as configured),
//! never a decoded value.
//!
//! ```text
//! 0xA7 | name hash (8, LE) | shape hash (8, LE) | name length (1) | name | codec payload
//! ```
//!
//! * The **name hash** is of [`std::any::type_name`]: it tells `Vec<Article>` from
//!   `Vec<Summary>` and `String` from `Vec<i64>`.
//! * The **shape hash** is of the type's serde layout (struct, field and variant names and
//!   their formats), traced once per type by `serde-reflection`: it tells an `Article` from
//!   the `Article` of an earlier deploy whose fields differ. Types the tracer cannot follow
//!   (`deserialize_any`, custom formats) and values written from a `Serialize`-only type (a
//!   profile's `cache_on_save`) have shape 0, which any shape of the same name accepts.
//! * The **name** itself is kept (up to 255 bytes) so a mismatch can say which type wrote
//!   the entry.
//!
//! Per type, the first encode also decodes its own output once: a type the codec can encode
//! but not decode is an error at its first store, not a miss on every read.

use std::any::{type_name, TypeId};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::codec::Codec;
use crate::error::Error;
use crate::sync::{AtomicBool, Ordering, StaticRwLock};

/// The first byte of every tagged entry.
const MAGIC: u8 = 0xA7;
/// Magic, two hashes and the name's length.
const FIXED: usize = 1 + 8 + 8 + 1;

/// What the cache knows of one Rust type (computed once per type, kept for the process).
#[derive(Debug)]
pub(crate) struct TypeTag {
    /// [`std::any::type_name`] of the type.
    pub name: &'static str,
    name_hash: u64,
    /// 0 when unknown.
    shape_hash: u64,
    /// The type is a `Result`: caching it would cache a loader's error.
    pub is_result: bool,
    /// The codec decoded this type's own output once.
    round_trip_checked: AtomicBool,
}

impl TypeTag {
    fn new(name: &'static str, shape_hash: u64) -> TypeTag {
        TypeTag {
            name,
            name_hash: xxh3_64(name.as_bytes()),
            shape_hash,
            is_result: name.starts_with("core::result::Result<"),
            round_trip_checked: AtomicBool::new(false),
        }
    }

    /// The header this type writes in front of its payload.
    fn header(&self, out: &mut Vec<u8>) {
        let name = truncated(self.name);
        out.push(MAGIC);
        out.extend_from_slice(&self.name_hash.to_le_bytes());
        out.extend_from_slice(&self.shape_hash.to_le_bytes());
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
}

/// At most 255 bytes of `name`, cut at a character boundary.
fn truncated(name: &str) -> &str {
    let mut end = name.len().min(255);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// TypeIds are already hashes: use their bits as they are.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(5) ^ v;
    }
}

type Memo = StaticRwLock<HashMap<TypeId, &'static TypeTag, BuildHasherDefault<IdHasher>>>;

/// The tag of `T`, traced at its first use in this process.
pub(crate) fn tag_of<T: DeserializeOwned + 'static>() -> &'static TypeTag {
    static MEMO: OnceLock<Memo> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let id = TypeId::of::<T>();
    if let Some(tag) = memo.read().get(&id) {
        return tag;
    }
    // Traced outside the lock (a racing thread traces too; the first insert wins).
    let tag = TypeTag::new(type_name::<T>(), shape_hash::<T>());
    let mut memo = memo.write();
    let tag: &'static TypeTag = memo.entry(id).or_insert_with(|| Box::leak(Box::new(tag)));
    tag
}

/// The hash of `T`'s serde layout, or 0 when the tracer cannot follow it.
fn shape_hash<T: DeserializeOwned>() -> u64 {
    use serde_reflection::{Tracer, TracerConfig};
    let traced = std::panic::catch_unwind(|| {
        let mut tracer = Tracer::new(TracerConfig::default());
        let (format, _) = tracer.trace_simple_type::<T>().ok()?;
        // Unchecked: enums nested below the top type may be partly explored, which is
        // still a deterministic function of the type's definition.
        let registry = tracer.registry_unchecked();
        Some(format!("{format:?}{registry:?}"))
    });
    match traced {
        Ok(Some(layout)) => xxh3_64(layout.as_bytes()).max(1),
        _ => 0,
    }
}

/// A value's entry bytes: `T`'s tag, then the codec's payload. The first encode of each
/// type also decodes its output once (see the module docs).
pub(crate) fn encode<C: Codec, T>(value: &T) -> Result<Vec<u8>, Error>
where
    T: Serialize + DeserializeOwned + 'static,
{
    let tag = tag_of::<T>();
    if tag.is_result {
        return Err(Error::ResultValue(tag.name));
    }
    let payload = C::encode(value)?;
    if !tag.round_trip_checked.load(Ordering::Relaxed) {
        if let Err(e) = C::decode::<T>(&payload) {
            return Err(Error::Codec(format!(
                "values of type `{}` encode but do not decode with this codec ({e}); \
                 nothing of this type can be cached: change the type (bitcode supports no \
                 internally tagged or untagged enums and no `flatten`) or choose another \
                 codec with `Builder::codec`",
                tag.name
            )));
        }
        tag.round_trip_checked.store(true, Ordering::Relaxed);
    }
    Ok(with_header(tag, &payload))
}

/// Entry bytes for a value of a type known only as `Serialize` (a profile's
/// `cache_on_save` row): its name, with an unknown shape.
pub(crate) fn encode_unsized<C: Codec, T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let tag = TypeTag::new(type_name::<T>(), 0);
    Ok(with_header(&tag, &C::encode(value)?))
}

fn with_header(tag: &TypeTag, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED + tag.name.len().min(255) + payload.len());
    tag.header(&mut out);
    out.extend_from_slice(payload);
    out
}

/// Why entry bytes did not decode as the requested type.
#[derive(Debug)]
pub(crate) enum Undecoded {
    /// Another type wrote them: its name (or a description of what the bytes were).
    OtherType {
        /// The writer's type name.
        stored: String,
        /// The reader's.
        requested: &'static str,
    },
    /// The tag matched, the codec failed.
    Codec(Error),
}

/// Decodes entry bytes as `T`, checking the writer's tag first.
pub(crate) fn decode<C: Codec, T>(bytes: &[u8]) -> Result<T, Undecoded>
where
    T: DeserializeOwned + 'static,
{
    let tag = tag_of::<T>();
    let (name_hash, shape_hash, stored, payload) =
        split(bytes).ok_or_else(|| Undecoded::OtherType {
            stored: String::from("(bytes without a type tag)"),
            requested: tag.name,
        })?;
    let same_shape = shape_hash == 0 || tag.shape_hash == 0 || shape_hash == tag.shape_hash;
    if name_hash != tag.name_hash || !same_shape {
        let stored = String::from_utf8_lossy(stored).into_owned();
        let stored = match name_hash == tag.name_hash {
            true => format!("{stored} (another shape: its fields or variants differ)"),
            false => stored,
        };
        return Err(Undecoded::OtherType {
            stored,
            requested: tag.name,
        });
    }
    C::decode(payload).map_err(Undecoded::Codec)
}

/// The header's parts and the payload, or `None` for bytes without a well-formed tag.
fn split(bytes: &[u8]) -> Option<(u64, u64, &[u8], &[u8])> {
    if bytes.len() < FIXED || bytes[0] != MAGIC {
        return None;
    }
    let name_hash = u64::from_le_bytes(bytes[1..9].try_into().ok()?);
    let shape_hash = u64::from_le_bytes(bytes[9..17].try_into().ok()?);
    let len = usize::from(bytes[17]);
    let name = bytes.get(FIXED..FIXED + len)?;
    Some((name_hash, shape_hash, name, &bytes[FIXED + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Bitcode;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Article {
        id: i64,
        category: i64,
        title: String,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Summary {
        id: i64,
        views: i64,
        title: String,
    }

    mod old {
        /// The same name as the outer `Article` in another module: only the path differs,
        /// so the shapes are compared through `TypeTag::new` directly below.
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct Article {
            pub id: i64,
            pub title: String,
        }
    }

    #[test]
    fn round_trips_its_own_type() {
        let a = Article {
            id: 1,
            category: 2,
            title: "t".into(),
        };
        let bytes = encode::<Bitcode, _>(&a).unwrap();
        assert_eq!(decode::<Bitcode, Article>(&bytes).unwrap(), a);
    }

    #[test]
    fn another_type_is_refused_with_both_names() {
        let bytes = encode::<Bitcode, _>(&vec![1_i64, 2, 3]).unwrap();
        match decode::<Bitcode, String>(&bytes) {
            Err(Undecoded::OtherType { stored, requested }) => {
                assert!(stored.contains("Vec<i64>"), "{stored}");
                assert!(requested.contains("String"), "{requested}");
            }
            other => panic!("decoded {other:?}"),
        }
        let rows = vec![Article {
            id: 1,
            category: 7,
            title: "t".into(),
        }];
        let bytes = encode::<Bitcode, _>(&rows).unwrap();
        assert!(matches!(
            decode::<Bitcode, Vec<Summary>>(&bytes),
            Err(Undecoded::OtherType { .. })
        ));
    }

    #[test]
    fn another_shape_of_the_same_name_is_refused() {
        // Simulate an earlier deploy: the same name, the layout of `old::Article`.
        let earlier = TypeTag::new(type_name::<Article>(), shape_hash::<old::Article>());
        assert_ne!(earlier.shape_hash, 0);
        let payload = Bitcode::encode(&old::Article {
            id: 1,
            title: "t".into(),
        })
        .unwrap();
        let bytes = with_header(&earlier, &payload);
        match decode::<Bitcode, Article>(&bytes) {
            Err(Undecoded::OtherType { stored, .. }) => {
                assert!(stored.contains("another shape"), "{stored}")
            }
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn untagged_and_truncated_bytes_are_refused() {
        let raw = Bitcode::encode(&5_u64).unwrap();
        assert!(matches!(
            decode::<Bitcode, u64>(&raw),
            Err(Undecoded::OtherType { .. })
        ));
        let bytes = encode::<Bitcode, _>(&5_u64).unwrap();
        for cut in 0..bytes.len() {
            let _ = decode::<Bitcode, u64>(&bytes[..cut]);
        }
    }

    #[test]
    fn results_are_refused() {
        let v: Result<u8, String> = Err("db timeout".into());
        assert!(matches!(
            encode::<Bitcode, _>(&v),
            Err(Error::ResultValue(name)) if name.contains("Result")
        ));
    }

    #[derive(Serialize, Deserialize, Debug)]
    #[serde(tag = "type")]
    enum Tagged {
        A { x: u8 },
    }

    #[test]
    fn a_type_the_codec_cannot_decode_fails_at_its_first_store() {
        let e = encode::<Bitcode, _>(&Tagged::A { x: 1 }).unwrap_err();
        assert!(matches!(e, Error::Codec(_)), "{e:?}");
    }

    #[test]
    fn save_rows_without_a_shape_are_read_by_the_same_name() {
        let a = Article {
            id: 1,
            category: 2,
            title: "t".into(),
        };
        let bytes = encode_unsized::<Bitcode, Article>(&a).unwrap();
        assert_eq!(decode::<Bitcode, Article>(&bytes).unwrap(), a);
    }
}
