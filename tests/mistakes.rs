//! Mistakes a newcomer makes fail loudly, never with a wrong or stale answer (issue 20):
//! one read decoded as two types, a loader's error cached, condition values of another
//! Rust type than the rows', a type the codec cannot decode. Every backend, both front ends.

mod common;

use std::sync::{Arc, Mutex};

use common::front::BuildFor;
use common::{Backend, Loads};
use serde::{Deserialize, Serialize};
use stampcache::{Cond, Error, Event, Kind, LoadError, Read, Target};

crate::backend_suite!(
    [embedded => Embedded, redis => Redis, redis_local_strict => RedisStrict, redis_local_tracked => RedisTracked,
     async_embedded => AsyncEmbedded, async_redis => AsyncRedis, async_redis_local_strict => AsyncRedisStrict,
     async_redis_local_tracked => AsyncRedisTracked];
    one_read_as_two_types_is_a_miss_with_both_names,
    one_read_as_two_structs_never_mixes_their_fields,
    a_type_mismatch_can_be_an_error,
    a_loader_error_is_never_cached,
    a_result_value_is_refused,
    a_text_id_is_invalidated_by_an_integer_row,
    a_numeric_flag_is_invalidated_by_a_bool_row,
    kinds_that_never_match_are_reported,
    a_type_the_codec_cannot_decode_fails_at_its_first_store,
    read_events_name_the_read,
);

