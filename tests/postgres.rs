//! An `atomic()` scope driven beside a real PostgreSQL transaction, to show the commit
//! order: database first, then the scope. PostgreSQL at `STAMPCACHE_TEST_PG` (a libpq
//! connection string), by default `host=127.0.0.1 user=postgres dbname=test`.

mod common;

use common::Loads;
use postgres::{Client, NoTls};
use serde::Serialize;
use stampcache::{Cache, Cond, Read};

#[derive(Debug, Clone, Serialize)]
struct Row {
    id: i32,
    category: i32,
    title: String,
}

fn connect() -> Client {
    let dsn = std::env::var("STAMPCACHE_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".to_string());
    Client::connect(&dsn, NoTls).unwrap_or_else(|e| {
        panic!("PostgreSQL is needed for this test ({dsn}): {e}; set STAMPCACHE_TEST_PG")
    })
}

fn title_of(db: &mut impl postgres::GenericClient, table: &str, id: i32) -> String {
    db.query_one(&format!("SELECT title FROM {table} WHERE id = $1"), &[&id])
        .unwrap()
        .get(0)
}

#[test]
fn scope_commit_follows_the_database_commit() {
    let table = format!("stampcache_article_{}", std::process::id());
    let mut setup = connect();
    setup
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table};
             CREATE TABLE {table} (id INT PRIMARY KEY, category INT NOT NULL, title TEXT NOT NULL);
             INSERT INTO {table} VALUES (1, 1, 'old'), (2, 1, 'two');"
        ))
        .unwrap();

    let cache = Cache::builder()
        .redis(common::shared_redis_url())
        .prefix(common::unique_prefix("pg"))
        .build()
        .unwrap();
    let get1 = Read::get(table.clone()).filter(Cond::eq("id", 1));
    let loads = Loads::default();
    let mut reader = connect();
    let mut read_outside = |expect_load: bool| -> String {
        let before = loads.count();
        let v: String = cache
            .get_or_compute(&get1, || {
                loads.of(())();
                title_of(&mut reader, &table, 1)
            })
            .unwrap();
        assert_eq!(loads.count() > before, expect_load, "outside read of {v:?}");
        v
    };
    assert_eq!(read_outside(true), "old");

    // The writer's transaction, mirrored by a scope.
    let mut writer = connect();
    let mut tx = writer.transaction().unwrap();
    let scope = cache.atomic();
    let old = Row {
        id: 1,
        category: 1,
        title: "old".into(),
    };
    let new = Row {
        title: "new".into(),
        ..old.clone()
    };
    tx.execute(
        &format!("UPDATE {table} SET title = $1 WHERE id = 1"),
        &[&new.title],
    )
    .unwrap();
    scope.on_update(&table, &old, &new).unwrap();
    let inside: String = scope
        .get_or_compute(&get1, || title_of(&mut tx, &table, 1))
        .unwrap();
    assert_eq!(inside, "new", "the scope sees its uncommitted write");
    assert_eq!(
        read_outside(false),
        "old",
        "others keep the committed, cached value"
    );

    // Database first. Until the scope commits, the cache still answers the old value:
    // the window is the time between the two commits.
    tx.commit().unwrap();
    assert_eq!(read_outside(false), "old");
    scope.commit().unwrap();
    assert_eq!(
        read_outside(true),
        "new",
        "invalidated at the scope's commit"
    );
    assert_eq!(read_outside(false), "new");

    setup.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}
