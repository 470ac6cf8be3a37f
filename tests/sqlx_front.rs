//! Queries in sqlx's shape through the cache, against the local PostgreSQL: tables and
//! conditions come from the SQL and the bound values alone. Loads are counted by events.
//! PostgreSQL as `tests/common/pgpool.rs` finds it; without it the test fails.

#![recursion_limit = "256"]

#[path = "common/pgpool.rs"]
mod pgpool;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use stampcache::{AsyncCache, Cache, Event, Outcome, Target};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
struct Article {
    id: i64,
    category: i64,
    author_id: i64,
    title: String,
}

#[derive(Debug, Clone, Serialize)]
struct Author {
    id: i64,
    name: String,
}

struct Counted {
    cache: AsyncCache,
    loads: Arc<AtomicUsize>,
    not_cached: Arc<Mutex<Vec<String>>>,
}

impl Counted {
    fn new() -> Counted {
        let loads = Arc::new(AtomicUsize::new(0));
        let not_cached = Arc::new(Mutex::new(Vec::new()));
        let (l, n) = (loads.clone(), not_cached.clone());
        let cache = Cache::builder()
            .on_event(move |e| match e {
                Event::Read {
                    target: Target::Table { .. },
                    outcome: Outcome::Miss,
                } => {
                    l.fetch_add(1, Ordering::SeqCst);
                }
                Event::NotCached { reason, .. } => n.lock().unwrap().push(reason.to_string()),
                _ => {}
            })
            .build_async()
            .unwrap();
        Counted {
            cache,
            loads,
            not_cached,
        }
    }
    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn reads_described_by_sql_are_cached_and_invalidated_granularly() {
    let pool = pgpool::postgres().await;
    let pid = std::process::id();
    let (t, a) = (format!("sqlx_article_{pid}"), format!("sqlx_author_{pid}"));
    for stmt in [
        format!("DROP TABLE IF EXISTS {t}"),
        format!("DROP TABLE IF EXISTS {a}"),
        format!("CREATE TABLE {a} (id BIGINT PRIMARY KEY, name TEXT NOT NULL)"),
        format!(
            "CREATE TABLE {t} (id BIGINT PRIMARY KEY, category BIGINT NOT NULL, \
             author_id BIGINT NOT NULL, title TEXT NOT NULL)"
        ),
        format!("INSERT INTO {a} VALUES (1, 'ann'), (2, 'bob')"),
        format!(
            "INSERT INTO {t} VALUES (1, 1, 1, 'one'), (2, 1, 2, 'two'), (3, 2, 1, 'three'), \
             (4, 2, 2, 'four')"
        ),
    ] {
        sqlx::query(&stmt).execute(&pool).await.unwrap();
    }
    let c = Counted::new();
    let list =
        format!("SELECT id, category, author_id, title FROM {t} WHERE category = $1 ORDER BY id");
    let count = format!("SELECT count(*) FROM {t} WHERE category = $1");
    let by_author = format!(
        "SELECT x.id, x.category, x.author_id, x.title FROM {t} x JOIN {a} y \
         ON x.author_id = y.id WHERE y.name = $1 ORDER BY x.id"
    );
    let fetch_list = |cat: i64| {
        let (cache, list, pool) = (&c.cache, &list, &pool);
        async move {
            cache
                .query_as::<Article>(list)
                .bind(cat)
                .fetch_all(pool)
                .await
                .unwrap()
        }
    };

    // Cached: one load per distinct statement and parameters.
    let ones = fetch_list(1).await;
    assert_eq!(ones.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(fetch_list(1).await, ones);
    let twos = fetch_list(2).await;
    assert_eq!(c.loads(), 2);
    let n: i64 = c
        .cache
        .query_scalar(&count)
        .bind(1_i64)
        .fetch_one(&pool)
        .await
        .unwrap();
    let n2: i64 = c
        .cache
        .query_scalar(&count)
        .bind(1_i64)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((n, n2, c.loads()), (2, 2, 3));
    let missing: Option<Article> = c
        .cache
        .query_as(&format!(
            "SELECT id, category, author_id, title FROM {t} WHERE id = $1"
        ))
        .bind(99_i64)
        .fetch_optional(&pool)
        .await
        .unwrap();
    assert_eq!((missing, c.loads()), (None, 4));
    let anns: Vec<Article> = c
        .cache
        .query_as(&by_author)
        .bind("ann")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(anns.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(c.loads(), 5);

    // A row of category 1 changes: its list and count reload; category 2 stays cached.
    sqlx::query(&format!("UPDATE {t} SET title = 'uno' WHERE id = 1"))
        .execute(&pool)
        .await
        .unwrap();
    let old = ones[0].clone();
    let new = Article {
        title: "uno".into(),
        ..old.clone()
    };
    c.cache.on_update(&t, &old, &new).await.unwrap();
    assert_eq!(fetch_list(1).await[0].title, "uno");
    assert_eq!(fetch_list(2).await, twos);
    let _: i64 = c
        .cache
        .query_scalar(&count)
        .bind(1_i64)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        c.loads(),
        7,
        "category 1's list and count reloaded, not category 2's"
    );

    // The join depends on every article (no condition names them): it reloaded too.
    let _: Vec<Article> = c
        .cache
        .query_as(&by_author)
        .bind("ann")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(c.loads(), 8, "any article's change reaches the join");

    // The joined table: bob's rename leaves ann's articles cached; ann's kills them.
    let bob = (
        Author {
            id: 2,
            name: "bob".into(),
        },
        Author {
            id: 2,
            name: "rob".into(),
        },
    );
    c.cache.on_update(&a, &bob.0, &bob.1).await.unwrap();
    let _: Vec<Article> = c
        .cache
        .query_as(&by_author)
        .bind("ann")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        c.loads(),
        8,
        "another author's change leaves the join cached"
    );
    let ann = (
        Author {
            id: 1,
            name: "ann".into(),
        },
        Author {
            id: 1,
            name: "anne".into(),
        },
    );
    sqlx::query(&format!("UPDATE {a} SET name = 'anne' WHERE id = 1"))
        .execute(&pool)
        .await
        .unwrap();
    c.cache.on_update(&a, &ann.0, &ann.1).await.unwrap();
    let anns: Vec<Article> = c
        .cache
        .query_as(&by_author)
        .bind("ann")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(anns.is_empty());
    assert_eq!(c.loads(), 9);

    // Volatile SQL runs against the database every time, and says why.
    let volatile = format!("SELECT count(*) FROM {t} WHERE random() >= 0");
    for _ in 0..2 {
        let n: i64 = c
            .cache
            .query_scalar(&volatile)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 4);
    }
    assert_eq!(c.loads(), 9);
    assert_eq!(
        c.not_cached.lock().unwrap().as_slice(),
        ["not cached: the query calls the volatile function random()"; 2]
    );

