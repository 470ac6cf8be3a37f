//! The local tier's weigher against the heap its entries really hold, measured by a
//! counting global allocator: `N` distinct reads with the local tier on, minus the same
//! reads with it off (same embedded store, so the shared entries cost the same in both),
//! per entry, against the weigher's total per entry. Own harness (`main`), so nothing else
//! allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use stampcache::{Cache, Cond, LocalMode, Read};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const N: usize = 5_000;

/// Live bytes per read after `N` misses of distinct reads, and the local tier's weight and
/// entries.
fn fill(mode: Option<LocalMode>) -> (f64, u64, u64) {
    let mut b = Cache::builder().local_capacity(1 << 30);
    if let Some(m) = mode {
        b = b.local(m);
    }
    let cache = b.build().unwrap();
    let reads: Vec<Read> = (0..N)
        .map(|k| Read::get("mem.article").filter(Cond::eq("id", k as i64)))
        .collect();
    let warm = Read::get("mem.warm").filter(Cond::eq("id", 0));
    let _: Vec<u8> = cache.get_or_compute(&warm, || vec![0; 200]).unwrap();
    let _ = cache.local_sizes();
    let before = LIVE.load(Ordering::Relaxed);
    for (k, r) in reads.iter().enumerate() {
        let _: Vec<u8> = cache
            .get_or_compute(r, || (0..200).map(|i| (i + k) as u8).collect())
            .unwrap();
    }
    let (entries, _) = cache.local_sizes();
    let after = LIVE.load(Ordering::Relaxed);
    let weight = cache.local_weight();
    drop(reads);
    ((after - before) as f64 / N as f64, weight, entries)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (off, _, _) = fill(None);
    let mut failed = 0;
    for mode in [LocalMode::Tracked, LocalMode::Strict] {
        let (on, weight, entries) = fill(Some(mode));
        assert_eq!(
            entries,
            N as u64 + 1,
            "{mode:?}: every read kept locally (and the warm-up)"
        );
        let measured = on - off;
        let weighed = weight as f64 / entries as f64;
        let ratio = weighed / measured;
        let ok = (0.75..=1.33).contains(&ratio);
        println!(
            "test weigher_matches_heap_{mode:?}: measured {measured:.0} B per entry, weigher \
             {weighed:.0} B ({ratio:.2}x) ... {}",
            if ok { "ok" } else { "FAILED" }
        );
        failed += usize::from(!ok);
    }
    println!("{} passed, {failed} failed", 2 - failed);
    assert_eq!(failed, 0, "the weigher is off by more than a third");
}
