//! PostgreSQL column values (pgoutput's text form) to [`Value`]s, by column type OID.
//!
//! A value converts only when its type has one unambiguous form among the values an
//! application puts in conditions. Anything else is *unknown* (`None`): the column is left
//! out of the row image, and the core then widens to the whole table for every scheme that
//! needs it. Guessing wrong would leave stale reads; leaving out costs only misses.
//!
//! The replication session pins `DateStyle = ISO`, `TimeZone = UTC`,
//! `extra_float_digits = 3` (floats that read back exactly) and `bytea_output = hex`, so these forms are the ones parsed.

use crate::Value;

/// Well-known type OIDs (`pg_type.oid`, fixed across versions).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
}

/// `text`'s OID: what an enum column converts as.
pub(crate) const TEXT: u32 = oid::TEXT;

/// The startup options that fix the text forms [`convert`] parses.
pub(crate) const SESSION_OPTIONS: &str =
    "-c DateStyle=ISO,YMD -c TimeZone=UTC -c extra_float_digits=3 -c bytea_output=hex";

/// True when values of this type convert (see [`convert`]); other columns are unknown.
pub(crate) fn is_known(type_oid: u32) -> bool {
    matches!(
        type_oid,
        oid::BOOL
            | oid::BYTEA
            | oid::CHAR
            | oid::NAME
            | oid::INT8
            | oid::INT2
            | oid::INT4
            | oid::TEXT
            | oid::OID
            | oid::FLOAT4
            | oid::FLOAT8
            | oid::VARCHAR
            | oid::DATE
            | oid::TIMESTAMP
            | oid::TIMESTAMPTZ
            | oid::NUMERIC
            | oid::UUID
    )
}

/// The value of a column of type `type_oid` sent as `text`, or `None` when unknown.
///
/// - `int2`, `int4`, `int8`, `oid`: integers (so `category = 1` matches).
/// - `bool`: `t` / `f`.
/// - `float8`: the float; `float4`: parsed as `f32` then widened, as an application reading
///   the column into an `f32` would hold it (an integral float equals the integer).
/// - `text`, `varchar`, `name`, `"char"`, `uuid`, and enums (mapped to `text` by the
///   relation): text.
/// - `numeric`: its decimal text, which matches the number it holds (`1.50` matches `1.5`,
///   an `f64` 1.5 and a `rust_decimal` written as text; `2.00` matches the integer 2).
///   `NaN` and infinities are unknown.
/// - `date`: `YYYY-MM-DD` text, [`Value::date`]'s form.
/// - `timestamptz`: [`Value::timestamp`]'s form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
/// - `timestamp` (without time zone): the same form, its wall-clock time read as UTC (what
///   [`Value::timestamp`] gives for a `SystemTime` stored in it with a UTC session).
/// - `bytea`: the bytes.
/// - everything else: unknown. `char(n)` is unknown: SQL equality ignores its padding, so
///   `'ab'` and `'ab  '` are the same value to a query but not to the cache. BC dates and
///   years past 9999 are unknown.
pub(crate) fn convert(type_oid: u32, text: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(text).ok()?;
    match type_oid {
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => s.parse::<i128>().ok().map(Value::Int),
        oid::BOOL => match s {
            "t" => Some(Value::Bool(true)),
            "f" => Some(Value::Bool(false)),
            _ => None,
        },
        oid::FLOAT8 => float(s).map(Value::Float),
        oid::FLOAT4 => float32(s).map(|f| Value::Float(f64::from(f))),
        oid::TEXT | oid::VARCHAR | oid::NAME | oid::CHAR | oid::UUID => {
            Some(Value::Text(s.to_owned()))
        }
        oid::DATE => date(s).map(|_| Value::Text(s.to_owned())),
        oid::TIMESTAMPTZ => timestamp(s.strip_suffix("+00")?).map(Value::Text),
        oid::TIMESTAMP => timestamp(s).map(Value::Text),
        oid::NUMERIC => numeric(s),
        oid::BYTEA => bytea(s).map(Value::Bytes),
        _ => None,
    }
}

fn float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok().filter(|f: &f64| f.is_finite()),
    }
}

fn float32(s: &str) -> Option<f32> {
    match s {
        "NaN" => Some(f32::NAN),
        "Infinity" => Some(f32::INFINITY),
        "-Infinity" => Some(f32::NEG_INFINITY),
        _ => s.parse().ok().filter(|f: &f32| f.is_finite()),
    }
}

/// Checks `YYYY-MM-DD` (four-digit years only: BC and far dates are unknown).
fn date(s: &str) -> Option<()> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    (b.len() == 10 && b[4] == b'-' && b[7] == b'-' && digits(0..4) && digits(5..7) && digits(8..10))
        .then_some(())
}