    // Writes through the front invalidate what their SQL says: an INSERT, its rows only.
    let before = c.loads();
    c.cache
        .execute(&format!(
            "INSERT INTO {t} (id, category, author_id, title) VALUES ($1, $2, $3, $4)"
        ))
        .bind(5_i64)
        .bind(2_i64)
        .bind(2_i64)
        .bind("five")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(fetch_list(2).await.len(), 3, "category 2 sees the insert");
    assert_eq!(fetch_list(1).await[0].title, "uno");
    assert_eq!(c.loads(), before + 1, "category 1 stayed cached");
    // An UPDATE's old rows are not in its SQL: the whole table.
    c.cache
        .execute(&format!("UPDATE {t} SET title = 'eins' WHERE id = $1"))
        .bind(1_i64)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(fetch_list(1).await[0].title, "eins");
    assert_eq!(fetch_list(2).await.len(), 3);
    assert_eq!(c.loads(), before + 3, "both categories reloaded");
    let new = Article {
        title: "eins".into(),
        ..new.clone()
    };

    // A write's RETURNING rows are its images: a DELETE kills what its old row matched.
    let before = c.loads();
    let gone: Option<Article> = c
        .cache
        .query_as(&format!(
            "DELETE FROM {t} WHERE id = $1 RETURNING id, category, author_id, title"
        ))
        .bind(5_i64)
        .fetch_optional(&pool)
        .await
        .unwrap();
    assert_eq!(gone.map(|a| a.category), Some(2));
    assert_eq!(fetch_list(2).await.len(), 2, "category 2 sees the delete");
    assert_eq!(fetch_list(1).await[0].title, "eins");
    assert_eq!(c.loads(), before + 1, "category 1 stayed cached");
    // An UPDATE that pins the column it assigns: old and new rows, both categories only.
    let moved: Article = c
        .cache
        .query_as(&format!(
            "UPDATE {t} SET category = $2 WHERE id = $1 AND category = $3 RETURNING *"
        ))
        .bind(4_i64)
        .bind(3_i64)
        .bind(2_i64)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(moved.category, 3);
    assert_eq!(fetch_list(2).await.len(), 1, "category 2 lost the row");
    assert_eq!(fetch_list(3).await.len(), 1, "category 3 gained it");
    assert_eq!(fetch_list(1).await[0].title, "eins");
    assert_eq!(c.loads(), before + 3, "category 1 stayed cached");
    // Without the pin the old category is unknown: the whole table.
    let _: Article = c
        .cache
        .query_as(&format!(
            "UPDATE {t} SET category = $2 WHERE id = $1 RETURNING *"
        ))
        .bind(4_i64)
        .bind(2_i64)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fetch_list(1).await[0].title, "eins");
    assert_eq!(c.loads(), before + 4, "category 1 reloaded too");

    // Inside a transaction's scope: its own write is seen at once.
    let scope = c.cache.atomic();
    let newer = Article {
        title: "un".into(),
        ..new.clone()
    };
    scope.on_update(&t, &new, &newer).await.unwrap();
    let before = c.loads();
    let _: Vec<Article> = scope
        .query_as(&list)
        .bind(1_i64)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        c.loads(),
        before + 1,
        "a table the scope wrote is read afresh"
    );
    scope.rollback();

    // Values sqlx encodes at bind (an array, an Option) beside values it encodes only on a
    // miss, in either order: the database gets each as bound.
    let ids = format!(
        "SELECT id, category, author_id, title FROM {t} WHERE category = $1 AND id = ANY($2) ORDER BY id"
    );
    let by_ids: Vec<Article> = c
        .cache
        .query_as(&ids)
        .bind(2_i64)
        .bind(vec![3_i64, 4, 5])
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(by_ids.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 4]);
    let ids = format!(
        "SELECT id, category, author_id, title FROM {t} WHERE id = ANY($1) AND category = $2 \
         AND title IS DISTINCT FROM $3 AND $4 ORDER BY id"
    );
    let by_ids: Vec<Article> = c
        .cache
        .query_as(&ids)
        .bind(vec![1_i64, 3])
        .bind(Some(1_i64))
        .bind(None::<String>)
        .bind(true)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(by_ids.iter().map(|r| r.id).collect::<Vec<_>>(), [1]);

    for stmt in [format!("DROP TABLE {t}"), format!("DROP TABLE {a}")] {
        sqlx::query(&stmt).execute(&pool).await.unwrap();
    }
}
