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
pub use profile::{LocalMode, Op, Ops, Profile, Profiles};
pub use read::{Dep, Force, Read};
pub use row::Row;
pub use value::Value;
