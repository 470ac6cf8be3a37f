#!/usr/bin/env bash
# Runs stampcache's shared workload and django-cacheops' (../shared/bench/peer-cacheops,
# normal and --insideout) against the same Redis and PostgreSQL, one after the other, and
# writes bench-report/{ours,peer,peer_insideout}.json, report.md and chart.svg.
#
#   scripts/compare.sh                       # Redis 127.0.0.1:6379 (databases 3 and 4), local PostgreSQL
#   REDIS=redis://host:port PG="host=... user=... dbname=..." ROUNDS=5 scripts/compare.sh
#
# Databases 3 and 4 of that Redis are flushed. The peer needs PostgreSQL database "test",
# user postgres, trust auth on 127.0.0.1 (its own assumption), and python3 with venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peer="$root/../shared/bench/peer-cacheops/run.sh"
redis=${REDIS:-redis://127.0.0.1:6379}
pg=${PG:-host=127.0.0.1 user=postgres dbname=test}
rounds=${ROUNDS:-5}
out=${OUT:-$root/bench-report}
mkdir -p "$out"
[ -x "$peer" ] || [ -f "$peer" ] || { echo "peer benchmark not found at $peer" >&2; exit 1; }

flush() { redis-cli -u "$1" flushdb >/dev/null; }

echo "== stampcache" >&2
flush "$redis/4"
(cd "$root" && cargo run --quiet --release --example workload -- \
  --redis "$redis/4" --pg "$pg" --rounds "$rounds") > "$out/ours.json"

echo "== django-cacheops" >&2
flush "$redis/3"
bash "$peer" --redis "$redis/3" --db postgres --rounds "$rounds" > "$out/peer.json"
echo "== django-cacheops --insideout" >&2
flush "$redis/3"
bash "$peer" --redis "$redis/3" --db postgres --rounds "$rounds" --insideout > "$out/peer_insideout.json"
flush "$redis/3"

python3 "$root/scripts/report.py" "$out"
echo "wrote $out/report.md and $out/chart.svg" >&2
