//! # stampcache
//!
//! Caches database reads and function results, and invalidates exactly the cached reads a
//! written row can affect.
//!
//! Describe a read with [`Read`] (table, operation, [`Cond`] tree, anything else that shapes
//! the result), give a loader, and report writes with [`Cache::on_insert`],
//! [`Cache::on_update`] and [`Cache::on_delete`]. Conditions become a disjunction of
//! `field = value` conjunctions per table ([`dnf`]); each conjunction has a *stamp* in the
//! store; an entry is valid only while every stamp it was computed under is unchanged, and a
//! written row deletes the stamps of the conjunctions it matches.
//!
//! ```
//! use stampcache::{Cache, Cond, Read};
//! # #[derive(serde::Serialize)] struct Article { id: i64, category: i64 }
//! let cache = Cache::embedded(); // or Cache::from_url("redis://127.0.0.1/")?
//! let in_cat_1 = Read::fetch("blog.article").filter(Cond::eq("category", 1));
//! let ids: Vec<i64> = cache.get_or_load(&in_cat_1, || vec![1, 2])?;    // loads
//! let ids: Vec<i64> = cache.get_or_load(&in_cat_1, || unreachable!())?; // cached
//! cache.on_insert("blog.article", &Article { id: 3, category: 2 })?;   // not category 1
//! let ids: Vec<i64> = cache.get_or_load(&in_cat_1, || unreachable!())?; // still cached
//! cache.on_insert("blog.article", &Article { id: 4, category: 1 })?;   // category 1
//! let ids: Vec<i64> = cache.get_or_load(&in_cat_1, || vec![1, 2, 4])?;  // reloads
//! assert_eq!(ids, vec![1, 2, 4]);
//! # Ok::<(), stampcache::Error>(())
//! ```
//!
//! The same with the async front end, [`AsyncCache`] (feature `tokio`, on by default):
//! build it inside a tokio runtime; loaders are async, and so is every operation.
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use stampcache::{Cache, Cond, Read};
//! let cache = Cache::builder().build_async()?; // .redis(url) for the shared tier
//! let in_cat_1 = Read::fetch("blog.article").filter(Cond::eq("category", 1));
//! let ids: Vec<i64> = cache.get_or_load(&in_cat_1, || async { vec![1, 2] }).await?;
//! assert_eq!(ids, vec![1, 2]);
//! # Ok::<(), stampcache::Error>(())
//! # }).unwrap();
//! ```
//!
//! Where things are: keys in [`keys`] (`src/keys.rs`), stamps checked in
//! `src/store/redis/reply.rs` (hits) and `src/store/embedded.rs`, invalidation decided in
//! `src/cache.rs` and applied by the stores; the front ends in `src/front/`. See DESIGN.md.

#![warn(missing_docs)]

mod argkey;
mod block;
mod cache;
mod cached_as;
#[cfg(feature = "postgres-cdc")]
pub mod cdc;
pub mod codec;
mod cond;
pub mod dnf;
mod error;
mod event;
mod flight;
pub mod front;
pub mod keys;
mod local;
mod pending;
mod prepared;
mod profile;
mod read;
mod row;
mod scope;
mod simple;
mod store;
mod sync;
mod value;

pub use cache::{Answer, AsyncCache, Builder, Cache, Stats};
pub use cached_as::CachedAs;
pub use codec::{Bitcode, Codec, DefaultCodec};
pub use cond::{Cond, FieldRef};
pub use error::{Error, LoadError, Result};
pub use event::{Event, Invalidation, Listener, Outcome, Target};
pub use keys::{Prefix, PrefixScope};
pub use local::{LocalMode, LocalStats};
pub use prepared::Prepared;
pub use profile::{Op, Ops, Profile, Profiles};
pub use read::{Dep, Force, Read};
pub use row::Row;
pub use scope::{AsyncScope, Isolation, Scope};
pub use simple::Simple;
pub use value::Value;
