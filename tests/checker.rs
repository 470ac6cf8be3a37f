//! The stale-read checker (`examples/checker/`) on a short schedule: a healthy run under
//! faults the core handles must find no stale read, and a run whose writers skip some
//! invalidations on purpose must find stale reads and fail.
//!
//! The checker starts its own `redis-server`s (`--spawn-redis`), so it must be installed.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Builds the checker example with this test's profile and returns its path.
fn checker() -> PathBuf {
    let me = std::env::current_exe().expect("the test's own path");
    // <target>/<profile>/deps/checker-<hash>
    let profile_dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from <target>/<profile>/deps")
        .to_path_buf();
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(["build", "--quiet", "--example", "checker"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example checker failed");
    let exe = profile_dir
        .join("examples")
        .join(format!("checker{}", std::env::consts::EXE_SUFFIX));
    assert!(exe.exists(), "{} was not built", exe.display());
    exe
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(checker())
        .args(args)
        .output()
        .expect("the checker runs");
    eprintln!(
        "checker {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The checker runs many processes: one run at a time, so that runs do not slow each other
/// down past the cache's timeouts.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number of reads a passing run checked ("no stale read in N reads"), so that a run
/// that read nothing cannot pass.
fn reads(text: &str) -> u64 {
    text.split("no stale read in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Faults during which every invalidation still reaches Redis (a `DEBUG SLEEP` shorter than
/// the I/O timeout, a flush, eviction under `allkeys-*` and `volatile-*` policies, the loss
/// of keys without a TTL such as scheme sets, a full memory that refuses writes): a write
/// counts as finished as soon as its `on_update` returned Ok.
#[test]
fn no_stale_read_under_sleep_flush_and_eviction_of_any_key() {
    let _one = serial();
    let out = run(&[
        "--spawn-redis",
        "--duration",
        "12s",
        "--fault-every",
        "600ms",
        "--io-timeout",
        "1s",
        "--faults",
        "sleep,flushdb,evict-persistent,maxmemory:allkeys-random,maxmemory:allkeys-lru,\
         maxmemory:volatile-lru,maxmemory:volatile-ttl,maxmemory:noeviction",
        "--idle-writers",
    ]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stale reads or failure:\n{text}"
    );
    assert!(text.contains("verdict: OK"), "{text}");
    assert!(reads(&text) >= 1000, "too few reads:\n{text}");
    for f in [
        "sleep",
        "flushdb",
        "evict-persistent",
        "maxmemory:allkeys-random",
        "maxmemory:volatile-lru",
    ] {
        assert!(
            text.contains(&format!("  {f} ")),
            "{f} was not injected:\n{text}"
        );
    }
}

/// Faults that make a writer's invalidation fail while Redis keeps (or, after a restart,
/// soon has again) entries it would kill: the writer queues it and, degrading, returns Ok;
/// other processes may serve those entries until the writer replays its queue (DESIGN.md,
/// "core/: the gateway"). So here a write counts as finished once its invalidation reached
/// Redis (`--finished delivered`).
#[test]
fn no_stale_read_after_delivered_invalidations_under_restarts_stops_kills_and_the_proxy() {
    let _one = serial();
    let out = run(&[
        "--spawn-redis",
        "--duration",
        "11s",
        "--fault-every",
        "600ms",
        "--finished",
        "delivered",
        "--faults",
        "restart,stop,kill-clients,proxy-drop,proxy-stall",
    ]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stale reads or failure:\n{text}"
    );
    assert!(reads(&text) >= 1000, "too few reads:\n{text}");
    for f in [
        "restart",
        "stop",
        "kill-clients",
        "proxy-drop",
        "proxy-stall",
    ] {
        assert!(
            text.contains(&format!("  {f} ")),
            "{f} was not injected:\n{text}"
        );
    }
}

/// Writers that skip one invalidation in five (and record those writes as finished): the
/// checker must see stale reads and exit with status 1.
#[test]
fn skipped_invalidations_are_found() {
    let _one = serial();
    let out = run(&[
        "--spawn-redis",
        "--duration",
        "4s",
        "--tiers",
        "shared,strict",
        "--break-invalidation",
        "5",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "expected stale reads:\n{text}");
    assert!(text.contains("verdict: FAIL"), "{text}");
    assert!(text.contains("first stale reads:"), "{text}");
}

/// Bad input is an error with exit status 2, never a panic.
#[test]
fn bad_options_are_refused() {
    let _one = serial();
    for args in [
        &["--faults", "nope", "--spawn-redis"][..],
        &["--duration", "soon", "--spawn-redis"][..],
        &[
            "--redis",
            "http://x",
            "--truth-url",
            "redis://127.0.0.1:1/1",
        ][..],
        &[][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{args:?}"
        );
    }
}