/// The events of a cache, as text.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn listener(&self) -> impl Fn(&Event<'_>) + Send + Sync + 'static {
        let sink = self.0.clone();
        move |e| {
            let s = match e {
                Event::TypeMismatch {
                    stored, requested, ..
                } => format!("type {stored} as {requested}"),
                Event::KindMismatch {
                    table,
                    field,
                    condition,
                    row,
                    ..
                } => format!("kind {table}.{field}: {condition} against {row}"),
                _ => return,
            };
            sink.lock().unwrap().push(s);
        }
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn one_read_as_two_types_is_a_miss_with_both_names(b: Backend) {
    let seen = Seen::default();
    let cache = b
        .builder("two-types")
        .on_event(seen.listener())
        .build_for(b)
        .unwrap();
    let read = Read::fetch("app.numbers");
    let loads = Loads::default();
    let v: Vec<i64> = cache
        .get_or_compute(&read, loads.of(vec![1, 2, 3]))
        .unwrap();
    assert_eq!(v, vec![1, 2, 3]);
    // Before: Ok("\u{6}\u{6}9") without the loader. Now the loader runs.
    let s: String = cache
        .get_or_compute(&read, loads.of("text".into()))
        .unwrap();
    assert_eq!(s, "text");
    assert_eq!(loads.count(), 2);
    let events = seen.take();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains("Vec<i64>") && events[0].contains("String"),
        "{events:?}"
    );
    // The entry now holds the String; reading it as such is a hit.
    let s: String = cache
        .get_or_compute(&read, loads.of("other".into()))
        .unwrap();
    assert_eq!((s.as_str(), loads.count()), ("text", 2));
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Article {
    id: i64,
    category: i64,
    title: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Summary {
    id: i64,
    views: i64,
    title: String,
}

fn one_read_as_two_structs_never_mixes_their_fields(b: Backend) {
    let cache = b.builder("two-structs").build_for(b).unwrap();
    let read = Read::fetch("app.article").filter(Cond::eq("category", 7));
    let article = Article {
        id: 1,
        category: 7,
        title: "t".into(),
    };
    let loads = Loads::default();
    let _: Vec<Article> = cache
        .get_or_compute(&read, loads.of(vec![article]))
        .unwrap();
    let summary = Summary {
        id: 1,
        views: 1000,
        title: "t".into(),
    };
    // Before: `views` held the category (7). Now the loader's value.
    let got: Vec<Summary> = cache
        .get_or_compute(&read, loads.of(vec![summary.clone()]))
        .unwrap();
    assert_eq!(got, vec![summary]);
    assert_eq!(loads.count(), 2);
}

fn a_type_mismatch_can_be_an_error(b: Backend) {
    let cache = b
        .builder("mismatch-error")
        .type_mismatch_fails(true)
        .build_for(b)
        .unwrap();
    let read = Read::fetch("app.numbers");
    let loads = Loads::default();
    let _: Vec<i64> = cache
        .get_or_compute(&read, loads.of(vec![1, 2, 3]))
        .unwrap();
    let e = cache
        .get_or_compute::<String, _>(&read, loads.of("text".into()))
        .unwrap_err();
    match &e {
        Error::TypeMismatch {
            stored, requested, ..
        } => {
            assert!(stored.contains("Vec<i64>"), "{e}");
            assert!(requested.contains("String"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().contains("extra"),
        "the message says how to fix it: {e}"
    );
    assert_eq!(loads.count(), 1);
}

fn a_loader_error_is_never_cached(b: Backend) {
    let cache = b.builder("loader-error").build_for(b).unwrap();
    let read = Read::fetch("app.article").filter(Cond::eq("category", 1));
    let mut runs = 0;
    for _ in 0..2 {
        let got = cache.get_or_load(&read, || {
            runs += 1;
            Err::<Vec<i64>, _>(String::from("db timeout"))
        });
        assert!(matches!(got, Err(LoadError::Loader(ref e)) if e == "db timeout"));
    }
    assert_eq!(runs, 2, "the error was not cached: the loader ran again");
    let got = cache.get_or_load(&read, || Ok::<_, String>(vec![1_i64]));
    assert_eq!(got.unwrap(), vec![1]);
    let got = cache.get_or_load(&read, || Err::<Vec<i64>, _>(String::from("not run")));
    assert_eq!(got.unwrap(), vec![1], "the Ok value was cached");
}

fn a_result_value_is_refused(b: Backend) {
    let cache = b.builder("result-value").build_for(b).unwrap();
    let read = Read::fetch("app.article").filter(Cond::eq("category", 2));
    let loads = Loads::default();
    for _ in 0..2 {
        let got = cache.get_or_compute::<Result<Vec<i64>, String>, _>(
            &read,
            loads.of(Err("db timeout".into())),
        );
        match got {
            Err(Error::ResultValue(name)) => assert!(name.contains("Result"), "{name}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(loads.count(), 2, "nothing was cached");
}

fn a_text_id_is_invalidated_by_an_integer_row(b: Backend) {
    let cache = b.builder("text-id").build_for(b).unwrap();
    // An id parsed from a URL path stays text.
    let read = Read::fetch("app.article").filter(Cond::eq("category", "1"));
    let loads = Loads::default();
    let _: Vec<String> = cache.get_or_compute(&read, loads.of(vec![])).unwrap();
    let row = Article {
        id: 5,
        category: 1,
        title: "new".into(),
    };
    cache.on_insert("app.article", &row).unwrap();
    let v: Vec<String> = cache
        .get_or_compute(&read, loads.of(vec!["new".into()]))
        .unwrap();
    assert_eq!(v, vec!["new"], "the insert invalidated the text-keyed read");
    assert_eq!(loads.count(), 2);
}

#[derive(Serialize)]
struct Flagged {
    id: i64,
    flag: bool,
}

fn a_numeric_flag_is_invalidated_by_a_bool_row(b: Backend) {
    let cache = b.builder("flag").build_for(b).unwrap();
    let read = Read::count("app.item").filter(Cond::eq("flag", 1));
    let loads = Loads::default();
    let _: i64 = cache.get_or_compute(&read, loads.of(0)).unwrap();
    cache
        .on_insert("app.item", &Flagged { id: 1, flag: true })
        .unwrap();
    let n: i64 = cache.get_or_compute(&read, loads.of(1)).unwrap();
    assert_eq!((n, loads.count()), (1, 2));
}

fn kinds_that_never_match_are_reported(b: Backend) {
    let seen = Seen::default();
    let cache = b
        .builder("kinds")
        .on_event(seen.listener())
        .build_for(b)
        .unwrap();
    let row = Article {
        id: 5,
        category: 1,
        title: "t".into(),
    };
    cache.on_insert("app.article", &row).unwrap();
    let read = Read::fetch("app.article").filter(Cond::eq("category", "news"));
    let loads = Loads::default();
    let _: Vec<String> = cache.get_or_compute(&read, loads.of(vec![])).unwrap();
    assert_eq!(
        seen.take(),
        vec![format!(
            "kind app.article.category: {} against {}",
            Kind::Text,
            Kind::Number
        )]
    );
    // Once per field.
    cache.on_insert("app.article", &row).unwrap();
    let read = Read::fetch("app.article").filter(Cond::eq("category", "sport"));
    let _: Vec<String> = cache.get_or_compute(&read, loads.of(vec![])).unwrap();
    assert!(seen.take().is_empty());
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type")]
enum Tagged {
    A { x: u8 },
}

fn a_type_the_codec_cannot_decode_fails_at_its_first_store(b: Backend) {
    let cache = b.builder("undecodable").build_for(b).unwrap();
    let read = Read::fetch("app.tagged");
    let loads = Loads::default();
    let e = cache
        .get_or_compute(&read, loads.of(Tagged::A { x: 1 }))
        .unwrap_err();
    assert!(matches!(e, Error::Codec(_)), "{e:?}");
    assert!(
        e.to_string().contains("Tagged"),
        "the message names the type: {e}"
    );
}

fn read_events_name_the_read(b: Backend) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    let cache = b
        .builder("read-events")
        .on_event(move |e| {
            if let Event::Read {
                target: Target::Table { read, .. },
                outcome,
            } = e
            {
                sink.lock().unwrap().push(format!("{outcome:?} {read:?}"));
            }
        })
        .build_for(b)
        .unwrap();
    let read = Read::fetch("app.article")
        .filter(Cond::eq("category", 42))
        .extra("ORDER BY id");
    let loads = Loads::default();
    let _: Vec<i64> = cache.get_or_compute(&read, loads.of(vec![1])).unwrap();
    let _: Vec<i64> = cache.get_or_compute(&read, loads.of(vec![2])).unwrap();
    let _: Vec<i64> = cache
        .prepare(&read)
        .get_or_compute(loads.of(vec![3]))
        .unwrap();
    let events = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(events.len(), 3, "{events:?}");
    for e in &events {
        assert!(e.contains("42") && e.contains("ORDER BY id"), "{e}");
    }
    assert!(events[0].starts_with("Miss"), "{events:?}");
}
