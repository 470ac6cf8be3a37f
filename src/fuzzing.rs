//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, internal: no part of the
//! API, no semver promise, hidden from the docs).
//!
//! Each function runs one crate-private parser of bytes that come from outside (Redis
//! replies, connection strings, PostgreSQL's replication messages) on one input and returns
//! what it returned, reduced to public types. None may panic on any input: a panic here is
//! a bug in the parser, which the fuzzer reports. Parsers that are public already (the
//! [`Codec`](crate::Codec)s, [`Builder::redis`](crate::Builder::redis),
//! [`Lsn`](crate::cdc::Lsn)'s `FromStr`) are fuzzed through the public API directly.

use crate::error::Error;
use crate::store::redis::reply;

/// The `redis` crate whose [`redis::Value`] the reply parsers take (so a fuzz target builds
/// values of the same version).
pub use redis;

/// Length of the checksum that heads every stored entry.
pub const CHECKSUM_LEN: usize = reply::CHECKSUM_LEN;

/// The checksum an entry stored under these stamp values starts with (as the scripts
/// compute it), so a target can build replies that pass the check.
pub fn checksum(stamps: &[&[u8]]) -> [u8; CHECKSUM_LEN] {
    reply::checksum(stamps.iter().copied())
}

/// The reply of `MGET entry stamps...` through the hit check: the payload of a valid hit
/// (the entry's bytes after its checksum), `None` for a miss, or a protocol error.
pub fn redis_hit(reply: redis::Value) -> Result<Option<Vec<u8>>, Error> {
    Ok(reply::parse_hit(reply)?.map(|(hit, _token)| hit.payload().to_vec()))
}

/// The reply of `MGET entry stamps... dead...` (stale-while-revalidate, `stamps` stamps)
/// through the hit-or-stale check: the payload and whether it is fresh, `None` for a miss,
/// or a protocol error.
pub fn redis_hit_or_stale(
    reply: redis::Value,
    stamps: usize,
) -> Result<Option<(Vec<u8>, bool)>, Error> {
    use crate::store::Fetch;
    Ok(match reply::parse_hit_or_stale(reply, stamps)? {
        Some(Fetch::Hit(hit, _)) => Some((hit.payload().to_vec(), true)),
        Some(Fetch::Stale(hit)) => Some((hit.payload().to_vec(), false)),
        Some(Fetch::Miss(_)) | None => None,
    })
}

/// The prepare script's reply through the token check: the token's text, or a protocol
/// error.
pub fn redis_token(reply: redis::Value) -> Result<String, Error> {
    reply::parse_token(reply).map(|t| t.0.as_str().to_owned())
}

/// A reply converted (with the store's error wrapping) to each type the store reads
/// replies as; the results in that order, errors as text.
pub fn redis_typed(reply: redis::Value) -> Vec<Result<(), String>> {
    fn one<T: redis::FromRedisValue>(v: &redis::Value) -> Result<(), String> {
        reply::typed::<T>("fuzz", v.clone())
            .map(drop)
            .map_err(|e| e.to_string())
    }
    vec![
        one::<String>(&reply),
        one::<i64>(&reply),
        one::<Option<String>>(&reply),
        one::<Option<Vec<u8>>>(&reply),
        one::<Vec<Option<Vec<u8>>>>(&reply),
        one::<Vec<Vec<String>>>(&reply),
        one::<(u64, Vec<String>)>(&reply),
        one::<redis::Value>(&reply),
    ]
}

/// A Redis URL as the builder and the `Tracked` mode's push connection open it (no
/// connection is made): `Ok`, or the [`Error::Config`] naming it.
pub fn redis_url(url: &str) -> Result<(), Error> {
    crate::store::redis::client(url)?;
    let bad = |e: redis::RedisError| crate::store::redis::bad_url(url, e);
    let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(bad)?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP2);
    redis::Client::open(info.set_redis_settings(settings)).map_err(bad)?;
    Ok(())
}

