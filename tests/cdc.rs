//! Automatic invalidation from PostgreSQL's logical replication stream, end to end: a
//! private PostgreSQL (`wal_level = logical`, tests/common/pg.rs) and a private
//! redis-server; writes come from separate `psql` processes; no `on_*` call anywhere.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{shared_redis_url, unique_prefix, Loads};
use pg::PgServer;
use stampcache::cdc::{CdcError, CdcEvent, Consumer, ConsumerHandle, Lsn, SlotKind, Status};
use stampcache::{Cache, Cond, Read};

const WAIT: Duration = Duration::from_secs(20);

/// One test's world: its database, its cache and the events its consumers emitted.
struct World {
    pg: &'static PgServer,
    db: String,
    cache: Cache,
    prefix: String,
    events: Arc<Mutex<Vec<String>>>,
}

impl World {
    /// A database with `setup` run in it, and a Redis-backed cache with a prefix of its own.
    fn new(name: &str, setup: &[&str]) -> World {
        let pg = pg::shared();
        let db = pg::fresh_database(pg, name);
        pg.psql(&db, setup);
        let prefix = unique_prefix(name);
        let cache = Cache::builder()
            .redis(shared_redis_url())
            .prefix(prefix.as_str())
            .build()
            .unwrap();
        World {
            pg,
            db,
            cache,
            prefix,
            events: Arc::default(),
        }
    }

    /// A consumer of this world's database on slot `slot`, publishing `tables`.
    fn consumer(&self, slot: &str, tables: &[&str]) -> ConsumerHandle {
        let events = self.events.clone();
        Consumer::builder(&self.pg.conninfo(&self.db))
            .publication("cdc_test")
            .create_publication(tables.iter().copied())
            .slot(slot)
            .create_slot(true)
            .status_interval(Duration::from_millis(100))
            .retry_delays(Duration::from_millis(50), Duration::from_millis(500))
            .standby_interval(Duration::from_millis(100))
            .on_event(move |e| events.lock().unwrap().push(describe(e)))
            .spawn(self.cache.clone())
            .expect("the consumer starts")
    }

    /// Runs `statements` in one psql session (each its own `-c`), then waits until the
    /// consumer applied everything committed so far.
    fn write(&self, consumer: &ConsumerHandle, statements: &[&str]) {
        self.pg.psql(&self.db, statements);
        self.sync(consumer);
    }

    fn sync(&self, consumer: &ConsumerHandle) {
        let lsn: Lsn = self.pg.current_lsn(&self.db).parse().unwrap();
        assert!(
            consumer.wait_applied(lsn, WAIT),
            "not applied up to {lsn} within {WAIT:?}: at {}, {:?}",
            consumer.applied_lsn(),
            consumer.status()
        );
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

fn describe(e: &CdcEvent<'_>) -> String {
    match e {
        CdcEvent::ReplicaIdentity { table, fix, .. } => format!("identity {table}: {fix}"),
        CdcEvent::UnknownColumnType { table, column, .. } => format!("unknown {table}.{column}"),
        CdcEvent::InvalidatedPublished { tables } => format!("invalidated {tables}"),
        other => format!("{other:?}"),
    }
}

/// A cached read and the count of its loader's calls.
struct Cached {
    read: Read,
    loads: Loads,
}

impl Cached {
    fn new(read: Read) -> Cached {
        Cached {
            read,
            loads: Loads::default(),
        }
    }

    fn category(table: &str, c: i64) -> Cached {
        Cached::new(Read::fetch(table).filter(Cond::eq("category", c)))
    }

    fn id(table: &str, id: i64) -> Cached {
        Cached::new(Read::get(table).filter(Cond::eq("id", id)))
    }

    /// Reads through the cache; returns how often the loader ran so far.
    fn read(&self, cache: &Cache) -> usize {
        let _: Vec<i64> = cache
            .get_or_compute(&self.read, self.loads.of(vec![1]))
            .unwrap();
        self.loads.count()
    }
}

const ARTICLE: &[&str] = &[
    "CREATE TABLE article (id int PRIMARY KEY, category int NOT NULL, title text)",
    "ALTER TABLE article REPLICA IDENTITY FULL",
    "INSERT INTO article VALUES (1, 1, 'one'), (2, 2, 'two'), (3, 3, 'three')",
];

#[test]
fn an_update_from_another_client_invalidates_exactly_the_matching_reads() {
    let w = World::new("upd", ARTICLE);
    let consumer = w.consumer("upd", &["article"]);
    let (cat1, cat2, id1, id2) = (
        Cached::category("article", 1),
        Cached::category("article", 2),
        Cached::id("article", 1),
        Cached::id("article", 2),
    );
    for c in [&cat1, &cat2, &id1, &id2] {
        assert_eq!(c.read(&w.cache), 1);
        assert_eq!(c.read(&w.cache), 1, "cached");
    }
    w.write(
        &consumer,
        &["UPDATE article SET title = 'uno' WHERE id = 1"],
    );
    // int4 columns arrive as text: they must match the integer conditions.
    assert_eq!(cat1.read(&w.cache), 2, "category 1 list invalidated");
    assert_eq!(id1.read(&w.cache), 2, "row 1 invalidated");
    assert_eq!(cat2.read(&w.cache), 1, "category 2 list stays cached");
    assert_eq!(id2.read(&w.cache), 1, "row 2 stays cached");
    assert_eq!(consumer.status(), Status::Streaming);
    assert!(consumer.applied_lsn() > Lsn::ZERO);
    // Lag as time: the update committed moments ago, on this machine's clock too.
    let lag = consumer.last_apply_lag().expect("a lag once applied");
    assert!(lag < WAIT, "{lag:?}");
    let committed = consumer.applied_commit_time().expect("a commit time");
    let age = std::time::SystemTime::now()
        .duration_since(committed)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60), "{age:?}");
    assert!(age >= lag, "applied after it committed");
    let stats = consumer.stats();
    assert_eq!(
        (stats.transactions, stats.rows, stats.tables),
        (2, 2, 1),
        "{stats:?}"
    );
    consumer.stop();
    assert!(
        w.events().iter().any(|e| e == "invalidated 1"),
        "a new slot invalidates once"
    );
}

