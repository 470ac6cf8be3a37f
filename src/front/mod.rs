//! The two front ends of one cache: [`Blocking`] ([`Cache`](crate::Cache)) and [`Async`]
//! ([`AsyncCache`](crate::AsyncCache)). They differ only in how their operations wait; both
//! run the same core (`src/cache.rs`, `src/scope/`, …), whose I/O is `async` over a store
//! chosen when the cache is built (see `src/store/mod.rs`).

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Blocking {}
    impl Sealed for super::Async {}
}

/// A front end: [`Blocking`] or [`Async`]. Sealed.
pub trait Front: sealed::Sealed + Send + Sync + 'static {
    /// Whether waits yield to the async runtime instead of blocking the thread.
    #[doc(hidden)]
    const ASYNC: bool;
}

/// Operations block the calling thread (the default).
#[derive(Debug, Clone, Copy)]
pub struct Blocking;

/// Operations are `async` (tokio): see [`AsyncCache`](crate::AsyncCache).
#[derive(Debug, Clone, Copy)]
pub struct Async;

impl Front for Blocking {
    const ASYNC: bool = false;
}

impl Front for Async {
    const ASYNC: bool = true;
}

mod asynch;
mod blocking;
