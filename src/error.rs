//! The crate's error type.

use std::fmt;

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
            Error::Unavailable(_) => true,
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