#[test]
fn inserts_deletes_and_truncates_invalidate() {
    let w = World::new("ins", ARTICLE);
    let consumer = w.consumer("ins", &["article"]);
    let (cat1, cat2, cat3) = (
        Cached::category("article", 1),
        Cached::category("article", 2),
        Cached::category("article", 3),
    );
    for c in [&cat1, &cat2, &cat3] {
        c.read(&w.cache);
    }
    w.write(&consumer, &["INSERT INTO article VALUES (4, 1, 'four')"]);
    assert_eq!((cat1.read(&w.cache), cat2.read(&w.cache)), (2, 1), "insert");
    w.write(&consumer, &["DELETE FROM article WHERE id = 2"]);
    assert_eq!((cat1.read(&w.cache), cat2.read(&w.cache)), (2, 2), "delete");
    assert_eq!(cat3.read(&w.cache), 1, "category 3 untouched so far");
    w.write(&consumer, &["TRUNCATE article"]);
    assert_eq!(
        (
            cat1.read(&w.cache),
            cat2.read(&w.cache),
            cat3.read(&w.cache)
        ),
        (3, 3, 2),
        "truncate kills every read of the table"
    );
}

#[test]
fn a_rolled_back_transaction_invalidates_nothing() {
    let w = World::new("rollback", ARTICLE);
    let consumer = w.consumer("rollback", &["article"]);
    let cat1 = Cached::category("article", 1);
    cat1.read(&w.cache);
    w.write(
        &consumer,
        &[
            "BEGIN",
            "UPDATE article SET category = 5 WHERE id = 1",
            "INSERT INTO article VALUES (9, 1, 'nine')",
            "ROLLBACK",
        ],
    );
    assert_eq!(cat1.read(&w.cache), 1, "nothing was committed");
    // A committed transaction of several statements is applied together.
    w.write(
        &consumer,
        &[
            "BEGIN",
            "INSERT INTO article VALUES (9, 1, 'nine')",
            "UPDATE article SET title = 'x' WHERE id = 3",
            "COMMIT",
        ],
    );
    assert_eq!(cat1.read(&w.cache), 2);
}

