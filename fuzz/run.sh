#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: `fuzz/run.sh [seconds-per-target] [target...]`
# (default 20 s each, every target). Exits non-zero on the first crash, panic, leak or
# allocation past the limits; the input that did it is left in fuzz/artifacts/<target>/.
#
# Needs the nightly toolchain (installs cargo-fuzz if missing). Each target starts from its
# committed seeds (corpus/<target>/) and keeps what it finds in corpus-work/<target>/
# (ignored by git), so the committed corpus stays small. Set CARGO_TARGET_DIR to share a
# build directory between runs (the first build takes minutes).
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(reply codec_bitcode codec_postcard codec_bincode url pgoutput conninfo lsn types typed sql)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "== building the fuzz targets (nightly, address sanitizer)"
cargo +nightly fuzz build

for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t" "artifacts/$t"
  echo "== fuzzing $t for ${secs}s"
  # -rss_limit_mb catches memory growth; -malloc_limit_mb one allocation this large (a
  # length field trusted before the bytes are there). -max_len keeps inputs small.
  if ! cargo +nightly fuzz run "$t" "corpus-work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=512 -malloc_limit_mb=64 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" 2>"artifacts/$t.log"; then
    tail -n 60 "artifacts/$t.log"
    echo "!! $t failed: the input is in fuzz/artifacts/$t/; reproduce with" \
      "cargo +nightly fuzz run $t fuzz/artifacts/$t/<file>"
    exit 1
  fi
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "artifacts/$t.log" | tr '\n' ' '
  echo
done
echo "== fuzz: no crash in ${#targets[@]} targets"
