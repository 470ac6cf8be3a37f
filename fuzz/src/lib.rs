//! What the fuzz targets share: a cursor over the fuzzer's bytes, the decoder that turns
//! them into Redis replies, the value types a cache user stores (decoded by every codec),
//! and the input layouts the seed generator (`src/bin/gen_corpus.rs`) writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stampcache::fuzzing::redis::{self, Value};
use stampcache::Codec;

/// A cursor over the fuzzer's bytes; past the end every read gives zeros (or nothing).
pub struct Input<'a> {
    buf: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Input<'a> {
        Input { buf }
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.buf.split_first() {
            Some((&b, rest)) => {
                self.buf = rest;
                b
            }
            None => 0,
        }
    }

    /// Eight bytes, little-endian (missing ones are 0).
    pub fn u64(&mut self) -> u64 {
        let mut a = [0u8; 8];
        for b in &mut a {
            *b = self.u8();
        }
        u64::from_le_bytes(a)
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.buf.split_at(n.min(self.buf.len()));
        self.buf = tail;
        head
    }

    /// A byte string whose length is the next byte.
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.buf.len())
    }
}

/// How deep [`redis_value`] nests arrays and maps.
pub const MAX_DEPTH: usize = 4;

/// One Redis reply value from the cursor: a tag byte, then the variant's contents. Tag
/// 15 parses RESP bytes with the `redis` crate's own parser.
pub fn redis_value(r: &mut Input<'_>, depth: usize) -> Value {
    let tag = r.u8() % 16;
    let nested = depth < MAX_DEPTH;
    let items = |r: &mut Input<'_>| -> Vec<Value> {
        if !nested {
            return Vec::new();
        }
        let n = r.u8() % 8;
        (0..n).map(|_| redis_value(r, depth + 1)).collect()
    };
    match tag {
        0 => Value::Nil,
        1 => Value::Int(r.u64() as i64),
        2 | 3 => Value::BulkString(r.bytes().to_vec()),
        4 => Value::Array(items(r)),
        5 => Value::SimpleString(String::from_utf8_lossy(r.bytes()).into_owned()),
        6 => Value::Okay,
        7 => {
            let flat = items(r);
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Value::Map(pairs)
        }
        8 => Value::Set(items(r)),
        9 => Value::Double(f64::from_bits(r.u64())),
        10 => Value::Boolean(r.u8() & 1 == 1),
        11 => Value::BigNumber(r.bytes().to_vec()),
        12 => Value::Attribute {
            data: Box::new(if nested {
                redis_value(r, depth + 1)
            } else {
                Value::Nil
            }),
            attributes: Vec::new(),
        },
        13 => Value::Push {
            kind: redis::PushKind::Invalidate,
            data: items(r),
        },
        14 => Value::VerbatimString {
            format: redis::VerbatimFormat::Text,
            text: String::from_utf8_lossy(r.bytes()).into_owned(),
        },
        _ => redis::parse_redis_value(r.bytes()).unwrap_or(Value::Nil),
    }
}

/// The reply of `MGET entry stamps... [dead...]` as the store reads it, built to reach past
/// the checksum: per stamp its current value and its last (dead) value, each present or
/// not, and the entry's checksum computed over a chosen mix of them (so hits, stale hits
/// and misses all occur), then the payload. Returns the reply and the number of stamps.
pub fn mget_reply(r: &mut Input<'_>, with_dead: bool) -> (Value, usize) {
    let n = usize::from(r.u8() % 5);
    let mut current = Vec::with_capacity(n);
    let mut dead = Vec::with_capacity(n);
    let mut signed = Vec::with_capacity(n);
    for _ in 0..n {
        let flags = r.u8();
        let cur = r.bytes().to_vec();
        let old = r.bytes().to_vec();
        signed.push(if flags & 4 == 0 {
            cur.clone()
        } else {
            old.clone()
        });
        current.push((flags & 1 == 0).then_some(cur));
        dead.push((flags & 2 == 0).then_some(old));
    }
    let signed: Vec<&[u8]> = signed.iter().map(Vec::as_slice).collect();
    let mut entry = stampcache::fuzzing::checksum(&signed).to_vec();
    let cut = usize::from(r.u8());
    if cut < stampcache::fuzzing::CHECKSUM_LEN {
        entry.truncate(cut); // a short or damaged header
    }
    entry.extend_from_slice(r.rest());
    let bulk = |v: Option<Vec<u8>>| v.map_or(Value::Nil, Value::BulkString);
    let mut items = vec![Value::BulkString(entry)];
    items.extend(current.into_iter().map(bulk));
    if with_dead {
        items.extend(dead.into_iter().map(bulk));
    }
    (Value::Array(items), n)
}

/// A kind of article, to have every enum shape in the decoded types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    /// A unit variant.
    Draft,
    /// A struct variant.
    Published {
        /// When.
        at: i64,
    },
    /// A newtype variant.
    Other(String),
    /// A tuple variant.
    Pair(u8, Option<u16>),
}

/// A row a user caches: nested options, vectors, maps, enums, every scalar serde has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Article {
    /// An id.
    pub id: u64,
    /// A signed number.
    pub delta: i32,
    /// A title.
    pub title: String,
    /// Tags.
    pub tags: Vec<String>,
    /// An optional score.
    pub score: Option<f64>,
    /// An optional parent.
    pub parent: Option<Box<Article>>,
    /// Metadata.
    pub meta: BTreeMap<String, Vec<u8>>,
    /// A kind.
    pub kind: Kind,
    /// A tuple with the smaller scalars.
    pub small: (bool, char, i8, u16, f32, i128, u128),
    /// A unit.
    pub unit: (),
}

/// Decodes `bytes` with codec `C` as each type users cache; a value that decodes must
/// encode again, and its encoding decode to the same encoding (the codec is stable on
/// what it accepted). Returns how many types accepted the bytes.
pub fn decode_as_user_types<C: Codec>(bytes: &[u8]) -> usize {
    fn one<C: Codec, T>(bytes: &[u8]) -> usize
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        let Ok(v) = C::decode::<T>(bytes) else {
            return 0;
        };
        let again = C::encode(&v).expect("a decoded value encodes");
        let w = C::decode::<T>(&again).expect("an encoded value decodes");
        assert_eq!(
            C::encode(&w).expect("a decoded value encodes"),
            again,
            "encoding is stable"
        );
        1
    }
    one::<C, Vec<String>>(bytes)
        + one::<C, (u64, String)>(bytes)
        + one::<C, Vec<Article>>(bytes)
        + one::<C, Option<Vec<(i64, Option<String>)>>>(bytes)
        + one::<C, BTreeMap<String, Vec<u32>>>(bytes)
        + one::<C, Vec<u8>>(bytes)
        + one::<C, String>(bytes)
        + one::<C, Vec<Option<Kind>>>(bytes)
        + one::<C, Vec<Vec<Vec<u64>>>>(bytes)
}
