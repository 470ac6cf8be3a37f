//! Where every Redis key is built. The layout (see DESIGN.md):
//!
//! ```text
//! <prefix>sc<v>.<l>:m:{<table>}            sorted set of schemes (field-name lists) used by
//!                                          reads, scored by the time (ms) until which some
//!                                          entry may depend on each
//! <prefix>sc<v>.<l>:s:{<table>}:g          the table's generation stamp (whole-table invalidation)
//! <prefix>sc<v>.<l>:s:{<table>}:c:<conj>   a conjunction's stamp, e.g. `category=i1&published=i1`
//! <prefix>sc<v>.<l>:e:{<table>}:<hash>     a cached read (first table's tag), checksum + payload
//! <prefix>sc<v>.<l>:f:{fn}:...             a time-only entry (simple cache, cached functions)
//! ```
//!
//! `<v>` is the user's version (`Builder::version`), `<l>` the key layout ([`LAYOUT`]):
//! processes of two layouts share no key, so a mixed deployment never reads a structure
//! it does not know (a cold cache for the new one instead).
//!
//! Every key of one table shares the hash tag `{<table>}`, so each script touches one slot.
//! All stamps share the prefix `<prefix>sc<v>.<l>:s:`, which the tracked local tier subscribes to.

use std::fmt::Write as _;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_128;

use crate::dnf::Conj;
use crate::value::{escape, escape_into, Kind};

/// The key layout, in every key beside the user's version: bumped whenever a release would
/// build other keys or values for the same read or row, so two releases sharing a Redis
/// never mix them. 2: scheme sets became sorted sets scored by expiry, payloads carry a type
/// tag, and stamp keys encode bools and numbers in text as numbers (1 was unversioned).
pub(crate) const LAYOUT: u32 = 2;

/// What a computed prefix is computed from.
#[derive(Debug, Clone, Copy)]
pub struct PrefixScope<'a> {
    /// The tables of the read (or the one table of an invalidation).
    pub tables: &'a [&'a str],
    /// The database aliases of the read (or of the write).
    pub dbs: &'a [&'a str],
}

/// A function computing the key prefix.
pub type PrefixFn = Arc<dyn Fn(&PrefixScope<'_>) -> String + Send + Sync>;

/// The key prefix: static, or computed from the tables and databases of each read.
///
/// A computed prefix must give an invalidation of table `t` on database `d` the same prefix
/// as reads of `t` on `d`, or the invalidation will not reach them.
#[derive(Clone)]
pub enum Prefix {
    /// The same prefix for every key.
    Static(String),
    /// A prefix per read or write.
    Computed(PrefixFn),
}

impl std::fmt::Debug for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prefix::Static(s) => write!(f, "Static({s:?})"),
            Prefix::Computed(_) => f.write_str("Computed(..)"),
        }
    }
}

/// Builds keys for one cache: prefix and version.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    pub prefix: Prefix,
    pub version: u32,
}

/// The keys of one table: its scheme set, generation and conjunction prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableKeys {
    pub table: String,
    pub schemes: String,
    pub gen: String,
    pub conj_prefix: String,
    /// Milliseconds to remember deleted stamps for stale-while-revalidate (0: not at all).
    pub stale_ms: u64,
}

impl TableKeys {
    /// The key of one conjunction of this table.
    pub fn conj_key(&self, conj: &Conj) -> String {
        let mut k = String::with_capacity(self.conj_prefix.len() + 32);
        k.push_str(&self.conj_prefix);
        conj_into(conj, &mut k);
        k
    }
}

/// `field=value&field=value`, fields in map order, all escaped.
fn conj_into(conj: &Conj, out: &mut String) {
    for (i, (f, v)) in conj.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        escape_into(f, out);
        out.push('=');
        // Coerced: a row's `7_i64` and a condition's `"7"` must name one stamp.
        v.encode_match_into(out);
    }
}

/// The unescaped fields of a scheme (`""`, the whole-table scheme, has none).
pub(crate) fn fields_of(scheme: &str) -> Vec<String> {
    scheme
        .split('&')
        .filter(|f| !f.is_empty())
        .map(unescape)
        .collect()
}

