//! What a local entry costs in heap, in one run: a counting global allocator measures live
//! bytes while `N` distinct reads of ~200 B values fill the tracked local tier (Redis holds
//! the shared entries, so they are not in this process), against the same `N` reads with
//! the local tier off (what plans and the rest cost without it), and against a bare
//! `moka::sync::Cache<u128, Arc<Vec<u8>>>` holding the same values. The local tier's
//! weigher is compared with the measured cost: a `capacity` tier should hold about
//! `capacity` bytes of heap.
//!
//! Bytes are the sizes asked of the allocator (malloc's own headers not included); the
//! number of live allocations per entry is printed beside them. Prints one JSON object.
//!
//! `cargo bench --bench local_memory` (REDIS_URL to use a server that may be written to).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stampcache::{Cache, Cond, LocalMode, Read};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
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

/// Distinct reads (and entries) per measurement.
const N: usize = 20_000;
const VALUE_BYTES: usize = 200;

fn live() -> (isize, isize) {
    (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

fn value(k: usize) -> Vec<u8> {
    (0..VALUE_BYTES).map(|i| (k + i) as u8).collect()
}

fn reads(tag: &str) -> Vec<Read> {
    (0..N)
        .map(|k| Read::get(format!("bench_mem_{tag}.article")).filter(Cond::eq("id", k as i64)))
        .collect()
}

/// Live bytes and blocks per read after `N` misses of distinct reads (each stored in Redis
/// and, with `local`, kept locally), the reads themselves not counted; and the local tier's
/// total weight.
fn per_read(url: &str, tag: &str, local: Option<LocalMode>) -> (f64, f64, u64, u64) {
    let mut b = Cache::builder()
        .redis(url)
        .prefix(format!("bench-mem-{tag}:"))
        .local_capacity(1 << 30);
    if let Some(m) = local {
        b = b.local(m);
    }
    let cache = b.build().unwrap();
    cache.invalidate_all().unwrap();
    if local == Some(LocalMode::Tracked) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cache.push_channel_up() {
            assert!(Instant::now() < deadline, "push channel did not come up");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let reads = reads(tag);
    // One read of another table first: connections, scripts and the allocator warm.
    let warm = Read::get("bench_mem_warm.t").filter(Cond::eq("id", 0));
    let _: Vec<u8> = cache.get_or_compute(&warm, || value(0)).unwrap();
    let before = live();
    // A tracked fill of a new stamp can be killed by the push of its own creation: passes
    // until every read is kept (the same passes without a local tier).
    let mut entries = 0;
    for _ in 0..5 {
        for (k, r) in reads.iter().enumerate() {
            let _: Vec<u8> = cache.get_or_compute(r, || value(k)).unwrap();
        }
        entries = cache.local_sizes().0; // runs moka's pending work
        if local.is_none() || entries == N as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = live();
    let weight = cache.local_weight();
    let n = N as f64;
    let out = (
        (after.0 - before.0) as f64 / n,
        (after.1 - before.1) as f64 / n,
        weight,
        entries,
    );
    black_box(&reads);
    out
}

/// The same per entry for a bare moka cache of `Arc<Vec<u8>>` by `u128` key.
fn bare_moka() -> (f64, f64) {
    let cache: moka::sync::Cache<u128, Arc<Vec<u8>>> =
        moka::sync::Cache::builder().max_capacity(1 << 30).build();
    cache.insert(u128::MAX, Arc::new(value(0)));
    cache.run_pending_tasks();
    let before = live();
    for k in 0..N {
        let key = (k as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        cache.insert(key, Arc::new(value(k)));
    }
    cache.run_pending_tasks();
    let after = live();
    assert_eq!(cache.entry_count(), N as u64 + 1);
    let n = N as f64;
    (
        (after.0 - before.0) as f64 / n,
        (after.1 - before.1) as f64 / n,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list
    }
    let (_server, url) = common::bench_redis();
    let (moka_b, moka_n) = bare_moka();
    let (off_b, off_n, _, _) = per_read(&url, "off", None);
    let (on_b, on_n, weight, entries) = per_read(&url, "on", Some(LocalMode::Tracked));
    assert_eq!(entries, N as u64, "every read kept locally");
    let local_b = on_b - off_b;
    let weight_per = weight as f64 / entries as f64;
    println!(
        "local memory: {N} entries of {VALUE_BYTES} B values (one run)\n  \
         bare moka: {moka_b:.0} B and {moka_n:.1} blocks per entry\n  \
         reads without a local tier: {off_b:.0} B and {off_n:.1} blocks per read\n  \
         reads with a tracked local tier: {on_b:.0} B and {on_n:.1} blocks per read\n  \
         the local tier's own cost: {local_b:.0} B per entry ({:.2}x bare moka); \
         weigher {weight_per:.0} B per entry ({:.2}x the measured cost)",
        local_b / moka_b,
        weight_per / local_b,
    );
    println!(
        "{{\"bench\": \"local_memory\", \"entries\": {N}, \"value_bytes\": {VALUE_BYTES}, \
         \"bare_moka_bytes\": {moka_b:.0}, \"bare_moka_blocks\": {moka_n:.2}, \
         \"no_local_bytes_per_read\": {off_b:.0}, \"tracked_bytes_per_read\": {on_b:.0}, \
         \"local_bytes_per_entry\": {local_b:.0}, \"ratio_local_vs_moka\": {:.3}, \
         \"weigher_bytes_per_entry\": {weight_per:.0}, \"ratio_weigher_vs_measured\": {:.3}}}",
        local_b / moka_b,
        weight_per / local_b,
    );
}
