//! Scalar values and their one canonical encoding.
//!
//! Keys are built from [`Value::encode`], so two values give the same key exactly when they
//! are the same value: `3_i32`, `3_i64`, `3_u8` and `3.0_f64` all encode as `i3`. Every
//! encoding starts with a type letter, and text escapes the characters that keys use as
//! separators, so no two distinct values (nor a value and its neighbours in a key) collide.
//!
//! **Coercions, for matching only.** A condition and a row image may carry one database value in two Rust
//! types: an id parsed from a URL path stays text (`"7"` against a row's `7_i64`), a bool
//! column meets `1`, a decimal is text on one side (`"1.50"`) and a float on the other. A
//! missed match there is a stale read, so where rows meet conditions (stamp keys, row
//! images: `Value::encode_match_into`) values that can denote the same database value
//! share one encoding: text holding a plain decimal number (`"7"`, `" 07 "`, `"-1.50"`)
//! encodes as that number, and `true`/`false` (the bools, and the texts `"true"`/`"false"`
//! in any case) as `1`/`0`. Coercions only ever merge encodings, never split them, so the
//! worst they cost is a text `"7"` and a number `7` of one field invalidating each other.
//! Identity stays exact ([`Value::encode`], equality): `"07"` and `"7"` are different
//! reads (they are on a text column), and so are `f("1")` and `f(1)`. Other kinds that
//! meet on one field (text against a number, bytes against text) cannot
//! match and are reported ([`Event::KindMismatch`](crate::Event::KindMismatch)).

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// A scalar column value: what conditions compare and row images hold.
///
/// Dates and times are text in a canonical form (see [`Value::timestamp`]); use the same
/// form in conditions and row images.
#[derive(Debug, Clone)]
pub enum Value {
    /// SQL `NULL` (and Rust `None`).
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer; every integer type maps here.
    Int(i128),
    /// A float; integral floats encode like the equal integer.
    Float(f64),
    /// Text (also dates and times, as canonical text).
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

/// The normalised form equality, ordering and hashing use: the same relation as `encode`.
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Norm<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(u64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// What kind of value a field holds, after coercions: kinds that differ never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Integers, floats, bools and text holding a plain decimal number.
    Number,
    /// Any other text (dates and times included).
    Text,
    /// Raw bytes.
    Bytes,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Number => "a number",
            Kind::Text => "text",
            Kind::Bytes => "bytes",
        })
    }
}

/// The normal form of a float: the equal integer when it is integral.
fn float_norm(f: f64) -> Norm<'static> {
    match integral(f) {
        Some(i) => Norm::Int(i),
        None if f.is_nan() => Norm::Float(f64::NAN.to_bits()),
        None => Norm::Float(f.to_bits()),
    }
}

/// The number a text holds, if it is a plain decimal (`[+-]digits[.digits]`, ASCII
/// whitespace around it allowed), or a bool's word.
fn text_norm(s: &str) -> Option<Norm<'static>> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.eq_ignore_ascii_case("true") {
        return Some(Norm::Int(1));
    }
    if t.eq_ignore_ascii_case("false") {
        return Some(Norm::Int(0));
    }
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    if !int.is_empty() && frac.bytes().all(|b| b == b'0') {
        let int_text = &t[..t.len() - unsigned.len() + int.len()];
        if let Ok(i) = int_text.parse::<i128>() {
            return Some(Norm::Int(i));
        }
    }
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(float_norm)
}

