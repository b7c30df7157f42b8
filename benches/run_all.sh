#!/bin/sh
# Reruns every benchmark of BENCHMARKS.md and prints the figures (nothing is asserted).
#
#   benches/run_all.sh            # everything: about 20 minutes on 2 cores
#   BENCH_SERVER_ARGS="--trials 20 --runs 1" benches/run_all.sh
#
# 1. Evaluation (examples/bench_eval.rs): the engine against hand-written SQL on the
#    demo CRM at 10k, 100k and 1M deals, cold and warm; values checked equal.
# 2-5. Server and import (examples/bench_server.rs): freshness of a file save and of a
#    one-record ingest under `kpi serve`, `kpi import` against `sqlite3 .import`,
#    GET /api/scorecards/sales under wrk, peak RSS of the server; on ~1M deals.
# 6. Against DuckDB (benches/duckdb.sh, issue 17) at 100k and 1M deals: import, cold and
#    warm evaluation, peak RSS, every value checked equal (about 15 more minutes; needs
#    python3 with venv; set SKIP_DUCKDB=1 to leave it out).
#
# Needs `wrk` and `sqlite3` on the PATH (Debian: apt-get install wrk sqlite3).
# bench_server measures target/release/kpi, built here first. Its work files go to
# $TMPDIR/kpi-bench-server, bench_eval's to target/bench_eval (databases kept between runs).
set -eu
cd "$(dirname "$0")/.."

for tool in wrk sqlite3; do
    command -v "$tool" >/dev/null || { echo "run_all.sh: $tool is not installed" >&2; exit 1; }
done

cargo build --release --bins --examples

for deals in 10000 100000 1000000; do
    echo "=== bench_eval --deals $deals"
    # shellcheck disable=SC2086
    cargo run --release --example bench_eval -- --deals "$deals" --keep ${BENCH_EVAL_ARGS:-}
done

echo "=== bench_server"
# shellcheck disable=SC2086
cargo run --release --example bench_server -- ${BENCH_SERVER_ARGS:-}

echo "=== bench_mapping"
cargo run --release --example bench_mapping

if [ -z "${SKIP_DUCKDB:-}" ]; then
    for deals in 100000 1000000; do
        echo "=== benches/duckdb.sh --deals $deals"
        benches/duckdb.sh --deals "$deals" --keep
    done
fi