/// One pgoutput message decoded (its kind on success).
#[cfg(feature = "postgres-cdc")]
pub fn pgoutput(bytes: &[u8]) -> Result<char, crate::cdc::DecodeError> {
    use crate::cdc::pgoutput::{decode, Message};
    Ok(match decode(bytes)? {
        Message::Begin { .. } => 'B',
        Message::Commit { .. } => 'C',
        Message::Relation(_) => 'R',
        Message::Insert { .. } => 'I',
        Message::Update { .. } => 'U',
        Message::Delete { .. } => 'D',
        Message::Truncate { .. } => 'T',
        Message::Other(kind) => kind as char,
    })
}

/// A stream of pgoutput messages through the consumer's decoding state (relations, row
/// images from tuples, transactions): Begin and Commit as the transport reports them, the
/// others through the assembler. Goes on past errors, as a new session would; returns each
/// message's result (a commit's: its row images and whole tables, in their debug form).
#[cfg(feature = "postgres-cdc")]
pub fn pgoutput_stream(messages: &[&[u8]]) -> Vec<Result<Option<String>, crate::cdc::CdcError>> {
    use crate::cdc::assemble::Assembler;
    use crate::cdc::pgoutput::{decode, Message};
    use crate::cdc::{Lsn, TableNames};
    let mut asm = Assembler::new(TableNames::new(), 8);
    let mut out = Vec::with_capacity(messages.len());
    for bytes in messages {
        let result = match bytes.first() {
            Some(b'B') => decode(bytes).map_err(Into::into).map(|_| {
                asm.begin();
                None
            }),
            Some(b'C') => match decode(bytes) {
                Ok(Message::Commit { end_lsn }) => {
                    asm.commit(Lsn(end_lsn)).map(|tx| Some(format!("{tx:?}")))
                }
                Ok(_) => Ok(None),
                Err(e) => Err(e.into()),
            },
            _ => asm.message(bytes, &mut |_| {}).map(|()| None),
        };
        if result.is_err() {
            asm.reset();
        }
        out.push(result);
    }
    out
}

/// A libpq connection string or `postgres://` URL parsed, and its TLS settings made.
#[cfg(feature = "postgres-cdc")]
pub fn conninfo(s: &str) -> Result<(), crate::cdc::CdcError> {
    let c = crate::cdc::conninfo::ConnInfo::parse(s)?;
    drop(c.tls());
    Ok(())
}

/// A column's text, as PostgreSQL sends it, converted by the column's type OID.
#[cfg(feature = "postgres-cdc")]
pub fn column_value(type_oid: u32, text: &[u8]) -> Option<crate::Value> {
    crate::cdc::types::convert(type_oid, text)
}

/// The type OIDs [`column_value`] converts (the others are unknown).
#[cfg(feature = "postgres-cdc")]
pub fn known_type_oids() -> Vec<u32> {
    (0..4096)
        .filter(|&oid| crate::cdc::types::is_known(oid))
        .collect()
}

/// Entry bytes as the cache stores them (a type tag, then the codec's payload) for `value`
/// of type `T`, with the default codec.
pub fn typed_encode<T>(value: &T) -> Result<Vec<u8>, Error>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    crate::typed::encode::<crate::DefaultCodec, T>(value)
}

/// Entry bytes read back as `T` through the type check and the default codec: the value,
/// or what the check or the codec said (a type mismatch names both types).
pub fn typed_decode<T>(bytes: &[u8]) -> Result<T, String>
where
    T: serde::de::DeserializeOwned + 'static,
{
    crate::typed::decode::<crate::DefaultCodec, T>(bytes).map_err(|e| match e {
        crate::typed::Undecoded::OtherType { stored, requested } => {
            format!("written as {stored}, read as {requested}")
        }
        crate::typed::Undecoded::Codec(e) => e.to_string(),
    })
}
