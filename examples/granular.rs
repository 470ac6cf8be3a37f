//! Granular invalidation in a few lines. Runs on the embedded store, or on Redis when
//! `REDIS_URL` is set:
//!
//! ```sh
//! cargo run --example granular
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --example granular
//! ```

use std::cell::Cell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stampcache::{Cache, Cond, Read};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Article {
    id: i64,
    category: i64,
    title: String,
}

fn main() -> Result<(), stampcache::Error> {
    let cache = match std::env::var("REDIS_URL") {
        Ok(url) => {
            println!("store: Redis at {url}");
            Cache::builder().redis(url).prefix("example:").build()?
        }
        Err(_) => {
            println!("store: embedded (set REDIS_URL to use Redis)");
            Cache::embedded()
        }
    };
    cache.invalidate_all()?;

    // A tiny "database".
    let mut db: BTreeMap<i64, Article> = (1..=6)
        .map(|id| {
            let a = Article {
                id,
                category: id % 2,
                title: format!("article {id}"),
            };
            (id, a)
        })
        .collect();
    let queries = Cell::new(0);

    let list =
        |db: &BTreeMap<i64, Article>, category: i64| -> Result<Vec<String>, stampcache::Error> {
            let read = Read::fetch("blog.article").filter(Cond::eq("category", category));
            cache.get_or_compute(&read, || {
                queries.set(queries.get() + 1);
                db.values()
                    .filter(|a| a.category == category)
                    .map(|a| a.title.clone())
                    .collect()
            })
        };

    println!("odd:  {:?}", list(&db, 1)?);
    println!("even: {:?}", list(&db, 0)?);
    println!(
        "again, from the cache: {:?} {:?}",
        list(&db, 1)?,
        list(&db, 0)?
    );
    println!("database queries so far: {}", queries.get());

    // Update an even article: only the even list is invalidated.
    let old = db[&2].clone();
    let new = Article {
        title: "article 2 (edited)".into(),
        ..old.clone()
    };
    db.insert(2, new.clone());
    cache.on_update("blog.article", &old, &new)?;

    println!("after editing article 2:");
    println!("odd:  {:?}", list(&db, 1)?);
    println!("even: {:?}", list(&db, 0)?);
    println!(
        "database queries so far: {} (only the even list was reloaded)",
        queries.get()
    );
    Ok(())
}
