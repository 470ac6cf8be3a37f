//! The crate's error type.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong in stampcache.
///
/// Loader errors are not here: they come back as [`LoadError::Loader`], untouched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A simple-cache [`get`](crate::Simple::get) found no entry. Distinct from a cached `None`.
    #[error("cache miss")]
    CacheMiss,
    /// Redis answered with an error or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the configured timeout:
    /// [`connect_timeout`](crate::Builder::connect_timeout) to connect (and greet it),
    /// [`io_timeout`](crate::Builder::io_timeout) for each request's whole answer.
    /// [`is_unavailable`](Error::is_unavailable) is true.
    #[error(
        "redis unavailable: timed out after {after:?} {} Redis at {addr}",
        if *connecting { "connecting to" } else { "waiting for" }
    )]
    Timeout {
        /// True while connecting (and greeting), false while waiting for an answer.
        connecting: bool,
        /// Where Redis was expected (`host:port` or a socket path; never credentials).
        addr: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// A write's invalidation could not reach Redis (the error inside says why) and is
    /// **queued** in this process: it is sent in the background as soon as Redis answers,
    /// and before this process's next call to it, so this process never serves what it
    /// kills; other processes may until then. Returned by the write methods (`on_insert`,
    /// `invalidate_model`, a scope's `commit`, …) when the cache does not degrade;
    /// [`is_unavailable`](Error::is_unavailable) is the inner error's.
    #[error(
        "invalidation queued for replay (sent as soon as Redis answers; other processes \
         may serve what it kills until then): {0}"
    )]
    InvalidationQueued(Box<Error>),
    /// Redis failed recently and is not asked again until its retry delay has passed.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with something the cache's scripts never return.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// A value could not be encoded, or stored bytes could not be decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// A row image was not a struct or a map with string keys.
    #[error("row image: {0}")]
    Row(String),
    /// The loader this call waited for (another caller's) failed, and retries are off.
    #[error("the loader of another caller of the same read failed")]
    LoaderFailed,
    /// An `atomic()` scope was used after it ended, or ended the wrong way.
    #[error("scope: {0}")]
    Scope(String),
    /// A table or field name is empty (in a read, a condition, a `cached_as` dependency or
    /// a write). The message says where; refused before anything is read or written, since
    /// an empty field name would collide with the whole-table scheme and never be
    /// invalidated.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// The configuration is not usable (bad URL, bad pattern, bad option).
    #[error("configuration: {0}")]
    Config(String),
    /// A value to cache is itself a `Result` (type named here): a loader's error would be
    /// cached as a value. Return the `Result` from a `get_or_load` loader instead, which
    /// stores only `Ok` values.
    #[error(
        "refusing to cache a value of type `{0}`: a loader's error would be cached; \
         use `get_or_load`, whose loader returns the Result and whose errors are never stored"
    )]
    ResultValue(&'static str),
    /// An entry was written by another Rust type than the one it is read as (with
    /// [`Builder::type_mismatch_fails`](crate::Builder::type_mismatch_fails); else a miss).
    #[error(
        "the entry {key} was written as `{stored}` and read as `{requested}`: two call sites \
         share one read; give one of them an `extra` to tell them apart"
    )]
    TypeMismatch {
        /// The entry's key.
        key: String,
        /// The type that wrote it.
        stored: String,
        /// The type it was read as.
        requested: &'static str,
    },
}

impl Error {
    /// True for errors that mean "Redis is unavailable right now" (as opposed to bad input).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Unavailable(_) | Error::Timeout { .. } => true,
            Error::InvalidationQueued(e) => e.is_unavailable(),
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
            }
            _ => false,
        }
    }
}

/// The error of a read whose loader can fail: either the cache failed, or the loader did.
#[derive(Debug)]
pub enum LoadError<E> {
    /// The cache failed (only when it is not configured to degrade to the loader).
    Cache(Error),
    /// The loader failed; the error is the loader's own.
    Loader(E),
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Cache(e) => write!(f, "cache: {e}"),
            LoadError::Loader(e) => write!(f, "loader: {e}"),
        }
    }
}

/// (Any `Display` error works, `String` included; the cache's error is the source.)
impl<E: fmt::Debug + fmt::Display> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Cache(e) => Some(e),
            LoadError::Loader(_) => None,
        }
    }
}

impl<E: From<Error>> LoadError<E> {
    /// Both sides as the loader's error type, for an application error that can hold a
    /// cache error: `cache.get_or_load(&read, load).map_err(LoadError::flatten)?`.
    pub fn flatten(self) -> E {
        match self {
            LoadError::Cache(e) => E::from(e),
            LoadError::Loader(e) => e,
        }
    }
}

impl<E> From<Error> for LoadError<E> {
    fn from(e: Error) -> Self {
        LoadError::Cache(e)
    }
}

impl LoadError<std::convert::Infallible> {
    /// The cache's error of a read whose loader cannot fail.
    pub(crate) fn into_cache_error(self) -> Error {
        match self {
            LoadError::Cache(e) => e,
            LoadError::Loader(never) => match never {},
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `url` with its credentials replaced by `***`: the password of `user:password@`, any
/// user info without a `:` (it may be a password), and `pass`/`password` query values
/// (`unix:///run/redis.sock?pass=…`). For every message, `Debug` output and event that
/// shows a URL.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    // The last `@` ends the user info (a password may hold `/`, `?`, `#` or `@`).
    let rest = match rest.rfind('@') {
        Some(at) => {
            match rest[..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str("***"),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match rest.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            for (i, kv) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match kv.split_once('=') {
                    Some((k, _))
                        if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                    {
                        out.push_str(k);
                        out.push_str("=***");
                    }
                    _ => out.push_str(kv),
                }
            }
        }
        None => out.push_str(rest),
    }
    out
}

/// `text` (a message about `url`, say a parser's) with `url` itself and each secret it
/// holds replaced by their redacted forms.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    for secret in secrets(url) {
        if secret.len() >= 3 {
            out = out.replace(secret, "***");
        }
    }
    out
}

/// The secrets a URL holds (see [`redact_url`]).
fn secrets(url: &str) -> Vec<&str> {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    let mut found = Vec::new();
    if let Some(at) = rest.rfind('@') {
        let info = &rest[..at];
        found.push(info.split_once(':').map_or(info, |(_, p)| p));
    }
    if let Some((_, query)) = rest.split_once('?') {
        for kv in query.split('&') {
            if let Some((k, v)) = kv.split_once('=') {
                if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") {
                    found.push(v.split('#').next().unwrap_or(v));
                }
            }
        }
    }
    found.retain(|s| !s.is_empty());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        for (url, shown) in [
            (
                "redis://:s3cret@127.0.0.1:notaport/5",
                "redis://:***@127.0.0.1:notaport/5",
            ),
            ("redis://alice:s3cret@h:6379/", "redis://alice:***@h:6379/"),
            ("redis://s3cret@h/", "redis://***@h/"),
            (
                "rediss://u:p@ss/w@rd@h/#insecure",
                "rediss://u:***@h/#insecure",
            ),
            (
                "unix:///run/redis.sock?db=2&pass=s3cret",
                "unix:///run/redis.sock?db=2&pass=***",
            ),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("s3cret@h", "***@h"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        assert_eq!(
            scrub("bad: s3cret in redis://:s3cret@h/", "redis://:s3cret@h/"),
            "bad: *** in redis://:***@h/"
        );
    }
}