#[test]
fn a_row_moved_between_categories_kills_both_lists() {
    let w = World::new("moved", ARTICLE);
    let consumer = w.consumer("moved", &["article"]);
    let (cat1, cat2, cat3) = (
        Cached::category("article", 1),
        Cached::category("article", 2),
        Cached::category("article", 3),
    );
    for c in [&cat1, &cat2, &cat3] {
        c.read(&w.cache);
    }
    w.write(&consumer, &["UPDATE article SET category = 2 WHERE id = 1"]);
    assert_eq!(cat1.read(&w.cache), 2, "the old category's list");
    assert_eq!(cat2.read(&w.cache), 2, "the new category's list");
    assert_eq!(cat3.read(&w.cache), 1, "another category's list");
}

#[test]
fn a_replica_identity_default_table_is_invalidated_coarser_but_correctly() {
    let w = World::new(
        "ident",
        &[
            "CREATE TABLE draft (id int PRIMARY KEY, category int NOT NULL)",
            "INSERT INTO draft VALUES (1, 1), (2, 2)",
            "CREATE TABLE other (id int PRIMARY KEY, category int NOT NULL)",
            "ALTER TABLE other REPLICA IDENTITY FULL",
        ],
    );
    let consumer = w.consumer("ident", &["draft", "other"]);
    let (cat1, id2, other) = (
        Cached::category("draft", 1),
        Cached::id("draft", 2),
        Cached::category("other", 1),
    );
    for c in [&cat1, &id2, &other] {
        c.read(&w.cache);
    }
    // The key does not change: pgoutput sends no old row at all. The old category (1) is
    // unknown, so the category-1 list must die anyway (the whole table).
    w.write(&consumer, &["UPDATE draft SET category = 2 WHERE id = 1"]);
    assert_eq!(cat1.read(&w.cache), 2, "the old category's list");
    assert_eq!(other.read(&w.cache), 1, "another table stays cached");
    w.write(&consumer, &["DELETE FROM draft WHERE id = 1"]);
    assert_eq!(cat1.read(&w.cache), 3, "a delete sends the key only");
    w.write(&consumer, &["UPDATE draft SET category = 7 WHERE id = 2"]);
    let warnings: Vec<String> = w
        .events()
        .into_iter()
        .filter(|e| e.starts_with("identity"))
        .collect();
    assert_eq!(
        warnings,
        [r#"identity draft: ALTER TABLE "public"."draft" REPLICA IDENTITY FULL"#],
        "warned once, with the statement to run"
    );
    assert_eq!(id2.read(&w.cache), 2, "row 2 was updated");
}

#[test]
fn a_restarted_consumer_delivers_what_was_committed_while_it_was_down() {
    let w = World::new("restart", ARTICLE);
    let consumer = w.consumer("restart", &["article"]);
    let (cat1, cat2) = (
        Cached::category("article", 1),
        Cached::category("article", 2),
    );
    w.write(
        &consumer,
        &["UPDATE article SET title = 'warm' WHERE id = 3"],
    );
    consumer.stop();
    cat1.read(&w.cache);
    cat2.read(&w.cache);
    w.pg.psql(
        &w.db,
        &["UPDATE article SET title = 'while down' WHERE id = 1"],
    );
    assert_eq!(cat1.read(&w.cache), 1, "nobody invalidated yet");
    let consumer = w.consumer("restart", &["article"]);
    w.sync(&consumer);
    assert_eq!(cat1.read(&w.cache), 2, "delivered from the persistent slot");
    assert_eq!(
        cat2.read(&w.cache),
        1,
        "exactly: the slot resumed, nothing was widened"
    );
    assert_eq!(
        w.events()
            .iter()
            .filter(|e| e.starts_with("invalidated"))
            .count(),
        1,
        "only the slot's creation invalidated everything"
    );
}

#[test]
fn a_temporary_slot_invalidates_every_published_table_on_connect() {
    let w = World::new("temp", ARTICLE);
    let cat1 = Cached::category("article", 1);
    cat1.read(&w.cache);
    let events = w.events.clone();
    let consumer = Consumer::builder(&w.pg.conninfo(&w.db))
        .publication("cdc_temp")
        .create_publication(["article"])
        .slot("temp")
        .slot_kind(SlotKind::Temporary)
        .status_interval(Duration::from_millis(100))
        .on_event(move |e| events.lock().unwrap().push(describe(e)))
        .spawn(w.cache.clone())
        .unwrap();
    w.sync(&consumer);
    assert_eq!(cat1.read(&w.cache), 2, "invalidated on connect");
    w.write(&consumer, &["UPDATE article SET title = 't' WHERE id = 2"]);
    assert_eq!(cat1.read(&w.cache), 2, "then exactly");
}

#[test]
fn misconfiguration_is_a_typed_error_saying_what_to_change() {
    let w = World::new("setup", ARTICLE);
    let base = || Consumer::builder(&w.pg.conninfo(&w.db));
    let e = base()
        .publication("nope")
        .spawn(w.cache.clone())
        .unwrap_err();
    assert!(matches!(e, CdcError::PublicationMissing { .. }), "{e}");
    assert!(e.to_string().contains("CREATE PUBLICATION nope"), "{e}");
    w.pg.psql(
        &w.db,
        &["CREATE PUBLICATION ins_only FOR TABLE article WITH (publish = 'insert')"],
    );
    let e = base()
        .publication("ins_only")
        .spawn(w.cache.clone())
        .unwrap_err();
    assert!(matches!(e, CdcError::PublicationIncomplete { .. }), "{e}");
    assert!(e.to_string().contains("update, delete, truncate"), "{e}");
    w.pg.psql(&w.db, &["CREATE PUBLICATION p FOR TABLE article"]);
    let e = base()
        .publication("p")
        .slot("absent")
        .spawn(w.cache.clone())
        .unwrap_err();
    assert!(matches!(e, CdcError::SlotMissing { .. }), "{e}");
    let e = base().slot("Bad-Name").spawn(w.cache.clone()).unwrap_err();
    assert!(matches!(e, CdcError::Config(_)), "{e}");
    let e = Consumer::builder("sslmode=prefer")
        .spawn(w.cache.clone())
        .unwrap_err();
    assert!(matches!(e, CdcError::Config(_)), "{e}");

    // A server without logical WAL.
    let replica = PgServer::start(&["wal_level=replica"]);
    let e = Consumer::builder(&replica.conninfo("postgres"))
        .spawn(w.cache.clone())
        .unwrap_err();
    assert!(matches!(e, CdcError::WalLevel { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("set wal_level = logical in postgresql.conf and restart"),
        "{e}"
    );
}

/// Polls `f` until it holds or `WAIT` passes.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn confirmed_flush(w: &World, slot: &str) -> Lsn {
    w.pg.psql(
        &w.db,
        &[&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
        )],
    )
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn while_redis_is_unavailable_the_transaction_is_held_and_not_acknowledged() {
    redis_down(false);
}

#[test]
fn a_cache_that_degrades_on_failure_still_holds_the_transaction() {
    // Its invalidations return `Ok` while queued for replay: not applied yet either.
    redis_down(true);
}

fn redis_down(degrade: bool) {
    // Slot names are cluster-wide.
    let slot = if degrade { "down_degrade" } else { "down" };
    let mut w = World::new(slot, ARTICLE);
    let mut redis = common::RedisServer::start(&[]);
    w.cache = Cache::builder()
        .redis(redis.url())
        .prefix(unique_prefix("down"))
        .degrade_on_failure(degrade)
        .io_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .retry_after(Duration::from_millis(50))
        .build()
        .unwrap();
    let consumer = w.consumer(slot, &["article"]);
    let (cat1, cat2) = (
        Cached::category("article", 1),
        Cached::category("article", 2),
    );
    w.write(
        &consumer,
        &["UPDATE article SET title = 'warm' WHERE id = 3"],
    );
    cat1.read(&w.cache);
    cat2.read(&w.cache);

    redis.pause(); // Redis keeps its data but answers nothing.
    w.pg.psql(&w.db, &["UPDATE article SET title = 'x' WHERE id = 1"]);
    let lsn: Lsn = w.pg.current_lsn(&w.db).parse().unwrap();
    eventually(
        "the consumer holds the transaction",
        || matches!(consumer.status(), Status::Holding { attempt, .. } if attempt >= 2),
    );
    assert!(consumer.applied_lsn() < lsn);
    assert!(consumer.lag_bytes() > 0, "the held transaction is lag");
    std::thread::sleep(Duration::from_millis(300)); // several status intervals
    assert!(
        confirmed_flush(&w, slot) < lsn,
        "not acknowledged to the server"
    );

    redis.resume();
    assert!(consumer.wait_applied(lsn, WAIT), "{:?}", consumer.status());
    assert_eq!(consumer.status(), Status::Streaming);
    assert_eq!(cat1.read(&w.cache), 2, "applied once Redis answered");
    assert_eq!(cat2.read(&w.cache), 1);
    eventually("acknowledged after applying", || {
        confirmed_flush(&w, slot) >= lsn
    });
    assert!(w.events().iter().any(|e| e.starts_with("ApplyFailed")));
    assert!(consumer.stats().apply_failures >= 2);
    consumer.stop();
    drop(w);
    redis.stop();
}

#[test]
fn a_terminated_replication_connection_reconnects_and_loses_nothing() {
    let w = World::new("term", ARTICLE);
    let consumer = w.consumer("term", &["article"]);
    let (cat1, cat2) = (
        Cached::category("article", 1),
        Cached::category("article", 2),
    );
    cat1.read(&w.cache);
    cat2.read(&w.cache);
    w.pg.psql(
        &w.db,
        &["SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'term'"],
    );
    w.pg.psql(&w.db, &["UPDATE article SET title = 'x' WHERE id = 1"]);
    w.sync(&consumer);
    assert_eq!(cat1.read(&w.cache), 2);
    assert_eq!(cat2.read(&w.cache), 1);
    eventually("reconnected", || consumer.reconnects() >= 1);
    assert_eq!(consumer.status(), Status::Streaming);
}

#[test]
fn a_schema_change_mid_stream_is_followed() {
    let w = World::new("schema", ARTICLE);
    let consumer = w.consumer("schema", &["article"]);
    let score5 = Cached::new(Read::fetch("article").filter(Cond::eq("score", 5)));
    let cat2 = Cached::category("article", 2);
    w.write(
        &consumer,
        &["UPDATE article SET title = 'before' WHERE id = 1"],
    );
    score5.read(&w.cache);
    cat2.read(&w.cache);
    w.write(
        &consumer,
        &[
            "ALTER TABLE article ADD COLUMN score int",
            "ALTER TABLE article DROP COLUMN title",
            "UPDATE article SET score = 5 WHERE id = 1",
        ],
    );
    assert_eq!(
        score5.read(&w.cache),
        2,
        "the new column is in the row images"
    );
    assert_eq!(cat2.read(&w.cache), 1);
}

#[test]
fn unknown_types_widen_and_unchanged_toast_comes_from_the_old_row() {
    let w = World::new(
        "types",
        &[
            "CREATE TABLE doc (id int PRIMARY KEY, category int, price jsonb, flag bool, body text)",
            "ALTER TABLE doc REPLICA IDENTITY FULL",
            "ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL",
            "INSERT INTO doc SELECT i, i, to_jsonb(i), true, repeat(md5(i::text), 400) FROM generate_series(1, 3) i",
        ],
    );
    let consumer = w.consumer("types", &["doc"]);
    let long1: String =
        w.pg.psql(&w.db, &["SELECT body FROM doc WHERE id = 1"])
            .trim()
            .to_owned();
    assert!(long1.len() > 10_000);
    let body1 = Cached::new(Read::fetch("doc").filter(Cond::eq("body", long1.as_str())));
    let flagged = Cached::new(Read::fetch("doc").filter(Cond::eq("flag", false)));
    let cat3 = Cached::category("doc", 3);
    for c in [&body1, &flagged, &cat3] {
        c.read(&w.cache);
    }
    // The TOASTed body is unchanged, so pgoutput does not send it in the new row; it comes
    // from the old row. Were it missing, the "body" scheme would widen to the whole table.
    w.write(
        &consumer,
        &["UPDATE doc SET category = 7, flag = false WHERE id = 1"],
    );
    assert_eq!(body1.read(&w.cache), 2, "row 1's body matches");
    assert_eq!(flagged.read(&w.cache), 2, "bool false matches");
    assert_eq!(
        cat3.read(&w.cache),
        1,
        "not widened: the body came from the old row"
    );

    // jsonb has no safe conversion: a read on it dies with any write to the table.
    let price3 = Cached::new(Read::fetch("doc").filter(Cond::eq("price", 3)));
    price3.read(&w.cache);
    w.write(&consumer, &["UPDATE doc SET flag = true WHERE id = 2"]);
    assert_eq!(price3.read(&w.cache), 2, "widened to the whole table");
    assert_eq!(
        w.events()
            .iter()
            .filter(|e| e.starts_with("unknown"))
            .collect::<Vec<_>>(),
        ["unknown doc.price"],
        "warned once"
    );
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_cache_is_invalidated_by_a_consumer_task() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pg = pg::shared();
    let db = pg::fresh_database(pg, "async");
    pg.psql(&db, ARTICLE);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cache = Cache::builder()
            .redis(shared_redis_url())
            .prefix(unique_prefix("async"))
            .build_async()
            .unwrap();
        let consumer = Consumer::builder(&pg.conninfo(&db))
            .create_publication(["article"])
            .slot("async")
            .create_slot(true)
            .status_interval(Duration::from_millis(100))
            .spawn_async(cache.clone())
            .await
            .unwrap();
        let loads = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let read = |c: usize| {
            let (cache, loads) = (&cache, &loads);
            async move {
                let r = Read::fetch("article").filter(Cond::eq("category", c as i64 + 1));
                let _: Vec<i64> = cache
                    .get_or_compute(&r, || async {
                        loads[c].fetch_add(1, Ordering::SeqCst);
                        vec![1]
                    })
                    .await
                    .unwrap();
                loads[c].load(Ordering::SeqCst)
            }
        };
        assert_eq!((read(0).await, read(1).await), (1, 1));
        let (pg2, db2) = (pg, db.clone());
        let lsn: Lsn = tokio::task::spawn_blocking(move || {
            pg2.psql(&db2, &["UPDATE article SET title = 'x' WHERE id = 1"]);
            pg2.current_lsn(&db2)
        })
        .await
        .unwrap()
        .parse()
        .unwrap();
        assert!(consumer.applied(lsn, WAIT).await, "{:?}", consumer.status());
        assert_eq!((read(0).await, read(1).await), (2, 1));
        consumer.shutdown().await;

        // A blocking consumer may be spawned (and shut down) from inside a runtime too.
        let blocking = Cache::builder()
            .redis(shared_redis_url())
            .prefix(unique_prefix("async"))
            .build()
            .unwrap();
        let consumer = Consumer::builder(&pg.conninfo(&db))
            .slot("async_blocking")
            .create_slot(true)
            .spawn(blocking)
            .unwrap();
        assert_eq!(consumer.status(), Status::Streaming);
        consumer.shutdown().await;
    });
}

