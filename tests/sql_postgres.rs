//! The over-approximation invariant of SQL-described reads, checked against PostgreSQL
//! itself: random `WHERE` clauses over a small schema; for every row PostgreSQL says a query
//! returns, invalidating that row (as its update or delete would) kills the cached read.
//! PostgreSQL at `STAMPCACHE_TEST_PG` (a libpq connection string), by default
//! `host=127.0.0.1 user=postgres dbname=test`.

use postgres::types::ToSql;
use postgres::{Client, NoTls};
use stampcache::sql::{Param, Shape};
use stampcache::{Cache, Op, Row, Value};

fn connect() -> Client {
    let dsn = std::env::var("STAMPCACHE_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".to_string());
    Client::connect(&dsn, NoTls).unwrap_or_else(|e| {
        panic!("PostgreSQL is needed for this test ({dsn}): {e}; set STAMPCACHE_TEST_PG")
    })
}

/// xorshift: the same queries on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.next(xs.len() as u64) as usize]
    }
}

/// A random condition over `t` (and `u` when joined); parameters are appended to `params`.
fn cond(rng: &mut Rng, depth: u32, joined: bool, params: &mut Vec<i32>) -> String {
    let param = |rng: &mut Rng, params: &mut Vec<i32>| {
        params.push(rng.next(4) as i32);
        format!("${}", params.len())
    };
    if depth > 0 && rng.next(3) > 0 {
        let op = rng.next(3);
        let l = cond(rng, depth - 1, joined, params);
        if op == 2 {
            return format!("NOT ({l})");
        }
        let r = cond(rng, depth - 1, joined, params);
        return match op {
            0 => format!("({l} AND {r})"),
            _ => format!("({l} OR {r})"),
        };
    }
    let col = if joined && rng.next(3) == 0 {
        rng.pick(&["u.x", "u.t_id", "u.id"])
    } else {
        rng.pick(&["t.a", "t.b", "t.id"])
    };
    let k = rng.next(4);
    match rng.next(14) {
        0 => format!("{col} = {k}"),
        1 => format!("{col} = {}", param(rng, params)),
        2 => format!("{k} = {col}"),
        3 => format!("{col} IN ({k}, {})", rng.next(4)),
        4 => format!("{col} IS NULL"),
        5 => format!("{col} IS NOT NULL"),
        6 => format!("t.s = '{}'", rng.pick(&["x", "y"])),
        7 => format!("t.f = {}", rng.pick(&["true", "false"])),
        8 => format!("{col} > {k}"),
        9 => format!("{col} <> {k}"),
        10 => "t.a = t.b".to_string(),
        11 if joined => "t.id = u.t_id".to_string(),
        12 => format!("t.a IN (SELECT x FROM u WHERE u.x = {k})"),
        13 => format!("{col} = '{k}'"),
        _ => "t.f".to_string(),
    }
}

fn value(row: &postgres::Row, i: usize) -> Value {
    if let Ok(v) = row.try_get::<_, Option<i32>>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    if let Ok(v) = row.try_get::<_, Option<bool>>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    row.get::<_, Option<String>>(i)
        .map_or(Value::Null, Value::from)
}

/// The row image of columns `from..to` of a result row, named as the columns are.
fn image(row: &postgres::Row, from: usize, to: usize) -> Option<Row> {
    let mut out = Row::new();
    for i in from..to {
        let name = row.columns()[i].name();
        out.insert(name, value(row, i));
    }
    // A left join's missing side: no row.
    (out.get("id") != Some(&Value::Null)).then_some(out)
}

#[test]
fn every_row_postgresql_returns_invalidates_the_read() {
    let mut db = connect();
    let suffix = std::process::id();
    let (t, u) = (format!("sqlt_{suffix}"), format!("sqlu_{suffix}"));
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {t}; DROP TABLE IF EXISTS {u};
         CREATE TABLE {t} (id INT PRIMARY KEY, a INT, b INT, s TEXT, f BOOL);
         CREATE TABLE {u} (id INT PRIMARY KEY, t_id INT, x INT);"
    ))
    .unwrap();
    for i in 0..40 {
        let a = (i % 5 != 4).then_some(i % 4);
        let b = (i % 7 != 6).then_some((i / 3) % 4);
        let s = ["x", "y"].get((i % 3) as usize).copied();
        let f = (i % 6 != 5).then_some(i % 2 == 0);
        db.execute(
            &format!("INSERT INTO {t} VALUES ($1, $2, $3, $4, $5)"),
            &[&i, &a, &b, &s, &f],
        )
        .unwrap();
    }
    for i in 0..25 {
        let t_id = (i % 9 != 8).then_some((i * 7) % 40);
        let x = (i % 5 != 4).then_some(i % 4);
        db.execute(
            &format!("INSERT INTO {u} VALUES ($1, $2, $3)"),
            &[&i, &t_id, &x],
        )
        .unwrap();
    }

    let cache = Cache::embedded();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let (mut queries, mut checked_rows) = (0, 0);
    for n in 0..400 {
        let shape_kind = rng.next(3);
        let joined = shape_kind > 0;
        let mut params = Vec::new();
        let w = cond(&mut rng, 3, joined, &mut params);
        let from = match shape_kind {
            0 => "t".to_string(),
            1 => "t JOIN u ON t.id = u.t_id".to_string(),
            _ => "t LEFT JOIN u ON t.id = u.t_id".to_string(),
        };
        let select = if joined { "t.*, u.*" } else { "t.*" };
        // The test's SQL names the tables by their real names, aliased to t and u.
        let sql = format!("SELECT {select} FROM {from} WHERE {w}")
            .replace(" t JOIN", &format!(" {t} t JOIN"))
            .replace(" t LEFT", &format!(" {t} t LEFT"))
            .replace("FROM t WHERE", &format!("FROM {t} t WHERE"))
            .replace(" u ON", &format!(" {u} u ON"))
            .replace("FROM u WHERE", &format!("FROM {u} u WHERE"));
        let args: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = db
            .query(&sql, &args)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let bound: Vec<Param> = params.iter().map(|p| Param::from(*p)).collect();
        let read = Shape::parse(&sql)
            .read(Op::Fetch, &bound)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        queries += 1;
        for row in &rows {
            let t_cols = 5;
            let mut images = vec![(t.as_str(), image(row, 0, t_cols))];
            if joined {
                images.push((u.as_str(), image(row, t_cols, row.len())));
            }
            for (table, img) in images {
                let Some(img) = img else { continue };
                let _: u64 = cache.get_or_compute(&read, || 1).unwrap();
                cache.invalidate_rows(table, [img.clone()]).unwrap();
                let mut reloaded = false;
                let _: u64 = cache
                    .get_or_compute(&read, || {
                        reloaded = true;
                        2
                    })
                    .unwrap();
                assert!(
                    reloaded,
                    "query {n}: {sql} with {params:?} returns the {table} row {img:?}, \
                     whose invalidation left the read cached"
                );
                checked_rows += 1;
            }
        }
    }
    db.batch_execute(&format!("DROP TABLE {t}; DROP TABLE {u};"))
        .unwrap();
    assert!(
        queries == 400 && checked_rows > 1000,
        "{queries} queries, {checked_rows} rows"
    );
}
