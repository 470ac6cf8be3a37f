//! Reading Redis' replies: pure functions from `redis::Value` to what the store answers.
//! No I/O here, so both executors (blocking and async) share every check, and a malformed
//! reply is a typed [`Error::Protocol`], never a panic.

use redis::Value as RValue;

use crate::error::Error;
use crate::store::{was_valid_before_deaths, Fetch, HitBytes, Token};

/// Length of the hex SHA-1 that heads every entry.
pub(crate) const CHECKSUM_LEN: usize = 40;

/// A reply that is not what the protocol says it should be.
pub(super) fn protocol(what: &str, v: &RValue) -> Error {
    Error::Protocol(format!("{what}: {v:?}"))
}

/// A reply converted to `T`, or a typed error naming the command.
pub(crate) fn typed<T: redis::FromRedisValue>(what: &str, v: RValue) -> Result<T, Error> {
    let shown = format!("{v:?}");
    redis::from_redis_value(v).map_err(|e| Error::Protocol(format!("{what}: {e} in {shown:.200}")))
}

/// The checksum of stamp values, as the scripts compute it: SHA-1 hex of them joined by `,`.
pub(crate) fn checksum<'a>(stamps: impl Iterator<Item = &'a [u8]>) -> [u8; CHECKSUM_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = sha1_smol::Sha1::new();
    for (i, s) in stamps.enumerate() {
        if i > 0 {
            h.update(b",");
        }
        h.update(s);
    }
    let mut out = [0u8; CHECKSUM_LEN];
    for (i, b) in h.digest().bytes().iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

/// Checks the reply of `MGET entry stamps...`: the entry if present and every stamp
/// matches the checksum it was stored with.
pub(crate) fn parse_hit(v: RValue) -> Result<Option<(HitBytes, Token)>, Error> {
    let RValue::Array(mut items) = v else {
        return Err(protocol("mget", &v));
    };
    if items.is_empty() {
        return Err(protocol("mget", &RValue::Array(items)));
    }
    let mut stamps = Vec::with_capacity(items.len() - 1);
    for s in &items[1..] {
        match s {
            RValue::BulkString(b) => stamps.push(b.as_slice()),
            RValue::Nil => return Ok(None),
            other => return Err(protocol("mget stamp", other)),
        }
    }
    let valid = match &items[0] {
        RValue::BulkString(e) => {
            e.len() >= CHECKSUM_LEN && e[..CHECKSUM_LEN] == checksum(stamps.into_iter())
        }
        RValue::Nil => false,
        other => return Err(protocol("mget entry", other)),
    };
    if !valid {
        return Ok(None);
    }
    match items.swap_remove(0) {
        RValue::BulkString(buf) => {
            let token = Token(
                String::from_utf8_lossy(&buf[..CHECKSUM_LEN]).into_owned(),
                0,
            );
            Ok(Some((
                HitBytes::Owned {
                    buf,
                    start: CHECKSUM_LEN,
                },
                token,
            )))
        }
        _ => Ok(None),
    }
}

/// Checks the reply of `MGET entry stamps... dead...`: a valid hit, a stale one (valid
/// until stamps died within the grace), or nothing.
pub(crate) fn parse_hit_or_stale(v: RValue, n: usize) -> Result<Option<Fetch>, Error> {
    let RValue::Array(mut items) = v else {
        return Err(protocol("mget", &v));
    };
    if items.len() != 1 + 2 * n {
        return Err(protocol("mget", &RValue::Array(items)));
    }
    let dead = items.split_off(1 + n);
    let hit_part = RValue::Array(items.clone());
    if let Some((hit, token)) = parse_hit(hit_part)? {
        return Ok(Some(Fetch::Hit(hit, token)));
    }
    let bytes = |v: &RValue| match v {
        RValue::BulkString(b) => Some(b.clone()),
        _ => None,
    };
    let Some(entry) = items.first().and_then(bytes) else {
        return Ok(None);
    };
    if entry.len() < CHECKSUM_LEN {
        return Ok(None);
    }
    let current: Vec<Option<Vec<u8>>> = items[1..].iter().map(bytes).collect();
    let dead: Vec<Option<Vec<u8>>> = dead.iter().map(bytes).collect();
    let current: Vec<Option<&[u8]>> = current.iter().map(|v| v.as_deref()).collect();
    let dead: Vec<Option<&[u8]>> = dead.iter().map(|v| v.as_deref()).collect();
    let stored = &entry[..CHECKSUM_LEN];
    let matches = |values: &[&[u8]]| checksum(values.iter().copied()) == *stored;
    if was_valid_before_deaths(matches, &current, &dead) {
        return Ok(Some(Fetch::Stale(HitBytes::Owned {
            buf: entry,
            start: CHECKSUM_LEN,
        })));
    }
    Ok(None)
}

/// Parses the prepare script's reply.
pub(crate) fn parse_token(v: RValue) -> Result<Token, Error> {
    match v {
        RValue::BulkString(cs) if cs.len() == CHECKSUM_LEN => String::from_utf8(cs)
            .map(|sum| Token(sum, 0))
            .map_err(|_| Error::Protocol("prepare: checksum is not text".into())),
        other => Err(protocol("prepare", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> RValue {
        RValue::BulkString(b.to_vec())
    }

    #[test]
    fn checksum_matches_redis_sha1hex_of_joined_stamps() {
        // redis.sha1hex("a,b") == sha1("a,b")
        assert_eq!(
            checksum([&b"a"[..], &b"b"[..]].into_iter()),
            sha1_smol::Sha1::from("a,b").digest().to_string().as_bytes()
        );
    }

    #[test]
    fn hits_are_checked_against_the_stamps() {
        let cs = checksum([&b"s1"[..], &b"s2"[..]].into_iter());
        let mut entry = cs.to_vec();
        entry.extend_from_slice(b"payload");
        let reply = |e: RValue, a: RValue| RValue::Array(vec![e, a, bulk(b"s2")]);
        let (hit, token) = parse_hit(reply(bulk(&entry), bulk(b"s1")))
            .unwrap()
            .unwrap();
        assert_eq!(hit.payload(), b"payload");
        assert_eq!(token.0.as_bytes(), cs);
        assert!(parse_hit(reply(bulk(&entry), bulk(b"s9")))
            .unwrap()
            .is_none());
        assert!(parse_hit(reply(bulk(&entry), RValue::Nil))
            .unwrap()
            .is_none());
        assert!(parse_hit(reply(RValue::Nil, bulk(b"s1")))
            .unwrap()
            .is_none());
        assert!(parse_hit(reply(bulk(b"short"), bulk(b"s1")))
            .unwrap()
            .is_none());
        assert!(matches!(parse_hit(RValue::Nil), Err(Error::Protocol(_))));
        assert!(matches!(
            parse_hit(reply(RValue::Int(1), bulk(b"s1"))),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn tokens_parse_or_fail_typed() {
        assert_eq!(parse_token(bulk(&[b'b'; 40])).unwrap().0, "b".repeat(40));
        assert!(matches!(
            parse_token(bulk(b"short")),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            parse_token(RValue::Int(3)),
            Err(Error::Protocol(_))
        ));
    }
}