#[test]
fn typed_columns_match_the_values_applications_use() {
    use stampcache::Value;
    use std::time::{SystemTime, UNIX_EPOCH};
    let w = World::new(
        "typed",
        &[
            "CREATE TABLE typed (id int PRIMARY KEY, at timestamptz, day date, ratio float8, \
             small real, big int8, uid uuid, name varchar(20), flag bool)",
            "ALTER TABLE typed REPLICA IDENTITY FULL",
            "INSERT INTO typed VALUES (1, '2023-11-14 23:13:20.5+01', '2024-02-29', 0.1, 1.1, \
             9000000000, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'n&m=1', true)",
            "INSERT INTO typed VALUES (2, now(), '2000-01-01', 2, 2, 2, gen_random_uuid(), 'x', true)",
        ],
    );
    let consumer = w.consumer("typed", &["typed"]);
    let at: SystemTime = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
    let row1: Vec<(&str, Value)> = vec![
        ("at", Value::timestamp(at)),
        ("day", Value::date(2024, 2, 29)),
        ("ratio", Value::from(0.1_f64)),
        ("small", Value::from(1.1_f32)),
        ("big", Value::from(9_000_000_000_i64)),
        ("uid", Value::from("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("name", Value::from("n&m=1")),
    ];
    let reads: Vec<(&str, Cached)> = row1
        .into_iter()
        .map(|(f, v)| (f, Cached::new(Read::fetch("typed").filter(Cond::eq(f, v)))))
        .collect();
    let id2 = Cached::id("typed", 2);
    for (_, c) in &reads {
        c.read(&w.cache);
    }
    id2.read(&w.cache);
    w.write(&consumer, &["UPDATE typed SET flag = false WHERE id = 1"]);
    for (field, c) in &reads {
        assert_eq!(c.read(&w.cache), 2, "the read on {field} matches row 1");
    }
    assert_eq!(
        id2.read(&w.cache),
        1,
        "nothing widened: every field converted"
    );
    assert!(
        !w.events().iter().any(|e| e.starts_with("unknown")),
        "{:?}",
        w.events()
    );
}

#[test]
fn writes_to_partitions_invalidate_reads_of_the_partitioned_table() {
    let w = World::new(
        "part",
        &[
            "CREATE TABLE log (id int, category int NOT NULL, PRIMARY KEY (id, category)) \
             PARTITION BY LIST (category)",
            "CREATE TABLE log_1 PARTITION OF log FOR VALUES IN (1)",
            "CREATE TABLE log_2 PARTITION OF log FOR VALUES IN (2)",
            "ALTER TABLE log_1 REPLICA IDENTITY FULL",
            "ALTER TABLE log_2 REPLICA IDENTITY FULL",
            "CREATE PUBLICATION leaves FOR TABLE log",
        ],
    );
    let e = Consumer::builder(&w.pg.conninfo(&w.db))
        .publication("leaves")
        .slot("part_leaves")
        .create_slot(true)
        .spawn(w.cache.clone())
        .unwrap_err();
    assert!(matches!(e, CdcError::PublicationPartitions { .. }), "{e}");
    assert!(
        e.to_string().contains("publish_via_partition_root = true"),
        "{e}"
    );

    let consumer = w.consumer("part", &["log"]); // creates it with publish_via_partition_root
    let (cat1, cat2) = (Cached::category("log", 1), Cached::category("log", 2));
    cat1.read(&w.cache);
    cat2.read(&w.cache);
    w.write(&consumer, &["INSERT INTO log VALUES (1, 1)"]);
    assert_eq!((cat1.read(&w.cache), cat2.read(&w.cache)), (2, 1));
}

#[test]
fn a_second_consumer_on_the_slot_stands_by_and_takes_over_when_the_first_stops() {
    let w = World::new("twin", ARTICLE);
    let first = w.consumer("twin", &["article"]);
    // Returns at once: the setup is fine, another session holds the slot.
    let second = w.consumer("twin", &["article"]);
    assert!(
        matches!(
            second.status(),
            Status::Standby {
                active_pid: Some(_)
            }
        ),
        "{:?}",
        second.status()
    );
    let cat1 = Cached::category("article", 1);
    let cat2 = Cached::category("article", 2);
    cat1.read(&w.cache);
    cat2.read(&w.cache);
    w.write(&first, &["UPDATE article SET title = 'a' WHERE id = 3"]);
    assert_eq!(
        second.applied_lsn(),
        Lsn::ZERO,
        "the standby applies nothing"
    );
    first.stop();
    w.write(&second, &["UPDATE article SET title = 'b' WHERE id = 1"]);
    assert_eq!(second.status(), Status::Streaming);
    assert_eq!(cat1.read(&w.cache), 2, "delivered by the second consumer");
    assert_eq!(
        cat2.read(&w.cache),
        1,
        "exact: it resumed where the first stopped"
    );
    assert_eq!(
        w.events()
            .iter()
            .filter(|e| e.starts_with("Standby"))
            .count(),
        1,
        "one standby event, not one per retry"
    );
    assert_eq!(
        second.stats().reconnects,
        0,
        "standing by is not reconnecting"
    );
}

#[test]
fn numeric_enum_and_timestamp_columns_match_the_values_applications_use() {
    use stampcache::Value;
    use std::time::{SystemTime, UNIX_EPOCH};
    let w = World::new(
        "typed2",
        &[
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
            "CREATE TABLE typed2 (id int PRIMARY KEY, price numeric(10,2), whole numeric, \
             feeling mood, at timestamp, flag bool)",
            "ALTER TABLE typed2 REPLICA IDENTITY FULL",
            "INSERT INTO typed2 VALUES (1, 1.5, 7, 'happy', '2023-11-14 22:13:20.5', true)",
            "INSERT INTO typed2 VALUES (2, 2, 'NaN', 'sad', '2000-01-01', true)",
        ],
    );
    let consumer = w.consumer("typed2", &["typed2"]);
    let at: SystemTime = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
    // Conditions as applications write them: an f64 and decimal text (a rust_decimal's
    // to_string) for numeric(10,2) `1.50`; an integer for numeric `7`; the label for an
    // enum; Value::timestamp for a timestamp (its wall-clock time read as UTC).
    let row1: Vec<(&str, Value)> = vec![
        ("price", Value::from(1.5_f64)),
        ("price", Value::from("1.50")),
        ("whole", Value::from(7)),
        ("feeling", Value::from("happy")),
        ("at", Value::timestamp(at)),
    ];
    let reads: Vec<(&str, Cached)> = row1
        .into_iter()
        .map(|(f, v)| (f, Cached::new(Read::fetch("typed2").filter(Cond::eq(f, v)))))
        .collect();
    let other = Cached::new(Read::fetch("typed2").filter(Cond::eq("feeling", "ok")));
    for (_, c) in &reads {
        c.read(&w.cache);
    }
    other.read(&w.cache);
    w.write(&consumer, &["UPDATE typed2 SET flag = false WHERE id = 1"]);
    for (field, c) in &reads {
        assert_eq!(c.read(&w.cache), 2, "the read on {field} matches row 1");
    }
    assert_eq!(
        other.read(&w.cache),
        1,
        "nothing widened: every field converted"
    );

    // A NaN numeric has no safe form: left out, so a read on `whole` widens (the table).
    let whole8 = Cached::new(Read::fetch("typed2").filter(Cond::eq("whole", 8)));
    whole8.read(&w.cache);
    w.write(&consumer, &["UPDATE typed2 SET flag = false WHERE id = 2"]);
    assert_eq!(whole8.read(&w.cache), 2, "widened: NaN is unknown");
    assert!(
        !w.events().iter().any(|e| e.starts_with("unknown")),
        "{:?}",
        w.events()
    );
}

#[test]
fn another_cache_waits_for_the_published_applied_position() {
    use stampcache::cdc::{published_lsn, wait_published};
    let w = World::new("published", ARTICLE);
    // A second cache on the same Redis and prefix, with no consumer of its own: another
    // process's view.
    let other = Cache::builder()
        .redis(shared_redis_url())
        .prefix(w.prefix.as_str())
        .build()
        .unwrap();
    assert_eq!(published_lsn(&other, "published").unwrap(), None);
    let consumer = w.consumer("published", &["article"]);
    let cat1 = Cached::category("article", 1);
    let cat2 = Cached::category("article", 2);
    cat1.read(&other);
    cat2.read(&other);
    w.pg.psql(&w.db, &["UPDATE article SET title = 'x' WHERE id = 1"]);
    let lsn: Lsn = w.pg.current_lsn(&w.db).parse().unwrap();
    assert!(
        wait_published(&other, "published", lsn, WAIT).unwrap(),
        "published {:?}, consumer at {}",
        published_lsn(&other, "published"),
        consumer.applied_lsn()
    );
    assert_eq!(
        cat1.read(&other),
        2,
        "the write is seen once its position is published"
    );
    assert_eq!(cat2.read(&other), 1, "exactly");
    let published = published_lsn(&other, "published").unwrap().unwrap();
    assert!(published >= lsn && published <= consumer.applied_lsn());
    let far = Lsn(lsn.0 + (1 << 40));
    assert!(
        !wait_published(&other, "published", far, Duration::from_millis(50)).unwrap(),
        "a position not reached times out"
    );
}

#[test]
fn a_crash_between_creating_the_slot_and_invalidating_everything_is_repaired_on_restart() {
    let w = World::new("crashwin", ARTICLE);
    let cat1 = Cached::category("article", 1);
    cat1.read(&w.cache);
    // What a consumer that died right after creating its slot leaves: the slot, and no
    // published position (deleted before the slot was created).
    w.pg.psql(
        &w.db,
        &[
            "CREATE PUBLICATION cdc_test FOR TABLE article",
            "SELECT pg_create_logical_replication_slot('crashwin', 'pgoutput')",
        ],
    );
    let consumer = w.consumer("crashwin", &["article"]);
    w.sync(&consumer);
    assert_eq!(
        cat1.read(&w.cache),
        2,
        "everything invalidated on the restart"
    );
    assert_eq!(
        w.events()
            .iter()
            .filter(|e| e.starts_with("invalidated"))
            .count(),
        1
    );
    // Once done (the position published), a restart resumes without invalidating all.
    consumer.stop();
    let consumer = w.consumer("crashwin", &["article"]);
    w.sync(&consumer);
    assert_eq!(cat1.read(&w.cache), 2, "not again");
}