/// The inverse of `escape`: `%XX` sequences back to bytes (invalid UTF-8 shown lossily).
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The key remembering a deleted stamp's last value (stale-while-revalidate).
pub(crate) fn dead_key(stamp: &str) -> String {
    format!("{stamp}:dead")
}

/// The scheme-set member saying a read's condition compares `field` with values of `kind`:
/// `=<escaped field>=<n|s|x>`. Escaped fields never hold `=`, so no scheme starts with it.
pub(crate) fn kind_member(field: &str, kind: Kind) -> String {
    let mut s = String::from("=");
    escape_into(field, &mut s);
    s.push('=');
    s.push(kind_letter(kind));
    s
}

/// The letter of a kind in scheme-set members and `INVALIDATE`'s replies.
pub(crate) fn kind_letter(kind: Kind) -> char {
    match kind {
        Kind::Number => 'n',
        Kind::Text => 's',
        Kind::Bytes => 'x',
    }
}

/// The kind of a letter of [`kind_letter`].
pub(crate) fn kind_of_letter(letter: &str) -> Option<Kind> {
    match letter {
        "n" => Some(Kind::Number),
        "s" => Some(Kind::Text),
        "x" => Some(Kind::Bytes),
        _ => None,
    }
}

/// The scheme of a conjunction: its escaped field names joined by `&`, in conj order.
pub(crate) fn scheme_of(conj: &Conj) -> String {
    let mut s = String::new();
    for (i, f) in conj.keys().enumerate() {
        if i > 0 {
            s.push('&');
        }
        escape_into(f, &mut s);
    }
    s
}

impl KeySpace {
    fn base(&self, tables: &[&str], dbs: &[&str]) -> String {
        let mut s = String::with_capacity(64);
        match &self.prefix {
            Prefix::Static(p) => s.push_str(p),
            Prefix::Computed(f) => s.push_str(&f(&PrefixScope { tables, dbs })),
        };
        let _ = write!(s, "sc{}.{LAYOUT}:", self.version);
        s
    }

    /// The keys of `table` as written on database `db`.
    pub fn table(&self, table: &str, db: &str) -> TableKeys {
        let base = self.base(&[table], &[db]);
        let mut tag = String::with_capacity(table.len() + 2);
        tag.push('{');
        escape_into(table, &mut tag);
        tag.push('}');
        let key = |kind: &str, tail: &str| {
            let mut k = String::with_capacity(base.len() + tag.len() + 6);
            k.push_str(&base);
            k.push_str(kind);
            k.push_str(&tag);
            k.push_str(tail);
            k
        };
        TableKeys {
            table: table.to_owned(),
            schemes: key("m:", ""),
            gen: key("s:", ":g"),
            conj_prefix: key("s:", ":c:"),
            stale_ms: 0,
        }
    }

    /// The prefix every stamp key starts with, when the key prefix is static.
    pub fn stamp_prefix(&self) -> Option<String> {
        match self.prefix {
            Prefix::Static(_) => Some(self.base(&[], &[]) + "s:"),
            Prefix::Computed(_) => None,
        }
    }

    /// The key of a cached read, tagged like its first table.
    pub fn entry(&self, tables: &[&str], dbs: &[&str], description: &str) -> String {
        let mut k = self.base(tables, dbs);
        k.push_str("e:{");
        escape_into(tables.first().copied().unwrap_or(""), &mut k);
        k.push_str("}:");
        push_hex(xxh3_128(description.as_bytes()), &mut k);
        k
    }

    /// The key of a simple-cache entry named by the user.
    pub fn simple(&self, key: &str) -> String {
        format!("{}f:{{fn}}:k:{}", self.base(&[], &[]), escape(key))
    }

    /// The key under which the change-stream consumer of `slot` publishes the WAL position
    /// it has applied (`cdc/published.rs`).
    #[cfg_attr(not(feature = "postgres-cdc"), allow(dead_code))]
    pub fn cdc_applied(&self, slot: &str) -> String {
        format!("{}x:{{cdc}}:applied:{}", self.base(&[], &[]), escape(slot))
    }

