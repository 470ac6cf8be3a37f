//! A harness for counting the instructions of a tracked local hit under callgrind:
//! `N` hits of one read (embedded store, `LocalMode::Tracked`, so no I/O at all), after one
//! miss that fills the local tier.
//!
//! ```text
//! cargo build --release --example callgrind_local_hit
//! for n in 1000 21000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/callgrind_local_hit $n unprepared 1
//! done
//! ```
//! Instructions per hit: the difference of the two runs' totals (`callgrind_annotate`'s
//! `PROGRAM TOTALS`) divided by 20,000. Arguments: hits, `unprepared` or `prepared`, and
//! the number of conjunctions of the read (`category IN (0..k)`).

use std::hint::black_box;

use stampcache::{Cache, Cond, LocalMode, Read};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let prepared = args.next().as_deref() == Some("prepared");
    let conj: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let cache = Cache::builder().local(LocalMode::Tracked).build().unwrap();
    let read = if conj == 1 {
        Read::fetch("blog.article").filter(Cond::eq("category", 7))
    } else {
        Read::fetch("blog.article").filter(Cond::is_in("category", 0..conj))
    };
    let value: Vec<u64> = (0..25).collect();
    let _ = cache.get_or_compute_arc(&read, || value.clone()).unwrap();
    let before = cache.stats().local.hits;
    if prepared {
        let p = cache.prepare(&read);
        for _ in 0..n {
            black_box(
                p.get_or_compute_arc(|| -> Vec<u64> { unreachable!("a local hit") })
                    .unwrap(),
            );
        }
    } else {
        for _ in 0..n {
            black_box(
                cache
                    .get_or_compute_arc(&read, || -> Vec<u64> { unreachable!("a local hit") })
                    .unwrap(),
            );
        }
    }
    assert_eq!(
        cache.stats().local.hits - before,
        n as u64,
        "every call a local hit"
    );
}
