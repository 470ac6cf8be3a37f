//! The analysis on the SQL a user writes: what each statement depends on, conjunction by
//! conjunction, and what it refuses.

use std::collections::BTreeMap;

use super::{NotCached, Param, Shape, SqlError};
use crate::dnf::{to_dnf, DnfLimits};
use crate::profile::Op;

/// The read's dependencies: per table, its conjunctions as `f=v&g=w` (`*`: any row).
fn deps(sql: &str, params: &[Param]) -> BTreeMap<String, Vec<String>> {
    let read = Shape::parse(sql)
        .read(Op::Fetch, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let dnf = to_dnf(&read.table, &read.cond, &DnfLimits::default());
    dnf.tables
        .into_iter()
        .map(|(t, conjs)| {
            let mut out: Vec<String> = conjs
                .iter()
                .map(|c| {
                    if c.is_empty() {
                        return "*".to_owned();
                    }
                    c.iter()
                        .map(|(f, v)| format!("{f}={}", v.encode()))
                        .collect::<Vec<_>>()
                        .join("&")
                })
                .collect();
            out.sort();
            (t, out)
        })
        .collect()
}

fn expect(sql: &str, params: &[Param], want: &[(&str, &[&str])]) {
    let got = deps(sql, params);
    let want: BTreeMap<String, Vec<String>> = want
        .iter()
        .map(|(t, cs)| {
            let mut cs: Vec<String> = cs.iter().map(|c| c.to_string()).collect();
            cs.sort();
            (t.to_string(), cs)
        })
        .collect();
    assert_eq!(got, want, "{sql}");
}

fn refused(sql: &str) -> NotCached {
    match Shape::parse(sql).read(Op::Fetch, &[Param::from(1), Param::from(2)]) {
        Err(SqlError::NotCached(why)) => why,
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn equality_in_is_null_and_any_are_granular() {
    let p = [Param::from(7)];
    expect(
        "SELECT * FROM article WHERE category = $1",
        &p,
        &[("article", &["category=i7"])],
    );
    expect(
        "SELECT * FROM article WHERE $1 = category",
        &p,
        &[("article", &["category=i7"])],
    );
    expect(
        "SELECT * FROM article WHERE category = 3",
        &[],
        &[("article", &["category=i3"])],
    );
    expect(
        "SELECT * FROM article WHERE status = 'published' AND published = true",
        &[],
        &[("article", &["published=T&status=spublished"])],
    );
    expect(
        "SELECT * FROM article WHERE id IN (1, 2, $1)",
        &p,
        &[("article", &["id=i1", "id=i2", "id=i7"])],
    );
    expect(
        "SELECT * FROM article WHERE id = ANY($1)",
        &[Param::array([4, 5])],
        &[("article", &["id=i4", "id=i5"])],
    );
    expect(
        "SELECT * FROM article WHERE author IS NULL",
        &[],
        &[("article", &["author=N"])],
    );
    expect(
        "SELECT * FROM article WHERE category = $1::int",
        &p,
        &[("article", &["category=i7"])],
    );
}

#[test]
fn and_or_not_follow_the_condition_tree() {
    let p = [Param::from(1), Param::from(2)];
    expect(
        "SELECT count(*) FROM article WHERE category = $1 OR category = $2",
        &p,
        &[("article", &["category=i1", "category=i2"])],
    );
    expect(
        "SELECT count(*) FROM article WHERE (category = $1 AND published) OR id = $2",
        &p,
        &[("article", &["category=i1", "id=i2"])],
    );
    // Negations and other comparisons widen.
    expect(
        "SELECT * FROM article WHERE NOT category = 1",
        &[],
        &[("article", &["*"])],
    );
    expect(
        "SELECT * FROM article WHERE category <> 1",
        &[],
        &[("article", &["*"])],
    );
    expect(
        "SELECT * FROM article WHERE id NOT IN (1, 2)",
        &[],
        &[("article", &["*"])],
    );
    expect(
        "SELECT * FROM article WHERE author IS NOT NULL",
        &[],
        &[("article", &["*"])],
    );
    expect(
        "SELECT * FROM article WHERE category = $1 AND price > $2",
        &p,
        &[("article", &["category=i1"])],
    );
    expect(
        "SELECT * FROM article WHERE category = $1 OR price > $2",
        &p,
        &[("article", &["*"])],
    );
}

#[test]
fn strings_postgresql_could_read_as_another_type_widen() {
    for lit in [
        "'1'",
        "'2024-01-01'",
        "'t'",
        "'tr'",
        "'no'",
        "'Infinity'",
        "'a1'",
    ] {
        let sql = format!("SELECT * FROM article WHERE category = {lit}");
        expect(&sql, &[], &[("article", &["*"])]);
    }
    expect(
        "SELECT * FROM article WHERE kind = 'draft'",
        &[],
        &[("article", &["kind=sdraft"])],
    );
}

#[test]
fn inner_joins_depend_on_the_joined_tables_conditions() {
    let p = [Param::from("ann")];
    expect(
        "SELECT a.* FROM article a JOIN author b ON a.author_id = b.id WHERE b.name = $1",
        &p,
        &[("article", &["*"]), ("author", &["name=sann"])],
    );
    expect(
        "SELECT a.* FROM article AS a, author AS b WHERE a.author_id = b.id AND b.name = $1 AND a.category = 2",
        &p,
        &[("article", &["category=i2"]), ("author", &["name=sann"])],
    );
    // A joined table no condition names is a dependency all the same.
    expect(
        "SELECT * FROM article JOIN author ON article.author_id = author.id WHERE article.id = 1",
        &[],
        &[("article", &["id=i1"]), ("author", &["*"])],
    );
    // A join equality under NOT cannot be dropped: it widens.
    expect(
        "SELECT * FROM article a JOIN author b ON true WHERE NOT (a.author_id = b.id) AND b.name = 'x'",
        &[],
        &[("article", &["*"]), ("author", &["name=sx"])],
    );
    // An unqualified column among several tables cannot be placed: both tables widen.
    expect(
        "SELECT * FROM article a JOIN author b ON a.author_id = b.id WHERE name = 'x'",
        &[],
        &[("article", &["*"]), ("author", &["*"])],
    );
}

#[test]
fn outer_joins_subqueries_ctes_and_unions_depend_on_whole_tables() {
    expect(
        "SELECT * FROM article a LEFT JOIN author b ON a.author_id = b.id AND b.name = 'x' WHERE a.category = 1",
        &[],
        &[("article", &["category=i1"]), ("author", &["*"])],
    );
    expect(
        "SELECT * FROM article a RIGHT JOIN author b ON a.author_id = b.id WHERE a.category = 1",
        &[],
        &[("article", &["*"]), ("author", &["*"])],
    );
    expect(
        "SELECT * FROM article WHERE author_id IN (SELECT id FROM author WHERE name = 'x') AND category = 1",
        &[],
        &[("article", &["category=i1"]), ("author", &["*"])],
    );
    expect(
        "WITH recent AS (SELECT * FROM article WHERE category = 1) SELECT * FROM recent JOIN author ON recent.author_id = author.id WHERE author.name = 'x'",
        &[],
        &[("article", &["*"]), ("author", &["name=sx"])],
    );
    expect(
        "SELECT * FROM article WHERE author_id IN (SELECT id FROM author) OR category = 1",
        &[],
        &[("article", &["*"]), ("author", &["*"])],
    );
    expect(
        "SELECT id FROM article WHERE category = 1 UNION SELECT id FROM draft WHERE category = 2",
        &[],
        &[("article", &["*"]), ("draft", &["*"])],
    );
    expect(
        "SELECT * FROM (SELECT * FROM article WHERE category = 1) x",
        &[],
        &[("article", &["*"])],
    );
}

#[test]
fn schemas_and_quoting_name_tables_as_the_change_stream_does() {
    expect(
        "SELECT * FROM public.article WHERE id = 1",
        &[],
        &[("article", &["id=i1"])],
    );
    expect(
        "SELECT * FROM blog.article WHERE id = 1",
        &[],
        &[("blog.article", &["id=i1"])],
    );
    expect(
        "SELECT * FROM Article WHERE ID = 1",
        &[],
        &[("article", &["id=i1"])],
    );
    expect(
        "SELECT * FROM \"Article\" WHERE \"Id\" = 1",
        &[],
        &[("Article", &["Id=i1"])],
    );
}

#[test]
fn volatile_locking_and_writing_sql_is_not_cached() {
    assert_eq!(
        refused("SELECT * FROM article WHERE created > now()"),
        NotCached::Volatile("now".into())
    );
    assert_eq!(
        refused("SELECT * FROM article ORDER BY random()"),
        NotCached::Volatile("random".into())
    );
    assert_eq!(
        refused("SELECT nextval('s')"),
        NotCached::Volatile("nextval".into())
    );
    assert_eq!(
        refused("SELECT * FROM article WHERE id = 1 FOR UPDATE"),
        NotCached::Locking
    );
    assert_eq!(
        refused("WITH d AS (DELETE FROM article RETURNING id) SELECT * FROM d"),
        NotCached::Write
    );
    assert_eq!(
        refused("UPDATE article SET title = 'x'"),
        NotCached::NotARead
    );
    assert_eq!(refused("SELECT 1; SELECT 2"), NotCached::NotARead);
    assert_eq!(refused("SELECT 1"), NotCached::NoTable);
    assert!(matches!(refused("SELEC * FROM"), NotCached::Parse(_)));
}

#[test]
fn every_parameter_is_in_the_key_and_missing_ones_are_an_error() {
    let shape = Shape::parse("SELECT * FROM article WHERE category = $1 LIMIT $2");
    let a = shape
        .read(Op::Fetch, &[Param::from(1), Param::from(10)])
        .unwrap();
    let b = shape
        .read(Op::Fetch, &[Param::from(1), Param::from(20)])
        .unwrap();
    assert_ne!(a, b, "LIMIT $2 shapes the key");
    assert_eq!(a.cond, b.cond);
    assert_eq!(
        shape.read(Op::Fetch, &[Param::from(1)]),
        Err(SqlError::MissingParams {
            expected: 2,
            given: 1
        })
    );
    // An array where a scalar is compared: the database decides; the cache widens.
    expect(
        "SELECT * FROM article WHERE category = $1",
        &[Param::array([1, 2])],
        &[("article", &["*"])],
    );
    assert!(std::sync::Arc::ptr_eq(
        &Shape::cached("SELECT * FROM article"),
        &Shape::cached("SELECT * FROM article")
    ));
}

#[test]
fn question_marks_are_positional_parameters_and_jsonb_question_marks_stay_operators() {
    let p = [Param::from(7), Param::from("ann"), Param::from(10)];
    expect(
        "SELECT a.* FROM article a JOIN author b ON a.author_id = b.id \
         WHERE a.category = ? AND b.name = ? LIMIT ?",
        &p,
        &[("article", &["category=i7"]), ("author", &["name=sann"])],
    );
    let shape = Shape::parse("SELECT * FROM article WHERE category = ? LIMIT ?");
    assert!(matches!(
        shape.read(Op::Fetch, &p[..1]),
        Err(SqlError::MissingParams { expected: 2, .. })
    ));
    // PostgreSQL's `?` (does a jsonb hold a key) parses as the operator it is (a conjunct
    // the analysis does not understand, dropped: wider).
    expect(
        "SELECT * FROM article WHERE tags ? 'x' AND category = $1",
        &p,
        &[("article", &["category=i7"])],
    );
    // `?` beside `$n` is not one numbering: not cached.
    assert!(matches!(
        refused("SELECT * FROM article WHERE category = ? AND id = $1"),
        NotCached::Parse(_)
    ));
    // Writes number them the same way.
    let w = super::WriteShape::parse("INSERT INTO article (id, category) VALUES (?, ?)")
        .writes(&p[..2]);
    assert_eq!(
        w.rows,
        vec![(
            "article".to_string(),
            vec![crate::row::Row::new().with("id", 7).with("category", "ann")]
        )]
    );
}

mod writes {
    use super::super::{Param, WriteShape, Writes};
    use crate::row::Row;

    fn writes(sql: &str, params: &[Param]) -> Writes {
        WriteShape::parse(sql).writes(params)
    }

    fn tables(ts: &[&str]) -> Writes {
        Writes {
            tables: ts.iter().map(|t| t.to_string()).collect(),
            ..Writes::default()
        }
    }

    #[test]
    fn inserted_values_are_row_images() {
        let w = writes(
            "INSERT INTO article (id, category, title) VALUES (1, $1, 'x'), ($2, 3, DEFAULT)",
            &[Param::from(7), Param::from(2)],
        );
        let rows = vec![
            Row::new()
                .with("id", 1)
                .with("category", 7)
                .with("title", "x"),
            // DEFAULT is unknown: left out, so schemes needing `title` widen.
            Row::new().with("id", 2).with("category", 3),
        ];
        assert_eq!(w.rows, vec![("article".to_string(), rows)]);
        assert!(w.tables.is_empty() && !w.everything);
        // ON CONFLICT DO NOTHING inserts or not: the images hold.
        let w = writes(
            "INSERT INTO article (id) VALUES (1) ON CONFLICT DO NOTHING",
            &[],
        );
        assert_eq!(w.rows.len(), 1);
    }

    #[test]
    fn other_writes_are_whole_tables() {
        assert_eq!(
            writes("UPDATE article SET title = 'x' WHERE id = 1", &[]),
            tables(&["article"])
        );
        assert_eq!(
            writes("DELETE FROM blog.article WHERE id = 1", &[]),
            tables(&["blog.article"])
        );
        assert_eq!(
            writes("INSERT INTO article SELECT * FROM draft", &[]),
            tables(&["article"])
        );
        assert_eq!(
            writes("INSERT INTO article VALUES (1, 2)", &[]),
            tables(&["article"])
        );
        assert_eq!(
            writes(
                "INSERT INTO article (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET title = 'y'",
                &[]
            ),
            tables(&["article"])
        );
        assert_eq!(
            writes(
                "WITH gone AS (DELETE FROM draft RETURNING id) INSERT INTO article (id) SELECT id FROM gone",
                &[]
            ),
            tables(&["draft", "article"])
        );
        assert_eq!(
            writes("TRUNCATE article, author", &[]),
            tables(&["article", "author"])
        );
    }

    #[test]
    fn reads_and_transaction_control_change_nothing_and_the_unknown_everything() {
        for sql in [
            "SELECT count(*) FROM article",
            "BEGIN",
            "COMMIT",
            "SET search_path = x",
        ] {
            assert_eq!(writes(sql, &[]), Writes::default(), "{sql}");
        }
        for sql in [
            "SELECT archive_old_articles()",
            "DROP TABLE article",
            "CALL purge()",
            "not sql at all",
        ] {
            assert!(writes(sql, &[]).everything, "{sql}");
        }
    }

    mod returning {
        use super::super::super::{Param, Returning, WriteShape};
        use crate::row::Row;

        fn returning(sql: &str) -> Option<Returning> {
            WriteShape::parse(sql).returning().cloned()
        }

        fn cols(cs: &[Option<&str>]) -> Option<Vec<Option<String>>> {
            Some(cs.iter().map(|c| c.map(String::from)).collect())
        }

        /// The images one returned row stands for.
        fn images(r: &Returning, returned: Row, params: &[Param]) -> Vec<Row> {
            let mut out = Vec::new();
            r.images_of(returned, params, &mut out);
            out
        }

        #[test]
        fn returned_rows_are_images_of_single_table_writes() {
            let r = returning(
                "INSERT INTO article (category, title) SELECT c, t FROM draft RETURNING id, a.category AS cat, lower(title) AS title",
            )
            .unwrap();
            // `a` is not the table: an expression, like `lower(title)`.
            assert_eq!(r.table(), "article");
            assert_eq!(
                r.columns().map(<[_]>::to_vec),
                cols(&[Some("id"), None, None])
            );
            let new = Row::new().with("id", 1).with("category", 2);
            assert_eq!(images(&r, new.clone(), &[]), vec![new.clone()]);

            let r = returning("DELETE FROM blog.article a WHERE id = $1 RETURNING a.*").unwrap();
            assert_eq!((r.table(), r.columns()), ("blog.article", None));
            assert_eq!(images(&r, new.clone(), &[]), vec![new.clone()]);

            let r =
                returning("INSERT INTO article (id) VALUES (1) ON CONFLICT DO NOTHING RETURNING *")
                    .unwrap();
            assert_eq!(r.columns(), None);
        }

        #[test]
        fn an_updated_row_is_old_without_what_set_assigns_but_what_where_pins() {
            let r = returning(
                "UPDATE article AS a SET (title, category) = ($2, $3), score = 1 \
                 WHERE a.id = $1 AND (category = $4 AND 'x' = title) RETURNING a.id, Category, title, score",
            )
            .unwrap();
            assert_eq!(
                r.columns().map(<[_]>::to_vec),
                cols(&[Some("id"), Some("category"), Some("title"), Some("score")])
            );
            let new = Row::new()
                .with("id", 1)
                .with("category", 5)
                .with("title", "y")
                .with("score", 1);
            let params = [1, 0, 5, 4].map(Param::from);
            let old = Row::new()
                .with("id", 1)
                .with("category", 4)
                .with("title", "x");
            assert_eq!(images(&r, new.clone(), &params), vec![old, new.clone()]);
            // Under OR nothing is pinned: assigned columns are unknown in the old row.
            let r = returning(
                "UPDATE article SET category = $2 WHERE id = $1 OR category = $3 RETURNING *",
            )
            .unwrap();
            let old = Row::new().with("id", 1).with("title", "y").with("score", 1);
            assert_eq!(images(&r, new.clone(), &params), vec![old, new]);
        }

        #[test]
        fn returned_rows_that_may_not_be_every_change_are_not_used() {
            for sql in [
                "DELETE FROM article WHERE id = 1",
                "DELETE FROM article USING author WHERE article.author_id = author.id RETURNING article.id",
                "UPDATE article SET title = 'x' FROM author WHERE author.id = 1 RETURNING article.id",
                "INSERT INTO article (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET title = 'y' RETURNING *",
                "WITH gone AS (DELETE FROM draft RETURNING id) INSERT INTO article (id) SELECT id FROM gone RETURNING id",
                "INSERT INTO article (id, title) VALUES (1, archive(2)) RETURNING id",
                "DELETE FROM article RETURNING *, id",
                "TRUNCATE article",
                "SELECT id FROM article",
            ] {
                assert_eq!(returning(sql), None, "{sql}");
            }
        }
    }
}

/// What identifies a call (the sqlx front's memo key): equal for the same statement,
/// operation and parameters, different when any of them differs.
#[test]
fn a_call_is_described_by_its_statement_operation_and_parameters() {
    let describe = |shape: &Shape, op: Op, params: &[Param]| {
        let mut out = String::new();
        shape.describe_call(op, params, &mut out);
        out
    };
    let a = Shape::parse("SELECT * FROM t WHERE a = $1 AND b = $2");
    let b = Shape::parse("SELECT * FROM t WHERE b = $1 AND a = $2");
    let one = [Param::from(1), Param::from(2)];
    assert_eq!(
        describe(&a, Op::Get, &one),
        describe(&a, Op::Get, &one.clone())
    );
    let others: Vec<String> = vec![
        describe(&a, Op::Fetch, &one),
        describe(&b, Op::Get, &one),
        describe(&a, Op::Get, &[Param::from(2), Param::from(1)]),
        describe(&a, Op::Get, &[Param::from(1), Param::from("2")]),
        describe(&a, Op::Get, &[Param::from(1), Param::from(2.5)]),
        describe(&a, Op::Get, &[Param::from(1), Param::array([2])]),
        describe(
            &a,
            Op::Get,
            &[Param::from(1), Param::from(2), Param::from(3)],
        ),
        describe(&a, Op::Get, &[Param::from("1\u{0}2")]),
        describe(
            &a,
            Op::Get,
            &[Param::from(1), Param::from(crate::Value::Null)],
        ),
    ];
    let mut all = others.clone();
    all.push(describe(&a, Op::Get, &one));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), others.len() + 1, "{all:?}");
}
