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
