//! # stampcache
//!
//! Caches database reads and function results, and invalidates exactly the cached reads a
//! written row can affect.
//!
//! Describe a read with [`Read`] (table, operation, [`Cond`] tree, anything else that shapes
//! the result), give a loader, and report writes with [`Cache::on_insert`],
//! [`Cache::on_update`] and [`Cache::on_delete`]. Conditions become a disjunction of
//! `field = value` conjunctions per table; each conjunction has a *stamp* in the
//! store; an entry is valid only while every stamp it was computed under is unchanged, and a
//! written row deletes the stamps of the conjunctions it matches.
//!
//! ```
//! use stampcache::{Cache, Cond, Read};
//! # #[derive(serde::Serialize)] struct Article { id: i64, category: i64 }
//! let cache = Cache::embedded(); // or Cache::from_url("redis://127.0.0.1/")?
//! let in_cat_1 = Read::fetch("blog.article").filter(Cond::eq("category", 1));
//! let ids: Vec<i64> = cache.get_or_compute(&in_cat_1, || vec![1, 2])?;    // loads
//! let ids: Vec<i64> = cache.get_or_compute(&in_cat_1, || unreachable!())?; // cached
//! cache.on_insert("blog.article", &Article { id: 3, category: 2 })?;   // not category 1
//! let ids: Vec<i64> = cache.get_or_compute(&in_cat_1, || unreachable!())?; // still cached
//! cache.on_insert("blog.article", &Article { id: 4, category: 1 })?;   // category 1
//! let ids: Vec<i64> = cache.get_or_compute(&in_cat_1, || vec![1, 2, 4])?;  // reloads
//! assert_eq!(ids, vec![1, 2, 4]);
//! # Ok::<(), stampcache::Error>(())
//! ```
//!
//! Database loaders can fail: [`Cache::get_or_load`] takes a loader returning a `Result`,
//! hands its error back as [`LoadError::Loader`] and never caches it
//! ([`get_or_compute`](Cache::get_or_compute), above, is for loaders that cannot fail).
//!
//! ```
//! use stampcache::{Cache, LoadError, Read};
//! let cache = Cache::embedded();
//! let read = Read::count("blog.article");
//! let failed = cache.get_or_load(&read, || Err::<i64, _>("db timeout"));
//! assert!(matches!(failed, Err(LoadError::Loader("db timeout"))));
//! let n: i64 = cache.get_or_load(&read, || Ok::<_, &str>(3)).unwrap(); // runs again
//! assert_eq!(n, 3);
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
//! let ids: Vec<i64> = cache.get_or_compute(&in_cat_1, || async { vec![1, 2] }).await?;
//! assert_eq!(ids, vec![1, 2]);
//! # Ok::<(), stampcache::Error>(())
//! # }).unwrap();
//! ```
//!
//! Where things are (DESIGN.md has the whole map): keys are built in `src/keys.rs`, reads
//! planned in `src/plan.rs`, the read protocol is `src/core/read.rs`, stamps are checked in
//! `src/store/redis/reply.rs` (hits) and `src/store/embedded.rs`, invalidations are built
//! in `src/core/invalidate.rs` and applied by the stores; every public handle is in
//! `src/front/`.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod argkey;
mod block;
mod builder;
#[cfg(feature = "postgres-cdc")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres-cdc")))]
pub mod cdc;
pub mod codec;
mod cond;
mod core;
mod dnf;
mod error;
mod event;
mod front;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod keys;
mod plan;
mod profile;
mod read;
mod row;
mod scalar;
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(feature = "sql")))]
pub mod sql;
mod store;
mod sync;
mod typed;
mod value;

pub use crate::core::local::LocalStats;
pub use crate::core::scope::Isolation;
pub use crate::core::{SharedStats, Stats};
pub use builder::Builder;
pub use codec::{Bitcode, Codec, DefaultCodec};
pub use cond::{Cond, FieldRef};
pub use error::{Error, LoadError, Result};
pub use event::{Event, Invalidation, Listener, Outcome, Target};
pub use front::{Answer, Cache, CachedAs, Prepared, Scope, Simple};
#[cfg(feature = "tokio")]
pub use front::{AsyncCache, AsyncCachedAs, AsyncPrepared, AsyncScope, AsyncSimple};
#[cfg(feature = "sqlx")]
pub use front::{Execute, QueryAs, QueryScalar, SqlParam};
pub use keys::{Prefix, PrefixScope};
/// The key layout's version, in every key (`<prefix>sc<version>.<layout>:…`): it changes
/// when a release builds other keys for the same read or row, so releases never mix keys.
pub const KEY_LAYOUT: u32 = keys::LAYOUT;
pub use profile::{LocalMode, Op, Ops, Profile, Profiles};
pub use read::{Dep, Force, Read};
pub use row::Row;
pub use value::{Kind, Value};