    /// The key of one call of a cached function.
    pub fn call(&self, name: &str, args: &[u8]) -> String {
        let mut d = escape(name);
        d.push(':');
        let mut buf = d.into_bytes();
        buf.extend_from_slice(args);
        format!(
            "{}{{fn}}:f:{}:{}",
            self.base(&[], &[]),
            escape(name),
            hash_hex(&buf)
        )
    }

    /// A `SCAN MATCH` pattern covering every key this cache writes.
    pub fn scan_pattern(&self) -> String {
        let tail = format!("sc{}.{LAYOUT}:*", self.version);
        match &self.prefix {
            Prefix::Static(p) => {
                let mut s = String::new();
                for c in p.chars() {
                    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s + &tail
            }
            Prefix::Computed(_) => format!("*{tail}"),
        }
    }
}

/// 128-bit hash of a description, as 32 hex digits.
pub(crate) fn hash_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(32);
    push_hex(xxh3_128(bytes), &mut s);
    s
}

/// Appends 32 lowercase hex digits (`format!` is slow on the hot path).
fn push_hex(v: u128, out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for i in (0..32).rev() {
        out.push(DIGITS[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn ks() -> KeySpace {
        KeySpace {
            prefix: Prefix::Static("p:".into()),
            version: 1,
        }
    }

    #[test]
    fn schemes_give_back_their_fields() {
        let conj: Conj = [
            ("x&y".to_string(), Value::from(1)),
            ("b%c\n".to_string(), Value::from(2)),
        ]
        .into_iter()
        .collect();
        let mut fields: Vec<String> = conj.keys().cloned().collect();
        fields.sort();
        let mut back = fields_of(&scheme_of(&conj));
        back.sort();
        assert_eq!(back, fields);
        assert!(fields_of("").is_empty());
        assert_eq!(fields_of("a%2"), vec!["a%2"]);
    }

    #[test]
    fn hex_is_zero_padded() {
        let mut s = String::new();
        push_hex(0xab, &mut s);
        assert_eq!(s, format!("{:032x}", 0xab));
    }

    #[test]
    fn table_keys_share_one_hash_tag() {
        let t = ks().table("blog.article", "default");
        assert_eq!(t.schemes, "p:sc1.2:m:{blog.article}");
        assert_eq!(t.gen, "p:sc1.2:s:{blog.article}:g");
        let e = ks().entry(&["blog.article"], &["default"], "x");
        assert!(e.starts_with("p:sc1.2:e:{blog.article}:"), "{e}");
        let stamps = ks().stamp_prefix().unwrap();
        assert!(t.gen.starts_with(&stamps) && t.conj_prefix.starts_with(&stamps));
        assert!(!e.starts_with(&stamps) && !t.schemes.starts_with(&stamps));
    }

    #[test]
    fn conj_keys_escape_fields_and_values() {
        let t = ks().table("a{b}", "default");
        let conj: Conj = [("x&y".to_string(), Value::from("1=2"))]
            .into_iter()
            .collect();
        assert_eq!(t.conj_key(&conj), "p:sc1.2:s:{a%7Bb%7D}:c:x%26y=s1%3D2");
        assert_eq!(scheme_of(&conj), "x%26y");
        assert_eq!(t.conj_key(&Conj::new()), "p:sc1.2:s:{a%7Bb%7D}:c:");
    }

    #[test]
    fn computed_prefixes_see_tables_and_dbs() {
        let k = KeySpace {
            prefix: Prefix::Computed(Arc::new(|s: &PrefixScope<'_>| {
                format!("{}/{}:", s.dbs.join(","), s.tables.join(","))
            })),
            version: 2,
        };
        assert_eq!(k.table("t", "replica").gen, "replica/t:sc2.2:s:{t}:g");
        assert_eq!(k.stamp_prefix(), None);
        assert_eq!(k.scan_pattern(), "*sc2.2:*");
    }

    #[test]
    fn scan_pattern_escapes_glob_characters() {
        let k = KeySpace {
            prefix: Prefix::Static("a*b:".into()),
            version: 0,
        };
        assert_eq!(k.scan_pattern(), "a\\*b:sc0.2:*");
    }
}