/// A `numeric`'s text as a value that matches the number: plain decimals only.
fn numeric(s: &str) -> Option<Value> {
    let v = Value::Text(s.to_owned());
    (v.kind() == Some(crate::value::Kind::Number) && !s.contains(['e', 'E'])).then_some(v)
}

/// `YYYY-MM-DD HH:MM:SS[.f{1,6}]` (the `+00` of a UTC session's `timestamptz` removed) to
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn timestamp(s: &str) -> Option<String> {
    let (date_part, time) = s.split_once(' ')?;
    date(date_part)?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let h = hms.as_bytes();
    let ok = h.len() == 8
        && h[2] == b':'
        && h[5] == b':'
        && h.iter()
            .enumerate()
            .all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit());
    if !ok || frac.len() > 6 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(format!("{date_part}T{hms}.{frac:0<6}Z"))
}

/// `\x` followed by hex pairs.
fn bytea(s: &str) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.as_bytes()
        .chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn integers_match_integer_conditions() {
        assert_eq!(convert(oid::INT4, b"1"), Some(Value::from(1)));
        assert_eq!(
            convert(oid::INT8, b"-9000000000"),
            Some(Value::from(-9_000_000_000_i64))
        );
        assert_eq!(convert(oid::INT2, b"3").unwrap().encode(), "i3");
        assert_eq!(convert(oid::INT4, b"x"), None);
    }

    #[test]
    fn scalars_convert_to_the_form_applications_use() {
        assert_eq!(convert(oid::BOOL, b"t"), Some(Value::from(true)));
        assert_eq!(convert(oid::BOOL, b"f"), Some(Value::from(false)));
        assert_eq!(convert(oid::FLOAT8, b"2.5"), Some(Value::from(2.5)));
        assert_eq!(convert(oid::FLOAT8, b"3"), Some(Value::from(3)));
        assert_eq!(convert(oid::FLOAT4, b"1.1"), Some(Value::from(1.1_f32)));
        assert_eq!(convert(oid::FLOAT8, b"NaN"), Some(Value::from(f64::NAN)));
        assert_eq!(convert(oid::TEXT, b"a&b"), Some(Value::from("a&b")));
        assert_eq!(convert(oid::TEXT, &[0xff]), None);
        assert_eq!(
            convert(oid::DATE, b"2024-02-29"),
            Some(Value::date(2024, 2, 29))
        );
        assert_eq!(convert(oid::DATE, b"0044-03-15 BC"), None);
        assert_eq!(
            convert(oid::BYTEA, b"\\x61ff"),
            Some(Value::from(vec![0x61u8, 0xff]))
        );
        assert_eq!(convert(oid::BYTEA, b"\\x6"), None);
    }

    #[test]
    fn timestamps_take_the_canonical_form() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(
            convert(oid::TIMESTAMPTZ, b"2023-11-14 22:13:20.123456+00"),
            Some(Value::timestamp(t))
        );
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(
            convert(oid::TIMESTAMPTZ, b"2023-11-14 22:13:20.5+00"),
            Some(Value::timestamp(t))
        );
        assert_eq!(
            convert(oid::TIMESTAMPTZ, b"2023-11-14 22:13:20+00"),
            Some(Value::timestamp(
                UNIX_EPOCH + Duration::from_secs(1_700_000_000)
            ))
        );
        assert_eq!(convert(oid::TIMESTAMPTZ, b"2023-11-14 22:13:20+01"), None);
        assert_eq!(convert(oid::TIMESTAMPTZ, b"infinity"), None);
    }

    #[test]
    fn ambiguous_types_are_unknown() {
        const JSONB: u32 = 3802;
        const BPCHAR: u32 = 1042;
        assert_eq!(convert(BPCHAR, b"ab  "), None);
        assert_eq!(convert(JSONB, b"{}"), None);
        assert!(!is_known(JSONB));
        assert!(is_known(oid::INT4));
    }

    #[test]
    fn numerics_match_the_number_they_hold() {
        let m = |t: &[u8]| convert(oid::NUMERIC, t).map(|v| v.encode_match());
        assert_eq!(m(b"1.50"), Some(Value::from(1.5).encode_match()));
        assert_eq!(m(b"2.00"), Some(Value::from(2).encode_match()));
        assert_eq!(m(b"-0.25"), Some(Value::from("-0.250").encode_match()));
        assert_eq!(m(b"NaN"), None);
        assert_eq!(m(b"Infinity"), None);
        assert_eq!(m(b"-Infinity"), None);
    }

    #[test]
    fn timestamps_without_zone_read_as_utc() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(
            convert(oid::TIMESTAMP, b"2023-11-14 22:13:20.123456"),
            Some(Value::timestamp(t))
        );
        assert_eq!(convert(oid::TIMESTAMP, b"2023-11-14 22:13:20+00"), None);
        assert_eq!(convert(oid::TIMESTAMP, b"0044-03-15 12:00:00 BC"), None);
        assert_eq!(convert(oid::TIMESTAMP, b"infinity"), None);
    }
}
