//! Reading Redis' replies: pure functions from `redis::Value` to what the store answers.
//! No I/O here, so both executors (blocking and async) share every check, and a malformed
//! reply is a typed [`Error::Protocol`], never a panic.

use redis::Value as RValue;

use crate::error::Error;
use crate::store::{was_valid_before_deaths, Fetch, HitBytes, Sum, Token};

/// Length of the hex SHA-1 that heads every entry.
pub(crate) const CHECKSUM_LEN: usize = 40;

/// The most characters of a reply (or of a conversion error) an error message shows.
pub(crate) const SHOWN: usize = 200;

/// A reply that is not what the protocol says it should be. Only the first [`SHOWN`]
/// characters of the reply are formatted, however large it is.
pub(super) fn protocol(what: &str, v: &RValue) -> Error {
    Error::Protocol(bounded(format_args!("{what}: {v:?}")))
}

/// A reply converted to `T`, or a typed error naming the command. The success path moves
/// the reply into `T` and formats nothing; a failure formats a bounded message.
pub(crate) fn typed<T: redis::FromRedisValue>(what: &str, v: RValue) -> Result<T, Error> {
    redis::from_redis_value(v).map_err(|e| Error::Protocol(bounded(format_args!("{what}: {e}"))))
}

/// `args` formatted, cut after [`SHOWN`] characters (`…` marks the cut). Formatting stops
/// at the cut, so a huge value costs no more than a small one.
fn bounded(args: std::fmt::Arguments<'_>) -> String {
    struct Upto {
        out: String,
        left: usize,
        cut: bool,
    }
    impl std::fmt::Write for Upto {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            match s.char_indices().nth(self.left) {
                None => {
                    self.left -= s.chars().count();
                    self.out.push_str(s);
                    Ok(())
                }
                Some((end, _)) => {
                    self.out.push_str(&s[..end]);
                    self.left = 0;
                    self.cut = true;
                    Err(std::fmt::Error) // stops the formatting here
                }
            }
        }
    }
    let mut w = Upto {
        out: String::new(),
        left: SHOWN,
        cut: false,
    };
    let _ = std::fmt::write(&mut w, args);
    if w.cut {
        w.out.push('…');
    }
    w.out
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

/// Whether `items` (`entry stamp…` of an `MGET`) hold an entry whose checksum the stamps
/// match: no copy, no allocation.
fn valid_hit(items: &[RValue]) -> Result<bool, Error> {
    let Some((entry, stamps)) = items.split_first() else {
        return Err(Error::Protocol("mget: an empty reply".into()));
    };
    for s in stamps {
        match s {
            RValue::BulkString(_) => {}
            RValue::Nil => return Ok(false),
            other => return Err(protocol("mget stamp", other)),
        }
    }
    match entry {
        RValue::BulkString(e) => {
            Ok(e.len() >= CHECKSUM_LEN && e[..CHECKSUM_LEN] == checksum(stamps.iter().map(stamp)))
        }
        RValue::Nil => Ok(false),
        other => Err(protocol("mget entry", other)),
    }
}

/// A bulk string's bytes.
fn bytes(v: &RValue) -> Option<&[u8]> {
    match v {
        RValue::BulkString(b) => Some(b),
        _ => None,
    }
}

/// A stamp's bytes (after a check that every stamp is a bulk string).
fn stamp(v: &RValue) -> &[u8] {
    bytes(v).unwrap_or_default()
}

/// The entry (the first item) taken out of a reply whose check passed.
fn take_entry(items: &mut [RValue]) -> Option<Vec<u8>> {
    match std::mem::replace(items.first_mut()?, RValue::Nil) {
        RValue::BulkString(buf) if buf.len() >= CHECKSUM_LEN => Some(buf),
        _ => None,
    }
}

/// The hit of an entry taken out of a checked reply, and its token.
fn hit_of(buf: Vec<u8>) -> (HitBytes, Token) {
    // Checked against the hex checksum of the stamps already: ASCII.
    let token = Token(Sum::new(&buf[..CHECKSUM_LEN]).unwrap_or_default(), 0);
    (
        HitBytes::Owned {
            buf,
            start: CHECKSUM_LEN,
        },
        token,
    )
}

/// Checks the reply of `MGET entry stamps...`: the entry if present and every stamp
/// matches the checksum it was stored with. The entry's bytes are moved, never copied.
pub(crate) fn parse_hit(v: RValue) -> Result<Option<(HitBytes, Token)>, Error> {
    let RValue::Array(mut items) = v else {
        return Err(protocol("mget", &v));
    };
    if !valid_hit(&items)? {
        return Ok(None);
    }
    Ok(take_entry(&mut items).map(hit_of))
}