impl Value {
    /// The exact normal form: identity (entry keys, function arguments, equality).
    fn norm(&self) -> Norm<'_> {
        match self {
            Value::Null => Norm::Null,
            Value::Bool(b) => Norm::Bool(*b),
            Value::Int(i) => Norm::Int(*i),
            Value::Float(f) => float_norm(*f),
            Value::Text(s) => Norm::Text(s),
            Value::Bytes(b) => Norm::Bytes(b),
        }
    }

    /// The coerced normal form: matching (stamp keys, row images against conditions).
    fn match_norm(&self) -> Norm<'_> {
        match self {
            Value::Bool(b) => Norm::Int(i128::from(*b)),
            Value::Text(s) => text_norm(s).unwrap_or(Norm::Text(s)),
            _ => self.norm(),
        }
    }

    /// True when a row holding `self` matches a condition on `other` (or the reverse):
    /// equality after the coercions of the module docs.
    pub(crate) fn matches(&self, other: &Value) -> bool {
        self.match_norm() == other.match_norm()
    }

    /// Appends the coerced encoding of this value, which stamp keys and row images use:
    /// values one database value can take share it (`"7"`, `7`, `7.0`; `true`, `1`).
    pub(crate) fn encode_match_into(&self, out: &mut String) {
        encode_norm(self.match_norm(), out)
    }

    /// The coerced encoding of this value (see `encode_match_into`).
    pub(crate) fn encode_match(&self) -> String {
        let mut s = String::new();
        self.encode_match_into(&mut s);
        s
    }

    /// The kind of this value after coercions (`None` for `NULL`, which any kind may hold).
    pub fn kind(&self) -> Option<Kind> {
        match self.match_norm() {
            Norm::Null => None,
            Norm::Bool(_) | Norm::Int(_) | Norm::Float(_) => Some(Kind::Number),
            Norm::Text(_) => Some(Kind::Text),
            Norm::Bytes(_) => Some(Kind::Bytes),
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Appends the canonical (exact) encoding of this value to `out`: what entry keys and
    /// function arguments use, so `"7"` and `7` are distinct reads.
    pub fn encode_into(&self, out: &mut String) {
        encode_norm(self.norm(), out)
    }

    /// The canonical encoding of this value, as it appears in keys.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        self.encode_into(&mut s);
        s
    }

    /// A point in time as canonical text: UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    ///
    /// Times before 1970 are clamped to the epoch.
    pub fn timestamp(t: SystemTime) -> Value {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let (y, m, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        Value::Text(format!(
            "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            d.subsec_micros()
        ))
    }

    /// A calendar date as canonical text: `YYYY-MM-DD`.
    pub fn date(year: i32, month: u32, day: u32) -> Value {
        Value::Text(format!("{year:04}-{month:02}-{day:02}"))
    }
}

/// Appends the encoding of a normal form.
fn encode_norm(norm: Norm<'_>, out: &mut String) {
    match norm {
        Norm::Null => out.push('N'),
        Norm::Bool(true) => out.push('T'),
        Norm::Bool(false) => out.push('F'),
        Norm::Int(i) => {
            out.push('i');
            push_int(i, out);
        }
        Norm::Float(bits) => {
            let _ = write!(out, "r{:?}", f64::from_bits(bits));
        }
        Norm::Text(s) => {
            out.push('s');
            escape_into(s, out);
        }
        Norm::Bytes(b) => {
            out.push('x');
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

/// Appends the decimal digits of `v` (`write!` formats `i128` slowly; keys are on the hot path).
pub(crate) fn push_int(v: i128, out: &mut String) {
    if v < 0 {
        out.push('-');
    }
    let mut buf = [0u8; 40];
    let mut at = buf.len();
    // 64-bit division where the value fits (i128's is a library call per digit).
    match u64::try_from(v.unsigned_abs()) {
        Ok(mut n) => loop {
            at -= 1;
            buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        },
        Err(_) => {
            let mut n = v.unsigned_abs();
            loop {
                at -= 1;
                buf[at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
        }
    }
    out.push_str(std::str::from_utf8(&buf[at..]).expect("ASCII digits"));
}

/// The integer a float equals, if it is integral and exactly representable.
fn integral(f: f64) -> Option<i128> {
    // 2^63 bounds keep the conversion exact; -0.0 becomes 0.
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.223_372_036_854_776e18 {
        Some(f as i128)
    } else {
        None
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Escapes the characters keys use as separators (and `%` itself) as `%XX`.
pub(crate) fn escape_into(s: &str, out: &mut String) {
    // Fast path: most names and values need no escaping.
    if s.bytes()
        .all(|b| b.is_ascii_graphic() && !is_special(b) || b == b' ')
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            c if c.is_ascii() && is_special(c as u8) => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

fn is_special(b: u8) -> bool {
    matches!(
        b,
        b'%' | b'&' | b'=' | b':' | b'{' | b'}' | b'|' | b',' | b'*' | b'?' | b'[' | b']' | b'\\'
    )
}

/// `escape_into` into a new string.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(s, &mut out);
    out
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.norm() == other.norm()
    }
}
impl Eq for Value {}
impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.norm().hash(state)
    }
}
impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        self.norm().cmp(&other.norm())
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => match i64::try_from(*i) {
                Ok(i) => s.serialize_i64(i),
                Err(_) => s.serialize_i128(*i),
            },
            Value::Float(f) => s.serialize_f64(*f),
            Value::Text(t) => s.serialize_str(t),
            Value::Bytes(b) => s.serialize_bytes(b),
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::Int(v as i128) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, usize);

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<char> for Value {
    fn from(v: char) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<SystemTime> for Value {
    fn from(v: SystemTime) -> Self {
        Value::timestamp(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    #[test]
    fn integers_of_every_width_encode_alike() {
        let e = Value::from(3_i64).encode();
        assert_eq!(e, "i3");
        assert_eq!(Value::from(3_i32).encode(), e);
        assert_eq!(Value::from(3_u8).encode(), e);
        assert_eq!(Value::from(3_u64).encode(), e);
        assert_eq!(Value::from(3.0_f64).encode(), e);
        assert_eq!(Value::from(3_i32), Value::from(3.0_f32));
        assert_eq!(Value::from(-0.0_f64), Value::from(0));
        assert_eq!(Value::from(u64::MAX).encode(), format!("i{}", u64::MAX));
    }

    #[test]
    fn distinct_values_never_collide() {
        let values = vec![
            Value::Null,
            Value::from(""),
            Value::from("N"),
            Value::from("i3"),
            Value::from(3),
            Value::from(3.5),
            Value::from(true),
            Value::from("T"),
            Value::from(false),
            Value::from("a&b=c"),
            Value::from("a%26b%3Dc"),
            Value::from("a:b"),
            Value::from("{x}"),
            Value::from("ключ"),
            Value::from("日本"),
            Value::from(vec![0x61u8]),
            Value::from("x61"),
            Value::from("a\u{0}b"),
            Value::from(f64::NAN),
            Value::from(f64::INFINITY),
            Value::from(1e300),
        ];
        let encodings: HashSet<String> = values.iter().map(Value::encode).collect();
        assert_eq!(encodings.len(), values.len());
        for v in &values {
            let e = v.encode();
            for sep in ['&', '=', ':', '{', '}', '|'] {
                assert!(!e.contains(sep), "{e} contains {sep}");
            }
        }
    }

    #[test]
    fn values_that_can_denote_one_database_value_share_an_encoding() {
        let same = [
            (Value::from("7"), Value::from(7_i64)),
            (Value::from(" 07 "), Value::from(7_u8)),
            (Value::from("+7.000"), Value::from(7.0_f64)),
            (Value::from("-1.50"), Value::from(-1.5_f64)),
            (Value::from(".5"), Value::from(0.5_f64)),
            (Value::from("1."), Value::from(1)),
            (Value::from(true), Value::from(1)),
            (Value::from(false), Value::from(0_i16)),
            (Value::from("TRUE"), Value::from(true)),
            (
                Value::from("99999999999999999999"),
                Value::from(99_999_999_999_999_999_999_i128),
            ),
        ];
        for (a, b) in same {
            assert_eq!(a.encode_match(), b.encode_match(), "{a:?} vs {b:?}");
            assert!(a.matches(&b));
            assert_eq!(a.kind(), Some(Kind::Number));
            // Identity stays exact: `"7"` and `7` are distinct reads and arguments.
            assert_ne!(a.encode(), b.encode(), "{a:?} vs {b:?}");
            assert_ne!(a, b);
        }
        // Not numbers: kept as text, so they never merge with one.
        for t in ["1e3", "7a", "", ".", "-", "--1", "t", "2026-12-05", "1.2.3"] {
            assert_eq!(Value::from(t).kind(), Some(Kind::Text), "{t}");
        }
        assert_eq!(Value::from(vec![1_u8]).kind(), Some(Kind::Bytes));
        assert_eq!(Value::Null.kind(), None);
    }

    #[test]
    fn unicode_text_stays_readable() {
        assert_eq!(Value::from("ключ").encode(), "sключ");
        assert_eq!(Value::from("a&b").encode(), "sa%26b");
    }

    #[test]
    fn timestamps_are_canonical_utc() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(
            Value::timestamp(t),
            Value::from("2023-11-14T22:13:20.123456Z")
        );
        assert_eq!(
            Value::timestamp(UNIX_EPOCH),
            Value::from("1970-01-01T00:00:00.000000Z")
        );
        assert_eq!(Value::date(2024, 2, 29), Value::from("2024-02-29"));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn integers_print_like_display() {
        for v in [
            0i128,
            7,
            -7,
            10,
            i64::MIN as i128,
            u64::MAX as i128,
            i128::MIN,
            i128::MAX,
        ] {
            let mut s = String::new();
            push_int(v, &mut s);
            assert_eq!(s, v.to_string());
        }
    }

    #[test]
    fn nan_equals_itself_for_keys() {
        assert_eq!(Value::from(f64::NAN), Value::from(-f64::NAN));
        assert_ne!(Value::from(0.5), Value::from(0.25));
    }
}