/// Checks the reply of `MGET entry stamps... dead...`: a valid hit, a stale one (valid
/// until stamps died within the grace), or nothing. The entry's bytes are moved, never
/// copied.
pub(crate) fn parse_hit_or_stale(v: RValue, n: usize) -> Result<Option<Fetch>, Error> {
    let RValue::Array(mut items) = v else {
        return Err(protocol("mget", &v));
    };
    if items.len() != 1 + 2 * n {
        return Err(protocol("mget", &RValue::Array(items)));
    }
    if valid_hit(&items[..=n])? {
        return Ok(take_entry(&mut items).map(|buf| {
            let (hit, token) = hit_of(buf);
            Fetch::Hit(hit, token)
        }));
    }
    let Some(stored) = items
        .first()
        .and_then(bytes)
        .and_then(|e| e.get(..CHECKSUM_LEN))
    else {
        return Ok(None);
    };
    let current: Vec<Option<&[u8]>> = items[1..=n].iter().map(bytes).collect();
    let dead: Vec<Option<&[u8]>> = items[n + 1..].iter().map(bytes).collect();
    let matches = |values: &[&[u8]]| checksum(values.iter().copied()) == *stored;
    if !was_valid_before_deaths(matches, &current, &dead) {
        return Ok(None);
    }
    Ok(take_entry(&mut items).map(|buf| {
        Fetch::Stale(HitBytes::Owned {
            buf,
            start: CHECKSUM_LEN,
        })
    }))
}

/// Whether the reply of `MGET stamps…` holds every stamp and their checksum is `token`'s,
/// read in place (no conversion, no copy).
pub(crate) fn stamps_match(v: &RValue, token: &Token) -> Result<bool, Error> {
    let RValue::Array(items) = v else {
        return Err(protocol("mget", v));
    };
    for s in items {
        match s {
            RValue::BulkString(_) => {}
            RValue::Nil => return Ok(false),
            other => return Err(protocol("mget stamp", other)),
        }
    }
    Ok(token.0.as_bytes() == checksum(items.iter().map(stamp)))
}

/// Parses the prepare script's reply.
pub(crate) fn parse_token(v: RValue) -> Result<Token, Error> {
    match v {
        RValue::BulkString(cs) if cs.len() == CHECKSUM_LEN => Sum::new(&cs)
            .map(|sum| Token(sum, 0))
            .ok_or_else(|| Error::Protocol("prepare: checksum is not text".into())),
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
    fn errors_show_a_bounded_part_of_huge_replies() {
        let huge = RValue::Array(vec![bulk(&[b'x'; 1_000_000]), RValue::Int(1)]);
        for e in [
            typed::<i64>("get", huge.clone()).unwrap_err(),
            typed::<String>("get", RValue::Array(vec![bulk(&[b'z'; 1_000_000])])).unwrap_err(),
            parse_hit(bulk(&[b'y'; 1_000_000])).unwrap_err(),
            protocol("mget", &huge),
        ] {
            let Error::Protocol(msg) = e else {
                panic!("not a protocol error: {e:?}")
            };
            assert!(msg.chars().count() <= SHOWN + 1, "{} chars", msg.len());
            assert!(msg.ends_with('…'), "{msg}");
        }
        // Small ones are shown whole, with the command's name.
        let Error::Protocol(msg) = typed::<i64>("get", bulk(b"abc")).unwrap_err() else {
            panic!()
        };
        assert!(msg.starts_with("get: ") && !msg.ends_with('…'), "{msg}");
        assert_eq!(typed::<Vec<u8>>("get", bulk(b"abc")).unwrap(), b"abc");
    }

    #[test]
    fn stale_hits_are_told_from_valid_and_dead_ones() {
        let cs = checksum([&b"s1"[..], &b"s2"[..]].into_iter());
        let mut entry = cs.to_vec();
        entry.extend_from_slice(b"payload");
        let reply = |s1: RValue, d1: RValue| {
            RValue::Array(vec![bulk(&entry), s1, bulk(b"s2"), d1, RValue::Nil])
        };
        match parse_hit_or_stale(reply(bulk(b"s1"), RValue::Nil), 2).unwrap() {
            Some(Fetch::Hit(hit, token)) => {
                assert_eq!(hit.payload(), b"payload");
                assert_eq!(token.0.as_bytes(), cs);
            }
            _ => panic!("a valid hit"),
        }
        // s1 died (its last value kept): stale.
        match parse_hit_or_stale(reply(bulk(b"s1b"), bulk(b"s1")), 2).unwrap() {
            Some(Fetch::Stale(hit)) => assert_eq!(hit.payload(), b"payload"),
            _ => panic!("a stale hit"),
        }
        // s1 changed and its dead value is not the one the entry was stored under: nothing.
        assert!(parse_hit_or_stale(reply(bulk(b"s1b"), bulk(b"s0")), 2)
            .unwrap()
            .is_none());
        assert!(matches!(
            parse_hit_or_stale(reply(bulk(b"s1"), RValue::Nil), 3),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn confirmations_read_stamps_in_place() {
        let token = Token(
            Sum::new(&checksum([&b"a"[..], &b"b"[..]].into_iter())).unwrap(),
            0,
        );
        let r = |a: RValue| RValue::Array(vec![a, bulk(b"b")]);
        assert!(stamps_match(&r(bulk(b"a")), &token).unwrap());
        assert!(!stamps_match(&r(bulk(b"c")), &token).unwrap());
        assert!(!stamps_match(&r(RValue::Nil), &token).unwrap());
        assert!(stamps_match(&r(RValue::Int(1)), &token).is_err());
    }

    #[test]
    fn tokens_parse_or_fail_typed() {
        assert_eq!(
            parse_token(bulk(&[b'b'; 40])).unwrap().0.as_str(),
            "b".repeat(40)
        );
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
